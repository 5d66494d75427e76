/*
 * mcentral.c — Go's mcentral: the spans of one allocation class on one node.
 *
 * Sets: partial (some free object) and full, each in two generations indexed by sweepgen/2 % 2
 * (Go's partialSwept/partialUnswept): at mark termination the collector adds 2 to the heap's
 * sweepgen (mcentral_flip, world stopped, every span swept and none cached), which turns every
 * swept set into the unswept one without touching a span. A span is then swept (sweep_span:
 * its mark bits become its allocation bits) by whoever gets to it first, always under c->lock:
 * cache_span before it grows the class (lazy sweeping, Go's cacheSpan), free before it folds
 * explicit frees into an unswept span, or the background sweeper (mcentral_sweep). New spans
 * are born swept. With gc = off, sweepgen stays 0 and only the swept sets are used.
 * Large spans live in the full sets of allocation classes 0 .. NH_NUM_KINDS - 1 (one per
 * kind), so the same sweep frees the unmarked ones (with gc = off they are in no set).
 * Heap accounting for the pacer (pace_account): a span's free objects count as live when an
 * mcache takes it, the ones it did not hand out stop counting when it comes back, and
 * explicit frees stop counting when they are folded in.
 *
 * A span is in exactly one set while not cached, and in none while an mcache holds it
 * (s->cached). Operations, all under c->lock:
 *   cache_span    take a partial span (or a new one from the page heap), mark it cached.
 *   uncache_span  the owner returns it: fold the objects it handed out into alloc_bits,
 *                 then rebuild.
 *   free          explicit frees: set freed_bits; rebuild now if the span is not cached.
 *   rebuild       alloc_bits &= ~freed_bits, count, and move the span to the right set; an
 *                 empty span goes back to the page heap (Go frees empty spans when sweeping),
 *                 except that up to NH_MCENTRAL_KEEP_BYTES of them are kept in the partial
 *                 set so bursts of alloc/free of one class do not churn the page heap; they
 *                 count as free memory, and the scavenger drops them (mcentral_drop_empty)
 *                 before it releases memory.
 * Lock order: mcentral, then the page heap (rebuild frees spans, cache_span grows).
 */
#include <string.h>

#include "core/vg.h"
#include "core/error.h"
#include "core/mcentral.h"
#include "core/pacer.h"
#include "core/thread.h"
#include "perf/counters.h"

static nh_span_list *swept_partial(nh_mcentral_t *c) { return &c->partial[c->sweepgen / 2 % 2]; }
static nh_span_list *swept_full(nh_mcentral_t *c) { return &c->full[c->sweepgen / 2 % 2]; }
static nh_span_list *unswept_partial(nh_mcentral_t *c) { return &c->partial[1 - c->sweepgen / 2 % 2]; }
static nh_span_list *unswept_full(nh_mcentral_t *c) { return &c->full[1 - c->sweepgen / 2 % 2]; }

static bool accounting(const nh_mcentral_t *c) { return c->pace && c->pace->on; }

static void account(nh_mcentral_t *c, int64_t bytes) {
  if (accounting(c))
    pace_account(c->pace, bytes);
}

static void list_push(nh_span_list *l, nh_span_t *s) {
  s->prev = NULL;
  s->next = l->first;
  if (l->first)
    l->first->prev = s;
  l->first = s;
  l->count++;
}

static void list_remove(nh_span_list *l, nh_span_t *s) {
  if (s->prev)
    s->prev->next = s->next;
  else
    l->first = s->next;
  if (s->next)
    s->next->prev = s->prev;
  s->next = s->prev = NULL;
  l->count--;
}

static nh_span_list *list_of(nh_mcentral_t *c, nh_span_t *s) {
  nh_mutex_assert_held(&c->lock);
  return s->alloc_count == s->nelems ? swept_full(c) : swept_partial(c);
}

/* An empty span joins (+1) or leaves (-1) the ones c keeps; the page heap counts their pages
 * as idle for the scavenger and the stats. Under c->lock. */
static void kept(nh_mcentral_t *c, const nh_span_t *s, int delta) {
  nh_mutex_assert_held(&c->lock);
  c->nempty += (uint32_t)delta;
  nh_stat_add(&c->ph->kept_pages, delta * (int64_t)s->npages);
}

