/*
 * test_gc_concurrent.c — concurrent marking (gc = concurrent): mutators that insert, delete,
 * swap and move pointers with nh_store while cycles run back to back, checked after every
 * round; objects born during a mark; nh_memmove_ptrs; weak references read during a mark;
 * proof that checkmark catches a missing barrier (and that nh_store prevents it); fork while
 * cycles run; pauses
 * recorded for a 64 MiB live heap; how threads stop (the signal mask of a thread parked on
 * leaving a no-stop region, a thread gone without detaching). ctest runs it with
 * NHEAP_DEBUG=checkmark=1 as well.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/gc.h"
#include "core/heap.h"
#include "numa/placement.h"
#include "tests/testutil.h"

/* Pointer stores: nh_store, or (the concurrent-nobarrier run) plain stores, which the kernel's
 * write-protect tracking must make as safe. */
static bool plain_stores;
static inline void store_ptr(void **slot, void *v) {
  if (plain_stores)
    *(void *volatile *)slot = v;
  else
    nh_store(slot, v);
}
#define STORE(slot, v) store_ptr((void **)(slot), (v))

static nh_stats_t stats(void) {
  nh_stats_t s = {.size = sizeof s};
  assert_int_equal(nh_stats_read(&s), 0);
  return s;
}

/* The options every test here starts from, with the environment cleared and errors captured. */
static void concurrent_options(nh_options *o) {
  clear_nheap_env();
  capture_errors();
  nh_options_init(o);
  o->gc = NH_GC_CONCURRENT;
  o->hugepages = NH_HUGEPAGES_NONE;
}

static int setup(void **state) {
  (void)state;
  nh_options o;
  concurrent_options(&o);
  /* The collector thread and one worker, whatever the CPU count; or, as CMake sets for the
   * checkmark run, Go's rule (a fractional marker on 1, 2, 3 or 6 CPUs). */
  const char *markers = getenv("NH_TEST_MARK_WORKERS");
  o.mark_workers = markers ? atoi(markers) : 2;
  o.numa = getenv("NH_TEST_NUMA");   /* the NUMA run: fake nodes, per-node markers and queues */
  plain_stores = getenv("NH_TEST_NOBARRIER") != NULL;   /* the kernel's tracking, plain stores */
  if (plain_stores)
    o.gc = NH_GC_CONCURRENT_NOBARRIER;
  int rc = nh_init(&o);
  if (rc == 0 && stats().gc_mode != (uint64_t)o.gc) {
    print_message("gc = %s is not available here: skipped\n", plain_stores ? "concurrent-nobarrier" : "concurrent");
    exit(TEST_SKIP);
  }
  return rc;
}

static int teardown(void **state) {
  (void)state;
  nh_shutdown();
  return 0;
}

/* A node of the mutated graph: its value and check word say whether it is intact. */
typedef struct node {
  struct node *kid[2];
  uintptr_t value, check;
} node;

static node *new_node(uintptr_t value) {
  node *n = nh_alloc(sizeof *n);
  assert_non_null(n);
  n->value = value;
  n->check = ~value;
  return n;
}

static void check_node(const node *n) {
  if (n->check != ~n->value)
    fail_msg("node %p (value %#lx) corrupt: freed while reachable", (const void *)n, (unsigned long)n->value);
}

static size_t check_tree(const node *n, int depth) {
  if (!n)
    return 0;
  check_node(n);
  if (depth > 64)
    fail_msg("a cycle in a tree at node %p", (const void *)n);
  return 1 + check_tree(n->kid[0], depth + 1) + check_tree(n->kid[1], depth + 1);
}

static node *grow(int depth, uintptr_t value) {
  node *n = new_node(value);
  if (depth > 0) {
    STORE((void **)&n->kid[0], grow(depth - 1, value * 2));
    STORE((void **)&n->kid[1], grow(depth - 1, value * 2 + 1));
  }
  return n;
}

/* Each mutator owns TREES trees in a forest object that only it changes (so trees never get
 * two parents); it inserts (a fresh subtree where a leaf was), deletes (a subtree dropped),
 * swaps subtrees between two of its trees, and moves a subtree through its stack (taken out,
 * garbage made, put back elsewhere). */
enum { MUTATORS = 3, TREES = 16, ROUNDS = 60, STEPS = 400 };

static node **slot_at(node *root, uint64_t *rng, int depth) {
  node **slot = NULL;
  for (node *n = root; n && depth-- > 0;) {
    *rng = *rng * 6364136223846793005u + 1442695040888963407u;
    slot = &n->kid[*rng >> 63];
    n = *slot;
  }
  return slot;
}

static void *mutator(void *arg) {
  uint64_t rng = (uintptr_t)arg * 0x9e3779b97f4a7c15u;
  node **forest = nh_alloc(TREES * sizeof *forest);
  for (int t = 0; t < TREES; t++)
    STORE((void **)&forest[t], grow(6, (uintptr_t)arg << 20 | (uintptr_t)t << 12 | 1));
  for (int round = 0; round < ROUNDS; round++) {
    for (int step = 0; step < STEPS; step++) {
      rng = rng * 6364136223846793005u + 1442695040888963407u;
      node *a = forest[rng % TREES], *b = forest[(rng >> 16) % TREES];
      node **sa = slot_at(a, &rng, 1 + (int)(rng >> 40) % 5), **sb = slot_at(b, &rng, 1 + (int)(rng >> 48) % 5);
      if (!sa || !sb)
        continue;
      switch (rng >> 61) {
      case 0:
      case 1:   /* insert: a fresh subtree replaces whatever was there */
        STORE((void **)sa, grow((int)(rng >> 32) % 4, rng & 0xfffff));
        break;
      case 2:   /* delete */
        STORE((void **)sa, NULL);
        break;
      case 3:
      case 4: {   /* swap two subtrees of different trees */
        if (a == b)
          break;
        node *x = *sa, *y = *sb;
        STORE((void **)sa, y);
        STORE((void **)sb, x);
        break;
      }
      default: {   /* move through the stack: out, garbage, back in elsewhere */
        node *volatile held = *sa;
        STORE((void **)sa, NULL);
        for (int k = 0; k < 20; k++)
          (void)new_node((uintptr_t)k);
        STORE((void **)(a != b && !*sb ? sb : sa), held);   /* trees are disjoint */
        break;
      }
      }
    }
    for (int t = 0; t < TREES; t++)   /* the checker: every reachable node intact */
      (void)check_tree(forest[t], 0);
  }
  return NULL;
}

static void test_mutators_under_concurrent_marking(void **state) {
  (void)state;
  uint64_t cycles = stats().gc_cycles;
  run_with_cycles(mutator, MUTATORS, 1);   /* cycles back to back, besides the paced ones */
  nh_stats_t s = stats();
  print_message("%llu cycles, pauses p50 %.3f ms, p99 %.3f ms, max %.3f ms\n",
                (unsigned long long)(s.gc_cycles - cycles), s.pause_p50_ns / 1e6, s.pause_p99_ns / 1e6,
                s.pause_max_ns / 1e6);
  assert_true(s.gc_cycles > cycles);
  assert_int_equal(s.gc_mode, plain_stores ? NH_GC_CONCURRENT_NOBARRIER : NH_GC_CONCURRENT);
  assert_int_equal(errors.count, 0);
  if (plain_stores)
    print_message("written pages rescanned: %.1f MiB in all\n", s.gc_dirty_bytes / 1048576.0);
}

