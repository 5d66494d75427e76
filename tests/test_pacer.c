/*
 * test_pacer.c — the pacer's policy (core/pacer.h) on its own: its formulas checked by hand,
 * then driven through simulated collection cycles, as Go's mgcpacer_test.go drives its
 * gcControllerState; and the CPU limiter's leaky bucket driven with explicit times.
 *
 * The simulator has no clock: time is a number it advances. A program on P CPUs allocates
 * `alloc` bytes per CPU-second over a live heap L with roots R. Between marks it has every CPU,
 * so the heap reaches the trigger at a known time. A mark scans R + L bytes at `scan` bytes per
 * marking CPU-second; the workers have 25% of the CPUs; every 0.5 ms of simulated time the pacer
 * revises the assist ratio (pacer_assist), and the program's CPUs divide between allocating and
 * assisting so that scan work / bytes allocated equals that ratio (Go's idealisation: the share
 * u of the CPUs marking is ratio*alloc / (ratio*alloc + scan), at least 25%; what passes 25% is
 * assists). Optionally assists pay only part of their debt (assist_pays < 1: debts under a
 * chunk left unpaid, grey work not found), so the heap outruns the plan as in a real collector.
 * At the mark's end the live heap is L again (what was allocated meanwhile was garbage) and the
 * pacer gets the cycle's measurements. Every assertion is on simulated quantities; nothing reads
 * a clock, and the one source of noise is a seeded xorshift, so every run computes the same
 * numbers (test_sim_deterministic runs one twice). Each scenario prints one line of figures
 * (heap at mark end / goal, trigger / goal, assists' share of the marking CPU); NH_PACER_TRACE=1
 * prints every cycle.
 *
 * Scenarios (4 CPUs marking 1 GiB/s each, L = 128 MiB, R = 1 MiB unless said): steady state
 * (also with +-30% noise, and on 2 CPUs); a 10x step up and down in allocation; a live heap
 * growing 10x; GOGC 100 -> 50 -> 200 -> off (and off with a limit); a memory limit at 1.1x and
 * at 0.9x the live heap; a death spiral (allocation 4x marking, assists paying half), also with
 * marks that start late; and the limiter fed the spiral's CPU time.
 */
#include <math.h>   /* isfinite, fabs, INFINITY: no libm call */
#include <stdio.h>
#include <stdlib.h>

#include "core/pacer.h"
#include "tests/testutil.h"

#define MIB ((uint64_t)1 << 20)
#define GIB ((uint64_t)1 << 30)
#define SEC 1e9
#define STEP_NS 500000.0   /* how often assists are revised in the simulation (Go's test: 0.5 ms) */

#define expect(cond, ...)                                                                                  \
  do {                                                                                                     \
    if (!(cond))                                                                                           \
      fail_msg(__VA_ARGS__);                                                                               \
  } while (0)

/* ---------------------------------------------------------------------------------------------
 * The simulator.
 * ------------------------------------------------------------------------------------------- */

typedef struct sim {
  unsigned procs;
  double scan;               /* bytes per marking CPU-second */
  double alloc;              /* bytes per program CPU-second */
  uint64_t live, roots;      /* L and R: the next mark scans both */
  double noise;              /* the allocation rate varies by up to this share, per cycle */
  double start_delay;        /* ns from reaching the trigger to the mark's start */
  double assist_pays;        /* the share of their debt assists pay (1: all; less: lagging assists) */
  uint64_t rng;
  nh_pacer_t pacer;
  double now, heap;          /* simulated ns; heap_live in bytes */
  double last_end;           /* when the last mark ended */
  unsigned cycles;
  const char *name;
} sim_t;

typedef struct cyc {
  unsigned n;
  uint64_t goal, trigger, marked;   /* the pacer's, when the mark began */
  double start, end;         /* heap when the mark began / ended */
  double wall, cpu, assist;  /* the mark's wall ns, marking CPU-ns, of which assists */
  double ratio_first, ratio_max;
  double period;             /* ns from the last mark's end to this one's */
  bool hard;                 /* assists paced to the hard goal at some point */
} cyc_t;

static bool tracing;

static void sim_init(sim_t *s, const char *name, unsigned procs, double scan, double alloc, uint64_t live,
                     uint64_t roots, int64_t gc_percent, uint64_t limit) {
  *s = (sim_t){.procs = procs, .scan = scan, .alloc = alloc, .live = live, .roots = roots, .rng = 0x9e3779b97f4a7c15ull,
               .assist_pays = 1, .name = name, .heap = (double)live};
  pacer_init(&s->pacer, gc_percent, limit);
}

static double rnd(sim_t *s) {   /* [0, 1), xorshift64* */
  s->rng ^= s->rng >> 12;
  s->rng ^= s->rng << 25;
  s->rng ^= s->rng >> 27;
  return (double)((s->rng * 0x2545f4914f6cdd1dull) >> 11) / 9007199254740992.0;
}

static double share(const cyc_t *c) {
  return c->cpu > 0 ? c->assist / c->cpu : 0;
}

static void print_cycle(const sim_t *s, const cyc_t *c) {
  if (!tracing)
    return;
  printf("  %-10s #%-3u goal %8.2f MiB  trigger/goal %.3f  start/goal %.3f  end/goal %.4f  assists %5.1f%%  "
         "u %.2f  ratio %.2f..%.2f%s\n",
         s->name, c->n, (double)c->goal / MIB, (double)c->trigger / c->goal, c->start / c->goal, c->end / c->goal,
         100 * share(c), c->cpu / (c->wall * s->procs), c->ratio_first, c->ratio_max, c->hard ? "  hard" : "");
}

/* Runs the program until the next mark has ended (true, *c filled), or until simulated time
 * `horizon` when no mark starts before it (false). */
