/*
 * test_arena.c — arenas: the address -> arena index (first, last, interior and foreign
 * addresses), contiguous growth, and the huge-page policy driven through fake OS hooks that
 * report any hugetlb pool and THP setting and inject failures. The fakes wrap the real mmap,
 * so every arena is real memory.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/arena.h"
#include "tests/testutil.h"

/* ---- fake OS ---------------------------------------------------------------------------- */

static struct {
  long pool;               /* what hugetlb_free_pages reports */
  nh_thp_mode thp;
  bool fail_hugetlb_map;   /* MAP_HUGETLB mmaps fail with ENOMEM even when the pool says yes */
  bool fail_reserve;       /* PROT_NONE reservations fail */
  bool fail_advise;        /* madvise fails with EINVAL (a kernel without THP) */
  int hugetlb_maps, hugepage_advice, nohugepage_advice, binds, last_bind_mode;
} fake;

static void *fake_map(void *addr, size_t len, int prot, int flags) {
  if (flags & MAP_HUGETLB) {
    fake.hugetlb_maps++;
    if (fake.fail_hugetlb_map) {
      errno = ENOMEM;
      return MAP_FAILED;
    }
    /* Stand in for the pool: ordinary pages at the same place. */
    flags &= ~(MAP_HUGETLB | (0x3f << MAP_HUGE_SHIFT));
  }
  if (prot == PROT_NONE && !(flags & MAP_FIXED) && fake.fail_reserve) {
    errno = ENOMEM;
    return MAP_FAILED;
  }
  return os_linux.map(addr, len, prot, flags);
}

static int fake_advise(void *p, size_t len, int advice) {
  if (advice == MADV_HUGEPAGE || advice == MADV_NOHUGEPAGE) {
    if (fake.fail_advise) {
      errno = EINVAL;
      return -1;
    }
    ++*(advice == MADV_HUGEPAGE ? &fake.hugepage_advice : &fake.nohugepage_advice);
  }
  return os_linux.advise(p, len, advice);
}

static int fake_bind(void *p, size_t len, int mode, const unsigned long *mask, unsigned long maxnode) {
  fake.binds++;
  fake.last_bind_mode = mode;
  return os_linux.bind(p, len, mode, mask, maxnode);
}

static long fake_pool(void) { return fake.pool; }
static nh_thp_mode fake_thp(void) { return fake.thp; }

static const nh_os_hooks fake_os = {
  .map = fake_map,
  .unmap = munmap,
  .advise = fake_advise,
  .bind = fake_bind,
  .hugetlb_free_pages = fake_pool,
  .thp_mode = fake_thp,
  .now_ns = NULL,
};

static nh_mem_t mem;
static nh_arena_set_t set;

static void start(nh_hugepages_mode policy, long pool, nh_thp_mode thp) {
  memset(&fake, 0, sizeof fake);
  fake.pool = pool;
  fake.thp = thp;
  mem_init(&mem, &fake_os);
  nh_arena_placement place = {.nnodes = 1};
  assert_int_equal(arena_set_init(&set, &mem, policy, place), 0);
  fake.nohugepage_advice = 0;   /* the index's own advice */
  capture_errors();
}

static int teardown(void **state) {
  arena_validate(&set);
  arena_set_destroy(&set);
  mem_destroy(&mem);
  assert_int_equal(nh_stat_get(&mem.stats.reserved), 0);
  return 0;
}

/* ---- the index -------------------------------------------------------------------------- */

static void test_index_lookup(void **state) {
  start(NH_HUGEPAGES_NONE, -1, THP_MADVISE);
  nh_arena_t *a = arena_create(&set, 0), *b = arena_create(&set, 0);
  assert_non_null(a);
  assert_non_null(b);
  assert_true(nh_is_aligned(a->base, NH_ARENA_BYTES));
  assert_int_equal(a->id, 0);
  assert_int_equal(b->id, 1);

  /* first, last, interior bytes map to their arena */
  assert_ptr_equal(arena_of(&set, (void *)a->base), a);
  assert_ptr_equal(arena_of(&set, (void *)(a->base + NH_ARENA_BYTES - 1)), a);
  assert_ptr_equal(arena_of(&set, (void *)(a->base + 12345678)), a);
  assert_ptr_equal(arena_of(&set, (void *)b->base), b);
  assert_ptr_equal(arena_of(&set, (void *)(b->base + NH_ARENA_BYTES - 1)), b);

  /* foreign: the stack, malloc, a static, NULL, the kernel half, the byte before, after */
  int local;
  void *heap_ptr = malloc(64);
  assert_null(arena_of(&set, &local));
  assert_null(arena_of(&set, heap_ptr));
  assert_null(arena_of(&set, &set));
  assert_null(arena_of(&set, NULL));
  assert_null(arena_of(&set, (void *)0xffff800000000000u));
  assert_null(arena_of(&set, (void *)UINTPTR_MAX));
  uintptr_t lo = a->base < b->base ? a->base : b->base, hi = (a->base > b->base ? a->base : b->base) + NH_ARENA_BYTES;
  assert_null(arena_of(&set, (void *)(lo - 1)));
  assert_null(arena_of(&set, (void *)hi));
  free(heap_ptr);
}

