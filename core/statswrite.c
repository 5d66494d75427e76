/*
 * statswrite.c — nh_stats_write: one snapshot of the statistics as text, JSON or OpenMetrics.
 *
 * Steps:
 *   1. take the snapshot (stats.c: stats_snapshot) under the init lock, for a few microseconds;
 *      the arena list comes later, 64 records at a time, each batch under the init and arena
 *      locks for one walk of the list;
 *   2. format it into a 4 KiB buffer on the caller's stack (out_put: vsnprintf, which allocates
 *      nothing for these conversions), flushed to the fd with write(2) whenever the next piece
 *      does not fit, retried on EINTR and short writes. No memory comes from the heap and no
 *      lock is held while writing, so a slow reader (a scraper on a socket) holds up only the
 *      thread that writes to it.
 * The formats:
 *   text         what nh_stats_print always printed, for people;
 *   JSON         one object (README, "Statistics for servers"), in bytes and ns, everything;
 *   OpenMetrics  the text exposition format 1.0.0 (README: the table of metrics): the nheap_
 *                prefix, base units (bytes, seconds), counters ending in _total, histograms
 *                with cumulative _bucket{le}, _count and _sum, labels for state, class, node,
 *                phase, kind, "# EOF" last. Names follow Go's runtime/metrics where the concept
 *                is Go's (nheap_gc_heap_goal_bytes is /gc/heap/goal:bytes,
 *                nheap_gc_pauses_seconds /gc/pauses:seconds). The pause histograms give one
 *                bucket per power of two of ns (their exact edges: every fourth of timehist.h's
 *                buckets); the JSON has them all.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "core/stats.h"

/* ---------------------------------------------------------------------------------------------
 * The output buffer.
 * ------------------------------------------------------------------------------------------- */

typedef struct nh_out {
  int fd;
  bool held;               /* the caller holds the init lock (stats_write) */
  int err;                 /* the first write's failure (-errno); later output is dropped */
  size_t n;
  char buf[4096];
} nh_out_t;

static void out_flush(nh_out_t *o) {
  for (size_t off = 0; off < o->n && !o->err;) {
    ssize_t w = write(o->fd, o->buf + off, o->n - off);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      o->err = w < 0 ? -errno : -EIO;
    else
      off += (size_t)w;
  }
  o->n = 0;
}

/* One piece of output (a line or less: under the buffer's size, else it is cut there). */
static void nh_printf(2, 3) out_put(nh_out_t *o, const char *fmt, ...) {
  for (int tries = 0; tries < 2; tries++) {
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(o->buf + o->n, sizeof o->buf - o->n, fmt, ap);
    va_end(ap);
    if (len < 0)
      return;
    if ((size_t)len < sizeof o->buf - o->n) {
      o->n += (size_t)len;
      return;
    }
    if (o->n == 0) {   /* longer than the whole buffer: what fitted */
      o->n = sizeof o->buf - 1;
      return;
    }
    out_flush(o);
  }
}

/* s in a JSON string or an OpenMetrics label value: backslash and quote escaped. */
static void out_escaped(nh_out_t *o, const char *s) {
  for (; *s; s++) {
    if (*s == '"' || *s == '\\')
      out_put(o, "\\%c", *s);
    else if (*s == '\n')
      out_put(o, "\\n");
    else
      out_put(o, "%c", *s);
  }
}

static const char *gc_mode_name(uint64_t m) {
  static const char *const names[] = {"concurrent", "concurrent-nobarrier", "stw", "off"};
  return m < NH_ARRAY_LEN(names) ? names[m] : "?";
}

static const char *const pause_hist_name[NH_PAUSE_HISTS] = {"all", "setup", "termination", "stop", "roots"};
static const char *const phase_name[NH_GC_PHASE_SWEEP + 1] = {"setup", "mark", "termination", "sweep"};

/* Mark CPU by who did it: the dedicated workers, the assists, and the rest (the collector
 * thread and the fractional marker; the mark phase's CPU less the other two). */
static uint64_t mark_collector_ns(const nh_stats_snapshot_t *x) {
  uint64_t mark = x->phase_cpu_ns[NH_GC_PHASE_MARK], others = x->s.gc_worker_ns + x->s.gc_assist_ns;
  return mark > others ? mark - others : 0;
}

