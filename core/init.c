/*
 * init.c — the process-wide heap: nh_init, nh_shutdown and statistics.
 *
 * There is one heap per process, `nh_rt` (heap.h), whose lifetime is guarded by init_lock
 * (LOCK_RANK_INIT): nh_init builds it, nh_shutdown tears it down, and the statistics calls
 * read it under the same lock so they never see it half-built. The allocator checks
 * nh_rt.ready (release/acquire) and refuses to run before nh_init or after nh_shutdown. Every structure inside (mem,
 * arenas, topology, options) can also be built standalone, without this global, which is how
 * the unit tests drive them with fake OS hooks.
 *
 * nh_init, in order; any failure undoes the steps before it and returns the code:
 *   1. load the options (defaults -> file -> NHEAP_* -> nh_options);
 *   2. check perf.events names with libpfm4;
 *   3. read the NUMA topology (numa = auto | off | fake:N);
 *   4. print the effective options when verbose;
 *   5. set up the OS layer and the arena set; build a page heap and the mcentrals per node
 *      and an mcache per CPU (all in metadata memory); map the first arena on the calling
 *      CPU's node, so that a machine that cannot give nheap memory fails here, with a message,
 *      and the huge-page decision is visible in the stats from the start;
 *   6. the collector (gc.c): thread stopping, the pacer, the background sweeper.
 */
#include <errno.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/heap.h"
#include "core/vg.h"
#include "core/error.h"
#include "core/lock.h"
#include "core/mem.h"
#include "core/options.h"
#include "numa/topology.h"
#include "perf/events.h"

extern char **environ;

static nh_mutex_t init_lock = NH_MUTEX_INITIALIZER(LOCK_RANK_INIT);
nh_heap_t nh_rt;  /* built and torn down under init_lock; its config is immutable while ready */
bool nh_valgrind;
const nh_os_hooks *nh_os_override;

static int current_node(const nh_topology_t *t) {
  int cpu = sched_getcpu();
  return cpu >= 0 && cpu < t->ncpus ? t->cpu_node[cpu] : 0;
}


/* The types region (heap.h), unmapped with the heap. */
/* A secret word from the kernel's generator (each call an independent one); a clock mix only
 * where getrandom fails. */
static uint64_t random_word(void) {
  uint64_t w;
  if (getrandom(&w, sizeof w, 0) != sizeof w)
    w = (os_linux.now_ns() ^ (uint64_t)(uintptr_t)&w) * 0x9e3779b97f4a7c15u;
  return w;
}

static void release_types(void) {
  if (nh_rt.types)
    mem_unmap_guarded(&os_linux, nh_rt.types_guarded, nh_rt.types, NH_TYPES_BYTES);
  nh_rt.types = NULL;
  nh_rt.types_used = 0;
}

