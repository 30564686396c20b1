//! Reads from replicas (`routing.read_from`, the setting under test): each mode sends reads where
//! it says (counted by the nodes' own INFO commandstats), writes, transactions and writing
//! scripts stay on the masters; a replica that dies or hangs costs no read; `read_from =
//! "replica"` without a replica gives its documented error; a failover and a reshard under load,
//! with `routing.read_your_writes_ms`, give no stale read of the client's own writes.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clusterless::config::{Config, ReadFrom};
use clusterless::Running;
use common::{eventually, eventually_async, key_in_slot, spread_keys, start_with, with_replicas, write_loop, Env, Raw};

/// How many times `port` ran `cmd`, by its own INFO commandstats.
fn calls(env: &Env, port: u16, cmd: &str) -> u64 {
    let stats = env.cluster.cli(port, &["INFO", "commandstats"]).expect("INFO");
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{cmd}:calls=")))
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `cmd`'s calls on the masters and on the replicas.
fn split_calls(env: &Env, cmd: &str) -> (u64, u64) {
    let masters = env.cluster.masters();
    let replicas: Vec<u16> = masters.iter().flat_map(|&m| env.cluster.replicas_of(m)).collect();
    (masters.iter().map(|&m| calls(env, m, cmd)).sum(), replicas.iter().map(|&r| calls(env, r, cmd)).sum())
}

fn reset_stats(env: &Env) {
    for p in env.cluster.ports() {
        env.cluster.cli(p, &["CONFIG", "RESETSTAT"]).expect("CONFIG RESETSTAT");
    }
}

/// Whether any replica answered a command with MOVED: the proxy sent it a write.
fn replicas_refused_writes(env: &Env) -> bool {
    env.cluster
        .masters()
        .iter()
        .flat_map(|&m| env.cluster.replicas_of(m))
        .any(|r| env.cluster.cli(r, &["INFO", "errorstats"]).expect("INFO errorstats").contains("errorstat_MOVED"))
}

/// Whether every replica has all of its master's replication stream.
fn replicas_caught_up(env: &Env) -> bool {
    env.cluster.masters().iter().all(|&m| {
        let offset = |port: u16, field: &str| {
            let info = env.cluster.cli(port, &["INFO", "replication"]).unwrap_or_default();
            info.lines().find_map(|l| l.strip_prefix(field).map(|v| v.trim().to_string()))
        };
        let at = offset(m, "master_repl_offset:");
        env.cluster.replicas_of(m).iter().all(|&r| at.is_some() && offset(r, "slave_repl_offset:") == at)
    })
}

/// Another proxy in front of `env`'s cluster.
async fn proxy(env: &Env, tweak: impl FnOnce(&mut Config)) -> Running {
    let mut cfg = common::shipped_config(env.cluster.seed());
    tweak(&mut cfg);
    let p = clusterless::start(cfg).await.expect("start proxy");
    eventually("the proxy follows the bus", || p.topology_source() == "bus").await;
    p
}

/// Every mode, on one cluster: 30 GETs, one MGET over the three masters, one EVAL_RO and one
/// EVAL, one GET inside MULTI/EXEC, and SETs; where each ran, by the nodes' own counts. Then
/// read-your-writes: 200 times a SET and the GET right after it see the value just written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_mode_reads_where_it_says_and_writes_stay_on_masters() {
    let env = start_with(with_replicas(), |_| {}).await;
    env.converges("start").await;
    let keys: Vec<String> =
        env.cluster.masters().iter().map(|&m| key_in_slot(env.cluster.slots_of(m)[0], "rr-")).collect();
    let mut c = Raw::connect(env.addr()).await;
    for k in &keys {
        assert_eq!(c.text(&["SET", k, k]).await, "+OK\r\n");
    }
    assert_eq!(c.text(&["WAIT", "1", "5000"]).await, ":1\r\n");
    eventually("the replicas have the writes", || replicas_caught_up(&env)).await;

    // (mode, GETs on masters, on replicas): 30 reads and the one EVAL_RO runs go where the mode
    // says, the one in MULTI stays on a master.
    for (mode, want) in [
        (ReadFrom::Master, Some((32, 0))),
        (ReadFrom::MasterPreferred, Some((32, 0))),
        (ReadFrom::ReplicaPreferred, Some((1, 31))),
        (ReadFrom::Replica, Some((1, 31))),
        (ReadFrom::Nearest, None),
    ] {
        let p = proxy(&env, |c| c.routing.read_from = mode).await;
        reset_stats(&env);
        let mut c = Raw::connect(p.addr()).await;
        for _ in 0..10 {
            for k in &keys {
                assert_eq!(c.text(&["GET", k]).await, format!("${}\r\n{k}\r\n", k.len()), "{mode:?}");
            }
        }
        let mget = c.text(&["MGET", &keys[0], &keys[1], &keys[2]]).await;
        assert_eq!(
            mget,
            format!("*3\r\n{}", keys.iter().map(|k| format!("${}\r\n{k}\r\n", k.len())).collect::<String>())
        );
        let script = "return redis.call('GET', KEYS[1])";
        let eval_ro = c.text(&["EVAL_RO", script, "1", &keys[0]]).await;
        assert_eq!(eval_ro, format!("${}\r\n{}\r\n", keys[0].len(), keys[0]), "{mode:?}");
        let eval = c.text(&["EVAL", "return redis.call('SET', KEYS[1], ARGV[1])", "1", &keys[1], &keys[1]]).await;
        assert_eq!(eval, "+OK\r\n", "{mode:?}");
        c.send(b"*1\r\n$5\r\nMULTI\r\n*2\r\n$3\r\nGET\r\n").await;
        c.send(format!("${}\r\n{}\r\n*1\r\n$4\r\nEXEC\r\n", keys[2].len(), keys[2]).as_bytes()).await;
        let tx = c.read_replies(3).await;
        assert_eq!(tx[2], format!("*1\r\n${}\r\n{}\r\n", keys[2].len(), keys[2]).into_bytes(), "{mode:?}");
        assert_eq!(c.text(&["SET", &keys[0], &keys[0]]).await, "+OK\r\n");

        let gets = split_calls(&env, "get");
        let on_replicas = mode != ReadFrom::Master && mode != ReadFrom::MasterPreferred;
        match want {
            Some(w) => assert_eq!(gets, w, "{mode:?}: (GETs on masters, GETs on replicas)"),
            // Whichever answers PING fastest: on one machine, any of them; all 32 ran somewhere.
            None => assert_eq!(gets.0 + gets.1, 32, "{mode:?}"),
        }
        if want.is_some() {
            let (mget, eval_ro) = (split_calls(&env, "mget"), split_calls(&env, "eval_ro"));
            assert_eq!(mget, if on_replicas { (0, 3) } else { (3, 0) }, "{mode:?}: MGET parts");
            assert_eq!(eval_ro, if on_replicas { (0, 1) } else { (1, 0) }, "{mode:?}: EVAL_RO");
        }
        // The writing script and the transaction ran on masters (a replica runs EVAL only as
        // the master's replication stream, which carries the script's SET instead), and no
        // replica was ever asked to write.
        assert_eq!(split_calls(&env, "eval"), (1, 0), "{mode:?}: EVAL");
        assert_eq!(split_calls(&env, "exec").0, 1, "{mode:?}: EXEC");
        assert!(!replicas_refused_writes(&env), "{mode:?}: a write reached a replica");
        if mode == ReadFrom::Replica {
            // In WATCH a client reads from the master (what WATCH guards is the master's value).
            reset_stats(&env);
            assert_eq!(c.text(&["WATCH", &keys[0]]).await, "+OK\r\n");
            assert_eq!(c.text(&["GET", &keys[0]]).await, format!("${}\r\n{}\r\n", keys[0].len(), keys[0]));
            assert_eq!(split_calls(&env, "get"), (1, 0), "a read in WATCH");
            assert_eq!(c.text(&["UNWATCH"]).await, "+OK\r\n");
            assert_eq!(c.text(&["GET", &keys[0]]).await, format!("${}\r\n{}\r\n", keys[0].len(), keys[0]));
            assert_eq!(split_calls(&env, "get"), (1, 1), "a read after UNWATCH");
        }
    }

    // Read-your-writes: each GET right after the client's own SET of its key goes to the
    // master, and sees the value; the client's reads of other slots still go to replicas.
    let p = proxy(&env, |c| {
        c.routing.read_from = ReadFrom::ReplicaPreferred;
        c.routing.read_your_writes = Duration::from_millis(2000);
    })
    .await;
    reset_stats(&env);
    // One client connection (redis-rs multiplexes clones of it over one socket).
    let mut c = common::client_conn(&format!("redis://{}/", p.addr())).await;
    let k = keys[0].clone();
    for i in 0..200 {
        let v = format!("v{i}");
        let _: () = redis::cmd("SET").arg(&k).arg(&v).query_async(&mut c).await.expect("SET");
        let got: String = redis::cmd("GET").arg(&k).query_async(&mut c).await.expect("GET");
        assert_eq!(got, v, "read {i} after its write");
    }
    assert_eq!(split_calls(&env, "get"), (200, 0), "(GETs on masters, on replicas) within the window");
    let other: String = redis::cmd("GET").arg(&keys[1]).query_async(&mut c).await.expect("GET");
    assert_eq!(other, keys[1]);
    assert_eq!(split_calls(&env, "get"), (200, 1), "a slot the client did not write is read from a replica");
    // Past the window, the written slot is read from a replica again.
    let env = &env;
    eventually_async("a read of the written slot reaches a replica once the window ended", move || {
        let (mut c, k) = (c.clone(), k.clone());
        async move {
            let v: String = redis::cmd("GET").arg(&k).query_async(&mut c).await.expect("GET");
            assert_eq!(v, "v199");
            split_calls(env, "get").1 > 1
        }
    })
    .await;
}

