//! Topology changes under load: live resharding (redis-cli and a manual SETSLOT/MIGRATE sequence
//! that leaves keys in ASK state), CLUSTER FAILOVER and kill -9 of a master. A client loop runs
//! through the proxy the whole time; every acknowledged write must read back (tests/common/load.rs).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use redis::AsyncCommands;

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
    let w = write_loop(env.url(), keys, true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::task::block_in_place(|| env.cluster.reshard(from, to, 150)).expect("reshard");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rep = w.finish().await;
    let after = env.cluster.slots_of(from);
    assert_eq!(before.len() - after.len(), 150, "150 slots moved");
    assert!(rep.errors.is_empty(), "errors during reshard: {:?}", rep.first_errors());
    assert!(rep.ok > 100);
    rep.verify(&env, None).await;
    // The proxy's map follows: every moved slot now routes to the target.
    let t = env.proxy.topology();
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
    // One key per command: Redis refuses a multi-key command (TRYAGAIN) while its slot's keys are
    // split between the two nodes, and the proxy would retry it only within its budget.
    let w = write_loop(env.url(), keys.clone(), false);
    tokio::time::sleep(Duration::from_millis(200)).await;
    tokio::task::block_in_place(|| env.cluster.migrate_slot_manual_begin(slot, from, to)).expect("begin");
    // Some keys are now on the target, the rest on the source: the loop lives on ASK redirects.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut c = env.conn().await;
    // Multi-key reads inside the migrating slot are retried (TRYAGAIN) or answered, never wrong.
    let _: Vec<Option<u64>> = c.mget(&keys[..2]).await.unwrap_or_default();
    // A blocking pop of a key the source does not have follows ASK on a connection of its own, and
    // gets the element pushed (through ASK too) while it waits on the target.
    let q = key_in_slot(slot, "queue-");
    let (qq, url) = (q.clone(), env.url());
    let popper = tokio::spawn(async move {
        let mut c = client_conn(&url).await;
        redis::cmd("BLPOP").arg(&qq).arg(10).query_async::<Option<(String, String)>>(&mut c).await
    });
    let mut target = env.node(to).await;
    let mut blocked_on_target = false;
    for _ in 0..50 {
        let clients: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut target).await.unwrap();
        blocked_on_target = clients.contains("cmd=blpop");
        if blocked_on_target {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(blocked_on_target, "BLPOP followed ASK to the target and blocks there");
    let _: () = c.rpush(&q, "job").await.unwrap();
    let popped = popper.await.expect("pop task");
    assert_eq!(popped.ok().flatten(), Some((q.clone(), "job".to_string())));
    let left: usize = c.llen(&q).await.unwrap();
    assert_eq!(left, 0, "the element was taken once");
    tokio::task::block_in_place(|| env.cluster.migrate_slot_manual_finish(slot, from, to)).expect("finish");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let rep = w.finish().await;
    assert!(rep.errors.is_empty(), "errors during migration: {:?}", rep.first_errors());
    assert!(rep.ok > 100, "the loop made progress: {}", rep.ok);
    rep.verify(&env, None).await;
    assert_eq!(env.cluster.slot_owner(slot), Some(to));
    // Every key of the slot now lives on the target node.
    let mut direct = env.node(to).await;
    for k in &keys {
        let v: Option<u64> = direct.get(k).await.unwrap();
        assert!(v.is_some(), "{k} on the target");
    }
}

/// A reply as text: a bulk string itself, an array its elements joined by commas.
fn flat(v: &redis::Value) -> String {
    match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::Array(items) => items.iter().map(flat).collect::<Vec<_>>().join(","),
        other => format!("{other:?}"),
    }
}

/// Pipelines of SET k v / GET k over keys of a migrating slot and of other slots: the proxy sends
/// each node's share of a pipeline as one batch, and the commands of a batch that come back ASK or
/// MOVED go on one by one. Every GET must see the SET before it, and replies must stay in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_through_ask_and_moved_keep_order() {
    let env = start_with(small(), |c| c.admin_listen = Some("127.0.0.1:0".parse().unwrap())).await;
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
            let _: () = c.set(k, "old").await.unwrap();
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (s, url, ks) = (stop.clone(), env.url(), keys.clone());
    let looped = tokio::spawn(async move {
        let mut c = client_conn(&url).await;
        let (mut rounds, mut errors) = (0u64, Vec::new());
        let until = Instant::now() + Duration::from_secs(120);
        // A split MSET/MGET rides in the same batches: one key of the migrating slot, one of the
        // last master, and the MGET must see the MSET just before it.
        let (mk, other) = (&ks[0], &ks[ks.len() - 1]);
        while !s.load(Ordering::Relaxed) && Instant::now() < until && errors.len() < 20 {
            let mut pipe = redis::pipe();
            for (i, k) in ks.iter().enumerate() {
                pipe.set(k, format!("{rounds}:{i}")).ignore().get(k);
                if i == ks.len() / 2 {
                    let (a, b) = (format!("{rounds}:a"), format!("{rounds}:b"));
                    pipe.mset(&[(mk, &a), (other, &b)]).ignore().mget(&[mk, other]);
                }
            }
            match pipe.query_async::<Vec<redis::Value>>(&mut c).await {
                Ok(got) => {
                    let got: Vec<String> = got.iter().map(flat).collect();
                    let mut want: Vec<String> = (0..ks.len()).map(|i| format!("{rounds}:{i}")).collect();
                    want.insert(ks.len() / 2 + 1, format!("{rounds}:a,{rounds}:b"));
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
    let m = &env.proxy;
    assert!(m.redirects("ask") > 0, "the migration sent some commands through ASK");
    assert!(m.redirects("moved") > 0, "and some through MOVED once it finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_failover_under_writes_has_no_errors() {
    let env = start(with_replicas()).await;
    let master = env.cluster.masters()[0];
    let replica = env.cluster.replicas_of(master)[0];
    let slots = env.cluster.slots_of(master);
    let keys = keys_for_slots(&slots[..200], 1);
    let w = write_loop(env.url(), keys, true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::task::block_in_place(|| env.cluster.failover(replica)).expect("failover");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let rep = w.finish().await;
    assert!(rep.errors.is_empty(), "errors during CLUSTER FAILOVER: {:?}", rep.first_errors());
    rep.verify(&env, None).await;
    assert_eq!(env.cluster.slot_owner(slots[0]), Some(replica));
    let t = env.proxy.topology();
    assert_eq!(t.master_for(slots[0]), Some(format!("127.0.0.1:{replica}").as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_master_recovers_without_restart() {
    let mut env = start(with_replicas()).await;
    let master = env.cluster.masters()[1];
    let slots = env.cluster.slots_of(master);
    let keys = keys_for_slots(&slots[..100], 1);
    let w = write_loop(env.url(), keys.clone(), true);
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
    let budget = env.proxy.config().backend.retry_budget + env.proxy.config().backend.request_timeout;
    assert!(rep.slowest < budget + Duration::from_secs(2), "a request hung for {:?}", rep.slowest);
    // After the promotion every key of the dead master's slots is writable again.
    let mut c = env.conn().await;
    for k in &keys {
        let _: () = c.set(k, "after").await.unwrap_or_else(|e| panic!("{k} after promotion ({promoted_after:?}): {e}"));
    }
    let v: String = c.get(&keys[0]).await.unwrap();
    assert_eq!(v, "after");
}
