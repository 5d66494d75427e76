/*
 * malloc.c — allocation and free: the public nh_alloc family (Go's mallocgc and its paths).
 *
 * Paths by size, as the seed's notes and Go's malloc.go:
 *   small (<= 32 KiB)  size class from the generated table, then the calling CPU's mcache
 *                      (free stack, then its span's 64-object word), then the node's mcentral,
 *                      then the node's page heap;
 *   large (> 32 KiB)   a span of its own straight from the node's page heap (class 0);
 *   tiny (<= 5 B)      with the collector on, nh_alloc_noscan objects share 16-byte blocks
 *                      (Go's tiny allocator): a restartable bump in the CPU's current block,
 *                      a new block from the CPU's tiny span when it has no room.
 *
 * Tiny objects: a block can only be freed whole, so the collector frees it, once none of its
 * objects is reachable (a reference to any byte keeps the block); nh_free of a tiny object is
 * accepted and left to it (stats: tiny_frees), and with gc = off, where nothing would free a
 * block, small noscan requests take the size classes instead. Go's tiny objects have no
 * identity of their own; nheap's must, because nh_usable_size, nh_realloc and nh_base take any
 * object. Each block has a word of start and end bits at the front of its span (span.h), set
 * with one atomic OR per allocation: 4 bytes per 16-byte block, which Go does not pay. That is
 * why the tiny limit is 5 bytes where Go's is 15: measured on a million live objects of random
 * sizes, packing up to 15 bytes took 12.3 bytes per object for sizes 1..15 against 11.8 from
 * the size classes (20 against 16 for 9..15: one such object per block), while packing up to
 * 5 bytes takes 4.4 against 8 for sizes 1..5, 5.8 against 8 for 1..8, 10.6 against 11.8 for
 * 1..15, and 16 for 9..15 (no tiny objects there). tests/test_gc.c checks the packing and
 * every object's identity.
 *
 * The collector's part (gc != off): a thread attaches on its first allocation (one TLS load
 * and compare on the fast path), so its stack is scanned. Slow paths that take locks, or hold
 * a new object only in metadata (a large span between the page heap and the register that
 * returns it), are no-stop regions (gc.h), so the world is never stopped inside one. A refill
 * or large allocation that brings heap_live to the trigger sets `wanted`; the same thread runs the
 * cycle after its allocation is complete and zeroed, holding no lock, with the new object on
 * its stack (gc_maybe_collect). A span refused for the memory limit makes the thread collect
 * and sweep once and retry (or, while the CPU limiter holds collections back, pass the limit
 * for now: gc_limit_reached); NULL (ENOMEM, reported as the limit) if it still does not fit.
 *
 * Typed objects (nh_alloc_typed): the object's first word holds its type and the program gets
 * the address just past it. Go 1.22 does this (its malloc header) only above 512 bytes and
 * keeps one bit per word at the span's end for smaller objects; nheap uses the header for every
 * size, a departure with three reasons: nh_realloc must keep a typed object typed, which needs
 * the type (Go has no realloc; span-end bits lose it); objects of one span are handed out from
 * several CPUs' free stacks at once, so span-end bits would need atomic read-modify-writes that
 * Go avoids because one P owns the span; and span layouts, the size-class limits and the free
 * fast path stay the same for every kind. The cost is 8 bytes per small typed object. Typed
 * spans publish no page info, so their frees take free_object, which maps the program's pointer
 * back to the start.
 *
 * Zeroing: scanned kinds (nh_alloc, nh_alloc_typed) and nh_calloc return zeroed memory, as
 * Go's and bdwgc's GC_MALLOC do, so a conservative scan never sees stale pointers;
 * nh_alloc_noscan does not (as malloc), nor touches the object at all. Small objects
 * are zeroed on every allocation (a cached object may hold old data); large ones only when
 * their pages were used before (span->needzero: fresh and released pages read as zero).
 *
 * Free and bad input: nh_free reads the page's info word from the arena record (allocation
 * class, page in span, size class; arena.h) and checks that p starts an object with one
 * multiply, without loading the span; large objects, free memory and foreign pointers take
 * the span path (free_object). Double frees: each small object has an ownership byte in its
 * span (span.h), 1 from the allocation that hands it out to the free that takes it back (an
 * object the sweep frees keeps its 1 until a slot hands it out again: so a free of an object
 * the program had hidden from the collector is not caught, as it never was). nh_free finds 1
 * and stores 0, or refuses: a second free, or a free of an object start nheap never handed
 * out (in a cache, or free in its span), is reported and
 * ignored whatever the object's bytes hold, and an allocation that pops an object it finds
 * owned (only two frees of one object racing on two CPUs put it among the free objects twice)
 * drops that copy and reports it. Outside secure mode the bytes are plain loads and stores, so
 * two frees racing on two CPUs, followed by two allocations racing for the two copies, can
 * still hand the object out twice (and a flush may give the second copy back to its span);
 * secure mode's frees exchange the byte, so only one of two racing frees succeeds and no
 * object is ever handed out twice. The fast paths find the byte from the
 * arena record (the page's ownership bytes, arena.h) without the span: a load, a test and a
 * store each; neither path touches the object itself (noscan objects are not cleared, and a
 * freed object keeps its bytes, but for a typed object's header, cleared so that it names no
 * type once free). Nothing in a freed object is derived from a secret. Large
 * objects: with the collector their span leaves the sweeper's set once (a second free is
 * refused, except that both are left to the collector while a mark runs); without it a second
 * free finds free pages, unless they were reused meanwhile.
 * Every bad call that is detected is reported through the error funnel and changes nothing. While a concurrent mark
 * runs, a valid nh_free is left to the collector (stats: frees_deferred): a marker may hold
 * the object grey, and neither the object nor its span may change under it. A free that began
 * just before the mark (past the fast path's check) still lands in a free stack: such an
 * untyped small object may be scanned while free, which costs nothing but retention.
 *
 * CPU-local caches (mcache.c): restartable sequences where glibc registered rseq, else the
 * per-CPU lock mode; the stats say which.
 *
 * NUMA: a CPU's cache takes spans from its node, and large objects come from the calling
 * CPU's node. nh_alloc_onnode(size, node) asks for another node's memory: from a CPU of that
 * node it is nh_alloc; from any other, it takes the node's own cache (mcache.c, under its
 * lock) or its page heap. A free on a CPU of another node than the object's memory (a remote
 * free, counted per node) skips the CPU's stack, which would hand the object out again on the
 * wrong node, and sends it to its node's transfer cache or its span; with one node the fast
 * path's only extra work is one compare.
 *
 * secure = on: a freed object is zeroed past its mark word (large ones whole; the sweep zeroes
 * what the collector frees: mcentral.c), frees take the checked path, and the caches hand
 * out each refill in random order (mcache.c); the metadata sits between guard pages (mem.c).
 * Under valgrind, objects are announced to memcheck as heap blocks and retired (vg.h).
 */
