/*
 * test_options.c — the options table: defaults, every type, the precedence of the four
 * sources, size suffixes, bad values, bad files, unknown names, and the shipped presets.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/options.h"
#include "tests/testutil.h"

static nh_config_t cfg;
static char *no_env[] = {NULL};

static int setup(void **state) {
  capture_errors();
  return 0;
}

static void test_defaults(void **state) {
  assert_int_equal(options_load(&cfg, NULL, no_env), 0);
  assert_int_equal(cfg.gc, NH_GC_CONCURRENT);
  assert_int_equal(cfg.gc_percent, 100);
  assert_int_equal(cfg.memory_limit, 0);
  assert_int_equal(cfg.hugepages, NH_HUGEPAGES_AUTO);
  assert_string_equal(cfg.numa, "auto");
  assert_false(cfg.numa_off);
  assert_int_equal(cfg.numa_fake_nodes, 0);
  assert_int_equal(cfg.scavenger, 1);
  assert_int_equal(cfg.verbose, 0);
  assert_string_equal(cfg.perf_events, "");
  assert_int_equal(errors.count, 0);
  size_t n;
  const nh_option_desc *t = options_table(&n);
  assert_int_equal(n, NH_OPTION_COUNT);
  for (size_t i = 0; i < n; i++) {
    assert_non_null(t[i].help);
    assert_int_equal(cfg.src[i].origin, ORIGIN_DEFAULT);
  }
}

static void test_size_suffixes(void **state) {
  static const struct { const char *in; int64_t out; } ok[] = {
    {"0", 0}, {"4096", 4096}, {"12B", 12}, {"1k", 1024}, {"1KiB", 1024}, {"64MiB", 64ll << 20},
    {"64 MiB", 64ll << 20}, {"2g", 2ll << 30}, {"2GiB", 2ll << 30}, {"3TiB", 3ll << 40},
    {" 5m ", 5ll << 20}, {"8388607TiB", 8388607ll << 40},
  };
  char why[256];
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    int64_t v = -1;
    assert_true(options_parse_size(ok[i].in, &v, why, sizeof why));
    assert_int_equal(v, ok[i].out);
  }
  static const char *const bad[] = {"", "MiB", "-1", "1.5GiB", "10MB", "1PiB", "8388608TiB",
                                    "99999999999999999999", "1 2", "0x10"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int64_t v = 0;
    assert_false(options_parse_size(bad[i], &v, why, sizeof why));
    assert_true(strlen(why) > 0);
  }
}

static void test_every_type_from_env(void **state) {
  char *env[] = {
    "NHEAP_GC=stw",                       /* enum */
    "NHEAP_GC_PERCENT=-1",                /* int, lower bound */
    "NHEAP_MEMORY_LIMIT=512MiB",          /* size */
    "nheap_hugepages=THP",                /* case-insensitive name and value */
    "NHEAP_NUMA=fake:4",                  /* string with a syntax */
    "NHEAP_SCAVENGER=off",                /* bool */
    "NHEAP_PERF_EVENTS=task-clock,page-faults", /* dotted name */
    "NHEAP_DEBUG=gctrace=2,checkmark=1",
    "NHEAP_MARK_CPUS=0-2,5,7-7",          /* a CPU list */
    "OTHER=1",
    NULL,
  };
  assert_int_equal(options_load(&cfg, NULL, env), 0);
  assert_int_equal(cfg.gc, NH_GC_STW);
  assert_int_equal(cfg.gc_percent, -1);
  assert_int_equal(cfg.memory_limit, 512ll << 20);
  assert_int_equal(cfg.hugepages, NH_HUGEPAGES_THP);
  assert_int_equal(cfg.numa_fake_nodes, 4);
  assert_int_equal(cfg.scavenger, 0);
  assert_string_equal(cfg.perf_events, "task-clock,page-faults");
  assert_int_equal(cfg.dbg.gctrace, 2);
  assert_int_equal(cfg.dbg.checkmark, 1);
  assert_int_equal(cfg.dbg.scavtrace, 0);
  assert_int_equal(CPU_COUNT(&cfg.mark_cpuset), 5);
  for (int c = 0; c < 8; c++)
    assert_int_equal(CPU_ISSET(c, &cfg.mark_cpuset) != 0, c <= 2 || c == 5 || c == 7);
  assert_int_equal(errors.count, 0);
}

static void expect_env_error(const char *var, const char *needle);

