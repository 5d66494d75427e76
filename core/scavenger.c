/*
 * scavenger.c — returns free pages past the goal to the OS (Go's background scavenger), and
 * faults in free memory ahead of allocation.
 *
 * Goal. Keep at most 10% of the in-use heap plus 8 MiB as free-but-backed memory (Go's
 * retainExtraPercent = 10, with a floor so small heaps do not thrash), or, with the collector
 * on, up to 110% of the heap goal in all (Go's gcPercentGoal), and, under a memory
 * limit, keep mapped-and-unreleased memory below 95% of it (Go's reduceExtraPercent = 5).
 * Released pages cost a fault to reuse (~14 us per 4 KiB page on the VMs nheap is developed
 * on), which is why the goal retains some free memory rather than none.
 *
 * The thread also faults in free memory ahead of allocation when a page heap asks
 * (pageheap_prefault, "Prefaulting" in pageos.c): a kick wakes it at once for that, and the
 * release pass keeps its own period.
 *
 * The thread wakes every 50 ms, computes the excess over all nodes and, if there is one,
 * releases it through the page heaps (highest addresses first, whole huge pages on THP arenas;
 * pageheap_scavenge). Each batch of up to 32 ranges is one io_uring submission of
 * IORING_OP_MADVISE(MADV_DONTNEED) when io_uring is available, plain madvise otherwise
 * (NHEAP_DEBUG=uring=0 forces it). nh_scavenge() runs a pass on the caller's thread.
 *
 * The ring. A signal while a pass waits on it (the collector's stop lands on nh_scavenge's
 * thread) is retried, not taken as failure (mem.c, "The ring"); a request the ring refuses is
 * released with madvise. Only an error the kernel does not document as transient fails the
 * ring: mem_release_batch has then reaped every completion it could, pageheap_scavenge keeps
 * out of use any range still in flight, and the ring is closed here, so no stale completion
 * can meet a later batch; madvise from then on. The stats count ranges released by the ring
 * and by madvise (scavenger_uring_releases, scavenger_madvise_releases): scavenger_uring says
 * only that the ring is up.
 *
 * Locking: sc->lock (LOCK_RANK_SCAVENGER) serialises passes and guards the ring; a pass takes
 * the page heap locks inside it. The thread's sleep uses its own leaf mutex and condition.
 */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "core/heap.h"

enum { RETAIN_EXTRA_PERCENT = 10, RETAIN_FLOOR = 8 << 20, LIMIT_PERCENT = 95, PERIOD_MS = 50 };

static void init_wait(nh_scavenger_t *sc);

size_t scavenger_excess(const nh_heap_t *h) {
  uint64_t inuse = 0, free = 0, ready = 0;
  for (int n = 0; n < h->topo.nnodes; n++) {
    const nh_pageheap_t *ph = &h->nodes[n].ph;
    /* Read without the lock: the four counters can be caught between updates, so clamp. */
    int64_t total = (int64_t)nh_stat_get(&ph->total_pages);
    int64_t used = pageheap_live_pages(ph);
    int64_t rel = (int64_t)nh_stat_get(&ph->released_pages), held = (int64_t)nh_stat_get(&ph->scavenging_pages);
    int64_t idle = total - used - rel - held;
    inuse += used > 0 ? (uint64_t)used * NH_PAGE_SIZE : 0;
    free += idle > 0 ? (uint64_t)idle * NH_PAGE_SIZE : 0;
  }
  ready = inuse + free;
  uint64_t allowed = inuse / 100 * RETAIN_EXTRA_PERCENT + RETAIN_FLOOR;
  /* With the collector, the heap grows back to its goal before the next cycle: keep up to
   * 110% of the goal (Go's gcPercentGoal), or every cycle's sweep would release pages that
   * the next allocations fault in again (page clearing, and stops that wait on it). */
  uint64_t goal = 0;   /* the collector is set up after this thread starts: once ready */
  if (__atomic_load_n(&h->ready, __ATOMIC_ACQUIRE) && h->gc.pace.on)
    goal = pace_goal(&h->gc.pace);
  if (goal && goal != NH_PACER_NO_GOAL) {
    uint64_t keep = goal / 100 * (100 + RETAIN_EXTRA_PERCENT);
    if (keep > inuse && keep - inuse > allowed)
      allowed = keep - inuse;
  }
  uint64_t excess = free > allowed ? free - allowed : 0;
  uint64_t limit = __atomic_load_n(&h->gc.pace.memory_limit, __ATOMIC_RELAXED) / 100 * LIMIT_PERCENT;
  if (limit && ready > limit && ready - limit > excess)
    excess = ready - limit < free ? ready - limit : free;
  return (size_t)excess;
}

