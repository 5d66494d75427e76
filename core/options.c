/*
 * options.c — the options table and how nheap reads it.
 *
 * The table below is the only list of options: name, type, default (as text), range or
 * choices, where the value lives in nh_config_t and in the public nh_options, and a one-line
 * help. Everything else — the INI keys, the NHEAP_* variables, the verbose print and the
 * README's table — derives from it.
 *
 * Loading (options_load), later sources win:
 *   1. defaults: each row's `def` text goes through the same parser as user input, so a bad
 *      default is caught at start-up (nh_fatal), like Go validating its size-class table;
 *   2. the INI file (nh_options.config_path, else NHEAP_CONFIG): keys before any section or in
 *      [nheap] are top-level names; [perf] events = x sets perf.events. The file is read with
 *      read(2) into an mmap'd buffer and fed to inih line by line (so errors carry the line and
 *      nothing here calls malloc, which a malloc replacement cannot afford during init);
 *   3. NHEAP_<NAME> variables, matched case-insensitively with dots as underscores (plus Go's
 *      NHEAP_GOGC and NHEAP_GOMEMLIMIT for gc_percent and memory_limit, "off" allowed);
 *      NHEAP_CONFIG names the file and is not an option; any other unknown NHEAP_* is an error;
 *   4. the fields of nh_options that are not NH_UNSET / NULL.
 * The first bad value stops loading: it is reported through the error funnel with its source
 * ("file:line", "environment NHEAP_X", "nh_options.x"), the key, the value and what is allowed,
 * plus the closest known name for an unknown key. nheap never guesses a value.
 *
 * Two string options carry small languages: numa ("auto", "off", "fake:N") and debug
 * (NHEAP_DEBUG, "name=int,..." as Go's GODEBUG); they are checked while loading and decoded
 * into nh_config_t afterwards.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/options.h"
#include "core/text.h"

static const char *const gc_choices[] = {"concurrent", "concurrent-nobarrier", "stw", "off", NULL};
static const char *const hugepages_choices[] = {"auto", "hugetlb", "thp", "none", NULL};
static const char *const numa_policy_choices[] = {"local", "interleave", NULL};
static const char *const barrier_choices[] = {"store", "none", NULL};
static const char *const perf_scope_choices[] = {"program", "allocator", NULL};

static bool check_numa(const char *v, char *why, size_t n);
static bool check_debug(const char *v, char *why, size_t n);
static bool check_events(const char *v, char *why, size_t n);
static bool check_cpus(const char *v, char *why, size_t n);

#define CFG(f) offsetof(nh_config_t, f)
#define OPT(f) offsetof(nh_options, f)

static const nh_option_desc table[] = {
  {"gc", OPT_ENUM, "concurrent", 0, 0, gc_choices, NULL, CFG(gc), 0, OPT(gc),
   "collector: concurrent (nh_store barrier), concurrent-nobarrier (kernel dirty tracking), stw, off"},
  {"gc_percent", OPT_INT, "100", -1, NH_GC_PERCENT_MAX, NULL, NULL, CFG(gc_percent), 0, OPT(gc_percent),
   "GOGC: next heap goal = live + (live + roots) * gc_percent/100; -1 turns the pacer off"},
  {"memory_limit", OPT_SIZE, "0", 0, INT64_MAX, NULL, NULL, CFG(memory_limit), 0, OPT(memory_limit),
   "GOMEMLIMIT: soft limit on mapped, unreleased memory; 0 = none"},
  {"hugepages", OPT_ENUM, "auto", 0, 0, hugepages_choices, NULL, CFG(hugepages), 0, OPT(hugepages),
   "arena backing: auto (hugetlb pool, else THP, else 4 KiB), hugetlb, thp, none"},
  {"numa", OPT_STRING, "auto", 0, 0, NULL, check_numa, CFG(numa), NH_OPT_STRING_MAX, OPT(numa),
   "NUMA topology: auto (libnuma), off (one node), fake:N (CPUs split into N logical nodes)"},
  {"numa_policy", OPT_ENUM, "local", 0, 0, numa_policy_choices, NULL, CFG(numa_policy), 0, OPT(numa_policy),
   "where arena memory goes: local (the allocating CPU's node) or interleave"},
  {"mark_workers", OPT_INT, "0", 0, 1024, NULL, NULL, CFG(mark_workers), 0, OPT(mark_workers),
   "dedicated mark threads; 0 = Go's 25%-of-CPUs rule"},
  {"mark_cpus", OPT_STRING, "", 0, 0, NULL, check_cpus, CFG(mark_cpus), NH_OPT_STRING_MAX, OPT(mark_cpus),
   "CPUs the collector thread and mark workers run on, as 0-3,8; empty = any"},
  {"barrier", OPT_ENUM, "store", 0, 0, barrier_choices, NULL, CFG(barrier), 0, OPT(barrier),
   "store: the program writes heap pointers with nh_store; none: plain stores"},
  {"scavenger", OPT_BOOL, "1", 0, 1, NULL, NULL, CFG(scavenger), 0, OPT(scavenger),
   "return free pages past the heap goal to the OS in the background"},
  {"secure", OPT_BOOL, "0", 0, 1, NULL, NULL, CFG(secure), 0, OPT(secure),
   "hardening: guard pages around metadata, allocation order shuffled within spans, freed objects zeroed"},
  {"verbose", OPT_BOOL, "0", 0, 1, NULL, NULL, CFG(verbose), 0, OPT(verbose),
   "print the effective option table at nh_init"},
  {"debug", OPT_STRING, "", 0, 0, NULL, check_debug, CFG(debug), NH_OPT_STRING_MAX, OPT(debug),
   "diagnostics as in GODEBUG: gctrace=N, checkmark=1|2, scavtrace=1, rseq=0, uring=0"},
  {"perf.events", OPT_STRING, "", 0, 0, NULL, check_events, CFG(perf_events), NH_OPT_STRING_MAX, OPT(perf_events),
   "perf events counted per GC phase, libpfm4 names, comma-separated"},
  {"perf.scope", OPT_ENUM, "program", 0, 0, perf_scope_choices, NULL, CFG(perf_scope), 0, OPT(perf_scope),
   "what the alloc phase counts: program (all program time) or allocator (its slow paths only)"},
  {"perf.report", OPT_STRING, "", 0, 0, NULL, NULL, CFG(perf_report), PATH_MAX, OPT(perf_report),
   "path of the per-run JSON counter report; empty = none"},
};
_Static_assert(NH_ARRAY_LEN(table) == NH_OPTION_COUNT, "NH_OPTION_COUNT must match the table");

typedef struct debug_var { const char *name; size_t off; int64_t max; } debug_var;
static const debug_var debug_vars[] = {
  {"gctrace", offsetof(nh_debug_vars, gctrace), 2},
  {"checkmark", offsetof(nh_debug_vars, checkmark), 2},
  {"scavtrace", offsetof(nh_debug_vars, scavtrace), 1},
  {"rseq", offsetof(nh_debug_vars, rseq), 1},
  {"uring", offsetof(nh_debug_vars, uring), 1},
  {"uffd", offsetof(nh_debug_vars, uffd), 1},
};

const nh_option_desc *options_table(size_t *count) {
  *count = NH_ARRAY_LEN(table);
  return table;
}

NH_API void nh_options_init(nh_options *opts) {
  memset(opts, 0, sizeof *opts);
  opts->size = sizeof *opts;
  for (size_t i = 0; i < NH_ARRAY_LEN(table); i++)
    if (table[i].type != OPT_STRING)
      *(int64_t *)((char *)opts + table[i].opt_off) = NH_UNSET;
}

/* ---------------------------------------------------------------------------------------------
 * Value parsers. Each returns false and writes why into why[n].
 * ------------------------------------------------------------------------------------------- */

