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

__thread unsigned nh_report_holds __attribute__((tls_model("initial-exec")));
__thread bool nh_reports_held __attribute__((tls_model("initial-exec")));

/* The reports held back on this thread (error.h): the first HELD whole, the rest counted. */
enum { HELD = 2 };
static __thread struct {
  int code;
  char msg[NH_ERROR_MSG_MAX];
} held[HELD];
static __thread unsigned nheld, held_dropped;

static void deliver(int code, const char *msg) {
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
}

static void funnel(int code, const char *fmt, va_list ap) {
  int saved_errno = errno;
  if (nh_report_holds) {   /* under a lock or in a no-stop region: later */
    if (nheld < HELD) {
      held[nheld].code = code;
      vsnprintf(held[nheld].msg, sizeof held[nheld].msg, fmt, ap);
      nheld++;
    } else {
      held_dropped++;
    }
    nh_reports_held = true;
    errno = saved_errno;
    return;
  }
  char msg[NH_ERROR_MSG_MAX];
  vsnprintf(msg, sizeof msg, fmt, ap);
  deliver(code, msg);
  errno = saved_errno;
}

void error_deliver_held(void) {
  int saved_errno = errno;
  while (nh_reports_held && !nh_report_holds) {   /* a handler's own reports come after */
    int code[HELD];
    char msg[HELD][NH_ERROR_MSG_MAX];
    unsigned n = nheld, dropped = held_dropped;
    for (unsigned i = 0; i < n; i++) {
      code[i] = held[i].code;
      memcpy(msg[i], held[i].msg, sizeof msg[i]);
    }
    nheld = held_dropped = 0;
    nh_reports_held = false;
    for (unsigned i = 0; i < n; i++)
      deliver(code[i], msg[i]);
    if (dropped) {
      char more[96];
      snprintf(more, sizeof more, "%u more report(s) were made inside the allocator and dropped", dropped);
      deliver(code[n - 1], more);
    }
  }
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