#include <errno.h>
#include <string.h>

#include "core/error.h"
#include "core/heap.h"
#include "core/object.h"
#include "core/vg.h"

static nh_cold bool not_ready(const char *fn) {
  nh_error(-ENODEV, "%s called before nh_init (or after nh_shutdown)", fn);
  errno = ENODEV;
  return false;
}

static inline bool check_ready(const char *fn) {
  return nh_likely(__atomic_load_n(&nh_rt.ready, __ATOMIC_ACQUIRE)) || not_ready(fn);
}

/* ---------------------------------------------------------------------------------------------
 * Allocation.
 * ------------------------------------------------------------------------------------------- */

static nh_cold void *oom(const char *fn, size_t size) {
  if (nh_limit_refused) {
    nh_limit_refused = false;
    nh_stat_add(&nh_rt.limit_refusals, 1);
    nh_error(-ENOMEM, "%s(%zu): the memory limit (%llu bytes) would be exceeded even after a full "
             "collection", fn, size, (unsigned long long)__atomic_load_n(&nh_rt.gc.pace.memory_limit, __ATOMIC_RELAXED));
  } else if (size > NH_LARGEST_OBJECT) {
    nh_error(-ENOMEM, "%s(%zu): larger than the largest object nheap hands out (%zu bytes)", fn, size,
             (size_t)NH_LARGEST_OBJECT);
  } else {
    nh_error(-ENOMEM, "%s(%zu): out of memory (the OS refused to map more)", fn, size);
  }
  errno = ENOMEM;
  return NULL;
}

/* The collector scans attached threads only: a thread attaches on its first allocation. */
static inline void attach_check(void) {
  if (nh_unlikely(!thread_attached(&nh_rt.gc.threads)) && nh_rt.gc.on)
    thread_attach();
}

static inline void zero_object(void *p, size_t bytes, bool zero) {
  if (!zero)   /* cached objects may hold old data */
    return;
  /* Small objects (sizes are multiples of 8) with two overlapping stores of a fixed size, which
   * compilers inline, instead of a call to memset for a few words. */
  char *c = p;
  if (bytes <= 16) {
    __builtin_memset(c, 0, 8);
    __builtin_memset(c + bytes - 8, 0, 8);
  } else if (bytes <= 32) {
    __builtin_memset(c, 0, 16);
    __builtin_memset(c + bytes - 16, 0, 16);
  } else if (bytes <= 64) {
    __builtin_memset(c, 0, 32);
    __builtin_memset(c + bytes - 32, 0, 32);
  } else {
    memset(c, 0, bytes);
  }
}

