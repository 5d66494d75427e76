/*
 * error.c — the error funnel and the fatal path (see error.h for the contract).
 *
 * The handler slot {fn, arg} is guarded by error_lock (rank LOCK_RANK_ERROR, a leaf): it is
 * copied under the lock and called outside it, so a handler may itself call
 * nh_set_error_handler or any nheap function that does not re-enter the funnel recursively.
 * Messages are cut at NH_ERROR_MSG_MAX bytes.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nheap.h"
#include "core/error.h"
#include "core/lock.h"

enum { NH_ERROR_MSG_MAX = 512 };

static nh_mutex_t error_lock = NH_MUTEX_INITIALIZER(LOCK_RANK_ERROR);
static nh_error_fn error_fn;   /* guarded by error_lock; NULL = default handler */
static void *error_arg;        /* guarded by error_lock */

static void write_line(const char *prefix, const char *msg) {
  char line[NH_ERROR_MSG_MAX + 64];
  int n = snprintf(line, sizeof line, "nheap: %s%s\n", prefix, msg);
  if (n < 0)
    return;
  size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
  if (len == sizeof line - 1)
    line[len - 1] = '\n';
  for (size_t off = 0; off < len;) {
    ssize_t w = write(STDERR_FILENO, line + off, len - off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return;
    off += (size_t)w;
  }
}

static void funnel(int code, const char *fmt, va_list ap) {
  char msg[NH_ERROR_MSG_MAX];
  int saved_errno = errno;
  vsnprintf(msg, sizeof msg, fmt, ap);
  nh_mutex_lock(&error_lock);
  nh_error_fn fn = error_fn;
  void *arg = error_arg;
  nh_mutex_unlock(&error_lock);
  if (fn)
    fn(code, msg, arg);
  else
    write_line(code == 0 ? "warning: " : "", msg);
  errno = saved_errno;
}

void nh_error(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  funnel(code, fmt, ap);
  va_end(ap);
}

void nh_warn(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  funnel(0, fmt, ap);
  va_end(ap);
}

NH_API void nh_set_error_handler(nh_error_fn fn, void *arg) {
  nh_mutex_lock(&error_lock);
  error_fn = fn;
  error_arg = arg;
  nh_mutex_unlock(&error_lock);
}

NH_API const char *nh_strerror(int code) {
  return strerror(code < 0 ? -code : code);
}

_Noreturn void nh_fatal(const char *fmt, ...) {
  char msg[NH_ERROR_MSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  write_line("fatal: ", msg);
  abort();
}

_Noreturn void nh_assert_fail(const char *expr, const char *file, int line, const char *func) {
  nh_fatal("internal assertion '%s' failed at %s:%d in %s()", expr, file, line, func);
}
