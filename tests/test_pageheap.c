/*
 * test_pageheap.c — the page heap: first fit by address, coalescing, growth by arenas (runs
 * larger than an arena included), zero tracking, the page -> span map, and a random
 * alloc/free sequence against a shadow page map, validated after every step (Debug builds
 * also validate inside every call); prefaulting ahead of first fit.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/pageheap.h"
#include "tests/testutil.h"

static nh_mem_t mem;
static nh_arena_set_t set;
static nh_pageheap_t ph;

static int setup(void **state) {
  mem_init(&mem, &os_linux);
  nh_arena_placement place = {.nnodes = 1};
  assert_int_equal(arena_set_init(&set, &mem, NH_HUGEPAGES_NONE, place), 0);
  pageheap_init(&ph, 0, &set, &mem);
  return 0;
}

static int teardown(void **state) {
  pageheap_validate(&ph);
  arena_set_destroy(&set);
  mem_destroy(&mem);
  return 0;
}

#define PAGE NH_PAGE_SIZE

static void test_first_fit_and_coalescing(void **state) {
  bool nz;
  uintptr_t a = pageheap_alloc(&ph, 1, &nz);
  assert_true(a != 0);
  assert_false(nz);                       /* fresh memory is zero */
  assert_int_equal(a % NH_ARENA_BYTES, 0);
  assert_int_equal(ph.narenas, 1);
  uintptr_t b = pageheap_alloc(&ph, 3, &nz), c = pageheap_alloc(&ph, 2, &nz);
  assert_int_equal(b, a + PAGE);
  assert_int_equal(c, a + 4 * PAGE);
  memset((void *)a, 1, PAGE);

  pageheap_free(&ph, a, 1);
  pageheap_free(&ph, b, 3);               /* a and b coalesce into 4 free pages */
  uintptr_t d = pageheap_alloc(&ph, 4, &nz);
  assert_int_equal(d, a);                 /* lowest address first */
  assert_true(nz);                        /* reused pages must be zeroed by the caller */
  uintptr_t e = pageheap_alloc(&ph, 1, &nz);
  assert_int_equal(e, c + 2 * PAGE);      /* no hole left below c */
  assert_int_equal(nh_stat_get(&ph.inuse_pages), 4 + 2 + 1);
  assert_int_equal(nh_stat_get(&ph.released_pages), NH_PAGES_PER_ARENA - 7);
  /* Pages came back Ready in the OS layer's counters. */
  assert_int_equal(nh_stat_get(&mem.stats.ready), (uint64_t)7 * PAGE);
}

static void test_runs_across_chunks_and_arenas(void **state) {
  if (nh_config_tsan)
    skip();   /* ThreadSanitizer builds place arenas anywhere: no contiguous runs to test */
  bool nz;
  uintptr_t small = pageheap_alloc(&ph, 100, &nz);
  /* 600 pages straddle the first two 512-page chunks. */
  uintptr_t mid = pageheap_alloc(&ph, 600, &nz);
  assert_int_equal(mid, small + 100 * PAGE);
  /* A whole arena does not fit in the first one any more: a second arena, contiguous with it,
   * and the run starts in the first (first fit over address-contiguous arenas). */
  uintptr_t whole = pageheap_alloc(&ph, NH_PAGES_PER_ARENA, &nz);
  assert_int_equal(whole, mid + 600 * PAGE);
  assert_int_equal(ph.narenas, 2);
  /* More than an arena: the heap grows by two more contiguous arenas. */
  uintptr_t big = pageheap_alloc(&ph, NH_PAGES_PER_ARENA + 1000, &nz);
  assert_int_equal(big, whole + NH_PAGES_PER_ARENA * (size_t)PAGE);
  assert_false(nz);
  assert_int_equal(ph.narenas, 4);
  ((char *)big)[(NH_PAGES_PER_ARENA + 999) * (size_t)PAGE] = 1;   /* its last page is mapped */
  uintptr_t again = pageheap_alloc(&ph, 10, &nz);
  assert_int_equal(again, big + (NH_PAGES_PER_ARENA + 1000) * (size_t)PAGE);
  pageheap_free(&ph, big, NH_PAGES_PER_ARENA + 1000);
  pageheap_free(&ph, whole, NH_PAGES_PER_ARENA);
  /* Freed arenas coalesce: the big run fits again without growing. */
  uintptr_t big2 = pageheap_alloc(&ph, 2 * NH_PAGES_PER_ARENA, &nz);
  assert_true(big2 != 0);
  assert_int_equal(ph.narenas, 4);
}

static void test_span_map(void **state) {
  bool nz;
  uintptr_t a = pageheap_alloc(&ph, 3, &nz);
  static struct nh_span span;   /* a large span's struct (class 0): the map only points at it */
  struct nh_span *fake = &span;
  assert_null(span_of(&set, (void *)a));
  pageheap_set_spans(a, 3, fake, &set);
  assert_ptr_equal(span_of(&set, (void *)a), fake);
  assert_ptr_equal(span_of(&set, (void *)(a + 3 * PAGE - 1)), fake);
  assert_null(span_of(&set, (void *)(a + 3 * PAGE)));
  assert_null(span_of(&set, &nz));
  pageheap_free(&ph, a, 3);
  assert_null(span_of(&set, (void *)a));
}

