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
 * prints to stderr and falls back silently. When nheap starts before libnuma has initialised
 * (as a malloc replacement, from inside libnuma's constructor), the topology is read from sysfs
 * instead. Read once at nh_init; immutable afterwards.
 */
#include <errno.h>
#include <fcntl.h>
#include <numa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "numa/topology.h"

/* The same facts from sysfs, for when libnuma has not initialised itself yet: nheap can start
 * inside libnuma's own constructor (it mallocs, and nheap may be that malloc), where libnuma's
 * mask functions exit the process. Fills cpu_node and returns the node count, or 0. */
static int topology_from_sysfs(nh_topology_t *t) {
  int nodes = 0;
  for (int n = 0; n < NH_FAKE_NODES_MAX; n++) {
    char path[96], buf[512];
    snprintf(path, sizeof path, "/sys/devices/system/node/node%d/cpulist", n);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      continue;
    ssize_t len = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (len <= 0)
      continue;
    buf[len] = 0;
    nodes = n + 1;
    for (char *p = buf; *p && *p != '\n';) {
      long lo = strtol(p, &p, 10), hi = lo;
      if (*p == '-')
        hi = strtol(p + 1, &p, 10);
      for (long c = lo; c <= hi && c < t->ncpus; c++)
        t->cpu_node[c] = (int16_t)n;
      if (*p == ',')
        p++;
      else
        break;
    }
  }
  return nodes;
}

int topology_init(nh_topology_t *t, const nh_config_t *cfg) {
  memset(t, 0, sizeof *t);
  long cpus = sysconf(_SC_NPROCESSORS_CONF);
  t->ncpus = cpus < 1 ? 1 : cpus > NH_MAX_CPUS ? NH_MAX_CPUS : (int)cpus;
  bool have_numa = !cfg->numa_off && numa_available() >= 0;
  bool libnuma_ready = numa_num_possible_cpus() > 0 && numa_max_node() >= 0;
  if (have_numa && !libnuma_ready) {
    int nodes = topology_from_sysfs(t);
    t->real_nodes = nodes > 0 ? nodes : 1;
    have_numa = false;   /* cpu_node is filled; no libnuma calls below */
  } else {
    t->real_nodes = have_numa ? numa_max_node() + 1 : 1;
  }

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
  if (t->real_nodes > NH_MAX_NODES) {
    nh_warn("numa: this machine has %d nodes; nheap places memory and markers on the first %d only",
            t->real_nodes, NH_MAX_NODES);
    t->real_nodes = NH_MAX_NODES;
  }
  t->nnodes = t->real_nodes;
  for (int c = 0; c < t->ncpus && have_numa; c++) {
    int n = numa_node_of_cpu(c);
    t->cpu_node[c] = (int16_t)(n >= 0 && n < t->nnodes ? n : 0);  /* offline CPU: node 0 */
  }
  return 0;
}

void topology_node_cpus(const nh_topology_t *t, int n, cpu_set_t *set) {
  CPU_ZERO(set);
  for (int c = 0; c < t->ncpus && c < CPU_SETSIZE; c++)
    if (t->cpu_node[c] == n)
      CPU_SET(c, set);
}