static const char *trim(const char *s, char *buf, size_t n) {
  while (isspace((unsigned char)*s))
    s++;
  size_t len = strlen(s);
  while (len && isspace((unsigned char)s[len - 1]))
    len--;
  if (len >= n)
    len = n - 1;
  memcpy(buf, s, len);
  buf[len] = 0;
  return buf;
}

static bool parse_int(const char *s, int64_t *out, char *why, size_t n) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (end == s || *end) {
    snprintf(why, n, "not an integer");
    return false;
  }
  if (errno == ERANGE) {
    snprintf(why, n, "out of range");
    return false;
  }
  *out = v;
  return true;
}

bool options_parse_size(const char *s, int64_t *out, char *why, size_t n) {
  static const struct { const char *suffix; int shift; } units[] = {
    {"", 0},  {"b", 0},    {"k", 10},   {"kib", 10}, {"m", 20}, {"mib", 20},
    {"g", 30}, {"gib", 30}, {"t", 40},  {"tib", 40},
  };
  char buf[64];
  s = trim(s, buf, sizeof buf);
  char *end;
  errno = 0;
  if (!isdigit((unsigned char)*s)) {
    snprintf(why, n, "not a size (a number with an optional B, KiB, MiB, GiB or TiB suffix)");
    return false;
  }
  unsigned long long v = strtoull(s, &end, 10);
  while (*end == ' ')
    end++;
  for (size_t i = 0; i < NH_ARRAY_LEN(units); i++) {
    if (strcasecmp(end, units[i].suffix) != 0)
      continue;
    if (errno == ERANGE || v > ((unsigned long long)INT64_MAX >> units[i].shift)) {
      snprintf(why, n, "too large (the limit is 8 EiB - 1)");
      return false;
    }
    *out = (int64_t)(v << units[i].shift);
    return true;
  }
  snprintf(why, n, "unknown size suffix '%s' (use B, KiB, MiB, GiB or TiB)", end);
  return false;
}

