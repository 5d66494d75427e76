/*
 * report.c — nheap-report, the main job (`make run`): runs the benchmark suite, nheap beside
 * its peers, and writes build/report: results.json, report.md and PNG plots (gnuplot).
 *
 * The suite (sizes: --quick, the default, for `make run`; --full for `make bench-full`):
 *   binary-trees     the Benchmarks Game's, 1 and 2 threads: nheap concurrent, stw and off
 *                    (explicit free), bdwgc, Go, and glibc, jemalloc, mimalloc, tcmalloc with
 *                    explicit free (the malloc build under LD_PRELOAD of each)
 *   gcbench          Boehm's GCBench through nheap_gc_compat.h: nheap, bdwgc
 *   gc-pause         a steady live heap (1 GiB full) with 2 mutators replacing subtrees:
 *                    nheap concurrent and stw, bdwgc, Go
 *   kvserver         examples/kvserver, a key-value server on loopback under a closed-loop
 *                    load: nheap concurrent, stw and off (no collector: the baseline), bdwgc, Go
 *   malloc           the allocator micro-benchmarks (nheap-bench-malloc): medians of its own
 *                    repetitions, nheap beside glibc, jemalloc, mimalloc and tcmalloc
 * A system whose program or library is not installed is skipped and said so.
 *
 * Method: each workload runs every system once as a warm-up, then `reps` rounds; in a round
 * the systems run one after the other (A B C A B C ...), so drift on a shared machine falls
 * on all of them alike. Per run: wall time (measured here), user and sys time, peak RSS and
 * page faults (wait4's rusage, the whole process tree), and the program's RESULT line
 * (bench/gc_peer.h: cycles, pauses and the workload's own figures). The report quotes the
 * median of the rounds and the ratio to nheap's (the workload's first system) median from the
 * same run, never figures from different runs.
 *
 * Output in --out (build/report): results.json (every run and the medians), report.md (a
 * table per workload, the goals of issue 6 with what this run measured), data/ (timelines,
 * pauses, latency curves of the last round), plots.gp and the PNGs it makes: pauses-*.png
 * (pause distribution per system), heap-*.png (heap in use over time, GC cycles marked),
 * latency.png (kvserver percentiles), bars-*.png (time and peak RSS per system).
 *
 * Usage: nheap-report [--quick | --full | --smoke] [--reps N] [--only WORKLOAD] [--out DIR] [--bin DIR]
 * (--smoke: every workload and plot at tiny sizes, one round: the test of this program).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
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

enum { MAX_SYSTEMS = 12, MAX_WORKLOADS = 8, MAX_REPS = 15, MAX_KEYS = 96, MAX_ARGS = 24, MAX_ENV = 4 };

typedef struct metrics {
  int n;
  char key[MAX_KEYS][48];
  double val[MAX_KEYS];
} metrics;

typedef struct sysrun {
  const char *name;          /* "nheap concurrent" */
  const char *slug;          /* "nheap-concurrent": file names */
  char *argv[MAX_ARGS];
  char preload[256];         /* LD_PRELOAD, or "" */
  char env[MAX_ENV][128];    /* NAME=value for its runs */
  int nenv;
  bool skip;
  char why[160];             /* why it is skipped */
  metrics run[MAX_REPS];
  int nruns;
  metrics median;
} sysrun;

typedef struct workload {
  const char *name, *title, *metric, *metric_title;   /* metric: the workload's own figure */
  bool higher_better;         /* for metric */
  bool timeline, latency;     /* which plots it has */
  sysrun sys[MAX_SYSTEMS];
  int nsys;
} workload;

static workload suite[MAX_WORKLOADS];
static int nworkloads;
static const char *bin = NULL, *out = "build/report";
static bool full, smoke;
static int failures;   /* runs that failed (not systems skipped for want of a program) */
static int reps = 3;
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
  if (s->nenv < MAX_ENV)
    snprintf(s->env[s->nenv++], sizeof s->env[0], "%s", kv);
}

