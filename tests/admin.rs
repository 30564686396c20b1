//! The HTTP endpoints, checked against what the cluster says of itself: the proxy's admin
//! endpoint (`/topology` and the shared observer's `/v1/topology` compared field by field with
//! the nodes' own `CLUSTER NODES`, `/readyz` naming uncovered slots, 404/405), the metrics that a
//! failure, a topology source or the client limit must move by known amounts, and
//! `clusterless observe` run as a process (its snapshot, its watch stream across a failover, its
//! health and metrics, SIGTERM).

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clusterless::localcluster::LocalCluster;
use common::bin::{free_port, Bin};
use common::http::{admin_on, get, http, request, scrape};
use common::nodes::{cluster_nodes, merged, Truth};
use common::*;
use http_body_util::{BodyExt, Empty};
use serde_json::Value;

async fn json(addr: SocketAddr, path: &str) -> Value {
    let (status, body) = http(addr, "GET", path).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path} is not JSON ({e}): {body}"))
}

/// Waits until `check` finds nothing wrong; fails with its last complaint after [`PATIENCE`].
async fn until_ok<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        match check().await {
            Ok(()) => return,
            Err(why) => assert!(Instant::now() < deadline, "{what}: {why}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How a snapshot reports configEpochs: the bus reads them from the nodes' PONG headers (a
/// replica sends its master's, which is also what CLUSTER NODES lists for it); `CLUSTER SHARDS`
/// has none (null).
#[derive(Clone, Copy, PartialEq)]
enum Epochs {
    FromBus,
    Null,
}

/// What differs between a topology JSON (`/topology`, `/v1/topology`) and the cluster's own
/// `CLUSTER NODES`: every node's id, address, role, master, health, configEpoch and slot ranges,
/// and the uncovered count.
fn differs(v: &Value, truth: &[Truth], epochs: Epochs) -> Result<(), String> {
    let nodes = v["nodes"].as_array().ok_or("no nodes array")?;
    if nodes.len() != truth.len() {
        return Err(format!("{} nodes, the cluster lists {}: {v}", nodes.len(), truth.len()));
    }
    for t in truth {
        let n = nodes.iter().find(|n| n["id"] == t.id.as_str()).ok_or(format!("node {} missing", t.id))?;
        let ranges: Vec<(u16, u16)> = n["slots"]
            .as_array()
            .ok_or("slots is not an array")?
            .iter()
            .map(|r| (r[0].as_u64().unwrap() as u16, r[1].as_u64().unwrap() as u16))
            .collect();
        let want_epoch = match epochs {
            Epochs::Null => Value::Null,
            Epochs::FromBus => t.epoch.into(),
        };
        let want = serde_json::json!({
            "id": t.id,
            "address": t.address,
            "role": if t.master { "master" } else { "replica" },
            "master": t.master_id,
            "health": if t.failed { "fail" } else { "up" },
            "configEpoch": want_epoch,
        });
        let got = serde_json::json!({
            "id": n["id"], "address": n["address"], "role": n["role"], "master": n["master"],
            "health": n["health"], "configEpoch": n["configEpoch"],
        });
        if got != want {
            return Err(format!("node {}: {got} where the cluster says {want}", t.address));
        }
        if merged(ranges.clone()) != ranges || ranges != t.ranges {
            return Err(format!("node {}: slots {ranges:?} where the cluster says {:?}", t.address, t.ranges));
        }
    }
    let covered: usize = truth.iter().flat_map(|t| &t.ranges).map(|&(a, b)| (b - a) as usize + 1).sum();
    if v["uncovered_slots"] != 16384 - covered {
        return Err(format!("uncovered_slots {} where the cluster leaves {}", v["uncovered_slots"], 16384 - covered));
    }
    Ok(())
}

/// Waits until the JSON at `path` equals what node `port` says.
async fn matches_cluster(addr: SocketAddr, path: &str, cluster: &LocalCluster, port: u16, epochs: Epochs) {
    until_ok(&format!("{path} equals CLUSTER NODES"), || async {
        let truth = cluster_nodes(cluster, port);
        differs(&json(addr, path).await, &truth, epochs)
    })
    .await;
}

/// HEAD answers as GET does, headers only: same status and content type, the length GET's body
/// has (where it cannot change between the two requests), no body.
async fn head_like_get(addr: SocketAddr, paths: &[&str]) {
    for path in paths {
        let (head, get) = (request(addr, "HEAD", path).await, request(addr, "GET", path).await);
        assert_eq!(
            (head.status, head.body.as_str(), head.header("content-type")),
            (200, "", get.header("content-type")),
            "HEAD {path}: {head:?}"
        );
        if *path == "/healthz" {
            assert_eq!(head.header("content-length"), Some("3"), "HEAD {path}");
        }
    }
}

/// `GET /v1/topology/watch` on `addr`: its newline-delimited snapshots, one per message.
async fn watch(addr: SocketAddr) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect observer");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.expect("HTTP handshake");
    tokio::spawn(conn);
    let req = hyper::Request::get("/v1/topology/watch")
        .header(hyper::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.expect("watch request");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()[hyper::header::CONTENT_TYPE], "application/x-ndjson");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let _keep = sender;
        let mut body = resp.into_body();
        let mut buf = Vec::new();
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                buf.extend_from_slice(&data);
            }
            while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                if tx.send(String::from_utf8(line).unwrap()).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// The next snapshot of a watch stream, as JSON.
async fn next_snapshot(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> Value {
    let line = tokio::time::timeout(PATIENCE, rx.recv()).await.expect("a snapshot in time").expect("stream open");
    assert!(line.ends_with('\n') && !line.trim_end().contains('\n'), "one snapshot per line: {line:?}");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("watch line is not JSON ({e}): {line}"))
}

/// The id of the master owning `slot` in a snapshot.
fn owner_id(v: &Value, slot: u64) -> Option<String> {
    v["nodes"].as_array()?.iter().find_map(|n| {
        let owns = n["slots"].as_array()?.iter().any(|r| r[0].as_u64() <= Some(slot) && Some(slot) <= r[1].as_u64());
        owns.then(|| n["id"].as_str().unwrap().to_string())
    })
}

/// The proxy's `/topology` and a `clusterless observe` process's `/v1/topology` both equal the
/// cluster's own CLUSTER NODES, field by field, before and after a CLUSTER FAILOVER; the
/// observer's watch stream gives a snapshot at once and another with the new owner; version and
/// age_seconds are the proxy's own; other paths 404, other methods 405; SIGTERM exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_json_and_observer_match_cluster_nodes() {
    let env = start_with(with_replicas(), admin_on).await;
    env.converges("start").await;
    let admin = env.proxy.admin_addr().unwrap();
    let m0 = env.cluster.masters()[0];
    matches_cluster(admin, "/topology", &env.cluster, m0, Epochs::FromBus).await;

    // version is the map in use (read while it does not change), and the metric says the same.
    until_ok("/topology version is the proxy's", || async {
        let v0 = env.proxy.topology().version;
        let t = json(admin, "/topology").await;
        let m = get(&scrape(admin).await, "clusterless_topology_version");
        let v1 = env.proxy.topology().version;
        match (v0 == v1, t["version"].as_u64()) {
            (true, Some(v)) if v == v0 && m == v0 as f64 && v > 0 => Ok(()),
            (true, v) => Err(format!("JSON version {v:?}, metric {m}, proxy {v0}")),
            (false, _) => Err("changed meanwhile".into()),
        }
    })
    .await;
    // age_seconds is the age of that map: it grows with the time that passes while it holds.
    until_ok("age_seconds grows with time", || async {
        let a = json(admin, "/topology").await;
        let t = Instant::now();
        // Let time pass on purpose: the age must grow by it.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let b = json(admin, "/topology").await;
        let waited = t.elapsed().as_secs_f64();
        if a["version"] != b["version"] {
            return Err("the map changed meanwhile".into());
        }
        let (x, y) = (a["age_seconds"].as_f64().unwrap(), b["age_seconds"].as_f64().unwrap());
        let grew = y - x;
        if x >= 0.0 && (0.35..=waited + 0.2).contains(&grew) {
            Ok(())
        } else {
            Err(format!("age {x} then {y} after {waited} s"))
        }
    })
    .await;

    for path in ["/", "/topology/", "/metrics/x", "/v1/topology", "/healthz2"] {
        assert_eq!(http(admin, "GET", path).await, (404, "not found\n".to_string()), "GET {path}");
    }
    for path in ["/metrics", "/healthz", "/readyz", "/topology"] {
        for method in ["POST", "PUT", "DELETE"] {
            let a = request(admin, method, path).await;
            assert_eq!((a.status, a.header("allow")), (405, Some("GET, HEAD")), "{method} {path}");
        }
    }
    head_like_get(admin, &["/metrics", "/healthz", "/readyz", "/topology"]).await;
    assert_eq!(http(admin, "GET", "/healthz").await, (200, "ok\n".to_string()));
    assert_eq!(http(admin, "GET", "/readyz").await, (200, "ready\n".to_string()));

    // The shared observer, as the real binary's subcommand.
    let port = free_port();
    let obs_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut obs = Bin::spawn(&["observe", "--seed", &env.cluster.seed(), "--http", &obs_addr.to_string()]);
    eventually_async("the observer serves /healthz", || async {
        tokio::net::TcpStream::connect(obs_addr).await.is_ok()
    })
    .await;
    assert_eq!(http(obs_addr, "GET", "/healthz").await, (200, "ok\n".to_string()));
    matches_cluster(obs_addr, "/v1/topology", &env.cluster, m0, Epochs::FromBus).await;
    assert_eq!(http(obs_addr, "GET", "/topology").await.0, 404);
    assert_eq!(http(obs_addr, "GET", "/v1/topology/").await.0, 404);
    for (method, path) in [("POST", "/v1/topology"), ("DELETE", "/v1/topology/watch"), ("PUT", "/healthz")] {
        let a = request(obs_addr, method, path).await;
        assert_eq!((a.status, a.header("allow")), (405, Some("GET, HEAD")), "{method} {path}");
    }
    head_like_get(obs_addr, &["/metrics", "/healthz", "/v1/topology"]).await;
    // The watch stream's headers, and the answer ends (a stream nobody reads is not started).
    let watch_head = request(obs_addr, "HEAD", "/v1/topology/watch").await;
    assert_eq!(
        (watch_head.status, watch_head.body.as_str(), watch_head.header("content-type")),
        (200, "", Some("application/x-ndjson"))
    );
    eventually_async("the observer counts PONGs", || async {
        get(&scrape(obs_addr).await, "clusterless_observer_pongs_total") > 0.0
    })
    .await;

    // The watch stream: the current snapshot at once, then one per change.
    let mut rx = watch(obs_addr).await;
    let first = next_snapshot(&mut rx).await;
    let now = json(obs_addr, "/v1/topology").await;
    assert_eq!(first["nodes"], now["nodes"], "the first line is the current snapshot");
    let slot = env.cluster.slots_of(m0)[0] as u64;
    let (old_id, new) = (env.cluster.node_id(m0).unwrap(), env.cluster.replicas_of(m0)[0]);
    let new_id = env.cluster.node_id(new).unwrap();
    assert_eq!(owner_id(&first, slot).as_deref(), Some(old_id.as_str()));
    tokio::task::block_in_place(|| env.cluster.failover(new)).expect("CLUSTER FAILOVER");
    let mut version = first["version"].as_u64().unwrap();
    loop {
        let s = next_snapshot(&mut rx).await;
        let v = s["version"].as_u64().unwrap();
        assert!(v > version, "versions increase along the stream: {version} then {v}");
        version = v;
        if owner_id(&s, slot).as_deref() == Some(new_id.as_str()) {
            break;
        }
    }
    // After the failover both snapshots still equal the cluster's own account (roles swapped).
    matches_cluster(obs_addr, "/v1/topology", &env.cluster, new, Epochs::FromBus).await;
    matches_cluster(admin, "/topology", &env.cluster, new, Epochs::FromBus).await;

    obs.signal("TERM");
    let code = obs.exit_code(PATIENCE).await;
    assert_eq!(code, Some(0), "observe exits 0 on SIGTERM; log: {}", obs.log());
}

