/*
 * gc.h — the collector's internal interface: threads and stopping the world (thread.c), roots
 * and marking (mark.c), the cycle, the pacer and the background sweeper (gc.c). Sweeping a span
 * is an mcentral operation (mcentral.c).
 */
#ifndef NH_GC_H
#define NH_GC_H

#include <semaphore.h>
#include <signal.h>

#include "core/error.h"
#include "core/lock.h"
#include "core/mcentral.h"
#include "core/dirty.h"
#include "numa/topology.h"

/* ---------------------------------------------------------------------------------------------
 * Threads (thread.c).
 * ------------------------------------------------------------------------------------------- */

#define NH_WBUF_CAP 512

typedef struct nh_thread {
  struct nh_thread *next, *prev;   /* attached list; guarded by the threads lock */
  pthread_t tid;
  uintptr_t stack_lo, stack_hi;    /* from pthread_getattr_np */
  uintptr_t stop_sp;               /* while stopped: the lowest live stack address */
  uint32_t gen;                    /* the threads_init generation it was attached in */
  bool guarded;                    /* from the pool of guarded mappings (secure = on) */
  volatile int nogc;               /* depth of no-stop regions (this thread and its handler) */
  volatile sig_atomic_t stop_pending; /* a stop arrived inside a region: stop on leaving it */
  /* The write barrier's buffer (Go's wbBuf): values nh_store overwrote during a concurrent
   * mark, shaded when it fills, when the thread detaches, and at mark termination. Written by
   * the thread inside a no-stop region; read by the collector while the world is stopped. */
  uint32_t wbn;
  int64_t assist_debt;             /* scan work this thread owes the current mark (bytes) */
  struct nh_perf_thread *perf;     /* its perf counters (TLS), read by the collector when stopped */
  uintptr_t wbuf[NH_WBUF_CAP];
} nh_thread_t;

typedef struct nh_threads {
  nh_mutex_t lock;                 /* LOCK_RANK_THREADS; held from stop to start */
  nh_thread_t *first;
  nh_thread_t *free;               /* records for reuse */
  size_t count;
  uint32_t epoch;                  /* odd while the world is stopped */
  uint32_t gen;                    /* a new value at every threads_init (nh_init) */
  sem_t ack;                       /* one post per stopped thread */
  pthread_key_t key;               /* detaches at thread exit */
  bool key_made;
} nh_threads_t;

/* The calling thread's record. Records are never unmapped, so one left over from before an
 * nh_shutdown stays readable; its gen tells that it is stale. */
extern __thread nh_thread_t *nh_self __attribute__((tls_model("initial-exec")));

static inline bool thread_attached(const nh_threads_t *ts) {
  nh_thread_t *t = nh_self;
  return t && t->gen == ts->gen;
}

int threads_init(nh_threads_t *ts);
void threads_destroy(nh_threads_t *ts);
/* Registers the calling thread (idempotent; re-attaches a stale record). 0, or -ENOMEM. */
int thread_attach(void);
void thread_detach(void);
/* After fork, in the child: only the calling thread survives. */
void threads_after_fork(nh_threads_t *ts);

/* Stops every attached thread but the caller (each saves its registers on its stack and
 * records its stack pointer) and returns with the threads lock held; start undoes it and
 * returns when the threads were released (CLOCK_MONOTONIC ns): where a pause ends. The time
 * the caller then spends preempted by the threads it woke is not a pause (they run). */
void world_stop(nh_threads_t *ts);
uint64_t world_start(nh_threads_t *ts);

/* A no-stop region: code that takes allocator locks or holds an object only in metadata.
 * A stop request that arrives inside waits until the region ends. Nestable; cheap. */
static inline void region_enter(void) {
  if (nh_self)
    nh_self->nogc++;
  report_hold();   /* no error handler runs where the world cannot be stopped (error.h) */
}
void region_stop_pending(void);
static inline void region_exit(void) {
  nh_thread_t *t = nh_self;
  if (t && --t->nogc == 0 && nh_unlikely(t->stop_pending))
    region_stop_pending();
  report_release();
}

/* ---------------------------------------------------------------------------------------------
 * Marking (mark.c).
 * ------------------------------------------------------------------------------------------- */

