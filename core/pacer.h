/*
 * pacer.h — the pacer's policy as plain data (see the second half of pacer.c): Go 1.18's
 * concurrent pacer (the heap goal, the trigger from the cons/mark ratio, the assist ratio) and
 * Go's leaky-bucket CPU limiter. Neither struct points at the collector, reads a clock or takes
 * a lock: the caller passes the time and every measurement, and keeps the struct under its own
 * lock (the collector's: nh_gc_t.lock), as Go's gcControllerState and gcCPULimiterState keep
 * copies of their inputs "to keep this structure unit-testable". tests/test_pacer.c drives both
 * through simulated cycles.
 */
#ifndef NH_PACER_H
#define NH_PACER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NH_PACER_NO_GOAL UINT64_MAX        /* goal and trigger with gc_percent < 0 and no limit */
#define NH_PACER_HEAP_MINIMUM ((uint64_t)4 << 20) /* Go's defaultHeapMinimum, the goal at GOGC=100 */
#define NH_PACER_UTILIZATION 0.25          /* the marking share of the CPUs aimed at (Go's) */
#define NH_PACER_CONS_MARK_HISTORY 4       /* cons/mark samples remembered besides the last */

/* The pacer. Inputs are copies; goal, trigger and runway are derived (pacer_commit's). */
typedef struct nh_pacer {
  /* Settings. */
  int64_t gc_percent;          /* GOGC; -1: off */
  uint64_t memory_limit;       /* bytes; 0: none */
  uint64_t non_heap;           /* what the limit counts besides heap objects (pacer_set_non_heap) */
  uint64_t heap_minimum;       /* NH_PACER_HEAP_MINIMUM * gc_percent / 100 */
  bool stw;                    /* marks stop the world: no runway, the trigger is the goal */
  /* The last mark's measurements (pacer_mark_done). */
  uint64_t heap_marked;        /* live heap found */
  uint64_t last_heap_scan;     /* heap scan work (bytes scanned) */
  uint64_t last_roots_scan;    /* stacks, registers, data segments, registered roots scanned */
  double cons_mark;            /* the estimate used: the largest of the last samples */
  double cons_mark_samples[NH_PACER_CONS_MARK_HISTORY]; /* the samples before the last, oldest first */
  uint64_t cycles;             /* marks reported */
  /* Derived. */
  uint64_t goal_percent;       /* the GOGC goal; NH_PACER_NO_GOAL when off */
  uint64_t goal_limit;         /* the memory limit's goal; NH_PACER_NO_GOAL without a limit */
  uint64_t goal;               /* the lower of the two: where the next mark should end */
  uint64_t runway;             /* heap growth the next mark needs at the target utilization */
  uint64_t trigger;            /* start a mark when the heap reaches this */
  /* The mark in progress (pacer_mark_start); NH_PACER_NO_GOAL between marks. */
  uint64_t triggered;          /* heap_live when it began */
} nh_pacer_t;

/* One mark's measurements, for pacer_mark_done. Scan work is in bytes scanned. */
typedef struct nh_pacer_cycle {
  uint64_t heap_marked;        /* live heap found (marked bytes) */
  uint64_t heap_scan;          /* heap scan work done */
  uint64_t roots_scan;         /* root scan work done: stacks, registers, globals, registered */
  uint64_t heap_allocated;     /* heap growth during the mark: heap_live at its end - at its start */
  uint64_t wall_ns;            /* the concurrent mark's wall time */
  uint64_t mark_cpu_ns;        /* CPU time marking: dedicated and fractional workers, assists */
  uint64_t idle_cpu_ns;        /* CPU time marking on CPUs that were otherwise idle (0: none) */
  unsigned procs;              /* CPUs the program and the collector share (GOMAXPROCS) */
} nh_pacer_cycle_t;

/* The assist ratio during a mark (pacer_assist). */
typedef struct nh_pacer_assist {
  double work_per_byte;        /* scan work owed per byte allocated; 0: no assists */
  uint64_t goal;               /* the heap goal it paces to: the goal, extended, or the hard goal */
  bool hard;                   /* the heap passed the goal: pacing to 1.1x it, against the worst case */
} nh_pacer_assist_t;

/* Sets up p with no mark measured yet: goal = the minimum heap (or the limit's goal), trigger
 * at 95% of it. gc_percent < 0: off; memory_limit 0: none. */
void pacer_init(nh_pacer_t *p, int64_t gc_percent, uint64_t memory_limit);
/* New settings; goal and trigger follow at once (a mark in progress paces to the new goal).
 * Return the old value. set_non_heap: memory the limit counts that is no heap object
 * (metadata, free pages not yet released, stacks); it matters only with a limit. */
int64_t pacer_set_gc_percent(nh_pacer_t *p, int64_t gc_percent);
uint64_t pacer_set_memory_limit(nh_pacer_t *p, uint64_t memory_limit);
void pacer_set_non_heap(nh_pacer_t *p, uint64_t non_heap);
/* Whether a paced mark should start with heap_live bytes in the heap. */
bool pacer_should_start(const nh_pacer_t *p, uint64_t heap_live);
/* A mark begins (paced or not) with heap_live bytes in the heap. */
void pacer_mark_start(nh_pacer_t *p, uint64_t heap_live);
/* Go's revise(): the assist ratio now, from the heap (heap_live), the scan work done so far in
 * this mark (work_done: heap and roots) and the most it can come to (work_max: the scannable
 * heap when the mark began plus the roots). Call it as often as the inputs move. */
