"""gctrace_check.py STATS_DUMP OUT -- every NHEAP_DEBUG=gctrace=1 line matches the format the
README documents ("gctrace, field by field"), strictly: stats_dump runs in each collector mode
(with GOGC 10, so paced cycles run beside its forced ones, and once with perf counters for the
"perf gc N:" lines), and each line of its stderr must be a gctrace line matching the regular
expression below in full, cycle numbers counting up by one, times not going back, and the
heap figures sane (a heap never below what was found live after the mark, a goal never
below the trigger). Any other stderr line, or none at all, fails."""
import os
import re
import subprocess
import sys

MS = r"\d+\.\d{3}"      # milliseconds, 3 decimals
MIB = r"\d+\.\d{2}"     # MiB, 2 decimals
CONCURRENT = (rf"(?P<setup>{MS})\+(?P<term>{MS}) ms stw \((?P<tries>[1-9]\d*) tries\), "
              rf"(?P<mark>{MS}) ms concurrent mark \(workers (?P<workers>{MS}) ms, assists (?P<assists>{MS}) ms"
              rf"(?P<limited>, off: CPU limiter)?\), trigger (?P<trigger>{MIB}) MiB, goal (?P<goal>{MIB}) MiB "
              rf"\(assists to (?P<assist_goal>{MIB})\), (?P<mark_end>{MIB}) MiB at mark end"
              rf"(?:, (?P<dirty>{MIB}) MiB of written pages rescanned \((?P<rounds>\d+) concurrent rounds\))?")
STW = rf"(?P<pause>{MS}) ms stw \(mark (?P<stw_mark>{MS}) ms\)"
LINE = re.compile(
    rf"gc (?P<n>[1-9]\d*) @(?P<t>\d+\.\d{{3}})s (?P<why>heap goal|forced|memory limit): (?:{CONCURRENT}|{STW}), "
    rf"(?P<sweep>{MS}) ms background sweep since the last cycle, "
    rf"(?P<before>{MIB})->(?P<after>{MIB}) MiB heap, (?P<next_goal>{MIB}) MiB next goal "
    rf"\(trigger (?P<next_trigger>{MIB}), cons/mark (?P<cons_mark>\d+\.\d{{3}})\), (?P<roots>{MIB}) MiB roots, "
    rf"(?P<objects>\d+) objects marked, (?P<threads>[1-9]\d*) threads, (?P<markers>[1-9]\d*) marker\(s\)")
PHASE = rf"(?:alloc|mark|sweep|pause_setup|pause_term|scavenge) {MS} ms \([^=()\s]+=\d+(?: [^=()\s]+=\d+)*\)"
PERF = re.compile(rf"perf gc (?P<n>[1-9]\d*):(?: {PHASE};?)*")


def fail(msg):
    sys.exit("gctrace_check: " + msg)


dump, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
for mode, perf in (("concurrent", False), ("concurrent-nobarrier", False), ("stw", False), ("stw", True),
                   ("concurrent", True)):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NHEAP_")}
    env.update(NHEAP_GC=mode, NHEAP_GOGC="10", NHEAP_DEBUG="gctrace=1")
    if perf:
        env["NHEAP_PERF_EVENTS"] = "task-clock,page-faults"
    r = subprocess.run([dump, os.path.join(out, "trace.json"), os.path.join(out, "trace.om")], env=env,
                       stderr=subprocess.PIPE, timeout=300)
    if r.returncode != 0:
        fail("%s: stats_dump failed: %s" % (mode, r.stderr.decode()))
    lines = r.stderr.decode().splitlines()
    gc = [LINE.fullmatch(l) for l in lines if l.startswith("gc ")]
    perfs = [PERF.fullmatch(l) for l in lines if l.startswith("perf gc ")]
    other = [l for l in lines if not l.startswith(("gc ", "perf gc ", "nheap: "))]
    # A concurrent mode that falls back says so once ("nheap: ..."); nothing else is allowed.
    if other:
        fail("%s: lines that are not gctrace lines: %r" % (mode, other[:3]))
    if not gc:
        fail("%s: no gctrace line" % mode)
    for l, m in zip([l for l in lines if l.startswith("gc ")], gc):
        if not m:
            fail("%s: the line does not match the documented format:\n%s" % (mode, l))
    if perf != bool(perfs) or (perf and len(perfs) != len(gc)) or not all(perfs):
        fail("%s: perf lines %d for %d cycles (perf=%s): %r" % (mode, len(perfs), len(gc), perf,
                                                                 [l for l in lines if l.startswith("perf")][:2]))
    why = set()
    for i, m in enumerate(gc):
        if int(m["n"]) != int(gc[0]["n"]) + i:
            fail("%s: cycle numbers %s then %s" % (mode, gc[i - 1]["n"], m["n"]))
        if i and float(m["t"]) < float(gc[i - 1]["t"]):
            fail("%s: time went back at cycle %s" % (mode, m["n"]))
        if float(m["next_goal"]) and float(m["next_trigger"]) > float(m["next_goal"]):
            fail("%s: trigger above the goal at cycle %s" % (mode, m["n"]))
        why.add(m["why"])
    if "forced" not in why:
        fail("%s: no forced cycle traced (stats_dump runs nh_gc three times)" % mode)
    print("gctrace_check: %s%s: %d gc lines (%s)%s match" % (mode, " + perf" if perf else "", len(gc),
                                                            ", ".join(sorted(why)),
                                                            ", %d perf lines" % len(perfs) if perfs else ""))
