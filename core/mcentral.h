/*
 * mcentral.h — the spans of one (node, size class, object kind) (see mcentral.c).
 */
#ifndef NH_MCENTRAL_H
#define NH_MCENTRAL_H

#include "core/lock.h"
#include "core/pageheap.h"

/* An allocation class: size class and object kind; the span class follows from it. */
static inline unsigned allocclass_make(unsigned sizeclass, nh_obj_kind kind) { return sizeclass * NH_NUM_KINDS + kind; }
static inline unsigned allocclass_sizeclass(unsigned ac) { return ac == NH_AC_TINY ? NH_TINY_SIZECLASS : ac / NH_NUM_KINDS; }
static inline nh_obj_kind allocclass_kind(unsigned ac) { return ac == NH_AC_TINY ? NH_KIND_NOSCAN : (nh_obj_kind)(ac % NH_NUM_KINDS); }

typedef struct nh_span_list { nh_span_t *first; size_t count; } nh_span_list;

/* Empty spans an mcentral keeps instead of returning them to the page heap at once, so that a
 * class whose objects come and go in bursts does not churn the page heap: up to this many
 * bytes of spans (the scavenger's retain floor), and at least two spans. They count as free
 * memory (pageheap_live_pages), and the scavenger drops them first when free memory passes
 * its retain goal (scavenger.c), which bounds what all classes keep together. */
#define NH_MCENTRAL_KEEP_BYTES ((size_t)8 << 20)

struct nh_pace;

typedef struct nh_mcentral {
  nh_mutex_t lock;                 /* LOCK_RANK_MCENTRAL */
  struct nh_pace *pace;            /* the collector's pace (heap accounting, the memory limit); NULL: none */
  bool secure;                     /* secure = on: the sweep zeroes what it frees */
  unsigned allocclass;
  uint8_t spanclass;
  nh_pageheap_t *ph;
  /* Span sets indexed by sweepgen/2 % 2, as Go's: [sg/2%2] swept, [1 - sg/2%2] unswept. */
  nh_span_list partial[2];         /* some free objects; guarded by lock */
  nh_span_list full[2];            /* no free object; guarded by lock */
  uint32_t sweepgen;               /* the heap's, copied at each cycle; guarded by lock */
  uint32_t nempty;                 /* empty spans kept in partial (at most keep); guarded by lock */
  uint32_t keep;                   /* NH_MCENTRAL_KEEP_BYTES in spans of this class */
  uint64_t nspans;                 /* relaxed: spans of this class in use */
  uint64_t swept_spans, swept_large; /* relaxed: spans swept (lazily or in the background), large ones freed */
  /* Transfer cache (TCMalloc's): objects freed by per-CPU caches that overflowed, handed as a
   * batch to the next cache that runs dry, without touching their spans. They are allocated
   * as far as the spans know, like objects in a free stack. Guarded by lock. */
  void **xfer;
  uint32_t nxfer, capxfer;
} nh_mcentral_t;

void mcentral_init(nh_mcentral_t *c, unsigned allocclass, nh_pageheap_t *ph);

/* A span with at least one free object, now cached (owned) by the mcache of CPU owner, whose
 * lock the caller holds; NULL on OOM. */
nh_span_t *mcentral_cache_span(nh_mcentral_t *c, int owner);

/* The owner gives a cached span back. `cache` is the free mask of the word at s->freeindex
 * that the owner has not handed out (0 if it consumed the word); objects before that word
 * were all handed out. */
void mcentral_uncache_span(nh_mcentral_t *c, nh_span_t *s, uint64_t cache);

/* Explicit frees of objects idx[0..n) of span s (all of this class). Returns how many were
 * already free (double frees), which are reported by the caller and otherwise ignored. */
size_t mcentral_free(nh_mcentral_t *c, nh_span_t *s, const uint16_t *idx, size_t n);

/* The collector (mcentral.c, Go's mcentral + sweepLocked.sweep).
 * sweep_span: s was taken off an unswept set by the caller, who holds c->lock; it becomes
 *   swept (gcmark_bits turn into alloc_bits) and is filed in a swept set, or freed when
 *   empty (large: unmarked). Returns what became of it.
 * mcentral_sweep: sweeps every unswept span of c, taking the lock in bounded batches;
 *   returns the pages swept.
 * mcentral_flip: a new cycle's sweepgen (the world is stopped; every span swept).
 * Large spans (allocation classes 0 .. NH_NUM_KINDS - 1) live in their kind's full sets, so
 *   that the same sweep finds them: add_large after allocation, remove_large on an explicit
 *   free (false: the span is no longer live here, a double free). */
enum { SWEPT_FREED = -1, SWEPT_FULL = 0, SWEPT_PARTIAL = 1 };
int sweep_span(nh_mcentral_t *c, nh_span_t *s);
size_t mcentral_sweep(nh_mcentral_t *c);
void mcentral_flip(nh_mcentral_t *c, uint32_t sweepgen);
void mcentral_add_large(nh_mcentral_t *c, nh_span_t *s);
bool mcentral_remove_large(nh_mcentral_t *c, nh_span_t *s);

/* The transfer cache: take up to n objects (returns how many), put up to n (returns how many
 * it took, from the front of in), take everything (the collector's flush; up to max).
 * capacity: objects it may hold (0: none). */
void mcentral_xfer_init(nh_mcentral_t *c, uint32_t capacity);
size_t mcentral_xfer_take(nh_mcentral_t *c, void **out, size_t n);
size_t mcentral_xfer_put(nh_mcentral_t *c, void *const *in, size_t n);

/* Returns the empty spans it kept to the page heap (before scavenging). Returns how many. */
size_t mcentral_drop_empty(nh_mcentral_t *c);

/* Debug: list membership and counts agree with the bitmaps. */
void mcentral_validate(nh_mcentral_t *c);

#endif