/// `/readyz` is 503 naming how many slots have no master, as long as the cluster leaves them
/// unassigned (CLUSTER DELSLOTS everywhere, with `cluster-require-full-coverage no` so the nodes
/// keep serving the rest), and 200 again once a master claims them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_uncovered_slots() {
    init_logs();
    let cluster = tokio::task::block_in_place(|| LocalCluster::start(&small())).expect("cluster");
    let ports = cluster.ports();
    for &p in &ports {
        tokio::task::block_in_place(|| cluster.cli(p, &["CONFIG", "SET", "cluster-require-full-coverage", "no"]))
            .unwrap();
    }
    let owner = cluster.masters()[1];
    let owned = cluster.slots_of(owner);
    let gone = [owned[0], owned[100]];
    let gone_s: Vec<String> = gone.iter().map(u16::to_string).collect();
    // The owner first (so that no PONG of its claims them again), then every other node's view.
    let mut args = vec!["CLUSTER", "DELSLOTS"];
    args.extend(gone_s.iter().map(String::as_str));
    tokio::task::block_in_place(|| cluster.cli(owner, &args)).unwrap();
    until_ok("no node lists the deleted slots", || async {
        let mut still = Vec::new();
        for &p in &ports {
            let lists = cluster_nodes(&cluster, p)
                .iter()
                .any(|t| t.ranges.iter().any(|&(a, b)| gone.iter().any(|&s| a <= s && s <= b)));
            if lists {
                let _ = tokio::task::block_in_place(|| cluster.cli(p, &args));
                still.push(p);
            }
        }
        if still.is_empty() {
            Ok(())
        } else {
            Err(format!("{still:?} still list them"))
        }
    })
    .await;

    // The proxy starts on that cluster.
    let mut cfg = shipped_config(cluster.seed());
    admin_on(&mut cfg);
    let proxy = clusterless::start(cfg).await.expect("proxy");
    let admin = proxy.admin_addr().unwrap();
    assert_eq!(http(admin, "GET", "/readyz").await, (503, "2 slots have no master\n".to_string()));
    matches_cluster(admin, "/topology", &cluster, owner, Epochs::FromBus).await;
    let s = scrape(admin).await;
    assert_eq!(get(&s, "clusterless_slots_uncovered"), 2.0);
    assert_eq!(get(&s, "clusterless_masters"), 3.0);
    // Everything else is served; a key of a deleted slot gets Redis Cluster's error.
    let mut c = Raw::connect(proxy.addr()).await;
    let other = key_in_slot(owned[1], "k");
    assert_eq!(c.cmd(&[b"SET", other.as_bytes(), b"v"]).await, b"+OK\r\n");
    let lost = key_in_slot(gone[0], "k");
    assert_eq!(c.text(&["GET", &lost]).await, "-CLUSTERDOWN Hash slot not served\r\n");

    // A master claims them again: ready.
    let mut add = vec!["CLUSTER", "ADDSLOTS"];
    add.extend(gone_s.iter().map(String::as_str));
    tokio::task::block_in_place(|| cluster.cli(owner, &add)).unwrap();
    eventually_async("/readyz is 200 once every slot has a master", || async {
        http(admin, "GET", "/readyz").await == (200, "ready\n".to_string())
    })
    .await;
    assert_eq!(json(admin, "/topology").await["uncovered_slots"], 0);
    assert_eq!(get(&scrape(admin).await, "clusterless_slots_uncovered"), 0.0);
    assert_eq!(c.text(&["GET", &lost]).await, "$-1\r\n");
}

