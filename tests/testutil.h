/*
 * testutil.h — helpers shared by the cmocka tests: /proc/self/smaps readings, captured error
 * funnel messages, a scratch directory, and environment arrays.
 */
#ifndef NH_TESTUTIL_H
#define NH_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "nheap.h"

enum { TEST_SKIP = 77 };  /* CTest SKIP_RETURN_CODE */

/* Sum of an smaps field ("Rss", "AnonHugePages", "Private_Hugetlb") in kB over the mappings
 * that overlap [p, p+len); -1 if smaps is unreadable. */
long smaps_kb(const void *p, size_t len, const char *field);
/* Permissions ("rw-p", "---p") of the mapping holding p into out[5]; 0, or -1 if unmapped. */
int maps_perms(const void *p, char out[5]);

/* The error funnel, captured: install with capture_errors(); messages accumulate. */
typedef struct captured {
  int count;
  int last_code;
  char last[512];
  char all[4096];
} captured;
extern captured errors;
void capture_errors(void);
bool errors_contain(const char *needle);

/* A file with the given text in a fresh scratch directory; returns its path (static storage,
 * valid until the next call). */
const char *write_temp_file(const char *name, const char *text);

/* Runs fn(arg) with file descriptor fd redirected into a pipe; the output lands in out[n]
 * (NUL-terminated, cut at n-1 bytes; at most a pipe's buffer, 64 KiB). */
void capture_fd(int fd, void (*fn)(void *arg), void *arg, char *out, size_t n);

/* Unsets every NHEAP_* variable in this process's environment but NHEAP_DEBUG (which ctest
 * sets to run a test in another mode). */
void clear_nheap_env(void);

/* cmocka setup and teardown for cases that call nh_init themselves: both shut nheap down
 * (nh_shutdown is idempotent), so a case that failed half-way cannot leave it initialised for
 * the next, whose nh_init would then fail with -EBUSY. */
int fresh_heap(void **state);
int shut_heap(void **state);

/* Runs fn((void *)(first + i)) on n threads (at most 16) while the caller runs nh_gc() back to
 * back, until every thread has returned; then joins them. */
void run_with_cycles(void *(*fn)(void *), int n, uintptr_t first);

/* Runs nh_gc() once with a collection-event hook installed and checks the events it raised
 * (nh_set_gc_event_hook): one START first and one END last; stops and restarts alternating, each
 * PRE before its POST; MARK_START and MARK_END once each, inside a stop. Returns the number of
 * stops (one per pause). */
int check_gc_events(void);

#endif
