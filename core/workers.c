/*
 * workers.c — the markers of a concurrent mark (Go's gcBgMarkWorker and its dedicated and
 * fractional modes): the mark worker threads, the collector thread's share of the marking, and
 * the start and stop of the collector's threads.
 *
 * 25% of the CPUs mark during a concurrent mark (Go's gcBackgroundUtilization), or
 * mark_workers; on several NUMA nodes a set per node, pinned to the node's CPUs
 * (numa/placement.c plans them, mark_cpus restricts them), each taking its node's grey objects
 * first (mark.c). The collector thread (cycle.c) is the first marker of the first node that
 * has any; the others are worker threads, which wait on the shared grey work's condition
 * variable and drain while a mark is on (phase_mark), and on several nodes also sweep their
 * node after each cycle. A marker counts itself busy while it drains: mark termination waits
 * for no busy marker and no shared block (mark_until_idle).
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
#include "numa/placement.h"

static uint64_t now_ns(void) { return os_linux.now_ns(); }

/* A marker starts (+1) or stops (-1) draining: termination waits for none to be busy. */
void marker_busy(nh_markwork_t *w, int delta) {
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

void fractional_open(nh_fractional_t *f, uint32_t permille) {
  f->permille = permille;
  f->schedstat = permille ? open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC) : -1;
}

void fractional_close(nh_fractional_t *f) {
  if (f->schedstat >= 0)
    close(f->schedstat);
  f->schedstat = -1;
}

uint64_t fractional_cpu(const nh_fractional_t *f, uint64_t *idle) {
  *idle = f ? f->idle : 0;
  return f ? thread_cpu_ns() - f->cpu0 : 0;
}

/* Joins a new mark; the last window's verdict on idleness carries over. */
void fractional_join(nh_fractional_t *f) {
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

/* Joins the markers if shared work waits, counted busy under the lock that saw it: otherwise
 * mark_until_idle could find no block and no busy marker in between, call the mark done, and
 * then meet this marker draining (a late worker, seen by mark termination's validation). */
static bool marker_join(nh_markwork_t *w) {
  nh_mutex_lock(&w->lock);
  bool work = w->nfull > 0;
  w->busy += work;
  nh_mutex_unlock(&w->lock);
  return work;
}

/* Drains shared grey work as one of the markers (counted busy, except while a fractional
 * marker rests, its grey blocks given back; `counted`: the caller counted it already); returns
 * when none is left anywhere. Its counts go to the shared ones before it stops being busy:
 * termination reads them once none is. */
static void drain_shared(nh_gc_t *g, nh_marker_t *m, nh_fractional_t *f, bool counted) {
  if (!counted)
    marker_busy(&g->work, 1);
  m->shared = &g->work;
  if (!f || !f->permille) {
    while (mark_drain_shared(m, FRACTION_CHUNK))
      mark_report(m);   /* the pacer's assists read the work done as it goes */
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
      if (!__atomic_load_n(&g->phase_mark, __ATOMIC_RELAXED) || !marker_join(&g->work))
        return;
    }
  }
  mark_report(m);
  marker_busy(&g->work, -1);
}

/* Until no marker is draining and no shared block waits; helps while blocks wait. With the
 * world stopped the collector's share never rests: a rest would lengthen the pause. */
void mark_until_idle(nh_gc_t *g, bool stopped) {
  nh_markwork_t *w = &g->work;
  for (;;) {
    drain_shared(g, &g->marker, stopped ? NULL : g->collector_share, false);
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
      uint64_t t1 = now_ns();
      gc_emit(g, &(nh_gc_event){.phase = NH_GC_PHASE_SWEEP, .end = t1, .cpu_ns = t1 - t0});
      perf_attribute(counted, NH_PHASE_SWEEP);
      nh_mutex_lock(&w->lock);
      continue;
    }
    uint64_t mark = g->marks_started;
    w->busy++;   /* while it still sees the work (marker_join) */
    nh_mutex_unlock(&w->lock);
    if (mark != mark_seen)
      fractional_join(&self->share);
    mark_seen = mark;
    nh_perf_thread_t *counted = perf_self();
    perf_skip(counted);
    uint64_t t0 = now_ns();
    drain_shared(g, &m, &self->share, true);
    nh_stat_add(&g->worker_ns, (int64_t)(now_ns() - t0));
    perf_attribute(counted, NH_PHASE_MARK);
    nh_mutex_lock(&w->lock);
  }
  nh_mutex_unlock(&w->lock);
  fractional_close(&self->share);
  perf_thread_exit(perf_self_opened(), NH_PHASE_MARK);
  return NULL;
}

void set_phase_mark(nh_gc_t *g, bool on) {
  nh_mutex_lock(&g->work.lock);
  g->phase_mark = on;
  g->marks_started += on;
  pthread_cond_broadcast(&g->work.cv);
  nh_mutex_unlock(&g->work.lock);
}

void workers_stop(nh_gc_t *g) {
  nh_mutex_lock(&g->work.lock);
  g->workers_stop = true;
  pthread_cond_broadcast(&g->work.cv);
  nh_mutex_unlock(&g->work.lock);
  for (unsigned i = 0; i < g->nworkers; i++)
    pthread_join(g->workers[i].thread, NULL);
  g->nworkers = 0;
  for (int n = 0; n < NH_MAX_NODES; n++)   /* the sweeper thread may be reading them */
    __atomic_store_n(&g->node_swept_by_worker[n], false, __ATOMIC_RELAXED);
}

/* One thread of the collector's, pinned to cpus when pin. */
int gc_thread_spawn(pthread_t *th, void *(*fn)(void *), void *arg, const cpu_set_t *cpus, bool pin, const char *name) {
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
 * the fractional one when the node has no dedicated one); the others are mark workers, which
 * this starts. *cpus and *pin: where the collector thread is to run (cycle.c starts it). */
int workers_start(nh_gc_t *g, const nh_config_t *cfg, cpu_set_t *cpus, bool *pin) {
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
      if ((rc = gc_thread_spawn(&w->thread, worker_main, w, &p->cpus[n], p->pin, name)) == 0) {
        if (w->sweeps)   /* read by the sweeper thread */
          __atomic_store_n(&g->node_swept_by_worker[n], true, __ATOMIC_RELAXED);
        g->nworkers++;
      }
    }
  }
  *cpus = p->cpus[first];
  *pin = p->pin;
  if (rc != 0)
    workers_stop(g);
  return rc;
}
