//! Topology changes combined with the stateful commands, on real clusters with the shipped
//! defaults: a transaction, a WATCH, a script, a SCAN and a cross-slot blocking pop each live
//! through a live reshard of their slot (keys moving with SETSLOT MIGRATING/IMPORTING and
//! MIGRATE) and through a CLUSTER FAILOVER of their master. What is asserted is exact: a
//! transaction commits with all its effects exactly once (unique INCR counters and APPEND tokens
//! show a half-applied or doubled one) or answers the documented error with no effect; a script
//! runs and EVALSHA never answers NOSCRIPT; a SCAN returns every key that existed throughout; a
//! pushed element reaches the blocked client exactly once.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use clusterless::localcluster::LocalCluster;
use common::*;

const TRYAGAIN: &str = "-TRYAGAIN Multiple keys request during rehashing of slot\r\n";
const EXECABORT: &str = "-EXECABORT Transaction discarded because of previous errors.\r\n";

/// First half of a live reshard of `slot` by hand: IMPORTING on `to`, MIGRATING on `from`, and
/// exactly `keys` migrated (the others stay on `from`), which leaves the slot in ASK state.
fn begin_move(c: &LocalCluster, slot: u16, from: u16, to: u16, keys: &[&str]) {
    let (from_id, to_id) = (c.node_id(from).expect("from id"), c.node_id(to).expect("to id"));
    let s = slot.to_string();
    c.cli(to, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id]).expect("IMPORTING");
    c.cli(from, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id]).expect("MIGRATING");
    if !keys.is_empty() {
        let port = to.to_string();
        let mut args = vec!["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS"];
        args.extend_from_slice(keys);
        let out = c.cli(from, &args).expect("MIGRATE");
        assert!(out.trim() == "OK", "MIGRATE {keys:?}: {out}");
    }
}

/// A whole live reshard of `slot`: IMPORTING/MIGRATING, its keys migrated in two steps, then the
/// slot assigned to `to` everywhere (the harness's manual migration).
fn move_slot(c: &LocalCluster, slot: u16, from: u16, to: u16) {
    c.migrate_slot_manual_begin(slot, from, to).expect("migration begins");
    c.migrate_slot_manual_finish(slot, from, to).expect("migration ends");
}

/// Waits until the proxy routes `slot` to `port`.
async fn proxy_routes(env: &Env, slot: u16, port: u16) {
    let want = format!("127.0.0.1:{port}");
    eventually(&format!("the proxy routes slot {slot} to {port}"), || {
        env.proxy.topology().master_for(slot) == Some(want.as_str())
    })
    .await;
}

/// CLUSTER FAILOVER on `replica` once its link to its master is up (a demoted master resyncs
/// first; a manual failover started before that would not begin).
async fn failover(env: &Env, replica: u16) {
    let r = env.node(replica).await;
    eventually_async(&format!("replica {replica} is in sync"), || {
        let mut r = r.clone();
        async move {
            let info: String = redis::cmd("INFO").arg("replication").query_async(&mut r).await.unwrap_or_default();
            info.contains("master_link_status:up")
        }
    })
    .await;
    // Every node knows it as a replica (a demoted master's new role travels by gossip; its master
    // ignores a failover request from a node it does not know as its replica yet).
    let id = env.cluster.node_id(replica).expect("replica id");
    let ports = env.cluster.ports();
    eventually("every node knows the replica's role", || {
        tokio::task::block_in_place(|| {
            ports.iter().all(|&p| {
                let nodes = env.cluster.cli(p, &["CLUSTER", "NODES"]).unwrap_or_default();
                nodes.lines().any(|l| {
                    let f: Vec<&str> = l.split(' ').collect();
                    f.first() == Some(&id.as_str()) && f.get(2).is_some_and(|flags| flags.contains("slave"))
                })
            })
        })
    })
    .await;
    if let Err(e) = tokio::task::block_in_place(|| env.cluster.failover(replica)) {
        for p in env.cluster.ports() {
            let log = std::fs::read_to_string(env.cluster.log_path(p)).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(25).collect();
            eprintln!("--- node {p}\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
        panic!("CLUSTER FAILOVER of {replica}: {e}");
    }
}

/// A key's value read from the node that owns its slot now (not through the proxy).
async fn on_owner(env: &Env, key: &str) -> Option<String> {
    let owner = env.cluster.slot_owner(clusterless::slot::slot(key.as_bytes())).expect("slot owner");
    let mut n = env.node(owner).await;
    redis::cmd("GET").arg(key).query_async(&mut n).await.expect("GET on the owner")
}

/// RESP integer.
fn int(n: usize) -> String {
    format!(":{n}\r\n")
}

/// Sends commands in one write and returns their replies as text.
async fn pipeline(c: &mut Raw, cmds: &[&[&str]]) -> Vec<String> {
    let mut bytes = Vec::new();
    for cmd in cmds {
        let args: Vec<&[u8]> = cmd.iter().map(|a| a.as_bytes()).collect();
        bytes.extend_from_slice(&clusterless::resp::encode_command(&args));
    }
    c.send(&bytes).await;
    c.read_replies(cmds.len()).await.into_iter().map(|r| String::from_utf8_lossy(&r).into_owned()).collect()
}

/// MULTI, INCR `counter`, APPEND `log` `token`: queued, not yet executed.
async fn queue_tx(c: &mut Raw, counter: &str, log: &str, token: &str) {
    let got = pipeline(c, &[&["MULTI"], &["INCR", counter], &["APPEND", log, token]]).await;
    assert_eq!(got, ["+OK\r\n", "+QUEUED\r\n", "+QUEUED\r\n"], "MULTI INCR APPEND");
}

/// A client that runs `MULTI; INCR counter; APPEND log "<i>,"; EXEC` over and over on one slot
/// while the test moves that slot and fails its master over. Every EXEC must either commit (its
/// INCR answering exactly one more than the last committed one) or answer TRYAGAIN (the slot's
/// keys were split between two nodes for longer than the retry budget): nothing else.
struct TxLoop {
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicU64>,
    handle: tokio::task::JoinHandle<(Vec<u64>, Vec<u64>, Vec<String>)>,
}

impl TxLoop {
    fn start(env: &Env, counter: String, log: String) -> TxLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicU64::new(0));
        let (s, r, addr) = (stop.clone(), rounds.clone(), env.addr());
        let handle = tokio::spawn(async move {
            let mut c = Raw::connect(addr).await;
            let (mut committed, mut refused, mut wrong) = (Vec::new(), Vec::new(), Vec::new());
            let (mut i, mut len) = (0u64, 0usize);
            while !s.load(Ordering::Relaxed) && wrong.len() < 10 {
                let token = format!("{i},");
                let got =
                    pipeline(&mut c, &[&["MULTI"], &["INCR", &counter], &["APPEND", &log, &token], &["EXEC"]]).await;
                if got.len() < 4 {
                    wrong.push(format!("round {i}: connection closed after {got:?}"));
                    break;
                }
                let queued = got[..3] == ["+OK\r\n", "+QUEUED\r\n", "+QUEUED\r\n"];
                let n = committed.len();
                let want = format!("*2\r\n{}{}", int(n + 1), int(len + token.len()));
                if queued && got[3] == want {
                    committed.push(i);
                    len += token.len();
                } else if queued && got[3] == TRYAGAIN {
                    refused.push(i);
                } else {
                    wrong.push(format!("round {i}: {got:?} (want {want:?})"));
                }
                i += 1;
                r.store(i, Ordering::Relaxed);
            }
            (committed, refused, wrong)
        });
        TxLoop { stop, rounds, handle }
    }

    /// Waits until the loop completed `n` more rounds.
    async fn more_rounds(&self, n: u64) {
        let at = self.rounds.load(Ordering::Relaxed);
        eventually("the transaction loop goes on", || self.rounds.load(Ordering::Relaxed) >= at + n).await;
    }

    async fn finish(self) -> (Vec<u64>, Vec<u64>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.await.expect("transaction loop")
    }
}

