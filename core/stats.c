/*
 * stats.c — reading the statistics: nh_stats_read, nh_stat, the per-arena, per-node and
 * per-class tables, and the snapshot nh_stats_write formats (statswrite.c).
 *
 * A read must be cheap and must not disturb the heap: a server scrapes its metrics under load,
 * at any rate, from any thread. So nothing here takes a lock that the allocator or the
 * collector holds through its work; heap_init_lock (init.c) only keeps nh_shutdown from
 * tearing the heap down under the reader. Every figure is a relaxed atomic load of a counter
 * that its writer keeps current:
 *   pages        per node, from the page heap's seqlock (pageheap_counts): total, live, free
 *                and released from one moment, so in use + free + released = mapped in every
 *                snapshot, exactly, under any load;
 *   pauses       from the pause histograms (timehist.h) the collector's event subscribers fill
 *                (gcevents.c); percentiles are computed here by the reader, in two passes over
 *                106 buckets, whatever the number of cycles (no sort, no collector lock);
 *   the rest     counters that move on their own (cycles, times, spans, the pacer's published
 *                goal and trigger): each exact, read at about the same moment.
 * A read costs well under a microsecond (bench/stats_read.c, in the report); nh_stat
 * reads one counter in about 15 ns.
 *
 * The tables walk the arenas under arenas.lock (nh_stats_arenas, nh_stats_nodes) and are for
 * diagnostics, not for hot paths.
 */
#include <errno.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/error.h"
#include "core/stats.h"
#include "perf/events.h"

/* The init lock, for a reader that does not hold it already (held: nh_shutdown's perf report,
 * which writes the statistics of a heap it has not torn down yet). False, with the lock not
 * kept, when the heap is not there to read. */
static bool stats_enter(bool held) {
  if (held)
    return true;
  nh_mutex_lock(&heap_init_lock);
  if (nh_rt.ready)
    return true;
  nh_mutex_unlock(&heap_init_lock);
  return false;
}

static void stats_leave(bool held) {
  if (!held)
    nh_mutex_unlock(&heap_init_lock);
}

