/*
 * mcache.c — Go's mcache, one per CPU, with TCMalloc's per-CPU stacks in front.
 *
 * Per allocation class a cache has
 *   a free stack  objects ready to hand out, LIFO (cache-hot): freed on this CPU, or taken
 *                 from the slot in batches. Capacity: 64 KiB worth of objects, 4 .. 512;
 *   a slot        a span this cache owns, read 64 objects at a time by count-trailing-zeros
 *                 on the free mask of one bitmap word (Go's allocCache / nextFreeFast).
 *
 * Fast paths: allocation pops the stack, free pushes it. In rseq mode these are restartable
 * sequences (percpu.h): no lock, no atomic read-modify-write, one committing store. In lock
 * mode they run under the CPU's cache lock. Slow paths:
 *   alloc, stack empty  take the cache's lock, pull a batch (half the stack's capacity, at
 *                       most 32) from the slot, moving to the span's next word or to a new
 *                       span from the node's mcentral as needed; return one object and push
 *                       the rest (in rseq mode onto whatever CPU the thread now runs on; what
 *                       does not fit goes back to its span).
 *   free, stack full    pop half the stack and hand those objects to the node's transfer
 *                       cache (TCMalloc's), or, when it is full or the objects belong to
 *                       another node's spans, return them to their spans (mcentral_free on
 *                       each span's own mcentral), then push. A cache that runs dry takes a
 *                       batch from the transfer cache before it reads its slot, so objects
 *                       freed in bursts move between CPUs without touching their spans.
 * secure = on (mimalloc's secure mode is the model): a freed object goes onto a second stack,
 * the CPU's freed stack, and is not handed out again until the free stack has run dry; then
 * the freed objects refill it, before the transfer cache and the slot do; and every refill
 * batch is shuffled before it goes on the stack (a per-cache xorshift from a secret seed of
 * its own). So the next allocation is not the object just freed, and allocation order is
 * neither address order nor the reverse of the order of frees. Both stacks keep the fast
 * paths' restartable sequences.
 * Node caches: besides the CPUs' caches, one per NUMA node (nh_alloc_onnode from another
 * node's CPU), in lock mode always: never touched by a restartable sequence, flushed and
 * searched with the others.
 * Remote operations (the flush) stop the cache: lock, stopped = 1, fence the CPU
 * (percpu.c), work, stopped = 0, unlock. A sequence that finds a cache stopped takes the slow
 * path, which waits on the lock.
 *
 * Objects in free stacks are allocated as far as their spans know; the collector flushes the
 * caches before it sweeps (Go's mcache.releaseAll at sweep termination).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/error.h"
#include "core/thread.h"
#include "core/mcache.h"
#include "core/vg.h"

enum { REFILL_MAX = 32, STACK_BYTES = 64 << 10, STACK_MIN = 4, STACK_MAX = 512 };

/* A class's free-stack capacity: 64 KiB worth of objects, between 4 and 512. */
uint32_t mcache_stack_cap(unsigned ac) {
  if (ac == NH_AC_TINY)
    return 0;
  uint32_t cap = STACK_BYTES / nh_class_to_size[allocclass_sizeclass(ac)];
  return cap < STACK_MIN ? STACK_MIN : cap > STACK_MAX ? STACK_MAX : cap;
}

nh_mcache_t *mcache_new(nh_mem_t *mem, const nh_arena_set_t *arenas, int cpu, int node, nh_mcentral_t *central,
                        uint64_t shuffle_seed) {
  size_t entries = 0;
  for (unsigned ac = NH_NUM_KINDS; ac < NH_NUM_ALLOC_CLASSES; ac++)
    entries += mcache_stack_cap(ac) * (shuffle_seed ? 2 : 1);   /* secure: the freed stacks too */
  /* The cache and its stacks in one mapping on the CPU's node (real nodes only). */
  size_t head = nh_align_up(sizeof(nh_mcache_t), 64);
  bool bind = arenas->place.bind && node < arenas->place.nnodes;
  nh_mcache_t *mc = mem_meta_alloc_node(mem, head + entries * sizeof(void *), node, arenas->place.nnodes, bind);
  if (!mc)
    return NULL;
  void **items = (void **)((char *)mc + head);
  nh_mutex_init(&mc->lock, LOCK_RANK_MCACHE);
  mc->cpu = cpu;
  mc->node = node;
  mc->central = central;
  mc->arenas = arenas;
  mc->rng = shuffle_seed;
  for (unsigned ac = NH_NUM_KINDS; ac < NH_NUM_ALLOC_CLASSES; ac++) {
    mc->free[ac].cap = mcache_stack_cap(ac);
    mc->free[ac].items = items;
    items += mc->free[ac].cap;
    if (shuffle_seed) {
      mc->freed[ac].cap = mcache_stack_cap(ac);
      mc->freed[ac].items = items;
      items += mc->freed[ac].cap;
    }
  }
  return mc;
}


