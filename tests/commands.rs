//! The README's command table, row by row, against real clusters: whole-cluster commands merged
//! over every master (compared with what each master says of itself, read directly), any-master
//! commands and their round robin, INFO, scripts and functions, same-slot-only and multi-key keyed
//! commands (`-CROSSSLOT`, never split), fanned-out commands' exact merged replies, refusals
//! (exact texts, and no node ever sees the command), `limits.max_pipeline`, and a slot no master
//! serves.

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clusterless::slot::slot;
use common::*;
use redis::aio::MultiplexedConnection;
use redis::AsyncCommands;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CROSSSLOT: &str = "-CROSSSLOT Keys in request don't hash to the same slot\r\n";
const NOT_SERVED: &str = "-CLUSTERDOWN Hash slot not served\r\n";

/// A RESP bulk string, as text.
fn bulk(v: &str) -> String {
    format!("${}\r\n{v}\r\n", v.len())
}

/// A key named `prefix<i>` whose slot `port` owns in `map` (the cluster's own slot map).
fn key_on(map: &[Option<u16>], port: u16, prefix: &str) -> String {
    (0u64..).map(|i| format!("{prefix}{i}")).find(|k| map[slot(k.as_bytes()) as usize] == Some(port)).expect("a key")
}

/// A raw RESP client straight to one node.
async fn node_raw(port: u16) -> Raw {
    Raw::connect(SocketAddr::from(([127, 0, 0, 1], port))).await
}

/// One command on one node, straight (not through the proxy).
async fn on_node<T: redis::FromRedisValue>(env: &Env, port: u16, cmd: &redis::Cmd) -> T {
    let mut n = env.node(port).await;
    cmd.query_async(&mut n).await.unwrap_or_else(|e| panic!("{cmd:?} on node {port}: {e}"))
}

fn cmd(args: &[&str]) -> redis::Cmd {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c
}

/// The `key:value` lines of an INFO text.
fn info_fields(text: &str) -> HashMap<String, String> {
    text.lines().filter_map(|l| l.split_once(':')).map(|(k, v)| (k.to_string(), v.trim_end().to_string())).collect()
}

/// `keys` and `expires` of a `db0:keys=..,expires=..,avg_ttl=..` value.
fn keyspace(v: &str) -> (i64, i64) {
    let get = |name: &str| {
        v.split(',')
            .find_map(|kv| kv.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {v}"))
    };
    (get("keys"), get("expires"))
}

/// A whole SCAN with `extra` arguments: every key returned (repeats included) and the number of
/// calls it took. Each cursor on the way is the proxy's own, naming one of the `shards` (their
/// keys in the proxy's map).
async fn scan_all(c: &mut MultiplexedConnection, extra: &[&str], shards: &[u16]) -> (Vec<String>, usize) {
    let mut cursor = 0u64;
    let mut out = Vec::new();
    let mut calls = 0;
    loop {
        let (next, batch): (u64, Vec<String>) =
            redis::cmd("SCAN").arg(cursor).arg(extra).query_async(c).await.expect("SCAN");
        calls += 1;
        out.extend(batch);
        if next == 0 {
            return (out, calls);
        }
        let named = clusterless::ScanCursor::decode(next).map(|c| c.shard);
        assert!(
            named.is_some_and(|k| shards.contains(&k)),
            "cursor {next} names shard {named:?}, not one of {shards:?}"
        );
        assert!(calls < 100_000, "SCAN must terminate");
        cursor = next;
    }
}

fn sorted<T: Ord + Clone>(v: &[T]) -> Vec<T> {
    let mut v = v.to_vec();
    v.sort();
    v
}

/// DBSIZE, KEYS, SCAN, RANDOMKEY, FLUSHALL/FLUSHDB [ASYNC|SYNC]: every master, replies merged,
/// compared with each master's own answer read directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_cluster_keyspace_commands() {
    let env = start(small()).await;
    let masters = env.cluster.masters();
    assert_eq!(masters.len(), 3);
    let mut c = env.conn().await;
    let mut r = Raw::connect(env.addr()).await;

    let strings = spread_keys("s", 3000);
    let lists = spread_keys("l", 300);
    let hashes = spread_keys("h", 300);
    let mut pipe = redis::pipe();
    for k in &strings {
        pipe.set(k, 1).ignore();
    }
    for k in &lists {
        pipe.rpush(k, 1).ignore();
    }
    for k in &hashes {
        pipe.hset(k, "f", 1).ignore();
    }
    let _: () = pipe.query_async(&mut c).await.unwrap();
    let all: HashSet<String> = strings.iter().chain(&lists).chain(&hashes).cloned().collect();

    // DBSIZE: the sum of what each master says of itself (no master alone has them all).
    let mut direct = Vec::new();
    for &m in &masters {
        direct.push(on_node::<i64>(&env, m, &cmd(&["DBSIZE"])).await);
    }
    assert!(direct.iter().all(|&n| n > 0 && n < 3600), "keys on every master: {direct:?}");
    assert_eq!(direct.iter().sum::<i64>(), 3600);
    assert_eq!(r.text(&["DBSIZE"]).await, ":3600\r\n");

    // KEYS: the union, each key once.
    let keys: Vec<String> = c.keys("*").await.unwrap();
    assert_eq!(keys.len(), all.len(), "KEYS * returns each key once");
    assert_eq!(keys.into_iter().collect::<HashSet<_>>(), all);
    let hk: Vec<String> = c.keys("h:1*").await.unwrap();
    let want: Vec<String> = hashes.iter().filter(|k| k.starts_with("h:1")).cloned().collect();
    assert_eq!(sorted(&hk), sorted(&want), "KEYS with a pattern, over every master");

    // SCAN: one cursor over every master, each key exactly once.
    let shards: Vec<u16> = env.proxy.topology().shards().iter().map(|s| s.key).collect();
    assert_eq!(shards.len(), 3);
    let (seen, calls_1000) = scan_all(&mut c, &["COUNT", "1000"], &shards).await;
    assert_eq!(seen.len(), all.len(), "no key twice");
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), all);
    // COUNT is kept: 1000 per call walks 3600 keys in a few calls; the node default (10) takes
    // hundreds.
    let (seen, calls_default) = scan_all(&mut c, &[], &shards).await;
    assert_eq!(seen.len(), all.len());
    assert!(calls_1000 <= 30, "SCAN COUNT 1000 took {calls_1000} calls: COUNT was dropped");
    assert!(calls_default > 100, "SCAN without COUNT took only {calls_default} calls");
    // MATCH and TYPE are kept, together and alone; TYPE excludes the other types.
    let (got, _) = scan_all(&mut c, &["TYPE", "hash"], &shards).await;
    assert_eq!(sorted(&got), sorted(&hashes), "SCAN TYPE hash: the hashes only");
    let (got, _) = scan_all(&mut c, &["MATCH", "l:2*", "COUNT", "500", "TYPE", "list"], &shards).await;
    let want: Vec<String> = lists.iter().filter(|k| k.starts_with("l:2")).cloned().collect();
    assert_eq!(sorted(&got), sorted(&want));
    let (got, _) = scan_all(&mut c, &["MATCH", "s:*", "TYPE", "list"], &shards).await;
    assert!(got.is_empty(), "strings are not lists: {got:?}");
    let (got, _) = scan_all(&mut c, &["MATCH", "s:12*"], &shards).await;
    let want: Vec<String> = strings.iter().filter(|k| k.starts_with("s:12")).cloned().collect();
    assert_eq!(sorted(&got), sorted(&want));

    // RANDOMKEY: an existing key.
    for _ in 0..20 {
        let k: Option<String> = redis::cmd("RANDOMKEY").query_async(&mut c).await.unwrap();
        let k = k.expect("a key");
        assert!(all.contains(&k), "RANDOMKEY answered {k:?}, not a key");
    }

    // FLUSHALL / FLUSHDB, plain, ASYNC and SYNC: every master emptied.
    for flush in [
        &["FLUSHALL"][..],
        &["FLUSHALL", "ASYNC"],
        &["FLUSHALL", "SYNC"],
        &["FLUSHDB"],
        &["FLUSHDB", "ASYNC"],
        &["FLUSHDB", "SYNC"],
    ] {
        let pairs: Vec<(String, i32)> = spread_keys("f", 300).into_iter().map(|k| (k, 1)).collect();
        let _: () = c.mset(&pairs).await.unwrap();
        for &m in &masters {
            let n: i64 = on_node(&env, m, &cmd(&["DBSIZE"])).await;
            assert!(n > 0, "keys on master {m} before {flush:?}");
        }
        assert_eq!(r.text(flush).await, "+OK\r\n", "{flush:?}");
        for &m in &masters {
            let n: i64 = on_node(&env, m, &cmd(&["DBSIZE"])).await;
            assert_eq!(n, 0, "master {m} after {flush:?}");
        }
    }

    // RANDOMKEY on an empty cluster: nil; with one key on one master, always that key (every
    // master is asked until one has a key, so the two empty ones never answer nil).
    assert_eq!(r.text(&["RANDOMKEY"]).await, "$-1\r\n");
    let _: () = c.set("lonely", 1).await.unwrap();
    for _ in 0..12 {
        assert_eq!(r.text(&["RANDOMKEY"]).await, bulk("lonely"));
    }
    let _: () = c.del("lonely").await.unwrap();
    assert_eq!(r.text(&["RANDOMKEY"]).await, "$-1\r\n");
    assert_eq!(r.text(&["DBSIZE"]).await, ":0\r\n");
    assert_eq!(r.text(&["KEYS", "*"]).await, "*0\r\n");
}