size_t scavenger_release(nh_scavenger_t *sc, nh_heap_t *h, size_t max_bytes) {
  size_t released = 0;
  for (int n = 0; n < h->topo.nnodes; n++) {   /* spans kept for reuse come first */
    for (unsigned ac = 0; ac < NH_NUM_ALLOC_CLASSES; ac++)
      mcentral_drop_empty(&h->nodes[n].central[ac]);
    pageheap_drop_recent(&h->nodes[n].ph);
  }
  nh_mutex_lock(&sc->lock);
  /* A mark tracking written pages (gc = concurrent-nobarrier): a released page could lose its
   * write protection, so nothing is released until the mark ends. */
  const nh_dirty_t *tracking = __atomic_load_n(&h->arenas.dirty, __ATOMIC_ACQUIRE);
  if (tracking && __atomic_load_n(&tracking->armed, __ATOMIC_ACQUIRE))
    max_bytes = 0;
  for (int n = 0; n < h->topo.nnodes && released < max_bytes; n++) {
    bool ring_failed;
    released += pageheap_scavenge(&h->nodes[n].ph, max_bytes - released, sc->have_ring ? &sc->ring : NULL, &ring_failed);
    if (ring_failed) {
      uint64_t lost = nh_stat_get(&h->mem.stats.release_in_flight);
      nh_warn("scavenger: io_uring failed; releasing pages with madvise from now on%s", lost ?
              " (ranges it left in flight stay out of use)" : "");
      io_uring_queue_exit(&sc->ring);
      __atomic_store_n(&sc->have_ring, false, __ATOMIC_RELAXED);
    }
  }
  nh_mutex_unlock(&sc->lock);
  nh_stat_add(&sc->released_bytes, (int64_t)released);
  if (h->cfg.dbg.scavtrace && released)
    nh_warn("scav: released %zu KiB (%s)", released >> 10, sc->have_ring ? "io_uring" : "madvise");
  return released;
}

/* A page heap asks for a prefault pass (pageheap_alloc, its lock dropped). */
static void scavenger_kick(void *arg) {
  nh_scavenger_t *sc = arg;
  if (__atomic_load_n(&sc->background, __ATOMIC_ACQUIRE))   /* no thread: stopped, or a fork's child */
    nh_signal_flag(&sc->wait_lock, &sc->wake, &sc->kicked);
}

static void add_period(struct timespec *t) {
  t->tv_nsec += PERIOD_MS * 1000000L;
  if (t->tv_nsec >= 1000000000L) {
    t->tv_sec++;
    t->tv_nsec -= 1000000000L;
  }
}

/* The passes the page heaps asked for. Where this thread runs does not matter: on real NUMA
 * nodes every arena is mbind'ed to its node (init.c), so the pages it faults in land there, as
 * the allocating thread's would. gc = concurrent-nobarrier's marks protect no free page
 * (cycle.c), so a page faulted in here takes no fault there either. */
static void prefault_pass(nh_heap_t *h) {
  for (int n = 0; n < h->topo.nnodes; n++) {
    nh_pageheap_t *ph = &h->nodes[n].ph;
    if (!pageheap_prefault_requested(ph))
      continue;
    size_t done = pageheap_prefault(ph, NH_PREFAULT_AHEAD);
    if (h->cfg.dbg.scavtrace)
      nh_warn("scav: prefaulted %zu KiB on node %d", done >> 10, n);
  }
}

