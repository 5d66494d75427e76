/*
 * lock.h — ranked mutexes.
 *
 * Every lock in nheap has a rank, declared once in the table below. A thread may take a lock
 * only while every lock it already holds has a lower rank; debug builds (NH_DEBUG >= 1) keep
 * the held ranks in a thread-local stack and abort on an out-of-order acquisition, which turns
 * a latent deadlock into an immediate, named failure (Go's lockrank, checked always in Debug).
 * Locks of rank LOCK_RANK_LEAF may be taken under anything but may hold nothing.
 *
 * The lock order (outermost first):
 */
#ifndef NH_LOCK_H
#define NH_LOCK_H

#include <pthread.h>

#include "core/internal.h"

typedef enum nh_lock_rank {
  LOCK_RANK_INIT = 1,   /* init.c: nh_init / nh_shutdown, the global heap's lifetime */
  LOCK_RANK_GC,         /* cycle.c: one collection at a time */
  LOCK_RANK_THREADS,    /* thread.c: the attached threads; held while the world is stopped */
  LOCK_RANK_ROOTS,      /* mark.c: the registered root ranges */
  LOCK_RANK_SPECIALS,   /* special.c: finalizers and weak handles */
  LOCK_RANK_MCACHE,     /* mcache.c: one CPU's cache, in the per-CPU-lock mode */
  LOCK_RANK_MCENTRAL,   /* mcentral.c: one span class's span sets */
  LOCK_RANK_SCAVENGER,  /* scavenger.c: one release pass at a time, the io_uring ring */
  LOCK_RANK_PAGEHEAP,   /* pageheap.c: a node's page bitmaps, summaries and arena list */
  LOCK_RANK_ARENAS,     /* arena.c: arena creation, the arena list and the address hint */
  LOCK_RANK_MARKWORK,   /* mark.c: the concurrent markers' shared grey blocks */
  LOCK_RANK_META,       /* mem.c: the off-heap metadata allocator */
  LOCK_RANK_ERROR,      /* error.c: the error handler slot */
  LOCK_RANK_LEAF,       /* holds nothing while held */
} nh_lock_rank;

typedef struct nh_mutex {
  pthread_mutex_t m;
  nh_lock_rank rank;
  pthread_t owner;      /* valid while held; debug checks only */
} nh_mutex_t;

#define NH_MUTEX_INITIALIZER(r) { PTHREAD_MUTEX_INITIALIZER, (r), 0 }

/* Sets *flag under mu and signals cv: how a background thread (scavenger, sweeper, finalizer
 * runner) is woken or told to stop. */
static inline void nh_signal_flag(pthread_mutex_t *mu, pthread_cond_t *cv, bool *flag) {
  pthread_mutex_lock(mu);
  *flag = true;
  pthread_cond_signal(cv);
  pthread_mutex_unlock(mu);
}

void nh_mutex_init(nh_mutex_t *l, nh_lock_rank rank);
void nh_mutex_destroy(nh_mutex_t *l);
void nh_mutex_lock(nh_mutex_t *l);
void nh_mutex_unlock(nh_mutex_t *l);
/* Debug builds: abort unless the calling thread holds l. */
void nh_mutex_assert_held(const nh_mutex_t *l);

#endif
