/*
 * pacer.c — when the next cycle starts (Go's mgcpacer.go and mgclimit.go): the pace the allocator
 * sees (pacer.h: heap_live, trigger, goal, memory limit), the public settings, and the policy
 * itself as plain data (the second half: Go 1.18's pacer and Go's CPU limiter). The cycle
 * (cycle.c) owns an nh_pacer_t and an nh_limiter_t under its lock: it starts a mark at the
 * trigger, asks for the assist ratio during it, reports the mark's measurements at its end and
 * publishes the next goal and trigger here. Nothing in this file calls the collector.
 *
 * heap_live counts bytes handed to per-CPU caches (a span's free objects when it is cached,
 * minus those left when it returns) and large objects, minus explicit frees, and restarts at
 * the marked bytes at each mark's end. Reaching the trigger sets `wanted`; the allocating
 * thread asks for a cycle when it leaves the allocator (gc_maybe_collect), holding no lock.
 * Memory limit: a span that would take the heap's pages past the limit is refused
 * (pace_over_limit); the allocator then runs a full cycle and retries once (gc_limit_reached,
 * cycle.c), and returns NULL (ENOMEM, reported) if the heap still does not fit. Nothing
 * allocated is ever given up for the limit.
 */
#include <errno.h>

#include "core/error.h"
#include "core/heap.h"
#include "core/pacer.h"

#define MIB ((uint64_t)1 << 20)

__thread bool nh_limit_refused __attribute__((tls_model("initial-exec")));
__thread bool nh_limit_pass __attribute__((tls_model("initial-exec")));

uint64_t pace_heap_inuse(void) {
  int64_t pages = 0;
  for (int n = 0; n < nh_rt.topo.nnodes; n++)
    pages += pageheap_live_pages(&nh_rt.nodes[n].ph);
  return pages > 0 ? (uint64_t)pages * NH_PAGE_SIZE : 0;
}

bool pace_over_limit(const nh_pace_t *p, size_t bytes) {
  uint64_t limit = __atomic_load_n(&p->memory_limit, __ATOMIC_RELAXED);
  return limit && !nh_limit_pass && pace_heap_inuse() + bytes > limit;
}

void pace_publish(nh_pace_t *pace, const nh_pacer_t *p, bool reset) {
  if (reset)
    __atomic_store_n(&pace->heap_live, p->heap_marked, __ATOMIC_RELAXED);
  __atomic_store_n(&pace->goal, p->goal, __ATOMIC_RELAXED);
  __atomic_store_n(&pace->trigger, p->trigger, __ATOMIC_RELAXED);
  __atomic_store_n(&pace->memory_limit, p->memory_limit, __ATOMIC_RELAXED);
  __atomic_store_n(&pace->wanted, pacer_should_start(p, pace_live(pace)), __ATOMIC_RELAXED);
}

/* New settings take the collector's lock (a cycle in progress finishes first, as Go's
 * SetGCPercent waits for the world): the pacer is the cycle's. Before nh_init they go to the
 * pacer alone; gc_init sets it up from the options. */
static void settings_lock(nh_gc_t *g, bool ready) {
  if (ready)
    nh_mutex_lock(&g->lock);
}

static void settings_unlock(nh_gc_t *g, bool ready) {
  if (ready) {
    pacer_set_non_heap(&g->pacer, nh_stat_get(&nh_rt.mem.stats.metadata));
    pace_publish(&g->pace, &g->pacer, false);
    nh_mutex_unlock(&g->lock);
  }
}

NH_API int nh_set_gc_percent(int percent) {
  nh_gc_t *g = &nh_rt.gc;
  if (percent > NH_GC_PERCENT_MAX) {
    nh_error(-EINVAL, "nh_set_gc_percent(%d): at most %d (as the gc_percent option); unchanged", percent,
             NH_GC_PERCENT_MAX);
    return (int)__atomic_load_n(&g->pacer.gc_percent, __ATOMIC_RELAXED);
  }
  bool ready = __atomic_load_n(&nh_rt.ready, __ATOMIC_ACQUIRE);
  settings_lock(g, ready);
  int old = (int)pacer_set_gc_percent(&g->pacer, percent);
  settings_unlock(g, ready);
  return old;
}

