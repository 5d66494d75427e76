/*
 * gc.c — the collection cycle, the pacer, the background sweeper and the public GC calls.
 *
 * A cycle (gc = stw; the concurrent modes run this cycle until concurrent marking lands):
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
 *                     explicit free sweeps the span it touches) and in the background.
 * The pause is the whole stop-to-start interval and is recorded (total, max, percentiles).
 *
 * Pacer (Go 1.18's goal, without the concurrent runway: marking is instant to the mutator):
 *   goal = marked + (marked + roots) * gc_percent / 100, at least 4 MiB * gc_percent / 100;
 *   with a memory limit, goal <= limit - metadata - max(3%, 1 MiB), and never below marked
 *   (then every growth triggers a cycle; the limiter below caps the cost). heap_live counts
 *   bytes handed to per-CPU caches (a span's free objects when it is cached, minus those
 *   left when it returns) and large objects, minus explicit frees, and restarts at marked
 *   after each cycle. Reaching the goal sets `wanted`; the allocating thread runs the cycle
 *   when it leaves the allocator (gc_maybe_collect), holding no lock.
 * Memory limit: a span that would take the heap's pages past the limit is refused; the
 *   allocator then runs a full cycle and retries once, and returns NULL (ENOMEM, reported)
 *   if the heap still does not fit. Nothing allocated is ever given up for the limit.
 * CPU limiter (Go's gcCPULimiter, simplified): over any window of at least 100 ms, cycles
 *   stop once collection took more than half of the wall time. Paced cycles are put off (the
 *   heap passes its goal); at the memory limit the allocation passes the limit instead of
 *   collecting, as Go's soft limit does, while what the last cycle found live fits under it
 *   and by at most an eighth of the limit; otherwise it collects anyway.
 *   So a live heap close to the limit costs about half the CPU, not a death spiral; a live
 *   heap over the limit gets NULL after a full collection.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "core/heap.h"

static uint64_t now_ns(void) { return os_linux.now_ns(); }

#define MIB ((uint64_t)1 << 20)

__thread bool nh_limit_refused __attribute__((tls_model("initial-exec")));

/* ---------------------------------------------------------------------------------------------
 * Pacer.
 * ------------------------------------------------------------------------------------------- */

static uint64_t heap_inuse_bytes(void) {
  int64_t pages = 0;
  for (int n = 0; n < nh_rt.topo.nnodes; n++)
    pages += pageheap_live_pages(&nh_rt.nodes[n].ph);
  return pages > 0 ? (uint64_t)pages * NH_PAGE_SIZE : 0;
}

static void set_goal(nh_gc_t *g) {
  uint64_t marked = g->heap_marked, goal = UINT64_MAX;
  int64_t pct = __atomic_load_n(&g->gc_percent, __ATOMIC_RELAXED);
  if (pct >= 0) {
    goal = marked + (marked + g->roots.bytes) * (uint64_t)pct / 100;
    uint64_t min = 4 * MIB * (uint64_t)pct / 100;
    if (goal < min)
      goal = min;
  }
  uint64_t limit = __atomic_load_n(&g->memory_limit, __ATOMIC_RELAXED);
  if (limit) {
    uint64_t meta = nh_stat_get(&nh_rt.mem.stats.metadata);
    uint64_t lim = limit > meta ? limit - meta : 0;
    uint64_t slack = lim / 33 > MIB ? lim / 33 : MIB;
    lim = lim > slack ? lim - slack : 0;
    if (lim < goal)
      goal = lim > marked ? lim : marked;
  }
  __atomic_store_n(&g->heap_goal, goal, __ATOMIC_RELAXED);
  __atomic_store_n(&g->trigger, goal, __ATOMIC_RELAXED);
  __atomic_store_n(&g->wanted, __atomic_load_n(&g->heap_live, __ATOMIC_RELAXED) >= goal && goal != UINT64_MAX,
                   __ATOMIC_RELAXED);
}

__thread bool nh_limit_pass __attribute__((tls_model("initial-exec")));

bool gc_over_limit(nh_gc_t *g, size_t bytes) {
  uint64_t limit = __atomic_load_n(&g->memory_limit, __ATOMIC_RELAXED);
  return limit && !nh_limit_pass && heap_inuse_bytes() + bytes > limit;
}

/* The CPU limiter: whether paced cycles have had their share of this window. */
static bool limiter_allows(nh_gc_t *g, uint64_t now) {
  if (now - g->limiter_start > 1000000000ull) {   /* a fresh 1 s window */
    g->limiter_start = now;
    g->limiter_gc_ns = 0;
  }
  uint64_t elapsed = now - g->limiter_start;
  return elapsed < 100000000ull || g->limiter_gc_ns * 2 <= elapsed;
}

