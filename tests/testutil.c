#include "tests/testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

extern char **environ;
captured errors;

long smaps_kb(const void *p, size_t len, const char *field) {
  FILE *f = fopen("/proc/self/smaps", "r");
  if (!f)
    return -1;
  uintptr_t lo = (uintptr_t)p, hi = lo + len, start = 0, end = 0;
  char line[512];
  size_t flen = strlen(field);
  long total = 0;
  while (fgets(line, sizeof line, f)) {
    unsigned long s, e;
    if (sscanf(line, "%lx-%lx ", &s, &e) == 2 && strchr(line, ' ') > strchr(line, '-')) {
      start = s;
      end = e;
      continue;
    }
    if (start < hi && end > lo && strncmp(line, field, flen) == 0 && line[flen] == ':')
      total += strtol(line + flen + 1, NULL, 10);
  }
  fclose(f);
  return total;
}

int maps_perms(const void *p, char out[5]) {
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f)
    return -1;
  char line[512];
  int rc = -1;
  while (fgets(line, sizeof line, f)) {
    unsigned long s, e;
    char perms[5];
    if (sscanf(line, "%lx-%lx %4s", &s, &e, perms) == 3 && (uintptr_t)p >= s && (uintptr_t)p < e) {
      memcpy(out, perms, 5);
      rc = 0;
      break;
    }
  }
  fclose(f);
  return rc;
}

static void capture(int code, const char *msg, void *arg) {
  errors.count++;
  errors.last_code = code;
  snprintf(errors.last, sizeof errors.last, "%s", msg);
  size_t n = strlen(errors.all);
  snprintf(errors.all + n, sizeof errors.all - n, "%s\n", msg);
}

void capture_errors(void) {
  memset(&errors, 0, sizeof errors);
  nh_set_error_handler(capture, NULL);
}

bool errors_contain(const char *needle) {
  return strstr(errors.all, needle) != NULL;
}

const char *write_temp_file(const char *name, const char *text) {
  static char dir[64], path[256];
  if (!dir[0]) {
    snprintf(dir, sizeof dir, "/tmp/nheap-test-XXXXXX");
    if (!mkdtemp(dir))
      abort();
  }
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  if (!f)
    abort();
  fputs(text, f);
  fclose(f);
  return path;
}

void clear_nheap_env(void) {
  for (int again = 1; again;) {
    again = 0;
    for (char **e = environ; *e; e++) {
      if (strncasecmp(*e, "NHEAP_", 6) == 0 && strncasecmp(*e, "NHEAP_DEBUG=", 12) != 0) {
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(strchr(*e, '=') - *e), *e);
        unsetenv(name);
        again = 1;
        break;
      }
    }
  }
}

void capture_fd(int fd, void (*fn)(void *arg), void *arg, char *out, size_t n) {
  int fds[2];
  if (pipe(fds) != 0)
    abort();
  int saved = dup(fd);
  dup2(fds[1], fd);
  fn(arg);
  dup2(saved, fd);
  close(saved);
  close(fds[1]);
  size_t got = 0;
  ssize_t r;
  while (got < n - 1 && (r = read(fds[0], out + got, n - 1 - got)) > 0)
    got += (size_t)r;
  out[got] = 0;
  close(fds[0]);
}

typedef struct cycled {
  void *(*fn)(void *);
  void *arg;
  atomic_int *done;
} cycled;

static void *cycled_main(void *p) {
  cycled *c = p;
  c->fn(c->arg);
  atomic_fetch_add(c->done, 1);
  return NULL;
}

void run_with_cycles(void *(*fn)(void *), int n, uintptr_t first) {
  enum { MAX = 16 };
  pthread_t t[MAX];
  cycled c[MAX];
  atomic_int done = 0;
  assert_true(n > 0 && n <= MAX);
  for (int i = 0; i < n; i++) {
    c[i] = (cycled){fn, (void *)(first + (uintptr_t)i), &done};
    assert_int_equal(pthread_create(&t[i], NULL, cycled_main, &c[i]), 0);
  }
  while (atomic_load(&done) < n)
    nh_gc();
  for (int i = 0; i < n; i++)
    pthread_join(t[i], NULL);
}

int fresh_heap(void **state) {
  (void)state;
  nh_shutdown();
  return 0;
}

int shut_heap(void **state) {
  (void)state;
  nh_shutdown();
  return 0;
}

static nh_gc_event_kind events[256];
static atomic_int nevents;

static void record_event(nh_gc_event_kind e) {
  int i = atomic_fetch_add(&nevents, 1);
  if (i < (int)(sizeof events / sizeof *events))
    events[i] = e;
}

int check_gc_events(void) {
  atomic_store(&nevents, 0);
  assert_null(nh_set_gc_event_hook(record_event));
  nh_gc();
  assert_ptr_equal(nh_set_gc_event_hook(NULL), record_event);
  int n = atomic_load(&nevents);
  assert_true(n >= 8 && n <= (int)(sizeof events / sizeof *events));
  assert_int_equal(events[0], NH_EVENT_START);
  assert_int_equal(events[n - 1], NH_EVENT_END);
  int stops = 0, mark_start = 0, mark_end = 0;
  bool stopped = false;
  nh_gc_event_kind expect = NH_EVENT_PRE_STOP_WORLD;   /* the next stop or start event */
  for (int i = 1; i < n - 1; i++) {
    switch (events[i]) {
    case NH_EVENT_PRE_STOP_WORLD:
    case NH_EVENT_POST_STOP_WORLD:
    case NH_EVENT_PRE_START_WORLD:
    case NH_EVENT_POST_START_WORLD:
      assert_int_equal(events[i], expect);
      stops += events[i] == NH_EVENT_POST_STOP_WORLD;
      stopped = events[i] == NH_EVENT_POST_STOP_WORLD;
      expect = expect == NH_EVENT_POST_START_WORLD ? NH_EVENT_PRE_STOP_WORLD : expect + 1;
      break;
    case NH_EVENT_MARK_START:
      assert_true(stopped && mark_start++ == 0);
      break;
    case NH_EVENT_MARK_END:
      assert_true(stopped && mark_start == 1 && mark_end++ == 0);
      break;
    default:
      fail_msg("event %d at %d of %d: not one of a cycle's inner events", (int)events[i], i, n);
    }
  }
  assert_int_equal(expect, NH_EVENT_PRE_STOP_WORLD);   /* the last restart finished */
  assert_true(mark_start == 1 && mark_end == 1);
  assert_null(nh_set_gc_event_hook(NULL));
  return stops;
}
