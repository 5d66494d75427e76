/*
 * vg.h — nheap's heap described to valgrind's memcheck, when the program runs under it.
 *
 * Under valgrind (RUNNING_ON_VALGRIND at nh_init) every object nheap hands out is announced as
 * a heap block (VALGRIND_MALLOCLIKE_BLOCK) and every object freed, explicitly or by the
 * collector's sweep, is retired (VALGRIND_FREELIKE_BLOCK), so memcheck reports use after free,
 * double frees and (with gc = off) leaks in a program's nheap objects as it does for malloc's.
 * Memory an object reuses is made addressable again before nheap zeroes it. The collector's
 * conservative scan reads words memcheck considers undefined (stacks, padding): error
 * reporting is off while it marks, and each word it reads is made defined (vg_defined) before
 * it is used. Valgrind has no rseq, so the caches run in lock mode and
 * every allocation and free passes the slow paths where these calls sit; the tiny allocator
 * (several objects per 16-byte block) is off, so that every object is a block of its own.
 * Not described: an object's size-class slack past what was asked (reads there pass), and
 * concurrent marking (it needs rseq: marking stops the world under valgrind).
 */
#ifndef NH_VG_H
#define NH_VG_H

#include <valgrind/memcheck.h>
#include <valgrind/valgrind.h>

#include "core/internal.h"

extern bool nh_valgrind;   /* set by nh_init */

static inline void vg_alloc(void *p, size_t bytes, bool zeroed) {
  if (nh_unlikely(nh_valgrind))
    VALGRIND_MALLOCLIKE_BLOCK(p, bytes, 0, zeroed);
}
/* Before nheap writes into memory a retired object held (zeroing a reused one). */
static inline void vg_reuse(void *p, size_t bytes) {
  if (nh_unlikely(nh_valgrind))
    (void)VALGRIND_MAKE_MEM_UNDEFINED(p, bytes);
}
static inline void vg_free(void *p) {
  if (nh_unlikely(nh_valgrind))
    VALGRIND_FREELIKE_BLOCK(p, 0);
}
/* A word the conservative scan read, made defined for memcheck: whether the program's word was
 * initialised must not flow into the mark bits (and from there into every count the sweep
 * makes); the program's own memory keeps its definedness. */
static inline uintptr_t vg_defined(uintptr_t v) {
  (void)VALGRIND_MAKE_MEM_DEFINED(&v, sizeof v);
  return v;
}
/* Error reporting off (true) / on (false) for the calling thread: the conservative scan. */
static inline void vg_quiet(bool quiet) {
  if (nh_unlikely(nh_valgrind)) {
    if (quiet)
      VALGRIND_DISABLE_ERROR_REPORTING;
    else
      VALGRIND_ENABLE_ERROR_REPORTING;
  }
}

#endif
