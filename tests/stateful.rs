//! Stateful commands through the proxy on real clusters (README rows "Transactions", "WAIT",
//! "Pub/Sub", "Scripts and functions"): transactions as on one server, sent again after MOVED and
//! ASK, and per shard with the documented WATCH aborts; pub/sub that follows its node through a
//! failover and a crash, RESP2 and RESP3 subscribers; NOSCRIPT reload; scripts and transactions
//! exactly once through a failover; WAIT's smallest count; RESP3 replies. (Blocking commands:
//! tests/blocking.rs.)

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clusterless::config::CrossSlot;
use clusterless::resp::encode_command;
use common::*;

const CROSSSLOT: &str = "-CROSSSLOT Keys in request don't hash to the same slot\r\n";

fn b(s: &str) -> &[u8] {
    s.as_bytes()
}

/// Two keys in different slots owned by different masters.
fn keys_on_two_masters(env: &Env) -> (String, String) {
    let masters = env.cluster.masters();
    let a = key_in_slot(env.cluster.slots_of(masters[0])[0], "ka");
    let b = key_in_slot(env.cluster.slots_of(masters[1])[0], "kb");
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_slot_transactions_behave_as_on_redis() {
    let env = start(small()).await;
    let mut c = Raw::connect(env.addr()).await;
    // Queued replies, then EXEC's array.
    c.send(b"MULTI\r\nSET {t}a 1\r\nINCR {t}a\r\nGET {t}a\r\nEXEC\r\n").await;
    let r = c.read_replies(5).await;
    assert_eq!(r[0], b"+OK\r\n");
    assert_eq!(r[1], b"+QUEUED\r\n");
    assert_eq!(r[4], b"*3\r\n+OK\r\n:2\r\n$1\r\n2\r\n");
    // A queue-time error discards the transaction; nothing ran.
    c.send(b"MULTI\r\nSET {t}b 1\r\nGET\r\nEXEC\r\nEXISTS {t}b\r\n").await;
    let r = c.read_replies(5).await;
    assert_eq!(r[2], b"-ERR wrong number of arguments for 'get' command\r\n");
    assert_eq!(r[3], b"-EXECABORT Transaction discarded because of previous errors.\r\n");
    assert_eq!(r[4], b":0\r\n");
    // Exec-time errors stay inside the array, the rest runs.
    c.send(b"MULTI\r\nSET {t}s x\r\nINCR {t}s\r\nSET {t}c 1\r\nEXEC\r\n").await;
    let r = c.read_replies(5).await;
    assert_eq!(String::from_utf8_lossy(&r[4]), "*3\r\n+OK\r\n-ERR value is not an integer or out of range\r\n+OK\r\n");
    assert_eq!(c.cmd(&[b"EXEC"]).await, b"-ERR EXEC without MULTI\r\n");
    assert_eq!(c.cmd(&[b"DISCARD"]).await, b"-ERR DISCARD without MULTI\r\n");
    c.send(b"MULTI\r\nMULTI\r\nDISCARD\r\n").await;
    let r = c.read_replies(3).await;
    assert_eq!(r[1], b"-ERR MULTI calls can not be nested\r\n");
    assert_eq!(r[2], b"+OK\r\n");

    // WATCH: a change by another client between WATCH and EXEC aborts with a nil reply.
    let mut other = env.conn().await;
    assert_eq!(c.cmd(&[b"WATCH", b"{t}w"]).await, b"+OK\r\n");
    let _: () = redis::cmd("SET").arg("{t}w").arg("changed").query_async(&mut other).await.unwrap();
    c.send(b"MULTI\r\nSET {t}w mine\r\nEXEC\r\n").await;
    assert_eq!(c.read_replies(3).await[2], b"*-1\r\n");
    let v: String = redis::cmd("GET").arg("{t}w").query_async(&mut other).await.unwrap();
    assert_eq!(v, "changed");
    // Unchanged: EXEC runs.
    assert_eq!(c.cmd(&[b"WATCH", b"{t}w"]).await, b"+OK\r\n");
    c.send(b"MULTI\r\nSET {t}w mine\r\nEXEC\r\n").await;
    assert_eq!(c.read_replies(3).await[2], b"*1\r\n+OK\r\n");

    // Keys of several slots: CROSSSLOT when queued, EXECABORT at EXEC, as Redis Cluster.
    let (ka, kb) = keys_on_two_masters(&env);
    c.send(&clusterless::resp::encode_command(&[b"MULTI"])).await;
    c.send(&clusterless::resp::encode_command(&[b"SET", b(&ka), b"1"])).await;
    c.send(&clusterless::resp::encode_command(&[b"SET", b(&kb), b"1"])).await;
    c.send(&clusterless::resp::encode_command(&[b"EXEC"])).await;
    let r = c.read_replies(4).await;
    assert_eq!(r[1], b"+QUEUED\r\n");
    assert_eq!(r[2], b"-CROSSSLOT Keys in request don't hash to the same slot\r\n");
    assert_eq!(r[3], b"-EXECABORT Transaction discarded because of previous errors.\r\n");
    let n: i64 = redis::cmd("EXISTS").arg(&ka).query_async(&mut other).await.unwrap();
    assert_eq!(n, 0, "nothing of an aborted transaction ran");
}

/// Sends MULTI, `cmds` and EXEC in one write; checks MULTI's +OK and each +QUEUED, and returns
/// EXEC's reply as text.
async fn multi_exec(c: &mut Raw, cmds: &[&[&str]]) -> String {
    let mut out = encode_command(&["MULTI"]).to_vec();
    for cmd in cmds {
        out.extend_from_slice(&encode_command(cmd));
    }
    out.extend_from_slice(&encode_command(&["EXEC"]));
    c.send(&out).await;
    let r = c.read_replies(cmds.len() + 2).await;
    assert_eq!(r[0], b"+OK\r\n");
    for (q, cmd) in r[1..=cmds.len()].iter().zip(cmds) {
        assert_eq!(q, b"+QUEUED\r\n", "{cmd:?}");
    }
    String::from_utf8_lossy(&r[cmds.len() + 1]).into_owned()
}

fn bulk(s: &str) -> String {
    format!("${}\r\n{s}\r\n", s.len())
}

fn arr(items: &[String]) -> String {
    format!("*{}\r\n{}", items.len(), items.concat())
}

/// Deletes `del`, then sets each of `old` to "old".
async fn reset(c: &mut Raw, del: &[&str], old: [&str; 3]) {
    let mut cmd = vec!["DEL"];
    cmd.extend_from_slice(del);
    assert!(c.text(&cmd).await.starts_with(':'));
    for k in old {
        assert_eq!(c.text(&["SET", k, "old"]).await, "+OK\r\n");
    }
}

/// WATCH `watch` on `c`, then another client changes each of `change`.
async fn watch_and_change(c: &mut Raw, other: &mut Raw, watch: &[&String], change: &[&String]) {
    let mut cmd = vec!["WATCH"];
    cmd.extend(watch.iter().map(|k| k.as_str()));
    assert_eq!(c.text(&cmd).await, "+OK\r\n");
    for k in change {
        assert_eq!(other.text(&["SET", k, "changed"]).await, "+OK\r\n");
    }
}

async fn get(c: &mut Raw, k: &str) -> String {
    c.text(&["GET", k]).await
}

/// A transaction the proxy sends to the wrong node is answered MOVED there and runs once on the
/// slot's master; one that meets a slot half migrated (its key already on the target) follows
/// ASK and runs once there; one whose keys are split over the two nodes is refused with TRYAGAIN,
/// sent again within the retry budget, and runs once on the new owner when the migration
/// finishes meanwhile; after the migration it follows MOVED. The admin endpoint is on (port
/// 0) only so that the proxy's redirect counters can be read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_are_sent_again_after_moved_and_ask() {
    let env = start_with(small(), |cfg| cfg.admin_listen = Some("127.0.0.1:0".parse().expect("addr"))).await;
    let mut c = Raw::connect(env.addr()).await;

    // MOVED: the proxy's map points the slot at another master. The bus may put the map right
    // before the transaction is sent; then it runs directly, and the next round tries again.
    let slot = clusterless::slot::slot(b"{mv}");
    let owner = env.cluster.slot_owner(slot).unwrap();
    let wrong = env.cluster.masters().into_iter().find(|&m| m != owner).unwrap();
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds <= 10, "the misrouted transaction never met MOVED");
        let moved = env.proxy.redirects("moved");
        env.proxy.misroute_slot(slot, &format!("127.0.0.1:{wrong}"));
        let v = format!("v{rounds}");
        let got = multi_exec(&mut c, &[&["SET", "{mv}k", &v], &["INCR", "{mv}n"]]).await;
        assert_eq!(got, format!("*2\r\n+OK\r\n:{rounds}\r\n"), "INCR ran once per EXEC");
        match env.proxy.redirects("moved") - moved {
            0 => continue,
            1 => break,
            n => panic!("{n} MOVED for one transaction"),
        }
    }
    let mut on_owner = env.node(owner).await;
    let (k, n): (String, i64) = redis::pipe().get("{mv}k").get("{mv}n").query_async(&mut on_owner).await.unwrap();
    assert_eq!((k, n), (format!("v{rounds}"), rounds), "the values are on the slot's master, INCR ran once each");
    let on_wrong = env.cluster.cli(wrong, &["CLUSTER", "COUNTKEYSINSLOT", &slot.to_string()]).unwrap();
    assert_eq!(on_wrong, "0", "nothing ran on the wrong node");
    assert_eq!(env.proxy.topology().master_for(slot), Some(format!("127.0.0.1:{owner}").as_str()));

    // ASK: a slot half migrated, the transaction's key already on the target.
    let m = env.cluster.masters();
    let (from, to) = (m[0], m[2]);
    let aslot = env.cluster.slots_of(from)[7];
    let (ka, kb) = (key_in_slot(aslot, "askA-"), key_in_slot(aslot, "askB-"));
    for k in [&ka, &kb] {
        assert_eq!(c.text(&["SET", k, "10"]).await, "+OK\r\n");
    }
    tokio::task::block_in_place(|| env.cluster.migrate_slot_manual_begin(aslot, from, to)).unwrap();
    let on_target = env.cluster.cli(to, &["CLUSTER", "GETKEYSINSLOT", &aslot.to_string(), "10"]).unwrap();
    let (moved_key, stayed) = if on_target == ka { (&ka, &kb) } else { (&kb, &ka) };
    assert_eq!(on_target, *moved_key, "one of the two keys was migrated");
    let asks = env.proxy.redirects("ask");
    let got = multi_exec(&mut c, &[&["INCR", moved_key], &["INCRBY", moved_key, "5"], &["GET", moved_key]]).await;
    assert_eq!(got, "*3\r\n:11\r\n:16\r\n$2\r\n16\r\n", "ran once, on the target");
    assert_eq!(env.proxy.redirects("ask"), asks + 1, "through one ASK");
    let mut t = Raw::connect(std::net::SocketAddr::from(([127, 0, 0, 1], to))).await;
    t.send(&[encode_command(&["ASKING"]), encode_command(&["GET", moved_key])].concat()).await;
    assert_eq!(t.read_replies(2).await[1], b"$2\r\n16\r\n", "the target holds the result");
    let on_source = env.cluster.cli(from, &["CLUSTER", "GETKEYSINSLOT", &aslot.to_string(), "10"]).unwrap();
    assert_eq!(on_source, *stayed, "the source did not get the key back");
    // The key still on the source: the transaction runs there, no redirect.
    assert_eq!(multi_exec(&mut c, &[&["INCR", stayed]]).await, "*1\r\n:11\r\n");
    assert_eq!(env.proxy.redirects("ask"), asks + 1);

    // Both keys, one on each node: the source answers ASK, and the target refuses EXEC itself with
    // TRYAGAIN (a half-migrated slot's keys split over two nodes); nothing ran. The block is sent
    // again within the retry budget; still refused then, EXEC answers the node's own TRYAGAIN as
    // Redis Cluster does (one error, not an array claiming each command ran and failed).
    let budget = env.proxy.config().backend.retry_budget;
    let tryagain = env.proxy.redirects("tryagain");
    let t = Instant::now();
    let got = multi_exec(&mut c, &[&["INCR", moved_key], &["INCR", stayed]]).await;
    let took = t.elapsed();
    assert_eq!(got, "-TRYAGAIN Multiple keys request during rehashing of slot\r\n");
    assert!(took >= budget && took < budget + Duration::from_secs(2), "refused after the retry budget: {took:?}");
    assert!(env.proxy.redirects("tryagain") >= tryagain + 2, "sent again after the first TRYAGAIN");
    assert_eq!((get(&mut c, moved_key).await, get(&mut c, stayed).await), (bulk("16"), bulk("11")), "nothing ran");

    // Sent again until the migration finishes within the budget: through MOVED from the source (or
    // the bus's new map, if it came first), it then runs once, on the new owner.
    let tryagain = env.proxy.redirects("tryagain");
    let incr = |k: &str| encode_command(&["INCR", k]);
    c.send(&[encode_command(&["MULTI"]), incr(moved_key), incr(stayed), encode_command(&["EXEC"])].concat()).await;
    assert_eq!(c.read_replies(3).await, [&b"+OK\r\n"[..], b"+QUEUED\r\n", b"+QUEUED\r\n"]);
    eventually("EXEC is refused and sent again", || env.proxy.redirects("tryagain") > tryagain).await;
    tokio::task::block_in_place(|| env.cluster.migrate_slot_manual_finish(aslot, from, to)).unwrap();
    assert_eq!(c.read_replies(1).await[0], b"*2\r\n:17\r\n:12\r\n");
    let mut on_to = env.node(to).await;
    let (a, b): (i64, i64) = redis::pipe().get(moved_key).get(stayed).query_async(&mut on_to).await.unwrap();
    assert_eq!((a, b), (17, 12));
}