/* A long list, so that a mark takes a while to get to its end. */
enum { LIST = 1000000 };
/* volatile: nothing reads it, and a compiler drops stores nobody reads, leaving the list to
 * whatever stale copy of its head a stack or register kept (a hidden node's list was freed
 * under the hider, or not, as the binary's layout happened to fall) */
static node *volatile list_head;
static node *holder;   /* a global: a root */

static node *make_list(uintptr_t *before_last) {
  node *head = NULL;
  for (long i = LIST - 1; i >= 0; i--) {
    node *n = new_node((uintptr_t)i);
    STORE((void **)&n->kid[0], head);
    head = n;
    if (i == LIST - 2)
      *before_last = ~(uintptr_t)n;
  }
  return head;
}

/* A child's actor acts in one cycle's mark: it runs on a thread of its own, started and running
 * before another thread's nh_gc starts the cycle, waits for the mark (wait_for_mark) and gives
 * up if the cycle ends first: with other processes on the CPUs it may see none of the mark, or
 * only its end. act_during_mark says whether it acted (it sets `acted`); callers try again. */
static int gc_done, actor_running, acted;

static void *gc_then_done(void *arg) {
  (void)arg;
  nh_gc();
  __atomic_store_n(&gc_done, 1, __ATOMIC_RELEASE);
  return NULL;
}

static bool wait_for_mark(void) {
  __atomic_store_n(&actor_running, 1, __ATOMIC_RELEASE);
  while (!__atomic_load_n(&nh__marking, __ATOMIC_ACQUIRE) && !__atomic_load_n(&gc_done, __ATOMIC_ACQUIRE))
    ;
  return __atomic_load_n(&nh__marking, __ATOMIC_ACQUIRE);
}

static bool act_during_mark(void *(*actor)(void *)) {
  __atomic_store_n(&gc_done, 0, __ATOMIC_RELAXED);
  __atomic_store_n(&actor_running, 0, __ATOMIC_RELAXED);
  __atomic_store_n(&acted, 0, __ATOMIC_RELAXED);
  pthread_t gc, t;
  if (pthread_create(&t, NULL, actor, NULL) != 0)
    return false;
  while (!__atomic_load_n(&actor_running, __ATOMIC_ACQUIRE))   /* running before the mark starts */
    sched_yield();
  if (pthread_create(&gc, NULL, gc_then_done, NULL) != 0)
    abort();   /* the actor would wait for ever */
  pthread_join(gc, NULL);
  pthread_join(t, NULL);
  return __atomic_load_n(&acted, __ATOMIC_RELAXED);
}

enum { CHILD_TRIES = 500 };

/* As soon as a mark is running, the list's last node moves into a new (black) object and is
 * cut from the list, with nh_store or with a plain store. A thread of its own does it and
 * exits, so that no stack still holds the node when the mark ends (the stacks are rescanned
 * then). */
static uintptr_t second_last;   /* disguised (~address): not a root, or the mark would reach
                                   the last node through it at once */
static bool use_barrier;

static void *hide(void *arg) {
  (void)arg;
  if (!wait_for_mark())
    return NULL;
  node *h = new_node(7), *before = (node *)~second_last;   /* h is born marked */
  nh_store((void **)&h->kid[0], before->kid[0]);
  if (use_barrier)
    nh_store((void **)&before->kid[0], NULL);
  else
    before->kid[0] = NULL;   /* the missing barrier */
  nh_store((void **)&holder, h);
  __atomic_store_n(&acted, 1, __ATOMIC_RELAXED);
  return NULL;
}

/* In a child. With a loss expected (a plain store under gc = concurrent) checkmark aborts the
 * child; a try whose mark ended while the hider still held the node (the stack rescan keeps it)
 * loses nothing and is tried again. Otherwise the node must be intact after one try that hid it. */
static int hide_during_mark(bool barrier, bool expect_loss) {
  use_barrier = barrier;
  nh_set_gc_percent(-1);   /* no paced cycle: the hider must act in the cycle it waits for */
  for (int i = 0; i < CHILD_TRIES; i++) {
    list_head = make_list(&second_last);
    nh_gc();   /* none still in flight: every node is old when the next cycle starts */
    if (!act_during_mark(hide))
      continue;
    nh_gc();
    check_node(holder->kid[0]);
    if (!expect_loss)
      return 0;
  }
  return 6;   /* the hider never acted (or, with a loss expected, checkmark never caught one) */
}

/* Runs this program again as "hide-plain", "hide-barrier" or "hide-plain-nobarrier": a fresh
 * process, whose roots hold no stale values from earlier tests that could happen to point at
 * the hidden node. */
static int child_status(const char *mode, char *err, size_t errlen) {
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    dup2(fds[1], STDERR_FILENO);
    close(fds[0]);
    execl("/proc/self/exe", "test_gc_concurrent", mode, (char *)NULL);
    _exit(4);
  }
  close(fds[1]);
  size_t n = 0;
  for (ssize_t r; n + 1 < errlen && (r = read(fds[0], err + n, errlen - 1 - n)) > 0;)
    n += (size_t)r;
  err[n] = 0;
  close(fds[0]);
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  return st;
}

/* A word that looks like a pointer, written during a mark: an object allocated and dropped
 * before the mark (by a thread that exits, so no stack keeps it) is garbage at mark setup; a
 * thread the collector does not know (it never allocated: no stack of its own to rescan) writes
 * its address into a global as an integer while the mark runs, which a million-node list keeps
 * busy for milliseconds. Tried again, with new garbage, until checkmark has called one doubtful
 * (about one try in ten has its write land inside the mark with three CPU hogs beside it on 2
 * CPUs). */
/* volatile: nothing in the program reads fake_pointer, and clang drops stores nobody reads */
static volatile uintptr_t garbage;       /* disguised (~address) */
static volatile uintptr_t fake_pointer;  /* a global the mark scanned at setup, when it held 0 */
static int doubtful;

static void *make_garbage(void *arg) {
  (void)arg;
  garbage = ~(uintptr_t)new_node(9);
  return NULL;
}

static void *write_fake_pointer(void *arg) {
  (void)arg;
  if (wait_for_mark()) {
    fake_pointer = ~garbage;
    __atomic_store_n(&acted, 1, __ATOMIC_RELAXED);
  }
  return NULL;
}

/* The error funnel's handler: called in the pause, so write(2) only. */
static void note_doubtful(int code, const char *msg, void *arg) {
  (void)code, (void)arg;
  if (strstr(msg, "doubtful"))
    __atomic_store_n(&doubtful, 1, __ATOMIC_RELAXED);
  (void)!write(STDERR_FILENO, msg, strlen(msg));
  (void)!write(STDERR_FILENO, "\n", 1);
}

