/*
 * lock.c — ranked mutexes (order and rules in lock.h).
 *
 * held_ranks is this thread's stack of held lock ranks (debug builds only; release builds
 * never touch it). Locks are released in any order; the check is on acquisition. Every build
 * counts the locks held (error.h: reports wait until the last is released), so a lock is
 * released by the thread that took it.
 */
#include <string.h>

#include "core/error.h"
#include "core/lock.h"

enum { MAX_HELD = 16 };
static __thread nh_lock_rank held_ranks[MAX_HELD];
static __thread int held_count;

void nh_mutex_init(nh_mutex_t *l, nh_lock_rank rank) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ADAPTIVE_NP);
  pthread_mutex_init(&l->m, &a);
  pthread_mutexattr_destroy(&a);
  l->rank = rank;
  l->owner = 0;
}

void nh_mutex_destroy(nh_mutex_t *l) {
  pthread_mutex_destroy(&l->m);
}

static void rank_acquire(nh_lock_rank rank) {
  for (int i = 0; i < held_count; i++)
    if (held_ranks[i] >= rank || held_ranks[i] == LOCK_RANK_LEAF)
      nh_fatal("lock order violation: taking rank %d while holding rank %d", rank, held_ranks[i]);
  if (held_count == MAX_HELD)
    nh_fatal("lock rank stack overflow (%d locks held)", held_count);
  held_ranks[held_count++] = rank;
}

static void rank_release(nh_lock_rank rank) {
  for (int i = held_count - 1; i >= 0; i--) {
    if (held_ranks[i] == rank) {
      memmove(&held_ranks[i], &held_ranks[i + 1], (size_t)(held_count - i - 1) * sizeof held_ranks[0]);
      held_count--;
      return;
    }
  }
  nh_fatal("unlocking a lock of rank %d that this thread does not hold", rank);
}

void nh_mutex_lock(nh_mutex_t *l) {
  if (nh_config_debug >= 1)
    rank_acquire(l->rank);
  pthread_mutex_lock(&l->m);
  if (nh_config_debug >= 1)
    l->owner = pthread_self();
  report_hold();   /* no error handler runs under a lock (error.h) */
}

void nh_mutex_unlock(nh_mutex_t *l) {
  if (nh_config_debug >= 1) {
    l->owner = 0;
    rank_release(l->rank);
  }
  pthread_mutex_unlock(&l->m);
  report_release();
}

void nh_mutex_assert_held(const nh_mutex_t *l) {
  if (nh_config_debug >= 1 && !pthread_equal(l->owner, pthread_self()))
    nh_fatal("lock of rank %d must be held here", l->rank);
}