/* Step 5: per-node page heaps and mcentrals, per-CPU mcaches, and the first arena. */
static int build_allocator(void) {
  nh_topology_t *t = &nh_rt.topo;
  nh_rt.nodes = mem_meta_alloc(&nh_rt.mem, (size_t)t->nnodes * sizeof *nh_rt.nodes, 64);
  nh_rt.caches.cpu = mem_meta_alloc(&nh_rt.mem, (size_t)(t->ncpus + t->nnodes) * sizeof *nh_rt.caches.cpu, 64);
  nh_rt.caches.ncpus = (uint32_t)t->ncpus;
  nh_rt.caches.nnodes = (uint32_t)t->nnodes;
  nh_valgrind = RUNNING_ON_VALGRIND;
  nh_rt.rseq = nh_rt.cfg.dbg.rseq && percpu_rseq_available() && !nh_valgrind;
  nh_rt.caches.rseq = nh_rt.rseq;
  nh_rt.tiny_on = nh_rt.cfg.gc != NH_GC_OFF && !nh_valgrind;   /* vg.h: one block per object */
  nh_rt.free_local = !nh_rt.cfg.secure && !nh_valgrind;         /* nh_free's fast path (malloc.c) */
  nh_rt.free_plain = t->nnodes == 1 && nh_rt.free_local;
  if (!nh_rt.nodes || !nh_rt.caches.cpu)
    goto oom;
  for (int n = 0; n < t->nnodes; n++) {
    nh_node_t *node = &nh_rt.nodes[n];
    pageheap_init(&node->ph, n, &nh_rt.arenas, &nh_rt.mem);
    for (unsigned ac = 0; ac < NH_NUM_ALLOC_CLASSES; ac++) {
      mcentral_init(&node->central[ac], ac, &node->ph);
      node->central[ac].secure = nh_rt.cfg.secure;
      if (ac >= NH_NUM_KINDS)
        mcentral_xfer_init(&node->central[ac], 2 * mcache_stack_cap(ac));
    }
  }
  nh_rt.type_key = random_word();
  for (int i = 0; i < t->ncpus + t->nnodes; i++) {   /* the CPUs' caches, then the nodes' */
    int n = i < t->ncpus ? t->cpu_node[i] : i - t->ncpus;
    uint64_t seed = nh_rt.cfg.secure ? random_word() | 1 : 0;   /* a secret of its own per cache */
    nh_rt.caches.cpu[i] = mcache_new(&nh_rt.mem, &nh_rt.arenas, i, n, nh_rt.nodes[n].central, seed);
    if (!nh_rt.caches.cpu[i])
      goto oom;
  }
  int rc = scavenger_start(&nh_rt.scavenger, &nh_rt, nh_rt.cfg.scavenger, nh_rt.cfg.dbg.uring);
  if (rc != 0) {
    nh_error(rc, "nh_init: cannot start the scavenger thread (%s)", nh_strerror(rc));
    return rc;
  }
  if (!pageheap_grow(&nh_rt.nodes[current_node(t)].ph, 1)) {
    nh_error(-ENOMEM, "nh_init: the OS refused the first 64 MiB arena (%s)", nh_strerror(-errno));
    scavenger_stop(&nh_rt.scavenger);
    return -ENOMEM;
  }
  return 0;
oom:
  nh_error(-ENOMEM, "nh_init: no memory for the allocator's metadata");
  return -ENOMEM;
}

/* ---------------------------------------------------------------------------------------------
 * fork: every allocator lock is held across it (taken in rank order, without the debug rank
 * bookkeeping, which is per thread), so the child's heap is consistent; the child then
 * re-creates the locks and carries on without the background scavenger, whose thread did not
 * survive the fork (nh_scavenge still works there). The rseq sequences need nothing: each
 * commits with one store, so memory is never caught half-way.
 * ------------------------------------------------------------------------------------------- */

/* Every allocator lock but init_lock, in rank order, for a heap that is ready (the order
 * matters for taking them; releasing and re-initialising may go the same way). */
/* Every heap lock, in lock-rank order, or (reverse) the other way round: fork_parent releases
 * the collector's lock last, so a cycle that starts the moment it is free finds no allocator
 * lock still held by this thread (which it could stop, while a thread in a no-stop region
 * waited for that lock: a deadlock). */
static void for_each_heap_lock(void (*fn)(pthread_mutex_t *), bool reverse) {
  pthread_mutex_t *gc[] = {&nh_rt.gc.lock.m, &nh_rt.gc.threads.lock.m, &nh_rt.gc.roots.lock.m,
                           &nh_rt.gc.specials.lock.m};
  size_t ngc = nh_rt.gc.on ? sizeof gc / sizeof *gc : 0;   /* no cycle, attach or root change */
  uint32_t ncaches = nh_rt.caches.ncpus + nh_rt.caches.nnodes;
  int nodes = nh_rt.topo.nnodes;
  if (!reverse) {
    for (size_t i = 0; i < ngc; i++)
      fn(gc[i]);
    for (uint32_t c = 0; c < ncaches; c++)
      fn(&nh_rt.caches.cpu[c]->lock.m);
    for (int node = 0; node < nodes; node++)
      for (unsigned ac = 0; ac < NH_NUM_ALLOC_CLASSES; ac++)
        fn(&nh_rt.nodes[node].central[ac].lock.m);
    fn(&nh_rt.scavenger.lock.m);
    for (int node = 0; node < nodes; node++)
      fn(&nh_rt.nodes[node].ph.lock.m);
    fn(&nh_rt.arenas.lock.m);
    fn(&nh_rt.mem.meta_lock.m);
    return;
  }
  fn(&nh_rt.mem.meta_lock.m);
  fn(&nh_rt.arenas.lock.m);
  for (int node = nodes - 1; node >= 0; node--)
    fn(&nh_rt.nodes[node].ph.lock.m);
  fn(&nh_rt.scavenger.lock.m);
  for (int node = nodes - 1; node >= 0; node--)
    for (unsigned ac = NH_NUM_ALLOC_CLASSES; ac-- > 0;)
      fn(&nh_rt.nodes[node].central[ac].lock.m);
  for (uint32_t c = ncaches; c-- > 0;)
    fn(&nh_rt.caches.cpu[c]->lock.m);
  for (size_t i = ngc; i-- > 0;)
    fn(gc[i]);
}