static bool parse_bool(const char *s, int64_t *out, char *why, size_t n) {
  static const char *const yes[] = {"1", "true", "yes", "on"}, *const no[] = {"0", "false", "no", "off"};
  for (size_t i = 0; i < NH_ARRAY_LEN(yes); i++) {
    if (strcasecmp(s, yes[i]) == 0) { *out = 1; return true; }
    if (strcasecmp(s, no[i]) == 0) { *out = 0; return true; }
  }
  snprintf(why, n, "not a boolean (allowed: 1, 0, true, false, yes, no, on, off)");
  return false;
}

static int choices_text(const char *const *c, char *buf, size_t n) {
  size_t off = 0;
  buf[0] = 0;
  for (; *c && off < n; c++)
    off += (size_t)snprintf(buf + off, n - off, "%s%s", off ? "|" : "", *c);
  return (int)off;
}

static bool parse_enum(const nh_option_desc *d, const char *s, int64_t *out, char *why, size_t n) {
  for (int64_t i = 0; d->choices[i]; i++) {
    if (strcasecmp(s, d->choices[i]) == 0) {
      *out = i;
      return true;
    }
  }
  char list[160];
  choices_text(d->choices, list, sizeof list);
  snprintf(why, n, "not one of %s", list);
  return false;
}

static bool in_range(const nh_option_desc *d, int64_t v, char *why, size_t n) {
  if (v >= d->min && v <= d->max)
    return true;
  snprintf(why, n, "out of range (allowed: %lld .. %lld)", (long long)d->min, (long long)d->max);
  return false;
}

static bool check_numa(const char *v, char *why, size_t n) {
  if (strcasecmp(v, "auto") == 0 || strcasecmp(v, "off") == 0)
    return true;
  int64_t nodes;
  if (strncasecmp(v, "fake:", 5) == 0 && parse_int(v + 5, &nodes, why, n) && nodes >= 1 &&
      nodes <= NH_FAKE_NODES_MAX)
    return true;
  snprintf(why, n, "not one of auto|off|fake:N with N in 1 .. %d", NH_FAKE_NODES_MAX);
  return false;
}

