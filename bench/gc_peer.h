/*
 * gc_peer.h — one source, several memory managers, for the whole-program benchmarks
 * (binary_trees.c, gc_pause.c, gcbench.c, kvserver.c). Built plainly against nheap, with
 * USE_BDWGC against bdwgc, or with USE_MALLOC against the C library's malloc/free (which the
 * report runs under LD_PRELOAD of jemalloc, mimalloc or tcmalloc: the malloc peers).
 *   ALLOC(n)            a zeroed object the collector scans (nh_alloc / GC_MALLOC / calloc)
 *   ALLOC_NOSCAN(n)     one it never scans (nh_alloc_noscan / GC_MALLOC_ATOMIC / malloc)
 *   STORE(slot, v)      a pointer store into an object (nh_store / a plain store)
 *   FREE(p)             an explicit free where memory is managed by hand (nheap with
 *                       gc = off, malloc); nothing where a collector runs
 *   peer_start(mode)    starts the memory manager: "concurrent", "stw" or "off" for nheap (the
 *                       others take their defaults; bdwgc marks with GC_MARKERS = the CPUs
 *                       unless set; a program that included nheap_gc_compat.h first starts
 *                       with its GC_INIT); returns the name of what runs; exits on failure
 *   peer_thread_start/join  threads the collector knows about
 * The report's side (bench/report.c reads it):
 *   report_begin()      where the measured part starts (pauses, cycles and collection time
 *                       count from here): with NH_BENCH_TIMELINE=path, a thread samples the
 *                       heap in use and the cycle count every 10 ms into path ("seconds MiB
 *                       cycles" per line)
 *   report_end(system, check, fmt, ...)  stops the sampler; with NH_BENCH_PAUSES=path writes
 *                       the pauses since report_begin (ms, one per line, every one: nheap's are
 *                       read from its 256-pause record by a poller while the program runs,
 *                       bdwgc's from its collection events); then prints one line
 *                         RESULT system=<what runs> check=<the workload's checksum>
 *                           cycles=N pause_p50_ms=.. pause_p99_ms=.. pause_max_ms=.. pauses=N
 *                           gc_ms=<collection time> thp_mib=.. hugetlb_mib=.. <fmt's pairs>
 *                       check is the workload's own result (node counts: the report compares
 *                       it with the value the sizes imply; NH_BENCH_WRONG_CHECK=1 adds one, to
 *                       prove that a wrong result fails the run). A pause is the world stopped,
 *                       for every system. gc_ms: nheap: stop-the-world time + the mark workers'
 *                       and assists' marking + background sweeping (CPU-bound work, summed over
 *                       threads); bdwgc: collection start to end (its events: world stopped
 *                       plus the reclaim it does under its lock), wall time, nan in its
 *                       incremental mode (whose steps raise no such events); thp_mib and
 *                       hugetlb_mib: the process's transparent and hugetlb huge pages when the
 *                       measured part ends (/proc/self/smaps_rollup), what backed it; nheap adds
 *                       how its arenas are backed. With NH_BENCH_STATS=path, nheap also writes
 *                       its statistics there as nh_stats_write's JSON, the same document a
 *                       server scrapes: the report reads every phase's counters
 *                       (NHEAP_PERF_EVENTS) from it, not from a format of its own.
 */
#ifndef NH_BENCH_GC_PEER_H
#define NH_BENCH_GC_PEER_H

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static inline double peer_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

enum { PEER_MAX_PAUSES = 1 << 16 };
static int peer_manual __attribute__((unused));   /* memory is freed by hand */

/* The harness's own records of pauses live outside every collector's roots: as static arrays
 * they were 1 MiB of doubles in the data segment, which nheap and bdwgc scanned conservatively
 * in every collection (nheap's mark setup pause included) although the program never put a
 * pointer there. */
static inline double *peer_doubles(size_t n) {
  void *p = mmap(NULL, n * sizeof(double), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    perror("gc_peer: mmap");
    exit(1);
  }
  return p;
}

