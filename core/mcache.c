/*
 * mcache.c — Go's mcache, one per CPU.
 *
 * Two sources per allocation class, tried in order:
 *   1. the free stack: objects nh_free'd on this CPU, LIFO (cache-hot, TCMalloc's per-CPU
 *      slab). Capacity per class: 32 KiB worth of objects, between 2 and 128;
 *   2. the slot: a span this cache owns, handing out the free objects of one 64-object word at a
 *      time by count-trailing-zeros on `cache` (Go's nextFreeFast). When the word is used up the
 *      slot moves to the span's next word with a free object; when the span is used up it goes
 *      back to its mcentral and the slot takes another.
 * A free stack that overflows returns its older half to the spans (mcentral_free).
 *
 * Both steps commit with one store (fs->top, slot->cache), which is what the restartable-
 * sequence fast path needs; in this per-CPU-lock mode the caller holds mc->lock around them.
 * The owner writes span->freeindex with relaxed atomics: mcentral_is_free reads it for
 * double-free checks.
 */
#include <errno.h>
#include <string.h>

#include "core/error.h"
#include "core/mcache.h"

static uint32_t stack_cap(unsigned sizeclass) {
  uint32_t cap = 32768 / nh_class_to_size[sizeclass];
  return cap < 2 ? 2 : cap > 128 ? 128 : cap;
}

nh_mcache_t *mcache_new(nh_mem_t *mem, const nh_arena_set_t *arenas, int cpu, int node, nh_mcentral_t *central) {
  size_t entries = 0;
  for (unsigned ac = NH_NUM_KINDS; ac < NH_NUM_ALLOC_CLASSES; ac++)
    entries += stack_cap(allocclass_sizeclass(ac));
  nh_mcache_t *mc = mem_meta_alloc(mem, sizeof *mc, 64);
  void **items = mem_meta_alloc(mem, entries * sizeof(void *), 64);
  if (!mc || !items)
    return NULL;
  nh_mutex_init(&mc->lock, LOCK_RANK_MCACHE);
  mc->cpu = cpu;
  mc->node = node;
  mc->central = central;
  mc->arenas = arenas;
  for (unsigned ac = NH_NUM_KINDS; ac < NH_NUM_ALLOC_CLASSES; ac++) {
    mc->free[ac].cap = stack_cap(allocclass_sizeclass(ac));
    mc->free[ac].items = items;
    items += mc->free[ac].cap;
  }
  return mc;
}

static uint64_t word_free(const nh_span_t *s, size_t w) {
  size_t left = s->nelems - w * 64;
  uint64_t valid = left >= 64 ? ~0ull : (1ull << left) - 1;
  return ~s->alloc_bits[w] & valid;
}

/* Points the slot at the first word at or after w with a free object; false if none. */
static bool slot_seek(nh_mcache_slot *sl, size_t w) {
  nh_span_t *s = sl->span;
  for (size_t words = (s->nelems + 63u) / 64; w < words; w++) {
    uint64_t free = word_free(s, w);
    if (free) {
      __atomic_store_n(&s->freeindex, (uint16_t)(w * 64), __ATOMIC_RELAXED);
      sl->word_base = s->base + w * 64 * (uintptr_t)s->elemsize;
      sl->cache = free;
      return true;
    }
  }
  __atomic_store_n(&s->freeindex, (uint16_t)(w * 64), __ATOMIC_RELAXED);
  return false;
}

static void slot_release(nh_mcache_t *mc, unsigned ac) {
  nh_mcache_slot *sl = &mc->slot[ac];
  if (sl->span)
    mcentral_uncache_span(&mc->central[ac], sl->span, sl->cache);
  sl->span = NULL;
  sl->cache = 0;
}

/* The slot's word is used up: next word, or next span. */
static bool slot_refill(nh_mcache_t *mc, unsigned ac) {
  nh_mcache_slot *sl = &mc->slot[ac];
  if (sl->span && slot_seek(sl, sl->span->freeindex / 64u + 1))
    return true;
  slot_release(mc, ac);
  nh_span_t *s = mcentral_cache_span(&mc->central[ac]);
  if (!s)
    return false;
  sl->span = s;
  if (!slot_seek(sl, 0))
    nh_fatal("mcache: span %#lx came from mcentral without a free object", (unsigned long)s->base);
  return true;
}

void *mcache_alloc(nh_mcache_t *mc, unsigned ac, bool *needzero) {
  nh_mutex_assert_held(&mc->lock);
  nh_freestack *fs = &mc->free[ac];
  if (fs->top) {
    *needzero = true;
    return fs->items[--fs->top];
  }
  nh_mcache_slot *sl = &mc->slot[ac];
  while (!sl->cache)
    if (!slot_refill(mc, ac))
      return NULL;
  uint64_t c = sl->cache;
  void *p = (void *)(sl->word_base + (uintptr_t)__builtin_ctzll(c) * sl->span->elemsize);
  sl->cache = c & (c - 1);
  *needzero = sl->span->needzero;
  return p;
}

/* Returns the n oldest objects of the stack to their spans. */
static void drain(nh_mcache_t *mc, unsigned ac, uint32_t n) {
  nh_freestack *fs = &mc->free[ac];
  uint16_t idx[128];
  for (uint32_t i = 0; i < n;) {
    /* One mcentral call per run of objects from the same span. */
    nh_span_t *s = NULL;
    size_t k = 0;
    for (; i < n && k < NH_ARRAY_LEN(idx); i++) {
      nh_span_t *t = span_of(mc->arenas, fs->items[i]);
      if (s && t != s)
        break;
      s = t;
      idx[k++] = (uint16_t)span_obj_index(s, (uintptr_t)fs->items[i]);
    }
    /* The span's own mcentral: objects freed here may come from another node's spans. */
    size_t doubles = mcentral_free(s->central, s, idx, k);
    if (doubles)
      nh_error(-EINVAL, "nh_free: %zu object(s) of span %#lx were freed twice; ignored", doubles,
               (unsigned long)s->base);
  }
  memmove(fs->items, fs->items + n, (fs->top - n) * sizeof *fs->items);
  fs->top -= n;
}

void mcache_free(nh_mcache_t *mc, unsigned ac, void *p) {
  nh_mutex_assert_held(&mc->lock);
  nh_freestack *fs = &mc->free[ac];
  if (fs->top == fs->cap)
    drain(mc, ac, fs->cap / 2);
  fs->items[fs->top++] = p;
}

bool mcache_holds(const nh_mcache_t *mc, unsigned ac, const void *p) {
  const nh_freestack *fs = &mc->free[ac];
  for (uint32_t i = 0; i < fs->top; i++)
    if (fs->items[i] == p)
      return true;
  return false;
}

void mcache_flush(nh_mcache_t *mc) {
  nh_mutex_assert_held(&mc->lock);
  for (unsigned ac = NH_NUM_KINDS; ac < NH_NUM_ALLOC_CLASSES; ac++) {
    if (mc->free[ac].top)
      drain(mc, ac, mc->free[ac].top);
    slot_release(mc, ac);
  }
}
