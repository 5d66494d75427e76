/*
 * nheap.h — the public API of nheap.
 *
 * nheap gives C programs the Go runtime's memory management: a size-class allocator
 * (mheap -> mcentral -> per-CPU mcache -> mspan) under a concurrent tri-colour mark-and-sweep
 * collector, on NUMA-local huge-page arenas. This header is the only installed one.
 *
 * Conventions: functions return 0 or a negative errno-style code (nh_strerror names it), or
 * NULL for pointers; user mistakes are reported once through the error funnel
 * (nh_set_error_handler) and never abort. Structs that may grow start with a `size` field.
 *
 * Status of this release (0.1): life cycle, options and configs, the error funnel, the OS
 * memory layer (64 MiB arenas on hugetlb / THP / 4 KiB pages), the allocator (size classes,
 * page heap, mcentral, per-CPU mcaches), the collector (concurrent marking with the nh_store
 * write barrier by default, or with the kernel's dirty-page tracking, or stop-the-world;
 * conservative roots and objects, lazy and background sweeping, GOGC pacer, memory limit,
 * finalizers, weak references, typed objects), NUMA placement of arenas, caches and markers,
 * per-phase hardware or software counters (libpfm4), and statistics.
 */
#ifndef NHEAP_H
#define NHEAP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Allocation attributes (GCC, clang): the object's size from the arguments (alloc_size: bounds
 * checks, __builtin_object_size), its alignment, and a warning where a result is dropped
 * (warn_unused_result: a lost object is a leak with gc = off, wasted work otherwise). Not
 * `malloc`: that lets the compiler treat a fresh object as read by no one else and drop stores
 * into it that the program never reads back, but the collector reads them: a field cleared to
 * let a structure go would stay set in memory and keep it alive (tests/test_gc.c's
 * test_unreachable_freed fails with it). */
#if defined(__GNUC__) || defined(__clang__)
#define NH_ALLOC_SIZE(n) __attribute__((alloc_size(n)))
#define NH_ALLOC_SIZE2(n, m) __attribute__((alloc_size(n, m)))
#define NH_ALLOC_ALIGN(n) __attribute__((alloc_align(n)))
#define NH_WUR __attribute__((warn_unused_result))
#else
#define NH_ALLOC_SIZE(n)
#define NH_ALLOC_SIZE2(n, m)
#define NH_ALLOC_ALIGN(n)
#define NH_WUR
#endif

#define NH_VERSION_MAJOR 0
#define NH_VERSION_MINOR 1
#define NH_VERSION_PATCH 0

/* ===========================================================================================
 * Options
 *
 * Every option has a name (gc_percent, perf.events), a type, a default and a range; the full
 * table is printed by NHEAP_VERBOSE=1 and documented in README.md. Sources, later wins:
 *   1. built-in defaults
 *   2. the INI file named by nh_options.config_path, else by NHEAP_CONFIG
 *      (top-level keys, or [perf] events = ... for perf.events)
 *   3. environment: NHEAP_<NAME>, case-insensitive, dots become underscores
 *      (perf.events <-> NHEAP_PERF_EVENTS); sizes accept B, KiB, MiB, GiB, TiB (or K, M, G, T)
 *   4. the fields of nh_options passed to nh_init that are not NH_UNSET / NULL
 * A bad value anywhere is an error naming its source, key and allowed range; nh_init fails.
 * =========================================================================================== */

#define NH_UNSET INT64_MIN  /* an nh_options numeric field that nh_init should not apply */

typedef enum nh_gc_mode {
  NH_GC_CONCURRENT = 0,           /* concurrent mark with the nh_store write barrier */
  NH_GC_CONCURRENT_NOBARRIER = 1, /* concurrent mark, dirty pages found by the kernel */
  NH_GC_STW = 2,                  /* the world is stopped for the whole mark */
  NH_GC_OFF = 3,                  /* no collector: a malloc/free allocator */
} nh_gc_mode;

typedef enum nh_hugepages_mode {
  NH_HUGEPAGES_AUTO = 0,    /* hugetlb while the pool has free pages, else THP, else 4 KiB */
  NH_HUGEPAGES_HUGETLB = 1, /* MAP_HUGETLB from the kernel's 2 MiB pool (falls back, counted) */
  NH_HUGEPAGES_THP = 2,     /* madvise(MADV_HUGEPAGE) on 2 MiB-aligned arenas */
  NH_HUGEPAGES_NONE = 3,    /* 4 KiB pages (MADV_NOHUGEPAGE) */
} nh_hugepages_mode;

