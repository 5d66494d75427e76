/*
 * scavenger.h — returning free pages to the OS (see scavenger.c).
 */
#ifndef NH_SCAVENGER_H
#define NH_SCAVENGER_H

#include <liburing.h>
#include <pthread.h>

#include "core/lock.h"

enum { SCAV_RING_ENTRIES = 32 };

typedef struct nh_scavenger {
  nh_mutex_t lock;            /* LOCK_RANK_SCAVENGER: one pass at a time; guards the ring */
  struct io_uring ring;       /* guarded by lock */
  bool have_ring;             /* the ring is up; false: madvise (uring=0, no io_uring, or it failed) */
  bool background;            /* the thread runs */
  pthread_t thread;
  pthread_mutex_t wait_lock;  /* the thread's sleep; a leaf */
  pthread_cond_t wake;
  bool stop;                  /* guarded by wait_lock */
  bool kicked;                /* guarded by wait_lock: a page heap asked for a prefault pass */
  uint64_t released_bytes;    /* relaxed: all time */
  uint64_t passes;            /* relaxed: background passes that released something */
} nh_scavenger_t;

struct nh_heap;

/* Sets up the ring (unless use_uring is false or io_uring is unavailable) and, if background,
 * starts the thread. Returns 0 or -errno (thread creation). */
int scavenger_start(nh_scavenger_t *sc, struct nh_heap *h, bool background, bool use_uring);
/* Stops the thread and closes the ring. */
void scavenger_stop(nh_scavenger_t *sc);
/* In a fork child: the thread is gone and the ring is the parent's; drop both (madvise from
 * now on, no background passes). */
void scavenger_forget_thread(nh_scavenger_t *sc);
/* Releases up to max_bytes of free pages, every node, now, on the calling thread. */
size_t scavenger_release(nh_scavenger_t *sc, struct nh_heap *h, size_t max_bytes);
/* How many free bytes are past the retained goal (what a background pass releases). */
size_t scavenger_excess(const struct nh_heap *h);

#endif
