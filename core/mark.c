/*
 * mark.c — tri-colour marking (Go's gcDrain/greyobject/scanobject), with the world stopped or
 * concurrently (cycle.c runs the phases); the write barrier that feeds it is barrier.c, the
 * roots roots.c's, the checkmark debug mode checkmark.c's.
 *
 * Colours: white = mark bit clear; grey = mark bit set and the object on the grey stack;
 * black = mark bit set and scanned. A candidate word w becomes a mark when
 *   w lies in an arena (arena index), in a page of an in-use span (span map), inside
 *   [base, limit), and the object it points into (interior pointers count: index by reciprocal
 *   multiply) is allocated (alloc bit; exact because the per-CPU caches were flushed and every
 *   span swept before marking) and not yet marked.
 * noscan objects turn black at once; the others are pushed. Conservative objects are scanned
 * word by word; typed ones only at the words their type's bitmap names (its header word holds
 * the type). Objects larger than 128 KiB are
 * scanned in oblets of 128 KiB (Go's maxObletBytes): scanning the object's base pushes the
 * other oblets, so no single scan step is unbounded and the grey stack stays shallow.
 *
 * Concurrent marking: several markers (the collector thread, the mark workers) each keep a
 * grey stack and hand full blocks to a shared list (nh_markwork_t, Go's work.full), from which
 * a marker that runs dry takes; mark bits are set with an atomic OR (markers, the barrier and
 * black allocation race on the same words). The barrier buffers overwritten values per thread
 * (512, Go's wbBuf) and shades a full buffer itself: marks the objects and shares the new grey
 * ones as a block. Termination is cycle.c's: no shared block, no marker draining, and every
 * buffer shaded with the world stopped. The grey stacks, the shared blocks and their NUMA
 * policy are greystack.c's; what happens when blocks run out (overflow recovery) is here.
 *
 * The write barrier's atomicity (barrier.c; a departure from Go, which relies on safe points): a thread
 * stopped for mark setup between nh_store's flag test and its store would store without
 * shading after the restart. nh_store is therefore a restartable sequence (nheap.h): the
 * stop signal aborts it and it tests the flag again. Its slow path, the buffer, black
 * allocation's mark and nh_memmove_ptrs run in no-stop regions, so mark termination never
 * falls between a shade and its store. Mark termination also rescans the stacks (Go does not
 * need to), for the object a thread took but had not marked yet when it was stopped.
 *
 * Overflow: a grey object dropped for want of metadata memory (greystack.c) keeps its mark bit;
 * after the stack drains, with the world stopped, every marked object of a scanned kind is
 * scanned in place, span by span, with a drain after each, until a round ends without
 * overflow (bdwgc's mark-stack overflow recovery). Only newly marked objects are pushed, so
 * each round that overflows has marked more, and rounds end; the collector's marker keeps one
 * block in reserve for them (stats: gc_mark_overflows). No recursion anywhere.
 *
 * The mark loop is memory-bound (reference/machine.md: a dependent load costs 170-470 ns on
 * this VM, eight independent ones 22-54 ns each), so the drain keeps misses in flight at two
 * places. Objects: a popped object is prefetched and queued, and the oldest of up to eight is
 * scanned. Words: one that points into another span than the scanned object's waits in a
 * pipeline of eight (pipe_word) while that span's first line and its object's bitmap lines are
 * fetched; it is marked once eight more such words came, or one more object was scanned, or
 * before the drain looks for work beyond its own stack (the pipeline may hold it), and always
 * before the drain returns, so no word waits where the termination check cannot see it. On a
 * 256 MiB heap of 64-byte objects in random order this took the mark from 125-140 to 57-75 ns
 * per object (1.9x; nheap-mark-rate, same runs). Words into the scanned object's own span
 * (cached already) are marked at once: a heap laid out in the order it is linked (a tree
 * built depth first) has 1% of its words going elsewhere, and there the pipeline costs 4.5%
 * of the mark's time (binary-trees with gc = stw, 100 marks).
 *
 * Roots are roots.c's (stacks, data segments, registered ranges; it scans them with
 * mark_range); the checkmark debug mode is checkmark.c's (it sees each scanned word through
 * checkmark_word while m->checking).
 */
