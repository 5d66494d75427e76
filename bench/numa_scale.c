/*
 * numa_scale.c — the NUMA scaling benchmark (nheap-numa-scale): a churn workload's throughput
 * and the collector's mark rate with memory local to each thread's node (numa = auto,
 * numa_policy = local), interleaved over the nodes (interleave), and with NUMA ignored
 * (numa = off), on the machine it runs on.
 *
 * Workload: one thread per CPU of the nodes in use, each pinned to its CPU, keeps a live set
 * of live/threads bytes in objects of 16..512 bytes in a ring (slot i's object points to slot
 * i+1's, so the mark follows pointers as well as scanning the slot array), and replaces random
 * ones with new objects (relinking the ring, so the live set stays the same size) for
 * `seconds`; gc = concurrent keeps the heap at its goal. Per mode:
 *   replacements/s   all threads together;
 *   mark rate        heap bytes the markers scanned per second of concurrent marking;
 *   local            of those bytes, the share on the scanning marker's own node;
 *   placement        of a sample of in-use pages, the share resident on the node nheap meant
 *                    (nh_stats_nodes; local only: interleave and numa = off mean no node);
 *   cycles, steals, pause p50 / max, peak heap in use.
 * With numa = off nheap sees one node, so every scan is "local" and nothing is placed.
 *
 * Usage: nheap-numa-scale [--seconds S] [--live MiB] [--nodes K] [--modes local,interleave,off]
 *                         [--json FILE]
 * --nodes K runs the threads on the first K nodes only (nheap still places memory and markers
 * on every node): on a multi-socket host, K = 1 .. N gives the scaling curve. The table goes to
 * stdout; --json writes one document; every result is also printed as a line
 * "NHEAP-BENCH-JSON: {...}", which bench/numa_scale.sh collects from the QEMU guest of
 * tests/numa-vm (1, 2 and 4 nodes: `make numa-bench`).
 */
#define _GNU_SOURCE
#include <numa.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nheap.h>

typedef struct obj { struct obj *link; uint64_t payload[]; } obj;

typedef struct worker {
  pthread_t tid;
  int cpu;
  size_t nslots;
  obj **slots;              /* a heap object; reachable from this global array */
  uint64_t ops;
  uint64_t seed;
} worker;

enum { MAX_THREADS = 256 };
static worker workers[MAX_THREADS];
static int nthreads;
static atomic_int phase;  /* 0: fill, 1: go, 2: stop */
static atomic_int filled;

static uint64_t rnd(uint64_t *s) {
  *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
  return *s;
}

static obj *new_obj(uint64_t *seed, obj *link) {
  size_t size = 16 + rnd(seed) % 497;
  obj *o = nh_alloc(size);
  if (o)
    nh_store((void **)&o->link, link);
  return o;
}

static void *run(void *arg) {
  worker *w = arg;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(w->cpu, &set);
  sched_setaffinity(0, sizeof set, &set);
  size_t n = w->nslots;
  w->slots = nh_alloc(n * sizeof *w->slots);
  for (size_t i = 0; w->slots && i < n; i++)
    nh_store((void **)&w->slots[i], new_obj(&w->seed, NULL));
  for (size_t i = 0; w->slots && i < n; i++)
    if (w->slots[i])
      nh_store((void **)&w->slots[i]->link, w->slots[(i + 1) % n]);
  atomic_fetch_add(&filled, 1);
  while (atomic_load(&phase) == 0)
    sched_yield();
  uint64_t ops = 0;
  while (w->slots && atomic_load_explicit(&phase, memory_order_relaxed) == 1) {
    for (int k = 0; k < 64; k++) {
      size_t i = rnd(&w->seed) % n;
      obj *o = new_obj(&w->seed, w->slots[(i + 1) % n]), *prev = w->slots[(i + n - 1) % n];
      if (!o || !prev)
        break;
      nh_store((void **)&w->slots[i], o);
      nh_store((void **)&prev->link, o);
    }
    ops += 64;
  }
  w->ops = ops;
  return NULL;
}

typedef struct result {
  const char *mode;
  double ops_per_s, mark_mib_s, local_share, placed_share, pause_p50_ms, pause_max_ms, heap_peak_mib;
  uint64_t cycles, steals, nodes_seen;
  int ok;
} result;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static nh_stats_t read_stats(void) {
  nh_stats_t s = {.size = sizeof s};
  nh_stats_read(&s);
  return s;
}