static bool sim_cycle(sim_t *s, cyc_t *c, double horizon) {
  nh_pacer_t *p = &s->pacer;
  double rate = s->alloc * (1 + s->noise * (2 * rnd(s) - 1));
  if (!pacer_should_start(p, (uint64_t)s->heap)) {
    double dt = p->trigger == NH_PACER_NO_GOAL || rate <= 0 ? INFINITY
                                                            : ((double)p->trigger - s->heap) / (rate * s->procs) * SEC;
    if (s->now + dt > horizon) {
      s->heap += rate * s->procs * (horizon - s->now) / SEC;
      s->now = horizon;
      return false;
    }
    s->now += dt;
    s->heap = (double)p->trigger;
  }
  s->heap += rate * s->procs * s->start_delay / SEC;
  s->now += s->start_delay;
  *c = (cyc_t){.n = ++s->cycles, .goal = p->goal, .trigger = p->trigger, .marked = p->heap_marked, .start = s->heap};
  pacer_mark_start(p, (uint64_t)s->heap);
  double work = (double)(s->live + s->roots), done = 0, work_max = s->heap + (double)s->roots;
  while (done < work) {
    nh_pacer_assist_t a = pacer_assist(p, (uint64_t)s->heap, (uint64_t)done, (uint64_t)work_max);
    expect(isfinite(a.work_per_byte) && a.work_per_byte >= 0, "%s: assist ratio %g", s->name, a.work_per_byte);
    if (c->ratio_first == 0)
      c->ratio_first = a.work_per_byte;
    if (a.work_per_byte > c->ratio_max)
      c->ratio_max = a.work_per_byte;
    c->hard |= a.hard;
    double r = a.work_per_byte * s->assist_pays;
    /* The program's share, computed as a quotient so that it stays exact when it is tiny. */
    double program = s->scan / (r * rate + s->scan), u = 1 - program;
    if (u < NH_PACER_UTILIZATION) {
      u = NH_PACER_UTILIZATION;
      program = 1 - u;
    }
    double dt = STEP_NS;
    double scanned = s->scan * u * s->procs * dt / SEC, allocated = rate * program * s->procs * dt / SEC;
    if (done + scanned >= work) {   /* the mark ends within this step */
      double f = (work - done) / scanned;
      scanned *= f;
      allocated *= f;
      dt *= f;
    }
    done += scanned;
    s->heap += allocated;
    c->wall += dt;
    c->cpu += u * s->procs * dt;
    c->assist += (u - NH_PACER_UTILIZATION) * s->procs * dt;
  }
  c->end = s->heap;
  s->now += c->wall;
  c->period = s->now - s->last_end;
  s->last_end = s->now;
  nh_pacer_cycle_t m = {.heap_marked = s->live,
                        .heap_scan = s->live,
                        .roots_scan = s->roots,
                        .heap_allocated = (uint64_t)c->end - (uint64_t)c->start,
                        .wall_ns = (uint64_t)c->wall,
                        .mark_cpu_ns = (uint64_t)c->cpu,
                        .procs = s->procs};
  pacer_mark_done(p, &m);
  s->heap = (double)s->live;   /* swept: what the mark did not find is free */
  /* What the pacer computed stays sane whatever happened. */
  expect(isfinite(p->cons_mark) && p->cons_mark >= 0, "%s: cons/mark %g", s->name, p->cons_mark);
  expect(p->goal >= p->heap_marked, "%s: goal %lu below marked %lu", s->name, p->goal, p->heap_marked);
  expect(p->trigger >= p->heap_marked && p->trigger <= p->goal, "%s: trigger %lu outside [%lu, %lu]", s->name,
         p->trigger, p->heap_marked, p->goal);
  print_cycle(s, c);
  return true;
}

/* Runs n cycles into out[0..n). */
static void sim_run(sim_t *s, cyc_t *out, unsigned n) {
  for (unsigned i = 0; i < n; i++)
    expect(sim_cycle(s, &out[i], INFINITY), "%s: no cycle", s->name);
}

typedef struct range {
  double lo, hi;
} range_t;

static range_t span_of(const cyc_t *c, unsigned n, double (*f)(const cyc_t *)) {
  range_t r = {INFINITY, -INFINITY};
  for (unsigned i = 0; i < n; i++) {
    double v = f(&c[i]);
    r.lo = v < r.lo ? v : r.lo;
    r.hi = v > r.hi ? v : r.hi;
  }
  return r;
}

static double end_goal(const cyc_t *c) {
  return c->end / (double)c->goal;
}
/* The heap at the mark's end is at most the goal, give or take rounding: the simulation keeps
 * bytes as doubles and hands the pacer whole bytes, so the last step can pass by a few bytes. */
#define SLACK 64.0
static bool ends_by(const cyc_t *c, double goal) {
  return c->end <= goal + SLACK;
}
static bool ends_near(const cyc_t *c, double lo) {
  return c->end >= lo * (double)c->goal && ends_by(c, (double)c->goal);
}

static double trigger_goal(const cyc_t *c) {
  return (double)c->trigger / (double)c->goal;
}
static double trigger_way(const cyc_t *c) {   /* how far from marked to the goal */
  return c->goal > c->marked ? (double)(c->trigger - c->marked) / (double)(c->goal - c->marked) : 1;
}

/* One line per scenario: the figures the report quotes (cycles from..to). */
static void summary(const char *what, const cyc_t *c, unsigned n) {
  range_t e = span_of(c, n, end_goal), t = span_of(c, n, trigger_goal), w = span_of(c, n, trigger_way);
  range_t a = span_of(c, n, share);
  printf("%-46s #%u..%-2u end/goal %.4f..%.4f  trigger/goal %.3f..%.3f (%.2f..%.2f of the way)  "
         "assists %.1f..%.1f%%\n",
         what, c[0].n, c[n - 1].n, e.lo, e.hi, t.lo, t.hi, w.lo, w.hi, 100 * a.lo, 100 * a.hi);
}

