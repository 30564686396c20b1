//! TLS toward the nodes (`[backend.tls]`): a real TLS cluster (`port 0`, `tls-port`,
//! `tls-cluster yes`, `tls-replication yes`, every node requiring a client certificate) behind the
//! proxy. The nodes speak nothing but TLS, so every command that succeeds went over it: routed
//! commands, fan-out, pub/sub, a transaction and a blocking pop (the dedicated connections), a
//! failover and a reshard under load with the gossip observer on the TLS bus. A bus that refuses
//! the observer's session (no client certificate, or one of another CA) is polled instead, and
//! the proxy says why; a CA that did not sign the nodes' certificates is refused at start; an
//! unusable file is one line at start.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use clusterless::config::{Config, ProxyArgs};
use clusterless::localcluster::{ClusterSpec, LocalCluster};
use clusterless::Running;
use common::http::{admin_on, get, scrape};
use common::tls::Certs;
use common::*;
use redis::AsyncCommands;

fn tls_cluster(certs: &Certs, auth_clients: &str, replicas: usize) -> ClusterSpec {
    ClusterSpec { replicas_per_master: replicas, tls: Some(certs.spec(auth_clients)), ..with_replicas() }
}

/// A TLS cluster (client certificates required) and a proxy with the CA and its own client
/// certificate, following the TLS bus.
async fn start_tls(certs: &Certs, replicas: usize) -> Env {
    let spec = tls_cluster(certs, "yes", replicas);
    let env = start_with(spec, |c| {
        certs.apply(c, &certs.ca, true);
        admin_on(c);
    })
    .await;
    assert!(env.proxy.bus_tls(), "the observer's bus links speak TLS");
    assert_eq!(env.proxy.bus_fallback(), None);
    env
}

