//! Adaptive bus watching: an idle proxy PINGs each node on the steady beat only (what every
//! sidecar costs every node), and a master's kill -9 (its link closes) or SIGSTOP (the cluster's
//! PFAIL/FAIL gossip, a PONG that does not come) puts its shard on the fast beat until the new
//! owner is known, then everything goes back to the steady beat. Nothing here writes through the
//! proxy: the data path's own signals (a failed write, a MOVED) would switch the beat too, and
//! what is tested is that the bus alone is enough. Under load the same faults are in
//! tests/failover.rs.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::http::{admin_on, get, scrape};
use common::*;

const SLOW: &str = "clusterless_observer_pings_total{mode=\"slow\"}";
const FAST: &str = "clusterless_observer_pings_total{mode=\"fast\"}";
const FAST_NODES: &str = "clusterless_observer_fast_nodes";

async fn metrics(env: &Env) -> HashMap<String, f64> {
    scrape(admin(env)).await
}

fn admin(env: &Env) -> SocketAddr {
    env.proxy.admin_addr().expect("admin endpoint")
}

/// Waits until no node is on the fast beat (start-up, or the aftermath of a fault, has settled).
async fn all_steady(env: &Env, what: &str) {
    let a = admin(env);
    eventually_async(what, || async move { get(&scrape(a).await, FAST_NODES) == 0.0 }).await;
}

/// With nothing changing, the proxy's PINGs over a window are at most one per node per steady
/// period (the fixed beat before sent eight per node in two seconds), none on the fast beat, and
/// every node stays up in the map.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_proxy_pings_each_node_on_the_steady_beat_only() {
    let env = start_with(with_replicas(), admin_on).await;
    env.converges("start").await;
    let nodes = env.cluster.ports().len() as f64;
    let steady = env.proxy.config().topology.bus_steady_interval;
    assert_eq!(steady, Duration::from_secs(2), "the shipped steady beat");
    all_steady(&env, "every node on the steady beat once the start is over").await;
    let before = metrics(&env).await;
    let t0 = Instant::now();
    // Two steady periods' worth of PINGs to every node.
    let a = admin(&env);
    let want = get(&before, SLOW) + 2.0 * nodes;
    eventually_async("two steady rounds of PINGs", || async move { get(&scrape(a).await, SLOW) >= want }).await;
    let after = metrics(&env).await;
    let elapsed = t0.elapsed();
    let slow = get(&after, SLOW) - get(&before, SLOW);
    // At most one PING per node per steady period (plus the periods begun at both ends): the old
    // fixed beat sent 8 per node in two seconds.
    let bound = nodes * (elapsed.as_secs_f64() / steady.as_secs_f64() + 2.0);
    assert!(slow <= bound, "{slow} steady PINGs in {elapsed:?} to {nodes} nodes (bound {bound})");
    assert_eq!(get(&after, FAST), get(&before, FAST), "no fast PING while nothing changes");
    assert_eq!(get(&after, FAST_NODES), 0.0);
    // And every node keeps answering: the map is the bus's, nobody is marked down.
    assert_eq!(env.proxy.topology_source(), "bus");
    assert!(env.proxy.topology().nodes.iter().all(|n| !n.failed), "{:?}", env.proxy.topology().nodes);
}

/// Fault `victim`, wait for the fast beat and then for the proxy to name `replica` as the owner of
/// the victim's slots, with the cluster agreeing; then back to the steady beat.
async fn followed_from_the_bus(env: &Env, victim: u16, replica: u16, fault: &str) {
    let before = metrics(env).await;
    let a = admin(env);
    let fast_before = get(&before, FAST);
    eventually_async(&format!("{fault}: the victim's shard PINGed at the fast beat"), || async move {
        let m = scrape(a).await;
        get(&m, FAST) > fast_before && get(&m, FAST_NODES) >= 1.0
    })
    .await;
    tokio::task::block_in_place(|| env.cluster.wait_for_promotion(victim)).expect("promotion");
    let slot = env.cluster.slots_of(replica)[0];
    let new_owner = format!("127.0.0.1:{replica}");
    eventually(&format!("{fault}: the proxy names the promoted replica"), || {
        env.proxy.topology().master_for(slot) == Some(new_owner.as_str())
    })
    .await;
    env.converges(fault).await;
}

/// kill -9 of a master, then SIGSTOP of another: each time the victim's shard goes on the fast
/// beat, the proxy names the promoted replica (the cluster agreeing), and once the new owner is
/// known (and, after SIGCONT, the old master rejoined) every node is back on the steady beat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_proxy_follows_kill9_and_sigstop_then_slows_down() {
    let mut env = start_with(with_replicas(), admin_on).await;
    env.converges("start").await;
    all_steady(&env, "steady before the faults").await;

    // kill -9: the kernel closes the dead process's bus socket.
    let victim = env.cluster.masters()[0];
    let replica = env.cluster.replicas_of(victim)[0];
    tokio::task::block_in_place(|| env.cluster.kill9(victim)).expect("kill -9");
    followed_from_the_bus(&env, victim, replica, "kill -9").await;
    all_steady(&env, "kill -9: back to the steady beat once the new owner is known").await;
    let t = env.proxy.topology();
    assert!(
        t.nodes.iter().any(|n| n.addr.ends_with(&format!(":{victim}")) && n.failed),
        "the dead node is marked failed: {:?}",
        t.nodes
    );

    // SIGSTOP: no EOF; the PONG that does not come and the cluster's gossip tell.
    let victim = env.cluster.masters().into_iter().find(|&m| m != replica).expect("another master");
    let replica = env.cluster.replicas_of(victim)[0];
    tokio::task::block_in_place(|| env.cluster.sigstop(victim)).expect("SIGSTOP");
    followed_from_the_bus(&env, victim, replica, "SIGSTOP").await;
    tokio::task::block_in_place(|| env.cluster.sigcont(victim)).expect("SIGCONT");
    tokio::task::block_in_place(|| env.cluster.wait_ok(CLUSTER_PATIENCE)).expect("cluster healthy");
    env.converges("SIGSTOP, failover, SIGCONT").await;
    all_steady(&env, "SIGSTOP: back to the steady beat once the old master rejoined").await;
}

