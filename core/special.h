/*
 * special.h — finalizers and weak references (special.c): the tables, the finalizer thread, and
 * the collector's side of them (marking their roots, clearing and queueing after a mark).
 */
#ifndef NH_SPECIAL_H
#define NH_SPECIAL_H

#include <pthread.h>

#include "core/links.h"
#include "core/lock.h"
#include "core/mark.h"

/* Finalizers and weak references (special.c). */
enum { NH_WEAK_SLABS = 40 };       /* 64 << 39 handles: more than memory holds */
struct nh_final_rec;
struct nh_weak;
typedef struct nh_specials {
  nh_mutex_t lock;                 /* LOCK_RANK_SPECIALS: the tables below */
  struct nh_final_rec *final;      /* registered finalizers */
  size_t nfinal, capfinal;
  struct nh_final_rec *ready;      /* queued to run (roots until they have run) */
  size_t nready, capready;
  /* Weak handles live in slabs (slab k holds 64 << k of them) that never move or go, so a
   * pointer can be checked to be a handle without the lock (special.c). */
  struct nh_weak *weak_slab[NH_WEAK_SLABS];
  size_t weak_slabs;               /* made: release store after the slab, acquire loads */
  size_t weak_top;                 /* handles handed out of the newest slab */
  struct nh_weak *weak_free;       /* freed handles, for reuse */
  nh_links_t links[2];             /* disappearing links: [0] short, [1] long (links.c) */
  bool on_demand;                  /* ready finalizers wait for specials_run_ready (bdwgc's
                                      finalize-on-demand); else the finalizer thread runs them */
  void (*notifier)(void);          /* called once finalizers are ready (bdwgc's notifier) */
  uint64_t queued;                 /* relaxed: finalizers moved to the ready queue, all time */
  uint64_t run;                    /* relaxed: finalizers run (equals queued once drained) */
  pthread_t thread;
  bool thread_started, stop, wake; /* thread_started: release store; stop, wake: run_mu */
  pthread_mutex_t run_mu;
  pthread_cond_t run_cv;
} nh_specials_t;

/* How a finalizer orders against others (bdwgc's three ways of registering one):
 *   ORDERED      what the object points to is kept while it waits (nh_set_finalizer): an object
 *                reachable from another finalizable one waits for that one to go first;
 *   IGNORE_SELF  the same, but a pointer from the object to itself does not keep it;
 *   NO_ORDER     finalized as soon as it is unreachable, whatever points to it from other
 *                finalizable objects; what it points to is kept (resurrected with it) until its
 *                finalizer has run. */
typedef enum nh_final_kind { NH_FINAL_ORDERED, NH_FINAL_IGNORE_SELF, NH_FINAL_NO_ORDER } nh_final_kind;
/* nh_set_finalizer with an order: 0, -EINVAL, -ENOMEM, -ENOTSUP (as nh_set_finalizer). */
int specials_set_finalizer(void *obj, nh_finalizer_fn fn, void *arg, nh_final_kind kind);
/* Finalize-on-demand: ready finalizers wait until the program runs them (specials_run_ready),
 * and notifier (if any) is called from a collector thread when some become ready. Off: the
 * finalizer thread runs them (and is woken for those that waited). */
void specials_set_on_demand(bool on, void (*notifier)(void));
/* Runs the ready finalizers on the calling thread; returns how many ran. */
size_t specials_run_ready(void);
/* Whether finalizers are ready (a relaxed look). */
bool specials_have_ready(void);
/* Disappearing links (links.h) under the specials' lock: which table (long: after
 * finalization). add: 0 new, 1 replaced, -ENOMEM; remove: whether it was there; move: 0,
 * -ENOENT, -EEXIST. */
int specials_link_add(void **link, const void *obj, bool long_link);
bool specials_link_remove(void **link, bool long_link);
int specials_link_move(void **link, void **to, bool long_link);

void specials_init(nh_specials_t *sp);
void specials_shutdown(nh_specials_t *sp);
void specials_after_fork_child(nh_specials_t *sp);
/* Marking's special roots (finalizable objects' referents, queued finalizers); then, after the
 * mark, clearing weak handles and resurrecting and queueing the finalizable dead. */
void mark_specials(nh_marker_t *m, nh_specials_t *sp);
size_t specials_after_mark(nh_marker_t *m, nh_specials_t *sp);   /* returns how many it queued */
void specials_wake(nh_specials_t *sp, size_t queued);             /* after the world restarts */
/* Validator: every finalizer record and every queued one names an allocated object (exact
 * once the heap is swept, as after nh_gc; the program must not have nh_freed one), and the
 * weak handle free list holds free handles only. Aborts naming what is wrong. */
void specials_validate(nh_specials_t *sp);


#endif