bool gc_limit_reached(size_t bytes) {
  nh_gc_t *g = &nh_rt.gc;
  if (!g->on)
    return false;   /* no collector: the limit is simply hard */
  nh_mutex_lock(&g->lock);
  bool allow = limiter_allows(g, now_ns());
  nh_mutex_unlock(&g->lock);
  if (allow) {
    nh_stat_add(&g->forced, 1);
    gc_collect("memory limit", true);
    return true;
  }
  /* Collections already took half the CPU: let the heap pass the limit for now, as Go's soft
   * limit does under its CPU limiter, while what the last cycle found live fits under it and
   * by at most an eighth of the limit. Otherwise memory wins over CPU: collect anyway (the
   * caller fails if even that does not make room). */
  uint64_t limit = __atomic_load_n(&g->memory_limit, __ATOMIC_RELAXED);
  if (g->heap_marked + bytes > limit || heap_inuse_bytes() + bytes > limit + limit / 8) {
    nh_stat_add(&g->forced, 1);
    gc_collect("memory limit", true);
    return true;
  }
  nh_stat_add(&g->limited, 1);
  nh_limit_pass = true;
  return true;
}

NH_API int nh_set_gc_percent(int percent) {
  nh_gc_t *g = &nh_rt.gc;
  int old = (int)__atomic_exchange_n(&g->gc_percent, percent < 0 ? -1 : percent, __ATOMIC_RELAXED);
  if (__atomic_load_n(&nh_rt.ready, __ATOMIC_ACQUIRE))
    set_goal(g);
  return old;
}

NH_API int64_t nh_set_memory_limit(int64_t bytes) {
  nh_gc_t *g = &nh_rt.gc;
  if (bytes < 0)
    return (int64_t)__atomic_load_n(&g->memory_limit, __ATOMIC_RELAXED);
  int64_t old = (int64_t)__atomic_exchange_n(&g->memory_limit, (uint64_t)bytes, __ATOMIC_RELAXED);
  if (__atomic_load_n(&nh_rt.ready, __ATOMIC_ACQUIRE))
    set_goal(g);
  return old;
}

/* ---------------------------------------------------------------------------------------------
 * Sweeping.
 * ------------------------------------------------------------------------------------------- */

size_t sweep_all(void) {
  size_t pages = 0;
  for (int n = 0; n < nh_rt.topo.nnodes; n++)
    for (unsigned ac = 0; ac < NH_NUM_ALLOC_CLASSES; ac++)
      pages += mcentral_sweep(&nh_rt.nodes[n].central[ac]);
  nh_stat_add(&nh_rt.gc.swept_pages, pages);
  return pages;
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
    uint64_t t0 = now_ns();
    sweep_all();
    nh_stat_add(&g->sweep_ns, now_ns() - t0);
    pthread_mutex_lock(&g->sweeper_mu);
  }
  pthread_mutex_unlock(&g->sweeper_mu);
  return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * The cycle.
 * ------------------------------------------------------------------------------------------- */

static void record_pause(nh_gc_t *g, uint64_t ns) {
  g->pauses[g->npauses++ % NH_PAUSE_RING] = ns;
  nh_stat_add(&g->pause_total_ns, ns);
  if (ns > g->pause_max_ns)
    __atomic_store_n(&g->pause_max_ns, ns, __ATOMIC_RELAXED);
}