/// Per-shard transactions (`transactions.cross_slot = "per-shard"`, the setting under test): one
/// block per slot, replies merged in queue order; and the README's WATCH rules, each in a case
/// whose outcome does not depend on timing: a change on a watched node without commands aborts
/// everything before anything runs; a watched node whose block aborts while another node's part
/// ran gets `-EXECABORT ...` in its commands' places (its other slots' blocks too); when every
/// part aborted, EXEC is nil as on one server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_shard_transactions_run_per_slot_and_abort_as_documented() {
    let env = start_with(small(), |cfg| cfg.transactions.cross_slot = CrossSlot::PerShard).await;
    let m = env.cluster.masters();
    let key = |port: u16, i: usize, tag: &str| key_in_slot(env.cluster.slots_of(port)[i], tag);
    // ka and ka2 in two slots of the first master, kb on the second, kc on the third; n* are
    // counters in the same slots.
    let (ka, ka2, kb, kc) = (key(m[0], 0, "ka"), key(m[0], 1, "ka2"), key(m[1], 0, "kb"), key(m[2], 0, "kc"));
    let (nb, nc) = (key(m[1], 0, "nb"), key(m[2], 0, "nc"));
    let mut c = Raw::connect(env.addr()).await;
    let got = multi_exec(
        &mut c,
        &[&["SET", &ka, "1"], &["SET", &kb, "2"], &["INCR", &ka], &["GET", &kb], &["PING"], &["INCRBY", &ka2, "5"]],
    )
    .await;
    assert_eq!(got, "*6\r\n+OK\r\n+OK\r\n:2\r\n$1\r\n2\r\n+PONG\r\n:5\r\n");
    let mut na = env.node(m[0]).await;
    let (a, a2): (i64, i64) = redis::pipe().get(&ka).get(&ka2).query_async(&mut na).await.unwrap();
    assert_eq!((a, a2), (2, 5), "the writes landed on their owner");

    let aborted = "-EXECABORT clusterless: a WATCHed key changed on this command's node; its part did not run\r\n";
    let mut other = Raw::connect(env.addr()).await;
    let all = [ka.as_str(), &ka2, &kb, &kc, &nb, &nc];
    let old = [ka.as_str(), &kb, &kc];
    // 1. The change is on a watched node without commands (kb's): nil, and neither the watched
    //    node with commands (ka's) nor an unwatched one (kc's) ran anything.
    reset(&mut other, &all, old).await;
    watch_and_change(&mut c, &mut other, &[&ka, &kb], &[&kb]).await;
    assert_eq!(multi_exec(&mut c, &[&["SET", &ka, "new"], &["SET", &kc, "new"]]).await, "*-1\r\n");
    assert_eq!(get(&mut other, &ka).await, bulk("old"));
    assert_eq!(get(&mut other, &kc).await, bulk("old"), "nothing ran before the abort");

    // 2. The watched node's block aborts (its first block runs on the watch connection, where the
    //    node sees the change), another node's part runs: the aborted part's replies, in both of
    //    that node's slots, are EXECABORT errors; the rest ran once.
    reset(&mut other, &all, old).await;
    watch_and_change(&mut c, &mut other, &[&ka], &[&ka]).await;
    let got = multi_exec(&mut c, &[&["SET", &ka, "new"], &["INCR", &nb], &["SET", &ka2, "new"]]).await;
    assert_eq!(got, arr(&[aborted.into(), ":1\r\n".into(), aborted.into()]));
    assert_eq!(get(&mut other, &ka).await, bulk("changed"));
    assert_eq!(get(&mut other, &ka2).await, "$-1\r\n", "the node's other slot did not run either");
    assert_eq!(get(&mut other, &nb).await, bulk("1"));

    // 3. Two watched nodes with commands, one changed: the other's part runs.
    reset(&mut other, &all, old).await;
    watch_and_change(&mut c, &mut other, &[&ka, &kb], &[&kb]).await;
    let got = multi_exec(&mut c, &[&["SET", &ka, "new"], &["SET", &kb, "new"]]).await;
    assert_eq!(got, arr(&["+OK\r\n".into(), aborted.into()]));
    assert_eq!((get(&mut other, &ka).await, get(&mut other, &kb).await), (bulk("new"), bulk("changed")));

    // 4. Every part aborted: nil, as one server answers a failed WATCH.
    reset(&mut other, &all, old).await;
    watch_and_change(&mut c, &mut other, &[&ka, &kb], &[&ka, &kb]).await;
    assert_eq!(multi_exec(&mut c, &[&["SET", &ka, "new"], &["SET", &kb, "new"]]).await, "*-1\r\n");
    // ... but with an unwatched node's part, that part ran: the others are EXECABORT.
    watch_and_change(&mut c, &mut other, &[&ka, &kb], &[&ka, &kb]).await;
    let got = multi_exec(&mut c, &[&["SET", &ka, "new"], &["SET", &kb, "new"], &["INCR", &nc]]).await;
    assert_eq!(got, arr(&[aborted.into(), aborted.into(), ":1\r\n".into()]));
    assert_eq!((get(&mut other, &ka).await, get(&mut other, &kb).await), (bulk("changed"), bulk("changed")));

    // 5. Nothing changed: every part runs.
    reset(&mut other, &all, old).await;
    watch_and_change(&mut c, &mut other, &[&ka, &kb], &[]).await;
    let got = multi_exec(&mut c, &[&["SET", &ka, "new"], &["SET", &kb, "new"], &["SET", &kc, "new"]]).await;
    assert_eq!(got, "*3\r\n+OK\r\n+OK\r\n+OK\r\n");
    for k in [&ka, &kb, &kc] {
        assert_eq!(get(&mut other, k).await, bulk("new"));
    }
}

