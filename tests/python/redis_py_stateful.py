"""redis-py's stateful features against clusterless, as an application written for one Redis uses them:
transactions (pipeline(transaction=True), WATCH retry loops, DISCARD), pub/sub (SUBSCRIBE,
PSUBSCRIBE, SSUBSCRIBE, PUBSUB), blocking pops (BLPOP/BRPOP across slots, each element delivered
exactly once), scripts (register_script, NOSCRIPT after SCRIPT FLUSH) and, with --protocol 3, the
RESP3 reply types on the wire.

Usage: redis_py_stateful.py PORT [--protocol 2|3] [--cross-slot refuse|per-shard] [--standalone]
                            [--nodes PORT,PORT,...]

  --protocol      2 or 3, may be repeated (default: both, one after the other)
  --cross-slot    refuse (default, the proxy's `transactions.cross_slot`): a MULTI over keys in
                  different slots (also two slots of one master) must fail with CROSSSLOT and change
                  nothing; per-shard: it must succeed with every reply in queue order, and a WATCH
                  on another slot must still abort EXEC when that key changes
  --standalone    the server is one plain redis-server: cross-slot transactions succeed as with
                  per-shard, and PUBLISH must count its receiver (validates this script itself)
  --nodes         the cluster's master ports, asked directly (never through PORT) where a
                  subscription sits, so that each PUBLISH reply is checked exactly: it counts the
                  receivers on the node it reached, the channel slot's master (required unless
                  --standalone)

Each section (transactions, cross-slot MULTI, pub/sub, pub/sub order, blocking, scripts, and for
RESP3 three raw-socket checks of the reply types) runs on fresh connections and prints "ok" or
"FAILED" with its traceback, so one missing feature does not hide the state of the others. Every
socket has a timeout and a watchdog ends the run after 150 s, so a missing reply is a traceback and
a non-zero exit, never a hang. Prints "redis-py stateful ok" when every section passed.
"""
import argparse
import faulthandler
import fnmatch
import socket
import sys
import threading
import time
import uuid

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

WATCHDOG_S = 150

ap = argparse.ArgumentParser()
ap.add_argument("port", type=int)
ap.add_argument("--protocol", type=int, choices=(2, 3), action="append")
ap.add_argument("--cross-slot", choices=("refuse", "per-shard"), default="refuse")
ap.add_argument("--standalone", action="store_true")
ap.add_argument("--nodes", default="")
opts = ap.parse_args()
NODES = [int(p) for p in opts.nodes.split(",") if p]
assert opts.standalone or NODES, "--nodes is required against a cluster"
PORT = opts.port
CROSS_SLOT_OK = opts.standalone or opts.cross_slot == "per-shard"

# Dumps every thread's stack and exits non-zero if anything blocks past the budget.
faulthandler.dump_traceback_later(WATCHDOG_S, exit=True)

RUN = uuid.uuid4().hex[:8]  # keeps names unique if the server is shared with other runs


# --- slots ---------------------------------------------------------------------------------------

def crc16(data: bytes) -> int:
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def keyslot(key: str) -> int:
    k = key.encode()
    s = k.find(b"{")
    if s != -1:
        e = k.find(b"}", s + 1)
        if e != -1 and e != s + 1:
            k = k[s + 1:e]
    return crc16(k) % 16384


assert keyslot("123456789") == 0x31C3 % 16384  # the CRC16/XMODEM check value
assert keyslot("{user1000}.following") == keyslot("{user1000}.followers")


def spread(prefix: str, n: int) -> list:
    """n keys whose slots fall in n different equal ranges of the keyspace, so that on a cluster of
    n masters with the usual even split each key sits on a different master."""
    out = []
    for part in range(n):
        lo, hi = part * 16384 // n, (part + 1) * 16384 // n
        i = 0
        while True:
            k = f"{prefix}:{RUN}:{part}:{i}"
            if lo <= keyslot(k) < hi:
                out.append(k)
                break
            i += 1
    assert len({keyslot(k) for k in out}) == n
    return out


def client(protocol, **kw):
    # No client-side retries: a retried command would hide a lost reply (and re-run a pop).
    kw.setdefault("socket_timeout", 10)
    return redis.Redis(
        host="127.0.0.1",
        port=PORT,
        protocol=protocol,
        decode_responses=True,
        socket_connect_timeout=5,
        retry=Retry(NoBackoff(), 0),
        retry_on_error=[],
        **kw,
    )


def raises(fn, exc=redis.ResponseError, what=""):
    try:
        fn()
    except exc as e:
        return e
    raise AssertionError(f"expected {exc.__name__} {what}".strip())


# --- transactions --------------------------------------------------------------------------------