#include <errno.h>
#include <string.h>

#include "core/error.h"
#include "core/greystack.h"
#include "core/heap.h"
#include "core/vg.h"

#define OBLET_BYTES ((uintptr_t)128 << 10)

/* ---------------------------------------------------------------------------------------------
 * Finding and marking objects.
 * ------------------------------------------------------------------------------------------- */

/* Whether address w lies in an allocated object of span s; its index in *idx. */
static inline bool allocated_in(const nh_span_t *s, uintptr_t w, size_t *idx) {
  if (w < s->base || w >= s->limit)
    return false;
  if (span_is_large(s)) {
    *idx = 0;
    return true;
  }
  *idx = span_obj_index(s, w);
  return bitmap_get(s->alloc_bits, *idx);   /* a free object: a stale pointer, not a reference */
}

/* The allocated object holding address w: its span and index, or NULL. */
static inline nh_span_t *find_object(uintptr_t w, size_t *idx) {
  nh_arena_t *a = arena_of(&nh_rt.arenas, (const void *)w);
  nh_span_t *s = a ? a->spans[(w & (NH_ARENA_BYTES - 1)) >> NH_PAGE_SHIFT] : NULL;
  return s && allocated_in(s, w, idx) ? s : NULL;
}

/* Sets the mark bit of object idx of s; true if this call set it (atomically: concurrent
 * markers, the barrier and black allocation set bits in the same words). */
static inline bool set_mark(nh_span_t *s, size_t idx) {
  uint64_t bit = 1ull << (idx % 64), *word = &s->gcmark_bits[idx / 64];
  return !(__atomic_load_n(word, __ATOMIC_RELAXED) & bit) && !(__atomic_fetch_or(word, bit, __ATOMIC_RELAXED) & bit);
}

static inline uintptr_t object_start(const nh_span_t *s, size_t idx) { return span_object_start(s, idx); }
static inline uintptr_t object_bytes(const nh_span_t *s) { return span_object_bytes(s); }

/* Marks object idx of s, found allocated; grey unless noscan. */
static inline __attribute__((always_inline)) void mark_found(nh_marker_t *m, nh_span_t *s, size_t idx) {
  if (m->shared) {
    if (!set_mark(s, idx))
      return;
  } else {   /* the only marker, with the world stopped */
    uint64_t bit = 1ull << (idx % 64), *word = &s->gcmark_bits[idx / 64];
    if (*word & bit)
      return;
    *word |= bit;
  }
  m->marked_objects++;
  m->marked_bytes += object_bytes(s);
  if (s->kind != NH_KIND_NOSCAN)
    grey_push(m, object_start(s, idx), s->node);
}

static inline void mark_word(nh_marker_t *m, uintptr_t w) {
  size_t idx;
  nh_span_t *s = find_object(w, &idx);
  if (s)
    mark_found(m, s, idx);
}

/* The pipeline (drain's scans only): a word that points into a span's pages waits PIPE words
 * while the span's first line and the lines of its object's bitmap words are fetched, so
 * those misses overlap (on a heap in random order they were most of the mark's time). The
 * bitmap word is found without the span, from the page's info word (arena.h), in both of
 * the span's bitmaps (which is the alloc one this cycle is in the span: not known yet). */
enum { PIPE = sizeof(((nh_marker_t *)0)->pipe) / sizeof(((nh_marker_t *)0)->pipe[0]) };

/* The oldest word of the pipeline, whose span's lines are cached by now: marked as mark_word
 * would. */
static inline __attribute__((always_inline)) void pipe_mark_oldest(nh_marker_t *m) {
  uint32_t at = m->pipe_head++ % PIPE;
  size_t idx;
  if (allocated_in(m->pipe[at].s, m->pipe[at].w, &idx))
    mark_found(m, m->pipe[at].s, idx);
}

