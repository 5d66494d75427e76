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
 * with numa_policy = interleave, a large object's pages spread over every node. Then, with the
 * concurrent collector and a dedicated marker per node (the default layout would make each a
 * fractional one on these one-CPU nodes, resting most of the time: tests/test_gc_concurrent.c
 * checks that layout on fake nodes): each node's marker is pinned to its CPU; nh_alloc_onnode places
 * objects on the node asked from another node's CPU; freeing them there counts as remote
 * frees; and marking a heap built on every node scans mostly memory local to the marker.
 * Last, the statistics of a heap on every node, as nh_stats_write's JSON and OpenMetrics, one
 * console line each prefixed "NHSTATS-JSON: " / "NHSTATS-OM: ", for the host's parsers
 * (tests/stats/numa_vm_stats.sh).
 */
#define _GNU_SOURCE
#include <dirent.h>
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

/* The first CPU the thread named name may run on (-1: none, -2: several), from /proc. */
static int thread_cpu(const char *name) {
  int found = -1;
  DIR *d = opendir("/proc/self/task");
  for (struct dirent *e; d && (e = readdir(d));) {
    char path[300], line[256] = "";
    snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
    FILE *f = fopen(path, "r");
    if (!f)
      continue;
    int same = fgets(line, sizeof line, f) && strncmp(line, name, strlen(name)) == 0 && line[strlen(name)] == '\n';
    fclose(f);
    snprintf(path, sizeof path, "/proc/self/task/%s/status", e->d_name);
    if (!same || !(f = fopen(path, "r")))
      continue;
    while (fgets(line, sizeof line, f))
      if (strncmp(line, "Cpus_allowed_list:", 18) == 0) {
        char *end, *p = line + 18;
        long cpu = strtol(p, &end, 10);
        found = found == -1 && (*end == '\n' || *end == 0) ? (int)cpu : -2;
      }
    fclose(f);
  }
  if (d)
    closedir(d);
  return found;
}

/* A list of n conservative objects built by a thread on cpu: that node's memory. */
typedef struct list { int cpu; long n; void **head; } list;

static void *build_list(void *arg) {
  list *l = arg;
  if (pin(l->cpu) != 0)
    return NULL;
  for (long i = 0; i < l->n; i++) {
    void **x = nh_alloc(32);
    if (!x)
      return NULL;
    x[0] = l->head;
    nh_store((void **)&l->head, x);
  }
  return NULL;
}

static list lists[8];   /* globals: roots */

