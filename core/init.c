/*
 * init.c — the process-wide heap: nh_init and nh_shutdown.
 *
 * There is one heap per process, `nh_rt` (heap.h), whose lifetime is guarded by heap_init_lock
 * (LOCK_RANK_INIT): nh_init builds it, nh_shutdown tears it down, and the statistics calls
 * (stats.c) read it under the same lock so they never see it half-built. The allocator checks
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

nh_mutex_t heap_init_lock = NH_MUTEX_INITIALIZER(LOCK_RANK_INIT);
nh_heap_t nh_rt;  /* built and torn down under heap_init_lock; its config is immutable while ready */
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

/* Every allocator lock but heap_init_lock, in rank order, for a heap that is ready (the order
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

/* Whether the heap was ready when fork_prepare took heap_init_lock: read under it, so nh_init and
 * nh_shutdown cannot change the answer before fork_parent / fork_child use it. */
static bool fork_heap_ready;

static void fork_prepare(void) {
  pthread_mutex_lock(&heap_init_lock.m);
  fork_heap_ready = nh_rt.ready;
  if (fork_heap_ready)
    for_each_heap_lock(lock_raw, false);
}

static void fork_parent(void) {
  if (fork_heap_ready)
    for_each_heap_lock(unlock_raw, true);
  pthread_mutex_unlock(&heap_init_lock.m);
}

static void fork_child(void) {
  if (fork_heap_ready) {
    for_each_heap_lock(reinit_raw, false);
    scavenger_forget_thread(&nh_rt.scavenger);
    gc_after_fork_child(&nh_rt.gc);
    perf_after_fork_child();
  }
  pthread_mutex_init(&heap_init_lock.m, NULL);
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void register_atfork(void) { pthread_atfork(fork_prepare, fork_parent, fork_child); }

NH_API int nh_init(const nh_options *opts) {
  pthread_once(&atfork_once, register_atfork);
  nh_mutex_lock(&heap_init_lock);
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
  nh_mutex_unlock(&heap_init_lock);
  return 0;
out:
  nh_mutex_unlock(&heap_init_lock);
  return rc;
}

NH_API void nh_shutdown(void) {
  nh_mutex_lock(&heap_init_lock);
  if (nh_rt.ready) {
    __atomic_store_n(&nh_rt.ready, false, __ATOMIC_RELEASE);
    gc_shutdown(&nh_rt.gc);
    scavenger_stop(&nh_rt.scavenger);
    perf_shutdown(true);
    arena_set_destroy(&nh_rt.arenas);
    mem_destroy(&nh_rt.mem);
    release_types();
  }
  nh_mutex_unlock(&heap_init_lock);
}