/* Word w points into span s (not the scanned object's): its lines fetched, and it waits. */
static nh_noinline void pipe_enqueue(nh_marker_t *m, uintptr_t w, nh_span_t *s, uint32_t info) {
  size_t word = info ? (((size_t)pageinfo_page(info) << NH_PAGE_SHIFT) + (w & (NH_PAGE_SIZE - 1))) *
                               nh_class_to_divmagic[pageinfo_sizeclass(info)] >> 32 >> 6 & (NH_SPAN_BITMAP_WORDS - 1)
                     : 0;
  __builtin_prefetch(s);
  __builtin_prefetch(&s->bitmaps[0][word]);
  __builtin_prefetch(&s->bitmaps[1][word]);
  if (m->pipe_tail - m->pipe_head == PIPE)
    pipe_mark_oldest(m);
  uint32_t at = m->pipe_tail++ % PIPE;
  m->pipe[at].w = w;
  m->pipe[at].s = s;
}

static inline __attribute__((always_inline)) void pipe_word(nh_marker_t *m, uintptr_t w) {
  nh_arena_t *a = arena_of(&nh_rt.arenas, (const void *)w);
  if (!a)
    return;
  size_t pg = (w & (NH_ARENA_BYTES - 1)) >> NH_PAGE_SHIFT, idx;
  nh_span_t *s = a->spans[pg];
  if (!s)
    return;
  if (s != m->scanning)
    pipe_enqueue(m, w, s, a->pageinfo[pg]);
  else if (allocated_in(s, w, &idx))   /* its lines are cached: no wait */
    mark_found(m, s, idx);
}

/* Every word in the pipeline marked (which may push grey objects). */
static void pipe_flush(nh_marker_t *m) {
  while (m->pipe_head != m->pipe_tail)
    pipe_mark_oldest(m);
}

/* Conservative scanning reads whole stacks and data segments, redzones included: not a bug
 * for AddressSanitizer to report; nor, for ThreadSanitizer, the words nheap's own threads
 * update in the data segments meanwhile (NH_NO_SANITIZE_THREAD). */
static inline NH_NO_SANITIZE_ADDRESS NH_NO_SANITIZE_THREAD void scan_range(nh_marker_t *m, uintptr_t lo, uintptr_t hi) {
  lo = nh_align_up(lo, sizeof(uintptr_t));
  m->scanned_bytes += hi > lo ? hi - lo : 0;
  if (nh_unlikely(nh_valgrind)) {   /* vg.h: memcheck sees each word as defined */
    for (uintptr_t p = lo; p + sizeof(uintptr_t) <= hi; p += sizeof(uintptr_t)) {
      uintptr_t w = vg_defined(*(const uintptr_t *)p);
      if (m->checking)
        checkmark_word(m, p, w);
      else
        mark_word(m, w);
    }
    return;
  }
  if (nh_unlikely(m->checking)) {
    for (uintptr_t p = lo; p + sizeof(uintptr_t) <= hi; p += sizeof(uintptr_t))
      checkmark_word(m, p, *(const uintptr_t *)p);
    return;
  }
  if (m->piped) {
    for (uintptr_t p = lo; p + sizeof(uintptr_t) <= hi; p += sizeof(uintptr_t))
      pipe_word(m, *(const uintptr_t *)p);
    return;
  }
  for (uintptr_t p = lo; p + sizeof(uintptr_t) <= hi; p += sizeof(uintptr_t))
    mark_word(m, *(const uintptr_t *)p);
}

/* The pointer words of [lo, hi) inside typed object `start` (small, or a large object's oblet):
 * the type's bitmap repeated over the array after the header. A zero header (a cycle that
 * caught the object between allocation and its header store) has nothing to follow. */