static void trace(nh_gc_t *g, const char *why, uint64_t start, uint64_t pause, uint64_t mark, uint64_t before) {
  uint64_t swept = nh_stat_get(&g->sweep_ns), sweep = swept - g->traced_sweep_ns;
  g->traced_sweep_ns = swept;
  char buf[384];
  uint64_t cycle = nh_stat_get(&g->cycles);
  double secs = (double)(start - g->start_ns) / 1e9;
  int n = snprintf(buf, sizeof buf,
                   "gc %llu @%.3fs %s: %.3f ms stw (mark %.3f ms), %.3f ms background sweep since the "
                   "last cycle, %.2f->%.2f MiB heap, %.2f MiB goal, %.2f MiB roots, %llu objects "
                   "marked, %zu threads, 1 marker\n",
                   (unsigned long long)cycle, secs, why, (double)pause / 1e6, (double)mark / 1e6,
                   (double)sweep / 1e6,
                   (double)before / MIB, (double)g->heap_marked / MIB,
                   g->heap_goal == UINT64_MAX ? 0.0 : (double)g->heap_goal / MIB, (double)g->roots.bytes / MIB,
                   (unsigned long long)g->marker.marked_objects, g->threads.count);
  if (n > 0)
    (void)!write(STDERR_FILENO, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

/* One cycle; the caller holds g->lock and no allocator lock. */
static void collect_locked(nh_gc_t *g, const char *why) {
  uint64_t start = now_ns();
  uint64_t before = __atomic_load_n(&g->heap_live, __ATOMIC_RELAXED);
  sweep_all();
  roots_collect_data(&g->roots);

  uint64_t stopped = now_ns();   /* the pause starts with the stop request */
  world_stop(&g->threads);
  sweep_all();                          /* sweep termination */
  mcache_flush_all(&nh_rt.caches);
  uint64_t mark0 = now_ns();
  mark_all(&g->marker, &g->roots, &g->threads, &g->specials);
  if (nh_rt.cfg.dbg.checkmark)
    mark_check(&g->marker, &g->roots, &g->threads);
  size_t finalizers = specials_after_mark(&g->marker, &g->specials);
  uint64_t mark = now_ns() - mark0;
  g->heap_marked = g->marker.marked_bytes;   /* mark termination */
  __atomic_store_n(&g->heap_live, g->heap_marked, __ATOMIC_RELAXED);
  g->sweepgen += 2;
  for (int n = 0; n < nh_rt.topo.nnodes; n++)
    for (unsigned ac = 0; ac < NH_NUM_ALLOC_CLASSES; ac++)
      mcentral_flip(&nh_rt.nodes[n].central[ac], g->sweepgen);
  set_goal(g);
  nh_stat_add(&g->cycles, 1);
  world_start(&g->threads);
  uint64_t end = now_ns();
  specials_wake(&g->specials, finalizers);

  record_pause(g, end - stopped);
  nh_stat_add(&g->mark_ns, mark);
  g->limiter_gc_ns += end - start;
  if (g->sweeper_running)
    nh_signal_flag(&g->sweeper_mu, &g->sweeper_cv, &g->sweep_needed);
  if (nh_rt.cfg.dbg.gctrace)
    trace(g, why, start, end - stopped, mark, before);
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
  nh_mutex_lock(&g->lock);
  ENTER_COLLECTOR(g);
  collect_locked(g, why);
  nh_mutex_unlock(&g->lock);
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
  thread_attach();
  gc_clear_dead_stack();
  collect(why, sweep);
}

void gc_maybe_collect(void *p) {
  void *volatile keep = p;   /* on this stack while the cycle runs */
  nh_gc_t *g = &nh_rt.gc;
  if (!g->on || (thread_attached(&g->threads) && nh_self->nogc))
    return;
  gc_clear_dead_stack();
  nh_mutex_lock(&g->lock);
  ENTER_COLLECTOR(g);
  uint64_t now = now_ns();
  if (__atomic_load_n(&g->wanted, __ATOMIC_RELAXED) &&
      __atomic_load_n(&g->heap_live, __ATOMIC_RELAXED) >= __atomic_load_n(&g->trigger, __ATOMIC_RELAXED)) {
    if (limiter_allows(g, now)) {
      collect_locked(g, "heap goal");
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

int gc_init(nh_gc_t *g, const nh_config_t *cfg) {
  memset(g, 0, sizeof *g);
  g->on = cfg->gc != NH_GC_OFF;
  g->mode = g->on ? NH_GC_STW : NH_GC_OFF;
  g->gc_percent = cfg->gc_percent;
  g->memory_limit = (uint64_t)cfg->memory_limit;
  g->start_ns = g->limiter_start = now_ns();
  nh_mutex_init(&g->lock, LOCK_RANK_GC);
  nh_mutex_init(&g->roots.lock, LOCK_RANK_ROOTS);
  specials_init(&g->specials);
  for (int n = 0; n < nh_rt.topo.nnodes; n++)
    for (unsigned ac = 0; ac < NH_NUM_ALLOC_CLASSES; ac++)
      nh_rt.nodes[n].central[ac].gc = g;
  set_goal(g);
  if (!g->on)
    return 0;
  int rc = threads_init(&g->threads);
  if (rc != 0) {
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
  return 0;
}

void gc_shutdown(nh_gc_t *g) {
  if (!g->on)
    return;
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
  pthread_mutex_init(&g->sweeper_mu, NULL);
  pthread_cond_init(&g->sweeper_cv, NULL);
}

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
