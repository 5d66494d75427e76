/*
 * micro_malloc.c — allocator micro-benchmarks, nheap beside its peers in the same binary and
 * run: glibc malloc, jemalloc, mimalloc and tcmalloc (each loaded with dlopen from its Debian
 * package and called through its own entry points, so no peer replaces malloc for the others;
 * a peer that is not installed is skipped with a note). "tcmalloc" here is gperftools'
 * tcmalloc_minimal (Debian's libtcmalloc-minimal4, gperftools 2.10 on Debian 12), not
 * google/tcmalloc (no per-CPU caches, no restartable sequences). The peers' versions go to
 * stderr at start.
 *
 * One iteration is one object, allocated and freed, in every benchmark: real_time and
 * cpu_time are nanoseconds per object, and items_per_second counts objects.
 *
 *   pair/<allocator>/<size>     p = malloc(size); free(p): the fast path, the same object over
 *                               and over (per-CPU cache hit). Time per malloc + free.
 *   batch/<allocator>/<size>    1000 (BATCH) allocations, then the 1000 frees: the cache
 *                               refills from spans and drains back. Time per object (one
 *                               malloc + one free): a batch's time ÷ 1000.
 *   xthread/<allocator>/64/process_time/real_time
 *                               a producer (the benchmark thread) allocates, a consumer thread
 *                               frees (through a 1024-slot ring): cross-thread free. Time per
 *                               object transferred (its malloc on the producer, its free on the
 *                               consumer). real_time is wall time (the benchmark's time: its
 *                               iteration count and items_per_second follow it); cpu_time is the
 *                               whole process's CPU time, both threads, spin-waits included
 *                               (both threads spin, so with a CPU each it is about twice
 *                               real_time). Objects move in chunks of 100000 (XFER), and a chunk's
 *                               time lasts until the consumer has freed all of it.
 *
 * Registration order is kind, size, allocator (pair/nheap/16, pair/glibc/16, ...,
 * pair/nheap/64, ...), so that an allocator and its peers run one after another;
 * --benchmark_enable_random_interleaving=true (with --benchmark_repetitions) shuffles every
 * repetition of every benchmark instead.
 *
 * nheap runs as a malloc (gc = off; nh_alloc_noscan: not zeroed, never scanned). Compare
 * within one run only: `nheap-bench-malloc --benchmark_format=json` and take ratios of medians
 * (`--benchmark_repetitions=5`).
 */
#include <dlfcn.h>
#include <gnu/libc-version.h>
#include <unistd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include <nheap.h>

#include "bench/bench_shim.h"

typedef struct allocator {
  const char *name;
  const char *lib, *malloc_sym, *free_sym;
  void *(*malloc)(size_t);
  void (*free)(void *);
} allocator;

static allocator allocators[] = {
  {"nheap", NULL, NULL, NULL, nh_alloc_noscan, nh_free},
  {"glibc", NULL, NULL, NULL, malloc, free},
  {"jemalloc", "libjemalloc.so.2", "malloc", "free", NULL, NULL},
  {"mimalloc", "libmimalloc.so.2", "mi_malloc", "mi_free", NULL, NULL},
  {"tcmalloc", "libtcmalloc_minimal.so.4", "tc_malloc", "tc_free", NULL, NULL},
};
enum { NALLOC = sizeof allocators / sizeof allocators[0] };

/* The benchmark argument packs the allocator index and the size. */
static allocator *arg_alloc(int64_t arg) { return &allocators[arg % 16]; }
static size_t arg_size(int64_t arg) { return (size_t)(arg / 16); }

static void bm_pair(bench_state *st, int64_t arg) {
  allocator *a = arg_alloc(arg);
  size_t size = arg_size(arg);
  while (bench_keep_running_batch(st, 64)) {
    for (int i = 0; i < 64; i++) {
      void *p = a->malloc(size);
      bench_do_not_optimize(p);
      a->free(p);
    }
  }
  bench_set_items_per_iteration(st, 1);
}

enum { BATCH = 1000 };

static void bm_batch(bench_state *st, int64_t arg) {
  allocator *a = arg_alloc(arg);
  size_t size = arg_size(arg);
  void *p[BATCH];
  while (bench_keep_running_batch(st, BATCH)) {   /* an iteration per object */
    for (int i = 0; i < BATCH; i++)
      p[i] = a->malloc(size);
    bench_do_not_optimize(p);
    for (int i = 0; i < BATCH; i++)
      a->free(p[i]);
  }
  bench_set_items_per_iteration(st, 1);
}

/* Producer/consumer through a single-producer single-consumer ring; head and tail count
 * objects from the benchmark's start, each on its own cache line. */
enum { RING = 1024, XFER = 100000 };
typedef struct xring {
  void *slot[RING];
  _Alignas(64) unsigned long head;   /* objects allocated: written by the producer */
  _Alignas(64) unsigned long tail;   /* objects freed: written by the consumer */
  _Alignas(64) int stop;             /* set by the producer once tail == head, at the end */
  allocator *a;
} xring;

static void *consumer(void *arg) {
  xring *r = arg;
  unsigned long tail = 0;
  for (;;) {
    unsigned long head = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
    if (head == tail) {
      if (__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE))
        return NULL;
      continue;
    }
    for (; tail < head; tail++)
      r->a->free(r->slot[tail % RING]);
    __atomic_store_n(&r->tail, tail, __ATOMIC_RELEASE);
  }
}

