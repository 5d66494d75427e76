/*
 * checkmark.c — the checkmark debug mode (NHEAP_DEBUG=checkmark=1; Go's checkmark mode).
 *
 * After the real mark, a second traversal from the same
 * roots records its marks in side bitmaps (one bit per 8 bytes of each arena, mapped for the
 * check only); any object it reaches that the real mark left white is fatal, with its address,
 * what pointed at it and the word that did (Go's checkmark mode). Go's heap is precise; this one
 * is conservative, and a concurrent mark scans a word once while the program goes on writing:
 * an integer written during the mark that happens to equal the address of a dead object reaches
 * it at termination, and nothing should mark it. So a concurrent mark's setup pause records two
 * more side bitmaps, what is allocated and what is reachable then (the same traversal), and an
 * unmarked object is fatal only if it was reachable at setup or allocated since (what both
 * concurrent modes promise to mark); one that was garbage at setup is doubtful, warned about
 * (three per cycle), fatal only with checkmark=2.
 *
 * The check's traversal is the marker's own (mark.c) with m->checking set: every word it scans
 * comes here (checkmark_word) instead of to the mark bits.
 */
#include <sys/mman.h>

#include "core/error.h"
#include "core/heap.h"

#define CHECK_WORDS (NH_ARENA_BYTES / 8 / 64)   /* one bit per 8 bytes: 1 MiB per arena */

