/*
 * micro_os.c — micro-benchmarks of the OS layer's hot lookups and transitions.
 *
 *   arena_of/hit      address -> arena for pointers inside the heap (free's and the marker's
 *                     first step); the budget is a shift, a compare and one load (~1 ns).
 *   arena_of/foreign  the same for pointers nheap does not own (stack, libc heap).
 *   release_use/N     mem_release + re-touch of N KiB of a THP arena: what the scavenger costs
 *                     per release, page faults included.
 *   pageheap/alloc_free/N  pageheap_alloc + pageheap_free of N pages in a heap of 4 arenas
 *                     fragmented by 3000 live runs of 1..16 pages: the first-fit search over
 *                     the chunk and arena summaries, and the summary updates.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_shim.h"
#include "core/pageheap.h"

static nh_mem_t mem;
static nh_arena_set_t set;
static nh_arena_t *arena;

static void bm_arena_of_hit(bench_state *st, int64_t arg) {
  uintptr_t base = arena->base, x = 0x9e3779b97f4a7c15u;
  while (bench_keep_running_batch(st, 64)) {
    for (int i = 0; i < 64; i++) {
      x = x * 6364136223846793005u + 1442695040888963407u;
      bench_do_not_optimize(arena_of(&set, (void *)(base + (x >> 38))));
    }
  }
}

static void bm_arena_of_foreign(bench_state *st, int64_t arg) {
  void *p[4] = {&arg, st, malloc(16), (void *)0xffff800000001000u};
  while (bench_keep_running_batch(st, 64))
    for (int i = 0; i < 64; i++)
      bench_do_not_optimize(arena_of(&set, p[i & 3]));
  free(p[2]);
}

static void bm_release_use(bench_state *st, int64_t kib) {
  size_t len = (size_t)kib << 10;
  char *p = (char *)arena->base;
  while (bench_keep_running_batch(st, 1)) {
    mem_use(&mem, p, len);
    for (size_t off = 0; off < len; off += 4096)
      p[off] = 1;
    mem_release(&mem, p, len, arena->backing);
  }
  bench_set_counter(st, "bytes", (double)len);
}

static nh_pageheap_t ph;

static void bm_pageheap(bench_state *st, int64_t npages) {
  bool nz;
  while (bench_keep_running_batch(st, 1)) {
    uintptr_t p = pageheap_alloc(&ph, (size_t)npages, &nz);
    bench_do_not_optimize((void *)p);
    pageheap_free(&ph, p, (size_t)npages);
  }
}

static void fragment_pageheap(void) {
  pageheap_init(&ph, 0, &set, &mem);
  static uintptr_t live[6000];
  static size_t len[6000];
  bool nz;
  uint64_t x = 88172645463325252u;
  for (int i = 0; i < 6000; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    len[i] = 1 + x % 16;
    live[i] = pageheap_alloc(&ph, len[i], &nz);
  }
  for (int i = 0; i < 6000; i += 2)   /* free every other run: holes of 1..16 pages */
    pageheap_free(&ph, live[i], len[i]);
}

int main(int argc, char **argv) {
  mem_init(&mem, &os_linux);
  nh_arena_placement place = {.nnodes = 1};
  if (arena_set_init(&set, &mem, NH_HUGEPAGES_THP, place) != 0 || !(arena = arena_create(&set, 0))) {
    fprintf(stderr, "nheap-micro: cannot map an arena\n");
    return 1;
  }
  static const int64_t sizes[] = {64, 2048};
  bench_register("arena_of/hit", bm_arena_of_hit, NULL, 0);
  bench_register("arena_of/foreign", bm_arena_of_foreign, NULL, 0);
  bench_register("release_use_kib", bm_release_use, sizes, 2);
  fragment_pageheap();
  static const int64_t pages[] = {1, 8, 64, 1024};
  bench_register("pageheap/alloc_free", bm_pageheap, pages, 4);
  int rc = bench_main(argc, argv);
  arena_set_destroy(&set);
  mem_destroy(&mem);
  return rc;
}