/// A pub/sub message frame as a RESP2 subscriber gets it.
fn message(kind: &str, ch: &str, payload: &str) -> String {
    arr(&[bulk(kind), bulk(ch), bulk(payload)])
}

/// Publishes `<tag><i>` on `ch` with `publish` (PUBLISH or SPUBLISH, every reply checked to be a
/// count) until one of them reaches `sub`, reading for up to 300 ms after each: messages published
/// while the proxy subscribes again may be missed, as the README says. Fails after [`PATIENCE`].
async fn publish_until_received(c: &mut Raw, sub: &mut Raw, publish: &str, kind: &str, ch: &str, tag: &str) {
    let deadline = Instant::now() + PATIENCE;
    for i in 1.. {
        assert!(Instant::now() < deadline, "no {tag}* message on {ch} reached the subscriber");
        let r = c.text(&[publish, ch, &format!("{tag}{i}")]).await;
        assert!(r.starts_with(':'), "{publish} {ch}: {r:?}");
        let until = tokio::time::Instant::now() + Duration::from_millis(300);
        while let Ok(frames) = tokio::time::timeout_at(until, sub.read_replies(1)).await {
            assert!(!frames.is_empty(), "the subscriber's connection was closed");
            let text = String::from_utf8_lossy(&frames[0]).into_owned();
            let payload = text.rsplit("\r\n").nth(1).unwrap_or_default();
            assert_eq!(text, message(kind, ch, payload), "only this channel's messages, no unsubscribe");
            if payload.starts_with(tag) {
                return;
            }
        }
    }
}

