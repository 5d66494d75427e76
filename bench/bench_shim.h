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

/* The loop driver: while (bench_keep_running_batch(st, 64)) { 64 operations }. */
int bench_keep_running_batch(bench_state *st, int64_t n);
void bench_set_items(bench_state *st, int64_t n);
void bench_set_counter(bench_state *st, const char *name, double v);
void bench_do_not_optimize(const void *p);
/* Registers fn once per argument (nargs 0: once, with arg 0). */
void bench_register(const char *name, bench_fn fn, const int64_t *args, int nargs);
/* Registers fn once under exactly `name`, called with arg (which stays out of the name). */
void bench_register_fixed(const char *name, bench_fn fn, int64_t arg);
int bench_main(int argc, char **argv);

#ifdef __cplusplus
}
#endif
#endif