/* A block of grey objects (Go's workbuf), in metadata memory and reused across cycles. */
#define NH_WORKBUF_BYTES (64 << 10)
typedef struct nh_workbuf {
  struct nh_workbuf *next;
  size_t n;
  uintptr_t obj[(NH_WORKBUF_BYTES - 16) / sizeof(uintptr_t)];
} nh_workbuf_t;

typedef struct nh_root { uintptr_t lo, hi; } nh_root_t;

/* Grey blocks shared by the concurrent markers (the collector thread, the mark workers and
 * the write barrier's flushes): Go's work.full list, one per NUMA node (NumaGiC): a block
 * waits on the list of the node whose memory holds its objects, and a marker takes from its
 * own node's list first and from the others' only when its own is empty. */
typedef struct nh_markwork {
  nh_mutex_t lock;                 /* LOCK_RANK_MARKWORK */
  pthread_cond_t cv;               /* work arrived, or the phase ended; with lock.m */
  nh_workbuf_t *full[NH_MAX_NODES]; /* grey blocks anyone may take, by node */
  size_t nfull;                    /* blocks on all the lists */
  nh_workbuf_t *spare;             /* empty blocks */
  unsigned busy;                   /* markers draining now */
  bool overflow;                   /* a grey object was dropped somewhere: rescan marked ones */
  uint64_t marked_bytes, marked_objects; /* relaxed: by the barrier and black allocation */
  uint64_t scanned_bytes;          /* relaxed: by the workers and assists */
  uint64_t scanned_local, scanned_remote, steals; /* relaxed: the same, by where they ran */
} nh_markwork_t;

/* Checkmark's side bitmaps: one bit per 8 bytes of each arena that existed when they were made. */
typedef struct nh_sidemap {
  uint64_t **bits;                 /* per arena id; NULL: none made */
  uint32_t narenas;
} nh_sidemap_t;

typedef struct nh_marker {
  nh_workbuf_t *cur;               /* the stack's top block */
  nh_workbuf_t *full;              /* blocks below it */
  nh_workbuf_t *spare;             /* empty blocks */
  size_t nspare;
  nh_markwork_t *pool;             /* where spare blocks beyond a few go, and come from */
  nh_markwork_t *shared;           /* concurrent mode: full blocks go here, and work comes from it */
  int node;                        /* the node it runs on: its stack holds that node's objects */
  uint64_t out_nodes;              /* shared, several nodes: which out[] blocks hold objects */
  nh_workbuf_t *out[NH_MAX_NODES]; /* grey objects of other nodes, on their way to those lists */
  bool overflow;                   /* a grey object was dropped: rescan marked objects */
  uint64_t overflow_rounds;        /* this mark's overflow recovery rounds */
  bool keeps_reserve;              /* the collector's: keeps one block for overflow recovery */
  nh_workbuf_t *reserve;           /* that block, when no marker is using it */
  uint64_t marked_bytes, marked_objects, scanned_bytes;
  uint64_t scanned_local, scanned_remote; /* of scanned_bytes, heap objects on its node or not */
  uint64_t steals;                 /* blocks taken from another node's list */
  /* Checkmark mode: a second, independent mark into side bitmaps (one bit per 8 bytes). */
  bool checking;
  bool snapshotting;               /* the traversal at a concurrent mark's setup: records only */
  nh_sidemap_t check;              /* what the check reached */
  nh_sidemap_t snap_alloc, snap_reach; /* a concurrent mark's: allocated, reachable at its setup */
  uint64_t check_doubtful;         /* unmarked objects reached that were garbage at setup */
  const char *check_from;          /* what the word being scanned belongs to */
  uintptr_t check_parent;
} nh_marker_t;

