#!/usr/bin/env bash
# Programs linked to Debian's libgc.so.1 (bdwgc), run unchanged on libnheap_gc.so.1 through
# LD_LIBRARY_PATH, every mark re-checked (checkmark):
#   1. gcabi_program (tests/gcabi): first on bdwgc itself, so that its checks are bdwgc's
#      behaviour, then on nheap in each collector mode a bdwgc program can have;
#   2. nheap's own bdwgc builds of GCBench and binary-trees (bench/), whose outputs carry a
#      checksum: the same as on bdwgc;
#   3. Debian's w3m (rendering a page to text) and mmv (renaming files by pattern): the same
#      output and the same files as on bdwgc.
# Each nheap run must show nheap collecting (gctrace lines), so a run that silently loaded
# bdwgc fails.
# Usage: test_gcabi.sh <dir holding libgc.so.1 -> libnheap_gc.so.1> <gcabi_program>
#                      <nheap-gcbench-bdwgc> <nheap-binary-trees-bdwgc>
set -euo pipefail
abi=$1 program=$2 gcbench=$3 trees=$4
[ -e "$abi/libgc.so.1" ] || { echo "test_gcabi: no $abi/libgc.so.1" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "test_gcabi: $*" >&2; exit 1; }

# on_nheap <mode> <name> <command...>: stdout to $work/<name>.out, gctrace to $work/<name>.err
on_nheap() {
  local mode=$1 name=$2
  shift 2
  env -u LD_PRELOAD LD_LIBRARY_PATH="$abi" NHEAP_GC="$mode" NHEAP_DEBUG=checkmark=1,gctrace=1 \
    "$@" >"$work/$name.out" 2>"$work/$name.err" || { cat "$work/$name.err" >&2; fail "$name failed on nheap ($mode)"; }
  grep -q '^gc [0-9]* @' "$work/$name.err" || fail "$name: no nheap collection in its trace (was bdwgc loaded?)"
}
on_bdwgc() {
  local name=$1
  shift
  env -u LD_PRELOAD -u LD_LIBRARY_PATH "$@" >"$work/$name.out" 2>"$work/$name.err" ||
    { cat "$work/$name.err" >&2; fail "$name failed on bdwgc"; }
}

# 1. The interface's promises.
NH_GCABI_EXPECT=bdwgc on_bdwgc program "$program"
cat "$work/program.out"
for mode in concurrent-nobarrier stw; do
  NH_GCABI_EXPECT=nheap on_nheap "$mode" "program-$mode" "$program"
  cat "$work/program-$mode.out"
done

# 2. Workloads with checksums (GCBench: one thread; binary-trees: two, through GC_pthread_create).
check_of() { sed -n 's/.* check=\([0-9]*\).*/\1/p' "$1"; }
on_bdwgc gcbench "$gcbench"
on_bdwgc trees "$trees" bdwgc 14 2
for mode in concurrent-nobarrier stw; do
  on_nheap "$mode" "gcbench-$mode" "$gcbench"
  on_nheap "$mode" "trees-$mode" "$trees" bdwgc 14 2
  for w in gcbench trees; do
    [ -n "$(check_of "$work/$w.out")" ] && [ "$(check_of "$work/$w.out")" = "$(check_of "$work/$w-$mode.out")" ] ||
      fail "$w: check $(check_of "$work/$w-$mode.out") on nheap ($mode), $(check_of "$work/$w.out") on bdwgc"
  done
  echo "test_gcabi: GCBench and binary-trees ($mode): the checksums bdwgc computes"
done

# 3. Debian's programs.
command -v w3m >/dev/null && command -v mmv >/dev/null || fail "w3m and mmv are needed (scripts/deps.sh installs them)"
page=$work/page.html
{
  echo '<html><head><title>nheap</title></head><body><h1>Tables, lists and links</h1>'
  for i in $(seq 1 400); do
    echo "<h2>Section $i</h2><p>Paragraph $i with <a href=\"#s$i\">a link</a> and <b>bold</b> and <i>italic</i> text.</p>"
    echo "<ul><li>item $i.1</li><li>item $i.2<ol><li>nested $i</li></ol></li></ul>"
    echo "<table border=1><tr><th>n</th><th>n^2</th></tr><tr><td>$i</td><td>$((i * i))</td></tr></table>"
  done
  echo '</body></html>'
} >"$page"
on_bdwgc w3m w3m -dump -cols 100 "$page"
for mode in concurrent-nobarrier stw; do
  on_nheap "$mode" "w3m-$mode" w3m -dump -cols 100 "$page"
  cmp -s "$work/w3m.out" "$work/w3m-$mode.out" || fail "w3m -dump differs on nheap ($mode)"
  echo "test_gcabi: w3m -dump ($mode): $(wc -l <"$work/w3m.out") lines, as on bdwgc"
done

rename_all() {   # <dir> <runner...>: mmv renames 300 files by pattern; the listing is the output
  local dir=$1
  shift
  mkdir -p "$dir"
  for i in $(seq 1 300); do echo "$i" >"$dir/report-$i.txt"; done
  (cd "$dir" && "$@" mmv 'report-*.txt' 'done-#1.log')
  (cd "$dir" && for f in *; do echo "$f $(cat "$f")"; done)
}
rename_all "$work/mmv-bdwgc" env -u LD_LIBRARY_PATH >"$work/mmv.list"
for mode in concurrent-nobarrier stw; do
  rename_all "$work/mmv-$mode" env LD_LIBRARY_PATH="$abi" NHEAP_GC="$mode" NHEAP_DEBUG=checkmark=1 >"$work/mmv-$mode.list"
  cmp -s "$work/mmv.list" "$work/mmv-$mode.list" || fail "mmv renamed differently on nheap ($mode)"
  echo "test_gcabi: mmv ($mode): $(grep -c '^done-' "$work/mmv.list") files renamed, as on bdwgc"
done
echo "test_gcabi: passed"
