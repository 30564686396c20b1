//! Topology sources beyond the shared failure suite (tests/failover.rs): a proxy following a
//! shared observer that dies falls back to polling and keeps following the cluster; answers that
//! come late from a master deposed meanwhile are not trusted.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_follows_a_shared_observer_and_falls_back_to_polling() {
    let mut env = start_topo(with_replicas(), Topo::Observer, |_| {}).await;
    env.converges("start").await;
    // The observer's JSON carries what the bus says: every master's configEpoch.
    let observer = env.observer.as_ref().expect("observer");
    eventually("every master's configEpoch in the observer's snapshot", || {
        let t = observer.topology();
        t.nodes.iter().filter(|n| n.role == clusterless::Role::Master).all(|n| n.config_epoch.is_some())
    })
    .await;
    let l = write_loop(env.url(), spread_keys("obs", 300), true);
    l.running().await;
    let m = env.cluster.masters()[0];
    let r = env.cluster.replicas_of(m)[0];
    tokio::task::block_in_place(|| env.cluster.failover(r)).expect("failover");
    env.converges("CLUSTER FAILOVER seen through the shared observer").await;

    // The observer dies: the proxy polls on its own and keeps following the cluster.
    env.observer = None;
    eventually("the proxy falls back to polling", || env.proxy.topology_source() == "poll").await;
    let m = env.cluster.masters()[1];
    let r = env.cluster.replicas_of(m)[0];
    tokio::task::block_in_place(|| env.cluster.failover(r)).expect("failover");
    env.converges("CLUSTER FAILOVER while polling").await;
    let rep = l.finish().await;
    rep.errors_are("CLUSTER FAILOVER", |_| false);
    rep.verify(&env, None).await;
}

/// A master stopped with reads already written to it is deposed meanwhile, the key is written on
/// its successor, then the old master resumes and answers: its answers are stale. A lone GET and a
/// read-only MULTI/GET/EXEC are asked again of the new owner and see the new value; under WATCH
/// (the watch was on the deposed node) EXEC answers nil, so the client watches and tries again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_reads_from_a_deposed_master_are_asked_again() {
    // Long enough for the stopped master's answers to arrive rather than time out.
    let mut env = start_with(with_replicas(), |c| {
        c.backend.request_timeout = Duration::from_secs(25);
        // One node connection carries the GET and the transaction: the resumed node reads both in
        // one go.
        c.limits.threads = 1;
        c.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    env.converges("start").await;
    let victim = env.cluster.masters()[0];
    let slot = env.cluster.slots_of(victim)[0];
    let key = key_in_slot(slot, "late");
    let k = key.as_bytes();
    let text =
        |replies: Vec<Vec<u8>>| replies.iter().map(|r| String::from_utf8_lossy(r).into_owned()).collect::<Vec<_>>();
    let mut c = Raw::connect(env.addr()).await;
    assert_eq!(c.cmd(&[b"SET", k, b"old"]).await, b"+OK\r\n");
    let (mut get, mut tx, mut wtx) =
        (Raw::connect(env.addr()).await, Raw::connect(env.addr()).await, Raw::connect(env.addr()).await);
    tx.send(
        &[clusterless::resp::encode_command(&[b"MULTI"]), clusterless::resp::encode_command(&[b"GET", k])].concat(),
    )
    .await;
    assert_eq!(text(tx.read_replies(2).await), ["+OK\r\n", "+QUEUED\r\n"]);
    for cmd in [&[&b"WATCH"[..], k][..], &[b"MULTI"], &[b"GET", k]] {
        wtx.send(&clusterless::resp::encode_command(cmd)).await;
    }
    assert_eq!(text(wtx.read_replies(3).await), ["+OK\r\n", "+OK\r\n", "+QUEUED\r\n"]);

    tokio::task::block_in_place(|| env.cluster.sigstop(victim)).unwrap();
    get.send(&clusterless::resp::encode_command(&[b"GET", k])).await;
    tx.send(&clusterless::resp::encode_command(&[b"EXEC"])).await;
    wtx.send(&clusterless::resp::encode_command(&[b"EXEC"])).await;
    tokio::task::block_in_place(|| env.cluster.wait_for_promotion(victim)).unwrap();
    let old = format!("127.0.0.1:{victim}");
    eventually("the proxy's map has the slot's new owner", || {
        env.proxy.topology().master_for(slot).is_some_and(|a| a != old)
    })
    .await;
    assert_eq!(c.cmd(&[b"SET", k, b"new"]).await, b"+OK\r\n");
    tokio::task::block_in_place(|| env.cluster.sigcont(victim)).unwrap();

    assert_eq!(text(get.read_replies(1).await), ["$3\r\nnew\r\n"], "lone GET");
    assert_eq!(text(tx.read_replies(1).await), ["*1\r\n$3\r\nnew\r\n"], "read-only transaction");
    assert_eq!(text(wtx.read_replies(1).await), ["*-1\r\n"], "read-only transaction under WATCH");
    // Each came back late from the deposed master (every one of 6 runs), or was redirected by it
    // when the resumed node read its cluster bus first.
    let m = &env.proxy;
    let (late, moved) = (m.redirects("late"), m.redirects("moved"));
    assert!(late + moved >= 3, "late answers asked again: {late}, moved: {moved}");
}