static NH_NO_SANITIZE_ADDRESS void scan_typed(nh_marker_t *m, uintptr_t start, uintptr_t lo, uintptr_t hi) {
  /* The header names a type only in a live object: a free one, one freed explicitly (its
   * first word cleared) or one a cache holds unused may hold anything there (heap_type_of). */
  const nh_type *t = heap_type_of(__atomic_load_n((const uintptr_t *)start, __ATOMIC_ACQUIRE));
  uintptr_t data = start + NH_TYPED_HEADER;
  if (!t || hi <= data)
    return;
  if (lo < data)
    lo = data;
  m->scanned_bytes += hi - lo;
  for (uintptr_t e = data + (lo - data) / t->size * t->size; e < hi; e += t->size) {
    for (uint32_t w = 0; w < (t->nwords + 63) / 64; w++) {
      for (uint64_t bits = t->bits[w]; bits; bits &= bits - 1) {
        uintptr_t slot = e + (w * 64 + (uintptr_t)__builtin_ctzll(bits)) * 8;
        if (slot < lo || slot + 8 > hi)
          continue;
        uintptr_t v = *(const uintptr_t *)slot;
        if (nh_unlikely(nh_valgrind))
          v = vg_defined(v);
        if (nh_unlikely(m->checking))
          checkmark_word(m, slot, v);
        else
          mark_word(m, v);
      }
    }
  }
}

/* Scans [b, end) of span s: object b (a small object, or a large object's oblet). */
static void scan_part(nh_marker_t *m, const nh_span_t *s, uintptr_t b, uintptr_t end) {
  m->check_from = "object";
  m->check_parent = b;
  uint64_t before = m->scanned_bytes;
  m->scanning = s;
  if (s->kind == NH_KIND_TYPED)
    scan_typed(m, span_is_large(s) ? s->base : b, b, end);
  else
    scan_range(m, b, end);
  if (nh_likely(!m->checking)) {
    if (s->node == m->node)
      m->scanned_local += m->scanned_bytes - before;
    else
      m->scanned_remote += m->scanned_bytes - before;
  }
}

static inline uintptr_t oblet_end(const nh_span_t *s, uintptr_t o) {
  return o + OBLET_BYTES < s->limit ? o + OBLET_BYTES : s->limit;
}

/* Scans grey object (or oblet) b. A concurrent mark may find b's span gone or reused (a free
 * that raced the mark's start, malloc.c): nothing to scan then, or the object now there. */
static void scan_object(nh_marker_t *m, uintptr_t b) {
  nh_span_t *s = span_of(&nh_rt.arenas, (const void *)b);
  if (nh_unlikely(!s || b < s->base || b >= s->limit))
    return;
  if (span_is_large(s)) {
    if (b == s->base && s->limit - s->base > OBLET_BYTES)
      for (uintptr_t o = b + OBLET_BYTES; o < s->limit; o += OBLET_BYTES)
        grey_push(m, o, s->node);
    scan_part(m, s, b, oblet_end(s, b));
  } else {
    b = object_start(s, span_obj_index(s, b));
    scan_part(m, s, b, b + s->elemsize);
  }
}

/* Scans grey objects until none is left, or until about budget more bytes were scanned. */
static void drain(nh_marker_t *m, uint64_t budget) {
  enum { FIFO = 8 };
  uintptr_t fifo[FIFO];
  unsigned head = 0, n = 0;
  uint64_t until = budget > UINT64_MAX - m->scanned_bytes ? UINT64_MAX : m->scanned_bytes + budget;
  m->piped = !m->checking && !nh_valgrind;
  for (;;) {
    uintptr_t b;
    if (n < FIFO && m->scanned_bytes < until) {
      /* This marker's stack is empty: waiting words may hold work; mark them before looking elsewhere. */
      if (nh_unlikely(!m->cur || !m->cur->n) && m->pipe_head != m->pipe_tail) {
        pipe_flush(m);
        continue;
      }
      if (grey_pop(m, &b)) {
        __builtin_prefetch((const void *)b);
        fifo[(head + n++) % FIFO] = b;
        continue;
      }
    }
    if (n == 0) {
      if (m->pipe_head == m->pipe_tail)
        break;
      pipe_flush(m);
      continue;
    }
    b = fifo[head];
    head = (head + 1) % FIFO;
    n--;
    scan_object(m, b);
    if (m->pipe_head != m->pipe_tail)   /* no word waits longer than PIPE objects' scans */
      pipe_mark_oldest(m);
  }
  m->piped = false;
}

/* fn(m, s) for every span in use, once (at its first page), under the arenas lock; with the
 * world stopped. */