NH_API int64_t nh_set_memory_limit(int64_t bytes) {
  nh_gc_t *g = &nh_rt.gc;
  if (bytes < 0)
    return (int64_t)__atomic_load_n(&g->pacer.memory_limit, __ATOMIC_RELAXED);
  bool ready = __atomic_load_n(&nh_rt.ready, __ATOMIC_ACQUIRE);
  settings_lock(g, ready);
  int64_t old = (int64_t)pacer_set_memory_limit(&g->pacer, (uint64_t)bytes);
  settings_unlock(g, ready);
  return old;
}

/* =============================================================================================
 * The pacer's policy, as plain data (pacer.h): Go 1.18's concurrent pacer and Go 1.19's CPU
 * limiter, with nothing in it that reads a clock, takes a lock or knows the collector. The
 * cycle owns an nh_pacer_t and an nh_limiter_t under its lock and feeds them its measurements;
 * tests/test_pacer.c feeds them simulated ones. Design: golang/proposal 44167 (the pacer
 * redesign), runtime/mgcpacer.go and mgclimit.go; the code here is nheap's.
 *
 * The model. A mark costs scan work W = heap scan + roots scan (bytes). It runs on a share u of
 * the P CPUs (the dedicated and fractional workers: u = 25%), and meanwhile the program, on the
 * other (1 - u) of them, allocates. cons/mark is the ratio of the two rates per CPU-second:
 *   cons/mark = (bytes allocated / mutator CPU time) / (bytes scanned / marking CPU time)
 *             = heap_allocated * (u + u_idle) / (scan work * (1 - u))      (wall time and P cancel)
 * So a mark that starts `runway` bytes before the goal ends at it with no assists when
 *   runway = cons/mark * (1 - u) / u * W_expected,   W_expected = last heap scan + last roots scan.
 *
 * Steps, at the end of each mark (pacer_mark_done):
 *   1. cons/mark sample from the mark's measurements: u is the measured marking CPU share
 *      (mark_cpu_ns / (wall_ns * procs): workers and assists), idle marking counted as marking
 *      CPU only. Skipped when the mark allocated nothing or took no time (stop-the-world).
 *   2. the estimate is the largest of this sample and the 4 before it (Go 1.21's smoothing,
 *      which replaced 1.18's PI controller: a noisy sample then errs toward an early start and
 *      fewer assists, and a step up in allocation is followed at once).
 *   3. commit: goal = min(GOGC goal, memory-limit goal); runway as above; trigger = goal - runway,
 *      kept between Go's bounds.
 *        GOGC goal   = marked + (marked + roots) * GOGC / 100, at least 4 MiB * GOGC / 100;
 *                      none when GOGC < 0.
 *        limit goal  = limit - non_heap - max(3%, 1 MiB) of that (Go 1.21's headroom), never
 *                      below marked (then every cycle starts at once and the limiter reins it in).
 *        min trigger = marked + 45/64 of (goal - marked)  (~0.7);
 *        max trigger = marked + 61/64 of (goal - marked)  (~0.95), or goal - 4 MiB when that is
 *                      higher (big heaps: 4 MiB is the runway of a mark with nothing to scan);
 *        trigger = goal when marked >= goal, and when marks stop the world (stw: the heap
 *        cannot grow during one, so it needs no runway).
 * During a mark (pacer_assist, Go's revise) the assist ratio is the scan work left over the heap
 * left before the goal, so that assists make the mark end at the goal whatever the estimate was:
 *   - past the expected work (the heap grew), the goal is pushed out in proportion to the worst
 *     case work_max, at most to goal * (1 + GOGC/100): this cycle may use what the next one will;
 *   - past the goal, the hard goal 1.1 * goal against the worst-case work: assists are the
 *     backstop, and their share of the CPU is the pacer's error signal (the next sample sees it).
 *   - under the GOGC goal, the goal is at least 64 KiB past where the mark began (Go's minimum
 *     runway), so a late start does not mean an unbounded ratio; not under the memory limit.
 *
 * Not followed from Go, and why:
 *   - no sweep distance (sweepDistMinTrigger): nheap's cycle finishes any sweeping left before it
 *     marks (sweep termination, cycle.c), so the trigger owes the sweeper no runway.
 *   - the memory-limit goal takes `non_heap` from the caller rather than computing
 *     mapped - free - allocated and the overage past the limit itself; the allocator's hard
 *     refusal at the limit (above) plays the part of the overage term.
 *   - u is measured, not assumed 25% plus assists: nheap's workers are threads the kernel
 *     schedules, on VMs that steal time; Go's Ps run its workers by construction.
 *   - stacks: Go paces against the stack space allocated (maxStackScan); nheap scans stacks
 *     conservatively in a pause, so the roots are one measured figure, the last mark's.
 *   - the first mark, with nothing measured to expect: Go's extrapolation divides by zero there
 *     (and its float-to-int conversion leaves an unbounded ratio); here the goal simply stretches
 *     to its cap, (1 + GOGC/100) x the goal, while the heap is still being built.
 *
 * The CPU limiter: Go's leaky bucket (it replaced a 1 s window that forgot everything at each
 * second's edge and answered only "may a cycle start"). Collection CPU time fills the bucket,
 * program CPU time drains it (idle time does neither); when full, the limiter is on until the
 * program drains it again, which holds collection to about half the CPU in the long run. The
 * bucket has no edges, is a state any path can read (Go also turns assists off while it is full), lets
 * spikes through up to its capacity (1 CPU-second per CPU: a 50 ms pause on 4 CPUs costs 200
 * CPU-ms of it), and never goes below empty, so a long idle spell buys no credit for a later
 * spiral. The caller reports GC CPU time as it passes (pauses on every CPU, workers, assists).
 * ============================================================================================= */
