/*
 * pagebits.h — the page heap's own helpers, shared by pageheap.c (allocation) and pageos.c
 * (scavenging and prefaulting); not for the rest of nheap.
 */
#ifndef NH_PAGEBITS_H
#define NH_PAGEBITS_H

#include "core/pageheap.h"

/* Sets (on) or clears bits [i, i + n) of bitmap bm / counts the set ones. */
static inline void set_bits(uint64_t *bm, size_t i, size_t n, bool on) {
  while (n) {
    size_t w = i / 64, b = i % 64, k = 64 - b < n ? 64 - b : n;
    uint64_t mask = (k == 64 ? ~0ull : ((1ull << k) - 1)) << b;
    bm[w] = on ? bm[w] | mask : bm[w] & ~mask;
    i += k;
    n -= k;
  }
}

static inline size_t count_bits(const uint64_t *bm, size_t i, size_t n) {
  size_t c = 0;
  while (n) {
    size_t w = i / 64, b = i % 64, k = 64 - b < n ? 64 - b : n;
    uint64_t mask = (k == 64 ? ~0ull : ((1ull << k) - 1)) << b;
    c += (size_t)__builtin_popcountll(bm[w] & mask);
    i += k;
    n -= k;
  }
  return c;
}

/* After alloc bits [first, first + n) of ap changed: the chunk and arena free-run summaries. */
void pageheap_update_summaries(nh_arena_pages_t *ap, size_t first, size_t n);
/* The index in by_addr of the arena holding addr (in this heap); ph->lock held. */
size_t pageheap_arena_index(nh_pageheap_t *ph, uintptr_t addr);

#endif