static void each_span(nh_marker_t *m, void (*fn)(nh_marker_t *m, nh_span_t *s)) {
  nh_mutex_lock(&nh_rt.arenas.lock);
  for (nh_arena_t *a = nh_rt.arenas.first; a; a = a->next) {
    for (size_t pg = 0; pg < NH_PAGES_PER_ARENA; pg++) {
      nh_span_t *s = a->spans[pg];
      if (!s || s->pages != a->base + pg * NH_PAGE_SIZE)
        continue;
      fn(m, s);
      pg += s->npages - 1;
    }
  }
  nh_mutex_unlock(&nh_rt.arenas.lock);
}

static struct {
  uintptr_t *out;
  size_t cap, n;
} leaks;   /* mark_leaks' findings: one collector, world stopped */

static void span_leaks(nh_marker_t *m, nh_span_t *s) {
  (void)m;
  for (size_t i = 0; i < s->nelems; i++) {
    if ((!span_is_large(s) && !bitmap_get(s->alloc_bits, i)) || bitmap_get(s->gcmark_bits, i))
      continue;
    bitmap_set(s->gcmark_bits, i);
    if (leaks.n < leaks.cap)
      leaks.out[leaks.n] = object_start(s, i);
    leaks.n++;
  }
}

size_t mark_leaks(nh_marker_t *m, uintptr_t *out, size_t cap) {
  leaks.out = out;
  leaks.cap = cap;
  leaks.n = 0;
  each_span(m, span_leaks);
  return leaks.n;
}

nh_span_t *mark_find(uintptr_t w, size_t *idx) { return find_object(w, idx); }
void mark_grey(nh_marker_t *m, uintptr_t obj, int node) { grey_push(m, obj, node); }
void mark_drain(nh_marker_t *m) { drain(m, UINT64_MAX); }
void mark_each_span(nh_marker_t *m, void (*fn)(nh_marker_t *m, nh_span_t *s)) { each_span(m, fn); }

/* Overflow recovery (bdwgc's GC_mark_some after a mark-stack overflow): every marked object of
 * a scanned kind in span s is scanned in place, and the grey stack drained after each. A push
 * follows a new mark, so only objects this round marks are pushed, and the stack holds what
 * one object's scan and its drain need, not every marked object (pushing them all, as before,
 * overflowed again every round once the heap held more marked objects than the stack could:
 * with the world stopped, for ever). */
static void rescan_span(nh_marker_t *m, nh_span_t *s) {
  if (s->kind == NH_KIND_NOSCAN)
    return;
  if (span_is_large(s)) {
    if (bitmap_get(s->gcmark_bits, 0))
      for (uintptr_t o = s->base; o < s->limit; o += OBLET_BYTES) {
        scan_part(m, s, o, oblet_end(s, o));
        drain(m, UINT64_MAX);
      }
    return;
  }
  for (size_t w = 0; w < (s->nelems + 63u) / 64; w++)
    for (uint64_t bits = s->gcmark_bits[w]; bits; bits &= bits - 1) {
      uintptr_t o = object_start(s, w * 64 + (size_t)__builtin_ctzll(bits));
      scan_part(m, s, o, o + s->elemsize);
      drain(m, UINT64_MAX);
    }
}

/* Drains m (world stopped, m not shared), then recovers from overflow. A round that overflows
 * again has marked at least one object the round before had not (the dropped push's), so
 * rounds end; the marker's reserve block (mark_reserve) gives every drain room for a block of
 * grey objects even when metadata cannot grow at all, so in practice one or two rounds do. */
static void drain_all(nh_marker_t *m) {
  drain(m, UINT64_MAX);
  while (m->overflow) {
    m->overflow = false;
    m->overflow_rounds++;
    each_span(m, rescan_span);
  }
}

/* A new mark's marker: counts cleared, on the calling thread's node; with w, a concurrent mark
 * whose full blocks go to w (its counts cleared too). */
void mark_begin(nh_marker_t *m, nh_markwork_t *w) {
  m->marked_bytes = m->marked_objects = m->scanned_bytes = 0;
  m->scanned_local = m->scanned_remote = m->steals = 0;
  m->overflow = false;
  m->overflow_rounds = 0;
  m->checking = false;
  m->node = heap_current_node();
  m->shared = w;
  if (w) {
    w->marked_bytes = w->marked_objects = w->scanned_bytes = 0;
    w->scanned_local = w->scanned_remote = w->steals = 0;
    w->overflow = false;
  }
}