/// One slot moved back and forth between masters and failed over, with transactions queued before
/// each change and executed after it, one executed while the slot's keys are split between two
/// nodes, WATCH across a move and a failover, and a loop of transactions running throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_through_live_reshards_and_a_failover() {
    // The admin endpoint (port 0) only so that the test can read the TRYAGAIN counter; every
    // routing setting is the shipped default.
    let env = start_with(with_replicas(), |c| c.admin_listen = Some("127.0.0.1:0".parse().expect("addr"))).await;
    env.converges("start").await;
    let ms = env.cluster.masters();
    let (m0, m1) = (ms[0], ms[1]);
    let slot = env.cluster.slots_of(m0)[100];
    let (a, b) = (key_in_slot(slot, "tx-counter-"), key_in_slot(slot, "tx-log-"));
    let mut c = Raw::connect(env.addr()).await;
    assert_eq!(c.text(&["SET", &a, "100"]).await, "+OK\r\n");
    assert_eq!(c.text(&["SET", &b, "start,"]).await, "+OK\r\n");
    // Filler keys, so that the moves really carry keys besides ours.
    for i in 0..20 {
        let k = key_in_slot(slot, &format!("tx-fill{i}-"));
        assert_eq!(c.text(&["SET", &k, "x"]).await, "+OK\r\n");
    }
    let looped = TxLoop::start(&env, key_in_slot(slot, "tx-loop-n-"), key_in_slot(slot, "tx-loop-log-"));
    looped.more_rounds(20).await;
    let (mut n, mut log) = (100usize, String::from("start,"));

    // 1. Queued, then the slot moves away entirely (MOVED at EXEC): the block goes to the new
    //    owner and commits once.
    queue_tx(&mut c, &a, &b, "t1,").await;
    tokio::task::block_in_place(|| move_slot(&env.cluster, slot, m0, m1));
    (n, log) = (n + 1, log + "t1,");
    assert_eq!(c.text(&["EXEC"]).await, format!("*2\r\n{}{}", int(n), int(log.len())), "EXEC after a move");
    assert_eq!(on_owner(&env, &a).await, Some(n.to_string()));
    assert_eq!(on_owner(&env, &b).await, Some(log.clone()));
    looped.more_rounds(20).await;

    // 2. Queued, then the slot half-migrated with the two keys on different nodes: the source
    //    answers ASK, the target TRYAGAIN for EXEC; after the retry budget EXEC answers the
    //    node's TRYAGAIN, and nothing ran on either node.
    queue_tx(&mut c, &a, &b, "t2,").await;
    tokio::task::block_in_place(|| begin_move(&env.cluster, slot, m1, m0, &[&b]));
    assert_eq!(c.text(&["EXEC"]).await, TRYAGAIN, "EXEC over a split slot");
    let mut at_m0 = env.node(m0).await;
    let mut at_m1 = env.node(m1).await;
    let got: Option<String> = redis::cmd("GET").arg(&a).query_async(&mut at_m1).await.expect("GET a");
    assert_eq!(got, Some(n.to_string()), "the counter did not move (on the source)");
    let mut pipe = redis::pipe();
    pipe.cmd("ASKING").ignore().cmd("GET").arg(&b);
    let (got,): (Option<String>,) = pipe.query_async(&mut at_m0).await.expect("ASKING GET b");
    assert_eq!(got, Some(log.clone()), "the log did not move (on the target)");
    // The queued transaction is gone: a second EXEC is Redis's error.
    assert_eq!(c.text(&["EXEC"]).await, "-ERR EXEC without MULTI\r\n");

    // 3. EXEC sent while the keys are split, the move finished while the proxy retries: it
    //    commits once on the new owner.
    queue_tx(&mut c, &a, &b, "t3,").await;
    let tryagains = env.proxy.redirects("tryagain");
    c.send(&clusterless::resp::encode_command(&[b"EXEC".as_ref()])).await;
    eventually("EXEC meets TRYAGAIN", || env.proxy.redirects("tryagain") > tryagains).await;
    tokio::task::block_in_place(|| env.cluster.migrate_slot_manual_finish(slot, m1, m0)).expect("finish");
    let got = String::from_utf8_lossy(&c.read_replies(1).await[0]).into_owned();
    (n, log) = (n + 1, log + "t3,");
    assert_eq!(got, format!("*2\r\n{}{}", int(n), int(log.len())), "EXEC during the move");
    assert_eq!(on_owner(&env, &a).await, Some(n.to_string()));
    assert_eq!(on_owner(&env, &b).await, Some(log.clone()));
    looped.more_rounds(20).await;

    // 4. WATCH, MULTI and a queued INCR, then the slot moves (the watched key migrated with it):
    //    EXEC answers nil, as for a changed key, and nothing ran.
    assert_eq!(c.text(&["WATCH", &a]).await, "+OK\r\n");
    assert_eq!(pipeline(&mut c, &[&["MULTI"], &["INCR", &a]]).await, ["+OK\r\n", "+QUEUED\r\n"]);
    tokio::task::block_in_place(|| move_slot(&env.cluster, slot, m0, m1));
    assert_eq!(c.text(&["EXEC"]).await, "*-1\r\n", "EXEC after the watched key moved");
    assert_eq!(on_owner(&env, &a).await, Some(n.to_string()));
    // The next WATCH may reach the proxy before it learns of the move: it follows the old
    // owner's MOVED, as any keyed command does.

    // 5. WATCH, then the slot moves before MULTI: once the proxy routes it to the new owner the
    //    INCR is refused at queue time and EXEC aborts; a WATCH retry then commits once.
    assert_eq!(c.text(&["WATCH", &a]).await, "+OK\r\n");
    tokio::task::block_in_place(|| move_slot(&env.cluster, slot, m1, m0));
    proxy_routes(&env, slot, m0).await;
    let got = pipeline(&mut c, &[&["MULTI"], &["INCR", &a], &["EXEC"]]).await;
    assert_eq!(got[0], "+OK\r\n");
    // Today's text is CROSSSLOT (Redis Cluster itself answers MOVED here, which a plain client
    // cannot follow); what matters is that it is refused (not +QUEUED) and that EXEC aborts.
    assert!(got[1].starts_with('-'), "INCR of a watched key that moved away is refused: {got:?}");
    assert_eq!(got[2], EXECABORT);
    assert_eq!(on_owner(&env, &a).await, Some(n.to_string()));
    n += 1;
    let got = pipeline(&mut c, &[&["WATCH", &a], &["MULTI"], &["INCR", &a], &["EXEC"]]).await;
    assert_eq!(got, ["+OK\r\n", "+OK\r\n", "+QUEUED\r\n", &format!("*1\r\n{}", int(n))], "WATCH retry");
    looped.more_rounds(20).await;

    // 6. Queued, then CLUSTER FAILOVER of the slot's master: EXEC commits once on the promoted
    //    replica.
    let owner = env.cluster.slot_owner(slot).expect("owner");
    let replica = env.cluster.replicas_of(owner)[0];
    queue_tx(&mut c, &a, &b, "t6,").await;
    failover(&env, replica).await;
    (n, log) = (n + 1, log + "t6,");
    assert_eq!(c.text(&["EXEC"]).await, format!("*2\r\n{}{}", int(n), int(log.len())), "EXEC after a failover");
    assert_eq!(env.cluster.slot_owner(slot), Some(replica));
    assert_eq!(on_owner(&env, &a).await, Some(n.to_string()));
    assert_eq!(on_owner(&env, &b).await, Some(log.clone()));
    looped.more_rounds(20).await;

    env.converges("failover").await;

    // 7. WATCH and a queued INCR, then a failover back, and another client changes the watched
    //    key on the new master: EXEC answers nil and runs nothing, whether or not the write has
    //    reached the deposed master (now its replica, where the watch connection is): a watch on
    //    a node that is no longer the slot's master cannot vouch for the key. A WATCH retry
    //    commits once.
    assert_eq!(
        pipeline(&mut c, &[&["WATCH", &a], &["MULTI"], &["INCR", &a]]).await,
        ["+OK\r\n", "+OK\r\n", "+QUEUED\r\n"]
    );
    failover(&env, owner).await;
    env.converges("failover back").await;
    n += 1;
    let mut other = Raw::connect(env.addr()).await;
    assert_eq!(other.text(&["INCR", &a]).await, int(n), "another client's INCR");
    assert_eq!(c.text(&["EXEC"]).await, "*-1\r\n", "EXEC of a watched key changed after a failover");
    assert_eq!(on_owner(&env, &a).await, Some(n.to_string()));
    n += 1;
    let got = pipeline(&mut c, &[&["WATCH", &a], &["MULTI"], &["INCR", &a], &["EXEC"]]).await;
    assert_eq!(got, ["+OK\r\n", "+OK\r\n", "+QUEUED\r\n", &format!("*1\r\n{}", int(n))], "WATCH retry");

    // The loop: what committed is in its log exactly once and in order, what was refused is not,
    // and its counter counts exactly the committed transactions.
    looped.more_rounds(20).await;
    let (committed, refused, wrong) = looped.finish().await;
    assert!(wrong.is_empty(), "transactions went wrong: {wrong:?}");
    let want: String = committed.iter().map(|i| format!("{i},")).collect();
    assert_eq!(on_owner(&env, &key_in_slot(slot, "tx-loop-log-")).await, Some(want));
    assert_eq!(on_owner(&env, &key_in_slot(slot, "tx-loop-n-")).await, Some(committed.len().to_string()));
    eprintln!("transaction loop: {} committed, {} refused with TRYAGAIN", committed.len(), refused.len());
    assert_eq!(on_owner(&env, &a).await, Some(n.to_string()));
    assert_eq!(on_owner(&env, &b).await, Some(log));
}

