/*
 * report.c — nheap-report, the main job (`make run`): runs the benchmark suite, nheap beside
 * its peers, and writes build/report: results.json, report.md and PNG plots (gnuplot).
 *
 * The suite (sizes: --quick, the default, for `make run`; --full for `make bench-full`):
 *   binary-trees     the Benchmarks Game's, 1 and 2 threads: nheap concurrent, nobarrier, stw
 *                    and off (explicit free), bdwgc and bdwgc incremental, Go, and glibc,
 *                    jemalloc, mimalloc, tcmalloc (gperftools') with explicit free (the malloc
 *                    build under LD_PRELOAD of each); at 1 thread also the bdwgc build itself on
 *                    nheap's libgc.so.1 (core/gcabi.c, through LD_LIBRARY_PATH)
 *   gcbench          Boehm's GCBench through nheap_gc_compat.h: nheap, bdwgc, bdwgc incremental,
 *                    and the bdwgc build on nheap's libgc.so.1
 *   gc-pause         a steady live heap (1 GiB full) with 2 mutators replacing subtrees:
 *                    nheap concurrent, nobarrier and stw, bdwgc (both modes), Go
 *   kvserver         examples/kvserver, a key-value server on loopback under an open-loop load:
 *                    nheap concurrent, nobarrier, stw and off (no collector: the baseline),
 *                    bdwgc (both modes), Go
 *   malloc           the allocator micro-benchmarks (nheap-bench-malloc): medians of its own
 *                    repetitions, randomly interleaved, nheap beside glibc, jemalloc, mimalloc
 *                    and tcmalloc
 *   stats            what reading nheap's statistics costs after 1,000 cycles
 *                    (nheap-stats-read): nh_stats_read, each nh_stat, a whole scrape
 * A system whose program or library is not installed is skipped and said so.
 *
 * Like for like, because every goal of the performance issues is read off this report:
 * - Environment: what could steer a system (NHEAP_*, GO*, GC_*, MALLOC_*, MIMALLOC_*, ...) is
 *   cleared at start (pin_environment); each system runs with exactly the settings the suite
 *   gives it, recorded per row. NHEAP_CONFIG stays: it names the configuration under test.
 * - Page backing: nheap's arenas take huge pages (THP, or the hugetlb pool where the machine
 *   has one); each peer gets the huge pages it can use (malloc_peers). What backed each run is
 *   measured, not assumed: the pool's pages in use and the process's THP (smaps), sampled while
 *   it runs; peak RSS adds the hugetlb pages, which the kernel's figure leaves out.
 * - Checked output: each program reports a checksum of its work (node counts); a run whose
 *   check differs from the one the sizes imply fails loudly, and the report exits non-zero.
 * - Modes: a row shows the mode its program says it ran, flagged where it differs from the
 *   one asked (nheap falls back to stw without userfaultfd write-protect).
 * - Pauses: every pause of the measured part, each the world stopped: nheap's own record (a
 *   poller reads it while the program runs; pauses_lost counts any it missed), bdwgc's stop
 *   and start events, Go's gctrace (exact, two per cycle as nheap's; bdwgc has one). Beside
 *   them each system's collection time (gc_ms, defined in bench/gc_peer.h).
 * - Timing: each workload runs every system once as a warm-up, then `reps` rounds; each round
 *   starts at another system (A B C, B C A, ...), so drift on a shared machine falls on all
 *   alike and none is always first. A run past its timeout has its process group killed. A
 *   failed run is shown in its row and in the goal lines, never dropped silently.
 * - Open loop (kvserver): the warm-up measures each server's capacity closed-loop; the measured
 *   rounds send at one rate for all, 60% of the lowest capacity, and count each request's
 *   latency from when it was meant to be sent.
 *
 * Per run: wall time (measured here), user and sys time, peak RSS and page faults (wait4's
 * rusage, the whole process tree), and the program's RESULT line (bench/gc_peer.h). The report
 * quotes the median of the rounds, its min and max, and the ratio to the workload's first
 * system's median from the same run (with the range of the per-round ratios), never figures
 * from different runs.
 *
 * Besides the workloads: the allocators' micro-benchmarks (--only malloc), the mark rate of one
 * core against this machine's pointer-chasing limit (bench/mark_rate.c; --only mark-rate) and
 * the NUMA scaling in QEMU guests (--only numa).
 *
 * Output in --out (build/report): results.json (every run, failed ones too, the medians, the
 * environment), report.md (a table per workload, the goals with what this run measured),
 * data/ (timelines, pauses, latency curves of the last round, each program's stdout and
 * stderr), plots.gp (which loads the scripts of bench/plots, copied to plots/, one per kind of
 * plot) and the PNGs it makes: pauses-*.png (pause distribution per system),
 * heap-*.png (heap in use over time, GC cycles marked), latency.png (kvserver percentiles),
 * bars-*.png (time and peak RSS per system).
 *
 * Usage: nheap-report [--quick | --full | --smoke] [--reps N] [--timeout S] [--only WORKLOAD] [--out DIR] [--bin DIR]
 * (--smoke: every workload and plot at tiny sizes, one round: the test of this program;
 * --timeout: seconds per run, default 300 quick, 1200 full, 120 smoke).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { MAX_SYSTEMS = 16, MAX_WORKLOADS = 8, MAX_REPS = 15, MAX_KEYS = 96, MAX_ARGS = 28, MAX_ENV = 8, MAX_STR = 6 };

/* One run: the RESULT line's numeric fields and its words (system=concurrent), and how it
 * ended. */
typedef struct metrics {
  int n, ns;
  char key[MAX_KEYS][48];
  double val[MAX_KEYS];
  char skey[MAX_STR][24], sval[MAX_STR][48];
  int round;
  bool failed;
  char why[200];             /* why it failed */
} metrics;

typedef struct sysrun {
  const char *name;          /* "nheap concurrent" */
  const char *slug;          /* "nheap-concurrent": file names */
  const char *mode;          /* the mode it is meant to run (system= of its RESULT), or NULL */
  char *argv[MAX_ARGS];
  char preload[256];         /* LD_PRELOAD, or "" */
  char env[MAX_ENV][512];    /* NAME=value for its runs */
  int nenv;
  bool skip;                 /* not run at all (not installed), or no more runs (timed out) */
  bool broke;                /* a run of it failed (the warm-up's too) */
  char why[200];             /* why */
  metrics run[MAX_REPS];     /* measured rounds, failed ones too */
  int nruns, nfailed;
  metrics median;            /* over the runs that succeeded */
  double capacity;           /* open-loop workloads: the closed-loop throughput of the warm-up */
} sysrun;

typedef struct workload {
  const char *name, *title, *metric, *metric_title;   /* metric: the workload's own figure */
  bool higher_better;         /* for metric */
  bool timeline, latency;     /* which plots it has */
  bool open_loop;             /* kvserver: warm-up round closed-loop (capacity), then --rate */
  double rate;                /* the rate the measured rounds ran at */
  unsigned long long check;   /* the check every run must report (the sizes imply it) */
  sysrun sys[MAX_SYSTEMS];
  int nsys;
} workload;

static workload suite[MAX_WORKLOADS];
static int nworkloads;
static const char *bin = NULL, *out = "build/report";
static bool full, smoke;
static int failures;   /* runs that failed (not systems skipped for want of a program) */
static int reps = 3;
static int run_timeout_s = 300;   /* per run; past it the run's process group is killed */
static char only[64];

/* ---------------------------------------------------------------------------------------------
 * Small helpers.
 * ------------------------------------------------------------------------------------------- */

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "nheap-report: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(1);
}