/// A script that runs on the node for about `ms` milliseconds (DEBUG SLEEP is off on the nodes).
fn busy_script(ms: u64) -> String {
    format!(
        "local t = redis.call('TIME') local s = t[1] * 1000000 + t[2] \
         while true do local n = redis.call('TIME') if n[1] * 1000000 + n[2] - s > {} then break end end return 1",
        ms * 1000
    )
}

/// Any-master commands answer from one master, round robin over the masters (never a replica);
/// keyless EVAL/FCALL run on one master; INFO is one standalone server's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_master_round_robin_and_info() {
    let env = start(with_replicas()).await;
    env.converges("start").await;
    let masters = env.cluster.masters();
    assert_eq!(masters.len(), 3);
    let replicas: Vec<u16> = env.cluster.ports().into_iter().filter(|p| !masters.contains(p)).collect();
    assert_eq!(replicas.len(), 3);
    let map = env.cluster.slot_map();
    let mut c = env.conn().await;
    let mut r = Raw::connect(env.addr()).await;

    // Master i holds 10 * (i + 1) keys, 3 * (i + 1) of them with a TTL: each master's answers
    // differ, so an answer tells which master gave it.
    for (i, &m) in masters.iter().enumerate() {
        let mut pipe = redis::pipe();
        for j in 0..10 * (i + 1) {
            let k = key_on(&map, m, &format!("am{i}-{j}-"));
            if j < 3 * (i + 1) {
                pipe.set_ex(&k, 1, 100_000).ignore();
            } else {
                pipe.set(&k, 1).ignore();
            }
        }
        let _: () = pipe.query_async(&mut c).await.unwrap();
    }
    let dbsizes: BTreeSet<i64> = [10, 20, 30].into();
    for (i, &m) in masters.iter().enumerate() {
        let n: i64 = on_node(&env, m, &cmd(&["DBSIZE"])).await;
        assert_eq!(n, 10 * (i as i64 + 1), "keys of master {m}");
    }

    // CONFIG GET port: each master exactly twice in six calls, never a replica.
    let mut ports: HashMap<u16, usize> = HashMap::new();
    for _ in 0..6 {
        let v: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("port").query_async(&mut c).await.unwrap();
        assert_eq!(v.len(), 2, "{v:?}");
        *ports.entry(v[1].parse().unwrap()).or_default() += 1;
    }
    let want: HashMap<u16, usize> = masters.iter().map(|&m| (m, 2)).collect();
    assert_eq!(ports, want, "CONFIG GET port round robin over the masters {masters:?} (replicas {replicas:?})");

    // MEMORY STATS: three calls, three masters (keys.count is that master's key count).
    let mut counts = BTreeSet::new();
    for _ in 0..3 {
        let v: Vec<redis::Value> = redis::cmd("MEMORY").arg("STATS").query_async(&mut c).await.unwrap();
        let at = v
            .iter()
            .position(|x| matches!(x, redis::Value::BulkString(b) if b == b"keys.count"))
            .expect("keys.count in MEMORY STATS");
        let n: i64 = redis::from_redis_value(v[at + 1].clone()).unwrap();
        counts.insert(n);
    }
    assert_eq!(counts, dbsizes, "MEMORY STATS from each master in turn");

    // Keyless EVAL (numkeys 0), FCALL and FCALL_RO: one master each, in turn.
    let mut got = BTreeSet::new();
    for _ in 0..3 {
        let n: i64 = redis::cmd("EVAL").arg("return redis.call('dbsize')").arg(0).query_async(&mut c).await.unwrap();
        got.insert(n);
    }
    assert_eq!(got, dbsizes, "keyless EVAL runs on one master, round robin");
    let lib = "#!lua name=amlib\nredis.register_function{function_name='dbsz', \
               callback=function(keys, args) return redis.call('dbsize') end, flags={'no-writes'}}";
    assert_eq!(r.text(&["FUNCTION", "LOAD", lib]).await, bulk("amlib"));
    for f in ["FCALL", "FCALL_RO"] {
        let mut got = BTreeSet::new();
        for _ in 0..3 {
            let n: i64 = redis::cmd(f).arg("dbsz").arg(0).query_async(&mut c).await.unwrap();
            got.insert(n);
        }
        assert_eq!(got, dbsizes, "keyless {f} runs on one master, round robin");
    }

    // SLOWLOG LEN and LATENCY LATEST: master i gets i + 1 slow commands (a busy script of 150 ms, the
    // slowlog threshold raised to 100 ms so that nothing else counts), and only the first master
    // records latency events.
    let slow = busy_script(150);
    let mut setups = Vec::new();
    for (i, &m) in masters.iter().enumerate() {
        let env = &env;
        let slow = slow.clone();
        setups.push(async move {
            let mut n = env.node(m).await;
            let threshold = if i == 0 { "100" } else { "0" };
            let _: () =
                cmd(&["CONFIG", "SET", "latency-monitor-threshold", threshold]).query_async(&mut n).await.unwrap();
            let _: () = cmd(&["CONFIG", "SET", "slowlog-log-slower-than", "100000"]).query_async(&mut n).await.unwrap();
            let _: () = cmd(&["SLOWLOG", "RESET"]).query_async(&mut n).await.unwrap();
            for _ in 0..=i {
                let _: i64 = redis::cmd("EVAL").arg(&slow).arg(0).query_async(&mut n).await.unwrap();
            }
            let len: i64 = cmd(&["SLOWLOG", "LEN"]).query_async(&mut n).await.unwrap();
            assert_eq!(len, i as i64 + 1, "slowlog of master {m}");
        });
    }
    futures_util::future::join_all(setups).await;
    // One server's logs: every master's, merged (not one master's in turn).
    for _ in 0..3 {
        let n: i64 = redis::cmd("SLOWLOG").arg("LEN").query_async(&mut c).await.unwrap();
        assert_eq!(n, 1 + 2 + 3, "SLOWLOG LEN is the masters' sum");
        let v: Vec<redis::Value> = redis::cmd("LATENCY").arg("LATEST").query_async(&mut c).await.unwrap();
        assert_eq!(v.len(), 1, "LATENCY LATEST: the one master's event, once");
    }

    // COMMAND COUNT / COMMAND INFO: a master's own answer, byte for byte.
    let mut n0 = node_raw(masters[0]).await;
    assert_eq!(r.text(&["COMMAND", "COUNT"]).await, n0.text(&["COMMAND", "COUNT"]).await);
    assert_eq!(
        r.text(&["COMMAND", "INFO", "get", "zunionstore"]).await,
        n0.text(&["COMMAND", "INFO", "get", "zunionstore"]).await
    );
    // LASTSAVE: one of the masters' own.
    let mut saves = HashSet::new();
    for &m in &masters {
        saves.insert(on_node::<i64>(&env, m, &cmd(&["LASTSAVE"])).await);
    }
    for _ in 0..3 {
        let t: i64 = redis::cmd("LASTSAVE").query_async(&mut c).await.unwrap();
        assert!(saves.contains(&t), "LASTSAVE {t} is no master's {saves:?}");
    }
    // TIME: a server clock, now.
    let t: Vec<String> = redis::cmd("TIME").query_async(&mut c).await.unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert_eq!(t.len(), 2);
    assert!((t[0].parse::<i64>().unwrap() - now).abs() <= 5, "TIME {t:?}, now {now}");
    assert!(t[1].parse::<u32>().unwrap() < 1_000_000);

    // INFO: a standalone server, with the proxy's own replication, cluster and clients sections
    // (the masters each have one replica and cluster_enabled:1).
    let info: String = redis::cmd("INFO").query_async(&mut c).await.unwrap();
    assert!(info.contains("\r\nredis_mode:standalone\r\n"), "{info}");
    assert!(!info.contains("redis_mode:cluster"), "{info}");
    assert!(info.contains("# Replication\r\nrole:master\r\nconnected_slaves:0\r\n"), "{info}");
    assert!(info.contains("# Cluster\r\ncluster_enabled:0\r\n"), "{info}");
    assert!(info.contains(&format!("\r\ntcp_port:{}\r\n", env.addr().port())), "{info}");
    for &m in &masters {
        let own: String = on_node(&env, m, &cmd(&["INFO", "replication"])).await;
        assert!(own.contains("connected_slaves:1\r\n"), "master {m}: {own}");
    }
    // Clients: the proxy's own two clients (this redis-rs connection and the raw one).
    assert_eq!(r.text(&["PING"]).await, "+PONG\r\n");
    let clients: String = redis::cmd("INFO").arg("clients").query_async(&mut c).await.unwrap();
    assert_eq!(info_fields(&clients).get("connected_clients").map(String::as_str), Some("2"), "{clients}");
    // Keyspace: keys and expires summed over the masters' own INFO keyspace.
    let mut sum = (0, 0);
    for (i, &m) in masters.iter().enumerate() {
        let own: String = on_node(&env, m, &cmd(&["INFO", "keyspace"])).await;
        let (k, e) = keyspace(&info_fields(&own)["db0"]);
        assert_eq!((k, e), (10 * (i as i64 + 1), 3 * (i as i64 + 1)), "master {m}: {own}");
        sum = (sum.0 + k, sum.1 + e);
    }
    let ks: String = redis::cmd("INFO").arg("keyspace").query_async(&mut c).await.unwrap();
    assert!(ks.starts_with("# Keyspace\r\ndb0:keys=60,expires=18,avg_ttl="), "{ks}");
    assert_eq!(keyspace(&info_fields(&ks)["db0"]), sum);
    // Another section's integers summed: rdb_changes_since_last_save (it differs per master).
    eventually_async("INFO persistence sums rdb_changes_since_last_save over the masters", || async {
        let mut direct = Vec::new();
        for &m in &masters {
            let own: String = on_node(&env, m, &cmd(&["INFO", "persistence"])).await;
            direct.push(info_fields(&own)["rdb_changes_since_last_save"].parse::<i64>().unwrap());
        }
        let mut c = env.conn().await;
        let merged: String = redis::cmd("INFO").arg("persistence").query_async(&mut c).await.unwrap();
        let merged: i64 = info_fields(&merged)["rdb_changes_since_last_save"].parse().unwrap();
        direct.iter().all(|&d| d > 0 && d < merged) && merged == direct.iter().sum::<i64>()
    })
    .await;
}