/* A kept span of npages went back to the page heap (give_back, which counted it there first):
 * now it leaves the kept ones. Under c->lock. Not the other way round: a stats read between the
 * two would count the span as in use (pageheap_live_pages). */
static void unkept_after_give_back(nh_mcentral_t *c, size_t npages) {
  nh_mutex_assert_held(&c->lock);
  c->nempty--;
  pageheap_idle_leave(&c->ph->kept_pages, npages);
}

void mcentral_init(nh_mcentral_t *c, unsigned allocclass, nh_pageheap_t *ph) {
  memset(c, 0, sizeof *c);
  nh_mutex_init(&c->lock, LOCK_RANK_MCENTRAL);
  c->allocclass = allocclass;
  c->spanclass = spanclass_make(allocclass_sizeclass(allocclass), allocclass_kind(allocclass) == NH_KIND_NOSCAN);
  c->ph = ph;
  size_t span_bytes = (size_t)nh_class_to_npages[allocclass_sizeclass(allocclass)] * NH_PAGE_SIZE;
  size_t keep = span_bytes ? NH_MCENTRAL_KEEP_BYTES / span_bytes : 0;   /* large: none */
  c->keep = (uint32_t)(keep > 2 ? keep : 2);
}

/* An empty span leaves this class for the page heap. */
static void give_back(nh_mcentral_t *c, nh_span_t *s) {
  nh_stat_add(&c->nspans, -1);
  s->central = NULL;
  pageheap_free_span(c->ph, s);
}

/* Folds explicit frees into alloc_bits of a span nobody caches; places or frees it. */
static void rebuild(nh_mcentral_t *c, nh_span_t *s, nh_span_list *from) {
  nh_mutex_assert_held(&c->lock);
  nh_assert_internal(!s->cached);
  size_t count = 0, words = (s->nelems + 63) / 64;
  bool freed = false;
  size_t nfreed = 0;
  for (size_t w = 0; w < words; w++) {
    freed |= s->freed_bits[w] != 0;
    nfreed += (size_t)__builtin_popcountll(s->alloc_bits[w] & s->freed_bits[w]);
    s->alloc_bits[w] &= ~s->freed_bits[w];
    /* An object marked and then freed during a concurrent mark must not come back as
     * allocated when the marks become the allocation bits (markers set bits concurrently). */
    if (__atomic_load_n(&s->gcmark_bits[w], __ATOMIC_RELAXED) & s->freed_bits[w])
      __atomic_fetch_and(&s->gcmark_bits[w], ~s->freed_bits[w], __ATOMIC_RELAXED);
    s->freed_bits[w] = 0;
    count += (size_t)__builtin_popcountll(s->alloc_bits[w]);
  }
  s->alloc_count = (uint16_t)count;
  s->needzero |= freed;
  s->freeindex = 0;
  if (nfreed)
    account(c, -(int64_t)(nfreed * s->elemsize));
  if (from)
    list_remove(from, s);
  if (count == 0 && c->nempty >= c->keep) {
    give_back(c, s);
    return;
  }
  if (count == 0)   /* an empty span is kept as a partial one */
    kept(c, s, 1);
  list_push(list_of(c, s), s);
}

/* Lazy sweeping (Go's cacheSpan): before growing, sweep up to this many unswept spans of the
 * class, partial ones first, until one has a free object. */
enum { LAZY_SWEEP_BUDGET = 100 };

nh_span_t *mcentral_cache_span(nh_mcentral_t *c, int owner) {
  nh_mutex_lock(&c->lock);
  nh_span_list *l = swept_partial(c);
  nh_perf_thread_t *counted = NULL;   /* perf.events: a lazy sweep is the SWEEP phase */
  if (nh_unlikely(perf_on()) && !l->first && (unswept_partial(c)->first || unswept_full(c)->first))
    perf_attribute(counted = perf_self(), NH_PHASE_ALLOC);
  for (int budget = LAZY_SWEEP_BUDGET; !l->first && budget > 0; budget--) {
    nh_span_t *u = unswept_partial(c)->first;
    nh_span_list *from = unswept_partial(c);
    if (!u)
      u = (from = unswept_full(c))->first;
    if (!u)
      break;
    list_remove(from, u);
    sweep_span(c, u);
  }
  if (counted)
    perf_attribute(counted, NH_PHASE_SWEEP);
  nh_span_t *s = l->first;
  if (s) {
    list_remove(l, s);
    if (s->alloc_count == 0)
      kept(c, s, -1);
  } else {
    unsigned sc = allocclass_sizeclass(c->allocclass);
    if (c->pace && pace_over_limit(c->pace, (size_t)nh_class_to_npages[sc] * NH_PAGE_SIZE)) {
      nh_limit_refused = true;
      nh_mutex_unlock(&c->lock);
      return NULL;
    }
    s = pageheap_alloc_span(c->ph, nh_class_to_npages[sc], c->spanclass, allocclass_kind(c->allocclass), c->allocclass);
    if (!s) {
      nh_mutex_unlock(&c->lock);
      return NULL;
    }
    s->central = c;
    s->sweepgen = c->sweepgen;
    nh_stat_add(&c->nspans, 1);
  }
  s->cached = true;
  s->owner = (int16_t)owner;
  account(c, (int64_t)(s->nelems - s->alloc_count) * s->elemsize);
  nh_mutex_unlock(&c->lock);
  return s;
}

