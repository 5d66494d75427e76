/*
 * pacer.c — when the next cycle starts: the heap goal and trigger, the memory limit and the
 * CPU limiter (Go's mgcpacer.go and mgclimit.go). The cycle (cycle.c) calls gc_set_goal after each
 * mark; the allocator asks gc_over_limit and gc_limit_reached.
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

#include "core/error.h"
#include "core/heap.h"

#define MIB ((uint64_t)1 << 20)

__thread bool nh_limit_refused __attribute__((tls_model("initial-exec")));

static uint64_t heap_inuse_bytes(void) {
  int64_t pages = 0;
  for (int n = 0; n < nh_rt.topo.nnodes; n++)
    pages += pageheap_live_pages(&nh_rt.nodes[n].ph);
  return pages > 0 ? (uint64_t)pages * NH_PAGE_SIZE : 0;
}

void gc_set_goal(nh_gc_t *g) {
  uint64_t marked = g->heap_marked, goal = UINT64_MAX;
  int64_t pct = __atomic_load_n(&g->gc_percent, __ATOMIC_RELAXED);
  if (pct >= 0) {   /* pct <= NH_GC_PERCENT_MAX: the product saturates, never wraps */
    unsigned __int128 g128 = marked + (unsigned __int128)(marked + g->roots.bytes) * (uint64_t)pct / 100;
    goal = g128 > UINT64_MAX ? UINT64_MAX : (uint64_t)g128;
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
  /* A concurrent mark needs runway: the heap grows while it marks. Go 1.18's pacer in one
   * line: the next mark will see about as much allocation as the last one did (measured:
   * the heap's growth between mark setup and termination), so the trigger is the goal less
   * that, plus a tenth for safety, kept between 40% and 95% of the way from marked to the
   * goal; 70% before anything was measured. */
  uint64_t trigger = goal;
  if (g->mode != NH_GC_STW && goal != UINT64_MAX && goal > marked) {
    uint64_t span = goal - marked, lo = marked + span / 100 * 40, hi = marked + span / 100 * 95;
    uint64_t runway = g->mark_growth + g->mark_growth / 10;
    trigger = !g->mark_growth ? marked + span / 10 * 7 : goal > lo + runway ? goal - runway : lo;
    trigger = trigger < lo ? lo : trigger > hi ? hi : trigger;
  }
  __atomic_store_n(&g->heap_goal, goal, __ATOMIC_RELAXED);
  __atomic_store_n(&g->trigger, trigger, __ATOMIC_RELAXED);
  __atomic_store_n(&g->wanted, __atomic_load_n(&g->heap_live, __ATOMIC_RELAXED) >= trigger && goal != UINT64_MAX,
                   __ATOMIC_RELAXED);
}

__thread bool nh_limit_pass __attribute__((tls_model("initial-exec")));

bool gc_over_limit(nh_gc_t *g, size_t bytes) {
  uint64_t limit = __atomic_load_n(&g->memory_limit, __ATOMIC_RELAXED);
  return limit && !nh_limit_pass && heap_inuse_bytes() + bytes > limit;
}

/* The CPU limiter: whether paced cycles have had their share of this window. */
bool gc_limiter_allows(nh_gc_t *g, uint64_t now) {
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
  bool allow = gc_limiter_allows(g, os_linux.now_ns());
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
  if (percent > NH_GC_PERCENT_MAX) {
    nh_error(-EINVAL, "nh_set_gc_percent(%d): at most %d (as the gc_percent option); unchanged", percent,
             NH_GC_PERCENT_MAX);
    return (int)__atomic_load_n(&g->gc_percent, __ATOMIC_RELAXED);
  }
  int old = (int)__atomic_exchange_n(&g->gc_percent, percent < 0 ? -1 : percent, __ATOMIC_RELAXED);
  if (__atomic_load_n(&nh_rt.ready, __ATOMIC_ACQUIRE))
    gc_set_goal(g);
  return old;
}

NH_API int64_t nh_set_memory_limit(int64_t bytes) {
  nh_gc_t *g = &nh_rt.gc;
  if (bytes < 0)
    return (int64_t)__atomic_load_n(&g->memory_limit, __ATOMIC_RELAXED);
  int64_t old = (int64_t)__atomic_exchange_n(&g->memory_limit, (uint64_t)bytes, __ATOMIC_RELAXED);
  if (__atomic_load_n(&nh_rt.ready, __ATOMIC_ACQUIRE))
    gc_set_goal(g);
  return old;
}
