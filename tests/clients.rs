//! Real client libraries' stateful features through the proxy, each against its own small cluster:
//! redis-py (transactions, WATCH, pub/sub, blocking pops, scripts; RESP2 and RESP3) and Celery with
//! a Redis broker and result backend. The clients are Python scripts under tests/python; every run
//! is bounded (the child is killed past `common::SCRIPT_LIMIT`) and its output is shown on failure.

mod common;

use common::*;

/// `--nodes P1,P2,...`: the masters' ports, which redis_py_stateful.py asks directly (never through
/// the proxy) where a subscription sits, to check every PUBLISH count exactly.
fn nodes(env: &Env) -> String {
    env.cluster.masters().iter().map(u16::to_string).collect::<Vec<_>>().join(",")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_stateful_resp2() {
    let env = start(small()).await;
    expect_ok(&env, "redis_py_stateful.py", &["--protocol", "2", "--nodes", &nodes(&env)], "redis-py stateful ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_stateful_resp3() {
    let env = start(small()).await;
    expect_ok(&env, "redis_py_stateful.py", &["--protocol", "3", "--nodes", &nodes(&env)], "redis-py stateful ok");
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
    expect_ok(
        &env,
        "redis_py_stateful.py",
        &["--cross-slot", "per-shard", "--nodes", &nodes(&env)],
        "redis-py stateful ok",
    );
}
