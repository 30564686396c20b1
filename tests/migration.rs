//! A slot moved by hand (SETSLOT IMPORTING/MIGRATING, MIGRATE of half its keys, then the rest):
//! single commands, pipelines and a blocking pop live through ASK and then MOVED. (Reshards with
//! redis-cli, failovers and crashes are the shared failure suite, tests/failover.rs.)

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use redis::AsyncCommands;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_migration_in_ask_state_has_no_errors() {
    let env = start_with(small(), |c| c.admin_listen = Some("127.0.0.1:0".parse().expect("addr"))).await;
    let masters = env.cluster.masters();
    let (from, to) = (masters[0], masters[2]);
    let slot = env.cluster.slots_of(from)[10];
    let keys = keys_for_slots(&[slot], 40);
    // Pre-populated (empty logs), so that the migration really moves keys.
    let mut c = env.conn().await;
    for k in &keys {
        let _: () = c.set(k, "").await.expect("SET");
    }
    let w = write_loop(env.url(), keys.clone(), false);
    w.running().await;
    tokio::task::block_in_place(|| env.cluster.migrate_slot_manual_begin(slot, from, to)).expect("begin");
    // Some keys are now on the target, the rest on the source: the loop lives on ASK redirects.
    let asks = env.proxy.redirects("ask");
    eventually("the loop goes through ASK", || env.proxy.redirects("ask") >= asks + 20).await;
    // A multi-key read inside the migrating slot is answered (when its keys happen to be on one
    // node) or refused with the cluster's TRYAGAIN once the retry budget is spent; never wrong.
    let (a, b) = (&keys[0], &keys[39]);
    let got: redis::RedisResult<Vec<Option<String>>> = c.mget(&[a, b]).await;
    match got {
        Ok(v) => {
            let now: Vec<Option<String>> = c.mget(&[a, b]).await.unwrap_or_default();
            assert_eq!(v.len(), 2);
            for (old, new) in v.iter().zip(&now) {
                // The loop only appends: what MGET saw is a prefix of what is there a moment later.
                let (old, new) = (old.clone().unwrap_or_default(), new.clone().unwrap_or_default());
                assert!(new.starts_with(&old) || now.is_empty(), "MGET saw {old:?}, the key holds {new:?}");
            }
        }
        Err(e) => assert_eq!(
            e.kind(),
            redis::ErrorKind::Server(redis::ServerErrorKind::TryAgain),
            "MGET during the migration: {e}"
        ),
    }
    // A blocking pop of a key the source does not have follows ASK on a connection of its own, and
    // gets the element pushed (through ASK too) while it waits on the target.
    let q = key_in_slot(slot, "queue-");
    let (qq, url) = (q.clone(), env.url());
    let popper = tokio::spawn(async move {
        let mut c = client_conn(&url).await;
        redis::cmd("BLPOP").arg(&qq).arg(10).query_async::<Option<(String, String)>>(&mut c).await
    });
    let mut target = env.node(to).await;
    eventually_async("BLPOP followed ASK to the target and blocks there", || {
        let mut t = target.clone();
        async move {
            let clients: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut t).await.unwrap_or_default();
            clients.contains("cmd=blpop")
        }
    })
    .await;
    let _: () = c.rpush(&q, "job").await.expect("RPUSH");
    let popped = popper.await.expect("pop task");
    assert_eq!(popped.ok().flatten(), Some((q.clone(), "job".to_string())));
    let left: usize = c.llen(&q).await.expect("LLEN");
    assert_eq!(left, 0, "the element was taken once");
    tokio::task::block_in_place(|| env.cluster.migrate_slot_manual_finish(slot, from, to)).expect("finish");
    // The proxy learns the new owner from a MOVED or from the bus, whichever comes first.
    let owner = format!("127.0.0.1:{to}");
    eventually("the proxy routes the slot to its new owner", || {
        env.proxy.topology().master_for(slot) == Some(owner.as_str())
    })
    .await;
    w.more_rounds(20).await;
    let rep = w.finish().await;
    rep.errors_are("the migration", |_| false);
    rep.verify(&env, None).await;
    assert_eq!(env.cluster.slot_owner(slot), Some(to));
    // Every key of the slot now lives on the target node.
    for k in &keys {
        let exists: bool = target.exists(k).await.expect("EXISTS");
        assert!(exists, "{k} on the target");
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
    let env = start_with(small(), |c| c.admin_listen = Some("127.0.0.1:0".parse().expect("addr"))).await;
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
            let _: () = c.set(k, "old").await.expect("SET");
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    // Stops the loop when the test ends, also when it fails first.
    let _stop = StopOnDrop(stop.clone());
    let rounds = Arc::new(AtomicU64::new(0));
    let (s, done, url, ks) = (stop.clone(), rounds.clone(), env.url(), keys.clone());
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
            done.store(rounds, Ordering::Relaxed);
        }
        (rounds, errors)
    });
    eventually("the pipeline loop runs", || rounds.load(Ordering::Relaxed) >= 5).await;
    tokio::task::block_in_place(|| env.cluster.migrate_slot_manual_begin(slot, from, to)).expect("begin");
    let asks = env.proxy.redirects("ask");
    eventually("pipelines go through ASK", || env.proxy.redirects("ask") >= asks + 20).await;
    tokio::task::block_in_place(|| env.cluster.migrate_slot_manual_finish(slot, from, to)).expect("finish");
    let owner = format!("127.0.0.1:{to}");
    eventually("the proxy routes the slot to its new owner", || {
        env.proxy.topology().master_for(slot) == Some(owner.as_str())
    })
    .await;
    let at = rounds.load(Ordering::Relaxed);
    eventually("pipelines go on after it", || rounds.load(Ordering::Relaxed) >= at + 5).await;
    stop.store(true, Ordering::Relaxed);
    let (rounds, errors) = looped.await.expect("pipeline loop");
    assert!(errors.is_empty(), "pipelines went wrong: {:?}", &errors[..errors.len().min(3)]);
    assert!(rounds > 20, "the loop made progress: {rounds} rounds");
}

struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
