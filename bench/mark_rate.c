/*
 * mark_rate — how fast nheap marks, beside how fast this machine can follow pointers.
 *
 * Marking a heap that does not fit in the caches is a stream of loads whose addresses come
 * from other loads: its speed is set by memory latency and by how many of those loads the
 * marker keeps in flight. The machine's side is measured first, on a buffer of `probe` MiB
 * (64-byte lines linked in one random cycle, Sattolo's shuffle; madvised for transparent huge
 * pages, as nheap's default arenas are):
 *   dependent   one chain: each load's address is the previous load's value (ns per load);
 *   8 chains    eight chains stepped together (ns per load): the memory-level parallelism an
 *               out-of-order core finds when it has eight independent addresses;
 *   limit       64 bytes per 8-chain load (GB/s): a marker that touched one new line per
 *               64-byte object and kept eight misses in flight would mark this fast.
 * nheap's side: a heap of `heap` MiB of 64-byte objects (two pointer words, six words of small
 * integers) that form a complete binary tree, placed in random order (the tree's node i is the
 * object allocated p(i)-th for a random permutation p), reached from one global. gc = stw, so
 * one thread marks with the world stopped and its time is the marking core's; three full
 * collections after a warm one, each timed by the collector (nh_stats gc_mark_ns):
 *   mark GB/s   heap bytes marked per second of that one core (median of the three);
 *   ns/object   per marked object; ns/word per word scanned (conservatively: all eight).
 *
 * Usage: nheap-mark-rate [heap MiB (1024)] [probe MiB (512)]
 * Prints a RESULT line of key=value pairs (bench/report.c reads it).
 */
#define _GNU_SOURCE
#include <nheap.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

typedef struct node {
  struct node *left, *right;
  uint64_t payload[6];
} node;

static node *volatile root;   /* the data segment: the collector's one way in */

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next_random(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return rng;
}

static void *map_or_die(size_t bytes) {
  void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    fprintf(stderr, "mark_rate: cannot map %zu MiB\n", bytes >> 20);
    exit(1);
  }
  return p;
}

/* ---------------------------------------------------------------------------------------------
 * The machine: dependent loads, one chain and eight.
 * ------------------------------------------------------------------------------------------- */

enum { LINE = 64, CHAINS = 8 };