/* Black allocation: while a concurrent mark runs, a new object is born marked (Go's
 * gcmarknewobject). The flag is read after the object was taken, and the bit set in a no-stop
 * region that reads it again: an object taken just before the mark started is in this
 * thread's registers when the roots are scanned, one taken just before it ended is found by
 * the rescan of the stacks at mark termination, and no bit is set once it has ended. */
static nh_noinline void born_black(void *p) {
  region_enter();
  if (__atomic_load_n(&nh__marking, __ATOMIC_RELAXED))
    mark_new_object(&nh_rt.gc.work, (uintptr_t)p);
  region_exit();
}

static inline void born(void *p) {
  if (nh_unlikely(__atomic_load_n(&nh__marking, __ATOMIC_RELAXED)))
    born_black(p);
}

/* Ownership (span.h): the byte of small object base (its start, a typed one's header) in s. */
static inline uint8_t *live_byte(const nh_span_t *s, uintptr_t base) { return &s->live[span_obj_index(s, base)]; }

/* The ownership byte of small object start p of sizeclass, from the arena record alone (arena.h:
 * the page's ownership bytes), not the span and then its array. */
static inline uint8_t *page_live_byte(const nh_arena_t *a, uintptr_t p, unsigned sizeclass) {
  uint8_t *page = __atomic_load_n(&a->live[(p & (NH_ARENA_BYTES - 1)) >> NH_PAGE_SHIFT], __ATOMIC_RELAXED);
  return page + ((uint64_t)(p & (NH_PAGE_SIZE - 1)) * nh_class_to_divmagic[sizeclass] >> 32);
}

/* An allocation takes small object p from nheap: false when the program owns it already (it
 * was among the free objects twice, which only two frees of it racing on two CPUs can do; the
 * caller drops this copy). Plain accesses even in secure mode: there the free side exchanges,
 * so no object gets among the free objects twice. */
static inline bool own(void *p, unsigned sizeclass) {
  uint8_t *l = page_live_byte(nh_rt.arenas.index[(uintptr_t)p >> NH_ARENA_SHIFT], (uintptr_t)p, sizeclass);
  if (nh_unlikely(__atomic_load_n(l, __ATOMIC_RELAXED)))
    return false;
  __atomic_store_n(l, 1, __ATOMIC_RELAXED);
  return true;
}

/* A free gives object base of s back: false when the program did not own it (a double free, a
 * free of an object nheap never handed out), which changes nothing. Secure mode exchanges, so
 * that not even two racing frees of one object both succeed. */
static inline bool disown(const nh_span_t *s, uintptr_t base) {
  uint8_t *l = live_byte(s, base);
  if (nh_unlikely(nh_rt.cfg.secure))
    return __atomic_exchange_n(l, 0, __ATOMIC_RELAXED);
  if (!__atomic_load_n(l, __ATOMIC_RELAXED))
    return false;
  __atomic_store_n(l, 0, __ATOMIC_RELAXED);
  return true;
}

static nh_cold void dropped_twice(void *p) {
  nh_stat_add(&nh_rt.double_frees, 1);
  nh_error(-EINVAL, "nh_alloc: object %p was free twice over (two frees of it raced?); the second copy "
           "is dropped", p);
}

/* A mark assist for what this slow path took (cycle.c); p, just allocated, stays on the stack. */
static nh_noinline void assist(void *p, size_t bytes) {
  void *volatile keep = p;
  gc_assist(bytes);
  (void)keep;
}

/* What the refill just made black (mcache.c's slot_take), counted as marked. */
static nh_noinline void counted_black(void) {
  mark_new_counted(&nh_rt.gc.work, nh_black_bytes, nh_black_objects);
  nh_black_bytes = nh_black_objects = 0;
}

/* The cache could not serve: refill (under locks, a no-stop region), collect once and retry
 * if the memory limit refused a span, and run a paced cycle if this refill reached the goal.
 * ac is a small allocation class, or NH_AC_TINY for a tiny object of size bytes (alignment
 * mask amask). node < 0: the calling CPU's cache; else that node's (nh_alloc_onnode). */
