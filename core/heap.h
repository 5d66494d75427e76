/*
 * heap.h — the process-wide heap: what nh_init builds (init.c) and the allocator uses
 * (malloc.c).
 */
#ifndef NH_HEAP_H
#define NH_HEAP_H

#include "core/gc.h"
#include "core/mcache.h"
#include "core/options.h"
#include "core/scavenger.h"
#include "numa/topology.h"
#include "perf/counters.h"

/* One NUMA node's half of the allocator. */
typedef struct nh_node {
  nh_pageheap_t ph;
  nh_mcentral_t central[NH_NUM_ALLOC_CLASSES];
  uint64_t remote_frees;         /* relaxed: its objects freed by another node's CPU */
} nh_node_t;

typedef struct nh_heap {
  bool ready;                    /* set last by nh_init, cleared first by nh_shutdown */
  nh_config_t cfg;
  nh_topology_t topo;
  nh_mem_t mem;
  nh_arena_set_t arenas;
  nh_node_t *nodes;              /* topo.nnodes of them, in metadata */
  nh_mcaches_t caches;           /* one per CPU (topo.ncpus), and the rseq/lock mode */
  nh_scavenger_t scavenger;
  uintptr_t type_key;            /* random, secret: in a type's check word (heap_type_check) */
  /* Types (nh_type_new) live in a region of their own, so that the marker can tell a typed
   * object's header from whatever a free or never-used object holds there (heap_type_of). */
  char *types;                   /* TYPES_BYTES reserved, read-write, touched as used */
  bool types_guarded;            /* mapped between guard pages (secure = on) */
  size_t types_used;             /* atomic; only a reservation that fits moves it: <= TYPES_BYTES */
  bool tiny_on;                  /* the tiny allocator: with the collector, not under valgrind */
  bool rseq;                     /* restartable sequences usable (nh_store's barrier, the caches) */
  bool free_plain;               /* one node, not secure, not valgrind: nh_free's fast path as it is */
  bool free_local;               /* not secure, not valgrind: the fast path for a local object */
  /* Relaxed counters. */
  uint64_t large_allocs, large_frees, bad_frees, double_frees, limit_refusals, tiny_frees, frees_deferred;
  nh_gc_t gc;                    /* the collector: threads, roots, marker, pacer, sweeper */
} nh_heap_t;

extern nh_heap_t nh_rt;
/* Guards nh_rt's lifetime: nh_init and nh_shutdown, and the statistics' readers (stats.c),
 * which take it for a few loads; nothing holds it through a collection. */
extern nh_mutex_t heap_init_lock;

#define NH_TYPES_BYTES ((size_t)64 << 20)

/* The check word of the type at address t (nh_type_new writes it last). */
static inline uintptr_t heap_type_check(uintptr_t t) { return t ^ nh_rt.type_key ^ 0x7970653a6e686561ull; }

/* The type a typed object's header word h names, or NULL when h is not one (an object that is
 * free, freed, or was never handed out holds anything there): inside the types region, and
 * carrying its own address under the type key. */
static inline const struct nh_type *heap_type_of(uintptr_t h) {
  uintptr_t base = (uintptr_t)nh_rt.types;
  size_t used = __atomic_load_n(&nh_rt.types_used, __ATOMIC_ACQUIRE);   /* never past the region */
  if (h - base >= used || (h & 7) || h - base + sizeof(struct nh_type) > used)
    return NULL;
  const struct nh_type *t = (const struct nh_type *)h;
  return t->check == heap_type_check(h) ? t : NULL;
}

/* Spans swept so far (lazily or in the background), and large objects freed by sweeping:
 * every mcentral's counts. */
static inline void heap_sweep_counts(uint64_t *spans, uint64_t *large) {
  *spans = *large = 0;
  for (int n = 0; n < nh_rt.topo.nnodes; n++)
    for (unsigned ac = 0; ac < NH_NUM_ALLOC_CLASSES; ac++) {
      *spans += nh_stat_get(&nh_rt.nodes[n].central[ac].swept_spans);
      *large += nh_stat_get(&nh_rt.nodes[n].central[ac].swept_large);
    }
}

/* The calling thread's CPU, in [0, topo.ncpus). */
static inline int heap_current_cpu(void) { return percpu_current_cpu(nh_rt.caches.ncpus); }
/* The calling thread's NUMA node, in [0, topo.nnodes). */
static inline int heap_current_node(void) { return nh_rt.topo.cpu_node[heap_current_cpu()]; }

#endif
