#!/bin/sh
# kvserver_stall.sh KVSERVER — the kvserver load generator counts like for like, and checks.
#   1. Open loop: at 2000 requests/s on 4 connections, a 20 ms stall of the server (PAUSE: every
#      lock held) delays every request due during it. Counted from their intended send times,
#      the ~20 due in its first 10 ms are late by >= 10 ms; a closed loop, timing from the actual
#      send, would show at most the 4 in flight. A busy machine only makes more requests late,
#      so over_10ms >= 10 holds however slow the machine.
#   2. Closed loop (capacity mode), with the collector running.
# Both: no wrong reply (bad_replies=0, and the load generator exits 0) and the server's index
# holds every key with a valid value (check=2000).
set -u
kv=$1
fail() { echo "kvserver_stall: $*" >&2; exit 1; }
field() { printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }

run() {   # run NAME ARGS...: the RESULT line, checked for bad_replies=0 and check=2000
  name=$1
  shift
  out=$("$kv" load "$@") || fail "$name: the load generator failed: $out"
  line=$(printf '%s\n' "$out" | grep '^RESULT ') || fail "$name: no RESULT line: $out"
  echo "$name: $line"
  [ "$(field "$line" bad_replies)" = 0 ] || fail "$name: wrong replies: $line"
  [ "$(field "$line" check)" = 2000 ] || fail "$name: check is not 2000: $line"
}

run stall 2 4 2000 --rate 2000 --stall-ms 20 -- "$kv" serve off 2000
late=$(field "$line" over_10ms)
[ -n "$late" ] && [ "$late" -ge 10 ] ||
  fail "stall: over_10ms=$late, expected >= 10 (a 20 ms stall at 2000 requests/s, counted from intended times)"

run closed 1 4 2000 -- "$kv" serve concurrent 2000
exit 0