typedef enum nh_numa_policy {
  NH_NUMA_LOCAL = 0,        /* memory on the allocating CPU's node */
  NH_NUMA_INTERLEAVE = 1,   /* arenas interleaved over all nodes */
} nh_numa_policy;

typedef enum nh_barrier_mode {
  NH_BARRIER_STORE = 0,     /* the program stores heap pointers through nh_store */
  NH_BARRIER_NONE = 1,      /* plain stores: marking relies on kernel dirty tracking */
} nh_barrier_mode;

typedef enum nh_perf_scope {
  NH_PERF_SCOPE_PROGRAM = 0,   /* alloc: all of the program threads' time outside the collector */
  NH_PERF_SCOPE_ALLOCATOR = 1, /* alloc: only the allocator's slow paths (refills, large objects) */
} nh_perf_scope;

typedef struct nh_options {
  size_t size;              /* sizeof(nh_options); set by nh_options_init */
  const char *config_path;  /* INI file; NULL = NHEAP_CONFIG, or none */
  int64_t gc;               /* nh_gc_mode */
  int64_t gc_percent;       /* GOGC: heap goal = live * (1 + gc_percent/100); -1 = off */
  int64_t memory_limit;     /* bytes, GOMEMLIMIT; 0 = no limit */
  int64_t hugepages;        /* nh_hugepages_mode */
  const char *numa;         /* "auto", "off" or "fake:N" */
  int64_t numa_policy;      /* nh_numa_policy */
  int64_t mark_workers;     /* dedicated mark threads; 0 = 25% of the CPUs */
  int64_t barrier;          /* nh_barrier_mode */
  int64_t scavenger;        /* 1/0: background return of free pages to the OS (and prefaulting) */
  int64_t verbose;          /* 1/0: print the effective option table at nh_init */
  const char *debug;        /* diagnostics, "gctrace=1,checkmark=1" (as NHEAP_DEBUG) */
  const char *perf_events;  /* "task-clock,page-faults,..." (libpfm4 names) */
  const char *perf_report;  /* path of the JSON counter report, "" = none */
  const char *mark_cpus;    /* CPUs the collector's threads run on, "0-3,8"; "" = any */
  int64_t perf_scope;       /* nh_perf_scope: what the alloc phase counts */
  int64_t secure;           /* 1/0: hardening (README "Options"): guard pages, shuffled order, zero on free */
} nh_options;

/* Fills *opts with "unset" everywhere (NH_UNSET, NULL) and sets opts->size. Thread-safe. */
void nh_options_init(nh_options *opts);

/* ===========================================================================================
 * Life cycle
 * =========================================================================================== */

/* Reads the options (see above; opts may be NULL), maps the first arena and makes the heap
 * ready. Returns 0; -EINVAL for a bad option or config file (reported through the funnel);
 * -ENOENT for a missing config file; -ENOMEM when the OS refuses memory; -EBUSY if nheap is
 * already initialised. Not thread-safe with respect to nh_shutdown. */
int nh_init(const nh_options *opts);

/* Returns every arena to the OS and forgets all state; nh_init may be called again. The
 * program must hold no pointer into the heap. Not thread-safe with respect to other calls. */
void nh_shutdown(void);

/* ===========================================================================================
 * Allocation
 *
 * All thread-safe. Sizes of 0 give a unique minimal object. Failures (out of memory, a size
 * that overflows) return NULL with errno = ENOMEM and are reported through the funnel; calls
 * before nh_init return NULL with errno = ENODEV.
 * =========================================================================================== */

/* An object the collector scans conservatively (every aligned word may be a pointer). Zeroed. */
NH_WUR NH_ALLOC_SIZE(1) void *nh_alloc(size_t size);
/* An object that holds no heap pointers: never scanned, not zeroed (as malloc). With the
 * collector on, objects of up to 5 bytes share 16-byte blocks (the tiny allocator), aligned
 * as their size requires; nh_free of one is accepted and left to the collector. */
NH_WUR NH_ALLOC_SIZE(1) void *nh_alloc_noscan(size_t size);
/* Precise objects: a type names the offsets of the pointer fields of a struct of `size`
 * bytes (8-byte aligned offsets); nh_alloc_typed(size, type) allocates size bytes (a multiple
 * of the type's size: an array of it), zeroed, and the collector follows only those fields.
 * Types are immortal and share a 64 MiB region (a type takes 16 bytes plus one bit per 8
 * bytes of size). NULL, reported: EINVAL for a bad layout or size (an offset whose word is not inside
 * size bytes); ENOMEM when the type does not fit in what is left of the region, which leaves
 * that room to smaller types. Thread-safe. */
