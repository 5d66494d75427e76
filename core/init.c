/*
 * init.c — the process-wide heap: nh_init, nh_shutdown and statistics.
 *
 * There is one heap per process, `heap`, whose lifetime is guarded by init_lock
 * (LOCK_RANK_INIT): nh_init builds it, nh_shutdown tears it down, and the statistics calls
 * read it under the same lock so they never see it half-built. Every structure inside (mem,
 * arenas, topology, options) can also be built standalone, without this global, which is how
 * the unit tests drive them with fake OS hooks.
 *
 * nh_init, in order; any failure undoes the steps before it and returns the code:
 *   1. load the options (defaults -> file -> NHEAP_* -> nh_options);
 *   2. check perf.events names with libpfm4;
 *   3. read the NUMA topology (numa = auto | off | fake:N);
 *   4. print the effective options when verbose;
 *   5. set up the OS layer and the arena set, and map the first arena on the calling CPU's
 *      node, so that a machine that cannot give nheap memory fails here, with a message, and
 *      the huge-page decision is visible in the stats from the start.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/error.h"
#include "core/lock.h"
#include "core/mem.h"
#include "core/options.h"
#include "numa/topology.h"
#include "perf/events.h"

extern char **environ;

typedef struct nh_heap {
  bool ready;
  nh_config_t cfg;
  nh_topology_t topo;
  nh_mem_t mem;
  nh_arena_set_t arenas;
  uint64_t gc_cycles, pause_total_ns, pause_max_ns;  /* the collector fills these */
} nh_heap_t;

static nh_mutex_t init_lock = NH_MUTEX_INITIALIZER(LOCK_RANK_INIT);
static nh_heap_t heap;  /* guarded by init_lock while not ready; immutable config once ready */

static int current_node(const nh_topology_t *t) {
  int cpu = sched_getcpu();
  return cpu >= 0 && cpu < t->ncpus ? t->cpu_node[cpu] : 0;
}

NH_API int nh_init(const nh_options *opts) {
  nh_mutex_lock(&init_lock);
  int rc;
  if (heap.ready) {
    nh_error(-EBUSY, "nh_init: nheap is already initialised (call nh_shutdown first)");
    rc = -EBUSY;
    goto out;
  }
  memset(&heap, 0, sizeof heap);
  if ((rc = options_load(&heap.cfg, opts, environ)) != 0 ||
      (rc = perf_events_check(heap.cfg.perf_events)) != 0 ||
      (rc = topology_init(&heap.topo, &heap.cfg)) != 0)
    goto out;
  if (heap.cfg.verbose)
    options_print(&heap.cfg, STDERR_FILENO);

  mem_init(&heap.mem, &os_linux);
  nh_arena_placement place = {
    .nnodes = heap.topo.real_nodes,
    .bind = !heap.topo.fake && heap.topo.real_nodes > 1,
    .interleave = heap.cfg.numa_policy == NH_NUMA_INTERLEAVE,
  };
  if ((rc = arena_set_init(&heap.arenas, &heap.mem, (nh_hugepages_mode)heap.cfg.hugepages, place)) != 0) {
    nh_error(rc, "nh_init: cannot map the arena index (%s)", nh_strerror(rc));
    mem_destroy(&heap.mem);
    goto out;
  }
  int node = current_node(&heap.topo);
  if (!arena_create(&heap.arenas, topology_node_is_real(&heap.topo, node) ? node : 0)) {
    rc = -ENOMEM;
    nh_error(rc, "nh_init: the OS refused the first 64 MiB arena (%s)", nh_strerror(-errno));
    arena_set_destroy(&heap.arenas);
    mem_destroy(&heap.mem);
    goto out;
  }
  heap.ready = true;
out:
  nh_mutex_unlock(&init_lock);
  return rc;
}

NH_API void nh_shutdown(void) {
  nh_mutex_lock(&init_lock);
  if (heap.ready) {
    arena_set_destroy(&heap.arenas);
    mem_destroy(&heap.mem);
    heap.ready = false;
  }
  nh_mutex_unlock(&init_lock);
}

