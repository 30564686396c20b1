//! Topology changes under load: live resharding (redis-cli and a manual SETSLOT/MIGRATE sequence
//! that leaves keys in ASK state), CLUSTER FAILOVER and kill -9 of a master. A client loop runs
//! through the proxy the whole time; every acknowledged write must read back.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use redis::AsyncCommands;

/// A client loop writing and reading `keys` in turn through the proxy.
struct Workload {
    stop: Arc<AtomicBool>,
    handle: tokio::task::JoinHandle<Report>,
}

#[derive(Debug, Default)]
struct Report {
    ok: u64,
    errors: Vec<String>,
    /// Last acknowledged value per key.
    acked: HashMap<String, u64>,
    /// Slowest single request.
    slowest: Duration,
}

fn workload(url: String, keys: Vec<String>) -> Workload {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let handle = tokio::spawn(async move {
        let mut c = client_conn(&url).await;
        let mut rep = Report::default();
        let mut i = 0u64;
        // Bounded in time and in collected errors even if the test never says stop.
        let until = Instant::now() + Duration::from_secs(180);
        while !s.load(Ordering::Relaxed) && Instant::now() < until && rep.errors.len() < 100 {
            let k = &keys[(i as usize) % keys.len()];
            let t = Instant::now();
            let w: redis::RedisResult<()> = c.set(k, i).await;
            rep.slowest = rep.slowest.max(t.elapsed());
            match w {
                Ok(()) => {
                    rep.acked.insert(k.clone(), i);
                    rep.ok += 1;
                }
                Err(e) => rep.errors.push(format!("SET {k}: {e}")),
            }
            let t = Instant::now();
            let r: redis::RedisResult<Option<u64>> = c.get(k).await;
            rep.slowest = rep.slowest.max(t.elapsed());
            match r {
                Ok(v) => {
                    if let Some(&want) = rep.acked.get(k) {
                        if v != Some(want) {
                            rep.errors.push(format!("GET {k}: {v:?}, expected {want}"));
                        }
                    }
                    rep.ok += 1;
                }
                Err(e) => rep.errors.push(format!("GET {k}: {e}")),
            }
            i += 1;
        }
        rep
    });
    Workload { stop, handle }
}

impl Workload {
    async fn finish(self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.await.expect("workload task")
    }
}

/// Reads back every acknowledged write through the proxy.
async fn verify_acked(env: &Env, rep: &Report) {
    let mut c = env.conn().await;
    for (k, want) in &rep.acked {
        let v: Option<u64> = c.get(k).await.expect("read back");
        assert_eq!(v, Some(*want), "acked write of {k} lost");
    }
}

