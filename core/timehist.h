/*
 * timehist.h — a histogram of durations that writers fill lock-free and readers summarise
 * without stopping them (Go's timeHistogram, runtime/histogram.go).
 *
 * Buckets are log-linear: below 2^10 ns (about 1 µs) one bucket; then each power of two from
 * 2^10 to 2^36 ns (about 69 s) split into NH_HIST_SUB linear sub-buckets; above, one overflow
 * bucket. A bucket's upper bound is at most 1 + 1/NH_HIST_SUB (25%) over its lower bound, which
 * bounds the error of a percentile read from it. 106 buckets: 848 bytes a histogram.
 *
 * Writers: timehist_record, one relaxed atomic add to the bucket and one to the sum; any
 * thread, any number at once. Readers: load the buckets (relaxed) in any order, never blocking
 * a writer. A reader racing a writer may see a record's bucket and not yet its sum, or the
 * reverse: each count and the sum are exact once the writers are quiet, and never torn.
 */
#ifndef NH_TIMEHIST_H
#define NH_TIMEHIST_H

#include <stdint.h>

#define NH_HIST_SUB_BITS 2
#define NH_HIST_SUB (1u << NH_HIST_SUB_BITS)       /* sub-buckets per power of two */
#define NH_HIST_MIN_SHIFT 10                       /* first power of two split: 2^10 ns */
#define NH_HIST_MAX_SHIFT 36                       /* past the last: 2^36 ns, the overflow */
#define NH_HIST_BUCKETS (1 + (NH_HIST_MAX_SHIFT - NH_HIST_MIN_SHIFT) * NH_HIST_SUB + 1)

typedef struct nh_timehist {
  uint64_t counts[NH_HIST_BUCKETS];   /* relaxed atomics */
  uint64_t sum_ns;                    /* relaxed atomic: every duration recorded, added */
} nh_timehist_t;

static inline unsigned timehist_bucket(uint64_t ns) {
  if (ns < (1ull << NH_HIST_MIN_SHIFT))
    return 0;
  unsigned e = 63u - (unsigned)__builtin_clzll(ns);
  if (e >= NH_HIST_MAX_SHIFT)
    return NH_HIST_BUCKETS - 1;
  unsigned sub = (unsigned)(ns >> (e - NH_HIST_SUB_BITS)) & (NH_HIST_SUB - 1);
  return 1 + (e - NH_HIST_MIN_SHIFT) * NH_HIST_SUB + sub;
}

/* The exclusive upper bound of bucket i in ns; UINT64_MAX for the overflow bucket. */
static inline uint64_t timehist_upper(unsigned i) {
  if (i == 0)
    return 1ull << NH_HIST_MIN_SHIFT;
  if (i >= NH_HIST_BUCKETS - 1)
    return UINT64_MAX;
  unsigned e = NH_HIST_MIN_SHIFT + (i - 1) / NH_HIST_SUB, sub = (i - 1) % NH_HIST_SUB;
  return (uint64_t)(NH_HIST_SUB + sub + 1) << (e - NH_HIST_SUB_BITS);
}

static inline void timehist_record(nh_timehist_t *h, uint64_t ns) {
  __atomic_fetch_add(&h->counts[timehist_bucket(ns)], 1, __ATOMIC_RELAXED);
  __atomic_fetch_add(&h->sum_ns, ns, __ATOMIC_RELAXED);
}

/* A reader's copy: the buckets, their total and the sum. */
static inline uint64_t timehist_read(const nh_timehist_t *h, nh_timehist_t *out) {
  uint64_t total = 0;
  for (unsigned i = 0; i < NH_HIST_BUCKETS; i++)
    total += out->counts[i] = __atomic_load_n(&h->counts[i], __ATOMIC_RELAXED);
  out->sum_ns = __atomic_load_n(&h->sum_ns, __ATOMIC_RELAXED);
  return total;
}

/* The pct-th percentile (0 < pct <= 100) of the durations in h: the upper bound of the bucket
 * that holds it, capped at max (the largest recorded: the overflow bucket's answer, and never
 * above the truth for the top bucket). 0 when h is empty. Two passes over the buckets. */
static inline uint64_t timehist_percentile(const nh_timehist_t *h, unsigned pct, uint64_t max) {
  uint64_t total = 0, seen = 0;
  for (unsigned i = 0; i < NH_HIST_BUCKETS; i++)
    total += __atomic_load_n(&h->counts[i], __ATOMIC_RELAXED);
  if (total == 0)
    return 0;
  uint64_t rank = (total * pct + 99) / 100;   /* the rank-th smallest, 1-based */
  for (unsigned i = 0; i < NH_HIST_BUCKETS; i++) {
    seen += __atomic_load_n(&h->counts[i], __ATOMIC_RELAXED);
    if (seen >= rank) {
      uint64_t up = timehist_upper(i);
      return up < max ? up : max;
    }
  }
  return max;   /* records came in between the two passes */
}

#endif