/* ---------------------------------------------------------------------------------------------
 * Slots: taking objects from the cache's spans (under mc->lock).
 * ------------------------------------------------------------------------------------------- */

/* Points the slot at the first word at or after w with a free object; false if none. */
static bool slot_seek(nh_mcache_slot *sl, size_t w) {
  nh_span_t *s = sl->span;
  for (size_t words = (s->nelems + 63u) / 64; w < words; w++) {
    uint64_t free = ~s->alloc_bits[w] & span_word_mask(s, w);
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
  nh_mutex_assert_held(&mc->lock);
  nh_mcache_slot *sl = &mc->slot[ac];
  if (sl->span)
    mcentral_uncache_span(&mc->central[ac], sl->span, sl->cache);
  sl->span = NULL;
  sl->cache = 0;
}

/* The slot's word is used up: next word, or next span. */
static bool slot_refill(nh_mcache_t *mc, unsigned ac) {
  nh_mutex_assert_held(&mc->lock);
  nh_mcache_slot *sl = &mc->slot[ac];
  if (sl->span && slot_seek(sl, sl->span->freeindex / 64u + 1))
    return true;
  slot_release(mc, ac);
  nh_span_t *s = mcentral_cache_span(&mc->central[ac], mc->cpu);
  if (!s)
    return false;
  sl->span = s;
  if (!slot_seek(sl, 0))
    nh_fatal("mcache: span %#lx came from mcentral without a free object", (unsigned long)s->base);
  return true;
}

__thread size_t nh_black_bytes __attribute__((tls_model("initial-exec")));
__thread size_t nh_black_objects __attribute__((tls_model("initial-exec")));

/* Black allocation in bulk: while a concurrent mark runs, the objects taken from the slot's
 * word are marked as they leave it, one OR for up to 64 of them, so that allocating one later
 * finds its bit set and marks nothing (malloc.c's born: a test, no read-modify-write, no
 * shared counter). An object taken but not allocated before the mark ends goes back to its
 * span when the caches are flushed, and the span's rebuild clears the mark of every freed
 * object (mcentral.c), so none comes back as allocated. The caller is in a no-stop region,
 * so the mark cannot begin or end between the flag's read and the OR.
 * A black object is never scanned, so the words of its previous life must not be there for
 * anyone to follow: a scanned object whose span may hold old data is zeroed as it is taken
 * (slot_take), not only when it is handed out. Otherwise a thread stopped at termination
 * between taking the object and zeroing it holds a black object full of stale words, which
 * the stack rescan would no longer scan (it was marked already) and the checkmark traversal
 * would follow to garbage (a false "doubtful" object; the old words are never the program's). */
static void blacken(nh_span_t *s, uint64_t taken) {
  uint64_t *word = &s->gcmark_bits[s->freeindex / 64u];
  size_t fresh = (size_t)__builtin_popcountll(taken & ~__atomic_fetch_or(word, taken, __ATOMIC_RELAXED));
  nh_black_objects += fresh;
  nh_black_bytes += fresh * s->elemsize;
}

/* Up to n objects from the slot into out; fewer only when the OS refuses memory. */
static size_t slot_take(nh_mcache_t *mc, unsigned ac, void **out, size_t n) {
  nh_mutex_assert_held(&mc->lock);
  nh_mcache_slot *sl = &mc->slot[ac];
  size_t got = 0;
  bool black = __atomic_load_n(&nh__marking, __ATOMIC_RELAXED);
  while (got < n) {
    if (!sl->cache && !slot_refill(mc, ac))
      break;
    uint64_t c = sl->cache;
    uint32_t size = sl->span->elemsize;
    /* Objects free in their span may still say owned (span.h: the sweep leaves a dead object's
     * byte as it was): cleared as they go back into circulation. */
    uint8_t *live = sl->span->live ? sl->span->live + sl->span->freeindex : NULL;
    bool wipe = black && sl->span->needzero && sl->span->kind != NH_KIND_NOSCAN;
    for (; c && got < n; c &= c - 1) {
      unsigned i = (unsigned)__builtin_ctzll(c);
      if (live)
        __atomic_store_n(&live[i], 0, __ATOMIC_RELAXED);
      void *obj = (void *)(sl->word_base + (uintptr_t)i * size);
      if (wipe) {
        vg_reuse(obj, size);
        memset(obj, 0, size);
      }
      out[got++] = obj;
    }
    if (black)
      blacken(sl->span, sl->cache & ~c);
    sl->cache = c;
  }
  return got;
}

/* Returns objects (of one class, any spans) to their spans. */
static void return_objects(const nh_arena_set_t *arenas, void **objs, size_t n) {
  uint16_t idx[REFILL_MAX * 4];
  for (size_t i = 0; i < n;) {
    nh_span_t *s = NULL;
    size_t k = 0;
    for (; i < n && k < NH_ARRAY_LEN(idx); i++) {   /* one mcentral call per run of one span */
      nh_span_t *t = span_of(arenas, objs[i]);
      if (s && t != s)
        break;
      s = t;
      idx[k++] = (uint16_t)span_obj_index(s, (uintptr_t)objs[i]);
    }
    size_t doubles = mcentral_free(s->central, s, idx, k);
    if (doubles)
      nh_error(-EINVAL, "nh_free: %zu object(s) of span %#lx were freed twice; ignored", doubles,
               (unsigned long)s->base);
  }
}

/* Objects a cache gives up: into its node's transfer cache for the class when their spans
 * belong to it (so that they are handed out again on their own node), the rest (remote
 * frees, or no room) back to their spans. */
static void give_up(nh_mcache_t *mc, unsigned ac, void **objs, size_t n) {
  nh_mcentral_t *c = &mc->central[ac];
  size_t local = 0;
  for (size_t i = 0; i < n; i++) {
    if (span_of(mc->arenas, objs[i])->central != c)
      continue;
    void *t = objs[local];
    objs[local++] = objs[i];
    objs[i] = t;
  }
  size_t put = mcentral_xfer_put(c, objs, local);
  return_objects(mc->arenas, objs + put, n - put);
}

__thread size_t nh_refill_bytes __attribute__((tls_model("initial-exec")));

/* secure = on: the batch in random order (Fisher-Yates), so that neighbouring allocations do
 * not get neighbouring objects (mimalloc's secure mode shuffles its free lists likewise). */
static void shuffle(nh_mcache_t *mc, void **v, size_t n) {
  for (size_t i = n; i > 1; i--) {
    mc->rng ^= mc->rng << 13, mc->rng ^= mc->rng >> 7, mc->rng ^= mc->rng << 17;
    size_t j = mc->rng % i;
    void *t = v[i - 1];
    v[i - 1] = v[j];
    v[j] = t;
  }
}

/* secure = on: up to n objects of the freed stack (under mc's lock: mc's own; with rseq,
 * that of the CPU the thread runs on, by restartable pops). */
static size_t take_freed(nh_mcaches_t *all, nh_mcache_t *mc, unsigned ac, void **out, size_t n, bool rseq) {
  size_t got = 0;
  if (!rseq) {
    nh_freestack *fd = &mc->freed[ac];
    while (got < n && fd->top)
      out[got++] = fd->items[--fd->top];
    return got;
  }
  while (got < n && percpu_pop((void *const *)all->cpu, all->ncpus, mcache_freed_offset(ac), &out[got]))
    got++;
  return got;
}

/* Up to n objects for a cache that ran dry: in secure mode what it freed meanwhile first, else
 * a batch from the transfer cache, else its slot. */
static size_t refill(nh_mcaches_t *all, nh_mcache_t *mc, unsigned ac, void **out, size_t n, bool rseq) {
  size_t got = nh_unlikely(mc->rng) ? take_freed(all, mc, ac, out, n, rseq) : 0;
  if (!got)
    got = mcentral_xfer_take(&mc->central[ac], out, n);
  if (!got)
    got = slot_take(mc, ac, out, n);
  if (nh_unlikely(mc->rng))
    shuffle(mc, out, got);
  nh_refill_bytes += got * nh_class_to_size[allocclass_sizeclass(ac)];
  return got;
}

/* ---------------------------------------------------------------------------------------------
 * Lock mode.
 * ------------------------------------------------------------------------------------------- */

static void *alloc_locked(nh_mcaches_t *all, nh_mcache_t *mc, unsigned ac) {
  nh_freestack *fs = &mc->free[ac];
  if (fs->top)
    return fs->items[--fs->top];
  size_t want = fs->cap / 2 < REFILL_MAX ? fs->cap / 2 : REFILL_MAX;
  void *batch[REFILL_MAX];
  size_t got = refill(all, mc, ac, batch, want ? want : 1, false);
  if (!got)
    return NULL;
  memcpy(fs->items, batch, (got - 1) * sizeof *batch);
  fs->top = (uint32_t)(got - 1);
  return batch[got - 1];
}

static void free_locked(nh_mcache_t *mc, unsigned ac, void *p, bool later) {
  nh_freestack *fs = later ? &mc->freed[ac] : &mc->free[ac];
  if (fs->top == fs->cap) {
    uint32_t n = fs->cap / 2;
    give_up(mc, ac, fs->items, n);
    memmove(fs->items, fs->items + n, (fs->top - n) * sizeof *fs->items);
    fs->top -= n;
  }
  fs->items[fs->top++] = p;
}

/* ---------------------------------------------------------------------------------------------
 * rseq mode slow paths.
 * ------------------------------------------------------------------------------------------- */

/* The slow paths move objects between a stack and the spans while holding the lock of the
 * cache of the CPU they run on, which also waits out a flush of that cache. A thread that
 * migrates between reading its CPU and the sequence touches another CPU's stack, through
 * restartable sequences that the stack's own CPU may run at the same time: safe, as each
 * commits with one store. */
static void *alloc_slow(nh_mcaches_t *all, unsigned ac) {
  nh_mcache_t *mc = all->cpu[percpu_current_cpu(all->ncpus)];
  nh_freestack *fs = &mc->free[ac];
  size_t want = fs->cap / 2 < REFILL_MAX ? fs->cap / 2 : REFILL_MAX;
  void *batch[REFILL_MAX];
  nh_mutex_lock(&mc->lock);   /* also waits out a remote operation on this cache */
  size_t got = refill(all, mc, ac, batch, want ? want : 1, true);
  size_t kept = got ? got - 1 : 0, pushed = 0;
  /* One sequence pushes the rest of the batch as it is: the objects go out from the highest
   * address down, after batch[got - 1], as in lock mode. */
  if (kept > 0)
    percpu_push_n((void *const *)all->cpu, all->ncpus, mcache_stack_offset(ac), batch, kept, &pushed);
  if (pushed < kept)   /* the stack filled up (or the thread has no rseq): back to the spans */
    return_objects(mc->arenas, batch + pushed, kept - pushed);
  nh_mutex_unlock(&mc->lock);
  return got ? batch[got - 1] : NULL;
}

/* A free whose stack (the free stack, or with later the freed one) was full. */
static void free_slow(nh_mcaches_t *all, unsigned ac, void *p, bool later) {
  size_t off = later ? mcache_freed_offset(ac) : mcache_stack_offset(ac);
  for (;;) {
    nh_mcache_t *mc = all->cpu[percpu_current_cpu(all->ncpus)];
    nh_mutex_lock(&mc->lock);   /* waits out a remote operation; see above */
    /* Full: pop half the stack we are on and send it back to the spans, then push. */
    void *batch[STACK_MAX / 2];
    size_t n = 0, half = mc->free[ac].cap / 2;
    while (n < half && percpu_pop((void *const *)all->cpu, all->ncpus, off, &batch[n]))
      n++;
    give_up(mc, ac, batch, n);
    bool pushed = percpu_push((void *const *)all->cpu, all->ncpus, off, p);
    if (!pushed && n == 0)   /* no rseq for this thread: hand the object straight back */
      return_objects(mc->arenas, &p, 1);
    nh_mutex_unlock(&mc->lock);
    if (pushed || n == 0)
      return;
  }
}

/* ---------------------------------------------------------------------------------------------
 * Entry points.
 * ------------------------------------------------------------------------------------------- */

/* The slow paths take locks: no-stop regions for the collector (gc.h). */
void *mcache_alloc_slow(nh_mcaches_t *all, unsigned ac) {
  void *p;
  region_enter();
  if (all->rseq) {
    p = alloc_slow(all, ac);
  } else {
    nh_mcache_t *mc = all->cpu[percpu_current_cpu(all->ncpus)];
    nh_mutex_lock(&mc->lock);
    p = alloc_locked(all, mc, ac);
    nh_mutex_unlock(&mc->lock);
  }
  region_exit();
  return p;
}

void *mcache_alloc_node(nh_mcaches_t *all, unsigned ac, int node) {
  region_enter();
  nh_mcache_t *mc = all->cpu[all->ncpus + (uint32_t)node];
  nh_mutex_lock(&mc->lock);
  void *p = alloc_locked(all, mc, ac);
  nh_mutex_unlock(&mc->lock);
  region_exit();
  return p;
}

void mcache_free_remote(nh_mcaches_t *all, nh_span_t *s, void *p) {
  vg_free(p);
  region_enter();
  if (!mcentral_xfer_put(s->central, &p, 1))
    return_objects(all->cpu[0]->arenas, &p, 1);
  region_exit();
}

static void free_any(nh_mcaches_t *all, unsigned ac, void *p, bool later) {
  vg_free(p);   /* under valgrind every free comes here (no rseq) */
  region_enter();
  if (all->rseq) {
    free_slow(all, ac, p, later);
  } else {
    nh_mcache_t *mc = all->cpu[percpu_current_cpu(all->ncpus)];
    nh_mutex_lock(&mc->lock);
    free_locked(mc, ac, p, later);
    nh_mutex_unlock(&mc->lock);
  }
  region_exit();
}

void mcache_free_slow(nh_mcaches_t *all, unsigned ac, void *p) { free_any(all, ac, p, false); }

void mcache_free_later(nh_mcaches_t *all, unsigned ac, void *p) {
  if (nh_likely(all->rseq) && percpu_push((void *const *)all->cpu, all->ncpus, mcache_freed_offset(ac), p))
    return;
  free_any(all, ac, p, true);
}

/* ---------------------------------------------------------------------------------------------
 * Tiny blocks.
 * ------------------------------------------------------------------------------------------- */

/* Bytes left in the block that cursor cur points into. */
static size_t tiny_room(uintptr_t cur) { return cur ? (((cur - 1) | (NH_TINY_BLOCK - 1)) + 1) - cur : 0; }

void *mcache_tiny_slow(nh_mcaches_t *all, size_t size, size_t amask) {
  void *p = NULL;
  region_enter();
  nh_mcache_t *mc = all->cpu[percpu_current_cpu(all->ncpus)];
  nh_mutex_lock(&mc->lock);
  uintptr_t cur = __atomic_load_n(&mc->tiny, __ATOMIC_RELAXED);
  if (!all->rseq && cur) {   /* lock mode: the fast path, under the lock */
    uintptr_t q = (cur + amask) & ~amask;
    if (q + size <= cur + tiny_room(cur)) {
      __atomic_store_n(&mc->tiny, q + size, __ATOMIC_RELAXED);
      p = (void *)q;
    }
  }
  if (!p && slot_take(mc, NH_AC_TINY, &p, 1)) {
    /* A new block: its words describe a previous life (cleared here, before the program can
     * see an object in it). In rseq mode the store below may race a sequence on the cache's
     * CPU (this thread may have moved): either value is a cursor into a block whose bytes
     * before it are handed out, so the other block's room is lost, never handed twice. */
    __atomic_store_n(tiny_word((uintptr_t)p), 0, __ATOMIC_RELAXED);
    if (NH_TINY_BLOCK - size > tiny_room(cur))
      __atomic_store_n(&mc->tiny, (uintptr_t)p + size, __ATOMIC_RELAXED);
  }
  nh_mutex_unlock(&mc->lock);
  region_exit();
  return p;
}

/* Takes cache cpu away from the fast paths (see percpu.c); undone by resume. */
static nh_mcache_t *stop(nh_mcaches_t *all, int cpu) {
  nh_mcache_t *mc = all->cpu[cpu];
  nh_mutex_lock(&mc->lock);
  if (all->rseq && (uint32_t)cpu < all->ncpus) {   /* node caches: the lock is enough */
    __atomic_store_n(&mc->stopped, 1, __ATOMIC_SEQ_CST);
    percpu_fence(cpu);
  }
  return mc;
}

static void resume(nh_mcaches_t *all, nh_mcache_t *mc) {
  __atomic_store_n(&mc->stopped, 0, __ATOMIC_RELEASE);
  nh_mutex_unlock(&mc->lock);
}

void mcache_flush_all(nh_mcaches_t *all) {
  for (uint32_t cpu = 0; cpu < all->ncpus + all->nnodes; cpu++) {
    nh_mcache_t *mc = stop(all, (int)cpu);
    mc->tiny = 0;   /* its block is free again once none of its objects is reachable */
    for (unsigned ac = NH_NUM_KINDS; ac < NH_NUM_ALLOC_CLASSES; ac++) {
      nh_freestack *fs = &mc->free[ac], *fd = &mc->freed[ac];
      return_objects(mc->arenas, fs->items, fs->top);
      fs->top = 0;
      return_objects(mc->arenas, fd->items, fd->top);
      fd->top = 0;
      slot_release(mc, ac);
      /* The node's transfer cache too (the first CPU of each node empties it). */
      void *batch[STACK_MAX];
      for (size_t k; (k = mcentral_xfer_take(&mc->central[ac], batch, STACK_MAX)) > 0;)
        return_objects(mc->arenas, batch, k);
    }
    resume(all, mc);
  }
}

/* ---------------------------------------------------------------------------------------------
 * Validation (Debug builds: the cycle runs it with the world stopped, before the caches flush).
 * ------------------------------------------------------------------------------------------- */

static int cmp_ptr(const void *a, const void *b) {
  uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
  return x < y ? -1 : x > y;
}

static void check_stack(const nh_mcache_t *mc, unsigned ac, const nh_freestack *fs, uintptr_t *all, size_t *n) {
  if (fs->top > fs->cap)
    nh_fatal("mcache cpu %d class %u: stack top %u past its capacity %u", mc->cpu, ac, fs->top, fs->cap);
  for (uint32_t i = 0; i < fs->top; i++) {
    uintptr_t p = (uintptr_t)fs->items[i];
    nh_span_t *s = span_of(mc->arenas, (void *)p);
    if (!s || s->state != SPAN_INUSE || !s->central || s->central->allocclass != ac)
      nh_fatal("mcache cpu %d class %u: %#lx is not an object of its class", mc->cpu, ac, (unsigned long)p);
    size_t idx = span_obj_index(s, p);
    if (idx >= s->nelems || s->base + idx * s->elemsize != p)
      nh_fatal("mcache cpu %d class %u: %#lx is not an object's start", mc->cpu, ac, (unsigned long)p);
    if (__atomic_load_n(&s->live[idx], __ATOMIC_RELAXED))
      nh_fatal("mcache cpu %d class %u: %#lx is among the free objects but the program owns it", mc->cpu, ac,
               (unsigned long)p);
    if (!s->cached && !bitmap_get(s->alloc_bits, idx))
      nh_fatal("mcache cpu %d class %u: %#lx is free in its span and in a free stack", mc->cpu, ac, (unsigned long)p);
    all[(*n)++] = p;
  }
}

void mcache_validate(nh_mcaches_t *all) {
  size_t total = 0;
  for (uint32_t c = 0; c < all->ncpus + all->nnodes; c++)
    for (unsigned ac = NH_NUM_KINDS; ac < NH_NUM_ALLOC_CLASSES; ac++)
      total += all->cpu[c]->free[ac].top + all->cpu[c]->freed[ac].top;
  if (!total)
    return;
  size_t bytes = (total * sizeof(uintptr_t) + 4095) & ~(size_t)4095;
  uintptr_t *seen = os_linux.map(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
  if (seen == MAP_FAILED)
    return;   /* a debug check, not worth failing the program over */
  size_t n = 0;
  for (uint32_t c = 0; c < all->ncpus + all->nnodes; c++)
    for (unsigned ac = NH_NUM_KINDS; ac < NH_NUM_ALLOC_CLASSES; ac++) {
      check_stack(all->cpu[c], ac, &all->cpu[c]->free[ac], seen, &n);
      check_stack(all->cpu[c], ac, &all->cpu[c]->freed[ac], seen, &n);
    }
  qsort(seen, n, sizeof *seen, cmp_ptr);
  for (size_t i = 1; i < n; i++)
    if (seen[i] == seen[i - 1])
      nh_fatal("mcache: %#lx is in the free stacks twice", (unsigned long)seen[i]);
  os_linux.unmap(seen, bytes);
}
