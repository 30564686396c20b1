//! Node identity before traffic: whatever teaches the proxy an address (a shared observer, a
//! MOVED, the map it already has), a node connection is used only once the node there answered
//! `CLUSTER MYID` with the id the map names. The stranger in each test is a plain redis-server
//! (no cluster mode, the cluster's password): it would accept and acknowledge every write, so the
//! only way the proxy keeps data off it is not to send any.

mod common;

use clusterless::localcluster::LocalCluster;
use common::http::{admin_on, get, scrape};
use common::{eventually, eventually_async, longest_answer, shipped_config, small, with_replicas, Env};
use redis::AsyncCommands;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the stranger on `port` holds and was asked: its key count and how many SETs it ran.
fn stranger_state(env: &Env, port: u16) -> (u64, u64) {
    let keys = env.cluster.cli(port, &["DBSIZE"]).expect("DBSIZE").trim().parse().expect("a count");
    let stats = env.cluster.cli(port, &["INFO", "commandstats"]).expect("INFO");
    let sets = stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_set:calls="))
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (keys, sets)
}

/// Keys stored on the cluster's masters, asked of each node directly.
fn keys_on_cluster(env: &Env) -> u64 {
    env.cluster
        .masters()
        .iter()
        .map(|&p| env.cluster.cli(p, &["DBSIZE"]).expect("DBSIZE").trim().parse::<u64>().expect("n"))
        .sum()
}

/// A snapshot line as `clusterless observe` serves it, naming every master of the cluster by
/// its real id and slots, at `addr`; with `foreign`, under ids of another cluster.
fn snapshot_line(cluster: &LocalCluster, addr: &str, foreign: bool) -> String {
    let ids = cluster.ids();
    let mut nodes = Vec::new();
    for (i, port) in cluster.masters().into_iter().enumerate() {
        let slots = cluster.slots_of(port);
        let mut ranges: Vec<[u16; 2]> = Vec::new();
        for s in slots {
            match ranges.last_mut() {
                Some(r) if r[1] + 1 == s => r[1] = s,
                _ => ranges.push([s, s]),
            }
        }
        let id = if foreign { format!("{:040x}", 0xdead_0000 + i) } else { ids[&port].clone() };
        nodes.push(serde_json::json!({
            "id": id, "address": addr, "ip": addr, "role": "master", "master": null,
            "health": "up", "configEpoch": null, "slots": ranges,
        }));
    }
    format!("{}\n", serde_json::json!({ "version": 1, "age_seconds": 0.0, "uncovered_slots": 0, "nodes": nodes }))
}

/// A shared observer that streams `line` to every follower and then keeps the stream open: what
/// a compromised observer, or the wrong environment's, would serve. Returns its URL.
async fn lying_observer(line: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let line = line.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut b = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                let out = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{line}\r\n",
                    line.len()
                );
                if s.write_all(out.as_bytes()).await.is_ok() {
                    // The stream stays open, as a live observer's does, until the follower leaves.
                    let _ = s.read(&mut b).await;
                }
            });
        }
    });
    url
}

async fn proxy_following(cluster: LocalCluster, url: String) -> Env {
    let mut cfg = shipped_config(cluster.seed());
    admin_on(&mut cfg);
    cfg.topology.observer = Some(url);
    let proxy = clusterless::start(cfg).await.expect("start proxy");
    Env { proxy, observer: None, cluster }
}

/// The scenario: a stream puts every slot on a plain redis-server under the cluster's
/// real node ids. Every write must still be acknowledged by the cluster and none reach the
/// stranger; the proxy stops following that observer, says so in a metric, and watches the
/// cluster itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_observer_gets_no_write_to_its_stranger() {
    common::init_logs();
    let mut cluster = tokio::task::block_in_place(|| LocalCluster::start(&small())).expect("cluster");
    let stranger = tokio::task::block_in_place(|| cluster.start_stranger(None)).expect("stranger");
    let rogue = format!("127.0.0.1:{stranger}");
    let line = tokio::task::block_in_place(|| snapshot_line(&cluster, &rogue, false));
    let env = proxy_following(cluster, lying_observer(line).await).await;
    let admin = env.proxy.admin_addr().expect("admin");

    // The observer's map is in use (every slot on the stranger) before any write is sent, so
    // each write below meets the lie rather than racing it.
    eventually("the observer's map in use", || {
        env.proxy.topology_source() == "observer" && env.proxy.topology().master_for(0) == Some(rogue.as_str())
    })
    .await;
    let mut c = env.conn().await;
    for i in 0..100 {
        let r: redis::RedisResult<String> = c.set(format!("lie-{i}"), i).await;
        assert_eq!(r.as_deref(), Ok("OK"), "write {i}");
    }
    let (keys, sets) = tokio::task::block_in_place(|| stranger_state(&env, stranger));
    assert_eq!((keys, sets), (0, 0), "the stranger got writes");
    assert_eq!(tokio::task::block_in_place(|| keys_on_cluster(&env)), 100, "every write on the cluster");
    for i in [0, 57, 99] {
        let v: Option<i64> = c.get(format!("lie-{i}")).await.expect("GET");
        assert_eq!(v, Some(i));
    }
    let m = scrape(admin).await;
    assert_eq!(get(&m, "clusterless_observer_distrusted"), 1.0);
    assert!(get(&m, "clusterless_node_identity_refused_total") >= 1.0);
    // After the lie, the proxy's own bus observer keeps the map.
    eventually("the proxy watches the bus itself", || env.proxy.topology_source() == "bus").await;
    env.converges("the observer distrusted").await;
}