static int fake_pointer_during_mark(void) {
  nh_set_error_handler(note_doubtful, NULL);
  nh_set_gc_percent(-1);
  uintptr_t unused;
  list_head = make_list(&unused);   /* live: what the mark takes its time over */
  int i = 0;
  for (; i < CHILD_TRIES && !__atomic_load_n(&doubtful, __ATOMIC_RELAXED); i++) {
    nh_gc();   /* what the last try's late write kept is garbage again */
    fake_pointer = 0;
    pthread_t t;
    if (pthread_create(&t, NULL, make_garbage, NULL) != 0 || pthread_join(t, NULL) != 0)
      return 2;
    act_during_mark(write_fake_pointer);
  }
  fprintf(stderr, "fake pointer: %d tries\n", i);
  return __atomic_load_n(&doubtful, __ATOMIC_RELAXED) ? 0 : 5;
}

static int hide_main(const char *mode) {
  clear_nheap_env();
  nh_options o;
  nh_options_init(&o);
  bool nobarrier = strcmp(mode, "hide-plain-nobarrier") == 0, fake = strncmp(mode, "fake-pointer", 12) == 0;
  o.gc = nobarrier ? NH_GC_CONCURRENT_NOBARRIER : NH_GC_CONCURRENT;
  o.hugepages = NH_HUGEPAGES_NONE;
  o.debug = strcmp(mode, "fake-pointer-strict") == 0 ? "checkmark=2" : "checkmark=1";
  o.mark_workers = 1;   /* the collector thread alone: a CPU for the actor on 2 */
  if (nh_init(&o) != 0)
    return 3;
  nh_stats_t s = {.size = sizeof s};
  nh_stats_read(&s);
  if (s.gc_mode != (uint64_t)o.gc)
    return TEST_SKIP;
  return fake ? fake_pointer_during_mark()
              : hide_during_mark(strcmp(mode, "hide-barrier") == 0, strcmp(mode, "hide-plain") == 0);
}

static void test_checkmark_catches_missing_barrier(void **state) {
  (void)state;
  char err[4096];
  int st = child_status("hide-plain", err, sizeof err);
  print_message("plain store: status %#x, %s", st, err);
  assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
  assert_non_null(strstr(err, "checkmark"));
  assert_non_null(strstr(err, "it was reachable at mark setup"));
  st = child_status("hide-barrier", err, sizeof err);
  if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0))
    fail_msg("with nh_store the child failed (status %#x): %s", st, err);
}

/* A conservative false pointer written during a concurrent mark (an integer that equals the
 * address of an object that was garbage at mark setup) is no lost object: checkmark=1 says it is
 * doubtful and goes on (the object is freed, rightly); checkmark=2 aborts on it, for tests
 * whose data holds no such integers. */
static void test_checkmark_tells_false_pointers(void **state) {
  (void)state;
  char err[4096];
  int st = child_status("fake-pointer", err, sizeof err);
  print_message("checkmark=1: status %#x, %s", st, err);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  assert_non_null(strstr(err, "it was garbage at mark setup (doubtful"));
  st = child_status("fake-pointer-strict", err, sizeof err);
  print_message("checkmark=2: status %#x, %s", st, err);
  assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
  assert_non_null(strstr(err, "it was garbage at mark setup"));
}

/* The same plain store with gc = concurrent-nobarrier: the page it wrote is rescanned, so the
 * node moved into the black object survives and checkmark finds nothing missed. */
static void test_nobarrier_plain_store_is_safe(void **state) {
  (void)state;
  char err[4096];
  int st = child_status("hide-plain-nobarrier", err, sizeof err);
  if (WIFEXITED(st) && WEXITSTATUS(st) == TEST_SKIP)
    skip();
  if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0))
    fail_msg("a plain store under concurrent-nobarrier lost the node (status %#x): %s", st, err);
}

/* Where the kernel cannot track written pages (forced here), concurrent-nobarrier says so and
 * stops the world instead; gc = concurrent with barrier = none means concurrent-nobarrier. */
static void test_nobarrier_falls_back(void **state) {
  (void)state;
  nh_options o;
  concurrent_options(&o);
  o.gc = NH_GC_CONCURRENT_NOBARRIER;
  o.debug = "uffd=0";
  assert_int_equal(nh_init(&o), 0);
  assert_int_equal(stats().gc_mode, NH_GC_STW);
  assert_true(errors_contain("write-protect tracking") && errors_contain("stops the world instead"));
  void **p = nh_alloc(64);
  p[0] = nh_alloc(32);
  nh_gc();
  assert_non_null(nh_base(p[0]));
  nh_shutdown();
  concurrent_options(&o);
  o.barrier = NH_BARRIER_NONE;
  capture_errors();   /* afresh */
  assert_int_equal(nh_init(&o), 0);
  uint64_t mode = stats().gc_mode;
  print_message("gc = concurrent, barrier = none: %s\n", mode == NH_GC_CONCURRENT_NOBARRIER ? "concurrent-nobarrier" : "stw (no tracking here)");
  /* stw only where the kernel lacks the tracking, and then said so */
  assert_true(mode == NH_GC_CONCURRENT_NOBARRIER || (mode == NH_GC_STW && errors_contain("stops the world instead")));
  nh_shutdown();
}

/* The kernel's tracking lost mid-run (an arena's range unregistered from the userfaultfd, the
 * state a refused PAGEMAP_SCAN reports): the mark it hits ends by rescanning the whole heap with
 * the world stopped (or, lost between marks, the next cycle stops the world), every later cycle
 * stops the world, it is said once, and the mutators' plain stores lose nothing. checkmark
 * checks each mark. */
static void *unregister_while_marking(void *arg) {
  uintptr_t base = (uintptr_t)arg & ~(uintptr_t)(NH_ARENA_BYTES - 1);
  while (!__atomic_load_n(&nh__marking, __ATOMIC_ACQUIRE))
    sched_yield();
  struct uffdio_range r = {base, NH_ARENA_BYTES};
  int fd = __atomic_load_n(&nh_rt.gc.dirty.uffd, __ATOMIC_RELAXED);
  return (void *)(intptr_t)(fd >= 0 && ioctl(fd, UFFDIO_UNREGISTER, &r) == 0);
}

static void test_nobarrier_tracking_lost(void **state) {
  (void)state;
  nh_options o;
  concurrent_options(&o);
  o.gc = NH_GC_CONCURRENT_NOBARRIER;
  o.debug = "checkmark=1";
  assert_int_equal(nh_init(&o), 0);
  if (stats().gc_mode != NH_GC_CONCURRENT_NOBARRIER)
    skip();   /* no tracking to lose here */
  bool was_plain = plain_stores;
  plain_stores = true;
  node *volatile kept = grow(8, 1);
  pthread_t u;
  assert_int_equal(pthread_create(&u, NULL, unregister_while_marking, (void *)kept), 0);
  run_with_cycles(mutator, 2, 20);
  void *unregistered;
  pthread_join(u, &unregistered);
  assert_true(unregistered);
  nh_gc();   /* one cycle at least after the loss */
  nh_stats_t s = stats();
  print_message("tracking lost %s; %llu cycles\n",
                errors_contain("PAGEMAP_SCAN") ? "during a mark (whole heap rescanned)" : "between marks",
                (unsigned long long)s.gc_cycles);
  assert_int_equal(s.gc_mode, NH_GC_STW);
  assert_int_equal(errors.count, 1);
  assert_true(errors_contain("(gc = stw)"));
  run_with_cycles(mutator, 2, 30);   /* the collector thread, stopping the world now */
  assert_int_equal(check_tree(kept, 0), 511);
  assert_int_equal(errors.count, 1);
  plain_stores = was_plain;
}

