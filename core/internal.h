/*
 * internal.h — what every nheap source file shares: build-level debug constants, graded
 * assertions, branch hints and small arithmetic helpers. Never installed.
 *
 * Debug levels (NH_DEBUG, set by CMake per build type, read as a constant, never #ifdef'd):
 *   0  Release: every nh_assert* compiles away.
 *   1  nh_assert_internal: cheap invariant checks on slow paths.
 *   2  Debug: also nh_assert_expensive, the validators (arena_validate, options_validate, ...).
 * nh_assert checks caller-visible preconditions and is on from level 1 as well; user mistakes
 * are never asserted: they go through the error funnel (error.h) and the call fails cleanly.
 */
#ifndef NH_INTERNAL_H
#define NH_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifndef NH_DEBUG
#define NH_DEBUG 0
#endif
enum { nh_config_debug = NH_DEBUG };

/* ThreadSanitizer owns fixed address ranges and rewrites mmap hints outside them (to 0, which
 * root may map); code that places memory at chosen addresses checks this constant. */
#if defined(__SANITIZE_THREAD__)
#define NH_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define NH_TSAN 1
#endif
#endif
#ifndef NH_TSAN
#define NH_TSAN 0
#endif
enum { nh_config_tsan = NH_TSAN };

#define nh_likely(x)   __builtin_expect(!!(x), 1)
#define nh_unlikely(x) __builtin_expect(!!(x), 0)
#define nh_noinline    __attribute__((noinline))
#define NH_NO_SANITIZE_ADDRESS __attribute__((no_sanitize("address")))
/* A read meant to race: the collector's scan of data segments, which nheap's own running
 * threads (sweeper, scavenger, perf counters) update meanwhile; they never store heap
 * pointers there, so what the scan reads of their words does not matter. */
#define NH_NO_SANITIZE_THREAD __attribute__((no_sanitize("thread")))
#define nh_cold        __attribute__((cold, noinline))
#define nh_printf(f, a) __attribute__((format(printf, f, a)))
#define NH_API         __attribute__((visibility("default")))
#define NH_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Internal invariant failure: prints the context and aborts (error.c). Never for user input. */
_Noreturn void nh_fatal(const char *fmt, ...) nh_printf(1, 2) nh_cold;
_Noreturn void nh_assert_fail(const char *expr, const char *file, int line, const char *func) nh_cold;

#define nh_assert_level(level, cond)                                                   \
  ((nh_config_debug >= (level) && nh_unlikely(!(cond)))                                \
       ? nh_assert_fail(#cond, __FILE__, __LINE__, __func__)                           \
       : (void)0)
#define nh_assert(cond)           nh_assert_level(1, cond)
#define nh_assert_internal(cond)  nh_assert_level(1, cond)
#define nh_assert_expensive(cond) nh_assert_level(2, cond)

static inline uintptr_t nh_align_up(uintptr_t x, uintptr_t a) { return (x + a - 1) & ~(a - 1); }
static inline uintptr_t nh_align_down(uintptr_t x, uintptr_t a) { return x & ~(a - 1); }
static inline bool nh_is_aligned(uintptr_t x, uintptr_t a) { return (x & (a - 1)) == 0; }

/* Relaxed statistics counters: exact totals, no ordering. */
static inline void nh_stat_add(uint64_t *c, int64_t d) { __atomic_fetch_add(c, (uint64_t)d, __ATOMIC_RELAXED); }
static inline uint64_t nh_stat_get(const uint64_t *c) { return __atomic_load_n(c, __ATOMIC_RELAXED); }

#endif