/* ---------------------------------------------------------------------------------------------
 * Text.
 * ------------------------------------------------------------------------------------------- */

static const char *human(uint64_t b, char *buf, size_t n) {
  static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  double v = (double)b;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    u++;
  }
  snprintf(buf, n, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
  return buf;
}

static void write_text(nh_out_t *o, const nh_stats_snapshot_t *x) {
  const nh_stats_t s = x->s;
  char b[15][32];
  out_put(o,
          "nheap: heap    reserved %s, mapped %s: in use %s, free %s, released %s; metadata %s\n"
          "nheap: objects %llu small spans (%llu tiny), %llu large objects; bad frees %llu (double %llu); per-CPU caches: %s\n"
          "nheap: arenas  %llu (hugetlb %llu, thp %llu, 4k %llu); fallbacks: hugetlb %llu, thp %llu\n"
          "nheap: scav    %s released to the OS by the scavenger (ring %s): %llu ranges by io_uring, %llu by madvise; %s faulted in ahead of use\n"
          "nheap: numa    %llu node(s); marking scanned %s on the markers' own node, %s on another, %llu steals; %llu remote frees\n"
          "nheap: gc      %s: %llu cycles (%llu forced), pauses p50 %.3f ms, p99 %.3f ms, max %.3f ms, total %.3f ms\n"
          "nheap: pacer   live %s, marked %s, trigger %s, goal %s (gc_percent %lld), memory limit %s\n",
          human(s.heap_reserved_bytes, b[0], 32), human(s.heap_mapped_bytes, b[1], 32),
          human(s.heap_inuse_bytes, b[2], 32), human(s.heap_free_bytes, b[5], 32),
          human(s.heap_released_bytes, b[3], 32), human(s.metadata_bytes, b[4], 32),
          (unsigned long long)s.small_spans, (unsigned long long)s.tiny_spans, (unsigned long long)s.large_objects,
          (unsigned long long)s.bad_frees, (unsigned long long)s.double_frees,
          s.percpu_mode == NH_PERCPU_RSEQ ? "rseq" : "per-CPU lock", (unsigned long long)s.arenas,
          (unsigned long long)s.arenas_hugetlb, (unsigned long long)s.arenas_thp,
          (unsigned long long)s.arenas_small, (unsigned long long)s.hugetlb_fallbacks,
          (unsigned long long)s.thp_fallbacks, human(s.scavenged_bytes, b[6], 32),
          s.scavenger_uring ? "up" : "off", (unsigned long long)s.scavenger_uring_releases,
          (unsigned long long)s.scavenger_madvise_releases, human(s.scavenger_prefaulted_bytes, b[14], 32),
          (unsigned long long)s.numa_nodes,
          human(s.gc_scan_local_bytes, b[11], 32), human(s.gc_scan_remote_bytes, b[12], 32),
          (unsigned long long)s.gc_mark_steals, (unsigned long long)s.remote_frees,
          gc_mode_name(s.gc_mode), (unsigned long long)s.gc_cycles, (unsigned long long)s.gc_forced,
          s.pause_p50_ns / 1e6, s.pause_p99_ns / 1e6, s.pause_max_ns / 1e6, s.pause_total_ns / 1e6,
          human(s.heap_live_bytes, b[7], 32), human(s.heap_marked_bytes, b[8], 32),
          s.heap_trigger_bytes ? human(s.heap_trigger_bytes, b[13], 32) : "none",
          s.heap_goal_bytes ? human(s.heap_goal_bytes, b[9], 32) : "none", (long long)s.gc_percent,
          s.memory_limit ? human(s.memory_limit, b[10], 32) : "none");
  nh_arena_stat_t a[16];
  long n = stats_arenas_from(a, NH_ARRAY_LEN(a), 0, o->held);
  out_put(o, "nheap: arena   base                node  backing  wanted\n");
  for (long i = 0; i < n && i < (long)NH_ARRAY_LEN(a); i++)
    out_put(o, "nheap: %-7ld %#-18lx  %-4d  %-7s  %s\n", i, (unsigned long)a[i].base, a[i].node,
            nh_backing_name(a[i].backing), arena_policy_name(a[i].wanted));
  if (n > (long)NH_ARRAY_LEN(a))
    out_put(o, "nheap: ... and %ld more arenas\n", n - (long)NH_ARRAY_LEN(a));
}