/// WATCH `key`, MULTI, SET `key` `value`: queued, not yet executed.
async fn watch_and_set(c: &mut Raw, key: &str, value: &str) {
    let got = pipeline(c, &[&["WATCH", key], &["MULTI"], &["SET", key, value]]).await;
    assert_eq!(got, ["+OK\r\n", "+OK\r\n", "+QUEUED\r\n"], "WATCH MULTI SET");
}

/// WATCH of a key that does not exist (so no MIGRATE deletes it on the old owner, which would
/// fail the watch by itself) whose slot moves, or whose master fails over, between WATCH and
/// EXEC: the watch was on a node that no longer owns the slot, so it cannot see a write there;
/// EXEC answers nil and runs nothing, whether or not another client wrote meanwhile, and a WATCH
/// retry commits once. (Before the fix EXEC ran the block unwatched on the new owner: `*1 +OK`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_of_an_absent_key_through_a_move_and_a_failover() {
    let env = start(with_replicas()).await;
    env.converges("start").await;
    let ms = env.cluster.masters();
    let slot = env.cluster.slots_of(ms[0])[400];
    let k = key_in_slot(slot, "wa-");
    let mut c = Raw::connect(env.addr()).await;
    let mut other = Raw::connect(env.addr()).await;

    // 1. Moved, and another client writes the key on the new owner: nil, the other write stays.
    watch_and_set(&mut c, &k, "mine").await;
    tokio::task::block_in_place(|| move_slot(&env.cluster, slot, ms[0], ms[1]));
    assert_eq!(other.text(&["SET", &k, "theirs"]).await, "+OK\r\n");
    assert_eq!(c.text(&["EXEC"]).await, "*-1\r\n", "EXEC of a watched key changed after its slot moved");
    assert_eq!(on_owner(&env, &k).await, Some("theirs".into()));

    // 2. Moved, and nobody writes: still nil (the old node cannot vouch for the key), nothing ran.
    assert_eq!(other.text(&["DEL", &k]).await, int(1));
    watch_and_set(&mut c, &k, "mine").await;
    tokio::task::block_in_place(|| move_slot(&env.cluster, slot, ms[1], ms[0]));
    assert_eq!(c.text(&["EXEC"]).await, "*-1\r\n", "EXEC of a watched key whose slot moved");
    assert_eq!(on_owner(&env, &k).await, None, "nothing ran");
    // The client's retry watches on the new owner and commits once.
    let got = pipeline(&mut c, &[&["WATCH", &k], &["MULTI"], &["SET", &k, "mine"], &["EXEC"]]).await;
    assert_eq!(got, ["+OK\r\n", "+OK\r\n", "+QUEUED\r\n", "*1\r\n+OK\r\n"], "WATCH retry after the move");
    assert_eq!(on_owner(&env, &k).await, Some("mine".into()));
    assert_eq!(other.text(&["DEL", &k]).await, int(1));

    // 2b. WATCH, the slot moves, WATCH again (it reaches the new owner): `+OK`, not CROSSSLOT
    //     for the first watch left on the old owner; EXEC is nil all the same, since that first
    //     watch could not see a write on the new owner between the two WATCHes.
    assert_eq!(c.text(&["WATCH", &k]).await, "+OK\r\n");
    tokio::task::block_in_place(|| move_slot(&env.cluster, slot, ms[0], ms[1]));
    assert_eq!(other.text(&["SET", &k, "theirs"]).await, "+OK\r\n");
    watch_and_set(&mut c, &k, "mine").await;
    assert_eq!(c.text(&["EXEC"]).await, "*-1\r\n", "EXEC after a WATCH on each side of a move");
    assert_eq!(on_owner(&env, &k).await, Some("theirs".into()));
    assert_eq!(other.text(&["DEL", &k]).await, int(1));

    // 3. CLUSTER FAILOVER of the key's master, and another client writes the key on the promoted
    //    replica right away: nil at once, not only once the write reached the demoted master
    //    (where the watch connection is).
    let owner = env.cluster.slot_owner(slot).expect("owner");
    let replica = env.cluster.replicas_of(owner)[0];
    watch_and_set(&mut c, &k, "mine").await;
    failover(&env, replica).await;
    assert_eq!(other.text(&["SET", &k, "theirs"]).await, "+OK\r\n");
    assert_eq!(c.text(&["EXEC"]).await, "*-1\r\n", "EXEC of a watched key changed after a failover");
    assert_eq!(on_owner(&env, &k).await, Some("theirs".into()));

    // 4. A failover back, nobody writes: nil, nothing ran; the retry commits once.
    assert_eq!(other.text(&["DEL", &k]).await, int(1));
    env.converges("failover").await;
    watch_and_set(&mut c, &k, "mine").await;
    failover(&env, owner).await;
    assert_eq!(c.text(&["EXEC"]).await, "*-1\r\n", "EXEC of a watched key after a failover");
    assert_eq!(on_owner(&env, &k).await, None, "nothing ran");
    let got = pipeline(&mut c, &[&["WATCH", &k], &["MULTI"], &["SET", &k, "mine"], &["EXEC"]]).await;
    assert_eq!(got, ["+OK\r\n", "+OK\r\n", "+QUEUED\r\n", "*1\r\n+OK\r\n"], "WATCH retry after the failover");
    assert_eq!(on_owner(&env, &k).await, Some("mine".into()));
}