void mcentral_uncache_span(nh_mcentral_t *c, nh_span_t *s, uint64_t cache) {
  nh_mutex_lock(&c->lock);
  nh_assert_internal(s->cached && s->freeindex % 64 == 0);
  size_t cur = s->freeindex / 64, words = (s->nelems + 63) / 64;
  for (size_t w = 0; w < cur && w < words; w++)
    s->alloc_bits[w] = span_word_mask(s, w);
  if (cur < words)
    s->alloc_bits[cur] |= ~cache & span_word_mask(s, cur);
  if (accounting(c)) {   /* the objects it never handed out stop counting as live */
    size_t handed = 0;
    for (size_t w = 0; w < words; w++)
      handed += (size_t)__builtin_popcountll(s->alloc_bits[w]);
    account(c, -(int64_t)((s->nelems - handed) * s->elemsize));
  }
  s->cached = false;
  s->owner = -1;
  rebuild(c, s, NULL);
  nh_mutex_unlock(&c->lock);
}

/* Whether object idx of s is free as the span knows it (c's lock held): freed, or not handed
 * out; with an owner, objects of its current word count as handed out. A consistency check:
 * ownership (span.h) already refused any free of an object the program did not own. */
static bool is_free(nh_mcentral_t *c, nh_span_t *s, size_t idx) {
  nh_mutex_assert_held(&c->lock);
  if (bitmap_get(s->freed_bits, idx))
    return true;
  if (bitmap_get(s->alloc_bits, idx))
    return false;
  if (!s->cached)   /* without an owner, alloc_bits is exact */
    return true;
  /* With one: words before its current word were handed out, words after it not yet. */
  size_t cur = __atomic_load_n(&s->freeindex, __ATOMIC_RELAXED) / 64, w = idx / 64;
  return w > cur;
}

size_t mcentral_free(nh_mcentral_t *c, nh_span_t *s, const uint16_t *idx, size_t n) {
  nh_mutex_lock(&c->lock);
  if (!s->cached && s->sweepgen != c->sweepgen) {   /* unswept: sweep before folding frees in */
    list_remove(s->alloc_count == s->nelems ? unswept_full(c) : unswept_partial(c), s);
    if (sweep_span(c, s) == SWEPT_FREED) {
      nh_mutex_unlock(&c->lock);
      return n;   /* it was garbage: all of these were free already */
    }
  }
  size_t doubles = 0;
  for (size_t i = 0; i < n; i++) {
    if (is_free(c, s, idx[i])) {
      doubles++;
      continue;
    }
    bitmap_set(s->freed_bits, idx[i]);
  }
  /* Nothing newly freed (only double frees): the span stays as it is filed. Rebuilding it
   * would file an empty kept span as newly empty, counting it twice (or giving it back while
   * still counted). */
  if (!s->cached && doubles < n)
    rebuild(c, s, list_of(c, s));
  nh_mutex_unlock(&c->lock);
  return doubles;
}

