/*
 * micro_malloc.c — allocator micro-benchmarks, nheap beside its peers in the same binary and
 * run: glibc malloc, jemalloc, mimalloc and tcmalloc (each loaded with dlopen from its Debian
 * package and called through its own entry points, so no peer replaces malloc for the others;
 * a peer that is not installed is skipped with a note).
 *
 *   pair/<allocator>/<size>    p = malloc(size); free(p): the fast path, the same object over
 *                              and over (per-CPU cache hit).
 *   batch/<allocator>/<size>   1000 allocations, then the 1000 frees: the cache refills from
 *                              spans and drains back.
 *   xthread/<allocator>/<size> a producer thread allocates, a consumer thread frees (through a
 *                              ring): cross-thread free.
 * nheap runs as a malloc (gc = off; nh_alloc_noscan: not zeroed, never scanned). Compare
 * within one run only: `nheap-bench-malloc --benchmark_format=json` and take ratios of medians
 * (`--benchmark_repetitions=5`).
 */
#include <dlfcn.h>
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
}

enum { BATCH = 1000 };

static void bm_batch(bench_state *st, int64_t arg) {
  allocator *a = arg_alloc(arg);
  size_t size = arg_size(arg);
  void *p[BATCH];
  while (bench_keep_running_batch(st, 1)) {
    for (int i = 0; i < BATCH; i++)
      p[i] = a->malloc(size);
    bench_do_not_optimize(p);
    for (int i = 0; i < BATCH; i++)
      a->free(p[i]);
  }
}

/* Producer/consumer through a single-producer single-consumer ring. */
enum { RING = 1024, XFER = 100000 };
typedef struct xring {
  void *slot[RING];
  unsigned long head, tail;   /* written by producer / consumer */
  allocator *a;
} xring;

static void *consumer(void *arg) {
  xring *r = arg;
  for (unsigned long n = 0; n < XFER;) {
    unsigned long head = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
    for (; r->tail < head; r->tail++, n++)
      r->a->free(r->slot[r->tail % RING]);
    __atomic_store_n(&r->tail, r->tail, __ATOMIC_RELEASE);
  }
  return NULL;
}

static void bm_xthread(bench_state *st, int64_t arg) {
  size_t size = arg_size(arg);
  while (bench_keep_running_batch(st, 1)) {
    static xring r;
    r.head = r.tail = 0;
    r.a = arg_alloc(arg);
    pthread_t t;
    pthread_create(&t, NULL, consumer, &r);
    for (unsigned long n = 0; n < XFER; n++) {
      while (n - __atomic_load_n(&r.tail, __ATOMIC_ACQUIRE) >= RING)
        ;
      r.slot[n % RING] = r.a->malloc(size);
      __atomic_store_n(&r.head, n + 1, __ATOMIC_RELEASE);
    }
    pthread_join(t, NULL);
  }
  bench_set_items(st, XFER);
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
  static const size_t pair_sizes[] = {16, 64, 256, 1024, 4096, 32768, 100000};
  static const size_t batch_sizes[] = {16, 256, 4096};
  for (int i = 0; i < NALLOC; i++) {
    allocator *a = &allocators[i];
    if (a->lib) {
      void *h = dlopen(a->lib, RTLD_NOW | RTLD_LOCAL);
      a->malloc = h ? (void *(*)(size_t))dlsym(h, a->malloc_sym) : NULL;
      a->free = h ? (void (*)(void *))dlsym(h, a->free_sym) : NULL;
      if (!a->malloc || !a->free) {
        fprintf(stderr, "nheap-bench-malloc: %s not available (%s); skipped\n", a->name, a->lib);
        continue;
      }
    }
    char name[96];
    for (size_t k = 0; k < sizeof pair_sizes / sizeof pair_sizes[0]; k++) {
      int64_t arg = (int64_t)pair_sizes[k] * 16 + i;
      snprintf(name, sizeof name, "pair/%s/%zu", a->name, pair_sizes[k]);
      bench_register_fixed(name, bm_pair, arg);
    }
    for (size_t k = 0; k < sizeof batch_sizes / sizeof batch_sizes[0]; k++) {
      int64_t arg = (int64_t)batch_sizes[k] * 16 + i;
      snprintf(name, sizeof name, "batch/%s/%zu", a->name, batch_sizes[k]);
      bench_register_fixed(name, bm_batch, arg);
    }
    int64_t arg = 64 * 16 + i;
    snprintf(name, sizeof name, "xthread/%s/64", a->name);
    bench_register_fixed(name, bm_xthread, arg);
  }
  int rc = bench_main(argc, argv);
  nh_shutdown();
  return rc;
}
