/* A program that uses an installed nheap exactly as a user would. */
#include <nheap.h>
#include <stdio.h>

int main(void) {
  if (nh_init(NULL) != 0)
    return 1;
  nh_stats_t s = {.size = sizeof s};
  if (nh_stats_read(&s) != 0 || s.arenas != 1)
    return 2;
  printf("consumer: nheap %d.%d, %llu arena(s)\n", NH_VERSION_MAJOR, NH_VERSION_MINOR,
         (unsigned long long)s.arenas);
  nh_shutdown();
  return 0;
}