static void *refill_and_alloc(unsigned ac, size_t size, size_t amask, bool zero, int node) {
  nh_mcaches_t *caches = &nh_rt.caches;
  unsigned sizeclass = allocclass_sizeclass(ac);
  for (int pass = 0;; pass++) {
    nh_limit_refused = false;
    void *p = ac == NH_AC_TINY ? mcache_tiny_slow(caches, size, amask)
              : node < 0       ? mcache_alloc_slow(caches, ac)
                               : mcache_alloc_node(caches, ac, node);
    nh_limit_pass = false;
    if (nh_black_objects)
      counted_black();
    if (!p && pass == 0 && nh_limit_refused && gc_limit_reached((size_t)nh_class_to_npages[sizeclass] * NH_PAGE_SIZE))
      continue;
    if (!p)
      return NULL;
    if (ac != NH_AC_TINY && nh_unlikely(!own(p, sizeclass))) {
      dropped_twice(p);
      pass = -1;
      continue;
    }
    if (ac != NH_AC_TINY) {   /* tiny objects share their block: never cleared */
      vg_reuse(p, nh_class_to_size[sizeclass]);
      zero_object(p, nh_class_to_size[sizeclass], zero);
      vg_alloc(p, nh_class_to_size[sizeclass], zero);
      born(p);
    }
    size_t refilled = nh_refill_bytes;
    nh_refill_bytes = 0;
    if (nh_unlikely(__atomic_load_n(&nh__marking, __ATOMIC_RELAXED)))
      assist(p, refilled);
    if (nh_unlikely(pace_wanted(&nh_rt.gc.pace)))
      gc_maybe_collect(p);
    return p;
  }
}

/* perf.scope = allocator: only the slow paths' own counts are ALLOC (perf/counters.c); the
 * program's time between them is dropped. */
#define COUNTED_SLOW_PATH(call)                                                      \
  ({                                                                                 \
    nh_perf_thread_t *counted_ = nh_unlikely(perf_allocator_scope()) ? perf_self() : NULL; \
    perf_skip(counted_);                                                             \
    void *r_ = (call);                                                               \
    perf_attribute(counted_, NH_PHASE_ALLOC);                                        \
    r_;                                                                              \
  })

static nh_noinline void *alloc_small_slow(unsigned ac, size_t size, size_t amask, bool zero) {
  return COUNTED_SLOW_PATH(refill_and_alloc(ac, size, amask, zero, -1));
}

/* p, which the fast path popped, was owned already: dropped. */
static nh_noinline void *alloc_small_dropped(unsigned ac, void *p, bool zero) {
  dropped_twice(p);
  return alloc_small_slow(ac, 0, 0, zero);
}

static inline __attribute__((always_inline)) void *alloc_small(unsigned sizeclass, nh_obj_kind kind, bool zero) {
  void *p;
  unsigned ac = allocclass_make(sizeclass, kind);
  /* A pop that failed may have left a value in p (a sequence aborted after its load): only a
   * pop that succeeded is checked. */
  if (nh_unlikely(!mcache_alloc_fast(&nh_rt.caches, ac, &p)))
    return alloc_small_slow(ac, 0, 0, zero);
  if (nh_unlikely(!own(p, sizeclass)))
    return alloc_small_dropped(ac, p, zero);
  zero_object(p, nh_class_to_size[sizeclass], zero);
  born(p);
  return p;
}

/* The tiny allocator (Go's mallocgcTiny): noscan objects of up to NH_TINY_MAX bytes share
 * blocks, placed one after another at the alignment their size implies (Go's rule: 8 for
 * multiples of 8, 4 of 4, 2 of 2, else 1), in the CPU's current block while it has room. The object's
 * start and end bits (span.h) are set once it is the caller's, with an atomic OR: the thread
 * may have moved to another CPU, and whoever runs on the block's CPU may be placing the next
 * object of the same block. */
static inline __attribute__((always_inline)) void *alloc_tiny(size_t size) {
  size_t amask = size & 7 ? size & 3 ? size & 1 ? 0 : 1 : 3 : 7;
  void *p;
  if (nh_unlikely(!mcache_tiny_fast(&nh_rt.caches, size, amask, &p)) &&
      !(p = alloc_small_slow(NH_AC_TINY, size, amask, false)))
    return NULL;
  unsigned off = (uintptr_t)p & (NH_TINY_BLOCK - 1);
  __atomic_fetch_or(tiny_word((uintptr_t)p), 1u << off | 1u << (16 + off + size - 1), __ATOMIC_RELEASE);
  born(p);
  return p;
}

static void *large_pages(size_t size, nh_obj_kind kind, size_t align, bool zero, int node);

