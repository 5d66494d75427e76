/*
 * counters.c — perf event counters per phase of the collector's work.
 *
 * Events. perf.events (NHEAP_PERF_EVENTS) names up to NH_PERF_MAX_EVENTS events in libpfm4's
 * names (events.c checked them while the options loaded); perf_setup encodes each with
 * pfm_get_os_event_encoding(PFM_OS_PERF_EVENT_EXT) and opens it once on the calling thread to
 * learn whether this machine counts it. A hardware event where there is no PMU (virtual
 * machines: cycles, cache and TLB events fail with ENOENT) is dropped, and nheap says so in
 * one line; where perf_event_paranoid forbids counting the kernel, events count user space
 * only. With nothing countable, counting stays off; start-up never fails for it.
 *
 * Groups. Each thread that does counted work opens its own group (leader and members, one
 * read() returns them all with the time enabled and running, so counts are scaled when the
 * kernel multiplexes). A thread's group counts only that thread, but any thread may read it:
 * the collector reads the stopped program threads' groups in each pause.
 *
 * Phases (nh_perf_phase). Every count a thread makes goes to exactly one phase: a thread keeps
 * the counts it last attributed (last[]), and each read adds the difference to a phase.
 * With perf.scope = allocator, a program thread's time outside the allocator's slow paths
 * (NH_PHASE_PROGRAM below) is dropped instead, so ALLOC is the slow paths alone.
 *   program threads: what they did between the collector's reads is ALLOC; a mark assist or a
 *     lazy sweep is read before (ALLOC) and after (MARK, SWEEP); the collector reads every
 *     program thread after stopping the world (ALLOC) and before starting it (the pause);
 *   the collector thread: the sweep before a cycle (SWEEP), each pause (PAUSE_SETUP,
 *     PAUSE_TERM: stopping and restarting the world included), concurrent marking (MARK); its
 *     idle time between cycles is dropped; a stop-the-world cycle's mark is MARK;
 *   mark workers: MARK; the background sweeper: SWEEP; the scavenger: SCAVENGE.
 * The time a thread spends in a phase (CLOCK_MONOTONIC) is summed the same way.
 * At each cycle's end the counts since the last one become a cycle record (a ring of the last
 * NH_PERF_CYCLES): gctrace prints it, the report lists them.
 *
 * Cost. A thread reading its own group uses each event's perf mmap page and rdpmc, no system
 * call, while every event of the group sits on a hardware counter now (the page's index is
 * not 0), rdpmc is allowed (cap_user_rdpmc) and the group was never multiplexed out (time
 * enabled == time running, so the count needs no scaling); the page's sequence lock makes the
 * read consistent. Otherwise, and always for software events and for the collector reading
 * another thread's group, one read() (about a microsecond): pauses grow by that per program
 * thread while counting is on. The machines nheap is developed on have no PMU, so the rdpmc
 * path has not run on them (perf_reads counts which path ran).
 *
 * Report. With perf.report = path, perf_shutdown (nh_shutdown, or exit) writes JSON: the heap's
 * statistics as nh_stats_write gives them (with the events and the per-phase totals and time:
 * one format for a scrape, the benchmark report and this), the work done (bytes allocated, objects marked, bytes
 * scanned, spans swept), ratios (per KiB allocated, per object marked, per span swept, per GiB
 * scanned), the cycle records and how many reads went through rdpmc and read(); nheap-perf
 * (perf/nheap_perf.c) prints it as a table.
 *
 * This file includes <perfmon/pfmlib_perf_event.h> and so must never include
 * <linux/perf_event.h> (libpfm4 ships its own copy; the two conflict).
 */
#include <errno.h>
#include <perfmon/pfmlib_perf_event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/error.h"
#include "core/mem.h"
#include "core/options.h"
#include "core/stats.h"
#include "perf/counters.h"

enum { NH_PERF_CYCLES = 4096 };

typedef struct cycle_rec {
  uint64_t cycle, allocated, objects, scanned, spans;
  uint64_t count[NH_PERF_PHASES][NH_PERF_MAX_EVENTS];
  uint64_t ns[NH_PERF_PHASES];
} cycle_rec;

