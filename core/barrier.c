/*
 * barrier.c — the write barrier (nheap.h's nh_store; Go's wbBuf, mwbbuf.go) and
 * nh_memmove_ptrs.
 *
 * While a concurrent mark runs (nh__marking), a store through nh_store records the value it
 * overwrites in the thread's buffer (512 slots, Go's wbBuf); a full buffer is shaded by the
 * storing thread itself (mark.c: mark_shade_batch marks the objects and shares the new grey
 * ones as a block), and mark termination shades every buffer with the world stopped
 * (mark_flush_wbufs), as does a thread leaving (mark_thread_leaving).
 *
 * Atomicity (a departure from Go, which relies on safe points): nh_store's fast path is a
 * restartable sequence (nheap.h), and this slow path runs in a no-stop region, so mark setup
 * never falls between the flag test and the store, and mark termination never between a shade
 * and its store. nh_memmove_ptrs shades every word it overwrites in one region: the copy is one
 * store as far as the collector can tell.
 */
#include <string.h>

#include "core/error.h"
#include "core/heap.h"

NH_API int nh__marking;

/* Records old for the collector (the caller is in a no-stop region, marking is on). */
static void shade(nh_thread_t *t, void *old) {
  if (!old)
    return;
  t->wbuf[t->wbn++] = (uintptr_t)old;
  if (t->wbn == NH_WBUF_CAP) {
    mark_shade_batch(&nh_rt.gc.work, t->wbuf, t->wbn);
    t->wbn = 0;
  }
}

/* The thread record the barrier buffers into; attaches a thread that never allocated. */
static nh_thread_t *barrier_thread(void) {
  if (nh_unlikely(!thread_attached(&nh_rt.gc.threads)) && thread_attach() != 0)
    nh_fatal("nh_store: cannot attach this thread to the collector (no memory)");
  return nh_self;
}

NH_API void nh__store_marking(void **slot, void *value) {
  nh_thread_t *t = barrier_thread();
  region_enter();   /* the mark cannot end between the shade and the store */
  if (__atomic_load_n(&nh__marking, __ATOMIC_RELAXED))
    shade(t, *slot);
  *slot = value;
  region_exit();
}

NH_API void nh_memmove_ptrs(void *dst, const void *src, size_t n) {
  if (!nh_rt.gc.on || nh_rt.gc.mode != NH_GC_CONCURRENT) {
    memmove(dst, src, n);
    return;
  }
  nh_thread_t *t = barrier_thread();
  region_enter();   /* the copy is one store to the collector: no mark starts or ends inside */
  if (__atomic_load_n(&nh__marking, __ATOMIC_RELAXED))
    for (size_t i = 0; i + sizeof(void *) <= n; i += sizeof(void *))
      shade(t, ((void **)dst)[i / sizeof(void *)]);
  memmove(dst, src, n);
  region_exit();
}

/* A thread leaving (under the threads lock, so no stop is in progress): what its buffer holds
 * is shaded now, as it will not be there when the mark ends. */
void mark_thread_leaving(nh_thread_t *t) {
  if (t->wbn) {
    mark_shade_batch(&nh_rt.gc.work, t->wbuf, t->wbn);
    t->wbn = 0;
  }
}