/* A CPU list as the kernel prints them ("0-3,8,10-11"), into set when it is not NULL. */
static bool parse_cpus(const char *v, cpu_set_t *set, char *why, size_t n) {
  if (set)
    CPU_ZERO(set);
  const char *p = v;
  while (*p) {
    char *end;
    errno = 0;
    long lo = strtol(p, &end, 10), hi = lo;
    if (end == p || lo < 0 || errno)
      goto bad;
    p = end;
    if (*p == '-') {
      const char *q = p + 1;
      hi = strtol(q, &end, 10);
      if (end == q || hi < lo || errno)
        goto bad;
      p = end;
    }
    if (hi >= CPU_SETSIZE) {
      snprintf(why, n, "CPU %ld is past the last one nheap can name (%d)", hi, CPU_SETSIZE - 1);
      return false;
    }
    for (long c = lo; set && c <= hi; c++)
      CPU_SET((int)c, set);
    if (*p == ',' && p[1])
      p++;
    else if (*p)
      goto bad;
  }
  return true;
bad:
  snprintf(why, n, "not a CPU list such as 0-3,8 (at \"%s\")", p);
  return false;
}

static bool check_cpus(const char *v, char *why, size_t n) { return parse_cpus(v, NULL, why, n); }

/* Walks "name=value,name=value"; decodes into dbg when it is not NULL. */
static bool parse_debug(const char *v, nh_debug_vars *dbg, char *why, size_t n) {
  char buf[NH_OPT_STRING_MAX];
  snprintf(buf, sizeof buf, "%s", v);
  char *save = NULL;
  for (char *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(item, '=');
    if (!eq) {
      snprintf(why, n, "'%s' is not name=value", item);
      return false;
    }
    *eq = 0;
    const debug_var *dv = NULL;
    for (size_t i = 0; i < NH_ARRAY_LEN(debug_vars); i++)
      if (strcasecmp(item, debug_vars[i].name) == 0)
        dv = &debug_vars[i];
    if (!dv) {
      snprintf(why, n, "unknown diagnostic '%s' (known: gctrace, checkmark, scavtrace, rseq, uring, uffd)", item);
      return false;
    }
    int64_t x;
    if (!parse_int(eq + 1, &x, why, n) || x < 0 || x > dv->max) {
      snprintf(why, n, "%s=%s: allowed 0 .. %lld", item, eq + 1, (long long)dv->max);
      return false;
    }
    if (dbg)
      *(int64_t *)((char *)dbg + dv->off) = x;
  }
  return true;
}

static bool check_debug(const char *v, char *why, size_t n) {
  return parse_debug(v, NULL, why, n);
}

static bool check_events(const char *v, char *why, size_t n) {
  const char *p = v;
  while (*p) {
    size_t len = strcspn(p, ",");
    if (len == 0) {
      snprintf(why, n, "empty event name in the list");
      return false;
    }
    for (size_t i = 0; i < len; i++) {
      unsigned char c = (unsigned char)p[i];
      if (!isalnum(c) && !strchr("_-:.=/", c)) {
        snprintf(why, n, "event name '%.*s' has a character libpfm4 does not accept", (int)len, p);
        return false;
      }
    }
    p += len;
    if (*p == ',' && !*++p) {
      snprintf(why, n, "empty event name in the list");
      return false;
    }
  }
  return true;
}

/* ---------------------------------------------------------------------------------------------
 * Setting one option from text or from the struct.
 * ------------------------------------------------------------------------------------------- */

static const nh_option_desc *find_option(const char *name) {
  for (size_t i = 0; i < NH_ARRAY_LEN(table); i++)
    if (strcasecmp(name, table[i].name) == 0)
      return &table[i];
  return NULL;
}

static void unknown_key(const char *name, char *why, size_t n) {
  const char *best = NULL;
  size_t best_d = 3;  /* suggest only close names */
  for (size_t i = 0; i < NH_ARRAY_LEN(table); i++) {
    size_t d = text_edit_distance(name, table[i].name);
    if (d < best_d) {
      best_d = d;
      best = table[i].name;
    }
  }
  if (best)
    snprintf(why, n, "unknown option '%s' (did you mean '%s'?)", name, best);
  else
    snprintf(why, n, "unknown option '%s' (NHEAP_VERBOSE=1 lists the options)", name);
}

