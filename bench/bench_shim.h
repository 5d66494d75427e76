/*
 * bench_shim.h — Google Benchmark for C: benchmarks are C functions, bench_shim.cc (the only
 * C++ file in nheap) adapts them to benchmark::State.
 */
#ifndef NH_BENCH_SHIM_H
#define NH_BENCH_SHIM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bench_state bench_state;
typedef void (*bench_fn)(bench_state *st, int64_t arg);

/* The loop driver: while (bench_keep_running_batch(st, 64)) { 64 operations }. Each call
 * counts n iterations, so the reported times are per operation. */
int bench_keep_running_batch(bench_state *st, int64_t n);
/* Items (items_per_second) = n × the iterations run; call it after the loop. */
void bench_set_items_per_iteration(bench_state *st, int64_t n);
void bench_set_counter(bench_state *st, const char *name, double v);
void bench_do_not_optimize(const void *p);
/* Registers fn once per argument (nargs 0: once, with arg 0). */
void bench_register(const char *name, bench_fn fn, const int64_t *args, int nargs);

/* Timing flags of bench_register_fixed. Google Benchmark appends what they select to the
 * name: "/process_time" and then "/real_time". */
enum {
  BENCH_REAL_TIME = 1,        /* real_time (wall) is the benchmark's time: rates and the   */
                              /* iteration count follow it (UseRealTime)                   */
  BENCH_PROCESS_CPU_TIME = 2, /* cpu_time is every thread's of the process, not only the   */
                              /* benchmark thread's (MeasureProcessCPUTime)                */
};
/* Registers fn once under exactly `name` (plus the suffixes of flags), called with arg (which
 * stays out of the name). */
void bench_register_fixed(const char *name, bench_fn fn, int64_t arg, unsigned flags);
int bench_main(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