static void probe(size_t mib, double *dep_ns, double *par_ns) {
  size_t bytes = mib << 20, lines = bytes / LINE;
  char *buf = map_or_die(bytes);
  madvise(buf, bytes, MADV_HUGEPAGE);
  /* Sattolo: one cycle through every line; line i's first word is the next line's address. */
  uint32_t *perm = map_or_die(lines * sizeof *perm);
  for (size_t i = 0; i < lines; i++)
    perm[i] = (uint32_t)i;
  for (size_t i = lines - 1; i > 0; i--) {
    size_t j = next_random() % i;
    uint32_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  for (size_t i = 0; i < lines; i++)
    *(char **)(buf + (size_t)i * LINE) = buf + (size_t)perm[i] * LINE;
  munmap(perm, lines * sizeof *perm);

  size_t steps = lines < 4000000 ? lines : 4000000;
  char *p = buf;
  for (size_t i = 0; i < steps / 4; i++)   /* warm the page tables a little */
    p = *(char **)p;
  double t0 = now_ns();
  for (size_t i = 0; i < steps; i++)
    p = *(char **)p;
  *dep_ns = (now_ns() - t0) / (double)steps;

  char *c[CHAINS];
  for (int k = 0; k < CHAINS; k++) {   /* eight starting points spread along the cycle */
    c[k] = p;
    for (size_t i = 0; i < 97 + (size_t)k * 131; i++)
      p = *(char **)p;
  }
  size_t rounds = steps / CHAINS * 2;
  t0 = now_ns();
  for (size_t i = 0; i < rounds; i++)
    for (int k = 0; k < CHAINS; k++)
      c[k] = *(char **)c[k];
  *par_ns = (now_ns() - t0) / (double)(rounds * CHAINS);
  uintptr_t sink = 0;
  for (int k = 0; k < CHAINS; k++)
    sink ^= (uintptr_t)c[k];
  if (sink == 1)
    puts("");
  munmap(buf, bytes);
}

/* ---------------------------------------------------------------------------------------------
 * nheap: a random-order tree of 64-byte objects, marked by one core.
 * ------------------------------------------------------------------------------------------- */

static void stats(nh_stats_t *s) {
  memset(s, 0, sizeof *s);
  s->size = sizeof *s;
  if (nh_stats_read(s) != 0) {
    fprintf(stderr, "mark_rate: nh_stats_read failed\n");
    exit(1);
  }
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  size_t heap_mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 1024;
  size_t probe_mib = argc > 2 ? strtoul(argv[2], NULL, 10) : 512;
  if (heap_mib == 0 || probe_mib == 0) {
    fprintf(stderr, "usage: nheap-mark-rate [heap MiB (1024)] [probe MiB (512)]\n");
    return 2;
  }
  double dep_ns, par_ns;
  probe(probe_mib, &dep_ns, &par_ns);

  nh_options o;
  nh_options_init(&o);
  o.gc = NH_GC_STW;
  o.gc_percent = -1;   /* only the collections asked for below */
  if (nh_init(&o) != 0) {
    fprintf(stderr, "mark_rate: nh_init failed\n");
    return 1;
  }
  size_t n = (heap_mib << 20) / sizeof(node);
  node **by_order = map_or_die(n * sizeof *by_order);   /* not a root: mmap'd, not nheap's */
  for (size_t i = 0; i < n; i++) {
    by_order[i] = nh_alloc(sizeof(node));
    if (!by_order[i]) {
      fprintf(stderr, "mark_rate: out of memory after %zu objects\n", i);
      return 1;
    }
  }
  for (size_t i = n - 1; i > 0; i--) {   /* tree position i gets a random object */
    size_t j = next_random() % (i + 1);
    node *t = by_order[i];
    by_order[i] = by_order[j];
    by_order[j] = t;
  }
  for (size_t i = 0; i < n; i++) {
    node *x = by_order[i];
    if (2 * i + 1 < n)
      nh_store((void **)&x->left, by_order[2 * i + 1]);
    if (2 * i + 2 < n)
      nh_store((void **)&x->right, by_order[2 * i + 2]);
    for (int k = 0; k < 6; k++)
      x->payload[k] = i + (uint64_t)k;   /* small integers: words the scan rejects */
  }
  root = by_order[0];
  munmap(by_order, n * sizeof *by_order);

  nh_gc();   /* warm: the first sweep, metadata touched */
  enum { RUNS = 3 };
  double gbs[RUNS], per_obj[RUNS], per_word[RUNS];
  nh_stats_t a, b;
  for (int r = 0; r < RUNS; r++) {
    stats(&a);
    nh_gc();
    stats(&b);
    double ns = (double)(b.gc_mark_ns - a.gc_mark_ns);
    double scanned = (double)(b.gc_scan_local_bytes + b.gc_scan_remote_bytes - a.gc_scan_local_bytes -
                              a.gc_scan_remote_bytes);
    gbs[r] = (double)b.heap_marked_bytes / ns;
    per_obj[r] = ns / (double)n;
    per_word[r] = scanned > 0 ? ns / (scanned / 8) : 0;
  }
  qsort(gbs, RUNS, sizeof *gbs, cmp_double);
  qsort(per_obj, RUNS, sizeof *per_obj, cmp_double);
  qsort(per_word, RUNS, sizeof *per_word, cmp_double);
  /* The tree must still be whole: every node reached from the root, payloads intact. */
  size_t count = 0;
  node **stack = map_or_die(64 * sizeof(node *) * 2);
  size_t top = 0;
  stack[top++] = root;
  while (top) {
    node *x = stack[--top];
    count++;
    if (x->payload[5] != x->payload[0] + 5) {
      fprintf(stderr, "mark_rate: a node's payload changed\n");
      return 1;
    }
    if (x->right)
      stack[top++] = x->right;
    if (x->left)
      stack[top++] = x->left;
  }
  printf("RESULT system=nheap check=%zu heap_mib=%zu objects=%zu probe_mib=%zu probe_dependent_ns=%.1f "
         "probe_8chain_ns=%.1f limit_gbs=%.3f mark_gbs=%.3f mark_ns_per_object=%.2f mark_ns_per_word=%.3f "
         "marked_mib=%.1f arenas_thp=%llu arenas_hugetlb=%llu arenas_4k=%llu\n",
         count, heap_mib, n, probe_mib, dep_ns, par_ns, LINE / par_ns, gbs[RUNS / 2], per_obj[RUNS / 2],
         per_word[RUNS / 2], (double)b.heap_marked_bytes / (1 << 20), (unsigned long long)b.arenas_thp,
         (unsigned long long)b.arenas_hugetlb, (unsigned long long)b.arenas_small);
  nh_shutdown();
  return count == n ? 0 : 1;
}