/// WATCH sent while the proxy's map has not heard of a move (polling, with a refresh interval
/// so long that only a redirect teaches the proxy: the test is about a stale map). The old owner
/// answers MOVED and WATCH follows it like any keyed command: `+OK`, on the new owner, and again
/// on a second WATCH (before the fix: `-CROSSSLOT` both times, the old node's connection kept).
/// And a watch left on the old owner, with a map that still names it, is caught at EXEC by
/// asking that node: a transaction of keyless commands answers nil, not `*1 +PONG`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_with_a_stale_map() {
    let env =
        start_topo(small(), Topo::Poll, |c| c.topology.refresh_interval = std::time::Duration::from_secs(3600)).await;
    let ms = env.cluster.masters();
    let (s1, s2) = (env.cluster.slots_of(ms[0])[500], env.cluster.slots_of(ms[0])[600]);
    let (k1, k2) = (key_in_slot(s1, "ws-"), key_in_slot(s2, "ws-"));
    let mut c = Raw::connect(env.addr()).await;
    let mut other = Raw::connect(env.addr()).await;
    let old = format!("127.0.0.1:{}", ms[0]);

    // 1. The slot moved; the proxy still routes it to the old owner.
    tokio::task::block_in_place(|| move_slot(&env.cluster, s1, ms[0], ms[1]));
    assert_eq!(env.proxy.topology().master_for(s1), Some(old.as_str()), "the map is stale");
    assert_eq!(c.text(&["WATCH", &k1]).await, "+OK\r\n", "WATCH with a stale map");
    assert_eq!(c.text(&["WATCH", &k1]).await, "+OK\r\n", "a second WATCH");
    // The watch is on the new owner: another client's write aborts, a retry without one commits.
    assert_eq!(pipeline(&mut c, &[&["MULTI"], &["SET", &k1, "mine"]]).await, ["+OK\r\n", "+QUEUED\r\n"]);
    assert_eq!(other.text(&["SET", &k1, "theirs"]).await, "+OK\r\n");
    assert_eq!(c.text(&["EXEC"]).await, "*-1\r\n");
    assert_eq!(on_owner(&env, &k1).await, Some("theirs".into()));
    let got = pipeline(&mut c, &[&["WATCH", &k1], &["MULTI"], &["SET", &k1, "mine"], &["EXEC"]]).await;
    assert_eq!(got, ["+OK\r\n", "+OK\r\n", "+QUEUED\r\n", "*1\r\n+OK\r\n"], "WATCH retry");
    assert_eq!(on_owner(&env, &k1).await, Some("mine".into()));

    // 2. Watched on the old owner, then the slot moves and the key is written on the new owner
    //    directly (the proxy hears of nothing); EXEC of a keyless block: nil, nothing ran there.
    assert_eq!(
        pipeline(&mut c, &[&["WATCH", &k2], &["MULTI"], &["PING"]]).await,
        ["+OK\r\n", "+OK\r\n", "+QUEUED\r\n"]
    );
    tokio::task::block_in_place(|| move_slot(&env.cluster, s2, ms[0], ms[1]));
    let mut at_new = env.node(ms[1]).await;
    let _: () = redis::cmd("SET").arg(&k2).arg("theirs").query_async(&mut at_new).await.expect("SET on the new owner");
    assert_eq!(env.proxy.topology().master_for(s2), Some(old.as_str()), "the map is stale");
    assert_eq!(c.text(&["EXEC"]).await, "*-1\r\n", "EXEC with a watch left on the old owner");
}

