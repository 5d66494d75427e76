"""kvserver_metrics.py KVSERVER -- the kvserver example serves its statistics: under a load of
SETs and GETs on 4 connections, GET /metrics on its port answers OpenMetrics text that
prometheus_client's parser (Debian's python3-prometheus-client; run with /usr/bin/python3)
accepts, and each scrape agrees with nh_stats_read taken just before and just after it
(GET /stats): counters that only grow (cycles, pauses) and the mapped heap (arenas are never
unmapped) lie between the two readings, and in use + free + released = mapped. The load runs
until the server has done at least 3 cycles during it (allocation drives them, not time), then
QUIT: the server checks its index and must exit 0. No timing is asserted; the timeouts only
keep a broken server from hanging the test."""
import http.client
import os
import socket
import struct
import subprocess
import sys
import threading

from prometheus_client.openmetrics.parser import text_string_to_metric_families


def fail(msg):
    sys.exit("kvserver_metrics: " + msg)


KEYS = 2000
server = subprocess.Popen([sys.argv[1], "serve", "concurrent", str(KEYS)], stdout=subprocess.PIPE)
line = server.stdout.readline().decode()
if not line.startswith("PORT "):
    fail("no PORT line: %r" % line)
port = int(line.split()[1])
stop = threading.Event()
errors = []


def recv_full(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError("connection closed")
        b += c
    return b


def load(seed):
    """Binary SETs (a fresh value of key's low byte, 64..2048 bytes) and GETs, checked."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=60)
        x = seed
        while not stop.is_set():
            x = (x * 6364136223846793005 + 1442695040888963407) % (1 << 64)
            key = (x >> 33) % KEYS
            if x & (1 << 20):
                n = 64 + (x >> 40) % 1985
                s.sendall(b"S" + struct.pack("<II", key, n) + bytes([key & 255]) * n)
                if struct.unpack("<I", recv_full(s, 4))[0] != 0:
                    raise ValueError("bad SET reply")
            else:
                s.sendall(b"G" + struct.pack("<I", key))
                n = struct.unpack("<I", recv_full(s, 4))[0]
                if n == 0xFFFFFFFF or recv_full(s, n) != bytes([key & 255]) * n:
                    raise ValueError("bad GET reply for key %d" % key)
        s.close()
    except Exception as e:  # reported by the main thread
        errors.append(repr(e))


def get(path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read().decode()
    c.close()
    if r.status != 200:
        fail("GET %s: %d" % (path, r.status))
    return r.getheader("Content-Type"), body


def stats():
    _, body = get("/stats")
    return {k: int(v) for k, v in (f.split("=") for f in body.split())}


def value(families, name, **labels):
    for s in families[name].samples:
        if all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    fail("no sample %s %r" % (name, labels))


threads = [threading.Thread(target=load, args=(i + 1,)) for i in range(4)]
for t in threads:
    t.start()
first = stats()
scrapes = 0
try:
    while True:
        before = stats()
        ctype, text = get("/metrics")
        after = stats()
        scrapes += 1
        if not ctype.startswith("application/openmetrics-text"):
            fail("Content-Type %r" % ctype)
        families = {m.name: m for m in text_string_to_metric_families(text)}
        cycles = value(families, "nheap_gc_cycles")
        mapped = value(families, "nheap_heap_mapped_bytes")
        pauses = [s.value for s in families["nheap_gc_pauses_seconds"].samples if s.name.endswith("_count")][0]
        for name, v in (("gc_cycles", cycles), ("heap_mapped_bytes", mapped), ("gc_pauses", pauses)):
            if not before[name] <= v <= after[name]:
                fail("scrape %d: %s = %d, not between nh_stats_read's %d and %d"
                     % (scrapes, name, v, before[name], after[name]))
        states = sum(value(families, "nheap_heap_bytes", state=st) for st in ("inuse", "free", "released"))
        if states != mapped:
            fail("scrape %d: in use + free + released = %d, mapped %d" % (scrapes, states, mapped))
        if errors:
            fail("the load failed: %s" % errors)
        if after["gc_cycles"] >= first["gc_cycles"] + 3 and scrapes >= 5:
            break
        if scrapes > 5000:
            fail("only %d cycles in %d scrapes" % (after["gc_cycles"] - first["gc_cycles"], scrapes))
finally:
    stop.set()
    for t in threads:
        t.join()
if errors:
    fail("the load failed: %s" % errors)
c = socket.create_connection(("127.0.0.1", port), timeout=60)
c.sendall(b"Q" + struct.pack("<I", 0))
c.close()
out, _ = server.communicate(timeout=120)
if server.returncode != 0 or b"check=%d" % KEYS not in out:
    fail("the server failed (exit %d): %s" % (server.returncode, out.decode()))
print("kvserver_metrics: %d scrapes parsed, each between two nh_stats_read readings, over %d cycles"
      % (scrapes, after["gc_cycles"] - first["gc_cycles"]))
