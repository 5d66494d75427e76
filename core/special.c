/*
 * special.c — finalizers and weak references (Go's specials, kept in two registries).
 *
 * Finalizers (nh_set_finalizer(obj, fn, arg)): one per object, replaced or removed by a new
 * call. During marking (mark_specials, world stopped), everything a finalizable object points
 * to is marked — not the object itself — and so is arg: what a finalizer will see stays alive.
 * After marking (specials_after_mark), an object left unmarked is resurrected (its mark bit
 * set, so sweeping keeps it) and its finalizer moves to the ready queue, whose entries are
 * roots until the finalizer thread has run them. The object is freed by a later cycle unless
 * the finalizer stored it somewhere reachable. When the queue cannot grow (the OS refused
 * metadata), the record stays registered and its object is resurrected all the same, so a
 * later cycle queues it; a record is never left behind by an object that sweeping frees. The
 * pass looks at each record exactly once: one that leaves the table is replaced by the last,
 * not yet looked at, which the same index takes next. Cycles among finalizable objects keep each
 * other alive and are never finalized (as in Go); a chain is finalized one link per cycle,
 * from the outside in (as in bdwgc).
 *
 * Weak references (nh_weak_new(obj) -> handle; nh_weak_get(handle) -> obj or NULL): a handle
 * is a metadata record, not a root. After marking, handles of unmarked objects are cleared —
 * before finalizers resurrect anything, so a weak reference never sees an object come back
 * (Go's order). Both steps run in the pause, so no mutator can read a handle in between.
 * nh_weak_free releases a handle.
 *
 * Handles live in slabs of metadata that never move or go: slab k holds 64 << k handles, so a
 * pointer is checked in O(log handles) by range and alignment, and a live flag tells a handle
 * in use from a freed one (on the free list for reuse) or one not handed out yet. nh_weak_free
 * and nh_weak_get check their argument that way (as nh_free checks an object) and report
 * anything else as -EINVAL, changing nothing: freeing a handle twice would put it on the free
 * list twice (two later nh_weak_new calls would share it), and a foreign pointer would be
 * written through. A slab is published (release) before the count that covers it, so
 * nh_weak_get checks without the lock; a call that races nh_weak_free of the same handle is the
 * program's use after free, which sees either state and reads only handle memory.
 *
 * Costs: both registries are arrays scanned once per cycle, in the pause: O(finalizers +
 * handles). Go keeps them per span for locality; a per-span list is the step after this one.
 * Explicit nh_free of an object that has a finalizer or weak handles is a program error (remove
 * them first): the registries are not searched on free. A finalizer or handle whose object is
 * no longer allocated at a cycle is dropped (finalizer not run) or cleared.
 *
 * The finalizer thread is attached (it holds objects while running finalizers), is started on
 * the first nh_set_finalizer, and runs each finalizer with no nheap lock held, so finalizers
 * may allocate, collect, and set finalizers.
 *
 * For bdwgc's interface (gcabi.c) the same tables serve bdwgc's other orders (special.h's
 * nh_final_kind: a pointer to itself ignored; no order, with the object's referents kept by
 * marking them from it once it is found dead, in the pause, and draining), its
 * finalize-on-demand mode (ready records wait for specials_run_ready on a program thread and
 * the notifier is called instead of waking the thread), and its disappearing links (links.c),
 * cleared in the same pass: short links before the finalizers are decided, long ones after.
 */
#include <errno.h>
#include <string.h>

#include "core/error.h"
#include "core/heap.h"
#include "core/object.h"

typedef struct nh_final_rec {
  uintptr_t obj;
  nh_finalizer_fn fn;
  void *arg;
  nh_final_kind kind;
} nh_final_rec;

/* Records are written and copied a field at a time through general registers. A struct copy
 * goes through vector registers, and the last record copied would stay in them: a thread that
 * is stopped later has its vector registers scanned (the kernel's signal frame), and the
 * object would be kept for as long as nothing overwrote them (an object A pointing to B, both
 * finalizable: A's stale copy in the finalizer thread's registers kept B from ever being
 * finalized). */
