/*
 * nheap_gc_compat.h — the part of bdwgc's API that typical programs use, on nheap: a program
 * written for the Boehm-Demers-Weiser collector builds against nheap by including this header
 * instead of <gc.h> (and linking nheap instead of -lgc).
 *
 * bdwgc programs store heap pointers with plain stores, so GC_INIT starts nheap with barrier =
 * none: marking is concurrent with the kernel's write-protect tracking (gc =
 * concurrent-nobarrier) where the kernel has it, and stops the world where it does not (nheap
 * says so). NHEAP_GC=stw is kept; anything else means the barrier-free concurrent mode (never
 * off: bdwgc programs rely on collection).
 * Everything else keeps its NHEAP_* options.
 *
 * Mapping, and where it differs from bdwgc:
 *   GC_INIT()                     nh_init with barrier = none; an nheap already running is kept
 *   GC_MALLOC(n)                  nh_alloc: zeroed, scanned conservatively
 *   GC_MALLOC_ATOMIC(n)           nh_alloc_noscan: not zeroed, never scanned
 *   GC_MALLOC_UNCOLLECTABLE(n)    nh_alloc registered as a root (nh_root_add) until GC_FREE;
 *                                 GC_REALLOC of one returns a collectable object
 *   GC_REALLOC(p, n), GC_FREE(p)  nh_realloc, nh_free (GC_FREE also drops a root it owns)
 *   GC_gcollect()                 nh_gc: returns with the heap marked and swept
 *   GC_register_finalizer(o, fn, cd, ofn, ocd)   nh_set_finalizer (bdwgc's ordering: an
 *                                 object reachable from another finalizable one waits for it)
 *   GC_get_heap_size()            nh_stat(NH_STAT_HEAP_BACKED): heap_mapped_bytes -
 *                                 heap_released_bytes
 *   GC_get_gc_no()                nh_stat(NH_STAT_GC_CYCLES): gc_cycles
 *   GC_add_roots(lo, hi)          nh_root_add
 *   GC_register_my_thread(sb)     nh_thread_attach (the stack base is found, not taken)
 *   GC_unregister_my_thread()     nh_thread_detach
 *   GC_pthread_create/join        pthread_create with the new thread attached before its start
 *                                 routine runs / pthread_join
 *   GC_PTR_STORE_AND_DIRTY(p, v)  nh_store
 *   GC_do_blocking(fn, cd)        nh_do_blocking: the thread counts as stopped while fn runs
 */
#ifndef NHEAP_GC_COMPAT_H
#define NHEAP_GC_COMPAT_H

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <nheap.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GC_SUCCESS 0
#define GC_DUPLICATE 1
#define GC_NO_THREADS 2
#define GC_UNIMPLEMENTED 3

typedef unsigned long GC_word;
typedef void (*GC_finalization_proc)(void *obj, void *client_data);
struct GC_stack_base { void *mem_base; };

static inline void nh_gc_compat_init(void) {
  nh_options o;
  nh_options_init(&o);
  o.barrier = NH_BARRIER_NONE;   /* plain stores: concurrent only without a barrier */
  const char *gc = getenv("NHEAP_GC");
  if (!gc || strcmp(gc, "stw") != 0)   /* never off: bdwgc programs rely on collection */
    o.gc = NH_GC_CONCURRENT_NOBARRIER;
  int rc = nh_init(&o);
  if (rc != 0 && rc != -16 /* -EBUSY: already running */)
    abort();                  /* bdwgc's GC_INIT cannot fail either; nheap said why */
}

/* bdwgc's allocators may be called for their effect alone (a program that churns the heap):
 * no warn_unused_result here, as in bdwgc's gc.h. */
static inline NH_ALLOC_SIZE(1) void *nh_gc_compat_malloc(size_t n) { return nh_alloc(n); }
static inline NH_ALLOC_SIZE(1) void *nh_gc_compat_malloc_atomic(size_t n) { return nh_alloc_noscan(n); }

