#!/bin/sh
# numa_vm_stats.sh RUN_SH BINARY NODES CACHE_DIR README — the NUMA guest test (tests/numa-vm/run.sh,
# whose verdict and exit code, 77 included, this passes on), and then the statistics the guest
# printed last (numa_guest.c: a heap on every node, concurrent, perf counters) through the same
# strict parsers as on the host (stats_check.py): JSON and OpenMetrics from a real NODES-node
# machine, every node's identity holding.
set -u
run=$1 bin=$2 nodes=$3 cache=$4 readme=$5
here=$(dirname "$0")
"$run" "$bin" "$nodes" "$cache"
rc=$?
[ "$rc" -eq 0 ] || exit "$rc"
log=$cache/console-$nodes.log
sed -n 's/^NHSTATS-JSON: //p' "$log" > "$cache/stats-$nodes.json"
sed -n 's/^NHSTATS-OM: //p' "$log" > "$cache/stats-$nodes.om"
/usr/bin/python3 "$here/stats_check.py" "$cache/stats-$nodes.json" "$cache/stats-$nodes.om" concurrent "$nodes" 1 "$readme" ||
  { echo "numa_vm_stats: the guest's statistics ($cache/stats-$nodes.json, .om) fail the parsers"; exit 1; }
