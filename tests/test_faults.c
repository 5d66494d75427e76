/*
 * test_faults.c — resource failures and hostile conditions, with the whole heap: the OS
 * refusing memory (injected through the OS-layer hooks: also while a mark needs grey blocks
 * and while a cycle queues finalizers), the memory limit reached by small objects, threads
 * cancelled or exiting in the middle of cycles, signals arriving while the world is stopped,
 * fork() while other threads allocate (gc = off), and the hugetlb pool running dry between
 * arenas. Each must give NULL (or a fallback, counted) and a clear error,
 * never an abort, and leave a heap that keeps working and passes its validators. And
 * secure = on's three measures: guard pages, shuffled allocation order, zero on free.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/heap.h"
#include "tests/testutil.h"

static nh_stats_t stats(void) {
  nh_stats_t s = {.size = sizeof s};
  assert_int_equal(nh_stats_read(&s), 0);
  return s;
}

static void validate(void) {
  for (int n = 0; n < nh_rt.topo.nnodes; n++) {
    pageheap_validate(&nh_rt.nodes[n].ph);
    for (unsigned ac = 0; ac < NH_NUM_ALLOC_CLASSES; ac++)
      mcentral_validate(&nh_rt.nodes[n].central[ac]);
  }
}

/* A heap for one test: the environment cleared, errors captured, the options given. */
static void start_with(nh_gc_mode gc, nh_hugepages_mode hugepages, int64_t secure) {
  clear_nheap_env();
  capture_errors();
  nh_options o;
  nh_options_init(&o);
  o.gc = gc;
  o.hugepages = hugepages;
  o.secure = secure;
  assert_int_equal(nh_init(&o), 0);
}

static void start(nh_gc_mode gc) { start_with(gc, NH_HUGEPAGES_NONE, 0); }

static atomic_bool refuse;

/* After each test, failed or not: no heap and no refusing hooks left for the next. */
static int teardown(void **state) {
  (void)state;
  atomic_store(&refuse, false);
  nh_os_override = NULL;
  if (__atomic_load_n(&nh_rt.ready, __ATOMIC_ACQUIRE))
    nh_shutdown();
  return 0;
}

/* ---- the OS refusing memory ---- */

static void *refusing_map(void *addr, size_t len, int prot, int flags) {
  if (atomic_load(&refuse)) {
    errno = ENOMEM;
    return MAP_FAILED;
  }
  return os_linux.map(addr, len, prot, flags);
}

/* A heap whose OS layer refuses maps while `refuse` is set. */
static void start_refusing(nh_gc_mode gc) {
  static nh_os_hooks hooks;
  hooks = os_linux;
  hooks.map = refusing_map;
  nh_os_override = &hooks;
  start(gc);
  nh_os_override = NULL;
}

static void test_mmap_failure(void **state) {
  (void)state;
  start_refusing(NH_GC_STW);
  char *kept = nh_alloc(1 << 20);
  memset(kept, 0x5a, 1 << 20);
  atomic_store(&refuse, true);
  errno = 0;
  assert_null(nh_alloc((size_t)200 << 20));   /* needs new arenas: refused */
  assert_int_equal(errno, ENOMEM);
  assert_true(errors_contain("out of memory"));
  static void *got[4096];
  int n = 0;
  while (n < 4096 && (got[n] = nh_alloc_noscan(64 << 10)))   /* the arena's room, then NULL */
    n++;
  assert_true(n > 0 && n < 4096);
  assert_null(nh_alloc(100));   /* small ones too, once no span can be had */
  nh_gc();                       /* a cycle with the OS refusing (checkmark maps its own) */
  for (int i = 0; i < n; i += 2)
    nh_free(got[i]);
  void *again = nh_alloc_noscan(64 << 10);   /* freed room is used again */
  assert_non_null(again);
  atomic_store(&refuse, false);
  void *big = nh_alloc((size_t)200 << 20);
  assert_non_null(big);
  for (int i = 0; i < (1 << 20); i += 4096)
    assert_int_equal(kept[i], 0x5a);
  validate();
  nh_shutdown();
  memset(got, 0, sizeof got);   /* a static array is a root: no stale words for the next heap */
}

/* ---- the mark's grey stack cannot grow: overflow recovery ends, and loses nothing ---- */

/* 200k objects reachable from one registered root, each with a child reachable only through
 * it: the mark needs 25 grey blocks for the root's words, and the OS refuses to map them. The
 * collection must end (recovery used to push every marked object again each round, which
 * overflowed again, for ever), and every object must survive (checkmark runs in this test). */
