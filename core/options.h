/*
 * options.h — the options table and the effective configuration (see options.c).
 */
#ifndef NH_OPTIONS_H
#define NH_OPTIONS_H

#include <limits.h>
#include <sched.h>

#define NH_GC_PERCENT_MAX 1000000   /* gc_percent's limit, as option and nh_set_gc_percent */

#include "nheap.h"
#include "core/internal.h"

typedef enum nh_opt_type { OPT_BOOL, OPT_INT, OPT_SIZE, OPT_ENUM, OPT_STRING } nh_opt_type;

typedef enum nh_opt_origin { ORIGIN_DEFAULT, ORIGIN_FILE, ORIGIN_ENV, ORIGIN_STRUCT } nh_opt_origin;

/* NHEAP_DEBUG / debug = "name=value,...": diagnostics, Go's GODEBUG. */
typedef struct nh_debug_vars {
  int64_t gctrace;    /* 1: one line per GC cycle on stderr; 2: also per phase */
  int64_t checkmark;  /* 1: re-mark after each cycle, abort on a lost object; 2: on a doubtful one too */
  int64_t scavtrace;  /* 1: one line per scavenger pass */
  int64_t rseq;       /* 0: per-CPU caches in lock mode even where rseq works (default 1) */
  int64_t uring;      /* 0: the scavenger uses madvise even where io_uring works (default 1) */
  int64_t uffd;       /* 0: act as if the kernel had no write-protect tracking (default 1) */
} nh_debug_vars;

enum { NH_OPT_STRING_MAX = 256, NH_FAKE_NODES_MAX = 64, NH_OPTION_COUNT = 16 };

/* The effective configuration: every option's value after all sources were applied. */
typedef struct nh_config {
  int64_t gc, gc_percent, memory_limit, hugepages, numa_policy, mark_workers, barrier;
  int64_t scavenger, verbose, perf_scope, secure;
  char numa[NH_OPT_STRING_MAX];
  char debug[NH_OPT_STRING_MAX];
  char perf_events[NH_OPT_STRING_MAX];
  char perf_report[PATH_MAX];
  char mark_cpus[NH_OPT_STRING_MAX];

  /* Derived from the strings above once loading succeeded. */
  nh_debug_vars dbg;
  bool numa_off;        /* numa = off */
  int numa_fake_nodes;  /* numa = fake:N, else 0 */
  cpu_set_t mark_cpuset; /* mark_cpus; empty: the threads run anywhere */

  /* Where each value came from, for NHEAP_VERBOSE and error messages. */
  char config_file[PATH_MAX];  /* "" if no file was read */
  struct { nh_opt_origin origin; int line; } src[NH_OPTION_COUNT];
} nh_config_t;

typedef struct nh_option_desc {
  const char *name;             /* table name; NHEAP_<NAME> with dots as underscores */
  nh_opt_type type;
  const char *def;              /* the default, as text, parsed like any other source */
  int64_t min, max;             /* OPT_INT, OPT_SIZE */
  const char *const *choices;   /* OPT_ENUM: NULL-terminated; the index is the value */
  bool (*check)(const char *v, char *why, size_t n); /* OPT_STRING: syntax */
  size_t cfg_off;               /* offsetof(nh_config_t, ...) */
  size_t cfg_len;               /* OPT_STRING: buffer size */
  size_t opt_off;               /* offsetof(nh_options, ...): int64_t or const char * */
  const char *help;
} nh_option_desc;

/* The table, for the verbose print, tests and documentation. */
const nh_option_desc *options_table(size_t *count);

/* Applies defaults, then the config file (opts->config_path, else NHEAP_CONFIG in envp),
 * then NHEAP_* variables of envp, then the set fields of opts (may be NULL). Returns 0,
 * -EINVAL (bad value, key or file syntax) or -ENOENT/-EIO (file unreadable); every failure
 * has been reported through the error funnel with its source. cfg is fully written either way. */
int options_load(nh_config_t *cfg, const nh_options *opts, char *const *envp);

/* Parses "123", "64MiB", "2G" into bytes. Returns false (and a reason in why) on bad input or
 * overflow. */
bool options_parse_size(const char *s, int64_t *out, char *why, size_t n);

/* Where option `name` got its value: "file.ini:7", "environment NHEAP_X", "nh_options.x" or
 * "default", for messages about values checked after loading. */
void options_source(const nh_config_t *cfg, const char *name, char *buf, size_t n);

/* Writes the effective table (name, value, source) to fd. */
void options_print(const nh_config_t *cfg, int fd);

#endif