static void rec_set(nh_final_rec *d, uintptr_t obj, nh_finalizer_fn fn, void *arg, nh_final_kind kind) {
  __atomic_store_n(&d->obj, obj, __ATOMIC_RELAXED);
  __atomic_store_n(&d->fn, fn, __ATOMIC_RELAXED);
  __atomic_store_n(&d->arg, arg, __ATOMIC_RELAXED);
  __atomic_store_n(&d->kind, kind, __ATOMIC_RELAXED);
}
static void rec_copy(nh_final_rec *d, const nh_final_rec *s) {
  rec_set(d, __atomic_load_n(&s->obj, __ATOMIC_RELAXED), __atomic_load_n(&s->fn, __ATOMIC_RELAXED),
          __atomic_load_n(&s->arg, __ATOMIC_RELAXED), __atomic_load_n(&s->kind, __ATOMIC_RELAXED));
}

struct nh_weak {
  uintptr_t obj;               /* 0: cleared (its object died) or free */
  struct nh_weak *next_free;   /* on sp->weak_free */
  bool live;                   /* handed out and not freed; atomic (nh_weak_get reads it unlocked) */
};

/* Room for one more entry in a table (metadata memory); false when the OS refuses. */
static bool grow_final(nh_specials_t *sp) {
  nh_final_rec *v = mem_meta_grow(&nh_rt.mem, sp->final, &sp->capfinal, sp->nfinal, sizeof *v);
  return v && (sp->final = v);
}
static bool grow_ready(nh_specials_t *sp) {
  nh_final_rec *v = mem_meta_grow(&nh_rt.mem, sp->ready, &sp->capready, sp->nready, sizeof *v);
  return v && (sp->ready = v);
}

static size_t slab_handles(size_t k) { return (size_t)64 << k; }

/* Handles in slab k that were handed out at some time (freed ones included). */
static size_t slab_used(const nh_specials_t *sp, size_t k) {
  return k + 1 == sp->weak_slabs ? sp->weak_top : slab_handles(k);
}

/* A handle never handed out: from the newest slab, or a new one twice its size; NULL when the
 * OS refuses. Under sp->lock. */
static struct nh_weak *carve_weak(nh_specials_t *sp) {
  size_t k = sp->weak_slabs;
  if (k == 0 || sp->weak_top == slab_handles(k - 1)) {
    struct nh_weak *slab = k < NH_WEAK_SLABS ? mem_meta_alloc(&nh_rt.mem, slab_handles(k) * sizeof *slab, 64) : NULL;
    if (!slab)
      return NULL;
    sp->weak_slab[k] = slab;   /* fresh metadata: every handle is zero, not live */
    sp->weak_top = 0;
    __atomic_store_n(&sp->weak_slabs, ++k, __ATOMIC_RELEASE);
  }
  return &sp->weak_slab[k - 1][sp->weak_top++];
}

/* The handle slot p names, or NULL when p is not the start of a slot in a slab (foreign, or
 * inside a handle). Whether the slot is live is the caller's question. No lock needed. */
static struct nh_weak *weak_slot(nh_specials_t *sp, const void *p) {
  size_t n = __atomic_load_n(&sp->weak_slabs, __ATOMIC_ACQUIRE);
  for (size_t k = 0; k < n; k++) {
    uintptr_t off = (uintptr_t)p - (uintptr_t)sp->weak_slab[k];
    if (off < slab_handles(k) * sizeof(struct nh_weak))
      return off % sizeof(struct nh_weak) ? NULL : &sp->weak_slab[k][off / sizeof(struct nh_weak)];
  }
  return NULL;
}

/* Why p is not a live handle: for the error message. */
static const char *not_live(const struct nh_weak *slot) {
  return slot ? "a handle that was freed (or never handed out)" : "not a handle nh_weak_new returned";
}

static bool ready_check(const char *fn) {
  if (__atomic_load_n(&nh_rt.ready, __ATOMIC_ACQUIRE))
    return true;
  nh_error(-ENODEV, "%s called before nh_init (or after nh_shutdown)", fn);
  return false;
}

/* ---------------------------------------------------------------------------------------------
 * The finalizer thread.
 * ------------------------------------------------------------------------------------------- */