static void test_go_names_in_env(void **state) {
  char *env[] = {"NHEAP_GOGC=off", "NHEAP_GOMEMLIMIT=4GiB", NULL};
  assert_int_equal(options_load(&cfg, NULL, env), 0);
  assert_int_equal(cfg.gc_percent, -1);
  assert_int_equal(cfg.memory_limit, 4ll << 30);
  char *env2[] = {"nheap_gogc=50", "NHEAP_GOMEMLIMIT=off", NULL};
  assert_int_equal(options_load(&cfg, NULL, env2), 0);
  assert_int_equal(cfg.gc_percent, 50);
  assert_int_equal(cfg.memory_limit, 0);
  expect_env_error("NHEAP_GOGC=lots", "not an integer");
}

static void test_bool_spellings(void **state) {
  static const char *const yes[] = {"1", "true", "YES", "on"}, *const no[] = {"0", "False", "no", "OFF"};
  char var[64];
  for (int i = 0; i < 4; i++) {
    snprintf(var, sizeof var, "NHEAP_VERBOSE=%s", yes[i]);
    char *env1[] = {var, NULL};
    assert_int_equal(options_load(&cfg, NULL, env1), 0);
    assert_int_equal(cfg.verbose, 1);
    snprintf(var, sizeof var, "NHEAP_VERBOSE=%s", no[i]);
    char *env0[] = {var, NULL};
    assert_int_equal(options_load(&cfg, NULL, env0), 0);
    assert_int_equal(cfg.verbose, 0);
  }
}

static void test_precedence(void **state) {
  const char *path = write_temp_file("prec.ini",
                                     "; precedence\n"
                                     "gc_percent = 50\n"
                                     "memory_limit = 1GiB\n"
                                     "hugepages = none\n"
                                     "[perf]\n"
                                     "events = page-faults\n");
  char config_var[300];
  snprintf(config_var, sizeof config_var, "NHEAP_CONFIG=%s", path);
  char *env[] = {config_var, "NHEAP_MEMORY_LIMIT=2GiB", "NHEAP_HUGEPAGES=thp", NULL};
  nh_options o;
  nh_options_init(&o);
  o.hugepages = NH_HUGEPAGES_HUGETLB;

  assert_int_equal(options_load(&cfg, &o, env), 0);
  assert_int_equal(cfg.gc_percent, 50);                /* file over default */
  assert_int_equal(cfg.memory_limit, 2ll << 30);       /* env over file */
  assert_int_equal(cfg.hugepages, NH_HUGEPAGES_HUGETLB); /* struct over env */
  assert_string_equal(cfg.perf_events, "page-faults"); /* [perf] section */
  assert_int_equal(cfg.gc, NH_GC_CONCURRENT);          /* untouched: default */
  assert_string_equal(cfg.config_file, path);

  size_t n;
  const nh_option_desc *t = options_table(&n);
  for (size_t i = 0; i < n; i++) {
    if (!strcmp(t[i].name, "gc_percent")) {
      assert_int_equal(cfg.src[i].origin, ORIGIN_FILE);
      assert_int_equal(cfg.src[i].line, 2);
    }
    if (!strcmp(t[i].name, "memory_limit"))
      assert_int_equal(cfg.src[i].origin, ORIGIN_ENV);
    if (!strcmp(t[i].name, "hugepages"))
      assert_int_equal(cfg.src[i].origin, ORIGIN_STRUCT);
  }

  /* nh_options.config_path wins over NHEAP_CONFIG. */
  const char *other = write_temp_file("other.ini", "[nheap]\ngc_percent = 75\n");
  o.config_path = other;
  assert_int_equal(options_load(&cfg, &o, env), 0);
  assert_int_equal(cfg.gc_percent, 75);
  assert_int_equal(errors.count, 0);
}

static void test_struct_values(void **state) {
  nh_options o;
  nh_options_init(&o);
  assert_int_equal(o.size, sizeof o);
  assert_true(o.gc == NH_UNSET && o.gc_percent == NH_UNSET && o.numa == NULL);
  o.gc = NH_GC_OFF;
  o.gc_percent = 0;
  o.numa = "off";
  o.debug = "scavtrace=1";
  assert_int_equal(options_load(&cfg, &o, no_env), 0);
  assert_int_equal(cfg.gc, NH_GC_OFF);
  assert_int_equal(cfg.gc_percent, 0);
  assert_true(cfg.numa_off);
  assert_int_equal(cfg.dbg.scavtrace, 1);

  o.gc = 7;
  assert_int_equal(options_load(&cfg, &o, no_env), -EINVAL);
  assert_true(errors_contain("nh_options.gc: 7 is not a valid value"));
  o.gc = NH_UNSET;
  o.mark_workers = 5000;
  assert_int_equal(options_load(&cfg, &o, no_env), -EINVAL);
  assert_true(errors_contain("nh_options.mark_workers: out of range (allowed: 0 .. 1024)"));
  o.mark_workers = NH_UNSET;
  o.perf_events = "a,,b";
  assert_int_equal(options_load(&cfg, &o, no_env), -EINVAL);
  assert_true(errors_contain("nh_options.perf_events"));
  o.perf_events = NULL;
  o.size = 8;
  assert_int_equal(options_load(&cfg, &o, no_env), -EINVAL);
  assert_true(errors_contain("nh_options.size"));
}