#if defined(USE_BDWGC)
#define GC_THREADS
#include <dlfcn.h>
#include <gc.h>
#define ALLOC(n) GC_MALLOC(n)
#define ALLOC_NOSCAN(n) GC_MALLOC_ATOMIC(n)
#define STORE(slot, v) (*(slot) = (v))
#define FREE(p) ((void)(p))
#define peer_thread_start(t, fn, arg) GC_pthread_create(t, NULL, fn, arg)
#define peer_thread_join(t) GC_pthread_join(t, NULL)
#define peer_do_blocking(fn, arg) GC_do_blocking(fn, arg)

/* bdwgc's pauses come from its collection events: world stopped to world started. */
static double *peer_pause_ms;   /* peer_doubles(PEER_MAX_PAUSES), from peer_start */
static size_t peer_npauses;
static double peer_stopped_at, peer_started_at, peer_collecting_s;
static unsigned long peer_collections, peer_gc_no0;
static void peer_on_event(GC_EventType e) {
  if (e == GC_EVENT_PRE_STOP_WORLD)
    peer_stopped_at = peer_now();
  else if (e == GC_EVENT_POST_START_WORLD && peer_npauses < PEER_MAX_PAUSES)
    peer_pause_ms[peer_npauses++] = (peer_now() - peer_stopped_at) * 1e3;
  else if (e == GC_EVENT_START)
    peer_started_at = peer_now();
  else if (e == GC_EVENT_END)
    peer_collecting_s += peer_now() - peer_started_at, peer_collections++;
}
/* In incremental mode (GC_ENABLE_INCREMENTAL) bdwgc's collection steps raise no start and end
 * events: where cycles ran without them the time is unknown (nan: the report shows none). */
static inline double peer_gc_ms(void) {
  return GC_is_incremental_mode() || (GC_get_gc_no() > peer_gc_no0 && peer_collections == 0) ? NAN
                                                                                         : peer_collecting_s * 1e3;
}

static inline const char *peer_start(const char *mode) {
  (void)mode;
  peer_pause_ms = peer_doubles(PEER_MAX_PAUSES);
  GC_INIT();
  GC_allow_register_threads();
  GC_set_on_collection_event(peer_on_event);
  peer_gc_no0 = GC_get_gc_no();
  /* The same binary on nheap's bdwgc interface (LD_LIBRARY_PATH=<build>/gcabi): say so. */
  if (dlsym(RTLD_DEFAULT, "nh_init"))
    return "nheap-gcabi";
  /* GC_ENABLE_INCREMENTAL asks for incremental mode; bdwgc stays in its plain mode where it
   * cannot find dirty pages (Debian's build reads the kernel's soft-dirty bits): say which. */
  return GC_is_incremental_mode() ? "bdwgc-incremental" : "bdwgc";
}
static inline double peer_heap_mib(void) { return (double)(GC_get_heap_size() - GC_get_free_bytes()) / (1 << 20); }
static inline unsigned long long peer_cycles(void) { return GC_get_gc_no(); }
static size_t peer_pauses0;
static inline void peer_pauses_mark(void) { peer_pauses0 = peer_npauses; }
static inline size_t peer_pauses(double *ms, size_t max) {
  size_t n = peer_npauses - peer_pauses0 < max ? peer_npauses - peer_pauses0 : max;
  memcpy(ms, peer_pause_ms + peer_pauses0, n * sizeof *ms);
  return n;
}
static inline void peer_result_extra(void) {}
static inline void peer_stats_json(const char *path) { (void)path; }
static const bool peer_has_metrics = false;
static inline int peer_metrics(int fd, bool openmetrics) { (void)fd, (void)openmetrics; return -1; }

#elif defined(USE_MALLOC)
#define ALLOC(n) calloc(1, n)
#define ALLOC_NOSCAN(n) malloc(n)
#define STORE(slot, v) (*(slot) = (v))
#define FREE(p) free(p)
#define peer_thread_start(t, fn, arg) pthread_create(t, NULL, fn, arg)
#define peer_thread_join(t) pthread_join(t, NULL)
#define peer_do_blocking(fn, arg) (fn)(arg)

