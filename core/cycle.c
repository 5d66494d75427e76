/*
 * cycle.c — the collection cycle (Go's mgc.go): its stop-the-world and concurrent phases, the
 * collector thread that runs concurrent cycles, mark assists, and the entry points that start
 * a cycle (gc_collect, gc_maybe_collect).
 *
 * A stop-the-world cycle (gc = stw, and the other modes where they cannot run):
 *   before stopping   sweep what the last cycle left unswept (the background sweeper usually
 *                     has), list the data segments (dl_iterate_phdr takes the loader lock,
 *                     which a thread about to be stopped could hold);
 *   stop the world    thread.c: signals, registers spilled, stack pointers recorded;
 *   sweep termination finish any sweep still in flight (a sweeper holds its mcentral's lock
 *                     while it sweeps, so taking each lock once waits it out), then flush
 *                     every per-CPU cache: free stacks go back to their spans and cached spans
 *                     to their mcentrals, so alloc_bits say exactly what is allocated (Go's
 *                     mcache.releaseAll);
 *   mark              mark.c, from the roots; checkmark re-marks and compares when asked;
 *   mark termination  heap_marked and the next goal; sweepgen += 2, which turns every span
 *                     into an unswept one without touching it (mcentral_flip);
 *   start the world;  sweeping is lazy (mcentral_cache_span sweeps before it grows, an
 *                     explicit free sweeps the span it touches) and in the background: a
 *                     node that has a mark worker of its own is swept by that worker, on the
 *                     node's CPUs (its spans, its memory), the others by the sweeper thread.
 * The pause is the whole stop-to-start interval. Each phase, as it ends, is an event (gcevents.h)
 * with its pause and collection CPU: the counters, the CPU limiter, the perf record and gctrace
 * are gcevents.c's subscribers, not this file's code.
 *
 * A concurrent cycle (gc = concurrent; concurrent_cycle below) runs on the collector thread,
 * so the allocating thread that reached the trigger goes on (nh_gc and the memory limit wait
 * for it). Two pauses, each bounded by threads, caches and roots, not by the heap:
 *   mark setup        as above up to the roots, which are greyed into shared work; then the
 *                     barrier and black allocation are turned on (nh__marking) and the world
 *                     restarts;
 *   concurrent mark   the collector thread and the mark workers drain the shared grey blocks
 *                     (Go's gcDrain, 25% of the CPUs with a fractional marker where that is
 *                     not a whole number, or mark_workers; on several NUMA nodes a set per
 *                     node pinned to its CPUs, each taking its node's grey objects first:
 *                     numa/placement.c, mark.c; placed by mark_cpus); nh_store records the
 *                     values it overwrites (mark.c), new objects are born marked (malloc.c),
 *                     nh_free is deferred, nh_weak_get shades what it returns;
 *   mark termination  when the markers are idle: stop, shade every thread's barrier buffer,
 *                     flush the per-CPU caches, rescan the stacks (a thread stopped between
 *                     taking an object and marking it holds it there). If that found new grey
 *                     work, restart and drain it (up to TERMINATION_TRIES times, then in the
 *                     pause); else finish as the stop-the-world cycle does, barrier off.
 * Why this is complete (snapshot at the beginning, Yuasa): every object reachable at mark
 * setup is marked, because the roots were greyed then and every pointer overwritten in the
 * heap since was shaded first; every object allocated since is marked at birth. Globals and
 * registered roots need no barrier: they were scanned at mark setup, and what is stored there
 * later was reachable then or is new.
 * Departures from DESIGN.md: mark termination rescans the stacks, which DESIGN.md says black
 * allocation makes unnecessary: black allocation marks an object just after the restartable
 * sequence that took it from the cache, so a thread that mark termination stops in between
 * holds an unmarked new object in its registers alone; the rescan (bounded by the stacks, not
 * the heap) finds it. And the fractional marker goes on past its share while its CPU is
 * otherwise idle (the part of Go's idle-priority worker that OS threads can have).
 *
 * The pacer's policy and the allocator's pace are pacer.c's (the cycle feeds the one and
 * publishes to the other: pacer_mark_start at setup, pacer_assist during the mark,
 * pacer_mark_done at termination, the CPU limiter at each cycle's end); the mark workers workers.c's;
 * the background sweeper sweeper.c's; life cycle and public calls gc.c's.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "core/heap.h"
#include "core/vg.h"

static uint64_t now_ns(void) { return os_linux.now_ns(); }

#define MIB ((uint64_t)1 << 20)

static unsigned ncpus(void) { return nh_rt.topo.ncpus > 0 ? (unsigned)nh_rt.topo.ncpus : 1; }

/* perf.events: every stopped program thread's counts since its last read go to phase (the
 * caller's own are its business). */
static void perf_threads(nh_gc_t *g, nh_perf_phase phase) {
  if (!perf_on())
    return;
  for (nh_thread_t *t = g->threads.first; t; t = t->next)
    if (t != nh_self)
      perf_attribute(t->perf, phase);
}

