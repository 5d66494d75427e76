/*
 * test_model.c — randomised model test of the allocator with explicit free.
 *
 * Several threads run seeded random sequences of nh_alloc / nh_alloc_noscan / nh_calloc /
 * nh_realloc / nh_aligned_alloc / nh_free over sizes from 1 B to 1 MiB, and hand blocks to
 * each other through a shared exchange so that a third of the frees are cross-CPU. Every live
 * block is filled with a pattern derived from its id; the shadow model checks on every free and
 * realloc that the pattern survived (blocks that overlapped would have overwritten each other),
 * that usable size >= requested, that nh_base maps interior addresses to the block, and at the
 * end that all memory came back (in use == 0 after the caches are flushed) and that the heap's
 * validators pass.
 *
 * Deterministic per seed (each thread's operation sequence; interleaving is the scheduler's):
 * NH_MODEL_SEED=N reruns one seed, NH_MODEL_STEPS=N sets the length (`make soak` runs it long).
 * A failure prints the seed.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/heap.h"
#include "tests/testutil.h"

enum { THREADS = 3, SLOTS = 512, EXCHANGE = 64 };

typedef struct block { unsigned char *p; size_t size; uint32_t id; } block;

static struct {
  pthread_mutex_t lock;
  block slot[EXCHANGE];
} exchange = {PTHREAD_MUTEX_INITIALIZER, {{0}}};

static unsigned long seed_base;
static long steps = 60000;
static int failures;

static uint64_t rnd(uint64_t *s) {  /* xorshift64* */
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 2685821657736338717ull;
}

static size_t random_size(uint64_t *s) {
  uint64_t r = rnd(s) % 100;
  if (r < 60) return 1 + rnd(s) % 128;
  if (r < 90) return 1 + rnd(s) % 4096;
  if (r < 98) return 1 + rnd(s) % 40000;
  return 1 + rnd(s) % (1 << 20);
}

static void fill(block *b) {
  for (size_t i = 0; i < b->size; i++)
    b->p[i] = (unsigned char)(b->id * 31 + i);
}

static bool intact(const block *b, size_t upto, unsigned long seed) {
  for (size_t i = 0; i < upto; i++) {
    if (b->p[i] != (unsigned char)(b->id * 31 + i)) {
      fprintf(stderr, "model: seed %lu: block %u (%zu bytes at %p) corrupted at byte %zu\n", seed,
              b->id, b->size, (void *)b->p, i);
      return false;
    }
  }
  if (nh_usable_size(b->p) < b->size || nh_base(b->p + b->size / 2) != b->p) {
    fprintf(stderr, "model: seed %lu: block %u: usable size %zu < %zu or bad base\n", seed, b->id,
            nh_usable_size(b->p), b->size);
    return false;
  }
  return true;
}