static void *scavenger_main(void *arg) {
  nh_heap_t *h = arg;
  nh_scavenger_t *sc = &h->scavenger;
  struct timespec next;   /* the next release pass: a period from now, then every period */
  clock_gettime(CLOCK_MONOTONIC, &next);
  add_period(&next);
  pthread_mutex_lock(&sc->wait_lock);
  while (!sc->stop) {
    if (!sc->kicked)
      pthread_cond_timedwait(&sc->wake, &sc->wait_lock, &next);
    if (sc->stop)
      break;
    bool kicked = sc->kicked;
    sc->kicked = false;
    pthread_mutex_unlock(&sc->wait_lock);
    if (kicked) {
      nh_perf_thread_t *counted = perf_self();
      perf_skip(counted);
      prefault_pass(h);
      perf_attribute(counted, NH_PHASE_SCAVENGE);
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec < next.tv_sec || (now.tv_sec == next.tv_sec && now.tv_nsec < next.tv_nsec)) {
      pthread_mutex_lock(&sc->wait_lock);
      continue;   /* woken to prefault: the release pass keeps its period */
    }
    next = now;
    add_period(&next);
    size_t excess = scavenger_excess(h);
    nh_perf_thread_t *counted = excess ? perf_self() : NULL;
    perf_skip(counted);
    if (excess && scavenger_release(sc, h, excess))
      nh_stat_add(&sc->passes, 1);
    perf_attribute(counted, NH_PHASE_SCAVENGE);
    pthread_mutex_lock(&sc->wait_lock);
  }
  pthread_mutex_unlock(&sc->wait_lock);
  perf_thread_exit(perf_self_opened(), NH_PHASE_SCAVENGE);
  return NULL;
}

int scavenger_start(nh_scavenger_t *sc, nh_heap_t *h, bool background, bool use_uring) {
  memset(sc, 0, sizeof *sc);
  nh_mutex_init(&sc->lock, LOCK_RANK_SCAVENGER);
  sc->have_ring = use_uring && io_uring_queue_init(SCAV_RING_ENTRIES, &sc->ring, 0) == 0;
  if (sc->have_ring) {
    struct io_uring_probe *probe = io_uring_get_probe_ring(&sc->ring);
    if (!probe || !io_uring_opcode_supported(probe, IORING_OP_MADVISE)) {
      io_uring_queue_exit(&sc->ring);
      sc->have_ring = false;
    }
    if (probe)
      io_uring_free_probe(probe);
  }
  init_wait(sc);
  if (!background)
    return 0;
  int rc = pthread_create(&sc->thread, NULL, scavenger_main, h);
  if (rc != 0) {
    scavenger_stop(sc);
    return -rc;
  }
  sc->background = true;
  for (int n = 0; n < h->topo.nnodes; n++) {   /* the page heaps ask this thread to prefault */
    h->nodes[n].ph.prefault_arg = sc;
    __atomic_store_n(&h->nodes[n].ph.prefault_wake, scavenger_kick, __ATOMIC_RELEASE);
  }
  return 0;
}

void scavenger_stop(nh_scavenger_t *sc) {
  if (sc->background) {
    nh_signal_flag(&sc->wait_lock, &sc->wake, &sc->stop);
    pthread_join(sc->thread, NULL);
    __atomic_store_n(&sc->background, false, __ATOMIC_RELEASE);
  }
  if (sc->have_ring)
    io_uring_queue_exit(&sc->ring);
  sc->have_ring = false;
  pthread_cond_destroy(&sc->wake);
  pthread_mutex_destroy(&sc->wait_lock);
}

static void init_wait(nh_scavenger_t *sc) {
  pthread_mutex_init(&sc->wait_lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&sc->wake, &ca);
  pthread_condattr_destroy(&ca);
  sc->stop = false;
}

void scavenger_forget_thread(nh_scavenger_t *sc) {
  sc->background = false;
  if (sc->have_ring)
    io_uring_queue_exit(&sc->ring);   /* unmaps the child's view and closes its fd */
  sc->have_ring = false;
  init_wait(sc);   /* the parent's thread may have been waiting on them */
}

NH_API size_t nh_scavenge(size_t max_bytes) {
  if (!__atomic_load_n(&nh_rt.ready, __ATOMIC_ACQUIRE)) {
    nh_error(-ENODEV, "nh_scavenge called before nh_init (or after nh_shutdown)");
    return 0;
  }
  nh_perf_thread_t *counted = perf_self();
  perf_attribute(counted, NH_PHASE_PROGRAM);
  region_enter();   /* takes allocator locks: the collector must not stop it inside */
  size_t n = scavenger_release(&nh_rt.scavenger, &nh_rt, max_bytes);
  region_exit();
  perf_attribute(counted, NH_PHASE_SCAVENGE);
  return n;
}