/// A reader running in the background until stopped or until a wrong answer; `ok` counts right
/// answers so far.
struct Reader {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Reader {
    /// GETs of `keys` (each holding its own name) through `url`, one at a time.
    fn start(url: String, keys: Vec<String>) -> Reader {
        let (stop, ok) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (s, n) = (stop.clone(), ok.clone());
        let task = tokio::spawn(async move {
            let mut c = common::client_conn(&url).await;
            // The first wrong answer ends the loop: a test then fails on it instead of spinning
            // on a connection that answers every request with an error at once.
            while !s.load(Ordering::Relaxed) {
                for k in &keys {
                    let r: redis::RedisResult<Option<String>> = redis::cmd("GET").arg(k).query_async(&mut c).await;
                    match r {
                        Ok(Some(v)) if &v == k => n.fetch_add(1, Ordering::Relaxed),
                        other => return vec![format!("GET {k}: {other:?}")],
                    };
                }
            }
            Vec::new()
        });
        Reader { stop, ok, task }
    }

    /// Stops it: (right answers, the wrong one if any).
    async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let bad = self.task.await.expect("reader");
        (self.ok.load(Ordering::Relaxed), bad)
    }
}

/// Whether the proxy's map flags the node on `port` failed.
fn flagged(env: &Env, port: u16) -> bool {
    env.proxy.topology().nodes.iter().any(|n| n.addr.ends_with(&format!(":{port}")) && n.failed)
}