static inline const char *peer_start(const char *mode) {
  peer_manual = 1;
  return mode;   /* the report names the allocator it preloaded */
}
static inline double peer_heap_mib(void) { return 0; }
static inline unsigned long long peer_cycles(void) { return 0; }
static inline double peer_gc_ms(void) { return 0; }
static inline void peer_pauses_mark(void) {}
static inline size_t peer_pauses(double *ms, size_t max) { (void)ms, (void)max; return 0; }
static inline void peer_result_extra(void) {}
static inline void peer_stats_json(const char *path) { (void)path; }
static const bool peer_has_metrics = false;
static inline int peer_metrics(int fd, bool openmetrics) { (void)fd, (void)openmetrics; return -1; }

#else
#include <nheap.h>
#define ALLOC(n) nh_alloc(n)
#define ALLOC_NOSCAN(n) nh_alloc_noscan(n)
#ifdef NH_PLAIN_STORES   /* the -plain build: stores as bdwgc programs make them (gc = concurrent-nobarrier) */
#define STORE(slot, v) (*(slot) = (v))
#else
#define STORE(slot, v) nh_store((void **)(slot), (v))
#endif
#define FREE(p) (peer_manual ? nh_free(p) : (void)0)
#define peer_thread_start(t, fn, arg) pthread_create(t, NULL, fn, arg)
#define peer_thread_join(t) pthread_join(t, NULL)
#define peer_do_blocking(fn, arg) nh_do_blocking(fn, arg)

static inline nh_stats_t peer_stats(void) {
  nh_stats_t s = {.size = sizeof s};
  nh_stats_read(&s);
  return s;
}

static double *peer_pause_ms;   /* peer_doubles(PEER_MAX_PAUSES), from peer_start */
static inline const char *peer_start(const char *mode) {
  peer_pause_ms = peer_doubles(PEER_MAX_PAUSES);
#ifdef NHEAP_GC_COMPAT_H
  (void)mode;
  GC_INIT();   /* a program written for bdwgc: its own start, on nheap */
#else
  nh_options o;
  nh_options_init(&o);
  o.gc = strcmp(mode, "stw") == 0 ? NH_GC_STW : strcmp(mode, "off") == 0 ? NH_GC_OFF
         : strcmp(mode, "nobarrier") == 0 ? NH_GC_CONCURRENT_NOBARRIER : NH_GC_CONCURRENT;
#ifdef NH_PLAIN_STORES
  if (o.gc == NH_GC_CONCURRENT)
    o.gc = NH_GC_CONCURRENT_NOBARRIER;   /* plain stores need no barrier: never the barrier mode */
#endif
  if (nh_init(&o) != 0)
    exit(1);
#endif
  static const char *const names[] = {"concurrent", "concurrent-nobarrier", "stw", "off"};
  int m = (int)peer_stats().gc_mode;
  peer_manual = m == NH_GC_OFF;
  return m >= 0 && m < 4 ? names[m] : "?";   /* what runs, not what was asked */
}
static inline double peer_heap_mib(void) {
  nh_stats_t s = peer_stats();
  return (double)(s.gc_mode == NH_GC_OFF ? s.heap_inuse_bytes : s.heap_live_bytes) / (1 << 20);
}
static inline unsigned long long peer_cycles(void) { return peer_stats().gc_cycles; }
static inline double peer_gc_ms(void) {
  nh_stats_t s = peer_stats();
  return (double)(s.pause_total_ns + s.gc_worker_ns + s.gc_assist_ns + s.gc_sweep_ns) / 1e6;
}
/* Every pause of the measured part: nheap's record keeps the last 256, so a plain thread (never
 * attached to the collector) reads the new ones every 2 ms, far more often than 256 pauses can
 * happen, and once more at the end; any it could not read are counted (pauses_lost). */