/// SCRIPT LOAD/EXISTS/FLUSH and FUNCTION LOAD/DELETE/FLUSH/RESTORE on every master (checked on
/// each master directly), EVAL/EVALSHA/FCALL/FCALL_RO by their keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_and_functions_on_every_master() {
    let env = start(small()).await;
    let masters = env.cluster.masters();
    let map = env.cluster.slot_map();
    let mut r = Raw::connect(env.addr()).await;
    let mut c = env.conn().await;

    // SCRIPT EXISTS is true only where every master has the script: loaded on one master
    // directly, the proxy says 0; loaded through the proxy (on every master), 1.
    let body = "return 'only-here'";
    let sha: String = on_node(&env, masters[1], &cmd(&["SCRIPT", "LOAD", body])).await;
    for (i, &m) in masters.iter().enumerate() {
        let e: Vec<i64> = on_node(&env, m, &cmd(&["SCRIPT", "EXISTS", &sha])).await;
        assert_eq!(e, vec![(i == 1) as i64], "master {m}");
    }
    assert_eq!(r.text(&["SCRIPT", "EXISTS", &sha]).await, "*1\r\n:0\r\n", "one master of three has it");
    assert_eq!(r.text(&["SCRIPT", "LOAD", body]).await, bulk(&sha));
    for &m in &masters {
        let e: Vec<i64> = on_node(&env, m, &cmd(&["SCRIPT", "EXISTS", &sha])).await;
        assert_eq!(e, vec![1], "SCRIPT LOAD through the proxy reached master {m}");
    }
    let absent = "0123456789012345678901234567890123456789";
    assert_eq!(r.text(&["SCRIPT", "EXISTS", &sha, absent, &sha]).await, "*3\r\n:1\r\n:0\r\n:1\r\n");

    // EVAL and EVALSHA by their keys: the write lands on the key's owner.
    let k = key_on(&map, masters[2], "ev");
    let set = "return redis.call('set', KEYS[1], ARGV[1])";
    assert_eq!(r.text(&["EVAL", set, "1", &k, "v1"]).await, "+OK\r\n");
    let v: Option<String> = on_node(&env, masters[2], &cmd(&["GET", &k])).await;
    assert_eq!(v.as_deref(), Some("v1"));
    let set_sha: String = redis::cmd("SCRIPT").arg("LOAD").arg(set).query_async(&mut c).await.unwrap();
    // A master that lost the script (flushed directly) gets it again on NOSCRIPT.
    let _: () = on_node(&env, masters[2], &cmd(&["SCRIPT", "FLUSH"])).await;
    assert_eq!(r.text(&["EVALSHA", &set_sha, "1", &k, "v2"]).await, "+OK\r\n");
    let v: Option<String> = on_node(&env, masters[2], &cmd(&["GET", &k])).await;
    assert_eq!(v.as_deref(), Some("v2"));
    // Keys in several slots: refused, the script never runs.
    let (x, y) = (key_on(&map, masters[0], "evx"), key_on(&map, masters[1], "evy"));
    let both = "redis.call('set', KEYS[1], 'ran') redis.call('set', KEYS[2], 'ran') return 1";
    assert_eq!(r.text(&["EVAL", both, "2", &x, &y]).await, CROSSSLOT);
    assert_eq!(r.text(&["EVAL", both, "2", "{e}a", "{e}b"]).await, ":1\r\n");
    assert_eq!(r.text(&["EXISTS", &x, &y, "{e}a", "{e}b"]).await, ":2\r\n", "only the same-slot script ran");

    // SCRIPT FLUSH through the proxy: gone from every master, and forgotten by the proxy too
    // (EVALSHA of a flushed script is NOSCRIPT, not silently reloaded).
    assert_eq!(r.text(&["SCRIPT", "FLUSH"]).await, "+OK\r\n");
    for &m in &masters {
        let e: Vec<i64> = on_node(&env, m, &cmd(&["SCRIPT", "EXISTS", &sha, &set_sha])).await;
        assert_eq!(e, vec![0, 0], "master {m} after SCRIPT FLUSH");
    }
    assert_eq!(
        r.text(&["EVALSHA", &set_sha, "1", &k, "v3"]).await,
        "-NOSCRIPT No matching script. Please use EVAL.\r\n"
    );

    // FUNCTION LOAD: on every master; FCALL and FCALL_RO by their keys.
    let lib = "#!lua name=flib\n\
               redis.register_function('fset', function(keys, args) return redis.call('set', keys[1], args[1]) end)\n\
               redis.register_function{function_name='fget', callback=function(keys, args) \
               return redis.call('get', keys[1]) end, flags={'no-writes'}}";
    assert_eq!(r.text(&["FUNCTION", "LOAD", lib]).await, bulk("flib"));
    for &m in &masters {
        assert!(has_lib(m).await, "FUNCTION LOAD reached master {m}");
    }
    for &m in &masters {
        let k = key_on(&map, m, "fk");
        assert_eq!(r.text(&["FCALL", "fset", "1", &k, &format!("fv{m}")]).await, "+OK\r\n");
        let v: Option<String> = on_node(&env, m, &cmd(&["GET", &k])).await;
        assert_eq!(v, Some(format!("fv{m}")), "FCALL wrote on the key's owner {m}");
        assert_eq!(r.text(&["FCALL_RO", "fget", "1", &k]).await, bulk(&format!("fv{m}")));
    }
    assert_eq!(r.text(&["FCALL", "fset", "2", &x, &y, "v"]).await, CROSSSLOT);
    assert_eq!(r.text(&["FCALL_RO", "fget", "2", &x, &y]).await, CROSSSLOT);
    assert_eq!(r.text(&["EXISTS", &x, &y]).await, ":0\r\n");

    // FUNCTION DUMP (any master), FLUSH, RESTORE, DELETE: every master follows.
    let dump: Vec<u8> = redis::cmd("FUNCTION").arg("DUMP").query_async(&mut c).await.unwrap();
    assert_eq!(r.text(&["FUNCTION", "FLUSH"]).await, "+OK\r\n");
    for &m in &masters {
        assert!(!has_lib(m).await, "FUNCTION FLUSH reached master {m}");
    }
    let restored: String = redis::cmd("FUNCTION").arg("RESTORE").arg(&dump).query_async(&mut c).await.unwrap();
    assert_eq!(restored, "OK");
    for &m in &masters {
        assert!(has_lib(m).await, "FUNCTION RESTORE reached master {m}");
    }
    assert_eq!(r.text(&["FUNCTION", "DELETE", "flib"]).await, "+OK\r\n");
    for &m in &masters {
        assert!(!has_lib(m).await, "FUNCTION DELETE reached master {m}");
    }
    assert_eq!(r.text(&["FUNCTION", "LOAD", lib]).await, bulk("flib"));
    assert_eq!(r.text(&["FUNCTION", "FLUSH", "ASYNC"]).await, "+OK\r\n");
    for &m in &masters {
        assert!(!has_lib(m).await, "FUNCTION FLUSH ASYNC reached master {m}");
    }
}