static void bm_xthread(bench_state *st, int64_t arg) {
  static xring r;
  size_t size = arg_size(arg);
  r.head = r.tail = 0;
  r.stop = 0;
  r.a = arg_alloc(arg);
  pthread_t t;
  if (pthread_create(&t, NULL, consumer, &r) != 0)
    abort();
  unsigned long n = 0, tail = 0;   /* tail: the producer's last look at r.tail */
  while (bench_keep_running_batch(st, XFER)) {   /* an iteration per object transferred */
    for (unsigned long end = n + XFER; n < end; n++) {
      while (n - tail >= RING)
        tail = __atomic_load_n(&r.tail, __ATOMIC_ACQUIRE);
      r.slot[n % RING] = r.a->malloc(size);
      __atomic_store_n(&r.head, n + 1, __ATOMIC_RELEASE);
    }
    while (tail != n)   /* the chunk is timed until its last object is freed */
      tail = __atomic_load_n(&r.tail, __ATOMIC_ACQUIRE);
  }
  __atomic_store_n(&r.stop, 1, __ATOMIC_RELEASE);
  pthread_join(t, NULL);
  bench_set_items_per_iteration(st, 1);
}

/* The peer's version, to stderr: tcmalloc (gperftools) tc_version, jemalloc's "version"
 * mallctl, mimalloc's mi_version (major × 100 + minor × 10 + patch). */
static void print_version(const allocator *a, void *h) {
  typedef const char *tc_version_fn(int *, int *, const char **);
  typedef int mallctl_fn(const char *, void *, size_t *, void *, size_t);
  tc_version_fn *tc_version = (tc_version_fn *)dlsym(h, "tc_version");
  mallctl_fn *mallctl = (mallctl_fn *)dlsym(h, "mallctl");
  int (*mi_version)(void) = (int (*)(void))dlsym(h, "mi_version");
  if (tc_version) {
    int major = 0, minor = 0;
    const char *patch = "";
    const char *v = tc_version(&major, &minor, &patch);
    fprintf(stderr, "nheap-bench-malloc: %s is gperftools' tcmalloc_minimal, %s (%s)\n", a->name, v ? v : "?", a->lib);
  } else if (mallctl) {
    const char *v = NULL;
    size_t len = sizeof v;
    if (mallctl("version", &v, &len, NULL, 0) == 0 && v)
      fprintf(stderr, "nheap-bench-malloc: %s %s (%s)\n", a->name, v, a->lib);
  } else if (mi_version) {
    int v = mi_version();
    fprintf(stderr, "nheap-bench-malloc: %s %d.%d.%d (%s)\n", a->name, v / 100, v / 10 % 10, v % 10, a->lib);
  }
}

/* jemalloc uses initial-exec TLS, which dlopen can only place in glibc's spare static TLS:
 * restart once with a larger reserve (glibc.rtld.optional_static_tls). */
static void reexec_with_static_tls(char **argv) {
  if (getenv("NH_BENCH_REEXECED"))
    return;
  const char *old = getenv("GLIBC_TUNABLES");
  char tunables[512];
  snprintf(tunables, sizeof tunables, "%s%sglibc.rtld.optional_static_tls=65536", old ? old : "", old ? ":" : "");
  setenv("GLIBC_TUNABLES", tunables, 1);
  setenv("NH_BENCH_REEXECED", "1", 1);
  execv("/proc/self/exe", argv);
}

int main(int argc, char **argv) {
  reexec_with_static_tls(argv);
  nh_options o;
  nh_options_init(&o);
  o.gc = NH_GC_OFF;   /* nheap as a malloc, as its peers here: explicit free, no collector */
  if (nh_init(&o) != 0)
    return 1;
  for (int i = 0; i < NALLOC; i++) {
    allocator *a = &allocators[i];
    if (!a->lib)
      continue;
    void *h = dlopen(a->lib, RTLD_NOW | RTLD_LOCAL);
    a->malloc = h ? (void *(*)(size_t))dlsym(h, a->malloc_sym) : NULL;
    a->free = h ? (void (*)(void *))dlsym(h, a->free_sym) : NULL;
    if (!a->malloc || !a->free) {
      fprintf(stderr, "nheap-bench-malloc: %s not available (%s); skipped\n", a->name, a->lib);
      a->malloc = NULL;
      continue;
    }
    print_version(a, h);
  }
  fprintf(stderr, "nheap-bench-malloc: glibc %s\n", gnu_get_libc_version());

  /* Kind, size, allocator: each benchmark's allocators one after another. */
  static const size_t pair_sizes[] = {16, 64, 256, 1024, 4096, 32768, 100000};
  static const size_t batch_sizes[] = {16, 256, 4096};
  static const size_t xthread_sizes[] = {64};
  static const struct kind {
    const char *name;
    bench_fn fn;
    const size_t *sizes;
    size_t nsizes;
    unsigned flags;
  } kinds[] = {
    {"pair", bm_pair, pair_sizes, sizeof pair_sizes / sizeof pair_sizes[0], 0},
    {"batch", bm_batch, batch_sizes, sizeof batch_sizes / sizeof batch_sizes[0], 0},
    {"xthread", bm_xthread, xthread_sizes, sizeof xthread_sizes / sizeof xthread_sizes[0],
     BENCH_REAL_TIME | BENCH_PROCESS_CPU_TIME},
  };
  for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
    for (size_t z = 0; z < kinds[k].nsizes; z++)
      for (int i = 0; i < NALLOC; i++) {
        if (!allocators[i].malloc)
          continue;
        char name[96];
        snprintf(name, sizeof name, "%s/%s/%zu", kinds[k].name, allocators[i].name, kinds[k].sizes[z]);
        bench_register_fixed(name, kinds[k].fn, (int64_t)kinds[k].sizes[z] * 16 + i, kinds[k].flags);
      }
  int rc = bench_main(argc, argv);
  nh_shutdown();
  return rc;
}