typedef struct nh_type nh_type;
const nh_type *nh_type_new(size_t size, const size_t *ptr_offsets, size_t n);
NH_WUR NH_ALLOC_SIZE(1) void *nh_alloc_typed(size_t size, const nh_type *type);
/* An object as nh_alloc whose memory lies on NUMA node `node` (0 .. nh_stats' numa_nodes - 1),
 * whichever CPU asks: for data another node's threads will use. From another node's CPU it
 * takes that node's shared cache under a lock (slower than nh_alloc). NULL/EINVAL for a node
 * that does not exist. With numa_policy = interleave the node's arenas are interleaved too. */
NH_WUR NH_ALLOC_SIZE(1) void *nh_alloc_onnode(size_t size, int node);
/* n * size bytes, zeroed, scanned as nh_alloc; NULL/ENOMEM if n * size overflows. */
NH_WUR NH_ALLOC_SIZE2(1, 2) void *nh_calloc(size_t n, size_t size);
/* Resizes p (NULL: allocates; size 0: frees and returns NULL), keeping its kind and contents.
 * On failure p is untouched and NULL is returned. */
NH_WUR NH_ALLOC_SIZE(2) void *nh_realloc(void *p, size_t size);
/* size bytes at a multiple of align (a power of two), zeroed, scanned as nh_alloc;
 * NULL/EINVAL for a bad alignment. */
NH_WUR NH_ALLOC_SIZE(2) NH_ALLOC_ALIGN(1) void *nh_aligned_alloc(size_t align, size_t size);
/* Frees p now (optional when the collector runs). NULL is ignored. A pointer nheap did not
 * return, an interior pointer, or an object the program does not own (a double free, whatever
 * the object's bytes hold since) is reported through the funnel and ignored. */
void nh_free(void *p);
/* ===========================================================================================
 * Collector
 *
 * A non-moving mark-and-sweep collector: gc = concurrent marks while the program runs, with
 * the nh_store barrier; gc = concurrent-nobarrier marks while it runs with plain stores, the
 * kernel reporting the pages written meanwhile (Linux 6.7+; else it stops the world, saying so);
 * gc = stw stops every attached thread for the mark. Roots
 * are the attached threads' stacks and registers, the writable data of the program and its
 * shared libraries, and ranges registered with nh_root_add; all are scanned conservatively,
 * and so are nh_alloc objects (any aligned word that points into an object, interior
 * pointers included, keeps it). Memory malloc returned is not scanned: a pointer kept only
 * there does not keep an object alive (register the range). Stops use SIGPWR; an attached
 * thread must not block it. A stopped thread holds every signal but the fatal ones until the
 * restart, so no handler of the program runs on it mid-cycle.
 * =========================================================================================== */
/* A full collection: returns after marking and sweeping are complete, so nh_stats_read shows
 * the live heap. No-op with gc = off. */
void nh_gc(void);
/* The most recent stop-the-world pauses, oldest first, in ns (as Go's debug.ReadGCStats
 * Pause): copies up to max of the last 256 into ns and returns how many. Each concurrent cycle
 * records its two pauses (or more when mark termination is retried), a stw cycle one. */
size_t nh_gc_pauses(uint64_t *ns, size_t max);
/* How many stop-the-world pauses were recorded since nh_init (the count by which
 * nh_gc_pauses' record advances): one atomic load. A reader that wants every pause reads it,
 * then nh_gc_pauses for the new ones (at most 255: the oldest of the 256 is the slot the next
 * pause overwrites before the count moves), then it again (and retries if it moved).
 * Thread-safe; 0 before nh_init. */
uint64_t nh_gc_pause_count(void);
/* Collection events, numbered as bdwgc's GC_EventType (its RECLAIM events, 3 and 4, are not
 * raised: nheap sweeps lazily and in the background, not at a point of the cycle): fn(event)
 * runs on the collecting thread at a cycle's start and end, when its mark starts (the world
 * just stopped for setup) and ends (in the last stop), and around every stop and restart of
 * the world. It runs with the collector's locks held and, from POST_STOP_WORLD to
 * PRE_START_WORLD, with every other attached thread stopped wherever it was: it must not
 * allocate, call nheap, or take a lock that a program thread may hold (a timestamp or a
 * counter is what it is for). NULL removes it; returns the one it replaces. Thread-safe. */