/* ---------------------------------------------------------------------------------------------
 * Statistics.
 * ------------------------------------------------------------------------------------------- */

static void fill_stats(nh_stats_t *s) {
  const nh_mem_stats *m = &heap.mem.stats;
  const nh_arena_set_t *a = &heap.arenas;
  memset(s, 0, sizeof *s);
  s->size = sizeof *s;
  s->heap_reserved_bytes = nh_stat_get(&m->reserved);
  s->heap_mapped_bytes = nh_stat_get(&m->mapped);
  s->heap_inuse_bytes = nh_stat_get(&m->ready);
  s->heap_released_bytes = s->heap_mapped_bytes - s->heap_inuse_bytes;
  s->metadata_bytes = nh_stat_get(&m->metadata);
  s->arenas = __atomic_load_n(&a->count, __ATOMIC_RELAXED);
  s->arenas_hugetlb = nh_stat_get(&a->by_backing[NH_BACKING_HUGETLB]);
  s->arenas_thp = nh_stat_get(&a->by_backing[NH_BACKING_THP]);
  s->arenas_small = nh_stat_get(&a->by_backing[NH_BACKING_SMALL]);
  s->hugetlb_fallbacks = nh_stat_get(&a->hugetlb_fallbacks);
  s->thp_fallbacks = nh_stat_get(&a->thp_fallbacks);
  s->numa_nodes = (uint64_t)heap.topo.nnodes;
  s->gc_cycles = nh_stat_get(&heap.gc_cycles);
  s->pause_total_ns = nh_stat_get(&heap.pause_total_ns);
  s->pause_max_ns = nh_stat_get(&heap.pause_max_ns);
}

NH_API int nh_stats_read(nh_stats_t *out) {
  if (!out || out->size < sizeof(size_t) + sizeof(uint64_t)) {
    nh_error(-EINVAL, "nh_stats_read: out is NULL or out->size is not set to sizeof(nh_stats_t)");
    return -EINVAL;
  }
  nh_stats_t s;
  nh_mutex_lock(&init_lock);
  bool ready = heap.ready;
  if (ready)
    fill_stats(&s);
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
  if (heap.ready) {
    nh_mutex_lock(&heap.arenas.lock);
    count = 0;
    for (nh_arena_t *a = heap.arenas.first; a; a = a->next, count++)
      if ((size_t)count < n)
        out[count] = (nh_arena_stat_t){a->base, NH_ARENA_BYTES, a->node, a->backing, a->wanted};
    nh_mutex_unlock(&heap.arenas.lock);
  }
  nh_mutex_unlock(&init_lock);
  return count;
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
  char b[5][32];
  dprintf(fd,
          "nheap: heap    reserved %s, mapped %s, in use %s, released %s; metadata %s\n"
          "nheap: arenas  %llu (hugetlb %llu, thp %llu, 4k %llu); fallbacks: hugetlb %llu, thp %llu\n"
          "nheap: numa    %llu node(s)\n"
          "nheap: gc      %llu cycles, pauses total %llu ns, max %llu ns\n",
          human(s.heap_reserved_bytes, b[0], 32), human(s.heap_mapped_bytes, b[1], 32),
          human(s.heap_inuse_bytes, b[2], 32), human(s.heap_released_bytes, b[3], 32),
          human(s.metadata_bytes, b[4], 32), (unsigned long long)s.arenas,
          (unsigned long long)s.arenas_hugetlb, (unsigned long long)s.arenas_thp,
          (unsigned long long)s.arenas_small, (unsigned long long)s.hugetlb_fallbacks,
          (unsigned long long)s.thp_fallbacks, (unsigned long long)s.numa_nodes,
          (unsigned long long)s.gc_cycles, (unsigned long long)s.pause_total_ns,
          (unsigned long long)s.pause_max_ns);
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
