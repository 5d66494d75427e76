/*
 * test_perf_pmu.c — with a hardware PMU, nheap's counters see what the hardware does: a
 * pointer chase through 64 MiB in random order misses the last-level cache and the data TLB
 * far more than a sequential pass making as many loads (both in the ALLOC phase); and where
 * the kernel lets a thread read its own counters in user mode (/sys/bus/event_source/devices/
 * cpu/rdpmc not 0), those reads went through rdpmc, not read(). Exits 77 (skipped) where the
 * machine has no PMU, as virtual machines often do.
 */
#include <stdio.h>
#include <stdlib.h>

#include "core/heap.h"
#include "tests/testutil.h"

static nh_stats_t stats(void) {
  nh_stats_t s = {.size = sizeof s};
  nh_stats_read(&s);
  return s;
}

int main(void) {
  clear_nheap_env();
  nh_options o;
  nh_options_init(&o);
  o.gc = NH_GC_STW;
  o.perf_events = "LLC-load-misses,dTLB-load-misses";
  if (nh_init(&o) != 0)
    return 1;
  nh_stats_t s0 = stats();
  if (s0.perf_events < 2) {
    printf("no hardware PMU here (LLC and dTLB events cannot be counted): skipped\n");
    return TEST_SKIP;
  }
  enum { N = (64 << 20) / sizeof(size_t) };
  size_t *next = malloc(N * sizeof *next), *order = malloc(N * sizeof *order);
  if (!next || !order)
    return 1;
  for (size_t i = 0; i < N; i++)
    order[i] = i;
  uint64_t rng = 1;
  for (size_t i = N - 1; i > 0; i--) {   /* a random cycle through every slot */
    rng = rng * 6364136223846793005u + 1442695040888963407u;
    size_t j = (size_t)(rng >> 33) % (i + 1), t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  for (size_t i = 0; i < N; i++)
    next[order[i]] = order[(i + 1) % N];
  nh_gc();   /* the set-up's counts go to ALLOC before the baseline */
  s0 = stats();
  volatile size_t sink = 0;
  for (size_t i = 0; i < N; i++)
    sink += next[i];
  nh_gc();
  nh_stats_t s1 = stats();
  size_t at = 0;
  for (size_t i = 0; i < N; i++)
    at = next[at];
  sink += at;
  (void)sink;
  nh_gc();
  nh_stats_t s2 = stats();
  uint64_t seq[2], chase[2];
  for (int e = 0; e < 2; e++) {
    seq[e] = s1.perf_counts[NH_PHASE_ALLOC][e] - s0.perf_counts[NH_PHASE_ALLOC][e];
    chase[e] = s2.perf_counts[NH_PHASE_ALLOC][e] - s1.perf_counts[NH_PHASE_ALLOC][e];
    printf("%s: sequential %llu, pointer chase %llu\n", s2.perf_event_names[e], (unsigned long long)seq[e],
           (unsigned long long)chase[e]);
  }
  uint64_t fast, slow;
  perf_reads(&fast, &slow);   /* hardware counters of the thread's own group: rdpmc where allowed */
  printf("reads: %llu through rdpmc, %llu through read()\n", (unsigned long long)fast, (unsigned long long)slow);
  nh_shutdown();
  int rdpmc_allowed = 0;
  FILE *f = fopen("/sys/bus/event_source/devices/cpu/rdpmc", "r");
  if (f) {
    if (fscanf(f, "%d", &rdpmc_allowed) != 1)
      rdpmc_allowed = 0;
    fclose(f);
  }
  if (rdpmc_allowed && fast == 0) {
    printf("FAILED: the kernel allows rdpmc (cpu/rdpmc = %d) but no read used it\n", rdpmc_allowed);
    return 1;
  }
  return chase[0] > 2 * seq[0] && chase[1] > 2 * seq[1] ? 0 : 1;
}
