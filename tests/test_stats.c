/*
 * test_stats.c — the statistics as a server reads them: one consistent snapshot under load
 * (in use + free + released = mapped in every one of 10,000 reads while 4 threads allocate and
 * free), the pause histogram and the percentiles read from it, single counters (nh_stat), and
 * nh_stats_write's formats and failures. The formats' contents are checked by real parsers in
 * tests/stats_check.sh. NH_TEST_GC picks the collector for the load (default off, the mode
 * that runs under ThreadSanitizer; ctest also runs stw and concurrent).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/timehist.h"
#include "tests/testutil.h"

static int setup(void **state) {
  (void)state;
  clear_nheap_env();
  capture_errors();
  return 0;
}

static nh_gc_mode test_mode(void) {
  const char *m = getenv("NH_TEST_GC");
  if (!m || !strcmp(m, "off"))
    return NH_GC_OFF;
  return !strcmp(m, "stw") ? NH_GC_STW : NH_GC_CONCURRENT;
}

static void init_mode(nh_gc_mode mode) {
  nh_options o;
  nh_options_init(&o);
  o.gc = mode;
  assert_int_equal(nh_init(&o), 0);
}

/* ---------------------------------------------------------------------------------------------
 * The histogram (core/timehist.h) alone.
 * ------------------------------------------------------------------------------------------- */

static void test_timehist_buckets(void **state) {
  (void)state;
  /* Every bucket's bound is above the last, each duration lies below its bucket's bound and at
   * or above the one before, and a bound is at most 25% over the bucket's lower edge. */
  for (unsigned i = 1; i + 1 < NH_HIST_BUCKETS; i++) {
    assert_true(timehist_upper(i) > timehist_upper(i - 1));
    if (i > 1)
      assert_true(timehist_upper(i) - timehist_upper(i - 1) <= timehist_upper(i - 1) / NH_HIST_SUB);
  }
  uint64_t probes[] = {0, 1, 1023, 1024, 1279, 1280, 2047, 2048, 999999, 1000000, 123456789, (1ull << 36) - 1,
                       1ull << 36, UINT64_MAX};
  for (size_t k = 0; k < sizeof probes / sizeof *probes; k++) {
    unsigned b = timehist_bucket(probes[k]);
    assert_true(b < NH_HIST_BUCKETS);
    assert_true(probes[k] < timehist_upper(b) || b == NH_HIST_BUCKETS - 1);
    if (b > 0)
      assert_true(probes[k] >= timehist_upper(b - 1));
  }
}

static void test_timehist_percentiles(void **state) {
  (void)state;
  static nh_timehist_t h;
  memset(&h, 0, sizeof h);
  assert_int_equal(timehist_percentile(&h, 50, 0), 0);
  /* 1..1000 µs: the median is 500 µs, the 99th 990 µs; each read within a bucket (25%) above. */
  for (uint64_t us = 1; us <= 1000; us++)
    timehist_record(&h, us * 1000);
  uint64_t p50 = timehist_percentile(&h, 50, 1000000), p99 = timehist_percentile(&h, 99, 1000000);
  assert_true(p50 >= 500000 && p50 <= 625000);
  assert_true(p99 >= 990000 && p99 <= 1000000);   /* capped at the max */
  nh_timehist_t copy;
  assert_int_equal(timehist_read(&h, &copy), 1000);
  assert_int_equal(copy.sum_ns, 1000 * 1001 / 2 * 1000);
}

/* ---------------------------------------------------------------------------------------------
 * One snapshot under load.
 * ------------------------------------------------------------------------------------------- */

static atomic_int stop_load;
static atomic_ulong load_ops;   /* allocations so far, all threads */

/* Allocates and frees small and large objects (large ones take pages from the page heap and
 * give them back, the small ones spans), keeping a window of 64 alive; under a collector the
 * window's oldest is dropped, under gc = off freed. */