typedef enum nh_gc_event_kind {
  NH_EVENT_START = 0,
  NH_EVENT_MARK_START = 1,
  NH_EVENT_MARK_END = 2,
  NH_EVENT_END = 5,
  NH_EVENT_PRE_STOP_WORLD = 6,
  NH_EVENT_POST_STOP_WORLD = 7,
  NH_EVENT_PRE_START_WORLD = 8,
  NH_EVENT_POST_START_WORLD = 9,
} nh_gc_event_kind;
typedef void (*nh_gc_event_fn)(nh_gc_event_kind event);
nh_gc_event_fn nh_set_gc_event_hook(nh_gc_event_fn fn);
/* GOGC: the heap goal is live + (live + roots) * percent/100, where the next cycle's mark
 * should end (it starts earlier, by the runway the pacer measures it needs); < 0 turns paced
 * collection off (the memory limit still applies). Waits for a cycle in progress to finish.
 * Returns the previous value. A percent above 1000000 (the gc_percent option's limit) is
 * reported (EINVAL) and changes nothing. */
int nh_set_gc_percent(int percent);
/* GOMEMLIMIT in bytes (0 = none; < 0 only reads it): the pacer keeps the heap under it, and
 * an allocation that cannot fit under it even after a full collection returns NULL (ENOMEM,
 * reported). While collections already take half the CPU (the CPU limiter), an allocation may
 * pass it by up to an eighth instead of collecting again (Go's soft limit), as long as the last
 * cycle's live heap fits. Waits for a cycle in progress to finish. Returns the previous value. */
int64_t nh_set_memory_limit(int64_t bytes);
/* Registers [addr, addr + len) as a root (scanned conservatively every cycle) / removes the
 * range registered at addr. A range inside an nheap object keeps that object alive as well
 * (nh_alloc + nh_root_add: an uncollectable object, bdwgc's GC_MALLOC_UNCOLLECTABLE).
 * 0, -EINVAL, -ENOMEM, -ENOENT (remove: not registered). */
int nh_root_add(void *addr, size_t len);
int nh_root_remove(void *addr);
/* As nh_root_remove, but -ENOENT is not reported (for a free that may or may not own a root). */
int nh_root_forget(void *addr);
/* Threads attach on their first allocation and detach at exit; a thread that holds heap
 * pointers without allocating must attach itself. 0, or a negative code. */
int nh_thread_attach(void);
void nh_thread_detach(void);
/* Runs fn(arg) and returns its result, with the calling thread counted as stopped while fn
 * runs (bdwgc's GC_do_blocking): for a thread about to block in the kernel (accept, epoll_wait,
 * a read, a sleep), so that the collector's pauses neither wake it nor wait for it to be
 * scheduled. Its stack and registers up to this call are still scanned. fn must not touch
 * nheap's heap (allocate, free, or load or store pointers into its objects), must return (no
 * longjmp out of it, no thread exit inside), and may not call nh_do_blocking again. Outside
 * an attached thread, or with gc = off, it just calls fn. */
void *nh_do_blocking(void *(*fn)(void *arg), void *arg);
/* Finalizers: when obj (an object's start) is found unreachable, the collector keeps it (and
 * what it points to) and a dedicated thread calls fn(obj, arg) once; the object is freed by a
 * later cycle unless fn stored it somewhere reachable. fn == NULL removes obj's finalizer.
 * Objects in a cycle of finalizable objects are never finalized. Do not nh_free an object
 * with a finalizer (remove it first). 0, -EINVAL, -ENOMEM, -ENOTSUP (gc = off). */
typedef void (*nh_finalizer_fn)(void *obj, void *arg);
int nh_set_finalizer(void *obj, nh_finalizer_fn fn, void *arg);
/* obj's finalizer and (if arg) its argument; NULL if it has none. */
nh_finalizer_fn nh_get_finalizer(void *obj, void **arg);
/* Weak references: a handle to p (any address inside an object) that does not keep it alive;
 * nh_weak_get returns p while the object lives and NULL once a cycle found it unreachable
 * (cleared before any finalizer of it runs). nh_weak_free releases the handle. Both check
 * that w is a live handle: one that was freed already, or a pointer nh_weak_new did not
 * return, is reported (-EINVAL) and changes nothing; nh_weak_get returns NULL for it.
 * NULL is accepted (NULL, nothing done). Thread-safe. */
