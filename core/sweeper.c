/*
 * sweeper.c — sweeping after a cycle (Go's mgcsweep.go): the background sweeper thread and the
 * whole-heap sweep.
 *
 * Mark termination turns every span into an unswept one without touching it (sweepgen += 2,
 * mcentral_flip); sweeping a span is then an mcentral operation (mcentral_sweep_span: free its
 * unmarked objects, run their finalizer bookkeeping, return an empty span's pages), done
 * lazily by whoever needs the span first (mcentral_cache_span sweeps before it grows the
 * class; an explicit free sweeps the span it touches) and in the background here: after each
 * cycle the sweeper thread sweeps every node, except that on several NUMA nodes a node with a
 * mark worker of its own is swept by that worker (workers.c), on the node's CPUs, so its
 * spans and their memory stay local. The stop-the-world paths sweep what is left before they
 * stop (sweep_all), and sweep termination inside the pause waits out a sweep in flight (a
 * sweeper holds its mcentral's lock while it sweeps).
 */
#include <string.h>

#include "core/heap.h"

static uint64_t now_ns(void) { return os_linux.now_ns(); }

size_t sweep_node(int n) {
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
void sweep_request(nh_gc_t *g) {
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
      if (!__atomic_load_n(&g->node_swept_by_worker[n], __ATOMIC_RELAXED))
        sweep_node(n);
    uint64_t t1 = now_ns();
    gc_emit(g, &(nh_gc_event){.phase = NH_GC_PHASE_SWEEP, .end = t1, .cpu_ns = t1 - t0});
    perf_attribute(counted, NH_PHASE_SWEEP);
    pthread_mutex_lock(&g->sweeper_mu);
  }
  pthread_mutex_unlock(&g->sweeper_mu);
  perf_thread_exit(perf_self_opened(), NH_PHASE_SWEEP);
  return NULL;
}

int sweeper_start(nh_gc_t *g) {
  pthread_mutex_init(&g->sweeper_mu, NULL);
  pthread_cond_init(&g->sweeper_cv, NULL);
  int rc = pthread_create(&g->sweeper, NULL, sweeper_main, g);
  g->sweeper_running = rc == 0;
  return -rc;
}

void sweeper_stop(nh_gc_t *g) {
  if (!g->sweeper_running)
    return;
  nh_signal_flag(&g->sweeper_mu, &g->sweeper_cv, &g->sweeper_stop);
  pthread_join(g->sweeper, NULL);
  g->sweeper_running = false;
}
