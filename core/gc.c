/*
 * gc.c — the collection cycle, the background sweeper, the mark workers and the public GC calls.
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
 * The pause is the whole stop-to-start interval and is recorded (total, max, percentiles).
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
 * The pacer, the memory limit and the CPU limiter are pacer.c's.
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
#include "numa/placement.h"

static uint64_t now_ns(void) { return os_linux.now_ns(); }

#define MIB ((uint64_t)1 << 20)

/* ---------------------------------------------------------------------------------------------
 * Sweeping.
 * ------------------------------------------------------------------------------------------- */

static size_t sweep_node(int n) {
  size_t pages = 0;
  for (unsigned ac = 0; ac < NH_NUM_ALLOC_CLASSES; ac++)
    pages += mcentral_sweep(&nh_rt.nodes[n].central[ac]);
  nh_stat_add(&nh_rt.gc.swept_pages, pages);
  return pages;
}

size_t sweep_all(void) {
  size_t pages = 0;
  for (int n = 0; n < nh_rt.topo.nnodes; n++)
    pages += sweep_node(n);
  return pages;
}

/* Background sweeping after a cycle: a node with a mark worker of its own is swept by that
 * worker, on the node's CPUs (worker_main); the sweeper thread takes the other nodes. */
static void sweep_request(nh_gc_t *g) {
  if (g->sweeper_running)
    nh_signal_flag(&g->sweeper_mu, &g->sweeper_cv, &g->sweep_needed);
  if (g->nworkers && nh_rt.topo.nnodes > 1) {   /* only then does a worker sweep (workers' `sweeps`) */
    nh_mutex_lock(&g->work.lock);
    g->sweeps_requested++;
    pthread_cond_broadcast(&g->work.cv);
    nh_mutex_unlock(&g->work.lock);
  }
}

