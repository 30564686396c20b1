"""redis-py's client-side cache through clusterless, as an application turns it on for one Redis:
redis.Redis(protocol=3, cache_config=CacheConfig()). A GET is cached (the second one is answered
from the cache, not the server); another client's SET through the proxy, and a SET made straight on
the key's node, reach the cache: the next GET returns the new value.

redis-py allows cache_config only when HELLO names Redis 7.4 or later (its own policy: it refuses
a 7.0 server the same way). The proxy reports the cluster's version, so behind a 7.4+ cluster this
runs unchanged; behind an older one (the test machines run 7.0.15) the script first checks that
refusal, then lowers redis-py's minimum (CacheProxyConnection.MIN_ALLOWED_VERSION), the one
setting such an application changes.

Usage: redis_py_cache.py PORT --nodes PORT,PORT,...

  --nodes   the cluster's master ports; the direct write goes to the one that owns the key (the
            others answer MOVED)

Prints "redis-py cache ok" when every check passed; any failure is a traceback and exit 1. A
watchdog ends a hung run.
"""
import argparse
import faulthandler
import time
import uuid

import redis
from redis.cache import CacheConfig
from redis.connection import CacheProxyConnection

ap = argparse.ArgumentParser()
ap.add_argument("port", type=int)
ap.add_argument("--nodes", default="")
opts = ap.parse_args()
NODES = [int(p) for p in opts.nodes.split(",") if p]
assert NODES, "--nodes is required"
faulthandler.dump_traceback_later(60, exit=True)
RUN = uuid.uuid4().hex[:8]


def eventually(what, cond):
    deadline = time.monotonic() + 10
    while True:
        got = cond()
        if got is True:
            return
        assert time.monotonic() < deadline, f"never true: {what}; last: {got!r}"
        time.sleep(0.02)


def write_on_owner(key, value):
    """SET on the node that owns key, behind the proxy's back."""
    for port in NODES:
        node = redis.Redis(port=port, socket_timeout=5)
        try:
            node.set(key, value)
            return port
        except redis.exceptions.MovedError:
            pass
        finally:
            node.close()
    raise AssertionError(f"no node took {key}")


other = redis.Redis(port=opts.port, socket_timeout=10)
version = other.info("server")["redis_version"]
if tuple(int(x) for x in version.split(".")[:2]) < (7, 4):
    try:
        redis.Redis(port=opts.port, protocol=3, cache_config=CacheConfig(), socket_timeout=10).ping()
        raise AssertionError("redis-py took cache_config against Redis " + version)
    except redis.ConnectionError as e:
        assert "client-side caching is supported by Redis 7.4 or later" in str(e), e
    CacheProxyConnection.MIN_ALLOWED_VERSION = version
    print(f"ok redis-py refuses cache_config against Redis {version} (< 7.4); minimum lowered to {version}")
cached = redis.Redis(port=opts.port, protocol=3, cache_config=CacheConfig(), socket_timeout=10)
cache = cached.get_cache()

for i in range(6):
    key = f"pycache:{RUN}:{i}"
    other.set(key, "v1")
    assert cached.get(key) == b"v1"
    assert cache.size == i + 1, f"the GET of {key} was not cached ({cache.size} entries)"
    assert cached.get(key) == b"v1"
    other.set(key, "v2")
    eventually(f"{key}: another client's SET reaches the cache", lambda: cached.get(key) == b"v2" or cached.get(key))
    port = write_on_owner(key, "v3")
    eventually(f"{key}: a SET on node {port} reaches the cache", lambda: cached.get(key) == b"v3" or cached.get(key))
print("ok redis-py cache_config: GETs cached; another client's SET and a SET on the node invalidate them")
print("redis-py cache ok")