/// A replica answering -MASTERDOWN, then one killed under read load, then another stopped
/// (SIGSTOP) under read load: every read is answered with the value, from the master meanwhile; `read_from = "replica"` with no live
/// replica answers its documented error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_and_hung_replicas_cost_no_read() {
    let mut env = start_with(with_replicas(), |c| {
        c.routing.read_from = ReadFrom::ReplicaPreferred;
        // A hung replica costs each read sent to it this long before it is asked of the master.
        c.backend.request_timeout = Duration::from_millis(500);
    })
    .await;
    env.converges("start").await;
    let masters = env.cluster.masters();
    let keys: Vec<String> = masters.iter().map(|&m| key_in_slot(env.cluster.slots_of(m)[0], "rk-")).collect();
    let mut c = env.conn().await;
    for k in &keys {
        let _: () = redis::cmd("SET").arg(k).arg(k).query_async(&mut c).await.expect("SET");
    }
    eventually("the replicas have the writes", || replicas_caught_up(&env)).await;

    // A replica whose link to its master is down, with `replica-serve-stale-data no`, answers
    // -MASTERDOWN: its link is cut, and it cannot log in again (a user the master lacks).
    let cut = env.cluster.replicas_of(masters[2])[0];
    let set = |k: &str, v: &str| env.cluster.cli(cut, &["CONFIG", "SET", k, v]).expect("CONFIG SET");
    set("replica-serve-stale-data", "no");
    set("masteruser", "nobody");
    set("masterauth", "wrong");
    env.cluster.cli(cut, &["CLIENT", "KILL", "TYPE", "master"]).expect("CLIENT KILL");
    let link = |port: u16| env.cluster.cli(port, &["INFO", "replication"]).unwrap_or_default();
    eventually("the replica's link is down", || link(cut).contains("master_link_status:down")).await;
    let mut c = env.conn().await;
    for _ in 0..50 {
        let v: String = redis::cmd("GET").arg(&keys[2]).query_async(&mut c).await.expect("GET");
        assert_eq!(v, keys[2]);
    }
    let refused = env.cluster.cli(cut, &["INFO", "errorstats"]).expect("INFO errorstats");
    assert!(refused.contains("errorstat_MASTERDOWN:count="), "the replica was asked and refused: {refused}");
    eprintln!("MASTERDOWN replica: {}", refused.lines().find(|l| l.contains("MASTERDOWN")).unwrap_or_default());
    set("masteruser", "");
    set("masterauth", "");
    eventually("the replica's link is up", || link(cut).contains("master_link_status:up")).await;
    set("replica-serve-stale-data", "yes");

    let victim = env.cluster.replicas_of(masters[0])[0];
    let reader = Reader::start(env.url(), keys.clone());
    tokio::task::block_in_place(|| env.cluster.kill9(victim)).expect("kill -9");
    eventually("the proxy flags the dead replica", || flagged(&env, victim)).await;
    // Reads go on once it is flagged too (counted, not timed: a loaded machine reads slowly).
    let at = reader.ok.load(Ordering::Relaxed);
    eventually("30 more reads after the flag", || {
        reader.ok.load(Ordering::Relaxed) >= at + 30 || reader.task.is_finished()
    })
    .await;
    let (ok, bad) = reader.finish().await;
    assert!(bad.is_empty(), "reads failed after a replica died: {bad:?}");
    assert!(ok >= at + 30, "{ok} reads");

    let hung = env.cluster.replicas_of(masters[1])[0];
    let reader = Reader::start(env.url(), keys.clone());
    tokio::task::block_in_place(|| env.cluster.sigstop(hung)).expect("SIGSTOP");
    let stopped = Instant::now();
    eventually("the proxy flags the hung replica", || flagged(&env, hung)).await;
    let (ok, bad) = reader.finish().await;
    assert!(bad.is_empty(), "reads failed while a replica hung: {bad:?}");
    eprintln!("hung replica: {ok} reads in {:?} until the proxy saw it flagged", stopped.elapsed());
    tokio::task::block_in_place(|| env.cluster.sigcont(hung)).expect("SIGCONT");

    // "replica": never the master. The killed replica's master has none left.
    let strict = proxy(&env, |c| {
        c.routing.read_from = ReadFrom::Replica;
        c.backend.retry_budget = Duration::from_millis(300);
    })
    .await;
    let mut r = Raw::connect(strict.addr()).await;
    let slot = env.cluster.slots_of(masters[0])[0];
    assert_eq!(
        r.text(&["GET", &keys[0]]).await,
        format!(
            "-ERR clusterless: no healthy replica serves slot {slot} for 'get' (routing.read_from is \"replica\")\r\n"
        )
    );
    // Writes and the other shards' reads are unaffected.
    assert_eq!(r.text(&["SET", &keys[0], &keys[0]]).await, "+OK\r\n");
    assert_eq!(r.text(&["GET", &keys[2]]).await, format!("${}\r\n{}\r\n", keys[2].len(), keys[2]));

    // A replica that joins later is used: the third master's replica moves to the first master.
    let first = env.cluster.node_id(masters[0]).expect("node id");
    env.cluster.cli(cut, &["CLUSTER", "REPLICATE", &first]).expect("CLUSTER REPLICATE");
    let strict_url = format!("redis://{}/", strict.addr());
    let (k, before) = (keys[0].clone(), calls(&env, cut, "get"));
    eventually_async("the strict proxy reads from the replica that joined", || {
        let (url, k) = (strict_url.clone(), k.clone());
        async move {
            let mut c = common::client_conn(&url).await;
            let v: redis::RedisResult<Option<String>> = redis::cmd("GET").arg(&k).query_async(&mut c).await;
            matches!(v, Ok(Some(v)) if v == k)
        }
    })
    .await;
    assert!(calls(&env, cut, "get") > before, "the read ran on the replica that joined");
}

