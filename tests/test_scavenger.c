/*
 * test_scavenger.c — returning memory to the OS: both release paths (io_uring batch and
 * madvise) really lower RSS; after a large free the background scavenger brings RSS down
 * (read from /proc/self/statm) and keeps free memory within its goal; on THP arenas only whole,
 * aligned 2 MiB units are released; released pages are reused correctly.
 * Run again by ctest with NHEAP_DEBUG=uring=0 (the madvise path end to end).
 */
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "core/heap.h"
#include "tests/testutil.h"

static long rss_mib(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long size = 0, rss = 0;
  if (f) {
    if (fscanf(f, "%ld %ld", &size, &rss) != 2)
      rss = 0;
    fclose(f);
  }
  return rss * sysconf(_SC_PAGESIZE) >> 20;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static void test_release_batch_both_paths(void **state) {
  nh_mem_t mem;
  mem_init(&mem, &os_linux);
  struct io_uring ring;
  bool have_ring = io_uring_queue_init(8, &ring, 0) == 0;
  for (int with_ring = 0; with_ring < 2; with_ring++) {
    if (with_ring && !have_ring) {
      print_message("io_uring unavailable here: only the madvise path was checked\n");
      break;
    }
    const size_t len = (size_t)64 << 20, piece = len / 16;
    char *p = mem_reserve(&mem, len, NH_HUGE_PAGE);
    assert_int_equal(mem_commit(&mem, p, len, NH_BACKING_SMALL), 0);
    mem_use(&mem, p, len);
    memset(p, 1, len);
    nh_range r[16];
    for (int i = 0; i < 16; i++)
      r[i] = (nh_range){p + i * piece, piece};
    long before = smaps_kb(p, len, "Rss");
    bool ring_failed;
    size_t got = mem_release_batch(&mem, r, 16, with_ring ? &ring : NULL, &ring_failed);
    assert_false(ring_failed);
    long after = smaps_kb(p, len, "Rss");
    print_message("%s: released %zu MiB, Rss %ld -> %ld kB\n", with_ring ? "io_uring" : "madvise", got >> 20, before, after);
    assert_int_equal(got, len);
    assert_true(after < before / 16);
    assert_int_equal(p[len / 2], 0);
    assert_int_equal(nh_stat_get(&mem.stats.ready), 0);
    assert_int_equal(mem_unreserve(&mem, p, len, len, 0), 0);
  }
  if (have_ring)
    io_uring_queue_exit(&ring);
  mem_destroy(&mem);
}

static int setup(void **state) {
  clear_nheap_env();
  capture_errors();
  nh_options o;
  nh_options_init(&o);
  o.gc = NH_GC_OFF;      /* the explicit-free allocator: pointers live in malloc memory here */
  o.hugepages = NH_HUGEPAGES_THP;
  return nh_init(&o);
}

static int teardown(void **state) {
  for (int n = 0; n < nh_rt.topo.nnodes; n++)
    pageheap_validate(&nh_rt.nodes[n].ph);
  nh_shutdown();
  return 0;
}

static nh_stats_t stats(void) {
  nh_stats_t s = {.size = sizeof s};
  nh_stats_read(&s);
  return s;
}

/* Free pages some scavenger pass holds back while it releases them, all nodes. */
static uint64_t pages_being_scavenged(void) {
  uint64_t n = 0;
  for (int node = 0; node < nh_rt.topo.nnodes; node++)
    n += nh_stat_get(&nh_rt.nodes[node].ph.scavenging_pages);
  return n;
}

static void test_rss_drops_after_large_free(void **state) {
  const char *dbg = getenv("NHEAP_DEBUG");
  bool want_ring = !(dbg && strstr(dbg, "uring=0"));
  if (want_ring && !stats().scavenger_uring)
    print_message("io_uring is unavailable: the scavenger uses madvise\n");
  else
    assert_int_equal(stats().scavenger_uring, want_ring);

  enum { N = 32 };
  const size_t size = (size_t)8 << 20;
  char *p[N];
  for (int i = 0; i < N; i++) {
    p[i] = nh_alloc_noscan(size);
    assert_non_null(p[i]);
    memset(p[i], 0x5a, size);
  }
  long peak = rss_mib();
  for (int i = 0; i < N; i++)
    nh_free(p[i]);
  long now = peak;
  /* Until the background scavenger is done: RSS down, no excess, and no pages held back in
   * the middle of a release (the stats count those as free, the excess does not). */
  for (int waited = 0; waited < 10000 && (now > peak - 200 || scavenger_excess(&nh_rt) || pages_being_scavenged());
       waited += 50) {
    sleep_ms(50);
    now = rss_mib();
  }
  nh_stats_t s = stats();
  print_message("RSS %ld MiB with 256 MiB live, %ld MiB after the free; scavenged %llu MiB (%s)\n", peak, now,
                (unsigned long long)s.scavenged_bytes >> 20, s.scavenger_uring ? "io_uring" : "madvise");
  assert_true(now <= peak - 200);
  assert_true(s.scavenged_bytes >= (uint64_t)200 << 20);
  assert_true(s.heap_free_bytes <= s.heap_inuse_bytes / 10 + ((uint64_t)8 << 20) + NH_HUGE_PAGE);
  assert_int_equal(scavenger_excess(&nh_rt), 0);

  /* Released pages come back when needed, zero where the allocator promises it. */
  for (int i = 0; i < N; i++) {
    p[i] = nh_alloc(size);
    assert_int_equal(p[i][size / 2], 0);
    memset(p[i], 1, 4096);
  }
  for (int i = 0; i < N; i++)
    nh_free(p[i]);
}

/* A burst of small objects freed again: the empty spans the size classes keep for the next
 * burst count as free memory, and the scavenger returns them like any other free pages. */
static void test_kept_spans_are_free_memory(void **state) {
  enum { N = 16384 };   /* 64 MiB of 4 KiB objects: more than any class keeps */
  static char *p[N];
  uint64_t inuse0 = stats().heap_inuse_bytes;
  for (int i = 0; i < N; i++) {
    p[i] = nh_alloc_noscan(4096);
    assert_non_null(p[i]);
    memset(p[i], 0x5a, 4096);
  }
  assert_true(stats().heap_inuse_bytes >= inuse0 + ((uint64_t)N * 4096));
  for (int i = 0; i < N; i++)
    nh_free(p[i]);
  nh_stats_t s = stats();
  print_message("after the burst: %llu KiB in use, %llu KiB free and backed\n",
                (unsigned long long)s.heap_inuse_bytes >> 10, (unsigned long long)s.heap_free_bytes >> 10);
  /* The per-CPU stacks and transfer caches still hold a few objects' spans; the kept empty
   * spans (8 MiB of this class) are free memory, which the background scavenger may already
   * be releasing. */
  assert_true(s.heap_inuse_bytes <= inuse0 + ((uint64_t)4 << 20));
  nh_scavenge(SIZE_MAX);
  s = stats();
  assert_true(s.heap_free_bytes <= ((uint64_t)8 << 20) + s.heap_inuse_bytes / 10 + NH_HUGE_PAGE);
  assert_true(s.heap_released_bytes >= (uint64_t)48 << 20);
}

static void test_thp_arenas_release_whole_huge_pages(void **state) {
  /* Small objects with holes: free every other 1.5 MiB run, so free runs are shorter than a
   * huge page in places and longer in others. */
  enum { N = 4000 };
  static char *obj[N];
  for (int i = 0; i < N; i++) {
    obj[i] = nh_alloc_noscan(32768);
    memset(obj[i], 1, 64);
  }
  for (int i = 0; i < N; i++)
    if ((i / 48) % 2 == 0 || i > N / 2)
      nh_free(obj[i]);
  mcache_flush_all(&nh_rt.caches);
  size_t got = nh_scavenge(SIZE_MAX);   /* whatever the background pass left */
  nh_stats_t s = stats();
  print_message("nh_scavenge released %zu MiB; %llu MiB scavenged in all, %llu KiB free and backed\n",
                got >> 20, (unsigned long long)s.scavenged_bytes >> 20, (unsigned long long)s.heap_free_bytes >> 10);
  assert_true(s.scavenged_bytes > 0);
  const nh_pageheap_t *ph = &nh_rt.nodes[0].ph;
  for (size_t i = 0; i < ph->narenas; i++) {
    nh_arena_t *a = ph->by_addr[i];
    if (a->backing != NH_BACKING_THP)
      continue;
    /* Every run of released pages that does not start free from the arena's fresh state must
     * sit on 2 MiB boundaries: check each huge-page unit is all released or has no released
     * page next to a used one inside it. */
    for (size_t u = 0; u < NH_PAGES_PER_ARENA; u += 256) {
      size_t scav = 0, used = 0;
      for (size_t pg = u; pg < u + 256; pg++) {
        scav += a->pages->scav[pg / 64] >> (pg % 64) & 1;
        used += a->pages->alloc[pg / 64] >> (pg % 64) & 1;
      }
      if (scav && used)
        fail_msg("arena %#lx huge page %zu: %zu released pages beside %zu used ones", (unsigned long)a->base,
                 u / 256, scav, used);
    }
  }
  for (int i = 0; i < N; i++)
    if (!((i / 48) % 2 == 0 || i > N / 2))
      nh_free(obj[i]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_release_batch_both_paths),
    cmocka_unit_test_setup_teardown(test_rss_drops_after_large_free, setup, teardown),
    cmocka_unit_test_setup_teardown(test_kept_spans_are_free_memory, setup, teardown),
    cmocka_unit_test_setup_teardown(test_thp_arenas_release_whole_huge_pages, setup, teardown),
  };
  return cmocka_run_group_tests_name("scavenger", tests, NULL, NULL);
}