/* The world of most scenarios: 4 CPUs marking at 1 GiB/s each, 128 MiB live, 1 MiB of roots. */
enum { P = 4 };
static const double S = (double)GIB;
static const uint64_t L = 128 * MIB, R = 1 * MIB;

/* ---------------------------------------------------------------------------------------------
 * The formulas, by hand.
 * ------------------------------------------------------------------------------------------- */

static void test_init_and_goal(void **state) {
  nh_pacer_t p;
  pacer_init(&p, 100, 0);
  assert_int_equal(p.heap_minimum, 4 * MIB);
  assert_int_equal(p.goal, 4 * MIB);   /* nothing marked yet: the minimum heap */
  assert_int_equal(p.trigger, 4 * MIB / 64 * 61);
  assert_false(pacer_should_start(&p, 4 * MIB / 64 * 61 - 1));
  assert_true(pacer_should_start(&p, 4 * MIB / 64 * 61));
  pacer_set_gc_percent(&p, 200);
  assert_int_equal(p.goal, 8 * MIB);
  /* Go 1.18's goal: marked + (marked + roots) * GOGC / 100. */
  nh_pacer_cycle_t m = {.heap_marked = 100 * MIB, .heap_scan = 60 * MIB, .roots_scan = 2 * MIB};
  pacer_mark_done(&p, &m);
  assert_int_equal(p.goal, 100 * MIB + 204 * MIB);
  assert_int_equal(pacer_set_gc_percent(&p, 50), 200);
  assert_int_equal(p.goal, 100 * MIB + 51 * MIB);
  assert_true(p.cons_mark == 0);   /* a mark that allocated nothing (stop-the-world) is no sample */
  /* Off: no goal, no trigger, no cycle however big the heap. */
  pacer_set_gc_percent(&p, -1);
  assert_int_equal(p.goal, NH_PACER_NO_GOAL);
  assert_int_equal(p.trigger, NH_PACER_NO_GOAL);
  assert_false(pacer_should_start(&p, UINT64_MAX - 1));
  assert_true(pacer_assist(&p, 1 * GIB, 0, 200 * MIB).work_per_byte == 0);
  /* GOGC at its maximum over a huge heap saturates rather than wrapping. */
  pacer_set_gc_percent(&p, 1000000);
  m.heap_marked = (uint64_t)1 << 62;
  pacer_mark_done(&p, &m);
  assert_true(p.goal >= (uint64_t)1 << 62 && p.goal < NH_PACER_NO_GOAL);
  assert_true(p.trigger <= p.goal);
  /* GOGC = 0: the goal is the live heap, every allocation past it starts a mark. */
  pacer_set_gc_percent(&p, 0);
  assert_int_equal(p.goal, p.heap_marked);
  assert_int_equal(p.trigger, p.goal);
}

static void test_memory_limit_goal(void **state) {
  nh_pacer_t p;
  pacer_init(&p, 100, 100 * MIB);
  nh_pacer_cycle_t m = {.heap_marked = 40 * MIB, .heap_scan = 40 * MIB, .roots_scan = 0};
  pacer_mark_done(&p, &m);
  assert_int_equal(p.goal_percent, 80 * MIB);
  assert_int_equal(p.goal, 80 * MIB);   /* the limit's goal is higher: GOGC's rules */
  pacer_set_non_heap(&p, 30 * MIB);     /* 70 MiB left, less 3% headroom */
  assert_int_equal(p.goal_limit, 70 * MIB - 70 * MIB / 100 * 3);
  assert_int_equal(p.goal, p.goal_limit);
  /* Off with a limit (GOGC=off GOMEMLIMIT=...): the limit alone sets the goal. */
  pacer_set_gc_percent(&p, -1);
  assert_int_equal(p.goal, p.goal_limit);
  assert_true(p.trigger < p.goal && p.trigger >= p.heap_marked);
  /* A limit below the live heap: the goal is the live heap, and the trigger with it. */
  pacer_set_non_heap(&p, 0);
  assert_int_equal(pacer_set_memory_limit(&p, 30 * MIB), 100 * MIB);
  assert_int_equal(p.goal, 40 * MIB);
  assert_int_equal(p.trigger, 40 * MIB);
  nh_pacer_assist_t a = pacer_assist(&p, 40 * MIB, 0, 41 * MIB);
  assert_true(isfinite(a.work_per_byte) && a.work_per_byte > 0);
  /* Small limits: at least 1 MiB of headroom, and the goal never 0. */
  pacer_set_memory_limit(&p, 1536 << 10);
  m.heap_marked = 0;
  pacer_mark_done(&p, &m);
  assert_int_equal(p.goal, 1 * MIB);
  pacer_set_non_heap(&p, 10 * MIB);   /* non-heap memory alone past the limit */
  assert_int_equal(p.goal, 1 * MIB);
}

