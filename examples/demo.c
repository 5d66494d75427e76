/*
 * nheap-demo — the main job until the benchmark suite lands: starts nheap on the default
 * configuration (or the INI file given, and NHEAP_* from the environment), prints the effective
 * options, what it mapped and how the first arena is backed, and shuts down.
 *
 * Usage: nheap-demo [config.ini]
 */
#include <stdio.h>
#include <stdlib.h>

#include <nheap.h>

int main(int argc, char **argv) {
  nh_options opts;
  nh_options_init(&opts);
  if (argc > 1)
    opts.config_path = argv[1];
  opts.verbose = 1;

  int rc = nh_init(&opts);
  if (rc != 0) {
    fprintf(stderr, "nheap-demo: nh_init failed: %s\n", nh_strerror(rc));
    return 1;
  }
  printf("nheap %d.%d.%d started\n", NH_VERSION_MAJOR, NH_VERSION_MINOR, NH_VERSION_PATCH);
  fflush(stdout);
  nh_stats_print(1);

  nh_stats_t s = {.size = sizeof s};
  nh_stats_read(&s);
  printf("\n%llu arena(s), %llu MiB reserved; %llu MiB released to the OS until used.\n",
         (unsigned long long)s.arenas, (unsigned long long)(s.heap_reserved_bytes >> 20),
         (unsigned long long)(s.heap_released_bytes >> 20));
  printf("Allocation (nh_alloc) arrives with the allocator; this build has the OS layer only.\n");
  nh_shutdown();
  return 0;
}