static void overflow_recovery(nh_gc_mode gc) {
  start_refusing(gc);
  enum { N = 200000 };
  uintptr_t **root = calloc(N, sizeof *root);   /* malloc memory: a root only once registered */
  assert_non_null(root);
  assert_int_equal(nh_root_add(root, N * sizeof *root), 0);
  nh_set_gc_percent(-1);   /* no cycle before the OS refuses: none has made grey blocks yet */
  for (uintptr_t i = 0; i < N; i++) {
    assert_non_null(root[i] = nh_alloc(32));
    uintptr_t *child = nh_alloc(32);
    assert_non_null(child);
    child[1] = i ^ 0x5a5a5a5a;
    root[i][0] = (uintptr_t)child;
  }
  atomic_store(&refuse, true);
  alarm(900);   /* a hang is the failure this test exists for: SIGALRM ends it */
  nh_gc();
  alarm(0);
  nh_stats_t s = stats();
  assert_true(s.gc_mark_overflows > 0);   /* the mark did overflow */
  nh_gc();   /* a second cycle with the OS still refusing: blocks kept from the first */
  atomic_store(&refuse, false);
  for (int i = 0; i < 2 * N; i++)   /* whatever was freed by mistake is handed out and written */
    memset(nh_alloc(32), 0xff, 32);
  for (uintptr_t i = 0; i < N; i++)
    assert_int_equal(((uintptr_t *)root[i][0])[1], i ^ 0x5a5a5a5a);
  validate();
  nh_root_remove(root);
  free(root);
  nh_shutdown();
}

static void test_mark_overflow_recovery_stw(void **state) {
  (void)state;
  overflow_recovery(NH_GC_STW);
}

static void test_mark_overflow_recovery_concurrent(void **state) {
  (void)state;
  overflow_recovery(NH_GC_CONCURRENT);
}

/* ---- the finalizer queue unable to grow ---- */

static atomic_int finalized;
static void count_finalized(void *obj, void *arg) {
  (void)obj, (void)arg;
  atomic_fetch_add(&finalized, 1);
}

/* Finalizable objects nothing points to (their addresses are kept nowhere). */
static __attribute__((noinline)) void make_finalizable(int n) {
  for (int i = 0; i < n; i++)
    assert_int_equal(nh_set_finalizer(nh_alloc(48), count_finalized, NULL), 0);
}

static void drain_finalizers(void) {
  const nh_specials_t *sp = &nh_rt.gc.specials;
  for (int i = 0; i < 10000 && stats().finalizers_run < __atomic_load_n(&sp->queued, __ATOMIC_RELAXED); i++)
    usleep(1000);
  assert_int_equal(stats().finalizers_run, __atomic_load_n(&sp->queued, __ATOMIC_RELAXED));
}

/* A cycle finds more dead finalizable objects than the ready queue can take, the OS refusing
 * its growth: the ones left over keep their records and their objects, for a later cycle. (The
 * table pass skipped the record it moved into a kept one's place: its object was swept and its
 * record stayed, for a finalizer to run on whatever took the slot, or to be dropped unrun.)
 * The queue grows by doubling from metadata; past 2048 records (96 KiB, more than the metadata
 * allocator cuts from its shared chunks) every growth maps, so refusing maps during the cycle
 * refuses it. */
static void test_finalizer_queue_cannot_grow(void **state) {
  (void)state;
  start_refusing(NH_GC_STW);
  enum { N = 3000 };
  atomic_store(&finalized, 0);
  make_finalizable(N);
  atomic_store(&refuse, true);
  nh_gc();
  atomic_store(&refuse, false);
  specials_validate(&nh_rt.gc.specials);   /* every record's object is still there */
  assert_true(nh_rt.gc.specials.nfinal > 0);   /* the queue did not take them all */
  assert_true(nh_rt.gc.specials.queued < N);
  for (int i = 0; i < 3; i++) {   /* the rest are queued; all finalized ones are freed */
    nh_gc();
    specials_validate(&nh_rt.gc.specials);
  }
  drain_finalizers();
  /* Each object was finalized once, or is still registered (a stale word on a stack may keep
   * one alive); none was dropped. */
  assert_int_equal((size_t)atomic_load(&finalized) + nh_rt.gc.specials.nfinal, N);
  validate();
  nh_shutdown();
}

/* ---- the memory limit, reached by small objects that stay reachable ---- */