static void *load(void *arg) {
  uint64_t rng = (uintptr_t)arg * 0x9e3779b97f4a7c15u + 1;
  void *keep[64] = {0};
  bool manual = test_mode() == NH_GC_OFF;
  for (unsigned i = 0; !atomic_load_explicit(&stop_load, memory_order_relaxed); i++) {
    rng = rng * 6364136223846793005u + 1442695040888963407u;
    size_t r = rng >> 33;
    size_t size = r % 8 == 0 ? 40000 + r % 300000 : 16 + r % 2000;
    unsigned slot = i % 64;
    if (manual)
      nh_free(keep[slot]);
    keep[slot] = nh_alloc(size);
    if (!keep[slot])
      abort();   /* not a cmocka assertion: this is not the test's thread */
    memset(keep[slot], 1, 16);
    atomic_fetch_add_explicit(&load_ops, 1, memory_order_relaxed);
    if (i % 4096 == 0)
      nh_scavenge(1 << 20);   /* free pages -> released, and back on the next allocation */
  }
  for (unsigned s = 0; manual && s < 64; s++)
    nh_free(keep[s]);
  return NULL;
}

static void test_snapshot_identity_under_load(void **state) {
  (void)state;
  nh_gc_mode mode = test_mode();
  init_mode(mode);
  atomic_store(&stop_load, 0);
  atomic_store(&load_ops, 0);
  pthread_t t[4];
  for (int i = 0; i < 4; i++)
    assert_int_equal(pthread_create(&t[i], NULL, load, (void *)(uintptr_t)(i + 1)), 0);
  while (atomic_load(&load_ops) < 4096)   /* the load is running: the reads land in it */
    sched_yield();
  unsigned long ops0 = atomic_load(&load_ops);
  uint64_t last_cycles = 0, last_mapped = 0;
  for (int i = 0; i < 10000; i++) {
    nh_stats_t s = {.size = sizeof s};
    assert_int_equal(nh_stats_read(&s), 0);
    /* The identity, with no part wrapped below zero, and the mapped heap whole arenas. */
    assert_true(s.heap_inuse_bytes <= s.heap_mapped_bytes);
    assert_true(s.heap_free_bytes <= s.heap_mapped_bytes);
    assert_true(s.heap_released_bytes <= s.heap_mapped_bytes);
    if (s.heap_inuse_bytes + s.heap_free_bytes + s.heap_released_bytes != s.heap_mapped_bytes)
      fail_msg("snapshot %d: in use %llu + free %llu + released %llu != mapped %llu", i,
               (unsigned long long)s.heap_inuse_bytes, (unsigned long long)s.heap_free_bytes,
               (unsigned long long)s.heap_released_bytes, (unsigned long long)s.heap_mapped_bytes);
    assert_int_equal(s.heap_mapped_bytes % (64 << 20), 0);
    /* Counters never go back; the arenas are never unmapped. */
    assert_true(s.gc_cycles >= last_cycles && s.heap_mapped_bytes >= last_mapped);
    last_cycles = s.gc_cycles, last_mapped = s.heap_mapped_bytes;
    assert_true(s.pause_p50_ns <= s.pause_p99_ns && s.pause_p99_ns <= s.pause_max_ns);
    if (mode != NH_GC_OFF && i % 1000 == 999)
      nh_gc();   /* cycles (and their sweeps' page frees) in the middle of the reads */
  }
  unsigned long ops = atomic_load(&load_ops) - ops0;
  atomic_store(&stop_load, 1);
  for (int i = 0; i < 4; i++)
    pthread_join(t[i], NULL);
  assert_int_equal(errors.count, 0);
  print_message("10000 snapshots during %lu allocations\n", ops);
}

/* ---------------------------------------------------------------------------------------------
 * Pauses, percentiles and single counters.
 * ------------------------------------------------------------------------------------------- */

