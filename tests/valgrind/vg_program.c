/*
 * vg_program.c — what tests/valgrind/run.sh runs under memcheck: clean programs (gc = off
 * with explicit frees and reallocs; the collector freeing garbage), and three faulty
 * ones that memcheck must catch in nheap objects as it would in malloc's: a read after
 * nh_free, a double nh_free, and (gc = off) an object never freed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nheap.h"

static void start(nh_gc_mode gc) {
  nh_options o;
  nh_options_init(&o);
  o.gc = gc;
  o.hugepages = NH_HUGEPAGES_NONE;
  o.scavenger = 0;
  if (nh_init(&o) != 0)
    exit(2);
}

static void *volatile keep;

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "clean";
  if (strcmp(mode, "clean-off") == 0) {
    start(NH_GC_OFF);
    static char *small[1000];
    for (int i = 0; i < 1000; i++) {
      small[i] = nh_alloc_noscan(1 + i % 300);
      memset(small[i], i, 1 + i % 300);
    }
    for (int i = 0; i < 1000; i += 2)
      small[i] = nh_realloc(small[i], 400 + i);
    char *big = nh_alloc(100000);
    big[99999] = 1;
    for (int i = 0; i < 1000; i++)
      nh_free(small[i]);
    nh_free(big);
    nh_shutdown();
    puts("clean-off: done");
  } else if (strcmp(mode, "clean-gc") == 0) {
    start(NH_GC_STW);   /* the collector frees what nothing references */
    for (int i = 0; i < 20000; i++) {
      void **p = nh_alloc(64);
      p[0] = (void *)keep;
      keep = i % 100 ? p : NULL;
    }
    keep = NULL;
    nh_gc();
    nh_shutdown();
    puts("clean-gc: done");
  } else if (strcmp(mode, "use-after-free") == 0) {
    start(NH_GC_OFF);
    int *p = nh_alloc(48);
    p[3] = 7;
    nh_free(p);
    printf("read after free: %d\n", p[3]);
  } else if (strcmp(mode, "double-free") == 0) {
    start(NH_GC_OFF);
    void *p = nh_alloc(4000);
    nh_free(p);
    nh_free(p);
  } else if (strcmp(mode, "leak") == 0) {
    start(NH_GC_OFF);
    keep = nh_alloc(777);
    keep = NULL;
  }
  return 0;
}
