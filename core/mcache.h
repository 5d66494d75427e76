/*
 * mcache.h — the per-CPU caches (see mcache.c).
 */
#ifndef NH_MCACHE_H
#define NH_MCACHE_H

#include "core/mcentral.h"
#include "core/percpu.h"

/* Allocation from a cached span: the free objects of one 64-object word (Go's allocCache). */
typedef struct nh_mcache_slot {
  uint64_t cache;          /* 1 = free and not yet handed out, bit i = object word_index + i */
  uintptr_t word_base;     /* address of the word's object 0 */
  nh_span_t *span;         /* NULL: no span cached */
} nh_mcache_slot;

/* Free objects ready to hand out, LIFO (TCMalloc's per-CPU slab). Layout fixed for percpu.h. */
typedef struct nh_freestack {
  uint32_t top, cap;
  void **items;
} nh_freestack;

typedef struct nh_mcache {
  uint32_t stopped;        /* first: read by the rseq sequences; set under lock by remote ops */
  int cpu, node;
  uint64_t rng;            /* secure = on: the refill shuffle's state (under lock) */
  /* The tiny allocator's block (malloc.c): the next free byte of the current 16-byte block,
   * just past its last object (so the block is (tiny - 1) & ~15); 0: none. Advanced by the rseq
   * sequence (percpu_bump) or, in lock mode, under lock; a new block is installed under lock. */
  uintptr_t tiny;
  nh_mutex_t lock;         /* LOCK_RANK_MCACHE: slots, remote operations; everything in lock mode */
  nh_mcentral_t *central;  /* this node's mcentrals, indexed by allocation class */
  const nh_arena_set_t *arenas;
  nh_mcache_slot slot[NH_NUM_ALLOC_CLASSES];   /* guarded by lock */
  nh_freestack free[NH_NUM_ALLOC_CLASSES];     /* rseq sequences, or lock */
  /* secure = on: objects freed on this CPU, not handed out again before the free stack runs
   * dry (then they refill it, shuffled: mimalloc's local free list); capacity 0 otherwise. */
  nh_freestack freed[NH_NUM_ALLOC_CLASSES];    /* rseq sequences, or lock */
} nh_mcache_t;

_Static_assert(offsetof(nh_mcache_t, stopped) == 0, "percpu.h reads stopped at offset 0");
_Static_assert(offsetof(nh_freestack, top) == 0 && offsetof(nh_freestack, cap) == 4 &&
               offsetof(nh_freestack, items) == 8, "percpu.h's stack layout");

/* All CPUs' caches and how they are protected; then one cache per node, always under its
 * lock, for nh_alloc_onnode from another node's CPU. */
typedef struct nh_mcaches {
  nh_mcache_t **cpu;       /* ncpus entries, then nnodes: cpu[ncpus + n] is node n's */
  uint32_t ncpus, nnodes;
  bool rseq;               /* rseq sequences; false: per-CPU lock mode */
} nh_mcaches_t;

/* A new cache for cpu on node, in metadata memory. NULL when the OS refuses memory. */
/* shuffle_seed != 0 (secure = on): refills come out in random order. */
nh_mcache_t *mcache_new(nh_mem_t *mem, const nh_arena_set_t *arenas, int cpu, int node, nh_mcentral_t *central,
                        uint64_t shuffle_seed);

static inline size_t mcache_stack_offset(unsigned ac) { return offsetof(nh_mcache_t, free) + ac * sizeof(nh_freestack); }
static inline size_t mcache_freed_offset(unsigned ac) { return offsetof(nh_mcache_t, freed) + ac * sizeof(nh_freestack); }

/* An allocation class's free-stack capacity (its transfer cache holds twice that); 0 for
 * tiny blocks, which the tiny allocator takes from its slot one at a time. */
uint32_t mcache_stack_cap(unsigned ac);

void *mcache_alloc_slow(nh_mcaches_t *all, unsigned ac);
/* Bytes of objects the calling thread's refills have taken for caches (mark assists), and
 * of those the refills marked black (while nh__marking: see slot_take), with their count;
 * the caller hands both to the collector and zeroes them. */
extern __thread size_t nh_refill_bytes __attribute__((tls_model("initial-exec")));
extern __thread size_t nh_black_bytes __attribute__((tls_model("initial-exec")));
extern __thread size_t nh_black_objects __attribute__((tls_model("initial-exec")));
void mcache_free_slow(nh_mcaches_t *all, unsigned ac, void *p);
/* An object of class ac from node's own cache (nh_alloc_onnode), under its lock. */
void *mcache_alloc_node(nh_mcaches_t *all, unsigned ac, int node);
/* Object p of span s, freed on another node's CPU: to its node's transfer cache, or its span,
 * so that it is handed out again on its own node. */
void mcache_free_remote(nh_mcaches_t *all, nh_span_t *s, void *p);

/* An object of allocation class ac from the calling CPU's cache into *p (its first word may
 * hold old data, everything else too); false when the fast path cannot serve it and the
 * caller must take mcache_alloc_slow (NULL there: out of memory or over the memory limit). The
 * fast path is one restartable sequence (about ten instructions). */
static inline bool mcache_alloc_fast(nh_mcaches_t *all, unsigned ac, void **p) {
  return nh_likely(all->rseq) && nh_likely(percpu_pop((void *const *)all->cpu, all->ncpus, mcache_stack_offset(ac), p));
}

/* secure = on: takes back object p of class ac (validated by the caller) onto the CPU's freed
 * stack, from which it is handed out only after the free stack ran dry, in shuffled order.
 * Thread-safe. */
void mcache_free_later(nh_mcaches_t *all, unsigned ac, void *p);

/* Takes back object p of class ac (validated by the caller). Thread-safe. */
static inline void mcache_free(nh_mcaches_t *all, unsigned ac, void *p) {
  if (nh_likely(all->rseq) && nh_likely(percpu_push((void *const *)all->cpu, all->ncpus, mcache_stack_offset(ac), p)))
    return;
  mcache_free_slow(all, ac, p);
}

/* A tiny object (size 1 .. NH_TINY_MAX, alignment mask amask) from the calling CPU's current block into
 * *p; false when the block has no room or the fast path cannot run (then mcache_tiny_slow). */
static inline bool mcache_tiny_fast(nh_mcaches_t *all, size_t size, size_t amask, void **p) {
  return nh_likely(all->rseq) && nh_likely(percpu_bump((void *const *)all->cpu, all->ncpus, offsetof(nh_mcache_t, tiny), size, amask, p));
}

/* A tiny object from a new block of the CPU's tiny span (which becomes the current block if it
 * has more room left than the old one, Go's rule), or, in lock mode, from the current block
 * under the lock. NULL: out of memory or over the memory limit. */
void *mcache_tiny_slow(nh_mcaches_t *all, size_t size, size_t amask);

/* Returns every cached span and free object of every CPU to the mcentrals, and forgets every
 * CPU's tiny block. Thread-safe. */
void mcache_flush_all(nh_mcaches_t *all);
/* Debug: every free stack holds only objects of its class that nheap holds (not the program),
 * object starts, none twice across all caches; fatal otherwise. The world stopped (or no other
 * thread allocating). */
void mcache_validate(nh_mcaches_t *all);

#endif