static nh_noinline void *alloc_large(size_t size, nh_obj_kind kind, size_t align, bool zero) {
  return COUNTED_SLOW_PATH(large_pages(size, kind, align, zero, heap_current_node()));
}

/* A large object on node's pages. */
static void *large_pages(size_t size, nh_obj_kind kind, size_t align, bool zero, int node) {
  size_t extra = align > NH_PAGE_SIZE ? align - NH_PAGE_SIZE : 0;
  if (size > SIZE_MAX - extra - NH_PAGE_SIZE)
    return NULL;
  size_t npages = (size + extra + NH_PAGE_SIZE - 1) / NH_PAGE_SIZE, bytes = npages * NH_PAGE_SIZE;
  nh_gc_t *g = &nh_rt.gc;
  if (pace_over_limit(&g->pace, bytes) && (!gc_limit_reached(bytes) || pace_over_limit(&g->pace, bytes))) {
    nh_limit_pass = false;
    nh_limit_refused = true;
    return NULL;
  }
  nh_limit_pass = false;
  region_enter();   /* until the object is in the large set and in a register */
  nh_span_t *s = pageheap_alloc_span(&nh_rt.nodes[node].ph, npages, spanclass_make(0, kind == NH_KIND_NOSCAN), kind, kind);
  if (!s) {
    region_exit();
    return NULL;
  }
  if (align > NH_PAGE_SIZE) {
    s->base = nh_align_up(s->pages, align);
    s->elemsize = (uint32_t)(s->limit - s->base > UINT32_MAX ? 0 : s->limit - s->base);
  }
  if (g->on)   /* the sweeper's set; with gc = off nothing needs to find it */
    mcentral_add_large(&nh_rt.nodes[node].central[kind], s);
  void *p = (void *)s->base;
  bool needzero = s->needzero;
  region_exit();
  pace_account(&g->pace, (int64_t)bytes);
  vg_reuse(p, s->limit - s->base);
  if (needzero)
    zero_object(p, s->limit - s->base, zero);
  vg_alloc(p, s->limit - s->base, zero || !needzero);
  born(p);   /* after the zeroing: a black object is not scanned, and its old words must not be
                found there by a mark that ends before the zeroing (checkmark would follow them) */
  nh_stat_add(&nh_rt.large_allocs, 1);
  if (nh_unlikely(__atomic_load_n(&nh__marking, __ATOMIC_RELAXED)))
    assist(p, bytes);
  if (nh_unlikely(pace_wanted(&g->pace)))
    gc_maybe_collect(p);
  return p;
}

static inline __attribute__((always_inline)) void *alloc(const char *fn, size_t size, nh_obj_kind kind, bool zero) {
  if (nh_unlikely(!check_ready(fn)))
    return NULL;
  attach_check();
  if (size == 0)
    size = 1;
  void *p;
  if (kind == NH_KIND_NOSCAN && size <= NH_TINY_MAX && nh_rt.tiny_on)
    p = alloc_tiny(size);
  else if (size <= NH_MAX_SMALL_SIZE)
    p = alloc_small(size_to_class(size), kind, zero);
  else
    p = alloc_large(size, kind, NH_PAGE_SIZE, zero);
  return nh_likely(p != NULL) ? p : oom(fn, size);
}

NH_API void *nh_alloc(size_t size) { return alloc("nh_alloc", size, NH_KIND_CONSERVATIVE, true); }

/* From the calling CPU's node: the plain path. From another node's: that node's cache (under
 * its lock) or page heap, so the object's pages lie on node whoever allocates. */
NH_API void *nh_alloc_onnode(size_t size, int node) {
  if (!check_ready("nh_alloc_onnode"))
    return NULL;
  if (node < 0 || node >= nh_rt.topo.nnodes) {
    nh_error(-EINVAL, "nh_alloc_onnode(%zu, %d): no such node (nheap places memory on nodes 0 .. %d)", size,
             node, nh_rt.topo.nnodes - 1);
    errno = EINVAL;
    return NULL;
  }
  if (node == heap_current_node())
    return alloc("nh_alloc_onnode", size, NH_KIND_CONSERVATIVE, true);
  attach_check();
  size = size ? size : 1;
  void *p = size <= NH_MAX_SMALL_SIZE
                ? COUNTED_SLOW_PATH(refill_and_alloc(allocclass_make(size_to_class(size), NH_KIND_CONSERVATIVE), 0, 0,
                                                     true, node))
                : COUNTED_SLOW_PATH(large_pages(size, NH_KIND_CONSERVATIVE, NH_PAGE_SIZE, true, node));
  return p ? p : oom("nh_alloc_onnode", size);
}
NH_API void *nh_alloc_noscan(size_t size) { return alloc("nh_alloc_noscan", size, NH_KIND_NOSCAN, false); }

