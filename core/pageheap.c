/*
 * pageheap.c — the page heap (Go's mheap page allocator) of one NUMA node.
 *
 * Structures
 *   The unit is the 8 KiB page; 8192 pages make an arena. Each arena of this node carries an
 *   nh_arena_pages_t in metadata: an in-use bitmap (alloc), a released bitmap (scav) and
 *   free-run summaries at two levels (the page -> span map lives in the arena record itself,
 *   one load away from the arena index), as the leaves and the level above
 *   of Go's radix summary tree:
 *     chunk summary  for each 512-page (4 MiB) chunk: free pages at its start, the longest free
 *                    run anywhere in it, free pages at its end (Go's pallocSum);
 *     arena summary  the same three numbers for the whole arena, merged from its 16 chunks.
 *   The node's arenas are kept in address order (by_addr); runs continue across the boundary of
 *   two arenas only when they are address-contiguous.
 *
 * Allocation (pageheap_alloc, under ph->lock): address-ordered first fit, as Go's.
 *   1. Walk arenas from `search` (no free page lies below it), carrying the free run that ends
 *      at the current position. An arena whose start joins the carried run to n pages, or
 *      whose max is >= n, is looked into; any other arena is passed in O(1) using its summary.
 *   2. Inside an arena, the same walk over its 16 chunk summaries; inside a chunk whose max is
 *      >= n, a scan of its 8 bitmap words finds the first run.
 *   3. No fit: grow by ceil(n / 8192) new contiguous arenas (arena_create_run) and retry; they
 *      arrive committed and released (scav = 1), as Go counts fresh memory.
 *   4. Mark the pages in use, update the touched chunk summaries and the arena summary. Pages
 *      that were released come back Ready (mem_use) and read as zero; if any page of the run
 *      was not released, the caller must zero what it needs (needzero).
 * Free (pageheap_free): clear the in-use bits and update the summaries. Coalescing is implicit
 * in the bitmap: neighbouring free pages form one run for the next search.
 *
 * Why this and not Go's five-level tree over the whole address space: with 64 MiB arenas the
 * two levels above cover a heap of N GiB with 16*N arena summaries; a search passes an arena
 * in one comparison. The search pointer keeps the common case (the lowest free page) O(1).
 * Measured in bench/ (pageheap/alloc_free).
 *
 * Scavenging and prefaulting, the page heap's traffic with the OS: pageos.c.
 *
 * Recently freed spans: a freed span of up to 64 pages (512 KiB) is kept whole, up to 8 of them,
 * with its pages still marked in use but out of the span map; the next span of exactly that
 * length takes it back with one lock and no search (large objects freed and allocated again,
 * mcentral spans that come and go). The scavenger drops them before it releases memory, and
 * the stats count their pages as free.
 *
 * Locking: ph->lock (LOCK_RANK_PAGEHEAP) guards the bitmaps, summaries, by_addr and search.
 * spans[] entries are written under it with release stores and read lock-free (span_of).
 * The page counts that nh_stats_read adds up (total, in use, released) change under it too,
 * inside pageheap_stat_begin/end: a seqlock, so that a reader on another thread takes all three
 * from one moment (pageheap_counts) and in use + free + released = mapped holds in every
 * snapshot; the writer pays two stores.
 */
#include <errno.h>
#include <string.h>

#include "core/error.h"
#include "core/pageheap.h"
#include "core/pagebits.h"

/* A prefault pass is asked for when the prefaulted pages left drop below half the reserve. */
enum { PREFAULT_LOW_PAGES = NH_PREFAULT_AHEAD / 2 / NH_PAGE_SIZE };

/* ---------------------------------------------------------------------------------------------
 * Bitmaps and summaries.
 * ------------------------------------------------------------------------------------------- */

typedef struct run_sum { size_t start, max, end; } run_sum;