/// Every kind of node connection over TLS: pooled (SET/GET on every master, MGET across slots),
/// subscriptions, a transaction and a blocking pop (dedicated), and the bus observer following
/// PONGs, as /metrics says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_route_over_tls() {
    let certs = Certs::new();
    let env = start_tls(&certs, 0).await;
    env.converges("start").await;
    let mut c = env.conn().await;

    let keys = spread_keys("tls", 30);
    let masters: std::collections::HashSet<_> = keys
        .iter()
        .filter_map(|k| env.proxy.topology().master_for(clusterless::slot::slot(k.as_bytes())).map(String::from))
        .collect();
    assert_eq!(masters.len(), 3, "the keys cover every master");
    for k in &keys {
        let () = c.set(k, format!("v-{k}")).await.expect("SET over TLS");
    }
    for k in &keys {
        let v: String = c.get(k).await.expect("GET over TLS");
        assert_eq!(v, format!("v-{k}"));
    }
    let got: Vec<String> = redis::cmd("MGET").arg(&keys).query_async(&mut c).await.expect("MGET across slots");
    assert_eq!(got, keys.iter().map(|k| format!("v-{k}")).collect::<Vec<_>>());

    // Pub/sub: a subscription connection to a node, and PUBLISH through another client.
    let mut sub = Raw::connect(env.addr()).await;
    sub.send(b"*2\r\n$9\r\nSUBSCRIBE\r\n$6\r\ntls-ch\r\n").await;
    assert_eq!(sub.read_replies(1).await, vec![b"*3\r\n$9\r\nsubscribe\r\n$6\r\ntls-ch\r\n:1\r\n".to_vec()]);
    // The message reaches the subscribed node over the (TLS) bus whichever master PUBLISH ran on.
    let n: i64 = redis::cmd("PUBLISH").arg("tls-ch").arg("warm").query_async(&mut c).await.expect("PUBLISH");
    assert!(n <= 1, "{n}");
    assert_eq!(sub.read_replies(1).await, vec![b"*3\r\n$7\r\nmessage\r\n$6\r\ntls-ch\r\n$4\r\nwarm\r\n".to_vec()]);
    // A shard channel: subscription and SPUBLISH on the slot's master, counted exactly.
    sub.send(b"*2\r\n$10\r\nSSUBSCRIBE\r\n$5\r\ntls-s\r\n").await;
    assert_eq!(sub.read_replies(1).await, vec![b"*3\r\n$10\r\nssubscribe\r\n$5\r\ntls-s\r\n:1\r\n".to_vec()]);
    let n: i64 = redis::cmd("SPUBLISH").arg("tls-s").arg("hi").query_async(&mut c).await.expect("SPUBLISH");
    assert_eq!(n, 1);
    assert_eq!(sub.read_replies(1).await, vec![b"*3\r\n$8\r\nsmessage\r\n$5\r\ntls-s\r\n$2\r\nhi\r\n".to_vec()]);

    // A transaction on a dedicated connection.
    let mut raw = Raw::connect(env.addr()).await;
    assert_eq!(raw.text(&["MULTI"]).await, "+OK\r\n");
    assert_eq!(raw.text(&["SET", "{tx}a", "1"]).await, "+QUEUED\r\n");
    assert_eq!(raw.text(&["INCR", "{tx}a"]).await, "+QUEUED\r\n");
    assert_eq!(raw.text(&["EXEC"]).await, "*2\r\n+OK\r\n:2\r\n");

    // A blocking pop on a dedicated connection, woken by a push through the pool.
    let mut blocked = Raw::connect(env.addr()).await;
    blocked.send(b"*3\r\n$5\r\nBLPOP\r\n$7\r\ntls-lst\r\n$1\r\n5\r\n").await;
    eventually_async("the BLPOP is blocked on its node", || {
        let mut c = c.clone();
        async move {
            let list: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut c).await.unwrap_or_default();
            list.contains("cmd=blpop")
        }
    })
    .await;
    let () = c.rpush("tls-lst", "x").await.expect("RPUSH");
    assert_eq!(blocked.read_replies(1).await, vec![b"*2\r\n$7\r\ntls-lst\r\n$1\r\nx\r\n".to_vec()]);

    let m = scrape(env.proxy.admin_addr().expect("admin")).await;
    assert_eq!(get(&m, "clusterless_bus_tls"), 1.0);
    assert_eq!(get(&m, "clusterless_topology_source{source=\"bus\"}"), 1.0);
    assert!(get(&m, "clusterless_observer_pongs_total") > 0.0, "PONGs came over the TLS bus");
    for r in ["unreachable", "tls_handshake", "no_client_cert"] {
        assert_eq!(get(&m, &format!("clusterless_bus_fallback{{reason=\"{r}\"}}")), 0.0, "{r}");
    }
}

/// CLUSTER FAILOVER and a reshard of 200 slots while a client loop writes through the proxy:
/// a clean handover fails nothing; a migration's moves are absorbed (ASK/MOVED followed); every
/// acknowledged write is there once; the map follows the cluster, from the TLS bus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_and_reshard_under_load() {
    let certs = Certs::new();
    let env = start_tls(&certs, 1).await;
    env.converges("start").await;

    let l = write_loop(env.url(), spread_keys("tls-fo", 200), true);
    l.running().await;
    let m = env.cluster.masters()[0];
    let r = env.cluster.replicas_of(m)[0];
    tokio::task::block_in_place(|| env.cluster.failover(r)).expect("CLUSTER FAILOVER");
    env.converges("CLUSTER FAILOVER over TLS").await;
    l.more_rounds(20).await;
    let ms = env.cluster.masters();
    tokio::task::block_in_place(|| env.cluster.reshard(ms[1], ms[2], 200)).expect("reshard");
    env.converges("reshard over TLS").await;
    l.more_rounds(20).await;
    let rep = l.finish().await;
    rep.errors_are("failover and reshard over TLS", |_| false);
    rep.verify(&env, None).await;
    assert_eq!(env.proxy.topology_source(), "bus", "the observer followed from the TLS bus");
    assert_eq!(env.proxy.bus_fallback(), None);
}

