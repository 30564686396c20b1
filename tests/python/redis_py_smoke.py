"""redis-py against clusterless, as an application written for one Redis would use it.

Usage: redis_py_smoke.py PORT. Exits non-zero (with the assertion) on the first difference.

Client-side retries are off: redis-py (8.x) by default retries a command up to 3 times after a
ConnectionError or TimeoutError, which would hide a connection the proxy dropped and could run a
write twice. Here every such error fails the run.
"""
import sys

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

port = int(sys.argv[1])


def check(protocol):
    kwargs = {} if protocol is None else {"protocol": protocol}
    r = redis.Redis(host="127.0.0.1", port=port, decode_responses=True, retry=Retry(NoBackoff(), 0),
                    retry_on_error=[], **kwargs)
    # The connections really have no retries left (the API has changed across redis-py versions).
    conn = r.connection_pool.get_connection()
    assert conn.retry.get_retries() == 0, conn.retry.get_retries()
    r.connection_pool.release(conn)
    assert r.ping() is True
    r.flushall()
    assert r.set("greeting", "hello") is True
    assert r.get("greeting") == "hello"
    assert r.get("missing") is None
    mapping = {f"k{i}": str(i) for i in range(200)}
    assert r.mset(mapping) is True
    assert r.mget([f"k{i}" for i in range(200)] + ["nope"]) == [str(i) for i in range(200)] + [None]
    assert r.exists(*[f"k{i}" for i in range(10)]) == 10
    assert r.delete(*[f"k{i}" for i in range(100)]) == 100
    assert r.dbsize() == 101
    assert r.incr("counter") == 1
    assert r.hset("h", mapping={"a": "1", "b": "2"}) == 2
    assert r.hgetall("h") == {"a": "1", "b": "2"}
    assert r.lpush("l", "x", "y") == 2
    assert r.lrange("l", 0, -1) == ["y", "x"]
    assert r.zadd("z", {"m": 1.5}) == 1
    assert r.zscore("z", "m") == 1.5
    assert sorted(r.scan_iter(match="k1*", count=50)) == sorted(f"k{i}" for i in range(100, 200) if str(i).startswith("1"))
    assert r.keys("greeting") == ["greeting"]
    assert r.info()["redis_mode"] == "standalone"
    assert r.client_setname("smoke") is True
    assert r.client_getname() == "smoke"
    # A non-transactional pipeline, spanning slots.
    p = r.pipeline(transaction=False)
    for i in range(100):
        p.set(f"p{i}", i)
        p.get(f"p{i}")
    out = p.execute()
    want = [x for i in range(100) for x in (True, str(i))]
    assert out == want, [(i, a, b) for i, (a, b) in enumerate(zip(out, want)) if a != b][:5]
    sha = r.script_load("return redis.call('GET', KEYS[1])")
    assert r.evalsha(sha, 1, "greeting") == "hello"
    assert r.script_exists(sha) == [True]
    try:
        r.execute_command("FOO")
        raise AssertionError("FOO should fail")
    except redis.ResponseError as e:
        assert str(e) == "unknown command 'FOO', with args beginning with: ", repr(str(e))
    r.close()


for proto in (None, 2, 3):
    check(proto)
print("redis-py ok")