static void *sweeper_main(void *arg) {
  nh_gc_t *g = arg;
  pthread_mutex_lock(&g->sweeper_mu);
  for (;;) {
    while (!g->sweep_needed && !g->sweeper_stop)
      pthread_cond_wait(&g->sweeper_cv, &g->sweeper_mu);
    if (g->sweeper_stop)
      break;
    g->sweep_needed = false;
    pthread_mutex_unlock(&g->sweeper_mu);
    nh_perf_thread_t *counted = perf_self();
    perf_skip(counted);
    uint64_t t0 = now_ns();
    for (int n = 0; n < nh_rt.topo.nnodes; n++)
      if (!g->node_swept_by_worker[n])
        sweep_node(n);
    nh_stat_add(&g->sweep_ns, now_ns() - t0);
    perf_attribute(counted, NH_PHASE_SWEEP);
    pthread_mutex_lock(&g->sweeper_mu);
  }
  pthread_mutex_unlock(&g->sweeper_mu);
  perf_thread_exit(perf_self_opened(), NH_PHASE_SWEEP);
  return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * The cycle.
 * ------------------------------------------------------------------------------------------- */

static void record_pause(nh_gc_t *g, uint64_t ns) {
  __atomic_store_n(&g->pauses[g->npauses % NH_PAUSE_RING], ns, __ATOMIC_RELAXED);
  __atomic_store_n(&g->npauses, g->npauses + 1, __ATOMIC_RELEASE);
  nh_stat_add(&g->pause_total_ns, ns);
  if (ns > g->pause_max_ns)
    __atomic_store_n(&g->pause_max_ns, ns, __ATOMIC_RELAXED);
}

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

/* perf.events at a cycle's end: the cycle's record and, with gctrace, its line. */
static void perf_cycle(nh_gc_t *g, uint64_t before, uint64_t marked_before) {
  char buf[1024];
  uint64_t spans = nh_stat_get(&g->swept_spans), swept = spans - g->perf_spans;   /* since the last cycle */
  g->perf_spans = spans;
  bool line = nh_rt.cfg.dbg.gctrace && perf_on();
  perf_cycle_end(nh_stat_get(&g->cycles), before > marked_before ? before - marked_before : 0,
                 g->marker.marked_objects, g->marker.scanned_bytes, swept,
                 line ? buf : NULL, sizeof buf - 1);
  if (line) {
    size_t n = strlen(buf);
    buf[n] = '\n';
    (void)!write(STDERR_FILENO, buf, n + 1);
  }
}

/* One gctrace line. pause2 == 0: a stop-the-world cycle (pause1 is its whole pause). */
static void trace(nh_gc_t *g, const char *why, uint64_t start, uint64_t pause1, uint64_t pause2, uint64_t mark,
                  uint64_t before) {
  uint64_t swept = nh_stat_get(&g->sweep_ns), sweep = swept - g->traced_sweep_ns;
  g->traced_sweep_ns = swept;
  uint64_t workers = nh_stat_get(&g->worker_ns), worker = workers - g->traced_worker_ns;
  g->traced_worker_ns = workers;
  uint64_t assists = nh_stat_get(&g->assist_ns), assist = assists - g->traced_assist_ns;
  g->traced_assist_ns = assists;
  char buf[768], pauses[288], dirty[96] = "";
  if (g->mode == NH_GC_CONCURRENT_NOBARRIER)
    snprintf(dirty, sizeof dirty, ", %.2f MiB of written pages rescanned (%u concurrent rounds)",
             (double)g->dirty_last / MIB, g->dirty_rounds);
  if (pause2)
    snprintf(pauses, sizeof pauses,
             "%.3f+%.3f ms stw (%u tries), %.3f ms concurrent mark (workers %.3f ms, assists %.3f ms), "
             "trigger %.2f MiB, goal %.2f MiB, %.2f MiB at mark end%s",
             (double)pause1 / 1e6, (double)pause2 / 1e6, g->termination_tries, (double)mark / 1e6,
             (double)worker / 1e6, (double)assist / 1e6, (double)g->traced_trigger / MIB,
             g->traced_goal == UINT64_MAX ? 0.0 : (double)g->traced_goal / MIB, (double)g->traced_end / MIB, dirty);
  else
    snprintf(pauses, sizeof pauses, "%.3f ms stw (mark %.3f ms)", (double)pause1 / 1e6, (double)mark / 1e6);
  uint64_t cycle = nh_stat_get(&g->cycles);
  double secs = (double)(start - g->start_ns) / 1e9;
  int n = snprintf(buf, sizeof buf,
                   "gc %llu @%.3fs %s: %s, %.3f ms background sweep since the last cycle, "
                   "%.2f->%.2f MiB heap, %.2f MiB next goal, %.2f MiB roots, %llu objects marked, "
                   "%zu threads, %u marker(s)\n",
                   (unsigned long long)cycle, secs, why, pauses, (double)sweep / 1e6, (double)before / MIB,
                   (double)g->heap_marked / MIB, g->heap_goal == UINT64_MAX ? 0.0 : (double)g->heap_goal / MIB,
                   (double)g->roots.bytes / MIB, (unsigned long long)g->marker.marked_objects, g->threads.count,
                   pause2 ? g->nworkers + 1 : 1);
  if (n > 0)
    (void)!write(STDERR_FILENO, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

/* Mark termination's end, world stopped: the next goal, and every span becomes unswept
 * (sweepgen += 2) without being touched (mcentral_flip). */
static void finish_cycle(nh_gc_t *g) {
  g->heap_marked = g->marker.marked_bytes;
  nh_stat_add(&g->scan_local, g->marker.scanned_local);
  nh_stat_add(&g->scan_remote, g->marker.scanned_remote);
  nh_stat_add(&g->steals, g->marker.steals);
  nh_stat_add(&g->mark_overflows, g->marker.overflow_rounds);
  __atomic_store_n(&g->heap_live, g->heap_marked, __ATOMIC_RELAXED);
  g->sweepgen += 2;
  for (int n = 0; n < nh_rt.topo.nnodes; n++)
    for (unsigned ac = 0; ac < NH_NUM_ALLOC_CLASSES; ac++)
      mcentral_flip(&nh_rt.nodes[n].central[ac], g->sweepgen);
  gc_set_goal(g);
  nh_stat_add(&g->cycles, 1);
}

/* One stop-the-world cycle; the caller holds g->lock and no allocator lock. */
static void collect_locked(nh_gc_t *g, const char *why) {
  uint64_t start = now_ns();
  uint64_t before = __atomic_load_n(&g->heap_live, __ATOMIC_RELAXED);
  uint64_t marked_before = g->heap_marked;
  nh_perf_thread_t *me = perf_self();   /* a program thread: what it did so far is its own */
  perf_attribute(me, NH_PHASE_PROGRAM);
  sweep_all();
  roots_collect_data(&g->roots);
  perf_attribute(me, NH_PHASE_SWEEP);

  uint64_t stopped = now_ns();   /* the pause starts with the stop request */
  world_stop(&g->threads);
  perf_threads(g, NH_PHASE_PROGRAM);
  sweep_all();                          /* sweep termination */
  mcache_flush_all(&nh_rt.caches);
  perf_attribute(me, NH_PHASE_PAUSE_SETUP);
  uint64_t mark0 = now_ns();
  vg_quiet(true);   /* the conservative scan reads what memcheck calls undefined */
  mark_all(&g->marker, &g->roots, &g->threads, &g->specials);
  if (nh_rt.cfg.dbg.checkmark)
    mark_check(&g->marker, &g->roots, &g->threads);
  perf_attribute(me, NH_PHASE_MARK);
  size_t finalizers = specials_after_mark(&g->marker, &g->specials);
  vg_quiet(false);
  uint64_t mark = now_ns() - mark0;
  finish_cycle(g);
  perf_pause(g, me, NH_PHASE_PAUSE_TERM);
  uint64_t end = world_start(&g->threads);
  specials_wake(&g->specials, finalizers);

  record_pause(g, end - stopped);
  nh_stat_add(&g->mark_ns, mark);
  g->limiter_gc_ns += end - start;
  sweep_request(g);
  if (nh_rt.cfg.dbg.gctrace)
    trace(g, why, start, end - stopped, 0, mark, before);
  perf_cycle(g, before, marked_before);
}

/* ---------------------------------------------------------------------------------------------
 * The concurrent cycle (gc = concurrent): run by the collector thread, with the mark workers.
 * ------------------------------------------------------------------------------------------- */

enum { TERMINATION_TRIES = 4 };

static const char reason_paced[] = "heap goal";

/* A marker starts (+1) or stops (-1) draining: termination waits for none to be busy. */
static void marker_busy(nh_markwork_t *w, int delta) {
  nh_mutex_lock(&w->lock);
  w->busy += (unsigned)delta;
  if (delta < 0)
    pthread_cond_broadcast(&w->cv);
  nh_mutex_unlock(&w->lock);
}

/* Go's fractional worker. 25% of the CPUs is a whole number of markers only on multiples of
 * four CPUs; where rounding misses by more than 30% (Go's rule), one marker works a share of
 * a CPU instead: half of one on 2 CPUs, a quarter on 1, half beside one dedicated marker on 6.
 * It marks in chunks and, once its CPU time since it joined the mark passes its share of the
 * time elapsed, rests until it is back under. Unless nobody else wants its CPU: when its last
 * chunk spent almost no time waiting on a run queue (/proc/thread-self/schedstat), it goes
 * on, as Go's idle-priority worker does on an idle P, and that time is not counted against
 * its share. So a program that leaves a CPU idle loses nothing to the rule, and one that keeps
 * every CPU busy gives marking only its 25%. */
typedef struct nh_fractional {
  uint32_t permille;       /* share of one CPU; 0: a dedicated marker */
  int schedstat;           /* this thread's /proc/thread-self/schedstat, or -1: never idle */
  bool idling;             /* the last window found its CPU idle */
  uint64_t t0;             /* when it joined the current mark */
  uint64_t cpu0, idle;     /* thread CPU time then; CPU time since taken from idle CPUs */
  uint64_t win, cpu, run, wait; /* the window's start: time, thread CPU time, schedstat */
} nh_fractional_t;

typedef struct nh_worker {
  pthread_t thread;
  nh_gc_t *g;
  int node;                /* the node whose CPUs it runs on and whose grey objects it takes first */
  bool sweeps;             /* it sweeps its node after each cycle (its node's first worker) */
  nh_fractional_t share;
} nh_worker_t;

enum { FRACTION_CHUNK = 256 << 10 };         /* bytes scanned between checks */
#define FRACTION_WINDOW_NS 10000000ull       /* run-queue waits are judged over this */
#define FRACTION_REST_MAX_NS 2000000ull      /* longest rest before it looks again */

static uint64_t thread_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool read_schedstat(int fd, uint64_t *run, uint64_t *wait) {
  char buf[96];
  ssize_t n = fd >= 0 ? pread(fd, buf, sizeof buf - 1, 0) : -1;
  if (n <= 0)
    return false;
  buf[n] = 0;
  return sscanf(buf, "%" SCNu64 " %" SCNu64, run, wait) == 2;
}

static void fractional_open(nh_fractional_t *f, uint32_t permille) {
  f->permille = permille;
  f->schedstat = permille ? open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC) : -1;
}

static void fractional_close(nh_fractional_t *f) {
  if (f->schedstat >= 0)
    close(f->schedstat);
  f->schedstat = -1;
}

/* Joins a new mark; the last window's verdict on idleness carries over. */
static void fractional_join(nh_fractional_t *f) {
  f->t0 = f->win = now_ns();
  f->cpu0 = f->cpu = thread_cpu_ns();
  f->idle = 0;
  if (!read_schedstat(f->schedstat, &f->run, &f->wait))
    f->run = f->wait = 0;
}

/* How long the fractional marker should rest now; 0: go on. A window in which the thread
 * waited on a run queue for under 5% of its running time had an idle CPU: its CPU time is
 * not counted against the share, and the next window goes on regardless (if that one turns
 * out contended, its time counts, and the rests pay it back). */
static uint64_t fractional_rest(nh_fractional_t *f) {
  uint64_t now = now_ns(), cpu = thread_cpu_ns(), run = f->run, wait = f->wait;
  if (now - f->win >= FRACTION_WINDOW_NS) {
    f->idling = read_schedstat(f->schedstat, &run, &wait) && (wait - f->wait) * 20 < run - f->run;
    if (f->idling)
      f->idle += cpu - f->cpu;
    f->win = now, f->cpu = cpu, f->run = run, f->wait = wait;
  }
  uint64_t used = cpu - f->cpu0 - f->idle, elapsed = now - f->t0;
  if (f->idling || used * 1000 <= elapsed * f->permille)
    return 0;
  uint64_t rest = used * 1000 / f->permille - elapsed;
  return rest < FRACTION_REST_MAX_NS ? rest : FRACTION_REST_MAX_NS;
}

/* Drains shared grey work as one of the markers (counted busy, except while a fractional
 * marker rests, its grey blocks given back); returns when none is left anywhere. Its counts
 * go to the shared ones before it stops being busy: termination reads them once none is. */
static void drain_shared(nh_gc_t *g, nh_marker_t *m, nh_fractional_t *f) {
  marker_busy(&g->work, 1);
  m->shared = &g->work;
  if (!f || !f->permille) {
    mark_drain_shared(m, UINT64_MAX);
  } else {
    while (mark_drain_shared(m, FRACTION_CHUNK)) {
      uint64_t rest = fractional_rest(f);
      if (!rest)
        continue;
      mark_give_back(m);
      mark_report(m);
      marker_busy(&g->work, -1);
      struct timespec ts = {0, (long)rest};
      nanosleep(&ts, NULL);
      if (!__atomic_load_n(&g->phase_mark, __ATOMIC_RELAXED))
        return;
      marker_busy(&g->work, 1);
    }
  }
  mark_report(m);
  marker_busy(&g->work, -1);
}

/* Until no marker is draining and no shared block waits; helps while blocks wait. */
static void mark_until_idle(nh_gc_t *g) {
  nh_markwork_t *w = &g->work;
  for (;;) {
    drain_shared(g, &g->marker, g->collector_share);
    nh_mutex_lock(&w->lock);
    while (!w->nfull && w->busy)
      pthread_cond_wait(&w->cv, &w->lock.m);
    bool idle = !w->nfull && !w->busy;
    nh_mutex_unlock(&w->lock);
    if (idle)
      return;
  }
}

static void *worker_main(void *arg) {
  nh_worker_t *self = arg;
  nh_gc_t *g = self->g;
  nh_markwork_t *w = &g->work;
  nh_marker_t m;
  memset(&m, 0, sizeof m);
  m.pool = w;
  m.node = self->node;
  fractional_open(&self->share, self->share.permille);
  uint64_t mark_seen = 0, swept = 0;
  nh_mutex_lock(&w->lock);
  for (;;) {
    while (!g->workers_stop && !(g->phase_mark && w->nfull) &&
           !(self->sweeps && !g->phase_mark && swept != g->sweeps_requested))
      pthread_cond_wait(&w->cv, &w->lock.m);
    if (g->workers_stop)
      break;
    if (!g->phase_mark) {   /* a sweep of this worker's node */
      swept = g->sweeps_requested;
      nh_mutex_unlock(&w->lock);
      nh_perf_thread_t *counted = perf_self();
      perf_skip(counted);
      uint64_t t0 = now_ns();
      sweep_node(self->node);
      nh_stat_add(&g->sweep_ns, now_ns() - t0);
      perf_attribute(counted, NH_PHASE_SWEEP);
      nh_mutex_lock(&w->lock);
      continue;
    }
    uint64_t mark = g->marks_started;
    nh_mutex_unlock(&w->lock);
    if (mark != mark_seen)
      fractional_join(&self->share);
    mark_seen = mark;
    nh_perf_thread_t *counted = perf_self();
    perf_skip(counted);
    uint64_t t0 = now_ns();
    drain_shared(g, &m, &self->share);
    nh_stat_add(&g->worker_ns, (int64_t)(now_ns() - t0));
    perf_attribute(counted, NH_PHASE_MARK);
    nh_mutex_lock(&w->lock);
  }
  nh_mutex_unlock(&w->lock);
  fractional_close(&self->share);
  perf_thread_exit(perf_self_opened(), NH_PHASE_MARK);
  return NULL;
}

static void set_phase_mark(nh_gc_t *g, bool on) {
  nh_mutex_lock(&g->work.lock);
  g->phase_mark = on;
  g->marks_started += on;
  pthread_cond_broadcast(&g->work.cv);
  nh_mutex_unlock(&g->work.lock);
}

/* Mark assists (Go's assist ratio, simplified): the scan work left is estimated as what the
 * last cycle marked, the runway as the bytes left before the goal; each byte allocated during
 * the mark owes work / runway bytes of scanning, paid in chunks of ASSIST_CHUNK by the
 * allocating thread (gc_assist). When no grey work is there to take, the debt is forgiven
 * (Go lets assists steal the background workers' credit). So a program allocating faster
 * than the markers mark slows down to their pace instead of running past the goal. */
enum { ASSIST_CHUNK = 64 << 10 };

static void set_assist_ratio(nh_gc_t *g) {
  uint64_t live = __atomic_load_n(&g->heap_live, __ATOMIC_RELAXED);
  uint64_t goal = __atomic_load_n(&g->heap_goal, __ATOMIC_RELAXED);
  uint64_t work = g->heap_marked > 4 * MIB ? g->heap_marked : 4 * MIB;
  uint64_t runway = goal != UINT64_MAX && goal > live + MIB ? goal - live : MIB;
  __atomic_store_n(&g->assist_ratio, work * 1024 / runway, __ATOMIC_RELAXED);
}

void gc_assist(size_t bytes) {
  nh_gc_t *g = &nh_rt.gc;
  nh_thread_t *t = nh_self;
  if (!t || !g->collector_running)
    return;
  t->assist_debt += (int64_t)(bytes * __atomic_load_n(&g->assist_ratio, __ATOMIC_RELAXED) / 1024);
  if (t->assist_debt < ASSIST_CHUNK)
    return;
  uint64_t t0 = now_ns();
  nh_perf_thread_t *counted = t->perf;
  perf_attribute(counted, NH_PHASE_ALLOC);
  nh_markwork_t *w = &g->work;
  region_enter();   /* the mark cannot end while this thread holds grey objects */
  if (__atomic_load_n(&nh__marking, __ATOMIC_RELAXED)) {
    marker_busy(w, 1);
    size_t done = mark_assist(w, (size_t)t->assist_debt);
    marker_busy(w, -1);
    t->assist_debt = done && (int64_t)done < t->assist_debt ? t->assist_debt - (int64_t)done : 0;
  }
  region_exit();
  /* Past the goal with nothing to scan: give the markers this thread's CPU for a moment
   * (Go parks the goroutine until the workers have earned credit). */
  if (t->assist_debt == 0 && __atomic_load_n(&nh__marking, __ATOMIC_RELAXED) &&
      __atomic_load_n(&g->heap_live, __ATOMIC_RELAXED) > __atomic_load_n(&g->heap_goal, __ATOMIC_RELAXED))
    sched_yield();
  nh_stat_add(&g->assist_ns, (int64_t)(now_ns() - t0));
  perf_attribute(counted, NH_PHASE_MARK);
}

/* concurrent-nobarrier (Boehm-Demers-Shenker mostly-concurrent marking, with the kernel's
 * write-protect tracking in place of mprotect: dirty.c). Before mark setup every arena is
 * write-protected (outside the pause: a write between the protection and the roots' scan just
 * makes a page to rescan) and arenas created meanwhile are protected as they come. Programs
 * store plainly; a store into an object the markers have scanned already marks its page
 * written. When the markers run dry, up to DIRTY_ROUNDS times with the world running: the
 * written pages are found and protected again in one walk (PAGEMAP_SCAN), the words on them of
 * every marked object are scanned again, and the markers drain what that greyed; a round that
 * finds under DIRTY_QUIET bytes ends the rounds. Mark termination, world stopped, does the same
 * once more and rescans every root (stacks, data segments, registered ranges: nothing saw their
 * stores); then the protection is lifted, with the world running. Complete because a pointer
 * in a marked object at termination either was there when the object was scanned, or was
 * stored later and its page is written, and roots are scanned last. Objects born during the
 * mark are black, as with the barrier. The scavenger does not release pages while a mark
 * tracks (a released page could lose its protection). */
enum { DIRTY_ROUNDS = 3 };
#define DIRTY_QUIET ((int64_t)1 << 20)

static void dirty_rescan_range(uintptr_t lo, uintptr_t hi, void *arg) { mark_rescan_dirty(arg, lo, hi); }

/* Every arena protected (on) or released (off). New arenas see armed under the arena lock. */
static void dirty_arm(nh_gc_t *g, bool on) {
  nh_arena_set_t *set = &nh_rt.arenas;
  nh_mutex_lock(&nh_rt.scavenger.lock);   /* waits out a release in flight; later ones see armed */
  nh_mutex_lock(&set->lock);
  __atomic_store_n(&g->dirty.armed, on, __ATOMIC_RELEASE);
  nh_mutex_unlock(&nh_rt.scavenger.lock);
  for (nh_arena_t *a = set->first; a; a = a->next) {
    int rc = dirty_protect(&g->dirty, (void *)a->base, NH_ARENA_BYTES, on);
    if (rc != 0 && on)   /* an unprotected arena would hide stores: nothing marks safely now */
      nh_fatal("gc: cannot write-protect arena %#lx for dirty tracking (%s)", (unsigned long)a->base,
               nh_strerror(rc));
  }
  nh_mutex_unlock(&set->lock);
}

/* The pages written since the last scan, protected again; the words of marked objects on them,
 * scanned by m (whose new grey objects go to the shared lists). Returns the bytes found. */
static int64_t dirty_rescan(nh_gc_t *g, nh_marker_t *m) {
  int64_t total = 0;
  nh_arena_set_t *set = &nh_rt.arenas;
  nh_mutex_lock(&set->lock);   /* the list; arenas are never unmapped while the heap lives */
  nh_arena_t *first = set->first;
  nh_mutex_unlock(&set->lock);
  for (nh_arena_t *a = first; a; a = __atomic_load_n(&a->next, __ATOMIC_ACQUIRE)) {
    int64_t got = dirty_scan(&g->dirty, (void *)a->base, NH_ARENA_BYTES, true, dirty_rescan_range, m);
    if (got < 0)
      nh_fatal("gc: PAGEMAP_SCAN failed over arena %#lx (%s)", (unsigned long)a->base, nh_strerror((int)got));
    total += got;
  }
  nh_stat_add(&g->dirty_bytes, total);
  g->dirty_last += (uint64_t)total;
  mark_give_back(m);
  return total;
}

/* Registers the arenas that exist (the first comes before the collector) and makes new ones
 * register as they are created. */
static int dirty_track_arenas(nh_gc_t *g) {
  nh_arena_set_t *set = &nh_rt.arenas;
  int rc = 0;
  nh_mutex_lock(&set->lock);
  for (nh_arena_t *a = set->first; a && rc == 0; a = a->next)
    rc = dirty_register(&g->dirty, (void *)a->base, NH_ARENA_BYTES);
  if (rc == 0)
    set->dirty = &g->dirty;
  nh_mutex_unlock(&set->lock);
  return rc;
}

/* No more tracking (shutdown, a fork's child, a failure at start-up). */
static void dirty_stop(nh_gc_t *g) {
  nh_mutex_lock(&nh_rt.arenas.lock);
  nh_rt.arenas.dirty = NULL;
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
  uint64_t start = now_ns();
  uint64_t before = __atomic_load_n(&g->heap_live, __ATOMIC_RELAXED);
  uint64_t workers0 = nh_stat_get(&g->worker_ns), assists0 = nh_stat_get(&g->assist_ns);
  g->traced_trigger = __atomic_load_n(&g->trigger, __ATOMIC_RELAXED);
  g->traced_goal = __atomic_load_n(&g->heap_goal, __ATOMIC_RELAXED);
  uint64_t marked_before = g->heap_marked;
  nh_perf_thread_t *me = perf_self();   /* the collector thread: idle until now */
  perf_skip(me);
  sweep_all();
  roots_collect_data(&g->roots);
  perf_attribute(me, NH_PHASE_SWEEP);
  bool nobarrier = g->mode == NH_GC_CONCURRENT_NOBARRIER;
  g->dirty_last = 0;
  g->dirty_rounds = 0;
  if (nobarrier)
    dirty_arm(g, true);

  uint64_t t1 = now_ns();
  world_stop(&g->threads);
  perf_threads(g, NH_PHASE_PROGRAM);
  sweep_all();
  mcache_flush_all(&nh_rt.caches);
  for (nh_thread_t *t = g->threads.first; t; t = t->next) {
    t->wbn = 0;   /* left from the last cycle's end: not this snapshot's */
    t->assist_debt = 0;
  }
  set_assist_ratio(g);
  uint64_t live_at_setup = __atomic_load_n(&g->heap_live, __ATOMIC_RELAXED);
  bool check = nh_rt.cfg.dbg.checkmark && mark_check_setup(&g->marker, &g->roots, &g->threads);
  mark_roots_shared(&g->marker, &g->work, &g->roots, &g->threads, &g->specials);
  __atomic_store_n(&nh__marking, 1, __ATOMIC_SEQ_CST);
  set_phase_mark(g, true);
  fractional_join(g->collector_share);
  perf_pause(g, me, NH_PHASE_PAUSE_SETUP);
  uint64_t pause1 = world_start(&g->threads) - t1;
  record_pause(g, pause1);

  uint64_t mark0 = now_ns(), pause2 = 0, t2;
  int tries = 1;
  for (;; tries++) {
    mark_until_idle(g);
    while (nobarrier && g->dirty_rounds < DIRTY_ROUNDS) {   /* written pages, with the world running */
      g->dirty_rounds++;
      int64_t found = dirty_rescan(g, &g->marker);
      mark_until_idle(g);
      if (found < DIRTY_QUIET)
        break;
    }
    perf_attribute(me, NH_PHASE_MARK);
    if (nobarrier)
      roots_collect_data(&g->roots);   /* libraries loaded meanwhile (the loader lock: not in a pause) */
    t2 = now_ns();
    world_stop(&g->threads);
    perf_threads(g, NH_PHASE_PROGRAM);
    mark_flush_wbufs(&g->work, &g->threads);
    mcache_flush_all(&nh_rt.caches);
    mark_rescan_roots(&g->marker, &g->roots, &g->threads, nobarrier);
    if (nobarrier)
      dirty_rescan(g, &g->marker);
    mark_give_back(&g->marker);
    bool found = mark_work_left(&g->work);
    if (!found || tries == TERMINATION_TRIES)
      break;   /* else new grey work: drain it with the world running */
    perf_pause(g, me, NH_PHASE_PAUSE_TERM);
    pause2 = world_start(&g->threads) - t2;
    record_pause(g, pause2);
  }
  mark_until_idle(g);   /* in the pause: what the buffers and the stacks greyed (usually nothing) */
  set_phase_mark(g, false);
  mark_finish(&g->marker);
  if (check)
    mark_check(&g->marker, &g->roots, &g->threads);
  size_t finalizers = specials_after_mark(&g->marker, &g->specials);
  __atomic_store_n(&nh__marking, 0, __ATOMIC_SEQ_CST);
  uint64_t mark = now_ns() - mark0;
  g->traced_end = __atomic_load_n(&g->heap_live, __ATOMIC_RELAXED);
  g->mark_growth = g->traced_end > live_at_setup ? g->traced_end - live_at_setup : 0;
  finish_cycle(g);
  perf_pause(g, me, NH_PHASE_PAUSE_TERM);
  uint64_t end = world_start(&g->threads);
  pause2 = end - t2;
  record_pause(g, pause2);
  if (nobarrier)
    dirty_arm(g, false);
  specials_wake(&g->specials, finalizers);
  nh_stat_add(&g->mark_ns, mark);
  /* The limiter counts the share of all CPUs the cycle took: pauses stop every CPU; the
   * concurrent mark is the collector thread, the workers and the assists. */
  uint64_t ncpu = nh_rt.topo.ncpus > 0 ? (uint64_t)nh_rt.topo.ncpus : 1;
  g->limiter_gc_ns += pause1 + pause2 + (mark + nh_stat_get(&g->worker_ns) - workers0 +
                                         nh_stat_get(&g->assist_ns) - assists0) / ncpu;
  sweep_request(g);
  g->termination_tries = (unsigned)tries;
  if (nh_rt.cfg.dbg.gctrace)
    trace(g, why, start, pause1, pause2, mark, before);
  perf_cycle(g, before, marked_before);
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
    bool paced = why == reason_paced;
    if (!paced || gc_limiter_allows(g, now_ns()))
      concurrent_cycle(g, why);
    else
      nh_stat_add(&g->limited, 1);
    if (paced)
      __atomic_store_n(&g->wanted, false, __ATOMIC_RELAXED);   /* asked again at the next refill */
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
    nh_stat_add(&g->sweep_ns, now_ns() - t0);
  }
}

/* Zeroes the stack below the caller's frame, where dead frames of earlier calls left stale
 * pointers; collect's frame, which is scanned, then holds only what it writes (bdwgc's
 * GC_clear_stack, for the same reason). */
nh_noinline void gc_clear_dead_stack(void) {
  enum { CLEAR = 16 << 10, MARGIN = 8 << 10 };
  size_t n = CLEAR;
  uintptr_t sp = (uintptr_t)__builtin_frame_address(0);
  if (thread_attached(&nh_rt.gc.threads)) {   /* small thread stacks: stay well inside */
    uintptr_t lo = nh_self->stack_lo;
    n = sp > lo + MARGIN + CLEAR ? CLEAR : sp > lo + 2 * MARGIN ? sp - lo - 2 * MARGIN : 0;
  }
  char *dead = __builtin_alloca(n);
  memset(dead, 0, n);
  __asm__ volatile("" : : "r"(dead) : "memory");   /* the stores must happen */
}

void gc_collect(const char *why, bool sweep) {
  if (!nh_rt.gc.on)
    return;
  /* The collector thread itself (an error handler run by its reports, error.h): it would wait
   * for the cycle it is running. It is collecting already. */
  if (nh_rt.gc.collector_running && pthread_equal(pthread_self(), nh_rt.gc.collector))
    return;
  thread_attach();
  gc_clear_dead_stack();
  collect(why, sweep);
}

void gc_maybe_collect(void *p) {
  void *volatile keep = p;   /* on this stack while the cycle runs */
  nh_gc_t *g = &nh_rt.gc;
  if (!g->on || (thread_attached(&g->threads) && nh_self->nogc))
    return;
  if (g->collector_running) {   /* the collector thread runs it; this thread goes on */
    if (__atomic_load_n(&g->wanted, __ATOMIC_RELAXED) &&   /* unlocked peek: one is pending */
        __atomic_load_n(&g->requested, __ATOMIC_RELAXED) == __atomic_load_n(&g->completed, __ATOMIC_RELAXED))
      gc_request(g, reason_paced, false);
    return;
  }
  gc_clear_dead_stack();
  nh_mutex_lock(&g->lock);
  ENTER_COLLECTOR(g);
  uint64_t now = now_ns();
  if (__atomic_load_n(&g->wanted, __ATOMIC_RELAXED) &&
      __atomic_load_n(&g->heap_live, __ATOMIC_RELAXED) >= __atomic_load_n(&g->trigger, __ATOMIC_RELAXED)) {
    if (gc_limiter_allows(g, now)) {
      collect_locked(g, reason_paced);
    } else {
      __atomic_store_n(&g->wanted, false, __ATOMIC_RELAXED);   /* retried at the next refill */
      nh_stat_add(&g->limited, 1);
    }
  }
  nh_mutex_unlock(&g->lock);
  (void)keep;
}

NH_API void nh_gc(void) {
  if (!__atomic_load_n(&nh_rt.ready, __ATOMIC_ACQUIRE)) {
    nh_error(-ENODEV, "nh_gc called before nh_init (or after nh_shutdown)");
    return;
  }
  nh_gc_t *g = &nh_rt.gc;
  if (!g->on)
    return;
  nh_stat_add(&g->forced, 1);
  gc_collect("forced", true);   /* as runtime.GC: return with the heap fully swept */
}

NH_API int nh_thread_attach(void) {
  if (!__atomic_load_n(&nh_rt.ready, __ATOMIC_ACQUIRE)) {
    nh_error(-ENODEV, "nh_thread_attach called before nh_init (or after nh_shutdown)");
    return -ENODEV;
  }
  return nh_rt.gc.on ? thread_attach() : 0;
}

NH_API void nh_thread_detach(void) {
  if (__atomic_load_n(&nh_rt.ready, __ATOMIC_ACQUIRE) && nh_rt.gc.on)
    thread_detach();
}

/* ---------------------------------------------------------------------------------------------
 * Life cycle.
 * ------------------------------------------------------------------------------------------- */

/* gc = concurrent needs the program's promise (barrier = store) and nh_store's restartable
 * sequence (x86-64, glibc's rseq registration).
 * concurrent-nobarrier: asked for, or gc = concurrent for a program that promised no barrier
 * (barrier = none, as nheap_gc_compat.h says). Where the kernel cannot track written pages,
 * said once, and the world is stopped to mark: never a concurrent mode without a barrier. */
static int nobarrier_mode(nh_gc_t *g, const nh_config_t *cfg) {
  char why[256] = "turned off (NHEAP_DEBUG=uffd=0)";
  bool hugetlb = cfg->hugepages == NH_HUGEPAGES_AUTO || cfg->hugepages == NH_HUGEPAGES_HUGETLB;
  if (cfg->dbg.uffd && dirty_open(&g->dirty, hugetlb, why, sizeof why) == 0)
    return NH_GC_CONCURRENT_NOBARRIER;
  g->dirty.uffd = g->dirty.pagemap = -1;
  nh_warn("gc: concurrent marking without a write barrier needs the kernel's write-protect tracking, "
          "which is not available: %s; marking stops the world instead", why);
  return NH_GC_STW;
}

static int effective_mode(nh_gc_t *g, const nh_config_t *cfg) {
  g->dirty.uffd = g->dirty.pagemap = -1;
  if (cfg->gc == NH_GC_OFF)
    return NH_GC_OFF;
  if (cfg->gc == NH_GC_CONCURRENT_NOBARRIER || (cfg->gc == NH_GC_CONCURRENT && cfg->barrier == NH_BARRIER_NONE))
    return nobarrier_mode(g, cfg);
  if (cfg->gc != NH_GC_CONCURRENT)
    return NH_GC_STW;
#if defined(__x86_64__)
  if (nh_rt.rseq)
    return NH_GC_CONCURRENT;
#endif
  nh_warn("gc = concurrent needs restartable sequences for nh_store (x86-64, glibc's rseq "
          "registration, not under ThreadSanitizer or valgrind); marking stops the world instead");
  return NH_GC_STW;
}

static void stop_collector_threads(nh_gc_t *g) {
  if (g->collector_running) {
    pthread_mutex_lock(&g->req_mu);
    g->collector_stop = true;
    pthread_cond_broadcast(&g->req_cv);
    pthread_mutex_unlock(&g->req_mu);
    pthread_join(g->collector, NULL);
    g->collector_running = false;
  }
  nh_mutex_lock(&g->work.lock);
  g->workers_stop = true;
  pthread_cond_broadcast(&g->work.cv);
  nh_mutex_unlock(&g->work.lock);
  for (unsigned i = 0; i < g->nworkers; i++)
    pthread_join(g->workers[i].thread, NULL);
  g->nworkers = 0;
  memset(g->node_swept_by_worker, 0, sizeof g->node_swept_by_worker);
}

/* One thread of the collector's, pinned to cpus when pin. */
static int spawn(pthread_t *th, void *(*fn)(void *), void *arg, const cpu_set_t *cpus, bool pin, const char *name) {
  pthread_attr_t attr;
  if (pthread_attr_init(&attr) != 0)
    return -ENOMEM;
  if (pin)
    pthread_attr_setaffinity_np(&attr, sizeof *cpus, cpus);
  int rc = pthread_create(th, &attr, fn, arg);
  pthread_attr_destroy(&attr);
  if (rc == 0)
    pthread_setname_np(*th, name);
  return -rc;
}

/* The collector thread is the first marker of the first node that has markers (dedicated, or
 * the fractional one when the node has no dedicated one); the others are mark workers. */
static int start_collector_threads(nh_gc_t *g, const nh_config_t *cfg) {
  nh_marker_plan plan, *p = &plan;
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) {
    CPU_ZERO(&allowed);
    for (int c = 0; c < nh_rt.topo.ncpus && c < CPU_SETSIZE; c++)
      CPU_SET(c, &allowed);
  }
  marker_plan(&nh_rt.topo, &allowed, &cfg->mark_cpuset, cfg->mark_workers, p);
  if (p->mark_cpus_ignored)
    nh_warn("gc: mark_cpus = %s names no CPU this process may run on; the collector's threads run on any",
            cfg->mark_cpus);
  long total = 0;
  int first = -1;
  for (int n = 0; n < p->nnodes; n++) {
    long here = p->dedicated[n] + (p->permille[n] > 0);
    total += here;
    if (first < 0 && here)
      first = n;
  }
  if (first < 0)
    return -ENODEV;   /* no CPU to mark on: cannot happen while this thread runs on one */
  g->collector_fractional = p->dedicated[first] == 0;
  g->fraction_permille = p->permille[first];
  g->workers = total > 1 ? mem_meta_alloc(&nh_rt.mem, (size_t)(total - 1) * sizeof *g->workers, 64) : NULL;
  if (total > 1 && !g->workers)
    return -ENOMEM;
  int rc = 0;
  char name[16];
  for (int n = 0; n < p->nnodes && rc == 0; n++) {
    snprintf(name, sizeof name, p->nnodes > 1 ? "nheap-mark-n%d" : "nheap-mark", n);
    for (long i = n == first; i < p->dedicated[n] + (p->permille[n] > 0) && rc == 0; i++) {
      nh_worker_t *w = &g->workers[g->nworkers];
      w->g = g;
      w->node = n;
      w->sweeps = p->nnodes > 1 && !g->node_swept_by_worker[n];
      w->share.permille = i == p->dedicated[n] ? p->permille[n] : 0;
      if ((rc = spawn(&w->thread, worker_main, w, &p->cpus[n], p->pin, name)) == 0) {
        g->node_swept_by_worker[n] |= w->sweeps;
        g->nworkers++;
      }
    }
  }
  if (rc == 0 && (rc = spawn(&g->collector, collector_main, g, &p->cpus[first], p->pin, "nheap-gc")) == 0)
    g->collector_running = true;
  if (rc != 0)
    stop_collector_threads(g);
  return rc;
}

