//! Faults under load, once per topology source (the bus observer, CLUSTER SHARDS polling, a shared
//! observer), with the shipped defaults: CLUSTER FAILOVER, kill -9 of a master, SIGSTOP of a
//! master, and a reshard with a master added and removed. A client loop (tests/common/load.rs)
//! runs through the proxy the whole time; afterwards every acknowledged write must be in its key's
//! log exactly once, the proxy's map must equal the cluster's own, and the errors and the slowest
//! answer must be within what the fault can explain.

mod common;

use std::collections::HashSet;
use std::time::Instant;

use clusterless::localcluster::LocalCluster;
use common::*;

/// Keys in every master's slots; each phase of a test writes its own (`phase`), so that one
/// loop's tokens never meet another's.
fn loop_keys(phase: &str) -> Vec<String> {
    spread_keys(&format!("fo-{phase}"), 300)
}

/// CLUSTER FAILOVER: the old master hands over cleanly, so nothing may fail; then kill -9 of
/// another master: only the command in flight on it may fail, saying it may or may not have run.
async fn failover_and_kill(topo: Topo) {
    let mut env = start_topo(with_replicas(), topo, |_| {}).await;
    env.converges("start").await;
    let longest = longest_answer(env.proxy.config());

    let l = write_loop(env.url(), loop_keys("failover"), true);
    l.running().await;
    let m = env.cluster.masters()[0];
    let r = env.cluster.replicas_of(m)[0];
    tokio::task::block_in_place(|| env.cluster.failover(r)).expect("CLUSTER FAILOVER");
    env.converges("CLUSTER FAILOVER").await;
    let rep = l.finish().await;
    rep.errors_are("CLUSTER FAILOVER", |_| false);
    rep.verify(&env, None).await;
    assert!(rep.slowest < longest, "slowest answer {:?} (bound {longest:?})", rep.slowest);

    let l = write_loop(env.url(), loop_keys("kill"), true);
    l.running().await;
    let victim = env.cluster.masters()[1];
    tokio::task::block_in_place(|| env.cluster.kill9(victim)).expect("kill -9");
    // Taken once the signal is delivered: a write sent before this instant may have run on the
    // master unreplicated.
    let crash = Instant::now();
    tokio::task::block_in_place(|| env.cluster.wait_for_promotion(victim)).expect("promotion");
    env.converges("kill -9").await;
    let learned = Instant::now();
    let rep = l.finish().await;
    // Besides the command in flight on the dead master, a command is held at most
    // `failover_hold` for the new owner: when the cluster (and so the proxy) took longer than
    // that to promote a replica, a command sent earlier than that before the proxy learned of
    // the new owner gets the unreachable error, as documented.
    let hold = env.proxy.config().topology.failover_hold;
    rep.errors_are("kill -9", |f| {
        f.error.contains("may or may not have been executed")
            || (f.error.contains("is unreachable") && f.sent + hold <= learned)
    });
    let in_flight = rep.errors.iter().filter(|f| f.error.contains("may or may not")).count();
    assert!(in_flight <= 1, "one command in flight at the crash: {:?}", rep.errors);
    eprintln!("kill -9: promotion seen after {:?}, errors {:?}", learned - crash, rep.errors);
    let lost = rep.verify(&env, Some(crash)).await;
    if lost > 1 {
        for p in env.cluster.ports() {
            let log = std::fs::read_to_string(env.cluster.log_path(p)).unwrap_or_default();
            eprintln!(
                "--- node {p} (victim {victim})\n{}",
                log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
    assert!(lost <= 1, "one write in flight at the crash, {lost} lost");
    assert!(rep.slowest < longest, "slowest answer {:?} (bound {longest:?})", rep.slowest);
    let t = env.proxy.topology();
    assert!(
        t.nodes.iter().any(|n| n.addr.ends_with(&format!(":{victim}")) && n.failed),
        "the dead node is marked failed: {:?}",
        t.nodes
    );
}

/// SIGSTOP of a master until its replica took over, then SIGCONT: a command already written to
/// it waits for the request timeout and says it may have run; everything sent after the proxy
/// saw it failing is held for the new owner, not failed.
async fn sigstop_is_held(topo: Topo) {
    let mut env = start_topo(with_replicas(), topo, |_| {}).await;
    env.converges("start").await;
    let longest = longest_answer(env.proxy.config());
    let l = write_loop(env.url(), loop_keys("main"), true);
    l.running().await;
    let victim = env.cluster.masters()[2];
    tokio::task::block_in_place(|| env.cluster.sigstop(victim)).expect("SIGSTOP");
    let crash = Instant::now();
    tokio::task::block_in_place(|| env.cluster.wait_for_promotion(victim)).expect("promotion");
    tokio::task::block_in_place(|| env.cluster.sigcont(victim)).expect("SIGCONT");
    tokio::task::block_in_place(|| env.cluster.wait_ok(CLUSTER_PATIENCE)).expect("cluster healthy");
    env.converges("SIGSTOP, failover, SIGCONT").await;
    let rep = l.finish().await;
    rep.only_in_flight_failed(1);
    let lost = rep.verify(&env, Some(crash)).await;
    if lost > 1 {
        for p in env.cluster.ports() {
            let log = std::fs::read_to_string(env.cluster.log_path(p)).unwrap_or_default();
            eprintln!(
                "--- node {p} (victim {victim})\n{}",
                log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
    assert!(lost <= 1, "one write in flight at the stop, {lost} lost");
    assert!(rep.slowest < longest, "slowest answer {:?} (bound {longest:?})", rep.slowest);
}

/// A reshard of 1000 slots, a master added and given slots, then emptied and removed: MOVED and
/// ASK only, so nothing may fail; the removed node leaves the proxy's node list.
async fn reshard_add_remove(topo: Topo) {
    let mut env = start_topo(with_replicas(), topo, |_| {}).await;
    env.converges("start").await;
    let l = write_loop(env.url(), loop_keys("main"), true);
    l.running().await;
    let ms = env.cluster.masters();
    tokio::task::block_in_place(|| env.cluster.reshard(ms[0], ms[1], 1000)).expect("reshard");
    env.converges("reshard of 1000 slots").await;

    let new = tokio::task::block_in_place(|| env.cluster.add_master()).expect("add master");
    tokio::task::block_in_place(|| env.cluster.reshard(ms[1], new, 500)).expect("reshard to new");
    env.converges("adding a master").await;
    let new_addr = format!("127.0.0.1:{new}");
    assert!(env.proxy.topology().slot_owners().contains(&new_addr.as_str()));

    tokio::task::block_in_place(|| env.cluster.reshard(new, ms[2], 500)).expect("reshard away");
    tokio::task::block_in_place(|| env.cluster.remove_node(new)).expect("remove");
    env.converges("removing a master").await;
    // Vanished nodes are dropped: the bus observer asks CLUSTER NODES when a link goes down,
    // polling drops them at its next CLUSTER SHARDS.
    eventually("the removed node leaves the proxy's node list", || {
        !env.proxy.topology().nodes.iter().any(|n| n.addr == new_addr)
    })
    .await;
    let rep = l.finish().await;
    rep.errors_are("reshard, add and remove", |_| false);
    rep.verify(&env, None).await;
}

macro_rules! per_source {
    ($($name:ident => $scenario:ident),* $(,)?) => {
        mod bus {
            use super::*;
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { $scenario(Topo::Bus).await } )*
        }
        mod poll {
            use super::*;
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { $scenario(Topo::Poll).await } )*
        }
        mod observer {
            use super::*;
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { $scenario(Topo::Observer).await } )*
        }
    };
}

per_source! {
    failover_then_kill_9 => failover_and_kill,
    sigstop_of_a_master => sigstop_is_held,
    reshard_add_and_remove_a_master => reshard_add_remove,
}

/// The nodes' own tables list only the cluster's nodes, and none logged anything about the
/// observer's PINGs, after a kill -9 and a failover with the bus observer running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nodes_never_learn_of_the_bus_observer() {
    let mut env = start_topo(with_replicas(), Topo::Bus, |_| {}).await;
    let members: HashSet<String> = env.cluster.ids().into_values().collect();
    let before: std::collections::HashMap<u16, usize> =
        env.cluster.ports().into_iter().map(|p| (p, env.cluster.warnings(p).len())).collect();
    env.converges("start").await;
    let victim = env.cluster.masters()[1];
    tokio::task::block_in_place(|| env.cluster.kill9(victim)).expect("kill -9");
    tokio::task::block_in_place(|| env.cluster.wait_for_promotion(victim)).expect("promotion");
    env.converges("kill -9").await;
    tokio::task::block_in_place(|| nodes_never_saw_the_observer(&env.cluster, &members, &before));
}

fn nodes_never_saw_the_observer(
    cluster: &LocalCluster,
    members: &HashSet<String>,
    before: &std::collections::HashMap<u16, usize>,
) {
    let masters = cluster.masters();
    for port in masters.iter().copied().chain(masters.iter().flat_map(|&m| cluster.replicas_of(m))) {
        let nodes = cluster.cli(port, &["CLUSTER", "NODES"]).expect("CLUSTER NODES");
        for line in nodes.lines() {
            let id = line.split_whitespace().next().unwrap_or_default();
            assert!(members.contains(id), "node {port} lists a stranger: {line}");
            assert!(!line.contains("handshake"), "{line}");
        }
    }
    for port in cluster.ports() {
        for w in cluster.warnings(port).into_iter().skip(before.get(&port).copied().unwrap_or(0)) {
            for bad in [
                "Bad message",
                "invalid ping",
                "unknown packet",
                "proper padding",
                "from unknown node",
                "IP address for this node updated",
                "exceeds total packet",
            ] {
                assert!(!w.contains(bad), "node {port} logged about the observer: {w}");
            }
        }
    }
}