static void *worker(void *arg) {
  unsigned long seed = seed_base + (unsigned long)(uintptr_t)arg;
  uint64_t s = seed * 0x9e3779b97f4a7c15u + 1;
  block mine[SLOTS] = {{0}};
  uint32_t next_id = (uint32_t)(uintptr_t)arg << 24;
  for (long step = 0; step < steps && !__atomic_load_n(&failures, __ATOMIC_RELAXED); step++) {
    block *b = &mine[rnd(&s) % SLOTS];
    uint64_t op = rnd(&s) % 100;
    if (b->p && op < 45) {                          /* free */
      if (!intact(b, b->size, seed)) goto fail;
      nh_free(b->p);
      b->p = NULL;
    } else if (b->p && op < 60) {                   /* realloc, keeping the prefix */
      size_t n = random_size(&s);
      unsigned char *q = nh_realloc(b->p, n);
      if (!q) goto fail;
      b->p = q;
      block kept = *b;
      kept.size = n < b->size ? n : b->size;    /* the prefix realloc must have kept */
      if (!intact(&kept, kept.size, seed)) goto fail;
      b->size = n;
      fill(b);
    } else if (b->p && op < 80) {                   /* hand it to another thread */
      if (!intact(b, b->size, seed)) goto fail;
      pthread_mutex_lock(&exchange.lock);
      block *x = &exchange.slot[rnd(&s) % EXCHANGE];
      block taken = *x;
      *x = *b;
      pthread_mutex_unlock(&exchange.lock);
      *b = taken;                                   /* maybe another thread's block */
      if (b->p && !intact(b, b->size, seed)) goto fail;
    } else if (!b->p) {                             /* allocate, some kind */
      b->size = random_size(&s);
      b->id = next_id++;
      switch (rnd(&s) % 4) {
      case 0: b->p = nh_alloc(b->size); break;
      case 1: b->p = nh_alloc_noscan(b->size); break;
      case 2: b->p = nh_calloc(1, b->size); break;
      default: b->p = nh_aligned_alloc((size_t)1 << (rnd(&s) % 13), b->size); break;
      }
      if (!b->p) goto fail;
      fill(b);
    }
  }
  for (int i = 0; i < SLOTS; i++) {
    if (mine[i].p && !intact(&mine[i], mine[i].size, seed)) goto fail;
    nh_free(mine[i].p);
  }
  return NULL;
fail:
  __atomic_store_n(&failures, 1, __ATOMIC_RELAXED);
  fprintf(stderr, "model: FAILED with seed %lu (rerun: NH_MODEL_SEED=%lu)\n", seed, seed_base / 1000);
  return NULL;
}

static void run_seed(unsigned long seed) {
  seed_base = seed;
  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++)
    pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)i);
  for (int i = 0; i < THREADS; i++)
    pthread_join(t[i], NULL);
  for (int i = 0; i < EXCHANGE; i++) {
    block *b = &exchange.slot[i];
    if (b->p && !intact(b, b->size, seed))
      failures = 1;
    nh_free(b->p);
    b->p = NULL;
  }
}

static void test_model(void **state) {
  const char *env_seed = getenv("NH_MODEL_SEED"), *env_steps = getenv("NH_MODEL_STEPS");
  if (env_steps)
    steps = atol(env_steps);
  unsigned long first = env_seed ? strtoul(env_seed, NULL, 10) : 1, last = env_seed ? first : 3;
  for (unsigned long seed = first; seed <= last && !failures; seed++)
    run_seed(seed * 1000);
  assert_int_equal(failures, 0);

  mcache_flush_all(&nh_rt.caches);   /* empty the per-CPU caches */
  nh_scavenge(0);                     /* and the empty spans the mcentrals kept */
  for (int n = 0; n < nh_rt.topo.nnodes; n++) {
    pageheap_validate(&nh_rt.nodes[n].ph);
    for (unsigned ac = 0; ac < NH_NUM_ALLOC_CLASSES; ac++)
      mcentral_validate(&nh_rt.nodes[n].central[ac]);
  }
  nh_stats_t st = {.size = sizeof st};
  nh_stats_read(&st);
  print_message("model: %ld steps x %d threads; mapped %llu MiB, %llu arenas\n", steps, THREADS,
                (unsigned long long)st.heap_mapped_bytes >> 20, (unsigned long long)st.arenas);
  assert_int_equal(st.heap_inuse_bytes, 0);
  assert_int_equal(st.small_spans, 0);
  assert_int_equal(st.large_objects, 0);
  assert_int_equal(st.bad_frees, 0);
  assert_int_equal(errors.count, 0);
}

int main(void) {
  clear_nheap_env();
  capture_errors();
  nh_options o;
  nh_options_init(&o);
  o.gc = NH_GC_OFF;      /* the explicit-free allocator: pointers live in malloc memory here */
  o.numa = "fake:2";    /* two nodes' page heaps and mcentrals, CPUs split between them */
  if (nh_init(&o) != 0)
    return 1;
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_model)};
  int rc = cmocka_run_group_tests_name("model", tests, NULL, NULL);
  nh_shutdown();
  return rc;
}
