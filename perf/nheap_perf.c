/*
 * nheap_perf.c — nheap-perf, the command-line side of perf/counters.c.
 *
 *   nheap-perf [-e EVENTS] [-o REPORT] [--linked] -- COMMAND [ARGS...]
 *       Runs COMMAND with nheap as its malloc (LD_PRELOAD of libnheap_malloc.so, found beside
 *       this program or in the library directory it was installed with; gc = off, as that
 *       malloc runs) or, with --linked, as it is (a program that links nheap and runs its
 *       collector), with NHEAP_PERF_EVENTS = EVENTS (default: task-clock, page-faults and the
 *       hardware events cycles, instructions, LLC-load-misses, dTLB-load-misses, which a
 *       machine without a PMU drops with one line saying so) and NHEAP_PERF_REPORT = REPORT
 *       (default: a temporary file), then prints the report.
 *   nheap-perf show REPORT
 *       Prints a report a program wrote (perf.report / NHEAP_PERF_REPORT).
 *
 * The table: per phase, the threads' time in it and each event's count; then the counts per
 * unit of the phase's work: per KiB allocated (alloc), per object marked and per GiB scanned
 * (mark), per span swept (sweep).
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

enum { MAX_EVENTS = 8, PHASES = 6 };
static const char *const phases[PHASES] = {"alloc", "mark", "sweep", "pause_setup", "pause_term", "scavenge"};

typedef struct report {
  int nevents;
  char event[MAX_EVENTS][32];
  char unavailable[256];
  double allocated, objects, scanned, spans, cycles, rdpmc_reads, syscall_reads;
  double ns[PHASES], count[PHASES][MAX_EVENTS];
} report;

static char *slurp(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f)
    return NULL;
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  for (size_t r; buf && (r = fread(buf + n, 1, cap - n - 1, f)) > 0;) {
    n += r;
    if (n + 1 == cap)
      buf = realloc(buf, cap *= 2);
  }
  fclose(f);
  if (buf)
    buf[n] = 0;
  return buf;
}

static double number_after(const char *text, const char *key) {
  const char *p = text ? strstr(text, key) : NULL;
  return p ? strtod(p + strlen(key), NULL) : 0;
}

static int parse(const char *path, report *r) {
  memset(r, 0, sizeof *r);
  char *text = slurp(path);
  if (!text) {
    fprintf(stderr, "nheap-perf: cannot read %s: %s\n", path, strerror(errno));
    return -1;
  }
  /* The events and each phase's time and counts: the statistics' "perf" object (nh_stats_write's
   * JSON, one phase a line); the rest: this report's own sections after it. */
  const char *stats = strstr(text, "\"stats\": {");
  const char *p = stats ? strstr(stats, "\n  \"perf\": {\"events\": [") : NULL;
  const char *own = p ? strstr(p, "\n\"unavailable\": ") : NULL;
  if (!own) {
    fprintf(stderr, "nheap-perf: %s is not an nheap perf report\n", path);
    free(text);
    return -1;
  }
  for (p = strchr(p, '[') + 1; *p && *p != ']' && r->nevents < MAX_EVENTS;) {
    const char *q = strchr(p, '"');
    if (!q || q > strchr(p, ']'))
      break;
    const char *e = strchr(q + 1, '"');
    snprintf(r->event[r->nevents++], sizeof r->event[0], "%.*s", (int)(e - q - 1), q + 1);
    p = e + 1;
  }
  sscanf(own + 17, "%255[^\"]", r->unavailable);
  const char *work = strstr(own, "\"work\": {");
  r->allocated = number_after(work, "\"allocated_bytes\": ");
  r->objects = number_after(work, "\"objects_marked\": ");
  r->scanned = number_after(work, "\"bytes_scanned\": ");
  r->spans = number_after(work, "\"spans_swept\": ");
  r->cycles = number_after(work, "\"cycles\": ");
  r->rdpmc_reads = number_after(own, "\"rdpmc\": ");
  r->syscall_reads = number_after(own, "\"read\": ");
  const char *totals = strstr(p, "\"phases\": {");
  for (int ph = 0; totals && totals < own && ph < PHASES; ph++) {
    char key[48];
    snprintf(key, sizeof key, "\n    \"%s\": {\"ns\": ", phases[ph]);
    const char *s = strstr(totals, key);
    if (!s || s > own)
      continue;
    r->ns[ph] = strtod(s + strlen(key), NULL);
    for (int i = 0; i < r->nevents; i++) {   /* "counts": {"event": n, ...} */
      snprintf(key, sizeof key, "\"%.40s\": ", r->event[i]);
      const char *c = strstr(s, key);
      r->count[ph][i] = c && c < own ? strtod(c + strlen(key), NULL) : 0;
    }
  }
  free(text);
  return 0;
}

