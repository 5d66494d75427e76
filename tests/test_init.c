/*
 * test_init.c — the public life cycle: nh_init / nh_shutdown, statistics, and every way
 * start-up can be refused (bad option, bad file, missing file, unknown perf event, impossible
 * fake topology), each reported through the funnel and leaving nheap uninitialised.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/testutil.h"

static int setup(void **state) {
  clear_nheap_env();
  capture_errors();
  return 0;
}

static int teardown(void **state) {
  nh_shutdown();
  return 0;
}

static void assert_not_initialised(void) {
  nh_stats_t s = {.size = sizeof s};
  assert_int_equal(nh_stats_read(&s), -ENODEV);
  assert_int_equal(nh_stats_arenas(NULL, 0), -ENODEV);
}

static void test_init_stats_shutdown_reinit(void **state) {
  assert_not_initialised();
  assert_int_equal(nh_init(NULL), 0);
  nh_stats_t s = {.size = sizeof s};
  assert_int_equal(nh_stats_read(&s), 0);
  assert_int_equal(s.size, sizeof s);
  assert_int_equal(s.arenas, 1);
  assert_int_equal(s.heap_reserved_bytes, 64 << 20);
  assert_int_equal(s.heap_mapped_bytes, 64 << 20);
  assert_int_equal(s.heap_released_bytes, 64 << 20);
  assert_int_equal(s.heap_inuse_bytes, 0);
  assert_int_equal(s.arenas_hugetlb + s.arenas_thp + s.arenas_small, 1);
  assert_true(s.metadata_bytes > 0);
  assert_true(s.numa_nodes >= 1);
  assert_int_equal(s.gc_cycles, 0);

  nh_arena_stat_t a[4];
  assert_int_equal(nh_stats_arenas(a, 4), 1);
  assert_int_equal(a[0].bytes, 64 << 20);
  assert_int_equal(a[0].base & ((64 << 20) - 1), 0);
  assert_int_equal(a[0].wanted, NH_HUGEPAGES_AUTO);
  assert_int_equal(nh_stats_arenas(NULL, 0), 1);

  /* A second nh_init is refused and changes nothing. */
  assert_int_equal(nh_init(NULL), -EBUSY);
  assert_true(errors_contain("already initialised"));
  assert_int_equal(nh_stats_arenas(NULL, 0), 1);

  nh_shutdown();
  assert_not_initialised();
  nh_shutdown();  /* harmless when not initialised */
  assert_int_equal(nh_init(NULL), 0);
  assert_int_equal(nh_stats_arenas(NULL, 0), 1);
}

static void test_stats_struct_sizes(void **state) {
  assert_int_equal(nh_init(NULL), 0);
  /* An older, smaller struct gets its prefix; nothing past it is written. */
  struct { nh_stats_t s; char guard[8]; } big;
  memset(&big, 0x5a, sizeof big);
  big.s.size = offsetof(nh_stats_t, heap_inuse_bytes);
  assert_int_equal(nh_stats_read(&big.s), 0);
  assert_int_equal(big.s.heap_reserved_bytes, 64 << 20);
  assert_int_equal(big.s.heap_mapped_bytes, 64 << 20);
  for (size_t i = offsetof(nh_stats_t, heap_inuse_bytes); i < sizeof big; i++)
    assert_int_equal(((unsigned char *)&big)[i], 0x5a);
  nh_stats_t s = {.size = 0};
  assert_int_equal(nh_stats_read(&s), -EINVAL);
  assert_int_equal(nh_stats_read(NULL), -EINVAL);
  assert_true(errors_contain("nh_stats_read"));
}

static void test_options_reach_the_heap(void **state) {
  nh_options o;
  nh_options_init(&o);
  o.hugepages = NH_HUGEPAGES_NONE;
  o.numa = "fake:2";
  assert_int_equal(nh_init(&o), 0);
  nh_stats_t s = {.size = sizeof s};
  assert_int_equal(nh_stats_read(&s), 0);
  assert_int_equal(s.arenas_small, 1);
  assert_int_equal(s.numa_nodes, 2);
  nh_arena_stat_t a;
  assert_int_equal(nh_stats_arenas(&a, 1), 1);
  assert_int_equal(a.backing, NH_BACKING_SMALL);
  assert_int_equal(a.wanted, NH_HUGEPAGES_NONE);
  nh_shutdown();

  setenv("NHEAP_HUGEPAGES", "thp", 1);
  assert_int_equal(nh_init(NULL), 0);
  assert_int_equal(nh_stats_arenas(&a, 1), 1);
  assert_int_equal(a.wanted, NH_HUGEPAGES_THP);
  unsetenv("NHEAP_HUGEPAGES");
}