static void set_origin(nh_config_t *cfg, const nh_option_desc *d, nh_opt_origin o, int line) {
  size_t i = (size_t)(d - table);
  cfg->src[i].origin = o;
  cfg->src[i].line = line;
}

/* Parses text for option d into cfg. */
static bool set_text(nh_config_t *cfg, const nh_option_desc *d, const char *raw, char *why, size_t n) {
  char buf[PATH_MAX];
  const char *v = trim(raw, buf, sizeof buf);
  int64_t x = 0;
  switch (d->type) {
  case OPT_BOOL:
    if (!parse_bool(v, &x, why, n)) return false;
    break;
  case OPT_INT:
    if (!parse_int(v, &x, why, n)) {
      size_t len = strlen(why);
      snprintf(why + len, n - len, " (allowed: %lld .. %lld)", (long long)d->min, (long long)d->max);
      return false;
    }
    if (!in_range(d, x, why, n))
      return false;
    break;
  case OPT_SIZE:
    if (!options_parse_size(v, &x, why, n) || !in_range(d, x, why, n)) return false;
    break;
  case OPT_ENUM:
    if (!parse_enum(d, v, &x, why, n)) return false;
    break;
  case OPT_STRING:
    if (strlen(v) >= d->cfg_len) {
      snprintf(why, n, "too long (at most %zu characters)", d->cfg_len - 1);
      return false;
    }
    if (d->check && !d->check(v, why, n))
      return false;
    strcpy((char *)cfg + d->cfg_off, v);
    return true;
  }
  *(int64_t *)((char *)cfg + d->cfg_off) = x;
  return true;
}

/* Applies a set field of nh_options; returns false with why on a bad value. */
static bool set_struct(nh_config_t *cfg, const nh_option_desc *d, const nh_options *opts, char *why, size_t n) {
  const char *field = (const char *)opts + d->opt_off;
  if (d->type == OPT_STRING) {
    const char *s = *(const char *const *)field;
    return s ? set_text(cfg, d, s, why, n) : true;
  }
  int64_t v = *(const int64_t *)field;
  if (v == NH_UNSET)
    return true;
  if (d->type == OPT_ENUM) {
    int64_t count = 0;
    while (d->choices[count])
      count++;
    if (v < 0 || v >= count) {
      char list[160];
      choices_text(d->choices, list, sizeof list);
      snprintf(why, n, "%lld is not a valid value (0 .. %lld: %s)", (long long)v, (long long)count - 1, list);
      return false;
    }
  } else if (!in_range(d, v, why, n)) {
    return false;
  }
  *(int64_t *)((char *)cfg + d->cfg_off) = v;
  return true;
}

/* ---------------------------------------------------------------------------------------------
 * The INI file.
 * ------------------------------------------------------------------------------------------- */

enum { CONFIG_FILE_MAX = 1 << 20, INI_LINE_MAX = INI_MAX_LINE - 1 };

typedef struct ini_ctx {
  nh_config_t *cfg;
  const char *buf, *end, *pos; /* the file, and where the reader is */
  int line;                    /* line number of the text last handed to inih */
  int err_line;                /* first error found by the handler or the reader */
  char why[320];
} ini_ctx;

/* inih's fgets: hands out one line at a time so the handler knows its line number. */
static char *config_reader(char *str, int num, void *stream) {
  ini_ctx *c = stream;
  if (c->pos >= c->end)
    return NULL;
  /* Leading blanks are dropped, so an indented key is a key, never inih's continuation of the
   * previous value (nheap has no multi-line values). */
  while (c->pos < c->end && (*c->pos == ' ' || *c->pos == '\t'))
    c->pos++;
  if (c->pos >= c->end) {
    c->line++;
    str[0] = 0;
    return str;
  }
  const char *nl = memchr(c->pos, '\n', (size_t)(c->end - c->pos));
  size_t len = nl ? (size_t)(nl - c->pos) + 1 : (size_t)(c->end - c->pos);
  c->line++;
  if (len > (size_t)num - 1 || len > INI_LINE_MAX) {
    if (!c->err_line) {
      c->err_line = c->line;
      snprintf(c->why, sizeof c->why, "line longer than %d characters", INI_LINE_MAX - 1);
    }
    len = 0;  /* hand inih an empty line; loading fails on err_line */
  }
  memcpy(str, c->pos, len);
  str[len] = 0;
  c->pos += nl ? (size_t)(nl - c->pos) + 1 : (size_t)(c->end - c->pos);
  return str;
}