/// Whether a master lists the library `flib` (FUNCTION LIST read on it directly).
async fn has_lib(m: u16) -> bool {
    let mut n = node_raw(m).await;
    let list = n.text(&["FUNCTION", "LIST"]).await;
    if list == "*0\r\n" {
        return false;
    }
    assert!(list.starts_with("*1\r\n") && list.contains(&bulk("flib")), "master {m}: {list}");
    true
}

/// Same-slot-only commands and multi-key keyed commands: sent whole when the keys share a slot,
/// `-CROSSSLOT` otherwise, never split (nothing changed); fanned-out commands' exact replies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_commands_same_slot_or_crossslot() {
    let env = start(small()).await;
    let masters = env.cluster.masters();
    let map = env.cluster.slot_map();
    let mut r = Raw::connect(env.addr()).await;
    // Two keys on different masters (so a split command would visibly run on both).
    let pair =
        |name: &str| (key_on(&map, masters[0], &format!("{name}-x")), key_on(&map, masters[1], &format!("{name}-y")));

    // Each case: setup commands, the same-slot form and its reply, the cross-slot form, and the
    // reads (with their replies before the cross-slot attempt) that show nothing changed.
    struct Case {
        setup: Vec<Vec<String>>,
        same: Vec<String>,
        same_reply: String,
        cross: Vec<String>,
        unchanged: Vec<Vec<String>>,
    }
    let v = |s: &[&str]| s.iter().map(|a| a.to_string()).collect::<Vec<String>>();
    let mut cases = Vec::new();
    {
        let (x, y) = pair("msetnx");
        cases.push(Case {
            setup: vec![],
            same: v(&["MSETNX", "{msetnx}a", "1", "{msetnx}b", "2"]),
            same_reply: ":1\r\n".into(),
            cross: v(&["MSETNX", &x, "1", &y, "2"]),
            unchanged: vec![v(&["GET", &x]), v(&["GET", &y])],
        });
    }
    for name in ["RENAME", "RENAMENX"] {
        let (x, y) = pair(name);
        let t = format!("{{{name}}}");
        cases.push(Case {
            setup: vec![v(&["SET", &format!("{t}a"), "1"]), v(&["SET", &x, "x"])],
            same: v(&[name, &format!("{t}a"), &format!("{t}b")]),
            same_reply: if name == "RENAME" { "+OK\r\n" } else { ":1\r\n" }.into(),
            cross: v(&[name, &x, &y]),
            unchanged: vec![v(&["GET", &x]), v(&["GET", &y])],
        });
    }
    {
        let (x, y) = pair("smove");
        cases.push(Case {
            setup: vec![v(&["SADD", "{smove}a", "m"]), v(&["SADD", &x, "m"])],
            same: v(&["SMOVE", "{smove}a", "{smove}b", "m"]),
            same_reply: ":1\r\n".into(),
            cross: v(&["SMOVE", &x, &y, "m"]),
            unchanged: vec![v(&["SMEMBERS", &x]), v(&["EXISTS", &y])],
        });
    }
    {
        let (x, y) = pair("lmove");
        cases.push(Case {
            setup: vec![v(&["RPUSH", "{lmove}a", "e1", "e2"]), v(&["RPUSH", &x, "e1", "e2"])],
            same: v(&["LMOVE", "{lmove}a", "{lmove}b", "LEFT", "RIGHT"]),
            same_reply: bulk("e1"),
            cross: v(&["LMOVE", &x, &y, "LEFT", "RIGHT"]),
            unchanged: vec![v(&["LRANGE", &x, "0", "-1"]), v(&["EXISTS", &y])],
        });
    }
    {
        let (x, y) = pair("rpoplpush");
        cases.push(Case {
            setup: vec![v(&["RPUSH", "{rpl}a", "e1", "e2"]), v(&["RPUSH", &x, "e1", "e2"])],
            same: v(&["RPOPLPUSH", "{rpl}a", "{rpl}b"]),
            same_reply: bulk("e2"),
            cross: v(&["RPOPLPUSH", &x, &y]),
            unchanged: vec![v(&["LRANGE", &x, "0", "-1"]), v(&["EXISTS", &y])],
        });
    }
    for (name, n) in [("SUNIONSTORE", 3), ("SINTERSTORE", 1), ("SDIFFSTORE", 1)] {
        let (x, y) = pair(name);
        let t = format!("{{{name}}}");
        cases.push(Case {
            setup: vec![
                v(&["SADD", &format!("{t}s1"), "a", "b"]),
                v(&["SADD", &format!("{t}s2"), "b", "c"]),
                v(&["SADD", &x, "a", "b"]),
            ],
            same: v(&[name, &format!("{t}d"), &format!("{t}s1"), &format!("{t}s2")]),
            same_reply: format!(":{n}\r\n"),
            // The destination in another slot than the sources.
            cross: v(&[name, &y, &x]),
            unchanged: vec![v(&["EXISTS", &y]), v(&["SCARD", &x])],
        });
    }
    {
        let (x, y) = pair("copy");
        cases.push(Case {
            setup: vec![v(&["SET", "{copy}a", "1"]), v(&["SET", &x, "x"])],
            same: v(&["COPY", "{copy}a", "{copy}b"]),
            same_reply: ":1\r\n".into(),
            cross: v(&["COPY", &x, &y]),
            unchanged: vec![v(&["GET", &y]), v(&["GET", &x])],
        });
    }
    // Multi-key keyed commands (keys by numkeys, STORE): the same rule.
    {
        let (x, y) = pair("sintercard");
        cases.push(Case {
            setup: vec![v(&["SADD", "{sic}a", "1", "2"]), v(&["SADD", "{sic}b", "2", "3"]), v(&["SADD", &x, "1"])],
            same: v(&["SINTERCARD", "2", "{sic}a", "{sic}b"]),
            same_reply: ":1\r\n".into(),
            cross: v(&["SINTERCARD", "2", &x, &y]),
            unchanged: vec![v(&["SCARD", &x])],
        });
    }
    {
        let (x, y) = pair("zunionstore");
        cases.push(Case {
            setup: vec![v(&["ZADD", "{zu}a", "1", "m"]), v(&["ZADD", "{zu}b", "2", "n"]), v(&["ZADD", &x, "1", "m"])],
            same: v(&["ZUNIONSTORE", "{zu}d", "2", "{zu}a", "{zu}b", "WEIGHTS", "1", "2"]),
            same_reply: ":2\r\n".into(),
            // Sources in one slot, the destination in another.
            cross: v(&["ZUNIONSTORE", &y, "1", &x]),
            unchanged: vec![v(&["EXISTS", &y]), v(&["ZCARD", &x])],
        });
    }
    {
        let (x, y) = pair("zunionstore-src");
        cases.push(Case {
            setup: vec![v(&["ZADD", &x, "1", "m"])],
            same: v(&["ZUNIONSTORE", "{zs}d", "1", "{zs}d"]),
            same_reply: ":0\r\n".into(),
            cross: v(&["ZUNIONSTORE", &x, "2", &x, &y]),
            unchanged: vec![v(&["ZRANGE", &x, "0", "-1", "WITHSCORES"])],
        });
    }
    {
        let (x, y) = pair("sort");
        cases.push(Case {
            setup: vec![v(&["RPUSH", "{so}l", "3", "1", "2"]), v(&["RPUSH", &x, "3", "1", "2"])],
            same: v(&["SORT", "{so}l", "STORE", "{so}d"]),
            same_reply: ":3\r\n".into(),
            cross: v(&["SORT", &x, "STORE", &y]),
            unchanged: vec![v(&["EXISTS", &y]), v(&["LRANGE", &x, "0", "-1"])],
        });
    }
    {
        let (x, y) = pair("lmpop");
        cases.push(Case {
            setup: vec![v(&["RPUSH", "{lm}b", "e1"]), v(&["RPUSH", &x, "e1"]), v(&["RPUSH", &y, "f1"])],
            same: v(&["LMPOP", "2", "{lm}a", "{lm}b", "LEFT"]),
            same_reply: format!("*2\r\n{}*1\r\n{}", bulk("{lm}b"), bulk("e1")),
            cross: v(&["LMPOP", "2", &x, &y, "LEFT"]),
            unchanged: vec![v(&["LRANGE", &x, "0", "-1"]), v(&["LRANGE", &y, "0", "-1"])],
        });
    }
    {
        let (x, y) = pair("eval");
        let script = "redis.call('incr', KEYS[1]) redis.call('incr', KEYS[2]) return 'ran'";
        cases.push(Case {
            setup: vec![],
            same: v(&["EVAL", script, "2", "{ev}a", "{ev}b"]),
            same_reply: bulk("ran"),
            cross: v(&["EVAL", script, "2", &x, &y]),
            unchanged: vec![v(&["GET", &x]), v(&["GET", &y])],
        });
    }

    for case in &cases {
        let show = case.cross[0].clone();
        for s in &case.setup {
            let args: Vec<&str> = s.iter().map(String::as_str).collect();
            let got = r.text(&args).await;
            assert!(!got.starts_with('-'), "{show} setup {s:?}: {got}");
        }
        let args: Vec<&str> = case.same.iter().map(String::as_str).collect();
        assert_eq!(r.text(&args).await, case.same_reply, "{show} with every key in one slot");
        let mut before = Vec::new();
        for u in &case.unchanged {
            let args: Vec<&str> = u.iter().map(String::as_str).collect();
            before.push(r.text(&args).await);
        }
        let args: Vec<&str> = case.cross.iter().map(String::as_str).collect();
        assert_eq!(r.text(&args).await, CROSSSLOT, "{:?}", case.cross);
        for (u, b) in case.unchanged.iter().zip(&before) {
            let args: Vec<&str> = u.iter().map(String::as_str).collect();
            assert_eq!(&r.text(&args).await, b, "{show}: {u:?} changed by the refused {:?}", case.cross);
        }
        // And the cross-slot keys, read on their owners directly, are as before.
        for key in case.cross.iter().filter(|a| a.contains("-x") || a.contains("-y")) {
            let owner = map[slot(key.as_bytes()) as usize].unwrap();
            let mut n = node_raw(owner).await;
            let direct = n.text(&["TYPE", key]).await;
            let via = r.text(&["TYPE", key]).await;
            assert_eq!(direct, via, "{show}: {key} on its owner {owner}");
        }
    }
    // The keys that must not exist after a refused MSETNX / EVAL really do not, on any master.
    for name in ["msetnx", "eval"] {
        let (x, y) = pair(name);
        assert_eq!(r.text(&["EXISTS", &x, &y]).await, ":0\r\n", "{name}");
    }

    // Fanned out over many slots and all masters: exact merged replies.
    let keys: Vec<String> = (0..60).map(|i| format!("fan:{i}")).collect();
    let owners: HashSet<u16> = keys.iter().map(|k| map[slot(k.as_bytes()) as usize].unwrap()).collect();
    assert_eq!(owners.len(), 3, "the keys span every master");
    let mut mset = vec!["MSET".to_string()];
    for k in keys.iter().step_by(2) {
        mset.push(k.clone());
        mset.push(format!("v-{k}"));
    }
    let args: Vec<&str> = mset.iter().map(String::as_str).collect();
    assert_eq!(r.text(&args).await, "+OK\r\n");
    for k in keys.iter().step_by(2) {
        let owner = map[slot(k.as_bytes()) as usize].unwrap();
        let got: Option<String> = on_node(&env, owner, &cmd(&["GET", k])).await;
        assert_eq!(got, Some(format!("v-{k}")), "MSET part on the owner of {k}");
    }
    // MGET: values in request order, missing keys (every odd one) as nil, repeats repeated.
    let mut asked: Vec<&str> = keys.iter().rev().map(String::as_str).collect();
    asked.extend(["fan:0", "fan:1", "fan:0"]);
    let mut want = format!("*{}\r\n", asked.len());
    for k in &asked {
        let i: usize = k[4..].parse().unwrap();
        want.push_str(&if i % 2 == 0 { bulk(&format!("v-{k}")) } else { "$-1\r\n".to_string() });
    }
    let mut args = vec!["MGET"];
    args.extend(&asked);
    assert_eq!(r.text(&args).await, want);
    // Counts summed as one server counts them: EXISTS and TOUCH count each repeat, DEL and UNLINK
    // delete a key once.
    let (k0, k2, k4, k1) = ("fan:0", "fan:2", "fan:4", "fan:1");
    assert_eq!(r.text(&["EXISTS", k0, k0, k2, k1, k4, k0]).await, ":5\r\n");
    assert_eq!(r.text(&["TOUCH", k0, k0, k2, k1]).await, ":3\r\n");
    let evens: Vec<&str> = keys.iter().step_by(2).map(String::as_str).collect();
    let mut args = vec!["EXISTS"];
    args.extend(&evens);
    args.extend(keys.iter().skip(1).step_by(2).map(String::as_str));
    assert_eq!(r.text(&args).await, ":30\r\n");
    assert_eq!(r.text(&["DEL", k0, k0, k2, k1]).await, ":2\r\n");
    assert_eq!(r.text(&["UNLINK", k4, k4, k0, k1, "fan:6"]).await, ":2\r\n");
    let mut args = vec!["DEL"];
    args.extend(&evens);
    assert_eq!(r.text(&args).await, ":26\r\n", "30 set, 4 deleted already");
    for &m in &masters {
        let mut n = node_raw(m).await;
        assert_eq!(n.text(&["KEYS", "fan:*"]).await, "*0\r\n", "master {m}");
    }
}

