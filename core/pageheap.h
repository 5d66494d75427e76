/*
 * pageheap.h — the page heap of one NUMA node: 8 KiB pages in 64 MiB arenas (see pageheap.c).
 */
#ifndef NH_PAGEHEAP_H
#define NH_PAGEHEAP_H

#include "core/arena.h"
#include "core/sizeclasses.h"
#include "core/span.h"

#define NH_PAGES_PER_ARENA  (NH_ARENA_BYTES / NH_PAGE_SIZE)   /* 8192 */
#define NH_CHUNK_PAGES      512                                /* 4 MiB, Go's pallocChunkPages */
#define NH_CHUNKS_PER_ARENA (NH_PAGES_PER_ARENA / NH_CHUNK_PAGES)
#define NH_PAGE_WORDS       (NH_PAGES_PER_ARENA / 64)
#define NH_RECENT_SPANS     8       /* freed spans of up to NH_RECENT_MAX_PAGES kept for reuse */
#define NH_RECENT_MAX_PAGES 64      /* 512 KiB */
#define NH_PREFAULT_AHEAD   (4u << 20)  /* free memory kept faulted in ahead of first fit, per node */

/* Per-arena page state, in metadata memory. Guarded by the owning page heap's lock. */
typedef struct nh_arena_pages {
  uint64_t alloc[NH_PAGE_WORDS];         /* 1 = page in a span */
  uint64_t scav[NH_PAGE_WORDS];          /* 1 = free page released to the OS (reads as zero) */
  uint64_t fresh[NH_PAGE_WORDS];         /* 1 = free page faulted in ahead of use, still zero
                                            (pageheap_prefault); never both scav and fresh */
  uint32_t chunk_sum[NH_CHUNKS_PER_ARENA]; /* free-run summaries: start | max << 10 | end << 20 */
  uint64_t sum;                          /* the arena's: start | max << 14 | end << 28 */
} nh_arena_pages_t;

typedef struct nh_pageheap {
  nh_mutex_t lock;                /* LOCK_RANK_PAGEHEAP */
  int node;
  nh_arena_set_t *arenas;
  nh_mem_t *mem;
  nh_arena_t **by_addr;           /* guarded by lock: this node's arenas in address order */
  size_t narenas, cap;            /* guarded by lock */
  size_t search;                  /* guarded by lock: no free page below by_addr[search] */
  nh_span_t *free_spans;          /* guarded by lock: span structs for reuse */
  void *free_live[5];             /* guarded by lock: ownership arrays (span.h) of 64 << i bytes
                                     that a reused struct outgrew, for reuse */
  nh_span_t *recent[NH_RECENT_SPANS]; /* guarded by lock: freed spans kept whole for reuse */
  uint32_t nrecent;               /* guarded by lock */
  /* Relaxed counters, in pages. The first three move under lock and stat_seq (a seqlock:
   * odd while they change), so that a reader takes them as one (pageheap_counts). */
  uint32_t stat_seq;
  uint64_t inuse_pages;           /* in spans */
  uint64_t released_pages;        /* free and released to the OS */
  uint64_t total_pages;           /* in this heap's arenas */
  uint64_t scavenging_pages;      /* free pages held back while the scavenger releases them or
                                   * pageheap_prefault faults them in (and, for good, those a
                                   * failed io_uring left in flight) */
  uint64_t scavenged_pages;       /* released by the scavenger, all time */
  uint64_t fresh_pages;           /* guarded by lock: pages with their fresh bit set */
  uint64_t prefaulted_pages;      /* relaxed: faulted in by pageheap_prefault, all time */
  bool prefault_pending;          /* guarded by lock: prefault_wake called, no pass since */
  void (*prefault_wake)(void *);  /* set before the heap is used: asks for a prefault pass */
  void *prefault_arg;
  uint64_t recent_pages;          /* pages of the spans in recent[] (counted in inuse_pages) */
  uint64_t kept_pages;            /* pages of empty spans mcentrals keep (counted in inuse_pages) */
} nh_pageheap_t;