static void test_trigger_bounds(void **state) {
  nh_pacer_t p;
  pacer_init(&p, 100, 0);
  nh_pacer_cycle_t m = {.heap_marked = 100 * MIB, .heap_scan = 100 * MIB, .roots_scan = 0};
  pacer_mark_done(&p, &m);   /* no cons/mark yet: no runway, the highest trigger */
  assert_int_equal(p.goal, 200 * MIB);
  assert_int_equal(p.trigger, 196 * MIB);   /* goal - 4 MiB is above 61/64 of the way */
  p.stw = true;   /* marks that stop the world need no runway */
  pacer_set_gc_percent(&p, 100);
  assert_int_equal(p.trigger, p.goal);
  p.stw = false;
  pacer_set_gc_percent(&p, 100);
  assert_int_equal(p.trigger, 196 * MIB);
  /* An allocation-heavy mark: a cons/mark past what the runway can give, the lowest trigger. */
  m.heap_allocated = 400 * MIB;
  m.wall_ns = 100000000;
  m.mark_cpu_ns = 100000000;   /* 25% of 4 CPUs */
  m.procs = 4;
  pacer_mark_done(&p, &m);
  assert_true(fabs(p.cons_mark - 400.0 * 0.25 / (100 * 0.75)) < 1e-12);
  assert_int_equal(p.trigger, 100 * MIB + 100 * MIB / 64 * 45);
  /* Small heap: 61/64 of the way is above goal - 4 MiB. */
  pacer_init(&p, 100, 0);
  m = (nh_pacer_cycle_t){.heap_marked = 2 * MIB, .heap_scan = 2 * MIB};
  pacer_mark_done(&p, &m);
  assert_int_equal(p.goal, 4 * MIB);
  assert_int_equal(p.trigger, 2 * MIB + 2 * MIB / 64 * 61);
  /* A middling cons/mark: trigger = goal - cons/mark * 3 * expected work. */
  pacer_init(&p, 100, 0);
  m = (nh_pacer_cycle_t){.heap_marked = 100 * MIB, .heap_scan = 90 * MIB, .roots_scan = 10 * MIB,
                         .heap_allocated = 10 * MIB, .wall_ns = 1000, .mark_cpu_ns = 1000, .procs = 4};
  pacer_mark_done(&p, &m);   /* sample 10 * .25 / (100 * .75) = 1/30: runway 10 MiB */
  assert_int_equal(p.runway, 10 * MIB);
  assert_int_equal(p.goal, 210 * MIB);
  assert_int_equal(p.trigger, 200 * MIB);
}

static void test_cons_mark_smoothing(void **state) {
  nh_pacer_t p;
  pacer_init(&p, 100, 0);
  /* Samples 1, 5, 2, 2, 2, 2, 2: the estimate is the largest of the last five. */
  double samples[] = {1, 5, 2, 2, 2, 2, 2}, want[] = {1, 5, 5, 5, 5, 5, 2};
  for (int i = 0; i < 7; i++) {
    /* u = 0.5, no idle: sample = allocated / work. */
    nh_pacer_cycle_t m = {.heap_marked = 64 * MIB, .heap_scan = 64 * MIB,
                          .heap_allocated = (uint64_t)(samples[i] * 64 * MIB),
                          .wall_ns = 1000, .mark_cpu_ns = 2000, .procs = 4};
    pacer_mark_done(&p, &m);
    assert_true(fabs(p.cons_mark - want[i]) < 1e-12);
  }
  /* Idle marking counts as marking CPU only: u = .25, idle = .25 -> 2x the sample at u = .25. */
  pacer_init(&p, 100, 0);
  nh_pacer_cycle_t m = {.heap_marked = 64 * MIB, .heap_scan = 64 * MIB, .heap_allocated = 3 * 64 * MIB,
                        .wall_ns = 1000, .mark_cpu_ns = 1000, .idle_cpu_ns = 1000, .procs = 4};
  pacer_mark_done(&p, &m);
  assert_true(fabs(p.cons_mark - 2.0) < 1e-12);
  /* Absurd measurements stay finite: all CPUs marking, a mark of no time, no scan work. */
  m = (nh_pacer_cycle_t){.heap_marked = MIB, .heap_scan = MIB, .heap_allocated = GIB, .wall_ns = 1,
                         .mark_cpu_ns = 1000, .procs = 1};
  pacer_mark_done(&p, &m);
  assert_true(isfinite(p.cons_mark) && p.trigger <= p.goal);
  m.heap_scan = 0;
  m.wall_ns = 0;
  pacer_mark_done(&p, &m);
  assert_true(isfinite(p.cons_mark) && p.trigger <= p.goal);
}

static void test_assist_ratio(void **state) {
  nh_pacer_t p;
  pacer_init(&p, 100, 0);
  nh_pacer_cycle_t m = {.heap_marked = 100 * MIB, .heap_scan = 90 * MIB, .roots_scan = 10 * MIB};
  pacer_mark_done(&p, &m);   /* goal 210 MiB, expected work 100 MiB */
  pacer_mark_start(&p, 180 * MIB);
  /* Soft: the work left over the heap left. */
  nh_pacer_assist_t a = pacer_assist(&p, 180 * MIB, 40 * MIB, 190 * MIB);
  assert_false(a.hard);
  assert_int_equal(a.goal, 210 * MIB);
  assert_true(fabs(a.work_per_byte - 60.0 / 30.0) < 1e-12);
  /* Past the expected work: the goal stretches with the worst case, 1.9x here. */
  a = pacer_assist(&p, 200 * MIB, 110 * MIB, 190 * MIB);
  assert_false(a.hard);
  assert_int_equal(a.goal, 180 * MIB + 30 * MIB * 19 / 10);
  /* ... at most to the next cycle's goal, 2x. */
  a = pacer_assist(&p, 200 * MIB, 110 * MIB, 1000 * MIB);
  assert_int_equal(a.goal, 420 * MIB);
  /* Past the goal: the hard goal, 1.1x, against the worst-case work. */
  a = pacer_assist(&p, 220 * MIB, 50 * MIB, 190 * MIB);
  assert_true(a.hard);
  assert_int_equal(a.goal, 231 * MIB);
  assert_true(fabs(a.work_per_byte - 140.0 / 11.0) < 1e-9);
  /* Past the hard goal: the ratio is finite (1 byte of room), never negative. */
  a = pacer_assist(&p, 400 * MIB, 50 * MIB, 190 * MIB);
  assert_true(isfinite(a.work_per_byte) && a.work_per_byte == 140.0 * MIB);
  /* The work done past the worst case: at least 1000 bytes left to pace. */
  a = pacer_assist(&p, 200 * MIB, 99 * MIB + MIB - 10, 100 * MIB);
  assert_true(a.work_per_byte == 1000.0 / (10 * MIB));
  /* A mark that began at the goal (late start): Go's 64 KiB of runway. */
  pacer_mark_start(&p, 210 * MIB);
  a = pacer_assist(&p, 210 * MIB, 0, 210 * MIB);
  assert_int_equal(a.goal, 210 * MIB + 64 * 1024);
  assert_false(a.hard);
}