/// The data path sees a slot move before the bus does (here the steady beat is a minute, so the
/// bus cannot): the MOVED puts every node on the fast beat, which then sees the new claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_on_the_data_path_puts_every_node_on_the_fast_beat() {
    let env = start_with(small(), |c| {
        admin_on(c);
        c.topology.bus_steady_interval = Duration::from_secs(60);
        c.topology.reconcile_interval = Duration::from_secs(600);
    })
    .await;
    env.converges("start").await;
    all_steady(&env, "steady before the move").await;
    let nodes = env.cluster.ports().len() as f64;
    let (from, to) = (env.cluster.masters()[0], env.cluster.masters()[1]);
    let slot = env.cluster.slots_of(from)[0];
    let key = key_in_slot(slot, "mv");
    let mut c = Raw::connect(env.addr()).await;
    assert_eq!(c.cmd(&[b"SET", key.as_bytes(), b"v"]).await, b"+OK\r\n");
    let fast_before = get(&metrics(&env).await, FAST);
    tokio::task::block_in_place(|| {
        env.cluster.migrate_slot_manual_begin(slot, from, to)?;
        env.cluster.migrate_slot_manual_finish(slot, from, to)
    })
    .expect("slot moved");
    // The proxy still sends the slot to `from`, which answers MOVED; the proxy follows it.
    assert_eq!(c.cmd(&[b"GET", key.as_bytes()]).await, b"$1\r\nv\r\n");
    let a = admin(&env);
    eventually_async("every node on the fast beat after the MOVED", || async move {
        let m = scrape(a).await;
        get(&m, FAST_NODES) == nodes && get(&m, FAST) > fast_before
    })
    .await;
    let new_owner = format!("127.0.0.1:{to}");
    eventually("the map names the new owner", || env.proxy.topology().master_for(slot) == Some(new_owner.as_str()))
        .await;
    env.converges("slot moved").await;
    all_steady(&env, "back to the steady beat after the move").await;
}

/// kill -9 of a master with a node timeout of a minute: the cluster will not suspect the node for
/// that long, yet its shard goes on the fast beat at once, from the bus link the kernel closed
/// (checked: when the fast beat is seen, no node flags the victim `fail?` or `fail`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_link_alone_puts_the_shard_on_the_fast_beat() {
    let spec = clusterless::localcluster::ClusterSpec { node_timeout_ms: 60_000, ..small() };
    let mut env = start_with(spec, admin_on).await;
    env.converges("start").await;
    all_steady(&env, "steady before the kill").await;
    let victim = env.cluster.masters()[0];
    let others: Vec<u16> = env.cluster.masters().into_iter().filter(|&m| m != victim).collect();
    let victim_id = env.cluster.node_id(victim).expect("victim id");
    tokio::task::block_in_place(|| env.cluster.kill9(victim)).expect("kill -9");
    let a = admin(&env);
    eventually_async(
        "the dead master's shard on the fast beat",
        || async move { get(&scrape(a).await, FAST_NODES) >= 1.0 },
    )
    .await;
    for p in others {
        let nodes = tokio::task::block_in_place(|| env.cluster.cli(p, &["CLUSTER", "NODES"])).expect("CLUSTER NODES");
        let line = nodes.lines().find(|l| l.starts_with(&victim_id)).expect("victim listed");
        assert!(!line.contains("fail"), "node {p} already suspects the victim, so the test proves nothing: {line}");
    }
    let t = env.proxy.topology();
    assert!(
        t.nodes.iter().any(|n| n.addr.ends_with(&format!(":{victim}")) && n.failed),
        "the dead master is marked failed from its closed link: {:?}",
        t.nodes
    );
}

/// A slot moved with no traffic through the proxy: the bus sees the target's new claim on its
/// steady beat, and the two shards go on the fast beat for a while, then back to steady.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_claim_on_the_bus_puts_its_shards_on_the_fast_beat() {
    let env = start_with(small(), admin_on).await;
    env.converges("start").await;
    all_steady(&env, "steady before the move").await;
    let (from, to) = (env.cluster.masters()[0], env.cluster.masters()[1]);
    let slot = env.cluster.slots_of(from)[0];
    let fast_before = get(&metrics(&env).await, FAST);
    tokio::task::block_in_place(|| {
        env.cluster.migrate_slot_manual_begin(slot, from, to)?;
        env.cluster.migrate_slot_manual_finish(slot, from, to)
    })
    .expect("slot moved");
    let a = admin(&env);
    eventually_async("the shards of the new claim on the fast beat", || async move {
        let m = scrape(a).await;
        get(&m, FAST_NODES) >= 1.0 && get(&m, FAST) > fast_before
    })
    .await;
    let new_owner = format!("127.0.0.1:{to}");
    eventually("the map names the new owner", || env.proxy.topology().master_for(slot) == Some(new_owner.as_str()))
        .await;
    all_steady(&env, "back to the steady beat").await;
}