/* Runs the ready queue dry. Out of line: when it returns, the callee-saved
 * registers hold finalizer_main's values again, not the last object's address (the thread's
 * registers are roots while it waits). */
static nh_noinline size_t run_ready(nh_specials_t *sp) {
  for (size_t ran = 0;; ran++) {
    nh_final_rec r;   /* on this thread's stack (scanned) while fn runs */
    rec_set(&r, 0, NULL, NULL, NH_FINAL_ORDERED);
    region_enter();
    nh_mutex_lock(&sp->lock);
    bool have = sp->nready > 0;
    if (have)   /* newest first; no bulk copy leaves other objects in vector registers */
      rec_copy(&r, &sp->ready[--sp->nready]);
    nh_mutex_unlock(&sp->lock);
    region_exit();
    if (!have)
      return ran;
    r.fn((void *)r.obj, r.arg);
    nh_stat_add(&sp->run, 1);
  }
}

static void *finalizer_main(void *arg) {
  nh_specials_t *sp = arg;
  thread_attach();
  for (;;) {
    pthread_mutex_lock(&sp->run_mu);
    while (!sp->stop && !sp->wake)
      pthread_cond_wait(&sp->run_cv, &sp->run_mu);
    bool stop = sp->stop;
    sp->wake = false;
    pthread_mutex_unlock(&sp->run_mu);
    if (stop)
      break;
    if (!__atomic_load_n(&sp->on_demand, __ATOMIC_ACQUIRE))
      run_ready(sp);
    thread_clear_dead_stack();   /* run_ready's dead frames, before the wait's frames cover them */
  }
  thread_detach();
  return NULL;
}