/* A mark protects the pages of spans with objects, not free pages (cycle.c): memory freed before
 * a mark and allocated into while it runs takes no write-protect fault. 4 MiB freed (kept
 * faulted in: no scavenger), then, during a mark, allocated again (the same pages, checked) and
 * written by a thread that counts its minor faults; the write must land while the mark runs
 * (a million-node list keeps it busy), else it is tried again. Protected, the 1024 pages would
 * take a fault each. */
enum { FREED = 4 << 20 };
static char *freed_at;
static long freed_faults = -1;

static long minor_faults(void) {
  struct rusage ru;
  getrusage(RUSAGE_THREAD, &ru);
  return ru.ru_minflt;
}

static void *write_freed_pages(void *arg) {
  (void)arg;
  if (!wait_for_mark())
    return NULL;
  char *p = nh_alloc_noscan(FREED);
  if (p != freed_at) {   /* other pages: nothing to learn from this try */
    nh_free(p);
    return NULL;
  }
  long before = minor_faults();
  memset(p, 3, FREED);
  long faults = minor_faults() - before;
  if (__atomic_load_n(&nh__marking, __ATOMIC_ACQUIRE)) {   /* still marking after the writes */
    freed_faults = faults;
    __atomic_store_n(&acted, 1, __ATOMIC_RELAXED);
  }
  nh_free(p);
  return NULL;
}

static void test_nobarrier_free_pages_unprotected(void **state) {
  (void)state;
  nh_options o;
  concurrent_options(&o);
  o.gc = NH_GC_CONCURRENT_NOBARRIER;
  o.scavenger = false;
  o.debug = "checkmark=1";
  assert_int_equal(nh_init(&o), 0);
  if (stats().gc_mode != NH_GC_CONCURRENT_NOBARRIER)
    skip();
  nh_set_gc_percent(-1);
  bool was_plain = plain_stores;
  plain_stores = true;
  uintptr_t unused;
  list_head = make_list(&unused);
  int tries = 0;
  for (; tries < 50 && !__atomic_load_n(&acted, __ATOMIC_RELAXED); tries++) {
    freed_at = nh_alloc_noscan(FREED);
    assert_non_null(freed_at);
    memset(freed_at, 1, FREED);
    nh_free(freed_at);
    act_during_mark(write_freed_pages);
  }
  print_message("%d tries; %ld minor faults writing 4 MiB of freed pages during a mark\n", tries, freed_faults);
  assert_true(__atomic_load_n(&acted, __ATOMIC_RELAXED));
  assert_true(freed_faults < 64);
  list_head = NULL;
  plain_stores = was_plain;
}

/* Objects born during a mark, copies with nh_memmove_ptrs, weak references read during a
 * mark: all survive the cycle that was running. */
static void *gc_loop(void *arg) {
  atomic_int *stop = arg;
  while (!atomic_load(stop))
    nh_gc();
  return NULL;
}

static void test_births_moves_and_weak_during_marks(void **state) {
  (void)state;
  enum { N = 256 };
  node **a = nh_alloc(N * sizeof *a), **b = nh_alloc(N * sizeof *b);
  nh_weak_t *w[N];
  for (int i = 0; i < N; i++) {
    STORE((void **)&a[i], new_node((uintptr_t)i));
    w[i] = nh_weak_new(a[i]);
  }
  atomic_int stop = 0;
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, gc_loop, &stop), 0);
  for (int round = 0; round < 200; round++) {
    nh_memmove_ptrs(b, a, N * sizeof *a);   /* b takes a's nodes; a gets fresh ones */
    for (int i = 0; i < N; i++)
      STORE((void **)&a[i], new_node((uintptr_t)(round * N + i)));
    for (int i = 0; i < N; i++) {   /* b's nodes only through weak handles, then back */
      node *n = nh_weak_get(w[i]);
      if (n) {
        check_node(n);
        STORE((void **)&b[i], n);
      }
      nh_weak_free(w[i]);
      w[i] = nh_weak_new(a[i]);
    }
    for (int i = 0; i < N; i++) {
      check_node(a[i]);
      check_node(b[i]);
    }
  }
  atomic_store(&stop, 1);
  pthread_join(t, NULL);
  for (int i = 0; i < N; i++)
    nh_weak_free(w[i]);
  assert_int_equal(errors.count, 0);
}

/* fork while other threads mutate and cycles run: fork waits for a cycle in flight (its
 * prepare handler takes the collector's lock), and the child, whose collector thread did not
 * survive, collects with the world stopped and keeps its data. */
static void test_fork_during_cycles(void **state) {
  (void)state;
  pthread_t t[2];
  for (uintptr_t i = 0; i < 2; i++)
    assert_int_equal(pthread_create(&t[i], NULL, mutator, (void *)(i + 10)), 0);
  node *volatile kept = grow(8, 1);
  for (int k = 0; k < 5; k++) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
      nh_stats_t s = stats();
      int ok = s.gc_mode == NH_GC_STW && !__atomic_load_n(&nh__marking, __ATOMIC_RELAXED);
      for (int i = 0; i < 20; i++)
        (void)grow(6, (uintptr_t)i);
      nh_gc();
      ok = ok && check_tree(kept, 0) == 511;
      _exit(ok ? 0 : 1);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    nh_gc();
  }
  for (int i = 0; i < 2; i++)
    pthread_join(t[i], NULL);
  assert_int_equal(check_tree(kept, 0), 511);
  assert_int_equal(errors.count, 0);
}

/* The barrier's buffers shaded into grey blocks, drained by the markers: over many cycles the
 * blocks are reused, not mapped anew (metadata stays flat). */
static void test_barrier_blocks_reused(void **state) {
  if (plain_stores)
    skip();   /* the barrier's buffers: nothing to reuse without a barrier */
  (void)state;
  node *volatile root = grow(12, 1);
  atomic_int stop = 0;
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, gc_loop, &stop), 0);
  uint64_t rng = 7, meta_warm = 0, cycles_warm = 0;
  for (int round = 0; round < 60; round++) {
    for (int i = 0; i < 20000; i++) {   /* overwrite pointers: the barrier buffers the old ones */
      node *p = root;
      for (int d = 0; d < 8; d++) {
        rng = rng * 6364136223846793005u + 1442695040888963407u;
        p = p->kid[rng >> 63];
      }
      rng = rng * 6364136223846793005u + 1442695040888963407u;
      STORE((void **)&p->kid[rng >> 63], grow(2, rng & 0xffff));
    }
    if (round == 20) {
      meta_warm = stats().metadata_bytes;
      cycles_warm = stats().gc_cycles;
    }
  }
  atomic_store(&stop, 1);
  pthread_join(t, NULL);
  nh_stats_t s = stats();
  print_message("metadata %.1f -> %.1f MiB over %llu cycles\n", meta_warm / 1048576.0, s.metadata_bytes / 1048576.0,
                (unsigned long long)(s.gc_cycles - cycles_warm));
  assert_true(s.gc_cycles > cycles_warm + 5);
  assert_true(s.metadata_bytes < meta_warm + (2u << 20));
  assert_true(check_tree(root, 0) > 0);
}