int mark_reserve(nh_marker_t *m) {
  m->keeps_reserve = true;
  if (!m->reserve && !(m->reserve = grey_meta_block()))
    return -ENOMEM;
  return 0;
}

void mark_drain_all(nh_marker_t *m) { drain_all(m); }

void mark_range(nh_marker_t *m, uintptr_t lo, uintptr_t hi) { scan_range(m, lo, hi); }

/* ---------------------------------------------------------------------------------------------
 * Concurrent marking (cycle.c runs the phases).
 * ------------------------------------------------------------------------------------------- */

void mark_publish(nh_marker_t *m) { grey_publish(m); }

bool mark_drain_shared(nh_marker_t *m, uint64_t budget) {
  uint64_t before = m->scanned_bytes;
  drain(m, budget);
  if (m->overflow) {   /* the shared flag is the cycle's; a worker's marker lives on */
    __atomic_store_n(&m->shared->overflow, true, __ATOMIC_RELAXED);
    m->overflow = false;
  }
  return m->scanned_bytes - before >= budget;
}

/* Gives m's grey blocks to the shared list: no work may wait where the other markers and the
 * termination check cannot see it. */
void mark_give_back(nh_marker_t *m) {
  for (nh_workbuf_t *f = m->full, *next; f; f = next) {
    next = f->next;
    grey_share_block(m->shared, f, m->node);
  }
  m->full = NULL;
  grey_publish(m);
}

/* The words in [a, b) of object start (a small object's start, or a large span's base) of
 * span s, scanned as its kind says. */
static void scan_piece(nh_marker_t *m, const nh_span_t *s, uintptr_t start, uintptr_t a, uintptr_t b) {
  m->check_from = "a written page";
  m->check_parent = start;
  if (s->kind == NH_KIND_TYPED)
    scan_typed(m, start, a, b);
  else
    scan_range(m, a, b);
}

void mark_rescan_dirty(nh_marker_t *m, uintptr_t lo, uintptr_t hi) {
  while (lo < hi) {
    nh_span_t *s = span_of(&nh_rt.arenas, (const void *)lo);
    uintptr_t next = nh_align_up(lo + 1, NH_PAGE_SIZE);
    if (s) {
      uintptr_t span_end = s->pages + (uintptr_t)s->npages * NH_PAGE_SIZE;
      next = span_end;
      uintptr_t a = lo > s->base ? lo : s->base, b = hi < s->limit ? hi : s->limit;
      if (s->kind != NH_KIND_NOSCAN && a < b) {
        if (span_is_large(s)) {
          if (__atomic_load_n(&s->gcmark_bits[0], __ATOMIC_RELAXED) & 1)
            scan_piece(m, s, s->base, a, b);
        } else {
          for (size_t i = span_obj_index(s, a), last = span_obj_index(s, b - 1); i <= last; i++) {
            if (!(__atomic_load_n(&s->gcmark_bits[i / 64], __ATOMIC_RELAXED) >> (i % 64) & 1))
              continue;   /* white: scanned whole if it is ever marked */
            uintptr_t o = object_start(s, i), e = o + s->elemsize;
            scan_piece(m, s, o, a > o ? a : o, b < e ? b : e);
          }
        }
      }
    }
    lo = next;
  }
}

/* A mark assist (Go's gcAssistAlloc): an allocating thread scans about budget bytes of grey
 * objects, from the shared blocks, with a marker of its own that gives every block back
 * before it returns (grey ones to the shared list, empty ones to its spares), so no work is
 * left where the termination check cannot see it. Returns the bytes scanned. The caller is
 * in a no-stop region and counted as a busy marker. */