#define PACER_MIN_TRIGGER 45   /* of 64: Go's minTriggerRatioNum/triggerRatioDen */
#define PACER_MAX_TRIGGER 61
#define PACER_MIN_RUNWAY ((uint64_t)64 << 10)   /* Go's minRunway past the trigger */
#define PACER_OVERSHOOT 1.1    /* the hard goal, past the goal (Go's maxOvershoot) */
#define PACER_MAX_UTIL 0.999   /* a mark measured at (almost) every CPU: cons/mark stays finite */

/* double -> uint64 without the undefined conversion of values past 2^64 (or NaN). */
static uint64_t sat_u64(double x) {
  if (!(x > 0))
    return 0;
  return x >= 18446744073709551615.0 ? UINT64_MAX : (uint64_t)x;
}

static uint64_t limit_goal(const nh_pacer_t *p) {
  if (!p->memory_limit)
    return NH_PACER_NO_GOAL;
  uint64_t lim = p->memory_limit > p->non_heap ? p->memory_limit - p->non_heap : 0;
  uint64_t headroom = lim / 100 * 3 > MIB ? lim / 100 * 3 : MIB;
  uint64_t goal = lim < 2 * headroom ? headroom : lim - headroom;   /* small limits: Go's rule */
  return goal < p->heap_marked ? p->heap_marked : goal;
}

static uint64_t trigger_for(const nh_pacer_t *p, uint64_t goal) {
  uint64_t marked = p->heap_marked;
  if (goal == NH_PACER_NO_GOAL)
    return NH_PACER_NO_GOAL;
  if (marked >= goal)
    return goal;   /* the limit goal sits at marked: collect continuously, the limiter caps it */
  uint64_t span = goal - marked;
  uint64_t lo = marked + span / 64 * PACER_MIN_TRIGGER, hi = marked + span / 64 * PACER_MAX_TRIGGER;
  if (goal > NH_PACER_HEAP_MINIMUM && goal - NH_PACER_HEAP_MINIMUM > hi)
    hi = goal - NH_PACER_HEAP_MINIMUM;
  if (hi < lo)
    hi = lo;
  uint64_t t = p->runway >= goal ? lo : goal - p->runway;
  return t < lo ? lo : t > hi ? hi : t;
}

/* Goal, runway and trigger from the settings and the last mark (Go's commit). */
static void pacer_commit(nh_pacer_t *p) {
  p->goal_percent = NH_PACER_NO_GOAL;
  if (p->gc_percent >= 0) {   /* saturates: gc_percent may be up to NH_GC_PERCENT_MAX */
    unsigned __int128 g = p->heap_marked +
                          ((unsigned __int128)p->heap_marked + p->last_roots_scan) * (uint64_t)p->gc_percent / 100;
    p->goal_percent = g >= NH_PACER_NO_GOAL ? NH_PACER_NO_GOAL - 1 : (uint64_t)g;
    if (p->goal_percent < p->heap_minimum)
      p->goal_percent = p->heap_minimum;
  }
  p->goal_limit = limit_goal(p);
  p->goal = p->goal_limit < p->goal_percent ? p->goal_limit : p->goal_percent;
  double u = NH_PACER_UTILIZATION;
  p->runway = sat_u64(p->cons_mark * (1 - u) / u * (double)(p->last_heap_scan + p->last_roots_scan));
  p->trigger = p->stw ? p->goal : trigger_for(p, p->goal);
}