static int config_handler(void *user, const char *section, const char *name, const char *value) {
  ini_ctx *c = user;
  if (c->err_line)
    return 0;
  char key[128];
  if (!section[0] || strcasecmp(section, "nheap") == 0)
    snprintf(key, sizeof key, "%s", name);
  else
    snprintf(key, sizeof key, "%s.%s", section, name);
  const nh_option_desc *d = find_option(key);
  char why[256];
  if (!d) {
    unknown_key(key, why, sizeof why);
    snprintf(c->why, sizeof c->why, "%s", why);
  } else if (set_text(c->cfg, d, value, why, sizeof why)) {
    set_origin(c->cfg, d, ORIGIN_FILE, c->line);
    return 1;
  } else {
    snprintf(c->why, sizeof c->why, "%s = \"%s\": %s", d->name, value, why);
  }
  c->err_line = c->line;
  return 0;
}

static int read_config_file(nh_config_t *cfg, const char *path) {
  snprintf(cfg->config_file, sizeof cfg->config_file, "%s", path);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    nh_error(-e, "config file %s: %s", path, strerror(e));
    return e == ENOENT ? -ENOENT : -EIO;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > CONFIG_FILE_MAX) {
    close(fd);
    nh_error(-EINVAL, "config file %s: not a regular file of at most %d bytes", path, CONFIG_FILE_MAX);
    return -EINVAL;
  }
  size_t size = (size_t)st.st_size;
  char *buf = size ? mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) : NULL;
  if (size && buf == MAP_FAILED) {
    close(fd);
    nh_error(-ENOMEM, "config file %s: cannot map a %zu-byte buffer", path, size);
    return -ENOMEM;
  }
  size_t got = 0;
  while (got < size) {
    ssize_t r = read(fd, buf + got, size - got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    got += (size_t)r;
  }
  close(fd);

  ini_ctx c = {.cfg = cfg, .buf = buf, .end = buf + got, .pos = buf};
  int rc = ini_parse_stream(config_reader, &c, config_handler, &c);
  if (size)
    munmap(buf, size);
  if (rc == 0 && !c.err_line)
    return 0;
  if (rc > 0 && (!c.err_line || rc < c.err_line))
    nh_error(-EINVAL, "%s:%d: syntax error (expected 'key = value', '[section]' or a ; comment)", path, rc);
  else
    nh_error(-EINVAL, "%s:%d: %s", path, c.err_line, c.why);
  return -EINVAL;
}

/* ---------------------------------------------------------------------------------------------
 * The environment.
 * ------------------------------------------------------------------------------------------- */

static const char *env_lookup(char *const *envp, const char *name) {
  size_t len = strlen(name);
  for (char *const *e = envp; e && *e; e++)
    if (strncmp(*e, name, len) == 0 && (*e)[len] == '=')
      return *e + len + 1;
  return NULL;
}

/* Matches "gc_percent" / "perf.events" against the variable's name after NHEAP_. */
static bool env_name_matches(const char *opt, const char *var, size_t len) {
  if (strlen(opt) != len)
    return false;
  for (size_t i = 0; i < len; i++) {
    char a = opt[i] == '.' ? '_' : opt[i];
    if (tolower((unsigned char)a) != tolower((unsigned char)var[i]))
      return false;
  }
  return true;
}

/* Go's names for the pacer's two knobs, as environment variables only (NHEAP_GOGC=off,
 * NHEAP_GOMEMLIMIT=4GiB), with Go's "off" for either. */
static const struct { const char *alias, *name, *off; } env_aliases[] = {
  {"gogc", "gc_percent", "-1"},
  {"gomemlimit", "memory_limit", "0"},
};