static uint32_t pack_chunk(run_sum s) { return (uint32_t)(s.start | s.max << 10 | s.end << 20); }
static run_sum unpack_chunk(uint32_t v) { return (run_sum){v & 1023, (v >> 10) & 1023, (v >> 20) & 1023}; }
static uint64_t pack_arena(run_sum s) { return s.start | (uint64_t)s.max << 14 | (uint64_t)s.end << 28; }
static run_sum unpack_arena(uint64_t v) { return (run_sum){v & 16383, (v >> 14) & 16383, (v >> 28) & 16383}; }

/* First page >= i and < limit whose bit equals `want`, or limit. */
static size_t next_bit(const uint64_t *bm, size_t i, size_t limit, bool want) {
  while (i < limit) {
    uint64_t w = want ? bm[i / 64] : ~bm[i / 64];
    w >>= i % 64;
    if (w)
      return i + (size_t)__builtin_ctzll(w) < limit ? i + (size_t)__builtin_ctzll(w) : limit;
    i = (i / 64 + 1) * 64;
  }
  return limit;
}

/* Longest run of 1 bits in x: each round shortens every run by one. */
static size_t longest_ones(uint64_t x) {
  size_t k = 0;
  for (; x; k++)
    x &= x >> 1;
  return k;
}

/* start / max / end of the free runs of a 512-page chunk, word by word (Go's pallocBits.summarize). */
static run_sum summarize_chunk(const uint64_t *alloc, size_t c) {
  const uint64_t *w = alloc + c * (NH_CHUNK_PAGES / 64);
  enum { WORDS = NH_CHUNK_PAGES / 64 };
  run_sum s = {0, 0, 0};
  size_t i = 0;
  for (; i < WORDS && w[i] == 0; i++)
    s.start += 64;
  if (i == WORDS)
    return (run_sum){NH_CHUNK_PAGES, NH_CHUNK_PAGES, NH_CHUNK_PAGES};
  s.start += (size_t)__builtin_ctzll(w[i]);
  s.max = s.start;
  size_t run = 0;   /* free pages ending at the top of the words seen so far */
  for (; i < WORDS; i++) {
    uint64_t used = w[i];
    if (used == 0) {
      run += 64;
      continue;
    }
    run += (size_t)__builtin_ctzll(used);
    if (run > s.max)
      s.max = run;
    size_t inner = longest_ones(~used);
    if (inner > s.max)
      s.max = inner;
    run = (size_t)__builtin_clzll(used);
  }
  if (run > s.max)
    s.max = run;
  s.end = run;
  return s;
}

/* Merges child summaries of `size` pages each (Go's mergeSummaries). */
static run_sum merge(const run_sum *child, size_t n, size_t size) {
  run_sum out = child[0];
  size_t run = child[0].end;
  bool all_free = child[0].start == size;
  for (size_t i = 1; i < n; i++) {
    run_sum c = child[i];
    if (all_free)
      out.start += c.start;
    if (run + c.start > out.max)
      out.max = run + c.start;
    if (c.max > out.max)
      out.max = c.max;
    run = c.start == size ? run + size : c.end;
    all_free = all_free && c.start == size;
  }
  out.end = run;
  return out;
}

void pageheap_update_summaries(nh_arena_pages_t *ap, size_t first, size_t n) {
  for (size_t c = first / NH_CHUNK_PAGES; c <= (first + n - 1) / NH_CHUNK_PAGES; c++)
    ap->chunk_sum[c] = pack_chunk(summarize_chunk(ap->alloc, c));
  run_sum cs[NH_CHUNKS_PER_ARENA];
  for (size_t c = 0; c < NH_CHUNKS_PER_ARENA; c++)
    cs[c] = unpack_chunk(ap->chunk_sum[c]);
  ap->sum = pack_arena(merge(cs, NH_CHUNKS_PER_ARENA, NH_CHUNK_PAGES));
}

/* ---------------------------------------------------------------------------------------------
 * The heap.
 * ------------------------------------------------------------------------------------------- */

