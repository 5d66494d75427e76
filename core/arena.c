/*
 * arena.c — heap arenas: 64 MiB of address space each, the unit in which nheap takes memory
 * from the OS, chooses its page size and binds it to a NUMA node.
 *
 * Structures
 *   nh_arena_set_t   one heap's arenas: a creation-ordered list, the address -> arena index,
 *                    the backing policy and its counters.
 *   nh_arena_t       one arena's record, in metadata memory (mem_meta_alloc). The allocator
 *                    hangs its per-arena page -> span map here.
 *   index            Go's arena map on amd64: one level of 2^22 pointers (48-bit addresses /
 *                    64 MiB), 32 MiB of demand-zero address space of which only the pages
 *                    holding used slots become resident (one 4 KiB page of slots covers 32 GiB
 *                    of heap). arena_of(p) is a shift, a bounds check and one load, for any p:
 *                    interior, foreign or wild. It is mapped MADV_NOHUGEPAGE so that one slot
 *                    never faults in 2 MiB.
 *
 * Creating an arena (arena_create), under set->lock:
 *   1. Reserve 64 MiB, 64 MiB-aligned, at the hint (just past the last arena, starting at
 *      Go's 0xc000000000) so the heap stays contiguous; if that is taken, at the next of Go's
 *      hint regions (i<<40 | 0xc000000000, i = 1..127); anywhere aligned as the last resort
 *      (and always under ThreadSanitizer, which owns fixed address ranges).
 *   2. Back it (back_arena), by policy `hugepages`:
 *        hugetlb  commit with MAP_HUGETLB (32 pages of the 2 MiB pool, taken now);
 *        thp      commit, then MADV_HUGEPAGE (needs THP "always" or "madvise");
 *        none     commit, then MADV_NOHUGEPAGE (honoured even where THP is "always");
 *        auto     hugetlb if the pool has 32 free, unreserved pages, else thp, else 4 KiB.
 *      Each step down is counted (hugetlb_fallbacks, thp_fallbacks) and visible in stats, per
 *      arena too; when the user asked for hugetlb or thp by name, the first fallback is also
 *      said once through the funnel as a warning. In auto, a machine with no hugetlb pool
 *      configured at all is not a fallback (nothing was there to fall back from).
 *   3. Bind it to its node (mem_bind) when placement asks, before anything touches it.
 *   4. Publish: link it, then store it in the index with release order, so a reader that finds
 *      it in the index sees a complete record.
 * The whole arena is committed (Prepared) at once: with THP and 4 KiB backing that costs no
 * memory until touched, and with hugetlb it makes the pool shortage an error now rather than a
 * SIGBUS later. Arenas are never unreserved while the heap lives (as in Go); released memory
 * stays inside its arena.
 *
 * Locking: set->lock (LOCK_RANK_ARENAS) guards creation, the list, the hint and the warnings;
 * the index is read without locks. Counters are relaxed atomics.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "core/arena.h"
#include "core/dirty.h"
#include "core/error.h"

enum { HUGE_PAGES_PER_ARENA = NH_ARENA_BYTES / NH_HUGE_PAGE };

int arena_set_init(nh_arena_set_t *set, nh_mem_t *mem, nh_hugepages_mode policy, nh_arena_placement place) {
  memset(set, 0, sizeof *set);
  set->mem = mem;
  set->policy = policy;
  set->place = place;
  set->hint = NH_ARENA_HINT;
  set->hint_region = 1;
  size_t len = NH_ARENA_INDEX_LEN * sizeof(nh_arena_t *);
  void *index = mem_map_guarded(mem->os, mem->guard, len, MAP_NORESERVE);
  if (index == MAP_FAILED)
    return -ENOMEM;
  mem->os->advise(index, len, MADV_NOHUGEPAGE);
  set->index = index;
  nh_mutex_init(&set->lock, LOCK_RANK_ARENAS);
  return 0;
}

void arena_set_destroy(nh_arena_set_t *set) {
  if (!set->index)
    return;
  nh_mutex_lock(&set->lock);
  for (nh_arena_t *a = set->first; a; a = a->next) {
    __atomic_store_n(&set->index[a->base >> NH_ARENA_SHIFT], NULL, __ATOMIC_RELAXED);
    mem_unreserve(set->mem, (void *)a->base, NH_ARENA_BYTES, NH_ARENA_BYTES, 0);
  }
  set->first = set->last = NULL;
  set->count = 0;
  nh_mutex_unlock(&set->lock);
  mem_unmap_guarded(set->mem->os, set->mem->guard, set->index, NH_ARENA_INDEX_LEN * sizeof(nh_arena_t *));
  set->index = NULL;
  nh_mutex_destroy(&set->lock);
}

const char *arena_policy_name(nh_hugepages_mode m) {
  static const char *const names[] = {"auto", "hugetlb", "thp", "none"};
  return names[m];
}

/* Step 2 of arena_create: commits base and chooses its backing. Returns 0 or -errno. */
static int back_arena(nh_arena_set_t *set, void *base, nh_backing *got) {
  nh_mem_t *m = set->mem;
  const nh_hugepages_mode want = set->policy;
  nh_mutex_assert_held(&set->lock);

  if (want == NH_HUGEPAGES_AUTO || want == NH_HUGEPAGES_HUGETLB) {
    long free_pages = m->os->hugetlb_free_pages();
    int rc = free_pages >= HUGE_PAGES_PER_ARENA ? mem_commit(m, base, NH_ARENA_BYTES, NH_BACKING_HUGETLB) : -ENOMEM;
    if (rc == 0) {
      *got = NH_BACKING_HUGETLB;
      return 0;
    }
    if (want == NH_HUGEPAGES_HUGETLB || free_pages >= 0) {
      nh_stat_add(&set->hugetlb_fallbacks, 1);
      if (want == NH_HUGEPAGES_HUGETLB && !set->hugetlb_warned) {
        set->hugetlb_warned = true;
        nh_warn("hugepages = hugetlb: an arena needs %d free 2 MiB pages, the pool has %ld (%s); "
                "falling back to THP/4 KiB pages, counted in hugetlb_fallbacks",
                HUGE_PAGES_PER_ARENA, free_pages < 0 ? 0 : free_pages,
                free_pages < 0 ? "none configured: /proc/sys/vm/nr_hugepages" : nh_strerror(rc));
      }
    }
  }

  int rc = mem_commit(m, base, NH_ARENA_BYTES, NH_BACKING_SMALL);
  if (rc != 0)
    return rc;
  if (want == NH_HUGEPAGES_NONE) {
    mem_hugify(m, base, NH_ARENA_BYTES, false);  /* advice only: 4 KiB pages either way */
    *got = NH_BACKING_SMALL;
    return 0;
  }
  nh_thp_mode thp = m->os->thp_mode();
  if ((thp == THP_MADVISE || thp == THP_ALWAYS) && mem_hugify(m, base, NH_ARENA_BYTES, true) == 0) {
    *got = NH_BACKING_THP;
    return 0;
  }
  nh_stat_add(&set->thp_fallbacks, 1);
  if (want == NH_HUGEPAGES_THP && !set->thp_warned) {
    set->thp_warned = true;
    nh_warn("hugepages = thp: transparent huge pages are %s on this system; using 4 KiB pages, "
            "counted in thp_fallbacks", thp == THP_NEVER ? "disabled" : "unsupported");
  }
  *got = NH_BACKING_SMALL;
  return 0;
}

