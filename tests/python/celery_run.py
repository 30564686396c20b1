"""Runs Celery end to end against one Redis endpoint (clusterless, or a plain redis-server): starts a
worker of celery_app.py as a subprocess, submits 200 `add.delay(i, i)` and a group of 20, waits for
every result and checks it. With --keyprefix (every Celery key under one hash tag) it also runs a
chord, whose join script (EVALSHA over several keys) cannot run on a cluster otherwise; --chord
runs it without a prefix too (a proxy whose database 0 is one-slot: keyspace.one_slot_databases).

Usage: celery_run.py PORT [--keyprefix [PREFIX]] [--chord] [--no-queue-expiry] [--timeout SECONDS] [--tasks N]

The worker is bounded: it is stopped (SIGTERM, then SIGKILL, by its process group id) when this
script finishes or fails, it gets SIGKILL from the kernel if this script dies uncleanly
(PR_SET_PDEATHSIG), and a watchdog ends this script --timeout + 40 s after it started whatever
happens. Prints "celery ok N tasks".

The worker logs at WARNING and above. Any line of its log at ERROR or CRITICAL level, and any
Traceback, fails the run: none is expected (a lost broker connection, a failed ack or a task
error would each log one). Its start-up warning about running as root is not an error.
"""
import argparse
import ctypes
import faulthandler
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

ap = argparse.ArgumentParser()
ap.add_argument("port", type=int)
ap.add_argument("--keyprefix", nargs="?", const="{celery}:", default=None)
ap.add_argument("--no-queue-expiry", action="store_true",
                help="control_queue_expires = event_queue_expires = None (see celery_app.py)")
ap.add_argument("--chord", action="store_true", help="run the chord without --keyprefix too")
ap.add_argument("--timeout", type=float, default=120.0, help="budget for all results")
ap.add_argument("--tasks", type=int, default=200)
opts = ap.parse_args()

os.environ["CELERY_TEST_PORT"] = str(opts.port)
if opts.keyprefix:
    os.environ["CELERY_TEST_KEYPREFIX"] = opts.keyprefix
else:
    os.environ.pop("CELERY_TEST_KEYPREFIX", None)
os.environ["CELERY_TEST_NO_QUEUE_EXPIRY"] = "1" if opts.no_queue_expiry else "0"
sys.path.insert(0, HERE)

from celery import chord, group  # noqa: E402
from celery.exceptions import TimeoutError as CeleryTimeoutError  # noqa: E402
from celery.result import ResultSet  # noqa: E402

from celery_app import add, app, tsum  # noqa: E402

# Hard wall clock for the whole run: dump every thread's stack and exit non-zero (the worker then
# dies through PR_SET_PDEATHSIG).
faulthandler.dump_traceback_later(opts.timeout + 40, exit=True)


def die_with_parent():
    """In the worker child: SIGKILL when this script dies (PR_SET_PDEATHSIG), own process group."""
    os.setsid()
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def start_worker(log):
    cmd = [
        sys.executable, "-m", "celery", "-A", "celery_app", "worker",
        "--pool=threads", "--concurrency=2", "-l", "warning", "-n", f"clusterless-test-{os.getpid()}@%h",
    ]
    env = dict(os.environ, PYTHONPATH=HERE + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(cmd, cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)


def stop_worker(worker):
    """Stops the worker's process group (its id is the worker's pid, which we started)."""
    if worker.poll() is not None:
        return
    try:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    if worker.poll() is None:
        try:
            os.killpg(worker.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        worker.wait(timeout=10)


def wait(result, worker, deadline, what):
    """result.get() in short slices, failing fast if the worker died or the budget ran out."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{what}: no result within the time budget ({opts.timeout:.0f} s)")
        try:
            return result.get(timeout=min(5.0, left), interval=0.1)
        except CeleryTimeoutError:
            if worker.poll() is not None:
                raise AssertionError(f"{what}: the worker exited with code {worker.returncode} (log below)")


def run(worker):
    deadline = time.monotonic() + opts.timeout
    n = 0
    results = [add.delay(i, i) for i in range(opts.tasks)]
    g = group(add.s(i, 1000) for i in range(20))()
    values = wait(ResultSet(results), worker, deadline, f"{opts.tasks} x add.delay")
    assert values == [2 * i for i in range(opts.tasks)], [
        (i, v) for i, v in enumerate(values) if v != 2 * i][:10]
    assert all(r.successful() for r in results)
    n += len(results)
    assert worker.poll() is None, "worker died"
    gv = wait(g, worker, deadline, "group of 20")
    assert gv == [i + 1000 for i in range(20)], gv
    n += 20
    if opts.keyprefix or opts.chord:
        c = chord(add.s(i, i) for i in range(10))(tsum.s())
        cv = wait(c, worker, deadline, "chord of 10")
        assert cv == sum(2 * i for i in range(10)), cv
        n += 11
    # Results are read back a second time from the backend (GET/MGET of celery-task-meta-*).
    again = [wait(app.AsyncResult(r.id), worker, deadline, "result read back") for r in results[:10]]
    assert again == [2 * i for i in range(10)], again
    return n


# Log lines that are errors: Celery's own format is "[date: LEVEL/Process] ...", and Python's
# default logging (kombu before Celery configures logging) prints "LEVEL:logger:...".
ERROR_LINE = re.compile(r"(: |^)(ERROR|CRITICAL)[/:]|^Traceback")


def log_errors(text):
    """Every error line of the worker's log (see ERROR_LINE), each with the line after it."""
    lines = text.splitlines()
    return [" | ".join(lines[i:i + 2]) for i, line in enumerate(lines) if ERROR_LINE.search(line)]


def main():
    log = tempfile.NamedTemporaryFile(prefix="celery-worker-", suffix=".log", delete=False)
    worker = start_worker(log)
    ok = False
    try:
        n = run(worker)
        ok = True
    finally:
        stop_worker(worker)
        log.close()
        with open(log.name, errors="replace") as f:
            text = f.read()
        os.unlink(log.name)
        errors = log_errors(text)
        if not ok or errors or "ERROR" in text:
            sys.stderr.write("--- worker log (tail) ---\n" + text[-8000:] + "\n")
    assert not errors, f"the worker logged {len(errors)} error line(s), none expected: {errors[:5]}"
    # A line naming ERROR in another shape is not known to be harmless either.
    assert "ERROR" not in text, "the worker log mentions ERROR (above)"
    faulthandler.cancel_dump_traceback_later()
    print(f"celery ok {n} tasks" + (f" (keyprefix {opts.keyprefix})" if opts.keyprefix else ""))


if __name__ == "__main__":
    main()