static void test_memory_limit_small_objects(void **state) {
  (void)state;
  start(NH_GC_STW);
  nh_set_memory_limit(16 << 20);
  enum { MAX = 1 << 20 };
  void **keep = nh_alloc(MAX * sizeof *keep);   /* a heap array: everything stays reachable */
  assert_non_null(keep);
  long n = 0;
  errno = 0;
  while (n < MAX && (keep[n] = nh_alloc(100)))
    n++;
  assert_true(n > 1000 && n < MAX);
  assert_int_equal(errno, ENOMEM);
  nh_stats_t s = stats();
  assert_true(s.limit_refusals > 0);
  assert_true(s.heap_inuse_bytes <= (16u << 20) + (16u << 20) / 8);
  for (long i = 0; i < n; i += 2) {   /* half freed: room again */
    nh_free(keep[i]);
    keep[i] = NULL;
  }
  for (long i = 0; i < 1000; i += 2)
    assert_non_null(keep[i] = nh_alloc(100));
  nh_set_memory_limit(0);
  validate();
  nh_shutdown();
}

/* ---- threads cancelled or exiting during cycles ---- */

static atomic_bool stop_workers;

static void *allocator_thread(void *arg) {
  long mode = (long)arg;
  void *volatile last = NULL;
  for (long i = 0; !atomic_load(&stop_workers); i++) {
    void **p = nh_alloc(32 + (size_t)(i % 400));
    p[0] = (void *)last;
    last = i % 50 ? p : NULL;
    if (i % 64 == 0) {
      struct timespec ts = {0, 20000};
      nanosleep(&ts, NULL);   /* a cancellation point */
    }
    if (mode == 1 && i == 5000)
      pthread_exit(NULL);     /* exits in the middle of its work */
  }
  return NULL;
}

static void test_threads_cancelled_mid_cycle(void **state) {
  (void)state;
  start(NH_GC_CONCURRENT);
  atomic_store(&stop_workers, false);
  enum { N = 4 };
  pthread_t t[N];
  for (long i = 0; i < N; i++)
    assert_int_equal(pthread_create(&t[i], NULL, allocator_thread, (void *)(i % 2)), 0);
  uint64_t c0 = stats().gc_cycles;
  for (int round = 0; round < 40; round++) {
    nh_gc();
    int k = round % N;
    if (round % 2 == 0)
      pthread_cancel(t[k]);
    pthread_join(t[k], NULL);   /* cancelled, or exited (mode 1), or still running: stopped below */
    assert_int_equal(pthread_create(&t[k], NULL, allocator_thread, (void *)(long)(round % 2)), 0);
  }
  atomic_store(&stop_workers, true);
  for (int i = 0; i < N; i++)
    pthread_join(t[i], NULL);
  nh_gc();
  nh_stats_t s = stats();
  assert_true(s.gc_cycles >= c0 + 40);
  assert_int_equal(s.threads_attached, 1);   /* every dead thread detached */
  validate();
  nh_shutdown();
}

/* ---- signals while the world is stopped ---- */

static atomic_long alarms;
static void on_alarm(int sig) {
  (void)sig;
  atomic_fetch_add(&alarms, 1);
}

static void test_signals_during_stop_the_world(void **state) {
  (void)state;
  start(NH_GC_STW);
  struct sigaction sa = {.sa_handler = on_alarm, .sa_flags = SA_RESTART};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGALRM, &sa, NULL);
  sigaction(SIGUSR1, &sa, NULL);
  struct itimerval it = {{0, 50}, {0, 50}};   /* every 50 µs, to whichever thread */
  setitimer(ITIMER_REAL, &it, NULL);
  atomic_store(&stop_workers, false);
  pthread_t t[2];
  for (long i = 0; i < 2; i++)
    assert_int_equal(pthread_create(&t[i], NULL, allocator_thread, (void *)0), 0);
  uint64_t c0 = stats().gc_cycles;
  /* 100 cycles, and on until more than 100 signals came (a count, not a time: how many the
   * timer delivers in 100 cycles depends on how fast the machine runs them). */
  for (int i = 0; i < 100 || (atomic_load(&alarms) <= 100 && i < 1000000); i++) {
    pthread_kill(t[i % 2], SIGUSR1);
    nh_gc();
  }
  struct itimerval off = {{0, 0}, {0, 0}};
  setitimer(ITIMER_REAL, &off, NULL);
  atomic_store(&stop_workers, true);
  for (int i = 0; i < 2; i++)
    pthread_join(t[i], NULL);
  signal(SIGALRM, SIG_DFL);
  signal(SIGUSR1, SIG_DFL);
  print_message("100 cycles with %ld signals delivered meanwhile\n", atomic_load(&alarms));
  assert_true(stats().gc_cycles >= c0 + 100);
  assert_true(atomic_load(&alarms) > 100);
  validate();
  nh_shutdown();
}

/* ---- fork while other threads allocate, gc = off: the child's heap is consistent ---- */