/// The refused commands and CLIENT subcommands: Redis-style one-line errors naming the command,
/// the connection stays usable, and no node ever sees the command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_commands_never_reach_a_node() {
    let env = start(small()).await;
    let masters = env.cluster.masters();
    let mut r = Raw::connect(env.addr()).await;
    for &m in &masters {
        let _: () = on_node(&env, m, &cmd(&["CONFIG", "RESETSTAT"])).await;
    }
    let admin = "it acts on one server; run it on the cluster's nodes";
    let na = |shown: &str, why: &str| format!("-ERR '{shown}' is not available through clusterless: {why}\r\n");
    let port = masters[0].to_string();
    let cases: Vec<(Vec<&str>, String)> = vec![
        (vec!["MIGRATE", "127.0.0.1", &port, "k", "0", "1000"], na("MIGRATE", "it moves keys behind the proxy's back")),
        (vec!["WAITAOF", "1", "0", "0"], na("WAITAOF", "it refers to one connection's writes on one node")),
        (vec!["MOVE", "k", "1"], "-ERR MOVE is not allowed in cluster mode\r\n".into()),
        (vec!["SWAPDB", "0", "1"], "-ERR SWAPDB is not allowed in cluster mode\r\n".into()),
        (vec!["SHUTDOWN", "NOSAVE"], na("SHUTDOWN", admin)),
        (vec!["DEBUG", "SLEEP", "0"], na("DEBUG", admin)),
        (vec!["REPLICAOF", "NO", "ONE"], na("REPLICAOF", admin)),
        (vec!["FAILOVER"], na("FAILOVER", admin)),
        (vec!["SAVE"], na("SAVE", admin)),
        (vec!["BGSAVE"], na("BGSAVE", admin)),
        (vec!["ACL", "USERS"], na("ACL USERS", admin)),
        (vec!["ACL", "SETUSER", "eve", "on"], na("ACL SETUSER", admin)),
        (vec!["MODULE", "LIST"], na("MODULE LIST", admin)),
        // Client-side caching is the proxy's own (tests/tracking.rs): answered here, not passed on.
        (
            vec!["CLIENT", "CACHING", "YES"],
            "-ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled\r\n"
                .into(),
        ),
        (vec!["CLIENT", "GETREDIR"], ":-1\r\n".into()),
        (
            vec!["CLIENT", "TRACKINGINFO"],
            "*6\r\n$5\r\nflags\r\n*1\r\n$3\r\noff\r\n$8\r\nredirect\r\n:-1\r\n$8\r\nprefixes\r\n*0\r\n".into(),
        ),
    ];
    for (args, want) in &cases {
        assert_eq!(&r.text(args).await, want, "{args:?}");
        // The connection stays usable (not closed).
        assert_eq!(r.text(&["PING"]).await, "+PONG\r\n", "after {args:?}");
    }

    // A control for the check below: commands the proxy does pass on show up in the masters'
    // statistics (CONFIG GET, any master, round robin: once on each).
    for _ in 0..masters.len() {
        let got = r.text(&["CONFIG", "GET", "port"]).await;
        assert!(got.starts_with("*2\r\n$4\r\nport\r\n"), "{got}");
    }
    // No node saw any of them: not in any master's command statistics.
    let never = [
        "migrate",
        "waitaof",
        "move",
        "swapdb",
        "monitor",
        "shutdown",
        "debug",
        "replicaof",
        "failover",
        "save",
        "bgsave",
        "acl|users",
        "acl|setuser",
        "module|list",
        "client|kill",
        "client|pause",
        "client|unpause",
        "client|unblock",
        "client|reply",
        "client|caching",
        "client|getredir",
        "client|trackinginfo",
    ];
    for &m in &masters {
        let stats: String = on_node(&env, m, &cmd(&["INFO", "commandstats"])).await;
        assert!(stats.contains("cmdstat_config|get:calls=1,"), "master {m}: {stats}");
        for name in never {
            assert!(!stats.contains(&format!("cmdstat_{name}:")), "master {m} ran {name}: {stats}");
        }
        let role: Vec<redis::Value> = on_node(&env, m, &cmd(&["ROLE"])).await;
        let role: String = redis::from_redis_value(role[0].clone()).unwrap();
        assert_eq!(role, "master", "master {m} still a master");
    }
}