NH_API void *nh_calloc(size_t n, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(n, size, &total)) {
    nh_error(-ENOMEM, "nh_calloc(%zu, %zu): the size overflows", n, size);
    errno = ENOMEM;
    return NULL;
  }
  return alloc("nh_calloc", total, NH_KIND_CONSERVATIVE, true);
}

NH_API const nh_type *nh_type_new(size_t size, const size_t *ptr_offsets, size_t n) {
  if (!check_ready("nh_type_new"))
    return NULL;
  if (size == 0 || size % 8 || size > ((size_t)1 << 31) || (n && !ptr_offsets) || n > size / 8) {
    nh_error(-EINVAL, "nh_type_new(%zu, %p, %zu): the size must be a positive multiple of 8 (at most "
             "2 GiB) with at most size/8 pointer offsets", size, (const void *)ptr_offsets, n);
    errno = EINVAL;
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    if (ptr_offsets[i] % 8 || ptr_offsets[i] >= size) {   /* both multiples of 8: the word fits */
      nh_error(-EINVAL, "nh_type_new: pointer offset %zu (#%zu) is not an aligned word inside %zu bytes",
               ptr_offsets[i], i, size);
      errno = EINVAL;
      return NULL;
    }
  }
  size_t words = size / 8, bytes = nh_align_up(sizeof(nh_type) + (words + 63) / 64 * sizeof(uint64_t), 8);
  /* From the types region (heap.h): bumped, never freed; published as used before it is
   * written, which a reader takes for no type until the check word is there. The mark moves
   * only by a reservation that fits, so a refusal leaves the room to smaller types and the
   * mark never passes the region. */
  size_t at = __atomic_load_n(&nh_rt.types_used, __ATOMIC_RELAXED);
  do {
    if (bytes > NH_TYPES_BYTES - at) {
      nh_error(-ENOMEM, "nh_type_new(%zu): no memory for the type (%zu bytes; %zu of the %zu "
               "bytes of the types region are free)", size, bytes, NH_TYPES_BYTES - at, NH_TYPES_BYTES);
      errno = ENOMEM;
      return NULL;
    }
  } while (!__atomic_compare_exchange_n(&nh_rt.types_used, &at, at + bytes, true, __ATOMIC_ACQ_REL,
                                        __ATOMIC_RELAXED));
  nh_type *t = (nh_type *)(nh_rt.types + at);
  t->size = (uint32_t)size;
  t->nwords = (uint32_t)words;
  for (size_t i = 0; i < n; i++)
    t->bits[ptr_offsets[i] / 8 / 64] |= 1ull << (ptr_offsets[i] / 8 % 64);
  __atomic_store_n(&t->check, heap_type_check((uintptr_t)t), __ATOMIC_RELEASE);
  return t;
}

NH_API void *nh_alloc_typed(size_t size, const nh_type *type) {
  if (!check_ready("nh_alloc_typed"))
    return NULL;
  if (type && !heap_type_of((uintptr_t)type)) {
    nh_error(-EINVAL, "nh_alloc_typed(%zu, %p): not a type nh_type_new returned", size, (const void *)type);
    errno = EINVAL;
    return NULL;
  }
  if (!type || size == 0 || size % type->size || size > SIZE_MAX - NH_TYPED_HEADER) {
    nh_error(-EINVAL, "nh_alloc_typed(%zu, %p): needs a type and a size that is a multiple of its "
             "size (%u)", size, (const void *)type, type ? type->size : 0);
    errno = EINVAL;
    return NULL;
  }
  /* The header word says the type (the collector finds it from the object's start); the
   * object is zeroed, so a cycle that sees it before the header is written finds no type
   * and nothing to follow. */
  const nh_type **p = alloc("nh_alloc_typed", size + NH_TYPED_HEADER, NH_KIND_TYPED, true);
  if (!p)
    return NULL;
  __atomic_store_n(p, type, __ATOMIC_RELEASE);
  return p + 1;
}