int sweep_span(nh_mcentral_t *c, nh_span_t *s) {
  nh_mutex_assert_held(&c->lock);
  nh_assert_internal(!s->cached && s->sweepgen + 2 == c->sweepgen);
  s->sweepgen = c->sweepgen - 1;
  nh_stat_add(&c->swept_spans, 1);
  if (span_is_large(s)) {
    if (!(s->gcmark_bits[0] & 1)) {
      if (nh_unlikely(c->secure))
        memset((void *)s->base, 0, s->limit - s->base);
      vg_free((void *)s->base);
      s->central = NULL;
      nh_stat_add(&c->swept_large, 1);
      pageheap_free_span(c->ph, s);
      return SWEPT_FREED;
    }
    s->gcmark_bits[0] = 0;
    __atomic_store_n(&s->sweepgen, c->sweepgen, __ATOMIC_RELEASE);
    list_push(swept_full(c), s);
    return SWEPT_FULL;
  }
  size_t count = 0, words = (s->nelems + 63) / 64;
  bool freed = false;
  for (size_t w = 0; w < words; w++) {
    uint64_t dead = s->alloc_bits[w] & ~s->gcmark_bits[w];
    freed |= dead != 0;
    count += (size_t)__builtin_popcountll(s->gcmark_bits[w]);
    /* A dead object's ownership byte keeps its 1: the slot that hands it out again clears it
     * (mcache.c), which costs the sweep nothing per object. */
    for (; nh_unlikely(nh_valgrind || c->secure) && dead; dead &= dead - 1) {
      size_t i = w * 64 + (size_t)__builtin_ctzll(dead);
      void *obj = (void *)(s->base + i * s->elemsize);
      if (c->secure)   /* zero on free, for what the collector frees too */
        memset(obj, 0, s->elemsize);
      if (s->allocclass != NH_AC_TINY)
        vg_free(obj);
    }
  }
  uint64_t *old = s->alloc_bits;   /* Go's swap: the marks are the new allocation bitmap */
  s->alloc_bits = s->gcmark_bits;
  s->gcmark_bits = old;
  memset(old, 0, words * sizeof *old);
  /* An empty span is one of the kept ones; the counts change only when its state does (a
   * kept span that stays empty is not counted as live in between). */
  bool was_kept = s->alloc_count == 0;
  s->alloc_count = (uint16_t)count;
  s->needzero |= freed;
  s->freeindex = 0;
  __atomic_store_n(&s->sweepgen, c->sweepgen, __ATOMIC_RELEASE);
  if (count == 0 && c->nempty - was_kept >= c->keep) {
    size_t npages = s->npages;
    give_back(c, s);
    if (was_kept)
      unkept_after_give_back(c, npages);
    return SWEPT_FREED;
  }
  if (count == 0 && !was_kept)
    kept(c, s, 1);
  else if (count != 0 && was_kept)
    kept(c, s, -1);
  list_push(list_of(c, s), s);
  return count < s->nelems ? SWEPT_PARTIAL : SWEPT_FULL;
}

size_t mcentral_sweep(nh_mcentral_t *c) {
  enum { BATCH = 64 };
  size_t pages = 0;
  for (bool more = true; more;) {
    region_enter();   /* an attached thread (nh_gc's sweep) must not be stopped holding it */
    nh_mutex_lock(&c->lock);
    for (int i = 0; i < BATCH; i++) {
      nh_span_list *from = unswept_partial(c);
      nh_span_t *s = from->first;
      if (!s)
        s = (from = unswept_full(c))->first;
      if (!s) {
        more = false;
        break;
      }
      list_remove(from, s);
      pages += s->npages;
      sweep_span(c, s);
    }
    nh_mutex_unlock(&c->lock);
    region_exit();
  }
  return pages;
}

void mcentral_flip(nh_mcentral_t *c, uint32_t sweepgen) {
  nh_mutex_lock(&c->lock);
  nh_assert_internal(!unswept_partial(c)->first && !unswept_full(c)->first);
  c->sweepgen = sweepgen;
  nh_mutex_unlock(&c->lock);
}

void mcentral_add_large(nh_mcentral_t *c, nh_span_t *s) {
  nh_mutex_lock(&c->lock);
  s->central = c;
  s->sweepgen = c->sweepgen;
  list_push(swept_full(c), s);
  nh_mutex_unlock(&c->lock);
}

bool mcentral_remove_large(nh_mcentral_t *c, nh_span_t *s) {
  nh_mutex_lock(&c->lock);
  bool live = s->central == c && s->state == SPAN_INUSE;
  if (live) {
    list_remove(s->sweepgen == c->sweepgen ? swept_full(c) : unswept_full(c), s);
    s->central = NULL;
  }
  nh_mutex_unlock(&c->lock);
  return live;
}

