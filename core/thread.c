/*
 * thread.c — attached threads and stopping the world (bdwgc's pthread_stop_world, reworked).
 *
 * A thread is attached on its first allocation (or by nh_thread_attach): a record with its
 * stack bounds (pthread_getattr_np) joins the list, and a pthread key's destructor detaches it
 * at exit. Records come from a process-wide pool that nh_shutdown does not unmap: a thread
 * still running after a shutdown keeps a readable, stale record (its gen is old), re-attaches
 * with it after the next nh_init (unless that heap's secure setting differs: records of a
 * secure = on heap come from a pool of mappings between guard pages), and never shares it. Only attached threads are stopped and scanned; a thread that holds heap pointers
 * without ever allocating must attach itself.
 *
 * Stopping (world_stop), with the threads lock held from stop to start so that no thread
 * attaches or detaches meanwhile:
 *   1. epoch becomes odd; SIGPWR goes to every attached thread but the caller (one that
 *      cannot be signalled is gone, and dropped: below).
 *   2. The handler spills the callee-saved registers into its own frame
 *      (__builtin_unwind_init), records the address of that frame as the thread's stop_sp,
 *      posts the ack semaphore (async-signal-safe) and waits on the epoch (a futex) until
 *      it changes. Everything the thread had in registers is now on its stack, between stop_sp
 *      and the top: the kernel's signal frame holds the interrupted registers, the handler's
 *      frame the callee-saved ones. The handler runs on the thread's normal stack (no
 *      SA_ONSTACK).
 *   3. The collector waits for one ack per thread; a thread that does not answer within a
 *      second (it blocks SIGPWR) is reported once and waited for.
 * Starting: epoch becomes even and one FUTEX_WAKE wakes every stopped thread at once. (A
 * restart signal per thread, as bdwgc sends, let the first thread woken preempt the collector
 * before it signalled the next: on a busy 2-CPU machine the last thread stayed stopped for a
 * scheduler tick, 3 to 4 ms, after the pause's work was done.) The futex wait compares the
 * epoch it saw, so a wake-up cannot be lost; a spurious one re-waits. While stopped, a thread
 * blocks every signal but the fatal ones (stopped_mask: the handler's sa_mask, and the mask
 * region_stop_pending sets around its stop), however it came to stop: a program's handler
 * that ran on a stopped thread could allocate or store pointers in the middle of a mark. The
 * signals that arrive meanwhile are delivered after the restart.
 * System calls interrupted by the stop are restarted (SA_RESTART) where the kernel allows.
 *
 * A thread that pthread_kill cannot reach is gone: it exited without detaching (a raw
 * SYS_exit skips the key's destructor) and the kernel has cleared its tid (ESRCH, or EINVAL
 * from tgkill since glibc 2.34). Its stack may be unmapped or reused and nothing of the
 * program runs on it any more, so it is not scanned: world_stop reports it once and drops its record (barrier
 * buffer shaded, unlinked, gen cleared so that a late detach or re-attach finds it stale; the
 * record is not reused, nor are its perf counters read, which lived in its TLS). Every thread
 * left on the list during a stop is stopped, with its stop_sp set. (glibc 2.34 on answers 0
 * for a thread past its key destructors, which the signal never reaches: one that an
 * allocation in the last round of destructors re-attached is waited for, with the warning.)
 *
 * No-stop regions: the allocator's slow paths take locks and briefly hold objects only in
 * metadata (a span just taken from the page heap). A stop that arrives inside one sets
 * stop_pending and returns at once; region_exit stops the thread when it leaves the outermost
 * region. The collector itself takes those locks only while the world is stopped, so no
 * stopped thread can hold one. The fast paths are restartable sequences, which the kernel
 * aborts on signal delivery, so a stopped thread is never half-way through one either.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "core/heap.h"

#define SIG_SUSPEND SIGPWR

__thread nh_thread_t *nh_self __attribute__((tls_model("initial-exec")));

static nh_threads_t *g_threads;   /* the one the handlers serve (nh_rt.gc.threads) */
static sigset_t stopped_mask;     /* every signal but the fatal ones; set before the handler */
static uint32_t generation;       /* of threads_init calls */