/* perf.events at a pause's end: the stopped threads' counts and the caller's go to phase. */
static void perf_pause(nh_gc_t *g, nh_perf_thread_t *me, nh_perf_phase phase) {
  perf_threads(g, phase);
  perf_attribute(me, phase);
}

/* Debug builds, world stopped at sweep termination: the per-CPU free stacks (before the flush
 * empties them), then every mcentral's spans against their counts and every page heap's
 * bitmaps against its counters (mapped = in use + free + released). */
static void validate_caches(void) {
  if (nh_config_debug >= 2)
    mcache_validate(&nh_rt.caches);
}

static void validate_heap(void) {
  if (nh_config_debug < 2)
    return;
  for (int n = 0; n < nh_rt.topo.nnodes; n++) {
    for (unsigned ac = 0; ac < NH_NUM_ALLOC_CLASSES; ac++)
      mcentral_validate(&nh_rt.nodes[n].central[ac]);
    pageheap_validate(&nh_rt.nodes[n].ph);
  }
}

/* Mark termination's end, world stopped: the mark's measurements to the pacer (c: the mark's
 * allocation, time and CPU; the rest is filled in here), the next goal and trigger published,
 * and every span becomes unswept (sweepgen += 2) without being touched (mcentral_flip). */
static void finish_cycle(nh_gc_t *g, nh_pacer_cycle_t *c) {
  nh_mutex_assert_held(&g->lock);
  nh_stat_add(&g->scan_local, g->marker.scanned_local);
  nh_stat_add(&g->scan_remote, g->marker.scanned_remote);
  nh_stat_add(&g->steals, g->marker.steals);
  nh_stat_add(&g->mark_overflows, g->marker.overflow_rounds);
  g->sweepgen += 2;
  for (int n = 0; n < nh_rt.topo.nnodes; n++)
    for (unsigned ac = 0; ac < NH_NUM_ALLOC_CLASSES; ac++)
      mcentral_flip(&nh_rt.nodes[n].central[ac], g->sweepgen);
  c->heap_marked = g->marker.marked_bytes;
  c->roots_scan = g->roots.bytes;
  c->heap_scan = g->marker.scanned_bytes > c->roots_scan ? g->marker.scanned_bytes - c->roots_scan : 0;
  c->procs = ncpus();
  g->pacer.stw = g->mode == NH_GC_STW;   /* the mode may have fallen back since the last cycle */
  pacer_set_non_heap(&g->pacer, nh_stat_get(&nh_rt.mem.stats.metadata));
  pacer_mark_done(&g->pacer, c);
  pace_publish(&g->pace, &g->pacer, true);
  nh_stat_add(&g->cycles, 1);
}

/* Find-leak mode: what the cycle kept as leaks, told with the world running. */
static void report_leaks(nh_gc_t *g, size_t leaked) {
  if (leaked)
    g->leak_report(g->leaks, leaked < NH_GC_LEAKS ? leaked : NH_GC_LEAKS, leaked > NH_GC_LEAKS ? leaked - NH_GC_LEAKS : 0);
}

int gc_set_find_leak(void (*report)(const uintptr_t *objs, size_t n, size_t more)) {
  nh_gc_t *g = &nh_rt.gc;
  nh_mutex_lock(&g->lock);
  if (report && !g->leaks)
    g->leaks = mem_meta_alloc(&nh_rt.mem, NH_GC_LEAKS * sizeof *g->leaks, 64);
  int rc = report && !g->leaks ? -ENOMEM : 0;
  if (!rc)
    g->leak_report = report;
  nh_mutex_unlock(&g->lock);
  return rc;
}

