/*
 * mem.h — the OS memory layer: address-space states, the transitions between them, the OS
 * hooks, and the off-heap metadata allocator. See mem.c for the essay.
 */
#ifndef NH_MEM_H
#define NH_MEM_H

#include "nheap.h"
#include "core/internal.h"
#include "core/lock.h"

#define NH_OS_PAGE      ((size_t)4096)
#define NH_HUGE_PAGE    ((size_t)2 << 20)      /* 2 MiB: THP and hugetlb page */

typedef enum nh_thp_mode { THP_UNSUPPORTED, THP_NEVER, THP_MADVISE, THP_ALWAYS } nh_thp_mode;

/* Everything nheap asks of the kernel about memory, and the clock. os_linux is the real one;
 * tests pass fakes to drive huge-page and placement policy through failures the machine cannot
 * produce on demand. Each returns what its syscall returns (-1 and errno on failure). */
typedef struct nh_os_hooks {
  void *(*map)(void *addr, size_t len, int prot, int flags);  /* anonymous mmap */
  int (*unmap)(void *addr, size_t len);
  int (*advise)(void *addr, size_t len, int advice);
  int (*bind)(void *addr, size_t len, int mode, const unsigned long *nodemask, unsigned long maxnode);
  long (*hugetlb_free_pages)(void); /* free, unreserved 2 MiB pages; -1 if no pool is configured */
  nh_thp_mode (*thp_mode)(void);
  uint64_t (*now_ns)(void);
} nh_os_hooks;

extern const nh_os_hooks os_linux;
/* Tests only: the hooks the next nh_init uses instead of os_linux (fault injection). */
extern const nh_os_hooks *nh_os_override;

/* Counters (relaxed atomics): bytes by state, reserved >= mapped >= ready; batch releases. */
typedef struct nh_mem_stats {
  uint64_t reserved;   /* Reserved + Prepared + Ready */
  uint64_t mapped;     /* Prepared + Ready */
  uint64_t ready;      /* Ready */
  uint64_t metadata;   /* off-heap metadata mapped by mem_meta_alloc */
  /* mem_release_batch's ranges by outcome, all time: released by an io_uring completion, by
   * plain madvise (no ring, or the ring refused or never took them), and left in flight by a
   * failed ring (never reused). */
  uint64_t release_ring;
  uint64_t release_madvise;
  uint64_t release_in_flight;
} nh_mem_stats;

/* One instance of the layer: the hooks it calls, its counters, its metadata chunks. */
typedef struct nh_mem {
  const nh_os_hooks *os;
  nh_mem_stats stats;
  nh_mutex_t meta_lock;
  struct meta_chunk *meta_chunks;   /* guarded by meta_lock */
  char *meta_cur, *meta_end;        /* guarded by meta_lock */
  bool guard;                       /* secure = on: PROT_NONE pages around each metadata mapping */
} nh_mem_t;

void mem_init(nh_mem_t *m, const nh_os_hooks *os);
/* Unmaps the metadata; the caller has unreserved everything else. */
void mem_destroy(nh_mem_t *m);

/* The transitions (mem.c explains each). All ranges are OS-page aligned; hugetlb ranges are
 * 2 MiB aligned. Each returns 0 or -errno and leaves the range in its old state on failure. */
void *mem_reserve(nh_mem_t *m, size_t len, size_t align);                       /* None -> Reserved */
void *mem_reserve_at(nh_mem_t *m, size_t len, uintptr_t addr);                  /* None -> Reserved, at addr or NULL */
int mem_commit(nh_mem_t *m, void *p, size_t len, nh_backing b);                 /* Reserved -> Prepared */
int mem_hugify(nh_mem_t *m, void *p, size_t len, bool huge);                    /* Prepared: THP advice */
int mem_bind(nh_mem_t *m, void *p, size_t len, int node, int nnodes, bool interleave); /* Prepared, untouched */
void mem_use(nh_mem_t *m, void *p, size_t len);                                 /* Prepared -> Ready */
int mem_populate(nh_mem_t *m, void *p, size_t len);                             /* Ready: faulted in now */
int mem_release(nh_mem_t *m, void *p, size_t len, nh_backing b);                /* Ready -> Prepared (hugetlb: -> Reserved) */
int mem_decommit(nh_mem_t *m, void *p, size_t len, bool was_ready);             /* Prepared|Ready -> Reserved */
int mem_unreserve(nh_mem_t *m, void *p, size_t len, size_t mapped, size_t ready); /* any -> None */

/* Ready -> Prepared for n ranges of 4 KiB or THP pages at once: madvise(MADV_DONTNEED) as
 * io_uring submissions (IORING_OP_MADVISE) when ring is not NULL, else one madvise each; a
 * range the ring refuses or never takes is released with madvise (mem.c, "The ring"). Each
 * range comes back with its outcome in how:
 *   NH_RELEASED_RING, NH_RELEASED_MADVISE  Prepared, by the ring (completion reaped) or madvise;
 *   NH_RELEASE_REFUSED                     still Ready: madvise failed too; free to reuse;
 *   NH_RELEASE_IN_FLIGHT                   the ring took the request and failed before its
 *                                          completion could be reaped: it may still run, so
 *                                          the range must never be reused.
 * Signals (EINTR) and the kernel's EAGAIN/EBUSY are retried. *ring_failed: the ring failed for
 * another reason and must not be used again; everything it took was reaped except the
 * IN_FLIGHT ranges. Returns the bytes released. The caller serialises calls on one ring. */
typedef enum nh_release_how {
  NH_RELEASE_QUEUED,      /* internal to mem_release_batch: not done yet */
  NH_RELEASED_RING,
  NH_RELEASED_MADVISE,
  NH_RELEASE_REFUSED,
  NH_RELEASE_IN_FLIGHT,
} nh_release_how;
typedef struct nh_range { void *p; size_t len; nh_release_how how; } nh_range;
struct io_uring;
size_t mem_release_batch(nh_mem_t *m, nh_range *r, size_t n, struct io_uring *ring, bool *ring_failed);

/* Zeroed, never-freed (until mem_destroy) metadata memory; NULL when the OS refuses. */
void *mem_meta_alloc(nh_mem_t *m, size_t size, size_t align);
/* len bytes read-write (flags as os->map's), with guard (secure = on) between two PROT_NONE
 * pages, so that an overflow out of a neighbour faults instead of reaching it: metadata chunks,
 * the types region, the arena index, thread records. MAP_FAILED when refused. Unmapped whole
 * by mem_unmap_guarded with the same guard. */
void *mem_map_guarded(const nh_os_hooks *os, bool guard, size_t len, int flags);
void mem_unmap_guarded(const nh_os_hooks *os, bool guard, void *p, size_t len);
/* The same in a page-aligned mapping of its own, bound to node (of nnodes) when bind. */
void *mem_meta_alloc_node(nh_mem_t *m, size_t size, int node, int nnodes, bool bind);
/* The metadata array v (n elements of elem bytes, room for *cap) with room for one more: v
 * itself, or a copy twice as large (64 at first; the old one stays mapped, metadata is never
 * freed). NULL when the OS refuses memory. The caller serialises calls for one array. */
void *mem_meta_grow(nh_mem_t *m, void *v, size_t *cap, size_t n, size_t elem);

#endif