nh_pacer_assist_t pacer_assist(const nh_pacer_t *p, uint64_t heap_live, uint64_t work_done, uint64_t work_max);
/* A mark ended: takes its measurements, updates cons/mark, and sets the next goal and trigger.
 * A sample with no allocation, no wall time or no scan work (a stop-the-world mark) leaves
 * cons/mark as it was. */
void pacer_mark_done(nh_pacer_t *p, const nh_pacer_cycle_t *c);
/* Go's worker plan for a mark on procs CPUs: *dedicated whole workers, and the share of each
 * remaining CPU a fractional worker takes (*fractional, 0: none), together 25% of procs. */
void pacer_mark_workers(unsigned procs, unsigned *dedicated, double *fractional);

/* The CPU limiter (Go's gcCPULimiter): a bucket of CPU time that collections fill and the
 * program drains, limiting once full. Times in ns; CPU time in CPU-ns. */
typedef struct nh_limiter {
  uint64_t capacity;           /* CPU-ns: capacity_per_cpu * procs */
  uint64_t capacity_per_cpu;   /* ns; Go's 1 s */
  uint64_t fill;               /* 0 <= fill <= capacity */
  uint64_t overflow;           /* collection CPU-ns that found the bucket full (all time) */
  uint64_t last;               /* time of the last update */
  unsigned procs;
  bool limiting;               /* the bucket is full: hold paced collections and assists back */
} nh_limiter_t;

/* An empty bucket at time now for procs CPUs; capacity_per_cpu 0: Go's 1 s. */
void pacer_limiter_init(nh_limiter_t *l, uint64_t now, unsigned procs, uint64_t capacity_per_cpu);
/* Time passed from the last update to now: gc_cpu_ns of it the collector's (workers, assists,
 * and pauses counted on every CPU), idle_cpu_ns of it no one's. A now before the last update
 * is ignored. Returns whether the limiter is on. */
bool pacer_limiter_update(nh_limiter_t *l, uint64_t now, uint64_t gc_cpu_ns, uint64_t idle_cpu_ns);
/* Whether gc_cpu_ns more collection CPU fits in the bucket without filling it: the gate for
 * work that is all collection (a stop-the-world cycle, a full collection at the memory limit),
 * given what the last one cost. Unlike `limiting`, which any program time ends, this waits
 * until the program has drained that much, so such work takes at most about half the CPU. */
bool pacer_limiter_allows(const nh_limiter_t *l, uint64_t gc_cpu_ns);
/* New CPU count from now on (the time so far is not accounted: update first). */
void pacer_limiter_set_procs(nh_limiter_t *l, unsigned procs);


/* ---------------------------------------------------------------------------------------------
 * The pace: all the allocator sees of the collector (Go's gcController.heapLive, trigger and
 * memory limit). The allocator feeds heap_live (pace_account: spans handed to per-CPU caches,
 * large objects, explicit frees) and refuses heap pages past the limit (pace_over_limit); the
 * cycle publishes the trigger, the goal and the limit from its nh_pacer_t (pace_publish) and
 * restarts heap_live at each mark's end. Relaxed atomics, read and written by any thread.
 * ------------------------------------------------------------------------------------------- */
typedef struct nh_pace {
  bool on;                     /* a collector runs (gc != off): account, else nothing to do */
  bool wanted;                 /* heap_live reached the trigger: the allocator asks for a cycle */
  uint64_t heap_live;          /* marked by the last mark + allocated since */
  uint64_t trigger;            /* NH_PACER_NO_GOAL: none */
  uint64_t goal;               /* where the next mark should end; NH_PACER_NO_GOAL: none */
  uint64_t memory_limit;       /* heap pages the allocator may hold (bytes); 0: none */
} nh_pace_t;

/* bytes more (or fewer) in the heap; sets wanted at the trigger. Free with no collector. */
static inline void pace_account(nh_pace_t *p, int64_t bytes) {
  if (!p->on)
    return;
  uint64_t live = __atomic_add_fetch(&p->heap_live, (uint64_t)bytes, __ATOMIC_RELAXED);
  if (bytes > 0 && live >= __atomic_load_n(&p->trigger, __ATOMIC_RELAXED) &&
      !__atomic_load_n(&p->wanted, __ATOMIC_RELAXED))
    __atomic_store_n(&p->wanted, true, __ATOMIC_RELAXED);
}

static inline bool pace_wanted(const nh_pace_t *p) { return __atomic_load_n(&p->wanted, __ATOMIC_RELAXED); }
static inline uint64_t pace_live(const nh_pace_t *p) { return __atomic_load_n(&p->heap_live, __ATOMIC_RELAXED); }
static inline uint64_t pace_goal(const nh_pace_t *p) { return __atomic_load_n(&p->goal, __ATOMIC_RELAXED); }

/* Set by an allocator path that refused pages for the memory limit (this thread). */
extern __thread bool nh_limit_refused __attribute__((tls_model("initial-exec")));
/* Set while this thread has been let past the limit (the CPU limiter holds collections back);
 * the allocator resets it after its retry. */
extern __thread bool nh_limit_pass __attribute__((tls_model("initial-exec")));
/* Whether bytes more of heap pages would pass the memory limit (false while nh_limit_pass). */
bool pace_over_limit(const nh_pace_t *p, size_t bytes);
/* The heap's pages in use, in bytes (every node's page heap). */
uint64_t pace_heap_inuse(void);
/* The pacer's goal, trigger and limit, published; heap_live restarted at marked when reset
 * (a mark's end); wanted set when the heap is already at the trigger. */
void pace_publish(nh_pace_t *pace, const nh_pacer_t *p, bool reset);

#endif
