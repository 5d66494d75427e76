/*
 * test_hugetlb.c — a hugetlb arena on the real kernel: Private_Hugetlb in smaps shows the
 * 2 MiB pages, release returns them to the pool (the range goes back to Reserved) and a new
 * commit takes them again.
 *
 * The pool is a system setting nheap never changes by itself. This test sets it up when it can:
 * as root it raises /proc/sys/vm/nr_hugepages by one arena's worth (32 pages), runs the test in
 * a child process and restores the old value when the child ends, however it ends. Without root, or when the kernel cannot find 64 MiB
 * of contiguous 2 MiB frames, it exits 77 and says why.
 */
#include <errno.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/arena.h"
#include "tests/testutil.h"

static const char nr_path[] = "/proc/sys/vm/nr_hugepages";

static long read_long(const char *path) {
  FILE *f = fopen(path, "r");
  long v = -1;
  if (f) {
    if (fscanf(f, "%ld", &v) != 1)
      v = -1;
    fclose(f);
  }
  return v;
}

static int write_long(const char *path, long v) {
  FILE *f = fopen(path, "w");
  if (!f)
    return -1;
  int rc = fprintf(f, "%ld\n", v) < 0;
  return fclose(f) != 0 || rc ? -1 : 0;
}

static void test_hugetlb_backing_release_recommit(void **state) {
  nh_mem_t mem;
  nh_arena_set_t set;
  mem_init(&mem, &os_linux);
  nh_arena_placement place = {.nnodes = 1};
  assert_int_equal(arena_set_init(&set, &mem, NH_HUGEPAGES_HUGETLB, place), 0);
  capture_errors();
  nh_arena_t *a = arena_create(&set, 0);
  assert_non_null(a);
  assert_int_equal(a->backing, NH_BACKING_HUGETLB);
  assert_int_equal(errors.count, 0);
  char *p = (char *)a->base;

  const size_t len = (size_t)8 << 20;
  mem_use(&mem, p, len);
  memset(p, 1, len);
  long huge = smaps_kb(p, NH_ARENA_BYTES, "Private_Hugetlb");
  print_message("hugetlb arena: Private_Hugetlb %ld kB after touching %zu KiB\n", huge, len >> 10);
  assert_int_equal(huge, (long)(len >> 10));

  long free_before = os_linux.hugetlb_free_pages();
  assert_int_equal(mem_release(&mem, p, len, NH_BACKING_HUGETLB), 0);
  assert_int_equal(smaps_kb(p, NH_ARENA_BYTES, "Private_Hugetlb"), 0);
  char perms[5];
  assert_int_equal(maps_perms(p, perms), 0);
  assert_string_equal(perms, "---p");   /* hugetlb release -> Reserved */
  assert_true(os_linux.hugetlb_free_pages() >= free_before + (long)(len / NH_HUGE_PAGE));

  /* Reserved -> Prepared again, pages back from the pool. */
  assert_int_equal(mem_commit(&mem, p, len, NH_BACKING_HUGETLB), 0);
  mem_use(&mem, p, len);
  assert_int_equal(p[len - 1], 0);   /* a read faults a (zeroed) page in too */
  p[0] = 2;
  assert_int_equal(smaps_kb(p, len, "Private_Hugetlb"), 2 * 2048);

  arena_set_destroy(&set);
  mem_destroy(&mem);
}

static int run_hugetlb_tests(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_hugetlb_backing_release_recommit)};
  return cmocka_run_group_tests_name("hugetlb", tests, NULL, NULL);
}

int main(void) {
  long nr = read_long(nr_path);
  if (nr < 0) {
    fprintf(stderr, "test_hugetlb: %s is not readable: no hugetlb support; skipped\n", nr_path);
    return TEST_SKIP;
  }
  if (os_linux.hugetlb_free_pages() >= 32)
    return run_hugetlb_tests();
  if (geteuid() != 0) {
    fprintf(stderr, "test_hugetlb: the 2 MiB pool has fewer than 32 free pages and only root can "
                    "grow it (echo 32 > %s); skipped\n", nr_path);
    return TEST_SKIP;
  }
  if (write_long(nr_path, nr + 32) != 0 || os_linux.hugetlb_free_pages() < 32) {
    write_long(nr_path, nr);
    fprintf(stderr, "test_hugetlb: the kernel could not add 32 huge pages to the pool "
                    "(fragmented memory); skipped\n");
    return TEST_SKIP;
  }
  /* The tests run in a child so that the pool is restored however the child ends (a sanitizer's
   * exit skips atexit handlers; a signal skips everything). */
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0)
    _exit(run_hugetlb_tests());
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  if (write_long(nr_path, nr) != 0)
    fprintf(stderr, "test_hugetlb: could not restore %s to %ld\n", nr_path, nr);
  if (WIFSIGNALED(status)) {
    fprintf(stderr, "test_hugetlb: the test process died of signal %d\n", WTERMSIG(status));
    return 1;
  }
  return WEXITSTATUS(status);
}