static void per(const report *r, int ph, const char *what, double work) {
  if (work <= 0 || r->nevents == 0)
    return;
  printf("  %-26s", what);
  for (int i = 0; i < r->nevents; i++)
    printf(" %14.4g", r->count[ph][i] / work);
  printf("\n");
}

static void print_report(const report *r, const char *path) {
  printf("nheap-perf: %s: %d event(s) counted over %.0f GC cycle(s)", path, r->nevents, r->cycles);
  if (r->unavailable[0])
    printf(" (not countable on this machine: %s)", r->unavailable);
  printf("\n\n  %-26s %10s", "phase", "time ms");
  for (int i = 0; i < r->nevents; i++)
    printf(" %14.14s", r->event[i]);
  printf("\n");
  for (int ph = 0; ph < PHASES; ph++) {
    printf("  %-26s %10.1f", phases[ph], r->ns[ph] / 1e6);
    for (int i = 0; i < r->nevents; i++)
      printf(" %14.0f", r->count[ph][i]);
    printf("\n");
  }
  printf("\n  work: %.1f MiB allocated, %.0f objects marked, %.1f MiB scanned, %.0f spans swept\n",
         r->allocated / (1 << 20), r->objects, r->scanned / (1 << 20), r->spans);
  printf("  counter reads: %.0f through rdpmc, %.0f through read()\n\n", r->rdpmc_reads, r->syscall_reads);
  per(r, 0, "alloc, per KiB allocated", r->allocated / 1024);
  per(r, 1, "mark, per object marked", r->objects);
  per(r, 1, "mark, per GiB scanned", r->scanned / (1 << 30));
  per(r, 2, "sweep, per span swept", r->spans);
}

/* libnheap_malloc.so beside this program (the build tree) or where it was installed. */
static int find_shim(char *out, size_t n) {
  char self[PATH_MAX];
  ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
  if (len > 0) {
    self[len] = 0;
    char *slash = strrchr(self, '/');
    if (slash)
      *slash = 0;
    static const char *const rel[] = {"/../libnheap_malloc.so", "/../lib/libnheap_malloc.so", "/libnheap_malloc.so"};
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
      snprintf(out, n, "%s%s", self, rel[i]);
      if (access(out, R_OK) == 0)
        return 0;
    }
  }
#ifdef NHEAP_LIBDIR
  snprintf(out, n, "%s/libnheap_malloc.so", NHEAP_LIBDIR);
  if (access(out, R_OK) == 0)
    return 0;
#endif
  return -1;
}

static int usage(void) {
  fprintf(stderr, "usage: nheap-perf [-e EVENTS] [-o REPORT] [--linked] -- COMMAND [ARGS...]\n"
                  "       nheap-perf show REPORT\n");
  return 2;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "show") == 0) {
    report r;
    if (parse(argv[2], &r) != 0)
      return 1;
    print_report(&r, argv[2]);
    return 0;
  }
  const char *events = "task-clock,page-faults,cycles,instructions,LLC-load-misses,dTLB-load-misses", *out = NULL;
  bool linked = false;
  int i = 1;
  for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
    if (strcmp(argv[i], "-e") == 0 && i + 1 < argc)
      events = argv[++i];
    else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc)
      out = argv[++i];
    else if (strcmp(argv[i], "--linked") == 0)
      linked = true;
    else
      return usage();
  }
  if (i + 1 >= argc)
    return usage();
  char shim[PATH_MAX], tmp[64];
  if (!linked && find_shim(shim, sizeof shim) != 0) {
    fprintf(stderr, "nheap-perf: cannot find libnheap_malloc.so beside this program or in its library directory\n");
    return 1;
  }
  if (!out) {
    snprintf(tmp, sizeof tmp, "/tmp/nheap-perf.%d.json", (int)getpid());
    out = tmp;
  }
  unlink(out);
  pid_t pid = fork();
  if (pid == 0) {
    if (!linked)
      setenv("LD_PRELOAD", shim, 1);
    setenv("NHEAP_PERF_EVENTS", events, 1);
    setenv("NHEAP_PERF_REPORT", out, 1);
    execvp(argv[i + 1], argv + i + 1);
    fprintf(stderr, "nheap-perf: cannot run %s: %s\n", argv[i + 1], strerror(errno));
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  report r;
  if (parse(out, &r) != 0) {
    fprintf(stderr, "nheap-perf: %s wrote no report (did it allocate through malloc?)\n", argv[i + 1]);
    return 1;
  }
  fflush(stdout);
  fprintf(stderr, "\n");
  print_report(&r, out);
  if (out == tmp)
    unlink(out);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
