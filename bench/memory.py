#!/usr/bin/env python3
"""Resident memory of proxies under slow and greedy clients, side by side.

Starts one throw-away cluster (`clusterless dev` of the first binary, its own proxy unused), then
for each scenario and each proxy binary in turn a fresh proxy in front of it, and samples the
proxy's RSS every 5 ms: its base, its peak, and what stays 3 s after the scenario ended.

  bench/memory.py --proxy after=target/release/clusterless \
                  --proxy before=/path/to/older/clusterless [--cap-args after='--max-memory 64mb']

Scenarios (the same load for every proxy):
  slow-subscriber  one subscriber never reads, another reads everything, 100,000 1 KB messages
  big-value        one 64 MB value written then read
  burst            20 clients each GET 16 values of 512 KB, three times
  greedy           a client pipelines 2,000 GETs of 1 MB values and never reads (with cap-args)

Needs python3 with redis-py (scripts/setup installs it). Loopback only; stops only what it started.
"""

import argparse
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import redis

MB = 1 << 20


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except FileNotFoundError:
        return 0
    return 0


class Sampler:
    """RSS of `pid` every 5 ms while running."""

    def __init__(self, pid):
        self.pid, self.peak, self.stop = pid, 0, False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop:
            self.peak = max(self.peak, rss(self.pid))
            time.sleep(0.005)

    def done(self):
        self.stop = True
        self.t.join()
        return self.peak


def wait_until(what, cond, limit=30):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            if cond():
                return
        except (OSError, redis.RedisError):
            pass
        time.sleep(0.05)
    sys.exit(f"bench/memory.py: timed out waiting for {what}")


def ready(admin):
    with urllib.request.urlopen(f"http://{admin}/readyz", timeout=2) as r:
        return r.status == 200


class Proxy:
    def __init__(self, path, seed, extra, log):
        self.port, admin = free_port(), free_port()
        self.admin = f"127.0.0.1:{admin}"
        args = [path, "--seed", seed, "--listen", f"127.0.0.1:{self.port}", "--metrics", self.admin]
        self.p = subprocess.Popen(args + extra, stdout=subprocess.DEVNULL, stderr=log)
        wait_until("the proxy", lambda: ready(self.admin))

    def close(self):
        self.p.terminate()
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