/* One stop-the-world cycle; the caller holds g->lock and no allocator lock. */
static void collect_locked(nh_gc_t *g, const char *why) {
  nh_mutex_assert_held(&g->lock);
  gc_event(NH_EVENT_START);
  uint64_t start = now_ns();
  uint64_t before = pace_live(&g->pace);
  uint64_t marked_before = g->pacer.heap_marked;
  pacer_mark_start(&g->pacer, before);
  nh_perf_thread_t *me = perf_self();   /* a program thread: what it did so far is its own */
  perf_attribute(me, NH_PHASE_PROGRAM);
  sweep_all();
  roots_collect_data(&g->roots);
  perf_attribute(me, NH_PHASE_SWEEP);

  uint64_t stopped = now_ns();   /* the pause starts with the stop request */
  world_stop(&g->threads);
  gc_event(NH_EVENT_MARK_START);
  uint64_t stop = now_ns() - stopped;
  perf_threads(g, NH_PHASE_PROGRAM);
  sweep_all();                          /* sweep termination */
  validate_caches();
  mcache_flush_all(&nh_rt.caches);
  validate_heap();
  perf_attribute(me, NH_PHASE_PAUSE_SETUP);
  uint64_t mark0 = now_ns();
  vg_quiet(true);   /* the conservative scan reads what memcheck calls undefined */
  mark_begin(&g->marker, NULL);
  uint64_t roots0 = now_ns();
  roots_scan(&g->marker, &g->roots, &g->threads);
  uint64_t roots = now_ns() - roots0;
  mark_specials(&g->marker, &g->specials);
  mark_drain_all(&g->marker);
  if (nh_config_debug >= 2)
    mark_validate_done(&g->marker, NULL);
  if (nh_rt.cfg.dbg.checkmark)
    mark_check(&g->marker, &g->roots, &g->threads);
  perf_attribute(me, NH_PHASE_MARK);
  size_t finalizers = specials_after_mark(&g->marker, &g->specials);
  size_t leaked = g->leak_report ? mark_leaks(&g->marker, g->leaks, NH_GC_LEAKS) : 0;
  vg_quiet(false);
  gc_event(NH_EVENT_MARK_END);
  uint64_t mark = now_ns() - mark0;
  nh_pacer_cycle_t c = {0};   /* no concurrent mark: cons/mark stays as it was */
  finish_cycle(g, &c);
  perf_pause(g, me, NH_PHASE_PAUSE_TERM);
  uint64_t end = world_start(&g->threads);
  specials_wake(&g->specials, finalizers);
  report_leaks(g, leaked);

  sweep_request(g);
  /* The one pause (the sweep before it took this thread's CPU), then the cycle's end. */
  gc_emit(g, &(nh_gc_event){.phase = NH_GC_PHASE_SETUP, .end = end, .stopped_ns = end - stopped,
                            .stop_ns = stop, .roots_ns = roots, .cpu_ns = stopped - start});
  nh_gc_cycle_rec rec = {.why = why, .start = start, .before = before, .marked_before = marked_before,
                         .pause1 = end - stopped, .mark_ns = mark};
  gc_emit(g, &(nh_gc_event){.phase = NH_GC_PHASE_TERMINATION, .end = end, .cycle = &rec});
  gc_event(NH_EVENT_END);
}

enum { TERMINATION_TRIES = 4 };

static const char reason_paced[] = "heap goal";

/* Mark assists (Go's gcAssistAlloc): each byte allocated during a concurrent mark owes the
 * pacer's assist ratio in scan work (pacer_assist, Go's revise: the scan work left over the heap
 * left before the goal, recomputed at every call from the pacer as the mark began, the heap now
 * and the work the markers have reported), paid in chunks of ASSIST_CHUNK by the allocating
 * thread. When no grey work is there to take, the debt is forgiven (Go lets assists steal the
 * background workers' credit). So a program allocating faster than the markers mark slows
 * down to their pace instead of running past the goal. While the CPU limiter is on (the
 * collector has had half the CPU), a mark runs without assists, as Go's does. */
enum { ASSIST_CHUNK = 64 << 10 };

void gc_assist(size_t bytes) {
  nh_gc_t *g = &nh_rt.gc;
  nh_thread_t *t = nh_self;
  if (!t || !g->collector_running || __atomic_load_n(&g->assists_off, __ATOMIC_RELAXED))
    return;
  uint64_t live = pace_live(&g->pace);
  uint64_t done = __atomic_load_n(&g->work.scanned_bytes, __ATOMIC_RELAXED) + g->mark_pacer.last_roots_scan;
  nh_pacer_assist_t a = pacer_assist(&g->mark_pacer, live, done, g->mark_work_max);
  t->assist_debt += (int64_t)((double)bytes * a.work_per_byte);
  if (t->assist_debt < ASSIST_CHUNK)
    return;
  uint64_t t0 = now_ns();
  nh_perf_thread_t *counted = t->perf;
  perf_attribute(counted, NH_PHASE_ALLOC);
  nh_markwork_t *w = &g->work;
  region_enter();   /* the mark cannot end while this thread holds grey objects */
  if (__atomic_load_n(&nh__marking, __ATOMIC_RELAXED)) {
    marker_busy(w, 1);
    size_t scanned = mark_assist(w, (size_t)t->assist_debt);
    marker_busy(w, -1);
    t->assist_debt = scanned && (int64_t)scanned < t->assist_debt ? t->assist_debt - (int64_t)scanned : 0;
  }
  region_exit();
  /* Past the goal with nothing to scan: give the markers this thread's CPU for a moment
   * (Go parks the goroutine until the workers have earned credit). */
  if (t->assist_debt == 0 && __atomic_load_n(&nh__marking, __ATOMIC_RELAXED) && pace_live(&g->pace) > a.goal)
    sched_yield();
  nh_stat_add(&g->assist_ns, (int64_t)(now_ns() - t0));
  perf_attribute(counted, NH_PHASE_MARK);
}