/* Finalizers and weak references (special.c). */
enum { NH_WEAK_SLABS = 40 };       /* 64 << 39 handles: more than memory holds */
struct nh_final_rec;
struct nh_weak;
typedef struct nh_specials {
  nh_mutex_t lock;                 /* LOCK_RANK_SPECIALS: the tables below */
  struct nh_final_rec *final;      /* registered finalizers */
  size_t nfinal, capfinal;
  struct nh_final_rec *ready;      /* queued to run (roots until they have run) */
  size_t nready, capready;
  /* Weak handles live in slabs (slab k holds 64 << k of them) that never move or go, so a
   * pointer can be checked to be a handle without the lock (special.c). */
  struct nh_weak *weak_slab[NH_WEAK_SLABS];
  size_t weak_slabs;               /* made: release store after the slab, acquire loads */
  size_t weak_top;                 /* handles handed out of the newest slab */
  struct nh_weak *weak_free;       /* freed handles, for reuse */
  uint64_t queued;                 /* relaxed: finalizers moved to the ready queue, all time */
  uint64_t run;                    /* relaxed: finalizers run (equals queued once drained) */
  pthread_t thread;
  bool thread_started, stop, wake; /* thread_started: release store; stop, wake: run_mu */
  pthread_mutex_t run_mu;
  pthread_cond_t run_cv;
} nh_specials_t;

typedef struct nh_roots {
  nh_mutex_t lock;                 /* LOCK_RANK_ROOTS: the registered ranges */
  nh_root_t *user;                 /* nh_root_add */
  size_t nuser, capuser;
  nh_root_t *data;                 /* writable segments of the program and its libraries */
  size_t ndata, capdata;
  uint64_t bytes;                  /* scanned last cycle: stacks + data + registered */
} nh_roots_t;

/* Roots (roots.c). roots_collect_data lists the program's and libraries' writable segments
 * (dl_iterate_phdr); called before the world stops (the loader lock may be held by a thread
 * that is about to be stopped). roots_scan greys what the roots hold: the attached threads'
 * stacks (from their stop sp; the collecting thread's from where it entered the collector,
 * registers spilled), data segments, registered ranges; the world is stopped. roots_rescan, at
 * mark termination: the stacks again (an object a thread allocated just before the stop may
 * not be marked yet), and with globals the data segments and registered roots (no barrier saw
 * their stores: concurrent-nobarrier). */
void roots_collect_data(nh_roots_t *r);
void roots_scan(nh_marker_t *m, nh_roots_t *r, nh_threads_t *ts);
void roots_rescan(nh_marker_t *m, nh_roots_t *r, nh_threads_t *ts, bool globals);

/* Marking (mark.c). A mark, world stopped (gc = stw): mark_begin(m, NULL), the roots and the
 * specials greyed (roots_scan, mark_specials), then mark_drain_all: drains, and recovers from
 * overflow. Concurrent marking (cycle.c runs the phases):
 *   mark_begin(m, w)   world stopped: m's full blocks go to the shared work w from now on;
 *                      the roots and specials are greyed into m, then mark_publish shares them;
 *   mark_drain_shared  drains m and the shared blocks until none is left, or until about
 *                      budget bytes were scanned (returns true then: work may be left);
 *   mark_give_back     m's grey blocks, to the shared list (before a marker rests);
 *   mark_finish        world stopped: overflow recovery; adds what the barrier and black
 *                      allocation marked to m's counts and detaches m from w;
 *   mark_shade_batch   marks the objects holding v[0..n) and shares the new grey ones (v is
 *                      overwritten);
 *   mark_new_object    black allocation: marks the object (or tiny block) at p;
 *   mark_flush_wbufs   world stopped: every thread's barrier buffer, shaded;
 *   mark_work_left     whether a shared block waits or a marker is draining;
 *   mark_thread_leaving a detaching thread's buffer, shaded (threads lock held). */
void mark_begin(nh_marker_t *m, nh_markwork_t *w);
void mark_publish(nh_marker_t *m);
void mark_drain_all(nh_marker_t *m);
/* Gives m a grey block of its own for overflow recovery, kept across cycles (the collector's
 * marker: the only one that recovers). -ENOMEM when there is no memory for it. */
int mark_reserve(nh_marker_t *m);
/* Scans the words of [lo, hi) conservatively into m (roots, checkmark's traversal). */
void mark_range(nh_marker_t *m, uintptr_t lo, uintptr_t hi);
/* For checkmark.c: the allocated object holding w (its span and index, or NULL); a grey push;
 * a drain to the end; fn for every span in use (world stopped). */
