//! Keyspace notifications through the proxy, as one server sends them: events of keys on every
//! master reach a subscriber once each, also after a failover and from a master that joins by a
//! reshard, evictions included, while other messages of a pattern that matches everything still
//! arrive once.

mod common;

use std::time::Duration;

use common::{key_in_slot, start, with_replicas, Raw};

fn bulk(s: &str) -> String {
    format!("${}\r\n{s}\r\n", s.len())
}

fn pmessage(pattern: &str, channel: &str, payload: &str) -> String {
    format!("*4\r\n{}{}{}{}", bulk("pmessage"), bulk(pattern), bulk(channel), bulk(payload))
}

fn message(channel: &str, payload: &str) -> String {
    format!("*3\r\n{}{}{}", bulk("message"), bulk(channel), bulk(payload))
}

/// Reads exactly `want` (in any order: events of different nodes race), then checks that nothing
/// more arrives for 300 ms (time passes on purpose: a duplicate would come within it).
async fn expect_exactly(sub: &mut Raw, want: &[String]) {
    let mut left: Vec<String> = want.to_vec();
    while !left.is_empty() {
        let got = tokio::time::timeout(common::PATIENCE, sub.read_replies(1)).await.expect("an event in time");
        let got = String::from_utf8_lossy(&got[0]).into_owned();
        let Some(i) = left.iter().position(|w| *w == got) else {
            panic!("unexpected {got:?}; still waiting for {left:?}");
        };
        left.remove(i);
    }
    let extra = tokio::time::timeout(Duration::from_millis(300), sub.read_replies(1)).await;
    assert!(
        extra.is_err(),
        "a duplicate or stray frame: {:?}",
        extra.map(|f| String::from_utf8_lossy(&f[0]).into_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyspace_events_of_every_master_arrive_once() {
    let env = start(with_replicas()).await;
    let mut c = Raw::connect(env.addr()).await;
    assert_eq!(c.text(&["CONFIG", "SET", "notify-keyspace-events", "KEA"]).await, "+OK\r\n");
    let mut sub = Raw::connect(env.addr()).await;
    let pat = "__keyspace@0__:ks-*";
    assert_eq!(sub.text(&["PSUBSCRIBE", pat]).await, format!("*3\r\n{}{}:1\r\n", bulk("psubscribe"), bulk(pat)));
    let del = "__keyevent@0__:del";
    assert_eq!(sub.text(&["SUBSCRIBE", del]).await, format!("*3\r\n{}{}:2\r\n", bulk("subscribe"), bulk(del)));
    // Every pattern matching everything too: events must still come once, and PUBLISH once.
    assert_eq!(sub.text(&["PSUBSCRIBE", "*"]).await, format!("*3\r\n{}{}:3\r\n", bulk("psubscribe"), bulk("*")));

    let masters = env.cluster.masters();
    let keys: Vec<String> = masters.iter().map(|&m| key_in_slot(env.cluster.slots_of(m)[0], "ks-")).collect();
    let mut want = Vec::new();
    for k in &keys {
        assert_eq!(c.text(&["SET", k, "v"]).await, "+OK\r\n");
        let ch = format!("__keyspace@0__:{k}");
        want.push(pmessage(pat, &ch, "set"));
        want.push(pmessage("*", &ch, "set"));
        want.push(pmessage("*", "__keyevent@0__:set", k));
    }
    expect_exactly(&mut sub, &want).await;

    // DEL and expiry on every master.
    let mut want = Vec::new();
    for k in &keys {
        assert_eq!(c.text(&["DEL", k]).await, ":1\r\n");
        let ch = format!("__keyspace@0__:{k}");
        want.extend([pmessage(pat, &ch, "del"), pmessage("*", &ch, "del"), message(del, k), pmessage("*", del, k)]);
    }
    expect_exactly(&mut sub, &want).await;
    let mut want = Vec::new();
    for k in &keys {
        assert_eq!(c.text(&["SET", k, "v", "PX", "50"]).await, "+OK\r\n");
        let ch = format!("__keyspace@0__:{k}");
        want.extend([pmessage(pat, &ch, "set"), pmessage("*", &ch, "set"), pmessage("*", "__keyevent@0__:set", k)]);
        // SET ... PX also sets an expiry: Redis says so with an `expire` event.
        want.extend([pmessage(pat, &ch, "expire"), pmessage("*", &ch, "expire")]);
        want.push(pmessage("*", "__keyevent@0__:expire", k));
        want.extend([pmessage(pat, &ch, "expired"), pmessage("*", &ch, "expired")]);
        want.push(pmessage("*", "__keyevent@0__:expired", k));
    }
    expect_exactly(&mut sub, &want).await;

    // A published message reaches the `*` pattern once, not once per master.
    let n = c.text(&["PUBLISH", "news", "hello"]).await;
    assert!(n.starts_with(':'), "{n}");
    expect_exactly(&mut sub, &[pmessage("*", "news", "hello")]).await;

    // After a failover, the new master's events arrive, once.
    let victim = masters[0];
    let replica = env.cluster.replicas_of(victim)[0];
    tokio::task::block_in_place(|| env.cluster.failover(replica)).expect("failover");
    env.converges("CLUSTER FAILOVER").await;
    let k = &keys[0];
    let ch = format!("__keyspace@0__:{k}");
    // The proxy resubscribes when it sees the new map; an event before that may be missed (as the
    // README says of any subscription), so write until one arrives, then check once-ness.
    let deadline = std::time::Instant::now() + common::PATIENCE;
    'written: loop {
        assert!(std::time::Instant::now() < deadline, "no event from the promoted master");
        assert!(c.text(&["INCR", k]).await.starts_with(':'));
        // Other frames may come first: the harness's own probe writes during the failover.
        while let Ok(f) = tokio::time::timeout(Duration::from_millis(300), sub.read_replies(1)).await {
            if String::from_utf8_lossy(&f[0]).contains(&format!("{}{}", bulk(&ch), bulk("incrby"))) {
                break 'written;
            }
        }
    }
    // Drain what that INCR brought, then one more write: exactly its three events.
    while tokio::time::timeout(Duration::from_millis(300), sub.read_replies(1)).await.is_ok() {}
    assert!(c.text(&["APPEND", k, "x"]).await.starts_with(':'));
    expect_exactly(
        &mut sub,
        &[pmessage(pat, &ch, "append"), pmessage("*", &ch, "append"), pmessage("*", "__keyevent@0__:append", k)],
    )
    .await;
}

/// Reads frames until every one of `want` has arrived (others, e.g. a pattern's matches of the
/// test's own writes, are passed over), then returns how often each arrived within 300 ms more
/// (time passes on purpose: a duplicate from a second subscription would come within it).
async fn count_until_seen(sub: &mut Raw, want: &[String]) -> std::collections::HashMap<String, usize> {
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    while !want.iter().all(|w| seen.contains_key(w)) {
        let got = tokio::time::timeout(common::PATIENCE, sub.read_replies(1)).await.expect("an event in time");
        *seen.entry(String::from_utf8_lossy(&got[0]).into_owned()).or_default() += 1;
    }
    while let Ok(f) = tokio::time::timeout(Duration::from_millis(300), sub.read_replies(1)).await {
        *seen.entry(String::from_utf8_lossy(&f[0]).into_owned()).or_default() += 1;
    }
    seen
}

/// A master that joins and takes slots by a reshard has its events subscribed too, once; and the
/// `evicted` events of every master arrive, each evicted key once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyspace_events_follow_a_reshard_to_a_new_master_and_evictions() {
    let mut env = start(common::small()).await;
    let mut c = Raw::connect(env.addr()).await;
    assert_eq!(c.text(&["CONFIG", "SET", "notify-keyspace-events", "KEA"]).await, "+OK\r\n");
    let mut sub = Raw::connect(env.addr()).await;
    let ev = "__keyevent@0__:*";
    assert_eq!(sub.text(&["PSUBSCRIBE", ev]).await, format!("*3\r\n{}{}:1\r\n", bulk("psubscribe"), bulk(ev)));

    // A new master, given slots by a reshard while the subscription is open.
    let old = env.cluster.masters();
    let new = tokio::task::block_in_place(|| env.cluster.add_master()).expect("add a master");
    tokio::task::block_in_place(|| env.cluster.reshard(old[0], new, 20)).expect("reshard");
    env.converges("a reshard to a new master").await;
    // The node itself must say notify-keyspace-events KEA: the proxy set it on the joiner.
    let got = tokio::task::block_in_place(|| env.cluster.cli(new, &["CONFIG", "GET", "notify-keyspace-events"]));
    assert!(got.expect("CONFIG GET").contains("AKE"), "the joiner's notify-keyspace-events");
    let k = key_in_slot(env.cluster.slots_of(new)[0], "moved-");
    let want = pmessage(ev, "__keyevent@0__:set", &k);
    // Subscriptions follow the map: an event written before the proxy subscribed the new master
    // may be missed (as the README says), so write until one arrives, then count one more.
    let deadline = std::time::Instant::now() + common::PATIENCE;
    'arrived: loop {
        assert!(std::time::Instant::now() < deadline, "no event from the new master");
        assert_eq!(c.text(&["SET", &k, "v"]).await, "+OK\r\n");
        while let Ok(f) = tokio::time::timeout(Duration::from_millis(300), sub.read_replies(1)).await {
            if String::from_utf8_lossy(&f[0]) == want {
                break 'arrived;
            }
        }
    }
    assert_eq!(c.text(&["SET", &k, "w"]).await, "+OK\r\n");
    assert_eq!(count_until_seen(&mut sub, std::slice::from_ref(&want)).await.get(&want), Some(&1));

    // Evictions: every master under a small maxmemory, then values written to each until each
    // has evicted some of its keys. Each `evicted` event arrives once.
    let masters = env.cluster.masters();
    let used = |port: u16| -> u64 {
        let info = env.cluster.cli(port, &["INFO", "memory"]).expect("INFO memory");
        info.lines().find_map(|l| l.strip_prefix("used_memory:")?.trim().parse().ok()).expect("used_memory")
    };
    let most = tokio::task::block_in_place(|| masters.iter().map(|&m| used(m)).max()).expect("a master");
    let limit = (most + 3 * 1024 * 1024).to_string();
    assert_eq!(c.text(&["CONFIG", "SET", "maxmemory-policy", "allkeys-random"]).await, "+OK\r\n");
    assert_eq!(c.text(&["CONFIG", "SET", "maxmemory", &limit]).await, "+OK\r\n");
    let value = "x".repeat(100 * 1024);
    let mut written: Vec<Vec<String>> = vec![Vec::new(); masters.len()];
    let mut evicted: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let deadline = std::time::Instant::now() + common::PATIENCE;
    for i in 0.. {
        assert!(std::time::Instant::now() < deadline, "not every master evicted: {evicted:?}");
        let evicted_on = |w: &Vec<String>| w.iter().any(|k| evicted.contains_key(k));
        if written.iter().all(evicted_on) {
            break;
        }
        for (m, w) in masters.iter().zip(written.iter_mut()) {
            let slots = env.cluster.slots_of(*m);
            let k = key_in_slot(slots[i % slots.len()], &format!("ev{i}-"));
            // A write may itself be refused with OOM when nothing is left to evict quickly
            // enough; what matters is the events.
            c.text(&["SET", &k, &value]).await;
            w.push(k);
        }
        while let Ok(f) = tokio::time::timeout(Duration::from_millis(50), sub.read_replies(1)).await {
            let f = String::from_utf8_lossy(&f[0]).into_owned();
            if let Some(key) =
                f.strip_prefix(&format!("*4\r\n{}{}{}", bulk("pmessage"), bulk(ev), bulk("__keyevent@0__:evicted")))
            {
                let key = key.split("\r\n").nth(1).unwrap_or_default().to_string();
                *evicted.entry(key).or_default() += 1;
            }
        }
    }
    assert_eq!(c.text(&["CONFIG", "SET", "maxmemory", "0"]).await, "+OK\r\n");
    let twice: Vec<_> = evicted.iter().filter(|(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "evicted events that arrived more than once: {twice:?}");
    // Every evicted key is gone from its master.
    for k in evicted.keys() {
        assert_eq!(c.text(&["EXISTS", k]).await, ":0\r\n", "{k}");
    }
}