/* The record pools: 64 KiB mappings, never unmapped; records of detached threads for reuse.
 * Two pools, so that a heap with secure = on takes its records from mappings between guard
 * pages (as its metadata) even after a heap without it made records in the same process. */
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
  nh_thread_t *free;
  char *next, *end;
} pools[2];

static nh_thread_t *record_new(void) {
  bool guard = nh_rt.mem.guard;
  pthread_mutex_lock(&pool_lock);
  nh_thread_t *t = pools[guard].free;
  if (t) {
    pools[guard].free = t->next;
  } else {
    if (pools[guard].end - pools[guard].next < (ptrdiff_t)sizeof *t) {
      void *m = mem_map_guarded(&os_linux, guard, 64 << 10, 0);
      if (m != MAP_FAILED) {
        pools[guard].next = m;
        pools[guard].end = pools[guard].next + (64 << 10);
      }
    }
    if (pools[guard].end - pools[guard].next >= (ptrdiff_t)sizeof *t) {
      t = (nh_thread_t *)pools[guard].next;
      pools[guard].next += nh_align_up(sizeof *t, 64);
      t->guarded = guard;
    }
  }
  pthread_mutex_unlock(&pool_lock);
  return t;
}

static void record_free(nh_thread_t *t) {
  pthread_mutex_lock(&pool_lock);
  t->next = pools[t->guarded].free;
  pools[t->guarded].free = t;
  pthread_mutex_unlock(&pool_lock);
}

static void suspend_self(nh_thread_t *t);

/* ---------------------------------------------------------------------------------------------
 * Signal handlers.
 * ------------------------------------------------------------------------------------------- */


static void suspend_handler(int sig, siginfo_t *si, void *uc) {
  (void)sig, (void)si, (void)uc;
  int saved = errno;
  nh_thread_t *t = nh_self;
  if (t && g_threads && t->gen == g_threads->gen && (__atomic_load_n(&g_threads->epoch, __ATOMIC_ACQUIRE) & 1)) {
    if (t->nogc > 0)
      t->stop_pending = 1;
    else
      suspend_self(t);
  }
  errno = saved;
}

/* Until the world restarts after the stop at epoch (odd). */
static void wait_for_start(uint32_t epoch) {
  while (__atomic_load_n(&g_threads->epoch, __ATOMIC_ACQUIRE) == epoch)
    syscall(SYS_futex, &g_threads->epoch, FUTEX_WAIT_PRIVATE, epoch, NULL, NULL, 0);
}

static nh_noinline void *blocking_frame(nh_thread_t *t, void *(*fn)(void *), void *arg) {
  __builtin_unwind_init();   /* callee-saved registers into this frame, scanned while blocking */
  volatile uintptr_t here = 0;
  __atomic_store_n(&t->stop_sp, (uintptr_t)&here, __ATOMIC_RELEASE);
  __atomic_store_n(&t->blocking, 1, __ATOMIC_SEQ_CST);
  void *r = fn(arg);
  __atomic_store_n(&t->blocking, 0, __ATOMIC_SEQ_CST);
  uint32_t epoch = __atomic_load_n(&g_threads->epoch, __ATOMIC_SEQ_CST);
  if (epoch & 1)   /* a stop may have counted this thread stopped: its stack must not change */
    wait_for_start(epoch);
  __atomic_store_n(&t->stop_sp, 0, __ATOMIC_RELAXED);
  return r;
}

/* Inside a blocking region, fn runs as an ordinary attached thread (bdwgc's
 * GC_call_with_gc_active): the region is left as blocking_frame leaves it (waiting out a stop
 * that counted the thread stopped), and entered again afterwards with the outer frame's
 * registers and stack pointer, which still hold everything the blocking code keeps. Outside one
 * it just calls fn. */