/* concurrent-nobarrier (Boehm-Demers-Shenker mostly-concurrent marking, with the kernel's
 * write-protect tracking in place of mprotect: dirty.c). Before mark setup the pages of spans
 * that hold objects are write-protected (outside the pause: a write between the protection and
 * the roots' scan just makes a page to rescan; which pages, below). Programs store plainly; a
 * store into an object the markers have scanned already marks its page written, and a page
 * left unprotected reads as written. When the markers run dry, up to DIRTY_ROUNDS times with
 * the world running: the written pages are found and protected again in one walk
 * (PAGEMAP_SCAN), the words on them of every marked object are scanned again, and the markers
 * drain what that greyed; a round that finds under DIRTY_QUIET bytes ends the rounds. Mark
 * termination, world stopped, does the same once more and rescans every root (stacks, data
 * segments, registered ranges: nothing saw their stores); then the protection is lifted, with
 * the world running. Complete because a pointer in a marked object at termination either was
 * there when the object was scanned, or was stored later and its page is written (or was
 * never protected), and roots are scanned last. Objects born during the mark are black, as
 * with the barrier. The scavenger does not release pages while a mark tracks (a released page
 * could lose its protection). */
enum { DIRTY_ROUNDS = 3 };
#define DIRTY_QUIET ((int64_t)1 << 20)

static void dirty_rescan_range(uintptr_t lo, uintptr_t hi, void *arg) { mark_rescan_dirty(arg, lo, hi); }

/* Which pages a mark protects. A page left unprotected is safe: the kernel reports every
 * populated page without the protection as written, so the next round rescans the marked
 * objects on it (and protects it then, in the same walk). Protection only spares the rounds
 * pages that are not written, and costs a fault at the first write to each page it covers. So
 * a mark protects the pages of spans that hold objects and take no new ones: not free pages,
 * not empty spans (kept for reuse), not spans a cache allocates from. A page the program
 * allocates into during the mark would otherwise take a fault at its first write (GCBench
 * through the compat header: 13.9K faults a run against 1.4K with gc = stw, 12K of them in
 * refill zeroing and memset); now it is rescanned once instead, its objects black and so
 * scanned in place, as a collector without a barrier that allocates white would scan them.
 * Nor are arenas created during a mark protected. Runs closer than PROTECT_GAP pages are
 * protected as one, to keep the system calls few. The spans' counts are read racily: a wrong
 * guess costs a fault or a rescan, never a missed write. */
enum { PROTECT_GAP = 4 };

typedef struct protect_arg {
  nh_gc_t *g;
  int rc;
  uintptr_t bad;
  uintptr_t lo, hi;   /* the run being joined; hi == 0: none */
} protect_arg;

static void protect_flush(protect_arg *p) {
  int rc = p->hi && !p->rc ? dirty_protect(&p->g->dirty, (void *)p->lo, p->hi - p->lo, true) : 0;
  if (rc) {
    p->rc = rc;
    p->bad = p->lo;
  }
  p->hi = 0;
}

/* The spans of arena a worth protecting, joined into runs. The span map is read as span_of
 * reads it, without a lock: it holds exactly the pages in spans. */
static void protect_arena(protect_arg *p, const nh_arena_t *a) {
  for (size_t pg = 0; pg < NH_PAGES_PER_ARENA;) {
    nh_span_t *s = __atomic_load_n(&a->spans[pg], __ATOMIC_ACQUIRE);
    uintptr_t at = a->base + pg * NH_PAGE_SIZE;
    uintptr_t end = s ? s->pages + (uintptr_t)__atomic_load_n(&s->npages, __ATOMIC_RELAXED) * NH_PAGE_SIZE : 0;
    if (!s || end <= at) {   /* a free page, or a span freed meanwhile */
      pg++;
      continue;
    }
    bool worth = span_is_large(s) || (!__atomic_load_n(&s->cached, __ATOMIC_RELAXED) &&
                                      __atomic_load_n(&s->alloc_count, __ATOMIC_RELAXED) > 0);
    if (worth) {
      if (p->hi && at - p->hi > PROTECT_GAP * NH_PAGE_SIZE)
        protect_flush(p);
      if (!p->hi)
        p->lo = at;
      p->hi = end;
    }
    pg = (end - a->base) >> NH_PAGE_SHIFT;   /* a large span may run past this arena: the loop ends */
  }
  protect_flush(p);
}

/* The pages in spans of every arena protected (on), or every arena's released (off). false when
 * a range cannot be protected: its stores would go unseen, so the tracking ends (dirty_stop:
 * mode stw) and the caller collects with the world stopped. */
