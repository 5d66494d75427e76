/*
 * gcabi_program.c — a bdwgc program, built against Debian's <gc.h> and linked to Debian's
 * libgc.so.1, that checks what bdwgc's interface promises: test_gcabi.sh runs it on bdwgc
 * itself (so the checks are bdwgc's behaviour, not nheap's) and then, unchanged, on
 * libnheap_gc.so.1 through LD_LIBRARY_PATH in each collector mode, every mark re-checked.
 *
 * NH_GCABI_EXPECT=nheap|bdwgc says which should be running (nheap's nh_init is visible or not).
 * Exit 0 when every check held; else each failed check is printed and it exits 1.
 */
#define GC_THREADS 1
#include <gc.h>
#include <gc/gc_mark.h>
#include <gc/gc_typed.h>

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures;
#define CHECK(c)                                                              \
  do {                                                                        \
    if (!(c)) {                                                               \
      fprintf(stderr, "gcabi_program:%d: failed: %s\n", __LINE__, #c);        \
      failures++;                                                             \
    }                                                                         \
  } while (0)

typedef struct node {
  struct node *next;
  long value;
  char pad[48];
} node;

static node *build(int n, long base) {
  node *h = NULL;
  for (int i = 0; i < n; i++) {
    node *x = GC_MALLOC(sizeof *x);
    if (!x)
      return NULL;
    x->next = h;
    x->value = base + i;
    h = x;
  }
  return h;
}

/* The list build(n, base) made, intact. */
static int intact(const node *h, int n, long base) {
  for (int i = n - 1; i >= 0; i--, h = h->next)
    if (!h || h->value != base + i)
      return 0;
  return h == NULL;
}

/* Garbage in many small objects and a few large ones, with collections between. */
static void churn(int rounds) {
  for (int r = 0; r < rounds; r++) {
    for (int i = 0; i < 20000; i++) {
      void *volatile p = GC_MALLOC(16 + (i % 200));
      (void)p;
    }
    void *volatile big = GC_MALLOC_ATOMIC(200000);
    (void)big;
    if (r % 4 == 3)
      GC_gcollect();
  }
}

/* Stale words below the live frames would keep dead objects reachable to a conservative scan. */
static __attribute__((noinline)) void clear_stack(void) {
  volatile char junk[64 << 10];
  memset((char *)junk, 0, sizeof junk);
}

static node *global_list;   /* a root in the data segment */

static void check_allocation(void) {
  char *p = GC_MALLOC(100);
  CHECK(p != NULL);
  int zero = 1;
  for (int i = 0; i < 100; i++)
    zero &= p[i] == 0;
  CHECK(zero);
  CHECK(GC_size(p) >= 100);
  CHECK(GC_base(p + 50) == p);
  CHECK(GC_is_heap_ptr(p + 99));
  int local;
  CHECK(GC_base(&local) == NULL);
  char *s = GC_STRDUP("hello, collector");
  CHECK(s && strcmp(s, "hello, collector") == 0);
  long *a = GC_MALLOC_ATOMIC(1000 * sizeof *a);
  CHECK(a && GC_size(a) >= 1000 * sizeof *a);
  for (int i = 0; i < 1000; i++)
    a[i] = i;
  a = GC_REALLOC(a, 100000 * sizeof *a);
  int kept = a != NULL;
  for (int i = 0; kept && i < 1000; i++)
    kept = a[i] == i;
  CHECK(kept);
  void *aligned = NULL;
  CHECK(GC_posix_memalign(&aligned, 256, 1000) == 0 && ((uintptr_t)aligned & 255) == 0);
  CHECK(GC_REALLOC(p, 0) == NULL);   /* realloc to 0 frees */
  GC_FREE(s);
  GC_FREE(NULL);
}

/* Lists kept only by the stack, a global, an uncollectable object reached from malloc memory
 * (which no collector scans), and a registered root range, through collections and garbage. */
static void check_roots(void) {
  node *on_stack = build(20000, 1000000);
  global_list = build(20000, 2000000);
  node **unc = GC_MALLOC_UNCOLLECTABLE(sizeof *unc);
  CHECK(unc != NULL);
  *unc = build(20000, 3000000);
  node ***box = malloc(sizeof *box);   /* the only reference to unc, hidden from the collector */
  *box = unc;
  unc = NULL;
  node **range = malloc(4 * sizeof *range);
  range[0] = build(20000, 4000000);
  GC_add_roots(range, range + 4);
  clear_stack();
  churn(24);
  CHECK(intact(on_stack, 20000, 1000000));
  CHECK(intact(global_list, 20000, 2000000));
  CHECK(intact(**box, 20000, 3000000));
  CHECK(intact(range[0], 20000, 4000000));
  node **grown = GC_REALLOC(*box, 64 * sizeof *grown);   /* stays uncollectable */
  CHECK(grown != NULL);
  *box = grown;
  churn(8);
  CHECK(intact(**box, 20000, 3000000));
  GC_FREE(*box);
  free(box);
  GC_remove_roots(range, range + 4);
  free(range);
  global_list = NULL;
}

static atomic_int finalized, finalized_live;
static void on_finalize(void *obj, void *cd) {
  if (((node *)obj)->value == (long)(intptr_t)cd)
    atomic_fetch_add(&finalized, 1);
}
static void on_finalize_live(void *obj, void *cd) {
  (void)obj;
  (void)cd;
  atomic_fetch_add(&finalized_live, 1);
}

static __attribute__((noinline)) void make_finalizable(int n) {
  for (int i = 0; i < n; i++) {
    node *x = GC_MALLOC(sizeof *x);
    x->value = 7000 + i;
    GC_REGISTER_FINALIZER(x, on_finalize, (void *)(intptr_t)(7000 + i), NULL, NULL);
  }
}

static void check_finalizers(void) {
  enum { N = 200 };
  global_list = GC_MALLOC(sizeof *global_list);   /* reachable: never finalized */
  GC_finalization_proc old = (GC_finalization_proc)1;
  GC_REGISTER_FINALIZER(global_list, on_finalize_live, NULL, &old, NULL);
  CHECK(old == NULL);
  make_finalizable(N);
  clear_stack();
  /* bdwgc runs finalizers in the collecting thread, nheap on its finalizer thread: wait. */
  for (int i = 0; i < 100 && atomic_load(&finalized) < N; i++) {
    GC_gcollect();
    usleep(10000);
  }
  /* A conservative scan may keep a few through stale words in registers; most must go. */
  if (getenv("NH_GCABI_VERBOSE"))
    fprintf(stderr, "finalized %d of %d\n", atomic_load(&finalized), N);
  CHECK(atomic_load(&finalized) >= N / 2);
  CHECK(atomic_load(&finalized) <= N);
  CHECK(atomic_load(&finalized_live) == 0);
  CHECK(global_list != NULL);
  global_list = NULL;
}


/* Collects until done() holds, at most 100 times (nheap runs finalizers on its own thread). */
static int collect_until(int (*done)(void)) {
  for (int i = 0; i < 100; i++) {
    if (done())
      return 1;
    clear_stack();
    GC_gcollect();
    usleep(5000);
  }
  return done();
}

/* Disappearing links: the link lives in atomic memory (never scanned), so only the registration
 * refers to the object. */
static void **short_link, **long_link;
static void *read_link(void *link) { return *(void **)link; }
static void *link_value(void **link) { return GC_call_with_alloc_lock(read_link, link); }
static int short_cleared(void) { return link_value(short_link) == NULL; }
static int long_cleared(void) { return link_value(long_link) == NULL; }

static node *resurrected;
static atomic_int resurrections;
static void resurrect(void *obj, void *cd) {
  (void)cd;
  resurrected = obj;
  atomic_fetch_add(&resurrections, 1);
}
static int was_resurrected(void) { return atomic_load(&resurrections) == 1; }

static __attribute__((noinline)) void make_linked(void) {
  node *x = GC_MALLOC(sizeof *x);
  x->value = 4242;
  *short_link = x;
  *long_link = x;
  CHECK(GC_general_register_disappearing_link(short_link, x) == GC_SUCCESS);
  CHECK(GC_general_register_disappearing_link(short_link, x) == GC_DUPLICATE);
  CHECK(GC_register_long_link(long_link, x) == GC_SUCCESS);
  GC_REGISTER_FINALIZER(x, resurrect, NULL, NULL, NULL);
}

static void check_links(void) {
  short_link = GC_MALLOC_ATOMIC(sizeof *short_link);
  long_link = GC_MALLOC_ATOMIC(sizeof *long_link);
  global_list = (node *)short_link;   /* the link cells themselves stay */
  node *keep = (node *)long_link;
  make_linked();
  /* Unreachable: the short link is cleared before finalization, the finalizer brings the
   * object back, and the long link stays, since the object did not stay dead. */
  CHECK(collect_until(was_resurrected));
  CHECK(collect_until(short_cleared));
  CHECK(resurrected && resurrected->value == 4242);
  CHECK(link_value(long_link) == resurrected);
  resurrected = NULL;   /* dead for good now (its finalizer ran): the long link goes */
  CHECK(collect_until(long_cleared));

  void **a = GC_MALLOC_ATOMIC(3 * sizeof *a), **b = a + 1, **c = a + 2;
  node *target = GC_MALLOC(sizeof *target);
  CHECK(GC_unregister_disappearing_link(a) == 0);
  CHECK(GC_move_disappearing_link(a, b) == GC_NOT_FOUND);
  CHECK(GC_general_register_disappearing_link(a, target) == GC_SUCCESS);
  CHECK(GC_move_disappearing_link(a, b) == GC_SUCCESS);
  CHECK(GC_move_disappearing_link(a, c) == GC_NOT_FOUND);
  CHECK(GC_move_disappearing_link(b, b) == GC_SUCCESS);
  CHECK(GC_general_register_disappearing_link(c, target) == GC_SUCCESS);
  CHECK(GC_move_disappearing_link(b, c) == GC_DUPLICATE);
  CHECK(GC_unregister_disappearing_link(b) == 1 && GC_unregister_disappearing_link(b) == 0);
  CHECK(GC_unregister_disappearing_link(c) == 1);
  /* Thousands of links, most to objects that die: every dead one cleared, every live one kept. */
  enum { L = 5000 };
  void **cells = GC_MALLOC_ATOMIC(L * sizeof *cells);
  node **live = GC_MALLOC(L / 10 * sizeof *live);
  for (int i = 0; i < L; i++) {
    node *x = GC_MALLOC(sizeof *x);
    x->value = i;
    cells[i] = x;
    if (i % 10 == 0)
      live[i / 10] = x;
    CHECK(GC_general_register_disappearing_link(&cells[i], x) == GC_SUCCESS);
  }
  clear_stack();
  for (int r = 0; r < 3; r++)
    GC_gcollect();
  int kept = 0, cleared = 0, wrong = 0;
  for (int i = 0; i < L; i++) {
    node *x = link_value(&cells[i]);
    kept += x != NULL;
    cleared += x == NULL;
    wrong += (i % 10 == 0 && x != live[i / 10]) || (x && x->value != i);
  }
  if (getenv("NH_GCABI_VERBOSE"))
    fprintf(stderr, "links: %d kept, %d cleared, %d wrong\n", kept, cleared, wrong);
  CHECK(wrong == 0);
  CHECK(kept >= L / 10 && cleared >= L / 2);   /* a conservative scan may keep a few more */
  for (int i = 0; i < L; i++)
    GC_unregister_disappearing_link(&cells[i]);
  global_list = NULL;
  (void)keep;
}

/* Finalizer orders. A -> B, both finalizable and unreachable: in bdwgc's order B waits for A;
 * with no order both go, and A's finalizer still reads B intact. A self-pointing object is
 * finalized when registered ignoring itself. */
static atomic_int seq, seq_a, seq_b, b_intact, self_done;
static void fin_a(void *obj, void *cd) {
  (void)cd;
  atomic_store(&seq_a, atomic_fetch_add(&seq, 1) + 1);
  node *b = ((node *)obj)->next;
  atomic_store(&b_intact, b && b->value == 2);
}
static void fin_b(void *obj, void *cd) {
  (void)obj;
  (void)cd;
  atomic_store(&seq_b, atomic_fetch_add(&seq, 1) + 1);
}
static void fin_self(void *obj, void *cd) {
  (void)cd;
  if (((node *)obj)->next == obj)
    atomic_fetch_add(&self_done, 1);
}
static int both_done(void) { return atomic_load(&seq_a) && atomic_load(&seq_b); }
enum { SELVES = 20 };
static int self_finalized(void) { return atomic_load(&self_done) >= SELVES / 2; }

static __attribute__((noinline)) void make_pair(int no_order) {
  node *a = GC_MALLOC(sizeof *a), *b = GC_MALLOC(sizeof *b);
  a->value = 1;
  b->value = 2;
  a->next = b;
  if (no_order) {
    GC_REGISTER_FINALIZER_NO_ORDER(a, fin_a, NULL, NULL, NULL);
    GC_REGISTER_FINALIZER_NO_ORDER(b, fin_b, NULL, NULL, NULL);
  } else {
    GC_REGISTER_FINALIZER(a, fin_a, NULL, NULL, NULL);
    GC_REGISTER_FINALIZER(b, fin_b, NULL, NULL, NULL);
  }
}

static __attribute__((noinline)) void make_selves(void) {
  for (int i = 0; i < SELVES; i++) {
    node *x = GC_MALLOC(sizeof *x);
    x->next = x;
    GC_REGISTER_FINALIZER_IGNORE_SELF(x, fin_self, NULL, NULL, NULL);
  }
}

static void check_finalizer_orders(void) {
  make_pair(0);
  CHECK(collect_until(both_done));
  if (getenv("NH_GCABI_VERBOSE"))
    fprintf(stderr, "ordered pair: A finalized %d-th, B %d-th\n", atomic_load(&seq_a), atomic_load(&seq_b));
  CHECK(atomic_load(&seq_a) < atomic_load(&seq_b));   /* B after A */
  CHECK(atomic_load(&b_intact));
  atomic_store(&seq_a, 0);
  atomic_store(&seq_b, 0);
  atomic_store(&b_intact, 0);
  make_pair(1);
  CHECK(collect_until(both_done));
  CHECK(atomic_load(&b_intact));   /* B kept for A's finalizer, whatever the order */
  make_selves();   /* a register may keep one or two: most must go */
  CHECK(collect_until(self_finalized));
}

/* Finalize on demand: nothing runs until the program asks; the notifier says when to. */
static atomic_int notified, demand_ran;
static void on_notify(void) { atomic_fetch_add(&notified, 1); }
static void fin_demand(void *obj, void *cd) {
  (void)obj;
  (void)cd;
  atomic_fetch_add(&demand_ran, 1);
}
static int finalizers_waiting(void) { return GC_should_invoke_finalizers(); }
static __attribute__((noinline)) void make_demanding(int n) {
  for (int i = 0; i < n; i++)
    GC_REGISTER_FINALIZER(GC_MALLOC(sizeof(node)), fin_demand, NULL, NULL, NULL);
}

static void check_finalize_on_demand(void) {
  GC_set_finalize_on_demand(1);
  CHECK(GC_get_finalize_on_demand() == 1);
  GC_set_finalizer_notifier(on_notify);
  CHECK(GC_get_finalizer_notifier() == on_notify);
  make_demanding(50);
  CHECK(collect_until(finalizers_waiting));
  usleep(20000);
  CHECK(atomic_load(&demand_ran) == 0);   /* waiting for the program */
  CHECK(atomic_load(&notified) >= 1);
  int ran = 0;
  for (int i = 0; i < 100 && ran < 50; i++) {
    ran += GC_invoke_finalizers();
    GC_gcollect();
  }
  /* What waited besides these (objects kept a while by stale words, finalized meanwhile) runs
   * too: ran counts every finalizer. */
  CHECK(ran >= atomic_load(&demand_ran) && atomic_load(&demand_ran) >= 25);
  GC_set_finalizer_notifier(0);
  GC_set_finalize_on_demand(0);
}


/* Typed allocation: only the words the descriptor names are pointers. An object whose address
 * sits in a non-pointer word is not kept by it (its finalizer runs); one in a pointer word is. */
typedef struct typed {
  struct node *ptr;            /* a pointer */
  GC_word not_ptr;             /* an integer that may look like an address */
  GC_word more[2];
} typed;
static atomic_int typed_hidden_finalized, typed_kept_finalized;
static void fin_hidden(void *obj, void *cd) {
  (void)obj;
  (void)cd;
  atomic_fetch_add(&typed_hidden_finalized, 1);
}
static void fin_kept(void *obj, void *cd) {
  (void)obj;
  (void)cd;
  atomic_fetch_add(&typed_kept_finalized, 1);
}
enum { TYPED_N = 40 };
static int typed_hidden_gone(void) { return atomic_load(&typed_hidden_finalized) >= TYPED_N / 2; }

static __attribute__((noinline)) void fill_typed(typed *t, int n) {
  for (int i = 0; i < n; i++) {
    node *kept = GC_MALLOC(sizeof *kept), *hidden = GC_MALLOC(sizeof *hidden);
    kept->value = 100 + i;
    GC_REGISTER_FINALIZER(kept, fin_kept, NULL, NULL, NULL);
    GC_REGISTER_FINALIZER(hidden, fin_hidden, NULL, NULL, NULL);
    t[i].ptr = kept;
    t[i].not_ptr = (GC_word)hidden;   /* the only reference: not a pointer word */
    t[i].more[0] = (GC_word)hidden;
  }
}

static typed *typed_one, *typed_array;
static void check_typed(void) {
  GC_word bm[GC_BITMAP_SIZE(typed)] = {0};
  GC_set_bit(bm, GC_WORD_OFFSET(typed, ptr));
  GC_descr d = GC_make_descriptor(bm, GC_WORD_LEN(typed));
  typed_one = GC_malloc_explicitly_typed(sizeof(typed), d);
  typed_array = GC_calloc_explicitly_typed(TYPED_N - 1, sizeof(typed), d);
  CHECK(typed_one && typed_array);
  CHECK(typed_one->ptr == NULL && typed_array[TYPED_N - 2].not_ptr == 0);   /* cleared */
  fill_typed(typed_one, 1);
  fill_typed(typed_array, TYPED_N - 1);
  typed *longer = GC_malloc_explicitly_typed(sizeof(typed) + 100, d);   /* the rest: no pointers */
  CHECK(longer && GC_size(longer) >= sizeof(typed) + 100);
  CHECK(collect_until(typed_hidden_gone));
  CHECK(atomic_load(&typed_kept_finalized) == 0);
  int intact = typed_one->ptr->value == 100;
  for (int i = 0; i < TYPED_N - 1; i++)
    intact &= typed_array[i].ptr->value == 100 + i;
  CHECK(intact);
  typed_one = typed_array = NULL;
}


/* GC_call_with_gc_active inside GC_do_blocking: the inner function allocates and collects as any
 * thread; what it built is intact afterwards. The start callback runs at each collection. */
static void *active_work(void *arg) {
  (void)arg;
  node *l = build(3000, 9000000);
  churn(2);
  GC_gcollect();
  return intact(l, 3000, 9000000) ? l : NULL;
}
static void *blocking_then_active(void *arg) {
  (void)arg;
  return GC_call_with_gc_active(active_work, NULL);
}
static atomic_int started_collections;
static void on_start(void) { atomic_fetch_add(&started_collections, 1); }

static void check_active_and_start(void) {
  node *l = GC_do_blocking(blocking_then_active, NULL);
  CHECK(l != NULL);
  churn(4);
  CHECK(l && intact(l, 3000, 9000000));
  GC_set_start_callback(on_start);
  GC_gcollect();
  GC_set_start_callback(0);
  CHECK(atomic_load(&started_collections) >= 1);
  CHECK(GC_get_suspend_signal() > 0);
}

static atomic_int ev_start, ev_end, ev_pre_stop, ev_post_start;
static void on_event(GC_EventType e) {
  if (e == GC_EVENT_START)
    atomic_fetch_add(&ev_start, 1);
  else if (e == GC_EVENT_END)
    atomic_fetch_add(&ev_end, 1);
  else if (e == GC_EVENT_PRE_STOP_WORLD)
    atomic_fetch_add(&ev_pre_stop, 1);
  else if (e == GC_EVENT_POST_START_WORLD)
    atomic_fetch_add(&ev_post_start, 1);
}

static void check_collection(void) {
  GC_word n0 = GC_get_gc_no();
  GC_gcollect();
  CHECK(GC_get_gc_no() > n0);
  GC_disable();
  CHECK(GC_is_disabled());
  n0 = GC_get_gc_no();
  GC_gcollect();   /* no collection while disabled */
  CHECK(GC_get_gc_no() == n0);
  GC_enable();
  CHECK(!GC_is_disabled());
  GC_gcollect();
  CHECK(GC_get_gc_no() > n0);

  GC_set_on_collection_event(on_event);
  CHECK(GC_get_on_collection_event() == on_event);
  GC_gcollect();
  GC_set_on_collection_event(0);
  CHECK(atomic_load(&ev_start) >= 1 && atomic_load(&ev_end) >= 1);
  CHECK(atomic_load(&ev_pre_stop) >= 1 && atomic_load(&ev_pre_stop) == atomic_load(&ev_post_start));

  global_list = build(10000, 0);
  GC_gcollect_and_unmap();
  CHECK(intact(global_list, 10000, 0));
  CHECK(GC_get_heap_size() >= 10000 * sizeof(node));
  CHECK(GC_get_free_bytes() <= GC_get_heap_size());
  global_list = NULL;
}

static char oom_sentinel[16];
static size_t oom_asked;
static void *on_oom(size_t bytes) {
  oom_asked = bytes;
  return oom_sentinel;
}

static void check_failures(void) {
  GC_oom_func old = GC_get_oom_fn();
  CHECK(old != NULL);
  GC_set_oom_fn(on_oom);
  /* 1 PiB: more than either collector can map. What the oom function returned is what the
   * program gets (GC_MALLOC is declared malloc-like, so the compiler assumes its result is no
   * existing object: the check is on the request the function saw, and a non-NULL result). */
  volatile size_t petabyte = (size_t)1 << 50;
  void *volatile huge = GC_MALLOC(petabyte);
  CHECK(oom_asked == petabyte);
  CHECK(huge != NULL);
  GC_set_oom_fn(old);
  GC_warn_proc w = GC_get_warn_proc();
  CHECK(w != NULL);
  GC_set_warn_proc(w);
}

static void *blocking(void *arg) { return (char *)arg + 1; }

typedef struct work {
  long base;
  int ok;
} work;

static void *worker(void *arg) {
  work *w = arg;
  struct GC_stack_base sb;
  CHECK(GC_thread_is_registered());
  CHECK(GC_get_stack_base(&sb) == GC_SUCCESS);
  CHECK(GC_register_my_thread(&sb) == GC_DUPLICATE);   /* GC_pthread_create registered it */
  node *mine = build(5000, w->base);
  for (int r = 0; r < 6; r++) {
    churn(2);
    node *more = build(1000, w->base + 100000);
    if (!intact(more, 1000, w->base + 100000))
      return NULL;
  }
  w->ok = intact(mine, 5000, w->base);
  return NULL;
}

static void check_threads(void) {
  struct GC_stack_base sb;
  int local;
  CHECK(GC_get_stack_base(&sb) == GC_SUCCESS && (char *)&local < (char *)sb.mem_base);
  CHECK(GC_register_my_thread(&sb) == GC_DUPLICATE);   /* GC_INIT registered main */
  CHECK(GC_do_blocking(blocking, &local) == (char *)&local + 1);
  enum { T = 4 };
  pthread_t t[T];
  work w[T];
  for (int i = 0; i < T; i++) {
    w[i] = (work){.base = 10000000L * (i + 1)};
    CHECK(pthread_create(&t[i], NULL, worker, &w[i]) == 0);   /* GC_pthread_create (gc.h) */
  }
  for (int i = 0; i < T; i++) {
    CHECK(pthread_join(t[i], NULL) == 0);
    CHECK(w[i].ok);
  }
}

int main(void) {
  GC_INIT();
  GC_allow_register_threads();
  const char *expect = getenv("NH_GCABI_EXPECT");
  int on_nheap = dlsym(RTLD_DEFAULT, "nh_init") != NULL;
  if (expect)
    CHECK(on_nheap == (strcmp(expect, "nheap") == 0));
  CHECK(GC_is_init_called());
  CHECK(GC_get_version() >= ((8u << 16) | (2u << 8)));
  CHECK(GC_thread_is_registered());
  check_allocation();
  check_roots();
  check_finalizers();
  check_links();
  check_finalizer_orders();
  check_finalize_on_demand();
  check_typed();
  check_active_and_start();
  check_collection();
  check_failures();
  check_threads();
  printf("gcabi_program: %s, %s (%lu collections)\n", on_nheap ? "nheap" : "bdwgc",
         failures ? "FAILED" : "all checks held", (unsigned long)GC_get_gc_no());
  return failures ? 1 : 0;
}