/// kill -9 of a master with a replica while a client reads from it: the read is held until the
/// replica takes over (one held request, its wait recorded, retries counted), the dead node's
/// connection counts as lost (no other node's does), its connections drop to 0, and the bus marks
/// it failed or unreachable while every other node stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_moves_the_failure_metrics() {
    let mut env = start_with(with_replicas(), admin_on).await;
    env.converges("start").await;
    let admin = env.proxy.admin_addr().unwrap();
    let victim = env.cluster.masters()[1];
    let victim_addr = format!("127.0.0.1:{victim}");
    let key = key_in_slot(env.cluster.slots_of(victim)[0], "held");
    let k = key.as_bytes();
    let mut c = Raw::connect(env.addr()).await;
    assert_eq!(c.cmd(&[b"SET", k, b"v"]).await, b"+OK\r\n");
    // On the replica before the crash.
    assert_eq!(c.cmd(&[b"WAIT", b"1", b"5000"]).await, b":1\r\n");
    let nodes: Vec<String> = env.cluster.ports().iter().map(|p| format!("127.0.0.1:{p}")).collect();
    until_ok("every node up on the bus", || async {
        let s = scrape(admin).await;
        let bad: Vec<_> =
            nodes.iter().filter(|n| s.get(&format!("clusterless_node_health{{node=\"{n}\"}}")) != Some(&0.0)).collect();
        if bad.is_empty() {
            Ok(())
        } else {
            Err(format!("{bad:?}"))
        }
    })
    .await;
    let before = scrape(admin).await;
    let conns =
        |s: &HashMap<String, f64>| get(s, &format!("clusterless_backend_connections{{node=\"{victim_addr}\"}}"));
    assert!(conns(&before) >= 1.0, "a connection to the victim before the crash");

    tokio::task::block_in_place(|| env.cluster.kill9(victim)).unwrap();
    let sent = Instant::now();
    let reply = c.text(&["GET", &key]).await;
    let took = sent.elapsed();
    let hold = env.proxy.config().topology.failover_hold;
    // Held for the new owner and answered by it; or, when the cluster took longer than the hold
    // to promote the replica, the documented unreachable error once the hold ran out.
    assert!(reply == "$1\r\nv\r\n" || (took >= hold && reply.contains("is unreachable")), "after {took:?}: {reply}");
    tokio::task::block_in_place(|| env.cluster.wait_for_promotion(victim)).unwrap();
    env.converges("kill -9").await;

    let after = scrape(admin).await;
    let delta = |k: &str| get(&after, k) - get(&before, k);
    assert_eq!(delta("clusterless_requests_held_total"), 1.0, "the one read sent after the crash");
    assert_eq!(delta("clusterless_request_hold_seconds_count"), 1.0);
    let waited = delta("clusterless_request_hold_seconds_sum");
    // The nodes declare a master failed after cluster-node-timeout (2 s in the harness).
    assert!(waited > 1.0 && waited <= took.as_secs_f64(), "held {waited} s of the {took:?} the read took");
    assert!(delta("clusterless_retries_total") >= 1.0, "the held read was tried again");
    let lost = |n: &str| delta(&format!("clusterless_backend_errors_total{{kind=\"lost\",node=\"{n}\"}}"));
    assert!(lost(&victim_addr) >= 1.0, "the victim's connection counted lost");
    for n in nodes.iter().filter(|n| **n != victim_addr) {
        for kind in ["lost", "timeout", "connect"] {
            let d = delta(&format!("clusterless_backend_errors_total{{kind=\"{kind}\",node=\"{n}\"}}"));
            assert_eq!(d, 0.0, "{kind} errors on the live node {n}");
        }
    }
    eventually_async("no connection to the dead node", || async { conns(&scrape(admin).await) == 0.0 }).await;
    until_ok("node_health: the victim failed or unreachable, the others up", || async {
        let s = scrape(admin).await;
        let h = |n: &str| s.get(&format!("clusterless_node_health{{node=\"{n}\"}}")).copied();
        let v = h(&victim_addr);
        let others: Vec<_> = nodes.iter().filter(|n| **n != victim_addr).map(|n| (n, h(n))).collect();
        if matches!(v, Some(2.0) | Some(3.0)) && others.iter().all(|(_, h)| *h == Some(0.0)) {
            Ok(())
        } else {
            Err(format!("victim {v:?}, others {others:?}"))
        }
    })
    .await;
}