NH_API void *nh_aligned_alloc(size_t align, size_t size) {
  if (!check_ready("nh_aligned_alloc"))
    return NULL;
  if (align == 0 || (align & (align - 1))) {
    nh_error(-EINVAL, "nh_aligned_alloc(%zu, %zu): the alignment is not a power of two", align, size);
    errno = EINVAL;
    return NULL;
  }
  if (size == 0)
    size = 1;
  attach_check();
  if (align <= 8)
    return alloc("nh_aligned_alloc", size, NH_KIND_CONSERVATIVE, true);
  /* Objects sit at page base + i * size, so a class whose size is a multiple of align (and
   * align <= a page) gives aligned objects. */
  if (size <= NH_MAX_SMALL_SIZE && align <= NH_PAGE_SIZE) {
    for (unsigned c = size_to_class(size); c < NH_NUM_SIZE_CLASSES; c++) {
      if (nh_class_to_size[c] % align == 0) {
        void *p = alloc_small(c, NH_KIND_CONSERVATIVE, true);
        return p ? p : oom("nh_aligned_alloc", size);
      }
    }
  }
  void *p = alloc_large(size, NH_KIND_CONSERVATIVE, align, true);
  return p ? p : oom("nh_aligned_alloc", size);
}

/* ---------------------------------------------------------------------------------------------
 * Lookup and free.
 * ------------------------------------------------------------------------------------------- */

NH_API void *nh_base(const void *p) {
  if (!check_ready("nh_base"))
    return NULL;
  obj_ref o;
  return heap_locate(p, &o) ? (void *)o.base : NULL;
}

NH_API size_t nh_usable_size(const void *p) {
  if (!p || !check_ready("nh_usable_size"))
    return 0;
  obj_ref o;
  if (!heap_locate(p, &o) || o.base != (uintptr_t)p) {
    nh_error(-EINVAL, "nh_usable_size(%p): not the start of an object nheap allocated", p);
    return 0;
  }
  return o.size;
}

/* Whether small object p (as the program holds it) is not the program's (freed, or never
 * handed out): its ownership byte. */
static bool not_owned(const nh_span_t *s, const void *p) {
  if (span_is_large(s) || s->allocclass == NH_AC_TINY)
    return false;
  return !__atomic_load_n(live_byte(s, object_base(s, p)), __ATOMIC_RELAXED);
}

static nh_cold bool bad_free(const char *fn, void *p, const char *why) {
  nh_stat_add(&nh_rt.bad_frees, 1);
  nh_error(-EINVAL, "%s(%p): %s; ignored", fn, p, why);
  return false;
}

/* Frees p; false (reported) when p is not a live object's start. The general path: nh_free's
 * fast path sends here only what it cannot decide alone. */
static bool free_object_locked(const char *fn, void *p) {
  obj_ref o;
  bool found = heap_locate(p, &o);
  if (!o.s && arena_of(&nh_rt.arenas, p))
    return bad_free(fn, p, "points into free heap memory (freed already: a double free?)");
  if (!o.s)
    return bad_free(fn, p, "not a pointer nheap returned (foreign memory)");
  if (!found || o.base != (uintptr_t)p)
    return bad_free(fn, p, "an interior pointer, not the start of the object");
  nh_span_t *s = o.s;
  if (s->allocclass == NH_AC_TINY) {   /* its block is freed when none of its objects is reachable */
    nh_stat_add(&nh_rt.tiny_frees, 1);
    return true;
  }
  p = (void *)object_base(s, p);   /* a typed object's header is its first word */
  if (!span_is_large(s) && !disown(s, (uintptr_t)p)) {
    nh_stat_add(&nh_rt.double_frees, 1);
    vg_free(p);   /* memcheck reports it too ("Invalid free"), with the program's stack */
    return bad_free(fn, (void *)o.base, "not an object the program owns (freed already, or never handed out): "
                    "a double free?");
  }
  if (__atomic_load_n(&nh__marking, __ATOMIC_RELAXED)) {
    /* A concurrent mark runs (and cannot end inside this region): markers may hold the object
     * grey, so it is left to the collector, which frees it by the next cycle's end (disowned
     * now: a second free is refused). */
    nh_stat_add(&nh_rt.frees_deferred, 1);
    return true;
  }
  bool remote = nh_rt.topo.nnodes > 1 && s->node != heap_current_node();
  if (remote)
    nh_stat_add(&nh_rt.nodes[s->node].remote_frees, 1);
  if (span_is_large(s)) {
    if (nh_rt.gc.on && !mcentral_remove_large(&nh_rt.nodes[s->node].central[s->kind], s)) {
      nh_stat_add(&nh_rt.double_frees, 1);
      return bad_free(fn, p, "double free");
    }
    nh_stat_add(&nh_rt.large_frees, 1);
    if (nh_rt.cfg.secure)   /* zero on free */
      memset(p, 0, s->limit - s->base);
    vg_free(p);
    pace_account(&nh_rt.gc.pace, -(int64_t)((size_t)s->npages * NH_PAGE_SIZE));
    pageheap_free_span(&nh_rt.nodes[s->node].ph, s);
    return true;
  }
  /* A typed object's header cleared: it names no type once free (a stale pointer that marks
   * it finds nothing to follow). Secure mode: all of it. */
  if (nh_rt.cfg.secure || s->kind == NH_KIND_TYPED)
    memset(p, 0, nh_rt.cfg.secure ? s->elemsize : sizeof(uintptr_t));
  if (remote)   /* back towards its own node, not into this CPU's stack */
    mcache_free_remote(&nh_rt.caches, s, p);
  else if (nh_rt.cfg.secure)   /* reused only once the free stack ran dry, shuffled */
    mcache_free_later(&nh_rt.caches, s->allocclass, p);
  else
    mcache_free(&nh_rt.caches, s->allocclass, p);
  return true;
}

