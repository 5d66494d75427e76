#!/bin/sh
# tests/valgrind/run.sh PROGRAM_DIR — memcheck with nheap's heap described to it (core/vg.h):
#   vg_program clean-off    no error, no leak (gc = off, explicit frees and reallocs)
#   vg_program clean-gc     no error (the collector freeing garbage; leaks are its business)
#   vg_program use-after-free / double-free / leak: memcheck reports each, with the stacks
#                           where the block was allocated and freed
#   test_model, test_gc_model (short runs): the allocator's and the collector's model tests,
#                           no memcheck error
# Skipped (77) without valgrind. Logs: PROGRAM_DIR/valgrind-*.log.
set -u
DIR=${1:?the tests directory of a build}
command -v valgrind >/dev/null 2>&1 || { echo "valgrind is not installed: skipped"; exit 77; }
VG="valgrind --tool=memcheck --error-exitcode=99 --track-origins=no --num-callers=30"
fail=0
run() {   # name expected-rc grep-pattern command...
  name=$1 want=$2 pattern=$3
  shift 3
  log="$DIR/valgrind-$name.log"
  $VG --log-file="$log" "$@" > /dev/null 2>&1
  rc=$?
  if [ "$rc" -ne "$want" ] || { [ -n "$pattern" ] && ! grep -q "$pattern" "$log"; }; then
    echo "valgrind: $name: exit $rc (wanted $want), looking for [$pattern]: FAILED; $log:"
    sed -n '1,60p' "$log"
    fail=1
  else
    echo "valgrind: $name: ok ($(grep -o 'ERROR SUMMARY: [0-9]* errors' "$log"))"
  fi
}
run clean-off 0 "" --leak-check=full --errors-for-leak-kinds=definite "$DIR/vg_program" clean-off
run clean-gc 0 "" --leak-check=no "$DIR/vg_program" clean-gc
run use-after-free 99 "Invalid read of size 4" "$DIR/vg_program" use-after-free
# The free's stack: nh_free, or (Release, a tail call) the free_object it jumps to.
grep -q "nh_free\|free_object" "$DIR/valgrind-use-after-free.log" ||
  { echo "valgrind: use-after-free: the free's stack names neither nh_free nor free_object"; fail=1; }
run double-free 99 "Invalid free\|Invalid read" "$DIR/vg_program" double-free
run leak 99 "bytes in 1 blocks are definitely lost" --leak-check=full --errors-for-leak-kinds=definite "$DIR/vg_program" leak
NH_MODEL_STEPS=3000 run test_model 0 "" "$DIR/test_model"
NH_GC_MODEL_OPS=3000 NHEAP_GC=stw NHEAP_DEBUG=checkmark=1 run test_gc_model 0 "" --leak-check=no "$DIR/test_gc_model"
exit $fail