/// `topology.source = "poll"` (the test is about that setting): the metric says poll and only
/// poll, the bus is never pinged, no bus health is reported, and the map (without configEpochs:
/// CLUSTER SHARDS has none) equals CLUSTER NODES.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_source_metrics() {
    let env = start_topo(small(), Topo::Poll, admin_on).await;
    let admin = env.proxy.admin_addr().unwrap();
    let mut c = Raw::connect(env.addr()).await;
    assert_eq!(c.cmd(&[b"SET", b"p", b"1"]).await, b"+OK\r\n");
    // Let time pass on purpose: a bus observer would have pinged every node in it (every 250 ms).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let s = scrape(admin).await;
    assert_eq!(sources(&s), [0.0, 0.0, 1.0, 0.0], "bootstrap, bus, poll, observer");
    assert_eq!(get(&s, "clusterless_observer_pings_total"), 0.0, "polling never pings the bus");
    assert_eq!(get(&s, "clusterless_observer_pongs_total"), 0.0);
    assert!(!s.keys().any(|k| k.starts_with("clusterless_node_health")), "no bus health without the bus");
    let m0 = env.cluster.masters()[0];
    matches_cluster(admin, "/topology", &env.cluster, m0, Epochs::Null).await;
}

/// `clusterless_topology_source{source}` for bootstrap, bus, poll and observer, in that order
/// (NaN when a series is missing).
fn sources(s: &HashMap<String, f64>) -> [f64; 4] {
    ["bootstrap", "bus", "poll", "observer"]
        .map(|k| s.get(&format!("clusterless_topology_source{{source=\"{k}\"}}")).copied().unwrap_or(f64::NAN))
}

