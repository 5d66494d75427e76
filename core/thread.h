/*
 * thread.h — attached threads, stopping the world and no-stop regions (thread.c). The lowest
 * layer of the collector: the allocator's locked paths use its regions, and nothing here calls
 * up into the allocator or the cycle.
 */
#ifndef NH_THREAD_H
#define NH_THREAD_H

#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/error.h"
#include "core/lock.h"
#include "nheap.h"

#define NH_WBUF_CAP 512

/* The program's collection-event hook (nh_set_gc_event_hook): world_stop and world_start
 * raise the stop and start events, the cycle the others. */
extern nh_gc_event_fn nh_event_hook;
static inline void gc_event(nh_gc_event_kind event) {
  nh_gc_event_fn fn = __atomic_load_n(&nh_event_hook, __ATOMIC_ACQUIRE);
  if (fn)
    fn(event);
}

typedef struct nh_thread {
  struct nh_thread *next, *prev;   /* attached list; guarded by the threads lock */
  pthread_t tid;
  uintptr_t stack_lo, stack_hi;    /* from pthread_getattr_np */
  uintptr_t stop_sp;               /* while stopped: the lowest live stack address */
  uint32_t gen;                    /* the threads_init generation it was attached in */
  bool guarded;                    /* from the pool of guarded mappings (secure = on) */
  volatile int nogc;               /* depth of no-stop regions (this thread and its handler) */
  volatile sig_atomic_t stop_pending; /* a stop arrived inside a region: stop on leaving it */
  int blocking;                    /* in nh_do_blocking: stops count it stopped at stop_sp */
  /* The write barrier's buffer (Go's wbBuf): values nh_store overwrote during a concurrent
   * mark, shaded when it fills, when the thread detaches, and at mark termination. Written by
   * the thread inside a no-stop region; read by the collector while the world is stopped. */
  uint32_t wbn;
  int64_t assist_debt;             /* scan work this thread owes the current mark (bytes) */
  struct nh_perf_thread *perf;     /* its perf counters (TLS), read by the collector when stopped */
  uintptr_t wbuf[NH_WBUF_CAP];
} nh_thread_t;

typedef struct nh_threads {
  nh_mutex_t lock;                 /* LOCK_RANK_THREADS; held from stop to start */
  nh_thread_t *first;
  nh_thread_t *free;               /* records for reuse */
  size_t count;
  uint32_t epoch;                  /* odd while the world is stopped */
  uint32_t gen;                    /* a new value at every threads_init (nh_init) */
  sem_t ack;                       /* one post per stopped thread */
  pthread_key_t key;               /* detaches at thread exit */
  bool key_made;
} nh_threads_t;

/* The calling thread's record. Records are never unmapped, so one left over from before an
 * nh_shutdown stays readable; its gen tells that it is stale. */
extern __thread nh_thread_t *nh_self __attribute__((tls_model("initial-exec")));

static inline bool thread_attached(const nh_threads_t *ts) {
  nh_thread_t *t = nh_self;
  return t && t->gen == ts->gen;
}

/* Runs fn(arg) with the calling (attached, outside any region) thread counted as stopped:
 * world_stop neither signals it nor waits for it, and scans its stack from this call's frame
 * (the registers spilled there). Leaving waits out a stop in progress. See thread.c. */
void *thread_do_blocking(void *(*fn)(void *), void *arg);

int threads_init(nh_threads_t *ts);
void threads_destroy(nh_threads_t *ts);
/* Registers the calling thread (idempotent; re-attaches a stale record). 0, or -ENOMEM. */
int thread_attach(void);
void thread_detach(void);
/* After fork, in the child: only the calling thread survives. */
void threads_after_fork(nh_threads_t *ts);

/* Stops every attached thread but the caller (each saves its registers on its stack and
 * records its stack pointer) and returns with the threads lock held; start undoes it and
 * returns when the threads were released (CLOCK_MONOTONIC ns): where a pause ends. The time
 * the caller then spends preempted by the threads it woke is not a pause (they run). */
/* Inside nh_do_blocking's fn: runs fn(arg) as an ordinary attached thread, then goes back to
 * blocking (bdwgc's GC_call_with_gc_active); elsewhere just calls it. */
void *thread_call_active(void *(*fn)(void *), void *arg);
void world_stop(nh_threads_t *ts);
uint64_t world_start(nh_threads_t *ts);

/* A no-stop region: code that takes allocator locks or holds an object only in metadata.
 * A stop request that arrives inside waits until the region ends. Nestable; cheap. */
static inline void region_enter(void) {
  if (nh_self)
    nh_self->nogc++;
  report_hold();   /* no error handler runs where the world cannot be stopped (error.h) */
}
void region_stop_pending(void);
static inline void region_exit(void) {
  nh_thread_t *t = nh_self;
  if (t && --t->nogc == 0 && nh_unlikely(t->stop_pending))
    region_stop_pending();
  report_release();
}

/* Zeroes up to 16 KiB of dead stack below the caller, where stale pointers would otherwise be
 * scanned inside the frames that later cover it. */
void thread_clear_dead_stack(void);

#endif