static char *xstrdup(const char *s) {
  char *d = strdup(s);
  if (!d)
    die("out of memory");
  return d;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void put(metrics *m, const char *key, double v) {
  for (int i = 0; i < m->n; i++)
    if (strcmp(m->key[i], key) == 0) {
      m->val[i] = v;
      return;
    }
  if (m->n == MAX_KEYS)
    return;
  snprintf(m->key[m->n], sizeof m->key[0], "%s", key);
  m->val[m->n++] = v;
}

static bool get(const metrics *m, const char *key, double *v) {
  for (int i = 0; i < m->n; i++)
    if (strcmp(m->key[i], key) == 0) {
      *v = m->val[i];
      return true;
    }
  return false;
}

static void put_str(metrics *m, const char *key, const char *v) {
  for (int i = 0; i < m->ns; i++)
    if (strcmp(m->skey[i], key) == 0) {
      snprintf(m->sval[i], sizeof m->sval[0], "%s", v);
      return;
    }
  if (m->ns == MAX_STR)
    return;
  snprintf(m->skey[m->ns], sizeof m->skey[0], "%s", key);
  snprintf(m->sval[m->ns++], sizeof m->sval[0], "%s", v);
}

static const char *get_str(const metrics *m, const char *key) {
  for (int i = 0; i < m->ns; i++)
    if (strcmp(m->skey[i], key) == 0)
      return m->sval[i];
  return NULL;
}

static double getd(const metrics *m, const char *key) {
  double v;
  return get(m, key, &v) ? v : NAN;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
  if (n == 0)
    return NAN;
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static bool exists(const char *path) { return access(path, F_OK) == 0; }

/* A shared library of a malloc peer, from the distribution's usual places. */
static bool find_lib(const char *name, char *path, size_t n) {
  static const char *const dirs[] = {"/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64",
                                     "/usr/lib", "/usr/local/lib"};
  for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
    snprintf(path, n, "%s/%s", dirs[i], name);
    if (exists(path))
      return true;
  }
  return false;
}

static bool have_program(const char *name) {
  char cmd[256];
  snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", name);
  return system(cmd) == 0;
}

/* ---------------------------------------------------------------------------------------------
 * The suite.
 * ------------------------------------------------------------------------------------------- */

static workload *add_workload(const char *name, const char *title, const char *metric, const char *metric_title,
                              bool higher_better) {
  if (nworkloads == MAX_WORKLOADS)
    die("too many workloads");
  workload *w = &suite[nworkloads++];
  *w = (workload){.name = name, .title = title, .metric = metric, .metric_title = metric_title,
                  .higher_better = higher_better};
  return w;
}

/* A system: its command line (printf-style, split at spaces; a leading "@" is the build
 * directory) and, for the malloc peers, the library to preload. */
static void add_system(workload *w, const char *name, const char *slug, const char *preload, const char *fmt, ...) {
  if (w->nsys == MAX_SYSTEMS)
    die("too many systems");
  sysrun *s = &w->sys[w->nsys++];
  memset(s, 0, sizeof *s);
  s->name = name;
  s->slug = slug;
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  int n = 0;
  for (char *save = NULL, *tok = strtok_r(line, " ", &save); tok && n < MAX_ARGS - 1; tok = strtok_r(NULL, " ", &save)) {
    char arg[512];
    if (tok[0] == '@')
      snprintf(arg, sizeof arg, "%s/%s", bin, tok + 1);
    else
      snprintf(arg, sizeof arg, "%s", tok);
    s->argv[n++] = xstrdup(arg);
  }
  s->argv[n] = NULL;
  /* Every program the command names must be there (kvserver's load runs a server). */
  for (int i = 0; i < n; i++)
    if (s->argv[i][0] == '/' && !exists(s->argv[i])) {
      s->skip = true;
      snprintf(s->why, sizeof s->why, "%s is not built", s->argv[i] + strlen(bin) + 1);
    }
  if (preload && !s->skip && !find_lib(preload, s->preload, sizeof s->preload)) {
    s->skip = true;
    snprintf(s->why, sizeof s->why, "%s is not installed", preload);
  }
}

/* An environment variable for the last system added. */
static void system_env(workload *w, const char *kv) {
  sysrun *s = &w->sys[w->nsys - 1];
  if (s->nenv == MAX_ENV)
    die("too many variables for %s", s->name);
  if ((size_t)snprintf(s->env[s->nenv++], sizeof s->env[0], "%s", kv) >= sizeof s->env[0])
    die("the variable %s is too long", kv);
}

/* The nheap mode the last system added is meant to run: a run that reports another (a
 * fallback) is flagged in its row. */
static void system_mode(workload *w, const char *mode) { w->sys[w->nsys - 1].mode = mode; }

static char nproc_env[3][32];   /* GC_MARKERS=n, GOMAXPROCS=n: every CPU, for each collector */

/* The peers with the settings each runs under, stated in report.md. Every one gets the huge
 * pages it can use, as nheap's arenas get them (its default `hugepages = auto`): mimalloc its
 * large OS pages, jemalloc THP, glibc its hugetlb tunable (1: madvise THP), Go and bdwgc their
 * defaults (neither has a switch); gperftools' tcmalloc has none. */
static void malloc_peers(workload *w, const char *fmt, int a, int b) {
  static const struct { const char *name, *slug, *lib, *env; } peers[] = {
    {"glibc", "glibc", NULL, "GLIBC_TUNABLES=glibc.malloc.hugetlb=1"},
    {"jemalloc", "jemalloc", "libjemalloc.so.2", "MALLOC_CONF=thp:always,metadata_thp:auto"},
    {"mimalloc", "mimalloc", "libmimalloc.so.2", "MIMALLOC_LARGE_OS_PAGES=1"},
    {"tcmalloc (gperftools)", "tcmalloc", "libtcmalloc_minimal.so.4", NULL},
  };
  for (size_t i = 0; i < sizeof peers / sizeof peers[0]; i++) {
    char f[512];
    snprintf(f, sizeof f, fmt, peers[i].slug, a, b);
    add_system(w, peers[i].name, peers[i].slug, peers[i].lib, "%s", f);
    if (peers[i].env)
      system_env(w, peers[i].env);
  }
}

static void bdwgc_env(workload *w, bool incremental) {
  system_env(w, nproc_env[0]);   /* parallel marking on every CPU */
  if (incremental)
    system_env(w, "GC_ENABLE_INCREMENTAL=1");   /* its counterpart of concurrent-nobarrier */
  system_mode(w, incremental ? "bdwgc-incremental" : "bdwgc");
}

/* bdwgc's binary on nheap: libgc.so.1 from the build's gcabi directory (core/gcabi.c). */
static void gcabi_env(workload *w) {
  static char env[512];
  char *dir = realpath(bin, NULL);   /* the runs' working directory need not be this one */
  if (!dir || (size_t)snprintf(env, sizeof env, "LD_LIBRARY_PATH=%s/gcabi", dir) >= sizeof env)
    die("the build directory %s: %s", bin, dir ? "its path is too long" : strerror(errno));
  free(dir);
  system_env(w, env);
  system_mode(w, "nheap-gcabi");
}

static void go_env(workload *w) {
  system_env(w, nproc_env[1]);
  system_env(w, "GOGC=100");
  system_env(w, "GODEBUG=gctrace=1");   /* each pause exactly, from the trace (bench/go/peer) */
}

/* The node counts each workload's check must come to. */
static unsigned long long tree_nodes(int depth) { return (2ull << depth) - 1; }

static unsigned long long binary_trees_check(int max) {
  unsigned long long c = tree_nodes(max + 1) + tree_nodes(max);   /* stretch, long-lived */
  for (int d = 4; d <= max; d += 2)
    c += (1ull << (max - d + 4)) * tree_nodes(d);
  return c;
}

static unsigned long long gcbench_check(int stretch) {
  unsigned long long c = tree_nodes(stretch - 2);   /* the long-lived tree */
  for (int d = 4; d <= stretch - 2; d += 2)
    c += 2 * tree_nodes(d);   /* the last tree of each kind */
  return c;
}

static unsigned long long gc_pause_check(long live_mib) {   /* bench/gc_pause.c's tree of 32-byte nodes */
  int depth = 1;
  while ((2ull << depth) * 32 < (unsigned long long)live_mib << 20)
    depth++;
  return tree_nodes(depth);
}

static void build_suite(void) {
  int depth = full ? 21 : 18, gcb = full ? 20 : 18;
  int live = full ? 1024 : 128, secs = full ? 10 : 3, keys = full ? 100000 : 20000, kvsecs = full ? 15 : 3;
  if (smoke)   /* the test of this program: every path, tiny sizes */
    depth = 10, gcb = 10, live = 16, secs = 1, keys = 2000, kvsecs = 1;
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  snprintf(nproc_env[0], sizeof nproc_env[0], "GC_MARKERS=%ld", cpus);
  snprintf(nproc_env[1], sizeof nproc_env[1], "GOMAXPROCS=%ld", cpus);
  for (int threads = 1; threads <= 2; threads++) {
    workload *w = add_workload(threads == 1 ? "binary-trees" : "binary-trees-2t",
                               threads == 1 ? "binary-trees (1 thread)" : "binary-trees (2 threads)", NULL, NULL,
                               false);
    w->timeline = true;
    w->check = binary_trees_check(depth);
    add_system(w, "nheap concurrent", "nheap-concurrent", NULL, "@bench/nheap-binary-trees concurrent %d %d", depth,
               threads);
    system_mode(w, "concurrent");
    add_system(w, "nheap nobarrier (plain stores)", "nheap-nobarrier", NULL,
               "@bench/nheap-binary-trees-plain nobarrier %d %d", depth, threads);
    system_mode(w, "concurrent-nobarrier");
    add_system(w, "nheap stw", "nheap-stw", NULL, "@bench/nheap-binary-trees stw %d %d", depth, threads);
    system_mode(w, "stw");
    add_system(w, "nheap off (free)", "nheap-off", NULL, "@bench/nheap-binary-trees off %d %d", depth, threads);
    system_mode(w, "off");
    if (threads == 1) {   /* what secure = on costs (guard pages, shuffled order, zero on free) */
      add_system(w, "nheap concurrent, secure", "nheap-concurrent-secure", NULL,
                 "@bench/nheap-binary-trees concurrent %d %d", depth, threads);
      system_env(w, "NHEAP_SECURE=1");
      system_mode(w, "concurrent");
      add_system(w, "nheap off (free), secure", "nheap-off-secure", NULL, "@bench/nheap-binary-trees off %d %d",
                 depth, threads);
      system_env(w, "NHEAP_SECURE=1");
      system_mode(w, "off");
    }
    add_system(w, "bdwgc", "bdwgc", NULL, "@bench/nheap-binary-trees-bdwgc bdwgc %d %d", depth, threads);
    bdwgc_env(w, false);
    add_system(w, "bdwgc incremental", "bdwgc-incremental", NULL, "@bench/nheap-binary-trees-bdwgc bdwgc %d %d",
               depth, threads);
    bdwgc_env(w, true);
    if (threads == 1) {   /* bdwgc's own binary, unchanged, on nheap */
      add_system(w, "nheap, bdwgc's binary (libgc.so.1)", "nheap-gcabi", NULL,
                 "@bench/nheap-binary-trees-bdwgc bdwgc %d %d", depth, threads);
      gcabi_env(w);
    }
    add_system(w, "Go", "go", NULL, "@bench/go-binary-trees %d %d", depth, threads);
    go_env(w);
    malloc_peers(w, "@bench/nheap-binary-trees-malloc %s %d %d", depth, threads);
  }
  workload *w = add_workload("gcbench", "GCBench (bdwgc API: through nheap_gc_compat.h, and bdwgc's binary on libnheap_gc.so.1)", NULL, NULL, false);
  w->timeline = true;
  w->check = gcbench_check(gcb);
  add_system(w, "nheap (compat: nobarrier)", "nheap", NULL, "@bench/nheap-gcbench %d", gcb);
  system_mode(w, "concurrent-nobarrier");
  add_system(w, "bdwgc", "bdwgc", NULL, "@bench/nheap-gcbench-bdwgc %d", gcb);
  bdwgc_env(w, false);
  add_system(w, "bdwgc incremental", "bdwgc-incremental", NULL, "@bench/nheap-gcbench-bdwgc %d", gcb);
  bdwgc_env(w, true);
  add_system(w, "nheap, bdwgc's binary (libgc.so.1)", "nheap-gcabi", NULL, "@bench/nheap-gcbench-bdwgc %d", gcb);
  gcabi_env(w);

  /* Huge pages x counters: the same program on each arena backing, counted per phase. */
  w = add_workload("hugepages", "binary-trees (1 thread) by arena backing, counted per phase", NULL, NULL, false);
  w->check = binary_trees_check(depth);
  static const char *const backing[][2] = {{"4 KiB pages", "none"}, {"THP", "thp"}, {"hugetlb", "hugetlb"}};
  for (int i = 0; i < 3; i++) {
    char slug[32], env[64];
    snprintf(slug, sizeof slug, "nheap-%s", backing[i][1]);
    snprintf(env, sizeof env, "NHEAP_HUGEPAGES=%s", backing[i][1]);
    add_system(w, backing[i][0], xstrdup(slug), NULL, "@bench/nheap-binary-trees concurrent %d 1", depth);
    system_env(w, env);
    system_env(w, "NHEAP_PERF_EVENTS=task-clock,page-faults,dTLB-load-misses,cycles");
    system_mode(w, "concurrent");
  }

  w = add_workload("gc-pause", "steady live heap, 2 mutators", "replacements_per_s", "replacements/s", true);
  w->timeline = true;
  w->check = gc_pause_check(live);
  add_system(w, "nheap concurrent", "nheap-concurrent", NULL, "@bench/nheap-gc-pause concurrent %d %d 2", live, secs);
  system_mode(w, "concurrent");
  add_system(w, "nheap nobarrier (plain stores)", "nheap-nobarrier", NULL,
             "@bench/nheap-gc-pause-plain nobarrier %d %d 2", live, secs);
  system_mode(w, "concurrent-nobarrier");
  add_system(w, "nheap stw", "nheap-stw", NULL, "@bench/nheap-gc-pause stw %d %d 2", live, secs);
  system_mode(w, "stw");
  add_system(w, "bdwgc", "bdwgc", NULL, "@bench/nheap-gc-pause-bdwgc bdwgc %d %d 2", live, secs);
  bdwgc_env(w, false);
  add_system(w, "bdwgc incremental", "bdwgc-incremental", NULL, "@bench/nheap-gc-pause-bdwgc bdwgc %d %d 2", live,
             secs);
  bdwgc_env(w, true);
  add_system(w, "Go", "go", NULL, "@bench/go-gc-pause %d %d 2", live, secs);
  go_env(w);

  /* Open loop: the warm-up round measures each server's capacity (closed loop); the measured
   * rounds send at one rate for all, below the slowest one's capacity (run_workload). */
  w = add_workload("kvserver", "key-value server on loopback, 4 connections, open-loop load", "requests_per_s",
                   "requests/s", true);
  w->timeline = w->latency = w->open_loop = true;
  w->check = (unsigned long long)keys;
  static const char *const kv = "@examples/nheap-kvserver load %d 4 %d --";
  char load[256];
  snprintf(load, sizeof load, kv, kvsecs, keys);
  add_system(w, "nheap concurrent", "nheap-concurrent", NULL, "%s @examples/nheap-kvserver serve concurrent %d", load,
             keys);
  system_mode(w, "concurrent");
  add_system(w, "nheap nobarrier (plain stores)", "nheap-nobarrier", NULL,
             "%s @examples/nheap-kvserver-plain serve nobarrier %d", load, keys);
  system_mode(w, "concurrent-nobarrier");
  add_system(w, "nheap stw", "nheap-stw", NULL, "%s @examples/nheap-kvserver serve stw %d", load, keys);
  system_mode(w, "stw");
  add_system(w, "nheap off (no GC)", "nheap-off", NULL, "%s @examples/nheap-kvserver serve off %d", load, keys);
  system_mode(w, "off");
  add_system(w, "bdwgc", "bdwgc", NULL, "%s @examples/nheap-kvserver-bdwgc serve bdwgc %d", load, keys);
  bdwgc_env(w, false);
  add_system(w, "bdwgc incremental", "bdwgc-incremental", NULL, "%s @examples/nheap-kvserver-bdwgc serve bdwgc %d",
             load, keys);
  bdwgc_env(w, true);
  add_system(w, "Go", "go", NULL, "%s @bench/go-kvserver %d", load, keys);
  go_env(w);
}

/* The environment every run starts from: what could change a system's behaviour is cleared,
 * so each runs with exactly the settings the suite gives it (system_env), recorded in
 * results.json and report.md. NHEAP_CONFIG stays: `make run` names the configuration under
 * test with it. */
static char cleared[2048];

static void pin_environment(void) {
  static const char *const prefixes[] = {"NHEAP_", "GO", "GC_", "MALLOC_", "JE_MALLOC_", "MIMALLOC_", "TCMALLOC_",
                                         "GLIBC_TUNABLES", "LD_PRELOAD", "LD_BIND_NOW", "HEAPPROFILE", "HEAPCHECK"};
  extern char **environ;
  for (bool again = true; again;) {   /* unsetenv shifts environ: start over after each */
    again = false;
    for (char **e = environ; *e && !again; e++) {
      char name[128];
      snprintf(name, sizeof name, "%.*s", (int)strcspn(*e, "="), *e);
      if (strcmp(name, "NHEAP_CONFIG") == 0)
        continue;
      for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0] && !again; i++)
        if (strncmp(name, prefixes[i], strlen(prefixes[i])) == 0) {
          size_t len = strlen(cleared);
          snprintf(cleared + len, sizeof cleared - len, "%s%s", len ? " " : "", name);
          unsetenv(name);
          again = true;
        }
    }
  }
}

