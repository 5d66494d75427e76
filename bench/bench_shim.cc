// bench_shim.cc — the C++ side of the Google Benchmark shim (see bench_shim.h).
#include "bench/bench_shim.h"

#include <benchmark/benchmark.h>

struct bench_state {
  benchmark::State *s;
};

extern "C" int bench_keep_running_batch(bench_state *st, int64_t n) { return st->s->KeepRunningBatch(n); }
extern "C" void bench_set_items_per_iteration(bench_state *st, int64_t n) {
  st->s->SetItemsProcessed(n * static_cast<int64_t>(st->s->iterations()));
}
extern "C" void bench_set_counter(bench_state *st, const char *name, double v) { st->s->counters[name] = v; }
extern "C" void bench_do_not_optimize(const void *p) {
  benchmark::DoNotOptimize(p);
  benchmark::ClobberMemory();
}

extern "C" void bench_register(const char *name, bench_fn fn, const int64_t *args, int nargs) {
  auto *b = benchmark::RegisterBenchmark(name, [fn](benchmark::State &s) {
    bench_state st{&s};
    fn(&st, s.range(0));
  });
  if (nargs == 0)
    b->Arg(0);
  for (int i = 0; i < nargs; i++)
    b->Arg(args[i]);
}

extern "C" void bench_register_fixed(const char *name, bench_fn fn, int64_t arg, unsigned flags) {
  auto *b = benchmark::RegisterBenchmark(name, [fn, arg](benchmark::State &s) {
    bench_state st{&s};
    fn(&st, arg);
  });
  if (flags & BENCH_PROCESS_CPU_TIME)
    b->MeasureProcessCPUTime();
  if (flags & BENCH_REAL_TIME)
    b->UseRealTime();
}

extern "C" int bench_main(int argc, char **argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv))
    return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