static void **chunks;

/* Pauses at a 64 MiB live heap are recorded for both pauses of each cycle (their size goes to
 * the benchmark, not to an assertion). */
static void test_pauses_recorded(void **state) {
  (void)state;
  enum { CHUNK = 64 << 10, CHUNKS = 1024 };   /* 64 MiB of 64 KiB pointer-free chunks */
  chunks = nh_alloc(CHUNKS * sizeof *chunks);   /* a global: a root whatever the stack holds */
  for (int i = 0; i < CHUNKS; i++)
    STORE(&chunks[i], nh_alloc_noscan(CHUNK));
  nh_stats_t s0 = stats();
  for (int i = 0; i < 4; i++)
    nh_gc();
  nh_stats_t s = stats();
  print_message("64 MiB live: pauses p50 %.3f ms, max %.3f ms over %llu cycles\n", s.pause_p50_ns / 1e6,
                s.pause_max_ns / 1e6, (unsigned long long)(s.gc_cycles - s0.gc_cycles));
  assert_true(s.gc_cycles >= s0.gc_cycles + 4);
  assert_true(s.pause_total_ns > s0.pause_total_ns);
  assert_true(s.heap_marked_bytes >= (uint64_t)CHUNKS * CHUNK);
  /* The history: two pauses or more per concurrent cycle, the newest last, summing to the
   * pause time those cycles added. */
  uint64_t p[300], sum = 0;
  size_t n = nh_gc_pauses(p, 300);
  assert_true(n >= 8 && n <= 256);
  assert_int_equal(nh_gc_pauses(p, 3), 3);
  n = nh_gc_pauses(p, 8);
  for (size_t i = 0; i < n; i++)
    sum += p[i];
  assert_true(sum > 0 && sum <= s.pause_total_ns - s0.pause_total_ns);
  nh_gc();
  uint64_t q[8];
  assert_int_equal(nh_gc_pauses(q, 8), 8);
  size_t moved = 2;   /* by the new cycle's pauses: two, or more if termination was retried */
  while (moved < 8 && memcmp(q, p + moved, (8 - moved) * sizeof *q) != 0)
    moved++;
  assert_true(moved < 8);
}

/* A concurrent cycle raises its events in order: two stops or more (setup, then termination
 * until it finds no new work), the mark starting in the first and ending in the last. */
static void test_gc_events(void **state) {
  (void)state;
  assert_true(check_gc_events() >= 2);
}

/* Finalizable objects left unreachable are all finalized: none is kept by a stale copy of its
 * finalizer record. The record table's growth used to copy through the vector registers, whose
 * last contents (18 records of the first 64) the allocating thread kept, and a stopped thread's
 * vector registers are scanned: those 18 objects were never finalized while the thread lived. */
static atomic_int finalized_count;
static void count_finalized(void *obj, void *arg) {
  (void)obj;
  (void)arg;
  atomic_fetch_add(&finalized_count, 1);
}

static nh_noinline void make_finalizable(int n) {
  for (int i = 0; i < n; i++) {
    uintptr_t *x = nh_alloc(64);
    assert_non_null(x);
    x[1] = (uintptr_t)i;
    assert_int_equal(nh_set_finalizer(x, count_finalized, NULL), 0);
  }
}

static nh_noinline void clear_below(void) {
  volatile char junk[32 << 10];
  memset((char *)junk, 0, sizeof junk);
}

static void test_finalizer_records_leave_no_copies(void **state) {
  (void)state;
  enum { N = 200 };
  atomic_store(&finalized_count, 0);
  make_finalizable(N);
  clear_below();
  for (int i = 0; i < 200 && atomic_load(&finalized_count) < N; i++) {
    nh_gc();
    usleep(5000);
  }
  print_message("finalized %d of %d\n", atomic_load(&finalized_count), N);
  /* A register may hold the last object or two; the stale copy held 18. */
  assert_true(atomic_load(&finalized_count) >= N - 2);
}

/* A program that has not promised the barrier (barrier = none), or a process without
 * restartable sequences, gets stop-the-world marking, never concurrent marking it cannot
 * make safe. */
/* The Cpus_allowed_list line of a /proc status file. */
static void allowed_list(const char *status, char *out, size_t n) {
  char line[256];
  FILE *f = fopen(status, "r");
  assert_non_null(f);
  out[0] = 0;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "Cpus_allowed_list:", 18) == 0) {
      line[strcspn(line, "\n")] = 0;
      snprintf(out, n, "%s", line + 18 + strspn(line + 18, " \t"));
    }
  fclose(f);
}

/* The CPUs each of this process's threads named name may run on ("0-1"), joined by ";". */
static void affinity_of(const char *name, char *out, size_t n) {
  out[0] = 0;
  DIR *d = opendir("/proc/self/task");
  assert_non_null(d);
  for (struct dirent *e; (e = readdir(d));) {
    if (e->d_name[0] == '.')
      continue;
    char path[300], comm[32] = "", cpus[64];
    snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
    FILE *f = fopen(path, "r");
    if (!f)
      continue;
    if (!fgets(comm, sizeof comm, f))
      comm[0] = 0;
    fclose(f);
    comm[strcspn(comm, "\n")] = 0;
    if (strcmp(comm, name) != 0)
      continue;
    snprintf(path, sizeof path, "/proc/self/task/%s/status", e->d_name);
    allowed_list(path, cpus, sizeof cpus);
    size_t len = strlen(out);
    snprintf(out + len, n - len, "%s%s", len ? ";" : "", cpus);
  }
  closedir(d);
}

/* mark_cpus places the collector thread and the mark workers; a set with no usable CPU is
 * said and ignored. */
static void test_mark_cpus_place_the_markers(void **state) {
  (void)state;
  nh_options o;
  concurrent_options(&o);
  o.mark_workers = 3;
  o.mark_cpus = "0";
  assert_int_equal(nh_init(&o), 0);
  if (stats().gc_mode != NH_GC_CONCURRENT)
    skip();
  char gc[64], mark[128];
  affinity_of("nheap-gc", gc, sizeof gc);
  affinity_of("nheap-mark", mark, sizeof mark);
  assert_string_equal(gc, "0");
  assert_string_equal(mark, "0;0");
  nh_gc();   /* and marking still works there */
  nh_shutdown();

  o.mark_cpus = "1000";
  assert_int_equal(nh_init(&o), 0);
  assert_true(errors_contain("mark_cpus = 1000 names no CPU this process may run on"));
  char self[64];
  allowed_list("/proc/thread-self/status", self, sizeof self);
  affinity_of("nheap-gc", gc, sizeof gc);
  assert_string_equal(gc, self);
  nh_shutdown();
}

/* A list of n nodes allocated by a thread pinned to cpu (so in that CPU's node's memory). */
typedef struct { int cpu; long n; node *head; } pinned_list;

static void *build_pinned(void *arg) {
  pinned_list *l = arg;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(l->cpu, &set);
  assert_int_equal(sched_setaffinity(0, sizeof set, &set), 0);
  for (long i = 0; i < l->n; i++) {
    node *x = new_node((uintptr_t)i);
    STORE((void **)&x->kid[0], l->head);
    l->head = x;
  }
  return NULL;
}