static void test_mark_workers(void **state) {
  /* Go's plan: whole workers when rounding is within 30% of 25%, else fractional. */
  struct {
    unsigned procs, dedicated;
    double fractional;
  } want[] = {{1, 0, 0.25}, {2, 0, 0.25}, {3, 0, 0.25}, {4, 1, 0}, {5, 1, 0}, {6, 1, 0.5 / 6}, {8, 2, 0}, {16, 4, 0}};
  for (unsigned i = 0; i < sizeof want / sizeof want[0]; i++) {
    unsigned d;
    double f;
    pacer_mark_workers(want[i].procs, &d, &f);
    assert_int_equal(d, want[i].dedicated);
    assert_true(fabs(f - want[i].fractional) < 1e-12);
  }
}

/* ---------------------------------------------------------------------------------------------
 * Simulated cycles.
 * ------------------------------------------------------------------------------------------- */

/* Steady state: allocation at 1/16 of the scan rate. After the first mark (the whole live heap
 * past a 4 MiB goal) and the second (no cons/mark yet: a 4 MiB runway, assists), each mark ends
 * within 5% under the goal, never past it, with assists under 1% of the marking CPU. */
static void test_sim_steady(void **state) {
  sim_t s;
  cyc_t c[20];
  sim_init(&s, "steady", P, S, S / 16, L, R, 100, 0);
  sim_run(&s, c, 20);
  /* The first mark starts with the live heap past a 4 MiB goal: the goal is where it began plus
   * 64 KiB, stretched to 2x that once the work passes the (unknown) expectation. */
  expect(c[0].end <= 2 * (c[0].start + 64 * 1024), "first mark: end %.0f from %.0f", c[0].end, c[0].start);
  for (unsigned i = 3; i < 20; i++) {
    expect(c[i].goal == L + (L + R), "goal %lu", c[i].goal);
    expect(ends_near(&c[i], 0.95), "cycle %u: end/goal %.4f", c[i].n, end_goal(&c[i]));
    expect(share(&c[i]) < 0.01, "cycle %u: assists %.3f of the mark", c[i].n, share(&c[i]));
    expect(fabs(c[i].cpu / (c[i].wall * P) - 0.25) < 0.01, "cycle %u: utilization", c[i].n);
  }
  summary("steady (alloc = scan/16)", &c[3], 17);
  /* The same with the allocation rate drawn within +-30% each cycle: the estimate (the largest of
   * the last five samples) errs early, so marks end under the goal, never past it; a cycle much
   * faster than the estimate is caught by assists. */
  sim_init(&s, "noisy", P, S, S / 16, L, R, 100, 0);
  s.noise = 0.3;
  sim_run(&s, c, 20);
  double assist = 0, cpu = 0;
  for (unsigned i = 3; i < 20; i++) {
    expect(ends_near(&c[i], 0.85), "noisy cycle %u: end/goal %.4f", c[i].n,
           end_goal(&c[i]));
    assist += c[i].assist;
    cpu += c[i].cpu;
  }
  expect(assist / cpu < 0.05, "noisy: assists %.3f of all marking", assist / cpu);
  summary("steady, alloc +-30% per cycle", &c[3], 17);
  /* Two CPUs (this machine's), half a worker: the same figures. */
  sim_init(&s, "2cpu", 2, S, S / 16, L, R, 100, 0);
  sim_run(&s, c, 12);
  for (unsigned i = 3; i < 12; i++)
    expect(ends_near(&c[i], 0.95) && share(&c[i]) < 0.01, "2 CPUs, cycle %u", c[i].n);
  summary("steady, 2 CPUs", &c[3], 9);
}

/* A 10x step in the allocation rate, up (1/128 -> 10/128 of the scan rate) and back down. Up:
 * the mark in flight is held at the goal by assists, and within three cycles the heap ends
 * within 10% of the goal with assists back under 10%. Down: the estimate keeps the high sample
 * for four more cycles (marks start early, ending ~10% under the goal), then recovers. */
static void test_sim_step(void **state) {
  sim_t s;
  cyc_t c[30];
  sim_init(&s, "step", P, S, S / 128, L, R, 100, 0);
  sim_run(&s, c, 10);
  summary("step: before (alloc = scan/128)", &c[4], 6);
  s.alloc *= 10;
  sim_run(&s, c + 10, 10);
  for (unsigned i = 10; i < 13; i++)
    expect(ends_near(&c[i], 0.9), "step up, cycle %u: end/goal %.4f", c[i].n,
           end_goal(&c[i]));
  expect(share(&c[12]) < 0.10, "step up: assists %.3f three cycles on", share(&c[12]));
  for (unsigned i = 13; i < 20; i++)
    expect(ends_near(&c[i], 0.95) && share(&c[i]) < 0.01, "after the step, cycle %u",
           c[i].n);
  summary("step up x10: the three cycles after", &c[10], 3);
  summary("step up x10: settled", &c[13], 7);
  s.alloc /= 10;
  sim_run(&s, c + 20, 10);
  for (unsigned i = 20; i < 30; i++)
    expect(ends_near(&c[i], 0.85), "step down, cycle %u: end/goal %.4f", c[i].n,
           end_goal(&c[i]));
  for (unsigned i = 25; i < 30; i++)
    expect(end_goal(&c[i]) >= 0.95, "step down, cycle %u: not recovered (%.4f)", c[i].n, end_goal(&c[i]));
  summary("step down /10: the five cycles after", &c[20], 5);
  summary("step down /10: settled", &c[25], 5);
}