/* Side bitmaps for the arenas that exist now; false (warned) when there is no memory. */
static bool sidemap_make(nh_sidemap_t *sm) {
  uint32_t n = __atomic_load_n(&nh_rt.arenas.count, __ATOMIC_ACQUIRE);
  void *table = mmap(NULL, (size_t)n * sizeof(uint64_t *), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (table == MAP_FAILED) {
    nh_warn("checkmark: no memory for the check bitmaps; cycle not checked");
    return false;
  }
  sm->bits = table;
  sm->narenas = n;
  for (uint32_t i = 0; i < n; i++) {
    void *bits = mmap(NULL, CHECK_WORDS * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    sm->bits[i] = bits == MAP_FAILED ? NULL : bits;   /* an arena without one is not checked */
  }
  return true;
}

static void sidemap_drop(nh_sidemap_t *sm) {
  if (!sm->bits)
    return;
  for (uint32_t i = 0; i < sm->narenas; i++)
    if (sm->bits[i])
      munmap(sm->bits[i], CHECK_WORDS * 8);
  munmap(sm->bits, (size_t)sm->narenas * sizeof(uint64_t *));
  *sm = (nh_sidemap_t){0};
}

/* The word holding obj's bit, and the bit; NULL where the map has no bitmap for its arena. */
static uint64_t *sidemap_word(const nh_sidemap_t *sm, uintptr_t obj, uint64_t *bit) {
  nh_arena_t *a = arena_of(&nh_rt.arenas, (const void *)obj);
  if (!sm->bits || a->id >= sm->narenas || !sm->bits[a->id])
    return NULL;
  size_t i = (obj - a->base) / 8;
  *bit = 1ull << (i % 64);
  return &sm->bits[a->id][i / 64];
}

static bool sidemap_get(const nh_sidemap_t *sm, uintptr_t obj) {
  uint64_t bit, *w = sidemap_word(sm, obj, &bit);
  return w && (*w & bit);
}

/* Object obj of span s, reachable through the word at `at`, was not marked. With the world
 * stopped for the whole mark that is a lost object. After a concurrent mark it is one when
 * obj was reachable at mark setup (the snapshot that both marking modes promise to cover), or
 * when it was allocated since (born marked): anything else was garbage at setup, which the
 * program could not reach, so the word that points at it now was written during the mark
 * and only looks like a pointer (a conservative collector's false pointer: an integer, a
 * stale value). Such an object stays unmarked and is freed, which is right; it is reported as
 * doubtful (fatal with checkmark=2, which tests with pointer-free data use). */
static void check_unmarked(nh_marker_t *m, const nh_span_t *s, uintptr_t obj, uintptr_t at) {
  bool concurrent = m->snap_alloc.bits != NULL;
  bool old = concurrent && sidemap_get(&m->snap_alloc, obj), seen = concurrent && sidemap_get(&m->snap_reach, obj);
  const char *kind = s->kind == NH_KIND_NOSCAN ? "noscan" : s->kind == NH_KIND_TYPED ? "typed" : "conservative";
  const char *when = !concurrent ? "" : seen ? "; it was reachable at mark setup"
                   : old ? "; it was garbage at mark setup (doubtful: a word written during the mark that looks like a pointer?)"
                   : "; it was allocated during the mark (black allocation missed it)";
  if (old && !seen && nh_rt.cfg.dbg.checkmark < 2) {
    if (++m->check_doubtful <= 3)
      nh_warn("checkmark: object %#lx (%lu bytes, %s) is reached from %s at %#lx (the word at %#lx) and "
              "not marked%s", (unsigned long)obj, (unsigned long)span_object_bytes(s), kind, m->check_from,
              (unsigned long)m->check_parent, (unsigned long)at, when);
    return;
  }
  nh_fatal("checkmark: object %#lx (%lu bytes, %s) is reachable from %s at %#lx (the word at %#lx) but the "
           "collector did not mark it%s", (unsigned long)obj, (unsigned long)span_object_bytes(s), kind,
           m->check_from, (unsigned long)m->check_parent, (unsigned long)at, when);
}

void checkmark_word(nh_marker_t *m, uintptr_t at, uintptr_t w) {
  size_t idx;
  nh_span_t *s = mark_find(w, &idx);
  if (!s)
    return;
  uintptr_t obj = span_object_start(s, idx);
  uint64_t bit, *seen = sidemap_word(&m->check, obj, &bit);
  if (!seen || (*seen & bit))
    return;
  *seen |= bit;
  if (!m->snapshotting && !bitmap_get(s->gcmark_bits, idx))
    check_unmarked(m, s, obj, at);
  if (s->kind != NH_KIND_NOSCAN)
    mark_grey(m, obj, s->node);
}

/* The check's traversal from the roots into m->check, the marker's counts left as they were. */
static void check_traverse(nh_marker_t *m, nh_roots_t *r, nh_threads_t *ts) {
  uint64_t marked = m->marked_bytes, objects = m->marked_objects, scanned = m->scanned_bytes;
  uint64_t roots = r->bytes;
  m->checking = true;
  roots_scan(m, r, ts);
  mark_drain(m);   /* the check stops at nothing: a dropped grey object only weakens it */
  m->checking = false;
  m->overflow = false;
  m->marked_bytes = marked, m->marked_objects = objects, m->scanned_bytes = scanned;
  r->bytes = roots;
}

static void note_allocated(nh_marker_t *m, nh_span_t *s) {
  for (size_t i = 0; i < s->nelems; i++) {   /* a large span: one object, in use */
    uint64_t bit, *w = sidemap_word(&m->snap_alloc, span_object_start(s, i), &bit);
    if (w && (span_is_large(s) || bitmap_get(s->alloc_bits, i)))
      *w |= bit;
  }
}

bool mark_check_setup(nh_marker_t *m, nh_roots_t *r, nh_threads_t *ts) {
  sidemap_drop(&m->snap_alloc);
  sidemap_drop(&m->snap_reach);
  if (!sidemap_make(&m->snap_alloc))
    return false;
  if (!sidemap_make(&m->snap_reach)) {
    sidemap_drop(&m->snap_alloc);
    return false;
  }
  mark_each_span(m, note_allocated);   /* the caches were flushed: the allocation bits are exact */
  /* What is reachable, as checkmark's traversal at termination will see it then. */
  m->check = m->snap_reach;
  m->snapshotting = true;
  check_traverse(m, r, ts);
  m->snapshotting = false;
  m->snap_reach = m->check;
  m->check = (nh_sidemap_t){0};
  return true;
}

void mark_check(nh_marker_t *m, nh_roots_t *r, nh_threads_t *ts) {
  if (sidemap_make(&m->check)) {
    m->check_doubtful = 0;
    check_traverse(m, r, ts);
    if (m->check_doubtful > 3)
      nh_warn("checkmark: %llu doubtful objects in this cycle (3 shown)", (unsigned long long)m->check_doubtful);
    sidemap_drop(&m->check);
  }
  sidemap_drop(&m->snap_alloc);
  sidemap_drop(&m->snap_reach);
}
