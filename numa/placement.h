/*
 * placement.h — where the collector's markers run: how many per node and on which CPUs (see
 * placement.c).
 */
#ifndef NH_PLACEMENT_H
#define NH_PLACEMENT_H

#include "numa/topology.h"

/* Go's rule (gcControllerState.startCycle) on ncpus CPUs: how many dedicated markers, and the
 * share of one CPU (thousandths) a fractional one takes; configured > 0 (mark_workers) is
 * taken as it is. */
void marker_layout(long ncpus, int64_t configured, long *dedicated, uint32_t *permille);

typedef struct nh_marker_plan {
  int nnodes;                       /* 1: one set of markers; else one per node */
  bool pin;                         /* pin each marker to its node's CPUs */
  bool mark_cpus_ignored;           /* mark_cpus named no CPU this process may use */
  long dedicated[NH_MAX_NODES];     /* dedicated markers per node */
  uint32_t permille[NH_MAX_NODES];  /* a fractional marker's share per node; 0: none */
  cpu_set_t cpus[NH_MAX_NODES];     /* the CPUs they may run on */
} nh_marker_plan;

/* The markers of topology t for a process that may use the CPUs in allowed, with mark_cpus
 * (empty: not set) and mark_workers (0: Go's rule). */
void marker_plan(const nh_topology_t *t, const cpu_set_t *allowed, const cpu_set_t *mark_cpus, int64_t mark_workers,
                 nh_marker_plan *p);

#endif
