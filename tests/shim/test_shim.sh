#!/usr/bin/env bash
# LD_PRELOAD=libnheap_malloc.so under real programs: python3 and sqlite3 workloads and a
# threaded program of our own (with fork). Each runs with and without nheap; outputs must match,
# and nheap must have started (its NHEAP_VERBOSE line is checked).
set -euo pipefail
shim=$1 threads=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "test_shim: $*" >&2; exit 1; }

run_both() {   # name, command...
  local name=$1; shift
  "$@" >"$work/$name.plain" 2>&1 || fail "$name failed without nheap"
  LD_PRELOAD=$shim NHEAP_VERBOSE=1 "$@" >"$work/$name.nheap" 2>"$work/$name.err" || {
    cat "$work/$name.err" >&2; fail "$name failed under nheap"; }
  grep -q "nheap: effective options" "$work/$name.err" || fail "$name: nheap did not start"
  grep -v '^nheap\|^  ' "$work/$name.err" >"$work/$name.rest" || true
  [ ! -s "$work/$name.rest" ] || { cat "$work/$name.rest" >&2; fail "$name: unexpected messages under nheap"; }
  cmp -s "$work/$name.plain" "$work/$name.nheap" || { diff "$work/$name.plain" "$work/$name.nheap" | head >&2; fail "$name: output differs"; }
  echo "test_shim: $name ok ($(wc -c <"$work/$name.nheap") bytes of identical output)"
}

python=/usr/bin/python3
[ -x "$python" ] || python=$(command -v python3) || { echo "test_shim: python3 missing" >&2; exit 77; }
command -v sqlite3 >/dev/null || { echo "test_shim: sqlite3 missing" >&2; exit 77; }

run_both python "$python" -c '
import json, random, threading, zlib, hashlib
random.seed(7)
d = {str(i): [random.random() for _ in range(8)] for i in range(30000)}
s = json.dumps(d, sort_keys=True)
assert json.loads(s) == d
out = []
def work(k):
    r = random.Random(k)
    blobs = [bytes(r.randrange(256) for _ in range(r.randrange(1, 3000))) for _ in range(800)]
    out.append(hashlib.sha256(zlib.compress(b"".join(blobs))).hexdigest())
ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
print(len(s), hashlib.sha256(s.encode()).hexdigest(), sorted(out))
'
run_both sqlite sqlite3 :memory: "
create table t(a integer primary key, b text, c real);
with recursive n(x) as (select 1 union all select x + 1 from n where x < 200000)
insert into t select x, printf('%08x-%d', x * 2654435761 % 4294967296, x % 97), x * 0.5 from n;
create index tb on t(b);
update t set c = c * 2 where a % 3 = 0;
delete from t where a % 7 = 0;
select count(*), sum(length(b)), sum(c), min(b), max(b) from t;
select b from t order by b limit 5;
"
run_both threads "$threads"
LD_PRELOAD=$shim "$threads" --expect-nheap >/dev/null || fail "threads: malloc was not nheap's"
# nheap refusing to start (a bad option) leaves the program on the C library's malloc.
out=$(LD_PRELOAD=$shim NHEAP_GC_PERCENT=lots "$python" -c 'print(sum(len(bytes(i)) for i in range(20000)))' 2>"$work/bad.err") \
  || { cat "$work/bad.err" >&2; fail "a bad option broke the program"; }
[ "$out" = "199990000" ] || fail "a bad option changed the program's output: $out"
grep -q "NHEAP_GC_PERCENT" "$work/bad.err" && grep -q "uses the C library's malloc" "$work/bad.err" \
  || { cat "$work/bad.err" >&2; fail "no clear message for the bad option"; }
echo "test_shim: bad option ok (the C library's malloc took over, with a message)"
echo "4 passed, 0 failed"