void pacer_init(nh_pacer_t *p, int64_t gc_percent, uint64_t memory_limit) {
  *p = (nh_pacer_t){.memory_limit = memory_limit, .triggered = NH_PACER_NO_GOAL};
  pacer_set_gc_percent(p, gc_percent);
}

int64_t pacer_set_gc_percent(nh_pacer_t *p, int64_t gc_percent) {
  int64_t old = p->gc_percent;
  p->gc_percent = gc_percent < 0 ? -1 : gc_percent;
  unsigned __int128 min = (unsigned __int128)NH_PACER_HEAP_MINIMUM * (uint64_t)p->gc_percent / 100;
  p->heap_minimum = gc_percent < 0 ? 0 : min > UINT64_MAX / 2 ? UINT64_MAX / 2 : (uint64_t)min;
  pacer_commit(p);
  return old;
}

uint64_t pacer_set_memory_limit(nh_pacer_t *p, uint64_t memory_limit) {
  uint64_t old = p->memory_limit;
  p->memory_limit = memory_limit;
  pacer_commit(p);
  return old;
}

void pacer_set_non_heap(nh_pacer_t *p, uint64_t non_heap) {
  p->non_heap = non_heap;
  pacer_commit(p);
}

bool pacer_should_start(const nh_pacer_t *p, uint64_t heap_live) {
  return p->trigger != NH_PACER_NO_GOAL && heap_live >= p->trigger;
}

void pacer_mark_start(nh_pacer_t *p, uint64_t heap_live) {
  p->triggered = heap_live;
}

nh_pacer_assist_t pacer_assist(const nh_pacer_t *p, uint64_t heap_live, uint64_t work_done, uint64_t work_max) {
  nh_pacer_assist_t a = {.work_per_byte = 0, .goal = p->goal, .hard = false};
  if (p->goal == NH_PACER_NO_GOAL)
    return a;   /* a forced mark with the collector off: no goal to defend, no assists */
  double goal = (double)p->goal;
  bool limited = p->goal_limit < p->goal_percent;
  if (!limited && p->triggered != NH_PACER_NO_GOAL && p->goal < p->triggered + PACER_MIN_RUNWAY)
    goal = (double)(p->triggered + PACER_MIN_RUNWAY);
  uint64_t expected = p->last_heap_scan + p->last_roots_scan;
  if (work_max < work_done)
    work_max = work_done;
  if (work_done > expected) {
    /* More work than the last mark had: the heap grows. Stretch the runway in proportion to the
     * worst case, so that the ratio stays flat, up to what the next cycle's goal will be. */
    double pct = p->gc_percent < 0 ? 100000.0 : (double)p->gc_percent;
    double hard = (1 + pct / 100) * goal, ext = hard;
    if (expected && p->triggered != NH_PACER_NO_GOAL && goal > (double)p->triggered)
      ext = (double)p->triggered + (goal - (double)p->triggered) * (double)work_max / (double)expected;
    goal = ext < hard ? ext : hard;
    expected = work_max;
  }
  if ((double)heap_live > goal) {
    goal *= PACER_OVERSHOOT;   /* past the goal: pace to the hard goal against the worst case */
    expected = work_max;
    a.hard = true;
  }
  /* At least 1000 bytes left: marking races (an object can be scanned twice), and a ratio of 0
   * near the end would let the heap run free. */
  uint64_t left = expected > work_done ? expected - work_done : 0;
  if (left < 1000)
    left = 1000;
  double room = goal - (double)heap_live;
  if (room < 1)
    room = 1;
  a.work_per_byte = (double)left / room;
  a.goal = sat_u64(goal);
  return a;
}