/// Reads `want` on `sub` in this order, each once, skipping only late `<skip>*` messages of
/// [`publish_until_received`].
async fn expect_messages(sub: &mut Raw, kind: &str, ch: &str, want: &[String], skip: &str) {
    let mut got = Vec::new();
    while got.len() < want.len() {
        let frames = sub.read_replies(1).await;
        assert!(!frames.is_empty(), "the subscriber's connection was closed");
        let text = String::from_utf8_lossy(&frames[0]).into_owned();
        let payload = text.rsplit("\r\n").nth(1).unwrap_or_default().to_string();
        assert_eq!(text, message(kind, ch, &payload));
        if skip.is_empty() || !payload.starts_with(skip) {
            got.push(payload);
        }
    }
    assert_eq!(got, want, "every message once, in order");
}

/// The masters on which one subscriber connection is subscribed to `ch` (PUBSUB NUMSUB asked of
/// each node itself; a dead node counts none).
fn holders(env: &Env, ch: &str) -> Vec<u16> {
    tokio::task::block_in_place(|| {
        env.cluster
            .masters()
            .into_iter()
            .filter(|&m| {
                let out = env.cluster.cli(m, &["PUBSUB", "NUMSUB", ch]).unwrap_or_default();
                out.lines().nth(1) == Some("1")
            })
            .collect()
    })
}

