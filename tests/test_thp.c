/*
 * test_thp.c — a THP arena on the real kernel is backed by transparent huge pages
 * (AnonHugePages in /proc/self/smaps), and releasing it really lowers RSS. Exits 77 when the
 * kernel has THP disabled or absent (nheap would fall back to 4 KiB pages, counted).
 */
#include <stdio.h>
#include <string.h>

#include "core/arena.h"
#include "tests/testutil.h"

#define TOUCH ((size_t)16 << 20)

static void test_thp_backing_and_release(void **state) {
  nh_mem_t mem;
  nh_arena_set_t set;
  mem_init(&mem, &os_linux);
  nh_arena_placement place = {.nnodes = 1};
  assert_int_equal(arena_set_init(&set, &mem, NH_HUGEPAGES_THP, place), 0);
  nh_arena_t *a = arena_create(&set, 0);
  assert_non_null(a);
  assert_int_equal(a->backing, NH_BACKING_THP);
  char *p = (char *)a->base;

  mem_use(&mem, p, TOUCH);
  for (size_t off = 0; off < TOUCH; off += 4096)
    p[off] = 1;
  long huge = smaps_kb(p, NH_ARENA_BYTES, "AnonHugePages");
  long rss = smaps_kb(p, NH_ARENA_BYTES, "Rss");
  print_message("THP arena: touched %zu KiB, Rss %ld kB, AnonHugePages %ld kB\n", TOUCH >> 10, rss, huge);
  /* The kernel may fail to find free 2 MiB frames for some faults; most must be huge. */
  assert_true(huge >= (long)(TOUCH >> 10) / 2);

  assert_int_equal(mem_release(&mem, p, TOUCH, NH_BACKING_THP), 0);
  long after = smaps_kb(p, NH_ARENA_BYTES, "Rss");
  print_message("after release: Rss %ld kB\n", after);
  assert_true(after < rss / 8);
  assert_int_equal(p[4096], 0);  /* released memory reads back as zero */

  arena_set_destroy(&set);
  mem_destroy(&mem);
}

int main(void) {
  nh_thp_mode mode = os_linux.thp_mode();
  if (mode != THP_MADVISE && mode != THP_ALWAYS) {
    fprintf(stderr, "test_thp: transparent huge pages are disabled or absent here; skipped\n");
    return TEST_SKIP;
  }
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_thp_backing_and_release)};
  return cmocka_run_group_tests_name("thp", tests, NULL, NULL);
}
