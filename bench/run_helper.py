#!/usr/bin/env python3
"""Helpers for bench/run (standard library only): RESP client, connection churn, idle
connections with RSS, per-node MGET fan-out count, sanity checks, memtier JSON parsing and the
Markdown report. Usage: run_helper.py SUBCOMMAND ARGS... (see the functions below)."""
import json
import os
import random
import socket
import struct
import sys
import time

HOST = "127.0.0.1"


class Err(str):
    pass


def enc(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if not isinstance(a, bytes):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Conn:
    def __init__(self, port, host=HOST, timeout=10):
        self.s = socket.create_connection((host, int(port)), timeout=timeout)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def _fill(self):
        d = self.s.recv(1 << 16)
        if not d:
            raise EOFError("connection closed by peer")
        self.buf += d

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        i = self.buf.index(b"\r\n")
        line, self.buf = self.buf[:i], self.buf[i + 2:]
        return line

    def read(self):
        line = self._line()
        t, r = line[:1], line[1:]
        if t == b"+":
            return r.decode()
        if t == b"-":
            return Err(r.decode())
        if t == b":":
            return int(r)
        if t == b"$":
            n = int(r)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill()
            v, self.buf = self.buf[:n], self.buf[n + 2:]
            return v
        if t == b"*":
            n = int(r)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise ValueError("unexpected reply line %r" % line)

    def cmd(self, *args):
        self.s.sendall(enc(*args))
        return self.read()

    def close(self):
        self.s.close()


def crc16(data):
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def keyslot(key):
    k = key.encode() if isinstance(key, str) else key
    s = k.find(b"{")
    if s >= 0:
        e = k.find(b"}", s + 1)
        if e > s + 1:
            k = k[s + 1:e]
    return crc16(k) % 16384


def slot_owners(seed_port):
    """slot -> master port, from CLUSTER SLOTS on the seed."""
    c = Conn(seed_port)
    owners = [None] * 16384
    for entry in c.cmd("CLUSTER", "SLOTS"):
        port = int(entry[2][1])
        for s in range(int(entry[0]), int(entry[1]) + 1):
            owners[s] = port
    c.close()
    return owners


def proc_field(path, prefix, missing):
    """The first integer after `prefix` in a /proc file such as /proc/PID/status."""
    with open(path) as f:
        for line in f:
            if line.startswith(prefix):
                return int(line.split()[1])
    return missing


def read_line(s):
    """Bytes from socket s up to the first CRLF (a one-line reply), or what came before EOF."""
    buf = b""
    while b"\r\n" not in buf:
        d = s.recv(512)
        if not d:
            break
        buf += d
    return buf


def vmrss_kb(pid):
    return proc_field("/proc/%s/status" % pid, "VmRSS:", -1)


def cmd_masters(seed_port):
    """Print the master ports of the cluster, one a line."""
    print("\n".join(str(p) for p in sorted(set(p for p in slot_owners(seed_port) if p))))


def cmd_wait(port, seconds="60"):
    """Wait until PING answers PONG (and, through a proxy, a keyed command works)."""
    deadline = time.time() + float(seconds)
    last = ""
    while time.time() < deadline:
        try:
            c = Conn(port, timeout=2)
            if c.cmd("PING") == "PONG":
                r = c.cmd("GET", "bench:wait")
                c.close()
                if not isinstance(r, Err) or r.startswith("MOVED"):
                    return
                last = r
            c.close()
        except (OSError, EOFError, ValueError) as e:
            last = str(e)
        time.sleep(0.2)
    sys.exit("port %s not ready after %ss: %s" % (port, seconds, last))


def cmd_probe(port, timeout="3"):
    """ok when SET and GET answer within timeout seconds, else what went wrong."""
    try:
        c = Conn(port, timeout=float(timeout))
        r = c.cmd("SET", "bench:probe", "1")
        r2 = c.cmd("GET", "bench:probe")
        c.close()
        print("ok" if r == "OK" and r2 == b"1" else "SET -> %r, GET -> %r" % (r, r2))
    except socket.timeout:
        print("no reply within %ss" % timeout)
    except (OSError, EOFError, ValueError) as e:
        print("error: %s" % e)


def cmd_sanity(port):
    """MSET then MGET of 10 keys in 10 different slots; prints ok or the error."""
    try:
        c = Conn(port)
        keys, slots = [], set()
        i = 0
        while len(keys) < 10:
            k = "bench:sanity:%d" % i
            i += 1
            if keyslot(k) not in slots:
                slots.add(keyslot(k))
                keys.append(k)
        args = []
        for k in keys:
            args += [k, "v-" + k]
        r = c.cmd("MSET", *args)
        if r != "OK":
            print("MSET -> %s" % r)
            return
        r = c.cmd("MGET", *keys)
        if isinstance(r, Err):
            print("MGET -> %s" % r)
            return
        want = [("v-" + k).encode() for k in keys]
        print("ok" if r == want else "MGET returned %r" % (r,))
        c.close()
    except (OSError, EOFError, ValueError) as e:
        print("error: %s" % e)


def cmd_churn(port, n, seed_port="-"):
    """n times: connect, SET one key, read the reply, close. With seed_port (direct cluster) the
    key's owner is looked up first and connected to. Prints JSON."""
    n = int(n)
    key = "bench:churn"
    if seed_port != "-":
        port = slot_owners(seed_port)[keyslot(key)]
    req = enc("SET", key, "x")
    lat, errors = [], 0
    t0 = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        try:
            s = socket.create_connection((HOST, int(port)), timeout=5)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(req)
            buf = read_line(s)
            if not buf.startswith(b"+OK"):
                errors += 1
            s.close()
        except OSError:
            errors += 1
        lat.append(time.perf_counter() - t)
    wall = time.perf_counter() - t0
    lat.sort()
    print(json.dumps({"n": n, "wall": wall, "cps": n / wall, "p50_ms": lat[len(lat) // 2] * 1e3,
                      "p99_ms": lat[int(len(lat) * 0.99)] * 1e3, "errors": errors}))


def cmd_idle(port, pid, n):
    """RSS of pid before, with n idle clients (each answered one PING) 2 s and 7 s after they
    all answered (a proxy may let go of an idle client's buffers after a while, as Redis does
    after 2 s), and after they closed."""
    n = int(n)
    time.sleep(1)
    before = vmrss_kb(pid)
    socks, failed, first_err = [], 0, ""
    ping = enc("PING")
    t0 = time.time()
    for _ in range(n):
        try:
            s = socket.create_connection((HOST, int(port)), timeout=10)
            s.sendall(ping)
            socks.append(s)
        except OSError as e:
            failed += 1
            first_err = first_err or str(e)
    answered = 0
    for s in socks:
        try:
            buf = read_line(s)
            if buf.startswith(b"+PONG"):
                answered += 1
            elif not first_err:
                first_err = buf.decode(errors="replace").strip()
        except OSError as e:
            first_err = first_err or str(e)
    open_secs = time.time() - t0
    time.sleep(2)
    with_clients = vmrss_kb(pid)
    time.sleep(5)
    settled = vmrss_kb(pid)
    linger = struct.pack("ii", 1, 0)
    for s in socks:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)  # RST: no TIME_WAIT pile-up
        s.close()
    time.sleep(2)
    after = vmrss_kb(pid)
    print(json.dumps({"n": n, "answered": answered, "failed": failed, "error": first_err,
                      "open_secs": open_secs, "rss_idle_kb": before, "rss_n_kb": with_clients,
                      "rss_settled_kb": settled, "rss_after_kb": after}))


def commandstats(port):
    c = Conn(port)
    text = c.cmd("INFO", "commandstats").decode()
    c.close()
    calls = {}
    for line in text.splitlines():
        if line.startswith("cmdstat_"):
            name, rest = line[len("cmdstat_"):].split(":", 1)
            fields = dict(kv.split("=") for kv in rest.split(","))
            calls[name] = int(fields["calls"])
    return calls


def read_syscalls(pid):
    return proc_field("/proc/%s/io" % pid, "syscr:", 0)


def cmd_fanout(proxy_port, seed_port, n, batch="1", node_pids=""):
    """n MGETs of 10 random keys in 10 different slots through the proxy, `batch` of them per
    client write. Per master: MGETs that had at least one key there (expected), mget/get calls
    from INFO commandstats (Redis Cluster takes one slot per MGET, so at best one call per slot
    group), and read(2) calls of the node process (/proc/PID/io syscr; node_pids is
    "port=pid,..."), less the same-length idle window: about one per round trip. Prints JSON."""
    n, batch = int(n), int(batch)
    pids = dict(kv.split("=") for kv in node_pids.split(",") if "=" in kv)
    owners = slot_owners(seed_port)
    masters = sorted(set(p for p in owners if p))
    rng = random.Random(7)
    batches, expected = [], {m: 0 for m in masters}
    for i in range(0, n, batch):
        reqs = []
        for _ in range(min(batch, n - i)):
            keys, slots = [], set()
            while len(keys) < 10:
                k = "bench:fan:%d" % rng.randrange(1 << 30)
                if keyslot(k) not in slots:
                    slots.add(keyslot(k))
                    keys.append(k)
            for m in set(owners[s] for s in slots):
                expected[m] += 1
            reqs.append(enc("MGET", *keys))
        batches.append(reqs)
    try:
        c = Conn(proxy_port)
        c.cmd("PING")
        before = {m: commandstats(m) for m in masters}
        io0 = {m: read_syscalls(pids[str(m)]) for m in masters if str(m) in pids}
        t0 = time.perf_counter()
        errors = 0
        for reqs in batches:
            c.s.sendall(b"".join(reqs))
            for _ in reqs:
                r = c.read()
                if not isinstance(r, list) or len(r) != 10:
                    errors += 1
        elapsed = time.perf_counter() - t0
        io1 = {m: read_syscalls(pids[str(m)]) for m in io0}
        after = {m: commandstats(m) for m in masters}
        c.close()
        io2 = {m: read_syscalls(pids[str(m)]) for m in io0}
        time.sleep(elapsed)
        io3 = {m: read_syscalls(pids[str(m)]) for m in io0}
    except (OSError, EOFError, ValueError) as e:
        print(json.dumps({"error": "%s: %s" % (type(e).__name__, e)}))
        return
    nodes = []
    for m in masters:
        d = {k: after[m].get(k, 0) - before[m].get(k, 0) for k in ("mget", "get")}
        reads = (io1[m] - io0[m]) - (io3[m] - io2[m]) if m in io0 else None
        nodes.append({"port": m, "expected": expected[m], "mget": d["mget"], "get": d["get"],
                      "reads": reads})
    print(json.dumps({"n": n, "batch": batch, "errors": errors, "secs": elapsed, "nodes": nodes}))


def _num(x):
    try:
        v = float(x)
        return None if v != v else v
    except (TypeError, ValueError):
        return None


def cmd_record(outfile, rnd, workload, target, proxy_ticks, node_ticks, status, tool="-",
               path="-", duration="0", *weights):
    """Append one run (memtier --json-out-file, or redis-benchmark --csv output weighted by the
    requests of each test) to outfile as a JSON line."""
    # "total:kernel" clock ticks (see cpu_ticks in bench/run)
    (proxy_ticks, proxy_sys), (node_ticks, node_sys) = (
        ((x.split(":") + [None])[:2] for x in (proxy_ticks, node_ticks)))
    rec = {"round": int(rnd), "workload": workload, "target": target,
           "proxy_ticks": _num(proxy_ticks), "node_ticks": _num(node_ticks),
           "proxy_sys": _num(proxy_sys), "node_sys": _num(node_sys), "status": status,
           "ops": None, "p50": None, "p99": None, "p999": None, "count": 0}
    if status == "ok":
        try:
            if tool == "memtier":
                d = json.load(open(path))["ALL STATS"]["Totals"]
                p = d.get("Percentile Latencies", {})
                # memtier's own Ops/sec divides by a start-to-finish time that is sometimes off
                # by a second (seen: 4 ms and 2003 ms for 1 s runs); the per-second series of
                # the full seconds of the run is reliable
                secs = int(duration)
                series = d.get("Time-Serie", {})
                full = [series[str(i)]["Count"] for i in range(secs) if str(i) in series]
                ops = sum(full) / len(full) if full and len(full) == secs else d["Ops/sec"]
                rec.update(ops=ops, p50=_num(p.get("p50.00")), p99=_num(p.get("p99.00")),
                           p999=_num(p.get("p99.90")), count=d["Count"])
            else:
                import csv
                rows = [r for r in csv.reader(open(path)) if len(r) >= 8 and _num(r[1])]
                cols = ["test", "rps", "avg", "min", "p50", "p95", "p99", "max"]
                rows = [dict(zip(cols, r)) for r in rows]
                w = [float(x) for x in weights] or [1.0] * len(rows)
                total = sum(w)
                secs = sum(wi / float(r["rps"]) for wi, r in zip(w, rows))
                rec.update(ops=total / secs, count=int(total),
                           p50=sum(wi * float(r["p50"]) for wi, r in zip(w, rows)) / total,
                           p99=sum(wi * float(r["p99"]) for wi, r in zip(w, rows)) / total)
        except (OSError, ValueError, KeyError, ZeroDivisionError) as e:
            rec["status"] = "unreadable output: %s" % e
    with open(outfile, "a") as f:
        f.write(json.dumps(rec) + "\n")


def cmd_perfstat(outfile, rnd, workload, target, path):
    """Append the counts of one `perf stat -x,` output (system calls, context switches of the
    target's process during one run) to outfile as a JSON line."""
    counts = {}
    try:
        for ln in open(path):
            f = ln.strip().split(",")
            if len(f) >= 3 and _num(f[0]) is not None:
                counts[f[2]] = _num(f[0])
    except OSError:
        pass
    rec = {"round": int(rnd), "workload": workload, "target": target,
           "syscalls": counts.get("raw_syscalls:sys_enter"), "cs": counts.get("context-switches")}
    with open(outfile, "a") as f:
        f.write(json.dumps(rec) + "\n")


def cmd_append(outfile, target, text):
    """Append a helper's JSON output (text) to outfile with the target's name added."""
    d = json.loads(text) if text.startswith("{") else {"result": text}
    d["target"] = target
    with open(outfile, "a") as f:
        f.write(json.dumps(d) + "\n")


# ---------------------------------------------------------------- report

def fnum(x, nd=0):
    if x is None or x != x:
        return "–"
    return "{:,.{}f}".format(x, nd).replace(",", " ") if nd == 0 else "%.*f" % (nd, x)


def mean(xs):
    xs = [x for x in xs if x is not None and x == x]
    return sum(xs) / len(xs) if xs else None


def cmd_report(dirpath):
    def lines(name):
        p = os.path.join(dirpath, name)
        return [ln.rstrip("\n") for ln in open(p)] if os.path.exists(p) else []

    meta = dict(ln.split("=", 1) for ln in lines("meta.env") if "=" in ln)
    meta["commands"] = lines("commands.txt")
    meta["clk_tck"] = float(meta["clk_tck"])
    targets = []
    for ln in lines("targets.tsv"):
        name, port, kind, pid, desc = ln.split("\t")
        targets.append({"name": name, "port": port, "kind": kind, "pid": pid, "desc": desc})
    workloads = []
    for ln in lines("workloads.tsv"):
        name, typ, ratio, size, pipeline, conns = ln.split("\t")
        # Latency rows: one client, or a held rate; their p99s compare equal loads.
        workloads.append({"name": name, "typ": typ, "pipeline": int(pipeline),
                          "latency": conns == "1x1" or "@" in conns})
    meta["targets"], meta["workloads"] = targets, workloads
    runs = [json.loads(ln) for ln in lines("runs.jsonl")]
    churn = [json.loads(ln) for ln in lines("churn.jsonl")]
    perf = [json.loads(ln) for ln in lines("syscalls.jsonl")]
    extra = {}
    for name in ("idle", "fanout", "sanity", "rss_fresh", "idle_cpu"):
        extra[name] = [json.loads(ln) for ln in lines(name + ".jsonl")]
    failed = [e for e in extra["idle"] + extra["fanout"] if "result" in e]
    extra["idle"] = [e for e in extra["idle"] if "result" not in e]
    extra["fanout"] = [e for e in extra["fanout"] if "result" not in e]
    churn = [c for c in churn if "cps" in c]
    tick = meta["clk_tck"]
    targets = meta["targets"]
    workloads = meta["workloads"]
    out = []
    w = out.append
    w("# clusterless benchmark report (%s)" % meta["date"])
    w("")
    w("- Commit: `%s`; machine: %s cores, %s; %s; load tool: %s." % (
        meta["commit"], meta["nproc"], meta["kernel"], meta["redis"], meta["tool"]))
    w("- Cluster: %s. Standalone: redis-server `--save \"\" --appendonly no`." % meta["cluster"])
    w("- %s round(s), %s s per run, interleaved (every target once per workload, then the next "
      "workload); %s keys per value size, preloaded; memtier `-t 2 -c 25` (50 clients) unless the "
      "workload says 1 client." % (
          meta["rounds"], meta["duration"], meta["keys"]))
    for t in targets:
        w("- `%s`: %s" % (t["name"], t["desc"]))
    w("- Everything shares the 2 cores with the load tool: only ratios taken in this one run mean "
      "anything. Figures are means over rounds; latencies in µs; CPU = utime+stime from "
      "/proc/PID/stat around each run, divided by the operations memtier counted; (kernel) = stime "
      "alone.")
    w("")

    def agg(wl, tn):
        rs = [r for r in runs if r["workload"] == wl and r["target"] == tn and r["status"] == "ok"]
        if not rs:
            st = [r["status"] for r in runs if r["workload"] == wl and r["target"] == tn]
            return {"status": st[0] if st else "not run"}
        res = {"status": "ok", "ops": mean([r["ops"] for r in rs]),
               "ops_min": min(r["ops"] for r in rs), "ops_max": max(r["ops"] for r in rs)}
        for k in ("p50", "p99", "p999"):
            res[k] = mean([r[k] * 1000 for r in rs if r[k] is not None])
        count = sum(r["count"] for r in rs)
        for k in ("proxy_ticks", "node_ticks", "proxy_sys", "node_sys"):
            v = [r[k] for r in rs if r.get(k) is not None]
            res[k] = (sum(v) / tick) / (count / 1e6) if v and count else None
        return res

    def with_kernel(a, who):
        total, kernel = a["%s_ticks" % who], a["%s_sys" % who]
        if total is None or kernel is None:
            return fnum(total, 2)
        return "%s (%s)" % (fnum(total, 2), fnum(kernel, 2))

    w("## Throughput, latency, CPU")
    w("")
    w("| workload | target | ops/s | (min–max) | p50 µs | p99 µs | p99.9 µs | proxy CPU s/Mops "
      "(kernel) | nodes CPU s/Mops (kernel) |")
    w("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    A = {}
    for wl in workloads:
        for t in targets:
            a = agg(wl["name"], t["name"])
            A[(wl["name"], t["name"])] = a
            if a["status"] != "ok":
                w("| %s | %s | %s | | | | | | |" % (wl["name"], t["name"], a["status"]))
                continue
            w("| %s | %s | %s | %s–%s | %s | %s | %s | %s | %s |" % (
                wl["name"], t["name"], fnum(a["ops"]), fnum(a["ops_min"]), fnum(a["ops_max"]),
                fnum(a["p50"]), fnum(a["p99"]), fnum(a["p999"]), with_kernel(a, "proxy"),
                with_kernel(a, "node")))
    w("")
    w("## Ratios (clusterless against the others)")
    w("")
    names = [t["name"] for t in targets]
    peers = [t["name"] for t in targets if t["kind"] == "proxy" and t["name"] != "clusterless"]
    hdr = "| workload | ops ÷ direct | ops ÷ standalone | p99 added over direct µs |"
    sep = "|---|---:|---:|---:|"
    for p in peers:
        hdr += " ops ÷ %s | %s CPU ÷ clusterless CPU |" % (p, p)
        sep += "---:|---:|"
    w(hdr)
    w(sep)

    def ratio(a, b, k="ops"):
        if a.get("status") != "ok" or b.get("status") != "ok" or not a.get(k) or not b.get(k):
            return None
        return a[k] / b[k]

    summary = {"p1": [], "p16": [], "p99add": [], "cpu": [], "floor": []}
    if "clusterless" in names:
        for wl in workloads:
            c = A[(wl["name"], "clusterless")]
            d = A.get((wl["name"], "direct"), {"status": "–"})
            s = A.get((wl["name"], "standalone"), {"status": "–"})
            rd, rs = ratio(c, d), ratio(c, s)
            add = (c["p99"] - d["p99"]) if c.get("status") == "ok" and d.get("status") == "ok" \
                else None
            row = "| %s | %s | %s | %s |" % (wl["name"], fnum(rd, 2), fnum(rs, 2), fnum(add))
            best_peer_cpu = None
            peer_cpu = []
            for p in peers:
                pa = A[(wl["name"], p)]
                if pa.get("status") == "ok" and pa["proxy_ticks"]:
                    peer_cpu.append(pa["proxy_ticks"])
                cpu = ratio(pa, c, "proxy_ticks")
                row += " %s | %s |" % (fnum(ratio(c, pa), 2), fnum(cpu, 2))
                if cpu is not None:
                    best_peer_cpu = cpu if best_peer_cpu is None else min(best_peer_cpu, cpu)
            w(row)
            if wl["latency"]:
                if add is not None:
                    summary["p99add"].append((add, wl["name"]))
            elif rd is not None:
                summary["p1" if wl["pipeline"] == 1 else "p16"].append((rd, wl["name"]))
            if best_peer_cpu is not None:
                summary["cpu"].append((best_peer_cpu, wl["name"]))
            if peer_cpu and not wl["latency"] and s.get("status") == "ok" and s.get("node_sys") is not None:
                summary["floor"].append((s["node_sys"] / min(peer_cpu), wl["name"], wl["typ"], wl["pipeline"]))
    w("")
    w("Latency at saturation compares different throughputs (closed loop: latency ≈ clients ÷ "
      "throughput), so *p99 added* is meaningful only in the rows where every target carries the same "
      "load: one client, and 50 clients held to a fixed rate (memtier `--rate-limiting`). In cluster "
      "mode memtier's client keeps a connection per master, one request in flight on each.")
    w("")
    if perf:
        w("## System calls and context switches per operation (perf stat)")
        w("")
        w("Of the process in the middle (the proxy; for *standalone*, the server itself), counted "
          "with `perf stat -e raw_syscalls:sys_enter,context-switches -p PID` around each run and "
          "divided by the operations memtier counted; means over rounds. A request costs a proxy at "
          "least one read and one write on the client's socket (at pipeline 16, shared by 16), plus "
          "its share of the node side.")
        w("")
        shown = [t["name"] for t in targets if any(x["target"] == t["name"] for x in perf)]
        w("| workload | " + " | ".join("%s syscalls (cs)" % n for n in shown) + " |")
        w("|---|" + "---:|" * len(shown))
        count = {(r["round"], r["workload"], r["target"]): r["count"] for r in runs if r["status"] == "ok"}
        for wl in workloads:
            cells = []
            for n in shown:
                xs = [(x["syscalls"] / count[k], (x["cs"] or 0) / count[k]) for x in perf
                      for k in [(x["round"], x["workload"], x["target"])]
                      if x["workload"] == wl["name"] and x["target"] == n and x["syscalls"] is not None
                      and count.get(k)]
                cells.append("%s (%s)" % (fnum(mean([a for a, _ in xs]), 2), fnum(mean([b for _, b in xs]), 2))
                             if xs else "–")
            w("| %s | %s |" % (wl["name"], " | ".join(cells)))
        w("")
    w("## Connection churn (%s connections: connect, one SET, close; one after the other)" %
      (churn[0]["n"] if churn else "–"))
    w("")
    w("| target | connections/s | per connection p50 µs | p99 µs | errors | proxy CPU ms per 1000 |")
    w("|---|---:|---:|---:|---:|---:|")
    for t in targets:
        cs = [c for c in churn if c["target"] == t["name"]]
        if not cs:
            continue
        ticks = [c["proxy_ticks"] for c in cs if c["proxy_ticks"] is not None]
        cpu = (sum(ticks) / tick * 1000) / (sum(c["n"] for c in cs) / 1000) if ticks else None
        w("| %s | %s | %s | %s | %d | %s |" % (
            t["name"], fnum(mean([c["cps"] for c in cs])), fnum(mean([c["p50_ms"] * 1000 for c in cs])),
            fnum(mean([c["p99_ms"] * 1000 for c in cs])), sum(c["errors"] for c in cs), fnum(cpu, 1)))
    w("")
    if extra["idle"]:
        w("## Memory (VmRSS)")
        w("")
        w("| process | fresh (before load) MB | idle after the load MB | with N idle clients MB "
          "(2 s / 7 s after) | N answered / opened | KB per idle client (2 s / 7 s) "
          "| after they closed MB |")
        w("|---|---:|---:|---:|---:|---:|---:|")
        fresh = {f["target"]: f["rss_kb"] for f in extra["rss_fresh"]}
        for i in extra["idle"]:
            settled = i.get("rss_settled_kb", i["rss_n_kb"])
            per = (i["rss_n_kb"] - i["rss_idle_kb"]) / i["answered"] if i["answered"] else None
            per7 = (settled - i["rss_idle_kb"]) / i["answered"] if i["answered"] else None
            fr = fresh.get(i["target"])
            w("| %s | %s | %s | %s / %s | %d / %d%s | %s / %s | %s |" % (
                i["target"], fnum(fr / 1024 if fr else None, 1), fnum(i["rss_idle_kb"] / 1024, 1),
                fnum(i["rss_n_kb"] / 1024, 1), fnum(settled / 1024, 1), i["answered"], i["n"],
                (" (" + i["error"] + ")") if i["error"] else "", fnum(per, 1), fnum(per7, 1),
                fnum(i["rss_after_kb"] / 1024, 1)))
        w("")
    if extra["idle_cpu"]:
        w("Idle CPU (10 s before the load, nothing connected; a sidecar pays this all day): " + ", ".join(
            "%s %s ms/s" % (c["target"], fnum(c["ns"] / 1e6 / c["secs"], 2))
            for c in extra["idle_cpu"]) + ".")
        w("")
    if extra["fanout"]:
        w("## MGET fan-out: work per node")
        w("")
        w("N MGETs of 10 keys in 10 different slots, sent one at a time (or 16 per client write). "
          "*expected* = MGETs with at least one key on that master: one round trip per node per "
          "MGET means node reads ≈ expected (≈ expected/16 or more when 16 arrive together). "
          "*mget calls* = INFO commandstats (a node takes one slot per MGET, so ≥ one call per "
          "slot group); *reads* = read(2) calls of the node process (/proc/PID/io) during the "
          "run, less an idle window of the same length.")
        w("")
        w("| proxy | N | per write | node | expected | mget calls | get calls | reads | reads ÷ expected | errors |")
        w("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|")
        for f in extra["fanout"]:
            if "error" in f:
                w("| %s | | | | | | | | | %s |" % (f["target"], f["error"]))
                continue
            for nd in f["nodes"]:
                rd = nd.get("reads")
                w("| %s | %d | %d | :%d | %d | %d | %d | %s | %s | %d |" % (
                    f["target"], f["n"], f["batch"], nd["port"], nd["expected"], nd["mget"],
                    nd["get"], fnum(rd), fnum(rd / nd["expected"] if rd is not None and
                                              nd["expected"] else None, 2), f["errors"]))
        w("")
    if extra["sanity"]:
        w("Sanity (MSET + MGET of 10 keys in 10 slots, checked): " + ", ".join(
            "%s: %s" % (s["target"], s["result"]) for s in extra["sanity"]) + ".")
        w("")
    for e in failed:
        w("- %s: a measurement gave no result (%r)" % (e["target"], e["result"]))
    if failed:
        w("")
    w("## Against the targets")
    w("")

    def worst(xs, lo=True):
        if not xs:
            return None, "–"
        v = min(xs) if lo else max(xs)
        return v[0], v[1]

    v, n = worst(summary["p1"])
    w("- clusterless ÷ direct ops/s at pipeline 1 (target ≥ 0.6): worst %s (%s)" % (fnum(v, 2), n))
    v, n = worst(summary["p16"])
    w("- clusterless ÷ direct ops/s at pipeline 16 (target ≥ 0.5): worst %s (%s)" % (fnum(v, 2), n))
    w("- p99 added over direct at pipeline 1 (target ≤ 100 µs): %s" % (
        "; ".join("%s µs (%s)" % (fnum(v), n) for v, n in summary["p99add"]) or "–"))
    v, n = worst(summary["cpu"])
    w("- best peer's CPU/Mops ÷ clusterless's (target ≥ 2): worst %s (%s)" % (fnum(v, 2), n))
    if summary["floor"]:
        # A multi-key command is one command to the standalone server and several to a cluster, so
        # the floor binds single-key commands only.
        groups = []
        for label, pick in (("single keys at pipeline 1", lambda f: f[2] == "setget" and f[3] == 1),
                            ("single keys at pipeline 16", lambda f: f[2] == "setget" and f[3] > 1),
                            ("MGET/MSET", lambda f: f[2] != "setget")):
            xs = [f[0] for f in summary["floor"] if pick(f)]
            if xs:
                groups.append("%s %s–%s" % (label, fnum(min(xs), 2), fnum(max(xs), 2)))
        w("- the floor under that target, the standalone server's own kernel CPU per operation ÷ "
          "the best peer's whole CPU per operation: %s. A proxy makes at least the server's "
          "client-side system calls on the same sockets; where this is above 0.5, no proxy on "
          "kernel sockets can use half the peer's CPU." % "; ".join(groups))
    for i in extra["idle"]:
        if i["target"] == "clusterless" and i["answered"]:
            fr = {f["target"]: f["rss_kb"] for f in extra["rss_fresh"]}.get("clusterless")
            settled = i.get("rss_settled_kb", i["rss_n_kb"])
            w("- clusterless RSS (targets ≤ 30 MB idle, ≤ 4 KB per idle client): fresh %s MB, "
              "idle after load %s MB, %s KB per client (%s KB 2 s after they answered)" % (
                  fnum(fr / 1024 if fr else None, 1), fnum(i["rss_idle_kb"] / 1024, 1),
                  fnum((settled - i["rss_idle_kb"]) / i["answered"], 1),
                  fnum((i["rss_n_kb"] - i["rss_idle_kb"]) / i["answered"], 1)))
    w("")
    w("<details><summary>Every run</summary>")
    w("")
    w("| round | workload | target | ops/s | p50 µs | p99 µs | p99.9 µs | ops | proxy ticks "
      "| node ticks | status |")
    w("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in runs:
        w("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            r["round"], r["workload"], r["target"], fnum(r.get("ops")),
            fnum(r["p50"] * 1000 if r.get("p50") is not None else None),
            fnum(r["p99"] * 1000 if r.get("p99") is not None else None),
            fnum(r["p999"] * 1000 if r.get("p999") is not None else None),
            fnum(r.get("count")), r.get("proxy_ticks", "–"), r.get("node_ticks", "–"),
            r["status"]))
    w("")
    w("Commands:")
    w("")
    for line in meta["commands"]:
        w("    " + line)
    w("")
    w("</details>")
    print("\n".join(out))


if __name__ == "__main__":
    fn = globals().get("cmd_" + sys.argv[1].replace("-", "_")) if len(sys.argv) > 1 else None
    if fn is None:
        sys.exit(__doc__)
    fn(*sys.argv[2:])