static void malloc_peers(workload *w, const char *fmt, int a, int b) {
  static const struct { const char *name, *slug, *lib; } peers[] = {
    {"glibc", "glibc", NULL},
    {"jemalloc", "jemalloc", "libjemalloc.so.2"},
    {"mimalloc", "mimalloc", "libmimalloc.so.2"},
    {"tcmalloc", "tcmalloc", "libtcmalloc_minimal.so.4"},
  };
  for (size_t i = 0; i < sizeof peers / sizeof peers[0]; i++) {
    char f[512];
    snprintf(f, sizeof f, fmt, peers[i].slug, a, b);
    add_system(w, peers[i].name, peers[i].slug, peers[i].lib, "%s", f);
  }
}

static void build_suite(void) {
  int depth = full ? 21 : 18, gcb = full ? 20 : 18;
  int live = full ? 1024 : 128, secs = full ? 10 : 3, keys = full ? 100000 : 20000, kvsecs = full ? 15 : 3;
  if (smoke)   /* the test of this program: every path, tiny sizes */
    depth = 10, gcb = 10, live = 16, secs = 1, keys = 2000, kvsecs = 1;
  for (int threads = 1; threads <= 2; threads++) {
    workload *w = add_workload(threads == 1 ? "binary-trees" : "binary-trees-2t",
                               threads == 1 ? "binary-trees (1 thread)" : "binary-trees (2 threads)", NULL, NULL,
                               false);
    w->timeline = true;
    add_system(w, "nheap concurrent", "nheap-concurrent", NULL, "@bench/nheap-binary-trees concurrent %d %d", depth,
               threads);
    add_system(w, "nheap nobarrier (plain stores)", "nheap-nobarrier", NULL,
               "@bench/nheap-binary-trees-plain nobarrier %d %d", depth, threads);
    add_system(w, "nheap stw", "nheap-stw", NULL, "@bench/nheap-binary-trees stw %d %d", depth, threads);
    add_system(w, "nheap off (free)", "nheap-off", NULL, "@bench/nheap-binary-trees off %d %d", depth, threads);
    if (threads == 1) {   /* what secure = on costs (guard pages, shuffled order, zero on free) */
      add_system(w, "nheap concurrent, secure", "nheap-concurrent-secure", NULL,
                 "@bench/nheap-binary-trees concurrent %d %d", depth, threads);
      system_env(w, "NHEAP_SECURE=1");
      add_system(w, "nheap off (free), secure", "nheap-off-secure", NULL, "@bench/nheap-binary-trees off %d %d",
                 depth, threads);
      system_env(w, "NHEAP_SECURE=1");
    }
    add_system(w, "bdwgc", "bdwgc", NULL, "@bench/nheap-binary-trees-bdwgc bdwgc %d %d", depth, threads);
    add_system(w, "Go", "go", NULL, "@bench/go-binary-trees %d %d", depth, threads);
    malloc_peers(w, "@bench/nheap-binary-trees-malloc %s %d %d", depth, threads);
  }
  workload *w = add_workload("gcbench", "GCBench (bdwgc API through nheap_gc_compat.h)", NULL, NULL, false);
  w->timeline = true;
  add_system(w, "nheap (compat: nobarrier)", "nheap", NULL, "@bench/nheap-gcbench %d", gcb);
  add_system(w, "bdwgc", "bdwgc", NULL, "@bench/nheap-gcbench-bdwgc %d", gcb);

  /* Huge pages x counters: the same program on each arena backing, counted per phase. */
  w = add_workload("hugepages", "binary-trees (1 thread) by arena backing, counted per phase", NULL, NULL, false);
  static const char *const backing[][2] = {{"4 KiB pages", "none"}, {"THP", "thp"}, {"hugetlb", "hugetlb"}};
  for (int i = 0; i < 3; i++) {
    char slug[32], env[64];
    snprintf(slug, sizeof slug, "nheap-%s", backing[i][1]);
    snprintf(env, sizeof env, "NHEAP_HUGEPAGES=%s", backing[i][1]);
    add_system(w, backing[i][0], xstrdup(slug), NULL, "@bench/nheap-binary-trees concurrent %d 1", depth);
    system_env(w, env);
    system_env(w, "NHEAP_PERF_EVENTS=task-clock,page-faults,dTLB-load-misses,cycles");
  }

  w = add_workload("gc-pause", "steady live heap, 2 mutators", "replacements_per_s", "replacements/s", true);
  w->timeline = true;
  add_system(w, "nheap concurrent", "nheap-concurrent", NULL, "@bench/nheap-gc-pause concurrent %d %d 2", live, secs);
  add_system(w, "nheap nobarrier (plain stores)", "nheap-nobarrier", NULL,
             "@bench/nheap-gc-pause-plain nobarrier %d %d 2", live, secs);
  add_system(w, "nheap stw", "nheap-stw", NULL, "@bench/nheap-gc-pause stw %d %d 2", live, secs);
  add_system(w, "bdwgc", "bdwgc", NULL, "@bench/nheap-gc-pause-bdwgc bdwgc %d %d 2", live, secs);
  add_system(w, "Go", "go", NULL, "@bench/go-gc-pause %d %d 2", live, secs);

  w = add_workload("kvserver", "key-value server on loopback, 4 connections", "requests_per_s", "requests/s", true);
  w->timeline = w->latency = true;
  static const char *const kv = "@examples/nheap-kvserver load %d 4 %d --";
  char load[256];
  snprintf(load, sizeof load, kv, kvsecs, keys);
  add_system(w, "nheap concurrent", "nheap-concurrent", NULL, "%s @examples/nheap-kvserver serve concurrent %d", load,
             keys);
  add_system(w, "nheap nobarrier (plain stores)", "nheap-nobarrier", NULL,
             "%s @examples/nheap-kvserver-plain serve nobarrier %d", load, keys);
  add_system(w, "nheap stw", "nheap-stw", NULL, "%s @examples/nheap-kvserver serve stw %d", load, keys);
  add_system(w, "nheap off (no GC)", "nheap-off", NULL, "%s @examples/nheap-kvserver serve off %d", load, keys);
  add_system(w, "bdwgc", "bdwgc", NULL, "%s @examples/nheap-kvserver-bdwgc serve bdwgc %d", load, keys);
  add_system(w, "Go", "go", NULL, "%s @bench/go-kvserver %d", load, keys);
}