def transactions(r, r2, proto):
    t = f"{{tx:{RUN}:{proto}}}"
    a, b, c, lst, h = f"{t}a", f"{t}b", f"{t}c", f"{t}list", f"{t}hash"
    # A transactional pipeline over keys of one slot (hash tag).
    p = r.pipeline(transaction=True)
    p.set(a, "1").incr(a).incrby(a, 10).get(a)
    p.rpush(lst, "x", "y", "z").lrange(lst, 0, -1)
    p.hset(h, mapping={"f": "v", "g": "w"}).hgetall(h)
    p.set(b, "bee", nx=True).set(b, "other", nx=True).get(b)
    p.exists(a, b, c).delete(c).mget(a, b, c)
    out = p.execute()
    want = [True, 2, 12, "12", 3, ["x", "y", "z"], 2, {"f": "v", "g": "w"}, True, None, "bee", 2, 0,
            ["12", "bee", None]]
    assert out == want, f"transaction replies {out} != {want}"

    # Errors inside EXEC stay in their place; the other commands run (Redis does not roll back).
    p = r.pipeline(transaction=True)
    p.set(c, "text").incr(c).set(a, "after")
    out = p.execute(raise_on_error=False)
    assert out[0] is True and out[2] is True, out
    assert isinstance(out[1], redis.ResponseError) and "not an integer" in str(out[1]), out
    assert r.get(a) == "after"

    # A command refused at queue time (wrong arity) aborts the whole transaction.
    p = r.pipeline(transaction=True)
    p.set(a, "never").execute_command("GET")
    e = raises(p.execute)
    assert str(e) == "Command # 2 (GET) of pipeline caused error: wrong number of arguments for 'get' command", e
    assert r.get(a) == "after", "an aborted transaction changed nothing"

    # MULTI / DISCARD / EXEC without MULTI on one dedicated connection.
    s = client(proto, single_connection_client=True)
    assert s.execute_command("MULTI") == "OK"
    s.execute_command("SET", a, "discarded")  # +QUEUED (redis-py's SET callback turns it into False)
    assert str(raises(lambda: s.execute_command("MULTI"))) == "MULTI calls can not be nested"
    assert s.execute_command("DISCARD") == "OK"
    assert s.get(a) == "after", "DISCARD dropped the queued SET"
    assert str(raises(lambda: s.execute_command("EXEC"))) == "EXEC without MULTI"
    assert str(raises(lambda: s.execute_command("DISCARD"))) == "DISCARD without MULTI"
    # Raw MULTI/EXEC: the EXEC reply is the array of the queued replies.
    assert s.execute_command("MULTI") == "OK"
    s.execute_command("INCR", f"{t}n")
    s.execute_command("INCR", f"{t}n")
    s.execute_command("GET", f"{t}n")
    assert s.execute_command("EXEC") == [1, 2, "2"]
    s.close()

    # WATCH retry loop: r WATCHes, r2 changes the key between WATCH and EXEC, EXEC fails (redis-py
    # raises WatchError for the nil EXEC reply), the retry sees the new value and succeeds.
    k = f"{t}balance"
    r.set(k, 100)
    attempts = 0
    with r.pipeline() as pipe:
        while True:
            attempts += 1
            try:
                pipe.watch(k)
                v = int(pipe.get(k))
                if attempts == 1:
                    assert r2.incrby(k, 5) == 105  # another client, in the window
                pipe.multi()
                pipe.set(k, v - 30)
                pipe.get(k)
                res = pipe.execute()
                break
            except redis.WatchError:
                assert attempts < 5, "WATCH loop never succeeded"
                continue
    assert attempts == 2, f"first EXEC should fail after the concurrent write (attempts={attempts})"
    assert res == [True, "75"], res
    assert r.get(k) == "75"

    # Unmodified watched key: first try succeeds. UNWATCH (pipe.reset) forgets the watch.
    with r.pipeline() as pipe:
        pipe.watch(k, f"{t}other")
        pipe.multi()
        pipe.incr(k)
        assert pipe.execute() == [76]
    with r.pipeline() as pipe:
        pipe.watch(k)
        pipe.unwatch()
        r2.incr(k)
        pipe.multi()
        pipe.incr(k)
        assert pipe.execute() == [78], "UNWATCH dropped the watch"

    # Expiry of a watched key counts as a change; deleting it too. r.transaction() helper retries.
    calls = []

    def fn(pipe):
        calls.append(1)
        cur = int(pipe.get(k) or 0)
        if len(calls) == 1:
            r2.delete(k)
        pipe.multi()
        pipe.set(k, cur + 1)
    r.transaction(fn, k)
    assert len(calls) == 2 and r.get(k) == "1", (calls, r.get(k))

    # WATCH on a key of another slot than the transaction's: see cross_slot_transactions().


def is_crossslot(e):
    # redis-py turns "-CROSSSLOT Keys in request don't hash to the same slot" into
    # ClusterCrossSlotError with the prefix stripped.
    return isinstance(e, redis.exceptions.ClusterCrossSlotError) or "CROSSSLOT" in str(e).upper()