static size_t peer_npauses;
static uint64_t peer_pause_seen, peer_pauses_lost;
static atomic_int peer_poll_stop;
static pthread_t peer_poller;
static bool peer_polling;

static void peer_pause_poll(void) {
  for (;;) {
    /* At most 255 of the 256 kept: the oldest slot is the one the next pause overwrites before
     * the count moves. */
    uint64_t c = nh_gc_pause_count(), k = c - peer_pause_seen, ns[255];
    size_t n = nh_gc_pauses(ns, k < 255 ? (size_t)k : 255);
    if (nh_gc_pause_count() != c)
      continue;   /* a pause landed meanwhile: the copy may be shifted */
    peer_pauses_lost += k - n;
    for (size_t i = 0; i < n; i++) {
      if (peer_npauses < PEER_MAX_PAUSES)
        peer_pause_ms[peer_npauses++] = (double)ns[i] / 1e6;
      else
        peer_pauses_lost++;
    }
    peer_pause_seen = c;
    return;
  }
}

static void *peer_pause_poller(void *arg) {
  (void)arg;
  while (!atomic_load(&peer_poll_stop)) {
    peer_pause_poll();
    struct timespec d = {0, 2 * 1000 * 1000};
    nanosleep(&d, NULL);
  }
  return NULL;
}

static inline void peer_pauses_mark(void) {
  peer_pause_seen = nh_gc_pause_count();
  peer_npauses = 0;
  peer_polling = pthread_create(&peer_poller, NULL, peer_pause_poller, NULL) == 0;
}
static inline size_t peer_pauses(double *ms, size_t max) {   /* since the mark, every one */
  if (peer_polling) {
    atomic_store(&peer_poll_stop, 1);
    pthread_join(peer_poller, NULL);
    peer_polling = false;
  }
  peer_pause_poll();
  size_t n = peer_npauses < max ? peer_npauses : max;
  memcpy(ms, peer_pause_ms, n * sizeof *ms);
  return n;
}
/* The memory manager's statistics on fd (kvserver's GET /metrics and /stats): OpenMetrics, or
 * one line of nh_stats_read's figures that a test compares with a scrape. 0, or -1 on failure. */
static const bool peer_has_metrics = true;
static inline int peer_metrics(int fd, bool openmetrics) {
  if (openmetrics)
    return nh_stats_write(fd, NH_STATS_OPENMETRICS);
  nh_stats_t s = peer_stats();
  return dprintf(fd, "gc_cycles=%llu gc_pauses=%llu heap_mapped_bytes=%llu heap_inuse_bytes=%llu\n",
                 (unsigned long long)s.gc_cycles, (unsigned long long)s.gc_pauses,
                 (unsigned long long)s.heap_mapped_bytes, (unsigned long long)s.heap_inuse_bytes) < 0 ? -1 : 0;
}
/* nh_stats_write's JSON into path (the report's NH_BENCH_STATS). */
static inline void peer_stats_json(const char *path) {
  FILE *f = fopen(path, "w");
  if (!f || nh_stats_write(fileno(f), NH_STATS_JSON) != 0)
    fprintf(stderr, "peer: cannot write the statistics to %s\n", path);
  if (f)
    fclose(f);
}
static inline void peer_result_extra(void) {
  nh_stats_t s = peer_stats();
  printf(" arenas_hugetlb=%llu arenas_thp=%llu arenas_4k=%llu pauses_lost=%llu", (unsigned long long)s.arenas_hugetlb,
         (unsigned long long)s.arenas_thp, (unsigned long long)s.arenas_small, (unsigned long long)peer_pauses_lost);
  if (s.gc_mode == NH_GC_CONCURRENT_NOBARRIER && s.gc_cycles)   /* written pages rescanned per cycle */
    printf(" dirty_mib_per_cycle=%.2f", (double)s.gc_dirty_bytes / (double)s.gc_cycles / (1 << 20));
}
#endif

/* ---------------------------------------------------------------------------------------------
 * The report's side.
 * ------------------------------------------------------------------------------------------- */

