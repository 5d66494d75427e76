/*
 * error.c — the error funnel and the fatal path (see error.h for the contract).
 *
 * The handler slot {fn, arg} is written under error_lock (rank LOCK_RANK_ERROR, a leaf) and
 * read without it (a sequence count, retried on a change), then called with no lock held: a
 * handler may itself call nh_set_error_handler or any nheap function that does not re-enter
 * the funnel recursively, and reporting never waits on a thread the collector has stopped.
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

/* error_seq is odd while a write is in progress. */
static nh_mutex_t error_lock = NH_MUTEX_INITIALIZER(LOCK_RANK_ERROR);
static nh_error_fn error_fn;   /* NULL = default handler */
static void *error_arg;
static unsigned error_seq;

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
  nh_error_fn fn;
  void *arg;
  for (;;) {
    unsigned seq = __atomic_load_n(&error_seq, __ATOMIC_ACQUIRE);
    fn = __atomic_load_n(&error_fn, __ATOMIC_RELAXED);
    arg = __atomic_load_n(&error_arg, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (!(seq & 1) && seq == __atomic_load_n(&error_seq, __ATOMIC_RELAXED))
      break;
  }
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
  __atomic_store_n(&error_seq, error_seq + 1, __ATOMIC_RELAXED);
  __atomic_thread_fence(__ATOMIC_RELEASE);
  __atomic_store_n(&error_fn, fn, __ATOMIC_RELAXED);
  __atomic_store_n(&error_arg, arg, __ATOMIC_RELAXED);
  __atomic_store_n(&error_seq, error_seq + 1, __ATOMIC_RELEASE);
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