void *thread_call_active(void *(*fn)(void *), void *arg) {
  nh_thread_t *t = nh_self;
  if (!t || !__atomic_load_n(&t->blocking, __ATOMIC_SEQ_CST))
    return fn(arg);
  uintptr_t outer = t->stop_sp;
  __atomic_store_n(&t->blocking, 0, __ATOMIC_SEQ_CST);
  uint32_t epoch = __atomic_load_n(&g_threads->epoch, __ATOMIC_SEQ_CST);
  if (epoch & 1)
    wait_for_start(epoch);
  __atomic_store_n(&t->stop_sp, 0, __ATOMIC_RELAXED);
  void *r = fn(arg);
  __atomic_store_n(&t->stop_sp, outer, __ATOMIC_RELEASE);
  __atomic_store_n(&t->blocking, 1, __ATOMIC_SEQ_CST);
  return r;
}

/* Records the stack pointer with the registers spilled, acks, waits for the epoch to move. */
static nh_noinline void suspend_self(nh_thread_t *t) {
  __builtin_unwind_init();   /* callee-saved registers into this frame */
  volatile uintptr_t here = 0;
  uint32_t epoch = __atomic_load_n(&g_threads->epoch, __ATOMIC_ACQUIRE);
  uintptr_t before = t->stop_sp;   /* nonzero inside nh_do_blocking (below) */
  __atomic_store_n(&t->stop_sp, (uintptr_t)&here, __ATOMIC_RELEASE);
  sem_post(&g_threads->ack);
  wait_for_start(epoch);
  __atomic_store_n(&t->stop_sp, before, __ATOMIC_RELAXED);
}

/* Blocking regions (bdwgc's GC_do_blocking): a thread about to wait in the kernel (a socket, a
 * pipe, a sleep) holds no pointer it will change until it returns, yet a stop would have to
 * wake it and wait for it to run its handler, on a busy machine a scheduler slice or more
 * (the gc-pause benchmark's main thread, asleep, delayed stops by 2-3 ms). Inside
 * nh_do_blocking the thread is counted as stopped instead: its callee-saved registers are
 * spilled into this frame, stop_sp points there, and blocking is set (sequentially
 * consistent, as are the collector's epoch increment and its load of blocking). world_stop
 * skips a thread it finds blocking: neither signal nor ack. Leaving clears blocking and then
 * reads the epoch: a collector that saw blocking set had made the epoch odd before, so the
 * thread sees it odd and waits for the restart before running on; one that saw it clear
 * signals the thread, which stops in its handler as usual (restoring stop_sp afterwards).
 * fn must not touch the collected heap (allocate, free, load or store its pointers) and must
 * return: not longjmp out, nor end the thread. */
void *thread_do_blocking(void *(*fn)(void *), void *arg) { return blocking_frame(nh_self, fn, arg); }

/* Leaving the outermost region with a stop pending: stop now, as the handler would have, with
 * the handler's mask, so that no program handler runs on this thread until the restart. The
 * mask goes on before the epoch is read: a handler that runs before it finds the thread still
 * running (the collector waits for its ack). pthread_sigmask is a system call that may run in
 * a signal handler (region_exit can be a handler's), and this path is rare. */
