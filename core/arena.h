/*
 * arena.h — 64 MiB heap arenas, their backing policy and the address -> arena index.
 */
#ifndef NH_ARENA_H
#define NH_ARENA_H

#include "core/mem.h"
#include "core/sizeclasses.h"

#define NH_ARENA_SHIFT   26                          /* 64 MiB */
#define NH_ARENA_BYTES   ((size_t)1 << NH_ARENA_SHIFT)
#define NH_ADDR_BITS     48                          /* amd64 user and kernel halves */
#define NH_ARENA_L2_BITS (NH_ADDR_BITS - NH_ARENA_SHIFT) /* 22: a single-level 4M-entry index */
#define NH_ARENA_INDEX_LEN ((size_t)1 << NH_ARENA_L2_BITS)
#define NH_ARENA_HINT    ((uintptr_t)0xc000000000)   /* where Go puts its heap; far from brk and libs */
#define NH_ARENA_HINT_REGIONS 0x80                   /* Go's hints: i<<40 | NH_ARENA_HINT, i < 0x80 */
#define NH_ARENA_RUN_MAX 4096                        /* 256 GiB: the largest single object */
#define NH_LARGEST_OBJECT ((size_t)NH_ARENA_RUN_MAX * NH_ARENA_BYTES - NH_PAGE_SIZE)   /* bytes, alignment apart */

/* One arena's record (metadata memory). Immutable once published in the index, except for
 * fields the allocator adds later under its own locks. */
typedef struct nh_arena {
  uintptr_t base;
  struct nh_arena *next;        /* creation order; guarded by arena set's lock */
  uint32_t id;                  /* creation order, from 0 */
  int node;                     /* NUMA node the memory belongs to */
  nh_backing backing;           /* what it got */
  nh_hugepages_mode wanted;     /* what the policy asked for */
  struct nh_arena_pages *pages; /* the page heap's state for this arena (pageheap.c) */
  /* page -> span for every page of an in-use span (Go's heapArena.spans): written by the page
   * heap, read lock-free by span_of. Last, and 64 KiB: the record is its own mapping. */
  struct nh_span *spans[NH_ARENA_BYTES >> NH_PAGE_SHIFT];
  /* The same pages for the fast paths, without loading the span. pageinfo, for nh_free: for a
   * page of an in-use small span of untyped objects (tiny spans excepted), allocation class |
   * page index in the span << 8 | size class << 16; 0 for any other page (large, typed or tiny
   * spans, free pages). live, for both: a small span's ownership bytes (span.h; tiny spans
   * have none) from the first object that starts on the page: the byte of the object starting
   * at offset x of the page is live[page][x / elemsize] (x - the first start is a multiple of
   * elemsize, and the first start is below it); NULL for other pages. Written with the span
   * map. */
  uint32_t pageinfo[NH_ARENA_BYTES >> NH_PAGE_SHIFT];
  uint8_t *live[NH_ARENA_BYTES >> NH_PAGE_SHIFT];
} nh_arena_t;

/* The page-info word (nh_arena_t.pageinfo): made by the page heap, decoded by nh_free. */
static inline uint32_t pageinfo_make(unsigned allocclass, unsigned sizeclass, size_t page_in_span) {
  return (uint32_t)allocclass | (uint32_t)page_in_span << 8 | (uint32_t)sizeclass << 16;
}
static inline unsigned pageinfo_allocclass(uint32_t info) { return info & 0xff; }
static inline unsigned pageinfo_page(uint32_t info) { return (info >> 8) & 0xff; }
static inline unsigned pageinfo_sizeclass(uint32_t info) { return info >> 16; }

/* Placement: how many nodes exist and whether to bind memory to them. */
typedef struct nh_arena_placement {
  int nnodes;                   /* real nodes (numa_max_node()+1); 1 when unknown */
  bool bind;                    /* mbind each arena before first touch */
  bool interleave;              /* numa_policy = interleave */
} nh_arena_placement;

typedef struct nh_arena_set {
  nh_mem_t *mem;
  nh_hugepages_mode policy;
  nh_arena_placement place;
  nh_arena_t **index;           /* NH_ARENA_INDEX_LEN slots, demand-zero; atomic loads/stores */
  nh_mutex_t lock;              /* LOCK_RANK_ARENAS: creation, list, hint */
  nh_arena_t *first, *last;     /* guarded by lock */
  uint32_t count;               /* guarded by lock; read atomically */
  uintptr_t hint;               /* guarded by lock: where the next arena should go; 0 = anywhere */
  unsigned hint_region;         /* guarded by lock: next of Go's hint regions to try */
  bool hugetlb_warned, thp_warned; /* guarded by lock: one warning each */
  struct nh_dirty *dirty;       /* guarded by lock: register new arenas for write-protect tracking */
  /* Relaxed counters. */
  uint64_t by_backing[3];       /* indexed by nh_backing */
  uint64_t hugetlb_fallbacks, thp_fallbacks;
} nh_arena_set_t;

int arena_set_init(nh_arena_set_t *set, nh_mem_t *mem, nh_hugepages_mode policy, nh_arena_placement place);
/* Unreserves every arena and the index. */
void arena_set_destroy(nh_arena_set_t *set);

/* Reserves, backs and publishes a new arena for node. NULL when the OS refuses memory. */
nh_arena_t *arena_create(nh_arena_set_t *set, int node);
/* The same for count (1 .. NH_ARENA_RUN_MAX) address-contiguous arenas, for objects larger
 * than an arena; returns the first (the others follow it in the list). */
nh_arena_t *arena_create_run(nh_arena_set_t *set, int node, size_t count);

/* The arena holding p, or NULL if p is not in nheap's heap: O(1), lock-free, any pointer. */
static inline nh_arena_t *arena_of(const nh_arena_set_t *set, const void *p) {
  uintptr_t i = (uintptr_t)p >> NH_ARENA_SHIFT;
  if (nh_unlikely(i >= NH_ARENA_INDEX_LEN))
    return NULL;
  return __atomic_load_n(&set->index[i], __ATOMIC_ACQUIRE);
}

/* "auto", "hugetlb", "thp", "none". */
const char *arena_policy_name(nh_hugepages_mode m);

/* Debug: checks the list, the index and the counters agree. Aborts on a mismatch. */
void arena_validate(nh_arena_set_t *set);

#endif