static inline void *nh_gc_compat_uncollectable(size_t n) {
  void *p = nh_alloc(n);
  if (p && nh_root_add(p, nh_usable_size(p)) != 0) {
    nh_free(p);
    return NULL;
  }
  return p;
}

static inline void nh_gc_compat_free(void *p) {
  if (p) {
    nh_root_forget(p);        /* an uncollectable object's root */
    nh_free(p);
  }
}

static inline void nh_gc_compat_register_finalizer(void *obj, GC_finalization_proc fn, void *cd,
                                                   GC_finalization_proc *ofn, void **ocd) {
  void *old_cd;
  nh_finalizer_fn old = nh_get_finalizer(obj, &old_cd);
  if (ofn)
    *ofn = (GC_finalization_proc)old;
  if (ocd)
    *ocd = old_cd;
  nh_set_finalizer(obj, (nh_finalizer_fn)fn, cd);
}

/* One counter, in nanoseconds (programs poll these: bdwgc's cost two loads). */
static inline size_t nh_gc_compat_stat(int which) {
  return (size_t)nh_stat(which == 0 ? NH_STAT_HEAP_BACKED : NH_STAT_GC_CYCLES);
}

typedef struct nh_gc_compat_start { void *(*fn)(void *); void *arg; } nh_gc_compat_start;

static inline void *nh_gc_compat_trampoline(void *a) {
  nh_gc_compat_start s = *(nh_gc_compat_start *)a;
  free(a);
  nh_thread_attach();         /* before the routine can hold a heap pointer */
  return s.fn(s.arg);
}

static inline int nh_gc_compat_pthread_create(pthread_t *t, const pthread_attr_t *attr,
                                              void *(*fn)(void *), void *arg) {
  nh_gc_compat_start *s = (nh_gc_compat_start *)malloc(sizeof *s);
  if (!s)
    return 11;                /* EAGAIN */
  s->fn = fn;
  s->arg = arg;
  int rc = pthread_create(t, attr, nh_gc_compat_trampoline, s);
  if (rc != 0)
    free(s);
  return rc;
}

#define GC_INIT() nh_gc_compat_init()
#define GC_MALLOC(n) nh_gc_compat_malloc(n)
#define GC_MALLOC_ATOMIC(n) nh_gc_compat_malloc_atomic(n)
#define GC_MALLOC_UNCOLLECTABLE(n) nh_gc_compat_uncollectable(n)
#define GC_REALLOC(p, n) nh_realloc((p), (n))
#define GC_FREE(p) nh_gc_compat_free(p)
#define GC_gcollect() nh_gc()
#define GC_register_finalizer(o, fn, cd, ofn, ocd) nh_gc_compat_register_finalizer((o), (fn), (cd), (ofn), (ocd))
#define GC_get_heap_size() nh_gc_compat_stat(0)
#define GC_get_gc_no() ((GC_word)nh_gc_compat_stat(1))
#define GC_add_roots(lo, hi) ((void)nh_root_add((lo), (size_t)((char *)(hi) - (char *)(lo))))
#define GC_register_my_thread(sb) ((void)(sb), nh_thread_attach() == 0 ? GC_SUCCESS : GC_UNIMPLEMENTED)
#define GC_unregister_my_thread() (nh_thread_detach(), GC_SUCCESS)
#define GC_pthread_create(t, attr, fn, arg) nh_gc_compat_pthread_create((t), (attr), (fn), (arg))
#define GC_pthread_join(t, ret) pthread_join((t), (ret))
#define GC_PTR_STORE_AND_DIRTY(p, v) nh_store((void **)(p), (void *)(v))
#define GC_allow_register_threads() ((void)0)
typedef void *(*GC_fn_type)(void *client_data);
#define GC_do_blocking(fn, cd) nh_do_blocking((fn), (cd))

#ifdef __cplusplus
}
#endif

#endif /* NHEAP_GC_COMPAT_H */
