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

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_default_handler),
    cmocka_unit_test(test_custom_handler_and_restore),
    cmocka_unit_test(test_lock_order),
  };
  return cmocka_run_group_tests_name("error", tests, NULL, NULL);
}
