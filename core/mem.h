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

/* Byte counters by state (relaxed atomics). reserved >= mapped >= ready. */
typedef struct nh_mem_stats {
  uint64_t reserved;   /* Reserved + Prepared + Ready */
  uint64_t mapped;     /* Prepared + Ready */
  uint64_t ready;      /* Ready */
  uint64_t metadata;   /* off-heap metadata mapped by mem_meta_alloc */
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
int mem_release(nh_mem_t *m, void *p, size_t len, nh_backing b);                /* Ready -> Prepared (hugetlb: -> Reserved) */
int mem_decommit(nh_mem_t *m, void *p, size_t len, bool was_ready);             /* Prepared|Ready -> Reserved */
int mem_unreserve(nh_mem_t *m, void *p, size_t len, size_t mapped, size_t ready); /* any -> None */

/* Ready -> Prepared for n ranges of 4 KiB or THP pages at once: madvise(MADV_DONTNEED) as
 * one io_uring submission (IORING_OP_MADVISE) when ring is not NULL, else one madvise each; a
 * range the ring does not confirm is released with madvise; one that still fails comes back
 * with len 0 (it stays Ready). *ring_failed: the ring itself failed (submit or wait), may still
 * deliver stale completions, and must not be used again. Returns the bytes released. */
typedef struct nh_range { void *p; size_t len; } nh_range;
struct io_uring;
size_t mem_release_batch(nh_mem_t *m, nh_range *r, size_t n, struct io_uring *ring, bool *ring_failed);

/* Zeroed, never-freed (until mem_destroy) metadata memory; NULL when the OS refuses. */
void *mem_meta_alloc(nh_mem_t *m, size_t size, size_t align);
/* The same in a page-aligned mapping of its own, bound to node (of nnodes) when bind. */
void *mem_meta_alloc_node(nh_mem_t *m, size_t size, int node, int nnodes, bool bind);
/* The metadata array v (n elements of elem bytes, room for *cap) with room for one more: v
 * itself, or a copy twice as large (64 at first; the old one stays mapped, metadata is never
 * freed). NULL when the OS refuses memory. The caller serialises calls for one array. */
void *mem_meta_grow(nh_mem_t *m, void *v, size_t *cap, size_t n, size_t elem);

#endif
