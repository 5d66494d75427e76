/*
 * mem.c — the OS memory layer.
 *
 * Address space is always in one of four states (Go's mem.go vocabulary, used the same way in
 * code, stats and docs):
 *
 *   None      not mapped by nheap.
 *   Reserved  nheap owns the range (mmap PROT_NONE, MAP_NORESERVE): no access, no memory,
 *             no commit charge. Arenas are reserved whole, 64 MiB-aligned.
 *   Prepared  mapped read-write but holding no data nheap cares about: never touched, or given
 *             back to the OS. Touching it faults in zeroed pages. Counted as "released".
 *   Ready     in use by the heap: may be resident.
 *
 * Each transition is one function here, and only these functions call the OS about heap
 * memory:
 *
 *   mem_reserve    None -> Reserved      mmap(PROT_NONE) anywhere, over-reserving by `align` and
 *                                        trimming both ends; mem_reserve_at takes exactly `addr`
 *                                        when it is free (MAP_FIXED_NOREPLACE) or fails, which is
 *                                        how arenas grow contiguously (arena.c).
 *   mem_commit     Reserved -> Prepared  mmap(MAP_FIXED, RW) over the reservation; for hugetlb with
 *                                        MAP_HUGETLB|MAP_HUGE_2MB, which takes the pages from the
 *                                        pool now (-ENOMEM when the pool is short: the reservation
 *                                        is left intact and the caller falls back).
 *   mem_hugify     (Prepared)            madvise(MADV_HUGEPAGE / MADV_NOHUGEPAGE): THP advice,
 *                                        before first touch so faults come in 2 MiB.
 *   mem_bind       (Prepared, untouched) mbind: MPOL_PREFERRED on the node (local) or
 *                                        MPOL_INTERLEAVE over all nodes; the node is checked
 *                                        against the caller's node count first (libnuma would
 *                                        print and silently fall back).
 *   mem_use        Prepared -> Ready     accounting only on Linux: first touch faults the pages in.
 *   mem_populate   (Ready)               madvise(MADV_POPULATE_WRITE): faults the pages in now, off
 *                                        the thread that will write them (pageheap_prefault); a
 *                                        write to each page on kernels before 5.14.
 *   mem_release    Ready -> Prepared     madvise(MADV_DONTNEED): RSS drops now, the range stays
 *                                        mapped. On hugetlb the range goes to Reserved instead (a
 *                                        PROT_NONE remap): a hugetlb page given back by DONTNEED
 *                                        returns to the pool without its reservation, and a later
 *                                        touch would SIGBUS if another process took it; remapping
 *                                        makes the next mem_commit fail cleanly with -ENOMEM instead.
 *   mem_release_batch  the same for many ranges, as one io_uring submission of
 *                                        IORING_OP_MADVISE (the scavenger's path), or a loop of
 *                                        madvise where io_uring is unavailable.
 *   mem_decommit   Prepared|Ready -> Reserved   mmap(MAP_FIXED, PROT_NONE): memory and access gone.
 *   mem_unreserve  any -> None           munmap.
 *
 * The ring (mem_release_batch). A request the kernel has taken runs on its own (an io-wq
 * worker) until its completion is posted: a range may go back to the page heap only once its
 * completion has been reaped, or a late MADV_DONTNEED would zero pages already reused. So:
 *   1. Queue one SQE per range (as many as the ring holds), submit until the kernel took all.
 *   2. Reap one completion per request taken. A range the ring refused (res < 0), or never
 *      took, is released with plain madvise instead (DONTNEED twice is harmless).
 *   3. EINTR (a signal, such as the collector's stop, landed while the thread waited: io_uring
 *      never restarts the call, SA_RESTART or not), EAGAIN and EBUSY (the kernel short of
 *      request memory, completions to reap first; io_uring_enter(2)) are retried: EINTR always,
 *      the other two up to RING_STALLS times in a row. Any other error fails the ring: nothing
 *      more is submitted, and every request already taken is still reaped before the call
 *      returns. If the wait itself fails, the ranges still in flight come back
 *      NH_RELEASE_IN_FLIGHT, which the caller must never reuse.
 * Each range's outcome is counted (release_ring, release_madvise, release_in_flight), so the
 * stats say what did the work, not just whether a ring was set up.
 *
 * Page faults are expensive on the machines nheap targets (~14 us per 4 KiB fault on the
 * development VM; THP ~4x and hugetlb ~45x cheaper per byte), so callers reuse Prepared and
 * Ready memory rather than unreserving it; release is the scavenger's job.
 *
 * Metadata (arena records, span structs, per-CPU caches) lives off-heap in 256 KiB chunks
 * mapped Ready and carved by a bump pointer (Go's persistentalloc): it is never freed until
 * mem_destroy, which unmaps every chunk. Requests over a quarter chunk get their own mapping,
 * and mem_meta_alloc_node gives one its own mapping bound to a NUMA node (a CPU's cache lives
 * on that CPU's node).
 * Guarded by meta_lock (LOCK_RANK_META).
 *
 * The nh_os_hooks table is the only way out to the kernel, so tests can swap it for fakes.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <numaif.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "core/mem.h"

#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB (21 << MAP_HUGE_SHIFT)
#endif

/* ---------------------------------------------------------------------------------------------
 * The real OS.
 * ------------------------------------------------------------------------------------------- */