nh_span_t *mark_find(uintptr_t w, size_t *idx);
void mark_grey(nh_marker_t *m, uintptr_t obj, int node);
void mark_drain(nh_marker_t *m);
void mark_each_span(nh_marker_t *m, void (*fn)(nh_marker_t *m, nh_span_t *s));
bool mark_drain_shared(nh_marker_t *m, uint64_t budget);
void mark_give_back(nh_marker_t *m);
size_t mark_assist(nh_markwork_t *w, size_t budget);
/* Adds m's counts to its shared work's and clears them (a worker's, an assist's). */
void mark_report(nh_marker_t *m);
/* concurrent-nobarrier: [lo, hi) was written since it was protected; the words there of every
 * marked object are scanned again (a pointer stored into an object already scanned). */
void mark_rescan_dirty(nh_marker_t *m, uintptr_t lo, uintptr_t hi);
void mark_finish(nh_marker_t *m);
void mark_shade_batch(nh_markwork_t *w, uintptr_t *v, size_t n);
void mark_new_object(nh_markwork_t *w, uintptr_t p);
void mark_flush_wbufs(nh_markwork_t *w, nh_threads_t *ts);
bool mark_work_left(nh_markwork_t *w);
void mark_thread_leaving(nh_thread_t *t);

/* For the specials: marks what obj points to (not obj) / the object holding word w; tells
 * whether obj is marked (LIVE), allocated but unmarked (DEAD) or not allocated (GONE); marks a
 * dead object without scanning it (its referents were marked by mark_referents). */
enum { MARK_GONE = 0, MARK_DEAD = 1, MARK_LIVE = 2 };
void mark_referents(nh_marker_t *m, uintptr_t obj);
void mark_root_word(nh_marker_t *m, uintptr_t w);
int mark_state(uintptr_t obj);
void mark_resurrect(nh_marker_t *m, uintptr_t obj);
void specials_init(nh_specials_t *sp);
void specials_shutdown(nh_specials_t *sp);
void specials_after_fork_child(nh_specials_t *sp);
/* Marking's special roots (finalizable objects' referents, queued finalizers); then, after the
 * mark, clearing weak handles and resurrecting and queueing the finalizable dead. */
void mark_specials(nh_marker_t *m, nh_specials_t *sp);
size_t specials_after_mark(nh_marker_t *m, nh_specials_t *sp);   /* returns how many it queued */
void specials_wake(nh_specials_t *sp, size_t queued);             /* after the world restarts */
/* Validator: every finalizer record and every queued one names an allocated object (exact
 * once the heap is swept, as after nh_gc; the program must not have nh_freed one), and the
 * weak handle free list holds free handles only. Aborts naming what is wrong. */
void specials_validate(nh_specials_t *sp);

/* Checkmark: re-marks from scratch into side bitmaps and aborts on an object reachable but not
 * marked. mark_check_setup, in a concurrent mark's setup pause, records what is allocated and
 * what is reachable then, which mark_check uses to tell a lost object from a stale word; a
 * concurrent cycle whose setup could not record them is not checked. */
bool mark_check_setup(nh_marker_t *m, nh_roots_t *r, nh_threads_t *ts);   /* false: no memory (warned) */
void mark_check(nh_marker_t *m, nh_roots_t *r, nh_threads_t *ts);
/* A word the check's traversal scanned (m->checking): the object it reaches must be marked. */
void checkmark_word(nh_marker_t *m, uintptr_t at, uintptr_t w);

/* ---------------------------------------------------------------------------------------------
 * The cycle and the pacer (gc.c).
 * ------------------------------------------------------------------------------------------- */

#define NH_PAUSE_RING 256          /* recent pauses kept for percentiles */

