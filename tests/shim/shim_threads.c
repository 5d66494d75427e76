/*
 * shim_threads — a threaded program of our own for the malloc replacement: 4 threads run
 * seeded malloc / calloc / realloc / posix_memalign / aligned_alloc / free sequences with
 * content checks, hand blocks to each other, fork a child that allocates and exits, and print
 * a checksum that must be the same with and without LD_PRELOAD=libnheap_malloc.so. With
 * --expect-nheap it also checks that malloc really is nheap's (nh_stats_read via dlsym).
 */
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

enum { THREADS = 4, SLOTS = 256, STEPS = 40000 };

static void *shared[64];
static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long sums[THREADS];

static uint64_t next(uint64_t *s) { *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17; return *s; }

static void *worker(void *arg) {
  int id = (int)(intptr_t)arg;
  uint64_t s = 0x9e3779b97f4a7c15u * (uint64_t)(id + 1);
  unsigned char *p[SLOTS] = {0};
  size_t len[SLOTS] = {0};
  unsigned long sum = 0;
  for (int step = 0; step < STEPS; step++) {
    int k = (int)(next(&s) % SLOTS);
    if (p[k]) {
      for (size_t i = 0; i < len[k]; i += 97)
        if (p[k][i] != (unsigned char)(k + i)) { fprintf(stderr, "corrupt block\n"); exit(3); }
      sum += len[k];
      if (next(&s) % 4 == 0) {
        size_t n = 1 + next(&s) % 9000;
        unsigned char *q = realloc(p[k], n);
        if (!q) exit(4);
        for (size_t i = 0; i < (n < len[k] ? n : len[k]); i += 97)
          if (q[i] != (unsigned char)(k + i)) { fprintf(stderr, "realloc lost data\n"); exit(5); }
        p[k] = q;
        len[k] = n;
        for (size_t i = 0; i < n; i++) q[i] = (unsigned char)(k + i);
        continue;
      }
      if (next(&s) % 8 == 0) {   /* cross-thread free */
        pthread_mutex_lock(&shared_lock);
        int j = (int)(next(&s) % 64);
        void *old = shared[j];
        shared[j] = p[k];
        pthread_mutex_unlock(&shared_lock);
        free(old);
      } else {
        free(p[k]);
      }
      p[k] = NULL;
      continue;
    }
    size_t n = 1 + next(&s) % (next(&s) % 16 ? 512 : 100000);
    void *q = NULL;
    switch (next(&s) % 4) {
    case 0: q = malloc(n); break;
    case 1: q = calloc(1, n); for (size_t i = 0; i < n; i += 61) if (((unsigned char *)q)[i]) exit(6); break;
    case 2: if (posix_memalign(&q, 64, n) != 0 || (uintptr_t)q % 64) exit(7); break;
    default: q = aligned_alloc(4096, n); if ((uintptr_t)q % 4096) exit(8); break;
    }
    if (!q || malloc_usable_size(q) < n) exit(9);
    p[k] = q;
    len[k] = n;
    for (size_t i = 0; i < n; i++) p[k][i] = (unsigned char)(k + i);
  }
  for (int k = 0; k < SLOTS; k++)
    free(p[k]);
  sums[id] = sum;
  return NULL;
}

int main(int argc, char **argv) {
  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++)
    pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i);
  /* fork while the others allocate: the child must find a consistent heap */
  pid_t pid = fork();
  if (pid == 0) {
    void *v[1000];
    for (int i = 0; i < 1000; i++) v[i] = malloc((size_t)i * 13 + 1);
    for (int i = 0; i < 1000; i++) free(v[i]);
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  for (int i = 0; i < THREADS; i++)
    pthread_join(t[i], NULL);
  for (int j = 0; j < 64; j++)
    free(shared[j]);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "forked child failed (status %d)\n", status);
    return 10;
  }
  errno = 0;
  if (malloc(SIZE_MAX / 2) != NULL || errno != ENOMEM) { fprintf(stderr, "huge malloc did not fail with ENOMEM\n"); return 11; }
  if (argc > 1 && strcmp(argv[1], "--expect-nheap") == 0) {
    void *probe = dlsym(RTLD_DEFAULT, "nh_usable_size");
    void *m = malloc(100);
    size_t (*usable)(const void *) = (size_t (*)(const void *))probe;
    if (!probe || usable(m) < 100) { fprintf(stderr, "malloc is not nheap's\n"); return 12; }
    free(m);
  }
  unsigned long total = 0;
  for (int i = 0; i < THREADS; i++) total += sums[i];
  printf("checksum %lu\n", total);
  return 0;
}
