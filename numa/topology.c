/*
 * topology.c — NUMA topology from libnuma, or a fake one for tests on one-node machines.
 *
 *   numa = auto     nodes and the CPU -> node map from libnuma (numa_available, numa_max_node,
 *                   numa_node_of_cpu); one node when libnuma reports NUMA unavailable.
 *   numa = off      one node holding every CPU; nothing is ever bound.
 *   numa = fake:N   the CPUs are split into N contiguous logical nodes; memory binding is
 *                   skipped for them (they do not exist for the kernel), every per-node
 *                   structure and queue still runs, which is what the tests need.
 * libnuma is asked about a node only after checking node <= numa_max_node(): past that it
 * prints to stderr and falls back silently. Read once at nh_init; immutable afterwards.
 */
#include <errno.h>
#include <numa.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "numa/topology.h"

int topology_init(nh_topology_t *t, const nh_config_t *cfg) {
  memset(t, 0, sizeof *t);
  long cpus = sysconf(_SC_NPROCESSORS_CONF);
  t->ncpus = cpus < 1 ? 1 : cpus > NH_MAX_CPUS ? NH_MAX_CPUS : (int)cpus;
  bool have_numa = !cfg->numa_off && numa_available() >= 0;
  t->real_nodes = have_numa ? numa_max_node() + 1 : 1;

  if (cfg->numa_fake_nodes) {
    if (cfg->numa_fake_nodes > t->ncpus) {
      nh_error(-EINVAL, "numa = fake:%d: this machine has only %d CPUs to split into nodes",
               cfg->numa_fake_nodes, t->ncpus);
      return -EINVAL;
    }
    t->fake = true;
    t->nnodes = cfg->numa_fake_nodes;
    for (int c = 0; c < t->ncpus; c++)
      t->cpu_node[c] = (int16_t)((long)c * t->nnodes / t->ncpus);
    return 0;
  }
  t->nnodes = t->real_nodes;
  for (int c = 0; c < t->ncpus; c++) {
    int n = have_numa ? numa_node_of_cpu(c) : 0;
    t->cpu_node[c] = (int16_t)(n >= 0 && n < t->nnodes ? n : 0);  /* offline CPU: node 0 */
  }
  return 0;
}
