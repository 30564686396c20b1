//! Set operations over keys in several slots computed by the proxy (`keyspace.cross_slot_reads =
//! "compute"`, the setting under test), compared with a plain redis-server holding the same sets.

mod common;

use std::collections::BTreeSet;

use common::{key_in_slot, small, start_with, Raw};

/// The members of a set reply, in any order (a set's order is the server's own hash order).
fn members(reply: &str) -> BTreeSet<String> {
    reply.split("\r\n").skip(1).filter(|l| !l.starts_with('$') && !l.is_empty()).map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_slot_set_operations_are_computed_as_one_server_would() {
    let mut env = start_with(small(), |c| c.keyspace.compute_cross_slot = Some(1 << 20)).await;
    let plain = tokio::task::block_in_place(|| env.cluster.start_stranger(None)).expect("plain server");
    let mut s = Raw::connect(std::net::SocketAddr::from(([127, 0, 0, 1], plain))).await;
    let mut c = Raw::connect(env.addr()).await;
    // One set on each master, overlapping; the same sets on the plain server.
    let masters = env.cluster.masters();
    let keys: Vec<String> = masters.iter().map(|&m| key_in_slot(env.cluster.slots_of(m)[0], "set-")).collect();
    let data: [&[&str]; 3] = [&["a", "b", "c", "x1"], &["c", "d", "a"], &["a", "e", "c", "zz"]];
    for (k, ms) in keys.iter().zip(data) {
        let mut cmd = vec!["SADD", k.as_str()];
        cmd.extend(ms);
        assert_eq!(c.text(&cmd).await, s.text(&cmd).await);
    }
    let k: Vec<&str> = keys.iter().map(String::as_str).collect();
    for op in ["SUNION", "SINTER", "SDIFF"] {
        let mut cmd = vec![op];
        cmd.extend(&k);
        let (ours, one) = (c.text(&cmd).await, s.text(&cmd).await);
        assert_eq!(members(&ours), members(&one), "{op}");
        assert_eq!(ours.split("\r\n").next(), one.split("\r\n").next(), "{op}: the count");
    }
    for (cmd, want) in [
        (vec!["SINTERCARD", "3", k[0], k[1], k[2]], ":2\r\n"),
        (vec!["SINTERCARD", "3", k[0], k[1], k[2], "LIMIT", "1"], ":1\r\n"),
    ] {
        assert_eq!(c.text(&cmd).await, want);
        assert_eq!(s.text(&cmd).await, want);
    }
    // *STORE: the destination, on yet another slot, replaced by the result.
    let dest = key_in_slot(env.cluster.slots_of(masters[1])[1], "dest-");
    for op in ["SUNIONSTORE", "SINTERSTORE", "SDIFFSTORE"] {
        let mut cmd = vec![op, dest.as_str()];
        cmd.extend(&k);
        assert_eq!(c.text(&cmd).await, s.text(&cmd).await, "{op}");
        let (ours, one) = (c.text(&["SMEMBERS", &dest]).await, s.text(&["SMEMBERS", &dest]).await);
        assert_eq!(members(&ours), members(&one), "{op}: the destination");
    }
    // RESP3: a set reply.
    assert!(c.text(&["HELLO", "3"]).await.starts_with('%'));
    let r = c.text(&["SINTER", k[0], k[1], k[2]]).await;
    assert!(r.starts_with("~2\r\n"), "{r}");
    // A key of another type: the node's own error.
    assert_eq!(c.text(&["SET", k[1], "str"]).await, "+OK\r\n");
    assert_eq!(
        c.text(&["SUNION", k[0], k[1]]).await,
        "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_slot_set_operations_are_refused_by_default_and_bounded() {
    let env = start_with(small(), |c| c.keyspace.compute_cross_slot = Some(64)).await;
    let masters = env.cluster.masters();
    let keys: Vec<String> = masters.iter().map(|&m| key_in_slot(env.cluster.slots_of(m)[0], "big-")).collect();
    let mut c = Raw::connect(env.addr()).await;
    let big: Vec<String> = (0..20).map(|i| format!("member-{i}")).collect();
    let mut cmd = vec!["SADD", keys[0].as_str()];
    cmd.extend(big.iter().map(String::as_str));
    assert_eq!(c.text(&cmd).await, ":20\r\n");
    let r = c.text(&["SUNION", &keys[0], &keys[1]]).await;
    assert_eq!(
        r,
        "-ERR clusterless: SUNION over several slots reads more than keyspace.max_compute_bytes (64 bytes of members); put its keys in one slot (a hash tag) or raise the limit\r\n"
    );
    drop(env);
    // The shipped default: Redis Cluster's refusal.
    let env = common::start(small()).await;
    let mut c = Raw::connect(env.addr()).await;
    assert_eq!(
        c.text(&["SUNION", &keys[0], &keys[1]]).await,
        "-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_slot_sorted_set_operations_match_one_server_byte_for_byte() {
    let mut env = start_with(small(), |c| c.keyspace.compute_cross_slot = Some(1 << 20)).await;
    let plain = tokio::task::block_in_place(|| env.cluster.start_stranger(None)).expect("plain server");
    let mut s = Raw::connect(std::net::SocketAddr::from(([127, 0, 0, 1], plain))).await;
    let mut c = Raw::connect(env.addr()).await;
    let masters = env.cluster.masters();
    let keys: Vec<String> = masters.iter().map(|&m| key_in_slot(env.cluster.slots_of(m)[0], "z-")).collect();
    let set_key = key_in_slot(env.cluster.slots_of(masters[1])[2], "plainset-");
    // Different sizes (Redis adds from the smallest input first), fractional scores whose sums
    // are not exact in binary, infinities whose sum Redis makes 0, and a plain set (scores 1).
    let data: [&[&str]; 3] = [
        &["1.1", "a", "2.5", "b", "0.1", "c", "inf", "x", "-3", "m"],
        &["0.2", "a", "7", "c", "-inf", "x"],
        &["1e20", "a", "0.30000000000000004", "c", "5", "q", "1", "r"],
    ];
    for (k, pairs) in keys.iter().zip(data) {
        let mut cmd = vec!["ZADD", k.as_str()];
        cmd.extend(pairs);
        assert_eq!(c.text(&cmd).await, s.text(&cmd).await);
    }
    let sadd = ["SADD", set_key.as_str(), "a", "q", "zz"];
    assert_eq!(c.text(&sadd).await, s.text(&sadd).await);
    let (k0, k1, k2, ks) = (keys[0].as_str(), keys[1].as_str(), keys[2].as_str(), set_key.as_str());
    let dest = key_in_slot(env.cluster.slots_of(masters[2])[3], "zdest-");
    let cases: Vec<Vec<&str>> = vec![
        vec!["ZUNION", "3", k0, k1, k2],
        vec!["ZUNION", "3", k0, k1, k2, "WITHSCORES"],
        vec!["ZUNION", "4", k0, k1, k2, ks, "WEIGHTS", "2", "0.1", "3", "1.5", "WITHSCORES"],
        vec!["ZUNION", "2", k0, k1, "AGGREGATE", "MIN", "WITHSCORES"],
        vec!["ZUNION", "2", k0, k2, "aggregate", "max", "withscores"],
        vec!["ZINTER", "3", k0, k1, k2, "WITHSCORES"],
        vec!["ZINTER", "2", k0, k1, "WEIGHTS", "0", "1", "WITHSCORES"],
        vec!["ZINTER", "2", k0, ks, "WITHSCORES"],
        vec!["ZDIFF", "2", k0, k1, "WITHSCORES"],
        vec!["ZDIFF", "3", k0, k1, k2],
        vec!["ZINTERCARD", "2", k0, k1],
        vec!["ZINTERCARD", "2", k0, k1, "LIMIT", "1"],
        // Redis's errors for bad options.
        vec!["ZUNION", "2", k0, k1, "WEIGHTS", "1", "nope"],
        vec!["ZUNION", "2", k0, k1, "AGGREGATE", "AVG"],
        vec!["ZDIFF", "2", k0, k1, "WEIGHTS", "1", "1"],
        vec!["ZINTERCARD", "2", k0, k1, "LIMIT", "-1"],
        vec!["ZUNIONSTORE", dest.as_str(), "2", k0, k1, "WITHSCORES"],
    ];
    for proto in ["2", "3"] {
        c.text(&["HELLO", proto]).await;
        s.text(&["HELLO", proto]).await;
        for cmd in &cases {
            assert_eq!(c.text(cmd).await, s.text(cmd).await, "RESP{proto} {cmd:?}");
        }
    }
    // *STORE: the destination, on another slot, replaced by the result, scores exactly kept.
    for op in ["ZUNIONSTORE", "ZINTERSTORE", "ZDIFFSTORE"] {
        let mut cmd = vec![op, dest.as_str(), "3", k0, k1, k2];
        if op != "ZDIFFSTORE" {
            cmd.extend(["WEIGHTS", "1", "0.1", "3"]);
        }
        assert_eq!(c.text(&cmd).await, s.text(&cmd).await, "{op}");
        let range = ["ZRANGE", dest.as_str(), "0", "-1", "WITHSCORES"];
        assert_eq!(c.text(&range).await, s.text(&range).await, "{op}: the destination");
    }
    // An empty result removes the destination, as on one server.
    let empty = key_in_slot(env.cluster.slots_of(masters[0])[5], "none-");
    let cmd = ["ZINTERSTORE", dest.as_str(), "2", k0, empty.as_str()];
    assert_eq!(c.text(&cmd).await, ":0\r\n");
    assert_eq!(c.text(&["EXISTS", &dest]).await, ":0\r\n");
    // A key of another type: WRONGTYPE, before any option is read.
    assert_eq!(c.text(&["SET", k1, "str"]).await, "+OK\r\n");
    assert_eq!(s.text(&["SET", k1, "str"]).await, "+OK\r\n");
    let cmd = ["ZUNION", "2", k0, k1, "WEIGHTS", "1", "nope"];
    assert_eq!(c.text(&cmd).await, s.text(&cmd).await);
    assert!(c.text(&cmd).await.starts_with("-WRONGTYPE"));
}
