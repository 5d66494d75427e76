/*
 * stats_read.c — what reading the statistics costs a server that polls them, after 1,000
 * collections (the count at which the old sort-under-the-lock read cost 30–270 µs; issue 24).
 * Google Benchmark through bench_shim; the report runs it and prints the table ("Reading the
 * statistics"), with the goal of at most 1 µs per read.
 *
 *   stats/read              nh_stats_read: the whole snapshot (page heaps under their seqlocks,
 *                           the pause percentiles from the histogram)
 *   stats/stat/<name>       nh_stat of one counter (heap_mapped, heap_inuse, heap_live,
 *                           heap_goal, gc_cycles, gc_pauses, pause_total, metadata, heap_backed)
 *   stats/write_openmetrics nh_stats_write(NH_STATS_OPENMETRICS) to /dev/null: a scrape's
 *                           whole cost, formatting included (not held to the 1 µs)
 *
 * Usage: nheap-stats-read [--cycles=N (1000)] [Google Benchmark flags]. Collects N times first
 * (nh_gc, each after allocating a little: a heap with a history of pauses), with the options
 * from NHEAP_* as usual; stderr says how many cycles and pauses the reads find.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nheap.h>

#include "bench/bench_shim.h"

static const char *const stat_names[NH_STAT_IDS] = {"heap_mapped", "heap_inuse", "heap_live", "heap_goal",
                                                     "gc_cycles",   "gc_pauses",  "pause_total", "metadata",
                                                     "heap_backed"};

static void bm_read(bench_state *st, int64_t arg) {
  (void)arg;
  nh_stats_t s = {.size = sizeof s};
  while (bench_keep_running_batch(st, 16))
    for (int i = 0; i < 16; i++) {
      nh_stats_read(&s);
      bench_do_not_optimize(&s);
    }
}

static void bm_stat(bench_state *st, int64_t id) {
  uint64_t v = 0;
  while (bench_keep_running_batch(st, 64))
    for (int i = 0; i < 64; i++)
      v += nh_stat((nh_stat_id)id);
  bench_do_not_optimize(&v);
}

static void bm_write(bench_state *st, int64_t arg) {
  (void)arg;
  int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
  while (bench_keep_running_batch(st, 1))
    nh_stats_write(fd, NH_STATS_OPENMETRICS);
  close(fd);
}

int main(int argc, char **argv) {
  long cycles = 1000;
  int kept = 1;
  for (int i = 1; i < argc; i++) {   /* --cycles=N is ours; the rest is Google Benchmark's */
    if (!strncmp(argv[i], "--cycles=", 9))
      cycles = atol(argv[i] + 9);
    else
      argv[kept++] = argv[i];
  }
  argc = kept;
  if (nh_init(NULL) != 0)
    return 1;
  for (long c = 0; c < cycles; c++) {
    for (int i = 0; i < 64; i++)
      bench_do_not_optimize(nh_alloc(256));
    nh_gc();
  }
  nh_stats_t s = {.size = sizeof s};
  nh_stats_read(&s);
  fprintf(stderr, "nheap-stats-read: reads after %llu cycles, %llu pauses\n", (unsigned long long)s.gc_cycles,
          (unsigned long long)s.gc_pauses);
  bench_register_fixed("stats/read", bm_read, 0, 0);
  for (int id = 0; id < NH_STAT_IDS; id++) {
    char name[64];
    snprintf(name, sizeof name, "stats/stat/%s", stat_names[id]);
    bench_register_fixed(name, bm_stat, id, 0);
  }
  bench_register_fixed("stats/write_openmetrics", bm_write, 0, 0);
  int rc = bench_main(argc, argv);
  nh_shutdown();
  return rc;
}