/* ---------------------------------------------------------------------------------------------
 * Running.
 * ------------------------------------------------------------------------------------------- */

static void data_path(char *p, size_t n, const workload *w, const sysrun *s, const char *what) {
  snprintf(p, n, "%s/data/%s-%s.%s", out, w->name, s->slug, what);
}

/* Huge pages of the machine's hugetlb pool in use, in pages (0 without a pool). */
static long hugetlb_in_use(void) {
  FILE *f = fopen("/proc/meminfo", "r");
  char line[128];
  long total = 0, free = 0;
  while (f && fgets(line, sizeof line, f)) {
    sscanf(line, "HugePages_Total: %ld", &total);
    sscanf(line, "HugePages_Free: %ld", &free);
  }
  if (f)
    fclose(f);
  return total - free;
}

/* While a run runs: its hugetlb pages (which the kernel's peak RSS leaves out) are sampled
 * from the pool's counters every 5 ms, and past the deadline its process group is killed. */
typedef struct watch {
  pid_t pid;
  double deadline;
  long base, peak;           /* pool pages in use before the run, most in use during it */
  long thp_kib;              /* the most transparent huge pages the process had (every 100 ms) */
  atomic_bool done, killed;
} watch;

static long thp_of(pid_t pid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
  FILE *f = fopen(path, "r");
  long kib = 0;
  while (f && fgets(line, sizeof line, f) && sscanf(line, "AnonHugePages: %ld", &kib) != 1)
    ;
  if (f)
    fclose(f);
  return kib;
}

static void *watcher(void *arg) {
  watch *wt = arg;
  for (int tick = 0; !atomic_load(&wt->done); tick++) {
    long n = hugetlb_in_use() - wt->base;
    if (n > wt->peak)
      wt->peak = n;
    long thp = tick % 20 ? 0 : thp_of(wt->pid);
    if (thp > wt->thp_kib)
      wt->thp_kib = thp;
    if (now_s() > wt->deadline && !atomic_exchange(&wt->killed, true))
      kill(-wt->pid, SIGKILL);
    struct timespec d = {0, 5 * 1000 * 1000};
    nanosleep(&d, NULL);
  }
  return NULL;
}

/* nheap's statistics as nh_stats_write's JSON (NH_BENCH_STATS, gc_peer.h: the document a server
 * scrapes), into m: each phase's time and counters from its "perf" object, as perf_<phase>_ms and
 * perf_<phase>_<event>. Read by the layout nh_stats_write gives it: one phase a line. Nothing
 * when the run wrote none (a peer) or counted nothing. */
static void stats_perf(const char *path, metrics *m) {
  static char text[1 << 20];
  FILE *f = fopen(path, "r");
  if (!f)
    return;
  size_t n = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  text[n] = 0;
  char *p = strstr(text, "\n  \"perf\": {\"events\": [");
  p = p ? strstr(p, "\"phases\": {") : NULL;
  while (p && (p = strstr(p, "\n    \""))) {
    char phase[32], key[48], event[48];
    double ns, v;
    int used;
    if (sscanf(p, "\n    \"%31[^\"]\": {\"ns\": %lf, \"counts\": {%n", phase, &ns, &used) != 2)
      break;
    snprintf(key, sizeof key, "perf_%s_ms", phase);
    put(m, key, ns / 1e6);
    for (p += used; sscanf(p, "\"%47[^\"]\": %lf%n", event, &v, &used) == 2; p += used + (p[used] == ',' ? 2 : 0)) {
      snprintf(key, sizeof key, "perf_%.14s_%.27s", phase, event);
      put(m, key, v);
    }
  }
}

/* The RESULT line's fields into m: numbers as numbers, words (system=go) as words. */
static void parse_result(char *line, metrics *m) {
  for (char *save = NULL, *tok = strtok_r(line, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save)) {
    char *eq = strchr(tok, '='), *end;
    if (!eq)
      continue;
    *eq = 0;
    double v = strtod(eq + 1, &end);
    if (end != eq + 1 && *end == 0)
      put(m, tok, v);
    else
      put_str(m, tok, eq + 1);
  }
}

/* The pauses file of a run: how many, and their sum. */
static void pause_totals(const char *path, metrics *m) {
  FILE *f = fopen(path, "r");
  double x, sum = 0;
  long n = 0;
  while (f && fscanf(f, "%lf", &x) == 1)
    sum += x, n++;
  if (f)
    fclose(f);
  if (!f)
    return;
  put(m, "pause_total_ms", sum);
  double cycles = getd(m, "cycles");
  if (cycles > 0)
    put(m, "stopped_ms_per_cycle", sum / cycles);
}

/* Runs one system once (its argv, with extra arguments before "--" if any); false if it
 * failed: it did not exit 0, printed no RESULT, ran past the timeout, or reported a check
 * other than the workload's. m->why says which. */