/* The live heap grows 10x, 16 -> 160 MiB, by 26% a cycle. Each mark finds more work than the
 * last: assists stretch the goal (at most to 2x, GOGC=100's next goal), so the heap ends past
 * the goal but below 1.6x it, and the next goal is exactly the new live heap's; once the growth
 * stops, marks end within 5% of the goal again. */
static void test_sim_growth(void **state) {
  sim_t s;
  cyc_t c[24];
  sim_init(&s, "growth", P, S, S / 16, 16 * MIB, R, 100, 0);
  sim_run(&s, c, 4);
  double live = 16.0 * MIB;
  for (unsigned i = 4; i < 14; i++) {
    uint64_t before = s.live;
    live *= 1.2589254117941673;   /* 10^0.1 */
    s.live = (uint64_t)live;
    sim_run(&s, c + i, 1);
    expect(c[i].goal == before + before + R, "cycle %u: goal %lu for live %lu", c[i].n, c[i].goal, before);
    expect(c[i].end <= 1.6 * c[i].goal, "cycle %u: end/goal %.3f", c[i].n, end_goal(&c[i]));
    expect(c[i].end >= (double)s.live, "cycle %u: heap below live", c[i].n);
    expect(share(&c[i]) < 0.10, "cycle %u: assists %.3f", c[i].n, share(&c[i]));
  }
  expect(s.pacer.goal == 2 * s.live + R, "goal after the growth");
  sim_run(&s, c + 14, 10);
  for (unsigned i = 16; i < 24; i++)
    expect(ends_near(&c[i], 0.95), "after growth, cycle %u: end/goal %.4f", c[i].n,
           end_goal(&c[i]));
  summary("growth 16 -> 160 MiB (+26%/cycle)", &c[4], 10);
  summary("growth: after", &c[16], 8);
}

/* GOGC 100 -> 50 -> 200 -> off, at 1/32 of the scan rate: each new goal is Go 1.18's formula
 * at once, marks end within 5% of it within three cycles, and off runs no cycle in 100 s. */
static void test_sim_gc_percent(void **state) {
  sim_t s;
  cyc_t c[8];
  sim_init(&s, "gogc", P, S, S / 32, L, R, 100, 0);
  int64_t pcts[] = {100, 50, 200};
  for (int k = 0; k < 3; k++) {
    pacer_set_gc_percent(&s.pacer, pcts[k]);
    sim_run(&s, c, 8);
    uint64_t goal = L + (L + R) * (uint64_t)pcts[k] / 100;
    for (unsigned i = k == 0; i < 8; i++)   /* the very first mark: the minimum heap */
      expect(c[i].goal == goal, "GOGC=%ld: goal %lu, want %lu", pcts[k], c[i].goal, goal);
    for (unsigned i = 2; i < 8; i++)
      expect(ends_near(&c[i], 0.95) && share(&c[i]) < 0.01, "GOGC=%ld, cycle %u: %.4f",
             pcts[k], c[i].n, end_goal(&c[i]));
    char what[64];
    snprintf(what, sizeof what, "GOGC=%ld", pcts[k]);
    summary(what, &c[2], 6);
  }
  pacer_set_gc_percent(&s.pacer, -1);
  unsigned before = s.cycles;
  expect(!sim_cycle(&s, &c[0], s.now + 100 * SEC), "GOGC=off ran a cycle");
  expect(s.cycles == before, "GOGC=off");
  printf("%-46s no cycle in 100 s (heap %.0f MiB)\n", "GOGC=off", s.heap / MIB);
  /* Off with a memory limit: the limit alone paces. */
  pacer_set_memory_limit(&s.pacer, 2 * s.live);
  s.heap = (double)s.live;
  sim_run(&s, c, 6);
  for (unsigned i = 2; i < 6; i++)
    expect(c[i].goal == s.pacer.goal_limit && ends_by(&c[i], (double)c[i].goal), "GOGC=off with a limit, cycle %u",
           c[i].n);
  summary("GOGC=off, limit 2x live", &c[2], 4);
}

/* A memory limit at 1.1x the live heap: the goal is the limit's (under it), the heap never ends
 * past it, marks come >5x as often as without it, and every figure is finite. A limit below the
 * live heap: the goal and the trigger are the live heap, marks run back to back, and the heap
 * is held under the hard goal (the limit cannot be met; the CPU limiter is what bounds the cost). */