typedef struct nh_weak nh_weak_t;
nh_weak_t *nh_weak_new(void *p);
void *nh_weak_get(const nh_weak_t *w);
void nh_weak_free(nh_weak_t *w);
/* The write barrier. In gc = concurrent mode, every store of a pointer into an nheap object
 * (a field of an object from nh_alloc, nh_alloc_typed, nh_calloc or nh_realloc) must go
 * through nh_store, or, for copies of several pointers, nh_memmove_ptrs; a plain store there
 * can let the collector free an object the program still reaches (NHEAP_DEBUG=checkmark=1
 * catches such a store: the cycle aborts naming the object). Stores that do not need it:
 * into locals, the stack and registers, and into memory nheap does not own (globals and
 * nh_root_add ranges, which are scanned when marking starts; malloc memory, which is not
 * scanned at all). Needs an attached thread (any thread that allocated, or called
 * nh_thread_attach).
 *
 * While no mark runs, nh_store is a test of one flag and a store. While one runs, it records
 * the value being overwritten for the collector (Yuasa's deletion barrier: everything the heap
 * referenced when marking started is marked) in a per-thread buffer. On x86-64 the test and
 * the store are one restartable sequence, so a thread stopped between them for the start or
 * the end of a mark tests again; gc = concurrent needs glibc's rseq registration for that and
 * falls back to stw without it. */
extern int nh__marking;                              /* internal: a concurrent mark runs */
void nh__store_marking(void **slot, void *value);   /* internal: the barrier's slow path */
/* As memmove(dst, src, n) for a range holding pointers, with the barrier for dst's old words. */
void nh_memmove_ptrs(void *dst, const void *src, size_t n);

#if defined(__x86_64__) && defined(__GNUC__)
#include <sys/rseq.h>
#include "nheap_rseq.h"
static inline void nh_store(void **slot, void *value) {
  const long rs = (long)__rseq_offset;
  for (;;) {
    __asm__ goto(
        NH_RSEQ_PROLOGUE
        "1:\n\t"
        "cmpl $0, (%[marking])\n\t"
        "jne %l[marking_on]\n\t"
        "movq %[value], (%[slot])\n\t"   /* commit */
        "2:\n\t"
        NH_RSEQ_EPILOGUE(aborted)
        :
        : [rs] "r"(rs), [marking] "r"(&nh__marking), [slot] "r"(slot), [value] "r"(value)
        : "rax", "memory", "cc"
        : marking_on, aborted);
    return;
  aborted:
    continue;
  marking_on:
    nh__store_marking(slot, value);
    return;
  }
}
#else
static inline void nh_store(void **slot, void *value) {
  if (__atomic_load_n(&nh__marking, __ATOMIC_RELAXED))
    nh__store_marking(slot, value);
  else
    *slot = value;
}
#endif

/* Returns up to max_bytes of free heap pages to the OS now (SIZE_MAX: all of them), on the
 * calling thread, after handing the few empty spans each size class keeps back to the page
 * heap; the background scavenger does the same for what exceeds the heap's goal. Returns the
 * bytes released. Thread-safe. */
size_t nh_scavenge(size_t max_bytes);
/* The usable size of the object starting at p (>= what was asked); 0 for bad pointers. */
size_t nh_usable_size(const void *p);
/* The start of the object containing p (any interior address), or NULL if p is not inside
 * an nheap object. Lock-free, O(1). */
void *nh_base(const void *p);

/* ===========================================================================================
 * Errors
 * =========================================================================================== */

/* The handler gets a negative errno-style code (0 for a warning: something degraded but
 * works) and one line of text without a trailing newline. It runs on the thread that made the
 * mistake, before the failing call returns (warnings about the heap's own state may come from
 * nheap's collector thread), but never while that thread holds an nheap lock or is inside one
 * of the collector's no-stop regions (a report made there waits until the thread has left
 * them): it may call any nheap function (nh_alloc, nh_free, nh_stats_read, nh_gc, ...) except
 * nh_init and nh_shutdown; nh_gc on the collector thread returns at once. fn == NULL restores
 * the default handler, which writes "nheap: <msg>" to stderr. Thread-safe. */
typedef void (*nh_error_fn)(int code, const char *msg, void *arg);
void nh_set_error_handler(nh_error_fn fn, void *arg);

/* The text for a negative errno-style code returned by nheap. Thread-safe. */
const char *nh_strerror(int code);

/* ===========================================================================================
 * Statistics
 *
 * Address-space vocabulary (Go's): Reserved (address range held, PROT_NONE) -> Prepared
 * (mapped read-write, not backed: released to the OS) -> Ready (in use, may be resident).
 * =========================================================================================== */