static void lock_raw(pthread_mutex_t *m) { pthread_mutex_lock(m); }
static void unlock_raw(pthread_mutex_t *m) { pthread_mutex_unlock(m); }
static void reinit_raw(pthread_mutex_t *m) { pthread_mutex_init(m, NULL); }

/* Whether the heap was ready when fork_prepare took init_lock: read under it, so nh_init and
 * nh_shutdown cannot change the answer before fork_parent / fork_child use it. */
static bool fork_heap_ready;

static void fork_prepare(void) {
  pthread_mutex_lock(&init_lock.m);
  fork_heap_ready = nh_rt.ready;
  if (fork_heap_ready)
    for_each_heap_lock(lock_raw, false);
}

static void fork_parent(void) {
  if (fork_heap_ready)
    for_each_heap_lock(unlock_raw, true);
  pthread_mutex_unlock(&init_lock.m);
}

static void fork_child(void) {
  if (fork_heap_ready) {
    for_each_heap_lock(reinit_raw, false);
    scavenger_forget_thread(&nh_rt.scavenger);
    gc_after_fork_child(&nh_rt.gc);
    perf_after_fork_child();
  }
  pthread_mutex_init(&init_lock.m, NULL);
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void register_atfork(void) { pthread_atfork(fork_prepare, fork_parent, fork_child); }

NH_API int nh_init(const nh_options *opts) {
  pthread_once(&atfork_once, register_atfork);
  nh_mutex_lock(&init_lock);
  int rc;
  if (nh_rt.ready) {
    nh_error(-EBUSY, "nh_init: nheap is already initialised (call nh_shutdown first)");
    rc = -EBUSY;
    goto out;
  }
  memset(&nh_rt, 0, sizeof nh_rt);
  char where[PATH_MAX + 32];
  if ((rc = options_load(&nh_rt.cfg, opts, environ)) != 0)
    goto out;
  options_source(&nh_rt.cfg, "perf.events", where, sizeof where);
  if ((rc = perf_events_check(nh_rt.cfg.perf_events, where)) != 0 ||
      (rc = topology_init(&nh_rt.topo, &nh_rt.cfg)) != 0)
    goto out;
  if (nh_rt.cfg.verbose)
    options_print(&nh_rt.cfg, STDERR_FILENO);

  mem_init(&nh_rt.mem, nh_os_override ? nh_os_override : &os_linux);
  nh_rt.mem.guard = nh_rt.cfg.secure;
  nh_rt.types = mem_map_guarded(nh_rt.mem.os, nh_rt.mem.guard, NH_TYPES_BYTES, MAP_NORESERVE);
  nh_rt.types_guarded = nh_rt.mem.guard;
  nh_rt.types_used = 0;
  if (nh_rt.types == MAP_FAILED) {
    nh_rt.types = NULL;
    rc = -ENOMEM;
    nh_error(rc, "nh_init: cannot map the types region");
    mem_destroy(&nh_rt.mem);
    goto out;
  }
  nh_arena_placement place = {
    .nnodes = nh_rt.topo.real_nodes,
    .bind = !nh_rt.topo.fake && nh_rt.topo.real_nodes > 1,
    .interleave = nh_rt.cfg.numa_policy == NH_NUMA_INTERLEAVE,
  };
  if ((rc = arena_set_init(&nh_rt.arenas, &nh_rt.mem, (nh_hugepages_mode)nh_rt.cfg.hugepages, place)) != 0) {
    nh_error(rc, "nh_init: cannot map the arena index (%s)", nh_strerror(rc));
    mem_destroy(&nh_rt.mem);
    release_types();
    goto out;
  }
  if ((rc = build_allocator()) != 0) {
    arena_set_destroy(&nh_rt.arenas);
    mem_destroy(&nh_rt.mem);
    release_types();
    goto out;
  }
  if ((rc = gc_init(&nh_rt.gc, &nh_rt.cfg)) != 0) {
    scavenger_stop(&nh_rt.scavenger);
    arena_set_destroy(&nh_rt.arenas);
    mem_destroy(&nh_rt.mem);
    release_types();
    goto out;
  }
  perf_setup(&nh_rt.cfg);
  __atomic_store_n(&nh_rt.ready, true, __ATOMIC_RELEASE);
  nh_mutex_unlock(&init_lock);
  return 0;
out:
  nh_mutex_unlock(&init_lock);
  return rc;
}

NH_API void nh_shutdown(void) {
  nh_mutex_lock(&init_lock);
  if (nh_rt.ready) {
    __atomic_store_n(&nh_rt.ready, false, __ATOMIC_RELEASE);
    gc_shutdown(&nh_rt.gc);
    scavenger_stop(&nh_rt.scavenger);
    perf_shutdown();
    arena_set_destroy(&nh_rt.arenas);
    mem_destroy(&nh_rt.mem);
    release_types();
  }
  nh_mutex_unlock(&init_lock);
}

/* ---------------------------------------------------------------------------------------------
 * Statistics.
 * ------------------------------------------------------------------------------------------- */

static void fill_stats(nh_stats_t *s) {
  const nh_mem_stats *m = &nh_rt.mem.stats;
  const nh_arena_set_t *a = &nh_rt.arenas;
  memset(s, 0, sizeof *s);
  s->size = sizeof *s;
  s->heap_reserved_bytes = nh_stat_get(&m->reserved);
  for (int n = 0; n < nh_rt.topo.nnodes; n++) {
    const nh_node_t *node = &nh_rt.nodes[n];
    s->heap_mapped_bytes += nh_stat_get(&node->ph.total_pages) * NH_PAGE_SIZE;
    int64_t live = pageheap_live_pages(&node->ph);
    s->heap_inuse_bytes += live > 0 ? (uint64_t)live * NH_PAGE_SIZE : 0;
    s->heap_released_bytes += nh_stat_get(&node->ph.released_pages) * NH_PAGE_SIZE;
    for (unsigned ac = 0; ac < NH_NUM_ALLOC_CLASSES; ac++)
      s->small_spans += nh_stat_get(&node->central[ac].nspans);
    s->tiny_spans += nh_stat_get(&node->central[NH_AC_TINY].nspans);
  }
  s->heap_free_bytes = s->heap_mapped_bytes - s->heap_inuse_bytes - s->heap_released_bytes;
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
  if (g->on) {
    nh_mutex_lock(&g->lock);
    s->pause_p50_ns = gc_pause_percentile(g, 50);
    s->pause_p99_ns = gc_pause_percentile(g, 99);
    nh_mutex_unlock(&g->lock);
  }
}

NH_API int nh_stats_read(nh_stats_t *out) {
  if (!out || out->size < sizeof(size_t) + sizeof(uint64_t)) {
    nh_error(-EINVAL, "nh_stats_read: out is NULL or out->size is not set to sizeof(nh_stats_t)");
    return -EINVAL;
  }
  nh_stats_t s;
  nh_mutex_lock(&init_lock);
  bool ready = nh_rt.ready;
  if (ready) {
    perf_attribute(perf_self_opened(), NH_PHASE_PROGRAM);   /* the caller's counts so far */
    fill_stats(&s);
  }
  nh_mutex_unlock(&init_lock);
  if (!ready)
    return -ENODEV;
  size_t n = out->size < sizeof s ? out->size : sizeof s;
  memcpy((char *)out + sizeof out->size, (char *)&s + sizeof s.size, n - sizeof s.size);
  return 0;
}

NH_API long nh_stats_arenas(nh_arena_stat_t *out, size_t n) {
  nh_mutex_lock(&init_lock);
  long count = -ENODEV;
  if (nh_rt.ready) {
    region_enter();
    nh_mutex_lock(&nh_rt.arenas.lock);
    count = 0;
    for (nh_arena_t *a = nh_rt.arenas.first; a; a = a->next, count++)
      if ((size_t)count < n)
        out[count] = (nh_arena_stat_t){a->base, NH_ARENA_BYTES, a->node, a->backing, a->wanted};
    nh_mutex_unlock(&nh_rt.arenas.lock);
    region_exit();
  }
  nh_mutex_unlock(&init_lock);
  return count;
}

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
  nh_mutex_lock(&init_lock);
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
  nh_mutex_unlock(&init_lock);
  return count;
}

