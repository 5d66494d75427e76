#!/bin/sh
# report_check.sh REPORT OUT — the report (`make run`) at tiny sizes, and what it promises:
#   1. every workload, peer and plot runs (a peer that is not installed is skipped and said so;
#      any run that fails fails this), and every row that ran states the mode its program ran,
#      what backed its memory, and a checked output (the check the sizes imply, every run);
#      the mark rate stands beside the machine's measured limit;
#   2. a deliberately wrong output (NH_BENCH_WRONG_CHECK=1: every program adds one to its
#      check) fails the run loudly: a FAILED row saying WRONG OUTPUT, and a non-zero exit.
set -u
report=$1
out=$2
fail() { echo "report_check: $*" >&2; exit 1; }
rm -rf "$out" && mkdir -p "$out" || exit 1

"$report" --smoke --out "$out/smoke" || fail "nheap-report --smoke failed ($out/smoke/report.md)"
json=$out/smoke/results.json
[ -s "$json" ] || fail "no results.json"
# One system per line in results.json.
rows=0
while IFS= read -r line; do
  case $line in *'"skipped": '*) continue ;; esac
  name=$(printf '%s' "$line" | sed -n 's/^ *{"name": "\([^"]*\)".*/\1/p')
  printf '%s' "$line" | grep -q '"failed": ' && fail "$name: a run failed: $line"
  printf '%s' "$line" | grep -q '"mode": "[a-z]' || fail "$name: no mode"
  printf '%s' "$line" | grep -q '"backing": "[A-Za-z0-9]' || fail "$name: no backing"
  expected=$(printf '%s' "$line" | sed -n 's/.*"check_expected": \([0-9]*\).*/\1/p')
  [ -n "$expected" ] || fail "$name: no expected check"
  # Every run's check (and the median's) is the expected one.
  checks=$(printf '%s' "$line" | grep -o '"check": [0-9.e+]*' | sed 's/"check": //' | sort -u)
  [ "$checks" = "$expected" ] || fail "$name: checks '$checks', expected $expected"
  rows=$((rows + 1))
done <<ROWS
$(grep '^      {"name": ' "$json")
ROWS
[ "$rows" -ge 10 ] || fail "only $rows rows ran"
grep -q '"name": "kvserver".*"rate_per_s": [1-9]' "$json" || fail "kvserver ran at no rate"
# The mark rate, beside the machine's limit, from a run that marked the whole tree.
grep -q '"mark_rate": .*"limit_gbs": [0-9]*\.*[0-9]*[1-9].*"mark_gbs": [0-9]*\.*[0-9]*[1-9]' "$json" ||
  fail "no mark rate beside the machine's limit"
grep -q '^- mark rate: one core marks' "$out/smoke/report.md" || fail "no mark-rate goal line"
echo "report_check: $rows rows, each with its mode, backing and checked output"

if NH_BENCH_WRONG_CHECK=1 "$report" --smoke --only gcbench --out "$out/wrong" >"$out/wrong.log" 2>&1; then
  fail "a wrong output did not fail the report ($out/wrong.log)"
fi
grep -q 'FAILED.*WRONG OUTPUT' "$out/wrong/report.md" || fail "no FAILED row for the wrong output ($out/wrong/report.md)"
echo "report_check: a wrong output fails the run"