/// Prometheus text: the value of one unlabelled sample.
async fn metric(admin: SocketAddr, name: &str) -> f64 {
    let text = tokio::task::block_in_place(|| {
        let mut s = std::net::TcpStream::connect(admin).expect("connect admin");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    });
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in the scrape"))
}

/// Reads `n` replies from a client's read half.
async fn read_n(rd: &mut tokio::net::tcp::OwnedReadHalf, buf: &mut Vec<u8>, n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while out.len() < n {
        if let Some(len) = clusterless::resp::reply_len(buf).expect("valid reply") {
            out.push(buf.drain(..len).collect());
            continue;
        }
        let mut chunk = vec![0u8; 64 * 1024];
        match tokio::time::timeout_at(deadline, rd.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => panic!("closed after {} replies", out.len()),
            Ok(Ok(k)) => buf.extend_from_slice(&chunk[..k]),
            Err(_) => panic!("timed out after {} of {n} replies", out.len()),
        }
    }
    out
}

/// `limits.max_pipeline` (this test is about that setting: 8): a client that writes 1,000
/// commands without reading gets all 1,000 replies in order once it reads, and the proxy stops
/// reading from it while 8 are in flight. The admin endpoint is on (port 0) only to read the
/// proxy's count of bytes received from clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_pipeline_pauses_reading_and_loses_nothing() {
    let env = start_with(small(), |c| {
        c.limits.max_pipeline = 8;
        c.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let admin = env.proxy.admin_addr().expect("admin on");
    let masters = env.cluster.masters();
    let map = env.cluster.slot_map();

    // 1,000 commands of four kinds (keyed on every master, local, fanned out), one write; the
    // replies only read afterwards, checked against a model of one server.
    let counters: Vec<String> = (0..13).map(|i| format!("ctr:{i}")).collect();
    let mut model: HashMap<&str, i64> = HashMap::new();
    let mut req = Vec::new();
    let mut want: Vec<String> = Vec::new();
    for i in 0..1000 {
        let k = counters[i % counters.len()].as_str();
        match i % 4 {
            0 => {
                req.extend_from_slice(&clusterless::resp::encode_command(&[b"INCR".as_ref(), k.as_bytes()]));
                let n = model.entry(k).or_default();
                *n += 1;
                want.push(format!(":{n}\r\n"));
            }
            1 => {
                let m = format!("m{i}");
                req.extend_from_slice(&clusterless::resp::encode_command(&[b"ECHO".as_ref(), m.as_bytes()]));
                want.push(bulk(&m));
            }
            2 => {
                req.extend_from_slice(&clusterless::resp::encode_command(&[b"GET".as_ref(), k.as_bytes()]));
                want.push(model.get(k).map(|n| bulk(&n.to_string())).unwrap_or_else(|| "$-1\r\n".into()));
            }
            _ => {
                let ks = [counters[0].as_str(), counters[5].as_str(), counters[11].as_str()];
                let mut args: Vec<&[u8]> = vec![b"MGET"];
                args.extend(ks.iter().map(|k| k.as_bytes()));
                req.extend_from_slice(&clusterless::resp::encode_command(&args));
                let mut w = "*3\r\n".to_string();
                for k in ks {
                    w.push_str(&model.get(k).map(|n| bulk(&n.to_string())).unwrap_or_else(|| "$-1\r\n".into()));
                }
                want.push(w);
            }
        }
    }
    let owners: HashSet<u16> = counters.iter().map(|k| map[slot(k.as_bytes()) as usize].unwrap()).collect();
    assert_eq!(owners.len(), 3);
    let mut r = Raw::connect(env.addr()).await;
    r.send(&req).await;
    let got = r.read_replies(1000).await;
    assert_eq!(got.len(), 1000, "every reply arrives");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(String::from_utf8_lossy(g), *w, "reply {i} in order");
    }

    // While a master holds every write (CLIENT PAUSE WRITE, set on it directly), a client
    // pipelines 1,000 RPUSHes of 300-byte values (about 330 KB) to one key of it: the proxy reads
    // a few requests, has 8 in flight, and stops reading; the rest waits in the socket.
    let m = masters[1];
    let key = key_on(&map, m, "pp-");
    let pad = "p".repeat(300);
    let mut req = Vec::new();
    for i in 0..1000 {
        let v = format!("{i:04}{pad}");
        req.extend_from_slice(&clusterless::resp::encode_command(&[b"RPUSH".as_ref(), key.as_bytes(), v.as_bytes()]));
    }
    let total = req.len() as f64;
    let mut node = node_raw(m).await;
    assert_eq!(node.text(&["CLIENT", "PAUSE", "15000", "WRITE"]).await, "+OK\r\n");
    let before = metric(admin, "clusterless_client_bytes_received_total").await;
    let (mut rd, mut wr) = tokio::net::TcpStream::connect(env.addr()).await.unwrap().into_split();
    let writer = tokio::spawn(async move {
        wr.write_all(&req).await.expect("write the pipeline");
        wr
    });
    eventually_async("the proxy read the first requests", || async {
        metric(admin, "clusterless_client_bytes_received_total").await > before
    })
    .await;
    // Time passes on purpose: the proxy, with 8 requests in flight, must not read on.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let read1 = metric(admin, "clusterless_client_bytes_received_total").await - before;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let read2 = metric(admin, "clusterless_client_bytes_received_total").await - before;
    assert_eq!(read1, read2, "the proxy kept reading while paused");
    // At most the 8 requests in flight and one read's worth (64 KB) of the ones behind them.
    let bound = 8.0 * total / 1000.0 + 64.0 * 1024.0;
    assert!(read2 <= bound, "the proxy read {read2} of {total} bytes with 8 requests in flight");
    assert_eq!(node.text(&["LLEN", &key]).await, ":0\r\n", "the master held every write");
    assert_eq!(node.text(&["CLIENT", "UNPAUSE"]).await, "+OK\r\n");
    let mut buf = Vec::new();
    let got = read_n(&mut rd, &mut buf, 1000).await;
    for (i, g) in got.iter().enumerate() {
        assert_eq!(String::from_utf8_lossy(g), format!(":{}\r\n", i + 1), "RPUSH {i} in order");
    }
    let _wr = writer.await.unwrap();
    let read3 = metric(admin, "clusterless_client_bytes_received_total").await - before;
    assert_eq!(read3, total, "every byte read in the end");
    let items: Vec<String> = on_node(&env, m, &cmd(&["LRANGE", &key, "0", "-1"])).await;
    assert_eq!(items.len(), 1000);
    assert!(items.iter().enumerate().all(|(i, v)| v.starts_with(&format!("{i:04}"))), "order kept on the node");
}

