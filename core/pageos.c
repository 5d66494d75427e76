/*
 * pageos.c — the page heap's traffic with the OS: releasing free pages (the scavenger's half,
 * pageheap_scavenge) and faulting free pages in ahead of allocation (pageheap_prefault). Both
 * hold a run out of allocation (its pages marked in use, counted in scavenging_pages) while the
 * system call runs with ph->lock dropped, then hand it back free. The bitmaps and summaries
 * are pageheap.c's (pagebits.h).
 *
 * Scavenging (pageheap_scavenge, Go's scavengeOne): under the lock, pick free pages that are
 * not yet released, from the highest address down, and mark them in use so no allocation takes
 * them; drop the lock and release them (mem_release_batch: io_uring or madvise); retake it,
 * mark them free and released. A range whose release a failed ring left in flight is never
 * handed back: its pages stay taken, counted as being scavenged, for the heap's life (a leak
 * of one batch at worst, where a reuse would have its data zeroed by the late MADV_DONTNEED).
 * Allocation gives released pages back as Ready and zero. On THP
 * arenas only whole, aligned 2 MiB units go, so a huge page is never split by a release
 * (khugepaged would only re-inflate it); on 4 KiB arenas any run of 64 KiB or more. hugetlb
 * arenas are skipped: their pages belong to a pool the administrator reserved, and a released
 * hugetlb range must be recommitted before reuse (mem.c), which the allocation path does not do.
 *
 * Prefaulting (pageheap_prefault; not in Go): a page released or never touched costs a fault on
 * its first write, and in a VM whose host backs guest memory lazily that fault is slow: 3.3 ms
 * per 2 MiB huge page measured here for memory the guest never had, 0.11 ms for memory it had.
 * A thread inside a fault cannot take the collector's stop signal until the fault is done, so
 * those faults became the longest pauses (binary-trees: mark termination waited 2-4 ms for one
 * thread's fault). So when an allocation takes released pages, or the prefaulted reserve drops
 * below half, pageheap_alloc asks for a pass (prefault_wake: the scavenger thread), which faults
 * in the released pages among the lowest NH_PREFAULT_AHEAD bytes of free memory, first fit's
 * next ones: each run is held (in use, counted in scavenging_pages) while mem_populate runs
 * with the lock dropped, then goes back free with its fresh bit set (known zero, like a
 * released page, but backed). Allocation clears fresh bits and counts fresh pages as zero;
 * the scavenger may release them like any free page (scav_pick clears their fresh bits).
 * The JVM's AlwaysPreTouch does the same for the whole heap at start; this keeps the extra
 * resident memory to the reserve (4 MiB per node) and spends the faults on another thread.
 */
#include <string.h>

#include "core/error.h"
#include "core/pagebits.h"

enum { SCAV_BATCH = 32, SCAV_MIN_PAGES = 8 /* 64 KiB */, HUGE_UNIT = NH_HUGE_PAGE / NH_PAGE_SIZE };

/* Under the lock: run r, held out of allocation while the OS call ran, back among the free
 * pages, as they now are: backed (a release refused), released, or faulted in ahead. */
typedef enum { HELD_BACKED, HELD_RELEASED, HELD_FRESH } held_state;
static void unhold(nh_pageheap_t *ph, const nh_range *r, held_state st) {
  nh_mutex_assert_held(&ph->lock);
  size_t idx = pageheap_arena_index(ph, (uintptr_t)r->p), pages = r->len / NH_PAGE_SIZE;
  size_t first = ((uintptr_t)r->p - ph->by_addr[idx]->base) / NH_PAGE_SIZE;
  nh_arena_pages_t *ap = ph->by_addr[idx]->pages;
  set_bits(ap->alloc, first, pages, false);
  if (st != HELD_BACKED)
    set_bits(st == HELD_FRESH ? ap->fresh : ap->scav, first, pages, true);
  pageheap_update_summaries(ap, first, pages);
  nh_stat_add(&ph->scavenging_pages, -(int64_t)pages);
  if (idx < ph->search)
    ph->search = idx;
}