/// Channels and patterns sit on one exclusive connection to a master. When that node leaves the
/// masters (CLUSTER FAILOVER makes it a replica) and when it dies (kill -9), the proxy subscribes
/// again on a live master without the client doing anything: the nodes themselves show where the
/// subscription is, and messages published afterwards arrive, each once and in order. PUBLISH
/// counts the receivers on the node it reached. A RESP2 subscriber gets Redis's errors for other
/// commands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_move_when_their_node_leaves_or_dies() {
    let mut env = start(with_replicas()).await;
    let mut sub = Raw::connect(env.addr()).await;
    let mut c = Raw::connect(env.addr()).await;
    // One channel in each master's slots: whichever node goes, one is published on a live one.
    let chans: Vec<String> =
        env.cluster.masters().into_iter().map(|m| key_in_slot(env.cluster.slots_of(m)[0], "chan-")).collect();
    for (i, ch) in chans.iter().enumerate() {
        let want = format!("*3\r\n{}{}:{}\r\n", bulk("subscribe"), bulk(ch), i + 1);
        assert_eq!(sub.text(&["SUBSCRIBE", ch]).await, want);
    }
    assert_eq!(sub.text(&["PING"]).await, "*2\r\n$4\r\npong\r\n$0\r\n\r\n");
    for cmd in [&["GET", "x"][..], &["MULTI"], &["BLPOP", "q", "1"], &["WAIT", "0", "0"], &["PUBLISH", "a", "b"]] {
        let want = format!(
            "-ERR Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n",
            cmd[0].to_lowercase()
        );
        assert_eq!(sub.text(cmd).await, want);
    }
    let owner = |env: &Env, ch: &str| env.cluster.slot_owner(clusterless::slot::slot(ch.as_bytes())).unwrap();
    let holder = match holders(&env, &chans[0])[..] {
        [h] => h,
        ref v => panic!("one master holds the subscriptions, not {v:?}"),
    };
    for ch in &chans {
        assert_eq!(holders(&env, ch), vec![holder], "one connection carries every channel");
        let n = usize::from(owner(&env, ch) == holder);
        assert_eq!(c.text(&["PUBLISH", ch, "hello"]).await, format!(":{n}\r\n"), "receivers on the node reached");
        expect_messages(&mut sub, "message", ch, &["hello".into()], "").await;
    }
    let numsub = c.text(&["PUBSUB", "NUMSUB", &chans[0], &chans[1], "nobody"]).await;
    assert_eq!(numsub, format!("*6\r\n{}:1\r\n{}:1\r\n{}:0\r\n", bulk(&chans[0]), bulk(&chans[1]), bulk("nobody")));

    // The node leaves the masters. A replica still gets every PUBLISH over the cluster bus, so
    // delivery alone cannot tell: the nodes must show the subscriptions on a master again.
    let replica = env.cluster.replicas_of(holder)[0];
    tokio::task::block_in_place(|| env.cluster.failover(replica)).unwrap();
    env.converges("CLUSTER FAILOVER").await;
    eventually("the subscriptions move off the demoted node to a master", || {
        let on_old = env.cluster.cli(holder, &["PUBSUB", "NUMSUB", &chans[0]]).unwrap_or_default();
        holders(&env, &chans[0]).len() == 1 && on_old.lines().nth(1) == Some("0")
    })
    .await;
    let holder = holders(&env, &chans[0])[0];
    for ch in &chans {
        assert_eq!(holders(&env, ch), vec![holder], "every channel moved");
    }
    let want: Vec<String> = (0..3).map(|i| format!("left-{i}")).collect();
    for w in &want {
        let n = usize::from(owner(&env, &chans[1]) == holder);
        assert_eq!(c.text(&["PUBLISH", &chans[1], w]).await, format!(":{n}\r\n"));
    }
    expect_messages(&mut sub, "message", &chans[1], &want, "").await;

    // The node dies. Publish on a channel whose master lives.
    let live = chans.iter().find(|ch| owner(&env, ch) != holder).unwrap().clone();
    tokio::task::block_in_place(|| env.cluster.kill9(holder)).unwrap();
    publish_until_received(&mut c, &mut sub, "PUBLISH", "message", &live, "after-kill-").await;
    eventually("the subscriptions sit on one live master", || holders(&env, &live).len() == 1).await;
    let now = holders(&env, &live)[0];
    assert_ne!(now, holder);
    let want: Vec<String> = (0..5).map(|i| format!("final-{i}")).collect();
    for w in &want {
        let n = usize::from(owner(&env, &live) == now);
        assert_eq!(c.text(&["PUBLISH", &live, w]).await, format!(":{n}\r\n"));
    }
    expect_messages(&mut sub, "message", &live, &want, "after-kill-").await;
}