void pageheap_init(nh_pageheap_t *ph, int node, nh_arena_set_t *arenas, nh_mem_t *mem) {
  memset(ph, 0, sizeof *ph);
  nh_mutex_init(&ph->lock, LOCK_RANK_PAGEHEAP);
  ph->node = node;
  ph->arenas = arenas;
  ph->mem = mem;
}

/* Takes count new arenas starting at first into this heap (all pages free and released). */
static bool adopt(nh_pageheap_t *ph, nh_arena_t *first, size_t count) {
  nh_mutex_assert_held(&ph->lock);
  if (ph->narenas + count > ph->cap) {
    size_t cap = ph->cap ? ph->cap * 2 : 64;
    while (cap < ph->narenas + count)
      cap *= 2;
    nh_arena_t **n = mem_meta_alloc(ph->mem, cap * sizeof *n, 64);
    if (!n)
      return false;
    if (ph->narenas)
      memcpy(n, ph->by_addr, ph->narenas * sizeof *n);
    ph->by_addr = n;   /* the old array stays in metadata: arrays double, so it adds up to < 2x */
    ph->cap = cap;
  }
  nh_arena_t *a = first;
  for (size_t i = 0; i < count; i++, a = a->next) {
    nh_arena_pages_t *ap = mem_meta_alloc(ph->mem, sizeof *ap, 64);
    if (!ap)
      return false;
    memset(ap->scav, 0xff, sizeof ap->scav);
    run_sum all = {NH_CHUNK_PAGES, NH_CHUNK_PAGES, NH_CHUNK_PAGES};
    for (size_t c = 0; c < NH_CHUNKS_PER_ARENA; c++)
      ap->chunk_sum[c] = pack_chunk(all);
    ap->sum = pack_arena((run_sum){NH_PAGES_PER_ARENA, NH_PAGES_PER_ARENA, NH_PAGES_PER_ARENA});
    __atomic_store_n(&a->pages, ap, __ATOMIC_RELEASE);
    size_t at = ph->narenas;
    while (at > 0 && ph->by_addr[at - 1]->base > a->base)
      at--;
    memmove(&ph->by_addr[at + 1], &ph->by_addr[at], (ph->narenas - at) * sizeof *ph->by_addr);
    ph->by_addr[at] = a;
    ph->narenas++;
    if (at < ph->search)
      ph->search = at;
    pageheap_stat_begin(ph);
    nh_stat_add(&ph->total_pages, NH_PAGES_PER_ARENA);
    nh_stat_add(&ph->released_pages, NH_PAGES_PER_ARENA);
    pageheap_stat_end(ph);
  }
  return true;
}

/* Within one chunk whose max >= n: the first page index of n free pages. */
static size_t find_in_chunk(const uint64_t *alloc, size_t c, size_t n) {
  const size_t hi = (c + 1) * NH_CHUNK_PAGES;
  for (size_t i = c * NH_CHUNK_PAGES; i < hi;) {
    size_t free_at = next_bit(alloc, i, hi, false);
    size_t used_at = next_bit(alloc, free_at, hi, true);
    if (used_at - free_at >= n)
      return free_at;
    i = used_at;
  }
  nh_fatal("page heap: chunk %zu summary promised %zu free pages that are not there", c, n);
}