def slow_subscriber(port):
    total = 100_000
    slow = socket.create_connection(("127.0.0.1", port))
    slow.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$2\r\nch\r\n")
    reader = socket.create_connection(("127.0.0.1", port))
    reader.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$2\r\nch\r\n")
    confirm = b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"
    for s in (slow, reader):
        got = b""
        while len(got) < len(confirm):
            got += s.recv(len(confirm) - len(got))
    frame_len = len(b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1024\r\n") + 1024 + 2
    count = [0]

    def read_all():
        want, have = total * frame_len, 0
        reader.settimeout(10)
        try:
            while have < want:
                b = reader.recv(1 << 20)
                if not b:
                    break
                have += len(b)
        except socket.timeout:
            pass
        count[0] = have // frame_len

    t = threading.Thread(target=read_all)
    t.start()
    pub = socket.create_connection(("127.0.0.1", port))
    msg = b"x" * 1024
    one = b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$1024\r\n" + msg + b"\r\n"
    for _ in range(total // 500):
        pub.sendall(one * 500)
        want = 500 * 4
        while want > 0:
            want -= len(pub.recv(want))
    t.join()
    slow.settimeout(5)
    closed = False
    try:
        while True:
            b = slow.recv(1 << 20)
            if not b:
                closed = True
                break
    except (socket.timeout, ConnectionResetError):
        closed = not isinstance(sys.exc_info()[1], socket.timeout)
    for s in (slow, reader, pub):
        s.close()
    return f"reader got {count[0]}/{total}, slow subscriber {'closed' if closed else 'still open'}"


def big_value(port):
    r = redis.Redis(port=port)
    v = b"b" * (64 * MB)
    r.set("bench:huge", v)
    assert r.get("bench:huge") == v
    r.delete("bench:huge")
    r.close()
    return "64 MB written and read"


def burst(port):
    r = redis.Redis(port=port)
    value = b"c" * (512 * 1024)
    for i in range(16):
        r.set(f"bench:mid:{i}", value)

    def one():
        c = redis.Redis(port=port)
        for _ in range(3):
            p = c.pipeline(transaction=False)
            for i in range(16):
                p.get(f"bench:mid:{i}")
            assert all(len(x) == len(value) for x in p.execute())
        c.close()

    ts = [threading.Thread(target=one) for _ in range(20)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return "20 clients x 3 x 16 GETs of 512 KB"


def metric(admin, name):
    with urllib.request.urlopen(f"http://{admin}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def greedy(port, admin):
    r = redis.Redis(port=port)
    for i in range(8):
        r.set(f"bench:big:{i}", b"v" * MB)
    before = metric(admin, "clusterless_client_connections")
    g = socket.create_connection(("127.0.0.1", port))
    data = b"".join(b"*2\r\n$3\r\nGET\r\n$11\r\nbench:big:%d\r\n" % (i % 8) for i in range(2000))
    threading.Thread(target=_send_quietly, args=(g, data), daemon=True).start()
    wait_until("the greedy client to connect", lambda: metric(admin, "clusterless_client_connections") > before)
    # Never read; see whether the proxy closes it within 10 s.
    deadline = time.time() + 10
    while time.time() < deadline and metric(admin, "clusterless_client_connections") > before:
        time.sleep(0.05)
    closed = metric(admin, "clusterless_client_connections") <= before
    g.close()
    r.close()
    return f"greedy client {'closed' if closed else 'still open after 10 s'}"


def _send_quietly(s, data):
    try:
        s.sendall(data)
    except OSError:
        pass


SCENARIOS = [("slow-subscriber", slow_subscriber), ("big-value", big_value), ("burst", burst), ("greedy", greedy)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--proxy", action="append", required=True, help="NAME=PATH to a clusterless binary")
    ap.add_argument("--cap-args", action="append", default=[], help="NAME='ARGS' for the greedy scenario")
    ap.add_argument("--json", help="also write the figures as JSON here")
    a = ap.parse_args()
    proxies = [p.split("=", 1) for p in a.proxy]
    cap = {k: shlex.split(v) for k, v in (c.split("=", 1) for c in a.cap_args)}
    logdir = tempfile.mkdtemp(prefix="clusterless-bench-memory-")
    log = open(os.path.join(logdir, "proxies.log"), "w")
    dev_port, dev_admin = free_port(), free_port()
    dev = subprocess.Popen(
        [proxies[0][1], "dev", "--port", str(dev_port), "--replicas", "0", "--metrics", f"127.0.0.1:{dev_admin}"],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    rows = []
    try:
        wait_until("the dev cluster", lambda: ready(f"127.0.0.1:{dev_admin}"), 60)
        with urllib.request.urlopen(f"http://127.0.0.1:{dev_admin}/topology") as r:
            seed = json.load(r)["nodes"][0]["address"]
        for name, run in SCENARIOS:
            for label, path in proxies:
                extra = cap.get(label, []) if name == "greedy" else []
                p = Proxy(path, seed, extra, log)
                base = rss(p.p.pid)
                s = Sampler(p.p.pid)
                note = run(p.port, p.admin) if name == "greedy" else run(p.port)
                peak = s.done()
                time.sleep(3)
                after = rss(p.p.pid)
                p.close()
                rows.append(dict(scenario=name, proxy=label, base=base, peak=peak, after=after, note=note))
                print(f"{name:16} {label:8} base {base / MB:6.1f} MB  peak {peak / MB:7.1f} MB  "
                      f"3 s after {after / MB:6.1f} MB  {note}", flush=True)
    finally:
        dev.terminate()
        dev.wait()
        log.close()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