/// A live reshard of `slot` to `to`, begun: `first` migrated alone, the rest still on the
/// owner, which is returned.
fn begin(env: &Env, slot: u16, to: u16, first: &str) -> u16 {
    let from = env.cluster.slot_owner(slot).expect("owner");
    tokio::task::block_in_place(|| begin_move(&env.cluster, slot, from, to, &[first]));
    from
}

/// The reshard finished: the other keys migrated, the slot assigned to `to` everywhere.
async fn finish(env: &Env, slot: u16, from: u16, to: u16) {
    tokio::task::block_in_place(|| env.cluster.migrate_slot_manual_finish(slot, from, to)).expect("finish");
    proxy_routes(env, slot, to).await;
}

/// EVALSHA of a script loaded through the proxy, EVALSHA of one the proxy saw in an EVAL, and
/// FCALL of a function loaded through the proxy, on keys of one slot that is resharded to another
/// master (run also while it is half-migrated), failed over, and resharded to a master added
/// after the loads: each script runs exactly once per call, EVALSHA never answers NOSCRIPT; the
/// function is not on the added master, as documented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_and_functions_through_reshards_and_a_failover() {
    let mut env = start(with_replicas()).await;
    env.converges("start").await;
    let ms = env.cluster.masters();
    let slot = env.cluster.slots_of(ms[0])[200];
    let (k, k2, fk) = (key_in_slot(slot, "sc-a-"), key_in_slot(slot, "sc-b-"), key_in_slot(slot, "sc-f-"));
    let mut c = Raw::connect(env.addr()).await;
    // Redis's own SHA1 of the body.
    let body = "return redis.call('INCRBY', KEYS[1], ARGV[1])";
    let loaded = c.text(&["SCRIPT", "LOAD", body]).await;
    let sha = loaded.lines().nth(1).expect("a sha").to_string();
    assert_eq!(loaded, format!("$40\r\n{sha}\r\n"));
    // A script seen only in an EVAL: the proxy remembers it (its SHA read from a node).
    let body2 = "return redis.call('APPEND', KEYS[1], ARGV[1])";
    assert_eq!(c.text(&["EVAL", body2, "1", &k2, "e0,"]).await, int(3));
    let owner = env.cluster.slot_owner(slot).expect("owner");
    let mut o = env.node(owner).await;
    let sha2: String = redis::cmd("SCRIPT").arg("LOAD").arg(body2).query_async(&mut o).await.expect("sha2");
    let lib = "#!lua name=combo\nredis.register_function('combo_incr', \
               function(keys, args) return redis.call('INCR', keys[1]) end)";
    assert_eq!(c.text(&["FUNCTION", "LOAD", lib]).await, "$5\r\ncombo\r\n");
    assert_eq!(c.text(&["SET", &k, "0"]).await, "+OK\r\n");
    assert_eq!(c.text(&["SET", &fk, "0"]).await, "+OK\r\n");
    let (mut n, mut log, mut f) = (0usize, String::from("e0,"), 0usize);

    // 1. Live reshard to another master, checked half-way (the migrated key through ASK on the
    //    target, the others on the source) and after.
    let from = begin(&env, slot, ms[1], &k);
    n += 1;
    assert_eq!(c.text(&["EVALSHA", &sha, "1", &k, "1"]).await, int(n), "EVALSHA through ASK");
    log += "e1,";
    assert_eq!(c.text(&["EVALSHA", &sha2, "1", &k2, "e1,"]).await, int(log.len()), "EVALSHA on the source");
    f += 1;
    assert_eq!(c.text(&["FCALL", "combo_incr", "1", &fk]).await, int(f), "FCALL on the source");
    finish(&env, slot, from, ms[1]).await;
    n += 1;
    assert_eq!(c.text(&["EVALSHA", &sha, "1", &k, "1"]).await, int(n), "EVALSHA after the reshard");
    log += "e2,";
    assert_eq!(c.text(&["EVALSHA", &sha2, "1", &k2, "e2,"]).await, int(log.len()));
    f += 1;
    assert_eq!(c.text(&["FCALL", "combo_incr", "1", &fk]).await, int(f), "FCALL after the reshard");

    // 2. CLUSTER FAILOVER of the slot's master.
    let replica = env.cluster.replicas_of(ms[1])[0];
    let mut r = env.node(replica).await;
    // Redis does not replicate its script cache: the promoted replica has neither script, so
    // the EVALSHAs below live only if the proxy loads them there.
    let exists: Vec<i64> = redis::cmd("SCRIPT").arg("EXISTS").arg(&sha).arg(&sha2).query_async(&mut r).await.unwrap();
    assert_eq!(exists, [0, 0], "the replica has no scripts before its promotion");
    failover(&env, replica).await;
    env.converges("failover").await;
    n += 1;
    assert_eq!(c.text(&["EVALSHA", &sha, "1", &k, "1"]).await, int(n), "EVALSHA after a failover");
    log += "e3,";
    assert_eq!(c.text(&["EVALSHA", &sha2, "1", &k2, "e3,"]).await, int(log.len()));
    f += 1;
    assert_eq!(c.text(&["FCALL", "combo_incr", "1", &fk]).await, int(f), "FCALL after a failover");

    // 3. A master added after the loads, given the slot: the script is loaded there on NOSCRIPT.
    let new = tokio::task::block_in_place(|| env.cluster.add_master()).expect("add master");
    env.converges("a master added").await;
    let mut at_new = env.node(new).await;
    let exists: Vec<i64> =
        redis::cmd("SCRIPT").arg("EXISTS").arg(&sha).arg(&sha2).query_async(&mut at_new).await.unwrap();
    assert_eq!(exists, [0, 0], "the added master has no scripts");
    let libs: redis::Value = redis::cmd("FUNCTION").arg("LIST").query_async(&mut at_new).await.unwrap();
    assert!(format!("{libs:?}").contains("combo_incr"), "redis-cli copied the library: {libs:?}");
    let from = begin(&env, slot, new, &k);
    n += 1;
    assert_eq!(c.text(&["EVALSHA", &sha, "1", &k, "1"]).await, int(n), "EVALSHA through ASK to an added master");
    log += "e4,";
    assert_eq!(c.text(&["EVALSHA", &sha2, "1", &k2, "e4,"]).await, int(log.len()), "EVALSHA on the source");
    finish(&env, slot, from, new).await;
    n += 1;
    assert_eq!(c.text(&["EVALSHA", &sha, "1", &k, "1"]).await, int(n), "EVALSHA on the added master");
    log += "e5,";
    assert_eq!(c.text(&["EVALSHA", &sha2, "1", &k2, "e5,"]).await, int(log.len()), "EVALSHA on the added master");
    // redis-cli --cluster add-node copies the functions of an existing node to the one it adds
    // (the README's "not copied" is about the proxy), so FCALL works there too.
    f += 1;
    assert_eq!(c.text(&["FCALL", "combo_incr", "1", &fk]).await, int(f), "FCALL on the added master");
    // Every effect exactly once, on the node that owns the slot now.
    let got: Vec<Option<String>> = redis::cmd("MGET").arg(&k).arg(&k2).arg(&fk).query_async(&mut at_new).await.unwrap();
    assert_eq!(got, [Some(n.to_string()), Some(log), Some(f.to_string())]);
}