fn keys_for_slots(slots: &[u16], per_slot: usize) -> Vec<String> {
    let mut keys = Vec::new();
    for &s in slots {
        for j in 0..per_slot {
            keys.push(key_in_slot(s, &format!("w{j}-")));
        }
    }
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_reshard_with_redis_cli_has_no_errors() {
    let env = start(small()).await;
    let masters = env.cluster.masters();
    let (from, to) = (masters[0], masters[1]);
    let before: Vec<u16> = env.cluster.slots_of(from);
    // One key in each of the source's slots, so whichever slots redis-cli picks, the loop uses them.
    let keys = keys_for_slots(&before, 1);
    let w = workload(env.url(), keys);
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::task::block_in_place(|| env.cluster.reshard(from, to, 150)).expect("reshard");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rep = w.finish().await;
    let after = env.cluster.slots_of(from);
    assert_eq!(before.len() - after.len(), 150, "150 slots moved");
    assert!(rep.errors.is_empty(), "errors during reshard: {:?}", &rep.errors[..rep.errors.len().min(10)]);
    assert!(rep.ok > 100);
    verify_acked(&env, &rep).await;
    // The proxy's map follows: every moved slot now routes to the target.
    let t = env.proxy.proxy.topology.load_full();
    let moved: Vec<u16> = before.iter().filter(|s| !after.contains(s)).copied().collect();
    assert_eq!(moved.len(), 150);
    for s in moved {
        assert_eq!(t.master_for(s), Some(format!("127.0.0.1:{to}").as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_migration_in_ask_state_has_no_errors() {
    let env = start(small()).await;
    let masters = env.cluster.masters();
    let (from, to) = (masters[0], masters[2]);
    let slot = env.cluster.slots_of(from)[10];
    let keys = keys_for_slots(&[slot], 40);
    // Pre-populate so that the migration really moves keys.
    {
        let mut c = env.conn().await;
        for k in &keys {
            let _: () = c.set(k, 0).await.unwrap();
        }
    }
    let w = workload(env.url(), keys.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    tokio::task::block_in_place(|| env.cluster.migrate_slot_manual_begin(slot, from, to)).expect("begin");
    // Some keys are now on the target, the rest on the source: the loop lives on ASK redirects.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut c = env.conn().await;
    // Multi-key reads inside the migrating slot are retried (TRYAGAIN) or answered, never wrong.
    let _: Vec<Option<u64>> = c.mget(&keys[..2]).await.unwrap_or_default();
    tokio::task::block_in_place(|| env.cluster.migrate_slot_manual_finish(slot, from, to)).expect("finish");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let rep = w.finish().await;
    assert!(rep.errors.is_empty(), "errors during migration: {:?}", &rep.errors[..rep.errors.len().min(10)]);
    assert!(rep.ok > 100, "the loop made progress: {}", rep.ok);
    verify_acked(&env, &rep).await;
    assert_eq!(env.cluster.slot_owner(slot), Some(to));
    // Every key of the slot now lives on the target node.
    let mut direct = env.node(to).await;
    for k in &keys {
        let v: Option<u64> = direct.get(k).await.unwrap();
        assert!(v.is_some(), "{k} on the target");
    }
}

/// Pipelines of SET k v / GET k over keys of a migrating slot and of other slots: the proxy sends
/// each node's share of a pipeline as one batch, and the commands of a batch that come back ASK or
/// MOVED go on one by one. Every GET must see the SET before it, and replies must stay in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_through_ask_and_moved_keep_order() {
    let env = start_with(small(), |c| c.admin_listen = Some("127.0.0.1:0".parse().unwrap())).await; // ok: test
    let masters = env.cluster.masters();
    let (from, to) = (masters[0], masters[2]);
    let slots = env.cluster.slots_of(from);
    let slot = slots[10];
    let mut keys = keys_for_slots(&[slot], 20);
    // Batch-mates on the same source node, and keys on the other masters.
    keys.extend(keys_for_slots(&slots[11..14], 2));
    for m in &masters[1..] {
        keys.extend(keys_for_slots(&env.cluster.slots_of(*m)[..2], 2));
    }
    {
        let mut c = env.conn().await;
        for k in &keys[..10] {
            let _: () = c.set(k, "old").await.unwrap(); // ok: test
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (s, url, ks) = (stop.clone(), env.url(), keys.clone());
    let looped = tokio::spawn(async move {
        let mut c = client_conn(&url).await;
        let (mut rounds, mut errors) = (0u64, Vec::new());
        let until = Instant::now() + Duration::from_secs(120);
        while !s.load(Ordering::Relaxed) && Instant::now() < until && errors.len() < 20 {
            let mut pipe = redis::pipe();
            for (i, k) in ks.iter().enumerate() {
                pipe.set(k, format!("{rounds}:{i}")).ignore().get(k);
            }
            match pipe.query_async::<Vec<String>>(&mut c).await {
                Ok(got) => {
                    let want: Vec<String> = (0..ks.len()).map(|i| format!("{rounds}:{i}")).collect();
                    if got != want {
                        errors.push(format!("round {rounds}: got {got:?}"));
                    }
                }
                Err(e) => errors.push(format!("round {rounds}: {e}")),
            }
            rounds += 1;
        }
        (rounds, errors)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::task::block_in_place(|| env.cluster.migrate_slot_manual_begin(slot, from, to)).expect("begin");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tokio::task::block_in_place(|| env.cluster.migrate_slot_manual_finish(slot, from, to)).expect("finish");
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, Ordering::Relaxed);
    let (rounds, errors) = looped.await.expect("pipeline loop");
    assert!(errors.is_empty(), "pipelines went wrong: {:?}", &errors[..errors.len().min(3)]);
    assert!(rounds > 20, "the loop made progress: {rounds} rounds");
    let m = &env.proxy.proxy.metrics;
    assert!(m.redirects_seen("ask") > 0, "the migration sent some commands through ASK");
    assert!(m.redirects_seen("moved") > 0, "and some through MOVED once it finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_failover_under_writes_has_no_errors() {
    let env = start(with_replicas()).await;
    let master = env.cluster.masters()[0];
    let replica = env.cluster.replicas_of(master)[0];
    let slots = env.cluster.slots_of(master);
    let keys = keys_for_slots(&slots[..200], 1);
    let w = workload(env.url(), keys);
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::task::block_in_place(|| env.cluster.failover(replica)).expect("failover");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let rep = w.finish().await;
    assert!(rep.errors.is_empty(), "errors during CLUSTER FAILOVER: {:?}", &rep.errors[..rep.errors.len().min(10)]);
    verify_acked(&env, &rep).await;
    assert_eq!(env.cluster.slot_owner(slots[0]), Some(replica));
    let t = env.proxy.proxy.topology.load_full();
    assert_eq!(t.master_for(slots[0]), Some(format!("127.0.0.1:{replica}").as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_master_recovers_without_restart() {
    let mut env = start(with_replicas()).await;
    let master = env.cluster.masters()[1];
    let slots = env.cluster.slots_of(master);
    let keys = keys_for_slots(&slots[..100], 1);
    let w = workload(env.url(), keys.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::task::block_in_place(|| env.cluster.kill9(master)).expect("kill -9");
    let killed_at = Instant::now();
    tokio::task::block_in_place(|| env.cluster.wait_for_promotion(master)).expect("promotion");
    let promoted_after = killed_at.elapsed();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let rep = w.finish().await;
    // Errors are allowed in the gap, but each is a clear error and nothing hung.
    for e in &rep.errors {
        assert!(
            e.contains("clusterless")
                || e.contains("CLUSTERDOWN")
                || e.contains("broken pipe")
                || e.contains("Connection"),
            "unclear error: {e}"
        );
    }
    let budget = env.proxy.proxy.backend.config().retry_budget + env.proxy.proxy.backend.config().request_timeout;
    assert!(rep.slowest < budget + Duration::from_secs(2), "a request hung for {:?}", rep.slowest);
    // After the promotion every key of the dead master's slots is writable again.
    let mut c = env.conn().await;
    for k in &keys {
        let _: () = c.set(k, "after").await.unwrap_or_else(|e| panic!("{k} after promotion ({promoted_after:?}): {e}"));
    }
    let v: String = c.get(&keys[0]).await.unwrap();
    assert_eq!(v, "after");
}