static bool dirty_arm(nh_gc_t *g, bool on) {
  nh_arena_set_t *set = &nh_rt.arenas;
  nh_mutex_lock(&nh_rt.scavenger.lock);   /* waits out a release in flight; later ones see armed */
  __atomic_store_n(&g->dirty.armed, on, __ATOMIC_RELEASE);
  nh_mutex_unlock(&nh_rt.scavenger.lock);
  nh_mutex_lock(&set->lock);   /* the list; arenas are never unmapped while the heap lives */
  nh_arena_t *first = set->first;
  nh_mutex_unlock(&set->lock);
  protect_arg p = {.g = g};
  for (nh_arena_t *a = first; a && !p.rc; a = __atomic_load_n(&a->next, __ATOMIC_ACQUIRE)) {
    if (on)
      protect_arena(&p, a);
    else if ((p.rc = dirty_protect(&g->dirty, (void *)a->base, NH_ARENA_BYTES, false)) != 0)
      p.bad = a->base;
  }
  if (!p.rc || !on)
    return true;
  __atomic_store_n(&g->dirty.armed, false, __ATOMIC_RELEASE);
  nh_error(p.rc, "gc: cannot write-protect arena memory at %#lx for dirty tracking (%s): collections stop "
           "the world from now on (gc = stw)", (unsigned long)p.bad, nh_strerror(p.rc));
  dirty_stop(g);
  return false;
}

/* The pages written since the last scan, protected again; the words of marked objects on them,
 * scanned by m (whose new grey objects go to the shared lists). Returns the bytes found.
 * A scan the kernel refuses (an arena range that lost its registration: seen once in hundreds
 * of runs of the fork test under load, cause unknown) leaves that arena's writes unknown, so
 * the mark cannot end on the written pages: g->dirty_lost makes the termination pause rescan
 * every marked object of every arena, with the world stopped (what a stw mark guarantees),
 * and the cycle's end turns the tracking off (mode stw from then on). */
static int64_t dirty_rescan(nh_gc_t *g, nh_marker_t *m, bool stopped) {
  int64_t total = 0;
  nh_arena_set_t *set = &nh_rt.arenas;
  nh_mutex_lock(&set->lock);   /* the list; arenas are never unmapped while the heap lives */
  nh_arena_t *first = set->first;
  nh_mutex_unlock(&set->lock);
  for (nh_arena_t *a = first; a; a = __atomic_load_n(&a->next, __ATOMIC_ACQUIRE)) {
    int64_t got = g->dirty_lost ? -1 : dirty_scan(&g->dirty, (void *)a->base, NH_ARENA_BYTES, true, dirty_rescan_range, m);
    if (got < 0 && !g->dirty_lost) {
      g->dirty_lost = true;
      nh_error((int)got, "gc: PAGEMAP_SCAN failed over arena %#lx (%s): this mark ends by rescanning the "
               "whole heap with the world stopped, and later cycles stop the world (gc = stw)",
               (unsigned long)a->base, nh_strerror((int)got));
    }
    if (got < 0 && stopped) {
      mark_rescan_dirty(m, a->base, a->base + NH_ARENA_BYTES);
      got = NH_ARENA_BYTES;
    }
    total += got > 0 ? got : 0;
  }
  nh_stat_add(&g->dirty_bytes, total);
  g->dirty_last += (uint64_t)total;
  mark_give_back(m);
  return total;
}

/* Registers the arenas that exist (the first comes before the collector) and makes new ones
 * register as they are created. */
int dirty_track_arenas(nh_gc_t *g) {
  nh_arena_set_t *set = &nh_rt.arenas;
  int rc = 0;
  nh_mutex_lock(&set->lock);
  for (nh_arena_t *a = set->first; a && rc == 0; a = a->next)
    rc = dirty_register(&g->dirty, (void *)a->base, NH_ARENA_BYTES);
  if (rc == 0)
    __atomic_store_n(&set->dirty, &g->dirty, __ATOMIC_RELEASE);   /* the scavenger reads it unlocked */
  nh_mutex_unlock(&set->lock);
  return rc;
}

/* No more tracking (shutdown, a fork's child, a failure at start-up). */
void dirty_stop(nh_gc_t *g) {
  nh_mutex_lock(&nh_rt.arenas.lock);
  __atomic_store_n(&nh_rt.arenas.dirty, NULL, __ATOMIC_RELEASE);
  nh_mutex_unlock(&nh_rt.arenas.lock);
  if (g->dirty.uffd >= 0)
    dirty_close(&g->dirty);
  if (g->mode == NH_GC_CONCURRENT_NOBARRIER)
    g->mode = NH_GC_STW;
}

/* One concurrent cycle; the caller (the collector thread) holds g->lock. The pauses:
 *   sweep termination + mark setup: finish sweeping, flush the per-CPU caches, drop stale
 *     barrier buffers, grey the roots, turn the barrier and black allocation on;
 *   mark termination (tried until it finds no new work, at most TERMINATION_TRIES times, then
 *     finished in the pause): shade every thread's barrier buffer, flush the caches (their
 *     objects' allocation bits become exact), rescan the stacks; if that greyed anything,
 *     restart the world and drain it concurrently; else finish: overflow recovery, specials,
 *     checkmark, barrier off, flip the sweep generation.
 * Both pauses do work bounded by threads, caches and roots, not by the heap. */