/* Step 1-2: first fit of n pages; returns the address or 0. */
static uintptr_t find(nh_pageheap_t *ph, size_t n) {
  nh_mutex_assert_held(&ph->lock);
  uintptr_t run_base = 0, prev_end = 0;
  size_t run = 0;
  for (size_t i = ph->search; i < ph->narenas; i++) {
    nh_arena_t *a = ph->by_addr[i];
    nh_arena_pages_t *ap = a->pages;
    if (a->base != prev_end)
      run = 0;
    prev_end = a->base + NH_ARENA_BYTES;
    run_sum s = unpack_arena(ap->sum);
    if (run + s.start >= n)
      return run ? run_base : a->base;
    if (s.max < n) {
      if (s.start == NH_PAGES_PER_ARENA) {
        run_base = run ? run_base : a->base;
        run += NH_PAGES_PER_ARENA;
      } else {
        run = s.end;
        run_base = prev_end - s.end * NH_PAGE_SIZE;
      }
      continue;
    }
    for (size_t c = 0; c < NH_CHUNKS_PER_ARENA; c++) {
      run_sum cs = unpack_chunk(ap->chunk_sum[c]);
      uintptr_t chunk_base = a->base + c * NH_CHUNK_PAGES * NH_PAGE_SIZE;
      if (run + cs.start >= n)
        return run ? run_base : chunk_base;
      if (cs.max >= n)
        return a->base + find_in_chunk(ap->alloc, c, n) * NH_PAGE_SIZE;
      if (cs.start == NH_CHUNK_PAGES) {
        run_base = run ? run_base : chunk_base;
        run += NH_CHUNK_PAGES;
      } else {
        run = cs.end;
        run_base = chunk_base + (NH_CHUNK_PAGES - cs.end) * NH_PAGE_SIZE;
      }
    }
    nh_fatal("page heap: arena %#lx summary promised %zu free pages that are not there",
             (unsigned long)a->base, n);
  }
  return 0;
}

/* The index in by_addr of the arena holding addr (addr is in this heap). */
size_t pageheap_arena_index(nh_pageheap_t *ph, uintptr_t addr) {
  nh_mutex_assert_held(&ph->lock);
  size_t lo = 0, hi = ph->narenas;
  while (hi - lo > 1) {
    size_t mid = (lo + hi) / 2;
    if (ph->by_addr[mid]->base <= addr)
      lo = mid;
    else
      hi = mid;
  }
  return lo;
}

/* Splits a page range at arena boundaries. Start with piece_first, continue with piece_next
 * while it returns true. */
typedef struct piece {
  nh_pageheap_t *ph;
  size_t index;         /* arena in by_addr */
  uintptr_t addr;       /* start of the rest */
  size_t left;          /* pages left, this piece included */
  nh_arena_t *a;
  size_t first, n;      /* this piece: pages [first, first + n) of arena a */
} piece;

static bool piece_next(piece *p) {
  if (!p->left)
    return false;
  p->a = p->ph->by_addr[p->index++];
  p->first = (p->addr - p->a->base) >> NH_PAGE_SHIFT;
  p->n = NH_PAGES_PER_ARENA - p->first < p->left ? NH_PAGES_PER_ARENA - p->first : p->left;
  p->addr += p->n * NH_PAGE_SIZE;
  p->left -= p->n;
  return true;
}

static piece piece_first(nh_pageheap_t *ph, uintptr_t base, size_t npages) {
  return (piece){.ph = ph, .index = pageheap_arena_index(ph, base), .addr = base, .left = npages};
}

static bool grow_locked(nh_pageheap_t *ph, size_t count) {
  nh_mutex_assert_held(&ph->lock);
  nh_arena_t *first = arena_create_run(ph->arenas, ph->node, count);
  return first && adopt(ph, first, count);
}

bool pageheap_grow(nh_pageheap_t *ph, size_t count) {
  nh_mutex_lock(&ph->lock);
  bool ok = grow_locked(ph, count);
  nh_mutex_unlock(&ph->lock);
  return ok;
}