/// One SCAN call through the proxy: the next cursor and the keys.
async fn scan_step(c: &mut redis::aio::MultiplexedConnection, cursor: u64, count: usize) -> (u64, Vec<String>) {
    let (next, keys): (String, Vec<String>) =
        redis::cmd("SCAN").arg(cursor).arg("COUNT").arg(count).query_async(c).await.expect("SCAN");
    (next.parse().expect("a numeric cursor"), keys)
}

/// The keys of `all` that a scan did not return, but only those whose slot is not in `moved`.
fn missed(all: &[String], seen: &HashSet<String>, moved: &HashSet<u16>) -> Vec<String> {
    all.iter()
        .filter(|k| !seen.contains(*k) && !moved.contains(&clusterless::slot::slot(k.as_bytes())))
        .cloned()
        .collect()
}

/// Slots whose owner differs between two maps.
fn changed(before: &[Option<u16>], after: &[Option<u16>]) -> HashSet<u16> {
    (0..16384u16).filter(|&s| before[s as usize] != after[s as usize]).collect()
}

/// The master whose shard a proxy SCAN cursor is on, as a port, and whether it is part-way
/// through it (its own cursor not 0); `None` for cursor 0.
fn cursor_at(env: &Env, cursor: u64) -> Option<(u16, bool)> {
    let c = clusterless::ScanCursor::decode(cursor)?;
    let t = env.proxy.topology();
    let shard = t.shards().iter().find(|s| s.key == c.shard).expect("the cursor names a shard of the map");
    let addr = &t.nodes[usize::from(shard.master)].addr;
    Some((addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).expect("a port"), c.node != 0))
}

/// Scans until the cursor is part-way through the shard of master `port` (its node cursor not 0),
/// collecting the keys; returns the cursor.
async fn scan_into(env: &Env, c: &mut redis::aio::MultiplexedConnection, port: u16, seen: &mut HashSet<String>) -> u64 {
    let mut cursor = 0u64;
    loop {
        let (next, keys) = scan_step(c, cursor, 20).await;
        seen.extend(keys);
        cursor = next;
        if cursor_at(env, cursor) == Some((port, true)) {
            return cursor;
        }
        assert_ne!(cursor, 0, "the scan reaches master {port} part-way");
    }
}

/// Scans from `cursor` to the end; every call must answer (the cursor stays valid).
async fn scan_rest(c: &mut redis::aio::MultiplexedConnection, cursor: u64, seen: &mut HashSet<String>) {
    let mut all = Vec::new();
    scan_all(c, cursor, &mut all).await;
    seen.extend(all);
}

/// Scans from `cursor` to the end, keeping every key returned, repeats included.
async fn scan_all(c: &mut redis::aio::MultiplexedConnection, mut cursor: u64, got: &mut Vec<String>) {
    for _ in 0..10_000 {
        let (next, keys) = scan_step(c, cursor, 20).await;
        got.extend(keys);
        cursor = next;
        if cursor == 0 {
            return;
        }
    }
    panic!("the scan never ended");
}

/// A whole scan with no topology change: each key of `all` exactly once, nothing else.
async fn scan_once_each(c: &mut redis::aio::MultiplexedConnection, all: &[String], what: &str) {
    let mut got = Vec::new();
    scan_all(c, 0, &mut got).await;
    got.sort();
    let mut want = all.to_vec();
    want.sort();
    assert!(got == want, "{what}: {} keys returned for {} (repeats or gaps)", got.len(), want.len());
}

/// The masters in the proxy's SCAN order, as ports.
fn proxy_order(env: &Env) -> Vec<u16> {
    let t = env.proxy.topology();
    t.shards()
        .iter()
        .map(|s| {
            let addr = &t.nodes[usize::from(s.master)].addr;
            addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).expect("a port")
        })
        .collect()
}

/// Waits until the proxy sees every master with its one replica (so the shards' keys are settled
/// and a scan from now on sees no change).
async fn shards_settled(env: &Env, what: &str) {
    eventually(what, || {
        let t = env.proxy.topology();
        t.shards().len() == 3 && t.shards().iter().all(|s| s.members.len() == 2)
    })
    .await;
}