typedef enum nh_backing {
  NH_BACKING_SMALL = 0,     /* 4 KiB pages */
  NH_BACKING_THP = 1,       /* transparent huge pages requested with MADV_HUGEPAGE */
  NH_BACKING_HUGETLB = 2,   /* 2 MiB pages from the hugetlb pool */
} nh_backing;

typedef enum nh_percpu_mode {
  NH_PERCPU_LOCK = 0,       /* each per-CPU cache operation takes that CPU's lock */
  NH_PERCPU_RSEQ = 1,       /* restartable sequences: no lock, no atomic read-modify-write */
} nh_percpu_mode;

/* perf.events are counted per phase of the collector's work (README, "Hardware counters"). */
#define NH_PERF_MAX_EVENTS 8
typedef enum nh_perf_phase {
  NH_PHASE_ALLOC = 0,        /* program threads outside the collector's work: running, allocating */
  NH_PHASE_MARK = 1,         /* marking: collector thread, mark workers, assists (stw: inside the pause) */
  NH_PHASE_SWEEP = 2,        /* sweeping: background, lazy on allocation, and before a cycle */
  NH_PHASE_PAUSE_SETUP = 3,  /* stop-the-world: sweep termination and mark setup (stopping included) */
  NH_PHASE_PAUSE_TERM = 4,   /* stop-the-world: mark termination */
  NH_PHASE_SCAVENGE = 5,     /* returning free memory to the OS */
  NH_PERF_PHASES = 6,
} nh_perf_phase;

