/*
 * gcbench — Boehm, Ellis and Kovac's GCBench (after John Ellis and Pete Kovac's Java
 * original, as Hans Boehm's C version runs it), written against bdwgc's API: built with
 * nheap_gc_compat.h on nheap (nheap-gcbench: the compat header selects gc =
 * concurrent-nobarrier, since the program stores pointers plainly, as bdwgc programs do; where
 * the kernel lacks userfaultfd write-protect nheap runs stw, and the RESULT's system says so)
 * and with <gc.h> on bdwgc (nheap-gcbench-bdwgc).
 *
 * A long-lived tree of depth stretch - 2 and an array of 500000 doubles stay live, a stretch
 * tree of depth stretch is built and dropped; then for each even depth d from 4 to stretch - 2,
 * 2 * size(stretch) / size(d) trees are built top-down (Populate) and as many bottom-up
 * (MakeTree) and dropped. The last tree of each kind at each depth and the long-lived tree are
 * counted (the RESULT's check: the sum of their nodes), and the long-lived array checked; a
 * damaged tree or array fails the program. The RESULT line (gc_peer.h) adds time_s.
 *
 * Usage: nheap-gcbench [stretch depth (18, the original)]
 */
#ifndef USE_BDWGC
#include <nheap_gc_compat.h>
#endif
#include "gc_peer.h"

typedef struct Node0 {
  struct Node0 *left, *right;
  int i, j;
} Node0, *Node;

static int min_depth = 4, stretch_depth, long_lived_depth, max_depth;
enum { ARRAY_SIZE = 500000 };

static Node new_node(Node l, Node r) {
  Node n = GC_MALLOC(sizeof *n);
  if (!n) {
    fprintf(stderr, "gcbench: out of memory\n");
    exit(1);
  }
  n->left = l;
  n->right = r;
  return n;
}

static int tree_size(int i) { return (1 << (i + 1)) - 1; }

static long count(Node n) { return n ? 1 + count(n->left) + count(n->right) : 0; }
static int iterations(int i) { return 2 * tree_size(stretch_depth) / tree_size(i); }

/* Top-down: the node exists before its children. */
static void populate(int depth, Node n) {
  if (depth-- <= 0)
    return;
  n->left = new_node(NULL, NULL);
  n->right = new_node(NULL, NULL);
  populate(depth, n->left);
  populate(depth, n->right);
}

/* Bottom-up: the children exist before their node. */
static Node make_tree(int depth) {
  if (depth <= 0)
    return new_node(NULL, NULL);
  return new_node(make_tree(depth - 1), make_tree(depth - 1));
}

/* Returns the nodes of the last tree of each kind. */
static long time_construction(int depth) {
  int n = iterations(depth);
  double t0 = peer_now();
  Node volatile temp = NULL;
  for (int i = 0; i < n; i++) {
    temp = new_node(NULL, NULL);
    populate(depth, temp);
  }
  double t1 = peer_now();
  long nodes = count(temp);
  double t2 = peer_now();   /* the count is not timed */
  for (int i = 0; i < n; i++)
    temp = make_tree(depth);
  double t3 = peer_now();
  nodes += count(temp);
  printf("%d trees of depth %d: top-down %.0f ms, bottom-up %.0f ms\n", n, depth, (t1 - t0) * 1e3,
         (t3 - t2) * 1e3);
  return nodes;
}

int main(int argc, char **argv) {
  stretch_depth = argc > 1 ? atoi(argv[1]) : 18;
  if (stretch_depth < 8 || stretch_depth > 26) {
    fprintf(stderr, "usage: %s [stretch depth 8..26]\n", argv[0]);
    return 2;
  }
  long_lived_depth = max_depth = stretch_depth - 2;
  const char *system = peer_start("stw");
  report_begin();
  double t0 = peer_now();
  Node volatile temp = make_tree(stretch_depth);   /* the stretch tree */
  temp = NULL;
  (void)temp;
  Node volatile long_lived = new_node(NULL, NULL);
  populate(long_lived_depth, long_lived);
  double *volatile array = GC_MALLOC_ATOMIC(sizeof(double) * ARRAY_SIZE);
  if (!array)
    return 1;
  for (int i = 0; i < ARRAY_SIZE / 2; i++)
    array[i] = 1.0 / i;
  long check = 0;
  for (int d = min_depth; d <= max_depth; d += 2)
    check += time_construction(d);
  for (int i = 1; i < ARRAY_SIZE / 2; i++)
    if (array[i] != 1.0 / i) {
      fprintf(stderr, "gcbench: the long-lived array was lost\n");
      return 1;
    }
  check += count(long_lived);
  double elapsed = peer_now() - t0;
  report_end(system, (unsigned long long)check, "stretch_depth=%d time_s=%.3f", stretch_depth, elapsed);
  return 0;
}
