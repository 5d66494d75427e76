/*
 * gc_pause — pauses and throughput of a collector under a steady live heap with churn.
 *
 * A balanced binary tree of 32-byte nodes makes the live heap (pointer-rich, so marking has
 * real work); mutator threads then keep replacing random subtrees of 127 nodes with fresh
 * ones (pointer stores through the barrier), so the live set stays the same size while
 * garbage flows. Reported: the live heap, cycles, stop-the-world pauses (p50, p99, max),
 * replacements per second (the mutators' throughput), wall time and peak RSS.
 *
 * One source, two collectors: built against nheap (nheap-gc-pause; gc mode from the command
 * line) and, where libgc-dev is installed, against bdwgc (nheap-gc-pause-bdwgc, parallel
 * marking with GC_MARKERS = CPUs unless set), whose pauses come from its collection events
 * (stop-world to start-world). bench/go/gc_pause is Go's.
 *
 * Usage: nheap-gc-pause [concurrent|stw] [live MiB (256)] [seconds (5)] [mutators (2)]
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "gc_peer.h"

#ifdef USE_BDWGC
#define THREAD_CREATE GC_pthread_create
#define THREAD_JOIN GC_pthread_join
#else
#define THREAD_CREATE pthread_create
#define THREAD_JOIN pthread_join
#endif

typedef struct node {
  struct node *kid[2];
  uint64_t value, pad;
} node;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

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

/* Pauses: nheap keeps its own statistics; bdwgc's come from its collection events. */
#ifdef USE_BDWGC
enum { MAX_PAUSES = 1 << 16 };
static double pauses[MAX_PAUSES];
static size_t npauses;
static double stopped_at;
static void on_event(GC_EventType e) {
  if (e == GC_EVENT_PRE_STOP_WORLD)
    stopped_at = now_s();
  else if (e == GC_EVENT_POST_START_WORLD && npauses < MAX_PAUSES)
    pauses[npauses++] = now_s() - stopped_at;
}
static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}
#endif

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "concurrent";
  long live_mib = argc > 2 ? atol(argv[2]) : 256;
  double seconds = argc > 3 ? atof(argv[3]) : 5;
  int mutators = argc > 4 ? atoi(argv[4]) : 2;
  if (mutators < 1 || mutators > 64 || live_mib < 1 || seconds <= 0) {
    fprintf(stderr, "usage: %s [concurrent|stw] [live MiB] [seconds] [mutators 1..64]\n", argv[0]);
    return 2;
  }
  mode = gc_peer_start(mode);
#ifdef USE_BDWGC
  GC_set_on_collection_event(on_event);
#endif
  /* The smallest tree of 32-byte nodes holding live_mib. */
  root_depth = 1;
  while ((2ull << root_depth) * sizeof(node) < (unsigned long long)live_mib << 20)
    root_depth++;
  double t0 = now_s();
  root = tree(root_depth);
#ifdef USE_BDWGC
  GC_gcollect();
  npauses = 0;
  size_t cycles0 = GC_get_gc_no();
#else
  nh_gc();
  nh_stats_t s0 = {.size = sizeof s0};
  nh_stats_read(&s0);
#endif
  double t1 = now_s();
  pthread_t t[64];
  for (int i = 0; i < mutators; i++)
    THREAD_CREATE(&t[i], NULL, mutator, (void *)(uintptr_t)(i + 1));
  struct timespec d = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
  while (nanosleep(&d, &d) != 0)   /* the collector's stop signals interrupt sleeps */
    ;
  atomic_store(&stop, 1);
  for (int i = 0; i < mutators; i++)
    THREAD_JOIN(t[i], NULL);
  double t2 = now_s();
  double p50, p99, pmax, live;
  unsigned long long cycles;
#ifdef USE_BDWGC
  qsort(pauses, npauses, sizeof *pauses, cmp);
  p50 = npauses ? pauses[(npauses - 1) / 2] * 1e3 : 0;
  p99 = npauses ? pauses[(npauses * 99 + 99) / 100 - 1] * 1e3 : 0;
  pmax = npauses ? pauses[npauses - 1] * 1e3 : 0;
  cycles = GC_get_gc_no() - cycles0;
  live = (double)(GC_get_heap_size() - GC_get_free_bytes()) / (1 << 20);
#else
  nh_stats_t s = {.size = sizeof s};
  nh_stats_read(&s);
  p50 = s.pause_p50_ns / 1e6;
  p99 = s.pause_p99_ns / 1e6;
  pmax = s.pause_max_ns / 1e6;
  cycles = (unsigned long long)(s.gc_cycles - s0.gc_cycles);
  live = (double)s.heap_marked_bytes / (1 << 20);
#endif
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("%s: live %.0f MiB (tree depth %d, built in %.2f s), %d mutators for %.1f s: %llu cycles, "
         "pauses p50 %.3f ms, p99 %.3f ms, max %.3f ms; %.0f replacements/s; peak RSS %.0f MiB\n",
         mode, live, root_depth, t1 - t0, mutators, t2 - t1, cycles, p50, p99, pmax,
         (double)atomic_load(&replaced) / (t2 - t1), (double)ru.ru_maxrss / 1024);
  return 0;
}
