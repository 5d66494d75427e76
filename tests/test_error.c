/*
 * test_error.c — the error funnel (default line on stderr, custom handler, restore, long
 * messages cut to one line) and the debug-build lock-order check.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/error.h"
#include "core/lock.h"
#include "tests/testutil.h"

static void emit_two(void *arg) {
  nh_error(-EINVAL, "bad %s %d", "thing", 42);
  nh_warn("degraded");
}

static void emit_long(void *arg) {
  char big[2000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = 0;
  nh_error(-EINVAL, "%s", big);
}

static void test_default_handler(void **state) {
  nh_set_error_handler(NULL, NULL);
  char out[4096];
  capture_fd(2, emit_two, NULL, out, sizeof out);
  assert_string_equal(out, "nheap: bad thing 42\nnheap: warning: degraded\n");
  capture_fd(2, emit_long, NULL, out, sizeof out);
  assert_int_equal(strchr(out, '\n') - out, (long)strlen(out) - 1);  /* one line */
  assert_true(strncmp(out, "nheap: xxx", 10) == 0);
}

static void test_custom_handler_and_restore(void **state) {
  capture_errors();
  errno = 1234;
  nh_error(-ENOMEM, "out of %s", "memory");
  assert_int_equal(errno, 1234);  /* the funnel preserves errno */
  assert_int_equal(errors.count, 1);
  assert_int_equal(errors.last_code, -ENOMEM);
  assert_string_equal(errors.last, "out of memory");
  nh_warn("w");
  assert_int_equal(errors.last_code, 0);
  nh_set_error_handler(NULL, NULL);
  char out[256];
  capture_fd(2, emit_two, NULL, out, sizeof out);
  assert_int_equal(errors.count, 2);   /* the handler is gone */
  assert_non_null(strstr(out, "bad thing 42"));
  assert_string_equal(nh_strerror(-ENOMEM), strerror(ENOMEM));
}

static nh_mutex_t outer = NH_MUTEX_INITIALIZER(LOCK_RANK_INIT);
static nh_mutex_t inner = NH_MUTEX_INITIALIZER(LOCK_RANK_ARENAS);

static void test_lock_order(void **state) {
  nh_mutex_lock(&outer);
  nh_mutex_lock(&inner);      /* in order: fine */
  nh_mutex_assert_held(&inner);
  nh_mutex_unlock(&inner);
  nh_mutex_unlock(&outer);
  if (nh_config_debug < 1)
    skip();                   /* release builds do not track ranks */
  pid_t pid = fork();
  if (pid == 0) {
    close(2);                 /* the fatal message is expected; keep the log clean */
    nh_mutex_lock(&inner);
    nh_mutex_lock(&outer);    /* out of order: must abort */
    _exit(0);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
}

/* ---- a handler never runs under an nheap lock or inside a no-stop region ---- */

static nh_mutex_t cache_like = NH_MUTEX_INITIALIZER(LOCK_RANK_MCACHE);
static nh_mutex_t central_like = NH_MUTEX_INITIALIZER(LOCK_RANK_MCENTRAL);

static void test_reports_wait_for_locks(void **state) {
  capture_errors();
  int before = errors.count;
  nh_mutex_lock(&cache_like);
  nh_mutex_lock(&central_like);
  nh_error(-EINVAL, "first %d", 1);
  nh_warn("second");
  nh_error(-EINVAL, "third");
  assert_int_equal(errors.count, before);   /* held: two locks are held */
  nh_mutex_unlock(&central_like);
  assert_int_equal(errors.count, before);   /* one still is */
  nh_mutex_unlock(&cache_like);
  assert_int_equal(errors.count, before + 3);   /* in order, the third counted */
  assert_true(errors_contain("first 1"));
  assert_true(errors_contain("second"));
  assert_true(errors_contain("1 more report"));
  nh_error(-EINVAL, "now");   /* no lock: at once */
  assert_int_equal(errors.count, before + 4);
}

/* The review's case: a handler that calls back into nheap. A bad free is reported inside the
 * free path's no-stop region; the handler frees, reads the stats and collects (concurrent mode:
 * a stop of the world would wait for the reporting thread to leave its region, for ever). */
static void *handler_object;
static int handler_runs;
static void reentering_handler(int code, const char *msg, void *arg) {
  (void)code, (void)msg, (void)arg;
  handler_runs++;
  nh_stats_t s = {.size = sizeof s};
  if (nh_stats_read(&s) != 0)
    _exit(3);
  nh_free(handler_object);
  handler_object = NULL;
  nh_gc();
}

static void test_handler_may_call_nheap(void **state) {
  pid_t pid = fork();
  if (pid == 0) {
    alarm(120);   /* a deadlock is the failure: SIGALRM ends the child */
    clear_nheap_env();
    nh_options o;
    nh_options_init(&o);
    o.gc = NH_GC_CONCURRENT;
    o.hugepages = NH_HUGEPAGES_NONE;
    if (nh_init(&o) != 0)
      _exit(2);
    nh_set_error_handler(reentering_handler, NULL);
    char *p = nh_alloc(64);
    handler_object = nh_alloc(128);
    nh_free(p + 8);   /* an interior pointer: reported from inside the free path */
    nh_free(p);
    nh_free(p);       /* a double free: likewise */
    _exit(handler_runs == 2 && !handler_object ? 0 : 1);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_default_handler),
    cmocka_unit_test(test_custom_handler_and_restore),
    cmocka_unit_test(test_lock_order),
    cmocka_unit_test(test_reports_wait_for_locks),
    cmocka_unit_test(test_handler_may_call_nheap),
  };
  return cmocka_run_group_tests_name("error", tests, NULL, NULL);
}
