/*
 * events.h — perf event names, checked and encoded with libpfm4 (see events.c).
 */
#ifndef NH_PERF_EVENTS_H
#define NH_PERF_EVENTS_H

#include <stddef.h>

/* Checks that every name in the comma-separated list is an event libpfm4 can encode for this
 * machine. Returns 0, or -EINVAL after reporting the first unknown name with close matches and
 * `where` the value came from (options_source).
 * Whether the kernel can count it (no PMU in a VM) is decided when the counters open. */
int perf_events_check(const char *list, const char *where);

#endif