NH_API long nh_stats_classes(nh_class_stat_t *out, size_t n) {
  nh_mutex_lock(&init_lock);
  long count = -ENODEV;
  if (nh_rt.ready) {
    count = NH_NUM_SIZE_CLASSES - 1;
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
  nh_mutex_unlock(&init_lock);
  return count;
}

static const char *gc_mode_name(uint64_t m) {
  static const char *const names[] = {"concurrent", "concurrent-nobarrier", "stw", "off"};
  return m < NH_ARRAY_LEN(names) ? names[m] : "?";
}

static const char *human(uint64_t b, char *buf, size_t n) {
  static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  double v = (double)b;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    u++;
  }
  snprintf(buf, n, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
  return buf;
}

NH_API int nh_stats_print(int fd) {
  nh_stats_t s = {.size = sizeof s};
  int rc = nh_stats_read(&s);
  if (rc != 0)
    return rc;
  char b[14][32];
  dprintf(fd,
          "nheap: heap    reserved %s, mapped %s: in use %s, free %s, released %s; metadata %s\n"
          "nheap: objects %llu small spans (%llu tiny), %llu large objects; bad frees %llu (double %llu); per-CPU caches: %s\n"
          "nheap: arenas  %llu (hugetlb %llu, thp %llu, 4k %llu); fallbacks: hugetlb %llu, thp %llu\n"
          "nheap: scav    %s released to the OS by the scavenger (ring %s): %llu ranges by io_uring, %llu by madvise\n"
          "nheap: numa    %llu node(s); marking scanned %s on the markers' own node, %s on another, %llu steals; %llu remote frees\n"
          "nheap: gc      %s: %llu cycles (%llu forced), pauses p50 %.3f ms, p99 %.3f ms, max %.3f ms, total %.3f ms\n"
          "nheap: pacer   live %s, marked %s, trigger %s, goal %s (gc_percent %lld), memory limit %s\n",
          human(s.heap_reserved_bytes, b[0], 32), human(s.heap_mapped_bytes, b[1], 32),
          human(s.heap_inuse_bytes, b[2], 32), human(s.heap_free_bytes, b[5], 32),
          human(s.heap_released_bytes, b[3], 32), human(s.metadata_bytes, b[4], 32),
          (unsigned long long)s.small_spans, (unsigned long long)s.tiny_spans, (unsigned long long)s.large_objects,
          (unsigned long long)s.bad_frees, (unsigned long long)s.double_frees,
          s.percpu_mode == NH_PERCPU_RSEQ ? "rseq" : "per-CPU lock", (unsigned long long)s.arenas,
          (unsigned long long)s.arenas_hugetlb, (unsigned long long)s.arenas_thp,
          (unsigned long long)s.arenas_small, (unsigned long long)s.hugetlb_fallbacks,
          (unsigned long long)s.thp_fallbacks, human(s.scavenged_bytes, b[6], 32),
          s.scavenger_uring ? "up" : "off", (unsigned long long)s.scavenger_uring_releases,
          (unsigned long long)s.scavenger_madvise_releases, (unsigned long long)s.numa_nodes,
          human(s.gc_scan_local_bytes, b[11], 32), human(s.gc_scan_remote_bytes, b[12], 32),
          (unsigned long long)s.gc_mark_steals, (unsigned long long)s.remote_frees,
          gc_mode_name(s.gc_mode), (unsigned long long)s.gc_cycles, (unsigned long long)s.gc_forced,
          s.pause_p50_ns / 1e6, s.pause_p99_ns / 1e6, s.pause_max_ns / 1e6, s.pause_total_ns / 1e6,
          human(s.heap_live_bytes, b[7], 32), human(s.heap_marked_bytes, b[8], 32),
          s.heap_trigger_bytes ? human(s.heap_trigger_bytes, b[13], 32) : "none",
          s.heap_goal_bytes ? human(s.heap_goal_bytes, b[9], 32) : "none", (long long)s.gc_percent,
          s.memory_limit ? human(s.memory_limit, b[10], 32) : "none");
  nh_arena_stat_t a[16];
  long n = nh_stats_arenas(a, NH_ARRAY_LEN(a));
  dprintf(fd, "nheap: arena   base                node  backing  wanted\n");
  for (long i = 0; i < n && i < (long)NH_ARRAY_LEN(a); i++)
    dprintf(fd, "nheap: %-7ld %#-18lx  %-4d  %-7s  %s\n", i, (unsigned long)a[i].base, a[i].node,
            nh_backing_name(a[i].backing), arena_policy_name(a[i].wanted));
  if (n > (long)NH_ARRAY_LEN(a))
    dprintf(fd, "nheap: ... and %ld more arenas\n", n - (long)NH_ARRAY_LEN(a));
  return 0;
}
