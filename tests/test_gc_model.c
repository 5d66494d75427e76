/*
 * test_gc_model.c — the collector's model test (gcmodel.c) on random programs: each seed makes
 * a program of random operations (allocations of every kind, pointer stores, loads and drops,
 * explicit frees and reallocs, forced and paced collections, threads that start and exit,
 * roots added and removed), run against the shadow model, which checks after every collection
 * that every reachable object is intact. Deterministic by seed: the program is (the scheduler
 * and the concurrent collector interleave as they will). A failure prints the seed;
 * NH_MODEL_SEED=N reruns that one, NH_GC_MODEL_OPS=N sets the program length (`make soak`
 * runs long ones). The gc mode comes from the environment (ctest runs concurrent and stw, with
 * checkmark); the mode the environment asks for (NHEAP_GC, concurrent when unset) must be the
 * mode that runs: where this machine cannot run it (no rseq for nh_store, no write-protect
 * tracking for concurrent-nobarrier) nheap falls back to stw, and the test skips (exit 77)
 * saying so rather than pass as a test of another mode.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/gcmodel.h"
#include "tests/testutil.h"

static uint64_t rnd(uint64_t *s) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 2685821657736338717ull;
}

int main(void) {
  const char *one = getenv("NH_MODEL_SEED"), *len = getenv("NH_GC_MODEL_OPS");
  unsigned long first = one ? strtoul(one, NULL, 0) : 1, seeds = one ? 1 : 4;
  size_t ops = len ? strtoul(len, NULL, 0) : 40000;
  nh_options o;
  nh_options_init(&o);   /* the environment (NHEAP_GC, NHEAP_DEBUG) decides the mode */
  o.hugepages = NH_HUGEPAGES_NONE;
  if (nh_init(&o) != 0)
    return 1;
  static const char *const modes[] = {"concurrent", "concurrent-nobarrier", "stw", "off"};
  const char *asked = getenv("NHEAP_GC") ? getenv("NHEAP_GC") : "concurrent";
  nh_stats_t mode = {.size = sizeof mode};
  nh_stats_read(&mode);
  if (mode.gc_mode >= 4 || strcmp(asked, modes[mode.gc_mode]) != 0) {
    fprintf(stderr, "gc model: SKIPPED: gc = %s was asked for, but %s runs on this machine (nheap said why "
            "above); this variant would not test what it is named for\n", asked,
            mode.gc_mode < 4 ? modes[mode.gc_mode] : "?");
    nh_shutdown();
    return 77;
  }
  fprintf(stderr, "gc model: gc = %s\n", asked);
  gcm_setup();
  uint8_t *code = malloc(ops * 4);
  if (!code)
    return 1;
  gcm_report total = {0};
  for (unsigned long seed = first; seed < first + seeds; seed++) {
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    for (size_t i = 0; i < ops * 4; i++)
      code[i] = (uint8_t)(rnd(&s) >> 32);
    fprintf(stderr, "gc model: seed %lu, %zu operations (rerun: NH_MODEL_SEED=%lu)\n", seed, ops, seed);
    gcm_report r = {0};
    gcm_run(code, ops * 4, &r);
    fprintf(stderr, "  %llu nh_gc, %llu objects verified intact, %llu allocated, %llu freed, %llu died, "
            "%llu retained when unreachable, %llu threads\n", (unsigned long long)r.cycles,
            (unsigned long long)r.verified, (unsigned long long)r.allocated, (unsigned long long)r.freed,
            (unsigned long long)r.died, (unsigned long long)r.retained, (unsigned long long)r.threads);
    total.ops += r.ops, total.cycles += r.cycles, total.verified += r.verified;
    total.died += r.died, total.retained += r.retained, total.allocated += r.allocated;
  }
  nh_stats_t st = {.size = sizeof st};
  nh_stats_read(&st);
  fprintf(stderr, "gc model: %llu operations, %llu cycles (%llu of them nh_gc), %llu objects verified, 0 lost; "
          "unreachable: %llu freed by the collector, %llu retained; %.1f MiB marked after everything was dropped\n",
          (unsigned long long)total.ops, (unsigned long long)st.gc_cycles, (unsigned long long)total.cycles,
          (unsigned long long)total.verified,
          (unsigned long long)total.died, (unsigned long long)total.retained, st.heap_marked_bytes / 1048576.0);
  /* Unreachable memory comes back: a stale word may hold a few objects, not a share of them,
   * and with every root dropped next to nothing stays marked. */
  int bad = total.retained > 16 + total.died / 50 || st.heap_marked_bytes > (4u << 20);
  if (bad)
    fprintf(stderr, "gc model: FAILED: unreachable objects were not freed\n");
  free(code);
  nh_shutdown();
  return bad;
}
