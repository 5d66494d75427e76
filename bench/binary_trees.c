/*
 * binary_trees — the Benchmarks Game's binary-trees (one thread): a stretch tree of depth
 * max + 1, a long-lived tree of depth max, then 2^(max - d + 4) short-lived trees of each even
 * depth d from 4 to max, each built and checked. Allocation-bound with a steady live tree:
 * the classic collector workload.
 *
 * One source, two collectors: nheap (nheap-binary-trees; gc mode from the command line) and,
 * where libgc-dev is installed, bdwgc (nheap-binary-trees-bdwgc). Prints the checks, then one
 * line: wall time, cycles, pauses (p50, max), peak RSS. bench/go/binary_trees is Go's.
 *
 * Usage: nheap-binary-trees [concurrent|stw] [max depth (18)]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "gc_peer.h"

typedef struct node {
  struct node *left, *right;
} node;

static node *make(int depth) {
  node *n = ALLOC(sizeof *n);
  if (!n) {
    fprintf(stderr, "binary_trees: out of memory\n");
    exit(1);
  }
  if (depth > 0) {
    STORE(&n->left, make(depth - 1));
    STORE(&n->right, make(depth - 1));
  }
  return n;
}

static long check(const node *n) { return n->left ? 1 + check(n->left) + check(n->right) : 1; }

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "concurrent";
  int max = argc > 2 ? atoi(argv[2]) : 18;
  if (max < 6 || max > 30) {
    fprintf(stderr, "usage: %s [concurrent|stw] [max depth 6..30]\n", argv[0]);
    return 2;
  }
  mode = gc_peer_start(mode);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  printf("stretch tree of depth %d\t check: %ld\n", max + 1, check(make(max + 1)));
  node *volatile long_lived = make(max);
  for (int d = 4; d <= max; d += 2) {
    long iterations = 1L << (max - d + 4), sum = 0;
    for (long i = 0; i < iterations; i++)
      sum += check(make(d));
    printf("%ld\t trees of depth %d\t check: %ld\n", iterations, d, sum);
  }
  printf("long lived tree of depth %d\t check: %ld\n", max, check(long_lived));
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double wall = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
#ifdef USE_BDWGC
  printf("%s: depth %d, %.2f s, %lu cycles, peak RSS %.0f MiB\n", mode, max, wall, (unsigned long)GC_get_gc_no(),
         (double)ru.ru_maxrss / 1024);
#else
  nh_stats_t s = {.size = sizeof s};
  nh_stats_read(&s);
  printf("%s: depth %d, %.2f s, %llu cycles, pauses p50 %.3f ms, max %.3f ms, peak RSS %.0f MiB\n",
         mode, max, wall, (unsigned long long)s.gc_cycles, s.pause_p50_ns / 1e6,
         s.pause_max_ns / 1e6, (double)ru.ru_maxrss / 1024);
#endif
  return 0;
}