uintptr_t pageheap_alloc(nh_pageheap_t *ph, size_t npages, bool *needzero) {
  nh_assert(npages >= 1);
  if (npages > NH_ARENA_RUN_MAX * NH_PAGES_PER_ARENA)
    return 0;
  nh_mutex_lock(&ph->lock);
  uintptr_t base = find(ph, npages);
  if (!base) {
    if (!grow_locked(ph, (npages + NH_PAGES_PER_ARENA - 1) / NH_PAGES_PER_ARENA)) {
      nh_mutex_unlock(&ph->lock);
      return 0;
    }
    base = find(ph, npages);
    nh_assert_internal(base != 0);
  }
  size_t released = 0, fresh = 0;
  for (piece p = piece_first(ph, base, npages); piece_next(&p);) {
    nh_arena_pages_t *ap = p.a->pages;
    const size_t first = p.first, end = p.first + p.n;
    size_t f = count_bits(ap->fresh, first, p.n);
    if (f) {
      set_bits(ap->fresh, first, p.n, false);
      fresh += f;
    }
    /* Released pages come back Ready; each run of them is one OS-layer transition. */
    for (size_t i = next_bit(ap->scav, first, end, true); i < end;) {
      size_t stop = next_bit(ap->scav, i, end, false);
      mem_use(ph->mem, (void *)(p.a->base + i * NH_PAGE_SIZE), (stop - i) * NH_PAGE_SIZE);
      released += stop - i;
      i = next_bit(ap->scav, stop, end, true);
    }
    set_bits(ap->scav, first, p.n, false);
    set_bits(ap->alloc, first, p.n, true);
    pageheap_update_summaries(ap, first, p.n);
  }
  *needzero = released + fresh != npages;
  ph->fresh_pages -= fresh;
  /* Memory nobody touched yet, or the prefaulted reserve running low: ask for a pass. */
  bool wake = (released || (fresh && ph->fresh_pages < PREFAULT_LOW_PAGES)) && ph->prefault_wake && !ph->prefault_pending;
  if (wake)
    ph->prefault_pending = true;
  /* Advance the search pointer past arenas that are now full. */
  while (ph->search < ph->narenas && unpack_arena(ph->by_addr[ph->search]->pages->sum).max == 0)
    ph->search++;
  pageheap_stat_begin(ph);
  nh_stat_add(&ph->released_pages, -(int64_t)released);   /* this order keeps idle >= 0 for */
  nh_stat_add(&ph->inuse_pages, (int64_t)npages);         /* lock-free readers (scavenger) */
  pageheap_stat_end(ph);
  nh_mutex_unlock(&ph->lock);
  if (wake)
    ph->prefault_wake(ph->prefault_arg);
  if (nh_config_debug >= 2)
    pageheap_validate(ph);
  return base;
}

void pageheap_free(nh_pageheap_t *ph, uintptr_t base, size_t npages) {
  nh_mutex_lock(&ph->lock);
  size_t lowest = pageheap_arena_index(ph, base);
  for (piece p = piece_first(ph, base, npages); piece_next(&p);) {
    nh_arena_pages_t *ap = p.a->pages;
    if (nh_config_debug >= 1 && count_bits(ap->alloc, p.first, p.n) != p.n)
      nh_fatal("page heap: freeing pages at %#lx that are not all in use", (unsigned long)base);
    set_bits(ap->alloc, p.first, p.n, false);
    for (size_t i = p.first; i < p.first + p.n; i++) {
      __atomic_store_n(&p.a->pageinfo[i], 0, __ATOMIC_RELEASE);
      __atomic_store_n(&p.a->live[i], NULL, __ATOMIC_RELAXED);
      __atomic_store_n(&p.a->spans[i], NULL, __ATOMIC_RELEASE);
    }
    pageheap_update_summaries(ap, p.first, p.n);
  }
  if (lowest < ph->search)
    ph->search = lowest;
  pageheap_stat_begin(ph);
  nh_stat_add(&ph->inuse_pages, -(int64_t)npages);
  pageheap_stat_end(ph);
  nh_mutex_unlock(&ph->lock);
  if (nh_config_debug >= 2)
    pageheap_validate(ph);
}

/* A recently freed span of exactly npages, or NULL. */
static nh_span_t *take_recent(nh_pageheap_t *ph, size_t npages) {
  nh_mutex_lock(&ph->lock);
  nh_span_t *s = NULL;
  for (uint32_t i = 0; i < ph->nrecent; i++) {
    if (ph->recent[i]->npages == npages) {
      s = ph->recent[i];
      ph->recent[i] = ph->recent[--ph->nrecent];
      nh_stat_add(&ph->recent_pages, -(int64_t)npages);
      break;
    }
  }
  nh_mutex_unlock(&ph->lock);
  return s;
}

