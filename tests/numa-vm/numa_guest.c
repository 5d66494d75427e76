/*
 * numa_guest.c — the NUMA checks that need a real multi-node machine, run inside the QEMU guest
 * that tests/numa-vm/run.sh boots (2 or 4 nodes, one CPU each). Statically linked: the guest
 * has only busybox. Prints one line per check and the verdict "NHEAP-NUMA: PASS" or
 * "NHEAP-NUMA: FAIL", which run.sh looks for on the console.
 *
 * Checks: nheap sees every node the kernel has (numa = auto); a thread pinned to each node's
 * CPU gets large and small objects whose pages lie on that node (move_pages in query mode),
 * even though a thread on another node touches them first: the kernel's first-touch policy
 * alone would put them there, nheap's binding (mbind before first touch) must not; and
 * nh_stats_nodes, asked afterwards, finds every sampled resident page on its own node. Then,
 * with numa_policy = interleave, a large object's pages spread over every node.
 */
#define _GNU_SOURCE
#include <numa.h>
#include <numaif.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nheap.h>

static int failures;

static void check(int ok, const char *what) {
  printf("NHEAP-NUMA: %s: %s\n", ok ? "ok" : "FAILED", what);
  failures += !ok;
}

/* The share of [p, p + n) whose pages lie on node (pages touched first). */
static double share_on(char *p, size_t n, int node) {
  enum { MAX = 4096 };
  static void *pages[MAX];
  static int where[MAX];
  size_t count = 0;
  for (size_t off = 0; off < n && count < MAX; off += 4096) {
    p[off] = 1;
    pages[count++] = p + off;
  }
  if (move_pages(0, count, pages, NULL, where, 0) != 0)
    return -1;
  size_t on = 0;
  for (size_t i = 0; i < count; i++)
    on += where[i] == node;
  return (double)on / (double)count;
}

typedef struct job { int node, cpu; char *big, *small[2048]; } job;

static int pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof set, &set);
}

/* On the node's CPU: allocate, touch nothing. */
static void *allocate_on_node(void *arg) {
  job *j = arg;
  if (pin(j->cpu) != 0)
    return NULL;
  j->big = nh_alloc_noscan(8 << 20);
  for (int i = 0; i < 2048; i++)   /* 2048 x 1 KiB: fresh spans from this CPU's cache */
    j->small[i] = nh_alloc_noscan(1024);
  return NULL;
}

static int node_cpu(int node) {
  struct bitmask *cpus = numa_allocate_cpumask();
  numa_node_to_cpus(node, cpus);
  int cpu = -1;
  for (unsigned c = 0; c < cpus->size && cpu < 0; c++)
    if (numa_bitmask_isbitset(cpus, c))
      cpu = (int)c;
  numa_free_cpumask(cpus);
  return cpu;
}

int main(void) {
  int nodes = numa_available() < 0 ? 1 : numa_max_node() + 1;
  nh_options o;
  nh_options_init(&o);
  o.gc = NH_GC_OFF;   /* every object stays: the placement check at the end counts them all */
  o.hugepages = NH_HUGEPAGES_NONE;
  if (nh_init(&o) != 0) {
    printf("NHEAP-NUMA: FAIL (nh_init)\n");
    return 1;
  }
  nh_stats_t s = {.size = sizeof s};
  nh_stats_read(&s);
  char what[160];
  snprintf(what, sizeof what, "nheap sees %llu node(s), the kernel %d", (unsigned long long)s.numa_nodes, nodes);
  check((int)s.numa_nodes == nodes && nodes > 1, what);
  static job j;
  for (int node = 0; node < nodes; node++) {
    memset(&j, 0, sizeof j);
    j.node = node;
    j.cpu = node_cpu(node);
    pthread_t t;
    pthread_create(&t, NULL, allocate_on_node, &j);
    pthread_join(t, NULL);
    int other = node_cpu((node + 1) % nodes);   /* first touch from another node */
    if (j.cpu < 0 || other < 0 || pin(other) != 0 || !j.big) {
      check(0, "pinning to the nodes' CPUs, or the allocation, failed");
      continue;
    }
    double large = share_on(j.big, 8 << 20, node);
    size_t on = 0, n = 0;
    for (int i = 0; i < 2048; i++) {
      if (!j.small[i])
        continue;
      memset(j.small[i], 1, 1024);
      int where;
      void *pg = (void *)((uintptr_t)j.small[i] & ~(uintptr_t)4095);
      if (move_pages(0, 1, &pg, NULL, &where, 0) == 0 && ++n)
        on += where == node;
    }
    snprintf(what, sizeof what, "node %d (CPU %d, touched from CPU %d): large object pages on it %.0f%%", node,
             j.cpu, other, large * 100);
    check(large >= 0.99, what);
    snprintf(what, sizeof what, "node %d: small object pages on it %.0f%% of %zu", node,
             n ? 100.0 * (double)on / (double)n : 0.0, n);
    check(n > 0 && on == n, what);
  }
  nh_node_stat_t ns[8];
  long count = nh_stats_nodes(ns, 8, 2000);
  for (long n = 0; n < count && n < 8; n++) {
    snprintf(what, sizeof what, "nh_stats_nodes node %d: %llu MiB in use, sampled %llu: %llu on it, %llu elsewhere",
             ns[n].node, (unsigned long long)(ns[n].inuse_bytes >> 20), (unsigned long long)ns[n].sampled_pages,
             (unsigned long long)ns[n].pages_on_node, (unsigned long long)ns[n].pages_elsewhere);
    check(ns[n].pages_on_node > 0 && ns[n].pages_elsewhere == 0, what);
  }
  nh_shutdown();

  o.numa_policy = NH_NUMA_INTERLEAVE;
  if (nh_init(&o) != 0) {
    printf("NHEAP-NUMA: FAIL (nh_init, interleave)\n");
    return 1;
  }
  enum { BIG = 16 << 20 };
  char *big = nh_alloc_noscan(BIG);
  static void *pages[BIG / 4096];
  static int where[BIG / 4096];
  int per[8] = {0};
  size_t npages = 0;
  for (size_t off = 0; big && off < BIG; off += 4096) {
    big[off] = 1;
    pages[npages++] = big + off;
  }
  if (npages && move_pages(0, npages, pages, NULL, where, 0) == 0)
    for (size_t i = 0; i < npages; i++)
      if (where[i] >= 0 && where[i] < 8)
        per[where[i]]++;
  for (int n = 0; n < nodes && n < 8; n++) {
    snprintf(what, sizeof what, "interleave: node %d holds %d of %zu pages of one 16 MiB object", n, per[n], npages);
    check(npages && per[n] >= (int)(npages / (size_t)nodes / 2), what);
  }
  nh_shutdown();
  printf("NHEAP-NUMA: %s\n", failures ? "FAIL" : "PASS");
  return failures != 0;
}
