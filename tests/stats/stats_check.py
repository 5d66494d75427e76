"""stats_check.py JSON OPENMETRICS MODE NODES PERF [README] -- nh_stats_write's two formats, read
by strict parsers: Python's json (no NaN or Infinity, no duplicate keys) and prometheus_client's
OpenMetrics parser (the exposition format's rules: TYPE/UNIT/HELP, _total, histogram buckets in
order, cumulative, +Inf equal to _count, # EOF). Then what both must say: the collector MODE,
NODES nodes, perf counters when PERF is 1, in use + free + released = mapped (in total and per
node), and the same figures in both. With README, every metric family must be listed there.
Run with Debian's /usr/bin/python3 (python3-prometheus-client): a missing parser fails."""
import json
import sys

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def fail(msg):
    sys.exit("stats_check: " + msg)


def no_dupes(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        fail("duplicate key in a JSON object: %r" % keys)
    return dict(pairs)


def bad_constant(c):
    fail("JSON constant %s is not JSON" % c)


json_path, om_path, mode, nodes, perf = sys.argv[1:6]
readme = sys.argv[6] if len(sys.argv) > 6 else None
with open(json_path) as f:
    j = json.load(f, object_pairs_hook=no_dupes, parse_constant=bad_constant)
with open(om_path) as f:
    text = f.read()
families = {m.name: m for m in text_string_to_metric_families(text)}

heap = j["heap"]
if heap["inuse_bytes"] + heap["free_bytes"] + heap["released_bytes"] != heap["mapped_bytes"]:
    fail("JSON heap identity: %r" % heap)
if j["gc"]["mode"] != mode:
    fail("JSON mode %s, expected %s" % (j["gc"]["mode"], mode))
if len(j["nodes"]) != int(nodes):
    fail("JSON has %d nodes, expected %s" % (len(j["nodes"]), nodes))
for n in j["nodes"]:
    if n["inuse_bytes"] + n["free_bytes"] + n["released_bytes"] != n["mapped_bytes"]:
        fail("JSON node identity: %r" % n)
if sum(n["mapped_bytes"] for n in j["nodes"]) != heap["mapped_bytes"]:
    fail("JSON nodes do not add up to the heap")
if len(j["arenas"]["list"]) != j["arenas"]["count"]:
    fail("JSON arena list: %d of %d" % (len(j["arenas"]["list"]), j["arenas"]["count"]))
hist = j["pause_histograms"]
for kind in ("all", "setup", "termination", "stop", "roots"):
    h = hist[kind]
    if len(h["counts"]) != len(hist["bucket_upper_ns"]) + 1 or sum(h["counts"]) != h["count"]:
        fail("JSON pause histogram %s malformed" % kind)
if mode != "off" and (hist["all"]["count"] != j["gc"]["pauses"] or j["gc"]["cycles"] < 3):
    fail("JSON: %d pauses in the histogram, %d counted, %d cycles" %
         (hist["all"]["count"], j["gc"]["pauses"], j["gc"]["cycles"]))
if mode != "off" and hist["setup"]["count"] + hist["termination"]["count"] != hist["all"]["count"]:
    fail("JSON: pause kinds do not add up")
if (len(j["perf"]["events"]) > 0) != (perf == "1"):
    fail("JSON perf events %r, expected perf=%s" % (j["perf"]["events"], perf))

def sample(family, **labels):
    for s in families[family].samples:
        if all(s.labels.get(k) == v for k, v in labels.items()) and not s.name.endswith(("_created",)):
            return s.value
    fail("no sample %s%r" % (family, labels))

info = families["nheap_config"].samples[0].labels
if info["gc_mode"] != mode:
    fail("OpenMetrics mode %s, expected %s" % (info["gc_mode"], mode))
states = {st: sample("nheap_heap_bytes", state=st) for st in ("inuse", "free", "released")}
if sum(states.values()) != sample("nheap_heap_mapped_bytes"):
    fail("OpenMetrics heap identity: %r" % states)
if sample("nheap_heap_mapped_bytes") != heap["mapped_bytes"]:
    fail("the formats disagree (two snapshots of an idle heap)")
nodes_seen = {s.labels["node"] for s in families["nheap_node_heap_bytes"].samples}
if len(nodes_seen) != int(nodes):
    fail("OpenMetrics nodes %r" % nodes_seen)
pauses = families["nheap_gc_pauses_seconds"]
count = [s.value for s in pauses.samples if s.name.endswith("_count")][0]
if mode != "off" and count != j["gc"]["pauses"]:
    fail("OpenMetrics pause count %s, JSON %s" % (count, j["gc"]["pauses"]))
if sample("nheap_gc_cycles") != j["gc"]["cycles"]:
    fail("cycles differ")
if ("nheap_perf_events" in families) != (perf == "1"):
    fail("OpenMetrics perf families present=%s, expected perf=%s" % ("nheap_perf_events" in families, perf))
for name, fam in families.items():
    if not name.startswith("nheap_"):
        fail("metric %s without the nheap_ prefix" % name)
    if fam.type == "counter" and not all(s.name.endswith("_total") for s in fam.samples):
        fail("counter %s without _total" % name)
if readme:
    with open(readme) as f:
        listed = f.read()
    missing = [n for n in families
               if not any("`%s%s`" % (n, suffix) in listed
                          for suffix in ("_total" if families[n].type == "counter" else "",
                                         "_info" if families[n].type == "info" else ""))]
    if missing:
        fail("metrics not listed in the README: %s" % ", ".join(missing))
print("stats_check: %s, %s node(s), perf=%s: JSON and OpenMetrics parse (%d families), identities hold"
      % (mode, nodes, perf, len(families)))
