/*
 * gc_peer.h — one source, two collectors, for the collector benchmarks (gc_pause.c,
 * binary_trees.c): built plainly against nheap, or with USE_BDWGC against bdwgc.
 *   ALLOC(n)          a scanned object (nh_alloc / GC_MALLOC)
 *   STORE(slot, v)    a pointer store into an object (nh_store / a plain store)
 *   gc_peer_start(m)  starts the collector ("concurrent" or "stw" for nheap; bdwgc takes its
 *                     defaults) and returns the name to report; exits on failure.
 */
#ifndef NH_BENCH_GC_PEER_H
#define NH_BENCH_GC_PEER_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef USE_BDWGC
#define GC_THREADS
#include <gc.h>
#define ALLOC(n) GC_MALLOC(n)
#define STORE(slot, v) (*(slot) = (v))

static inline const char *gc_peer_start(const char *mode) {
  (void)mode;
  GC_INIT();
  GC_allow_register_threads();
  return "bdwgc";
}
#else
#include <nheap.h>
#define ALLOC(n) nh_alloc(n)
#define STORE(slot, v) nh_store((void **)(slot), (v))

static inline const char *gc_peer_start(const char *mode) {
  nh_options o;
  nh_options_init(&o);
  o.gc = strcmp(mode, "stw") == 0 ? NH_GC_STW : NH_GC_CONCURRENT;
  if (nh_init(&o) != 0)
    exit(1);
  nh_stats_t s = {.size = sizeof s};
  nh_stats_read(&s);
  return s.gc_mode == NH_GC_STW ? "stw" : "concurrent";   /* what runs, not what was asked */
}
#endif

#endif