static struct {
  bool on;
  bool allocator_scope;            /* perf.scope = allocator */
  uint32_t gen;                    /* per perf_setup; never 0 once set up */
  int n;                           /* events counted */
  char name[NH_PERF_MAX_EVENTS][32];
  struct perf_event_attr attr[NH_PERF_MAX_EVENTS];
  char unavailable[256];           /* asked for, not countable here */
  uint64_t total[NH_PERF_PHASES][NH_PERF_MAX_EVENTS];   /* relaxed atomics */
  uint64_t ns[NH_PERF_PHASES];
  /* Cycle records: the collector's alone. */
  uint64_t base[NH_PERF_PHASES][NH_PERF_MAX_EVENTS], base_ns[NH_PERF_PHASES];
  uint64_t allocated, objects, scanned, spans;   /* all cycles */
  cycle_rec *cycles;               /* ring of NH_PERF_CYCLES, mmap'd on the first cycle */
  uint64_t ncycles;
  char report[PATH_MAX];
  bool exit_hook;
  uint64_t rdpmc_reads, syscall_reads;   /* relaxed */
} P;

static __thread nh_perf_thread_t self __attribute__((tls_model("initial-exec")));

static const char *const phase_names[NH_PERF_PHASES] = {"alloc", "mark", "sweep", "pause_setup", "pause_term",
                                                        "scavenge"};

const char *perf_phase_name(nh_perf_phase p) { return (unsigned)p < NH_PERF_PHASES ? phase_names[p] : "?"; }

static uint64_t now_ns(void) { return os_linux.now_ns(); }

static int event_open(struct perf_event_attr *a, int group) {
  return (int)syscall(SYS_perf_event_open, a, 0, -1, group, PERF_FLAG_FD_CLOEXEC);
}

void perf_scale(const nh_perf_read_t *r, int n, uint64_t *out) {
  for (int i = 0; i < n; i++) {
    if (r->running == 0)
      out[i] = 0;
    else if (r->running >= r->enabled)
      out[i] = r->value[i];
    else
      out[i] = (uint64_t)((double)r->value[i] * (double)r->enabled / (double)r->running);
  }
}

static void close_group(nh_perf_thread_t *t) {   /* t->gen != 0: its fds are set */
  for (int i = 0; i < NH_PERF_MAX_EVENTS; i++) {
    if (t->page[i])
      munmap(t->page[i], (size_t)sysconf(_SC_PAGESIZE));
    if (t->fd[i] >= 0)
      close(t->fd[i]);
    t->page[i] = NULL;
    t->fd[i] = -1;
  }
}

#if defined(__x86_64__)
static inline uint64_t rdpmc(uint32_t counter) {
  uint32_t lo, hi;
  __asm__ volatile("rdpmc" : "=a"(lo), "=d"(hi) : "c"(counter));
  return (uint64_t)hi << 32 | lo;
}
#endif

/* The calling thread's own group through its mmap pages (the loop the kernel documents for
 * struct perf_event_mmap_page); false when any event is not on a hardware counter now, rdpmc
 * is not allowed, or the group was multiplexed (then read() it). */
static bool read_own_rdpmc(const nh_perf_thread_t *t, uint64_t *v) {
#if defined(__x86_64__)
  for (int i = 0; i < P.n; i++) {
    const volatile struct perf_event_mmap_page *pg = t->page[i];
    if (!pg)
      return false;
    uint32_t seq;
    uint64_t count;
    do {
      seq = pg->lock;
      __atomic_signal_fence(__ATOMIC_SEQ_CST);
      uint32_t index = pg->index;
      unsigned width = pg->pmc_width;
      if (!(pg->capabilities & (1ull << 2)) || index == 0 || width == 0 || width > 64 ||
          pg->time_enabled != pg->time_running)
        return false;
      uint64_t pmc = rdpmc(index - 1) << (64 - width);
      count = (uint64_t)pg->offset + (uint64_t)((int64_t)pmc >> (64 - width));
      __atomic_signal_fence(__ATOMIC_SEQ_CST);
    } while (pg->lock != seq);
    v[i] = count;
  }
  return true;
#else
  (void)t, (void)v;
  return false;
#endif
}