/// EVALSHA answered NOSCRIPT is loaded on every master and run once: after SCRIPT FLUSH straight
/// on the key's master, and after it on every master; scripts the proxy saw through EVAL count
/// too; a script nobody loaded and one flushed through the proxy get the node's NOSCRIPT. WAIT
/// answers the smallest count over the masters: with one master's replica stopped (SIGSTOP) it
/// is 0 after its timeout, with all running 1, never the sum. WAITAOF is refused by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_reload_on_noscript_and_wait_answers_the_smallest_count() {
    let mut env = start(with_replicas()).await;
    let mut c = Raw::connect(env.addr()).await;
    let body = "return redis.call('INCR', KEYS[1])";
    let sha = sha1_smol::Sha1::from(body).digest().to_string();
    assert_eq!(c.text(&["SCRIPT", "LOAD", body]).await, bulk(&sha));
    let owner = env.cluster.slot_owner(clusterless::slot::slot(b"sk")).unwrap();
    let exists_on = |env: &Env, port: u16, sha: &str| env.cluster.cli(port, &["SCRIPT", "EXISTS", sha]).unwrap();
    env.cluster.cli(owner, &["SCRIPT", "FLUSH"]).unwrap();
    assert_eq!(exists_on(&env, owner, &sha), "0");
    assert_eq!(c.text(&["EVALSHA", &sha, "1", "sk"]).await, ":1\r\n", "reloaded, run once");
    for m in env.cluster.masters() {
        env.cluster.cli(m, &["SCRIPT", "FLUSH"]).unwrap();
    }
    assert_eq!(c.text(&["EVALSHA", &sha, "1", "sk"]).await, ":2\r\n");
    for m in env.cluster.masters() {
        assert_eq!(exists_on(&env, m, &sha), "1", "loaded on every master, {m} too");
    }
    assert_eq!(c.text(&["GET", "sk"]).await, bulk("2"), "each EVALSHA ran once");
    // A script the proxy saw in an EVAL.
    let body2 = "return redis.call('INCRBY', KEYS[1], 10)";
    let sha2 = sha1_smol::Sha1::from(body2).digest().to_string();
    assert_eq!(c.text(&["EVAL", body2, "1", "sk"]).await, ":12\r\n");
    for m in env.cluster.masters() {
        env.cluster.cli(m, &["SCRIPT", "FLUSH"]).unwrap();
    }
    assert_eq!(c.text(&["EVALSHA", &sha2, "1", "sk"]).await, ":22\r\n");
    // Never loaded: the node's own NOSCRIPT.
    let unknown = "0".repeat(40);
    let mut node = Raw::connect(std::net::SocketAddr::from(([127, 0, 0, 1], owner))).await;
    let own = node.text(&["EVALSHA", &unknown, "1", "sk"]).await;
    assert_eq!(own, "-NOSCRIPT No matching script. Please use EVAL.\r\n");
    assert_eq!(c.text(&["EVALSHA", &unknown, "1", "sk"]).await, own);
    // Keys in two slots: no cluster can run that.
    assert_ne!(clusterless::slot::slot(b"sk"), clusterless::slot::slot(b"other"));
    assert_eq!(c.text(&["EVALSHA", &sha, "2", "sk", "other"]).await, CROSSSLOT);
    // SCRIPT FLUSH through the proxy: forgotten for good, nothing runs.
    assert_eq!(c.text(&["SCRIPT", "FLUSH"]).await, "+OK\r\n");
    assert_eq!(c.text(&["EVALSHA", &sha, "1", "sk"]).await, own);
    assert_eq!(c.text(&["GET", "sk"]).await, bulk("22"));

    // WAIT: each master has one replica.
    assert_eq!(c.text(&["SET", "w", "1"]).await, "+OK\r\n");
    assert_eq!(c.text(&["WAIT", "1", "2000"]).await, ":1\r\n");
    let t = Instant::now();
    assert_eq!(c.text(&["WAIT", "2", "300"]).await, ":1\r\n", "the smallest count, not the sum (3)");
    assert!(t.elapsed() >= Duration::from_millis(300), "{:?}", t.elapsed());
    let m0 = env.cluster.masters()[0];
    let stopped = env.cluster.replicas_of(m0)[0];
    tokio::task::block_in_place(|| env.cluster.sigstop(stopped)).unwrap();
    let t = Instant::now();
    let got = c.text(&["WAIT", "1", "300"]).await;
    let took = t.elapsed();
    tokio::task::block_in_place(|| env.cluster.sigcont(stopped)).unwrap();
    assert_eq!(got, ":0\r\n", "one shard has no replica acknowledging: the smallest count is 0");
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(3), "after the timeout: {took:?}");
    let url = env.url();
    eventually_async("the replica acknowledges again", || {
        let url = url.clone();
        async move {
            let mut c = client_conn(&url).await;
            redis::cmd("WAIT").arg(1).arg(1000).query_async::<i64>(&mut c).await.unwrap() == 1
        }
    })
    .await;
    assert_eq!(c.text(&["DBSIZE"]).await, ":2\r\n", "WAIT's marker writes leave nothing behind");
    // WAITAOF is refused by name (it counts one connection's writes on one node), also on these
    // 7.0 nodes that do not know it.
    assert_eq!(
        c.text(&["WAITAOF", "1", "0", "0"]).await,
        "-ERR 'WAITAOF' is not available through clusterless: it refers to one connection's writes on one node\r\n"
    );
}