/// `clusterless_topology_source` says what serves the map from the first moment. Right after
/// start-up, before any task of the proxy has run (this runtime has one thread, and runs them
/// only when the test awaits), `bootstrap`: the map is the start-up CLUSTER SHARDS read, neither
/// bus nor poll. Scraped from then on, it stays `bootstrap` until the bus takes over, `bus` only
/// once a PONG arrived, and never `poll` (the bus did not fail). With `topology.source = "poll"`
/// (the setting under test there) it says `poll` at once; a proxy following a shared observer says
/// `bootstrap` until the observer's first snapshot, then `observer`.
#[tokio::test]
async fn topology_source_is_bootstrap_until_a_source_serves_the_map() {
    init_logs();
    // Blocking is fine here: nothing else runs on this runtime yet.
    let cluster = LocalCluster::start(&small()).expect("cluster");
    let start = |tweak: &dyn Fn(&mut clusterless::config::Config)| {
        let mut cfg = shipped_config(cluster.seed());
        admin_on(&mut cfg);
        tweak(&mut cfg);
        clusterless::start(cfg)
    };
    let proxy = start(&|_| {}).await.expect("proxy");
    assert_eq!(proxy.topology_source(), "bootstrap");
    let admin = proxy.admin_addr().unwrap();
    let deadline = Instant::now() + PATIENCE;
    let mut bootstrap_seen = 0;
    loop {
        let s = scrape(admin).await;
        match sources(&s) {
            [1.0, 0.0, 0.0, 0.0] => bootstrap_seen += 1,
            [0.0, 1.0, 0.0, 0.0] => {
                assert!(get(&s, "clusterless_observer_pongs_total") > 0.0, "bus before any PONG");
                break;
            }
            other => panic!("bootstrap, bus, poll, observer = {other:?} after {bootstrap_seen} bootstrap scrapes"),
        }
        assert!(Instant::now() < deadline, "the bus never took over");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(proxy.topology_source(), "bus");

    let polling = start(&|c| c.topology.source = clusterless::config::Source::Poll).await.expect("proxy");
    assert_eq!(polling.topology_source(), "poll");
    assert_eq!(sources(&scrape(polling.admin_addr().unwrap()).await), [0.0, 0.0, 1.0, 0.0]);

    let observer = clusterless::start_observer(&shipped_config(cluster.seed()), "127.0.0.1:0".parse().unwrap())
        .await
        .expect("observer");
    let url = format!("http://{}", observer.addr());
    let following = start(&|c| c.topology.observer = Some(url.clone())).await.expect("proxy");
    assert_eq!(following.topology_source(), "bootstrap");
    eventually("the shared observer's snapshot serves the map", || following.topology_source() == "observer").await;
    assert_eq!(sources(&scrape(following.admin_addr().unwrap()).await), [0.0, 0.0, 0.0, 1.0]);
}

/// `limits.max_clients = 2` (the test is about that setting): a third client gets Redis's error
/// and is closed; the gauge and the accepted and rejected totals count exactly that, and a slot
/// freed by a client leaving is taken by the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_clients_and_connection_metrics() {
    let env = start_with(small(), |c| {
        admin_on(c);
        c.limits.max_clients = 2;
    })
    .await;
    let admin = env.proxy.admin_addr().unwrap();
    let mut a = Raw::connect(env.addr()).await;
    let mut b = Raw::connect(env.addr()).await;
    assert_eq!(a.cmd(&[b"PING"]).await, b"+PONG\r\n");
    assert_eq!(b.cmd(&[b"PING"]).await, b"+PONG\r\n");
    let mut c = Raw::connect(env.addr()).await;
    assert_eq!(c.read_replies(1).await, vec![b"-ERR max number of clients reached\r\n".to_vec()]);
    assert!(c.closed().await, "the rejected client is closed");
    let s = scrape(admin).await;
    assert_eq!(get(&s, "clusterless_client_connections"), 2.0);
    assert_eq!(get(&s, "clusterless_client_connections_accepted_total"), 2.0);
    assert_eq!(get(&s, "clusterless_client_connections_rejected_total"), 1.0);

    drop(a);
    eventually_async("the gauge drops when a client leaves", || async {
        get(&scrape(admin).await, "clusterless_client_connections") == 1.0
    })
    .await;
    let mut d = Raw::connect(env.addr()).await;
    assert_eq!(d.cmd(&[b"PING"]).await, b"+PONG\r\n");
    let s = scrape(admin).await;
    assert_eq!(get(&s, "clusterless_client_connections"), 2.0);
    assert_eq!(get(&s, "clusterless_client_connections_accepted_total"), 3.0);
    assert_eq!(get(&s, "clusterless_client_connections_rejected_total"), 1.0);
    assert_eq!(b.cmd(&[b"PING"]).await, b"+PONG\r\n");
}
