/*
 * span.h — mspan: a run of pages holding objects of one span class, or one large object.
 *
 * Bitmaps (one bit per object, at most 1024 objects):
 *   alloc_bits   1 = allocated, as of the span's last rebuild (Go's allocBits). While an mcache
 *                holds the span, only that mcache reads it, and hands out the objects whose bit
 *                is 0, 64 at a time (its slot's cache word, Go's allocCache), moving forward
 *                from freeindex. When the span is returned, the objects it handed out are set.
 *   freed_bits   explicit frees (nh_free) not yet folded into alloc_bits; written under the
 *                span's mcentral lock. A rebuild (span not cached) does alloc_bits &= ~freed_bits.
 *   gcmark_bits  the collector's marks; sweeping will make them the new alloc_bits (Go's swap).
 * Invariant when not cached: alloc_count == popcount(alloc_bits) and freed_bits == 0 after a
 * rebuild. Large spans (class 0) have one object and no bitmap use beyond bit 0.
 *
 * Ownership (live, one byte per object of a small span, tiny spans excepted): 1 from the moment
 * an allocation hands the object to the program until nh_free takes it back; 0 wherever nheap
 * holds it (a free stack, a transfer cache, a slot's batch). One exception keeps the sweep free
 * of per-object work: a dead object the sweep frees keeps its 1 while it lies free in its span,
 * and the slot that hands it out again (mcache.c slot_take) clears it first. (A free of such an
 * object, one the program had hidden from the collector, is therefore not caught.)
 * It is the authority on double frees (malloc.c): a free finds 1 and stores 0, an allocation
 * finds 0 and stores 1, each with plain byte accesses on its fast path (secure mode's frees
 * exchange it), whatever the object's bytes hold. The bitmaps above cannot say this: objects in free
 * stacks are allocated as far as they know. Bytes, not bits, because frees and allocations of
 * one span's objects run on every CPU at once, and a bit would need an atomic read-modify-write
 * on both fast paths. The array comes with the span from the page heap (pageheap.c).
 *
 * Span class: size class << 1 | noscan, as Go's spanClass. The object kind (noscan,
 * conservative, typed) is per span, so the collector decides how to scan from the span alone.
 */
#ifndef NH_SPAN_H
#define NH_SPAN_H

#include "core/internal.h"
#include "core/sizeclasses.h"

#define NH_NUM_SPAN_CLASSES (NH_NUM_SIZE_CLASSES * 2)
#define NH_SPAN_BITMAP_WORDS (NH_MAX_OBJS_PER_SPAN / 64)

typedef enum nh_obj_kind { NH_KIND_NOSCAN = 0, NH_KIND_CONSERVATIVE = 1, NH_KIND_TYPED = 2 } nh_obj_kind;
#define NH_NUM_KINDS 3   /* nh_obj_kind values */
/* Allocation classes: size class * NH_NUM_KINDS + kind (0 .. NH_NUM_KINDS - 1: large spans),
 * then one more for the tiny allocator's blocks (16-byte noscan objects in spans of their own,
 * below), so that a tiny object is told apart from a plain 16-byte one by its span alone. */
#define NH_AC_TINY (NH_NUM_SIZE_CLASSES * NH_NUM_KINDS)
#define NH_NUM_ALLOC_CLASSES (NH_AC_TINY + 1)

typedef enum nh_span_state { SPAN_DEAD = 0, SPAN_INUSE = 1 } nh_span_state;

struct nh_mcentral;

typedef struct nh_span {
  uintptr_t base;             /* first object */
  uint64_t *alloc_bits;
  uintptr_t limit;            /* base + nelems * elemsize */
  uint64_t *gcmark_bits;
  uint32_t npages;
  uint32_t elemsize;
  uint32_t divmagic;          /* object index = (offset * divmagic) >> 32 */
  uint16_t nelems;
  uint16_t freeindex;         /* owner: next object to consider (a multiple of 64 while cached) */
  uint16_t alloc_count;       /* allocated objects, exact while not cached */
  uint8_t spanclass;
  uint8_t allocclass;         /* size class * 3 + kind, or NH_AC_TINY: the mcache/mcentral index */
  uint8_t kind;               /* nh_obj_kind */
  uint8_t state;              /* nh_span_state, published with release */
  uint8_t node;
  bool needzero;              /* some free object may hold old data */
  bool cached;                /* held by an mcache; guarded by the mcentral lock */
  int16_t owner;              /* CPU of the mcache holding it, -1: none; written under that
                                 mcache's lock and the mcentral lock, read under either */
  uint32_t sweepgen;          /* Go's protocol: h->sweepgen - 2 needs sweep, - 1 being swept, = swept */
  uintptr_t pages;            /* first page (below base only for over-aligned large objects) */
  uint8_t *live;              /* small spans but tiny ones: one byte per object, 1 while the
                                 program owns it (below); NULL otherwise */
  struct nh_span *next, *prev; /* mcentral set, or the free-span list */
  struct nh_mcentral *central; /* its class's mcentral (large: its kind's); NULL once freed */
  uint8_t *live_mem;          /* the struct's array for live, kept across its uses (live is
                                 NULL in a use that has none: tiny and large spans) */
  uint16_t livecap;           /* bytes at live_mem */
  /* The bitmaps, each on two lines of its own (the marker prefetches a word's line). */
  uint64_t freed_bits[NH_SPAN_BITMAP_WORDS] __attribute__((aligned(64)));
  uint64_t bitmaps[2][NH_SPAN_BITMAP_WORDS]; /* storage alloc_bits/gcmark_bits point into */
} nh_span_t;

