/*
 * test_sizeclasses.c — the generated size-class table keeps Go's promises: tail waste at most
 * 1/8 of the span, at most 1024 objects per span, sizes increasing and aligned, the lookup
 * tables give the smallest class that fits every size from 1 to 32 KiB, and divmagic divides
 * exactly at every byte offset of every span class.
 */
#include "core/sizeclasses.h"
#include "tests/testutil.h"

static int size_to_class(int s) {
  return s <= NH_SMALL_SIZE_MAX ? nh_size_to_class8[(s + 7) / 8]
                                : nh_size_to_class128[(s - NH_SMALL_SIZE_MAX + 127) / 128];
}

static void test_table_bounds(void **state) {
  assert_int_equal(NH_NUM_SIZE_CLASSES, 68);
  assert_int_equal(nh_class_to_size[NH_NUM_SIZE_CLASSES - 1], NH_MAX_SMALL_SIZE);
  for (int c = 1; c < NH_NUM_SIZE_CLASSES; c++) {
    int size = nh_class_to_size[c], span = nh_class_to_npages[c] * NH_PAGE_SIZE;
    assert_true(size > nh_class_to_size[c - 1]);
    assert_int_equal(size % 8, 0);
    if (size >= 32)
      assert_int_equal(size % 16, 0);
    assert_true(span % size <= span / 8);              /* tail waste <= 12.5% */
    assert_true(span / size <= NH_MAX_OBJS_PER_SPAN);
    assert_true(span / size >= 1);
  }
  /* The tiny allocator's blocks are this class's objects, in one-page spans (span.h). */
  assert_int_equal(nh_class_to_size[2], 16);   /* NH_TINY_SIZECLASS, NH_TINY_BLOCK */
  assert_int_equal(nh_class_to_npages[2], 1);
}

static void test_lookup_is_smallest_fit(void **state) {
  for (int s = 1; s <= NH_MAX_SMALL_SIZE; s++) {
    int c = size_to_class(s);
    if (c < 1 || c >= NH_NUM_SIZE_CLASSES || nh_class_to_size[c] < s || nh_class_to_size[c - 1] >= s)
      fail_msg("size %d maps to class %d (%d bytes)", s, c, nh_class_to_size[c]);
  }
}

static void test_divmagic_exact(void **state) {
  for (int c = 1; c < NH_NUM_SIZE_CLASSES; c++) {
    uint64_t size = nh_class_to_size[c], span = (uint64_t)nh_class_to_npages[c] * NH_PAGE_SIZE;
    for (uint64_t off = 0; off <= span; off++)
      if ((off * nh_class_to_divmagic[c]) >> 32 != off / size)
        fail_msg("class %d: divmagic wrong at offset %llu", c, (unsigned long long)off);
  }
}

static void test_divisibility_exact(void **state) {
  /* The free path's interior-pointer check (span_is_object_start). */
  for (int c = 1; c < NH_NUM_SIZE_CLASSES; c++) {
    uint32_t m = nh_class_to_divmagic[c], size = nh_class_to_size[c];
    uint64_t span = (uint64_t)nh_class_to_npages[c] * NH_PAGE_SIZE;
    for (uint64_t off = 0; off < span; off++)
      if (((uint32_t)(off * m) < m) != (off % size == 0))
        fail_msg("class %d: divisibility test wrong at offset %llu", c, (unsigned long long)off);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_table_bounds),
    cmocka_unit_test(test_lookup_is_smallest_fit),
    cmocka_unit_test(test_divmagic_exact),
    cmocka_unit_test(test_divisibility_exact),
  };
  return cmocka_run_group_tests_name("sizeclasses", tests, NULL, NULL);
}
