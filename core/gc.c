/*
 * gc.c — the collector's life cycle (start, shutdown, fork) and its public calls.
 *
 * The collector is Go's, in parts that carry Go's names: the cycle and the collector thread
 * (cycle.c, Go's mgc.go), marking and roots (mark.c, roots.c, checkmark.c; mgcmark.go), the
 * write barrier (barrier.c; mwbbuf.go), the mark workers (workers.c), the background sweeper
 * (sweeper.c; mgcsweep.go), the pacer, memory limit and CPU limiter (pacer.c, pacer.h;
 * mgcpacer.go, mgclimit.go), what the cycle reports as subscribers to its phase events
 * (gcevents.c: pauses and times, the CPU limiter, perf records, gctrace), finalizers and weak references (special.c; mfinal.go), the threads and
 * stopping the world (thread.c), and concurrent-nobarrier's written-page tracking (dirty.c).
 * Here: which mode runs (gc = concurrent needs nh_store's restartable sequence,
 * concurrent-nobarrier the kernel's write-protect tracking; each falls back to stw, said
 * once), starting and stopping the threads, the child of a fork, and the public calls.
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

static uint64_t now_ns(void) { return os_linux.now_ns(); }

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

NH_API void *nh_do_blocking(void *(*fn)(void *arg), void *arg) {
  if (!fn) {
    nh_error(-EINVAL, "nh_do_blocking: no function");
    return NULL;
  }
  if (!__atomic_load_n(&nh_rt.ready, __ATOMIC_ACQUIRE) || !nh_rt.gc.on || !thread_attached(&nh_rt.gc.threads))
    return fn(arg);   /* no stop ever waits for this thread */
  nh_thread_t *t = nh_self;
  if (t->nogc > 0 || t->blocking) {
    nh_error(-EINVAL, "nh_do_blocking: called %s; fn runs with the thread not counted stopped",
             t->blocking ? "inside nh_do_blocking" : "from inside nheap (a finalizer or error handler in a "
             "no-stop region)");
    return fn(arg);
  }
  return thread_do_blocking(fn, arg);
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

/* The mark workers, then the collector thread where the workers' plan puts it. */
static int start_collector_threads(nh_gc_t *g, const nh_config_t *cfg) {
  cpu_set_t cpus;
  bool pin;
  int rc = workers_start(g, cfg, &cpus, &pin);
  if (rc == 0 && (rc = collector_start(g, &cpus, pin)) != 0)
    workers_stop(g);
  return rc;
}

static void stop_collector_threads(nh_gc_t *g) {
  collector_stop(g);
  workers_stop(g);
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
  g->start_ns = now_ns();
  g->pace.on = g->on;
  pacer_init(&g->pacer, cfg->gc_percent, (uint64_t)cfg->memory_limit);
  pacer_set_non_heap(&g->pacer, nh_stat_get(&nh_rt.mem.stats.metadata));
  pace_publish(&g->pace, &g->pacer, true);
  pacer_limiter_init(&g->limiter, g->start_ns, nh_rt.topo.ncpus > 0 ? (unsigned)nh_rt.topo.ncpus : 1, 0);
  nh_mutex_init(&g->lock, LOCK_RANK_GC);
  nh_mutex_init(&g->roots.lock, LOCK_RANK_ROOTS);
  specials_init(&g->specials);
  for (int n = 0; n < nh_rt.topo.nnodes; n++)
    for (unsigned ac = 0; ac < NH_NUM_ALLOC_CLASSES; ac++)
      nh_rt.nodes[n].central[ac].pace = &g->pace;
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
  if ((rc = sweeper_start(g)) != 0) {
    threads_destroy(&g->threads);
    nh_error(rc, "nh_init: cannot start the background sweeper (%s)", nh_strerror(rc));
    return rc;
  }
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
  sweeper_stop(g);
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

NH_API nh_gc_event_fn nh_set_gc_event_hook(nh_gc_event_fn fn) {
  return __atomic_exchange_n(&nh_event_hook, fn, __ATOMIC_ACQ_REL);
}