static void *churn_free(void *arg) {
  (void)arg;
  while (!atomic_load(&stop_workers)) {
    void *p[64];
    for (int i = 0; i < 64; i++)
      p[i] = nh_alloc_noscan(16 + (size_t)i * 40);
    for (int i = 0; i < 64; i++)
      nh_free(p[i]);
  }
  return NULL;
}

static void test_fork_while_allocating_gc_off(void **state) {
  (void)state;
  start(NH_GC_OFF);
  atomic_store(&stop_workers, false);
  pthread_t t[2];
  for (int i = 0; i < 2; i++)
    assert_int_equal(pthread_create(&t[i], NULL, churn_free, NULL), 0);
  for (int k = 0; k < 20; k++) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
      validate();   /* aborts on an inconsistency */
      void *p[1000];
      for (int i = 0; i < 1000; i++)
        p[i] = nh_alloc(8 + (size_t)i);
      for (int i = 0; i < 1000; i++)
        nh_free(p[i]);
      validate();
      _exit(0);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  atomic_store(&stop_workers, true);
  for (int i = 0; i < 2; i++)
    pthread_join(t[i], NULL);
  validate();
  nh_shutdown();
}

/* ---- the hugetlb pool running dry between arenas ---- */

static atomic_long pool = 64;   /* 2 MiB pages in the fake pool */
static long fake_free_pages(void) { return atomic_load(&pool); }
static void *fake_hugetlb_map(void *addr, size_t len, int prot, int flags) {
  if (flags & MAP_HUGETLB) {   /* the pool hands out 2 MiB pages: plain memory stands in */
    if (atomic_load(&pool) < (long)(len >> 21)) {
      errno = ENOMEM;
      return MAP_FAILED;
    }
    atomic_fetch_sub(&pool, (long)(len >> 21));
    flags &= ~(MAP_HUGETLB | (21 << MAP_HUGE_SHIFT));
  }
  return os_linux.map(addr, len, prot, flags);
}

static void test_hugetlb_pool_runs_dry(void **state) {
  (void)state;
  static nh_os_hooks hooks;
  hooks = os_linux;
  hooks.map = fake_hugetlb_map;
  hooks.hugetlb_free_pages = fake_free_pages;
  nh_os_override = &hooks;
  start_with(NH_GC_OFF, NH_HUGEPAGES_AUTO, 0);
  nh_os_override = NULL;
  atomic_store(&pool, 40);   /* room for one more 64 MiB arena (32 pages), not two */
  static void *big[8];
  for (int i = 0; i < 6; i++)
    assert_non_null(big[i] = nh_alloc_noscan(48 << 20));   /* one arena each */
  nh_stats_t s = stats();
  print_message("%llu arenas: %llu hugetlb, %llu thp, %llu 4k; %llu hugetlb fallbacks\n",
                (unsigned long long)s.arenas, (unsigned long long)s.arenas_hugetlb,
                (unsigned long long)s.arenas_thp, (unsigned long long)s.arenas_small,
                (unsigned long long)s.hugetlb_fallbacks);
  assert_true(s.arenas_hugetlb >= 1);
  assert_true(s.arenas_hugetlb < s.arenas);
  assert_true(s.hugetlb_fallbacks >= 1);
  for (int i = 0; i < 6; i++) {
    memset(big[i], 1, 4096);
    nh_free(big[i]);
    big[i] = NULL;
  }
  validate();
  nh_shutdown();
}

/* ---- secure = on ---- */

/* Objects filled and dropped by a thread that then exits (so no stack of this one holds a
 * stale copy); their addresses come back disguised (~p: p ^ 1 would be an interior pointer). */
enum { GARBAGE = 64 };
typedef struct garbage { uintptr_t hidden[GARBAGE]; nh_weak_t *weak[GARBAGE]; } garbage;
static void *make_garbage(void *arg) {
  garbage *g = arg;
  for (int i = 0; i < GARBAGE; i++) {
    char *p = nh_alloc_noscan(48);
    memset(p, 0xcc, 48);
    g->weak[i] = nh_weak_new(p);
    g->hidden[i] = ~(uintptr_t)p;
  }
  return NULL;
}

/* Whether the read-write mapping holding p has a PROT_NONE page on each side
 * (/proc/self/maps). */
