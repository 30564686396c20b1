//! Routing and merging against a real 3-master cluster: keys land on the master the cluster says
//! owns their slot; fan-out commands merge like one server; whole-cluster commands; pipelining.

mod common;

use std::collections::{HashMap, HashSet};

use common::*;
use rand::{Rng, SeedableRng};
use redis::AsyncCommands;

fn random_key(rng: &mut rand::rngs::StdRng, i: usize) -> Vec<u8> {
    let mut k: Vec<u8> = match i % 5 {
        0 => format!("plain:{i}").into_bytes(),
        1 => format!("bin\r\n\0:{i}").into_bytes(),
        2 => format!("ключ-ü-{i}").into_bytes(),
        3 => format!("{{tag{}}}:{i}", i % 17).into_bytes(),
        _ => (0..rng.random_range(1..24)).map(|_| rng.random::<u8>()).collect(),
    };
    k.extend_from_slice(format!("#{i}").as_bytes());
    k
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_land_on_the_owning_master() {
    let env = start(small()).await;
    let mut c = env.conn().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let keys: Vec<Vec<u8>> = (0..10_000).map(|i| random_key(&mut rng, i)).collect();
    let mut pipe = redis::pipe();
    for (i, k) in keys.iter().enumerate() {
        pipe.set(k, format!("v{i}")).ignore();
    }
    let _: () = pipe.query_async(&mut c).await.expect("pipelined SETs");

    // Ask the cluster itself who owns each slot, then read every key directly from that node.
    let owners = env.cluster.slot_map();
    let mut by_node: HashMap<u16, Vec<usize>> = HashMap::new();
    for (i, k) in keys.iter().enumerate() {
        let owner = owners[clusterless::slot::slot(k) as usize].expect("every slot has an owner");
        by_node.entry(owner).or_default().push(i);
    }
    assert_eq!(by_node.len(), 3, "keys spread over all masters");
    for (port, idx) in by_node {
        let mut n = env.node(port).await;
        let mut pipe = redis::pipe();
        for &i in &idx {
            pipe.get(&keys[i]);
        }
        let vals: Vec<Option<String>> = pipe.query_async(&mut n).await.expect("direct GETs on owner");
        for (&i, v) in idx.iter().zip(vals) {
            assert_eq!(v, Some(format!("v{i}")), "key #{i} not on its owner {port}");
        }
    }
    // And the cluster's CLUSTER KEYSLOT agrees with our hash for a sample, hash tags included.
    for k in keys.iter().step_by(500) {
        let mut n = env.node(env.cluster.masters()[0]).await;
        let s: u16 = redis::cmd("CLUSTER").arg("KEYSLOT").arg(k).query_async(&mut n).await.expect("keyslot");
        assert_eq!(s, clusterless::slot::slot(k));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_commands_merge_like_one_server() {
    let env = start(small()).await;
    let mut c = env.conn().await;
    let keys = spread_keys("mk", 1000);
    let pairs: Vec<(String, String)> = keys.iter().map(|k| (k.clone(), format!("val-{k}"))).collect();
    let _: () = c.mset(&pairs).await.expect("MSET 1000");
    let mut asked: Vec<String> = keys.clone();
    asked.insert(500, "missing-key".into());
    let vals: Vec<Option<String>> = c.mget(&asked).await.expect("MGET");
    assert_eq!(vals.len(), 1001);
    for (k, v) in asked.iter().zip(&vals) {
        if k == "missing-key" {
            assert_eq!(v, &None);
        } else {
            assert_eq!(v.as_deref(), Some(format!("val-{k}").as_str()), "order kept for {k}");
        }
    }
    let n: i64 =
        redis::cmd("EXISTS").arg(&keys[..100]).arg("missing-key").arg(&keys[0]).query_async(&mut c).await.unwrap();
    assert_eq!(n, 101, "EXISTS counts repeats like Redis");
    let n: i64 = redis::cmd("TOUCH").arg(&keys[..50]).query_async(&mut c).await.unwrap();
    assert_eq!(n, 50);
    let n: i64 = c.del(&keys[..300]).await.unwrap();
    assert_eq!(n, 300);
    let n: i64 = c.unlink(&keys[250..400]).await.unwrap();
    assert_eq!(n, 100);
    let n: i64 = c.exists(&keys[..400]).await.unwrap();
    assert_eq!(n, 0);
    let n: i64 = c.exists(&keys[400..]).await.unwrap();
    assert_eq!(n, 600);

    // Same-slot-only commands: refused whole across slots (Redis's exact text), nothing run.
    let mut r = Raw::connect(env.addr()).await;
    let crossslot = "-CROSSSLOT Keys in request don't hash to the same slot\r\n";
    assert_ne!(clusterless::slot::slot(b"a"), clusterless::slot::slot(b"b"));
    assert_eq!(r.text(&["MSETNX", "a", "1", "b", "2"]).await, crossslot);
    assert_eq!(r.text(&["EXISTS", "a", "b"]).await, ":0\r\n", "MSETNX was not split");
    let _: () = c.set("ren-a", 1).await.unwrap();
    assert_eq!(r.text(&["RENAME", "ren-a", "ren-b"]).await, crossslot);
    assert_eq!(r.text(&["GET", "ren-a"]).await, "$1\r\n1\r\n", "RENAME was not run");
    assert_eq!(r.text(&["EXISTS", "ren-b"]).await, ":0\r\n");
    let n: i64 = redis::cmd("MSETNX").arg("{u}a").arg(1).arg("{u}b").arg(2).query_async(&mut c).await.unwrap();
    assert_eq!(n, 1);
    let _: () = redis::cmd("RENAME").arg("{u}a").arg("{u}c").query_async(&mut c).await.unwrap();
    let v: String = c.get("{u}c").await.unwrap();
    assert_eq!(v, "1");
    assert_eq!(r.text(&["EXISTS", "{u}a", "{u}b", "{u}c"]).await, ":2\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_cluster_commands() {
    let env = start(small()).await;
    let mut c = env.conn().await;
    let keys = spread_keys("sk", 10_000);
    for chunk in keys.chunks(1000) {
        let pairs: Vec<(&String, i32)> = chunk.iter().map(|k| (k, 1)).collect();
        let _: () = c.mset(&pairs).await.unwrap();
    }
    let size: i64 = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap();
    assert_eq!(size, 10_000);

    // SCAN walks every master and returns each key exactly once.
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut cursor: u64 = 0;
    let mut rounds = 0;
    loop {
        let (next, batch): (u64, Vec<String>) =
            redis::cmd("SCAN").arg(cursor).arg("COUNT").arg(500).query_async(&mut c).await.unwrap();
        for k in batch {
            *seen.entry(k).or_default() += 1;
        }
        rounds += 1;
        assert!(rounds < 10_000, "SCAN must terminate");
        if next == 0 {
            break;
        }
        cursor = next;
    }
    assert_eq!(seen.len(), 10_000);
    assert!(seen.values().all(|&n| n == 1), "a key came back twice");
    assert!(keys.iter().all(|k| seen.contains_key(k)));

    // MATCH and TYPE are kept.
    let _: () = c.set("other:1", 1).await.unwrap();
    let _: () = c.rpush("list:1", 1).await.unwrap();
    let mut matched = HashSet::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("sk:99*")
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut c)
            .await
            .unwrap();
        matched.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let want: HashSet<String> = keys.iter().filter(|k| k.starts_with("sk:99")).cloned().collect();
    assert_eq!(want.len(), 111, "sk:99, sk:99x, sk:99xx");
    assert_eq!(matched, want);
    let mut cursor = 0u64;
    let mut lists = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) =
            redis::cmd("SCAN").arg(cursor).arg("TYPE").arg("list").query_async(&mut c).await.unwrap();
        lists.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    assert_eq!(lists, vec!["list:1".to_string()]);
    let mut r = Raw::connect(env.addr()).await;
    assert_eq!(r.text(&["SCAN", "abc"]).await, "-ERR invalid cursor\r\n");
    // A number the proxy cannot have issued: its low 16 bits, the shard's key, are 0.
    assert_eq!(r.text(&["SCAN", "65536"]).await, "-ERR invalid cursor\r\n");

    let all: Vec<String> = c.keys("sk:1*").await.unwrap();
    assert_eq!(all.len(), 1111);
    let want: HashSet<String> = keys.iter().filter(|k| k.starts_with("sk:1")).cloned().collect();
    assert_eq!(all.into_iter().collect::<HashSet<_>>(), want);
    let rk: Option<String> = redis::cmd("RANDOMKEY").query_async(&mut c).await.unwrap();
    let rk = rk.expect("a key");
    assert!(seen.contains_key(&rk) || rk == "other:1" || rk == "list:1", "RANDOMKEY {rk} is not a key");
    let info: String = redis::cmd("INFO").query_async(&mut c).await.unwrap();
    assert!(info.contains("\r\nredis_mode:standalone\r\n"), "{info}");
    assert!(info.contains("db0:keys=10002,"), "keyspace summed over masters: {info}");
    assert!(info.contains("# Stats\r\n") && info.contains("# Clients\r\nconnected_clients:2\r\n"), "{info}");

    assert_eq!(r.text(&["FLUSHALL"]).await, "+OK\r\n");
    for port in env.cluster.masters() {
        let mut n = env.node(port).await;
        let size: i64 = redis::cmd("DBSIZE").query_async(&mut n).await.unwrap();
        assert_eq!(size, 0, "master {port} emptied");
    }
    let size: i64 = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap();
    assert_eq!(size, 0);
    let rk: Option<String> = redis::cmd("RANDOMKEY").query_async(&mut c).await.unwrap();
    assert_eq!(rk, None);

    // Scripts are loaded on every master, and EXISTS is true only where all have them.
    let sha: String = redis::cmd("SCRIPT").arg("LOAD").arg("return KEYS[1]").query_async(&mut c).await.unwrap();
    for port in env.cluster.masters() {
        let mut n = env.node(port).await;
        let e: Vec<i64> = redis::cmd("SCRIPT").arg("EXISTS").arg(&sha).query_async(&mut n).await.unwrap();
        assert_eq!(e, vec![1], "script on master {port}");
    }
    let e: Vec<i64> = redis::cmd("SCRIPT").arg("EXISTS").arg(&sha).arg("0000").query_async(&mut c).await.unwrap();
    assert_eq!(e, vec![1, 0]);
    for k in ["a", "b", "zz"] {
        let r: String = redis::cmd("EVALSHA").arg(&sha).arg(1).arg(k).query_async(&mut c).await.unwrap();
        assert_eq!(r, k);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_pipeline_and_big_values() {
    let env = start(small()).await;
    let mut raw = Raw::connect(env.addr()).await;
    let mut batch = Vec::new();
    for i in 0..10_000 {
        if i % 2 == 0 {
            batch.extend_from_slice(&clusterless::resp::encode_command(&[
                b"SET".as_ref(),
                format!("p{i}").as_bytes(),
                format!("{i}").as_bytes(),
            ]));
        } else {
            batch.extend_from_slice(&clusterless::resp::encode_command(&[
                b"GET".as_ref(),
                format!("p{}", i - 1).as_bytes(),
            ]));
        }
    }
    raw.send(&batch).await;
    let replies = raw.read_replies(10_000).await;
    assert_eq!(replies.len(), 10_000);
    for (i, r) in replies.iter().enumerate() {
        if i % 2 == 0 {
            assert_eq!(r, b"+OK\r\n");
        } else {
            let v = format!("{}", i - 1);
            assert_eq!(r, format!("${}\r\n{}\r\n", v.len(), v).as_bytes(), "reply {i} in order");
        }
    }

    // A deep pipeline of split commands: 1666 MGETs of three keys each (slots all over), each
    // merged from its parts in the node batches and answered in order.
    let mut batch = Vec::new();
    for i in (0..4998).step_by(3) {
        let keys: Vec<String> = (i..i + 3).map(|j| format!("p{}", 2 * j)).collect();
        let mut args: Vec<&[u8]> = vec![b"MGET"];
        args.extend(keys.iter().map(|k| k.as_bytes()));
        batch.extend_from_slice(&clusterless::resp::encode_command(&args));
    }
    raw.send(&batch).await;
    let replies = raw.read_replies(1666).await;
    for (n, r) in replies.iter().enumerate() {
        let i = 3 * n;
        let want: String = (i..i + 3).map(|j| format!("${}\r\n{}\r\n", (2 * j).to_string().len(), 2 * j)).collect();
        assert_eq!(String::from_utf8_lossy(r), format!("*3\r\n{want}"), "MGET {n} in order");
    }

    // Commands that take different paths through the proxy keep the client's order on one node:
    // an MSET whose keys share a slot (sent whole by the router) and a script (routed) before
    // GETs of their keys (sent in the node batches), all in one write.
    let mut batch = Vec::new();
    for i in 0..500 {
        let v = i.to_string();
        batch.extend_from_slice(&clusterless::resp::encode_command(&[
            b"MSET".as_ref(),
            b"{o}a",
            v.as_bytes(),
            b"{o}b",
            v.as_bytes(),
        ]));
        batch.extend_from_slice(&clusterless::resp::encode_command(&[b"GET".as_ref(), b"{o}a"]));
        batch.extend_from_slice(&clusterless::resp::encode_command(&[
            b"EVAL".as_ref(),
            b"return redis.call('incr', KEYS[1])",
            b"1",
            b"{o}c",
        ]));
        batch.extend_from_slice(&clusterless::resp::encode_command(&[b"GET".as_ref(), b"{o}c"]));
    }
    raw.send(&batch).await;
    let replies = raw.read_replies(2000).await;
    for (i, r) in replies.chunks(4).enumerate() {
        let (a, c) = (i.to_string(), (i + 1).to_string());
        let want = [
            "+OK\r\n".to_string(),
            format!("${}\r\n{a}\r\n", a.len()),
            format!(":{c}\r\n"),
            format!("${}\r\n{c}\r\n", c.len()),
        ];
        let got: Vec<String> = r.iter().map(|x| String::from_utf8_lossy(x).into_owned()).collect();
        assert_eq!(got, want, "round {i}: each GET sees the command sent before it");
    }

    let mut c = env.conn().await;
    let big: Vec<u8> = (0..10 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let _: () = c.set("big", &big).await.unwrap();
    let back: Vec<u8> = c.get("big").await.unwrap();
    assert!(back == big, "10 MB value round-trips");
}