static void *linux_map(void *addr, size_t len, int prot, int flags) {
  return mmap(addr, len, prot, flags | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
}

static int linux_bind(void *addr, size_t len, int mode, const unsigned long *mask, unsigned long maxnode) {
  return (int)mbind(addr, len, mode, mask, maxnode, 0);
}

/* Reads a small sysfs file into buf without stdio (no malloc). Returns bytes read or -1. */
static ssize_t read_small_file(const char *path, char *buf, size_t n) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  ssize_t r = read(fd, buf, n - 1);
  close(fd);
  if (r < 0)
    return -1;
  buf[r] = 0;
  return r;
}

static long linux_hugetlb_free_pages(void) {
  static const char dir[] = "/sys/kernel/mm/hugepages/hugepages-2048kB/";
  char path[128], buf[32];
  snprintf(path, sizeof path, "%snr_hugepages", dir);
  if (read_small_file(path, buf, sizeof buf) < 0 || strtol(buf, NULL, 10) <= 0)
    return -1;   /* no pool configured */
  snprintf(path, sizeof path, "%sfree_hugepages", dir);
  if (read_small_file(path, buf, sizeof buf) < 0)
    return -1;
  long free_pages = strtol(buf, NULL, 10);
  snprintf(path, sizeof path, "%sresv_hugepages", dir);
  long resv = read_small_file(path, buf, sizeof buf) < 0 ? 0 : strtol(buf, NULL, 10);
  return free_pages > resv ? free_pages - resv : 0;
}

static nh_thp_mode linux_thp_mode(void) {
  char buf[128];
  if (read_small_file("/sys/kernel/mm/transparent_hugepage/enabled", buf, sizeof buf) < 0)
    return THP_UNSUPPORTED;
  if (strstr(buf, "[always]"))
    return THP_ALWAYS;
  if (strstr(buf, "[madvise]"))
    return THP_MADVISE;
  return THP_NEVER;
}

static uint64_t linux_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

const nh_os_hooks os_linux = {
  .map = linux_map,
  .unmap = munmap,
  .advise = madvise,
  .bind = linux_bind,
  .hugetlb_free_pages = linux_hugetlb_free_pages,
  .thp_mode = linux_thp_mode,
  .now_ns = linux_now_ns,
};

/* ---------------------------------------------------------------------------------------------
 * Transitions.
 * ------------------------------------------------------------------------------------------- */

static void check_range(const void *p, size_t len, size_t align) {
  nh_assert(nh_is_aligned((uintptr_t)p, align) && nh_is_aligned(len, align) && len > 0);
}

