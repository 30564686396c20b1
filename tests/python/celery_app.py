"""A Celery app with the Redis broker and the Redis result backend both at
redis://127.0.0.1:$CELERY_TEST_PORT/0 and Celery's default settings otherwise, unless
$CELERY_TEST_KEYPREFIX is set: then both the broker and the result backend use it as their
`global_keyprefix` (e.g. "{celery}:", a hash tag that puts every key Celery touches in one cluster
slot); CELERY_TEST_NO_QUEUE_EXPIRY=1 turns queue expiry off (see below). Used by celery_run.py,
which starts the worker with `celery -A celery_app worker`.
"""
import os

from celery import Celery

PORT = int(os.environ["CELERY_TEST_PORT"])
URL = f"redis://127.0.0.1:{PORT}/0"
KEYPREFIX = os.environ.get("CELERY_TEST_KEYPREFIX") or None
NO_QUEUE_EXPIRY = os.environ.get("CELERY_TEST_NO_QUEUE_EXPIRY") == "1"

app = Celery("celery_app", broker=URL, backend=URL)
app.conf.broker_connection_retry_on_startup = True  # silences a deprecation warning; the default
if KEYPREFIX:
    app.conf.broker_transport_options = {"global_keyprefix": KEYPREFIX}
    app.conf.result_backend_transport_options = {"global_keyprefix": KEYPREFIX}
if NO_QUEUE_EXPIRY:
    # kombu >= 5.7 binds queues that have x-expires (the worker's pidbox and mingle reply queues,
    # the gossip event queue) with a Lua script over `_kombu.binding.<exchange>` and
    # `_kombu.binding_deadlines`, two keys in different slots: on a cluster (behind any proxy) that
    # is -CROSSSLOT and the worker dies at startup. Without queue expiry kombu binds with
    # SADD + SADD in MULTI instead.
    app.conf.control_queue_expires = None
    app.conf.event_queue_expires = None


@app.task
def add(x, y):
    return x + y


@app.task
def tsum(numbers):
    return sum(numbers)
