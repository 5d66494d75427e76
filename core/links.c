/*
 * links.c — disappearing links, bdwgc's weak pointers (GC_general_register_disappearing_link and
 * GC_register_long_link; served to bdwgc programs by gcabi.c).
 *
 * A link is a location, usually a field holding a disguised pointer, that the collector sets to
 * NULL in the first cycle that finds its object unreachable. Two tables, as bdwgc keeps them:
 * short links are cleared before finalizers are decided (a finalizer never sees one to an object
 * that is about to be finalized), long links after finalization has resurrected what it keeps
 * (only an object that no finalizer can bring back clears them). A link that lies inside a heap
 * object that dies is forgotten with it. The specials' pass (special.c) runs both with the world
 * stopped, so a program that reads a link inside GC_call_with_alloc_lock (a no-stop region) sees
 * either the object, which its stack then keeps, or NULL.
 *
 * A table is an array of records, walked once per cycle, with an open-addressing index (linear
 * probing, backward-shift deletion) from the link's address to its record, so that registering,
 * moving and unregistering cost O(1) whatever the number of links (guile keeps one per weak
 * table entry). Removal moves the last record into the hole and repoints its index slot. Both
 * arrays come from metadata and grow by doubling; an outgrown array stays in metadata (as the
 * finalizer tables' do) and is never scanned.
 */
#include <errno.h>

#include "core/heap.h"
#include "core/links.h"
#include "core/mark.h"

/* A record is written a field at a time through general registers: a struct copy would leave
 * the object's address in a vector register, which is scanned when the thread is stopped
 * (special.c's rec_set says why that matters). */
static void rec_set(nh_link_rec *d, uintptr_t link, uintptr_t obj) {
  __atomic_store_n(&d->link, link, __ATOMIC_RELAXED);
  __atomic_store_n(&d->obj, obj, __ATOMIC_RELAXED);
}

static size_t slot_of(const nh_links_t *l, uintptr_t link) {
  return (size_t)(((link >> 3) * 0x9e3779b97f4a7c15ull) >> 17) & (l->icap - 1);
}

/* The index slot that holds link, or the empty slot where it would go. */
static size_t probe(const nh_links_t *l, uintptr_t link) {
  size_t i = slot_of(l, link);
  while (l->index[i] && l->rec[l->index[i] - 1].link != link)
    i = (i + 1) & (l->icap - 1);
  return i;
}

static bool rehash(nh_links_t *l, size_t icap) {
  size_t *index = mem_meta_alloc(&nh_rt.mem, icap * sizeof *index, 64);   /* fresh: zero */
  if (!index)
    return false;
  l->index = index;
  l->icap = icap;
  for (size_t r = 0; r < l->n; r++)
    l->index[probe(l, l->rec[r].link)] = r + 1;
  return true;
}

int links_add(nh_links_t *l, uintptr_t link, uintptr_t obj) {
  if (l->icap) {
    size_t i = probe(l, link);
    if (l->index[i]) {
      l->rec[l->index[i] - 1].obj = obj;
      return 1;
    }
  }
  if ((l->n + 1) * 2 > l->icap && !rehash(l, l->icap ? l->icap * 2 : 128))
    return -ENOMEM;
  nh_link_rec *rec = mem_meta_grow(&nh_rt.mem, l->rec, &l->cap, l->n, sizeof *rec);
  if (!rec)
    return -ENOMEM;
  l->rec = rec;
  rec_set(&l->rec[l->n], link, obj);
  l->index[probe(l, link)] = ++l->n;
  return 0;
}

/* Empties index slot i (backward shift: later entries of its probe run move up), then moves the
 * last record into record r's place. */
static void remove_at(nh_links_t *l, size_t i) {
  size_t r = l->index[i] - 1, mask = l->icap - 1;
  l->index[i] = 0;
  for (size_t j = (i + 1) & mask; l->index[j]; j = (j + 1) & mask) {
    size_t home = slot_of(l, l->rec[l->index[j] - 1].link);
    if (((j - home) & mask) >= ((j - i) & mask)) {   /* home is not in (i, j]: it may move to i */
      l->index[i] = l->index[j];
      l->index[j] = 0;
      i = j;
    }
  }
  if (r != --l->n) {
    rec_set(&l->rec[r], __atomic_load_n(&l->rec[l->n].link, __ATOMIC_RELAXED),
            __atomic_load_n(&l->rec[l->n].obj, __ATOMIC_RELAXED));
    l->index[probe(l, l->rec[r].link)] = r + 1;
  }
}

bool links_remove(nh_links_t *l, uintptr_t link) {
  if (!l->icap)
    return false;
  size_t i = probe(l, link);
  if (!l->index[i])
    return false;
  remove_at(l, i);
  return true;
}

int links_move(nh_links_t *l, uintptr_t link, uintptr_t to) {
  size_t i = l->icap ? probe(l, link) : 0;
  if (!l->icap || !l->index[i])
    return -ENOENT;
  if (to == link)
    return 0;
  if (l->index[probe(l, to)])
    return -EEXIST;
  uintptr_t obj = l->rec[l->index[i] - 1].obj;
  remove_at(l, i);
  return links_add(l, to, obj) < 0 ? -ENOMEM : 0;   /* cannot fail: a record was just freed */
}

size_t links_clear_dead(nh_links_t *l) {
  size_t cleared = 0;
  for (size_t r = 0; r < l->n;) {
    if (mark_state(l->rec[r].obj) == MARK_LIVE) {
      r++;
      continue;
    }
    *(void *volatile *)l->rec[r].link = NULL;
    cleared++;
    remove_at(l, probe(l, l->rec[r].link));   /* the last record comes to r: look at it next */
  }
  return cleared;
}

void links_drop_dangling(nh_links_t *l) {
  for (size_t r = 0; r < l->n;) {
    uintptr_t link = l->rec[r].link;
    if (!span_of(&nh_rt.arenas, (const void *)link) || mark_state(link) == MARK_LIVE)
      r++;   /* outside the heap (globals, malloc memory), or in a live object */
    else
      remove_at(l, probe(l, link));
  }
}

void links_validate(const nh_links_t *l) {
  size_t used = 0;
  for (size_t i = 0; i < l->icap; i++) {
    if (!l->index[i])
      continue;
    used++;
    if (l->index[i] > l->n || probe(l, l->rec[l->index[i] - 1].link) != i)
      nh_fatal("links: index slot %zu holds %zu, which does not lead back to it (%zu records)", i, l->index[i], l->n);
  }
  if (used != l->n)
    nh_fatal("links: %zu index slots for %zu records", used, l->n);
}