/* ---------------------------------------------------------------------------------------------
 * Running.
 * ------------------------------------------------------------------------------------------- */

static void data_path(char *p, size_t n, const workload *w, const sysrun *s, const char *what) {
  snprintf(p, n, "%s/data/%s-%s.%s", out, w->name, s->slug, what);
}

/* Runs one system once; false if it failed. */
static bool run_once(const workload *w, sysrun *s, metrics *m) {
  char tl[512], pa[512], la[512], log[512];
  data_path(tl, sizeof tl, w, s, "timeline");
  data_path(pa, sizeof pa, w, s, "pauses");
  data_path(la, sizeof la, w, s, "latency");
  data_path(log, sizeof log, w, s, "out");
  unlink(tl), unlink(pa), unlink(la);   /* nothing stale from an earlier run */
  int pipefd[2];
  if (pipe(pipefd) != 0)
    die("pipe: %s", strerror(errno));
  double t0 = now_s();
  pid_t pid = fork();
  if (pid < 0)
    die("fork: %s", strerror(errno));
  if (pid == 0) {
    dup2(pipefd[1], STDOUT_FILENO);
    close(pipefd[0]);
    close(pipefd[1]);
    setenv("NH_BENCH_TIMELINE", tl, 1);
    setenv("NH_BENCH_PAUSES", pa, 1);
    setenv("NH_BENCH_LATENCY", la, 1);
    if (s->preload[0])
      setenv("LD_PRELOAD", s->preload, 1);
    for (int i = 0; i < s->nenv; i++)
      putenv(s->env[i]);
    if (strcmp(s->slug, "bdwgc") == 0 && !getenv("GC_MARKERS")) {   /* parallel marking on every CPU */
      char n[16];
      snprintf(n, sizeof n, "%ld", sysconf(_SC_NPROCESSORS_ONLN));
      setenv("GC_MARKERS", n, 1);
    }
    execv(s->argv[0], s->argv);
    fprintf(stderr, "nheap-report: cannot run %s: %s\n", s->argv[0], strerror(errno));
    _exit(127);
  }
  close(pipefd[1]);
  FILE *from = fdopen(pipefd[0], "r"), *keep = fopen(log, "w");
  char line[8192];
  bool result = false;
  memset(m, 0, sizeof *m);
  while (from && fgets(line, sizeof line, from)) {
    if (keep)
      fputs(line, keep);
    if (strncmp(line, "RESULT ", 7) != 0)
      continue;
    result = true;
    for (char *save = NULL, *tok = strtok_r(line + 7, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save)) {
      char *eq = strchr(tok, '='), *end;
      if (!eq)
        continue;
      *eq = 0;
      double v = strtod(eq + 1, &end);
      if (end != eq + 1 && *end == 0)
        put(m, tok, v);
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
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !result) {
    fprintf(stderr, "nheap-report: %s / %s failed (%s %d); its output: %s\n", w->name, s->name,
            WIFEXITED(status) ? "exit" : "signal", WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), log);
    return false;
  }
  put(m, "wall_s", wall);
  put(m, "user_s", (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6);
  put(m, "sys_s", (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6);
  put(m, "rss_mib", (double)ru.ru_maxrss / 1024);
  put(m, "faults", (double)(ru.ru_minflt + ru.ru_majflt));
  return true;
}

static void run_workload(workload *w, int *done, int total) {
  for (int r = 0; r < reps + 1; r++) {
    for (int i = 0; i < w->nsys; i++) {
      sysrun *s = &w->sys[i];
      if (s->skip)
        continue;
      fprintf(stderr, "[%3d/%d] %-16s %-20s %s ", ++*done, total, w->name, s->name,
              r == 0 ? "warm-up" : "measured");
      fflush(stderr);
      metrics m;
      if (!run_once(w, s, &m)) {
        failures++;
        s->skip = true;
        snprintf(s->why, sizeof s->why, "failed (see data/%s-%s.out)", w->name, s->slug);
        continue;
      }
      fprintf(stderr, "%.2f s\n", getd(&m, "wall_s"));
      if (r > 0 && s->nruns < MAX_REPS)
        s->run[s->nruns++] = m;
    }
  }
  for (int i = 0; i < w->nsys; i++) {
    sysrun *s = &w->sys[i];
    if (s->skip || s->nruns == 0)
      continue;
    for (int k = 0; k < s->run[0].n; k++) {
      double v[MAX_REPS];
      int n = 0;
      for (int r = 0; r < s->nruns; r++)
        if (get(&s->run[r], s->run[0].key[k], &v[n]))
          n++;
      put(&s->median, s->run[0].key[k], median(v, n));
    }
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

static void run_micro(void) {
  char cmd[1024], path[512];
  snprintf(path, sizeof path, "%s/bench/nheap-bench-malloc", bin);
  if (!exists(path))
    return;
  fprintf(stderr, "[micro] allocator micro-benchmarks (nheap-bench-malloc)\n");
  snprintf(cmd, sizeof cmd,
           "%s --benchmark_filter='%s' --benchmark_repetitions=%d --benchmark_report_aggregates_only=true "
           "--benchmark_min_time=%s --benchmark_format=csv 2>/dev/null",
           path,
           full ? "." : smoke ? "^pair/[a-z]+/16$" : "^(pair/[a-z]+/(16|1024)|batch/[a-z]+/(16|4096)|xthread/[a-z]+/64)$",
           full ? 5 : smoke ? 2 : 3, full ? "0.5" : smoke ? "0.01" : "0.05");
  FILE *p = popen(cmd, "r");
  if (!p)
    return;
  char line[1024];
  while (fgets(line, sizeof line, p) && nmicro < MAX_MICRO) {
    /* name,iterations,real_time,cpu_time,time_unit,... ; medians end in _median */
    char *name = line[0] == '"' ? line + 1 : line;
    char *end = strstr(name, "_median");
    if (!end)
      continue;
    *end = 0;
    char *f = strchr(end + 1, ',');
    double cpu = 0;
    char unit[8] = "";
    if (!f || sscanf(f + 1, "%*[^,],%*[^,],%lf,%7[^,]", &cpu, unit) != 2)
      continue;
    double scale = strcmp(unit, "us") == 0 ? 1e3 : strcmp(unit, "ms") == 0 ? 1e6 : 1;
    snprintf(micro[nmicro].name, sizeof micro[0].name, "%.63s", name);
    micro[nmicro++].ns = cpu * scale;
  }
  micro_ran = pclose(p) == 0 && nmicro > 0;
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

static const sysrun *find_sys(const workload *w, const char *slug) {
  for (int i = 0; i < w->nsys; i++)
    if (strcmp(w->sys[i].slug, slug) == 0 && !w->sys[i].skip && w->sys[i].nruns)
      return &w->sys[i];
  return NULL;
}

static const workload *find_workload(const char *name) {
  for (int i = 0; i < nworkloads; i++)
    if (strcmp(suite[i].name, name) == 0)
      return &suite[i];
  return NULL;
}

static void json_metrics(FILE *f, const metrics *m) {
  fprintf(f, "{");
  for (int i = 0; i < m->n; i++)
    if (isfinite(m->val[i]))
      fprintf(f, "%s\"%s\": %.6g", i ? ", " : "", m->key[i], m->val[i]);
    else
      fprintf(f, "%s\"%s\": null", i ? ", " : "", m->key[i]);
  fprintf(f, "}");
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
  fprintf(f, "  \"workloads\": [\n");
  for (int i = 0; i < nworkloads; i++) {
    const workload *w = &suite[i];
    fprintf(f, "    {\"name\": \"%s\", \"title\": \"%s\", \"systems\": [\n", w->name, w->title);
    for (int j = 0; j < w->nsys; j++) {
      const sysrun *s = &w->sys[j];
      fprintf(f, "      {\"name\": \"%s\", \"command\": \"", s->name);
      for (int a = 0; s->argv[a]; a++)
        fprintf(f, "%s%s", a ? " " : "", s->argv[a]);
      fprintf(f, "\", \"preload\": \"%s\"", s->preload);
      if (s->skip || !s->nruns) {
        fprintf(f, ", \"skipped\": \"%s\"}", s->why[0] ? s->why : "not run");
      } else {
        fprintf(f, ", \"median\": ");
        json_metrics(f, &s->median);
        fprintf(f, ", \"runs\": [");
        for (int r = 0; r < s->nruns; r++) {
          fprintf(f, r ? ", " : "");
          json_metrics(f, &s->run[r]);
        }
        fprintf(f, "]}");
      }
      fprintf(f, "%s\n", j + 1 < w->nsys ? "," : "");
    }
    fprintf(f, "    ]}%s\n", i + 1 < nworkloads ? "," : "");
  }
  fprintf(f, "  ],\n  \"malloc_micro_ns\": {");
  for (int i = 0; i < nmicro; i++)
    fprintf(f, "%s\"%s\": %.3f", i ? ", " : "", micro[i].name, micro[i].ns);
  fprintf(f, "}");
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
    if (!w->sys[i].skip && w->sys[i].nruns && isfinite(getd(&w->sys[i].median, "perf_alloc_ms")))
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
    if (s->skip || !s->nruns || !isfinite(getd(&s->median, "perf_alloc_ms")))
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

static void write_table(FILE *f, const workload *w) {
  const sysrun *ref = NULL;
  for (int i = 0; i < w->nsys && !ref; i++)
    if (!w->sys[i].skip && w->sys[i].nruns)
      ref = &w->sys[i];
  fprintf(f, "### %s\n\n", w->title);
  if (!ref) {
    fprintf(f, "Not run.\n\n");
    return;
  }
  fprintf(f, "Command of the first system: `");
  for (int a = 0; ref->argv[a]; a++)
    fprintf(f, "%s%s", a ? " " : "", a == 0 || strchr(ref->argv[a], '/') ? strrchr(ref->argv[a], '/') + 1 : ref->argv[a]);
  fprintf(f, "`. Ratios are to **%s** (below 1: less time or memory than it).\n\n", ref->name);
  fprintf(f, "| system | wall s | × | user s | sys s | peak RSS MiB | × | cycles | pause p50 ms | p99 ms | max ms | faults |");
  if (w->metric)
    fprintf(f, " %s | × |", w->metric_title);
  if (w->latency)
    fprintf(f, " p50 µs | p99 µs | p99.9 µs |");
  fprintf(f, "\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
  if (w->metric)
    fprintf(f, "---:|---:|");
  if (w->latency)
    fprintf(f, "---:|---:|---:|");
  fprintf(f, "\n");
  double rt = getd(&ref->median, w->metric ? "wall_s" : "time_s"), rr = getd(&ref->median, "rss_mib");
  if (!isfinite(rt))
    rt = getd(&ref->median, "wall_s");
  for (int i = 0; i < w->nsys; i++) {
    const sysrun *s = &w->sys[i];
    if (s->skip || !s->nruns) {
      fprintf(f, "| %s | skipped: %s |\n", s->name, s->why[0] ? s->why : "not run");
      continue;
    }
    const metrics *m = &s->median;
    double t = getd(m, w->metric ? "wall_s" : "time_s");
    if (!isfinite(t))
      t = getd(m, "wall_s");
    bool gc = isfinite(getd(m, "pauses")) && getd(m, "pauses") > 0;
    fprintf(f, "| %s | ", s->name);
    cell(f, getd(m, "wall_s"), "%.2f");
    cell(f, t / rt, "%.2f");
    cell(f, getd(m, "user_s"), "%.2f");
    cell(f, getd(m, "sys_s"), "%.2f");
    cell(f, getd(m, "rss_mib"), "%.0f");
    cell(f, getd(m, "rss_mib") / rr, "%.2f");
    cell(f, getd(m, "cycles"), "%.0f");
    cell(f, gc ? getd(m, "pause_p50_ms") : NAN, "%.3f");
    cell(f, gc ? getd(m, "pause_p99_ms") : NAN, "%.3f");
    cell(f, gc ? getd(m, "pause_max_ms") : NAN, "%.3f");
    cell(f, getd(m, "faults"), "%.0f");
    if (w->metric) {
      cell(f, getd(m, w->metric), "%.0f");
      cell(f, getd(m, w->metric) / getd(&ref->median, w->metric), "%.2f");
    }
    if (w->latency) {
      cell(f, getd(m, "lat_p50_us"), "%.0f");
      cell(f, getd(m, "lat_p99_us"), "%.0f");
      cell(f, getd(m, "lat_p999_us"), "%.0f");
    }
    fprintf(f, "\n");
  }
  fprintf(f, "\n");
  write_phase_table(f, w);
  if (w->timeline)
    fprintf(f, "![pauses](pauses-%s.png) ![heap](heap-%s.png)\n\n", w->name, w->name);
  fprintf(f, "![time and RSS](bars-%s.png)\n\n", w->name);
}

/* The goals of issue 6, with what this run measured (reported, never tuned for). */
static void write_goals(FILE *f) {
  fprintf(f, "## Goals\n\n");
  const workload *bt = find_workload("binary-trees");
  if (bt) {
    const sysrun *n = find_sys(bt, "nheap-concurrent"), *b = find_sys(bt, "bdwgc"), *g = find_sys(bt, "go"),
                 *off = find_sys(bt, "nheap-off"), *mi = find_sys(bt, "mimalloc");
    if (n && b)
      fprintf(f, "- binary-trees: nheap (concurrent) is %.2fx as fast as bdwgc (goal: 3x).\n",
              getd(&b->median, "time_s") / getd(&n->median, "time_s"));
    if (n && g)
      fprintf(f, "- binary-trees: nheap (concurrent) is %.2fx as fast as Go (goal: 3x); peak RSS %.0f vs %.0f MiB "
                 "(goal: no higher than Go's).\n",
              getd(&g->median, "time_s") / getd(&n->median, "time_s"), getd(&n->median, "rss_mib"),
              getd(&g->median, "rss_mib"));
    if (off && mi)
      fprintf(f, "- binary-trees: nheap with gc = off and explicit free takes %.2fx mimalloc's time (goal: at most "
                 "1x).\n",
              getd(&off->median, "time_s") / getd(&mi->median, "time_s"));
  }
  const workload *kv = find_workload("kvserver");
  if (kv) {
    const sysrun *n = find_sys(kv, "nheap-concurrent"), *off = find_sys(kv, "nheap-off");
    if (n && off)
      fprintf(f, "- kvserver: p99 latency with the collector running is %.2fx that of the same server with no "
                 "collector (%.0f vs %.0f µs; goal: within 2x).\n",
              getd(&n->median, "lat_p99_us") / getd(&off->median, "lat_p99_us"), getd(&n->median, "lat_p99_us"),
              getd(&off->median, "lat_p99_us"));
  }
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
  fprintf(f, "### Allocator micro-benchmarks (gc = off; nanoseconds per operation, CPU time, median)\n\n");
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
  fprintf(f, "\npair: malloc then free of one size; batch: 1000 allocations then 1000 frees (time per batch); "
             "xthread: a producer allocates, a consumer thread frees.\n\n");
}

static void write_markdown(const char *when, const char *mach, const char *no_plots) {
  char path[512];
  snprintf(path, sizeof path, "%s/report.md", out);
  FILE *f = fopen(path, "w");
  if (!f)
    die("cannot write %s: %s", path, strerror(errno));
  fprintf(f, "# nheap benchmark report\n\n%s, %s sizes, %d measured rounds after a warm-up, systems interleaved; "
             "medians.\n\nMachine: %s.\n\n",
          when, full ? "full" : "quick", reps, mach);
  fprintf(f, "How to read it: *wall* is the whole process (start-up, set-up and exit included) measured by "
             "nheap-report; the first ratio column (×) compares the workload's own timed part (time_s, where the "
             "program reports one; else wall) with nheap's. Pauses are stop-the-world pauses in the measured "
             "part, every one (nheap: its own record of each pause, read while the program runs, exact; bdwgc: "
             "world stopped to world started, from its collection events, exact; Go: its /gc/pauses histogram, "
             "bucket upper bounds). Peak RSS and faults are the kernel's, for the whole "
             "process tree. The hugepages table adds nheap's counters per phase of its work (README, "
             "\"Hardware counters\"). One run of this report is one comparison: figures from different runs do not "
             "compare on a shared machine.\n\n");
  if (no_plots)
    fprintf(f, "(No plots: %s.\n\n", no_plots);
  write_goals(f);
  fprintf(f, "## Workloads\n\n");
  for (int i = 0; i < nworkloads; i++)
    write_table(f, &suite[i]);
  if (find_workload("kvserver"))
    fprintf(f, "![kvserver latency](latency.png)\n\n");
  write_micro(f);
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

/* Writes plots.gp and runs gnuplot; returns NULL, or why there are no plots. */
static const char *write_plots(void) {
  if (!have_program("gnuplot"))
    return "gnuplot is not installed; scripts/deps.sh installs gnuplot-nox)";
  char path[512];
  snprintf(path, sizeof path, "%s/plots.gp", out);
  FILE *g = fopen(path, "w");
  if (!g)
    return "cannot write plots.gp)";
  fprintf(g, "# Made by nheap-report; run from this directory: gnuplot plots.gp\n"
             "set terminal pngcairo size 900,540 font ',10' noenhanced\nset grid\nset key outside right\n");
  for (int i = 0; i < nworkloads; i++) {
    const workload *w = &suite[i];
    char list[4096] = "";
    /* time and RSS bars */
    fprintf(g, "\nset output 'bars-%s.png'\nset multiplot layout 1,2 title '%s'\nset style data histograms\n"
               "set style fill solid 0.8\nset boxwidth 0.8\nset xtics rotate by -30\nunset key\n",
            w->name, w->title);
    char dat[512];
    snprintf(dat, sizeof dat, "%s/data/%s.bars", out, w->name);
    FILE *b = fopen(dat, "w");
    for (int j = 0; b && j < w->nsys; j++) {
      const sysrun *s = &w->sys[j];
      if (s->skip || !s->nruns)
        continue;
      double t = getd(&s->median, w->metric ? "wall_s" : "time_s");
      fprintf(b, "\"%s\" %.4f %.1f\n", s->name, isfinite(t) ? t : getd(&s->median, "wall_s"),
              getd(&s->median, "rss_mib"));
    }
    if (b)
      fclose(b);
    fprintf(g, "set title 'time (s)'\nplot 'data/%s.bars' using 2:xtic(1) lc rgb '#4472c4'\n"
               "set title 'peak RSS (MiB)'\nplot 'data/%s.bars' using 3:xtic(1) lc rgb '#ed7d31'\n"
               "unset multiplot\nset xtics norotate\nset key outside right\nset style data lines\n",
            w->name, w->name);
    if (!w->timeline)
      continue;
    /* pause distribution */
    list[0] = 0;
    for (int j = 0; j < w->nsys; j++) {
      const sysrun *s = &w->sys[j];
      if (s->skip || !s->nruns || !write_pause_cdf(w, s))
        continue;
      size_t len = strlen(list);
      snprintf(list + len, sizeof list - len, "%s'data/%s-%s.cdf' using 1:2 with steps lw 2 title '%s'",
               len ? ", " : "", w->name, s->slug, s->name);
    }
    if (list[0])
      fprintf(g, "\nset output 'pauses-%s.png'\nset title '%s: stop-the-world pauses'\nset logscale x\n"
                 "set xlabel 'pause (ms)'\nset ylabel 'fraction of pauses <= x'\nplot %s\nunset logscale x\n",
              w->name, w->title, list);
    /* heap over time, cycles marked */
    list[0] = 0;
    for (int j = 0, color = 1; j < w->nsys; j++) {
      const sysrun *s = &w->sys[j];
      char tl[512];
      data_path(tl, sizeof tl, w, s, "timeline");
      if (s->skip || !s->nruns || !exists(tl))
        continue;
      size_t len = strlen(list);
      snprintf(list + len, sizeof list - len, "%s'data/%s-%s.timeline' using 1:2 with lines lw 1.5 lc %d title '%s'",
               len ? ", " : "", w->name, s->slug, color, s->name);
      if (write_cycle_marks(w, s)) {
        len = strlen(list);
        snprintf(list + len, sizeof list - len, ", 'data/%s-%s.cycles' using 1:2 with points pt 7 ps 0.6 lc %d notitle",
                 w->name, s->slug, color);
      }
      color++;
    }
    if (list[0])
      fprintf(g, "\nset output 'heap-%s.png'\nset title '%s: heap in use (dots: a GC cycle ended)'\n"
                 "set xlabel 'seconds into the measured part'\nset ylabel 'MiB'\nplot %s\n",
              w->name, w->title, list);
  }
  const workload *kv = find_workload("kvserver");
  if (kv) {
    char list[4096] = "";
    for (int j = 0; j < kv->nsys; j++) {
      const sysrun *s = &kv->sys[j];
      char la[512];
      data_path(la, sizeof la, kv, s, "latency");
      if (s->skip || !s->nruns || !exists(la))
        continue;
      size_t len = strlen(list);
      snprintf(list + len, sizeof list - len, "%s'data/kvserver-%s.latency' using 0:2:xtic(1) with linespoints lw 2 "
               "title '%s'", len ? ", " : "", s->slug, s->name);
    }
    if (list[0])
      fprintf(g, "\nset output 'latency.png'\nset title 'kvserver: request latency by percentile'\n"
                 "set logscale y\nset xlabel 'percentile (100 = max)'\nset ylabel 'microseconds'\nplot %s\n"
                 "unset logscale y\n", list);
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
  fprintf(stderr, "usage: nheap-report [--quick | --full | --smoke] [--reps N] [--only WORKLOAD] [--out DIR] [--bin DIR]\n");
  exit(2);
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--full") == 0)
      full = true, reps = 5;
    else if (strcmp(argv[i], "--quick") == 0)
      full = false;
    else if (strcmp(argv[i], "--smoke") == 0)
      smoke = true, reps = 1;
    else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
      reps = atoi(argv[++i]);
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

  build_suite();
  if (only[0]) {
    int k = 0;
    for (int i = 0; i < nworkloads; i++)
      if (strcmp(suite[i].name, only) == 0)
        suite[k++] = suite[i];
    if (k == 0 && strcmp(only, "malloc") != 0 && strcmp(only, "numa") != 0)
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