/// A slot no master serves (deleted from every node's map): its keys get Redis's
/// `-CLUSTERDOWN Hash slot not served` (after the retry budget), other slots keep working, for a
/// proxy that knew the slot's owner before and for one started after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_not_served() {
    let env = start(small()).await;
    let masters = env.cluster.masters();
    let owner = masters[1];
    let gone = env.cluster.slots_of(owner)[7];
    let key = key_in_slot(gone, "nos");
    let other = key_in_slot(gone + 1, "nos");
    let elsewhere = key_on(&env.cluster.slot_map(), masters[2], "nos-e");
    let mut old = Raw::connect(env.addr()).await;
    assert_eq!(old.text(&["SET", &key, "1"]).await, "+OK\r\n");

    // Coverage no longer required (else the whole cluster goes down), then the slot deleted from
    // every node's map, its owner first (so that nobody learns it back from the owner's gossip).
    tokio::task::block_in_place(|| {
        for p in env.cluster.ports() {
            env.cluster.cli(p, &["CONFIG", "SET", "cluster-require-full-coverage", "no"]).expect("config set");
        }
        let mut order = vec![owner];
        order.extend(env.cluster.ports().into_iter().filter(|&p| p != owner));
        for p in order {
            env.cluster.cli(p, &["CLUSTER", "DELSLOTS", &gone.to_string()]).expect("delslots");
        }
    });
    for p in env.cluster.ports() {
        eventually_async(&format!("node {p} serves nobody for slot {gone}"), || async {
            let mut n = node_raw(p).await;
            let slots: Vec<Vec<redis::Value>> = {
                let mut c = env.node(p).await;
                redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut c).await.unwrap()
            };
            let covered = slots.iter().any(|r| {
                let a: i64 = redis::from_redis_value(r[0].clone()).unwrap();
                let b: i64 = redis::from_redis_value(r[1].clone()).unwrap();
                (a..=b).contains(&(gone as i64))
            });
            !covered && n.text(&["GET", &key]).await == NOT_SERVED
        })
        .await;
    }

    // A second proxy, started now, bootstraps with the slot uncovered.
    let cfg = shipped_config(env.cluster.seed());
    let fresh = clusterless::start(cfg).await.expect("start proxy");
    eventually("the new proxy follows the bus", || fresh.topology_source() == "bus").await;
    let mut new = Raw::connect(fresh.addr()).await;

    let budget = env.proxy.config().backend.retry_budget;
    let started = Instant::now();
    let (get, set) = (["GET", key.as_str()], ["SET", key.as_str(), "2"]);
    let (a, b) = tokio::join!(old.text(&get), new.text(&set));
    assert_eq!(a, NOT_SERVED, "proxy started before the slot was dropped");
    assert_eq!(b, NOT_SERVED, "proxy started after");
    assert!(started.elapsed() < budget + Duration::from_secs(5), "answered within the retry budget");
    for r in [&mut old, &mut new] {
        assert_eq!(r.text(&["SET", &other, "x"]).await, "+OK\r\n", "the next slot works");
        assert_eq!(r.text(&["GET", &elsewhere]).await, "$-1\r\n", "another master works");
        assert_eq!(r.text(&["MSET", &other, "y", &elsewhere, "z"]).await, "+OK\r\n");
        assert_eq!(r.text(&["GET", &other]).await, bulk("y"));
        assert_eq!(r.text(&["DEL", &elsewhere]).await, ":1\r\n");
    }
}