/* Under the lock: free, unreleased ranges from the top of the heap into r (marked in use). */
static size_t scav_pick(nh_pageheap_t *ph, nh_range *r, size_t max_pages) {
  nh_mutex_assert_held(&ph->lock);
  size_t n = 0, pages = 0;
  for (size_t ai = ph->narenas; ai-- > 0 && n < SCAV_BATCH && pages < max_pages;) {
    nh_arena_t *a = ph->by_addr[ai];
    nh_arena_pages_t *ap = a->pages;
    if (a->backing == NH_BACKING_HUGETLB)
      continue;
    const size_t unit = a->backing == NH_BACKING_THP ? HUGE_UNIT : 1;
    const size_t min_run = a->backing == NH_BACKING_THP ? HUGE_UNIT : SCAV_MIN_PAGES;
    size_t end = NH_PAGES_PER_ARENA;   /* scan down: [start, end) is the candidate run */
    while (end > 0 && n < SCAV_BATCH && pages < max_pages) {
      size_t w = (end - 1) / 64;
      uint64_t cand = ~(ap->alloc[w] | ap->scav[w]);
      if (!(cand >> ((end - 1) % 64) & 1)) {
        end--;
        continue;
      }
      size_t start = end - 1;
      while (start > 0) {
        uint64_t c = ~(ap->alloc[(start - 1) / 64] | ap->scav[(start - 1) / 64]);
        if (!(c >> ((start - 1) % 64) & 1))
          break;
        start--;
      }
      size_t lo = nh_align_up(start, unit), hi = nh_align_down(end, unit);
      if (hi > lo && hi - lo >= min_run) {
        size_t room = nh_align_down(max_pages - pages, unit);
        if (room < min_run)
          room = min_run;   /* overshoot by less than one unit rather than release nothing */
        if (hi - lo > room)
          lo = hi - room;   /* keep the top of the run: highest addresses first */
        set_bits(ap->alloc, lo, hi - lo, true);
        ph->fresh_pages -= count_bits(ap->fresh, lo, hi - lo);   /* released, or not known zero */
        set_bits(ap->fresh, lo, hi - lo, false);
        pageheap_update_summaries(ap, lo, hi - lo);
        r[n++] = (nh_range){.p = (void *)(a->base + lo * NH_PAGE_SIZE), .len = (hi - lo) * NH_PAGE_SIZE};
        pages += hi - lo;
      }
      end = start;
    }
  }
  nh_stat_add(&ph->scavenging_pages, (int64_t)pages);
  return n;
}

size_t pageheap_scavenge(nh_pageheap_t *ph, size_t max_bytes, struct io_uring *ring, bool *ring_failed) {
  size_t released = 0;
  *ring_failed = false;
  while (released < max_bytes) {
    nh_range r[SCAV_BATCH];
    nh_mutex_lock(&ph->lock);
    size_t left = max_bytes - released;   /* in pages, rounded up, without overflow */
    size_t n = scav_pick(ph, r, left / NH_PAGE_SIZE + (left % NH_PAGE_SIZE != 0));
    nh_mutex_unlock(&ph->lock);
    if (n == 0)
      break;
    bool failed;
    released += mem_release_batch(ph->mem, r, n, *ring_failed ? NULL : ring, &failed);
    *ring_failed |= failed;
    nh_mutex_lock(&ph->lock);
    for (size_t i = 0; i < n; i++) {
      if (r[i].how == NH_RELEASE_IN_FLIGHT)
        continue;   /* its DONTNEED may still run: the pages stay taken (and held) for good */
      size_t gone = r[i].how == NH_RELEASE_REFUSED ? 0 : r[i].len / NH_PAGE_SIZE;   /* refused: free, Ready */
      unhold(ph, &r[i], gone ? HELD_RELEASED : HELD_BACKED);
      pageheap_stat_begin(ph);
      nh_stat_add(&ph->released_pages, (int64_t)gone);
      pageheap_stat_end(ph);
      nh_stat_add(&ph->scavenged_pages, (int64_t)gone);
    }
    nh_mutex_unlock(&ph->lock);
  }
  return released;
}

