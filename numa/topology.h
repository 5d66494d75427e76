/*
 * topology.h — the NUMA topology nheap places memory and threads by (see topology.c).
 */
#ifndef NH_TOPOLOGY_H
#define NH_TOPOLOGY_H

#include <sched.h>

#include "core/internal.h"
#include "core/options.h"

enum { NH_MAX_CPUS = 1024, NH_MAX_NODES = 64 };   /* nodes: spans keep theirs in a byte; grey queues */

typedef struct nh_topology {
  int nnodes;                    /* nodes nheap uses, fake ones included */
  int real_nodes;                /* numa_max_node() + 1, or 1 when libnuma is unusable/off */
  int ncpus;                     /* configured CPUs (at most NH_MAX_CPUS) */
  bool fake;                     /* numa = fake:N */
  int16_t cpu_node[NH_MAX_CPUS]; /* node of each CPU, in [0, nnodes) */
} nh_topology_t;

/* Reads the topology for cfg's numa option. Returns 0 or -EINVAL (reported). */
int topology_init(nh_topology_t *t, const nh_config_t *cfg);

/* Node n's CPUs, as a set. */
void topology_node_cpus(const nh_topology_t *t, int n, cpu_set_t *set);

/* Whether node n has real memory that mbind can target. */
static inline bool topology_node_is_real(const nh_topology_t *t, int n) { return n < t->real_nodes && !t->fake; }

#endif