/// SCAN through live reshards (a cursor held across them, and full scans running while one runs)
/// and through a failover: every key that existed throughout and whose slot did not move is
/// returned, and the cursor stays valid to its end; with no topology change, a whole scan returns
/// each key exactly once. (Keys of the moved slots may be repeated or skipped, as documented.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_through_reshards_and_a_failover() {
    let env = start(with_replicas()).await;
    env.converges("start").await;
    let all = spread_keys("scan", 3000);
    let mut c = env.conn().await;
    for chunk in all.chunks(500) {
        let pairs: Vec<(&String, &str)> = chunk.iter().map(|k| (k, "v")).collect();
        let _: () = redis::cmd("MSET").arg(&pairs).query_async(&mut c).await.expect("MSET");
    }
    shards_settled(&env, "every master with its replica").await;
    scan_once_each(&mut c, &all, "a scan of a quiet cluster").await;

    // A. Part-way through the master with the middle slots, slot 0 moves from the master with the
    //    lowest slots to the one with the highest: this changes the masters' order by lowest slot
    //    (the proxy ordered its cursor by it once and then skipped the whole third master).
    let (low, mid, high) = (
        env.cluster.slot_owner(0).unwrap(),
        env.cluster.slot_owner(8192).unwrap(),
        env.cluster.slot_owner(16383).unwrap(),
    );
    let mut seen = HashSet::new();
    let cursor = scan_into(&env, &mut c, mid, &mut seen).await;
    let before = env.cluster.slot_map();
    tokio::task::block_in_place(|| move_slot(&env.cluster, 0, low, high));
    env.converges("slot 0 moved").await;
    let moved = changed(&before, &env.cluster.slot_map());
    assert_eq!(moved, HashSet::from([0]));
    scan_rest(&mut c, cursor, &mut seen).await;
    assert_eq!(missed(&all, &seen, &moved), Vec::<String>::new(), "keys missed by a scan across a reshard of slot 0");

    // B. Part-way through the second master in the proxy's order, 50 of its slots resharded to
    //    the first.
    let mut seen = HashSet::new();
    let order = proxy_order(&env);
    let cursor = scan_into(&env, &mut c, order[1], &mut seen).await;
    let before = env.cluster.slot_map();
    tokio::task::block_in_place(|| env.cluster.reshard(order[1], order[0], 50)).expect("reshard");
    env.converges("reshard").await;
    let moved = changed(&before, &env.cluster.slot_map());
    assert_eq!(moved.len(), 50);
    scan_rest(&mut c, cursor, &mut seen).await;
    assert_eq!(missed(&all, &seen, &moved), Vec::<String>::new(), "keys missed by a scan across a reshard");

    // C. Full scans over and over while 200 slots of the third master move to the second.
    let before = env.cluster.slot_map();
    let stop = Arc::new(AtomicBool::new(false));
    let (s, url) = (stop.clone(), env.url());
    let scanner = tokio::spawn(async move {
        let mut c = client_conn(&url).await;
        let mut scans = Vec::new();
        loop {
            let last = s.load(Ordering::Relaxed);
            let mut seen = HashSet::new();
            scan_rest(&mut c, 0, &mut seen).await;
            scans.push(seen);
            if last {
                return scans;
            }
        }
    });
    tokio::task::block_in_place(|| env.cluster.reshard(order[2], order[1], 200)).expect("reshard");
    stop.store(true, Ordering::Relaxed);
    let scans = scanner.await.expect("scanner");
    env.converges("second reshard").await;
    let moved = changed(&before, &env.cluster.slot_map());
    assert_eq!(moved.len(), 200);
    assert!(scans.len() >= 2, "a scan ran while the reshard did: {} scans", scans.len());
    for (i, seen) in scans.iter().enumerate() {
        assert_eq!(missed(&all, seen, &moved), Vec::<String>::new(), "scan {i} during a reshard");
    }

    // D. Part-way through a master, CLUSTER FAILOVER of it to its replica: every key is returned,
    //    the failed-over master's too (the proxy once went on with the old master's cursor on the
    //    promoted replica, whose hash table orders keys differently).
    let mut seen = HashSet::new();
    let victim = proxy_order(&env)[1];
    let cursor = scan_into(&env, &mut c, victim, &mut seen).await;
    failover(&env, env.cluster.replicas_of(victim)[0]).await;
    env.converges("failover").await;
    scan_rest(&mut c, cursor, &mut seen).await;
    assert_eq!(missed(&all, &seen, &HashSet::new()), Vec::<String>::new(), "keys missed by a scan across a failover");

    shards_settled(&env, "the demoted master known as the new one's replica").await;
    scan_once_each(&mut c, &all, "a scan after the reshards and the failover").await;
}

/// Clients of node `port` blocked in `cmd` right now (CLIENT LIST: `cmd=<cmd>`, `b` in flags).
async fn blocked(env: &Env, port: u16, cmd: &str) -> usize {
    let mut n = env.node(port).await;
    let list: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut n).await.unwrap_or_default();
    common::nodes::blocked_in(&list, cmd)
}

/// Waits until each master in `want` has exactly that many clients blocked in `cmd`.
async fn blocked_as(env: &Env, cmd: &str, want: &[(u16, usize)], what: &str) {
    eventually_async(what, || async {
        for &(p, n) in want {
            if blocked(env, p, cmd).await != n {
                return false;
            }
        }
        true
    })
    .await;
}

/// A blocking command sent on its own connection; its reply read later.
async fn send_blocking(env: &Env, args: &[&str]) -> Raw {
    let mut c = Raw::connect(env.addr()).await;
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    c.send(&clusterless::resp::encode_command(&args)).await;
    c
}

fn bulk(s: &str) -> String {
    format!("${}\r\n{s}\r\n", s.len())
}