static bool run_once(const workload *w, sysrun *s, metrics *m, char *const *argv) {
  char tl[512], pa[512], la[512], log[512], err[512], st[512];
  data_path(tl, sizeof tl, w, s, "timeline");
  data_path(st, sizeof st, w, s, "stats.json");
  data_path(pa, sizeof pa, w, s, "pauses");
  data_path(la, sizeof la, w, s, "latency");
  data_path(log, sizeof log, w, s, "out");
  data_path(err, sizeof err, w, s, "err");
  unlink(tl), unlink(pa), unlink(la), unlink(st);   /* nothing stale from an earlier run */
  int pipefd[2];
  if (pipe(pipefd) != 0)
    die("pipe: %s", strerror(errno));
  watch wt = {.base = hugetlb_in_use()};
  double t0 = now_s();
  pid_t pid = fork();
  if (pid < 0)
    die("fork: %s", strerror(errno));
  if (pid == 0) {
    setpgid(0, 0);   /* its own group: a timeout kills every process it started */
    dup2(pipefd[1], STDOUT_FILENO);
    close(pipefd[0]);
    close(pipefd[1]);
    int e = open(err, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);   /* its stderr, every round */
    if (e >= 0) {
      dprintf(e, "--- round %d\n", m->round);
      dup2(e, STDERR_FILENO);
    }
    setenv("NH_BENCH_TIMELINE", tl, 1);
    setenv("NH_BENCH_PAUSES", pa, 1);
    setenv("NH_BENCH_LATENCY", la, 1);
    setenv("NH_BENCH_STATS", st, 1);
    if (s->preload[0])
      setenv("LD_PRELOAD", s->preload, 1);
    for (int i = 0; i < s->nenv; i++)
      putenv(s->env[i]);
    execv(argv[0], argv);
    fprintf(stderr, "nheap-report: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  setpgid(pid, pid);   /* as the child does: no race with the watcher's kill */
  wt.pid = pid;
  wt.deadline = t0 + run_timeout_s;
  pthread_t watch_thread;
  bool watching = pthread_create(&watch_thread, NULL, watcher, &wt) == 0;
  close(pipefd[1]);
  FILE *from = fdopen(pipefd[0], "r"), *keep = fopen(log, "w");
  char line[8192];
  bool result = false;
  int round = m->round;
  memset(m, 0, sizeof *m);
  m->round = round;
  while (from && fgets(line, sizeof line, from)) {
    if (keep)
      fputs(line, keep);
    if (strncmp(line, "RESULT ", 7) == 0) {
      result = true;
      parse_result(line + 7, m);
    }
  }
  if (from)
    fclose(from);
  if (keep)
    fclose(keep);
  int status;
  struct rusage ru;
  while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR)
    ;
  double wall = now_s() - t0;
  atomic_store(&wt.done, true);
  if (watching)
    pthread_join(watch_thread, NULL);
  if (atomic_load(&wt.killed))
    snprintf(m->why, sizeof m->why, "timed out after %d s", run_timeout_s);
  else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    snprintf(m->why, sizeof m->why, "%s %d", WIFEXITED(status) ? "exit" : "signal",
             WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
  else if (!result)
    snprintf(m->why, sizeof m->why, "no RESULT line");
  else if (getd(m, "check") != (double)w->check)
    snprintf(m->why, sizeof m->why, "WRONG OUTPUT: check=%.0f, expected %llu", getd(m, "check"), w->check);
  if (m->why[0]) {
    m->failed = true;
    fprintf(stderr, "nheap-report: %s / %s failed (%s); its output: %s, %s\n", w->name, s->name, m->why, log, err);
    return false;
  }
  long page = 2048;   /* KiB: the pool's page size */
  FILE *f = fopen("/proc/meminfo", "r");
  while (f && fgets(line, sizeof line, f))
    sscanf(line, "Hugepagesize: %ld", &page);
  if (f)
    fclose(f);
  double hugetlb_mib = (double)wt.peak * (double)page / 1024;
  put(m, "wall_s", wall);
  put(m, "user_s", (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6);
  put(m, "sys_s", (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6);
  /* Peak RSS: the kernel's (ru_maxrss, which leaves hugetlb pages out) plus the most hugetlb
   * pages in use at once; the two peaks may fall at different times, so this can overstate. */
  put(m, "rss_mib", (double)ru.ru_maxrss / 1024 + hugetlb_mib);
  put(m, "hugetlb_peak_mib", hugetlb_mib);
  put(m, "thp_peak_mib", fmax((double)wt.thp_kib / 1024, getd(m, "thp_mib")));
  put(m, "faults", (double)(ru.ru_minflt + ru.ru_majflt));
  pause_totals(pa, m);
  stats_perf(st, m);
  return true;
}

/* argv with extra words inserted before its "--" (or at the end). */
static void with_args(char **dst, char *const *argv, char *const *extra) {
  int n = 0, k = 0;
  for (; argv[k] && strcmp(argv[k], "--") != 0; k++)
    dst[n++] = argv[k];
  for (int e = 0; extra && extra[e]; e++)
    dst[n++] = extra[e];
  for (; argv[k]; k++)
    dst[n++] = argv[k];
  dst[n] = NULL;
}

static int cmp_sys_capacity(const void *a, const void *b) {
  return cmp_double(&(*(sysrun *const *)a)->capacity, &(*(sysrun *const *)b)->capacity);
}

/* The rate an open-loop workload's measured rounds run at: 60% of the capacity of the slowest
 * system that ran its warm-up (near saturation for it, below it for all). */
static void choose_rate(workload *w) {
  sysrun *by[MAX_SYSTEMS];
  int n = 0;
  for (int i = 0; i < w->nsys; i++)
    if (!w->sys[i].skip && w->sys[i].capacity > 0)
      by[n++] = &w->sys[i];
  if (n == 0)
    return;
  qsort(by, (size_t)n, sizeof *by, cmp_sys_capacity);
  w->rate = floor(by[0]->capacity * 0.6 / 100) * 100;
  if (w->rate < 100)
    w->rate = 100;
}

/* Round 0 is the warm-up (for an open-loop workload also the capacity measurement), rounds 1..reps
 * are measured; each round starts at another system, so none is always first. */
static void run_workload(workload *w, int *done, int total) {
  for (int r = 0; r < reps + 1; r++) {
    if (w->open_loop && r == 1)
      choose_rate(w);
    for (int k = 0; k < w->nsys; k++) {
      sysrun *s = &w->sys[(k + r) % w->nsys];
      if (s->skip)
        continue;
      fprintf(stderr, "[%3d/%d] %-16s %-30s %s ", ++*done, total, w->name, s->name, r == 0 ? "warm-up" : "measured");
      fflush(stderr);
      char rate[32], *extra[] = {"--rate", rate, NULL}, *argv[MAX_ARGS + 2];
      snprintf(rate, sizeof rate, "%.0f", w->rate);
      with_args(argv, s->argv, w->open_loop && r > 0 ? extra : NULL);
      metrics *m = r > 0 ? &s->run[s->nruns++] : &(metrics){0};
      m->round = r;
      if (!run_once(w, s, m, argv)) {
        failures++;
        s->broke = true;
        if (r > 0)
          s->nfailed++;
        snprintf(s->why, sizeof s->why, "%.120s (data/%s-%s.err)", m->why, w->name, s->slug);
        if (strncmp(m->why, "timed out", 9) == 0 || r == 0)
          s->skip = true;   /* no more rounds: they would fail alike */
        continue;
      }
      fprintf(stderr, "%.2f s\n", getd(m, "wall_s"));
      if (r == 0 && w->open_loop)
        s->capacity = getd(m, "requests_per_s");
    }
  }
  for (int i = 0; i < w->nsys; i++) {
    sysrun *s = &w->sys[i];
    const metrics *first = NULL;
    for (int r = 0; r < s->nruns && !first; r++)
      if (!s->run[r].failed)
        first = &s->run[r];
    if (!first)
      continue;
    for (int k = 0; k < first->n; k++) {
      double v[MAX_REPS];
      int n = 0;
      for (int r = 0; r < s->nruns; r++)
        if (!s->run[r].failed && get(&s->run[r], first->key[k], &v[n]))
          n++;
      put(&s->median, first->key[k], median(v, n));
    }
    for (int k = 0; k < first->ns; k++)
      put_str(&s->median, first->skey[k], first->sval[k]);
  }
}

/* ---------------------------------------------------------------------------------------------
 * The allocator micro-benchmarks: nheap-bench-malloc's own medians.
 * ------------------------------------------------------------------------------------------- */

enum { MAX_MICRO = 64 };
static struct micro { char name[64]; double ns; } micro[MAX_MICRO];
static int nmicro;
static bool micro_ran;
static const char *const micro_allocators[] = {"nheap", "glibc", "jemalloc", "mimalloc", "tcmalloc"};

/* Google Benchmark's CSV (--benchmark_report_aggregates_only): the medians, as ns per
 * iteration, into out[max]; returns how many. */
static int read_medians(FILE *p, struct micro *into, int max) {
  char line[1024];
  int n = 0;
  while (fgets(line, sizeof line, p) && n < max) {
    /* name,iterations,real_time,cpu_time,time_unit,... ; medians end in _median. Times are per
     * object; pair and batch are one thread's CPU time, xthread (two threads) wall time. */
    char *name = line[0] == '"' ? line + 1 : line;
    char *end = strstr(name, "_median");
    if (!end)
      continue;
    *end = 0;
    char *f = strchr(end + 1, ','), *suffix = strstr(name, "/process_time/real_time");
    double real = 0, cpu = 0;
    char unit[8] = "";
    if (!f || sscanf(f + 1, "%*[^,],%lf,%lf,%7[^,]", &real, &cpu, unit) != 3)
      continue;
    if (suffix)
      *suffix = 0;
    double scale = strcmp(unit, "us") == 0 ? 1e3 : strcmp(unit, "ms") == 0 ? 1e6 : 1;
    snprintf(into[n].name, sizeof into[0].name, "%.63s", name);
    into[n++].ns = (suffix ? real : cpu) * scale;
  }
  return n;
}

static void run_micro(void) {
  char cmd[1024], path[512];
  snprintf(path, sizeof path, "%s/bench/nheap-bench-malloc", bin);
  if (!exists(path))
    return;
  fprintf(stderr, "[micro] allocator micro-benchmarks (nheap-bench-malloc)\n");
  /* The peers' huge pages as in the whole-program rows (malloc_peers); every repetition of every
   * benchmark in a random order, so no allocator always runs first. */
  snprintf(cmd, sizeof cmd,
           "MIMALLOC_LARGE_OS_PAGES=1 MALLOC_CONF=thp:always,metadata_thp:auto GLIBC_TUNABLES=glibc.malloc.hugetlb=1 "
           "%s --benchmark_filter='%s' --benchmark_repetitions=%d --benchmark_report_aggregates_only=true "
           "--benchmark_enable_random_interleaving=true --benchmark_min_time=%s --benchmark_format=csv 2>/dev/null",
           path,
           full    ? "."
           : smoke ? "^pair/[a-z]+/16$"
                   : "^(pair/[a-z]+/(16|1024)|batch/[a-z]+/(16|4096)|xthread/[a-z]+/64/process_time/real_time)$",
           full ? 5 : smoke ? 2 : 3, full ? "0.5" : smoke ? "0.01" : "0.05");
  FILE *p = popen(cmd, "r");
  if (!p)
    return;
  nmicro = read_medians(p, micro, MAX_MICRO);
  micro_ran = pclose(p) == 0 && nmicro > 0;
}

/* What reading nheap's statistics costs after 1,000 cycles (bench/stats_read.c): ns per call of
 * the snapshot (nh_stats_read), of each single counter (nh_stat) and of a whole OpenMetrics
 * scrape, medians of its repetitions; the goal is at most 1 µs per read (issue 24). */
static struct micro stats_read[MAX_MICRO];
static int nstats_read;
static char stats_read_note[160];

static void run_stats_read(void) {
  char cmd[1024], path[512];
  snprintf(path, sizeof path, "%s/bench/nheap-stats-read", bin);
  if (!exists(path))
    return;
  fprintf(stderr, "[stats] reading the statistics after 1000 cycles (nheap-stats-read)\n");
  snprintf(cmd, sizeof cmd,
           "%s --cycles=1000 --benchmark_repetitions=%d --benchmark_report_aggregates_only=true "
           "--benchmark_min_time=%s --benchmark_format=csv 2>%s/data/stats-read.err",
           path, smoke ? 2 : 5, smoke ? "0.01" : "0.1", out);
  FILE *p = popen(cmd, "r");
  if (!p)
    return;
  nstats_read = read_medians(p, stats_read, MAX_MICRO);
  if (pclose(p) != 0 || nstats_read == 0) {
    nstats_read = 0;
    failures++;
    snprintf(stats_read_note, sizeof stats_read_note, "nheap-stats-read failed (%s/data/stats-read.err)", out);
    return;
  }
  char errp[600];
  snprintf(errp, sizeof errp, "%s/data/stats-read.err", out);
  FILE *e = fopen(errp, "r");
  if (!e || !fgets(stats_read_note, sizeof stats_read_note, e))
    stats_read_note[0] = 0;
  stats_read_note[strcspn(stats_read_note, "\n")] = 0;
  if (e)
    fclose(e);
}

/* The NUMA scaling benchmark, in tests/numa-vm's QEMU guest (bench/numa_scale.sh): 1 and 2
 * nodes (full: 1, 2 and 4). Its table and JSON are copied into the report. */
static enum { NUMA_NOT_RUN, NUMA_RAN, NUMA_SKIPPED } numa_state;
static char numa_why[256];

static void run_numa(void) {
  char cmd[2048], path[512];
  snprintf(path, sizeof path, "%s/bench/nheap-numa-scale", bin);
  if (!exists(path) || !exists(NH_SOURCE_DIR "/bench/numa_scale.sh"))
    return;
  fprintf(stderr, "[numa] NUMA scaling in a QEMU guest with %s nodes (bench/numa_scale.sh)\n", full ? "1, 2 and 4" : "1 and 2");
  snprintf(cmd, sizeof cmd,
           "NHEAP_NUMA_SECONDS=%d NHEAP_NUMA_LIVE_MIB=24 NHEAP_NUMA_CACHE=%s/numa-vm %s/bench/numa_scale.sh %s %s/numa %s "
           "> %s/numa.log 2>&1",
           full ? 5 : 2, bin, NH_SOURCE_DIR, path, out, full ? "1 2 4" : "1 2", out);
  int st = system(cmd);
  int rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  numa_state = rc == 0 ? NUMA_RAN : NUMA_SKIPPED;
  if (rc == 77) {
    snprintf(numa_why, sizeof numa_why, "the guest cannot run here (%s/numa.log)", out);
  } else if (rc != 0) {
    snprintf(numa_why, sizeof numa_why, "it failed (%s/numa.log)", out);
    failures++;
  }
}

/* Appends file `name` of the NUMA benchmark's output to f. */
static void copy_numa(FILE *f, const char *name) {
  char path[600], buf[4096];
  snprintf(path, sizeof path, "%s/numa/%s", out, name);
  FILE *in = fopen(path, "r");
  for (size_t n; in && (n = fread(buf, 1, sizeof buf, in)) > 0;)
    fwrite(buf, 1, n, f);
  if (in)
    fclose(in);
}

static void write_numa(FILE *f) {
  if (numa_state == NUMA_NOT_RUN)
    return;
  fprintf(f, "### NUMA scaling (QEMU guest, one CPU and 256 MiB per node)\n\n");
  if (numa_state == NUMA_SKIPPED) {
    fprintf(f, "Not run: %s.\n\n", numa_why);
    return;
  }
  fprintf(f, "bench/numa_scale.c: a churn workload (a thread per CPU replacing objects of a 24 MiB live set) "
             "with memory local to each thread's node, interleaved, and numa = off. *local scans*: heap bytes "
             "the markers scanned on their own node; *placement*: sampled in-use pages resident on the node "
             "nheap meant. The guest's CPUs are emulated and share this machine's CPUs: rows compare with each "
             "other, not with a real host, and scaling stops at this machine's CPU count.\n\n");
  copy_numa(f, "numa-scale.md");
  fprintf(f, "\n");
}

/* The mark rate (bench/mark_rate.c): one stop-the-world marking core on a random-order heap
 * of 64-byte objects, beside this machine's pointer-chasing speed on a buffer of the same size.
 * Runs `reps` times; the medians go to the report. */
static metrics markrate;
static bool markrate_ran;

static void run_mark_rate(void) {
  char path[512], cmd[1024];
  snprintf(path, sizeof path, "%s/bench/nheap-mark-rate", bin);
  if (!exists(path))
    return;
  int mib = smoke ? 32 : full ? 1024 : 256;
  fprintf(stderr, "[mark-rate] %d MiB of 64-byte objects, %d run(s)\n", mib, reps);
  double v[8][16];
  static const char *const keys[] = {"probe_dependent_ns", "probe_8chain_ns", "limit_gbs", "mark_gbs",
                                     "mark_ns_per_object", "mark_ns_per_word", "check", "objects"};
  int n = 0;
  for (int r = 0; r < reps && r < 16; r++) {
    snprintf(cmd, sizeof cmd, "%s %d %d 2>%s/data/mark-rate.err", path, mib, mib, out);
    FILE *p = popen(cmd, "r");
    char line[2048];
    metrics m = {0};
    bool got = false;
    while (p && fgets(line, sizeof line, p))
      if (strncmp(line, "RESULT ", 7) == 0) {
        parse_result(line, &m);
        got = true;
      }
    int st = p ? pclose(p) : -1;
    double check, objects;
    if (!got || st != 0 || !get(&m, "check", &check) || !get(&m, "objects", &objects) || check != objects) {
      fprintf(stderr, "nheap-report: mark-rate run %d failed (%s/data/mark-rate.err)\n", r, out);
      failures++;
      continue;
    }
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++)
      v[k][n] = getd(&m, keys[k]);
    n++;
  }
  if (!n)
    return;
  for (size_t k = 0; k < sizeof keys / sizeof *keys; k++)
    put(&markrate, keys[k], median(v[k], n));
  put(&markrate, "heap_mib", mib);
  put(&markrate, "runs", n);
  markrate_ran = true;
}

static void write_mark_rate(FILE *f) {
  if (!markrate_ran)
    return;
  fprintf(f, "### Mark rate (bench/mark_rate.c)\n\n"
             "One core marks (gc = stw, the world stopped) a %.0f MiB heap of 64-byte objects: a complete binary "
             "tree placed in random order, two pointer words and six small integers per object, scanned "
             "conservatively. Beside it, this machine following pointers through a buffer of the same size "
             "(64-byte lines in one random cycle, transparent huge pages): one dependent chain, and eight "
             "chains at once; *limit* is 64 bytes per eight-chain load, what a marker touching one new line per "
             "object with eight misses in flight would reach. Medians of %.0f run(s).\n\n",
          getd(&markrate, "heap_mib"), getd(&markrate, "runs"));
  fprintf(f, "| dependent load | 8 chains, per load | limit | nheap mark rate per core | of the limit | per object | per scanned word |\n"
             "|---|---|---|---|---|---|---|\n");
  double limit = getd(&markrate, "limit_gbs"), rate = getd(&markrate, "mark_gbs");
  fprintf(f, "| %.0f ns | %.1f ns | %.2f GB/s | %.2f GB/s | %.0f%% | %.1f ns | %.2f ns |\n\n",
          getd(&markrate, "probe_dependent_ns"), getd(&markrate, "probe_8chain_ns"), limit, rate,
          limit > 0 ? 100 * rate / limit : 0, getd(&markrate, "mark_ns_per_object"),
          getd(&markrate, "mark_ns_per_word"));
}

static double micro_ns(const char *kind, const char *alloc, const char *size) {
  char name[64];
  snprintf(name, sizeof name, "%s/%s/%s", kind, alloc, size);
  for (int i = 0; i < nmicro; i++)
    if (strcmp(micro[i].name, name) == 0)
      return micro[i].ns;
  return NAN;
}

/* ---------------------------------------------------------------------------------------------
 * Output.
 * ------------------------------------------------------------------------------------------- */

static bool ran(const sysrun *s) { return s->nruns > s->nfailed; }   /* a measured run succeeded */

static const sysrun *find_sys(const workload *w, const char *slug) {
  for (int i = 0; i < w->nsys; i++)
    if (strcmp(w->sys[i].slug, slug) == 0 && ran(&w->sys[i]))
      return &w->sys[i];
  return NULL;
}

static const workload *find_workload(const char *name) {
  for (int i = 0; i < nworkloads; i++)
    if (strcmp(suite[i].name, name) == 0)
      return &suite[i];
  return NULL;
}

static void json_metrics(FILE *f, const metrics *m, bool median) {
  if (median)
    fprintf(f, "{\"of\": \"the successful rounds\"");
  else
    fprintf(f, "{\"round\": %d", m->round);
  if (m->failed)
    fprintf(f, ", \"failed\": \"%s\"", m->why);
  for (int i = 0; i < m->ns; i++)
    fprintf(f, ", \"%s\": \"%s\"", m->skey[i], m->sval[i]);
  for (int i = 0; i < m->n; i++)
    if (isfinite(m->val[i]) && m->val[i] == floor(m->val[i]) && fabs(m->val[i]) < 1e15)
      fprintf(f, ", \"%s\": %.0f", m->key[i], m->val[i]);   /* counts and checks, exactly */
    else if (isfinite(m->val[i]))
      fprintf(f, ", \"%s\": %.6g", m->key[i], m->val[i]);
    else
      fprintf(f, ", \"%s\": null", m->key[i]);
  fprintf(f, "}");
}

/* What backed a system's memory, from what its runs measured: hugetlb pages (the pool's
 * counters), transparent huge pages (its smaps, sampled and at the end), else 4 KiB pages. */
static void backing(const sysrun *s, char *buf, size_t n) {
  double tlb = fmax(getd(&s->median, "hugetlb_peak_mib"), getd(&s->median, "hugetlb_mib")),
         thp = getd(&s->median, "thp_peak_mib");
  if (tlb > 0 && thp > 0)
    snprintf(buf, n, "hugetlb %.0f + THP %.0f MiB", tlb, thp);
  else if (tlb > 0)
    snprintf(buf, n, "hugetlb %.0f MiB", tlb);
  else if (thp > 0)
    snprintf(buf, n, "THP %.0f MiB", thp);
  else
    snprintf(buf, n, "4 KiB pages");
}

/* The mode a system ran (its RESULT's system=), flagged where it is not the one it was meant
 * to run (nheap falls back to stw where the kernel lacks userfaultfd write-protect). */
static void mode_ran(const sysrun *s, char *buf, size_t n) {
  const char *ran_mode = get_str(&s->median, "system");
  if (!ran_mode)
    ran_mode = "?";
  if (s->mode && strcmp(s->mode, ran_mode) != 0)
    snprintf(buf, n, "%s (**asked %s**)", ran_mode, s->mode);
  else
    snprintf(buf, n, "%s", ran_mode);
}

static void machine(char *buf, size_t n) {
  struct utsname u;
  uname(&u);
  char model[256] = "unknown CPU", line[512], thp[128] = "?";
  FILE *f = fopen("/proc/cpuinfo", "r");
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, "model name", 10) == 0) {
      char *c = strchr(line, ':');
      snprintf(model, sizeof model, "%.255s", c ? c + 2 : line);
      model[strcspn(model, "\n")] = 0;
      break;
    }
  if (f)
    fclose(f);
  if ((f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r"))) {
    if (fgets(thp, sizeof thp, f))
      thp[strcspn(thp, "\n")] = 0;
    fclose(f);
  }
  snprintf(buf, n, "%ld CPUs (%s), %.1f GiB, Linux %s, THP %s", sysconf(_SC_NPROCESSORS_ONLN), model,
           (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE) / (1 << 30), u.release, thp);
}

static void write_json(const char *when, const char *mach) {
  char path[512];
  snprintf(path, sizeof path, "%s/results.json", out);
  FILE *f = fopen(path, "w");
  if (!f)
    die("cannot write %s: %s", path, strerror(errno));
  fprintf(f, "{\n  \"date\": \"%s\",\n  \"machine\": \"%s\",\n  \"sizes\": \"%s\",\n  \"rounds\": %d,\n", when, mach,
          full ? "full" : "quick", reps);
  fprintf(f, "  \"run_timeout_s\": %d,\n  \"environment\": {\"cleared\": \"%s\", \"NHEAP_CONFIG\": \"%s\"},\n",
          run_timeout_s, cleared, getenv("NHEAP_CONFIG") ? getenv("NHEAP_CONFIG") : "");
  fprintf(f, "  \"workloads\": [\n");
  for (int i = 0; i < nworkloads; i++) {
    const workload *w = &suite[i];
    fprintf(f, "    {\"name\": \"%s\", \"title\": \"%s\", \"check\": %llu", w->name, w->title, w->check);
    if (w->open_loop)
      fprintf(f, ", \"rate_per_s\": %.0f", w->rate);
    fprintf(f, ", \"systems\": [\n");
    for (int j = 0; j < w->nsys; j++) {
      const sysrun *s = &w->sys[j];
      fprintf(f, "      {\"name\": \"%s\", \"command\": \"", s->name);
      for (int a = 0; s->argv[a]; a++)
        fprintf(f, "%s%s", a ? " " : "", s->argv[a]);
      fprintf(f, "\", \"preload\": \"%s\", \"env\": [", s->preload);
      for (int e = 0; e < s->nenv; e++)
        fprintf(f, "%s\"%s\"", e ? ", " : "", s->env[e]);
      fprintf(f, "]");
      if (s->mode)
        fprintf(f, ", \"mode_asked\": \"%s\"", s->mode);
      if (s->capacity > 0)
        fprintf(f, ", \"capacity_per_s\": %.0f", s->capacity);
      if (!ran(s)) {
        fprintf(f, ", \"%s\": \"%s\"", s->broke ? "failed" : "skipped", s->why[0] ? s->why : "not run");
      } else {
        char b[96];
        backing(s, b, sizeof b);
        fprintf(f, ", \"mode\": \"%s\", \"backing\": \"%s\", \"check_expected\": %llu, \"runs_failed\": %d",
                get_str(&s->median, "system") ? get_str(&s->median, "system") : "?", b, w->check, s->nfailed);
        fprintf(f, ", \"median\": ");
        json_metrics(f, &s->median, true);
      }
      if (s->nruns) {
        fprintf(f, ", \"runs\": [");
        for (int r = 0; r < s->nruns; r++) {
          fprintf(f, r ? ", " : "");
          json_metrics(f, &s->run[r], false);
        }
        fprintf(f, "]");
      }
      fprintf(f, "}");
      fprintf(f, "%s\n", j + 1 < w->nsys ? "," : "");
    }
    fprintf(f, "    ]}%s\n", i + 1 < nworkloads ? "," : "");
  }
  fprintf(f, "  ],\n  \"malloc_micro_ns\": {");
  for (int i = 0; i < nmicro; i++)
    fprintf(f, "%s\"%s\": %.3f", i ? ", " : "", micro[i].name, micro[i].ns);
  fprintf(f, "},\n  \"stats_read_ns\": {");
  for (int i = 0; i < nstats_read; i++)
    fprintf(f, "%s\"%s\": %.3f", i ? ", " : "", stats_read[i].name, stats_read[i].ns);
  fprintf(f, "}");
  if (markrate_ran) {
    fprintf(f, ",\n  \"mark_rate\": ");
    json_metrics(f, &markrate, true);
  }
  if (numa_state == NUMA_RAN) {
    fprintf(f, ",\n  \"numa_scale\": ");
    copy_numa(f, "numa-scale.json");
  }
  fprintf(f, "\n}\n");
  fclose(f);
}

static void cell(FILE *f, double v, const char *fmt) {
  if (isfinite(v))
    fprintf(f, fmt, v);
  else
    fprintf(f, "—");
  fprintf(f, " | ");
}

/* Counters per phase (perf_<phase>_<event> from nheap with NHEAP_PERF_EVENTS), for each system
 * that reported them, with how its arenas were backed. */
static void write_phase_table(FILE *f, const workload *w) {
  static const char *const phases[] = {"alloc", "mark", "sweep", "pause_setup", "pause_term", "scavenge"};
  char events[8][48];
  int nev = 0;
  const sysrun *first = NULL;
  for (int i = 0; i < w->nsys && !first; i++)
    if (ran(&w->sys[i]) && isfinite(getd(&w->sys[i].median, "perf_alloc_ms")))
      first = &w->sys[i];
  if (!first)
    return;
  for (int k = 0; k < first->median.n && nev < 8; k++)   /* perf_alloc_<event> */
    if (strncmp(first->median.key[k], "perf_alloc_", 11) == 0 && strcmp(first->median.key[k], "perf_alloc_ms") != 0)
      snprintf(events[nev++], sizeof events[0], "%s", first->median.key[k] + 11);
  fprintf(f, "Counters per phase (medians; events this machine cannot count are left out):\n\n| system | arenas | phase | ms |");
  for (int e = 0; e < nev; e++)
    fprintf(f, " %s |", events[e]);
  fprintf(f, "\n|---|---|---|---:|");
  for (int e = 0; e < nev; e++)
    fprintf(f, "---:|");
  fprintf(f, "\n");
  for (int i = 0; i < w->nsys; i++) {
    const sysrun *s = &w->sys[i];
    if (!ran(s) || !isfinite(getd(&s->median, "perf_alloc_ms")))
      continue;
    char arenas[96];
    snprintf(arenas, sizeof arenas, "%.0f hugetlb, %.0f THP, %.0f 4 KiB", getd(&s->median, "arenas_hugetlb"),
             getd(&s->median, "arenas_thp"), getd(&s->median, "arenas_4k"));
    for (size_t p = 0; p < sizeof phases / sizeof phases[0]; p++) {
      char key[96];
      snprintf(key, sizeof key, "perf_%s_ms", phases[p]);
      double ms = getd(&s->median, key);
      if (!(ms > 0))
        continue;
      fprintf(f, "| %s | %s | %s | %.1f |", s->name, arenas, phases[p], ms);
      for (int e = 0; e < nev; e++) {
        snprintf(key, sizeof key, "perf_%s_%.47s", phases[p], events[e]);
        double v = getd(&s->median, key);
        if (isfinite(v))
          fprintf(f, " %.0f |", v);
        else
          fprintf(f, " — |");
      }
      fprintf(f, "\n");
      arenas[0] = 0;
    }
  }
  fprintf(f, "\n");
}

/* The time a run is compared on: the program's own timed part (time_s) where it reports one
 * and the workload has no metric of its own, else the whole process (wall_s). */
static double run_time(const workload *w, const metrics *m) {
  double t = getd(m, w->metric ? "wall_s" : "time_s");
  return isfinite(t) ? t : getd(m, "wall_s");
}

/* min and max of a key over the successful runs. */
static void spread(const sysrun *s, const char *key, double *lo, double *hi) {
  *lo = INFINITY, *hi = -INFINITY;
  for (int r = 0; r < s->nruns; r++) {
    double v = getd(&s->run[r], key);
    if (!s->run[r].failed && isfinite(v))
      *lo = fmin(*lo, v), *hi = fmax(*hi, v);
  }
}

/* The ratio of s's time to ref's in each round both succeeded: min and max. */
static void round_ratios(const workload *w, const sysrun *s, const sysrun *ref, double *lo, double *hi) {
  *lo = INFINITY, *hi = -INFINITY;
  for (int r = 0; r < s->nruns; r++)
    for (int q = 0; q < ref->nruns; q++)
      if (!s->run[r].failed && !ref->run[q].failed && s->run[r].round == ref->run[q].round) {
        double x = run_time(w, &s->run[r]) / run_time(w, &ref->run[q]);
        *lo = fmin(*lo, x), *hi = fmax(*hi, x);
      }
}

static void write_table(FILE *f, const workload *w) {
  const sysrun *ref = NULL;
  for (int i = 0; i < w->nsys && !ref; i++)
    if (ran(&w->sys[i]))
      ref = &w->sys[i];
  fprintf(f, "### %s\n\n", w->title);
  if (!ref) {
    fprintf(f, "No system ran successfully.\n\n");
    for (int i = 0; i < w->nsys; i++)
      fprintf(f, "- %s: %s: %s\n", w->sys[i].name, w->sys[i].broke ? "**FAILED**" : "skipped",
              w->sys[i].why[0] ? w->sys[i].why : "not run");
    fprintf(f, "\n");
    return;
  }
  fprintf(f, "Command of the first system: `");
  for (int a = 0; ref->argv[a]; a++)
    fprintf(f, "%s%s", a ? " " : "", a == 0 || strchr(ref->argv[a], '/') ? strrchr(ref->argv[a], '/') + 1 : ref->argv[a]);
  fprintf(f, "`. Every run's output checked: check = %llu. Ratios (×) are to **%s** (below 1: less time or memory "
             "than it): the ratio of medians, and in brackets the lowest and highest ratio of one round.\n\n",
          w->check, ref->name);
  if (w->open_loop)
    fprintf(f, "Open loop: each connection sends on a fixed schedule, %.0f requests/s in all (60%% of the lowest "
               "capacity below, measured closed-loop in the warm-up), and each request's latency counts from when "
               "it was meant to be sent, so a pause delays every request due during it.\n\n", w->rate);
  fprintf(f, "| system | mode | backing | time s (min–max) | × [rounds] | user s | sys s | peak RSS MiB | × | cycles "
             "| pauses | p50 ms | p99 ms | max ms | stopped ms/cycle | GC ms | faults |");
  if (w->metric)
    fprintf(f, " %s | × |", w->metric_title);
  if (w->open_loop)
    fprintf(f, " capacity/s |");
  if (w->latency)
    fprintf(f, " p50 µs | p99 µs | p99.9 µs | max µs | > 10 ms |");
  fprintf(f, "\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
  if (w->metric)
    fprintf(f, "---:|---:|");
  if (w->open_loop)
    fprintf(f, "---:|");
  if (w->latency)
    fprintf(f, "---:|---:|---:|---:|---:|");
  fprintf(f, "\n");
  double rt = run_time(w, &ref->median), rr = getd(&ref->median, "rss_mib");
  for (int i = 0; i < w->nsys; i++) {
    const sysrun *s = &w->sys[i];
    if (!ran(s)) {
      fprintf(f, "| %s | %s: %s |\n", s->name, s->broke ? "**FAILED**" : "skipped", s->why[0] ? s->why : "not run");
      continue;
    }
    const metrics *m = &s->median;
    char mode[96], back[96], t[64], x[64];
    mode_ran(s, mode, sizeof mode);
    backing(s, back, sizeof back);
    double lo, hi;
    spread(s, w->metric ? "wall_s" : isfinite(getd(m, "time_s")) ? "time_s" : "wall_s", &lo, &hi);
    snprintf(t, sizeof t, "%.2f (%.2f–%.2f)", run_time(w, m), lo, hi);
    round_ratios(w, s, ref, &lo, &hi);
    snprintf(x, sizeof x, "%.2f [%.2f–%.2f]", run_time(w, m) / rt, lo, hi);
    bool gc = getd(m, "pauses") > 0;
    fprintf(f, "| %s%s | %s | %s | %s | %s | ", s->name, s->nfailed ? " (**some runs FAILED**)" : "", mode, back, t,
            s == ref ? "1" : x);
    cell(f, getd(m, "user_s"), "%.2f");
    cell(f, getd(m, "sys_s"), "%.2f");
    cell(f, getd(m, "rss_mib"), "%.0f");
    cell(f, getd(m, "rss_mib") / rr, "%.2f");
    cell(f, getd(m, "cycles"), "%.0f");
    cell(f, getd(m, "pauses"), "%.0f");
    cell(f, gc ? getd(m, "pause_p50_ms") : NAN, "%.3f");
    cell(f, gc ? getd(m, "pause_p99_ms") : NAN, "%.3f");
    cell(f, gc ? getd(m, "pause_max_ms") : NAN, "%.3f");
    cell(f, gc ? getd(m, "stopped_ms_per_cycle") : NAN, "%.3f");
    cell(f, getd(m, "cycles") > 0 ? getd(m, "gc_ms") : NAN, "%.0f");
    cell(f, getd(m, "faults"), "%.0f");
    if (w->metric) {
      cell(f, getd(m, w->metric), "%.0f");
      cell(f, getd(m, w->metric) / getd(&ref->median, w->metric), "%.2f");
    }
    if (w->open_loop)
      cell(f, s->capacity, "%.0f");
    if (w->latency) {
      cell(f, getd(m, "lat_p50_us"), "%.0f");
      cell(f, getd(m, "lat_p99_us"), "%.0f");
      cell(f, getd(m, "lat_p999_us"), "%.0f");
      cell(f, getd(m, "lat_max_us"), "%.0f");
      cell(f, getd(m, "over_10ms"), "%.0f");
    }
    fprintf(f, "\n");
  }
  fprintf(f, "\nSettings (the environment of each run, besides NHEAP_CONFIG): ");
  for (int i = 0, first = 1; i < w->nsys; i++) {
    const sysrun *s = &w->sys[i];
    if (!s->nenv && !s->preload[0])
      continue;
    fprintf(f, "%s%s:", first ? "" : "; ", s->name);
    if (s->preload[0])
      fprintf(f, " LD_PRELOAD=%s", strrchr(s->preload, '/') + 1);
    for (int e = 0; e < s->nenv; e++)
      fprintf(f, " %s", s->env[e]);
    first = 0;
  }
  fprintf(f, ".\n\n");
  write_phase_table(f, w);
  if (w->timeline)
    fprintf(f, "![pauses](pauses-%s.png) ![heap](heap-%s.png)\n\n", w->name, w->name);
  fprintf(f, "![time and RSS](bars-%s.png)\n\n", w->name);
}

/* A goal line: the figure, or why it was not measured. */
static bool measured(FILE *f, const char *goal, const workload *w, const char *const *slugs, const sysrun **out,
                     int n) {
  for (int i = 0; i < n; i++) {
    out[i] = w ? find_sys(w, slugs[i]) : NULL;
    if (!out[i]) {
      const sysrun *s = NULL;
      for (int k = 0; w && k < w->nsys && !s; k++)
        if (strcmp(w->sys[k].slug, slugs[i]) == 0)
          s = &w->sys[k];
      fprintf(f, "- %s: **not measured**: %s %s.\n", goal, s ? s->name : slugs[i],
              s ? (s->why[0] ? s->why : "did not run") : "is not in this run");
      return false;
    }
  }
  return true;
}

/* The goals of the open issues, with what this run measured (reported, never tuned for). */
static void write_goals(FILE *f) {
  fprintf(f, "## Goals\n\n");
  const sysrun *s[3];
  const workload *bt = find_workload("binary-trees");
  if (bt && measured(f, "binary-trees vs bdwgc", bt, (const char *[]){"nheap-concurrent", "bdwgc"}, s, 2))
    fprintf(f, "- binary-trees: nheap (concurrent) is %.2fx as fast as bdwgc (goal: 3x).\n",
            getd(&s[1]->median, "time_s") / getd(&s[0]->median, "time_s"));
  if (bt && measured(f, "binary-trees vs Go", bt, (const char *[]){"nheap-concurrent", "go"}, s, 2))
    fprintf(f, "- binary-trees: nheap (concurrent) is %.2fx as fast as Go (goal: 3x); peak RSS %.0f vs %.0f MiB "
               "(goal: no higher than Go's).\n",
            getd(&s[1]->median, "time_s") / getd(&s[0]->median, "time_s"), getd(&s[0]->median, "rss_mib"),
            getd(&s[1]->median, "rss_mib"));
  if (bt && measured(f, "binary-trees gc = off vs mimalloc", bt, (const char *[]){"nheap-off", "mimalloc"}, s, 2))
    fprintf(f, "- binary-trees: nheap with gc = off and explicit free takes %.2fx mimalloc's time (goal: at most "
               "1x); peak RSS %.2fx.\n",
            getd(&s[0]->median, "time_s") / getd(&s[1]->median, "time_s"),
            getd(&s[0]->median, "rss_mib") / getd(&s[1]->median, "rss_mib"));
  const workload *gb = find_workload("gcbench");
  if (gb && measured(f, "GCBench vs bdwgc", gb, (const char *[]){"nheap", "bdwgc"}, s, 2))
    fprintf(f, "- GCBench: nheap takes %.2fx bdwgc's time (goal: 0.5x).\n",
            getd(&s[0]->median, "time_s") / getd(&s[1]->median, "time_s"));
  if (gb && measured(f, "bdwgc's GCBench binary on nheap", gb, (const char *[]){"nheap-gcabi", "bdwgc"}, s, 2))
    fprintf(f, "- GCBench, bdwgc's own binary unchanged on nheap's libgc.so.1: %.2fx bdwgc's time, peak RSS %.2fx "
               "(goal: faster and smaller than bdwgc).\n",
            getd(&s[0]->median, "time_s") / getd(&s[1]->median, "time_s"),
            getd(&s[0]->median, "rss_mib") / getd(&s[1]->median, "rss_mib"));
  if (markrate_ran)
    fprintf(f, "- mark rate: one core marks %.2f GB/s of a %.0f MiB random-order heap, %.0f%% of this machine's "
               "eight-chain limit of %.2f GB/s (goal: at least 1 GB/s).\n",
            getd(&markrate, "mark_gbs"), getd(&markrate, "heap_mib"),
            100 * getd(&markrate, "mark_gbs") / getd(&markrate, "limit_gbs"), getd(&markrate, "limit_gbs"));
  const workload *gp = find_workload("gc-pause");
  if (gp && measured(f, "pauses", gp, (const char *[]){"nheap-concurrent", "go"}, s, 2))
    fprintf(f, "- gc-pause: nheap (concurrent)'s longest pause %.2f ms, Go's %.2f ms (goal: under 1 ms).\n",
            getd(&s[0]->median, "pause_max_ms"), getd(&s[1]->median, "pause_max_ms"));
  const workload *kv = find_workload("kvserver");
  if (kv && measured(f, "kvserver latency", kv, (const char *[]){"nheap-concurrent", "nheap-off"}, s, 2))
    fprintf(f, "- kvserver at %.0f requests/s: with the collector, p99.9 latency is %.2fx and the longest %.2fx those "
               "of the same server with no collector (%.0f vs %.0f µs; %.0f vs %.0f µs; goal: within 2x).\n",
            kv->rate, getd(&s[0]->median, "lat_p999_us") / getd(&s[1]->median, "lat_p999_us"),
            getd(&s[0]->median, "lat_max_us") / getd(&s[1]->median, "lat_max_us"), getd(&s[0]->median, "lat_p999_us"),
            getd(&s[1]->median, "lat_p999_us"), getd(&s[0]->median, "lat_max_us"), getd(&s[1]->median, "lat_max_us"));
  if (!full)
    fprintf(f, "\nThese are the quick sizes (binary-trees depth 18); the goals are stated for the full ones "
               "(`make bench-full`: depth 21, a 1 GiB live heap).\n");
  fprintf(f, "\n");
}

static void write_micro(FILE *f) {
  if (!micro_ran)
    return;
  static const char *const rows[][2] = {{"pair", "16"},  {"pair", "64"},   {"pair", "1024"},  {"pair", "4096"},
                                        {"pair", "100000"}, {"batch", "16"}, {"batch", "4096"}, {"xthread", "64"}};
  fprintf(f, "### Allocator micro-benchmarks (gc = off; nanoseconds per object, median)\n\n");
  fprintf(f, "nheap's time and nheap ÷ each peer (below 1: nheap is faster).\n\n| benchmark | nheap ns |");
  for (size_t a = 1; a < sizeof micro_allocators / sizeof *micro_allocators; a++)
    fprintf(f, " ÷ %s |", micro_allocators[a]);
  fprintf(f, "\n|---|---:|---:|---:|---:|---:|\n");
  for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
    double mine = micro_ns(rows[r][0], "nheap", rows[r][1]);
    if (!isfinite(mine))
      continue;
    fprintf(f, "| %s %s | %.1f |", rows[r][0], rows[r][1], mine);
    for (size_t a = 1; a < sizeof micro_allocators / sizeof *micro_allocators; a++) {
      double peer = micro_ns(rows[r][0], micro_allocators[a], rows[r][1]);
      if (isfinite(peer))
        fprintf(f, " %.2f |", mine / peer);
      else
        fprintf(f, " — |");
    }
    fprintf(f, "\n");
  }
  fprintf(f, "\nEach time is per object, one malloc and one free. pair: malloc then free of one size (CPU time); "
             "batch: 1000 allocations then the 1000 frees (CPU time, a batch's ÷ 1000); xthread: a producer "
             "allocates, a consumer thread frees (wall time per object transferred: both threads' work). Every "
             "repetition of every benchmark runs in a random order. tcmalloc is gperftools' tcmalloc_minimal "
             "(Debian's libtcmalloc-minimal4), not google/tcmalloc.\n\n");
}

static void write_stats_read(FILE *f) {
  if (!nstats_read && !stats_read_note[0])
    return;
  fprintf(f, "### Reading the statistics (nheap-stats-read; nanoseconds per call, median)\n\n");
  if (!nstats_read) {
    fprintf(f, "Not measured: %s.\n\n", stats_read_note);
    return;
  }
  fprintf(f, "%s. Goal (issue 24): a snapshot and each single counter at most 1 µs per read.\n\n"
             "| read | ns | goal |\n|---|---:|---|\n", stats_read_note);
  for (int i = 0; i < nstats_read; i++) {
    bool scrape = strstr(stats_read[i].name, "write") != NULL;   /* formatting included: no goal */
    fprintf(f, "| %s | %.1f | %s |\n", stats_read[i].name, stats_read[i].ns,
            scrape ? "—" : stats_read[i].ns <= 1000 ? "met" : "**not met**");
  }
  fprintf(f, "\nstats/read is nh_stats_read (the whole snapshot: page heaps under their seqlocks, pause "
             "percentiles from the histogram); stats/stat/* is nh_stat of one counter; "
             "stats/write_openmetrics a whole scrape written to /dev/null (CPU time of the calling thread).\n\n");
}

static void write_markdown(const char *when, const char *mach, const char *no_plots) {
  char path[512];
  snprintf(path, sizeof path, "%s/report.md", out);
  FILE *f = fopen(path, "w");
  if (!f)
    die("cannot write %s: %s", path, strerror(errno));
  fprintf(f, "# nheap benchmark report\n\n%s, %s sizes, %d measured rounds after a warm-up, systems interleaved "
             "(each round starting at another); medians.\n\nMachine: %s.\n\n",
          when, full ? "full" : "quick", reps, mach);
  fprintf(f, "How to read it: *time* is the program's own timed part where it reports one (binary-trees, GCBench), "
             "else the whole process (start-up, set-up and exit included), as the median of the rounds with their "
             "min and max; × is the ratio of medians to the table's first system, with the lowest and highest ratio "
             "within one round in brackets. Each round starts at another system. *mode* is what the program says it "
             "ran (flagged where that is not what was asked); *backing* what its memory was, measured while it ran "
             "(the hugetlb pool's pages in use, the process's transparent huge pages). Peak RSS is the kernel's for "
             "the whole process tree plus the hugetlb pages, which the kernel's figure leaves out. Every run's "
             "output is checked against the checksum the sizes imply; a run that fails, times out (%d s) or "
             "computes a wrong result is shown as FAILED.\n\n"
             "Pauses are the world stopped, every one in the measured part: nheap's own record of each (read while "
             "the program runs), bdwgc's stop-world to start-world events, Go's from its gctrace (exact). nheap and "
             "Go stop twice a cycle (mark setup, mark termination), bdwgc once: p50/p99/max are per pause, "
             "*stopped ms/cycle* is all the stopped time over the cycles. *GC ms* is each system's collection "
             "time, not alike: nheap's stopped time + its mark workers' and assists' marking + background "
             "sweeping (summed over threads); bdwgc's collection start to end (wall; unknown in its incremental "
             "mode); Go's GC CPU time from gctrace (assist, background and idle marking and both pauses).\n\n"
             "Settings: every system's environment is cleared of the variables that steer one (NHEAP_* but "
             "NHEAP_CONFIG, GO*, GC_*, MALLOC_*, MIMALLOC_*, TCMALLOC_*, GLIBC_TUNABLES, LD_PRELOAD, ...; this run "
             "cleared: %s) and set as each table lists; NHEAP_CONFIG=%s. Each peer gets the huge pages it can use, as nheap's arenas take "
             "them: mimalloc MIMALLOC_LARGE_OS_PAGES=1, jemalloc thp:always, glibc's glibc.malloc.hugetlb=1 "
             "(THP by madvise); gperftools' tcmalloc (the \"tcmalloc\" here: Debian's libtcmalloc-minimal4, not "
             "google/tcmalloc), bdwgc and Go have no switch and run their defaults. bdwgc marks in parallel on "
             "every CPU; its incremental mode (GC_ENABLE_INCREMENTAL, mprotect-based) is the counterpart of "
             "nheap's concurrent-nobarrier. The hugepages table adds nheap's counters per phase of its work "
             "(README, \"Hardware counters\"). One run of this report is one comparison: figures from different "
             "runs do not compare on a shared machine.\n\n",
          run_timeout_s, cleared[0] ? cleared : "none were set", getenv("NHEAP_CONFIG") ? getenv("NHEAP_CONFIG") : "unset");
  if (failures)
    fprintf(f, "**%d run(s) FAILED** (their rows say which and why; their output is in data/).\n\n", failures);
  if (no_plots)
    fprintf(f, "(No plots: %s.\n\n", no_plots);
  write_goals(f);
  fprintf(f, "## Workloads\n\n");
  for (int i = 0; i < nworkloads; i++)
    write_table(f, &suite[i]);
  if (find_workload("kvserver"))
    fprintf(f, "![kvserver latency](latency.png)\n\n");
  write_micro(f);
  write_mark_rate(f);
  write_stats_read(f);
  write_numa(f);
  fclose(f);
}

/* Cycle marks for the heap plot: the samples where the cycle count moved; false if none. */
static bool write_cycle_marks(const workload *w, const sysrun *s) {
  char in[512], outp[512], line[256];
  data_path(in, sizeof in, w, s, "timeline");
  data_path(outp, sizeof outp, w, s, "cycles");
  FILE *f = fopen(in, "r"), *o = fopen(outp, "w");
  double t, heap, prev = -1, c;
  int marks = 0;
  while (f && o && fgets(line, sizeof line, f))
    if (sscanf(line, "%lf %lf %lf", &t, &heap, &c) == 3) {
      if (prev >= 0 && c != prev && ++marks)
        fprintf(o, "%.3f %.2f\n", t, heap);
      prev = c;
    }
  if (f)
    fclose(f);
  if (o)
    fclose(o);
  return marks > 0;
}

/* Sorted pauses with their cumulative fraction, for the distribution plot. */
static bool write_pause_cdf(const workload *w, const sysrun *s) {
  char in[512], outp[512];
  data_path(in, sizeof in, w, s, "pauses");
  data_path(outp, sizeof outp, w, s, "cdf");
  FILE *f = fopen(in, "r");
  if (!f)
    return false;
  double *v = NULL, x;
  size_t n = 0, cap = 0;
  while (fscanf(f, "%lf", &x) == 1) {
    if (n == cap && !(v = realloc(v, (cap = cap ? 2 * cap : 256) * sizeof *v)))
      die("out of memory");
    v[n++] = x > 1e-4 ? x : 1e-4;
  }
  fclose(f);
  if (n == 0) {
    free(v);
    return false;
  }
  qsort(v, n, sizeof *v, cmp_double);
  FILE *o = fopen(outp, "w");
  for (size_t i = 0; o && i < n; i++)
    fprintf(o, "%.4f %.5f\n", v[i], (double)(i + 1) / (double)n);
  if (o)
    fclose(o);
  free(v);
  return o != NULL;
}

/* A gnuplot string: single quotes, in which only a quote is special (written twice). */
static void gp_quoted(FILE *g, const char *v) {
  fputc('\'', g);
  for (; *v; v++) {
    if (*v == '\'')
      fputc('\'', g);
    fputc(*v, g);
  }
  fputc('\'', g);
}

/* The systems one plot draws, as the scripts in bench/plots expect them: the arrays slugs
 * (which name each system's data files) and names (the key), in the table's order. */
static void gp_systems(FILE *g, const sysrun *const *s, int n) {
  for (int k = 0; k < 2; k++) {
    fprintf(g, "array %s[%d] = [", k ? "names" : "slugs", n);
    for (int j = 0; j < n; j++) {
      fputs(j ? ", " : "", g);
      gp_quoted(g, k ? s[j]->name : s[j]->slug);
    }
    fputs("]\n", g);
  }
}

/* The workload a script draws: the variables workload and wtitle. */
static void gp_workload(FILE *g, const char *name, const char *title) {
  fputs("workload = ", g);
  gp_quoted(g, name);
  fputs("\nwtitle = ", g);
  gp_quoted(g, title);
  fputc('\n', g);
}

/* The plotting scripts (bench/plots), copied into out/plots beside the plots.gp that loads
 * them: the report's folder redraws its plots on its own, with the scripts that drew them. */
static const char *const plot_scripts[] = {"common.gp", "bars.gp", "pauses.gp", "heap.gp", "latency.gp"};

static bool copy_plot_scripts(void) {
  char dir[600];
  snprintf(dir, sizeof dir, "%s/plots", out);
  if (mkdir(dir, 0755) != 0 && errno != EEXIST)
    return false;
  bool ok = true;
  for (size_t i = 0; ok && i < sizeof plot_scripts / sizeof plot_scripts[0]; i++) {
    char from[600], to[700], buf[4096];
    snprintf(from, sizeof from, "%s/bench/plots/%s", NH_SOURCE_DIR, plot_scripts[i]);
    snprintf(to, sizeof to, "%s/%s", dir, plot_scripts[i]);
    FILE *in = fopen(from, "r"), *o = in ? fopen(to, "w") : NULL;
    for (size_t n; o && (n = fread(buf, 1, sizeof buf, in)) > 0;)
      ok &= fwrite(buf, 1, n, o) == n;
    ok &= in && !ferror(in) && o;
    if (in)
      fclose(in);
    if (o)
      ok &= fclose(o) == 0;
  }
  return ok;
}

/* Writes plots.gp and runs gnuplot; returns NULL, or why there are no plots. plots.gp only
 * names what each plot draws (a workload, its systems) and loads the script in plots/ that
 * draws it; the scripts run in one gnuplot session, in this order. */
static const char *write_plots(void) {
  if (!have_program("gnuplot"))
    return "gnuplot is not installed; scripts/deps.sh installs gnuplot-nox)";
  if (!copy_plot_scripts())
    return "cannot copy the scripts of " NH_SOURCE_DIR "/bench/plots)";
  char path[512];
  snprintf(path, sizeof path, "%s/plots.gp", out);
  FILE *g = fopen(path, "w");
  if (!g)
    return "cannot write plots.gp)";
  fprintf(g, "# Made by nheap-report; run from this directory: gnuplot plots.gp\n"
             "# The scripts in plots/ (bench/plots in the source) draw; each header says what it expects.\n"
             "load 'plots/common.gp'\n");
  for (int i = 0; i < nworkloads; i++) {
    const workload *w = &suite[i];
    const sysrun *drawn[MAX_SYSTEMS];
    int n = 0;
    bool any = false;
    for (int j = 0; j < w->nsys; j++)
      any |= ran(&w->sys[j]);
    if (!any)
      continue;
    /* time and RSS bars */
    char dat[512];
    snprintf(dat, sizeof dat, "%s/data/%s.bars", out, w->name);
    FILE *b = fopen(dat, "w");
    for (int j = 0; b && j < w->nsys; j++) {
      const sysrun *s = &w->sys[j];
      if (!ran(s))
        continue;
      double t = getd(&s->median, w->metric ? "wall_s" : "time_s");
      fprintf(b, "\"%s\" %.4f %.1f\n", s->name, isfinite(t) ? t : getd(&s->median, "wall_s"),
              getd(&s->median, "rss_mib"));
    }
    if (b)
      fclose(b);
    fputc('\n', g);
    gp_workload(g, w->name, w->title);
    fprintf(g, "load 'plots/bars.gp'\n");
    if (!w->timeline)
      continue;
    /* pause distribution */
    for (int j = 0; j < w->nsys; j++)
      if (ran(&w->sys[j]) && write_pause_cdf(w, &w->sys[j]))
        drawn[n++] = &w->sys[j];
    if (n) {
      gp_systems(g, drawn, n);
      fprintf(g, "load 'plots/pauses.gp'\n");
    }
    /* heap over time, cycles marked */
    bool marked[MAX_SYSTEMS];
    n = 0;
    for (int j = 0; j < w->nsys; j++) {
      const sysrun *s = &w->sys[j];
      char tl[512];
      data_path(tl, sizeof tl, w, s, "timeline");
      if (!ran(s) || !exists(tl))
        continue;
      marked[n] = write_cycle_marks(w, s);
      drawn[n++] = s;
    }
    if (n) {
      gp_systems(g, drawn, n);
      fprintf(g, "array marks[%d] = [", n);
      for (int j = 0; j < n; j++)
        fprintf(g, "%s%d", j ? ", " : "", marked[j]);
      fprintf(g, "]\nload 'plots/heap.gp'\n");
    }
  }
  const workload *kv = find_workload("kvserver");
  if (kv) {
    const sysrun *drawn[MAX_SYSTEMS];
    int n = 0;
    for (int j = 0; j < kv->nsys; j++) {
      char la[512];
      data_path(la, sizeof la, kv, &kv->sys[j], "latency");
      if (ran(&kv->sys[j]) && exists(la))
        drawn[n++] = &kv->sys[j];
    }
    if (n) {
      fputs("\nworkload = ", g);
      gp_quoted(g, kv->name);
      fputc('\n', g);
      gp_systems(g, drawn, n);
      fprintf(g, "load 'plots/latency.gp'\n");
    }
  }
  fclose(g);
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "cd '%s' && gnuplot plots.gp", out);
  if (system(cmd) != 0)
    return "gnuplot failed on plots.gp)";
  return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * main
 * ------------------------------------------------------------------------------------------- */

static void usage(void) {
  fprintf(stderr, "usage: nheap-report [--quick | --full | --smoke] [--reps N] [--timeout S] [--only WORKLOAD] [--out DIR] [--bin DIR]\n");
  exit(2);
}

int main(int argc, char **argv) {
  bool timeout_given = false;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--full") == 0)
      full = true, reps = 5;
    else if (strcmp(argv[i], "--quick") == 0)
      full = false;
    else if (strcmp(argv[i], "--smoke") == 0)
      smoke = true, reps = 1;
    else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
      reps = atoi(argv[++i]);
    else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc)
      run_timeout_s = atoi(argv[++i]), timeout_given = true;
    else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
      snprintf(only, sizeof only, "%s", argv[++i]);
    else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc)
      out = argv[++i];
    else if (strcmp(argv[i], "--bin") == 0 && i + 1 < argc)
      bin = argv[++i];
    else
      usage();
  }
  if (reps < 1 || reps > MAX_REPS - 1)
    die("--reps must be 1 .. %d", MAX_REPS - 1);
  if (run_timeout_s < 1)
    die("--timeout must be at least 1 second");
  static char self[4096];
  if (!bin) {   /* this program lives in <build>/bench */
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
      die("cannot find the build directory: give --bin");
    self[n] = 0;
    for (int k = 0; k < 2; k++)
      *strrchr(self, '/') = 0;
    bin = self;
  }
  char data[600];
  snprintf(data, sizeof data, "%s/data", out);
  if (mkdir(out, 0755) != 0 && errno != EEXIST)
    die("cannot make %s: %s", out, strerror(errno));
  if (mkdir(data, 0755) != 0 && errno != EEXIST)
    die("cannot make %s: %s", data, strerror(errno));

  if (!timeout_given)
    run_timeout_s = smoke ? 120 : full ? 1200 : 300;
  pin_environment();
  build_suite();
  if (only[0]) {
    int k = 0;
    for (int i = 0; i < nworkloads; i++)
      if (strcmp(suite[i].name, only) == 0)
        suite[k++] = suite[i];
    if (k == 0 && strcmp(only, "malloc") != 0 && strcmp(only, "numa") != 0 && strcmp(only, "mark-rate") != 0 &&
        strcmp(only, "stats") != 0)
      die("no workload named %s", only);
    nworkloads = k;
  }
  int total = 0;
  for (int i = 0; i < nworkloads; i++)
    for (int j = 0; j < suite[i].nsys; j++)
      if (!suite[i].sys[j].skip)
        total += reps + 1;
      else
        fprintf(stderr, "nheap-report: %s / %s skipped: %s\n", suite[i].name, suite[i].sys[j].name, suite[i].sys[j].why);
  double t0 = now_s();
  int done = 0;
  for (int i = 0; i < nworkloads; i++)
    run_workload(&suite[i], &done, total);
  if (!only[0] || strcmp(only, "malloc") == 0)
    run_micro();
  if (!only[0] || strcmp(only, "mark-rate") == 0)
    run_mark_rate();
  if (!only[0] || strcmp(only, "stats") == 0)
    run_stats_read();
  if ((!only[0] && !smoke) || strcmp(only, "numa") == 0)
    run_numa();

  char when[64], mach[512];
  time_t now = time(NULL);
  strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", gmtime(&now));
  machine(mach, sizeof mach);
  write_json(when, mach);
  const char *plots = write_plots();
  write_markdown(when, mach, plots);
  fprintf(stderr, "nheap-report: done in %.0f s: %s/report.md, results.json%s%s\n", now_s() - t0, out,
          plots ? " (no plots: " : ", *.png", plots ? plots : "");
  if (failures)
    fprintf(stderr, "nheap-report: %d run(s) failed\n", failures);
  return failures ? 1 : 0;
}