def cross_slot_transactions(r, r2, proto):
    """MULTI/EXEC over single-key commands on keys in different slots: on different masters, and
    in different slots of the same master (a cluster node refuses a MULTI over two of its own
    slots just as well). Refused (default) or run per shard with replies in queue order."""
    nodes = spread(f"xs:{proto}", 3)  # one key per master (even 3-way split)
    same = spread(f"xs1:{proto}", 9)[:3]  # three slots of the first master
    keys = nodes + same
    p = r.pipeline(transaction=True)
    p.set(keys[0], "a").set(keys[1], "b").incr(keys[2]).get(keys[0]).get(keys[2])
    p.set(same[0], "s0").set(same[1], "s1").get(same[0]).incr(same[2])
    p.rpush(keys[1] + ":l", 1, 2).lpop(keys[1] + ":l")
    if not CROSS_SLOT_OK:
        e = raises(p.execute)
        assert is_crossslot(e), f"want a CROSSSLOT error, got {type(e).__name__}: {e}"
        assert sum(r.exists(k) for k in keys) == 0, "a refused cross-slot transaction wrote something"
        # Two slots of one master only: refused too.
        p = r.pipeline(transaction=True)
        p.set(same[0], "x").set(same[1], "y")
        e = raises(p.execute)
        assert is_crossslot(e), f"same master, two slots: want CROSSSLOT, got {type(e).__name__}: {e}"
        assert sum(r.exists(k) for k in same) == 0, "a refused cross-slot transaction wrote something"
        # WATCH of a key on one master, a transaction on a key of another master (changed by
        # another client in between): refused with CROSSSLOT when queued, as Redis Cluster
        # refuses it (with MOVED), never a run that ignores the watch.
        w = spread(f"watchx:{proto}", 3)
        with r.pipeline() as pipe:
            pipe.watch(w[0])
            r2.set(w[0], "changed")
            pipe.multi()
            pipe.set(w[2], "z")
            e = raises(pipe.execute, redis.exceptions.ClusterCrossSlotError)
        assert str(e) == f"Command # 1 (SET {w[2]} z) of pipeline caused error: Keys in request don't hash to the same slot", e
        assert r.exists(w[2]) == 0
        # The connection (and the pool) stays usable.
        assert r.ping() is True
        return "refused with CROSSSLOT"
    return per_shard_transactions(r, r2, proto, nodes, same)


def per_shard_transactions(r, r2, proto, nodes, same):
    """The per-shard (and one-server) behaviour, as independent checks so that one failure does not
    hide the others; raises one AssertionError naming every failed check."""

    def different_masters():
        p = r.pipeline(transaction=True)
        p.set(nodes[0], "a").set(nodes[1], "b").incr(nodes[2]).get(nodes[0]).get(nodes[2])
        lst = "{" + nodes[1] + "}:l"  # the slot of nodes[1]
        p.rpush(lst, 1, 2).lpop(lst)
        out = p.execute()
        assert out == [True, True, 1, "a", "1", 2, "1"], f"replies {out}"
        assert [r.get(k) for k in nodes] == ["a", "b", "1"]

    def same_master_two_slots():
        p = r.pipeline(transaction=True)
        p.set(same[0], "s0").set(same[1], "s1").get(same[0]).incr(same[2])
        out = p.execute()
        assert out == [True, True, "s0", 1], f"replies {out}"
        assert [r.get(k) for k in same] == ["s0", "s1", "1"]

    def twenty_slots():
        many = [f"xs:{RUN}:{proto}:m{i}" for i in range(20)]
        p = r.pipeline(transaction=True)
        for i, k in enumerate(many):
            p.set(k, i).incr(k).get(k)
        out = p.execute()
        want = [x for i in range(20) for x in (True, i + 1, str(i + 1))]
        assert out == want, [(i, a, b) for i, (a, b) in enumerate(zip(out, want)) if a != b][:5]

    def watch_other_slot():
        # A change by another client makes EXEC fail and nothing runs; unchanged, it succeeds.
        w = spread(f"watchx:{proto}", 3)
        r.set(w[0], "w")
        with r.pipeline() as pipe:
            pipe.watch(w[0])
            r2.set(w[0], "changed")
            pipe.multi()
            pipe.set(w[1], "never").set(w[2], "never")
            raises(pipe.execute, redis.WatchError)
        assert r.exists(w[1]) + r.exists(w[2]) == 0, "a failed WATCH ran (part of) the transaction"
        with r.pipeline() as pipe:
            pipe.watch(w[0])
            pipe.multi()
            pipe.set(w[1], "yes").get(w[0])
            assert pipe.execute() == [True, "changed"]

    def multikey_in_multi():
        # A multi-key command spanning slots inside the transaction: one server runs it; per
        # shard, no block can hold it (a block is one slot's), so it is refused with CROSSSLOT
        # when queued and the transaction does nothing.
        k = spread(f"xsm:{proto}", 3)
        r.set(k[1], "b")
        p = r.pipeline(transaction=True)
        p.set(k[0], "m0").mget(k[0], k[1], k[2])
        if opts.standalone:
            assert p.execute() == [True, ["m0", "b", None]]
            return
        e = raises(p.execute, redis.exceptions.ClusterCrossSlotError)
        assert str(e) == (f"Command # 2 (MGET {k[0]} {k[1]} {k[2]}) of pipeline caused error: "
                          "Keys in request don't hash to the same slot"), e
        assert r.exists(k[0]) == 0, "a refused transaction wrote something"

    failed = []
    for fn in (different_masters, same_master_two_slots, twenty_slots, watch_other_slot, multikey_in_multi):
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - collected, raised below
            failed.append(f"{fn.__name__}: {type(e).__name__}: {e}")
    assert not failed, "; ".join(failed)
    return "succeeded, replies in order"


# --- pub/sub -------------------------------------------------------------------------------------