static void concurrent_cycle(nh_gc_t *g, const char *why) {
  nh_mutex_assert_held(&g->lock);
  uint64_t start = now_ns();
  uint64_t before = pace_live(&g->pace);
  uint64_t workers0 = nh_stat_get(&g->worker_ns), assists0 = nh_stat_get(&g->assist_ns);
  g->traced_trigger = g->pacer.trigger;
  g->traced_goal = g->pacer.goal;
  uint64_t marked_before = g->pacer.heap_marked;
  nh_perf_thread_t *me = perf_self();   /* the collector thread: idle until now */
  perf_skip(me);
  sweep_all();
  roots_collect_data(&g->roots);
  perf_attribute(me, NH_PHASE_SWEEP);
  bool nobarrier = g->mode == NH_GC_CONCURRENT_NOBARRIER;
  g->dirty_last = 0;
  g->dirty_rounds = 0;
  g->dirty_lost = false;
  if (nobarrier && !dirty_arm(g, true)) {
    collect_locked(g, why);
    return;
  }
  gc_event(NH_EVENT_START);

  uint64_t t1 = now_ns();
  world_stop(&g->threads);
  gc_event(NH_EVENT_MARK_START);
  uint64_t stop1 = now_ns() - t1;
  perf_threads(g, NH_PHASE_PROGRAM);
  sweep_all();
  validate_caches();
  mcache_flush_all(&nh_rt.caches);
  validate_heap();
  for (nh_thread_t *t = g->threads.first; t; t = t->next) {
    t->wbn = 0;   /* left from the last cycle's end: not this snapshot's */
    t->assist_debt = 0;
  }
  uint64_t live_at_setup = pace_live(&g->pace);
  pacer_mark_start(&g->pacer, live_at_setup);
  /* The CPU limiter, brought up to now: while on, this mark runs without assists. */
  bool limiting = pacer_limiter_update(&g->limiter, t1, 0, 0);
  __atomic_store_n(&g->assists_off, limiting, __ATOMIC_RELAXED);
  if (limiting)
    nh_stat_add(&g->limited, 1);
  bool check = nh_rt.cfg.dbg.checkmark && mark_check_setup(&g->marker, &g->roots, &g->threads);
  mark_begin(&g->marker, &g->work);   /* the roots greyed into shared work */
  uint64_t roots0 = now_ns();
  roots_scan(&g->marker, &g->roots, &g->threads);
  uint64_t roots1 = now_ns() - roots0;
  mark_specials(&g->marker, &g->specials);
  mark_publish(&g->marker);
  g->mark_pacer = g->pacer;   /* the assists' copy, read without the lock until the next setup */
  g->mark_work_max = live_at_setup + g->roots.bytes;
  __atomic_store_n(&nh__marking, 1, __ATOMIC_SEQ_CST);
  set_phase_mark(g, true);
  fractional_join(g->collector_share);
  perf_pause(g, me, NH_PHASE_PAUSE_SETUP);
  uint64_t pause1 = world_start(&g->threads) - t1;
  gc_emit(g, &(nh_gc_event){.phase = NH_GC_PHASE_SETUP, .end = t1 + pause1, .stopped_ns = pause1,
                            .stop_ns = stop1, .roots_ns = roots1, .cpu_ns = t1 - start});

  uint64_t mark0 = now_ns(), pause2 = 0, t2, stop2 = 0, roots2 = 0;
  int tries = 1;
  for (;; tries++) {
    mark_until_idle(g, false);
    while (nobarrier && g->dirty_rounds < DIRTY_ROUNDS) {   /* written pages, with the world running */
      g->dirty_rounds++;
      int64_t found = dirty_rescan(g, &g->marker, false);
      mark_until_idle(g, false);
      if (found < DIRTY_QUIET)
        break;
    }
    perf_attribute(me, NH_PHASE_MARK);
    if (nobarrier)
      roots_collect_data(&g->roots);   /* libraries loaded meanwhile (the loader lock: not in a pause) */
    t2 = now_ns();
    world_stop(&g->threads);
    stop2 = now_ns() - t2;
    perf_threads(g, NH_PHASE_PROGRAM);
    mark_flush_wbufs(&g->work, &g->threads);
    mcache_flush_all(&nh_rt.caches);
    roots0 = now_ns();
    roots_rescan(&g->marker, &g->roots, &g->threads, nobarrier);
    roots2 = now_ns() - roots0;
    if (nobarrier)
      dirty_rescan(g, &g->marker, true);
    mark_give_back(&g->marker);
    bool found = mark_work_left(&g->work);
    if (!found || tries == TERMINATION_TRIES)
      break;   /* else new grey work: drain it with the world running */
    perf_pause(g, me, NH_PHASE_PAUSE_TERM);
    pause2 = world_start(&g->threads) - t2;
    gc_emit(g, &(nh_gc_event){.phase = NH_GC_PHASE_TERMINATION, .end = t2 + pause2, .stopped_ns = pause2,
                              .stop_ns = stop2, .roots_ns = roots2});
  }
  mark_until_idle(g, true);   /* in the pause: what the buffers and the stacks greyed (usually nothing) */
  set_phase_mark(g, false);
  mark_finish(&g->marker);
  if (nh_config_debug >= 2)
    mark_validate_done(&g->marker, &g->work);
  if (check)
    mark_check(&g->marker, &g->roots, &g->threads);
  size_t finalizers = specials_after_mark(&g->marker, &g->specials);
  size_t leaked = g->leak_report ? mark_leaks(&g->marker, g->leaks, NH_GC_LEAKS) : 0;
  __atomic_store_n(&nh__marking, 0, __ATOMIC_SEQ_CST);
  gc_event(NH_EVENT_MARK_END);
  uint64_t mark = now_ns() - mark0;
  g->traced_end = pace_live(&g->pace);
  uint64_t done = g->marker.scanned_bytes;
  g->traced_assist_goal = pacer_assist(&g->mark_pacer, g->traced_end, done, done > g->mark_work_max ? done : g->mark_work_max).goal;
  /* The pacer's sample: the heap's growth over the mark, against the marking CPU (the collector
   * thread's share, the workers, the assists; what the fractional marker took from idle CPUs
   * apart, as Go counts its idle workers). */
  uint64_t idle, collector_cpu = fractional_cpu(g->collector_share, &idle);
  uint64_t mark_cpu = collector_cpu - idle + (nh_stat_get(&g->worker_ns) - workers0) + (nh_stat_get(&g->assist_ns) - assists0);
  nh_pacer_cycle_t c = {
      .heap_allocated = g->traced_end > live_at_setup ? g->traced_end - live_at_setup : 0,
      .wall_ns = mark,
      .mark_cpu_ns = mark_cpu,
      .idle_cpu_ns = idle,
  };
  finish_cycle(g, &c);
  perf_pause(g, me, NH_PHASE_PAUSE_TERM);
  uint64_t end = world_start(&g->threads);
  pause2 = end - t2;
  if (nobarrier)
    dirty_arm(g, false);
  if (g->dirty_lost)
    dirty_stop(g);
  specials_wake(&g->specials, finalizers);
  report_leaks(g, leaked);
  sweep_request(g);
  g->termination_tries = (unsigned)tries;
  gc_emit(g, &(nh_gc_event){.phase = NH_GC_PHASE_MARK, .end = t2, .cpu_ns = mark_cpu});
  nh_gc_cycle_rec rec = {.why = why, .concurrent = true, .start = start, .before = before,
                         .marked_before = marked_before, .pause1 = pause1, .pause2 = pause2, .mark_ns = mark};
  gc_emit(g, &(nh_gc_event){.phase = NH_GC_PHASE_TERMINATION, .end = end, .stopped_ns = pause2,
                            .stop_ns = stop2, .roots_ns = roots2, .cycle = &rec});
  gc_event(NH_EVENT_END);
}