/* Frees p; false (reported) when p is not a live object's start. The general path: nh_free's
 * fast path sends here only what it cannot decide alone. A no-stop region: it takes locks. */
static nh_noinline bool free_object(const char *fn, void *p) {
  region_enter();
  bool ok = free_object_locked(fn, p);
  region_exit();
  return ok;
}

/* The free fast path for small objects: the page info says the allocation class and where
 * the page sits in its span, so neither the span nor a division is needed to check that p is
 * an object's start before the freed mark is checked and p goes on the CPU's stack. Anything
 * else (large objects, free memory, foreign pointers, a mark that matches) takes free_object. */
NH_API void nh_free(void *p) {
  if (!p || !check_ready("nh_free"))
    return;
  nh_arena_t *a = arena_of(&nh_rt.arenas, p);
  size_t pg = ((uintptr_t)p & (NH_ARENA_BYTES - 1)) >> NH_PAGE_SHIFT;
  uint32_t info = a ? __atomic_load_n(&a->pageinfo[pg], __ATOMIC_ACQUIRE) : 0;
  if (nh_likely(info)) {
    unsigned sc = pageinfo_sizeclass(info);
    uint32_t off = (uint32_t)((uintptr_t)p & (NH_PAGE_SIZE - 1)) + pageinfo_page(info) * NH_PAGE_SIZE;
    uint32_t magic = nh_class_to_divmagic[sc];
    if (nh_likely(off < nh_class_to_limit[sc] && (uint32_t)(off * magic) < magic &&
                  (nh_rt.free_plain || (nh_rt.free_local && a->node == heap_current_node())) &&
                  !__atomic_load_n(&nh__marking, __ATOMIC_RELAXED))) {
      /* Page info implies the bytes, unless a free of an object nobody owns raced its span's
       * release (the page heap clears the info first): then the span path reports it. */
      uint8_t *page = __atomic_load_n(&a->live[pg], __ATOMIC_RELAXED);
      uint8_t *live = page + ((uint64_t)((uintptr_t)p & (NH_PAGE_SIZE - 1)) * magic >> 32);
      if (nh_likely(page != NULL) && nh_likely(__atomic_load_n(live, __ATOMIC_RELAXED))) {   /* the object is not touched */
        __atomic_store_n(live, 0, __ATOMIC_RELAXED);
        mcache_free(&nh_rt.caches, pageinfo_allocclass(info), p);
        return;
      }
    }
  }
  free_object("nh_free", p);
}

NH_API void *nh_realloc(void *p, size_t size) {
  if (!p)
    return alloc("nh_realloc", size, NH_KIND_CONSERVATIVE, true);
  if (!check_ready("nh_realloc"))
    return NULL;
  obj_ref o;
  if (!heap_locate(p, &o) || o.base != (uintptr_t)p) {
    bad_free("nh_realloc", p, "not the start of a live nheap object");
    errno = EINVAL;
    return NULL;
  }
  if (not_owned(o.s, p)) {
    bad_free("nh_realloc", p, "an object that was freed (a use after free?)");
    errno = EINVAL;
    return NULL;
  }
  if (size == 0) {
    free_object("nh_realloc", p);
    return NULL;
  }
  size_t have = o.size;
  nh_obj_kind kind = (nh_obj_kind)o.s->kind;
  /* Keep the object when it fits and would not waste more than half of it. */
  if (size <= have && size >= have / 2)
    return p;
  void *q = kind == NH_KIND_TYPED ? nh_alloc_typed(size, ((const nh_type *const *)p)[-1])
                                  : alloc("nh_realloc", size, kind, kind != NH_KIND_NOSCAN);
  if (!q)
    return NULL;   /* p is untouched, as realloc promises */
  memcpy(q, p, size < have ? size : have);
  free_object("nh_realloc", p);
  return q;
}