void region_stop_pending(void) {
  nh_thread_t *t = nh_self;
  t->stop_pending = 0;
  sigset_t old;
  pthread_sigmask(SIG_BLOCK, &stopped_mask, &old);
  if (__atomic_load_n(&g_threads->epoch, __ATOMIC_ACQUIRE) & 1)
    suspend_self(t);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static int install_handlers(void) {
  sigfillset(&stopped_mask);
  static const int fatal[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP};
  for (size_t i = 0; i < NH_ARRAY_LEN(fatal); i++)
    sigdelset(&stopped_mask, fatal[i]);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_mask = stopped_mask;
  sa.sa_flags = SA_RESTART | SA_SIGINFO;
  sa.sa_sigaction = suspend_handler;
  if (sigaction(SIG_SUSPEND, &sa, NULL) != 0)
    return -errno;
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Attach and detach.
 * ------------------------------------------------------------------------------------------- */

static void detach_at_exit(void *arg) {
  (void)arg;
  thread_detach();
}

int threads_init(nh_threads_t *ts) {
  memset(ts, 0, sizeof *ts);
  nh_mutex_init(&ts->lock, LOCK_RANK_THREADS);
  sem_init(&ts->ack, 0, 0);
  ts->gen = ++generation;
  if (pthread_key_create(&ts->key, detach_at_exit) != 0)
    return -EAGAIN;
  ts->key_made = true;
  int rc = install_handlers();
  if (rc != 0)
    return rc;
  g_threads = ts;
  return 0;
}

void threads_destroy(nh_threads_t *ts) {
  /* The handlers stay installed (another thread may still be inside one as it returns); with
   * no attached thread and an even epoch they do nothing. Records of threads still attached
   * stay with them, stale. */
  if (ts->key_made)
    pthread_key_delete(ts->key);
  sem_destroy(&ts->ack);
  g_threads = NULL;
  ts->key_made = false;
}

static bool stack_bounds(uintptr_t *lo, uintptr_t *hi) {
  pthread_attr_t attr;
  void *addr;
  size_t size;
  if (pthread_getattr_np(pthread_self(), &attr) != 0)
    return false;
  int rc = pthread_attr_getstack(&attr, &addr, &size);
  pthread_attr_destroy(&attr);
  if (rc != 0)
    return false;
  *lo = (uintptr_t)addr;
  *hi = (uintptr_t)addr + size;
  return true;
}

int thread_attach(void) {
  nh_threads_t *ts = &nh_rt.gc.threads;
  if (thread_attached(ts))
    return 0;
  uintptr_t lo, hi;
  if (!stack_bounds(&lo, &hi)) {
    nh_error(-EINVAL, "nh_thread_attach: cannot read this thread's stack bounds");
    return -EINVAL;
  }
  nh_thread_t *t = nh_self;   /* a stale record is this thread's own */
  if (t && t->guarded != nh_rt.mem.guard) {   /* of the other pool: back to it */
    record_free(t);
    nh_self = t = NULL;
  }
  if (!t)
    t = record_new();
  if (!t) {
    nh_error(-ENOMEM, "nh_thread_attach: no memory for the thread record");
    return -ENOMEM;
  }
  bool guarded = t->guarded;   /* which pool it goes back to */
  memset(t, 0, sizeof *t);
  t->guarded = guarded;
  t->tid = pthread_self();
  t->stack_lo = lo;
  t->stack_hi = hi;
  t->perf = perf_self();
  nh_mutex_lock(&ts->lock);
  t->gen = ts->gen;
  t->next = ts->first;
  if (ts->first)
    ts->first->prev = t;
  ts->first = t;
  ts->count++;
  nh_self = t;
  nh_mutex_unlock(&ts->lock);
  pthread_setspecific(ts->key, t);
  return 0;
}

/* Takes t off the attached list (threads lock held); its barrier buffer is shaded first. */
static void unlink_thread(nh_threads_t *ts, nh_thread_t *t) {
  nh_mutex_assert_held(&ts->lock);
  mark_thread_leaving(t);
  if (t->prev)
    t->prev->next = t->next;
  else
    ts->first = t->next;
  if (t->next)
    t->next->prev = t->prev;
  ts->count--;
}

void thread_detach(void) {
  nh_threads_t *ts = &nh_rt.gc.threads;
  if (!g_threads || !thread_attached(ts))
    return;
  nh_thread_t *t = nh_self;
  nh_mutex_lock(&ts->lock);
  perf_thread_exit(t->perf, NH_PHASE_PROGRAM);
  t->perf = NULL;
  unlink_thread(ts, t);
  nh_self = NULL;
  nh_mutex_unlock(&ts->lock);
  pthread_setspecific(ts->key, NULL);
  record_free(t);
}

void threads_after_fork(nh_threads_t *ts) {
  nh_thread_t *self = thread_attached(ts) ? nh_self : NULL;
  pthread_mutex_init(&pool_lock, NULL);
  ts->first = NULL;
  ts->count = 0;
  ts->epoch &= ~1u;
  sem_destroy(&ts->ack);
  sem_init(&ts->ack, 0, 0);
  if (self) {   /* this thread survived the fork; its record stays valid, its stack too */
    self->next = self->prev = NULL;
    self->nogc = 0;
    self->stop_pending = 0;
    self->tid = pthread_self();
    ts->first = self;
    ts->count = 1;
  }
}

/* ---------------------------------------------------------------------------------------------
 * Stop and start.
 * ------------------------------------------------------------------------------------------- */

/* A thread the kernel no longer has (world_stop, threads lock held): what thread_detach would
 * have done, but nothing of its TLS is touched and the record is not reused (see the essay). */
static void drop_gone(nh_threads_t *ts, nh_thread_t *t) {
  unlink_thread(ts, t);
  t->gen = 0;
  t->perf = NULL;
}

nh_gc_event_fn nh_event_hook;

void world_stop(nh_threads_t *ts) {
  gc_event(NH_EVENT_PRE_STOP_WORLD);
  nh_mutex_lock(&ts->lock);
  __atomic_add_fetch(&ts->epoch, 1, __ATOMIC_SEQ_CST);
  size_t n = 0;
  for (nh_thread_t *t = ts->first, *next; t; t = next) {
    next = t->next;
    if (t == nh_self || __atomic_load_n(&t->blocking, __ATOMIC_SEQ_CST))
      continue;   /* a blocking thread counts as stopped (thread_do_blocking) */
    int rc = pthread_kill(t->tid, SIG_SUSPEND);
    if (rc == 0) {
      n++;
    } else {
      nh_error(-rc, "gc: thread %#lx is gone without detaching (cannot signal it: %s); its stack is "
               "not scanned and it is detached", (unsigned long)t->tid, nh_strerror(-rc));
      drop_gone(ts, t);
    }
  }
  static bool warned;
  while (n > 0) {
    struct timespec ts_wait;
    clock_gettime(CLOCK_REALTIME, &ts_wait);
    ts_wait.tv_sec += 1;
    if (sem_timedwait(&ts->ack, &ts_wait) == 0) {
      n--;
    } else if (errno == ETIMEDOUT && !warned) {
      warned = true;
      nh_warn("gc: %zu attached thread(s) have not stopped after 1 s: a thread must not block "
              "SIGPWR while attached; still waiting", n);
    }
  }
  gc_event(NH_EVENT_POST_STOP_WORLD);
}

uint64_t world_start(nh_threads_t *ts) {
  gc_event(NH_EVENT_PRE_START_WORLD);
  uint64_t released = os_linux.now_ns();
  __atomic_add_fetch(&ts->epoch, 1, __ATOMIC_SEQ_CST);
  syscall(SYS_futex, &ts->epoch, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
  nh_mutex_unlock(&ts->lock);
  gc_event(NH_EVENT_POST_START_WORLD);
  return released;
}

/* Zeroes the stack below the caller's frame, where dead frames of earlier calls left stale
 * pointers; the collector's caller's frame, which is scanned, then holds only what it writes (bdwgc's
 * GC_clear_stack, for the same reason). */
nh_noinline void thread_clear_dead_stack(void) {
  enum { CLEAR = 16 << 10, MARGIN = 8 << 10 };
  size_t n = CLEAR;
  uintptr_t sp = (uintptr_t)__builtin_frame_address(0);
  if (thread_attached(&nh_rt.gc.threads)) {   /* small thread stacks: stay well inside */
    uintptr_t lo = nh_self->stack_lo;
    n = sp > lo + MARGIN + CLEAR ? CLEAR : sp > lo + 2 * MARGIN ? sp - lo - 2 * MARGIN : 0;
  }
  char *dead = __builtin_alloca(n);
  memset(dead, 0, n);
  __asm__ volatile("" : : "r"(dead) : "memory");   /* the stores must happen */
}
