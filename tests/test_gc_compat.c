/*
 * test_gc_compat.c — a program written against bdwgc's API, built through nheap_gc_compat.h:
 * lists of GC_MALLOC nodes with GC_MALLOC_ATOMIC payloads, an uncollectable object held only
 * in malloc memory, GC_FREE, finalizers with the previous one returned, a thread started with
 * GC_pthread_create that holds a pointer it never allocated (and sleeps in GC_do_blocking),
 * GC_add_roots and the heap
 * queries. GC_INIT must pick stop-the-world marking even when NHEAP_GC asks otherwise.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nheap_gc_compat.h"
#include "tests/testutil.h"

typedef struct cell { struct cell *next; char *payload; size_t n; } cell;

static cell *make_list(size_t n) {
  cell *head = NULL;
  for (size_t i = 0; i < n; i++) {
    cell *c = GC_MALLOC(sizeof *c);
    assert_non_null(c);
    c->n = i;
    c->payload = GC_MALLOC_ATOMIC(32);
    memset(c->payload, (int)(i & 0xff), 32);
    c->next = head;
    head = c;
  }
  return head;
}

static void check_list(const cell *c, size_t n) {
  for (size_t i = n; i-- > 0; c = c->next) {
    assert_non_null(c);
    assert_int_equal(c->n, i);
    for (int k = 0; k < 32; k++)
      assert_int_equal((unsigned char)c->payload[k], (unsigned char)(i & 0xff));
  }
  assert_null(c);
}

static void churn(void) {
  for (int i = 0; i < 20000; i++)
    (void)GC_MALLOC(sizeof(cell));
}

static void test_lists_and_uncollectable(void **state) {
  (void)state;
  cell *volatile list = make_list(5000);
  /* Uncollectable, and only malloc memory points at it: it and what it holds stay. */
  void **hidden = malloc(sizeof *hidden);
  cell **u = GC_MALLOC_UNCOLLECTABLE(sizeof(cell *));
  *u = make_list(300);
  *hidden = u;
  u = NULL;
  GC_word before = GC_get_gc_no();
  for (int i = 0; i < 4; i++) {
    GC_gcollect();
    churn();
  }
  assert_true(GC_get_gc_no() >= before + 4);
  assert_true(GC_get_heap_size() > 0);
  check_list(list, 5000);
  check_list(*(cell **)*hidden, 300);
  GC_FREE(*hidden);   /* drops its root too */
  assert_int_equal(nh_root_forget(*hidden), -ENOENT);
  free(hidden);
  GC_FREE(NULL);
}

/* An uncollectable object that only malloc memory points at is never freed itself: after
 * collections, no allocation of its size is handed its address. Only the malloc memory has
 * its address (the test keeps it disguised), so no stale word on the stack can pin it. */
#define DISGUISE ((uintptr_t)0x5a5a5a5a5a5a5a5aull)
static __attribute__((noinline)) void make_uncollectable(uintptr_t *hidden) {
  void *u = GC_MALLOC_UNCOLLECTABLE(48);
  assert_non_null(u);
  memset(u, 0x5a, 48);
  *hidden = (uintptr_t)u ^ DISGUISE;
}

static void test_uncollectable_object_stays(void **state) {
  (void)state;
  uintptr_t *hidden = malloc(sizeof *hidden);
  make_uncollectable(hidden);
  for (int round = 0; round < 4; round++) {
    GC_gcollect();
    for (int i = 0; i < 20000; i++)
      assert_true(((uintptr_t)GC_MALLOC(48) ^ DISGUISE) != *hidden);
  }
  unsigned char *u = (unsigned char *)(*hidden ^ DISGUISE);
  for (int i = 0; i < 48; i++)
    assert_int_equal(u[i], 0x5a);
  GC_FREE(u);
  free(hidden);
}

