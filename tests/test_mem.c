/*
 * test_mem.c — the OS layer on the real kernel: every state transition, checked against
 * /proc/self/maps (permissions) and /proc/self/smaps (resident memory), plus the counters and
 * the metadata allocator.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "core/mem.h"
#include "tests/testutil.h"

#define LEN ((size_t)8 << 20)

static nh_mem_t mem;

static int setup(void **state) {
  mem_init(&mem, &os_linux);
  capture_errors();
  return 0;
}

static int teardown(void **state) {
  mem_destroy(&mem);
  return 0;
}

static void touch(char *p, size_t len) {
  for (size_t off = 0; off < len; off += NH_OS_PAGE)
    p[off] = 1;
}

static void test_transitions(void **state) {
  char perms[5];
  /* None -> Reserved: no access, nothing resident. */
  char *p = mem_reserve(&mem, LEN, NH_HUGE_PAGE);
  assert_non_null(p);
  assert_true(nh_is_aligned((uintptr_t)p, NH_HUGE_PAGE));
  assert_int_equal(maps_perms(p, perms), 0);
  assert_string_equal(perms, "---p");
  assert_int_equal(nh_stat_get(&mem.stats.reserved), LEN);
  assert_int_equal(nh_stat_get(&mem.stats.mapped), 0);

  /* Reserved -> Prepared: read-write, still nothing resident. */
  assert_int_equal(mem_commit(&mem, p, LEN, NH_BACKING_SMALL), 0);
  assert_int_equal(mem_hugify(&mem, p, LEN, false), 0);
  assert_int_equal(maps_perms(p, perms), 0);
  assert_string_equal(perms, "rw-p");
  assert_int_equal(smaps_kb(p, LEN, "Rss"), 0);
  assert_int_equal(nh_stat_get(&mem.stats.mapped), LEN);

  /* Prepared -> Ready, then touched: resident. */
  mem_use(&mem, p, LEN);
  assert_int_equal(nh_stat_get(&mem.stats.ready), LEN);
  touch(p, LEN);
  assert_true(smaps_kb(p, LEN, "Rss") >= (long)(LEN >> 10) * 9 / 10);

  /* Ready -> Prepared: RSS really drops, the range stays mapped and reads zero. */
  assert_int_equal(mem_release(&mem, p, LEN, NH_BACKING_SMALL), 0);
  assert_true(smaps_kb(p, LEN, "Rss") < 64);
  assert_int_equal(maps_perms(p, perms), 0);
  assert_string_equal(perms, "rw-p");
  assert_int_equal(p[12345], 0);
  assert_int_equal(nh_stat_get(&mem.stats.ready), 0);
  assert_int_equal(nh_stat_get(&mem.stats.mapped), LEN);

  /* Prepared|Ready -> Reserved: access gone again. */
  mem_use(&mem, p, LEN / 2);
  touch(p, LEN / 2);
  assert_int_equal(mem_decommit(&mem, p, LEN / 2, true), 0);
  assert_int_equal(mem_decommit(&mem, p + LEN / 2, LEN / 2, false), 0);
  assert_int_equal(maps_perms(p, perms), 0);
  assert_string_equal(perms, "---p");
  assert_int_equal(smaps_kb(p, LEN, "Rss"), 0);
  assert_int_equal(nh_stat_get(&mem.stats.mapped), 0);
  assert_int_equal(nh_stat_get(&mem.stats.ready), 0);

  /* Reserved -> Prepared again works after a decommit. */
  assert_int_equal(mem_commit(&mem, p, LEN, NH_BACKING_SMALL), 0);
  p[0] = 7;

  /* any -> None. */
  assert_int_equal(mem_unreserve(&mem, p, LEN, LEN, 0), 0);
  assert_int_equal(maps_perms(p, perms), -1);
  assert_int_equal(nh_stat_get(&mem.stats.reserved), 0);
  assert_int_equal(nh_stat_get(&mem.stats.mapped), 0);
}

