/*
 * object.h — the object an address lies in, as the program sees it: its span, first byte and
 * usable size (a typed object's header left out; a tiny object from its block's bits). Used by
 * the public calls that take an object (nh_base, nh_usable_size, nh_free, the finalizer and
 * weak-reference calls); only the page map and the span are read, so it sits below both the
 * allocator and the collector.
 */
#ifndef NH_OBJECT_H
#define NH_OBJECT_H

#include "core/heap.h"

/* The in-use span holding p, or NULL. The page map holds only in-use spans (a span's entries
 * are cleared before its struct is reused), so no state check is needed here. */
static inline nh_span_t *live_span(const void *p) {
  nh_span_t *s = span_of(&nh_rt.arenas, p);
  if (!s)
    return NULL;
  if ((uintptr_t)p < s->base || (uintptr_t)p >= s->limit)
    return NULL;
  return s;
}

static inline uintptr_t object_base(const nh_span_t *s, const void *p) {
  if (span_is_large(s))
    return s->base;
  return s->base + span_obj_index(s, (uintptr_t)p) * (uintptr_t)s->elemsize;
}

/* What the program holds: the object's start, or just past a typed object's header. */
static inline uintptr_t user_base(const nh_span_t *s, const void *p) {
  return object_base(s, p) + (s->kind == NH_KIND_TYPED ? NH_TYPED_HEADER : 0);
}

static inline size_t user_size(const nh_span_t *s) {
  return (span_is_large(s) ? s->limit - s->base : s->elemsize) - (s->kind == NH_KIND_TYPED ? NH_TYPED_HEADER : 0);
}

/* The object holding p, as the program sees it: its span, first byte and usable size. */
typedef struct obj_ref {
  nh_span_t *s;
  uintptr_t base;
  size_t size;
} obj_ref;

/* A tiny object from its block's start and end bits (span.h); false in a block's padding or
 * unused tail. */
static inline bool tiny_object(uintptr_t p, obj_ref *o) {
  uint32_t w = __atomic_load_n(tiny_word(p), __ATOMIC_ACQUIRE);
  unsigned off = p & (NH_TINY_BLOCK - 1);
  uint32_t starts = w & 0xffff & ((2u << off) - 1);
  if (!starts)
    return false;
  unsigned first = 31 - (unsigned)__builtin_clz(starts);
  uint32_t ends = w >> 16 >> first;
  if (!ends || first + (unsigned)__builtin_ctz(ends) < off)
    return false;
  o->base = (p & ~(uintptr_t)(NH_TINY_BLOCK - 1)) + first;
  o->size = (unsigned)__builtin_ctz(ends) + 1;
  return true;
}

/* false: p is in no object (o->s still says whether it is in a live span). */
static inline bool heap_locate(const void *p, obj_ref *o) {
  nh_span_t *s = o->s = live_span(p);
  if (!s)
    return false;
  if (s->allocclass == NH_AC_TINY)
    return tiny_object((uintptr_t)p, o);
  o->base = user_base(s, p);
  o->size = user_size(s);
  return true;
}

#endif