static pinned_list numa_lists[2];   /* globals: roots */

/* numa = fake:2 on 2 CPUs: each node has its markers, pinned to its CPU (Go's rule per node:
 * a fractional marker each; node 0's is the collector thread); grey objects queue on their
 * memory's node, so marking a heap built half on each node scans mostly local memory. */
static void test_numa_markers_per_node(void **state) {
  (void)state;
  if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
    skip();
  nh_options o;
  concurrent_options(&o);
  o.numa = "fake:2";
  assert_int_equal(nh_init(&o), 0);
  if (stats().gc_mode != NH_GC_CONCURRENT)
    skip();
  char gc[64], mark[64], any[64];
  affinity_of("nheap-gc", gc, sizeof gc);
  affinity_of("nheap-mark-n1", mark, sizeof mark);
  affinity_of("nheap-mark", any, sizeof any);
  assert_string_equal(gc, "0");
  assert_string_equal(mark, "1");
  assert_string_equal(any, "");   /* every worker is named by its node */
  nh_set_gc_percent(-1);
  for (int i = 0; i < 2; i++) {
    numa_lists[i] = (pinned_list){.cpu = i, .n = 300000};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, build_pinned, &numa_lists[i]), 0);
    pthread_join(t, NULL);
  }
  nh_stats_t before = stats();
  for (int i = 0; i < 3; i++)
    nh_gc();
  nh_stats_t s = stats();
  uint64_t local = s.gc_scan_local_bytes - before.gc_scan_local_bytes;
  uint64_t remote = s.gc_scan_remote_bytes - before.gc_scan_remote_bytes;
  print_message("3 cycles over 2 x 300k nodes: %.1f MiB scanned on the marker's node, %.1f MiB on the "
                "other, %llu steals\n", local / 1048576.0, remote / 1048576.0,
                (unsigned long long)(s.gc_mark_steals - before.gc_mark_steals));
  assert_true(local + remote >= 3 * 2 * 300000 * sizeof(node));
  assert_true(local > remote);
  for (int i = 0; i < 2; i++) {   /* and nothing was lost */
    long k = 0;
    for (node *x = numa_lists[i].head; x; x = x->kid[0], k++)
      check_node(x);
    assert_int_equal(k, numa_lists[i].n);
  }
  nh_shutdown();
}

/* Go's 25% rule, fractional marker included (gcControllerState.startCycle's table). */
static void test_marker_layout(void **state) {
  (void)state;
  static const struct { long ncpus; int64_t configured; long dedicated; uint32_t permille; } cases[] = {
    {1, 0, 0, 250}, {2, 0, 0, 500}, {3, 0, 0, 750}, {4, 0, 1, 0},    {5, 0, 1, 0},
    {6, 0, 1, 500}, {7, 0, 2, 0},   {8, 0, 2, 0},   {10, 0, 3, 0}, {16, 0, 4, 0},
    {64, 0, 16, 0}, {2, 3, 3, 0},   {64, 1, 1, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    long dedicated;
    uint32_t permille;
    marker_layout(cases[i].ncpus, cases[i].configured, &dedicated, &permille);
    assert_int_equal(dedicated, cases[i].dedicated);
    assert_int_equal(permille, cases[i].permille);
  }
}

/* Where the markers go: per node on several nodes (Go's rule over each node's CPUs, or
 * mark_workers dealt out), cut by mark_cpus; one unpinned set on one node. */
static void test_marker_plan(void **state) {
  (void)state;
  nh_topology_t t;
  memset(&t, 0, sizeof t);
  t.ncpus = 8;
  t.nnodes = 2;
  for (int c = 0; c < 8; c++)
    t.cpu_node[c] = (int16_t)(c / 4);   /* node 0: CPUs 0-3, node 1: 4-7 */
  cpu_set_t all, none, some;
  CPU_ZERO(&all);
  CPU_ZERO(&none);
  CPU_ZERO(&some);
  for (int c = 0; c < 8; c++)
    CPU_SET(c, &all);
  CPU_SET(1, &some);
  CPU_SET(2, &some);
  static nh_marker_plan p;
  marker_plan(&t, &all, &none, 0, &p);   /* 4 CPUs a node: one dedicated marker each, pinned */
  assert_int_equal(p.nnodes, 2);
  assert_true(p.pin);
  assert_int_equal(p.dedicated[0], 1);
  assert_int_equal(p.dedicated[1], 1);
  assert_int_equal(p.permille[0] + p.permille[1], 0);
  assert_int_equal(CPU_COUNT(&p.cpus[1]), 4);
  assert_true(CPU_ISSET(4, &p.cpus[1]) && !CPU_ISSET(3, &p.cpus[1]));
  marker_plan(&t, &all, &none, 3, &p);   /* mark_workers = 3: dealt out 2 + 1 */
  assert_int_equal(p.dedicated[0], 2);
  assert_int_equal(p.dedicated[1], 1);
  marker_plan(&t, &all, &some, 0, &p);   /* mark_cpus = 1,2: node 1 keeps no CPU, no marker */
  assert_int_equal(CPU_COUNT(&p.cpus[0]), 2);
  assert_int_equal(CPU_COUNT(&p.cpus[1]), 0);
  assert_int_equal(p.dedicated[0], 0);
  assert_int_equal(p.permille[0], 500);
  assert_int_equal(p.dedicated[1] + p.permille[1], 0);
  marker_plan(&t, &some, &all, 0, &p);   /* taskset 1,2: the same */
  assert_int_equal(p.permille[0], 500);
  assert_false(p.mark_cpus_ignored);
  CPU_ZERO(&some);
  CPU_SET(100, &some);
  marker_plan(&t, &all, &some, 0, &p);   /* a set with no usable CPU: ignored */
  assert_true(p.mark_cpus_ignored);
  assert_int_equal(p.dedicated[0] + p.dedicated[1], 2);
  t.nnodes = 1;
  for (int c = 0; c < 8; c++)
    t.cpu_node[c] = 0;
  marker_plan(&t, &all, &none, 0, &p);   /* one node: Go's rule over all 8, not pinned */
  assert_int_equal(p.nnodes, 1);
  assert_false(p.pin);
  assert_int_equal(p.dedicated[0], 2);
}

static void test_barrier_none_selects_stw(void **state) {
  (void)state;
  nh_shutdown();
  nh_options o;
  nh_options_init(&o);
  o.gc = NH_GC_CONCURRENT;
  o.barrier = NH_BARRIER_NONE;
  o.hugepages = NH_HUGEPAGES_NONE;
  o.debug = "uffd=0";   /* no kernel tracking: plain stores get stop-the-world marking */
  assert_int_equal(nh_init(&o), 0);
  assert_int_equal(stats().gc_mode, NH_GC_STW);
  void **p = nh_alloc(64);
  p[0] = nh_alloc(32);   /* a plain store is fine here */
  nh_gc();
  assert_non_null(nh_base(p[0]));
  /* Without restartable sequences (here: turned off) nh_store cannot be made atomic with the
   * stop: concurrent is refused the same way. */
  nh_shutdown();
  o.barrier = NH_BARRIER_STORE;
  o.debug = "rseq=0,uffd=0";
  assert_int_equal(nh_init(&o), 0);
  assert_int_equal(stats().gc_mode, NH_GC_STW);
}

/* ---------------------------------------------------------------------------------------------
 * Stopping the world (thread.c).
 * ------------------------------------------------------------------------------------------- */

/* A thread's blocked-signal mask as the kernel sees it (SigBlk in /proc), or ~0 if unreadable. */
static uint64_t sigblk_of(pid_t tid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/self/task/%d/status", (int)tid);
  FILE *f = fopen(path, "r");
  uint64_t mask = ~(uint64_t)0;
  if (!f)
    return mask;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "SigBlk: %" SCNx64, &mask) == 1)
      break;
  fclose(f);
  return mask;
}