/* The collector thread: runs the cycles requested (gc_request), one after another. */
static void *collector_main(void *arg) {
  nh_gc_t *g = arg;
  nh_fractional_t share;
  memset(&share, 0, sizeof share);
  fractional_open(&share, g->collector_fractional ? g->fraction_permille : 0);
  g->collector_share = &share;
  pthread_mutex_lock(&g->req_mu);
  for (;;) {
    while (!g->collector_stop && g->completed >= g->requested)
      pthread_cond_wait(&g->req_cv, &g->req_mu);
    if (g->collector_stop)
      break;
    uint64_t target = g->completed + 1;
    const char *why = g->req_why;
    g->started = target;
    pthread_mutex_unlock(&g->req_mu);
    nh_mutex_lock(&g->lock);
    if (g->mode == NH_GC_STW)   /* concurrent-nobarrier that lost its tracking (dirty_rescan) */
      collect_locked(g, why);
    else
      concurrent_cycle(g, why);
    nh_mutex_unlock(&g->lock);
    pthread_mutex_lock(&g->req_mu);
    g->completed = target;
    pthread_cond_broadcast(&g->done_cv);
  }
  pthread_mutex_unlock(&g->req_mu);
  g->collector_share = NULL;
  fractional_close(&share);
  perf_thread_exit(perf_self_opened(), NH_PHASE_MARK);
  return NULL;
}

int collector_start(nh_gc_t *g, const cpu_set_t *cpus, bool pin) {
  int rc = gc_thread_spawn(&g->collector, collector_main, g, cpus, pin, "nheap-gc");
  g->collector_running = rc == 0;
  return rc;
}

void collector_stop(nh_gc_t *g) {
  if (!g->collector_running)
    return;
  pthread_mutex_lock(&g->req_mu);
  g->collector_stop = true;
  pthread_cond_broadcast(&g->req_cv);
  pthread_mutex_unlock(&g->req_mu);
  pthread_join(g->collector, NULL);
  g->collector_running = false;
}

/* Asks the collector thread for a cycle; with wait, returns once a cycle that started after
 * the call has completed (runtime.GC's promise). A paced request adds nothing if one waits. */