static void fill_stats(nh_stats_t *s, nh_pageheap_counts *nodes) {
  const nh_mem_stats *m = &nh_rt.mem.stats;
  const nh_arena_set_t *a = &nh_rt.arenas;
  memset(s, 0, sizeof *s);
  s->size = sizeof *s;
  s->heap_reserved_bytes = nh_stat_get(&m->reserved);
  for (int n = 0; n < nh_rt.topo.nnodes; n++) {
    const nh_node_t *node = &nh_rt.nodes[n];
    nh_pageheap_counts c = pageheap_counts(&node->ph);
    if (nodes)
      nodes[n] = c;
    s->heap_mapped_bytes += c.total * NH_PAGE_SIZE;
    s->heap_inuse_bytes += c.live * NH_PAGE_SIZE;
    s->heap_free_bytes += c.free * NH_PAGE_SIZE;
    s->heap_released_bytes += c.released * NH_PAGE_SIZE;
    for (unsigned ac = 0; ac < NH_NUM_ALLOC_CLASSES; ac++)
      s->small_spans += nh_stat_get(&node->central[ac].nspans);
    s->tiny_spans += nh_stat_get(&node->central[NH_AC_TINY].nspans);
  }
  s->metadata_bytes = nh_stat_get(&m->metadata);
  s->arenas = __atomic_load_n(&a->count, __ATOMIC_RELAXED);
  s->arenas_hugetlb = nh_stat_get(&a->by_backing[NH_BACKING_HUGETLB]);
  s->arenas_thp = nh_stat_get(&a->by_backing[NH_BACKING_THP]);
  s->arenas_small = nh_stat_get(&a->by_backing[NH_BACKING_SMALL]);
  s->hugetlb_fallbacks = nh_stat_get(&a->hugetlb_fallbacks);
  s->thp_fallbacks = nh_stat_get(&a->thp_fallbacks);
  s->numa_nodes = (uint64_t)nh_rt.topo.nnodes;
  uint64_t swept_spans, swept_large;
  heap_sweep_counts(&swept_spans, &swept_large);
  s->large_objects = nh_stat_get(&nh_rt.large_allocs) - nh_stat_get(&nh_rt.large_frees) - swept_large;
  s->bad_frees = nh_stat_get(&nh_rt.bad_frees);
  s->double_frees = nh_stat_get(&nh_rt.double_frees);
  s->tiny_frees = nh_stat_get(&nh_rt.tiny_frees);
  s->frees_deferred = nh_stat_get(&nh_rt.frees_deferred);
  s->gc_worker_ns = nh_stat_get(&nh_rt.gc.worker_ns);
  s->gc_assist_ns = nh_stat_get(&nh_rt.gc.assist_ns);
  s->percpu_mode = nh_rt.caches.rseq ? NH_PERCPU_RSEQ : NH_PERCPU_LOCK;
  s->scavenged_bytes = nh_stat_get(&nh_rt.scavenger.released_bytes);
  s->scavenger_uring = __atomic_load_n(&nh_rt.scavenger.have_ring, __ATOMIC_RELAXED);
  s->scavenger_uring_releases = nh_stat_get(&m->release_ring);
  s->scavenger_madvise_releases = nh_stat_get(&m->release_madvise);
  for (int n = 0; n < nh_rt.topo.nnodes; n++)
    s->scavenger_prefaulted_bytes += nh_stat_get(&nh_rt.nodes[n].ph.prefaulted_pages) * NH_PAGE_SIZE;
  nh_gc_t *g = &nh_rt.gc;
  s->gc_mode = (uint64_t)(g->on ? g->mode : NH_GC_OFF);
  s->gc_cycles = nh_stat_get(&g->cycles);
  s->gc_forced = nh_stat_get(&g->forced);
  s->gc_limited = nh_stat_get(&g->limited);
  s->pause_total_ns = nh_stat_get(&g->pause_total_ns);
  s->gc_pauses = __atomic_load_n(&g->npauses, __ATOMIC_ACQUIRE);
  perf_stats(s);
  s->pause_max_ns = nh_stat_get(&g->pause_max_ns);
  s->gc_mark_ns = nh_stat_get(&g->mark_ns);
  s->gc_sweep_ns = nh_stat_get(&g->sweep_ns);
  uint64_t live = pace_live(&g->pace);
  s->heap_live_bytes = (int64_t)live < 0 ? 0 : live;
  s->heap_marked_bytes = __atomic_load_n(&g->pacer.heap_marked, __ATOMIC_RELAXED);
  uint64_t goal = pace_goal(&g->pace), trigger = __atomic_load_n(&g->pace.trigger, __ATOMIC_RELAXED);
  s->heap_goal_bytes = goal == NH_PACER_NO_GOAL ? 0 : goal;
  s->heap_trigger_bytes = trigger == NH_PACER_NO_GOAL ? 0 : trigger;
  s->gc_percent = __atomic_load_n(&g->pacer.gc_percent, __ATOMIC_RELAXED);
  s->memory_limit = __atomic_load_n(&g->pacer.memory_limit, __ATOMIC_RELAXED);
  s->limit_refusals = nh_stat_get(&nh_rt.limit_refusals);
  s->roots_bytes = g->roots.bytes;
  s->threads_attached = g->threads.count;
  s->swept_pages = nh_stat_get(&g->swept_pages);
  s->swept_spans = swept_spans;
  s->gc_scan_local_bytes = nh_stat_get(&g->scan_local);
  s->gc_scan_remote_bytes = nh_stat_get(&g->scan_remote);
  s->gc_mark_steals = nh_stat_get(&g->steals);
  s->gc_mark_overflows = nh_stat_get(&g->mark_overflows);
  s->gc_dirty_bytes = nh_stat_get(&g->dirty_bytes);
  s->gc_dirty_last_bytes = __atomic_load_n(&g->dirty_last, __ATOMIC_RELAXED);
  for (int n = 0; n < nh_rt.topo.nnodes; n++)
    s->remote_frees += nh_stat_get(&nh_rt.nodes[n].remote_frees);
  s->finalizers_run = nh_stat_get(&g->specials.run);
  s->pause_p50_ns = timehist_percentile(&g->pause_hist[NH_PAUSES_ALL], 50, s->pause_max_ns);
  s->pause_p99_ns = timehist_percentile(&g->pause_hist[NH_PAUSES_ALL], 99, s->pause_max_ns);
}

NH_API int nh_stats_read(nh_stats_t *out) {
  if (!out || out->size < sizeof(size_t) + sizeof(uint64_t)) {
    nh_error(-EINVAL, "nh_stats_read: out is NULL or out->size is not set to sizeof(nh_stats_t)");
    return -EINVAL;
  }
  nh_stats_t s;
  nh_mutex_lock(&heap_init_lock);
  bool ready = nh_rt.ready;
  if (ready) {
    perf_attribute(perf_self_opened(), NH_PHASE_PROGRAM);   /* the caller's counts so far */
    fill_stats(&s, NULL);
  }
  nh_mutex_unlock(&heap_init_lock);
  if (!ready)
    return -ENODEV;
  size_t n = out->size < sizeof s ? out->size : sizeof s;
  memcpy((char *)out + sizeof out->size, (char *)&s + sizeof s.size, n - sizeof s.size);
  return 0;
}