/// A proxy with the CA, a proxy with its own certificate and key, started as `clusterless` starts.
async fn proxy(cluster: &LocalCluster, certs: &Certs, pair: Option<(PathBuf, PathBuf)>) -> Running {
    let mut cfg = shipped_config(cluster.seed());
    certs.apply_pair(&mut cfg, &certs.ca, pair);
    clusterless::start(cfg).await.expect("start proxy")
}

/// A proxy trusting another CA cannot start, and says which node refused and why, on one line;
/// `backend.tls.server_name` is the name the certificates must carry instead of the node's IP.
/// Nodes that ask no client certificate (`tls-auth-clients no`) let a proxy without one, and one
/// whose certificate another CA signed, follow the TLS bus. Once the nodes require a certificate
/// their CA signed (`CONFIG SET tls-auth-clients yes`) and the bus links reconnect (every node
/// stopped past a PONG timeout), the bus refuses both: each polls and says why
/// (`bus_fallback{reason}` `no_client_cert` and `tls_handshake`), while a proxy with a good
/// certificate follows the same bus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_refusing_the_proxy_is_polled_and_a_wrong_ca_is_refused() {
    init_logs();
    let certs = Certs::new();
    let mut cluster =
        tokio::task::block_in_place(|| LocalCluster::start(&tls_cluster(&certs, "no", 0))).expect("TLS cluster");

    let mut cfg = shipped_config(cluster.seed());
    cfg.backend.connect_timeout = Duration::from_millis(500);
    certs.apply(&mut cfg, &certs.other_ca, false);
    let err = match clusterless::start(cfg).await {
        Ok(_) => panic!("a proxy trusting another CA started"),
        Err(e) => e.to_string(),
    };
    let want = format!("TLS handshake with {} failed: invalid peer certificate: UnknownIssuer", cluster.seed());
    assert!(err.starts_with("cannot reach the cluster: ") && err.contains(&want), "{err}");
    assert!(!err.contains('\n'), "{err}");

    // `server_name` replaces the announced IP as the name the certificates must carry.
    let named = |name: &str| {
        let mut cfg = shipped_config(cluster.seed());
        cfg.backend.connect_timeout = Duration::from_millis(500);
        let args = ProxyArgs {
            backend_tls_ca: Some(certs.ca.clone()),
            backend_tls_server_name: Some(name.into()),
            ..Default::default()
        };
        cfg.backend.tls = Config::load(&args).expect("backend.tls").backend.tls;
        cfg
    };
    let p = clusterless::start(named("localhost")).await.expect("the certificates name localhost");
    drop(p);
    let err = match clusterless::start(named("redis.example")).await {
        Ok(_) => panic!("a proxy wanting another name started"),
        Err(e) => e.to_string(),
    };
    let want = format!("TLS handshake with {} failed: invalid peer certificate: ", cluster.seed());
    assert!(err.contains(&want) && err.contains("redis.example"), "{err}");

    let bare = proxy(&cluster, &certs, None).await;
    let stranger = proxy(&cluster, &certs, Some((certs.stranger_cert.clone(), certs.stranger_key.clone()))).await;
    eventually("both follow the TLS bus while the nodes ask no certificate", || {
        [&bare, &stranger].iter().all(|p| p.topology_source() == "bus" && p.bus_tls() && p.bus_fallback().is_none())
    })
    .await;
    let mut c = client_conn(&format!("redis://{}/", bare.addr())).await;
    let () = c.set("bare", "1").await.expect("SET without a client certificate");

    let ports = cluster.ports();
    tokio::task::block_in_place(|| {
        for &p in &ports {
            assert_eq!(cluster.cli(p, &["CONFIG", "SET", "tls-auth-clients", "yes"]).expect("CONFIG SET"), "OK");
        }
    });
    for &p in &ports {
        tokio::task::block_in_place(|| cluster.sigstop(p)).expect("SIGSTOP");
    }
    eventually("the bus links are lost", || bare.bus_fallback().is_some() && stranger.bus_fallback().is_some()).await;
    for &p in &ports {
        tokio::task::block_in_place(|| cluster.sigcont(p)).expect("SIGCONT");
    }
    tokio::task::block_in_place(|| cluster.wait_ok(CLUSTER_PATIENCE)).expect("cluster healthy");
    let good = proxy(&cluster, &certs, Some((certs.client_cert.clone(), certs.client_key.clone()))).await;
    eventually("a proxy with a certificate of the nodes' CA follows the bus", || good.topology_source() == "bus").await;
    eventually("the bus refuses the proxy without a certificate, which says so", || {
        bare.bus_fallback() == Some("no_client_cert")
    })
    .await;
    eventually("the bus refuses the stranger's certificate, which says so", || {
        stranger.bus_fallback() == Some("tls_handshake")
    })
    .await;
    assert_eq!((bare.topology_source(), stranger.topology_source()), ("poll", "poll"));
}