/* ---------------------------------------------------------------------------------------------
 * Prefaulting.
 * ------------------------------------------------------------------------------------------- */

/* Under the lock: the lowest run of free, released pages among the first `window` free pages
 * from the search arena on (a whole 2 MiB unit on THP arenas, whose first touch faults the
 * whole huge page in anyway; up to 64 pages on 4 KiB arenas; hugetlb arenas are skipped: their
 * pool's pages are faulted cheaply), taken out of the free pages and the released count and
 * held (scavenging_pages) while the caller faults them in. 0 when none is left in the window. */
static size_t prefault_pick(nh_pageheap_t *ph, size_t window, nh_range *r) {
  nh_mutex_assert_held(&ph->lock);
  size_t seen = 0;
  for (size_t ai = ph->search; ai < ph->narenas && seen < window; ai++) {
    nh_arena_t *a = ph->by_addr[ai];
    nh_arena_pages_t *ap = a->pages;
    const bool thp = a->backing == NH_BACKING_THP;
    const size_t unit = thp ? HUGE_UNIT : 64;
    for (size_t u = 0; u < NH_PAGES_PER_ARENA && seen < window; u += unit) {
      size_t free = unit - count_bits(ap->alloc, u, unit), lo = u, n = 0;
      if (free && a->backing != NH_BACKING_HUGETLB) {
        if (thp) {
          n = free == unit && count_bits(ap->scav, u, unit) == unit ? unit : 0;
        } else {   /* the lowest run of free, released pages in this word */
          uint64_t cand = ~ap->alloc[u / 64] & ap->scav[u / 64];
          if (cand) {
            lo = u + (size_t)__builtin_ctzll(cand);
            uint64_t run = ~(cand >> (lo - u));   /* its first 0 bit ends the run */
            n = run ? (size_t)__builtin_ctzll(run) : 64;
          }
        }
      }
      if (n) {
        set_bits(ap->alloc, lo, n, true);
        set_bits(ap->scav, lo, n, false);
        pageheap_update_summaries(ap, lo, n);
        nh_stat_add(&ph->scavenging_pages, (int64_t)n);
        pageheap_stat_begin(ph);
        nh_stat_add(&ph->released_pages, -(int64_t)n);
        pageheap_stat_end(ph);
        *r = (nh_range){.p = (void *)(a->base + lo * NH_PAGE_SIZE), .len = n * NH_PAGE_SIZE};
        return n;
      }
      seen += free;
    }
  }
  return 0;
}

bool pageheap_prefault_requested(nh_pageheap_t *ph) {
  nh_mutex_lock(&ph->lock);
  bool asked = ph->prefault_pending;
  ph->prefault_pending = false;
  nh_mutex_unlock(&ph->lock);
  return asked;
}

size_t pageheap_prefault(nh_pageheap_t *ph, size_t ahead_bytes) {
  size_t done = 0, window = ahead_bytes / NH_PAGE_SIZE;
  for (;;) {
    nh_range r;
    nh_mutex_lock(&ph->lock);
    size_t n = prefault_pick(ph, window, &r);
    nh_mutex_unlock(&ph->lock);
    if (!n)
      return done;
    mem_use(ph->mem, r.p, r.len);
    int rc = mem_populate(ph->mem, r.p, r.len);   /* the pages read as zero either way */
    nh_mutex_lock(&ph->lock);
    unhold(ph, &r, HELD_FRESH);
    ph->fresh_pages += n;
    nh_mutex_unlock(&ph->lock);
    if (rc != 0)
      return done;   /* out of memory, say: the rest faults on first use, as it would have */
    nh_stat_add(&ph->prefaulted_pages, (int64_t)n);
    done += r.len;
  }
}