int gc_init(nh_gc_t *g, const nh_config_t *cfg) {
  memset(g, 0, sizeof *g);
  g->on = cfg->gc != NH_GC_OFF;
  g->mode = effective_mode(g, cfg);
  nh_mutex_init(&g->work.lock, LOCK_RANK_MARKWORK);
  pthread_cond_init(&g->work.cv, NULL);
  pthread_mutex_init(&g->req_mu, NULL);
  pthread_cond_init(&g->req_cv, NULL);
  pthread_cond_init(&g->done_cv, NULL);
  g->marker.pool = &g->work;
  g->gc_percent = cfg->gc_percent;
  g->memory_limit = (uint64_t)cfg->memory_limit;
  g->start_ns = g->limiter_start = now_ns();
  nh_mutex_init(&g->lock, LOCK_RANK_GC);
  nh_mutex_init(&g->roots.lock, LOCK_RANK_ROOTS);
  specials_init(&g->specials);
  for (int n = 0; n < nh_rt.topo.nnodes; n++)
    for (unsigned ac = 0; ac < NH_NUM_ALLOC_CLASSES; ac++)
      nh_rt.nodes[n].central[ac].gc = g;
  gc_set_goal(g);
  if (!g->on)
    return 0;
  int rc = mark_reserve(&g->marker);
  if (rc != 0) {
    nh_error(rc, "nh_init: no memory for the collector's grey-object reserve");
    return rc;
  }
  if ((rc = threads_init(&g->threads)) != 0) {
    nh_error(rc, "nh_init: cannot set up thread stopping for the collector (%s)", nh_strerror(rc));
    return rc;
  }
  pthread_mutex_init(&g->sweeper_mu, NULL);
  pthread_cond_init(&g->sweeper_cv, NULL);
  if ((rc = pthread_create(&g->sweeper, NULL, sweeper_main, g)) != 0) {
    threads_destroy(&g->threads);
    nh_error(-rc, "nh_init: cannot start the background sweeper (%s)", nh_strerror(-rc));
    return -rc;
  }
  g->sweeper_running = true;
  if (g->mode == NH_GC_CONCURRENT_NOBARRIER && (rc = dirty_track_arenas(g)) != 0) {
    nh_warn("gc: cannot register the arenas for write-protect tracking (%s); marking stops the world "
            "instead", nh_strerror(rc));
    dirty_stop(g);
  }
  if (g->mode != NH_GC_STW && (rc = start_collector_threads(g, cfg)) != 0) {
    nh_warn("gc: cannot start the collector thread and mark workers (%s); marking stops the world "
            "instead", nh_strerror(rc));
    dirty_stop(g);
    g->mode = NH_GC_STW;
  }
  return 0;
}

