"""redis-py through clusterless's TLS listener, as an application configured for a TLS Redis would
use it: the server's certificate checked against the given CA, and for mutual TLS a client
certificate of its own.

Usage: redis_py_tls.py PORT CA_FILE [CERT_FILE KEY_FILE]. Exits non-zero on the first difference.
Client-side retries are off (see redis_py_smoke.py).
"""
import sys

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

port, ca = int(sys.argv[1]), sys.argv[2]
mutual = {}
if len(sys.argv) > 4:
    mutual = {"ssl_certfile": sys.argv[3], "ssl_keyfile": sys.argv[4]}

r = redis.Redis(host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=ca,
                decode_responses=True, retry=Retry(NoBackoff(), 0), retry_on_error=[], **mutual)
assert r.ping() is True
assert r.set("tls:greeting", "hello") is True
assert r.get("tls:greeting") == "hello"
# Keys in several slots: the proxy splits and merges behind the TLS session.
assert r.mset({"tls:a": "1", "tls:b": "2", "tls:c": "3"}) is True
assert r.mget(["tls:a", "tls:b", "tls:c", "tls:none"]) == ["1", "2", "3", None]
big = "x" * (256 * 1024)
assert r.set("tls:big", big) is True
assert r.get("tls:big") == big
p = r.pipeline(transaction=False)
for i in range(200):
    p.incr("tls:counter")
assert p.execute()[-1] == 200
print("done")