typedef struct nh_stats {
  size_t size;                   /* set to sizeof(nh_stats_t) by the caller */
  uint64_t heap_reserved_bytes;  /* arena address space: Reserved + Prepared + Ready */
  uint64_t heap_mapped_bytes;    /* arena memory mapped: in use + free + released */
  uint64_t heap_inuse_bytes;     /* pages in spans (objects, cached or not) */
  uint64_t heap_free_bytes;      /* free pages still backed by memory (Ready) */
  uint64_t heap_released_bytes;  /* free pages given back to the OS (Prepared): cost nothing */
  uint64_t metadata_bytes;       /* off-heap metadata: arena page maps, spans, caches */
  uint64_t arenas;               /* 64 MiB arenas, and how each is backed: */
  uint64_t arenas_hugetlb;
  uint64_t arenas_thp;
  uint64_t arenas_small;
  uint64_t hugetlb_fallbacks;    /* arenas that wanted hugetlb and did not get it */
  uint64_t thp_fallbacks;        /* arenas that wanted THP and got 4 KiB pages */
  uint64_t numa_nodes;           /* nodes nheap places memory on (fake nodes included) */
  uint64_t small_spans;          /* spans holding small objects */
  uint64_t large_objects;        /* live objects over 32 KiB */
  uint64_t bad_frees;            /* nh_free/nh_realloc of foreign, interior or freed pointers */
  uint64_t double_frees;         /* of which double frees */
  uint64_t percpu_mode;          /* nh_percpu_mode: how per-CPU caches are protected */
  uint64_t scavenged_bytes;      /* returned to the OS by the scavenger and nh_scavenge, all time */
  uint64_t scavenger_uring;      /* 1: the io_uring ring is up, releases go to it first; 0: madvise
                                  * only (uring=0, no io_uring, or the ring failed). What did the
                                  * work: scavenger_uring_releases, scavenger_madvise_releases */
  uint64_t gc_cycles;            /* completed collections */
  uint64_t pause_total_ns;       /* stop-the-world time, all cycles */
  uint64_t pause_max_ns;         /* longest pause */
  uint64_t gc_mode;              /* nh_gc_mode in effect (see nh_options.gc) */
  uint64_t gc_forced;            /* of the cycles, run by nh_gc or the memory limit */
  uint64_t gc_limited;           /* times the CPU limiter held the collector back: cycles marked
                                    without assists, stop-the-world cycles put off, allocations let
                                    past the memory limit */
  uint64_t pause_p50_ns;         /* median of every pause, from the pause histogram: the upper
                                    bound of its bucket (at most 25% over), capped at the max */
  uint64_t pause_p99_ns;         /* 99th percentile of every pause, the same way */
  uint64_t gc_mark_ns;           /* time spent marking, all cycles */
  uint64_t gc_sweep_ns;          /* time the background sweeper and nh_gc spent sweeping */
  uint64_t heap_live_bytes;      /* pacer: marked by the last cycle + allocated since (0 with gc = off) */
  uint64_t heap_marked_bytes;    /* live after the last cycle's mark */
  uint64_t heap_goal_bytes;      /* the next mark should end with the heap this big; 0: no goal
                                    (gc_percent < 0 and no memory limit) */
  uint64_t heap_trigger_bytes;   /* the next cycle starts when heap_live reaches this; 0: none */
  int64_t gc_percent;            /* GOGC in effect */
  uint64_t memory_limit;         /* 0: none */
  uint64_t limit_refusals;       /* allocations refused for the memory limit */
  uint64_t roots_bytes;          /* stacks, data segments and registered roots scanned last cycle */
  uint64_t threads_attached;     /* threads the collector stops and scans */
  uint64_t swept_pages;          /* pages the background sweeper and nh_gc swept, all time */
  uint64_t finalizers_run;       /* finalizers the finalizer thread has run */
  uint64_t tiny_spans;           /* of small_spans, those of the tiny allocator (gc != off) */
  uint64_t tiny_frees;           /* nh_free of tiny objects: left to the collector */
  uint64_t frees_deferred;       /* nh_free during a concurrent mark: left to the collector */
  uint64_t gc_worker_ns;         /* concurrent mode: the dedicated mark workers' marking time */
  uint64_t gc_assist_ns;         /* concurrent mode: time allocating threads spent in mark assists */
  uint64_t gc_pauses;            /* stop-the-world pauses, all cycles (nh_gc_pauses has the last 256) */
  uint64_t swept_spans;          /* spans swept (lazily on allocation or in the background), all time */
  /* NUMA: where the markers scanned heap objects (on their own node's memory or
   * another's), grey blocks they took from another node's queue, and objects freed by a CPU
   * of another node than their memory's (sent back to their node). All time. */
  uint64_t gc_scan_local_bytes;
  uint64_t gc_scan_remote_bytes;
  uint64_t gc_mark_steals;
  uint64_t remote_frees;
  /* gc = concurrent-nobarrier: bytes of pages found written during marks and rescanned (all
   * time), and the last cycle's. */
  uint64_t gc_dirty_bytes;
  uint64_t gc_dirty_last_bytes;
  /* perf.events per phase, summed over threads and scaled for multiplexing; events this
   * machine cannot count (no PMU) are left out, so perf_events may be fewer than asked. The
   * calling thread's counts are current; other program threads' arrive at the next pause, or
   * when they exit. */
  uint64_t perf_events;                                    /* events counted: names below */
  char perf_event_names[NH_PERF_MAX_EVENTS][32];
  uint64_t perf_counts[NH_PERF_PHASES][NH_PERF_MAX_EVENTS];
  uint64_t perf_phase_ns[NH_PERF_PHASES];                  /* thread time in each phase */
  /* Marks that ran out of memory for grey objects recover by rescanning the marked objects
   * in place (bdwgc's overflow recovery): rounds of that, all time. */
  uint64_t gc_mark_overflows;
  /* The scavenger's releases (ranges of free pages), all time: those whose MADV_DONTNEED an
   * io_uring completion confirmed, and those released by plain madvise (uring=0, no io_uring,
   * or a request the ring refused or failed). Here at the end so older callers' prefix stays. */
  uint64_t scavenger_uring_releases;
  uint64_t scavenger_madvise_releases;
  /* Free memory the scavenger thread faulted in ahead of the allocations that take it next,
   * all time (a first touch can cost milliseconds per 2 MiB in a VM, and a thread inside a
   * page fault cannot be stopped for a pause). At most 4 MiB per node ahead at a time. */
  uint64_t scavenger_prefaulted_bytes;
} nh_stats_t;

/* Fills *out (out->size must be set; a smaller struct gets its prefix). Returns 0, -EINVAL
 * for a bad size, -ENODEV before nh_init. Thread-safe, from any thread at any rate: it takes
 * no lock the allocator or the collector holds through its work, costs well under a
 * microsecond whatever the number of cycles, and computes the pause percentiles from the
 * histogram. The page figures come from one moment (per NUMA node, under the page heap's
 * seqlock): heap_inuse + heap_free + heap_released = heap_mapped in every snapshot, exactly.
 * Each other counter is exact and read at about the same moment. */
int nh_stats_read(nh_stats_t *out);

/* Single counters, for a caller that polls one (bdwgc's GC_get_heap_size): the same value as
 * the field of nh_stats_t named beside it, in a few nanoseconds. */