/// A failover and a reshard under the write-then-read load of `common::write_loop`, with reads
/// from replicas and read-your-writes on: no errors but the documented in-flight ones, no write
/// lost or doubled, and no read that misses the client's own write just before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_and_reshard_under_load_read_your_writes() {
    let env = start_with(with_replicas(), |c| {
        c.routing.read_from = ReadFrom::ReplicaPreferred;
        c.routing.read_your_writes = Duration::from_millis(1000);
    })
    .await;
    env.converges("start").await;
    let l = write_loop(env.url(), spread_keys("rf", 300), true);
    l.running().await;
    let masters = env.cluster.masters();
    let r = env.cluster.replicas_of(masters[0])[0];
    tokio::task::block_in_place(|| env.cluster.failover(r)).expect("CLUSTER FAILOVER");
    env.converges("CLUSTER FAILOVER").await;
    l.more_rounds(50).await;
    tokio::task::block_in_place(|| env.cluster.reshard(masters[1], masters[2], 200)).expect("reshard");
    env.converges("reshard").await;
    l.more_rounds(50).await;
    let rep = l.finish().await;
    rep.only_in_flight_failed(0);
    assert!(rep.stale.is_empty(), "reads that missed the client's own write: {:?}", rep.stale);
    eventually("the replicas have every write", || replicas_caught_up(&env)).await;
    rep.verify(&env, None).await;
    assert!(rep.ok > 200, "{} commands answered", rep.ok);
}