/* Pages in spans that may hold objects: in use, less the idle spans kept for reuse (recent[]
 * and the mcentrals' empty spans). Read without a lock, so the counters move in an order that
 * never shows an idle span as live: an idle span moves kept -> recent -> free (mcentral_drop_empty,
 * pageheap_drop_recent), and each move adds it where it goes first and then takes it off the
 * count it leaves (pageheap_idle_leave, a release); the reader takes the counters in that order
 * (acquire), so a reader that sees a span gone from one sees it counted where it went. Caught
 * in between it counts the span twice as idle: an underestimate for a moment, never more. */
static inline int64_t pageheap_live_pages(const nh_pageheap_t *ph) {
  int64_t kept = (int64_t)__atomic_load_n(&ph->kept_pages, __ATOMIC_ACQUIRE);
  int64_t recent = (int64_t)__atomic_load_n(&ph->recent_pages, __ATOMIC_ACQUIRE);
  int64_t inuse = (int64_t)__atomic_load_n(&ph->inuse_pages, __ATOMIC_ACQUIRE);
  return inuse - recent - kept;
}

/* The writer's side of stat_seq, under ph->lock (one writer): begin before the first change of
 * inuse_pages, released_pages or total_pages, end after the last. Two plain stores on x86. */
static inline void pageheap_stat_begin(nh_pageheap_t *ph) {
  __atomic_store_n(&ph->stat_seq, ph->stat_seq + 1, __ATOMIC_RELAXED);
  __atomic_thread_fence(__ATOMIC_RELEASE);
}
static inline void pageheap_stat_end(nh_pageheap_t *ph) {
  __atomic_store_n(&ph->stat_seq, ph->stat_seq + 1, __ATOMIC_RELEASE);
}

/* One point of the page heap's accounting, in pages, read without its lock: total = live +
 * free + released, each >= 0 (free counts the idle spans and the pages being scavenged). */
typedef struct nh_pageheap_counts {
  uint64_t total, live, free, released;
} nh_pageheap_counts;

/* The idle counts first (the order of pageheap_live_pages), then the three under stat_seq:
 * retried while a writer is inside, so the identity holds exactly. */