static result run_mode(const char *mode, double seconds, size_t live) {
  result r = {.mode = mode};
  nh_options o;
  nh_options_init(&o);
  o.gc = NH_GC_CONCURRENT;
  o.numa = strcmp(mode, "off") == 0 ? "off" : "auto";
  o.numa_policy = strcmp(mode, "interleave") == 0 ? NH_NUMA_INTERLEAVE : NH_NUMA_LOCAL;
  if (nh_init(&o) != 0)
    return r;
  atomic_store(&phase, 0);
  atomic_store(&filled, 0);
  for (int t = 0; t < nthreads; t++) {
    workers[t].nslots = live / (size_t)nthreads / 264 + 1;   /* 264: the mean object size */
    workers[t].seed = 0x9e3779b97f4a7c15u * (uint64_t)(t + 1);
    workers[t].ops = 0;
    pthread_create(&workers[t].tid, NULL, run, &workers[t]);
  }
  while (atomic_load(&filled) < nthreads)
    usleep(1000);
  nh_gc();   /* the fill's garbage out of the way: the timed part starts at the live set */
  nh_stats_t a = read_stats();
  double t0 = now_s(), peak = 0;
  atomic_store(&phase, 1);
  while (now_s() - t0 < seconds) {
    usleep(20000);
    nh_stats_t s = read_stats();
    if (s.heap_inuse_bytes > peak)
      peak = (double)s.heap_inuse_bytes;
  }
  nh_stats_t b = read_stats();
  nh_node_stat_t ns[64];
  long nodes = nh_stats_nodes(ns, 64, 2000);
  atomic_store(&phase, 2);
  double elapsed = now_s() - t0;
  uint64_t ops = 0;
  for (int t = 0; t < nthreads; t++) {
    pthread_join(workers[t].tid, NULL);
    ops += workers[t].ops;
    r.ok += workers[t].slots != NULL;
  }
  r.ok = r.ok == nthreads;
  uint64_t local = b.gc_scan_local_bytes - a.gc_scan_local_bytes;
  uint64_t remote = b.gc_scan_remote_bytes - a.gc_scan_remote_bytes;
  double mark_s = (double)(b.gc_mark_ns - a.gc_mark_ns) / 1e9;
  uint64_t on = 0, sampled = 0;
  for (long n = 0; n < nodes && n < 64; n++)
    on += ns[n].pages_on_node, sampled += ns[n].pages_on_node + ns[n].pages_elsewhere;
  r.ops_per_s = (double)ops / elapsed;
  r.cycles = b.gc_cycles - a.gc_cycles;
  r.mark_mib_s = mark_s > 0 ? (double)(local + remote) / 1048576.0 / mark_s : 0;
  r.local_share = local + remote ? (double)local / (double)(local + remote) : 0;
  r.placed_share = sampled && strcmp(mode, "local") == 0 ? (double)on / (double)sampled : -1;
  r.steals = b.gc_mark_steals - a.gc_mark_steals;
  r.pause_p50_ms = b.pause_p50_ns / 1e6;
  r.pause_max_ms = b.pause_max_ns / 1e6;
  r.heap_peak_mib = peak / 1048576.0;
  r.nodes_seen = b.numa_nodes;
  nh_shutdown();
  return r;
}

static int json(char *buf, size_t n, const result *r, int nodes_present, int nodes_used, double seconds, size_t live) {
  return snprintf(buf, n,
                  "{\"mode\": \"%s\", \"nodes_present\": %d, \"nodes_used\": %d, \"nodes_seen\": %llu, "
                  "\"threads\": %d, \"seconds\": %.1f, \"live_mib\": %zu, \"ok\": %s, \"ops_per_s\": %.0f, "
                  "\"cycles\": %llu, \"mark_mib_per_s\": %.1f, \"local_share\": %.4f, \"placed_share\": %.4f, "
                  "\"steals\": %llu, \"pause_p50_ms\": %.3f, \"pause_max_ms\": %.3f, \"heap_peak_mib\": %.1f}",
                  r->mode, nodes_present, nodes_used, (unsigned long long)r->nodes_seen, nthreads, seconds,
                  live >> 20, r->ok ? "true" : "false", r->ops_per_s, (unsigned long long)r->cycles, r->mark_mib_s,
                  r->local_share, r->placed_share, (unsigned long long)r->steals, r->pause_p50_ms,
                  r->pause_max_ms, r->heap_peak_mib);
}