static void test_random_against_shadow(void **state) {
  enum { LIVE = 200, STEPS = 4000 };
  struct { uintptr_t base; size_t n; } live[LIVE] = {{0}};
  srandom(12345);
  bool nz;
  for (int step = 0; step < STEPS; step++) {
    int k = (int)(random() % LIVE);
    if (live[k].base) {
      pageheap_free(&ph, live[k].base, live[k].n);
      live[k].base = 0;
      continue;
    }
    size_t n = random() % 8 ? 1 + (size_t)(random() % 16) : 1 + (size_t)(random() % 3000);
    uintptr_t b = pageheap_alloc(&ph, n, &nz);
    assert_true(b != 0);
    for (int j = 0; j < LIVE; j++)
      if (live[j].base && b < live[j].base + live[j].n * PAGE && live[j].base < b + n * PAGE)
        fail_msg("step %d: [%#lx, +%zu) overlaps live [%#lx, +%zu)", step, (unsigned long)b, n,
                 (unsigned long)live[j].base, live[j].n);
    live[k].base = b;
    live[k].n = n;
    if (step % 256 == 0)
      pageheap_validate(&ph);
  }
  size_t in_use = 0;
  for (int j = 0; j < LIVE; j++)
    in_use += live[j].base ? live[j].n : 0;
  assert_int_equal(nh_stat_get(&ph.inuse_pages), in_use);
}

/* Prefaulting: a page heap that hands out released pages asks for a pass once; the pass faults
 * in the released pages among the lowest free ones (resident afterwards, mincore), which come
 * back zero without clearing; the accounting moves them from released to free; the scavenger
 * releases them again like any free page. */
static int wakes;
static void count_wake(void *arg) {
  assert_ptr_equal(arg, &ph);
  wakes++;
}

static size_t resident_pages(uintptr_t p, size_t n) {
  unsigned char v[NH_PAGE_SIZE / 4096 * 256];
  size_t os = n * (NH_PAGE_SIZE / 4096), in = 0;
  assert_true(os <= sizeof v);
  assert_int_equal(mincore((void *)p, n * NH_PAGE_SIZE, v), 0);
  for (size_t i = 0; i < os; i++)
    in += v[i] & 1;
  return in / (NH_PAGE_SIZE / 4096);
}

static void test_prefault(void **state) {
  bool nz;
  wakes = 0;
  ph.prefault_arg = &ph;
  ph.prefault_wake = count_wake;
  uintptr_t a = pageheap_alloc(&ph, 1, &nz);
  assert_false(nz);
  assert_int_equal(wakes, 1);   /* released pages handed out: the next ones would fault */
  (void)pageheap_alloc(&ph, 1, &nz);
  assert_int_equal(wakes, 1);   /* asked once until a pass runs */
  assert_true(pageheap_prefault_requested(&ph));
  assert_false(pageheap_prefault_requested(&ph));
  assert_int_equal(resident_pages(a + 2 * PAGE, 64), 0);

  uint64_t released = nh_stat_get(&ph.released_pages), ready = nh_stat_get(&mem.stats.ready);
  size_t window = 128, done = pageheap_prefault(&ph, window * PAGE) / PAGE;
  assert_true(done >= window && done <= window + 64);   /* whole units: overshoots by less than one */
  assert_int_equal(ph.fresh_pages, done);
  assert_int_equal(nh_stat_get(&ph.prefaulted_pages), done);
  assert_int_equal(nh_stat_get(&ph.released_pages), released - done);
  assert_int_equal(nh_stat_get(&ph.scavenging_pages), 0);
  assert_int_equal(nh_stat_get(&mem.stats.ready), ready + done * PAGE);
  assert_int_equal(resident_pages(a + 2 * PAGE, done), done);
  assert_int_equal(pageheap_prefault(&ph, window * PAGE), 0);   /* the window is faulted in */
  pageheap_validate(&ph);

  uintptr_t b = pageheap_alloc(&ph, 10, &nz);
  assert_int_equal(b, a + 2 * PAGE);
  assert_false(nz);                          /* prefaulted pages are still zero */
  assert_int_equal(ph.fresh_pages, done - 10);
  memset((void *)b, 1, 10 * PAGE);
  pageheap_free(&ph, b, 10);
  assert_int_equal(pageheap_alloc(&ph, 10, &nz), b);
  assert_true(nz);                           /* written since: the caller clears */
  pageheap_free(&ph, b, 10);

  /* The scavenger takes them back like any free memory; the fresh bits go with them. */
  size_t freed = pageheap_scavenge(&ph, SIZE_MAX, NULL, &nz);
  assert_true(freed >= (done - 10) * PAGE);
  assert_int_equal(ph.fresh_pages, 0);
  assert_int_equal(resident_pages(a + 12 * PAGE, done - 10), 0);
  pageheap_validate(&ph);
  ph.prefault_wake = NULL;
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_first_fit_and_coalescing, setup, teardown),
    cmocka_unit_test_setup_teardown(test_runs_across_chunks_and_arenas, setup, teardown),
    cmocka_unit_test_setup_teardown(test_span_map, setup, teardown),
    cmocka_unit_test_setup_teardown(test_random_against_shadow, setup, teardown),
    cmocka_unit_test_setup_teardown(test_prefault, setup, teardown),
  };
  return cmocka_run_group_tests_name("pageheap", tests, NULL, NULL);
}