static void release_span(nh_pageheap_t *ph, nh_span_t *s);

/* Gives small span s (struct reused or new) ownership bytes for its nelems objects, all 0: a
 * struct keeps its array, and one that outgrows it leaves it on a free list by size (64 << i
 * bytes) for another. false when there is no memory for one. */
static bool span_live_init(nh_pageheap_t *ph, nh_span_t *s) {
  if (s->livecap < s->nelems) {
    unsigned i = 0;
    while ((64u << i) < s->nelems)
      i++;
    nh_assert(i < NH_ARRAY_LEN(ph->free_live));
    nh_mutex_lock(&ph->lock);
    if (s->live_mem) {
      unsigned old = (unsigned)__builtin_ctz(s->livecap) - 6;
      *(void **)s->live_mem = ph->free_live[old];
      ph->free_live[old] = s->live_mem;
    }
    void *live = ph->free_live[i];
    if (live)
      ph->free_live[i] = *(void **)live;
    nh_mutex_unlock(&ph->lock);
    if (!live && !(live = mem_meta_alloc(ph->mem, 64u << i, 64))) {
      s->live_mem = NULL;
      s->livecap = 0;
      return false;
    }
    s->live_mem = live;
    s->livecap = (uint16_t)(64u << i);
  }
  memset(s->live_mem, 0, s->nelems);
  s->live = s->live_mem;
  return true;
}

nh_span_t *pageheap_alloc_span(nh_pageheap_t *ph, size_t npages, uint8_t spc, nh_obj_kind kind,
                               unsigned allocclass) {
  bool needzero = true;
  nh_span_t *s = npages <= NH_RECENT_MAX_PAGES ? take_recent(ph, npages) : NULL;
  uintptr_t pages = s ? s->pages : pageheap_alloc(ph, npages, &needzero);
  if (!pages)
    return NULL;
  if (!s) {
    nh_mutex_lock(&ph->lock);
    s = ph->free_spans;
    if (s)
      ph->free_spans = s->next;
    nh_mutex_unlock(&ph->lock);
  }
  if (!s && !(s = mem_meta_alloc(ph->mem, sizeof *s, 64))) {
    pageheap_free(ph, pages, npages);
    return NULL;
  }
  uint8_t *live_mem = s->live_mem;   /* the struct's ownership array outlives its uses */
  uint16_t livecap = s->livecap;
  memset(s, 0, sizeof *s);   /* live = NULL: only small spans but tiny ones get it (below) */
  s->live_mem = live_mem;
  s->livecap = livecap;
  unsigned sc = spanclass_sizeclass(spc);
  s->pages = pages;
  s->base = pages;
  s->npages = (uint32_t)npages;
  s->spanclass = spc;
  s->allocclass = (uint8_t)(sc ? allocclass : kind);
  s->kind = (uint8_t)kind;
  s->node = (uint8_t)ph->node;
  s->needzero = needzero;
  s->owner = -1;
  s->alloc_bits = s->bitmaps[0];
  s->gcmark_bits = s->bitmaps[1];
  if (sc) {
    s->elemsize = nh_class_to_size[sc];
    s->divmagic = nh_class_to_divmagic[sc];
    s->nelems = (uint16_t)(npages * NH_PAGE_SIZE / s->elemsize);
    if (allocclass == NH_AC_TINY) {   /* the blocks' start/end words first (span.h) */
      s->base = pages + NH_TINY_HEADER;
      s->nelems = NH_TINY_NBLOCKS;
    }
    s->limit = s->base + (uintptr_t)s->nelems * s->elemsize;
    if (allocclass != NH_AC_TINY && !span_live_init(ph, s)) {
      release_span(ph, s);
      return NULL;
    }
  } else {
    s->nelems = 1;
    s->limit = pages + npages * NH_PAGE_SIZE;
    s->elemsize = (uint32_t)(s->limit - s->base > UINT32_MAX ? 0 : s->limit - s->base); /* 0: see limit */
  }
  s->state = SPAN_INUSE;
  pageheap_set_spans(pages, npages, s, ph->arenas);
  return s;
}