static int finalized;
static void fin_a(void *obj, void *cd) { (void)obj, (void)cd; }
static void fin_b(void *obj, void *cd) {
  (void)obj;
  finalized += cd == (void *)5;
}

static __attribute__((noinline)) void finalizable(void) {
  void *o = GC_MALLOC(40);
  GC_finalization_proc ofn = (GC_finalization_proc)1;
  void *ocd = (void *)1;
  GC_register_finalizer(o, fin_a, (void *)4, &ofn, &ocd);
  assert_null((void *)ofn);
  assert_null(ocd);
  GC_register_finalizer(o, fin_b, (void *)5, &ofn, &ocd);
  assert_ptr_equal((void *)ofn, (void *)fin_a);
  assert_ptr_equal(ocd, (void *)4);
}

static void test_finalizer(void **state) {
  (void)state;
  /* A few objects: a stale word may pin one of them (conservative roots). */
  for (int i = 0; i < 4; i++)
    finalizable();
  GC_gcollect();
  for (int i = 0; i < 60000 && finalized < 3; i++)   /* a hang guard, not a time bound */
    usleep(1000);
  assert_true(finalized >= 3);
}

/* The thread is attached by GC_pthread_create before it runs, so the pointer it was handed
 * (and never allocated) is on a scanned stack; it sleeps inside GC_do_blocking, counted as
 * stopped, and its stack is scanned all the same. */
static void *nap(void *arg) {
  usleep(100000);   /* main collects meanwhile */
  return arg;
}

static void *holder(void *arg) {
  cell *volatile c = arg;
  assert_ptr_equal(GC_do_blocking(nap, arg), arg);
  check_list(c, 1000);
  return NULL;
}

static __attribute__((noinline)) void start_holder(pthread_t *t) {
  assert_int_equal(GC_pthread_create(t, NULL, holder, make_list(1000)), 0);
}

static void test_pthread_create_attaches(void **state) {
  (void)state;
  pthread_t t;
  start_holder(&t);
  for (int i = 0; i < 5; i++) {
    usleep(10000);
    GC_gcollect();
    churn();
  }
  assert_int_equal(GC_pthread_join(t, NULL), 0);
  assert_int_equal(GC_register_my_thread(NULL), GC_SUCCESS);
}

static void test_add_roots_and_store(void **state) {
  (void)state;
  cell **area = malloc(4 * sizeof *area);
  memset(area, 0, 4 * sizeof *area);
  GC_add_roots(area, area + 4);
  cell *volatile holder_obj = GC_MALLOC(sizeof(cell));
  GC_PTR_STORE_AND_DIRTY(&holder_obj->next, make_list(10));
  area[2] = make_list(200);
  for (int i = 0; i < 3; i++) {
    GC_gcollect();
    churn();
  }
  check_list(area[2], 200);
  check_list(holder_obj->next, 10);
  assert_int_equal(nh_root_remove(area), 0);
  free(area);
}

int main(void) {
  clear_nheap_env();
  setenv("NHEAP_GC", "off", 1);   /* GC_INIT must still collect: concurrently without a barrier */
  capture_errors();
  GC_INIT();
  nh_stats_t s = {.size = sizeof s};
  /* stw only where the kernel lacks write-protect tracking, and then nheap said so */
  if (nh_stats_read(&s) != 0 || (s.gc_mode != NH_GC_CONCURRENT_NOBARRIER &&
                                 !(s.gc_mode == NH_GC_STW && errors_contain("stops the world instead"))))
    return 1;
  print_message("GC_INIT: gc = %s\n", s.gc_mode == NH_GC_STW ? "stw (no write-protect tracking here)" : "concurrent-nobarrier");
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_lists_and_uncollectable),
    cmocka_unit_test(test_uncollectable_object_stays),
    cmocka_unit_test(test_finalizer),
    cmocka_unit_test(test_pthread_create_attaches),
    cmocka_unit_test(test_add_roots_and_store),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  nh_shutdown();
  return rc;
}