void mcentral_xfer_init(nh_mcentral_t *c, uint32_t capacity) { c->capxfer = capacity; }

size_t mcentral_xfer_take(nh_mcentral_t *c, void **out, size_t n) {
  if (!__atomic_load_n(&c->nxfer, __ATOMIC_RELAXED))
    return 0;   /* a racy peek: an empty cache is the common case and needs no lock */
  nh_mutex_lock(&c->lock);
  size_t k = n < c->nxfer ? n : c->nxfer;
  __atomic_store_n(&c->nxfer, c->nxfer - (uint32_t)k, __ATOMIC_RELAXED);   /* peeked without the lock */
  memcpy(out, c->xfer + c->nxfer, k * sizeof *out);
  nh_mutex_unlock(&c->lock);
  return k;
}

size_t mcentral_xfer_put(nh_mcentral_t *c, void *const *in, size_t n) {
  if (!c->capxfer)
    return 0;
  nh_mutex_lock(&c->lock);
  if (!c->xfer)   /* lazily: most classes never overflow a cache */
    c->xfer = mem_meta_alloc(c->ph->mem, c->capxfer * sizeof *c->xfer, 64);
  size_t room = c->xfer ? c->capxfer - c->nxfer : 0, k = n < room ? n : room;
  memcpy(c->xfer + c->nxfer, in, k * sizeof *in);
  __atomic_store_n(&c->nxfer, c->nxfer + (uint32_t)k, __ATOMIC_RELAXED);
  nh_mutex_unlock(&c->lock);
  return k;
}

size_t mcentral_drop_empty(nh_mcentral_t *c) {
  nh_mutex_lock(&c->lock);
  size_t dropped = 0;
  nh_span_list *l = swept_partial(c);
  for (nh_span_t *s = l->first, *next; s && c->nempty; s = next) {
    next = s->next;
    if (s->alloc_count)
      continue;
    list_remove(l, s);
    size_t npages = s->npages;
    give_back(c, s);   /* counted in recent[] or off the in-use pages first */
    unkept_after_give_back(c, npages);
    dropped++;
  }
  nh_mutex_unlock(&c->lock);
  return dropped;
}

void mcentral_validate(nh_mcentral_t *c) {
  nh_mutex_lock(&c->lock);
  size_t empty = 0;
  bool large = c->allocclass < NH_NUM_KINDS;
  for (int set = 0; set < 4; set++) {
    bool full = set & 1;
    nh_span_list *l = set < 2 ? (full ? swept_full(c) : swept_partial(c)) : (full ? unswept_full(c) : unswept_partial(c));
    size_t n = 0;
    for (nh_span_t *s = l->first; s; s = s->next, n++) {
      if (large) {
        if (!full || !span_is_large(s) || s->state != SPAN_INUSE || s->central != c)
          nh_fatal("mcentral %u: large span %#lx misfiled", c->allocclass, (unsigned long)s->base);
        continue;
      }
      if ((set < 2) != (s->sweepgen == c->sweepgen))
        nh_fatal("mcentral %u: span %#lx in the wrong generation (sweepgen %u, heap %u)", c->allocclass,
                 (unsigned long)s->base, s->sweepgen, c->sweepgen);
      size_t count = 0;
      for (size_t w = 0; w < (s->nelems + 63u) / 64; w++) {
        count += (size_t)__builtin_popcountll(s->alloc_bits[w]);
        if (s->alloc_bits[w] & ~span_word_mask(s, w))
          nh_fatal("mcentral %u: span %#lx has alloc bits past nelems", c->allocclass, (unsigned long)s->base);
      }
      empty += count == 0;
      if (s->cached || s->state != SPAN_INUSE || count != s->alloc_count || (full && count == 0) ||
          (full != (count == s->nelems)) || s->central != c)
        nh_fatal("mcentral %u: span %#lx in the wrong set (count %zu, alloc_count %u, nelems %u)",
                 c->allocclass, (unsigned long)s->base, count, s->alloc_count, s->nelems);
    }
    if (n != l->count)
      nh_fatal("mcentral %u: list count %zu, found %zu", c->allocclass, l->count, n);
  }
  if (empty != c->nempty)
    nh_fatal("mcentral %u: %zu empty spans kept, count says %u", c->allocclass, empty, c->nempty);
  nh_mutex_unlock(&c->lock);
}
