#!/bin/sh
# tests/gc-model-hunt.sh TESTS_DIR [ROUNDS]: the collector's model test under CPU contention
# (two runs with nh_store beside one with plain stores under concurrent-nobarrier, at once, on
# this machine's 2 CPUs, ROUNDS times, 40 by default), strict checkmark. Contention stretches
# every window between a mark's phases and the program's steps; it is how the model's own
# pointer-like records and the early black mark of large objects were found (README, "Checkmark
# after a concurrent mark"). Prints every failure's last lines and exits 1 if there was one.
set -u
DIR=${1:?the tests directory of a build}
ROUNDS=${2:-40}
fail=0
i=0
while [ "$i" -lt "$ROUNDS" ]; do
  i=$((i + 1))
  NHEAP_DEBUG=checkmark=2 "$DIR/test_gc_model" > /tmp/gcmodel-hunt-1.$$ 2>&1 &
  a=$!
  NHEAP_GC=concurrent-nobarrier NH_GC_MODEL_PLAIN=1 NHEAP_DEBUG=checkmark=2 "$DIR/test_gc_model" > /tmp/gcmodel-hunt-2.$$ 2>&1 &
  b=$!
  NHEAP_DEBUG=checkmark=2 "$DIR/test_gc_model" > /tmp/gcmodel-hunt-3.$$ 2>&1
  r3=$?
  wait $a; r1=$?
  wait $b; r2=$?
  for k in 1 2 3; do
    eval r=\$r$k
    if [ "$r" -ne 0 ]; then
      echo "round $i, run $k (exit $r):"; tail -n 3 /tmp/gcmodel-hunt-$k.$$; fail=1
    fi
  done
done
rm -f /tmp/gcmodel-hunt-*.$$
echo "gc-model-hunt: $ROUNDS rounds, $( [ $fail -eq 0 ] && echo 'no failure' || echo 'FAILURES above')"
exit $fail