/* The CPUs of the first `use` nodes that this process may run on, into workers[].cpu. */
static int pick_cpus(int use, int present) {
  cpu_set_t allowed;
  sched_getaffinity(0, sizeof allowed, &allowed);
  int n = 0;
  for (int c = 0; c < CPU_SETSIZE && n < MAX_THREADS; c++) {
    if (!CPU_ISSET(c, &allowed))
      continue;
    int node = present > 1 ? numa_node_of_cpu(c) : 0;
    if (node >= 0 && node < use)
      workers[n++].cpu = c;
  }
  return n;
}

int main(int argc, char **argv) {
  double seconds = 3;
  size_t live = (size_t)64 << 20;
  int use = 0;
  const char *modes = "local,interleave,off", *json_path = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
      seconds = atof(argv[++i]);
    else if (strcmp(argv[i], "--live") == 0 && i + 1 < argc)
      live = (size_t)atol(argv[++i]) << 20;
    else if (strcmp(argv[i], "--nodes") == 0 && i + 1 < argc)
      use = atoi(argv[++i]);
    else if (strcmp(argv[i], "--modes") == 0 && i + 1 < argc)
      modes = argv[++i];
    else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc)
      json_path = argv[++i];
    else {
      fprintf(stderr, "usage: %s [--seconds S] [--live MiB] [--nodes K] [--modes local,interleave,off] [--json FILE]\n",
              argv[0]);
      return 2;
    }
  }
  int present = numa_available() < 0 ? 1 : numa_max_node() + 1;
  if (use <= 0 || use > present)
    use = present;
  nthreads = pick_cpus(use, present);
  if (nthreads == 0 || seconds <= 0 || live == 0) {
    fprintf(stderr, "numa-scale: no CPU to run on in the first %d node(s), or a bad size\n", use);
    return 2;
  }
  printf("NUMA scaling: %d of %d node(s), %d thread(s), %zu MiB live, %.1f s per mode\n", use, present, nthreads,
         live >> 20, seconds);
  printf("%-11s %12s %7s %12s %7s %9s %7s %10s %10s %10s\n", "mode", "replace/s", "cycles", "mark MiB/s", "local",
         "placement", "steals", "p50 ms", "max ms", "peak MiB");
  FILE *out = json_path ? fopen(json_path, "w") : NULL;
  if (out)
    fprintf(out, "{\"benchmark\": \"numa-scale\", \"results\": [\n");
  char list[256], buf[1024];
  snprintf(list, sizeof list, "%s", modes);
  run_mode(strtok(strcpy(buf, list), ","), seconds / 2, live);   /* warm-up: the first mode, dropped */
  int failed = 0, first = 1;
  for (char *save, *m = strtok_r(list, ",", &save); m; m = strtok_r(NULL, ",", &save)) {
    result r = run_mode(m, seconds, live);
    failed += !r.ok;
    char placed[16] = "-";
    if (r.placed_share >= 0)
      snprintf(placed, sizeof placed, "%.1f%%", 100 * r.placed_share);
    printf("%-11s %12.0f %7llu %12.1f %6.1f%% %9s %7llu %10.3f %10.3f %10.1f\n", m, r.ops_per_s,
           (unsigned long long)r.cycles, r.mark_mib_s, 100 * r.local_share, placed, (unsigned long long)r.steals,
           r.pause_p50_ms, r.pause_max_ms, r.heap_peak_mib);
    json(buf, sizeof buf, &r, present, use, seconds, live);
    printf("NHEAP-BENCH-JSON: %s\n", buf);
    if (out)
      fprintf(out, "%s  %s", first ? "" : ",\n", buf);
    first = 0;
    fflush(stdout);
  }
  if (out) {
    fprintf(out, "\n]}\n");
    fclose(out);
  }
  printf("NHEAP-NUMA: %s\n", failed ? "FAIL" : "PASS");
  return failed != 0;
}
