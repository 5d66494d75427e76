#!/bin/sh
# stats_check.sh STATS_DUMP OUT README — nh_stats_write's JSON and OpenMetrics, parsed by strict
# parsers (stats_check.py, under Debian's /usr/bin/python3 with python3-prometheus-client, which
# scripts/deps.sh installs: without it this fails, it does not skip), in every collector mode,
# with and without perf counters, and on two (fake) NUMA nodes; every metric in the README.
set -u
dump=$1
out=$2
readme=$3
here=$(dirname "$0")
py=/usr/bin/python3
fail() { echo "stats_check: $*" >&2; exit 1; }
"$py" -c 'import prometheus_client.openmetrics.parser' ||
  fail "Debian's python3-prometheus-client is missing (scripts/deps.sh installs it)"
rm -rf "$out" && mkdir -p "$out" || exit 1

check() {   # check NAME MODE NODES PERF [VAR=VALUE ...]
  name=$1 mode=$2 nodes=$3 perf=$4
  shift 4
  env "$@" "$dump" "$out/$name.json" "$out/$name.om" 2>"$out/$name.err" || fail "$name: stats_dump failed: $(cat "$out/$name.err")"
  "$py" "$here/stats_check.py" "$out/$name.json" "$out/$name.om" "$mode" "$nodes" "$perf" "$readme" ||
    fail "$name: $out/$name.json, $out/$name.om"
}

for mode in concurrent concurrent-nobarrier stw off; do
  # What runs: a concurrent mode falls back to stw where the machine lacks what it needs (the
  # kernel's write-protect tracking, rseq), and says so in the stats; nothing else may differ.
  NHEAP_GC=$mode "$dump" "$out/probe.json" "$out/probe.om" 2>/dev/null || fail "$mode: the probe failed"
  want=$(sed -n 's/.*"mode": "\([a-z-]*\)".*/\1/p' "$out/probe.json")
  [ "$want" = "$mode" ] || [ "$want" = stw ] || fail "$mode: ran as '$want'"
  check "$mode" "$want" 1 0 NHEAP_GC=$mode
  check "$mode-perf" "$want" 1 1 NHEAP_GC=$mode NHEAP_PERF_EVENTS=task-clock,page-faults
done
check numa2 concurrent 2 0 NHEAP_NUMA=fake:2
check numa2-perf stw 2 1 NHEAP_NUMA=fake:2 NHEAP_GC=stw NHEAP_PERF_EVENTS=task-clock,page-faults