/// EVALSHA and MULTI/EXEC loops over hash-tagged keys of one master, through the proxy, while that
/// master hands over to its replica (CLUSTER FAILOVER; the replica's script cache emptied first,
/// as for a master promoted after the load): no error at all, and every INCR inside them ran
/// exactly once (each reply is the count of successful calls so far, and so are the final values).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_and_transactions_run_exactly_once_through_a_failover() {
    let env = start(with_replicas()).await;
    env.converges("start").await;
    let m = env.cluster.masters()[0];
    let replica = env.cluster.replicas_of(m)[0];
    let tag = key_in_slot(env.cluster.slots_of(m)[0], "fo-");
    let (ks, kt) = (format!("{{{tag}}}:script"), format!("{{{tag}}}:tx"));
    let mut c = env.conn().await;
    let sha: String =
        redis::cmd("SCRIPT").arg("LOAD").arg("return redis.call('INCR', KEYS[1])").query_async(&mut c).await.unwrap();
    env.cluster.cli(replica, &["SCRIPT", "FLUSH"]).unwrap();
    assert_eq!(env.cluster.cli(replica, &["SCRIPT", "EXISTS", &sha]).unwrap(), "0");

    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let spawn_loop = |script: bool| {
        let (url, stop, rounds, sha, key) =
            (env.url(), stop.clone(), rounds.clone(), sha.clone(), if script { ks.clone() } else { kt.clone() });
        tokio::spawn(async move {
            let mut c = client_conn(&url).await;
            let (mut replies, mut errors) = (Vec::new(), Vec::new());
            let until = Instant::now() + Duration::from_secs(60);
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                let r: redis::RedisResult<i64> = if script {
                    redis::cmd("EVALSHA").arg(&sha).arg(1).arg(&key).query_async(&mut c).await
                } else {
                    redis::pipe().atomic().incr(&key, 1).query_async::<(i64,)>(&mut c).await.map(|(v,)| v)
                };
                match r {
                    Ok(v) => replies.push(v),
                    Err(e) => errors.push(e.to_string()),
                }
                rounds.fetch_add(1, Ordering::Relaxed);
            }
            (replies, errors)
        })
    };
    let loops = [spawn_loop(true), spawn_loop(false)];
    let more = |n: u64| {
        let from = rounds.load(Ordering::Relaxed);
        let rounds = rounds.clone();
        eventually("the loops make progress", move || rounds.load(Ordering::Relaxed) >= from + n)
    };
    more(40).await;
    tokio::task::block_in_place(|| env.cluster.failover(replica)).unwrap();
    env.converges("CLUSTER FAILOVER").await;
    more(40).await;
    stop.store(true, Ordering::Relaxed);
    let mut finals = Vec::new();
    for (h, key) in loops.into_iter().zip([&ks, &kt]) {
        let (replies, errors) = h.await.unwrap();
        assert!(errors.is_empty(), "{key}: errors during a CLUSTER FAILOVER: {errors:?}");
        let want: Vec<i64> = (1..=replies.len() as i64).collect();
        assert_eq!(replies, want, "{key}: each INCR ran once, in order");
        finals.push(replies.len() as i64);
    }
    let mut on_new = env.node(replica).await;
    let (s, t): (i64, i64) = redis::pipe().get(&ks).get(&kt).query_async(&mut on_new).await.unwrap();
    assert_eq!(vec![s, t], finals, "the promoted master holds exactly the acknowledged INCRs");
    assert_eq!(env.cluster.cli(replica, &["SCRIPT", "EXISTS", &sha]).unwrap(), "1", "loaded on the new master");
}

