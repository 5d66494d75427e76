#!/bin/sh
# bench/numa_scale.sh BINARY OUTDIR [NODES...]  (default nodes: 1 2 4)
#
# The NUMA scaling benchmark (bench/numa_scale.c) on real multi-node machines: for each node
# count, boots tests/numa-vm's QEMU guest with that many nodes (one CPU and 256 MiB each) and
# runs BINARY (nheap-numa-scale, static) there with local, interleave and numa = off. Writes
# OUTDIR/numa-scale.json (every result) and OUTDIR/numa-scale.md (a table), and prints the
# table. The guest is emulated (TCG): compare rows of one run with each other, not with a host.
# Exit 77 when the guest cannot run here (see tests/numa-vm/run.sh). Environment:
# NHEAP_NUMA_SECONDS (per mode, 3), NHEAP_NUMA_LIVE_MIB (24), NHEAP_NUMA_CACHE (where the
# guest's kernel is kept, OUTDIR/vm).
set -u
BIN=${1:?nheap-numa-scale binary}
OUT=${2:?output directory}
shift 2
[ $# -gt 0 ] || set -- 1 2 4
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT" || exit 1
SECONDS_PER_MODE=${NHEAP_NUMA_SECONDS:-3}
LIVE_MIB=${NHEAP_NUMA_LIVE_MIB:-24}
rows=""
for nodes in "$@"; do
  log="$OUT/guest-$nodes.log"
  "$HERE/../tests/numa-vm/run.sh" "$BIN" "$nodes" "${NHEAP_NUMA_CACHE:-$OUT/vm}" --seconds "$SECONDS_PER_MODE" --live "$LIVE_MIB" > "$log" 2>&1
  rc=$?
  [ $rc -eq 77 ] && { cat "$log"; exit 77; }
  [ $rc -ne 0 ] && { echo "numa-scale: the $nodes-node guest failed (rc $rc):"; cat "$log"; exit 1; }
  rows="$rows$(sed -n 's/^NHEAP-BENCH-JSON: //p' "$log")
"
done
printf '%s' "$rows" | awk 'BEGIN { print "{\"benchmark\": \"numa-scale\", \"where\": \"QEMU guest, one CPU per node\", \"results\": [" }
  NF { printf "%s  %s", (n++ ? ",\n" : ""), $0 } END { print "\n]}" }' > "$OUT/numa-scale.json"
{
  echo "| nodes | mode | threads | replacements/s | ÷ 1 node | cycles | mark MiB/s | local scans | placement | steals | pause p50 ms | max ms | peak MiB |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  printf '%s' "$rows" | awk '
    function num(key,   m) { return match($0, "\"" key "\": [-0-9.]+") ? substr($0, RSTART + length(key) + 4, RLENGTH - length(key) - 4) + 0 : 0 }
    function str(key) { return match($0, "\"" key "\": \"[^\"]*\"") ? substr($0, RSTART + length(key) + 5, RLENGTH - length(key) - 6) : "" }
    NF { mode = str("mode"); nodes = num("nodes_used"); ops = num("ops_per_s")
         if (nodes == 1) base[mode] = ops
         ratio = base[mode] > 0 ? sprintf("%.2f", ops / base[mode]) : "-"
         placed = num("placed_share") < 0 ? "-" : sprintf("%.1f%%", 100 * num("placed_share"))
         printf "| %d | %s | %d | %.0f | %s | %d | %.1f | %.1f%% | %s | %d | %.3f | %.3f | %.1f |\n", nodes, mode,
                num("threads"), ops, ratio, num("cycles"), num("mark_mib_per_s"), 100 * num("local_share"), placed,
                num("steals"), num("pause_p50_ms"), num("pause_max_ms"), num("heap_peak_mib") }'
} > "$OUT/numa-scale.md"
cat "$OUT/numa-scale.md"
echo "numa-scale: $OUT/numa-scale.json, $OUT/numa-scale.md"
