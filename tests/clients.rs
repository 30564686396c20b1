//! Real client libraries' stateful features through the proxy, each against its own small cluster:
//! redis-py (transactions, WATCH, pub/sub, blocking pops, scripts; RESP2 and RESP3) and Celery with
//! a Redis broker and result backend. The clients are Python scripts under tests/python; every run
//! is bounded (the child is killed past `LIMIT`) and its output is shown on failure.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Wall-clock limit for one client script (the scripts bound themselves well below this).
const LIMIT: Duration = Duration::from_secs(180);

fn script(name: &str) -> String {
    format!("{}/tests/python/{name}", env!("CARGO_MANIFEST_DIR"))
}

struct Outcome {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs `python3 SCRIPT ARGS...` to completion, killing it if it outlives `LIMIT`. Blocking, so
/// call it inside `block_in_place`.
fn run_python(name: &str, args: &[&str]) -> Outcome {
    let mut child = Command::new("python3")
        .arg(script(name))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/setup installs redis-py and celery)");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for python3") {
            break Some(status);
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
    let mut stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    if status.is_none() {
        stderr.push_str(&format!("\n[killed after {LIMIT:?}]"));
    }
    Outcome { ok: status.is_some_and(|s| s.success()), stdout, stderr }
}

/// Runs the script against the proxy and checks it succeeded and printed `done`.
fn expect_ok(env: &Env, name: &str, extra: &[&str], done: &str) {
    let port = env.addr().port().to_string();
    let mut args = vec![port.as_str()];
    args.extend_from_slice(extra);
    let o = tokio::task::block_in_place(|| run_python(name, &args));
    assert!(
        o.ok && o.stdout.contains(done),
        "{name} {extra:?} failed:\n--- stdout\n{}\n--- stderr\n{}",
        o.stdout,
        o.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_stateful_resp2() {
    let env = start(small()).await;
    expect_ok(&env, "redis_py_stateful.py", &["--protocol", "2"], "redis-py stateful ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_stateful_resp3() {
    let env = start(small()).await;
    expect_ok(&env, "redis_py_stateful.py", &["--protocol", "3"], "redis-py stateful ok");
}

/// Every key Celery touches under one hash tag (`global_keyprefix = "{celery}:"`): one slot, so
/// MULTI/EXEC, the 4-queue BRPOP and the chord's join script work with the default proxy settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn celery_with_keyprefix_incl_chord() {
    let env = start(small()).await;
    expect_ok(&env, "celery_run.py", &["--keyprefix", "{celery}:"], "celery ok 231 tasks");
}

/// Celery's default settings spread its keys over the cluster: MULTI/EXEC over several slots on every
/// delivery and ack (needs per-shard transactions) and BRPOP over a queue and its three priority
/// sub-queues in different slots. Two things cannot work on any cluster and are left out: queue
/// expiry (kombu 5.7 binds expiring queues, i.e. the worker's pidbox, mingle and gossip queues,
/// with a script over two keys in different slots, and the worker dies at startup on -CROSSSLOT),
/// hence `--no-queue-expiry`; and chords (their join script spans slots too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn celery_default_settings() {
    let env = start_with(small(), |cfg| cfg.transactions.cross_slot = clusterless::config::CrossSlot::PerShard).await;
    expect_ok(&env, "celery_run.py", &["--no-queue-expiry"], "celery ok 220 tasks");
}

/// With `transactions.cross_slot = "per-shard"`, a MULTI over keys in different slots succeeds and
/// EXEC returns every reply in the order queued (the default-mode runs above check the refusal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_stateful_per_shard_transactions() {
    let env = start_with(small(), |cfg| cfg.transactions.cross_slot = clusterless::config::CrossSlot::PerShard).await;
    expect_ok(&env, "redis_py_stateful.py", &["--cross-slot", "per-shard"], "redis-py stateful ok");
}