static void expect_env_error(const char *var, const char *needle) {
  char buf[256];
  snprintf(buf, sizeof buf, "%s", var);
  char *env[] = {buf, NULL};
  errors.all[0] = 0;
  assert_int_equal(options_load(&cfg, NULL, env), -EINVAL);
  if (!errors_contain(needle))
    fail_msg("for %s expected '%s' in: %s", var, needle, errors.all);
}

static void test_bad_env_values(void **state) {
  expect_env_error("NHEAP_GC_PERCENT=abc", "environment NHEAP_GC_PERCENT=\"abc\": not an integer (allowed: -1 .. 1000000)");
  expect_env_error("NHEAP_GC_PERCENT=-2", "out of range (allowed: -1 .. 1000000)");
  expect_env_error("NHEAP_GC_PERCENT=99999999999999999999999", "out of range");
  expect_env_error("NHEAP_GC=fast", "not one of concurrent|concurrent-nobarrier|stw|off");
  expect_env_error("NHEAP_MEMORY_LIMIT=10MB", "unknown size suffix 'MB'");
  expect_env_error("NHEAP_SCAVENGER=maybe", "not a boolean");
  expect_env_error("NHEAP_NUMA=fake:0", "auto|off|fake:N");
  expect_env_error("NHEAP_NUMA=fake:65", "auto|off|fake:N");
  expect_env_error("NHEAP_NUMA=two", "auto|off|fake:N");
  expect_env_error("NHEAP_DEBUG=gctrace", "'gctrace' is not name=value");
  expect_env_error("NHEAP_DEBUG=gctrace=9", "gctrace=9: allowed 0 .. 2");
  expect_env_error("NHEAP_DEBUG=verbose=1", "unknown diagnostic 'verbose'");
  expect_env_error("NHEAP_PERF_EVENTS=cycles,", "empty event name");
  expect_env_error("NHEAP_MARK_CPUS=0-", "not a CPU list such as 0-3,8 (at \"-\")");
  expect_env_error("NHEAP_MARK_CPUS=3-1", "not a CPU list");
  expect_env_error("NHEAP_MARK_CPUS=1,,2", "not a CPU list");
  expect_env_error("NHEAP_MARK_CPUS=1,", "not a CPU list");
  expect_env_error("NHEAP_MARK_CPUS=all", "not a CPU list");
  expect_env_error("NHEAP_MARK_CPUS=0-99999", "past the last one nheap can name (1023)");
  expect_env_error("NHEAP_PERF_EVENTS=cyc les", "does not accept");
  expect_env_error("NHEAP_GC_PERCNT=5", "unknown option 'gc_percnt' (did you mean 'gc_percent'?)");
  expect_env_error("NHEAP_ZZZZZZZZZZ=1", "unknown option 'zzzzzzzzzz' (NHEAP_VERBOSE=1 lists the options)");
  expect_env_error("NHEAP_PERF.EVENTS=cycles", "spell dots as underscores: NHEAP_PERF_EVENTS");
  assert_int_equal(errors.last_code, -EINVAL);
}

static void expect_file_error(const char *text, const char *needle) {
  const char *path = write_temp_file("bad.ini", text);
  nh_options o;
  nh_options_init(&o);
  o.config_path = path;
  errors.all[0] = 0;
  assert_int_equal(options_load(&cfg, &o, no_env), -EINVAL);
  char want[512];
  snprintf(want, sizeof want, "%s%s", path, needle);
  if (!errors_contain(want))
    fail_msg("expected '%s' in: %s", want, errors.all);
}