/* Step 1 of arena_create: count * 64 MiB of address space, contiguous with the last arena
 * if free there. */
static void *reserve_arenas(nh_arena_set_t *set, size_t len) {
  nh_mem_t *m = set->mem;
  nh_mutex_assert_held(&set->lock);
  if (!nh_config_tsan) {
    void *p = set->hint ? mem_reserve_at(m, len, set->hint) : NULL;
    /* Taken (by a mapping of the program, or a sanitizer's shadow): move on to Go's next hint
     * region, 1 TiB further, where the heap again has room to grow contiguously. */
    while (!p && set->hint && set->hint_region < NH_ARENA_HINT_REGIONS)
      p = mem_reserve_at(m, len, ((uintptr_t)set->hint_region++ << 40) | NH_ARENA_HINT);
    if (p)
      return p;
  }
  return mem_reserve(m, len, NH_ARENA_BYTES);
}

nh_arena_t *arena_create_run(nh_arena_set_t *set, int node, size_t count) {
  nh_mem_t *m = set->mem;
  nh_arena_t *first = NULL, *rec[count];
  nh_backing got[count];
  const size_t len = count * NH_ARENA_BYTES;
  nh_assert(count >= 1 && count <= NH_ARENA_RUN_MAX);
  nh_mutex_lock(&set->lock);

  char *base = reserve_arenas(set, len);
  if (!base)
    goto out;
  size_t backed = 0;
  for (; backed < count; backed++) {
    rec[backed] = mem_meta_alloc(m, sizeof(nh_arena_t), 64);
    if (!rec[backed] || back_arena(set, base + backed * NH_ARENA_BYTES, &got[backed]) != 0)
      break;
  }
  if (backed < count) {
    mem_unreserve(m, base, len, backed * NH_ARENA_BYTES, 0);  /* the records stay in metadata */
    goto out;
  }
  if (set->place.bind) {
    int rc = mem_bind(m, base, len, node, set->place.nnodes, set->place.interleave);
    if (rc != 0)
      nh_warn("arena %p: mbind to node %d failed (%s); its pages go where the kernel puts them",
              (void *)base, node, nh_strerror(rc));
  }
  if (set->dirty) {   /* gc = concurrent-nobarrier: its writes must be seen (dirty.c), or no arena */
    int rc = dirty_register(set->dirty, base, len);
    if (rc != 0) {
      nh_error(rc, "arena %p: cannot register it for write-protect tracking (%s)", (void *)base, nh_strerror(rc));
      mem_unreserve(m, base, len, len, 0);
      goto out;
    }
  }
  for (size_t i = 0; i < count; i++) {
    nh_arena_t *a = rec[i];
    a->base = (uintptr_t)base + i * NH_ARENA_BYTES;
    a->id = set->count;
    a->node = node;
    a->backing = got[i];
    a->wanted = set->policy;
    if (set->last)
      set->last->next = a;
    else
      set->first = a;
    set->last = a;
    __atomic_store_n(&set->count, set->count + 1, __ATOMIC_RELAXED);
    nh_stat_add(&set->by_backing[got[i]], 1);
    __atomic_store_n(&set->index[a->base >> NH_ARENA_SHIFT], a, __ATOMIC_RELEASE);
  }
  set->hint = (uintptr_t)base + len;
  first = rec[0];
out:
  nh_mutex_unlock(&set->lock);
  if (nh_config_debug >= 2)
    arena_validate(set);
  return first;
}

