/*
 * gc.h — the collector: nh_gc_t, composed of its parts (threads: thread.h; marking and roots:
 * mark.h; finalizers and weak references: special.h), and the interfaces of the cycle
 * (cycle.c), the pacer (pacer.c), the background sweeper (sweeper.c), the mark workers
 * (workers.c) and the life cycle (gc.c). Sweeping a span is an mcentral operation (mcentral.c).
 */
#ifndef NH_GC_H
#define NH_GC_H

#include <sched.h>

#include "core/dirty.h"
#include "core/error.h"
#include "core/gcevents.h"
#include "core/lock.h"
#include "core/mark.h"
#include "core/mcentral.h"
#include "core/pacer.h"
#include "core/special.h"
#include "core/thread.h"
#include "core/timehist.h"
#include "numa/topology.h"

/* ---------------------------------------------------------------------------------------------
 * The cycle (cycle.c), the pacer (pacer.c), life cycle (gc.c).
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
  uint64_t traced_assist_goal;     /* the goal the assists paced to at the mark's end */
  uint64_t traced_worker_ns;
  unsigned termination_tries;      /* the last cycle's mark termination attempts */
  uint32_t sweepgen;               /* the heap's; += 2 per cycle (changed while stopped) */
  uintptr_t collector_sp;          /* guarded by lock: where the collecting thread's roots start */
  /* Find-leak mode (gc_set_find_leak): what each cycle found allocated and unreachable. */
  void (*leak_report)(const uintptr_t *objs, size_t n, size_t more);
  uintptr_t *leaks;                /* metadata: NH_GC_LEAKS addresses, for the report */
  /* Pacing (pacer.h). The pace is the allocator's view (relaxed atomics); the pacer and the CPU
   * limiter are the policy, guarded by lock. mark_pacer is the pacer as the mark in progress
   * began, for the assists to read without the lock (written in the setup pause only). */
  nh_pace_t pace;
  nh_pacer_t pacer;
  nh_limiter_t limiter;
  nh_pacer_t mark_pacer;
  uint64_t mark_work_max;          /* the mark in progress: scannable heap + roots at setup */
  bool assists_off;                /* relaxed: the CPU limiter is on, no assists */
  uint64_t cycle_cpu_ns;           /* guarded by lock: the last cycle's collection CPU (limiter) */
  uint64_t cycle_cost;             /* guarded by lock: the cycle in progress's, so far */
  uint64_t cycles, forced;
  /* Pauses and CPU (written under lock, except sweep_ns; read lock-free by nh_stats_read). */
  uint64_t pause_total_ns, pause_max_ns, mark_ns, sweep_ns, traced_sweep_ns;
  uint64_t pauses[NH_PAUSE_RING];
  uint64_t npauses;
  nh_timehist_t pause_hist[NH_PAUSE_HISTS]; /* every pause since nh_init (gcevents.c) */
  uint64_t phase_cpu_ns[NH_GC_PHASE_SWEEP + 1]; /* collection CPU besides the pauses, by the
                                                   phase it ran in (nh_gc_event.cpu_ns) */
  uint64_t start_ns;               /* nh_init time, for gctrace */
  uint64_t limited;                /* times the CPU limiter held the collector back */
  /* Background sweeper. */
  pthread_t sweeper;
  bool sweeper_running, sweeper_stop, sweep_needed;
  pthread_mutex_t sweeper_mu;
  pthread_cond_t sweeper_cv;
  uint64_t swept_pages;            /* relaxed: by the background sweep (spans: mcentral's counts) */
  uint64_t scan_local, scan_remote, steals; /* relaxed: the markers' NUMA counts, all cycles */
  uint64_t mark_overflows;         /* relaxed: overflow recovery rounds, all cycles */
  /* concurrent-nobarrier: the kernel's dirty tracking (dirty.c). */
  nh_dirty_t dirty;
  uint64_t dirty_bytes, dirty_last; /* written bytes rescanned: all cycles / the last one */
  unsigned dirty_rounds;           /* the last cycle's concurrent rescans before termination */
  bool dirty_lost;                 /* a scan failed this cycle: its writes are unknown (cycle.c) */
  uint64_t perf_spans;             /* swept_spans at the last cycle's end (perf records) */
} nh_gc_t;

struct nh_config;
int gc_init(nh_gc_t *g, const struct nh_config *cfg);
void gc_shutdown(nh_gc_t *g);
void gc_after_fork_child(nh_gc_t *g);

/* A mark assist for bytes just allocated during a concurrent mark (no locks held, no region). */
void gc_assist(size_t bytes);
/* Runs a cycle if the pacer asked for one; p (just allocated) stays live. No locks held. */
void gc_maybe_collect(void *p);
/* A blocking cycle on the calling thread (no locks held); with sweep, the heap is fully swept
 * before it returns (nh_gc, the memory limit). */
void gc_collect(const char *why, bool sweep);
/* Find-leak mode (bdwgc's GC_find_leak, for gcabi.c): every cycle keeps the allocated objects it
 * finds unreachable instead of freeing them (the program frees by hand in this mode, and they
 * are its leaks) and passes their addresses to report (the first NH_GC_LEAKS, and how many
 * more), on the collecting thread once the world runs again, holding the collector's lock:
 * report must not collect. Set before the first cycle; 0, or -ENOMEM. */
enum { NH_GC_LEAKS = 4096 };
int gc_set_find_leak(void (*report)(const uintptr_t *objs, size_t n, size_t more));
/* An allocation of bytes met the memory limit (no locks held): collect and sweep, or, while
 * the CPU limiter is on and the pass is small, let this thread pass the limit once. False when
 * the allocation must fail (no collector). */
bool gc_limit_reached(size_t bytes);
/* The collector thread (cycle.c), which runs the concurrent cycles requested: started on cpus
 * (pinned when pin), stopped after the cycle in progress. */
int collector_start(nh_gc_t *g, const cpu_set_t *cpus, bool pin);
void collector_stop(nh_gc_t *g);
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
/* On f's thread: CPU time since it joined the mark, and (*idle) how much of it was taken from
 * otherwise idle CPUs. f NULL: 0. */
uint64_t fractional_cpu(const nh_fractional_t *f, uint64_t *idle);
/* The collector thread marks until no marker drains and no shared block waits. */
void mark_until_idle(nh_gc_t *g, bool stopped);
/* The concurrent mark phase on or off for the workers (they wait for it). */
void set_phase_mark(nh_gc_t *g, bool on);
/* The mark workers, planned from the topology and the options (numa/placement.c); *cpus and
 * *pin say where the collector thread goes (the first marker of the first node with any). */
int workers_start(nh_gc_t *g, const struct nh_config *cfg, cpu_set_t *cpus, bool *pin);
void workers_stop(nh_gc_t *g);
/* One thread of the collector's, named, pinned to cpus when pin. 0 or -errno. */
int gc_thread_spawn(pthread_t *th, void *(*fn)(void *), void *arg, const cpu_set_t *cpus, bool pin, const char *name);

#endif