def next_message(p, timeout=5.0, kinds=None):
    """The next message (optionally of the given types), or an AssertionError after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = p.get_message(timeout=max(0.0, min(0.5, deadline - time.monotonic())))
        if m is None:
            continue
        if kinds is None or m["type"] in kinds:
            return m
    raise AssertionError(f"no {kinds or 'pub/sub'} message within {timeout}s")


def no_message(p, wait=0.7):
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        m = p.get_message(timeout=0.2)
        if m is not None and m["type"] in ("message", "pmessage", "smessage"):
            raise AssertionError(f"unexpected message {m}")


def slot_owner(slot):
    """The port of the master owning `slot`, from CLUSTER SLOTS asked of a node directly."""
    w = Wire(NODES[0])
    try:
        for entry in plain(w.cmd("CLUSTER", "SLOTS")):
            if int(entry[0]) <= slot <= int(entry[1]):
                return int(entry[2][1])
    finally:
        w.close()
    raise AssertionError(f"no master owns slot {slot}")


def receivers(channel, patterns=()):
    """What PUBLISH `channel` must answer: the receivers on the node it reaches. On a cluster that
    is the channel slot's master, asked directly: its subscribers to the channel, plus ours of
    `patterns` (the patterns this script holds now) that match, when our pattern connection sits
    there (only this script subscribes on the test's cluster). On one server, the same count."""
    matching = sum(fnmatch.fnmatchcase(channel, pat) for pat in patterns)
    if opts.standalone:
        w = Wire(PORT)
    else:
        w = Wire(slot_owner(keyslot(channel)))
    try:
        numsub = int(plain(w.cmd("PUBSUB", "NUMSUB", channel))[1])
        numpat = int(plain(w.cmd("PUBSUB", "NUMPAT")))
    finally:
        w.close()
    return numsub + (matching if numpat else 0)


def publish(pub, channel, data, patterns=()):
    """PUBLISH, its reply checked exactly against `receivers`."""
    want = receivers(channel, patterns)
    n = pub.publish(channel, data)
    assert n == want, f"PUBLISH {channel} answered {n}, its node has {want} receivers"


def publish_until(pub, channel, data, p, kinds, patterns=()):
    """Publishes once (reply checked), then waits for delivery. (A cluster delivers over its bus,
    so the receiver may see it a moment after PUBLISH returned.)"""
    publish(pub, channel, data, patterns)
    return next_message(p, kinds=kinds)


def pubsub(r, r2, proto):
    ch1, ch2 = f"news:{RUN}:{proto}:1", f"news:{RUN}:{proto}:2"
    pat = f"ev:{RUN}:{proto}:*"
    p = r.pubsub()
    p.subscribe(ch1, ch2)
    got = [next_message(p), next_message(p)]
    assert [(m["type"], m["channel"], m["data"]) for m in got] == [("subscribe", ch1, 1), ("subscribe", ch2, 2)], got

    m = publish_until(r2, ch1, "hello", p, ("message",))
    assert (m["channel"], m["data"], m["pattern"]) == (ch1, "hello", None), m
    m = publish_until(r2, ch2, "world", p, ("message",))
    assert (m["channel"], m["data"]) == (ch2, "world"), m
    # PUBSUB introspection sees the subscriptions, as one server would.
    chans = r2.pubsub_channels(f"news:{RUN}:{proto}:*")
    assert sorted(chans) == sorted([ch1, ch2]), chans
    assert r2.pubsub_numsub(ch1, f"nobody:{RUN}") == [(ch1, 1), (f"nobody:{RUN}", 0)]

    # PSUBSCRIBE on the same connection.
    p.psubscribe(pat)
    m = next_message(p, kinds=("psubscribe",))
    assert (m["channel"], m["data"]) == (pat, 3), m
    assert r2.pubsub_numpat() == 1
    ev = pat.replace("*", "login")
    m = publish_until(r2, ev, "alice", p, ("pmessage",), [pat])
    assert (m["pattern"], m["channel"], m["data"]) == (pat, ev, "alice"), m
    # A message matching both a channel and the pattern arrives once per subscription.
    p.psubscribe(f"news:{RUN}:{proto}:*")
    assert next_message(p, kinds=("psubscribe",))["data"] == 4
    publish(r2, ch1, "both", [pat, f"news:{RUN}:{proto}:*"])
    two = [next_message(p, kinds=("message", "pmessage")) for _ in range(2)]
    assert sorted(m["type"] for m in two) == ["message", "pmessage"], two
    assert all(m["data"] == "both" for m in two), two
    p.punsubscribe(f"news:{RUN}:{proto}:*")
    assert next_message(p, kinds=("punsubscribe",))["data"] == 3

    # PING in subscribed mode: RESP2 answers ["pong", ""]. (In RESP3 the answer is +PONG, which
    # redis-py 8.1 mis-parses as a message of type "P"; resp3_blocking_pubsub() checks it on the wire.)
    if proto == 2:
        p.ping()
        m = next_message(p, kinds=("pong",))
        assert m["type"] == "pong", m

    # UNSUBSCRIBE: no more messages on that channel; the others still arrive.
    p.unsubscribe(ch1)
    m = next_message(p, kinds=("unsubscribe",))
    assert (m["channel"], m["data"]) == (ch1, 2), m
    publish(r2, ch1, "gone", [pat])
    m = publish_until(r2, ch2, "still", p, ("message",), [pat])
    assert (m["channel"], m["data"]) == (ch2, "still"), f"got {m} (a message after UNSUBSCRIBE?)"
    assert r2.pubsub_numsub(ch1) == [(ch1, 0)]
    p.punsubscribe()
    p.unsubscribe()
    kinds = sorted(next_message(p, kinds=("unsubscribe", "punsubscribe"))["type"] for _ in range(2))
    assert kinds == ["punsubscribe", "unsubscribe"], kinds
    publish(r2, ch2, "late")
    publish(r2, ev, "late")
    no_message(p)
    p.close()

    # listen() in a thread, as applications do, until it saw the 6 messages (order is checked
    # separately, in pubsub_order).
    got, ready = [], threading.Event()
    p = r.pubsub()
    p.subscribe(ch1)
    next_message(p, kinds=("subscribe",))

    def listener():
        ready.set()
        for msg in p.listen():
            if msg["type"] != "message":
                continue
            got.append(msg["data"])
            if len(got) == 6:
                return
    th = threading.Thread(target=listener, daemon=True)
    th.start()
    ready.wait(5)
    for i in range(5):
        publish(r2, ch1, f"l{i}")
    publish(r2, ch1, "stop")
    th.join(10)
    assert not th.is_alive(), f"listen() did not get all 6 messages; got {got}"
    assert sorted(got) == sorted([f"l{i}" for i in range(5)] + ["stop"]), got
    p.close()

    # Sharded pub/sub (Redis 7): SSUBSCRIBE / SPUBLISH / PUBSUB SHARDNUMSUB.
    sch = f"{{shard:{RUN}}}:{proto}"
    p = r.pubsub()
    p.ssubscribe(sch)
    m = p.get_sharded_message(timeout=5)
    assert m and (m["type"], m["channel"], m["data"]) == ("ssubscribe", sch, 1), m
    assert r2.pubsub_shardnumsub(sch) == [(sch, 1)], r2.execute_command("PUBSUB", "SHARDNUMSUB", sch)
    # SPUBLISH reaches the channel slot's master, where the shard subscription sits: one receiver.
    assert r2.spublish(sch, "s1") == 1
    deadline = time.monotonic() + 5
    m = None
    while m is None and time.monotonic() < deadline:
        m = p.get_sharded_message(timeout=0.5)
        if m is not None and m["type"] != "smessage":
            m = None
    assert m and (m["channel"], m["data"]) == (sch, "s1"), m
    p.sunsubscribe(sch)
    m = p.get_sharded_message(timeout=5)
    assert m and m["type"] == "sunsubscribe", m
    p.close()


def pubsub_order(r, r2, proto):
    """One client publishing on one channel, each PUBLISH answered before the next is sent: a
    subscriber receives the messages in that order, as from one server."""
    ch = f"order:{RUN}:{proto}"
    p = r.pubsub()
    p.subscribe(ch)
    next_message(p, kinds=("subscribe",))
    for i in range(20):
        publish(r2, ch, f"n{i}")
    seen = [next_message(p, kinds=("message",))["data"] for _ in range(20)]
    assert seen == [f"n{i}" for i in range(20)], f"messages of one publisher on one channel arrived out of order: {seen}"
    p.close()


# --- blocking commands ---------------------------------------------------------------------------

def blocked_clients():
    """Clients blocked in a command right now (CLIENT LIST flag b), asked of the cluster's masters
    themselves (or of the one server)."""
    total = 0
    for port in [PORT] if opts.standalone else NODES:
        w = Wire(port)
        try:
            text = plain(w.cmd("CLIENT", "LIST"))
        finally:
            w.close()
        for line in text.splitlines():
            fields = dict(f.split("=", 1) for f in line.split(" ") if "=" in f)
            total += "b" in fields.get("flags", "")
    return total


def when_blocked(n, fn, *args):
    """Runs fn(*args) in a thread once `n` clients are blocked on the server(s), so that the write
    really wakes a blocked command rather than arriving before it. (If that never happens the
    thread gives up, and the blocked command's own timeout fails the check.)"""
    def run():
        deadline = time.monotonic() + 10
        while blocked_clients() < n:
            if time.monotonic() > deadline:
                return
            time.sleep(0.02)
        fn(*args)
    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th


def blocking(r, r2, proto):
    q = f"{{q:{RUN}:{proto}}}jobs"
    # BLPOP wakes on a push from another connection.
    th = when_blocked(1, r2.rpush, q, "job1")
    got = r.blpop([q], timeout=5)
    th.join()
    assert tuple(got) == (q, "job1"), got
    # Timeout on an empty key: None after about a second.
    t0 = time.monotonic()
    assert r.blpop([f"{{q:{RUN}:{proto}}}empty"], timeout=1) is None
    dt = time.monotonic() - t0
    assert 1.0 <= dt < 2.5, f"BLPOP timeout 1 returned after {dt:.2f}s"
    # Data already there: no blocking; BRPOP takes from the tail.
    r.rpush(q, "a", "b", "c")
    got = r.brpop([q], timeout=1)
    assert tuple(got) == (q, "c"), got
    assert tuple(r.blpop([q], timeout=1)) == (q, "a")
    r.delete(q)

    # Several keys in different slots (Celery's BRPOP q q\x06\x163 q\x06\x166 q\x06\x169 1).
    ks = spread(f"bq:{proto}", 4)
    # The first non-empty key in argument order wins, as on one server.
    r.rpush(ks[2], "two")
    r.rpush(ks[3], "three")
    assert tuple(r.blpop(ks, timeout=1)) == (ks[2], "two")
    assert tuple(r.brpop(ks, timeout=1)) == (ks[3], "three")
    assert r.exists(*ks) == 0
    # Blocked on all four (one pop per slot on a cluster), a push to the last one wakes it.
    all_four = 1 if opts.standalone else 4
    th = when_blocked(all_four, r2.lpush, ks[3], "late")
    assert tuple(r.brpop(ks, timeout=5)) == (ks[3], "late")
    th.join()
    # Exactly once: while blocked on all four, two keys in different slots get an element at the same
    # moment. BLPOP returns one; the other stays in its list (not popped and dropped).
    for round_ in range(10):
        def push_two():
            p = r2.pipeline(transaction=False)
            p.rpush(ks[1], f"x{round_}")
            p.rpush(ks[3], f"y{round_}")
            p.execute()
        th = when_blocked(all_four, push_two)
        first = r.blpop(ks, timeout=5)
        th.join()
        assert first is not None, "BLPOP missed both pushes"
        # No wait needed: the proxy answers only after every per-slot pop ended and whatever a
        # cancelled one took was pushed back, and both pushes were answered (th.join()).
        rest = {k: r.lrange(k, 0, -1) for k in ks}
        left = [v for vs in rest.values() for v in vs]
        assert sorted([first[1]] + left) == sorted([f"x{round_}", f"y{round_}"]), (first, rest)
        r.delete(*ks)
    # A blocked pop that timed out took nothing: an element pushed right after stays.
    assert r.blpop(ks, timeout=1) is None
    assert r2.rpush(ks[0], "kept") == 1
    assert r.lrange(ks[0], 0, -1) == ["kept"], "an element pushed after the timeout vanished"
    r.delete(*ks)
    # Many producers, one consumer looping BRPOP over four slots: every element exactly once.
    n = 200
    produced = [f"e{i}" for i in range(n)]

    def produce():
        for i, v in enumerate(produced):
            r2.lpush(ks[i % 4], v)
            if i % 50 == 0:
                # A pause on purpose: the consumer drains the keys and blocks on all four again,
                # so both the non-blocking and the blocking paths get traffic.
                time.sleep(0.05)
    th = threading.Thread(target=produce, daemon=True)
    th.start()
    consumed = []
    deadline = time.monotonic() + 60
    while len(consumed) < n and time.monotonic() < deadline:
        got = r.brpop(ks, timeout=1)
        if got is not None:
            consumed.append(got[1])
    th.join()
    assert r.exists(*ks) == 0, {k: r.lrange(k, 0, -1) for k in ks}
    dup = sorted({v for v in consumed if consumed.count(v) > 1})
    assert not dup, f"delivered twice: {dup[:10]}"
    assert sorted(consumed) == sorted(produced), f"lost: {sorted(set(produced) - set(consumed))[:10]}"
    # BLMOVE within one slot wakes up too.
    src, dst = f"{{mv:{RUN}}}:{proto}:src", f"{{mv:{RUN}}}:{proto}:dst"
    th = when_blocked(1, r2.rpush, src, "m")
    assert r.blmove(src, dst, 5, "LEFT", "RIGHT") == "m"
    th.join()
    assert r.lrange(dst, 0, -1) == ["m"]
    # BZPOPMIN.
    z = f"{{mv:{RUN}}}:{proto}:z"
    th = when_blocked(1, r2.zadd, z, {"low": 1, "high": 2})
    got = r.bzpopmin([z], timeout=5)
    th.join()
    assert got is not None and tuple(got)[:2] == (z, "low") and float(tuple(got)[2]) == 1.0, got


# --- scripts -------------------------------------------------------------------------------------

def scripts(r, proto):
    t = f"{{lua:{RUN}:{proto}}}"
    body = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCRBY', KEYS[2], ARGV[2])"
    s = r.register_script(body)
    assert s(keys=[f"{t}a", f"{t}n"], args=["v", 5]) == 5
    assert s(keys=[f"{t}a", f"{t}n"], args=["w", 2]) == 7
    assert r.get(f"{t}a") == "w"
    assert r.script_exists(s.sha) == [True]
    assert r.script_flush() is True
    assert r.script_exists(s.sha) == [False]
    # The script object reloads on NOSCRIPT by itself.
    assert s(keys=[f"{t}a", f"{t}n"], args=["z", 1]) == 8
    assert r.get(f"{t}a") == "z"
    # Loaded once, callable with keys on every master.
    sha = r.script_load("return redis.call('INCR', KEYS[1])")
    for k in spread(f"lua:{proto}", 6):
        assert r.evalsha(sha, 1, k) == 1, k
    # A script in a pipeline (redis-py loads missing scripts before a transactional pipeline).
    r.script_flush()
    p = r.pipeline(transaction=True)
    s(keys=[f"{t}a", f"{t}n"], args=["p", 10], client=p)
    p.get(f"{t}a")
    assert p.execute() == [18, "p"]
    # Script errors keep Redis's text.
    e = raises(lambda: r.eval("return redis.call('INCR', KEYS[1])", 1, f"{t}a"))
    assert "not an integer" in str(e), e
    # EVALSHA of a script nobody loaded: NOSCRIPT.
    e = raises(lambda: r.evalsha("0" * 40, 1, f"{t}a"), redis.exceptions.NoScriptError)
    assert "NOSCRIPT" in str(e) or "No matching script" in str(e), e
    # Raw EVALSHA after a SCRIPT FLUSH sent by the client: NOSCRIPT, as from one server (a proxy
    # that re-loads scripts on NOSCRIPT must forget the ones flushed). Last, as the strictest check.
    assert r.script_exists(s.sha) == [True]
    assert r.script_flush() is True
    assert r.script_exists(s.sha) == [False]
    e = raises(lambda: r.evalsha(s.sha, 2, f"{t}a", f"{t}n", "x", 1), redis.exceptions.NoScriptError,
               "from EVALSHA after SCRIPT FLUSH (a flushed script must not come back)")
    assert "NOSCRIPT" in str(e) or "No matching script" in str(e), e


# --- RESP3 on the wire ---------------------------------------------------------------------------

class Wire:
    """A raw socket client: checks reply type bytes that redis-py converts away."""

    def __init__(self, port=None):
        self.s = socket.create_connection(("127.0.0.1", port or PORT), timeout=10)
        self.buf = b""

    def send(self, *args):
        out = [f"*{len(args)}\r\n".encode()]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.s.sendall(b"".join(out))

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(65536)
            assert chunk, "connection closed"
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.s.recv(65536)
            assert chunk, "connection closed"
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def read(self):
        """(type byte, value) with nested values parsed the same way."""
        line = self._line()
        t, rest = chr(line[0]), line[1:]
        if t in "+-:,(#":
            return (t, rest.decode())
        if t == "_":
            return (t, None)
        if t in "$=!":
            n = int(rest)
            return (t, None) if n < 0 else (t, self._exact(n).decode())
        if t in "*~>":
            n = int(rest)
            return (t, None) if n < 0 else (t, [self.read() for _ in range(n)])
        if t in "%|":
            n = int(rest)
            return (t, [(self.read(), self.read()) for _ in range(n)])
        raise AssertionError(f"unknown RESP type {line!r}")

    def cmd(self, *args):
        self.send(*args)
        return self.read()

    def close(self):
        self.s.close()


def plain(v):
    """Strips the type tags: (t, x) -> python value."""
    t, x = v
    if isinstance(x, list):
        if t in "%|":
            return {plain(k): plain(val) for k, val in x}
        return [plain(e) for e in x]
    return x


def expect(w, args, want, what=""):
    got = w.cmd(*args)
    assert got == want, f"{' '.join(map(str, args))[:80]}: got {got!r}, want {want!r} {what}"


def hello3():
    w = Wire()
    t, hello = w.cmd("HELLO", "3")
    assert t == "%", f"HELLO 3 answers with a map, got {t!r} {hello!r}"
    return w, plain((t, hello))


def resp3_types():
    w, hello = hello3()
    assert hello["proto"] == "3" and hello["server"] == "redis", hello
    assert hello.get("mode") == "standalone", f"HELLO 3 mode {hello.get('mode')!r}"
    k = f"{{r3:{RUN}}}"
    expect(w, ["SET", f"{k}s", "v"], ("+", "OK"))
    expect(w, ["GET", f"{k}missing"], ("_", None), "RESP3 null")
    expect(w, ["HSET", f"{k}h", "a", "1", "b", "2"], (":", "2"))
    t, m = w.cmd("HGETALL", f"{k}h")
    assert t == "%" and plain((t, m)) == {"a": "1", "b": "2"}, (t, m)
    w.cmd("SADD", f"{k}set", "x", "y")
    t, m = w.cmd("SMEMBERS", f"{k}set")
    assert t == "~" and sorted(plain((t, m))) == ["x", "y"], (t, m)
    w.cmd("ZADD", f"{k}z", "1.5", "m")
    expect(w, ["ZSCORE", f"{k}z", "m"], (",", "1.5"), "RESP3 double")
    t, m = w.cmd("ZRANGE", f"{k}z", "0", "-1", "WITHSCORES")
    assert t == "*" and m[0][0] == "*" and m[0][1][1] == (",", "1.5"), (t, m)
    # MGET across slots: an array with RESP3 nulls in place.
    a, b = spread("r3m", 2)
    w.cmd("SET", a, "1")
    t, m = w.cmd("MGET", a, b)
    assert (t, m) == ("*", [("$", "1"), ("_", None)]), (t, m)
    # Lua booleans become RESP3 booleans under redis.setresp(3).
    expect(w, ["EVAL", "redis.setresp(3); return redis.call('EXISTS', KEYS[1]) == 1", "1", f"{k}s"], ("#", "t"))
    # PUBSUB NUMSUB / SHARDNUMSUB stay flat arrays in RESP3, as Redis 7 sends them (redis-py 8.1
    # cannot parse a map there).
    t, m = w.cmd("PUBSUB", "NUMSUB", f"r3:{RUN}:a", f"r3:{RUN}:b")
    assert (t, plain((t, m))) == ("*", [f"r3:{RUN}:a", "0", f"r3:{RUN}:b", "0"]), ("PUBSUB NUMSUB", t, m)
    t, m = w.cmd("PUBSUB", "SHARDNUMSUB", f"r3:{RUN}:a")
    assert (t, plain((t, m))) == ("*", [f"r3:{RUN}:a", "0"]), ("PUBSUB SHARDNUMSUB", t, m)
    # Back to RESP2 on the same connection.
    t, _ = w.cmd("HELLO", "2")
    assert t == "*", f"HELLO 2 answers with a flat array, got {t!r}"
    expect(w, ["GET", f"{k}missing"], ("$", None), "RESP2 null bulk after HELLO 2")
    t, _ = w.cmd("HGETALL", f"{k}h")
    assert t == "*", f"HGETALL after HELLO 2: {t!r}"
    w.close()


def resp3_transactions():
    w, _ = hello3()
    k = f"{{r3tx:{RUN}}}"
    w.cmd("HSET", f"{k}h", "a", "1")
    w.cmd("ZADD", f"{k}z", "1.5", "m")
    # A transaction's EXEC reply keeps the inner RESP3 types.
    expect(w, ["MULTI"], ("+", "OK"))
    expect(w, ["HGETALL", f"{k}h"], ("+", "QUEUED"))
    expect(w, ["ZSCORE", f"{k}z", "m"], ("+", "QUEUED"))
    expect(w, ["GET", f"{k}missing"], ("+", "QUEUED"))
    t, m = w.cmd("EXEC")
    assert t == "*" and [x[0] for x in m] == ["%", ",", "_"], (t, m)
    # WATCHed EXEC that fails: RESP3 null.
    w2, _ = hello3()
    expect(w, ["WATCH", f"{k}s"], ("+", "OK"))
    w2.cmd("SET", f"{k}s", "changed")
    expect(w, ["MULTI"], ("+", "OK"))
    expect(w, ["GET", f"{k}s"], ("+", "QUEUED"))
    expect(w, ["EXEC"], ("_", None), "a failed EXEC is a RESP3 null")
    w.close()
    w2.close()


def resp3_blocking_pubsub():
    w, _ = hello3()
    w2, _ = hello3()
    k = f"{{r3b:{RUN}}}"
    # BLPOP timeout: RESP3 null (not a null array).
    expect(w, ["BLPOP", f"{k}nolist", "0.2"], ("_", None))
    w.cmd("SET", f"{k}s", "v")
    # Pub/sub messages are RESP3 pushes, and a normal command still works on a subscribed
    # RESP3 connection.
    ch = f"r3:{RUN}:ch"
    t, m = w.cmd("SUBSCRIBE", ch)
    assert t == ">" and plain((t, m)) == ["subscribe", ch, "1"], (t, m)
    expect(w, ["GET", f"{k}s"], ("$", "v"), "RESP3 clients may run commands while subscribed")
    expect(w, ["PING"], ("+", "PONG"), "PING while subscribed in RESP3")
    w2.cmd("PUBLISH", ch, "hi")
    t, m = w.read()
    assert t == ">" and plain((t, m)) == ["message", ch, "hi"], (t, m)
    t, m = w.cmd("UNSUBSCRIBE", ch)
    assert t == ">" and plain((t, m)) == ["unsubscribe", ch, "0"], (t, m)
    expect(w, ["PING"], ("+", "PONG"))
    w.close()
    w2.close()


def main():
    """Runs every section with fresh connections, so one missing feature does not hide the state of
    the others; prints each failure's traceback and exits 1 if any failed."""
    import traceback
    failed = []
    for proto in opts.protocol or [2, 3]:
        sections = [
            ("transactions", lambda r, r2: transactions(r, r2, proto)),
            ("cross-slot MULTI", lambda r, r2: cross_slot_transactions(r, r2, proto)),
            ("pub/sub", lambda r, r2: pubsub(r, r2, proto)),
            ("pub/sub order", lambda r, r2: pubsub_order(r, r2, proto)),
            ("blocking", lambda r, r2: blocking(r, r2, proto)),
            ("scripts", lambda r, r2: scripts(r, proto)),
        ]
        if proto == 3:
            sections += [
                ("RESP3 wire types", lambda r, r2: resp3_types()),
                ("RESP3 wire transactions", lambda r, r2: resp3_transactions()),
                ("RESP3 wire blocking and pushes", lambda r, r2: resp3_blocking_pubsub()),
            ]
        for name, fn in sections:
            r, r2 = client(proto), client(proto)
            try:
                res = fn(r, r2)
                print(f"protocol {proto}: {name} ok" + (f" ({res})" if res else ""), flush=True)
            except Exception as e:  # noqa: BLE001 - reported below, exit status 1
                failed.append(f"protocol {proto}: {name}: {type(e).__name__}: {e}")
                print(f"protocol {proto}: {name} FAILED", flush=True)
                traceback.print_exc()
                sys.stderr.flush()
            finally:
                r.close()
                r2.close()
    faulthandler.cancel_dump_traceback_later()
    if failed:
        sys.stderr.write("\nFAILED:\n" + "\n".join("  " + f for f in failed) + "\n")
        sys.exit(1)
    print("redis-py stateful ok")


if __name__ == "__main__":
    main()
