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
 */
#ifndef NH_ERROR_H
#define NH_ERROR_H

#include "core/internal.h"

void nh_error(int code, const char *fmt, ...) nh_printf(2, 3) nh_cold;
void nh_warn(const char *fmt, ...) nh_printf(1, 2) nh_cold;

#endif
