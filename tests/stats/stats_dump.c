/*
 * stats_dump — nh_stats_write's JSON and OpenMetrics from a heap that has done some work, for
 * the real parsers in stats_check.py (run by stats_check.sh in every collector mode, with and
 * without perf counters, on one and two NUMA nodes).
 *
 * Usage: stats_dump JSON-PATH OPENMETRICS-PATH   (options from NHEAP_* as usual)
 * Builds and drops a few thousand objects, small and large (freed by hand with gc = off), runs
 * three collections, and writes both formats; exits 1 if a write fails.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <nheap.h>

static int dump(const char *path, nh_stats_format fmt) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int rc = fd < 0 ? -1 : nh_stats_write(fd, fmt);
  if (fd >= 0)
    close(fd);
  if (rc != 0)
    fprintf(stderr, "stats_dump: writing %s failed (%d)\n", path, rc);
  return rc != 0;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: stats_dump JSON-PATH OPENMETRICS-PATH\n");
    return 2;
  }
  if (nh_init(NULL) != 0)
    return 1;
  nh_stats_t s = {.size = sizeof s};
  nh_stats_read(&s);
  static void *keep[4096];
  for (int round = 0; round < 3; round++) {
    for (size_t i = 0; i < 4096; i++) {
      if (s.gc_mode == NH_GC_OFF)
        nh_free(keep[i]);
      keep[i] = nh_alloc(i % 512 == 0 ? 100000 : 16 + i % 1000);
    }
    nh_gc();
  }
  int bad = dump(argv[1], NH_STATS_JSON) | dump(argv[2], NH_STATS_OPENMETRICS);
  nh_shutdown();
  return bad;
}