static void test_refused_start_ups(void **state) {
  nh_options o;
  nh_options_init(&o);
  o.gc_percent = -5;
  assert_int_equal(nh_init(&o), -EINVAL);
  assert_true(errors_contain("nh_options.gc_percent"));
  assert_not_initialised();

  nh_options_init(&o);
  o.config_path = "/nonexistent.ini";
  assert_int_equal(nh_init(&o), -ENOENT);
  assert_not_initialised();

  nh_options_init(&o);
  o.config_path = write_temp_file("bad.ini", "numa = fake:1\nmark_workers = many\n");
  assert_int_equal(nh_init(&o), -EINVAL);
  assert_true(errors_contain("bad.ini:2: mark_workers = \"many\""));
  assert_not_initialised();

  setenv("NHEAP_GC", "sometimes", 1);
  assert_int_equal(nh_init(NULL), -EINVAL);
  assert_true(errors_contain("environment NHEAP_GC=\"sometimes\""));
  unsetenv("NHEAP_GC");
  assert_not_initialised();

  nh_options_init(&o);
  o.perf_events = "page-faults,cyclez";
  assert_int_equal(nh_init(&o), -EINVAL);
  assert_true(errors_contain("unknown event 'cyclez'"));
  assert_not_initialised();

  nh_options_init(&o);
  o.numa = "fake:64";
  if (sysconf(_SC_NPROCESSORS_CONF) < 64) {
    assert_int_equal(nh_init(&o), -EINVAL);
    assert_true(errors_contain("CPUs to split into nodes"));
    assert_not_initialised();
  }
  /* After all that, a good start-up still works. */
  assert_int_equal(nh_init(NULL), 0);
}

static void test_perf_event_names(void **state) {
  nh_options o;
  nh_options_init(&o);
  o.perf_events = "task-clock,page-faults,perf::CONTEXT-SWITCHES,cycles,instructions";
  assert_int_equal(nh_init(&o), 0);   /* names are valid even where the PMU cannot count them */
  nh_shutdown();
  o.perf_events = "page-fault";
  assert_int_equal(nh_init(&o), -EINVAL);
  assert_true(errors_contain("nh_options.perf_events: perf.events: unknown event 'page-fault'"));
  assert_true(errors_contain("close matches"));
  assert_true(errors_contain("PAGE-FAULTS"));
  /* From a file, the message names the file and line. */
  nh_options_init(&o);
  o.config_path = write_temp_file("perf.ini", "gc = stw\n[perf]\nevents = task-clock,nosuchevent\n");
  assert_int_equal(nh_init(&o), -EINVAL);
  assert_true(errors_contain("perf.ini:3: perf.events: unknown event 'nosuchevent'"));
}

static void test_presets_start(void **state) {
  static const char *const presets[] = {"default", "server", "low-latency", "profiling", "numa-scaling"};
  for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
    char path[512];
    snprintf(path, sizeof path, "%s/configs/%s.ini", NHEAP_SOURCE_DIR, presets[i]);
    setenv("NHEAP_CONFIG", path, 1);
    if (nh_init(NULL) != 0)
      fail_msg("preset %s: %s", presets[i], errors.all);
    nh_shutdown();
  }
  unsetenv("NHEAP_CONFIG");
}

static void init_verbose_and_print(void *rc) {
  nh_options o;
  nh_options_init(&o);
  o.verbose = 1;
  *(int *)rc = nh_init(&o);
  nh_stats_print(2);
}

static void test_verbose_and_print(void **state) {
  char out[16384];
  int rc = -1;
  capture_fd(2, init_verbose_and_print, &rc, out, sizeof out);
  assert_int_equal(rc, 0);
  assert_non_null(strstr(out, "effective options"));
  assert_non_null(strstr(out, "verbose       = 1"));
  assert_non_null(strstr(out, "nheap: arenas  1"));
  assert_non_null(strstr(out, "nheap: 0       0x"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_init_stats_shutdown_reinit, setup, teardown),
    cmocka_unit_test_setup_teardown(test_stats_struct_sizes, setup, teardown),
    cmocka_unit_test_setup_teardown(test_options_reach_the_heap, setup, teardown),
    cmocka_unit_test_setup_teardown(test_refused_start_ups, setup, teardown),
    cmocka_unit_test_setup_teardown(test_perf_event_names, setup, teardown),
    cmocka_unit_test_setup_teardown(test_presets_start, setup, teardown),
    cmocka_unit_test_setup_teardown(test_verbose_and_print, setup, teardown),
  };
  return cmocka_run_group_tests_name("init", tests, NULL, NULL);
}