/// `master-preferred` with the master killed (kill -9) under read load: the reads go on, from its
/// replica, while the cluster has not even declared the master failed (its node timeout, 2 s
/// here), where "master" holds them until the promotion; none fails. (Between FAIL and the
/// promotion the cluster itself answers CLUSTERDOWN to every read: held within the retry budget,
/// as in any mode.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_preferred_reads_do_not_wait_for_a_failover() {
    let mut env = start_with(with_replicas(), |c| c.routing.read_from = ReadFrom::MasterPreferred).await;
    env.converges("start").await;
    let victim = env.cluster.masters()[0];
    let slot = env.cluster.slots_of(victim)[0];
    let key = key_in_slot(slot, "mp-");
    let mut c = env.conn().await;
    let _: () = redis::cmd("SET").arg(&key).arg(&key).query_async(&mut c).await.expect("SET");
    eventually("the replicas have the write", || replicas_caught_up(&env)).await;
    let reader = Reader::start(env.url(), vec![key]);
    eventually("reads run", || reader.ok.load(Ordering::Relaxed) > 10).await;
    tokio::task::block_in_place(|| env.cluster.kill9(victim)).expect("kill -9");
    let at_kill = reader.ok.load(Ordering::Relaxed);
    eventually("reads go on while the master is down", || reader.ok.load(Ordering::Relaxed) > at_kill + 100).await;
    let owner = env.proxy.topology().master_for(slot).map(str::to_string);
    assert!(
        owner.as_deref().is_some_and(|o| o.ends_with(&format!(":{victim}"))),
        "100 reads answered before any promotion: the slot is still the dead master's ({owner:?})"
    );
    tokio::task::block_in_place(|| env.cluster.wait_for_promotion(victim)).expect("promotion");
    env.converges("kill -9").await;
    let (ok, bad) = reader.finish().await;
    assert!(bad.is_empty(), "reads failed while the master was down: {bad:?}");
    eprintln!("master-preferred: {ok} reads through a kill -9 of the master");
}