static void test_contiguous_growth(void **state) {
  start(NH_HUGEPAGES_NONE, -1, THP_MADVISE);
  nh_arena_t *prev = arena_create(&set, 0);
  assert_non_null(prev);
  int contiguous = 0;
  for (int i = 0; i < 6; i++) {
    nh_arena_t *a = arena_create(&set, 0);
    assert_non_null(a);
    contiguous += a->base == prev->base + NH_ARENA_BYTES;
    prev = a;
  }
  if (!nh_config_tsan)             /* ThreadSanitizer builds place arenas anywhere */
    assert_true(contiguous >= 5);  /* something else may map in between once, not every time */
  assert_int_equal(set.count, 7);
  assert_int_equal(nh_stat_get(&mem.stats.reserved), 7 * NH_ARENA_BYTES);
  assert_int_equal(nh_stat_get(&mem.stats.mapped), 7 * NH_ARENA_BYTES);
  assert_int_equal(nh_stat_get(&mem.stats.ready), 0);  /* committed, released until used */
}

/* ---- huge-page policy ------------------------------------------------------------------- */

static void test_auto_takes_hugetlb_when_pool_has_room(void **state) {
  start(NH_HUGEPAGES_AUTO, 32, THP_MADVISE);
  nh_arena_t *a = arena_create(&set, 0);
  assert_int_equal(a->backing, NH_BACKING_HUGETLB);
  assert_int_equal(a->wanted, NH_HUGEPAGES_AUTO);
  assert_int_equal(fake.hugetlb_maps, 1);
  assert_int_equal(fake.hugepage_advice, 0);
  assert_int_equal(nh_stat_get(&set.by_backing[NH_BACKING_HUGETLB]), 1);
  assert_int_equal(nh_stat_get(&set.hugetlb_fallbacks), 0);
  assert_int_equal(errors.count, 0);
}

static void test_auto_short_pool_falls_back_to_thp_counted(void **state) {
  start(NH_HUGEPAGES_AUTO, 31, THP_MADVISE);
  nh_arena_t *a = arena_create(&set, 0);
  assert_int_equal(a->backing, NH_BACKING_THP);
  assert_int_equal(fake.hugetlb_maps, 0);   /* not even tried: 31 < 32 pages */
  assert_int_equal(fake.hugepage_advice, 1);
  assert_int_equal(nh_stat_get(&set.hugetlb_fallbacks), 1);
  assert_int_equal(nh_stat_get(&set.thp_fallbacks), 0);
  assert_int_equal(errors.count, 0);        /* auto: counted, not warned */
}

static void test_auto_without_pool_is_not_a_fallback(void **state) {
  start(NH_HUGEPAGES_AUTO, -1, THP_ALWAYS);
  nh_arena_t *a = arena_create(&set, 0);
  assert_int_equal(a->backing, NH_BACKING_THP);
  assert_int_equal(nh_stat_get(&set.hugetlb_fallbacks), 0);
}

static void test_auto_map_failure_falls_back(void **state) {
  start(NH_HUGEPAGES_AUTO, 64, THP_MADVISE);
  fake.fail_hugetlb_map = true;    /* the pool said yes, then another process took the pages */
  nh_arena_t *a = arena_create(&set, 0);
  assert_non_null(a);
  assert_int_equal(fake.hugetlb_maps, 1);
  assert_int_equal(a->backing, NH_BACKING_THP);
  assert_int_equal(nh_stat_get(&set.hugetlb_fallbacks), 1);
  ((char *)a->base)[0] = 1;        /* the reservation survived the failed map and is usable */
}

static void test_auto_no_thp_gives_small_pages(void **state) {
  start(NH_HUGEPAGES_AUTO, -1, THP_NEVER);
  nh_arena_t *a = arena_create(&set, 0);
  assert_int_equal(a->backing, NH_BACKING_SMALL);
  assert_int_equal(nh_stat_get(&set.thp_fallbacks), 1);
  assert_int_equal(errors.count, 0);
}