size_t mark_assist(nh_markwork_t *w, size_t budget) {
  nh_marker_t m;
  memset(&m, 0, sizeof m);
  m.shared = m.pool = w;
  m.node = heap_current_node();
  uintptr_t b;
  while (m.scanned_bytes < budget && grey_pop(&m, &b))
    scan_object(&m, b);
  mark_give_back(&m);
  if (m.cur) {   /* empty now */
    m.cur->next = m.spare;
    m.spare = m.cur;
  }
  if (m.spare) {
    nh_workbuf_t *last = m.spare;
    while (last->next)
      last = last->next;
    nh_mutex_lock(&w->lock);
    last->next = w->spare;
    w->spare = m.spare;
    nh_mutex_unlock(&w->lock);
  }
  if (m.overflow)
    __atomic_store_n(&w->overflow, true, __ATOMIC_RELAXED);
  size_t scanned = m.scanned_bytes;
  mark_report(&m);
  return scanned;
}

void mark_report(nh_marker_t *m) {
  nh_markwork_t *w = m->shared;
  __atomic_add_fetch(&w->marked_bytes, m->marked_bytes, __ATOMIC_RELAXED);
  __atomic_add_fetch(&w->marked_objects, m->marked_objects, __ATOMIC_RELAXED);
  __atomic_add_fetch(&w->scanned_bytes, m->scanned_bytes, __ATOMIC_RELAXED);
  __atomic_add_fetch(&w->scanned_local, m->scanned_local, __ATOMIC_RELAXED);
  __atomic_add_fetch(&w->scanned_remote, m->scanned_remote, __ATOMIC_RELAXED);
  __atomic_add_fetch(&w->steals, m->steals, __ATOMIC_RELAXED);
  m->marked_bytes = m->marked_objects = m->scanned_bytes = 0;
  m->scanned_local = m->scanned_remote = m->steals = 0;
}

void mark_finish(nh_marker_t *m) {
  nh_markwork_t *w = m->shared;
  m->shared = NULL;
  m->overflow = m->overflow || w->overflow;
  drain_all(m);   /* overflow recovery, in the pause: only after metadata ran out */
  m->marked_bytes += __atomic_load_n(&w->marked_bytes, __ATOMIC_RELAXED);
  m->marked_objects += __atomic_load_n(&w->marked_objects, __ATOMIC_RELAXED);
  m->scanned_bytes += __atomic_load_n(&w->scanned_bytes, __ATOMIC_RELAXED);
  m->scanned_local += __atomic_load_n(&w->scanned_local, __ATOMIC_RELAXED);
  m->scanned_remote += __atomic_load_n(&w->scanned_remote, __ATOMIC_RELAXED);
  m->steals += __atomic_load_n(&w->steals, __ATOMIC_RELAXED);
}

static void count_marked(nh_markwork_t *w, const nh_span_t *s) {
  __atomic_add_fetch(&w->marked_bytes, object_bytes(s), __ATOMIC_RELAXED);
  __atomic_add_fetch(&w->marked_objects, 1, __ATOMIC_RELAXED);
}

void mark_shade_batch(nh_markwork_t *w, uintptr_t *v, size_t n) {
  size_t grey = 0;
  for (size_t i = 0; i < n; i++) {
    size_t idx;
    nh_span_t *s = find_object(v[i], &idx);
    if (!s || !set_mark(s, idx))
      continue;
    count_marked(w, s);
    if (s->kind != NH_KIND_NOSCAN)
      v[grey++] = object_start(s, idx);
  }
  while (grey) {   /* the new grey objects, as a block of their own */
    nh_mutex_lock(&w->lock);
    nh_workbuf_t *b = w->spare;
    if (b)
      w->spare = b->next;
    nh_mutex_unlock(&w->lock);
    if (!b && !(b = grey_meta_block())) {
      __atomic_store_n(&w->overflow, true, __ATOMIC_RELAXED);   /* marked, rescanned later */
      return;
    }
    b->n = grey < NH_WORKBUF_CAP ? grey : NH_WORKBUF_CAP;
    memcpy(b->obj, v + grey - b->n, b->n * sizeof *v);
    grey -= b->n;
    grey_share_block(w, b, heap_current_node());   /* the shading thread's node: its likeliest */
  }
}

void mark_new_object(nh_markwork_t *w, uintptr_t p) {
  nh_span_t *s = span_of(&nh_rt.arenas, (const void *)p);
  if (s && set_mark(s, span_is_large(s) ? 0 : span_obj_index(s, p)))
    count_marked(w, s);
}