static void test_bad_files(void **state) {
  expect_file_error("gc = stw\ngc_percent = lots\n", ":2: gc_percent = \"lots\": not an integer");
  expect_file_error("; ok\n\nhugepages = giant\n", ":3: hugepages = \"giant\": not one of auto|hugetlb|thp|none");
  expect_file_error("gc_precent = 10\n", ":1: unknown option 'gc_precent' (did you mean 'gc_percent'?)");
  expect_file_error("[perf]\nevent = cycles\n", ":2: unknown option 'perf.event' (did you mean 'perf.events'?)");
  expect_file_error("[gc]\npercent = 10\n", ":2: unknown option 'gc.percent'");
  expect_file_error("gc = stw\nthis line has no equals sign\n", ":2: syntax error");
  expect_file_error("[unterminated\n", ":1: syntax error");
  /* The first error wins, whichever kind it is. */
  expect_file_error("bogus line\ngc = nope\n", ":1: syntax error");
  expect_file_error("gc = nope\nbogus line\n", ":1: gc = \"nope\"");
  char longline[400];
  memset(longline, 'x', sizeof longline);
  memcpy(longline, "debug = ", 8);
  longline[300] = '\n';
  longline[301] = 0;
  expect_file_error(longline, ":1: line longer than");

  nh_options o;
  nh_options_init(&o);
  o.config_path = "/nonexistent/nheap.ini";
  assert_int_equal(options_load(&cfg, &o, no_env), -ENOENT);
  assert_true(errors_contain("config file /nonexistent/nheap.ini: No such file or directory"));
  o.config_path = "/tmp";
  assert_int_equal(options_load(&cfg, &o, no_env), -EINVAL);
  assert_true(errors_contain("not a regular file"));
}

static void test_empty_and_comment_only_file(void **state) {
  nh_options o;
  nh_options_init(&o);
  o.config_path = write_temp_file("empty.ini", "");
  assert_int_equal(options_load(&cfg, &o, no_env), 0);
  o.config_path = write_temp_file("comments.ini", "; nothing\n# here\n\n[nheap]\n");
  assert_int_equal(options_load(&cfg, &o, no_env), 0);
  o.config_path = write_temp_file("noeol.ini", "gc_percent = 30");  /* no final newline */
  assert_int_equal(options_load(&cfg, &o, no_env), 0);
  assert_int_equal(cfg.gc_percent, 30);
  /* An indented key is a key (not a continuation of the line before). */
  o.config_path = write_temp_file("indent.ini", "gc = stw\n  gc_percent = 50\n\t[perf]\n\tevents = page-faults\n");
  assert_int_equal(options_load(&cfg, &o, no_env), 0);
  assert_int_equal(cfg.gc, NH_GC_STW);
  assert_int_equal(cfg.gc_percent, 50);
  assert_string_equal(cfg.perf_events, "page-faults");
  assert_int_equal(errors.count, 0);
}

static void test_presets_load(void **state) {
  static const char *const presets[] = {"default", "server", "low-latency", "profiling", "numa-scaling"};
  for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
    char path[512];
    snprintf(path, sizeof path, "%s/configs/%s.ini", NHEAP_SOURCE_DIR, presets[i]);
    nh_options o;
    nh_options_init(&o);
    o.config_path = path;
    if (options_load(&cfg, &o, no_env) != 0)
      fail_msg("preset %s: %s", presets[i], errors.all);
  }
  assert_int_equal(errors.count, 0);
}

static void print_config(void *arg) {
  options_print(&cfg, 1);
}

static void test_verbose_print(void **state) {
  nh_options o;
  nh_options_init(&o);
  o.memory_limit = 3ll << 30;
  char *env[] = {"NHEAP_GC_PERCENT=42", NULL};
  assert_int_equal(options_load(&cfg, &o, env), 0);
  char out[8192];
  capture_fd(1, print_config, NULL, out, sizeof out);
  assert_non_null(strstr(out, "gc_percent    = 42"));
  assert_non_null(strstr(out, "[environment]"));
  assert_non_null(strstr(out, "memory_limit  = 3GiB"));
  assert_non_null(strstr(out, "[nh_options]"));
  assert_non_null(strstr(out, "hugepages     = auto"));
  size_t count;
  const nh_option_desc *t = options_table(&count);
  for (size_t i = 0; i < count; i++)
    assert_non_null(strstr(out, t[i].name));
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup(test_defaults, setup),
    cmocka_unit_test_setup(test_size_suffixes, setup),
    cmocka_unit_test_setup(test_every_type_from_env, setup),
    cmocka_unit_test_setup(test_go_names_in_env, setup),
    cmocka_unit_test_setup(test_bool_spellings, setup),
    cmocka_unit_test_setup(test_precedence, setup),
    cmocka_unit_test_setup(test_struct_values, setup),
    cmocka_unit_test_setup(test_bad_env_values, setup),
    cmocka_unit_test_setup(test_bad_files, setup),
    cmocka_unit_test_setup(test_empty_and_comment_only_file, setup),
    cmocka_unit_test_setup(test_presets_load, setup),
    cmocka_unit_test_setup(test_verbose_print, setup),
  };
  return cmocka_run_group_tests_name("options", tests, NULL, NULL);
}
