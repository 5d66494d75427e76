/*
 * gcevents.c — what the cycle reports, as subscribers to its phase events (gcevents.h). The
 * cycle (cycle.c) says when each phase ended, how long it stopped the world and what collection
 * CPU it took; here, apart from the cycle's code:
 *   counters   every pause recorded: the ring of the last 256 (nh_gc_pauses), total and max,
 *              and the histograms (timehist.h) of every pause, by kind (setup, termination)
 *              and by the parts the cycle timed (stop, roots), from which nh_stats_read takes
 *              its percentiles without a lock; mark and sweep time, and collection CPU by
 *              phase (nh_stats, nh_stats_write);
 *   limiter    the CPU limiter fed each phase's collection CPU (a pause counts on every CPU),
 *              and the cost of the last whole cycle kept for its gate (pacer.h);
 *   perf       the cycle's record of the hardware counters (perf/counters.c) at its end;
 *   gctrace    the cycle's line (NHEAP_DEBUG=gctrace=1), like Go's.
 * The per-phase attribution of the counters themselves stays at the cycle's stops and starts
 * (cycle.c: perf_pause), which only the stopped world can split exactly.
 * Events come from the collecting thread under the collector's lock, except sweep events,
 * which the sweeper, the mark workers and nh_gc emit without it: only the counters take those.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/heap.h"

#define MIB ((uint64_t)1 << 20)

static unsigned ncpus(void) { return nh_rt.topo.ncpus > 0 ? (unsigned)nh_rt.topo.ncpus : 1; }

static void record_pause(nh_gc_t *g, const nh_gc_event *e) {
  uint64_t ns = e->stopped_ns;
  timehist_record(&g->pause_hist[NH_PAUSES_ALL], ns);
  timehist_record(&g->pause_hist[e->phase == NH_GC_PHASE_SETUP ? NH_PAUSES_SETUP : NH_PAUSES_TERMINATION], ns);
  if (e->stop_ns)
    timehist_record(&g->pause_hist[NH_PAUSES_PART_STOP], e->stop_ns);
  if (e->roots_ns)
    timehist_record(&g->pause_hist[NH_PAUSES_PART_ROOTS], e->roots_ns);
  __atomic_store_n(&g->pauses[g->npauses % NH_PAUSE_RING], ns, __ATOMIC_RELAXED);
  __atomic_store_n(&g->npauses, g->npauses + 1, __ATOMIC_RELEASE);
  nh_stat_add(&g->pause_total_ns, ns);
  if (ns > g->pause_max_ns)
    __atomic_store_n(&g->pause_max_ns, ns, __ATOMIC_RELAXED);
}

/* perf.events at a cycle's end: the cycle's record and, with gctrace, its line. */
static void perf_cycle(nh_gc_t *g, const nh_gc_cycle_rec *c) {
  uint64_t before = c->before, marked_before = c->marked_before;
  char buf[1024];
  uint64_t spans, large;
  heap_sweep_counts(&spans, &large);
  uint64_t swept = spans - g->perf_spans;   /* since the last cycle */
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

/* One gctrace line. */
static void trace(nh_gc_t *g, const nh_gc_cycle_rec *c) {
  const char *why = c->why;
  uint64_t start = c->start, pause1 = c->pause1, pause2 = c->pause2, mark = c->mark_ns, before = c->before;
  uint64_t swept = nh_stat_get(&g->sweep_ns), sweep = swept - g->traced_sweep_ns;
  g->traced_sweep_ns = swept;
  uint64_t workers = nh_stat_get(&g->worker_ns), worker = workers - g->traced_worker_ns;
  g->traced_worker_ns = workers;
  uint64_t assists = nh_stat_get(&g->assist_ns), assist = assists - g->traced_assist_ns;
  g->traced_assist_ns = assists;
  char buf[768], pauses[320], dirty[96] = "";
  if (g->mode == NH_GC_CONCURRENT_NOBARRIER)
    snprintf(dirty, sizeof dirty, ", %.2f MiB of written pages rescanned (%u concurrent rounds)",
             (double)g->dirty_last / MIB, g->dirty_rounds);
  if (c->concurrent)
    snprintf(pauses, sizeof pauses,
             "%.3f+%.3f ms stw (%u tries), %.3f ms concurrent mark (workers %.3f ms, assists %.3f ms%s), "
             "trigger %.2f MiB, goal %.2f MiB (assists to %.2f), %.2f MiB at mark end%s",
             (double)pause1 / 1e6, (double)pause2 / 1e6, g->termination_tries, (double)mark / 1e6,
             (double)worker / 1e6, (double)assist / 1e6, g->assists_off ? ", off: CPU limiter" : "",
             (double)g->traced_trigger / MIB, g->traced_goal == NH_PACER_NO_GOAL ? 0.0 : (double)g->traced_goal / MIB,
             g->traced_assist_goal == NH_PACER_NO_GOAL ? 0.0 : (double)g->traced_assist_goal / MIB,
             (double)g->traced_end / MIB, dirty);
  else
    snprintf(pauses, sizeof pauses, "%.3f ms stw (mark %.3f ms)", (double)pause1 / 1e6, (double)mark / 1e6);
  uint64_t cycle = nh_stat_get(&g->cycles);
  double secs = (double)(start - g->start_ns) / 1e9;
  int n = snprintf(buf, sizeof buf,
                   "gc %llu @%.3fs %s: %s, %.3f ms background sweep since the last cycle, "
                   "%.2f->%.2f MiB heap, %.2f MiB next goal (trigger %.2f, cons/mark %.3f), %.2f MiB roots, "
                   "%llu objects marked, %zu threads, %u marker(s)\n",
                   (unsigned long long)cycle, secs, why, pauses, (double)sweep / 1e6, (double)before / MIB,
                   (double)g->pacer.heap_marked / MIB, g->pacer.goal == NH_PACER_NO_GOAL ? 0.0 : (double)g->pacer.goal / MIB,
                   g->pacer.trigger == NH_PACER_NO_GOAL ? 0.0 : (double)g->pacer.trigger / MIB, g->pacer.cons_mark,
                   (double)g->roots.bytes / MIB, (unsigned long long)g->marker.marked_objects, g->threads.count,
                   c->concurrent ? g->nworkers + 1 : 1);
  if (n > 0)
    (void)!write(STDERR_FILENO, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

static void counters(nh_gc_t *g, const nh_gc_event *e) {
  if (e->stopped_ns)
    record_pause(g, e);
  nh_stat_add(&g->phase_cpu_ns[e->phase], (int64_t)e->cpu_ns);
  if (e->phase == NH_GC_PHASE_SWEEP)
    nh_stat_add(&g->sweep_ns, e->cpu_ns);
  if (e->cycle)
    nh_stat_add(&g->mark_ns, e->cycle->mark_ns);
}

static void limiter(nh_gc_t *g, const nh_gc_event *e) {
  uint64_t cpu = e->stopped_ns * ncpus() + e->cpu_ns;
  if (e->phase == NH_GC_PHASE_SETUP)
    g->cycle_cost = 0;
  g->cycle_cost += cpu;
  if (e->cycle)
    g->cycle_cpu_ns = g->cycle_cost;
  pacer_limiter_update(&g->limiter, e->end, cpu, 0);
}

static void reports(nh_gc_t *g, const nh_gc_event *e) {
  if (!e->cycle)
    return;
  if (nh_rt.cfg.dbg.gctrace)
    trace(g, e->cycle);
  perf_cycle(g, e->cycle);
}

static void (*const subscribers[])(nh_gc_t *, const nh_gc_event *) = {counters, limiter, reports};

void gc_emit(nh_gc_t *g, const nh_gc_event *e) {
  if (e->phase == NH_GC_PHASE_SWEEP) {   /* no lock held: the counters' alone (and not the limiter's, as in Go) */
    counters(g, e);
    return;
  }
  nh_mutex_assert_held(&g->lock);
  for (size_t i = 0; i < sizeof subscribers / sizeof *subscribers; i++)
    subscribers[i](g, e);
}