/// BLPOP, BLMPOP and BZMPOP over keys on three masters, blocked while one key's slot is resharded
/// (keys moving, an element pushed while the slot is half-migrated) and while a master fails
/// over: the pop blocks again where the slots now live, and what is pushed afterwards is
/// delivered once, the rest left where it was pushed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_slot_pops_through_a_reshard_and_a_failover() {
    let env = start(with_replicas()).await;
    env.converges("start").await;
    let ms = env.cluster.masters();
    let slots: Vec<u16> = ms.iter().map(|&m| env.cluster.slots_of(m)[300]).collect();
    let q: Vec<String> = slots.iter().map(|&s| key_in_slot(s, "pq-")).collect();
    let mut c = Raw::connect(env.addr()).await;
    // A key that the reshard carries along.
    assert_eq!(c.text(&["SET", &key_in_slot(slots[0], "pfill-"), "x"]).await, "+OK\r\n");

    // 1. BLPOP blocked on every master; q0's slot moves from m0 to m1 entirely.
    let mut p = send_blocking(&env, &["BLPOP", &q[0], &q[1], &q[2], "0"]).await;
    blocked_as(&env, "blpop", &[(ms[0], 1), (ms[1], 1), (ms[2], 1)], "BLPOP blocks on every master").await;
    tokio::task::block_in_place(|| move_slot(&env.cluster, slots[0], ms[0], ms[1]));
    blocked_as(&env, "blpop", &[(ms[0], 0), (ms[1], 2), (ms[2], 1)], "BLPOP blocks where the slots live now").await;
    let got = pipeline(&mut c, &[&["RPUSH", &q[0], "x0"], &["RPUSH", &q[2], "x2"]]).await;
    assert_eq!(got, [int(1), int(1)]);
    let popped = String::from_utf8_lossy(&p.read_replies(1).await[0]).into_owned();
    let left0 = c.text(&["LRANGE", &q[0], "0", "-1"]).await;
    let left2 = c.text(&["LRANGE", &q[2], "0", "-1"]).await;
    let (x0, x2) = (format!("*1\r\n{}", bulk("x0")), format!("*1\r\n{}", bulk("x2")));
    if popped == format!("*2\r\n{}{}", bulk(&q[0]), bulk("x0")) {
        assert_eq!((left0.as_str(), left2.as_str()), ("*0\r\n", x2.as_str()), "x0 delivered, x2 left");
    } else {
        assert_eq!(popped, format!("*2\r\n{}{}", bulk(&q[2]), bulk("x2")), "BLPOP after the reshard");
        assert_eq!((left0.as_str(), left2.as_str()), (x0.as_str(), "*0\r\n"), "x2 delivered, x0 left");
    }
    assert_eq!(c.text(&["DEL", &q[0], &q[2]]).await, int(1));
    blocked_as(&env, "blpop", &[(ms[0], 0), (ms[1], 0), (ms[2], 0)], "no pop left blocked").await;

    // 2. BLMPOP (q0 and q1 on m1, q2 on m2) and a single-slot BLPOP blocked; CLUSTER FAILOVER
    //    of m1 (which answers its blocked clients UNBLOCKED when it turns replica: the pops did
    //    not run); then elements pushed. Both pops stay blocked for their clients, block again on
    //    the promoted replica, and get what is pushed there, once.
    let blmpop = ["BLMPOP", "0", "3", &q[0], &q[1], &q[2], "LEFT", "COUNT", "2"];
    let mut p = send_blocking(&env, &blmpop).await;
    let single = key_in_slot(slots[1], "psingle-");
    let mut p1 = send_blocking(&env, &["BLPOP", &single, "0"]).await;
    // And a pop with a timeout, which must block again with what is left of it.
    let zsingle = key_in_slot(slots[1], "pzsingle-");
    let mut p2 = send_blocking(&env, &["BZPOPMIN", &zsingle, "600"]).await;
    blocked_as(&env, "blmpop", &[(ms[1], 2), (ms[2], 1)], "BLMPOP blocks on both masters").await;
    blocked_as(&env, "blpop", &[(ms[1], 1)], "BLPOP blocks").await;
    blocked_as(&env, "bzpopmin", &[(ms[1], 1)], "BZPOPMIN blocks").await;
    let r1 = env.cluster.replicas_of(ms[1])[0];
    let mut monitor = Raw::connect(format!("127.0.0.1:{r1}").parse().expect("addr")).await;
    assert_eq!(monitor.text(&["MONITOR"]).await, "+OK\r\n");
    failover(&env, r1).await;
    env.converges("failover").await;
    blocked_as(&env, "blmpop", &[(ms[1], 0), (r1, 2), (ms[2], 1)], "BLMPOP blocks again on the promoted replica").await;
    blocked_as(&env, "blpop", &[(ms[1], 0), (r1, 1)], "BLPOP blocks again on the promoted replica").await;
    blocked_as(&env, "bzpopmin", &[(ms[1], 0), (r1, 1)], "BZPOPMIN blocks again on the promoted replica").await;
    // The promoted replica got the BZPOPMIN with what was left of its 600 s (600 again would
    // restart the client's timeout).
    let needle = format!("\"BZPOPMIN\" \"{zsingle}\" \"");
    let left = loop {
        let line = String::from_utf8_lossy(&monitor.read_replies(1).await[0]).into_owned();
        if let Some(i) = line.find(&needle) {
            break line[i + needle.len()..].trim_end().trim_end_matches('"').parse::<f64>().expect("a timeout");
        }
    };
    assert!(left > 0.0 && left < 600.0, "BZPOPMIN blocked again with {left} s left");
    assert_eq!(c.text(&["ZADD", &zsingle, "7", "z"]).await, int(1));
    let popped = String::from_utf8_lossy(&p2.read_replies(1).await[0]).into_owned();
    assert_eq!(popped, format!("*3\r\n{}{}{}", bulk(&zsingle), bulk("z"), bulk("7")), "BZPOPMIN across a failover");
    assert_eq!(c.text(&["EXISTS", &zsingle]).await, int(0), "z was taken once");
    assert_eq!(c.text(&["RPUSH", &q[1], "a", "b", "c"]).await, int(3));
    assert_eq!(c.text(&["RPUSH", &single, "s1"]).await, int(1));
    let want = format!("*2\r\n{}*2\r\n{}{}", bulk(&q[1]), bulk("a"), bulk("b"));
    let popped = String::from_utf8_lossy(&p.read_replies(1).await[0]).into_owned();
    assert_eq!(popped, want, "BLMPOP across a failover");
    assert_eq!(c.text(&["LRANGE", &q[1], "0", "-1"]).await, format!("*1\r\n{}", bulk("c")));
    assert_eq!(c.text(&["DEL", &q[1]]).await, int(1));
    let popped = String::from_utf8_lossy(&p1.read_replies(1).await[0]).into_owned();
    assert_eq!(popped, format!("*2\r\n{}{}", bulk(&single), bulk("s1")), "BLPOP across a failover");
    assert_eq!(c.text(&["EXISTS", &single]).await, int(0), "s1 was taken once");
    // Still served from the promoted replica after it: a new pop over all three blocks there.
    let mut p = send_blocking(&env, &blmpop).await;
    blocked_as(&env, "blmpop", &[(ms[1], 0), (r1, 2), (ms[2], 1)], "BLMPOP blocks on the promoted replica").await;
    assert_eq!(c.text(&["RPUSH", &q[0], "d"]).await, int(1));
    let popped = String::from_utf8_lossy(&p.read_replies(1).await[0]).into_owned();
    assert_eq!(popped, format!("*2\r\n{}*1\r\n{}", bulk(&q[0]), bulk("d")));
    assert_eq!(c.text(&["EXISTS", &q[0], &q[1], &q[2]]).await, int(0));

    // 3. BZMPOP blocked; q2's slot half-migrated to r1 (its other key moved), a member added
    //    then (it lands on the target, through ASK), the reshard finished: delivered once.
    let z: Vec<String> = slots.iter().map(|&s| key_in_slot(s, "pz-")).collect();
    let zfill = key_in_slot(slots[2], "pzfill-");
    assert_eq!(c.text(&["SET", &zfill, "x"]).await, "+OK\r\n");
    let mut p = send_blocking(&env, &["BZMPOP", "0", "3", &z[0], &z[1], &z[2], "MIN"]).await;
    blocked_as(&env, "bzmpop", &[(r1, 2), (ms[2], 1)], "BZMPOP blocks on both masters").await;
    tokio::task::block_in_place(|| begin_move(&env.cluster, slots[2], ms[2], r1, &[&zfill]));
    assert_eq!(c.text(&["ZADD", &z[2], "1", "m"]).await, int(1));
    tokio::task::block_in_place(|| env.cluster.migrate_slot_manual_finish(slots[2], ms[2], r1)).expect("finish");
    let popped = String::from_utf8_lossy(&p.read_replies(1).await[0]).into_owned();
    assert_eq!(popped, format!("*2\r\n{}*1\r\n*2\r\n{}{}", bulk(&z[2]), bulk("m"), bulk("1")));
    assert_eq!(c.text(&["EXISTS", &z[2]]).await, int(0), "the member was taken once");
    blocked_as(&env, "bzmpop", &[(ms[0], 0), (r1, 0), (ms[2], 0)], "the other pops were cancelled").await;
}