nh_arena_t *arena_create(nh_arena_set_t *set, int node) {
  return arena_create_run(set, node, 1);
}

void arena_validate(nh_arena_set_t *set) {
  nh_mutex_lock(&set->lock);
  uint32_t n = 0;
  uint64_t backing[3] = {0};
  for (nh_arena_t *a = set->first; a; a = a->next, n++) {
    if (a->id != n || !nh_is_aligned(a->base, NH_ARENA_BYTES) || (unsigned)a->backing > NH_BACKING_HUGETLB)
      nh_fatal("arena %u at %#lx: bad record (id %u, backing %d)", n, (unsigned long)a->base, a->id, a->backing);
    if (arena_of(set, (void *)a->base) != a || arena_of(set, (void *)(a->base + NH_ARENA_BYTES - 1)) != a)
      nh_fatal("arena %u at %#lx: index does not map its range to it", n, (unsigned long)a->base);
    if (!a->next && a != set->last)
      nh_fatal("arena list: last pointer is stale");
    backing[a->backing]++;
  }
  if (n != set->count)
    nh_fatal("arena list has %u arenas, count says %u", n, set->count);
  for (int b = 0; b < 3; b++)
    if (backing[b] != nh_stat_get(&set->by_backing[b]))
      nh_fatal("arena backing %s: %lu arenas, counter says %lu", nh_backing_name((nh_backing)b),
               (unsigned long)backing[b], (unsigned long)nh_stat_get(&set->by_backing[b]));
  nh_mutex_unlock(&set->lock);
}

NH_API const char *nh_backing_name(nh_backing b) {
  switch (b) {
  case NH_BACKING_SMALL: return "4k";
  case NH_BACKING_THP: return "thp";
  case NH_BACKING_HUGETLB: return "hugetlb";
  }
  return "?";
}