static void test_sim_memory_limit(void **state) {
  sim_t s;
  cyc_t c[20], free_run[8];
  sim_init(&s, "free", P, S, S / 16, L, R, 100, 0);
  sim_run(&s, free_run, 8);
  uint64_t limit = L + L / 10;
  sim_init(&s, "limit", P, S, S / 16, L, R, 100, limit);
  pacer_set_non_heap(&s.pacer, R);
  sim_run(&s, c, 20);
  for (unsigned i = 2; i < 20; i++) {
    expect(c[i].goal == s.pacer.goal_limit && c[i].goal <= limit - R, "cycle %u: goal %lu", c[i].n, c[i].goal);
    expect(ends_by(&c[i], (double)c[i].goal), "cycle %u: end/goal %.4f", c[i].n, end_goal(&c[i]));
    expect(c[i].period * 5 < free_run[7].period, "cycle %u: period %.1f ms vs %.1f ms", c[i].n, c[i].period / 1e6,
           free_run[7].period / 1e6);
  }
  summary("limit 1.1x live", &c[2], 18);
  printf("%-46s period %.1f ms (no limit: %.1f ms), goal %.1f MiB of limit %.1f MiB\n", "", c[19].period / 1e6,
         free_run[7].period / 1e6, (double)c[19].goal / MIB, (double)limit / MIB);

  sim_init(&s, "under", P, S, S / 16, L, R, 100, L - L / 10);
  sim_run(&s, c, 20);
  for (unsigned i = 1; i < 20; i++) {
    expect(c[i].goal == L && c[i].trigger == L && c[i].start == (double)L, "under the limit, cycle %u", c[i].n);
    expect(c[i].hard && ends_by(&c[i], 1.1 * (double)c[i].goal), "under the limit: end/goal %.4f", end_goal(&c[i]));
  }
  summary("limit 0.9x live", &c[1], 19);
  printf("%-46s goal = trigger = live: marks back to back, %.0f%% of the CPU marking\n", "",
         100 * c[19].cpu / (c[19].period * P));
}

/* A death spiral attempted: allocation 4x faster than marking per CPU, with assists that pay
 * only half of what they owe. The trigger stays at its lowest bound (0.7 of the way), the heap
 * outruns the plan, the assist ratio climbs through each mark, passes to the hard goal, and
 * holds the heap under 1.1x the goal; the collector takes ~80% of the CPU, and the CPU limiter,
 * fed the simulated CPU times, turns on within 2 s. With the mark's start delayed until the heap
 * is past the goal, the goal is where the mark began plus 64 KiB (Go's minimum runway) and the
 * heap stays under 1.1x that. No trigger below the live heap or past the goal, no absurd figure. */
static void test_sim_death_spiral(void **state) {
  sim_t s;
  cyc_t c[80];
  nh_limiter_t lim;
  sim_init(&s, "spiral", P, S, 4 * S, L, R, 100, 0);
  s.assist_pays = 0.5;
  pacer_limiter_init(&lim, 0, P, 0);
  double on_at = -1, gc = 0;
  for (unsigned i = 0; i < 80; i++) {
    sim_run(&s, &c[i], 1);
    gc += c[i].cpu;
    if (pacer_limiter_update(&lim, (uint64_t)s.now, (uint64_t)c[i].cpu, 0) && on_at < 0)
      on_at = s.now;
  }
  for (unsigned i = 2; i < 80; i++) {
    uint64_t lo = c[i].marked + (c[i].goal - c[i].marked) / 64 * 45;
    expect(c[i].trigger == lo, "cycle %u: trigger %lu, lowest %lu", c[i].n, c[i].trigger, lo);
    expect(c[i].hard && ends_by(&c[i], 1.1 * (double)c[i].goal), "cycle %u: end/goal %.4f", c[i].n,
           end_goal(&c[i]));
    expect(c[i].ratio_max > 10 * c[i].ratio_first, "cycle %u: ratio %.2f..%.2f", c[i].n, c[i].ratio_first,
           c[i].ratio_max);
  }
  expect(on_at > 0 && on_at < 2 * SEC, "the CPU limiter is off (%.2f s)", on_at / SEC);
  summary("death spiral (alloc 4x scan, assists pay half)", &c[2], 78);
  printf("%-46s assist ratio %.2f -> %.2f within a mark, cons/mark %.2f; collector %.0f%% of the CPU, "
         "limiter on at %.2f s\n", "", c[79].ratio_first, c[79].ratio_max, s.pacer.cons_mark,
         100 * gc / (s.now * P), on_at / SEC);
  /* The mark starts 3 ms late: 47 MiB more, the heap 5% past the goal when it begins. */
  sim_init(&s, "late", P, S, 4 * S, L, R, 100, 0);
  s.assist_pays = 0.5;
  sim_run(&s, c, 3);
  s.start_delay = 3e6;
  sim_run(&s, c + 3, 9);
  for (unsigned i = 3; i < 12; i++) {
    expect(c[i].start > (double)c[i].goal && c[i].hard, "late cycle %u: start/goal %.3f", c[i].n,
           c[i].start / c[i].goal);
    expect(ends_by(&c[i], 1.1 * (c[i].start + 65536)), "late cycle %u: end/start %.4f", c[i].n,
           c[i].end / c[i].start);
  }
  summary("death spiral, start 3 ms late", &c[3], 9);
  printf("%-46s start/goal %.3f, end/start %.4f\n", "", c[11].start / c[11].goal, c[11].end / c[11].start);
}

/* ---------------------------------------------------------------------------------------------
 * The CPU limiter, with explicit times (ns) on 4 CPUs: capacity 4 CPU-seconds.
 * ------------------------------------------------------------------------------------------- */