/// Unusable TLS files stop the binary at start with one line naming the key and the file, exit
/// code 2, before any node is asked.
#[test]
fn bad_tls_files_are_one_line_at_start() {
    let certs = Certs::new();
    let garbage = certs.dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let (ca, cert, key) = (
        certs.ca.display().to_string(),
        certs.client_cert.display().to_string(),
        certs.client_key.display().to_string(),
    );
    let node_key = certs.node_key.display().to_string();
    let g = garbage.display().to_string();
    let seed = ["--seed", "127.0.0.1:1"];
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["--backend-tls-ca", "/nonexistent/ca.pem"],
            "invalid config: `backend.tls.ca_file`: cannot read /nonexistent/ca.pem: ".into(),
        ),
        (vec!["--backend-tls-ca", &g], format!("invalid config: `backend.tls.ca_file`: {g} holds no PEM certificate")),
        (
            vec!["--backend-tls-ca", &ca, "--backend-tls-cert", &g, "--backend-tls-key", &key],
            format!("invalid config: `backend.tls.cert_file`: {g} holds no PEM certificate"),
        ),
        (
            vec!["--backend-tls-ca", &ca, "--backend-tls-cert", &cert, "--backend-tls-key", &g],
            format!("invalid config: `backend.tls.key_file`: {g}: no usable PEM private key"),
        ),
        (
            vec!["--backend-tls-ca", &ca, "--backend-tls-cert", &cert, "--backend-tls-key", &node_key],
            format!("invalid config: `backend.tls.key_file`: {node_key} does not fit {cert}"),
        ),
        (
            vec!["--backend-tls-ca", &ca, "--backend-tls-cert", &cert],
            "invalid config: `backend.tls.key_file`: set together with backend.tls.cert_file".into(),
        ),
        (
            vec!["--backend-tls-cert", &cert, "--backend-tls-key", &key],
            "invalid config: `backend.tls.ca_file`: TLS toward the nodes needs the CA that signed their certificates"
                .into(),
        ),
    ];
    for (args, want) in cases {
        let all: Vec<&str> = seed.iter().copied().chain(args.iter().copied()).collect();
        let (code, stderr) = common::bin::run_env(&all, &[]);
        assert_eq!(code, 2, "{all:?}: {stderr}");
        let line = stderr.trim_end();
        assert!(!line.contains('\n'), "one line: {stderr}");
        assert!(line.contains(&want), "{all:?}: want {want:?} in {line:?}");
    }
    // The variable names the same key.
    let (code, stderr) = common::bin::run_env(&seed, &[("CLUSTERLESS_BACKEND_TLS_CA", g.as_str())]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains(&format!("invalid config: `backend.tls.ca_file`: {g} holds no PEM certificate")),
        "{stderr}"
    );
}