static void test_pause_percentiles_and_single_counters(void **state) {
  (void)state;
  if (test_mode() == NH_GC_OFF)
    init_mode(NH_GC_STW);   /* some pauses to read */
  else
    init_mode(test_mode());
  for (int i = 0; i < 20; i++)
    nh_gc();
  nh_stats_t s = {.size = sizeof s};
  assert_int_equal(nh_stats_read(&s), 0);
  assert_true(s.gc_cycles >= 20 && s.gc_pauses >= 20);
  assert_true(s.pause_p50_ns > 0 && s.pause_p50_ns <= s.pause_p99_ns && s.pause_p99_ns <= s.pause_max_ns);
  /* Against the ring of the last pauses (all of them, here): the histogram's median is at or
   * above the exact one, and within one bucket (25%) of it. */
  uint64_t ns[256];
  size_t n = nh_gc_pauses(ns, 256);
  assert_int_equal(n, s.gc_pauses);
  for (size_t i = 1; i < n; i++)   /* insertion sort */
    for (size_t j = i; j > 0 && ns[j - 1] > ns[j]; j--) {
      uint64_t t = ns[j];
      ns[j] = ns[j - 1];
      ns[j - 1] = t;
    }
  uint64_t exact = ns[(n * 50 + 99) / 100 - 1];
  assert_true(s.pause_p50_ns >= exact);
  assert_true(s.pause_p50_ns <= exact + exact / 4 + 1024);
  /* Single counters agree with the snapshot where nothing moves in between. */
  assert_int_equal(nh_stat(NH_STAT_GC_CYCLES), s.gc_cycles);
  assert_int_equal(nh_stat(NH_STAT_GC_PAUSES), s.gc_pauses);
  assert_int_equal(nh_stat(NH_STAT_PAUSE_TOTAL_NS), s.pause_total_ns);
  assert_int_equal(nh_stat(NH_STAT_HEAP_MAPPED), s.heap_mapped_bytes);
  assert_int_equal(nh_stat(NH_STAT_HEAP_INUSE), s.heap_inuse_bytes);
  assert_int_equal(nh_stat(NH_STAT_HEAP_GOAL), s.heap_goal_bytes);
  assert_int_equal(nh_stat(NH_STAT_METADATA), s.metadata_bytes);
  assert_int_equal(nh_stat(NH_STAT_HEAP_BACKED), s.heap_mapped_bytes - s.heap_released_bytes);
  assert_int_equal(errors.count, 0);
  assert_int_equal(nh_stat(NH_STAT_IDS), 0);
  assert_int_equal(errors.count, 1);
  assert_int_equal(errors.last_code, -EINVAL);
}

/* ---------------------------------------------------------------------------------------------
 * nh_stats_write.
 * ------------------------------------------------------------------------------------------- */

/* What nh_stats_write(fmt) wrote, through a file (no pipe to fill), into buf. */
static size_t written(nh_stats_format fmt, char *buf, size_t n) {
  const char *path = write_temp_file("stats.out", "");
  int fd = open(path, O_RDWR | O_TRUNC);
  assert_true(fd >= 0);
  assert_int_equal(nh_stats_write(fd, fmt), 0);
  ssize_t got = pread(fd, buf, n - 1, 0);
  assert_true(got > 0);
  buf[got] = 0;
  close(fd);
  return (size_t)got;
}

static void test_write_formats(void **state) {
  (void)state;
  assert_int_equal(nh_stats_write(1, NH_STATS_JSON), -ENODEV);
  init_mode(test_mode());
  for (int i = 0; i < 100; i++)
    assert_non_null(nh_alloc(1000 + (size_t)i));
  static char buf[1 << 20];
  size_t n = written(NH_STATS_JSON, buf, sizeof buf);
  assert_true(n < sizeof buf - 1);   /* all of it */
  assert_true(buf[0] == '{' && !strcmp(buf + n - 2, "}\n"));
  assert_non_null(strstr(buf, "\"pause_histograms\""));
  n = written(NH_STATS_OPENMETRICS, buf, sizeof buf);
  assert_true(n > 1000 && !strcmp(buf + n - 6, "# EOF\n"));
  assert_non_null(strstr(buf, "\nnheap_gc_pauses_seconds_bucket{le=\"+Inf\"} "));
  n = written(NH_STATS_TEXT, buf, sizeof buf);
  assert_true(!strncmp(buf, "nheap: heap    reserved", 23));
  assert_int_equal(errors.count, 0);
  /* An unknown format, through the funnel; a bad descriptor, as its errno. */
  assert_int_equal(nh_stats_write(1, (nh_stats_format)3), -EINVAL);
  assert_int_equal(errors.count, 1);
  assert_int_equal(errors.last_code, -EINVAL);
  assert_int_equal(nh_stats_write(-1, NH_STATS_JSON), -EBADF);
  assert_int_equal(nh_stats_print(-1), -EBADF);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_timehist_buckets),
      cmocka_unit_test(test_timehist_percentiles),
      cmocka_unit_test_setup_teardown(test_snapshot_identity_under_load, setup, shut_heap),
      cmocka_unit_test_setup_teardown(test_pause_percentiles_and_single_counters, setup, shut_heap),
      cmocka_unit_test_setup_teardown(test_write_formats, setup, shut_heap),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