static void test_reserve_alignment_and_hint(void **state) {
  const size_t arena = (size_t)64 << 20;
  /* No hint: anywhere, aligned. */
  char *c0 = mem_reserve(&mem, arena, arena);
  assert_non_null(c0);
  assert_true(nh_is_aligned((uintptr_t)c0, arena));
  assert_int_equal(mem_unreserve(&mem, c0, arena, 0, 0), 0);
  if (nh_config_tsan)
    return;  /* ThreadSanitizer rewrites fixed addresses outside its ranges */
  /* A free hint is taken exactly, and the one just past it too: the heap grows contiguously. */
  const uintptr_t hint = (uintptr_t)0x200000000000;
  char *a = mem_reserve_at(&mem, arena, hint);
  assert_ptr_equal(a, (char *)hint);
  char *b = mem_reserve_at(&mem, arena, (uintptr_t)a + arena);
  assert_ptr_equal(b, a + arena);
  /* An occupied address is refused, whole or overlapping, and nothing is left mapped. */
  assert_null(mem_reserve_at(&mem, arena, (uintptr_t)a));
  assert_null(mem_reserve_at(&mem, arena, (uintptr_t)b - arena / 2));
  char *c = mem_reserve(&mem, arena, arena);
  assert_non_null(c);
  assert_true(c != a && c != b);
  assert_true(nh_is_aligned((uintptr_t)c, arena));
  /* Trimming leaves nothing mapped around the aligned reservation. */
  char perms[5];
  assert_int_equal(maps_perms(c, perms), 0);
  assert_int_equal(maps_perms(c + arena - 1, perms), 0);
  assert_int_equal(nh_stat_get(&mem.stats.reserved), 3 * arena);
  assert_int_equal(mem_unreserve(&mem, a, arena, 0, 0), 0);
  assert_int_equal(mem_unreserve(&mem, b, arena, 0, 0), 0);
  assert_int_equal(mem_unreserve(&mem, c, arena, 0, 0), 0);
  assert_int_equal(nh_stat_get(&mem.stats.reserved), 0);
}

static void test_bind(void **state) {
  char *p = mem_reserve(&mem, LEN, NH_HUGE_PAGE);
  assert_int_equal(mem_commit(&mem, p, LEN, NH_BACKING_SMALL), 0);
  int rc = mem_bind(&mem, p, LEN, 0, 1, false);
  if (rc == -EPERM) {   /* a container's seccomp profile may forbid mbind */
    mem_unreserve(&mem, p, LEN, LEN, 0);
    skip();
  }
  assert_int_equal(rc, 0);
  assert_int_equal(mem_bind(&mem, p, LEN, 0, 1, true), 0);
  /* A node past the machine's is refused before the kernel is asked. */
  assert_int_equal(mem_bind(&mem, p, LEN, 1, 1, false), -EINVAL);
  assert_int_equal(mem_bind(&mem, p, LEN, -1, 1, false), -EINVAL);
  touch(p, LEN);
  assert_int_equal(mem_unreserve(&mem, p, LEN, LEN, 0), 0);
}

static void test_hugetlb_commit_without_pool_keeps_reservation(void **state) {
  if (os_linux.hugetlb_free_pages() >= 4)
    skip();  /* a pool is set up: the failure cannot be provoked here (test_hugetlb covers it) */
  char *p = mem_reserve(&mem, LEN, NH_HUGE_PAGE);
  assert_int_equal(mem_commit(&mem, p, LEN, NH_BACKING_HUGETLB), -ENOMEM);
  char perms[5];
  assert_int_equal(maps_perms(p, perms), 0);
  assert_string_equal(perms, "---p");
  assert_int_equal(nh_stat_get(&mem.stats.mapped), 0);
  assert_int_equal(mem_unreserve(&mem, p, LEN, 0, 0), 0);
}

static void test_meta_alloc(void **state) {
  char *prev = NULL;
  for (int i = 0; i < 10000; i++) {
    char *m = mem_meta_alloc(&mem, 40, 64);
    assert_non_null(m);
    assert_true(nh_is_aligned((uintptr_t)m, 64));
    for (int j = 0; j < 40; j++)
      assert_int_equal(m[j], 0);
    memset(m, 0xab, 40);
    assert_true(m != prev);
    prev = m;
  }
  char *big = mem_meta_alloc(&mem, 1 << 20, 4096);
  assert_non_null(big);
  assert_true(nh_is_aligned((uintptr_t)big, 4096));
  memset(big, 1, 1 << 20);
  assert_true(nh_stat_get(&mem.stats.metadata) >= (1 << 20) + 10000 * 40);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_transitions, setup, teardown),
    cmocka_unit_test_setup_teardown(test_reserve_alignment_and_hint, setup, teardown),
    cmocka_unit_test_setup_teardown(test_bind, setup, teardown),
    cmocka_unit_test_setup_teardown(test_hugetlb_commit_without_pool_keeps_reservation, setup, teardown),
    cmocka_unit_test_setup_teardown(test_meta_alloc, setup, teardown),
  };
  return cmocka_run_group_tests_name("mem", tests, NULL, NULL);
}