/* A type for precise scanning (nh_type_new): its size and one bit per word that holds a
 * pointer. Typed objects start with a header word holding their type (Go 1.22's malloc header,
 * used here for every size; see malloc.c); the program's pointer is just past it. */
struct nh_type {
  uintptr_t check;             /* its own address ^ the heap's type key: a header is a type */
  uint32_t size;               /* bytes, a multiple of 8 */
  uint32_t nwords;
  uint64_t bits[];             /* bit w: word w holds a pointer */
};
#define NH_TYPED_HEADER ((uintptr_t)8)

/* Tiny spans (allocation class NH_AC_TINY; one page): the tiny allocator (malloc.c) packs
 * noscan objects of up to NH_TINY_MAX bytes into 16-byte blocks. The page starts with one
 * 32-bit word per block, bit i: an object starts at byte i of the block, bit 16 + i: an object ends at byte
 * i (its last byte); the blocks follow. The words make nh_free, nh_usable_size, nh_realloc and
 * nh_base exact for objects that share a block (Go's tiny objects have no identity; it needs
 * none without explicit free). */
#define NH_TINY_SIZECLASS 2      /* the 16-byte class, one page (tests/test_sizeclasses.c) */
#define NH_TINY_BLOCK 16
#define NH_TINY_MAX 5            /* the largest tiny object (Go: 15; malloc.c says why) */
#define NH_TINY_NBLOCKS 409
#define NH_TINY_HEADER 1648      /* 409 words, rounded up to a block */
_Static_assert(NH_TINY_HEADER >= NH_TINY_NBLOCKS * 4 && NH_TINY_HEADER % NH_TINY_BLOCK == 0 &&
               NH_TINY_HEADER + NH_TINY_NBLOCKS * NH_TINY_BLOCK == NH_PAGE_SIZE, "tiny span layout");

/* The start/end word of the tiny block holding p. */
static inline uint32_t *tiny_word(uintptr_t p) {
  uintptr_t page = p & ~(uintptr_t)(NH_PAGE_SIZE - 1);
  return (uint32_t *)page + ((p - page - NH_TINY_HEADER) / NH_TINY_BLOCK);
}

static inline uint8_t spanclass_make(unsigned sizeclass, bool noscan) { return (uint8_t)(sizeclass << 1 | noscan); }
static inline unsigned spanclass_sizeclass(uint8_t spc) { return spc >> 1; }
static inline bool spanclass_noscan(uint8_t spc) { return spc & 1; }

/* The size class for a small request (1 .. NH_MAX_SMALL_SIZE). */
static inline unsigned size_to_class(size_t size) {
  return size <= NH_SMALL_SIZE_MAX ? nh_size_to_class8[(size + 7) / 8]
                                   : nh_size_to_class128[(size - NH_SMALL_SIZE_MAX + 127) / 128];
}

/* Index of the object holding p (p inside [base, limit)). */
static inline size_t span_obj_index(const nh_span_t *s, uintptr_t p) {
  return (size_t)(((uint64_t)(p - s->base) * s->divmagic) >> 32);
}

/* The bits of bitmap word w that stand for objects (the last word may be partial). */
static inline uint64_t span_word_mask(const nh_span_t *s, size_t w) {
  size_t left = s->nelems - w * 64;
  return left >= 64 ? ~0ull : (1ull << left) - 1;
}

/* Large spans (class 0) have allocation classes 0 .. NH_NUM_KINDS - 1. */
static inline bool span_is_large(const nh_span_t *s) { return s->allocclass < 3; }
/* Object idx's first byte, and an object's size (a large span holds one object). */
static inline uintptr_t span_object_start(const nh_span_t *s, size_t idx) { return s->base + idx * (uintptr_t)s->elemsize; }
static inline uintptr_t span_object_bytes(const nh_span_t *s) { return span_is_large(s) ? s->limit - s->base : s->elemsize; }

/* Whether p (inside [base, limit)) is an object's first byte, with one multiply: offset is a
 * multiple of the size exactly when the low 32 bits of offset * divmagic are below divmagic
 * (Lemire, Kaser and Kurz, "Faster remainder by direct computation"; exact for every offset of
 * every class, tests/test_sizeclasses.c). Small spans only. */
static inline bool span_is_object_start(const nh_span_t *s, uintptr_t p) {
  return (uint32_t)((uint64_t)(p - s->base) * s->divmagic) < s->divmagic;
}

static inline bool bitmap_get(const uint64_t *bm, size_t i) { return bm[i / 64] >> (i % 64) & 1; }
static inline void bitmap_set(uint64_t *bm, size_t i) { bm[i / 64] |= 1ull << (i % 64); }

#endif