static void test_explicit_hugetlb_falls_back_with_one_warning(void **state) {
  start(NH_HUGEPAGES_HUGETLB, -1, THP_MADVISE);
  nh_arena_t *a = arena_create(&set, 0), *b = arena_create(&set, 0);
  assert_int_equal(a->backing, NH_BACKING_THP);
  assert_int_equal(b->backing, NH_BACKING_THP);
  assert_int_equal(a->wanted, NH_HUGEPAGES_HUGETLB);
  assert_int_equal(nh_stat_get(&set.hugetlb_fallbacks), 2);
  assert_int_equal(errors.count, 1);
  assert_int_equal(errors.last_code, 0);
  assert_true(errors_contain("hugepages = hugetlb"));
  assert_true(errors_contain("nr_hugepages"));
}

static void test_explicit_thp_when_disabled_warns(void **state) {
  start(NH_HUGEPAGES_THP, 64, THP_NEVER);
  nh_arena_t *a = arena_create(&set, 0);
  assert_int_equal(a->backing, NH_BACKING_SMALL);
  assert_int_equal(fake.hugetlb_maps, 0);  /* thp never tries hugetlb */
  assert_int_equal(nh_stat_get(&set.thp_fallbacks), 1);
  assert_int_equal(errors.count, 1);
  assert_true(errors_contain("transparent huge pages are disabled"));
}

static void test_thp_advice_failure_is_counted(void **state) {
  start(NH_HUGEPAGES_THP, -1, THP_MADVISE);
  fake.fail_advise = true;
  nh_arena_t *a = arena_create(&set, 0);
  assert_int_equal(a->backing, NH_BACKING_SMALL);
  assert_int_equal(nh_stat_get(&set.thp_fallbacks), 1);
}

static void test_none_advises_no_huge_pages(void **state) {
  start(NH_HUGEPAGES_NONE, 64, THP_ALWAYS);
  nh_arena_t *a = arena_create(&set, 0);
  assert_int_equal(a->backing, NH_BACKING_SMALL);
  assert_int_equal(fake.hugetlb_maps, 0);
  assert_int_equal(fake.nohugepage_advice, 1);
  assert_int_equal(nh_stat_get(&set.thp_fallbacks), 0);
  assert_int_equal(nh_stat_get(&set.hugetlb_fallbacks), 0);
}

static void test_reserve_failure_returns_null(void **state) {
  start(NH_HUGEPAGES_AUTO, -1, THP_MADVISE);
  fake.fail_reserve = true;
  set.hint = 0;  /* no hint: go straight to the over-reserving path, which fails */
  assert_null(arena_create(&set, 0));
  assert_int_equal(set.count, 0);
  assert_int_equal(nh_stat_get(&mem.stats.reserved), 0);
  fake.fail_reserve = false;
  assert_non_null(arena_create(&set, 0));
}

static void test_binding_follows_placement(void **state) {
  start(NH_HUGEPAGES_NONE, -1, THP_MADVISE);
  set.place = (nh_arena_placement){.nnodes = 1, .bind = true};
  nh_arena_t *a = arena_create(&set, 0);
  assert_int_equal(fake.binds, 1);
  assert_int_equal(a->node, 0);
  set.place.interleave = true;
  arena_create(&set, 0);
  assert_int_equal(fake.binds, 2);
  assert_int_equal(errors.count, 0);
  /* A node the machine does not have: a warning, and the arena still works. */
  set.place.interleave = false;
  nh_arena_t *c = arena_create(&set, 3);
  assert_non_null(c);
  assert_int_equal(errors.count, 1);
  assert_true(errors_contain("mbind to node 3 failed"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_teardown(test_index_lookup, teardown),
    cmocka_unit_test_teardown(test_contiguous_growth, teardown),
    cmocka_unit_test_teardown(test_auto_takes_hugetlb_when_pool_has_room, teardown),
    cmocka_unit_test_teardown(test_auto_short_pool_falls_back_to_thp_counted, teardown),
    cmocka_unit_test_teardown(test_auto_without_pool_is_not_a_fallback, teardown),
    cmocka_unit_test_teardown(test_auto_map_failure_falls_back, teardown),
    cmocka_unit_test_teardown(test_auto_no_thp_gives_small_pages, teardown),
    cmocka_unit_test_teardown(test_explicit_hugetlb_falls_back_with_one_warning, teardown),
    cmocka_unit_test_teardown(test_explicit_thp_when_disabled_warns, teardown),
    cmocka_unit_test_teardown(test_thp_advice_failure_is_counted, teardown),
    cmocka_unit_test_teardown(test_none_advises_no_huge_pages, teardown),
    cmocka_unit_test_teardown(test_reserve_failure_returns_null, teardown),
    cmocka_unit_test_teardown(test_binding_follows_placement, teardown),
  };
  return cmocka_run_group_tests_name("arena", tests, NULL, NULL);
}
