/*
 * error.h — the error funnel.
 *
 * One path for every user mistake (bad option, bad pointer, exhausted limit): nh_error formats
 * one line into a stack buffer and hands it to the handler installed with
 * nh_set_error_handler(), or writes "nheap: <msg>" to stderr. It never allocates from nheap (or
 * from malloc), so it is safe inside the allocator and inside a malloc replacement. The caller
 * then fails cleanly (NULL or a negative errno-style code): nheap never aborts on user input.
 * nh_warn is the same funnel with code 0: something degraded but works (a huge-page fallback
 * the user asked not to have). Internal invariant failures use nh_fatal (internal.h) instead.
 *
 * Reports are held back while the reporting thread holds an nheap lock (lock.c) or is inside a
 * no-stop region (gc.h): kept, two whole and the rest counted, and delivered, in order, when the
 * thread leaves the last of them, before the call that made them returns. So a handler never
 * runs under an allocator lock, nor where the collector cannot stop the world: it may call any
 * nheap function (nh_free, nh_stats_read, nh_gc, ...), as include/nheap.h says.
 */
#ifndef NH_ERROR_H
#define NH_ERROR_H

#include "core/internal.h"

void nh_error(int code, const char *fmt, ...) nh_printf(2, 3) nh_cold;
void nh_warn(const char *fmt, ...) nh_printf(1, 2) nh_cold;

/* Locks and no-stop regions this thread is inside; reports held back meanwhile. */
extern __thread unsigned nh_report_holds __attribute__((tls_model("initial-exec")));
extern __thread bool nh_reports_held __attribute__((tls_model("initial-exec")));
void error_deliver_held(void) nh_cold;

static inline void report_hold(void) { nh_report_holds++; }
static inline void report_release(void) {
  if (--nh_report_holds == 0 && nh_unlikely(nh_reports_held))
    error_deliver_held();
}

#endif