typedef struct nh_gc {
  bool on;                         /* gc != off */
  int mode;                        /* nh_gc_mode in effect */
  nh_mutex_t lock;                 /* LOCK_RANK_GC: one cycle at a time */
  nh_threads_t threads;
  nh_roots_t roots;
  nh_marker_t marker;
  nh_specials_t specials;
  /* Concurrent marking (gc = concurrent): a collector thread runs each cycle, and the mark
   * workers drain with it. Requests and completions under req_mu. */
  nh_markwork_t work;
  pthread_t collector;
  bool collector_running;
  pthread_mutex_t req_mu;
  pthread_cond_t req_cv;           /* a cycle requested, or stop */
  pthread_cond_t done_cv;          /* a cycle completed */
  uint64_t requested, completed;   /* cycles asked for / finished (under req_mu) */
  uint64_t started;                /* the cycle in progress (under req_mu) */
  const char *req_why;
  bool collector_stop;
  unsigned nworkers;               /* mark workers besides the collector thread */
  struct nh_worker *workers;
  struct nh_fractional *collector_share; /* the collector thread as a marker */
  uint32_t fraction_permille;      /* the fractional marker's share of one CPU; 0: none */
  bool collector_fractional;       /* the collector thread is that marker (no dedicated one) */
  bool workers_stop, phase_mark;   /* under work.lock */
  uint64_t marks_started;          /* under work.lock: concurrent marks begun */
  uint64_t sweeps_requested;       /* under work.lock: cycles whose sweep the workers owe */
  bool node_swept_by_worker[NH_MAX_NODES]; /* set at start: that node's worker sweeps it */
  uint64_t worker_ns, assist_ns;   /* relaxed: the mark workers' and assists' time */
  uint64_t traced_assist_ns, traced_trigger, traced_goal, traced_end; /* for gctrace */
  uint64_t assist_ratio;           /* scan bytes owed per 1024 bytes allocated during a mark */
  uint64_t traced_worker_ns;
  unsigned termination_tries;      /* the last cycle's mark termination attempts */
  uint32_t sweepgen;               /* the heap's; += 2 per cycle (changed while stopped) */
  uintptr_t collector_sp;          /* guarded by lock: where the collecting thread's roots start */
  /* Pacer (relaxed atomics unless noted). */
  uint64_t heap_live;              /* bytes allocated since the last mark + marked by it */
  uint64_t heap_marked;            /* live after the last mark */
  uint64_t heap_goal, trigger;
  uint64_t mark_growth;            /* heap growth during the last concurrent mark (trigger) */
  int64_t gc_percent;
  uint64_t memory_limit;           /* 0: none */
  bool wanted;                     /* heap_live reached the trigger */
  uint64_t cycles, forced;
  /* Pauses and CPU (guarded by lock). */
  uint64_t pause_total_ns, pause_max_ns, mark_ns, sweep_ns, traced_sweep_ns;
  uint64_t pauses[NH_PAUSE_RING];
  uint64_t npauses;
  uint64_t start_ns;               /* nh_init time, for gctrace */
  uint64_t limiter_start, limiter_gc_ns, limited; /* CPU limiter window; cycles it skipped */
  /* Background sweeper. */
  pthread_t sweeper;
  bool sweeper_running, sweeper_stop, sweep_needed;
  pthread_mutex_t sweeper_mu;
  pthread_cond_t sweeper_cv;
  uint64_t swept_pages, swept_large;
  uint64_t swept_spans;            /* relaxed: every span swept, lazily or in the background */
  uint64_t scan_local, scan_remote, steals; /* relaxed: the markers' NUMA counts, all cycles */
  uint64_t mark_overflows;         /* relaxed: overflow recovery rounds, all cycles */
  /* concurrent-nobarrier: the kernel's dirty tracking (dirty.c). */
  nh_dirty_t dirty;
  uint64_t dirty_bytes, dirty_last; /* written bytes rescanned: all cycles / the last one */
  unsigned dirty_rounds;           /* the last cycle's concurrent rescans before termination */
  uint64_t perf_spans;             /* swept_spans at the last cycle's end (perf records) */
} nh_gc_t;

struct nh_config;
int gc_init(nh_gc_t *g, const struct nh_config *cfg);
void gc_shutdown(nh_gc_t *g);
void gc_after_fork_child(nh_gc_t *g);

/* The pacer (pacer.c): the next goal and trigger from the last mark, gc_percent and the
 * memory limit (sets `wanted` when the heap is already past the trigger). */
void gc_set_goal(nh_gc_t *g);
/* A mark assist for bytes just allocated during a concurrent mark (no locks held, no region). */
void gc_assist(size_t bytes);
/* Runs a cycle if the pacer asked for one; p (just allocated) stays live. No locks held. */
void gc_maybe_collect(void *p);
/* A blocking cycle on the calling thread (no locks held); with sweep, the heap is fully swept
 * before it returns (nh_gc, the memory limit). */
void gc_collect(const char *why, bool sweep);
/* Set by an allocator path that refused pages for the memory limit (this thread). */
extern __thread bool nh_limit_refused __attribute__((tls_model("initial-exec")));
/* Zeroes up to 16 KiB of dead stack below the caller, where stale pointers would otherwise be
 * scanned inside the frames that later cover it. */
