/*
 * stats.h — the statistics' snapshot, shared by the reader (stats.c: nh_stats_read, nh_stat,
 * the per-arena, per-node and per-class tables) and the writers (statswrite.c: nh_stats_write
 * in text, JSON and OpenMetrics).
 */
#ifndef NH_STATS_H
#define NH_STATS_H

#include "core/heap.h"

/* Everything nh_stats_write prints, taken at once by stats_snapshot and then formatted with no
 * lock held: a slow reader of the output never holds up the heap or another reader. */
typedef struct nh_stats_snapshot {
  nh_stats_t s;                                    /* as nh_stats_read */
  int nnodes;
  nh_pageheap_counts node[NH_MAX_NODES];           /* pages, per node */
  uint64_t node_remote_frees[NH_MAX_NODES];
  nh_class_stat_t classes[NH_NUM_SIZE_CLASSES - 1];
  nh_timehist_t pauses[NH_PAUSE_HISTS];
  uint64_t pause_counts[NH_PAUSE_HISTS];           /* each histogram's total */
  uint64_t phase_cpu_ns[NH_GC_PHASE_SWEEP + 1];    /* nh_gc_t.phase_cpu_ns */
  uint64_t ncpus;                                  /* pauses count on every CPU */
  uint64_t mark_workers;                           /* dedicated mark workers (concurrent) */
  double cons_mark;                                /* the pacer's estimate */
  bool limiting;                                   /* the CPU limiter is on */
  uint64_t limiter_fill_ns, limiter_capacity_ns, limiter_overflow_ns;
  uint64_t scavenging_bytes;                       /* free pages being released right now */
} nh_stats_snapshot_t;

/* held: the caller holds heap_init_lock and the heap is still built (nh_shutdown's perf report);
 * else these take the lock, and fail with -ENODEV before nh_init. */
/* Fills *out; thread-safe; holds the init lock for a few microseconds. */
int stats_snapshot(nh_stats_snapshot_t *out, bool held);
/* The arena records start .. start + n - 1 (creation order) into out; returns how many arenas
 * there are (nh_stats_arenas: start 0), or -ENODEV. */
long stats_arenas_from(nh_arena_stat_t *out, size_t n, size_t start, bool held);
/* nh_stats_write, for a caller that may hold the init lock already (held). */
int stats_write(int fd, nh_stats_format fmt, bool held);

#endif