static bool read_group(const nh_perf_thread_t *t, uint64_t *v) {
  if (t == &self && read_own_rdpmc(t, v)) {
    __atomic_add_fetch(&P.rdpmc_reads, 1, __ATOMIC_RELAXED);
    return true;
  }
  __atomic_add_fetch(&P.syscall_reads, 1, __ATOMIC_RELAXED);
  nh_perf_read_t r;
  ssize_t want = (ssize_t)((3 + (size_t)P.n) * sizeof(uint64_t));
  if (read(t->fd[0], &r, sizeof r) < want || r.nr != (uint64_t)P.n)
    return false;
  perf_scale(&r, P.n, v);
  return true;
}

static bool open_group(nh_perf_thread_t *t) {
  for (int i = 0; i < NH_PERF_MAX_EVENTS; i++) {
    t->fd[i] = -1;
    t->page[i] = NULL;
  }
  for (int i = 0; i < P.n; i++) {
    struct perf_event_attr a = P.attr[i];
    t->fd[i] = event_open(&a, i ? t->fd[0] : -1);
    if (t->fd[i] < 0) {
      close_group(t);
      return false;
    }
    /* The user page, for rdpmc (the thread's own reads). */
    void *pg = mmap(NULL, (size_t)sysconf(_SC_PAGESIZE), PROT_READ, MAP_SHARED, t->fd[i], 0);
    t->page[i] = pg == MAP_FAILED ? NULL : pg;
  }
  t->last_ns = now_ns();
  if (!read_group(t, t->last)) {
    close_group(t);
    return false;
  }
  return true;
}

bool perf_on(void) { return __atomic_load_n(&P.on, __ATOMIC_ACQUIRE); }

nh_perf_thread_t *perf_self(void) {
  if (!perf_on())
    return NULL;
  nh_perf_thread_t *t = &self;
  if (t->gen != P.gen) {   /* first use, or a new nh_init, or a fork child */
    if (t->gen)
      close_group(t);
    t->gen = P.gen;
    t->failed = !open_group(t);
  }
  return t->failed ? NULL : t;
}

bool perf_allocator_scope(void) { return P.allocator_scope; }

static void attribute(nh_perf_thread_t *t, int phase) {
  if (!t || t->failed || t->gen != P.gen || !perf_on())
    return;
  if (phase == (int)NH_PHASE_PROGRAM)
    phase = P.allocator_scope ? -1 : NH_PHASE_ALLOC;
  uint64_t v[NH_PERF_MAX_EVENTS], now = now_ns();
  if (!read_group(t, v))
    return;
  for (int i = 0; i < P.n; i++) {
    if (phase >= 0 && v[i] > t->last[i])
      __atomic_add_fetch(&P.total[phase][i], v[i] - t->last[i], __ATOMIC_RELAXED);
    t->last[i] = v[i];
  }
  if (phase >= 0)
    __atomic_add_fetch(&P.ns[phase], now - t->last_ns, __ATOMIC_RELAXED);
  t->last_ns = now;
}

nh_perf_thread_t *perf_self_opened(void) { return self.gen && self.gen == P.gen && !self.failed ? &self : NULL; }

void perf_attribute(nh_perf_thread_t *t, nh_perf_phase phase) { attribute(t, (int)phase); }
void perf_skip(nh_perf_thread_t *t) { attribute(t, -1); }

void perf_thread_exit(nh_perf_thread_t *t, nh_perf_phase phase) {
  if (!t || !t->gen)
    return;
  attribute(t, (int)phase);
  close_group(t);
  t->gen = 0;
}

/* ---------------------------------------------------------------------------------------------
 * Set-up.
 * ------------------------------------------------------------------------------------------- */