/* The span's pages back to the free pages, its struct to the free list. */
static void release_span(nh_pageheap_t *ph, nh_span_t *s) {
  pageheap_free(ph, s->pages, s->npages);
  nh_mutex_lock(&ph->lock);
  s->next = ph->free_spans;
  ph->free_spans = s;
  nh_mutex_unlock(&ph->lock);
}

void pageheap_free_span(nh_pageheap_t *ph, nh_span_t *s) {
  __atomic_store_n(&s->state, SPAN_DEAD, __ATOMIC_RELEASE);
  if (s->npages <= NH_RECENT_MAX_PAGES) {
    /* Out of the span map first: a pointer into it is now free memory to every lookup. */
    pageheap_set_spans(s->pages, s->npages, NULL, ph->arenas);
    nh_mutex_lock(&ph->lock);
    bool kept = ph->nrecent < NH_RECENT_SPANS;
    if (kept) {
      ph->recent[ph->nrecent++] = s;
      nh_stat_add(&ph->recent_pages, s->npages);
    }
    nh_mutex_unlock(&ph->lock);
    if (kept)
      return;
  }
  release_span(ph, s);
}

void pageheap_drop_recent(nh_pageheap_t *ph) {
  for (;;) {
    nh_mutex_lock(&ph->lock);
    nh_span_t *s = ph->nrecent ? ph->recent[--ph->nrecent] : NULL;
    nh_mutex_unlock(&ph->lock);
    if (!s)
      return;
    /* Off inuse_pages first, then off recent_pages (pageheap_live_pages): the other way round,
     * a stats read between the two saw the span's pages in use. The struct may be reused once
     * it is on the free list: its size is read before. */
    size_t npages = s->npages;
    release_span(ph, s);
    pageheap_idle_leave(&ph->recent_pages, npages);
  }
}

void pageheap_set_spans(uintptr_t base, size_t npages, nh_span_t *span, const nh_arena_set_t *arenas) {
  /* Tiny objects share blocks: no fast path, no ownership bytes. Typed objects are freed
   * through their header's end, not their start: no page info (nh_free's fast path would take
   * the header's address for an object), but ownership bytes for the allocation fast path. */
  bool small = span && !span_is_large(span) && span->allocclass != NH_AC_TINY;
  bool info = small && span->kind != NH_KIND_TYPED;
  uintptr_t addr = base;
  for (size_t left = npages, i = 0; left;) {
    nh_arena_t *a = arena_of(arenas, (void *)addr);
    size_t first = (addr - a->base) >> NH_PAGE_SHIFT;
    size_t n = NH_PAGES_PER_ARENA - first < left ? NH_PAGES_PER_ARENA - first : left;
    for (size_t p = first; p < first + n; p++, i++) {
      /* Clearing, the info goes first; setting, the span goes first: a reader that finds
       * page info always finds the span behind it. */
      if (!span) {
        __atomic_store_n(&a->pageinfo[p], 0, __ATOMIC_RELEASE);
        __atomic_store_n(&a->live[p], NULL, __ATOMIC_RELAXED);
      }
      __atomic_store_n(&a->spans[p], span, __ATOMIC_RELEASE);
      if (small)   /* past the bytes of the objects that start on earlier pages */
        __atomic_store_n(&a->live[p], span->live + (i * NH_PAGE_SIZE + span->elemsize - 1) / span->elemsize,
                         __ATOMIC_RELAXED);
      if (info)
        __atomic_store_n(&a->pageinfo[p], pageinfo_make(span->allocclass, spanclass_sizeclass(span->spanclass), i),
                         __ATOMIC_RELEASE);
    }
    addr += n * NH_PAGE_SIZE;
    left -= n;
  }
}