#define SIGBIT(sig) ((uint64_t)1 << ((sig) - 1))

static atomic_bool world_held;        /* the test holds the world stopped */
static atomic_int usr1_runs, usr1_runs_stopped;
static void usr1_handler(int sig) {
  (void)sig;
  if (atomic_load(&world_held))
    atomic_fetch_add(&usr1_runs_stopped, 1);
  atomic_fetch_add(&usr1_runs, 1);
}

static atomic_int parked_tid, bystander_tid;
static atomic_bool bystander_quit;
static sigset_t parked_mask_before, parked_mask_after;

/* Enters a no-stop region and stays until a stop request is pending, then leaves it: parked by
 * region_stop_pending, not by the signal handler. */
static void *parks_in_region_exit(void *arg) {
  (void)arg;
  assert_int_equal(nh_thread_attach(), 0);
  pthread_sigmask(SIG_BLOCK, NULL, &parked_mask_before);
  region_enter();
  atomic_store(&parked_tid, (int)gettid());
  while (!nh_self->stop_pending)
    sched_yield();
  region_exit();   /* stopped in here until the world restarts */
  pthread_sigmask(SIG_BLOCK, NULL, &parked_mask_after);
  return NULL;
}

/* Attached and idle: parked by the signal handler, for the mask to compare with. */
static void *bystander(void *arg) {
  (void)arg;
  assert_int_equal(nh_thread_attach(), 0);
  atomic_store(&bystander_tid, (int)gettid());
  while (!atomic_load(&bystander_quit))
    usleep(1000);
  return NULL;
}

/* Every way of being stopped blocks the same signals: a thread parked on leaving a no-stop
 * region has the handler's mask, so a program's signal sent to it while the world is stopped
 * runs its handler only after the restart (it used to run at once, on a "stopped" thread that
 * could allocate and store pointers mid-mark); its own mask comes back afterwards. */
static void test_region_stop_blocks_signals(void **state) {
  (void)state;
  struct sigaction sa = {.sa_handler = usr1_handler}, old_sa;
  sigemptyset(&sa.sa_mask);
  assert_int_equal(sigaction(SIGUSR1, &sa, &old_sa), 0);
  atomic_store(&usr1_runs, 0);
  atomic_store(&usr1_runs_stopped, 0);
  atomic_store(&parked_tid, 0);
  atomic_store(&bystander_tid, 0);
  atomic_store(&bystander_quit, false);
  pthread_t parked, by;
  assert_int_equal(pthread_create(&by, NULL, bystander, NULL), 0);
  while (!atomic_load(&bystander_tid))
    sched_yield();
  assert_int_equal(pthread_create(&parked, NULL, parks_in_region_exit, NULL), 0);
  while (!atomic_load(&parked_tid))
    sched_yield();

  nh_threads_t *ts = &nh_rt.gc.threads;
  world_stop(ts);   /* returns once both have acked: the parked one from region_exit */
  atomic_store(&world_held, true);
  uint64_t region_mask = sigblk_of(atomic_load(&parked_tid));
  uint64_t handler_mask = sigblk_of(atomic_load(&bystander_tid));
  pthread_kill(parked, SIGUSR1);
  for (int i = 0; i < 200 && !atomic_load(&usr1_runs); i++)
    usleep(1000);   /* long enough for a handler that is not held back to run */
  int runs_while_stopped = atomic_load(&usr1_runs);
  atomic_store(&world_held, false);
  world_start(ts);
  pthread_join(parked, NULL);
  atomic_store(&bystander_quit, true);
  pthread_join(by, NULL);
  sigaction(SIGUSR1, &old_sa, NULL);

  print_message("while stopped: SigBlk %#" PRIx64 " (parked in region_exit), %#" PRIx64
                " (parked in the handler); SIGUSR1 handler runs %d\n", region_mask, handler_mask, runs_while_stopped);
  assert_true(handler_mask & SIGBIT(SIGUSR1));
  assert_false(handler_mask & SIGBIT(SIGSEGV));
  assert_true(region_mask == handler_mask);
  assert_int_equal(runs_while_stopped, 0);
  assert_int_equal(atomic_load(&usr1_runs_stopped), 0);
  assert_int_equal(atomic_load(&usr1_runs), 1);   /* delivered once the mask came back */
  assert_memory_equal(&parked_mask_before, &parked_mask_after, sizeof(sigset_t));
  assert_int_equal(errors.count, 0);
}

static atomic_int gone_tid;
static void *exits_without_detaching(void *arg) {
  (void)arg;
  if (nh_thread_attach() != 0)
    syscall(SYS_exit, 1);
  atomic_store(&gone_tid, (int)gettid());
  syscall(SYS_exit, 0);   /* no key destructor: it stays attached */
  return NULL;
}

/* The forked child's part: a thread on a stack of our own attaches and exits without
 * detaching; the part of the stack it never reached is unmapped, as a freed stack would be.
 * Collections must neither scan that stack nor wait for the thread; it is reported once. */
/* A handler that collects: the gone thread is reported by the collector thread (concurrent
 * mode), where nh_gc must not wait for the cycle that thread is running. */
static atomic_int gc_handler_runs;
static void collecting_handler(int code, const char *msg, void *arg) {
  (void)code, (void)arg;
  if (strstr(msg, "gone without detaching"))
    atomic_fetch_add(&gc_handler_runs, 1);
  nh_gc();
}

static int gone_thread_child(bool collecting_handler_on) {
  size_t size = 1 << 20;
  char *stack = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (stack == MAP_FAILED)
    return 2;
  pthread_attr_t a;
  pthread_t th;
  pthread_attr_init(&a);
  pthread_attr_setstack(&a, stack, size);
  if (pthread_create(&th, &a, exits_without_detaching, NULL) != 0)
    return 3;
  while (!atomic_load(&gone_tid))
    sched_yield();
  char path[64];
  snprintf(path, sizeof path, "/proc/self/task/%d", atomic_load(&gone_tid));
  while (access(path, F_OK) == 0)
    usleep(1000);
  munmap(stack, size / 2);   /* its TCB and frames stay in the top half */
  errors.count = 0;
  errors.all[0] = 0;
  if (collecting_handler_on) {
    alarm(120);   /* a deadlock is the failure: SIGALRM ends the child */
    nh_set_error_handler(collecting_handler, NULL);
  }
  nh_gc();   /* scanning the gone thread's stack from its bottom faulted here */
  nh_gc();
  if (collecting_handler_on)
    return atomic_load(&gc_handler_runs) == 1 ? 0 : 5;
  if (errors.count != 1 || !errors_contain("gone without detaching") || !errors_contain("not scanned"))
    return 4;
  return 0;
}