void mark_new_counted(nh_markwork_t *w, size_t bytes, size_t objects) {
  __atomic_add_fetch(&w->marked_bytes, bytes, __ATOMIC_RELAXED);
  __atomic_add_fetch(&w->marked_objects, objects, __ATOMIC_RELAXED);
}

void mark_flush_wbufs(nh_markwork_t *w, nh_threads_t *ts) {
  for (nh_thread_t *t = ts->first; t; t = t->next) {
    mark_shade_batch(w, t->wbuf, t->wbn);
    t->wbn = 0;
  }
}

bool mark_work_left(nh_markwork_t *w) {
  nh_mutex_lock(&w->lock);
  bool left = w->nfull || w->busy;
  nh_mutex_unlock(&w->lock);
  return left;
}

void mark_referents(nh_marker_t *m, uintptr_t obj) {
  size_t idx;
  nh_span_t *s = find_object(obj, &idx);
  if (s && s->kind != NH_KIND_NOSCAN)
    scan_object(m, object_start(s, idx));
}

/* As mark_referents, but a word of obj that points into obj itself does not count: the words
 * go through a copy with those zeroed (a typed object is then scanned conservatively: it keeps
 * more, never less). Before any drain, so obj cannot have been reached another way meanwhile. */
NH_NO_SANITIZE_ADDRESS void mark_referents_except_self(nh_marker_t *m, uintptr_t obj) {
  size_t idx;
  nh_span_t *s = find_object(obj, &idx);
  if (!s || s->kind == NH_KIND_NOSCAN)
    return;
  uintptr_t b = object_start(s, idx), e = b + object_bytes(s), buf[256];
  for (uintptr_t p = b; p < e; p += sizeof buf) {
    size_t n = (e - p < sizeof buf ? e - p : sizeof buf) / sizeof *buf;
    for (size_t i = 0; i < n; i++) {
      uintptr_t w = ((const uintptr_t *)p)[i];
      buf[i] = w >= b && w < e ? 0 : w;
    }
    scan_range(m, (uintptr_t)buf, (uintptr_t)(buf + n));
  }
}

void mark_root_word(nh_marker_t *m, uintptr_t w) { mark_word(m, w); }

int mark_state(uintptr_t obj) {
  size_t idx;
  nh_span_t *s = find_object(obj, &idx);
  return !s ? MARK_GONE : bitmap_get(s->gcmark_bits, idx) ? MARK_LIVE : MARK_DEAD;
}

void mark_resurrect(nh_marker_t *m, uintptr_t obj) {
  size_t idx;
  nh_span_t *s = find_object(obj, &idx);
  if (!s || bitmap_get(s->gcmark_bits, idx))
    return;
  bitmap_set(s->gcmark_bits, idx);
  m->marked_objects++;
  m->marked_bytes += object_bytes(s);
}


void mark_validate_done(const nh_marker_t *m, nh_markwork_t *w) {
  if (m->cur && m->cur->n)
    nh_fatal("mark termination: %zu grey objects left on the collector's stack", m->cur->n);
  if (m->full)
    nh_fatal("mark termination: grey blocks left on the collector's stack");
  for (int n = 0; n < NH_MAX_NODES; n++)
    if (m->out[n] && m->out[n]->n)
      nh_fatal("mark termination: %zu grey objects of node %d not handed on", m->out[n]->n, n);
  if (!w)
    return;
  nh_mutex_lock(&w->lock);
  size_t blocks = 0;
  for (int n = 0; n < NH_MAX_NODES; n++)
    for (nh_workbuf_t *b = w->full[n]; b; b = b->next)
      blocks++;
  if (blocks || w->nfull || w->busy)
    nh_fatal("mark termination: %zu shared grey blocks (count %zu), %u markers still draining", blocks, w->nfull,
             w->busy);
  nh_mutex_unlock(&w->lock);
  if (m->marked_objects && !m->marked_bytes)
    nh_fatal("mark termination: %llu objects marked, 0 bytes", (unsigned long long)m->marked_objects);
}