static void concurrent_checks(int nodes) {
  cpu_set_t all;   /* nh_init places the markers on the CPUs its thread may use: all of them */
  CPU_ZERO(&all);
  for (int n = 0; n < nodes; n++)
    CPU_SET(node_cpu(n), &all);
  sched_setaffinity(0, sizeof all, &all);
  nh_options o;
  nh_options_init(&o);
  o.gc = NH_GC_CONCURRENT;
  o.hugepages = NH_HUGEPAGES_NONE;
  o.mark_workers = nodes;   /* one dedicated marker per node, as a real machine's 25% gives */
  if (nh_init(&o) != 0) {
    check(0, "nh_init, gc = concurrent");
    return;
  }
  nh_stats_t s = {.size = sizeof s};
  nh_stats_read(&s);
  check(s.gc_mode == NH_GC_CONCURRENT, "gc = concurrent runs in the guest");
  char what[200], name[16];
  for (int n = 0; n < nodes; n++) {
    snprintf(name, sizeof name, n ? "nheap-mark-n%d" : "nheap-gc", n);
    int cpu = thread_cpu(name);
    snprintf(what, sizeof what, "node %d's marker %s is pinned to CPU %d (its node's: %d)", n, name, cpu, node_cpu(n));
    check(cpu >= 0 && cpu == node_cpu(n), what);
  }

  /* nh_alloc_onnode from node 0's CPU, touched there first; then freed there: remote frees
   * (with no mark running, which would leave the frees to the collector). */
  nh_set_gc_percent(-1);
  nh_gc();
  pin(node_cpu(0));
  int target = nodes - 1;
  char *big = nh_alloc_onnode(4 << 20, target);
  static char *small[1024];
  size_t on = 0, n = 0;
  for (int i = 0; i < 1024; i++)
    small[i] = nh_alloc_onnode(256, target);
  for (int i = 0; i < 1024; i++) {
    if (!small[i])
      continue;
    memset(small[i], 1, 256);
    int where;
    void *pg = (void *)((uintptr_t)small[i] & ~(uintptr_t)4095);
    if (move_pages(0, 1, &pg, NULL, &where, 0) == 0 && ++n)
      on += where == target;
  }
  double large = big ? share_on(big, 4 << 20, target) : 0;
  snprintf(what, sizeof what, "nh_alloc_onnode(.., %d) from CPU %d: large object pages on node %d %.0f%%, small %zu of %zu",
           target, node_cpu(0), target, large * 100, on, n);
  check(large >= 0.99 && n == 1024 && on == n, what);
  nh_free(big);
  for (int i = 0; i < 1024; i++)
    nh_free(small[i]);
  nh_node_stat_t ns[8];
  nh_stats_nodes(ns, 8, 0);
  snprintf(what, sizeof what, "node %d's objects freed on node 0's CPU: %llu remote frees counted", target,
           (unsigned long long)ns[target].remote_frees);
  check(ns[target].remote_frees == 1025, what);

  /* Marking: a list per node, built on its CPU; two cycles scan them. */
  for (int k = 0; k < nodes; k++) {
    lists[k] = (list){.cpu = node_cpu(k), .n = 50000};
    pthread_t t;
    pthread_create(&t, NULL, build_list, &lists[k]);
    pthread_join(t, NULL);
  }
  nh_stats_t before = {.size = sizeof before};
  nh_stats_read(&before);
  nh_gc();
  nh_gc();
  nh_stats_read(&s);
  uint64_t local = s.gc_scan_local_bytes - before.gc_scan_local_bytes;
  uint64_t remote = s.gc_scan_remote_bytes - before.gc_scan_remote_bytes;
  long intact = 0;
  for (int k = 0; k < nodes; k++)
    for (void **x = lists[k].head; x; x = x[0])
      intact++;
  snprintf(what, sizeof what, "marking %d x 50000 objects twice: %llu KiB scanned on the marker's node, %llu KiB on "
           "another, %llu steals; %ld objects intact", nodes, (unsigned long long)(local >> 10),
           (unsigned long long)(remote >> 10), (unsigned long long)(s.gc_mark_steals - before.gc_mark_steals), intact);
  check(intact == 50000L * nodes && local >= 2 * 32 * 50000ull * (uint64_t)nodes * 3 / 4 && local > 4 * remote, what);
  nh_shutdown();
}

/* A heap with objects on every node, concurrent collector and perf counters: its statistics
 * in both formats, line by line on the console. */
static void print_file(const char *path, const char *prefix) {
  FILE *f = fopen(path, "r");
  char line[4096];
  while (f && fgets(line, sizeof line, f))
    printf("%s%s", prefix, line);
  if (f)
    fclose(f);
}

static void stats_dump(int nodes) {
  nh_options o;
  nh_options_init(&o);
  o.gc = NH_GC_CONCURRENT;
  o.perf_events = "task-clock,page-faults";
  if (nh_init(&o) != 0) {
    check(0, "nh_init for the statistics");
    return;
  }
  static void *keep[4096];
  for (int round = 0; round < 3; round++) {
    for (int i = 0; i < 4096; i++)
      keep[i] = nh_alloc_onnode(i % 512 == 0 ? 100000 : 16 + (size_t)(i % 1000), i % nodes);
    nh_gc();
  }
  check(keep[0] && keep[4095], "a heap on every node for the statistics");
  const char *const paths[2] = {"/stats.json", "/stats.om"};
  const nh_stats_format fmts[2] = {NH_STATS_JSON, NH_STATS_OPENMETRICS};
  for (int k = 0; k < 2; k++) {
    FILE *f = fopen(paths[k], "w");
    check(f && nh_stats_write(fileno(f), fmts[k]) == 0, k ? "nh_stats_write, OpenMetrics" : "nh_stats_write, JSON");
    if (f)
      fclose(f);
  }
  nh_shutdown();
  fflush(stdout);
  print_file(paths[0], "NHSTATS-JSON: ");
  print_file(paths[1], "NHSTATS-OM: ");
  fflush(stdout);
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
  concurrent_checks(nodes < 8 ? nodes : 8);
  stats_dump(nodes);
  printf("NHEAP-NUMA: %s\n", failures ? "FAIL" : "PASS");
  return failures != 0;
}
