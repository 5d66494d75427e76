/*
 * gcevents.h — the cycle's phases as events: cycle.c emits one as each phase ends, and the
 * subscribers in gcevents.c (the pause and time counters, the CPU limiter, the per-cycle perf
 * record, gctrace) take them, so that what the cycle reports is not woven into its code.
 *
 * A concurrent cycle: SETUP (sweep termination + mark setup, a pause), a TERMINATION for each
 * attempt that found new work and restarted the world (a pause), MARK (the concurrent mark,
 * ended by the last stop), then the last TERMINATION (a pause) with the cycle's record. A
 * stop-the-world cycle: SETUP (its one pause, the mark inside), then TERMINATION with the
 * record and no pause of its own. SWEEP: a background sweep or nh_gc's full sweep finished.
 *
 * A pause event may carry the parts of its pause the cycle timed (stop_ns, roots_ns; 0 where
 * it did not): the counters subscriber puts each in its histogram (NH_PAUSES_PART_*), so a
 * new part is a field here, a kind below and one line where the cycle times it.
 */
#ifndef NH_GCEVENTS_H
#define NH_GCEVENTS_H

#include <stdbool.h>
#include <stdint.h>

typedef enum nh_gc_phase {
  NH_GC_PHASE_SETUP,
  NH_GC_PHASE_MARK,
  NH_GC_PHASE_TERMINATION,
  NH_GC_PHASE_SWEEP,
} nh_gc_phase;

/* A cycle's figures, on its last event. */
typedef struct nh_gc_cycle_rec {
  const char *why;             /* what started it (gctrace) */
  bool concurrent;             /* two pauses and a concurrent mark; else one pause */
  uint64_t start;              /* ns: when it began (the sweep before the first stop) */
  uint64_t before;             /* heap_live then */
  uint64_t marked_before;      /* the last mark's live heap */
  uint64_t pause1, pause2;     /* the setup pause and the last termination pause (stw: pause1) */
  uint64_t mark_ns;            /* the mark's wall time */
} nh_gc_cycle_rec;

/* The pause histograms (nh_gc_t.pause_hist): every pause, by kind, and the timed parts. */
typedef enum nh_pause_hist {
  NH_PAUSES_ALL,
  NH_PAUSES_SETUP,             /* sweep termination + mark setup (stw: the cycle's one pause) */
  NH_PAUSES_TERMINATION,       /* each mark termination attempt that stopped the world */
  NH_PAUSES_PART_STOP,         /* part: from the stop request until every thread stopped */
  NH_PAUSES_PART_ROOTS,        /* part: the roots scanned (setup, stw), stacks and barrier
                                  buffers rescanned (termination) */
  NH_PAUSE_HISTS,
} nh_pause_hist;

typedef struct nh_gc_event {
  nh_gc_phase phase;
  uint64_t end;                /* ns: when the phase ended */
  uint64_t stopped_ns;         /* the world was stopped this long in it (a pause); 0: none */
  uint64_t stop_ns, roots_ns;  /* parts of that pause (NH_PAUSES_PART_*); 0: not timed */
  uint64_t cpu_ns;             /* collection CPU in it besides the pause (marking, sweeping) */
  const nh_gc_cycle_rec *cycle; /* on a cycle's last TERMINATION: the whole cycle; else NULL */
} nh_gc_event;

struct nh_gc;
/* The phase e ended. The collector's lock held, except for SWEEP events. */
void gc_emit(struct nh_gc *g, const nh_gc_event *e);

#endif