/// RESP3 clients (HELLO 3) get RESP3 replies; subscribed, they get messages as push frames and may
/// run any command; RESET brings them back to RESP2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp3_clients_get_resp3_replies_and_pushes() {
    let env = start(small()).await;
    let mut c = Raw::connect(env.addr()).await;
    let hello = c.cmd(&[b"HELLO", b"3"]).await;
    assert!(hello.starts_with(b"%7\r\n"));
    c.cmd(&[b"HSET", b"h", b"f", b"v"]).await;
    assert_eq!(c.cmd(&[b"HGETALL", b"h"]).await, b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n");
    c.cmd(&[b"SADD", b"s", b"m"]).await;
    assert_eq!(c.cmd(&[b"SMEMBERS", b"s"]).await, b"~1\r\n$1\r\nm\r\n");
    c.cmd(&[b"ZADD", b"z", b"1.5", b"m"]).await;
    assert_eq!(c.cmd(&[b"ZSCORE", b"z", b"m"]).await, b",1.5\r\n");
    assert_eq!(c.cmd(&[b"GET", b"missing"]).await, b"_\r\n");
    assert_eq!(c.cmd(&[b"MGET", b"missing", b"h2"]).await, b"*2\r\n_\r\n_\r\n");
    // Subscribed RESP3 clients get pushes and may still run any command: reads, a transaction,
    // a blocking pop; a push published meanwhile comes between replies, never inside one.
    assert_eq!(c.cmd(&[b"SUBSCRIBE", b"ch"]).await, b">3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n");
    assert_eq!(c.cmd(&[b"GET", b"missing"]).await, b"_\r\n");
    assert_eq!(c.cmd(&[b"PING"]).await, b"+PONG\r\n");
    c.send(b"MULTI\r\nSET {r3}a 1\r\nINCR {r3}a\r\nEXEC\r\n").await;
    assert_eq!(c.read_replies(4).await[3], b"*2\r\n+OK\r\n:2\r\n");
    assert_eq!(c.cmd(&[b"BLPOP", b"{r3}q", b"0.1"]).await, b"_\r\n");
    let mut p = Raw::connect(env.addr()).await;
    let holder = env
        .cluster
        .masters()
        .into_iter()
        .find(|&m| env.cluster.cli(m, &["PUBSUB", "NUMSUB", "ch"]).unwrap_or_default().lines().nth(1) == Some("1"));
    let n = usize::from(holder == env.cluster.slot_owner(clusterless::slot::slot(b"ch")));
    assert_eq!(p.text(&["PUBLISH", "ch", "hi"]).await, format!(":{n}\r\n"));
    c.send(b"GET {r3}a\r\n").await;
    let mut r = c.read_replies(2).await;
    r.sort();
    assert_eq!(r, vec![b"$1\r\n2\r\n".to_vec(), b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n".to_vec()]);
    assert_eq!(c.cmd(&[b"RESET"]).await, b"+RESET\r\n");
    assert_eq!(c.cmd(&[b"GET", b"missing"]).await, b"$-1\r\n", "RESET returns to RESP2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_style_users_from_config() {
    let env = start_with(small(), |cfg| {
        cfg.auth.users =
            vec![clusterless::config::User { name: "app".into(), password: "s3cret".into(), backend: None }]
    })
    .await;
    let mut c = Raw::connect(env.addr()).await;
    assert_eq!(c.cmd(&[b"GET", b"k"]).await, b"-NOAUTH Authentication required.\r\n");
    assert_eq!(
        c.cmd(&[b"AUTH", b"s3cret"]).await,
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(
        c.cmd(&[b"AUTH", b"app", b"nope"]).await,
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    let hello = c.cmd(&[b"HELLO", b"3", b"AUTH", b"app", b"s3cret", b"SETNAME", b"worker"]).await;
    assert!(hello.starts_with(b"%7\r\n"), "{}", String::from_utf8_lossy(&hello));
    assert_eq!(c.cmd(&[b"CLIENT", b"GETNAME"]).await, b"$6\r\nworker\r\n");
    assert_eq!(c.cmd(&[b"GET", b"k"]).await, b"_\r\n");
    assert_eq!(c.cmd(&[b"CLIENT", b"NO-EVICT", b"on"]).await, b"+OK\r\n");
    assert_eq!(c.cmd(&[b"CLIENT", b"TRACKING", b"on"]).await, b"+OK\r\n");
}

/// A shard subscription follows its channel's slot: after the slot moved to another master, the
/// proxy subscribes on the new owner without the client noticing (the node's own unsubscribe is
/// not passed on), and SPUBLISH, which always reaches the slot's master, counts the subscriber.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_subscriber_follows_its_channel_slot_to_a_new_master() {
    let env = start(small()).await;
    let ch = "orders";
    let s = clusterless::slot::slot(ch.as_bytes());
    let from = env.cluster.slot_owner(s).unwrap();
    let to = env.cluster.masters().into_iter().find(|&m| m != from).unwrap();
    let mut sub = Raw::connect(env.addr()).await;
    assert_eq!(sub.cmd(&[b"SSUBSCRIBE", b(ch)]).await, b"*3\r\n$10\r\nssubscribe\r\n$6\r\norders\r\n:1\r\n");
    let mut c = Raw::connect(env.addr()).await;
    assert_eq!(c.text(&["SPUBLISH", ch, "m0"]).await, ":1\r\n");
    expect_messages(&mut sub, "smessage", ch, &["m0".into()], "").await;

    tokio::task::block_in_place(|| {
        env.cluster.migrate_slot_manual_begin(s, from, to).unwrap();
        env.cluster.migrate_slot_manual_finish(s, from, to).unwrap();
    });
    // Published on the new owner, the messages reach the client without it doing anything.
    publish_until_received(&mut c, &mut sub, "SPUBLISH", "smessage", ch, "moved-").await;
    // The map may still move while the claims of the two nodes settle: the subscription ends up
    // on the new owner, and only there.
    eventually("subscribed on the new owner", || {
        let count = |port: u16| {
            let out = env.cluster.cli(port, &["PUBSUB", "SHARDNUMSUB", ch]).unwrap_or_default();
            out.lines().nth(1).map(str::to_string)
        };
        count(to).as_deref() == Some("1") && count(from).as_deref() == Some("0")
    })
    .await;
    let want: Vec<String> = (0..3).map(|i| format!("after-{i}")).collect();
    for w in &want {
        assert_eq!(c.text(&["SPUBLISH", ch, w]).await, ":1\r\n", "SPUBLISH reaches the subscribed owner");
    }
    expect_messages(&mut sub, "smessage", ch, &want, "moved-").await;
}

/// A live master that drops the proxy's subscription connection (here CLIENT KILL TYPE pubsub on
/// the node; under load, its own output buffer limit) drops the subscriber with it, as Redis
/// drops a subscriber it cut off: what was published meanwhile is lost, and a silent
/// resubscription would hide that. Other clients are served on; a new subscriber gets messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_whose_live_node_drops_it_is_closed() {
    let env = start(small()).await;
    let ch = "dropped-news";
    let mut sub = Raw::connect(env.addr()).await;
    assert_eq!(sub.text(&["SUBSCRIBE", ch]).await, format!("*3\r\n{}{}:1\r\n", bulk("subscribe"), bulk(ch)));
    let holder = match holders(&env, ch)[..] {
        [h] => h,
        ref v => panic!("one master holds the subscription, not {v:?}"),
    };
    let killed =
        tokio::task::block_in_place(|| env.cluster.cli(holder, &["CLIENT", "KILL", "TYPE", "pubsub"])).unwrap();
    assert_eq!(killed.trim(), "1", "the node had the proxy's one subscription connection");
    assert!(sub.closed().await, "the subscriber is closed with its node connection");
    assert!(holders(&env, ch).is_empty(), "and not subscribed again anywhere");

    let mut again = Raw::connect(env.addr()).await;
    assert_eq!(again.text(&["SUBSCRIBE", ch]).await, format!("*3\r\n{}{}:1\r\n", bulk("subscribe"), bulk(ch)));
    let mut c = Raw::connect(env.addr()).await;
    let n = holders(&env, ch).len();
    assert_eq!(n, 1);
    assert!(c.text(&["PUBLISH", ch, "after"]).await.starts_with(':'));
    expect_messages(&mut again, "message", ch, &["after".into()], "").await;
}