static int read_environment(nh_config_t *cfg, char *const *envp) {
  for (char *const *e = envp; e && *e; e++) {
    if (strncasecmp(*e, "NHEAP_", 6) != 0)
      continue;
    const char *name = *e + 6, *eq = strchr(name, '=');
    if (!eq)
      continue;
    size_t len = (size_t)(eq - name);
    if (len == 6 && strncasecmp(name, "CONFIG", 6) == 0)
      continue;
    const nh_option_desc *d = NULL;
    const char *value = eq + 1;
    for (size_t i = 0; i < NH_ARRAY_LEN(table) && !d; i++)
      if (env_name_matches(table[i].name, name, len))
        d = &table[i];
    for (size_t a = 0; a < NH_ARRAY_LEN(env_aliases) && !d; a++) {
      if (!env_name_matches(env_aliases[a].alias, name, len))
        continue;
      for (size_t i = 0; i < NH_ARRAY_LEN(table) && !d; i++)
        if (strcmp(table[i].name, env_aliases[a].name) == 0)
          d = &table[i];
      if (strcasecmp(value, "off") == 0)
        value = env_aliases[a].off;
    }
    char why[256], var[128];
    snprintf(var, sizeof var, "%.*s", (int)(eq - *e), *e);
    if (!d && memchr(name, '.', len)) {
      char under[64];
      snprintf(under, sizeof under, "%.*s", (int)len, name);
      for (char *q = under; *q; q++)
        *q = *q == '.' ? '_' : (char)toupper((unsigned char)*q);
      nh_error(-EINVAL, "environment %s: variable names spell dots as underscores: NHEAP_%s", var, under);
      return -EINVAL;
    }
    if (!d) {
      char lower[64];
      size_t l = len < sizeof lower - 1 ? len : sizeof lower - 1;
      for (size_t i = 0; i < l; i++)
        lower[i] = (char)tolower((unsigned char)name[i]);
      lower[l] = 0;
      unknown_key(lower, why, sizeof why);
      nh_error(-EINVAL, "environment %s: %s", var, why);
      return -EINVAL;
    }
    if (!set_text(cfg, d, value, why, sizeof why)) {
      nh_error(-EINVAL, "environment %s=\"%s\": %s", var, eq + 1, why);
      return -EINVAL;
    }
    set_origin(cfg, d, ORIGIN_ENV, 0);
  }
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Loading.
 * ------------------------------------------------------------------------------------------- */

static void decode_derived(nh_config_t *cfg) {
  char why[128];
  memset(&cfg->dbg, 0, sizeof cfg->dbg);
  cfg->dbg.rseq = 1;
  cfg->dbg.uring = 1;
  cfg->dbg.uffd = 1;
  if (!parse_debug(cfg->debug, &cfg->dbg, why, sizeof why))
    nh_fatal("debug string passed its check but does not decode: %s", why);
  cfg->numa_off = strcasecmp(cfg->numa, "off") == 0;
  cfg->numa_fake_nodes = strncasecmp(cfg->numa, "fake:", 5) == 0 ? atoi(cfg->numa + 5) : 0;
  if (!parse_cpus(cfg->mark_cpus, &cfg->mark_cpuset, why, sizeof why))
    nh_fatal("mark_cpus passed its check but does not decode: %s", why);
}

int options_load(nh_config_t *cfg, const nh_options *opts, char *const *envp) {
  char why[256];
  memset(cfg, 0, sizeof *cfg);
  for (size_t i = 0; i < NH_ARRAY_LEN(table); i++)
    if (!set_text(cfg, &table[i], table[i].def, why, sizeof why))
      nh_fatal("options table: default of %s is invalid: %s", table[i].name, why);

  if (opts && opts->size != sizeof *opts) {
    nh_error(-EINVAL, "nh_options.size is %zu, expected %zu (call nh_options_init)", opts->size, sizeof *opts);
    decode_derived(cfg);
    return -EINVAL;
  }
  const char *path = opts && opts->config_path ? opts->config_path : env_lookup(envp, "NHEAP_CONFIG");
  int rc = 0;
  if (path && path[0])
    rc = read_config_file(cfg, path);
  if (rc == 0)
    rc = read_environment(cfg, envp);
  for (size_t i = 0; rc == 0 && opts && i < NH_ARRAY_LEN(table); i++) {
    const nh_option_desc *d = &table[i];
    if (!set_struct(cfg, d, opts, why, sizeof why)) {
      char field[64];
      snprintf(field, sizeof field, "%s", d->name);
      for (char *p = field; *p; p++)
        *p = *p == '.' ? '_' : *p;
      nh_error(-EINVAL, "nh_options.%s: %s", field, why);
      rc = -EINVAL;
    } else if (d->type == OPT_STRING ? *(const char *const *)((const char *)opts + d->opt_off) != NULL
                                     : *(const int64_t *)((const char *)opts + d->opt_off) != NH_UNSET) {
      set_origin(cfg, d, ORIGIN_STRUCT, 0);
    }
  }
  decode_derived(cfg);
  return rc;
}

/* ---------------------------------------------------------------------------------------------
 * The verbose print.
 * ------------------------------------------------------------------------------------------- */

static void format_value(const nh_config_t *cfg, const nh_option_desc *d, char *buf, size_t n) {
  const char *p = (const char *)cfg + d->cfg_off;
  int64_t v = d->type == OPT_STRING ? 0 : *(const int64_t *)p;
  switch (d->type) {
  case OPT_BOOL: snprintf(buf, n, "%s", v ? "1" : "0"); break;
  case OPT_INT: snprintf(buf, n, "%lld", (long long)v); break;
  case OPT_ENUM: snprintf(buf, n, "%s", d->choices[v]); break;
  case OPT_STRING: snprintf(buf, n, "\"%s\"", p); break;
  case OPT_SIZE: {
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (u < 4 && v && (v & 1023) == 0) {
      v >>= 10;
      u++;
    }
    snprintf(buf, n, "%lld%s", (long long)v, u ? unit[u] : "");
    break;
  }
  }
}

static void env_name(const char *opt, char *buf, size_t n) {
  size_t i = 0;
  for (; opt[i] && i + 1 < n; i++)
    buf[i] = opt[i] == '.' ? '_' : (char)toupper((unsigned char)opt[i]);
  buf[i] = 0;
}

void options_source(const nh_config_t *cfg, const char *name, char *buf, size_t n) {
  const nh_option_desc *d = find_option(name);
  size_t i = d ? (size_t)(d - table) : 0;
  char var[64];
  env_name(name, var, sizeof var);
  switch (d ? cfg->src[i].origin : ORIGIN_DEFAULT) {
  case ORIGIN_DEFAULT: snprintf(buf, n, "default"); break;
  case ORIGIN_FILE: snprintf(buf, n, "%s:%d", cfg->config_file, cfg->src[i].line); break;
  case ORIGIN_ENV: snprintf(buf, n, "environment NHEAP_%s", var); break;
  case ORIGIN_STRUCT:
    for (char *p = var; *p; p++)
      *p = (char)tolower((unsigned char)*p);
    snprintf(buf, n, "nh_options.%s", var);
    break;
  }
}

void options_print(const nh_config_t *cfg, int fd) {
  dprintf(fd, "nheap: effective options (name = value  [source])\n");
  for (size_t i = 0; i < NH_ARRAY_LEN(table); i++) {
    char value[PATH_MAX + 8], source[PATH_MAX + 32];
    format_value(cfg, &table[i], value, sizeof value);
    switch (cfg->src[i].origin) {
    case ORIGIN_DEFAULT: snprintf(source, sizeof source, "default"); break;
    case ORIGIN_FILE: snprintf(source, sizeof source, "%s:%d", cfg->config_file, cfg->src[i].line); break;
    case ORIGIN_ENV: snprintf(source, sizeof source, "environment"); break;
    case ORIGIN_STRUCT: snprintf(source, sizeof source, "nh_options"); break;
    }
    dprintf(fd, "  %-13s = %-22s [%s]\n", table[i].name, value, source);
  }
}