void gc_shutdown(nh_gc_t *g) {
  dirty_stop(g);
  if (!g->on)
    return;
  stop_collector_threads(g);
  specials_shutdown(&g->specials);
  if (g->sweeper_running) {
    nh_signal_flag(&g->sweeper_mu, &g->sweeper_cv, &g->sweeper_stop);
    pthread_join(g->sweeper, NULL);
    g->sweeper_running = false;
  }
  threads_destroy(&g->threads);
}

void gc_after_fork_child(nh_gc_t *g) {
  if (!g->on)
    return;
  threads_after_fork(&g->threads);
  specials_after_fork_child(&g->specials);
  g->sweeper_running = false;   /* its thread did not survive; sweeping stays lazy */
  /* Nor did the collector thread and the workers (fork waited for any cycle to end: the
   * prepare handler takes g->lock, which a cycle holds): the child's cycles stop the world. */
  g->collector_running = false;
  g->nworkers = 0;
  memset(g->node_swept_by_worker, 0, sizeof g->node_swept_by_worker);
  dirty_stop(g);   /* the child's mappings are not registered with the parent's userfaultfd */
  if (g->mode != NH_GC_OFF)
    g->mode = NH_GC_STW;
  nh_mutex_init(&g->work.lock, LOCK_RANK_MARKWORK);
  pthread_cond_init(&g->work.cv, NULL);
  pthread_mutex_init(&g->req_mu, NULL);
  pthread_cond_init(&g->req_cv, NULL);
  pthread_cond_init(&g->done_cv, NULL);
  pthread_mutex_init(&g->sweeper_mu, NULL);
  pthread_cond_init(&g->sweeper_cv, NULL);
}