/* ---------------------------------------------------------------------------------------------
 * JSON.
 * ------------------------------------------------------------------------------------------- */

#define U(v) ((unsigned long long)(v))

static void json_hist(nh_out_t *o, const nh_stats_snapshot_t *x, unsigned k) {
  out_put(o, "%s\"%s\": {\"count\": %llu, \"sum_ns\": %llu, \"counts\": [", k ? ", " : "", pause_hist_name[k],
          U(x->pause_counts[k]), U(x->pauses[k].sum_ns));
  for (unsigned i = 0; i < NH_HIST_BUCKETS; i++)
    out_put(o, "%s%llu", i ? ", " : "", U(x->pauses[k].counts[i]));
  out_put(o, "]}");
}

static void write_json(nh_out_t *o, const nh_stats_snapshot_t *x) {
  const nh_stats_t *s = &x->s;
  out_put(o, "{\n  \"heap\": {\"reserved_bytes\": %llu, \"mapped_bytes\": %llu, \"inuse_bytes\": %llu, "
          "\"free_bytes\": %llu, \"released_bytes\": %llu, \"scavenging_bytes\": %llu, \"metadata_bytes\": %llu,\n"
          "    \"small_spans\": %llu, \"tiny_spans\": %llu, \"large_objects\": %llu},\n",
          U(s->heap_reserved_bytes), U(s->heap_mapped_bytes), U(s->heap_inuse_bytes), U(s->heap_free_bytes),
          U(s->heap_released_bytes), U(x->scavenging_bytes), U(s->metadata_bytes), U(s->small_spans),
          U(s->tiny_spans), U(s->large_objects));
  out_put(o, "  \"frees\": {\"bad\": %llu, \"double\": %llu, \"tiny\": %llu, \"deferred\": %llu, \"remote\": %llu},\n"
          "  \"percpu_mode\": \"%s\",\n",
          U(s->bad_frees), U(s->double_frees), U(s->tiny_frees), U(s->frees_deferred), U(s->remote_frees),
          s->percpu_mode == NH_PERCPU_RSEQ ? "rseq" : "lock");
  out_put(o, "  \"classes\": [");
  for (size_t c = 0; c < NH_ARRAY_LEN(x->classes); c++)
    out_put(o, "%s\n    {\"size\": %u, \"span_bytes\": %u, \"objects_per_span\": %u, \"spans\": %llu}", c ? "," : "",
            x->classes[c].size, x->classes[c].span_bytes, x->classes[c].objects_per_span, U(x->classes[c].spans));
  out_put(o, "],\n  \"nodes\": [");
  for (int n = 0; n < x->nnodes; n++)
    out_put(o, "%s\n    {\"node\": %d, \"mapped_bytes\": %llu, \"inuse_bytes\": %llu, \"free_bytes\": %llu, "
            "\"released_bytes\": %llu, \"remote_frees\": %llu}", n ? "," : "", n, U(x->node[n].total * NH_PAGE_SIZE),
            U(x->node[n].live * NH_PAGE_SIZE), U(x->node[n].free * NH_PAGE_SIZE),
            U(x->node[n].released * NH_PAGE_SIZE), U(x->node_remote_frees[n]));
  out_put(o, "],\n  \"arenas\": {\"count\": %llu, \"hugetlb\": %llu, \"thp\": %llu, \"4k\": %llu, "
          "\"hugetlb_fallbacks\": %llu, \"thp_fallbacks\": %llu, \"list\": [",
          U(s->arenas), U(s->arenas_hugetlb), U(s->arenas_thp), U(s->arenas_small), U(s->hugetlb_fallbacks),
          U(s->thp_fallbacks));
  nh_arena_stat_t a[64];
  long total = 0;
  for (size_t start = 0;; start += NH_ARRAY_LEN(a)) {
    total = stats_arenas_from(a, NH_ARRAY_LEN(a), start, o->held);
    for (size_t i = 0; start + i < (size_t)(total > 0 ? total : 0) && i < NH_ARRAY_LEN(a); i++)
      out_put(o, "%s\n    {\"base\": \"%#lx\", \"node\": %d, \"backing\": \"%s\", \"wanted\": \"%s\"}",
              start + i ? "," : "", (unsigned long)a[i].base, a[i].node, nh_backing_name(a[i].backing),
              arena_policy_name(a[i].wanted));
    if (total <= 0 || start + NH_ARRAY_LEN(a) >= (size_t)total)
      break;
  }
  out_put(o, "]},\n");
  out_put(o, "  \"pacer\": {\"gc_percent\": %lld, \"memory_limit_bytes\": %llu, \"heap_goal_bytes\": %llu, "
          "\"heap_trigger_bytes\": %llu, \"heap_live_bytes\": %llu, \"heap_marked_bytes\": %llu, "
          "\"cons_mark\": %.6g, \"limit_refusals\": %llu,\n"
          "    \"limiter\": {\"limiting\": %s, \"fill_cpu_ns\": %llu, \"capacity_cpu_ns\": %llu, "
          "\"overflow_cpu_ns\": %llu, \"times_limited\": %llu}},\n",
          (long long)s->gc_percent, U(s->memory_limit), U(s->heap_goal_bytes), U(s->heap_trigger_bytes),
          U(s->heap_live_bytes), U(s->heap_marked_bytes), isfinite(x->cons_mark) ? x->cons_mark : 0.0,
          U(s->limit_refusals),
          x->limiting ? "true" : "false", U(x->limiter_fill_ns), U(x->limiter_capacity_ns),
          U(x->limiter_overflow_ns), U(s->gc_limited));
  out_put(o, "  \"gc\": {\"mode\": \"%s\", \"cycles\": %llu, \"forced\": %llu, \"pauses\": %llu, "
          "\"pause_total_ns\": %llu, \"pause_max_ns\": %llu, \"pause_p50_ns\": %llu, \"pause_p99_ns\": %llu,\n"
          "    \"mark_ns\": %llu, \"sweep_ns\": %llu, \"swept_pages\": %llu, \"swept_spans\": %llu, "
          "\"finalizers_run\": %llu, \"roots_bytes\": %llu, \"threads_attached\": %llu, \"mark_workers\": %llu,\n"
          "    \"scan_local_bytes\": %llu, \"scan_remote_bytes\": %llu, \"mark_steals\": %llu, "
          "\"mark_overflows\": %llu, \"dirty_bytes\": %llu, \"dirty_last_bytes\": %llu},\n",
          gc_mode_name(s->gc_mode), U(s->gc_cycles), U(s->gc_forced), U(s->gc_pauses), U(s->pause_total_ns),
          U(s->pause_max_ns), U(s->pause_p50_ns), U(s->pause_p99_ns), U(s->gc_mark_ns), U(s->gc_sweep_ns),
          U(s->swept_pages), U(s->swept_spans), U(s->finalizers_run), U(s->roots_bytes), U(s->threads_attached),
          U(x->mark_workers), U(s->gc_scan_local_bytes), U(s->gc_scan_remote_bytes), U(s->gc_mark_steals),
          U(s->gc_mark_overflows), U(s->gc_dirty_bytes), U(s->gc_dirty_last_bytes));
  out_put(o, "  \"pause_histograms\": {\"bucket_upper_ns\": [");
  for (unsigned i = 0; i + 1 < NH_HIST_BUCKETS; i++)
    out_put(o, "%s%llu", i ? ", " : "", U(timehist_upper(i)));
  out_put(o, "],\n    ");
  for (unsigned k = 0; k < NH_PAUSE_HISTS; k++)
    json_hist(o, x, k);
  out_put(o, "},\n  \"cpu\": {\"ncpus\": %llu, \"pause_cpu_ns\": %llu, \"phase_ns\": {", U(x->ncpus),
          U(s->pause_total_ns * x->ncpus));
  for (unsigned p = 0; p < NH_ARRAY_LEN(x->phase_cpu_ns); p++)
    out_put(o, "%s\"%s\": %llu", p ? ", " : "", phase_name[p], U(x->phase_cpu_ns[p]));
  out_put(o, "}, \"mark_ns\": {\"dedicated\": %llu, \"assist\": %llu, \"collector\": %llu}},\n",
          U(s->gc_worker_ns), U(s->gc_assist_ns), U(mark_collector_ns(x)));
  out_put(o, "  \"scavenger\": {\"released_bytes\": %llu, \"uring\": %s, \"uring_releases\": %llu, "
          "\"madvise_releases\": %llu, \"prefaulted_bytes\": %llu},\n",
          U(s->scavenged_bytes), s->scavenger_uring ? "true" : "false", U(s->scavenger_uring_releases),
          U(s->scavenger_madvise_releases), U(s->scavenger_prefaulted_bytes));
  out_put(o, "  \"perf\": {\"events\": [");
  for (uint64_t i = 0; i < s->perf_events; i++)
  {
    out_put(o, "%s\"", i ? ", " : "");
    out_escaped(o, s->perf_event_names[i]);
    out_put(o, "\"");
  }
  out_put(o, "], \"phases\": {");
  for (int p = 0; p < NH_PERF_PHASES && s->perf_events; p++) {
    out_put(o, "%s\n    \"%s\": {\"ns\": %llu, \"counts\": {", p ? "," : "", perf_phase_name((nh_perf_phase)p),
            U(s->perf_phase_ns[p]));
    for (uint64_t i = 0; i < s->perf_events; i++)
    {
      out_put(o, "%s\"", i ? ", " : "");
      out_escaped(o, s->perf_event_names[i]);
      out_put(o, "\": %llu", U(s->perf_counts[p][i]));
    }
    out_put(o, "}}");
  }
  out_put(o, "}}\n}\n");
}

