/*
 * mcache.h — the per-CPU cache (see mcache.c).
 */
#ifndef NH_MCACHE_H
#define NH_MCACHE_H

#include "core/mcentral.h"

/* Allocation from a cached span: the free objects of one 64-object word (Go's allocCache). */
typedef struct nh_mcache_slot {
  uint64_t cache;          /* 1 = free and not yet handed out, bit i = object word_index + i */
  uintptr_t word_base;     /* address of the word's object 0 */
  nh_span_t *span;         /* NULL: no span cached */
} nh_mcache_slot;

/* Objects freed on this CPU, reused LIFO before the span (TCMalloc's per-CPU slab). */
typedef struct nh_freestack {
  uint32_t top, cap;
  void **items;
} nh_freestack;

typedef struct nh_mcache {
  nh_mutex_t lock;         /* LOCK_RANK_MCACHE: the per-CPU lock mode */
  int cpu, node;
  nh_mcentral_t *central;  /* this node's mcentrals, indexed by allocation class */
  const nh_arena_set_t *arenas;
  nh_mcache_slot slot[NH_NUM_ALLOC_CLASSES];
  nh_freestack free[NH_NUM_ALLOC_CLASSES];
} nh_mcache_t;

/* A new cache for cpu on node, in metadata memory. NULL when the OS refuses memory. */
nh_mcache_t *mcache_new(nh_mem_t *mem, const nh_arena_set_t *arenas, int cpu, int node, nh_mcentral_t *central);

/* Caller holds mc->lock. An object of allocation class ac, or NULL when the OS refuses memory;
 * *needzero tells whether it may hold old data. */
void *mcache_alloc(nh_mcache_t *mc, unsigned ac, bool *needzero);

/* Caller holds mc->lock. Takes back object p of class ac (already validated). */
void mcache_free(nh_mcache_t *mc, unsigned ac, void *p);

/* Caller holds mc->lock. Returns every cached span and freed object to the mcentrals. */
void mcache_flush(nh_mcache_t *mc);

/* Caller holds mc->lock. Whether p sits in this cache's free stack for class ac. */
bool mcache_holds(const nh_mcache_t *mc, unsigned ac, const void *p);

#endif