static int start_thread(nh_specials_t *sp) {
  if (__atomic_load_n(&sp->thread_started, __ATOMIC_ACQUIRE))
    return 0;
  pthread_mutex_lock(&sp->run_mu);
  int rc = 0;
  if (!sp->thread_started) {
    rc = pthread_create(&sp->thread, NULL, finalizer_main, sp);
    if (rc == 0)
      __atomic_store_n(&sp->thread_started, true, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock(&sp->run_mu);
  return -rc;
}

void specials_init(nh_specials_t *sp) {
  memset(sp, 0, sizeof *sp);
  nh_mutex_init(&sp->lock, LOCK_RANK_SPECIALS);
  pthread_mutex_init(&sp->run_mu, NULL);
  pthread_cond_init(&sp->run_cv, NULL);
}

void specials_shutdown(nh_specials_t *sp) {
  if (!sp->thread_started)
    return;
  nh_signal_flag(&sp->run_mu, &sp->run_cv, &sp->stop);
  pthread_join(sp->thread, NULL);
  sp->thread_started = false;
}

void specials_after_fork_child(nh_specials_t *sp) {
  pthread_mutex_init(&sp->run_mu, NULL);
  pthread_cond_init(&sp->run_cv, NULL);
  sp->thread_started = false;   /* restarted by the next nh_set_finalizer; ready ones wait */
}

/* ---------------------------------------------------------------------------------------------
 * The collector's side (world stopped).
 * ------------------------------------------------------------------------------------------- */

void mark_specials(nh_marker_t *m, nh_specials_t *sp) {
  m->check_from = "a finalizer";
  nh_mutex_lock(&sp->lock);
  for (size_t i = 0; i < sp->nfinal; i++) {
    nh_final_rec *r = &sp->final[i];
    if (r->kind == NH_FINAL_ORDERED)
      mark_referents(m, r->obj);
    else if (r->kind == NH_FINAL_IGNORE_SELF)
      mark_referents_except_self(m, r->obj);   /* NO_ORDER: its referents wait for its death */
    mark_root_word(m, (uintptr_t)r->arg);
  }
  for (size_t i = 0; i < sp->nready; i++) {   /* queued: the object and its arg are roots */
    mark_root_word(m, sp->ready[i].obj);
    mark_root_word(m, (uintptr_t)sp->ready[i].arg);
  }
  nh_mutex_unlock(&sp->lock);
}

size_t specials_after_mark(nh_marker_t *m, nh_specials_t *sp) {
  nh_mutex_lock(&sp->lock);
  for (size_t k = 0; k < sp->weak_slabs; k++) {   /* weak first: never see a resurrection */
    for (size_t j = 0, n = slab_used(sp, k); j < n; j++) {
      struct nh_weak *w = &sp->weak_slab[k][j];   /* a free one holds 0 */
      if (w->obj && mark_state(w->obj) != MARK_LIVE)
        w->obj = 0;
    }
  }
  links_clear_dead(&sp->links[0]);   /* short links: before any finalizer is decided */
  size_t queued = 0;
  bool unordered = false;
  for (size_t i = 0; i < sp->nfinal;) {   /* i moves on only past a record that stays */
    nh_final_rec r;
    rec_copy(&r, &sp->final[i]);
    int st = mark_state(r.obj);
    if (st == MARK_LIVE) {
      i++;
      continue;
    }
    if (st == MARK_DEAD) {
      mark_resurrect(m, r.obj);   /* queued now, or kept with its record for a later cycle */
      if (r.kind == NH_FINAL_NO_ORDER) {   /* what its finalizer will read, kept with it */
        mark_referents(m, r.obj);
        unordered = true;
      }
      if (!grow_ready(sp)) {
        i++;
        continue;
      }
      rec_copy(&sp->ready[sp->nready++], &r);
      queued++;
    }   /* else MARK_GONE: freed explicitly, nothing to finalize */
    rec_copy(&sp->final[i], &sp->final[--sp->nfinal]);
  }
  if (unordered)
    mark_drain_all(m);
  links_clear_dead(&sp->links[1]);   /* long links: what finalization did not bring back */
  links_drop_dangling(&sp->links[0]);
  links_drop_dangling(&sp->links[1]);
  nh_mutex_unlock(&sp->lock);
  nh_stat_add(&sp->queued, queued);
  return queued;
}

void specials_validate(nh_specials_t *sp) {
  region_enter();
  nh_mutex_lock(&sp->lock);
  for (size_t i = 0; i < sp->nfinal; i++)
    if (mark_state(sp->final[i].obj) == MARK_GONE)
      nh_fatal("specials: finalizer %zu of %zu names %#lx, which is not allocated", i, sp->nfinal,
               (unsigned long)sp->final[i].obj);
  for (size_t i = 0; i < sp->nready; i++)
    if (mark_state(sp->ready[i].obj) == MARK_GONE)
      nh_fatal("specials: queued finalizer %zu names %#lx, which is not allocated", i,
               (unsigned long)sp->ready[i].obj);
  for (const struct nh_weak *w = sp->weak_free; w; w = w->next_free)
    if (weak_slot(sp, w) != w || w->live || w->obj)
      nh_fatal("specials: weak handle %p on the free list is not a free handle", (const void *)w);
  links_validate(&sp->links[0]);
  links_validate(&sp->links[1]);
  nh_mutex_unlock(&sp->lock);
  region_exit();
}

/* After the world restarts: the finalizer thread is attached, so while the world is stopped it
 * may hold run_mu; waking it from inside the pause could wait for it forever. */
void specials_wake(nh_specials_t *sp, size_t queued) {
  if (!queued)
    return;
  if (!__atomic_load_n(&sp->on_demand, __ATOMIC_ACQUIRE)) {
    nh_signal_flag(&sp->run_mu, &sp->run_cv, &sp->wake);
    return;
  }
  void (*notify)(void) = __atomic_load_n(&sp->notifier, __ATOMIC_ACQUIRE);
  if (notify)
    notify();
}

/* ---------------------------------------------------------------------------------------------
 * API.
 * ------------------------------------------------------------------------------------------- */

NH_API int nh_set_finalizer(void *obj, nh_finalizer_fn fn, void *arg) {
  return specials_set_finalizer(obj, fn, arg, NH_FINAL_ORDERED);
}

int specials_set_finalizer(void *obj, nh_finalizer_fn fn, void *arg, nh_final_kind kind) {
  if (!ready_check("nh_set_finalizer"))
    return -ENODEV;
  if (!nh_rt.gc.on) {
    nh_error(-ENOTSUP, "nh_set_finalizer(%p): gc = off has no collector to run finalizers", obj);
    return -ENOTSUP;
  }
  obj_ref o;
  if (!obj || !heap_locate(obj, &o) || o.base != (uintptr_t)obj) {
    nh_error(-EINVAL, "nh_set_finalizer(%p): not the start of an nheap object", obj);
    return -EINVAL;
  }
  nh_specials_t *sp = &nh_rt.gc.specials;
  if (fn) {
    int rc = start_thread(sp);
    if (rc) {
      nh_error(rc, "nh_set_finalizer: cannot start the finalizer thread (%s)", nh_strerror(rc));
      return rc;
    }
  }
  int rc = 0;
  region_enter();
  nh_mutex_lock(&sp->lock);
  size_t i = 0;
  while (i < sp->nfinal && sp->final[i].obj != (uintptr_t)obj)
    i++;
  if (i < sp->nfinal) {
    if (fn)
      rec_set(&sp->final[i], (uintptr_t)obj, fn, arg, kind);
    else
      rec_copy(&sp->final[i], &sp->final[--sp->nfinal]);
  } else if (fn) {
    if (grow_final(sp))
      rec_set(&sp->final[sp->nfinal++], (uintptr_t)obj, fn, arg, kind);
    else
      rc = -ENOMEM;
  }
  nh_mutex_unlock(&sp->lock);
  region_exit();
  if (rc)
    nh_error(rc, "nh_set_finalizer(%p): no memory for the finalizer table", obj);
  return rc;
}

NH_API nh_finalizer_fn nh_get_finalizer(void *obj, void **arg) {
  nh_finalizer_fn fn = NULL;
  if (arg)
    *arg = NULL;
  if (!__atomic_load_n(&nh_rt.ready, __ATOMIC_ACQUIRE) || !nh_rt.gc.on)
    return NULL;
  nh_specials_t *sp = &nh_rt.gc.specials;
  region_enter();
  nh_mutex_lock(&sp->lock);
  for (size_t i = 0; i < sp->nfinal; i++) {
    if (sp->final[i].obj == (uintptr_t)obj) {
      fn = sp->final[i].fn;
      if (arg)
        *arg = sp->final[i].arg;
      break;
    }
  }
  nh_mutex_unlock(&sp->lock);
  region_exit();
  return fn;
}

NH_API nh_weak_t *nh_weak_new(void *obj) {
  if (!ready_check("nh_weak_new"))
    return NULL;
  obj_ref o;
  void *base = obj && heap_locate(obj, &o) ? (void *)o.base : NULL;
  if (!base) {
    nh_error(-EINVAL, "nh_weak_new(%p): not inside an nheap object", obj);
    errno = EINVAL;
    return NULL;
  }
  nh_specials_t *sp = &nh_rt.gc.specials;
  struct nh_weak *w = NULL;
  region_enter();
  nh_mutex_lock(&sp->lock);
  if (sp->weak_free) {
    w = sp->weak_free;
    sp->weak_free = w->next_free;
  } else {
    w = carve_weak(sp);
  }
  if (w) {
    w->obj = (uintptr_t)obj;
    w->next_free = NULL;
    __atomic_store_n(&w->live, true, __ATOMIC_RELAXED);
  }
  nh_mutex_unlock(&sp->lock);
  region_exit();
  if (!w) {
    nh_error(-ENOMEM, "nh_weak_new(%p): no memory for the handle", obj);
    errno = ENOMEM;
  }
  return w;
}

NH_API void *nh_weak_get(const nh_weak_t *w) {
  /* Handles are cleared only while the world is stopped, so one load is enough. While a
   * concurrent mark runs, the object is shaded (in a no-stop region, so the mark cannot end
   * in between): the caller now holds it, and may store it where the mark has been already. */
  if (!w)
    return NULL;
  if (!__atomic_load_n(&nh_rt.ready, __ATOMIC_ACQUIRE)) {   /* its handle went with the heap */
    nh_error(-ENODEV, "nh_weak_get called before nh_init (or after nh_shutdown)");
    return NULL;
  }
  const struct nh_weak *slot = weak_slot(&nh_rt.gc.specials, w);
  if (!slot || !__atomic_load_n(&slot->live, __ATOMIC_RELAXED)) {
    nh_error(-EINVAL, "nh_weak_get(%p): %s", (const void *)w, not_live(slot));
    return NULL;
  }
  uintptr_t obj = __atomic_load_n(&w->obj, __ATOMIC_RELAXED);
  if (obj && __atomic_load_n(&nh__marking, __ATOMIC_RELAXED) && thread_attached(&nh_rt.gc.threads)) {
    region_enter();
    obj = __atomic_load_n(&w->obj, __ATOMIC_RELAXED);
    if (obj && __atomic_load_n(&nh__marking, __ATOMIC_RELAXED))
      mark_shade_batch(&nh_rt.gc.work, &(uintptr_t){obj}, 1);
    region_exit();
  }
  return (void *)obj;
}

NH_API void nh_weak_free(nh_weak_t *w) {
  if (!w || !__atomic_load_n(&nh_rt.ready, __ATOMIC_ACQUIRE))
    return;
  nh_specials_t *sp = &nh_rt.gc.specials;
  region_enter();
  nh_mutex_lock(&sp->lock);
  struct nh_weak *slot = weak_slot(sp, w);
  bool live = slot && slot->live;
  if (live) {   /* stays in its slab: a free handle costs the cycle one check */
    __atomic_store_n(&slot->live, false, __ATOMIC_RELAXED);
    slot->obj = 0;
    slot->next_free = sp->weak_free;
    sp->weak_free = slot;
  }
  nh_mutex_unlock(&sp->lock);
  region_exit();
  if (!live)
    nh_error(-EINVAL, "nh_weak_free(%p): %s", (void *)w, not_live(slot));
}

void specials_set_on_demand(bool on, void (*notifier)(void)) {
  nh_specials_t *sp = &nh_rt.gc.specials;
  __atomic_store_n(&sp->notifier, notifier, __ATOMIC_RELEASE);
  bool was = __atomic_exchange_n(&sp->on_demand, on, __ATOMIC_ACQ_REL);
  if (was && !on && specials_have_ready())   /* what waited for the program: the thread's now */
    nh_signal_flag(&sp->run_mu, &sp->run_cv, &sp->wake);
}

size_t specials_run_ready(void) {
  if (!__atomic_load_n(&nh_rt.ready, __ATOMIC_ACQUIRE) || !nh_rt.gc.on)
    return 0;
  if (!thread_attached(&nh_rt.gc.threads) && thread_attach() != 0)
    return 0;   /* it holds objects while their finalizers run: its stack must be scanned */
  return run_ready(&nh_rt.gc.specials);
}

bool specials_have_ready(void) { return __atomic_load_n(&nh_rt.gc.specials.nready, __ATOMIC_RELAXED) > 0; }

/* Disappearing links: the table's calls under the specials' lock (the cycle clears links while
 * the world is stopped, holding it). */
int specials_link_add(void **link, const void *obj, bool long_link) {
  nh_specials_t *sp = &nh_rt.gc.specials;
  region_enter();
  nh_mutex_lock(&sp->lock);
  int rc = links_add(&sp->links[long_link], (uintptr_t)link, (uintptr_t)obj);
  nh_mutex_unlock(&sp->lock);
  region_exit();
  return rc;
}

bool specials_link_remove(void **link, bool long_link) {
  nh_specials_t *sp = &nh_rt.gc.specials;
  region_enter();
  nh_mutex_lock(&sp->lock);
  bool found = links_remove(&sp->links[long_link], (uintptr_t)link);
  nh_mutex_unlock(&sp->lock);
  region_exit();
  return found;
}

int specials_link_move(void **link, void **to, bool long_link) {
  nh_specials_t *sp = &nh_rt.gc.specials;
  region_enter();
  nh_mutex_lock(&sp->lock);
  int rc = links_move(&sp->links[long_link], (uintptr_t)link, (uintptr_t)to);
  nh_mutex_unlock(&sp->lock);
  region_exit();
  return rc;
}