/* ---------------------------------------------------------------------------------------------
 * OpenMetrics.
 * ------------------------------------------------------------------------------------------- */

/* A family's metadata: name (without _total), type, unit ("" for none), help. */
static void om_family(nh_out_t *o, const char *name, const char *type, const char *unit, const char *help) {
  out_put(o, "# TYPE nheap_%s %s\n", name, type);
  if (*unit)
    out_put(o, "# UNIT nheap_%s %s\n", name, unit);
  out_put(o, "# HELP nheap_%s %s\n", name, help);
}

/* A family with one sample (suffix "_total" for a counter). */
static void om_one(nh_out_t *o, const char *name, const char *type, const char *unit, const char *help, uint64_t v) {
  om_family(o, name, type, unit, help);
  out_put(o, "nheap_%s%s %llu\n", name, strcmp(type, "counter") ? "" : "_total", U(v));
}

static void om_seconds(nh_out_t *o, const char *sample, uint64_t ns) {
  out_put(o, "%s %llu.%09llu\n", sample, U(ns / 1000000000), U(ns % 1000000000));
}

/* A pause histogram (labels: "" or `kind="setup"`), one bucket per power of two of ns: the
 * exact edges of every fourth bucket of timehist.h's. */
static void om_hist(nh_out_t *o, const char *name, const char *labels, const nh_stats_snapshot_t *x, unsigned k) {
  const char *sep = *labels ? "," : "";
  uint64_t cum = 0;
  for (unsigned i = 0; i + 1 < NH_HIST_BUCKETS; i++) {
    cum += x->pauses[k].counts[i];
    if (i % NH_HIST_SUB == 0)   /* bucket 0, and each power of two's last */
      out_put(o, "nheap_%s_bucket{%s%sle=\"%.9g\"} %llu\n", name, labels, sep, (double)timehist_upper(i) / 1e9,
              U(cum));
  }
  out_put(o, "nheap_%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, U(x->pause_counts[k]));
  char sample[160];
  snprintf(sample, sizeof sample, *labels ? "nheap_%s_count{%s}" : "nheap_%s_count%s", name, labels);
  out_put(o, "%s %llu\n", sample, U(x->pause_counts[k]));
  snprintf(sample, sizeof sample, *labels ? "nheap_%s_sum{%s}" : "nheap_%s_sum%s", name, labels);
  om_seconds(o, sample, x->pauses[k].sum_ns);
}

static void write_openmetrics(nh_out_t *o, const nh_stats_snapshot_t *x) {
  const nh_stats_t *s = &x->s;
  om_family(o, "config", "info", "", "The collector mode in effect and how per-CPU caches are protected.");
  out_put(o, "nheap_config_info{gc_mode=\"%s\",percpu=\"%s\"} 1\n", gc_mode_name(s->gc_mode),
          s->percpu_mode == NH_PERCPU_RSEQ ? "rseq" : "lock");
  om_one(o, "heap_reserved_bytes", "gauge", "bytes", "Arena address space reserved.", s->heap_reserved_bytes);
  om_one(o, "heap_mapped_bytes", "gauge", "bytes", "Arena memory mapped: in use + free + released.",
         s->heap_mapped_bytes);
  om_family(o, "heap_bytes", "gauge", "bytes",
            "Mapped arena memory by state: inuse (spans that may hold objects), free (backed, unused), "
            "released (returned to the OS); they add up to nheap_heap_mapped_bytes.");
  out_put(o, "nheap_heap_bytes{state=\"inuse\"} %llu\nnheap_heap_bytes{state=\"free\"} %llu\n"
          "nheap_heap_bytes{state=\"released\"} %llu\n",
          U(s->heap_inuse_bytes), U(s->heap_free_bytes), U(s->heap_released_bytes));
  om_one(o, "metadata_bytes", "gauge", "bytes", "Off-heap metadata: page maps, spans, caches.", s->metadata_bytes);
  om_one(o, "heap_objects_large", "gauge", "", "Live objects over 32 KiB.", s->large_objects);
  om_one(o, "heap_spans_small", "gauge", "", "Spans holding small objects.", s->small_spans);
  om_family(o, "size_class_spans", "gauge", "", "Spans of each small size class in use (class: object size in bytes).");
  for (size_t c = 0; c < NH_ARRAY_LEN(x->classes); c++)
    out_put(o, "nheap_size_class_spans{class=\"%u\"} %llu\n", x->classes[c].size, U(x->classes[c].spans));
  om_family(o, "node_heap_bytes", "gauge", "bytes", "Mapped arena memory per NUMA node, by state.");
  for (int n = 0; n < x->nnodes; n++)
    out_put(o, "nheap_node_heap_bytes{node=\"%d\",state=\"inuse\"} %llu\n"
            "nheap_node_heap_bytes{node=\"%d\",state=\"free\"} %llu\n"
            "nheap_node_heap_bytes{node=\"%d\",state=\"released\"} %llu\n",
            n, U(x->node[n].live * NH_PAGE_SIZE), n, U(x->node[n].free * NH_PAGE_SIZE), n,
            U(x->node[n].released * NH_PAGE_SIZE));
  om_family(o, "node_remote_frees", "counter", "", "Objects of the node's memory freed by another node's CPU.");
  for (int n = 0; n < x->nnodes; n++)
    out_put(o, "nheap_node_remote_frees_total{node=\"%d\"} %llu\n", n, U(x->node_remote_frees[n]));
  om_family(o, "arenas", "gauge", "", "64 MiB arenas, by what backs them.");
  out_put(o, "nheap_arenas{backing=\"4k\"} %llu\nnheap_arenas{backing=\"thp\"} %llu\nnheap_arenas{backing=\"hugetlb\"} %llu\n",
          U(s->arenas_small), U(s->arenas_thp), U(s->arenas_hugetlb));
  om_family(o, "arena_fallbacks", "counter", "", "Arenas that wanted huge pages of this backing and did not get them.");
  out_put(o, "nheap_arena_fallbacks_total{backing=\"thp\"} %llu\nnheap_arena_fallbacks_total{backing=\"hugetlb\"} %llu\n",
          U(s->thp_fallbacks), U(s->hugetlb_fallbacks));
  om_family(o, "frees", "counter", "", "Frees out of the ordinary, by kind: bad (foreign, interior or freed "
            "pointers), double, tiny (left to the collector), deferred (during a mark), remote (another node's).");
  out_put(o, "nheap_frees_total{kind=\"bad\"} %llu\nnheap_frees_total{kind=\"double\"} %llu\n"
          "nheap_frees_total{kind=\"tiny\"} %llu\nnheap_frees_total{kind=\"deferred\"} %llu\n"
          "nheap_frees_total{kind=\"remote\"} %llu\n",
          U(s->bad_frees), U(s->double_frees), U(s->tiny_frees), U(s->frees_deferred), U(s->remote_frees));
  om_one(o, "scavenger_released_bytes", "counter", "bytes", "Memory returned to the OS by the scavenger.",
         s->scavenged_bytes);
  om_one(o, "scavenger_prefaulted_bytes", "counter", "bytes",
         "Free memory faulted in ahead of the allocations that take it next.", s->scavenger_prefaulted_bytes);
  om_family(o, "scavenger_releases", "counter", "", "Ranges released, by how: io_uring or madvise.");
  out_put(o, "nheap_scavenger_releases_total{via=\"io_uring\"} %llu\nnheap_scavenger_releases_total{via=\"madvise\"} %llu\n",
          U(s->scavenger_uring_releases), U(s->scavenger_madvise_releases));
  /* The pacer (Go's /gc/heap/goal, /gc/gogc, /gc/gomemlimit, /gc/heap/live). */
  om_one(o, "gc_heap_goal_bytes", "gauge", "bytes", "The heap size the next mark should end at (0: no goal).",
         s->heap_goal_bytes);
  om_one(o, "gc_heap_trigger_bytes", "gauge", "bytes", "The heap size at which the next cycle starts (0: none).",
         s->heap_trigger_bytes);
  om_one(o, "gc_heap_live_bytes", "gauge", "bytes", "Heap marked live by the last cycle.", s->heap_marked_bytes);
  om_one(o, "gc_heap_current_bytes", "gauge", "bytes",
         "The pacer's heap: marked by the last cycle plus allocated since.", s->heap_live_bytes);
  om_family(o, "gc_gogc_percent", "gauge", "percent", "GOGC in effect (-1: off).");
  out_put(o, "nheap_gc_gogc_percent %lld\n", (long long)s->gc_percent);
  om_one(o, "gc_memory_limit_bytes", "gauge", "bytes", "The memory limit (0: none).", s->memory_limit);
  om_one(o, "gc_limit_refusals", "counter", "", "Allocations refused for the memory limit.", s->limit_refusals);
  om_one(o, "gc_limiter_active", "gauge", "", "1 while the CPU limiter holds the collector back.", x->limiting);
  om_one(o, "gc_limited", "counter", "", "Times the CPU limiter held the collector back.", s->gc_limited);
  /* Cycles and pauses (Go's /gc/cycles, /gc/pauses). */
  om_one(o, "gc_cycles", "counter", "", "Completed collection cycles.", s->gc_cycles);
  om_one(o, "gc_cycles_forced", "counter", "", "Cycles run by nh_gc or the memory limit.", s->gc_forced);
  om_family(o, "gc_pauses_seconds", "histogram", "seconds", "Every stop-the-world pause.");
  om_hist(o, "gc_pauses_seconds", "", x, NH_PAUSES_ALL);
  om_family(o, "gc_pauses_by_kind_seconds", "histogram", "seconds",
            "Stop-the-world pauses by kind: setup (sweep termination and mark setup; stw: the whole cycle) "
            "and termination (each mark termination attempt).");
  om_hist(o, "gc_pauses_by_kind_seconds", "kind=\"setup\"", x, NH_PAUSES_SETUP);
  om_hist(o, "gc_pauses_by_kind_seconds", "kind=\"termination\"", x, NH_PAUSES_TERMINATION);
  om_family(o, "gc_pause_parts_seconds", "histogram", "seconds",
            "Parts of the pauses: stop (the stop request until every thread stopped), roots (scanning the "
            "roots; at termination, rescanning stacks and barrier buffers).");
  om_hist(o, "gc_pause_parts_seconds", "part=\"stop\"", x, NH_PAUSES_PART_STOP);
  om_hist(o, "gc_pause_parts_seconds", "part=\"roots\"", x, NH_PAUSES_PART_ROOTS);
  om_family(o, "gc_pause_max_seconds", "gauge", "seconds", "The longest pause.");
  om_seconds(o, "nheap_gc_pause_max_seconds", s->pause_max_ns);
  /* CPU (Go's /cpu/classes/gc/...). */
  om_family(o, "gc_cpu_seconds", "counter", "seconds",
            "Collection CPU by phase: pause (the pauses on every CPU, as Go counts them), setup (sweeping "
            "before the stop), mark (the concurrent mark), sweep (background and nh_gc sweeping).");
  om_seconds(o, "nheap_gc_cpu_seconds_total{phase=\"pause\"}", s->pause_total_ns * x->ncpus);
  for (unsigned p = 0; p < NH_ARRAY_LEN(x->phase_cpu_ns); p++) {
    if (p == NH_GC_PHASE_TERMINATION)
      continue;   /* its work is all in its pause */
    char sample[96];
    snprintf(sample, sizeof sample, "nheap_gc_cpu_seconds_total{phase=\"%s\"}", phase_name[p]);
    om_seconds(o, sample, x->phase_cpu_ns[p]);
  }
  om_family(o, "gc_mark_cpu_seconds", "counter", "seconds",
            "Concurrent mark CPU by who did it: dedicated (mark workers), assist (allocating threads), "
            "collector (the collector thread and the fractional marker).");
  om_seconds(o, "nheap_gc_mark_cpu_seconds_total{worker=\"dedicated\"}", s->gc_worker_ns);
  om_seconds(o, "nheap_gc_mark_cpu_seconds_total{worker=\"assist\"}", s->gc_assist_ns);
  om_seconds(o, "nheap_gc_mark_cpu_seconds_total{worker=\"collector\"}", mark_collector_ns(x));
  om_family(o, "gc_mark_seconds", "counter", "seconds", "Wall time spent marking.");
  om_seconds(o, "nheap_gc_mark_seconds_total", s->gc_mark_ns);
  /* The collector's work. */
  om_one(o, "gc_roots_bytes", "gauge", "bytes", "Roots scanned by the last cycle.", s->roots_bytes);
  om_one(o, "gc_threads", "gauge", "", "Threads the collector stops and scans.", s->threads_attached);
  om_one(o, "gc_mark_workers", "gauge", "", "Dedicated mark workers.", x->mark_workers);
  om_one(o, "gc_swept_spans", "counter", "", "Spans swept.", s->swept_spans);
  om_one(o, "gc_finalizers_run", "counter", "", "Finalizers run.", s->finalizers_run);
  om_family(o, "gc_scan_bytes", "counter", "bytes", "Heap scanned by the markers, on their own node's memory (local) or another's.");
  out_put(o, "nheap_gc_scan_bytes_total{locality=\"local\"} %llu\nnheap_gc_scan_bytes_total{locality=\"remote\"} %llu\n",
          U(s->gc_scan_local_bytes), U(s->gc_scan_remote_bytes));
  om_one(o, "gc_mark_steals", "counter", "", "Grey blocks taken from another node's queue.", s->gc_mark_steals);
  om_one(o, "gc_mark_overflows", "counter", "", "Mark overflow recovery rounds.", s->gc_mark_overflows);
  om_one(o, "gc_dirty_rescanned_bytes", "counter", "bytes", "concurrent-nobarrier: written pages rescanned.",
         s->gc_dirty_bytes);
  if (s->perf_events) {
    om_family(o, "perf_events", "counter", "", "perf.events counted per phase of the collector's work.");
    for (int p = 0; p < NH_PERF_PHASES; p++)
      for (uint64_t i = 0; i < s->perf_events; i++) {
        out_put(o, "nheap_perf_events_total{phase=\"%s\",event=\"", perf_phase_name((nh_perf_phase)p));
        out_escaped(o, s->perf_event_names[i]);
        out_put(o, "\"} %llu\n", U(s->perf_counts[p][i]));
      }
    om_family(o, "perf_phase_seconds", "counter", "seconds", "Thread time in each phase, as the counters saw it.");
    for (int p = 0; p < NH_PERF_PHASES; p++) {
      char sample[96];
      snprintf(sample, sizeof sample, "nheap_perf_phase_seconds_total{phase=\"%s\"}", perf_phase_name((nh_perf_phase)p));
      om_seconds(o, sample, s->perf_phase_ns[p]);
    }
  }
  out_put(o, "# EOF\n");
}

/* ---------------------------------------------------------------------------------------------
 * The calls.
 * ------------------------------------------------------------------------------------------- */

int stats_write(int fd, nh_stats_format fmt, bool held) {
  if ((unsigned)fmt > NH_STATS_OPENMETRICS) {
    nh_error(-EINVAL, "nh_stats_write: no format %d (NH_STATS_TEXT, NH_STATS_JSON, NH_STATS_OPENMETRICS)", (int)fmt);
    return -EINVAL;
  }
  nh_stats_snapshot_t x;
  int rc = stats_snapshot(&x, held);
  if (rc != 0)
    return rc;
  nh_out_t o = {.fd = fd, .held = held};
  if (fmt == NH_STATS_TEXT)
    write_text(&o, &x);
  else if (fmt == NH_STATS_JSON)
    write_json(&o, &x);
  else
    write_openmetrics(&o, &x);
  out_flush(&o);
  return o.err;
}

NH_API int nh_stats_write(int fd, nh_stats_format fmt) { return stats_write(fd, fmt, false); }

NH_API int nh_stats_print(int fd) { return nh_stats_write(fd, NH_STATS_TEXT); }
