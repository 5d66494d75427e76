/*
 * binary_trees — the Benchmarks Game's binary-trees: a stretch tree of depth max + 1, a
 * long-lived tree of depth max, then 2^(max - d + 4) short-lived trees of each even depth d
 * from 4 to max, each built and checked; with several threads, each depth's trees are split
 * among them. Allocation-bound with a steady live tree: the classic collector workload. Where
 * memory is managed by hand (nheap with gc = off, the malloc peers), each tree is freed after
 * its check.
 *
 * Builds (gc_peer.h): nheap-binary-trees (mode concurrent|stw|off), nheap-binary-trees-bdwgc,
 * nheap-binary-trees-malloc (run under LD_PRELOAD of each allocator by the report).
 * bench/go/binary_trees is Go's. Prints the checks, then the RESULT line (gc_peer.h): check is
 * the sum of every check printed (the node counts: 2^(max+2) - 1 for the stretch tree, ...),
 * time_s the time from the stretch tree to the last check.
 *
 * Usage: nheap-binary-trees [mode (concurrent)] [max depth (18)] [threads (1)]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

static void release(node *n) {
  if (n->left) {
    release(n->left);
    release(n->right);
  }
  FREE(n);
}

static long check_and_release(node *n) {
  long c = check(n);
  if (peer_manual)
    release(n);
  return c;
}

typedef struct share {
  int depth;
  long iterations, sum;
  pthread_t thread;
} share;

static void *trees(void *arg) {
  share *s = arg;
  for (long i = 0; i < s->iterations; i++)
    s->sum += check_and_release(make(s->depth));
  return NULL;
}

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "concurrent";
  int max = argc > 2 ? atoi(argv[2]) : 18;
  int threads = argc > 3 ? atoi(argv[3]) : 1;
  if (max < 6 || max > 30 || threads < 1 || threads > 64) {
    fprintf(stderr, "usage: %s [concurrent|stw|off] [max depth 6..30] [threads 1..64]\n", argv[0]);
    return 2;
  }
  const char *system = peer_start(mode);
  report_begin();
  double t0 = peer_now();
  long total = check_and_release(make(max + 1));   /* every check, summed: the RESULT's check */
  printf("stretch tree of depth %d\t check: %ld\n", max + 1, total);
  node *volatile long_lived = make(max);
  for (int d = 4; d <= max; d += 2) {
    long iterations = 1L << (max - d + 4), sum = 0;
    share part[64];
    for (int t = 0; t < threads; t++) {
      part[t] = (share){.depth = d, .iterations = iterations / threads + (t < iterations % threads)};
      if (threads > 1)
        peer_thread_start(&part[t].thread, trees, &part[t]);
      else
        trees(&part[t]);
    }
    for (int t = 0; t < threads; t++) {
      if (threads > 1)
        peer_thread_join(part[t].thread);
      sum += part[t].sum;
    }
    printf("%ld\t trees of depth %d\t check: %ld\n", iterations, d, sum);
    total += sum;
  }
  long last = check_and_release(long_lived);
  printf("long lived tree of depth %d\t check: %ld\n", max, last);
  double wall = peer_now() - t0;
  report_end(system, (unsigned long long)(total + last), "depth=%d threads=%d time_s=%.3f", max, threads, wall);
  return 0;
}