/// An observer of another cluster (its map names none of the nodes the seeds named) is refused
/// at its first snapshot, before any client request meets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_of_another_cluster_is_refused_at_once() {
    common::init_logs();
    let mut cluster = tokio::task::block_in_place(|| LocalCluster::start(&small())).expect("cluster");
    let stranger = tokio::task::block_in_place(|| cluster.start_stranger(None)).expect("stranger");
    let line = tokio::task::block_in_place(|| snapshot_line(&cluster, &format!("127.0.0.1:{stranger}"), true));
    let env = proxy_following(cluster, lying_observer(line).await).await;
    let admin = env.proxy.admin_addr().expect("admin");
    eventually_async("the observer distrusted", || async {
        get(&scrape(admin).await, "clusterless_observer_distrusted") == 1.0
    })
    .await;
    eventually("the proxy watches the bus itself", || env.proxy.topology_source() == "bus").await;
    // Its map was never in use: no connection was ever refused.
    assert_eq!(get(&scrape(admin).await, "clusterless_node_identity_refused_total"), 0.0);
    env.converges("the foreign observer refused").await;
}

/// A MOVED naming an address where no node of the cluster is (here through the proxy's own MOVED
/// patch): the request is not sent there; it is held, the map refreshed, and it runs on the
/// slot's real owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_to_a_stranger_is_not_followed() {
    // Polling only, and seldom: the bus observer hears the real owner's claim within a PING of the
    // patch and would put the slot back before the SET is sent, so the identity check (what this
    // test is about) would never be asked.
    let mut env = common::start_topo(small(), common::Topo::Poll, |c| {
        admin_on(c);
        c.topology.refresh_interval = std::time::Duration::from_secs(60);
    })
    .await;
    let stranger = tokio::task::block_in_place(|| env.cluster.start_stranger(None)).expect("stranger");
    let key = "moved-to-stranger";
    let slot = clusterless::slot::slot(key.as_bytes());
    env.proxy.misroute_slot(slot, &format!("127.0.0.1:{stranger}"));
    let mut c = env.conn().await;
    let r: String = c.set(key, "v").await.expect("SET");
    assert_eq!(r, "OK");
    assert_eq!(tokio::task::block_in_place(|| stranger_state(&env, stranger)), (0, 0));
    let owner = tokio::task::block_in_place(|| env.cluster.slot_owner(slot)).expect("owner");
    let stored = tokio::task::block_in_place(|| env.cluster.cli(owner, &["GET", key])).expect("GET");
    assert_eq!(stored.trim(), "v");
    let m = scrape(env.proxy.admin_addr().expect("admin")).await;
    assert!(get(&m, "clusterless_node_identity_refused_total") >= 1.0);
    env.converges("the stranger refused").await;
}

/// A master replaced at its own address by a different server (its pod gone, the address taken
/// by something else) while its replica takes over: the proxy's connections to that address must
/// prove who is there again, so no write reaches the newcomer; the write is held and runs on the
/// promoted replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_replaced_at_its_address_gets_nothing() {
    // Polling only: the bus observer sees the killed master's link close and the write is held
    // without a connection to its address, so the identity check (what this test is about) would
    // not be asked; polling makes the proxy connect there and meet the stranger.
    let mut env = common::start_topo(with_replicas(), common::Topo::Poll, admin_on).await;
    let victim = env.cluster.masters()[0];
    let slot = env.cluster.slots_of(victim)[0];
    let key = common::key_in_slot(slot, "replaced");
    let mut c = env.conn().await;
    let _: () = c.set(&key, "before").await.expect("SET before");
    tokio::task::block_in_place(|| env.cluster.kill9(victim)).expect("kill");
    tokio::task::block_in_place(|| env.cluster.start_stranger(Some(victim))).expect("stranger on its port");

    let started = std::time::Instant::now();
    let r: redis::RedisResult<String> = c.set(&key, "after").await;
    let took = started.elapsed();
    assert_eq!(r.as_deref(), Ok("OK"), "the write runs on the promoted replica");
    assert!(took <= longest_answer(env.proxy.config()), "answered after {took:?}");
    assert_eq!(tokio::task::block_in_place(|| stranger_state(&env, victim)), (0, 0), "the stranger got writes");
    // The node the harness asks may hear of the promotion a moment after the proxy did.
    eventually("the cluster's own view names the promoted replica", || {
        tokio::task::block_in_place(|| env.cluster.slot_owner(slot)).is_some_and(|o| o != victim)
    })
    .await;
    let owner = tokio::task::block_in_place(|| env.cluster.slot_owner(slot)).expect("owner");
    let stored = tokio::task::block_in_place(|| env.cluster.cli(owner, &["GET", &key])).expect("GET");
    assert_eq!(stored.trim(), "after");
    let m = scrape(env.proxy.admin_addr().expect("admin")).await;
    assert!(get(&m, "clusterless_node_identity_refused_total") >= 1.0);
}