void pacer_mark_done(nh_pacer_t *p, const nh_pacer_cycle_t *c) {
  uint64_t work = c->heap_scan + c->roots_scan;
  if (c->heap_allocated && c->wall_ns && c->procs && work) {
    double cpu = (double)c->wall_ns * c->procs;
    double u = (double)c->mark_cpu_ns / cpu, idle = (double)c->idle_cpu_ns / cpu;
    if (!(u > 0))
      u = NH_PACER_UTILIZATION;   /* not measured: assume the workers had their share, as Go does */
    if (u > PACER_MAX_UTIL)
      u = PACER_MAX_UTIL;
    if (idle > 1 - u)
      idle = 1 - u;
    double sample = (double)c->heap_allocated * (u + idle) / ((double)work * (1 - u));
    double est = sample;
    for (int i = 0; i < NH_PACER_CONS_MARK_HISTORY; i++) {
      if (p->cons_mark_samples[i] > est)
        est = p->cons_mark_samples[i];
      if (i + 1 < NH_PACER_CONS_MARK_HISTORY)
        p->cons_mark_samples[i] = p->cons_mark_samples[i + 1];
    }
    p->cons_mark_samples[NH_PACER_CONS_MARK_HISTORY - 1] = sample;
    p->cons_mark = est;
  }
  p->heap_marked = c->heap_marked;
  p->last_heap_scan = c->heap_scan;
  p->last_roots_scan = c->roots_scan;
  p->triggered = NH_PACER_NO_GOAL;
  p->cycles++;
  pacer_commit(p);
}

void pacer_mark_workers(unsigned procs, unsigned *dedicated, double *fractional) {
  double total = (procs ? procs : 1) * NH_PACER_UTILIZATION;
  unsigned d = (unsigned)(total + 0.5);
  double err = (double)d / total - 1;
  *fractional = 0;
  if (err < -0.3 || err > 0.3) {   /* rounding is >30% off (P <= 3, P = 6): make it up fractionally */
    if ((double)d > total)
      d--;
    *fractional = (total - d) / (procs ? procs : 1);
  }
  *dedicated = d;
}

/* ---------------------------------------------------------------------------------------------
 * The CPU limiter (Go's leaky bucket; see the essay above).
 * ------------------------------------------------------------------------------------------- */

void pacer_limiter_init(nh_limiter_t *l, uint64_t now, unsigned procs, uint64_t capacity_per_cpu) {
  *l = (nh_limiter_t){.capacity_per_cpu = capacity_per_cpu ? capacity_per_cpu : 1000000000ull, .last = now};
  pacer_limiter_set_procs(l, procs);
}

void pacer_limiter_set_procs(nh_limiter_t *l, unsigned procs) {
  l->procs = procs ? procs : 1;
  l->capacity = l->capacity_per_cpu * l->procs;
  if (l->fill >= l->capacity) {
    l->fill = l->capacity;
    l->limiting = true;
  }
}

bool pacer_limiter_update(nh_limiter_t *l, uint64_t now, uint64_t gc_cpu_ns, uint64_t idle_cpu_ns) {
  if (now < l->last)
    return l->limiting;   /* an older reading, racing a newer one: already accounted */
  __int128 total = (__int128)(now - l->last) * l->procs;
  l->last = now;
  /* The program had what neither the collector nor idleness took; it may come out negative when
   * the inputs overlap (a pause counted on every CPU), which only fills the bucket faster. */
  __int128 mutator = total - (__int128)idle_cpu_ns - (__int128)gc_cpu_ns;
  __int128 change = (__int128)gc_cpu_ns - mutator;
  uint64_t headroom = l->capacity - l->fill;
  bool was = headroom == 0;
  if (change > 0 && (__int128)headroom <= change) {
    unsigned __int128 over = (unsigned __int128)(change - headroom);
    l->overflow = over > UINT64_MAX - l->overflow ? UINT64_MAX : l->overflow + (uint64_t)over;
    l->fill = l->capacity;
    l->limiting = true;
    return true;
  }
  if (change < 0)
    l->fill = (__int128)l->fill <= -change ? 0 : l->fill - (uint64_t)(-change);
  else
    l->fill += (uint64_t)change;
  if (change != 0 && was)
    l->limiting = false;
  return l->limiting;
}

bool pacer_limiter_allows(const nh_limiter_t *l, uint64_t gc_cpu_ns) {
  return gc_cpu_ns <= l->capacity && l->fill <= l->capacity - gc_cpu_ns;
}