NH_API long nh_stats_arenas(nh_arena_stat_t *out, size_t n) { return stats_arenas_from(out, n, 0, false); }

/* Where pages[0..n) lie (move_pages, query mode), counted into r. */
static void ask_where(void **pages, size_t n, nh_node_stat_t *r) {
  int where[512];
  if (n == 0 || n > 512 || syscall(SYS_move_pages, 0, n, pages, NULL, where, 0) != 0)
    return;
  for (size_t i = 0; i < n; i++) {
    r->sampled_pages++;
    r->pages_on_node += where[i] == r->node;
    r->pages_elsewhere += where[i] >= 0 && where[i] != r->node;
    r->pages_absent += where[i] < 0;
  }
}

/* One node's record: count its arenas' in-use pages, then ask where every stride-th lies. */
static void node_placement(int node, nh_node_stat_t *r, size_t sample) {
  void *pages[512];
  size_t inuse = 0, n = 0, seen = 0;
  memset(r, 0, sizeof *r);
  r->node = node;
  r->remote_frees = nh_stat_get(&nh_rt.nodes[node].remote_frees);
  for (nh_arena_t *a = nh_rt.arenas.first; a; a = a->next)
    for (size_t pg = 0; a->node == node && pg < NH_PAGES_PER_ARENA; pg++)
      inuse += __atomic_load_n(&a->spans[pg], __ATOMIC_ACQUIRE) != NULL;
  r->inuse_bytes = (uint64_t)inuse * NH_PAGE_SIZE;
  size_t stride = sample && inuse > sample ? (inuse + sample - 1) / sample : 1;
  for (nh_arena_t *a = nh_rt.arenas.first; a && sample; a = a->next)
    for (size_t pg = 0; a->node == node && pg < NH_PAGES_PER_ARENA && seen / stride < sample; pg++) {
      if (!__atomic_load_n(&a->spans[pg], __ATOMIC_ACQUIRE) || seen++ % stride)
        continue;
      pages[n++] = (void *)(a->base + pg * NH_PAGE_SIZE);
      if (n == sizeof pages / sizeof pages[0]) {
        ask_where(pages, n, r);
        n = 0;
      }
    }
  ask_where(pages, n, r);
}

NH_API long nh_stats_nodes(nh_node_stat_t *out, size_t n, size_t sample) {
  nh_mutex_lock(&heap_init_lock);
  long count = -ENODEV;
  if (nh_rt.ready) {
    region_enter();
    nh_mutex_lock(&nh_rt.arenas.lock);
    count = nh_rt.topo.nnodes;
    for (int node = 0; node < nh_rt.topo.nnodes && (size_t)node < n; node++)
      node_placement(node, &out[node], sample);
    nh_mutex_unlock(&nh_rt.arenas.lock);
    region_exit();
  }
  nh_mutex_unlock(&heap_init_lock);
  return count;
}

static void fill_classes(nh_class_stat_t *out, size_t n) {
  for (unsigned c = 1; c < NH_NUM_SIZE_CLASSES && c - 1 < n; c++) {
    nh_class_stat_t *cs = &out[c - 1];
    cs->size = nh_class_to_size[c];
    cs->span_bytes = nh_class_to_npages[c] * NH_PAGE_SIZE;
    cs->objects_per_span = cs->span_bytes / cs->size;
    cs->spans = 0;
    for (int node = 0; node < nh_rt.topo.nnodes; node++)
      for (unsigned k = 0; k < NH_NUM_KINDS; k++)
        cs->spans += nh_stat_get(&nh_rt.nodes[node].central[allocclass_make(c, (nh_obj_kind)k)].nspans);
    if (c == NH_TINY_SIZECLASS)
      for (int node = 0; node < nh_rt.topo.nnodes; node++)
        cs->spans += nh_stat_get(&nh_rt.nodes[node].central[NH_AC_TINY].nspans);
  }
}

NH_API long nh_stats_classes(nh_class_stat_t *out, size_t n) {
  if (!stats_enter(false))
    return -ENODEV;
  fill_classes(out, n);
  stats_leave(false);
  return NH_NUM_SIZE_CLASSES - 1;
}