/* A thread gone without detaching (pthread_kill fails) is reported as not scanned, and is not:
 * its stack may be unmapped. Its record is dropped, so the next cycle says nothing. */
static void test_gone_thread_not_scanned(void **state) {
  (void)state;
  for (int handler = 0; handler < 2; handler++) {   /* then with a handler that collects */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
      signal(SIGSEGV, SIG_DFL);   /* not cmocka's: a fault ends the child and says so */
      _exit(gone_thread_child(handler));
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (WIFSIGNALED(st))
      fail_msg("the child (handler %d) died of signal %d", handler, WTERMSIG(st));
    assert_int_equal(WEXITSTATUS(st), 0);
  }
}

/* nh_do_blocking: a thread blocked in the kernel is counted as stopped. Its fn blocks the stop
 * signal and waits on a pipe, so a stop that signalled it would wait for ever (world_stop warns
 * after a second and goes on waiting; the test would time out). Cycles run meanwhile, and the
 * tree only its stack holds survives them. */
static int block_pipe[2];

static void *wait_on_pipe(void *arg) {
  sigset_t pwr, old;
  sigemptyset(&pwr);
  sigaddset(&pwr, SIGPWR);
  pthread_sigmask(SIG_BLOCK, &pwr, &old);
  char c;
  while (read(block_pipe[0], &c, 1) < 0 && errno == EINTR)
    ;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return arg;
}

static atomic_int blocker_in;
static void *blocker(void *arg) {
  (void)arg;
  node *volatile held = grow(6, 77);
  atomic_store(&blocker_in, 1);
  void *r = nh_do_blocking(wait_on_pipe, held);
  assert_ptr_equal(r, held);
  return (void *)(uintptr_t)check_tree(held, 0);
}

static bool some_thread_blocking(void) {
  bool found = false;
  nh_mutex_lock(&nh_rt.gc.threads.lock);
  for (nh_thread_t *t = nh_rt.gc.threads.first; t; t = t->next)
    found |= __atomic_load_n(&t->blocking, __ATOMIC_SEQ_CST) != 0;
  nh_mutex_unlock(&nh_rt.gc.threads.lock);
  return found;
}

static void test_blocking_thread_not_waited_for(void **state) {
  (void)state;
  assert_int_equal(pipe(block_pipe), 0);
  atomic_store(&blocker_in, 0);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, blocker, NULL), 0);
  while (!atomic_load(&blocker_in) || !some_thread_blocking())
    sched_yield();
  uint64_t cycles = stats().gc_cycles;
  for (int i = 0; i < 3; i++) {
    for (int k = 0; k < 200; k++)
      (void)grow(4, (uintptr_t)k);   /* garbage, so that the cycles free something */
    nh_gc();
  }
  assert_true(stats().gc_cycles >= cycles + 3);
  assert_int_equal(write(block_pipe[1], "x", 1), 1);
  void *n;
  assert_int_equal(pthread_join(t, &n), 0);
  assert_int_equal((uintptr_t)n, 127);   /* the tree its stack held, intact */
  close(block_pipe[0]);
  close(block_pipe[1]);
  assert_int_equal(errors.count, 0);
}

/* Threads that go in and out of nh_do_blocking between mutations while cycles run back to back:
 * the exits race the stops (a stop that saw the thread blocking must find it unchanged). */
static void *nap(void *arg) {
  struct timespec d = {0, 20000};
  nanosleep(&d, NULL);
  return arg;
}

static void *blocking_mutator(void *arg) {
  uint64_t rng = (uintptr_t)arg * 0x9e3779b97f4a7c15u;
  node *volatile root = grow(7, (uintptr_t)arg << 16);
  for (int round = 0; round < 300; round++) {
    for (int step = 0; step < 20; step++) {
      node **slot = slot_at(root, &rng, 1 + (int)(rng >> 40) % 6);
      if (slot)
        STORE((void **)slot, grow((int)(rng >> 32) % 3, rng & 0xffff));
    }
    node *seen = nh_do_blocking(nap, root);
    if (seen != root)
      fail_msg("nh_do_blocking returned %p, not its argument %p", (void *)seen, (void *)root);
    (void)check_tree(root, 0);
  }
  return NULL;
}

static void test_blocking_races_stops(void **state) {
  (void)state;
  run_with_cycles(blocking_mutator, 3, 1);
  assert_int_equal(errors.count, 0);
  /* Misuse is reported and fn still runs: no function; not counted stopped when nested. */
  assert_null(nh_do_blocking(NULL, NULL));
  assert_true(errors_contain("nh_do_blocking: no function"));
}

int main(int argc, char **argv) {
  if (argc > 1)
    return hide_main(argv[1]);
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_mutators_under_concurrent_marking, setup, teardown),
    cmocka_unit_test_setup_teardown(test_births_moves_and_weak_during_marks, setup, teardown),
    cmocka_unit_test_setup_teardown(test_checkmark_catches_missing_barrier, setup, teardown),
    cmocka_unit_test_setup_teardown(test_checkmark_tells_false_pointers, setup, teardown),
    cmocka_unit_test_setup_teardown(test_fork_during_cycles, setup, teardown),
    cmocka_unit_test_setup_teardown(test_pauses_recorded, setup, teardown),
    cmocka_unit_test_setup_teardown(test_gc_events, setup, teardown),
    cmocka_unit_test_setup_teardown(test_finalizer_records_leave_no_copies, setup, teardown),
    cmocka_unit_test_setup_teardown(test_barrier_blocks_reused, setup, teardown),
    cmocka_unit_test_setup_teardown(test_barrier_none_selects_stw, setup, teardown),
    cmocka_unit_test_setup_teardown(test_nobarrier_plain_store_is_safe, setup, teardown),
    cmocka_unit_test_setup_teardown(test_region_stop_blocks_signals, setup, teardown),
    cmocka_unit_test_setup_teardown(test_gone_thread_not_scanned, setup, teardown),
    cmocka_unit_test_setup_teardown(test_blocking_thread_not_waited_for, setup, teardown),
    cmocka_unit_test_setup_teardown(test_blocking_races_stops, setup, teardown),
    cmocka_unit_test_setup_teardown(test_nobarrier_falls_back, fresh_heap, shut_heap),
    cmocka_unit_test_setup_teardown(test_nobarrier_tracking_lost, fresh_heap, shut_heap),
    cmocka_unit_test_setup_teardown(test_nobarrier_free_pages_unprotected, fresh_heap, shut_heap),
    cmocka_unit_test_setup_teardown(test_marker_layout, fresh_heap, shut_heap),
    cmocka_unit_test_setup_teardown(test_marker_plan, fresh_heap, shut_heap),
    cmocka_unit_test_setup_teardown(test_mark_cpus_place_the_markers, fresh_heap, shut_heap),
    cmocka_unit_test_setup_teardown(test_numa_markers_per_node, fresh_heap, shut_heap),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