static void test_limiter(void **state) {
  const uint64_t ms = 1000000, s = 1000 * ms;
  nh_limiter_t l;
  pacer_limiter_init(&l, 10 * s, 4, 0);
  assert_int_equal(l.capacity, 4 * s);
  /* Collection on every CPU: full after 1 s, not before; then the excess overflows. */
  assert_false(pacer_limiter_update(&l, 10 * s + 500 * ms, 4 * 500 * ms, 0));
  assert_int_equal(l.fill, 2 * s);
  assert_false(pacer_limiter_update(&l, 10 * s + 999 * ms, 4 * 499 * ms, 0));
  assert_true(pacer_limiter_update(&l, 11 * s, 4 * ms, 0));
  assert_int_equal(l.fill, 4 * s);
  assert_true(pacer_limiter_update(&l, 11 * s + 500 * ms, 4 * 500 * ms, 0));
  assert_int_equal(l.overflow, 2 * s);
  /* Any program time drains it: off again. */
  assert_false(pacer_limiter_update(&l, 11 * s + 510 * ms, 0, 0));
  assert_int_equal(l.fill, 4 * s - 40 * ms);
  /* A reading older than the last is ignored. */
  assert_false(pacer_limiter_update(&l, 11 * s, 4 * s, 0));
  assert_int_equal(l.fill, 4 * s - 40 * ms);
  /* The bucket never goes below empty: an hour of program buys no credit. */
  pacer_limiter_update(&l, 3611 * s, 0, 0);
  assert_int_equal(l.fill, 0);
  /* Collection at exactly half the CPU, for a minute in 10 ms steps: never on. */
  uint64_t t = 3611 * s;
  for (int i = 0; i < 6000; i++) {
    t += 10 * ms;
    assert_false(pacer_limiter_update(&l, t, 2 * 10 * ms, 0));
  }
  assert_int_equal(l.fill, 0);
  /* At 60%: the bucket fills by 0.2 * 4 CPU-s a second, full after 5 s. */
  for (int i = 1; i <= 500; i++) {
    t += 10 * ms;
    bool on = pacer_limiter_update(&l, t, 24 * ms, 0);
    assert_true(on == (i == 500));
  }
  /* A 50 ms pause stops all 4 CPUs: 200 CPU-ms of collection. */
  pacer_limiter_init(&l, 0, 4, 0);
  pacer_limiter_update(&l, 50 * ms, 200 * ms, 0);
  assert_int_equal(l.fill, 200 * ms);
  /* Idle time counts for neither: 25% collection with the rest idle fills the bucket at 25%
   * (Go's rule: an idle program under a busy collector is what the limiter is for). */
  pacer_limiter_init(&l, 0, 4, 0);
  pacer_limiter_update(&l, 1 * s, 1 * s, 3 * s);
  assert_int_equal(l.fill, 1 * s);
  /* Inputs past the window (overlapping pauses): they fill faster, never wrap. */
  pacer_limiter_update(&l, 1 * s + 10 * ms, 100 * ms, 0);
  assert_int_equal(l.fill, 1 * s + 160 * ms);
  /* Fewer CPUs: the capacity shrinks and a fuller bucket is clamped (limiting). */
  pacer_limiter_set_procs(&l, 1);
  assert_int_equal(l.capacity, 1 * s);
  assert_int_equal(l.fill, 1 * s);
  assert_true(l.limiting);
  /* A smaller bucket (100 ms a CPU) turns on sooner. */
  pacer_limiter_init(&l, 0, 2, 100 * ms);
  assert_false(pacer_limiter_update(&l, 99 * ms, 2 * 99 * ms, 0));
  assert_true(pacer_limiter_update(&l, 100 * ms, 2 * ms, 0));
  /* The gate for all-collection work (stop-the-world cycles): room for the last one's cost.
   * Stop-the-world cycles of 40 ms on 2 CPUs (80 CPU-ms each), run whenever the gate opens,
   * with the program running between checks in 1 ms steps: the collector's share settles at
   * about half (`limiting` alone would open again after any program time at all). */
  pacer_limiter_init(&l, 0, 2, 0);
  assert_true(pacer_limiter_allows(&l, 80 * ms));
  assert_false(pacer_limiter_allows(&l, 3 * s));   /* more than the whole bucket: never */
  uint64_t now = 0, gc = 0;
  while (now < 20 * s) {
    if (pacer_limiter_allows(&l, 80 * ms)) {
      now += 40 * ms;
      gc += 40 * ms;
      pacer_limiter_update(&l, now, 80 * ms, 0);
    } else {
      now += 1 * ms;
      pacer_limiter_update(&l, now, 0, 0);
    }
  }
  double share = (double)gc / (double)now;
  assert_true(share > 0.45 && share < 0.55);
}

/* The simulation twice over: the same figures to the bit. */
static void test_sim_deterministic(void **state) {
  sim_t a, b;
  cyc_t ca[15], cb[15];
  sim_init(&a, "det", P, S, S / 16, L, R, 100, 0);
  sim_init(&b, "det", P, S, S / 16, L, R, 100, 0);
  a.noise = b.noise = 0.3;
  bool was = tracing;
  tracing = false;
  sim_run(&a, ca, 15);
  sim_run(&b, cb, 15);
  tracing = was;
  for (int i = 0; i < 15; i++) {
    assert_true(ca[i].start == cb[i].start && ca[i].end == cb[i].end && ca[i].wall == cb[i].wall);
    assert_true(ca[i].cpu == cb[i].cpu && ca[i].assist == cb[i].assist && ca[i].ratio_max == cb[i].ratio_max);
    assert_int_equal(ca[i].goal, cb[i].goal);
    assert_int_equal(ca[i].trigger, cb[i].trigger);
  }
  assert_memory_equal(&a.pacer, &b.pacer, sizeof a.pacer);
}

int main(void) {
  const char *t = getenv("NH_PACER_TRACE");
  tracing = t && *t && *t != '0';
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_init_and_goal),
    cmocka_unit_test(test_memory_limit_goal),
    cmocka_unit_test(test_trigger_bounds),
    cmocka_unit_test(test_cons_mark_smoothing),
    cmocka_unit_test(test_assist_ratio),
    cmocka_unit_test(test_mark_workers),
    cmocka_unit_test(test_sim_steady),
    cmocka_unit_test(test_sim_step),
    cmocka_unit_test(test_sim_growth),
    cmocka_unit_test(test_sim_gc_percent),
    cmocka_unit_test(test_sim_memory_limit),
    cmocka_unit_test(test_sim_death_spiral),
    cmocka_unit_test(test_limiter),
    cmocka_unit_test(test_sim_deterministic),
  };
  return cmocka_run_group_tests_name("pacer", tests, NULL, NULL);
}