void mem_init(nh_mem_t *m, const nh_os_hooks *os) {
  memset(m, 0, sizeof *m);
  m->os = os;
  nh_mutex_init(&m->meta_lock, LOCK_RANK_META);
}

void *mem_reserve_at(nh_mem_t *m, size_t len, uintptr_t addr) {
  check_range((void *)addr, len, NH_OS_PAGE);
  void *p = m->os->map((void *)addr, len, PROT_NONE, MAP_NORESERVE | MAP_FIXED_NOREPLACE);
  if (p == MAP_FAILED)
    return NULL;
  if (p != (void *)addr) {   /* a kernel older than 4.17 ignores MAP_FIXED_NOREPLACE */
    m->os->unmap(p, len);
    return NULL;
  }
  nh_stat_add(&m->stats.reserved, (int64_t)len);
  return p;
}

void *mem_reserve(nh_mem_t *m, size_t len, size_t align) {
  check_range(NULL, len, NH_OS_PAGE);
  nh_assert(align >= NH_OS_PAGE && (align & (align - 1)) == 0);
  size_t over = len + align - NH_OS_PAGE;
  char *raw = m->os->map(NULL, over, PROT_NONE, MAP_NORESERVE);
  if (raw == MAP_FAILED)
    return NULL;
  char *p = (char *)nh_align_up((uintptr_t)raw, align);
  if (p > raw)
    m->os->unmap(raw, (size_t)(p - raw));
  if (raw + over > p + len)
    m->os->unmap(p + len, (size_t)(raw + over - (p + len)));
  nh_stat_add(&m->stats.reserved, (int64_t)len);
  return p;
}

int mem_commit(nh_mem_t *m, void *p, size_t len, nh_backing b) {
  int flags = MAP_FIXED | MAP_NORESERVE;
  if (b == NH_BACKING_HUGETLB) {
    check_range(p, len, NH_HUGE_PAGE);
    flags = MAP_FIXED | MAP_HUGETLB | MAP_HUGE_2MB;
  } else {
    check_range(p, len, NH_OS_PAGE);
  }
  void *q = m->os->map(p, len, PROT_READ | PROT_WRITE, flags);
  if (q == MAP_FAILED) {
    int e = errno;
    /* Keep the promise that a failed call leaves the range Reserved, even on a kernel that
     * tore the old mapping down before failing. */
    m->os->map(p, len, PROT_NONE, MAP_FIXED | MAP_NORESERVE);
    return -e;
  }
  nh_assert_internal(q == p);
  nh_stat_add(&m->stats.mapped, (int64_t)len);
  return 0;
}

int mem_hugify(nh_mem_t *m, void *p, size_t len, bool huge) {
  check_range(p, len, NH_OS_PAGE);
  return m->os->advise(p, len, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE) == 0 ? 0 : -errno;
}

int mem_bind(nh_mem_t *m, void *p, size_t len, int node, int nnodes, bool interleave) {
  enum { MASK_WORDS = 1024 / (8 * sizeof(unsigned long)) };
  unsigned long mask[MASK_WORDS] = {0};
  const size_t bits = 8 * sizeof(unsigned long);
  check_range(p, len, NH_OS_PAGE);
  if (nnodes < 1 || nnodes > 1024 || (!interleave && (node < 0 || node >= nnodes)))
    return -EINVAL;
  if (interleave)
    for (int n = 0; n < nnodes; n++)
      mask[(size_t)n / bits] |= 1ul << ((size_t)n % bits);
  else
    mask[(size_t)node / bits] |= 1ul << ((size_t)node % bits);
  int mode = interleave ? MPOL_INTERLEAVE : MPOL_PREFERRED;
  return m->os->bind(p, len, mode, mask, (unsigned long)nnodes + 1) == 0 ? 0 : -errno;
}

