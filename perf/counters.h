/*
 * counters.h — perf event counters per GC phase (see counters.c).
 */
#ifndef NH_PERF_COUNTERS_H
#define NH_PERF_COUNTERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nheap.h"

struct nh_config;

/* One thread's counter group and what of it was attributed already. Lives in the thread's TLS;
 * attached threads point their nh_thread_t at it so the collector can attribute them while
 * they are stopped. */
typedef struct nh_perf_thread {
  uint32_t gen;                       /* perf_setup generation; another one: reopen */
  bool failed;                        /* could not open: this thread is not counted */
  int fd[NH_PERF_MAX_EVENTS];         /* the group, leader first; -1 where not open */
  void *page[NH_PERF_MAX_EVENTS];     /* each event's perf mmap page (rdpmc), or NULL */
  uint64_t last[NH_PERF_MAX_EVENTS];  /* scaled counts at the last attribution */
  uint64_t last_ns;                   /* CLOCK_MONOTONIC then */
} nh_perf_thread_t;

/* The group read format: nr, time enabled, time running, one value per event. */
typedef struct nh_perf_read {
  uint64_t nr, enabled, running;
  uint64_t value[NH_PERF_MAX_EVENTS];
} nh_perf_read_t;

/* Encodes cfg->perf_events (checked while loading the options), opens a group on the calling
 * thread to learn which events this machine counts, says once which ones it cannot (no PMU:
 * hardware events fail with ENOENT) and keeps the others. Never fails start-up: with nothing
 * countable, perf stays off. Returns true if counting is on. */
bool perf_setup(const struct nh_config *cfg);
/* Writes the report (cfg perf.report) if one was asked for, closes the calling thread's group
 * and turns counting off. init_held: the caller holds the init lock (nh_shutdown; the report
 * carries the heap's statistics, taken without it then). */
void perf_shutdown(bool init_held);
void perf_after_fork_child(void);
bool perf_on(void);

/* The calling thread's state, its group opened on first use; NULL when counting is off.
 * perf_self_opened: only if it was opened already (a thread about to exit). */
nh_perf_thread_t *perf_self(void);
nh_perf_thread_t *perf_self_opened(void);
/* A program thread's own time, outside the collector's work: ALLOC, or dropped with
 * perf.scope = allocator (then the allocator's slow paths are ALLOC: perf_allocator_scope). */
#define NH_PHASE_PROGRAM ((nh_perf_phase)(NH_PERF_PHASES + 1))
bool perf_allocator_scope(void);
/* Reads t's group (any thread may read another's) and adds what it counted since the last
 * attribution, and the time, to phase; perf_skip drops it instead (a thread that was idle). */
void perf_attribute(nh_perf_thread_t *t, nh_perf_phase phase);
void perf_skip(nh_perf_thread_t *t);
/* Closes t's group after attributing the rest to phase (a thread leaving). */
void perf_thread_exit(nh_perf_thread_t *t, nh_perf_phase phase);

/* A cycle ended: its per-phase counts become a cycle record (for gctrace and the report), with
 * what it did: bytes allocated since the last cycle, objects marked, bytes scanned, spans
 * swept. Writes one trace line into buf (n bytes) when buf is not NULL. */
void perf_cycle_end(uint64_t cycle, uint64_t allocated, uint64_t objects_marked, uint64_t bytes_scanned,
                    uint64_t spans_swept, char *buf, size_t n);

/* Reads so far: through rdpmc (the calling thread's own hardware counters) and read(). */
void perf_reads(uint64_t *rdpmc, uint64_t *syscalls);

/* A phase's name in the report, gctrace and the statistics ("alloc", ..., "scavenge"). */
const char *perf_phase_name(nh_perf_phase p);
/* Copies the totals into the stats. */
void perf_stats(nh_stats_t *s);

/* Scales a group read to the time the events were enabled (multiplexing): v * enabled /
 * running, 0 if they never ran. Exposed for the unit test. */
void perf_scale(const nh_perf_read_t *r, int n, uint64_t *out);

#endif