static void gc_request(nh_gc_t *g, const char *why, bool wait) {
  pthread_mutex_lock(&g->req_mu);
  uint64_t target;
  if (wait) {
    target = (g->started > g->completed ? g->started : g->completed) + 1;
    if (g->requested < target)
      g->requested = target;
    g->req_why = why;
  } else {
    if (g->requested == g->completed) {
      g->requested++;
      g->req_why = why;
    }
    target = 0;
  }
  pthread_cond_signal(&g->req_cv);
  while (g->completed < target)
    pthread_cond_wait(&g->done_cv, &g->req_mu);
  pthread_mutex_unlock(&g->req_mu);
}

/* The collecting thread's stack is scanned from the frame that entered the collector, with its
 * callee-saved registers spilled there; the collector's own frames below are not roots. */
static nh_noinline uintptr_t stack_here(void) { return (uintptr_t)__builtin_frame_address(0); }

#define ENTER_COLLECTOR(g)                                                                        \
  do {                                                                                          \
    __builtin_unwind_init();                                                                    \
    (g)->collector_sp = stack_here();                                                           \
  } while (0)

static nh_noinline void collect(const char *why, bool sweep) {
  nh_gc_t *g = &nh_rt.gc;
  thread_attach();   /* the collector's stack is a root too */
  if (g->collector_running) {
    gc_request(g, why, true);
  } else {
    nh_mutex_lock(&g->lock);
    ENTER_COLLECTOR(g);
    collect_locked(g, why);
    nh_mutex_unlock(&g->lock);
  }
  if (sweep) {
    uint64_t t0 = now_ns();
    sweep_all();
    uint64_t t1 = now_ns();
    gc_emit(g, &(nh_gc_event){.phase = NH_GC_PHASE_SWEEP, .end = t1, .cpu_ns = t1 - t0});
  }
}

void gc_collect(const char *why, bool sweep) {
  if (!nh_rt.gc.on)
    return;
  /* The collector thread itself (an error handler run by its reports, error.h): it would wait
   * for the cycle it is running. It is collecting already. */
  if (nh_rt.gc.collector_running && pthread_equal(pthread_self(), nh_rt.gc.collector))
    return;
  thread_attach();
  thread_clear_dead_stack();
  collect(why, sweep);
}

void gc_maybe_collect(void *p) {
  void *volatile keep = p;   /* on this stack while the cycle runs */
  nh_gc_t *g = &nh_rt.gc;
  if (!g->on || (thread_attached(&g->threads) && nh_self->nogc))
    return;
  if (g->collector_running) {   /* the collector thread runs it; this thread goes on */
    if (pace_wanted(&g->pace) &&   /* unlocked peek: one is pending */
        __atomic_load_n(&g->requested, __ATOMIC_RELAXED) == __atomic_load_n(&g->completed, __ATOMIC_RELAXED))
      gc_request(g, reason_paced, false);
    return;
  }
  thread_clear_dead_stack();
  nh_mutex_lock(&g->lock);
  ENTER_COLLECTOR(g);
  /* A stop-the-world cycle is all collection: while the CPU limiter's bucket has no room for
   * another like the last, it is put off (the heap passes its trigger), and asked for again at
   * the next refill. */
  if (pace_wanted(&g->pace) && pacer_should_start(&g->pacer, pace_live(&g->pace))) {
    pacer_limiter_update(&g->limiter, now_ns(), 0, 0);
    if (pacer_limiter_allows(&g->limiter, g->cycle_cpu_ns)) {
      collect_locked(g, reason_paced);
    } else {
      __atomic_store_n(&g->pace.wanted, false, __ATOMIC_RELAXED);
      nh_stat_add(&g->limited, 1);
    }
  }
  nh_mutex_unlock(&g->lock);
  (void)keep;
}

/* The memory limit refused pages (pace_over_limit). While the CPU limiter's bucket has no room
 * for another collection like the last, the allocation passes the limit instead of collecting, as Go's soft limit does, as long as what
 * the last cycle found live fits under it and the heap stays within an eighth past it; otherwise
 * memory wins over CPU: a full collection and sweep (the caller fails if even that does not make
 * room). So a live heap close to the limit costs about half the CPU, not a death spiral, and a
 * live heap over the limit gets NULL after a full collection. */
bool gc_limit_reached(size_t bytes) {
  nh_gc_t *g = &nh_rt.gc;
  if (!g->on)
    return false;   /* no collector: the limit is simply hard */
  nh_mutex_lock(&g->lock);
  pacer_limiter_update(&g->limiter, now_ns(), 0, 0);
  bool full = !pacer_limiter_allows(&g->limiter, g->cycle_cpu_ns);
  uint64_t marked = g->pacer.heap_marked, limit = g->pacer.memory_limit;
  nh_mutex_unlock(&g->lock);
  if (full && marked + bytes <= limit && pace_heap_inuse() + bytes <= limit + limit / 8) {
    nh_stat_add(&g->limited, 1);
    nh_limit_pass = true;
    return true;
  }
  nh_stat_add(&g->forced, 1);
  gc_collect("memory limit", true);
  return true;
}