static FILE *report_timeline;
static atomic_int report_stop;
static pthread_t report_sampler;
static double report_t0;

static void *report_sample(void *arg) {
  (void)arg;
  while (!atomic_load(&report_stop)) {
    fprintf(report_timeline, "%.3f %.2f %llu\n", peer_now() - report_t0, peer_heap_mib(), peer_cycles());
    struct timespec d = {0, 10 * 1000 * 1000};
    nanosleep(&d, NULL);
  }
  return NULL;
}

static unsigned long long report_cycles0;
static double report_gc_ms0;

static inline void report_begin(void) {
  report_t0 = peer_now();
  report_cycles0 = peer_cycles();
  report_gc_ms0 = peer_gc_ms();
  peer_pauses_mark();
#ifdef USE_MALLOC
  return;   /* no heap figure to sample: the report shows RSS */
#endif
  const char *path = getenv("NH_BENCH_TIMELINE");
  if (!path || !*path || !(report_timeline = fopen(path, "w")))
    return;
  /* A plain thread: it never allocates from the collector and holds no pointers into it. */
  if (pthread_create(&report_sampler, NULL, report_sample, NULL) != 0) {
    fclose(report_timeline);
    report_timeline = NULL;
  }
}

static int report_cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* The process's huge pages now, MiB: transparent ones (AnonHugePages) and hugetlb ones. */
static inline void report_huge_pages(double *thp_mib, double *hugetlb_mib) {
  *thp_mib = *hugetlb_mib = 0;
  FILE *f = fopen("/proc/self/smaps_rollup", "r");
  char line[256];
  unsigned long long kib;
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "AnonHugePages: %llu", &kib) == 1)
      *thp_mib += (double)kib / 1024;
    else if (sscanf(line, "Private_Hugetlb: %llu", &kib) == 1 || sscanf(line, "Shared_Hugetlb: %llu", &kib) == 1)
      *hugetlb_mib += (double)kib / 1024;
  if (f)
    fclose(f);
}

static inline void report_end(const char *system, unsigned long long check, const char *fmt, ...) {
  if (report_timeline) {
    atomic_store(&report_stop, 1);
    pthread_join(report_sampler, NULL);
    fclose(report_timeline);
    report_timeline = NULL;
  }
  double *ms = peer_doubles(PEER_MAX_PAUSES);
  size_t n = peer_pauses(ms, PEER_MAX_PAUSES);
  const char *path = getenv("NH_BENCH_PAUSES");
  FILE *f = path && *path ? fopen(path, "w") : NULL;
  for (size_t i = 0; f && i < n; i++)
    fprintf(f, "%.4f\n", ms[i]);
  if (f)
    fclose(f);
  qsort(ms, n, sizeof *ms, report_cmp);
  double p50 = n ? ms[(n - 1) / 2] : 0, p99 = n ? ms[(n * 99 + 99) / 100 - 1] : 0, max = n ? ms[n - 1] : 0;
  const char *wrong = getenv("NH_BENCH_WRONG_CHECK");
  double thp, hugetlb;
  report_huge_pages(&thp, &hugetlb);
  printf("RESULT system=%s check=%llu cycles=%llu pause_p50_ms=%.4f pause_p99_ms=%.4f pause_max_ms=%.4f pauses=%zu "
         "gc_ms=%.1f thp_mib=%.1f hugetlb_mib=%.1f",
         system, check + (wrong && *wrong == '1'), peer_cycles() - report_cycles0, p50, p99, max, n,
         peer_gc_ms() - report_gc_ms0, thp, hugetlb);
  va_list ap;
  va_start(ap, fmt);
  if (*fmt)
    putchar(' ');
  vprintf(fmt, ap);
  va_end(ap);
  peer_result_extra();
  const char *stats = getenv("NH_BENCH_STATS");
  if (stats && *stats)
    peer_stats_json(stats);
  putchar('\n');
  fflush(stdout);
}

#endif