static bool encode(const char *name, struct perf_event_attr *a) {
  memset(a, 0, sizeof *a);
  pfm_perf_encode_arg_t arg;
  memset(&arg, 0, sizeof arg);
  arg.attr = a;
  arg.size = sizeof arg;
  if (pfm_get_os_event_encoding(name, PFM_PLM3, PFM_OS_PERF_EVENT_EXT, &arg) != PFM_SUCCESS)
    return false;
  a->size = sizeof *a;
  a->read_format = PERF_FORMAT_GROUP | PERF_FORMAT_TOTAL_TIME_ENABLED | PERF_FORMAT_TOTAL_TIME_RUNNING;
  a->disabled = 0;
  a->inherit = 0;
  a->exclude_hv = 1;
  return true;
}

static void perf_exit_hook(void) { perf_shutdown(false); }

bool perf_setup(const nh_config_t *cfg) {
  static uint32_t generation;
  bool hooked = P.exit_hook;
  memset(&P, 0, sizeof P);
  P.exit_hook = hooked;
  P.allocator_scope = cfg->perf_scope == NH_PERF_SCOPE_ALLOCATOR;
  snprintf(P.report, sizeof P.report, "%s", cfg->perf_report);
  if (!cfg->perf_events[0])
    return false;
  if (pfm_initialize() != PFM_SUCCESS)
    return false;   /* the options check said why already */
  char list[NH_OPT_STRING_MAX];
  snprintf(list, sizeof list, "%s", cfg->perf_events);
  size_t off = 0;
  char *save = NULL;
  for (char *name = strtok_r(list, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
    while (*name == ' ')
      name++;
    struct perf_event_attr a;
    if (!encode(name, &a))
      continue;   /* the options check rejects unknown names; not reached */
    if (P.n == NH_PERF_MAX_EVENTS) {
      nh_warn("perf: at most %d events are counted; %s and the rest are left out", NH_PERF_MAX_EVENTS, name);
      break;
    }
    int fd = event_open(&a, -1), err = errno;
    if (fd < 0 && (err == EACCES || err == EPERM)) {   /* perf_event_paranoid: user space only */
      a.exclude_kernel = 1;
      fd = event_open(&a, -1);
      err = errno;
    }
    if (fd < 0) {
      off += (size_t)snprintf(P.unavailable + off, off < sizeof P.unavailable ? sizeof P.unavailable - off : 0,
                              "%s%s", off ? ", " : "", name);
      (void)err;
      continue;
    }
    close(fd);
    snprintf(P.name[P.n], sizeof P.name[0], "%s", name);
    P.attr[P.n++] = a;
  }
  if (P.unavailable[0])
    nh_warn("perf: %s: this machine cannot count %s (no hardware PMU: a virtual machine?); counting %s",
            P.unavailable, strchr(P.unavailable, ',') ? "them" : "it",
            P.n ? "the others" : "nothing (phase times only in the report)");
  P.gen = ++generation ? generation : ++generation;
  if (P.n == 0)
    return false;
  __atomic_store_n(&P.on, true, __ATOMIC_RELEASE);
  if (P.report[0] && !P.exit_hook) {   /* a program that never calls nh_shutdown still gets it */
    P.exit_hook = true;
    atexit(perf_exit_hook);
  }
  perf_self();   /* this thread counts from here */
  return true;
}

void perf_after_fork_child(void) {
  /* The child's copies of the groups count the parent's threads: every thread reopens (only
   * the calling one survives), and the report is the parent's to write. */
  P.gen++;
  P.report[0] = 0;
}

/* ---------------------------------------------------------------------------------------------
 * Cycles, stats, the report.
 * ------------------------------------------------------------------------------------------- */

void perf_cycle_end(uint64_t cycle, uint64_t allocated, uint64_t objects_marked, uint64_t bytes_scanned,
                    uint64_t spans_swept, char *buf, size_t n) {
  P.allocated += allocated, P.objects += objects_marked, P.scanned += bytes_scanned, P.spans += spans_swept;
  if (!perf_on())
    return;
  if (!P.cycles) {
    void *m = mmap(NULL, NH_PERF_CYCLES * sizeof(cycle_rec), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    P.cycles = m == MAP_FAILED ? NULL : m;
  }
  cycle_rec rec = {.cycle = cycle, .allocated = allocated, .objects = objects_marked, .scanned = bytes_scanned,
                   .spans = spans_swept};
  for (int p = 0; p < NH_PERF_PHASES; p++) {
    for (int i = 0; i < P.n; i++) {
      uint64_t t = __atomic_load_n(&P.total[p][i], __ATOMIC_RELAXED);
      rec.count[p][i] = t - P.base[p][i];
      P.base[p][i] = t;
    }
    uint64_t t = __atomic_load_n(&P.ns[p], __ATOMIC_RELAXED);
    rec.ns[p] = t - P.base_ns[p];
    P.base_ns[p] = t;
  }
  if (P.cycles)
    P.cycles[P.ncycles % NH_PERF_CYCLES] = rec;
  P.ncycles++;
  if (!buf)
    return;
  size_t off = (size_t)snprintf(buf, n, "perf gc %llu:", (unsigned long long)cycle);
  for (int p = 0; p < NH_PERF_PHASES; p++) {
    if (!rec.ns[p])
      continue;
    off += (size_t)snprintf(buf + off, off < n ? n - off : 0, " %s %.3f ms", phase_names[p], (double)rec.ns[p] / 1e6);
    for (int i = 0; i < P.n; i++)
      off += (size_t)snprintf(buf + off, off < n ? n - off : 0, "%s%s=%llu", i ? " " : " (", P.name[i],
                              (unsigned long long)rec.count[p][i]);
    off += (size_t)snprintf(buf + off, off < n ? n - off : 0, ")%s", p + 1 < NH_PERF_PHASES ? ";" : "");
  }
}

void perf_reads(uint64_t *rdpmc_reads, uint64_t *syscalls) {
  *rdpmc_reads = __atomic_load_n(&P.rdpmc_reads, __ATOMIC_RELAXED);
  *syscalls = __atomic_load_n(&P.syscall_reads, __ATOMIC_RELAXED);
}

void perf_stats(nh_stats_t *s) {
  s->perf_events = (uint64_t)P.n;
  /* Both arrays are 32 bytes a name, NUL-terminated (perf_setup's snprintf): a plain copy, as
   * nh_stats_read is held to well under a microsecond. */
  _Static_assert(sizeof s->perf_event_names == sizeof P.name, "the names' arrays differ");
  memcpy(s->perf_event_names, P.name, sizeof P.name);
  for (int i = P.n; i < NH_PERF_MAX_EVENTS; i++)
    s->perf_event_names[i][0] = 0;
  for (int p = 0; p < NH_PERF_PHASES; p++) {
    for (int i = 0; i < NH_PERF_MAX_EVENTS; i++)
      s->perf_counts[p][i] = i < P.n ? __atomic_load_n(&P.total[p][i], __ATOMIC_RELAXED) : 0;
    s->perf_phase_ns[p] = __atomic_load_n(&P.ns[p], __ATOMIC_RELAXED);
  }
}

static void json_counts(FILE *f, const uint64_t *v) {
  fprintf(f, "[");
  for (int i = 0; i < P.n; i++)
    fprintf(f, "%s%llu", i ? ", " : "", (unsigned long long)v[i]);
  fprintf(f, "]");
}

/* Per phase: what the phase's work was, for the ratios (0: none). */
static void json_ratios(FILE *f, int p, const uint64_t *v) {
  static const char *const per[NH_PERF_PHASES] = {"per_KiB_allocated", "per_object_marked", "per_span_swept", NULL,
                                                  NULL, NULL};
  double work = p == NH_PHASE_ALLOC ? (double)P.allocated / 1024 : p == NH_PHASE_MARK ? (double)P.objects
              : p == NH_PHASE_SWEEP ? (double)P.spans : 0;
  bool first = true;
  fprintf(f, "{");
  for (int i = 0; i < P.n && per[p] && work > 0; i++, first = false)
    fprintf(f, "%s\"%s\": %.6g", first ? "" : ", ", P.name[i], (double)v[i] / work);
  if (p == NH_PHASE_MARK && P.scanned)
    for (int i = 0; i < P.n; i++, first = false)
      fprintf(f, "%s\"%s per_GiB_scanned\": %.6g", first ? "" : ", ", P.name[i],
              (double)v[i] / ((double)P.scanned / (1 << 30)));
  fprintf(f, "}");
  (void)first;
}

/* The report: nh_stats_write's JSON (whose "perf" object holds the events and each phase's time
 * and counts: the document a server scrapes and the benchmark report reads), then what only
 * this report has: the events this machine could not count, how reads went, the work done, the
 * ratios and the cycle records. held: the caller holds the init lock (nh_shutdown). */
static void write_report(const char *path, bool held) {
  FILE *f = fopen(path, "w");
  if (!f) {
    nh_error(-errno, "perf: cannot write the report %s: %s", path, strerror(errno));
    return;
  }
  fprintf(f, "{\n\"stats\": ");
  fflush(f);
  int rc = stats_write(fileno(f), NH_STATS_JSON, held);
  if (rc != 0)
    fprintf(f, "{}");
  fprintf(f, ",\n\"unavailable\": \"%s\",\n", P.unavailable);
  fprintf(f, "\"reads\": {\"rdpmc\": %llu, \"read\": %llu},\n", (unsigned long long)P.rdpmc_reads,
          (unsigned long long)P.syscall_reads);
  fprintf(f, "\"work\": {\"allocated_bytes\": %llu, \"objects_marked\": %llu, \"bytes_scanned\": %llu, "
             "\"spans_swept\": %llu, \"cycles\": %llu},\n",
          (unsigned long long)P.allocated, (unsigned long long)P.objects, (unsigned long long)P.scanned,
          (unsigned long long)P.spans, (unsigned long long)P.ncycles);
  fprintf(f, "\"ratios\": {\n");
  for (int p = 0; p < NH_PERF_PHASES; p++) {
    uint64_t v[NH_PERF_MAX_EVENTS];
    for (int i = 0; i < P.n; i++)
      v[i] = __atomic_load_n(&P.total[p][i], __ATOMIC_RELAXED);
    fprintf(f, "  \"%s\": ", phase_names[p]);
    json_ratios(f, p, v);
    fprintf(f, "%s\n", p + 1 < NH_PERF_PHASES ? "," : "");
  }
  fprintf(f, "},\n\"cycles\": [\n");
  uint64_t first = P.ncycles > NH_PERF_CYCLES ? P.ncycles - NH_PERF_CYCLES : 0;
  for (uint64_t c = first; P.cycles && c < P.ncycles; c++) {
    const cycle_rec *r = &P.cycles[c % NH_PERF_CYCLES];
    fprintf(f, "  {\"cycle\": %llu, \"allocated\": %llu, \"objects_marked\": %llu, \"bytes_scanned\": %llu, "
               "\"spans_swept\": %llu",
            (unsigned long long)r->cycle, (unsigned long long)r->allocated, (unsigned long long)r->objects,
            (unsigned long long)r->scanned, (unsigned long long)r->spans);
    for (int p = 0; p < NH_PERF_PHASES; p++) {
      fprintf(f, ", \"%s\": {\"ns\": %llu, \"counts\": ", phase_names[p], (unsigned long long)r->ns[p]);
      json_counts(f, r->count[p]);
      fprintf(f, "}");
    }
    fprintf(f, "}%s\n", c + 1 < P.ncycles ? "," : "");
  }
  fprintf(f, "]\n}\n");
  fclose(f);
}

void perf_shutdown(bool init_held) {
  if (!P.gen)
    return;
  attribute(&self, NH_PHASE_PROGRAM);   /* the calling thread: a program thread */
  if (P.report[0]) {
    write_report(P.report, init_held);
    P.report[0] = 0;   /* once: nh_shutdown, or exit */
  }
  __atomic_store_n(&P.on, false, __ATOMIC_RELEASE);
  if (self.gen)
    close_group(&self);
  self.gen = 0;
}