static bool between_guards(const void *p) {
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f)
    return false;
  char line[512], prev_perms[5] = "", perms[5];
  unsigned long prev_hi = 0, lo, hi, at = (unsigned long)p;
  bool found = false, before = false, after = false;
  while (fgets(line, sizeof line, f)) {
    if (sscanf(line, "%lx-%lx %4s", &lo, &hi, perms) != 3)
      continue;
    if (found) {   /* the mapping after it */
      after = lo == prev_hi && strcmp(perms, "---p") == 0;
      break;
    }
    if (at >= lo && at < hi && strcmp(perms, "rw-p") == 0) {
      found = true;
      before = prev_hi == lo && strcmp(prev_perms, "---p") == 0;
    }
    prev_hi = hi;
    memcpy(prev_perms, perms, sizeof perms);
  }
  fclose(f);
  return found && before && after;
}

static void test_secure_mode(void **state) {
  (void)state;
  start_with(NH_GC_STW, NH_HUGEPAGES_NONE, 1);
  /* Guard pages on both sides of a metadata mapping (a CPU's cache: header page, then it). */
  char *mapping = (char *)nh_rt.caches.cpu[0] - 4096, perms[5];
  assert_int_equal(maps_perms(mapping - 4096, perms), 0);
  assert_string_equal(perms, "---p");
  assert_int_equal(maps_perms(mapping, perms), 0);
  assert_string_equal(perms, "rw-p");
  /* And around the types region and the arena index (the review found them bare). */
  assert_true(nh_type_new(16, (size_t[]){8}, 1) != NULL);   /* a type: the region is touched */
  assert_true(between_guards(nh_rt.types));
  nh_rt.arenas.index[0] = NULL;   /* touched, as lookups of low addresses do */
  assert_true(between_guards(nh_rt.arenas.index));
  assert_non_null(nh_alloc(16));   /* this thread attached: its record too */
  assert_true(nh_self->guarded && between_guards(nh_self));
  /* Allocation order shuffled: 64 objects of one class do not come in address order. */
  enum { N = 64 };
  char *p[N];
  int ascending = 0;
  for (int i = 0; i < N; i++) {
    p[i] = nh_alloc_noscan(48);
    ascending += i && p[i] > p[i - 1];
  }
  print_message("secure: %d of %d consecutive allocations at a higher address\n", ascending, N - 1);
  assert_true(ascending > 8 && ascending < N - 9);
  /* Reuse order unpredictable: the object just freed is not simply the next one handed out
   * (LIFO reuse gave it back every time). */
  for (int i = N - 16; i < N; i++)   /* a cache with a few free objects in it */
    nh_free(p[i]);
  int same = 0;
  for (int k = 0; k < 32; k++) {
    char *a = nh_alloc_noscan(48);
    nh_free(a);
    char *b = nh_alloc_noscan(48);
    same += a == b;
    nh_free(b);
  }
  print_message("secure: the object just freed came back next %d times in 32\n", same);
  assert_true(same < 16);
  /* Zero on free: explicitly, and by the collector. */
  memset(p[0], 0xaa, 48);
  nh_free(p[0]);
  for (int i = 0; i < 48; i++)
    assert_int_equal(p[0][i], 0);
  char *big = nh_alloc_noscan(100000);
  memset(big, 0xbb, 100000);
  nh_free(big);   /* its pages go back to the page heap, zeroed */
  for (int i = 0; i < 100000; i += 97)
    assert_int_equal(big[i], 0);
  for (int i = 1; i < N; i++)
    p[i] = NULL;
  static garbage g;
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, make_garbage, &g), 0);
  pthread_join(t, NULL);
  nh_gc();
  nh_gc();
  int freed = 0;
  for (int k = 0; k < GARBAGE; k++) {
    if (nh_weak_get(g.weak[k]))
      continue;   /* a stale word somewhere still holds it (conservative roots) */
    freed++;
    const char *dead = (const char *)~g.hidden[k];
    for (int i = 0; i < 48; i++)   /* freed by the collector, and zeroed */
      assert_int_equal(dead[i], 0);
  }
  assert_true(freed >= GARBAGE / 2);
  validate();
  nh_shutdown();
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_teardown(test_mmap_failure, teardown),
    cmocka_unit_test_teardown(test_mark_overflow_recovery_stw, teardown),
    cmocka_unit_test_teardown(test_mark_overflow_recovery_concurrent, teardown),
    cmocka_unit_test_teardown(test_finalizer_queue_cannot_grow, teardown),
    cmocka_unit_test_teardown(test_memory_limit_small_objects, teardown),
    cmocka_unit_test_teardown(test_threads_cancelled_mid_cycle, teardown),
    cmocka_unit_test_teardown(test_signals_during_stop_the_world, teardown),
    cmocka_unit_test_teardown(test_fork_while_allocating_gc_off, teardown),
    cmocka_unit_test_teardown(test_hugetlb_pool_runs_dry, teardown),
    cmocka_unit_test_teardown(test_secure_mode, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