void gc_clear_dead_stack(void);
/* Whether bytes more of heap pages would pass the memory limit (false while this thread has
 * been let past it: nh_limit_pass, reset by the allocator after its retry). */
extern __thread bool nh_limit_pass __attribute__((tls_model("initial-exec")));
bool gc_over_limit(nh_gc_t *g, size_t bytes);
/* An allocation of bytes met the memory limit (no locks held): collect and sweep, or, while
 * the CPU limiter holds collections back and the pass is small, let this thread pass the limit
 * once. False when the allocation must fail (no collector). */
bool gc_limit_reached(size_t bytes);
/* The CPU limiter's decision at time now (ns): whether a collection may run in this window (1 s;
 * free for its first 100 ms, then while collections took at most half of it). Policy alone,
 * with g's limiter_start and limiter_gc_ns as state, so that tests can drive it. */
bool gc_limiter_allows(nh_gc_t *g, uint64_t now);
/* The pct-th percentile of the recent pauses (ns); caller holds g->lock. */
uint64_t gc_pause_percentile(nh_gc_t *g, unsigned pct);
/* The collector thread (cycle.c): runs the concurrent cycles requested. */
void *collector_main(void *arg);
/* concurrent-nobarrier (cycle.c): registers the arenas with the write-protect tracking, and new
 * ones as they come; dirty_stop ends the tracking (mode falls back to stw). */
int dirty_track_arenas(nh_gc_t *g);
void dirty_stop(nh_gc_t *g);

/* ---------------------------------------------------------------------------------------------
 * The background sweeper (sweeper.c).
 * ------------------------------------------------------------------------------------------- */

/* Sweeps the whole heap (all nodes and classes, large spans) / one node. Returns the pages swept. */
size_t sweep_all(void);
size_t sweep_node(int n);
/* After a cycle: wakes the sweeper thread, and the workers that sweep their own node. */
void sweep_request(nh_gc_t *g);
int sweeper_start(nh_gc_t *g);   /* 0 or -errno */
void sweeper_stop(nh_gc_t *g);

/* ---------------------------------------------------------------------------------------------
 * The mark workers (workers.c).
 * ------------------------------------------------------------------------------------------- */

typedef struct nh_fractional {
  uint32_t permille;       /* share of one CPU; 0: a dedicated marker */
  int schedstat;           /* this thread's /proc/thread-self/schedstat, or -1: never idle */
  bool idling;             /* the last window found its CPU idle */
  uint64_t t0;             /* when it joined the current mark */
  uint64_t cpu0, idle;     /* thread CPU time then; CPU time since taken from idle CPUs */
  uint64_t win, cpu, run, wait; /* the window's start: time, thread CPU time, schedstat */
} nh_fractional_t;

/* A marker starts (+1) or stops (-1) draining: termination waits for none to be busy. */
void marker_busy(nh_markwork_t *w, int delta);
/* A fractional share: opened by its thread, joined at each mark, closed at the thread's end. */
void fractional_open(nh_fractional_t *f, uint32_t permille);
void fractional_close(nh_fractional_t *f);
void fractional_join(nh_fractional_t *f);
/* The collector thread marks until no marker drains and no shared block waits. */
void mark_until_idle(nh_gc_t *g);
/* The concurrent mark phase on or off for the workers (they wait for it). */
void set_phase_mark(nh_gc_t *g, bool on);
/* The collector thread and the mark workers, planned from the topology and the options. */
int start_collector_threads(nh_gc_t *g, const struct nh_config *cfg);
void stop_collector_threads(nh_gc_t *g);

/* The pacer's view of the heap; nothing to do (and no shared counter to touch) with gc = off. */
static inline void gc_account(nh_gc_t *g, int64_t bytes) {
  if (!g->on)
    return;
  uint64_t live = __atomic_add_fetch(&g->heap_live, (uint64_t)bytes, __ATOMIC_RELAXED);
  if (bytes > 0 && live >= __atomic_load_n(&g->trigger, __ATOMIC_RELAXED) &&
      !__atomic_load_n(&g->wanted, __ATOMIC_RELAXED))
    __atomic_store_n(&g->wanted, true, __ATOMIC_RELAXED);
}

#endif