typedef enum nh_stat_id {
  NH_STAT_HEAP_MAPPED = 0,   /* heap_mapped_bytes */
  NH_STAT_HEAP_INUSE = 1,    /* heap_inuse_bytes */
  NH_STAT_HEAP_LIVE = 2,     /* heap_live_bytes */
  NH_STAT_HEAP_GOAL = 3,     /* heap_goal_bytes */
  NH_STAT_GC_CYCLES = 4,     /* gc_cycles */
  NH_STAT_GC_PAUSES = 5,     /* gc_pauses */
  NH_STAT_PAUSE_TOTAL_NS = 6, /* pause_total_ns */
  NH_STAT_METADATA = 7,      /* metadata_bytes */
  NH_STAT_HEAP_BACKED = 8,   /* heap_mapped_bytes - heap_released_bytes (in use + free), both
                                from one moment: bdwgc's GC_get_heap_size */
  NH_STAT_IDS = 9,
} nh_stat_id;

/* The counter id, or 0 before nh_init and for an unknown id (reported through the error
 * funnel). Thread-safe, lock-free with respect to the allocator and the collector. */
uint64_t nh_stat(nh_stat_id id);

typedef struct nh_arena_stat {
  uintptr_t base;           /* 64 MiB-aligned start */
  size_t bytes;             /* 64 MiB */
  int node;                 /* NUMA node the arena belongs to */
  nh_backing backing;       /* what it got */
  nh_hugepages_mode wanted; /* what the policy asked for */
} nh_arena_stat_t;

/* Copies up to n arena records into out (creation order) and returns how many arenas exist
 * (which may be more than n), or -ENODEV before nh_init. Thread-safe. */
long nh_stats_arenas(nh_arena_stat_t *out, size_t n);

typedef struct nh_node_stat {
  int node;
  uint64_t inuse_bytes;      /* pages in spans in this node's arenas: what was asked of it */
  uint64_t sampled_pages;    /* in-use 4 KiB pages asked where they lie (move_pages, query mode) */
  uint64_t pages_on_node;    /* of those: resident on this node */
  uint64_t pages_elsewhere;  /* resident on another node */
  uint64_t pages_absent;     /* not resident (never touched, or released) */
  uint64_t remote_frees;     /* its objects freed by another node's CPU, all time */
} nh_node_stat_t;

/* Placement, verified: per NUMA node, the bytes in use in its arenas and where a sample of up
 * to `sample` of their pages, spread over them, actually lies. Costs one move_pages call per
 * node: for diagnostics, not hot paths. With numa = fake:N the nodes past the machine's own
 * show their pages elsewhere (nothing is bound for them). Copies up to n records and returns
 * the node count, or -ENODEV before nh_init. Thread-safe. */
long nh_stats_nodes(nh_node_stat_t *out, size_t n, size_t sample);

typedef struct nh_class_stat {
  uint32_t size;            /* bytes per object */
  uint32_t span_bytes;      /* bytes per span */
  uint32_t objects_per_span;
  uint64_t spans;           /* spans of this size class in use (all nodes and kinds) */
} nh_class_stat_t;

/* Copies up to n records, one per small size class in increasing size, and returns how many
 * size classes there are (67), or -ENODEV before nh_init. Thread-safe. */
long nh_stats_classes(nh_class_stat_t *out, size_t n);

/* Output formats of nh_stats_write. */
typedef enum nh_stats_format {
  NH_STATS_TEXT = 0,         /* lines for people: what nh_stats_print writes */
  NH_STATS_JSON = 1,         /* one JSON object (README, "Statistics for servers") */
  NH_STATS_OPENMETRICS = 2,  /* the OpenMetrics text exposition (Prometheus), ending "# EOF":
                                the metrics the README lists, nheap_ prefix, base units */
} nh_stats_format;

/* Writes one snapshot of the statistics (nh_stats_read's, with the pause histograms, the
 * size classes, the NUMA nodes, the arenas, the pacer and the collector's CPU) to fd in fmt.
 * Allocates nothing (a 4 KiB buffer on the caller's stack, about 20 KiB of stack in all,
 * flushed with write(2), retried on EINTR and short writes) and holds no lock while writing,
 * so a slow reader of fd holds up nothing but the caller. Returns 0; -EINVAL for an unknown
 * fmt (reported through the error funnel), -ENODEV before nh_init, or -errno of a failed
 * write. Thread-safe, from any thread. */
int nh_stats_write(int fd, nh_stats_format fmt);

/* nh_stats_write(fd, NH_STATS_TEXT): the statistics and the arena table, as text (2 = stderr). */
int nh_stats_print(int fd);

/* The name of a backing ("4k", "thp", "hugetlb"). */
const char *nh_backing_name(nh_backing b);

#ifdef __cplusplus
}
#endif
#endif /* NHEAP_H */