NH_API size_t nh_gc_pauses(uint64_t *ns, size_t max) {
  if (!__atomic_load_n(&nh_rt.ready, __ATOMIC_ACQUIRE)) {
    nh_error(-ENODEV, "nh_gc_pauses called before nh_init (or after nh_shutdown)");
    return 0;
  }
  nh_gc_t *g = &nh_rt.gc;
  uint64_t n = __atomic_load_n(&g->npauses, __ATOMIC_ACQUIRE);
  size_t have = n < NH_PAUSE_RING ? (size_t)n : NH_PAUSE_RING;
  if (have > max)
    have = max;
  for (size_t i = 0; i < have; i++)   /* a pause recorded meanwhile may replace the oldest */
    ns[i] = __atomic_load_n(&g->pauses[(n - have + i) % NH_PAUSE_RING], __ATOMIC_RELAXED);
  return have;
}

NH_API uint64_t nh_gc_pause_count(void) { return __atomic_load_n(&nh_rt.gc.npauses, __ATOMIC_ACQUIRE); }

uint64_t gc_pause_percentile(nh_gc_t *g, unsigned pct) {
  uint64_t v[NH_PAUSE_RING];
  size_t n = g->npauses < NH_PAUSE_RING ? g->npauses : NH_PAUSE_RING;
  if (n == 0)
    return 0;
  memcpy(v, g->pauses, n * sizeof *v);
  for (size_t i = 1; i < n; i++)   /* insertion sort: at most 256 values */
    for (size_t j = i; j > 0 && v[j - 1] > v[j]; j--) {
      uint64_t t = v[j];
      v[j] = v[j - 1];
      v[j - 1] = t;
    }
  size_t i = (n * pct + 99) / 100;
  return v[i ? i - 1 : 0];
}