/* One counter of the snapshot, without the rest. */
static uint64_t stat_one(nh_stat_id id) {
  nh_gc_t *g = &nh_rt.gc;
  uint64_t v = 0;
  switch (id) {
  case NH_STAT_HEAP_MAPPED:
  case NH_STAT_HEAP_INUSE:
  case NH_STAT_HEAP_BACKED:
    for (int n = 0; n < nh_rt.topo.nnodes; n++) {
      nh_pageheap_counts c = pageheap_counts(&nh_rt.nodes[n].ph);
      v += (id == NH_STAT_HEAP_MAPPED ? c.total : id == NH_STAT_HEAP_INUSE ? c.live : c.total - c.released) *
           NH_PAGE_SIZE;
    }
    return v;
  case NH_STAT_HEAP_LIVE:
    return (int64_t)(v = pace_live(&g->pace)) < 0 ? 0 : v;
  case NH_STAT_HEAP_GOAL:
    return (v = pace_goal(&g->pace)) == NH_PACER_NO_GOAL ? 0 : v;
  case NH_STAT_GC_CYCLES:
    return nh_stat_get(&g->cycles);
  case NH_STAT_GC_PAUSES:
    return __atomic_load_n(&g->npauses, __ATOMIC_ACQUIRE);
  case NH_STAT_PAUSE_TOTAL_NS:
    return nh_stat_get(&g->pause_total_ns);
  case NH_STAT_METADATA:
    return nh_stat_get(&nh_rt.mem.stats.metadata);
  default:
    return 0;
  }
}

NH_API uint64_t nh_stat(nh_stat_id id) {
  if ((unsigned)id >= NH_STAT_IDS) {
    nh_error(-EINVAL, "nh_stat: no statistic %d", (int)id);
    return 0;
  }
  nh_mutex_lock(&heap_init_lock);
  uint64_t v = nh_rt.ready ? stat_one(id) : 0;
  nh_mutex_unlock(&heap_init_lock);
  return v;
}

int stats_snapshot(nh_stats_snapshot_t *out, bool held) {
  memset(out, 0, sizeof *out);
  if (!stats_enter(held))
    return -ENODEV;
  fill_classes(out->classes, NH_ARRAY_LEN(out->classes));
  perf_attribute(perf_self_opened(), NH_PHASE_PROGRAM);
  fill_stats(&out->s, out->node);
  nh_gc_t *g = &nh_rt.gc;
  out->nnodes = nh_rt.topo.nnodes;
  for (int n = 0; n < out->nnodes; n++) {
    out->node_remote_frees[n] = nh_stat_get(&nh_rt.nodes[n].remote_frees);
    out->scavenging_bytes += nh_stat_get(&nh_rt.nodes[n].ph.scavenging_pages) * NH_PAGE_SIZE;
  }
  for (unsigned k = 0; k < NH_PAUSE_HISTS; k++)
    out->pause_counts[k] = timehist_read(&g->pause_hist[k], &out->pauses[k]);
  for (unsigned p = 0; p < NH_ARRAY_LEN(out->phase_cpu_ns); p++)
    out->phase_cpu_ns[p] = nh_stat_get(&g->phase_cpu_ns[p]);
  out->ncpus = (uint64_t)(nh_rt.topo.ncpus > 0 ? nh_rt.topo.ncpus : 1);
  out->mark_workers = g->on && g->mode != NH_GC_STW ? g->nworkers : 0;
  /* The policy's own fields, written under the collector's lock: each load is whole, the set
   * may straddle a cycle's end (as every figure not under the seqlock). */
  __atomic_load(&g->pacer.cons_mark, &out->cons_mark, __ATOMIC_RELAXED);
  out->limiting = __atomic_load_n(&g->limiter.limiting, __ATOMIC_RELAXED);
  out->limiter_fill_ns = __atomic_load_n(&g->limiter.fill, __ATOMIC_RELAXED);
  out->limiter_capacity_ns = __atomic_load_n(&g->limiter.capacity, __ATOMIC_RELAXED);
  out->limiter_overflow_ns = __atomic_load_n(&g->limiter.overflow, __ATOMIC_RELAXED);
  stats_leave(held);
  return 0;
}

long stats_arenas_from(nh_arena_stat_t *out, size_t n, size_t start, bool held) {
  if (!stats_enter(held))
    return -ENODEV;
  region_enter();
  nh_mutex_lock(&nh_rt.arenas.lock);
  long count = 0;
  for (nh_arena_t *a = nh_rt.arenas.first; a; a = a->next, count++)
    if ((size_t)count >= start && (size_t)count - start < n)
      out[count - start] = (nh_arena_stat_t){a->base, NH_ARENA_BYTES, a->node, a->backing, a->wanted};
  nh_mutex_unlock(&nh_rt.arenas.lock);
  region_exit();
  stats_leave(held);
  return count;
}