static inline nh_pageheap_counts pageheap_counts(const nh_pageheap_t *ph) {
  uint64_t kept = __atomic_load_n(&ph->kept_pages, __ATOMIC_ACQUIRE);
  uint64_t recent = __atomic_load_n(&ph->recent_pages, __ATOMIC_ACQUIRE);
  uint64_t inuse, released, total;
  uint32_t seq;
  for (;;) {
    seq = __atomic_load_n(&ph->stat_seq, __ATOMIC_ACQUIRE);
    inuse = __atomic_load_n(&ph->inuse_pages, __ATOMIC_RELAXED);
    released = __atomic_load_n(&ph->released_pages, __ATOMIC_RELAXED);
    total = __atomic_load_n(&ph->total_pages, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (!(seq & 1) && __atomic_load_n(&ph->stat_seq, __ATOMIC_RELAXED) == seq)
      break;
    __builtin_ia32_pause();
  }
  int64_t live = (int64_t)(inuse - recent - kept);
  nh_pageheap_counts c = {.total = total, .live = live > 0 ? (uint64_t)live : 0, .released = released};
  c.free = total - released - c.live;   /* >= inuse - live >= 0: inuse + released <= total */
  return c;
}

/* An idle span of npages has been counted where it went (recent_pages, or off inuse_pages):
 * now off the idle count it leaves (kept_pages or recent_pages). See pageheap_live_pages. */
static inline void pageheap_idle_leave(uint64_t *idle_pages, size_t npages) {
  __atomic_fetch_sub(idle_pages, (uint64_t)npages, __ATOMIC_RELEASE);
}

void pageheap_init(nh_pageheap_t *ph, int node, nh_arena_set_t *arenas, nh_mem_t *mem);

/* npages contiguous free pages (growing the heap by new arenas when needed); returns the base
 * address or 0 when the OS refuses memory. *needzero is false when every page is fresh or
 * released (and so reads as zero). Marks the pages in use and Ready. */
uintptr_t pageheap_alloc(nh_pageheap_t *ph, size_t npages, bool *needzero);

/* Returns npages at base (from pageheap_alloc) to the free pages; clears their span entries. */
void pageheap_free(nh_pageheap_t *ph, uintptr_t base, size_t npages);

/* Adds count contiguous fresh arenas to the heap. Returns false when the OS refuses. */
bool pageheap_grow(nh_pageheap_t *ph, size_t count);

/* Go's mheap.allocSpan: npages for one span of span class spc (class 0: one large object of
 * npages) and kind, for allocation class allocclass (small spans), published in the span map
 * and the page-info map. NULL when the OS refuses memory. */
nh_span_t *pageheap_alloc_span(nh_pageheap_t *ph, size_t npages, uint8_t spc, nh_obj_kind kind,
                               unsigned allocclass);
/* Returns a span's pages and its struct. A span of up to NH_RECENT_MAX_PAGES is kept whole
 * among the recently freed (out of the span map, its pages still taken) so that the next span
 * of the same length costs one lock; pageheap_drop_recent gives them back. */
void pageheap_free_span(nh_pageheap_t *ph, nh_span_t *s);
void pageheap_drop_recent(nh_pageheap_t *ph);

/* Points every page of [base, base + npages pages) at span (NULL to clear), and sets their
 * page info (0 to clear, else the small span's allocation and size class). Caller holds
 * ph->lock or owns the pages exclusively. */
void pageheap_set_spans(uintptr_t base, size_t npages, nh_span_t *span, const nh_arena_set_t *arenas);

/* Releases up to max_bytes of free, unreleased pages to the OS, highest addresses first
 * (allocation is lowest-first, so these are the least likely to be wanted again): whole 2 MiB
 * units only on THP arenas (a partial release would split a huge page), runs of at least
 * 64 KiB on 4 KiB arenas; hugetlb arenas are left alone (see pageheap.c). ring: io_uring for
 * the batch, or NULL for madvise; *ring_failed as mem_release_batch (once set, the rest goes
 * through madvise; ranges left in flight stay taken for good). Returns the bytes released. */
size_t pageheap_scavenge(nh_pageheap_t *ph, size_t max_bytes, struct io_uring *ring, bool *ring_failed);

/* Faults in (mem_populate) the released pages among the lowest ahead_bytes of free memory,
 * which first fit hands out next, so that the program's first writes to them do not fault: a
 * first touch of memory costs up to milliseconds per 2 MiB in a VM whose host backs guest
 * memory lazily, and a thread inside a fault cannot be stopped for a pause (pageos.c,
 * "Prefaulting"). Run by the scavenger thread when pageheap_alloc asks (prefault_wake).
 * Returns the bytes faulted in. */
size_t pageheap_prefault(nh_pageheap_t *ph, size_t ahead_bytes);
/* Whether a prefault pass was asked for since the last one; clears the request. */
bool pageheap_prefault_requested(nh_pageheap_t *ph);

/* Debug: summaries and counters agree with the bitmaps. */
void pageheap_validate(nh_pageheap_t *ph);

/* The span holding p, or NULL: p not in the heap, or in a free page. Lock-free. */
static inline nh_span_t *span_of(const nh_arena_set_t *arenas, const void *p) {
  nh_arena_t *a = arena_of(arenas, p);
  if (nh_unlikely(!a))
    return NULL;
  size_t page = ((uintptr_t)p & (NH_ARENA_BYTES - 1)) >> NH_PAGE_SHIFT;
  return __atomic_load_n(&a->spans[page], __ATOMIC_ACQUIRE);
}

#endif