/* The same summary, one page at a time: what the validator checks summarize_chunk against. */
static run_sum summarize_slowly(const uint64_t *alloc, size_t c) {
  run_sum s = {0, 0, 0};
  size_t run = 0;
  bool seen_used = false;
  for (size_t p = c * NH_CHUNK_PAGES; p < (c + 1) * NH_CHUNK_PAGES; p++) {
    if (alloc[p / 64] >> (p % 64) & 1) {
      seen_used = true;
      run = 0;
    } else {
      run++;
      s.start += !seen_used;
      s.max = run > s.max ? run : s.max;
    }
  }
  s.end = run;
  return s;
}

void pageheap_validate(nh_pageheap_t *ph) {
  nh_mutex_lock(&ph->lock);
  size_t inuse = 0, released = 0, idle = 0, fresh = 0;
  for (size_t i = 0; i < ph->narenas; i++) {
    nh_arena_t *a = ph->by_addr[i];
    nh_arena_pages_t *ap = a->pages;
    if (i && ph->by_addr[i - 1]->base >= a->base)
      nh_fatal("page heap: arenas out of address order at %zu", i);
    run_sum cs[NH_CHUNKS_PER_ARENA];
    for (size_t c = 0; c < NH_CHUNKS_PER_ARENA; c++) {
      cs[c] = summarize_chunk(ap->alloc, c);
      if (pack_chunk(cs[c]) != pack_chunk(summarize_slowly(ap->alloc, c)))
        nh_fatal("page heap: arena %#lx chunk %zu: fast and slow summaries differ", (unsigned long)a->base, c);
      if (pack_chunk(cs[c]) != ap->chunk_sum[c])
        nh_fatal("page heap: arena %#lx chunk %zu summary is stale", (unsigned long)a->base, c);
    }
    if (pack_arena(merge(cs, NH_CHUNKS_PER_ARENA, NH_CHUNK_PAGES)) != ap->sum)
      nh_fatal("page heap: arena %#lx summary is stale", (unsigned long)a->base);
    if (i < ph->search && unpack_arena(ap->sum).max != 0)
      nh_fatal("page heap: free pages below the search pointer");
    for (size_t w = 0; w < NH_PAGE_WORDS; w++) {
      if (ap->alloc[w] & ap->scav[w])
        nh_fatal("page heap: arena %#lx has in-use pages marked released", (unsigned long)a->base);
      if (ap->fresh[w] & (ap->alloc[w] | ap->scav[w]))
        nh_fatal("page heap: arena %#lx has prefaulted pages in use or released", (unsigned long)a->base);
      fresh += (size_t)__builtin_popcountll(ap->fresh[w]);
      inuse += (size_t)__builtin_popcountll(ap->alloc[w]);
      released += (size_t)__builtin_popcountll(ap->scav[w]);
      idle += (size_t)__builtin_popcountll(~(ap->alloc[w] | ap->scav[w]));   /* free, still backed */
    }
  }
  if (fresh != ph->fresh_pages)
    nh_fatal("page heap: %zu prefaulted pages in the bitmaps, %lu counted", fresh, (unsigned long)ph->fresh_pages);
  size_t total = ph->narenas * NH_PAGES_PER_ARENA, held = nh_stat_get(&ph->scavenging_pages);
  inuse -= held;   /* held back by a scavenger pass */
  if (inuse != nh_stat_get(&ph->inuse_pages) || released != nh_stat_get(&ph->released_pages))
    nh_fatal("page heap: counters (in use %lu, released %lu) disagree with the bitmaps (%zu, %zu)",
             (unsigned long)nh_stat_get(&ph->inuse_pages), (unsigned long)nh_stat_get(&ph->released_pages),
             inuse, released);
  /* mapped = in use + free + released (+ what a scavenger pass holds), as nh_stats reports. */
  if (total != nh_stat_get(&ph->total_pages) || inuse + held + idle + released != total)
    nh_fatal("page heap: %lu pages mapped, but %zu in use + %zu held + %zu free + %zu released over %zu arenas",
             (unsigned long)nh_stat_get(&ph->total_pages), inuse, held, idle, released, ph->narenas);
  nh_mutex_unlock(&ph->lock);
}
