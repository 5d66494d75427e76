/*
 * gc_pause — pauses and throughput of a collector under a steady live heap with churn.
 *
 * A balanced binary tree of 32-byte nodes makes the live heap (pointer-rich, so marking has
 * real work); mutator threads then keep replacing random subtrees of 127 nodes with fresh
 * ones (pointer stores through the barrier), so the live set stays the same size while
 * garbage flows. At the end every node of the tree is counted and checked (the RESULT's
 * check). The RESULT line (gc_peer.h) adds: live_mib (after the build's collection),
 * build_s, run_s, replacements_per_s (the mutators' throughput).
 *
 * Builds (gc_peer.h): nheap-gc-pause (mode concurrent|stw) and nheap-gc-pause-bdwgc.
 * bench/go/gc_pause is Go's.
 *
 * Usage: nheap-gc-pause [concurrent|stw] [live MiB (256)] [seconds (5)] [mutators (2)]
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gc_peer.h"

typedef struct node {
  struct node *kid[2];
  uint64_t value, pad;
} node;

static node *tree(int depth) {
  node *n = ALLOC(sizeof *n);
  if (!n) {
    fprintf(stderr, "gc_pause: out of memory\n");
    exit(1);
  }
  n->value = (uint64_t)depth;
  if (depth > 0) {
    STORE(&n->kid[0], tree(depth - 1));
    STORE(&n->kid[1], tree(depth - 1));
  }
  return n;
}

/* The tree's nodes, each checked to hold its depth: the RESULT's check (2^(depth+1) - 1). */
static unsigned long long count(const node *n, uint64_t depth) {
  if (!n || n->value != depth) {
    fprintf(stderr, "gc_pause: the live tree is damaged at depth %llu\n", (unsigned long long)depth);
    exit(1);
  }
  return depth ? 1 + count(n->kid[0], depth - 1) + count(n->kid[1], depth - 1) : 1;
}

static node *root;
static int root_depth;
static atomic_int stop;
static atomic_long replaced;

static void *mutator(void *arg) {
  uint64_t rng = (uintptr_t)arg * 0x9e3779b97f4a7c15u + 1;
  long n = 0;
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    node *parent = root;
    for (int d = root_depth; d > 7; d--) {   /* down to a subtree of depth 6 */
      rng = rng * 6364136223846793005u + 1442695040888963407u;
      parent = parent->kid[rng >> 63];
    }
    rng = rng * 6364136223846793005u + 1442695040888963407u;
    STORE(&parent->kid[rng >> 63], tree(6));
    n++;
  }
  atomic_fetch_add(&replaced, n);
  return NULL;
}

static void *sleep_until(void *arg) {
  const struct timespec *until = arg;
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, until, NULL) == EINTR)
    ;
  return NULL;
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "concurrent";
  long live_mib = argc > 2 ? atol(argv[2]) : 256;
  double seconds = argc > 3 ? atof(argv[3]) : 5;
  int mutators = argc > 4 ? atoi(argv[4]) : 2;
  if (mutators < 1 || mutators > 64 || live_mib < 1 || seconds <= 0) {
    fprintf(stderr, "usage: %s [concurrent|stw] [live MiB] [seconds] [mutators 1..64]\n", argv[0]);
    return 2;
  }
  const char *system = peer_start(mode);
  /* The smallest tree of 32-byte nodes holding live_mib. */
  root_depth = 1;
  while ((2ull << root_depth) * sizeof(node) < (unsigned long long)live_mib << 20)
    root_depth++;
  double t0 = peer_now();
  root = tree(root_depth);
#ifdef USE_BDWGC
  GC_gcollect();
  double live = peer_heap_mib();
#else
  nh_gc();
  double live = (double)peer_stats().heap_marked_bytes / (1 << 20);
#endif
  report_begin();
  double t1 = peer_now();
  pthread_t t[64];
  for (int i = 0; i < mutators; i++)
    peer_thread_start(&t[i], mutator, (void *)(uintptr_t)(i + 1));
  struct timespec until;   /* a deadline: the collector's stops interrupt and delay sleeps */
  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_sec += (time_t)seconds;
  until.tv_nsec += (long)((seconds - (double)(time_t)seconds) * 1e9);
  if (until.tv_nsec >= 1000000000) {
    until.tv_sec++;
    until.tv_nsec -= 1000000000;
  }
  /* The main thread sleeps meanwhile (attached: it built the tree). The C collectors are told
   * it blocks (nh_do_blocking, bdwgc's GC_do_blocking), as Go knows of its sleeping goroutine,
   * so that their stops neither wake it nor wait for it to get a CPU beside the mutators. */
  peer_do_blocking(sleep_until, &until);
  atomic_store(&stop, 1);
  for (int i = 0; i < mutators; i++)
    peer_thread_join(t[i]);
  double t2 = peer_now();
  unsigned long long nodes = count(root, (uint64_t)root_depth);
  report_end(system, nodes, "live_mib=%.0f depth=%d mutators=%d build_s=%.3f run_s=%.3f replacements_per_s=%.0f",
             live, root_depth, mutators, t1 - t0, t2 - t1, (double)atomic_load(&replaced) / (t2 - t1));
  return 0;
}
