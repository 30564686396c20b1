//! Clusters that advertise hostnames (`cluster-announce-hostname` with
//! `cluster-preferred-endpoint-type hostname`, as Kubernetes operators set them up), no endpoint
//! (`unknown-endpoint`), or run on IPv6: the proxy knows a node by its id whatever address names
//! it, connects where the cluster tells clients to, never publishes a map in which a slot lost its
//! owner, and follows a node restarted on a new address.

mod common;

use clusterless::localcluster::ClusterSpec;
use common::*;
use redis::AsyncCommands;

fn hostname_cluster() -> ClusterSpec {
    ClusterSpec { hostname: Some("localhost".into()), endpoint_type: Some("hostname".into()), ..with_replicas() }
}

/// The proxy's map has no uncovered slot, names each master once, by its advertised endpoint,
/// and never published a map in which a slot lost its owner.
fn map_is_whole(env: &Env, prefix: &str, masters: usize, what: &str) {
    let t = env.proxy.topology();
    assert_eq!(t.uncovered(), 0, "{what}: uncovered slots");
    let owners = t.slot_owners();
    assert_eq!(owners.len(), masters, "{what}: masters {owners:?}");
    assert!(owners.iter().all(|a| a.starts_with(prefix)), "{what}: owners not addressed by {prefix}: {owners:?}");
    assert_eq!(env.proxy.slots_unassigned(), 0, "{what}: a published map lost a slot's owner");
}

/// Each source in turn learns the map: bootstrap (CLUSTER SHARDS: `localhost:P`), then the bus
/// (which knows nodes by `127.0.0.1:P`). No map between loses an owner; a MOVED naming the
/// hostname finds the node it names; failover and reshard keep the hostnames.
async fn hostnames(topo: Topo) {
    let mut env = start_topo(hostname_cluster(), topo, |_| {}).await;
    env.converges("start").await;
    map_is_whole(&env, "localhost:", 3, "start");
    let mut c = env.conn().await;
    let _: () = c.set("k", "v").await.expect("SET");

    // A stale map: the slot of `k` pointed at another master, which answers MOVED localhost:P.
    let slot = clusterless::slot::slot(b"k");
    let owner = env.proxy.topology().master_for(slot).map(str::to_string).expect("owner");
    let other = env.proxy.topology().slot_owners().into_iter().find(|a| *a != owner).map(str::to_string);
    env.proxy.misroute_slot(slot, &other.expect("another master"));
    let v: String = c.get("k").await.expect("GET after MOVED");
    assert_eq!(v, "v");
    assert_eq!(env.proxy.topology().master_for(slot), Some(owner.as_str()), "the MOVED found the node");
    map_is_whole(&env, "localhost:", 3, "MOVED naming a hostname");

    let l = write_loop(env.url(), spread_keys("hn", 200), true);
    l.running().await;
    let m = env.cluster.masters()[0];
    let r = env.cluster.replicas_of(m)[0];
    tokio::task::block_in_place(|| env.cluster.failover(r)).expect("failover");
    env.converges("CLUSTER FAILOVER").await;
    let ms = env.cluster.masters();
    tokio::task::block_in_place(|| env.cluster.reshard(ms[0], ms[1], 200)).expect("reshard");
    env.converges("reshard").await;
    let rep = l.finish().await;
    rep.errors_are("failover and reshard of a hostname cluster", |_| false);
    rep.verify(&env, None).await;
    map_is_whole(&env, "localhost:", 3, "failover and reshard");

    // A master restarted on a new port keeps its id and hostname (a pod with a new address): the
    // proxy follows it, and its slots never lose their owner meanwhile.
    let victim = env.cluster.masters()[2];
    let slots = env.cluster.slots_of(victim);
    let new = tokio::task::block_in_place(|| env.cluster.restart_on_new_port(victim)).expect("restart");
    let want = format!("localhost:{new}");
    eventually("the proxy follows the master to its new port", || {
        env.proxy.topology().master_for(slots[0]) == Some(want.as_str())
    })
    .await;
    tokio::task::block_in_place(|| env.cluster.wait_ok(CLUSTER_PATIENCE)).expect("cluster healthy");
    let key = key_in_slot(slots[0], "moved-pod");
    let _: () = c.set(&key, "there").await.expect("SET on the restarted master");
    let mut direct = env.node(new).await;
    let v: String = direct.get(&key).await.expect("GET on the node itself");
    assert_eq!(v, "there");
    map_is_whole(&env, "localhost:", 3, "restart on a new port");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostnames_on_the_bus() {
    hostnames(Topo::Bus).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostnames_polled() {
    hostnames(Topo::Poll).await
}

/// `unknown-endpoint`: nodes are reached where the seed was, on their own ports, and a MOVED
/// `:port` too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_endpoints_are_reached_where_the_seed_was() {
    let spec = ClusterSpec { endpoint_type: Some("unknown-endpoint".into()), ..small() };
    let cluster =
        tokio::task::block_in_place(|| clusterless::localcluster::LocalCluster::start(&spec)).expect("cluster");
    // Seeded by name: the proxy must use that name, since the nodes advertise no endpoint.
    let seed = cluster.seed().replace("127.0.0.1", "localhost");
    let cfg = shipped_config(seed);
    let proxy = clusterless::start(cfg).await.expect("proxy");
    let env = Env { proxy, observer: None, cluster };
    env.converges("start").await;
    map_is_whole(&env, "localhost:", 3, "start");
    let slot = clusterless::slot::slot(b"k");
    let owner = env.proxy.topology().master_for(slot).map(str::to_string).expect("owner");
    let other = env.proxy.topology().slot_owners().into_iter().find(|a| *a != owner).map(str::to_string);
    env.proxy.misroute_slot(slot, &other.expect("another master"));
    let mut c = env.conn().await;
    let _: () = c.set("k", "v").await.expect("SET after MOVED :port");
    assert_eq!(env.proxy.topology().master_for(slot), Some(owner.as_str()));
    map_is_whole(&env, "localhost:", 3, "MOVED :port");
}

/// A cluster on ::1: Redis writes its addresses without brackets (`::1:7000`, `MOVED 7365 ::1:7001`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv6_cluster() {
    let env = start_topo(ClusterSpec { host: "::1".into(), ..small() }, Topo::Bus, |_| {}).await;
    env.converges("start").await;
    map_is_whole(&env, "[::1]:", 3, "start");
    let mut c = env.conn().await;
    let keys = spread_keys("v6", 50);
    let pairs: Vec<(&String, usize)> = keys.iter().zip(0..).collect();
    let _: () = c.mset(&pairs).await.expect("MSET over every master");
    let got: Vec<usize> = c.mget(&keys).await.expect("MGET");
    assert_eq!(got, (0..50).collect::<Vec<_>>());
    let slot = clusterless::slot::slot(keys[0].as_bytes());
    let owner = env.proxy.topology().master_for(slot).map(str::to_string).expect("owner");
    let other = env.proxy.topology().slot_owners().into_iter().find(|a| *a != owner).map(str::to_string);
    env.proxy.misroute_slot(slot, &other.expect("another master"));
    let v: usize = c.get(&keys[0]).await.expect("GET after MOVED ::1:port");
    assert_eq!(v, 0);
    assert_eq!(env.proxy.topology().master_for(slot), Some(owner.as_str()));
    map_is_whole(&env, "[::1]:", 3, "MOVED on IPv6");
}
