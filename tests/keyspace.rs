//! Keyspace notifications through the proxy, as one server sends them: events of keys on every
//! master reach a subscriber once each, also after a failover, while other messages of a
//! pattern that matches everything still arrive once.

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