void mem_use(nh_mem_t *m, void *p, size_t len) {
  check_range(p, len, NH_OS_PAGE);
  nh_stat_add(&m->stats.ready, (int64_t)len);
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

int mem_populate(nh_mem_t *m, void *p, size_t len) {
  check_range(p, len, NH_OS_PAGE);
  if (m->os->advise(p, len, MADV_POPULATE_WRITE) == 0)
    return 0;
  if (errno != EINVAL)
    return -errno;
  for (volatile char *c = p; c < (char *)p + len; c += NH_OS_PAGE)   /* before Linux 5.14 */
    *c = 0;
  return 0;
}

int mem_release(nh_mem_t *m, void *p, size_t len, nh_backing b) {
  if (b == NH_BACKING_HUGETLB) {
    check_range(p, len, NH_HUGE_PAGE);
    if (m->os->map(p, len, PROT_NONE, MAP_FIXED | MAP_NORESERVE) == MAP_FAILED)
      return -errno;
    nh_stat_add(&m->stats.ready, -(int64_t)len);
    nh_stat_add(&m->stats.mapped, -(int64_t)len);
    return 0;
  }
  check_range(p, len, NH_OS_PAGE);
  if (m->os->advise(p, len, MADV_DONTNEED) != 0)
    return -errno;
  nh_stat_add(&m->stats.ready, -(int64_t)len);
  return 0;
}

/* EAGAIN or EBUSY this many times in a row (each after a yield) and the ring counts as failed:
 * the kernel is not making progress on it. EINTR has no limit: each retry waits again for
 * requests the kernel runs anyway. */
enum { RING_STALLS = 1000 };

/* Steps 1-3 of the essay for r[first, first + queued), whose SQEs are queued and carry their
 * index. Sets how for each range the ring took: IN_FLIGHT, then RING once its completion is
 * reaped, or REFUSED if the request came back with an error (the caller falls back to
 * madvise); a range never taken stays QUEUED. Returns 0, or the error that failed the ring. */
static int ring_run(struct io_uring *ring, nh_range *r, size_t first, size_t queued) {
  size_t taken = 0, reaped = 0;
  unsigned stalls = 0;
  bool reap_first = false;   /* the last submit stalled: make room by reaping */
  int failed = 0;
  while (reaped < taken || (!failed && taken < queued)) {
    bool submitting = !failed && taken < queued && !(reap_first && reaped < taken);
    int rc;
    if (submitting) {
      unsigned unsent = io_uring_sq_ready(ring);
      rc = io_uring_submit(ring);
      unsigned took = unsent - io_uring_sq_ready(ring);   /* the kernel takes SQEs in order */
      for (unsigned k = 0; k < took; k++)
        r[first + taken + k].how = NH_RELEASE_IN_FLIGHT;
      taken += took;
      if (took)
        rc = 0;
      else if (rc >= 0)
        rc = -EAGAIN;   /* took nothing: a stall like the others */
    } else {
      struct io_uring_cqe *cqe;
      rc = io_uring_wait_cqe(ring, &cqe);
      if (rc == 0) {
        size_t i = (size_t)io_uring_cqe_get_data64(cqe);
        if (i >= first && i < first + taken && r[i].how == NH_RELEASE_IN_FLIGHT) {
          r[i].how = cqe->res >= 0 ? NH_RELEASED_RING : NH_RELEASE_REFUSED;
          reaped++;
        }
        io_uring_cqe_seen(ring, cqe);
      }
    }
    if (rc == 0) {
      stalls = 0;
      reap_first = false;
    } else if (rc == -EINTR) {
      continue;
    } else if ((rc == -EAGAIN || rc == -EBUSY) && ++stalls < RING_STALLS) {
      reap_first = true;
      sched_yield();
    } else if (submitting) {
      failed = rc;   /* submit no more; reap what was taken */
      stalls = 0;
    } else {
      return rc;     /* cannot reap: what was taken stays IN_FLIGHT */
    }
  }
  return failed;
}

size_t mem_release_batch(nh_mem_t *m, nh_range *r, size_t n, struct io_uring *ring, bool *ring_failed) {
  size_t released = 0, done = 0;
  *ring_failed = false;
  for (size_t i = 0; i < n; i++) {
    check_range(r[i].p, r[i].len, NH_OS_PAGE);
    r[i].how = NH_RELEASE_QUEUED;
  }
  while (ring && done < n && !*ring_failed) {
    size_t queued = 0;
    struct io_uring_sqe *sqe;
    while (done + queued < n && (sqe = io_uring_get_sqe(ring))) {
      io_uring_prep_madvise(sqe, r[done + queued].p, (off_t)r[done + queued].len, MADV_DONTNEED);
      io_uring_sqe_set_data64(sqe, done + queued);
      queued++;
    }
    if (queued == 0) {   /* SQEs left queued by someone else: the ring is not ours to trust */
      *ring_failed = true;
      break;
    }
    *ring_failed = ring_run(ring, r, done, queued) != 0;
    done += queued;
  }
  for (size_t i = 0; i < n; i++) {
    switch (r[i].how) {
    case NH_RELEASED_RING:
      released += r[i].len;
      nh_stat_add(&m->stats.release_ring, 1);
      break;
    case NH_RELEASE_IN_FLIGHT:
      nh_stat_add(&m->stats.release_in_flight, 1);
      break;
    default:   /* never taken by the ring, or refused by it */
      if (m->os->advise(r[i].p, r[i].len, MADV_DONTNEED) == 0) {
        r[i].how = NH_RELEASED_MADVISE;
        released += r[i].len;
        nh_stat_add(&m->stats.release_madvise, 1);
      } else {
        r[i].how = NH_RELEASE_REFUSED;
      }
    }
  }
  nh_stat_add(&m->stats.ready, -(int64_t)released);
  return released;
}

int mem_decommit(nh_mem_t *m, void *p, size_t len, bool was_ready) {
  check_range(p, len, NH_OS_PAGE);
  if (m->os->map(p, len, PROT_NONE, MAP_FIXED | MAP_NORESERVE) == MAP_FAILED)
    return -errno;
  if (was_ready)
    nh_stat_add(&m->stats.ready, -(int64_t)len);
  nh_stat_add(&m->stats.mapped, -(int64_t)len);
  return 0;
}

int mem_unreserve(nh_mem_t *m, void *p, size_t len, size_t mapped, size_t ready) {
  check_range(p, len, NH_OS_PAGE);
  nh_assert(ready <= mapped && mapped <= len);
  if (m->os->unmap(p, len) != 0)
    return -errno;
  nh_stat_add(&m->stats.ready, -(int64_t)ready);
  nh_stat_add(&m->stats.mapped, -(int64_t)mapped);
  nh_stat_add(&m->stats.reserved, -(int64_t)len);
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Metadata.
 * ------------------------------------------------------------------------------------------- */

enum { META_CHUNK = 256 << 10 };

struct meta_chunk {
  struct meta_chunk *next;
  size_t len;
};

void *mem_map_guarded(const nh_os_hooks *os, bool guard, size_t len, int flags) {
  if (!guard)
    return os->map(NULL, len, PROT_READ | PROT_WRITE, flags);
  char *g = os->map(NULL, len + 2 * NH_OS_PAGE, PROT_NONE, MAP_NORESERVE);
  if (g == MAP_FAILED)
    return MAP_FAILED;
  void *p = os->map(g + NH_OS_PAGE, len, PROT_READ | PROT_WRITE, MAP_FIXED | flags);
  if (p == MAP_FAILED)
    os->unmap(g, len + 2 * NH_OS_PAGE);
  return p;
}

void mem_unmap_guarded(const nh_os_hooks *os, bool guard, void *p, size_t len) {
  if (guard)
    os->unmap((char *)p - NH_OS_PAGE, len + 2 * NH_OS_PAGE);
  else
    os->unmap(p, len);
}

/* A metadata mapping of len bytes; with m->guard, between two PROT_NONE pages, so that an
 * overflow out of a neighbouring mapping (an arena) faults instead of reaching it. */
static void *meta_map(nh_mem_t *m, size_t len) {
  nh_mutex_assert_held(&m->meta_lock);
  struct meta_chunk *c = mem_map_guarded(m->os, m->guard, len, 0);
  if (c == MAP_FAILED)
    return NULL;
  c->next = m->meta_chunks;
  c->len = len;
  m->meta_chunks = c;
  nh_stat_add(&m->stats.metadata, (int64_t)len);
  return c;
}

/* Copies a table that holds heap pointers (finalizer records, roots) without the vector
 * registers memcpy copies through: the last of it would stay in them, and a thread stopped
 * later is scanned with its registers, the vector ones included (the kernel's signal frame), so
 * those stale copies kept their objects alive for as long as nothing overwrote the registers:
 * the 18 finalizer records a grow copied last were never finalized in concurrent mode.
 * rep movsq moves them through no architectural register. */
static void copy_words(void *dst, const void *src, size_t bytes) {
  nh_assert(bytes % 8 == 0);
#if defined(__x86_64__)
  size_t words = bytes / 8;
  __asm__ volatile("rep movsq" : "+D"(dst), "+S"(src), "+c"(words) : : "memory");
#else
  memcpy(dst, src, bytes);
#endif
}

void *mem_meta_grow(nh_mem_t *m, void *v, size_t *cap, size_t n, size_t elem) {
  if (n < *cap)
    return v;
  size_t ncap = *cap ? *cap * 2 : 64;
  void *nv = mem_meta_alloc(m, ncap * elem, 64);
  if (!nv)
    return NULL;
  if (n)
    copy_words(nv, v, n * elem);
  *cap = ncap;
  return nv;
}

void *mem_meta_alloc(nh_mem_t *m, size_t size, size_t align) {
  nh_assert(align && (align & (align - 1)) == 0 && align <= NH_OS_PAGE);
  void *out = NULL;
  nh_mutex_lock(&m->meta_lock);
  if (size > META_CHUNK / 4) {
    size_t len = nh_align_up(size + NH_OS_PAGE, NH_OS_PAGE);
    char *c = meta_map(m, len);
    out = c ? c + NH_OS_PAGE : NULL;   /* the header keeps its own page: data stays page-aligned */
  } else {
    char *p = (char *)nh_align_up((uintptr_t)m->meta_cur, align);
    if (!m->meta_cur || p + size > m->meta_end) {
      char *c = meta_map(m, META_CHUNK);
      if (c) {
        m->meta_cur = c + sizeof(struct meta_chunk);
        m->meta_end = c + META_CHUNK;
        p = (char *)nh_align_up((uintptr_t)m->meta_cur, align);
      }
    }
    if (m->meta_cur && p + size <= m->meta_end) {
      m->meta_cur = p + size;
      out = p;
    }
  }
  nh_mutex_unlock(&m->meta_lock);
  return out;   /* fresh anonymous memory: already zero */
}

void *mem_meta_alloc_node(nh_mem_t *m, size_t size, int node, int nnodes, bool bind) {
  size_t len = nh_align_up(size + NH_OS_PAGE, NH_OS_PAGE);
  nh_mutex_lock(&m->meta_lock);
  char *c = meta_map(m, len);
  nh_mutex_unlock(&m->meta_lock);
  if (!c)
    return NULL;
  /* Bound before first touch; the header page (touched already) is not part of it. If the
   * kernel refuses, the memory still works, first-touch placed. */
  if (bind && len > NH_OS_PAGE)
    mem_bind(m, c + NH_OS_PAGE, len - NH_OS_PAGE, node, nnodes, false);
  return c + NH_OS_PAGE;
}

void mem_destroy(nh_mem_t *m) {
  nh_mutex_lock(&m->meta_lock);
  for (struct meta_chunk *c = m->meta_chunks, *next; c; c = next) {
    next = c->next;
    nh_stat_add(&m->stats.metadata, -(int64_t)c->len);
    mem_unmap_guarded(m->os, m->guard, c, c->len);
  }
  m->meta_chunks = NULL;
  m->meta_cur = m->meta_end = NULL;
  nh_mutex_unlock(&m->meta_lock);
  nh_mutex_destroy(&m->meta_lock);
}
