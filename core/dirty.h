/*
 * dirty.h — pages written since they were write-protected, found by the kernel: userfaultfd's
 * asynchronous write-protect and the PAGEMAP_SCAN ioctl (see dirty.c). The collector's
 * concurrent-nobarrier mode marks with it instead of a write barrier.
 */
#ifndef NH_DIRTY_H
#define NH_DIRTY_H

#include "core/internal.h"

typedef struct nh_dirty {
  int uffd, pagemap;        /* -1: not open */
  bool armed;               /* a mark is tracking (the scavenger releases nothing meanwhile) */
  uint64_t scans;           /* PAGEMAP_SCAN calls, all time (relaxed) */
} nh_dirty_t;

/* Opens and probes the kernel's support: userfaultfd with WP_ASYNC and WP_UNPOPULATED (and
 * WP_HUGETLBFS_SHMEM when hugetlb arenas may come), and PAGEMAP_SCAN on a test mapping.
 * Returns 0, or -errno with the reason in why. */
int dirty_open(nh_dirty_t *d, bool hugetlb, char *why, size_t n);
void dirty_close(nh_dirty_t *d);

/* A new arena range: registered for write-protect (not protected: an unprotected page reads
 * as written). -errno on failure (the arena must then not be used: its writes could not be
 * seen). */
int dirty_register(nh_dirty_t *d, void *p, size_t len);
/* Write-protects [p, p + len) (on) or lifts it (off). 0 or -errno. */
int dirty_protect(nh_dirty_t *d, void *p, size_t len, bool on);
/* Calls fn(lo, hi, arg) for every range of [p, p + len) written since it was protected and,
 * with reprotect, protects those pages again in the same walk (atomically per page: a write
 * after it is seen by the next scan). Returns the bytes reported, or -errno. */
typedef void (*dirty_fn)(uintptr_t lo, uintptr_t hi, void *arg);
int64_t dirty_scan(nh_dirty_t *d, void *p, size_t len, bool reprotect, dirty_fn fn, void *arg);

#endif
