/*
 * placement.c — where the collector's markers run.
 *
 * How many: Go's rule (gcControllerState.startCycle): 25% of the CPUs as dedicated markers,
 * rounded, and where that misses by more than 30%, one fewer if it overshot and a fractional
 * marker for what is left (half a CPU on 2 CPUs, a quarter on 1, 1 + 0.5 on 6). mark_workers
 * = N gives N dedicated markers instead.
 *
 * Where: on several NUMA nodes (fake ones included) each node gets its own markers, by Go's
 * rule over that node's CPUs, pinned to them (mark_workers = N: N dedicated ones dealt out
 * over the nodes in turn); they take grey objects of their node's memory first (mark.c). On
 * one node, Go's rule over the CPUs this process may use, pinned only when mark_cpus is set.
 * mark_cpus cuts every node's set; a set that leaves no CPU the process may use is ignored
 * (and said, by the caller). A node left without CPUs gets no marker: its grey objects are
 * stolen by the other nodes' markers. Pure policy: workers.c creates the threads.
 *
 * "The CPUs this process may use" is the affinity of the thread that calls nh_init (cgroup
 * cpusets and taskset restrict it; a thread the program pinned before nh_init restricts it
 * too): a marker created with an affinity outside the cgroup's cpuset would fail to start.
 */
#include <stdlib.h>
#include <string.h>

#include "numa/placement.h"

void marker_layout(long ncpus, int64_t configured, long *dedicated, uint32_t *permille) {
  *dedicated = configured;
  *permille = 0;
  if (configured > 0)
    return;
  long goal = 250 * (ncpus > 0 ? ncpus : 1);   /* in thousandths of a CPU */
  long d = (goal + 500) / 1000;
  if (labs(d * 1000 - goal) * 10 > 3 * goal) {
    if (d * 1000 > goal)
      d--;
    *permille = (uint32_t)(goal - d * 1000);
  }
  *dedicated = d;
}

void marker_plan(const nh_topology_t *t, const cpu_set_t *allowed, const cpu_set_t *mark_cpus, int64_t mark_workers,
                 nh_marker_plan *p) {
  cpu_set_t want;
  bool restricted = CPU_COUNT(mark_cpus) > 0;
  CPU_AND(&want, allowed, restricted ? mark_cpus : allowed);
  p->mark_cpus_ignored = restricted && !CPU_COUNT(&want);
  if (p->mark_cpus_ignored) {
    restricted = false;
    want = *allowed;
  }
  memset(p->dedicated, 0, sizeof p->dedicated);
  memset(p->permille, 0, sizeof p->permille);
  p->nnodes = t->nnodes > 1 ? t->nnodes : 1;
  p->pin = t->nnodes > 1 || restricted;
  bool any = false;
  for (int n = 0; n < p->nnodes; n++) {
    p->cpus[n] = want;
    if (p->nnodes > 1) {
      topology_node_cpus(t, n, &p->cpus[n]);
      CPU_AND(&p->cpus[n], &p->cpus[n], &want);
    }
    any |= CPU_COUNT(&p->cpus[n]) > 0;
    if (mark_workers <= 0 && CPU_COUNT(&p->cpus[n]))
      marker_layout(CPU_COUNT(&p->cpus[n]), 0, &p->dedicated[n], &p->permille[n]);
  }
  if (!any) {   /* no node has a usable CPU (the CPU map is off): one set, not pinned */
    p->nnodes = 1;
    p->pin = false;
    p->cpus[0] = *allowed;
    if (mark_workers <= 0)
      marker_layout(CPU_COUNT(allowed), 0, &p->dedicated[0], &p->permille[0]);
  }
  for (int64_t i = 0, n = 0; i < mark_workers; n = (n + 1) % p->nnodes)
    if (CPU_COUNT(&p->cpus[n]) || !any) {
      p->dedicated[n]++;
      i++;
    }
}
