//! Operations: the admin HTTP endpoint (metrics that move by the expected amounts after real
//! traffic and pass `promtool check metrics`, health, readiness, topology JSON, 404/405), graceful
//! drain on SIGTERM with a pipelined client in flight, and the deploy/ files.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use redis::AsyncCommands;
use serde::Deserialize;

/// A minimal HTTP/1.1 GET (or other method), returning status and body.
async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    tokio::task::block_in_place(|| {
        let mut s = std::net::TcpStream::connect(addr).expect("connect admin");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        (status, body)
    })
}

/// Parses the Prometheus text format into `name{labels}` -> value.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn get(s: &HashMap<String, f64>, key: &str) -> f64 {
    s.get(key).copied().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_endpoints_after_traffic() {
    let env = start_with(small(), |c| c.admin_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let admin = env.proxy.admin_addr().expect("admin on");
    let (_, before) = http(admin, "GET", "/metrics").await;
    let before = samples(&before);

    let mut c = env.conn().await;
    for i in 0..100 {
        let _: () = c.set(format!("m{i}"), i).await.unwrap();
    }
    for i in 0..40 {
        let _: Option<i64> = c.get(format!("m{i}")).await.unwrap();
    }
    let keys: Vec<String> = (0..30).map(|i| format!("m{i}")).collect();
    let _: Vec<Option<i64>> = c.mget(&keys).await.unwrap();
    for _ in 0..7 {
        let _ = redis::cmd("NOSUCHCMD").query_async::<redis::Value>(&mut c).await;
    }
    // A real MOVED from the cluster: point one slot of the proxy's map at the wrong master.
    let key = "moved-key";
    let slot = clusterless::slot::slot(key.as_bytes());
    let owner = env.cluster.slot_owner(slot).unwrap();
    let wrong = env.cluster.masters().into_iter().find(|&m| m != owner).unwrap();
    env.proxy.misroute_slot(slot, &format!("127.0.0.1:{wrong}"));
    let _: Option<String> = c.get(key).await.unwrap();

    let (status, text) = http(admin, "GET", "/metrics").await;
    assert_eq!(status, 200);
    let after = samples(&text);
    let delta = |k: &str| get(&after, k) - get(&before, k);
    // Each redis-rs connection starts with its own handshake commands; count only ours.
    assert_eq!(delta(r#"clusterless_commands_total{command="set",result="ok"}"#), 100.0);
    assert_eq!(delta(r#"clusterless_commands_total{command="get",result="ok"}"#), 40.0);
    assert_eq!(delta(r#"clusterless_commands_total{command="get",result="redirect"}"#), 1.0);
    assert_eq!(delta(r#"clusterless_commands_total{command="mget",result="ok"}"#), 1.0);
    assert_eq!(delta(r#"clusterless_commands_total{command="other",result="error"}"#), 7.0);
    assert_eq!(delta(r#"clusterless_redirects_total{kind="moved"}"#), 1.0);
    assert!(delta(r#"clusterless_command_duration_seconds_count{class="keyed"}"#) >= 141.0);
    assert_eq!(delta(r#"clusterless_command_duration_seconds_count{class="fanout"}"#), 1.0);
    assert!(delta("clusterless_client_bytes_received_total") > 2000.0);
    assert!(delta("clusterless_client_bytes_sent_total") > 500.0);
    assert_eq!(get(&after, "clusterless_client_connections"), 1.0);
    assert!(get(&after, "clusterless_topology_version") >= 2.0, "bootstrap + MOVED patch");
    assert_eq!(get(&after, "clusterless_slots_uncovered"), 0.0);
    assert_eq!(get(&after, "clusterless_masters"), 3.0);
    assert_eq!(
        get(&after, r#"clusterless_topology_source{source="bus"}"#),
        1.0,
        "the bus observer is the default source"
    );
    assert!(delta("clusterless_observer_pongs_total") > 0.0);
    let backend_conns: f64 =
        after.iter().filter(|(k, _)| k.starts_with("clusterless_backend_connections{")).map(|(_, v)| v).sum();
    assert!(backend_conns >= 3.0, "connections to every master: {backend_conns}");

    // promtool agrees the exposition is well-formed and well-named.
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (installed by scripts/setup from Debian's prometheus package)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    assert_eq!(http(admin, "GET", "/healthz").await, (200, "ok\n".to_string()));
    assert_eq!(http(admin, "GET", "/readyz").await.0, 200);
    assert_eq!(http(admin, "GET", "/nope").await.0, 404);
    assert_eq!(http(admin, "POST", "/metrics").await.0, 405);
    let (status, body) = http(admin, "GET", "/topology").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("topology JSON");
    let nodes = v["nodes"].as_array().unwrap();
    let covered: u64 = nodes
        .iter()
        .flat_map(|n| n["slots"].as_array().unwrap().iter())
        .map(|r| r[1].as_u64().unwrap() - r[0].as_u64().unwrap() + 1)
        .sum();
    assert_eq!(covered, 16384);
    assert!(nodes.iter().all(|n| n["address"].as_str().unwrap().starts_with("127.0.0.1:")));
    assert_eq!(nodes.iter().filter(|n| n["role"] == "master").count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_503_while_draining() {
    let env = start_with(small(), |c| c.admin_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let admin = env.proxy.admin_addr().unwrap();
    assert_eq!(http(admin, "GET", "/readyz").await.0, 200);
    // A client in the middle of sending a request keeps the drain waiting.
    let mut half = Raw::connect(env.addr()).await;
    half.send(b"*2\r\n$3\r\nGET\r\n").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let drained = {
        let proxy = &env.proxy;
        let drain = proxy.drain(Duration::from_millis(1500));
        tokio::pin!(drain);
        tokio::select! {
            _ = &mut drain => panic!("drain must wait for the half-sent request"),
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
        }
        let (status, body) = http(admin, "GET", "/readyz").await;
        assert_eq!((status, body.trim()), (503, "draining: shutting down"));
        // New clients are refused once draining started.
        assert!(tokio::net::TcpStream::connect(env.addr()).await.is_err(), "listener closed");
        // The half-sent request completes and is answered.
        half.send(b"$1\r\nk\r\n").await;
        assert_eq!(half.read_replies(1).await, vec![b"$-1\r\n".to_vec()]);
        drain.await
    };
    assert!(drained, "drain finishes once the last client is answered");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_every_pipelined_request_then_exits_0() {
    let env = start(small()).await;
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_clusterless"))
        .args(["--seed", &env.cluster.seed(), "--listen", &format!("127.0.0.1:{port}"), "--metrics", ""])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start clusterless");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut raw = None;
    for _ in 0..100 {
        if let Ok(s) = tokio::net::TcpStream::connect(addr).await {
            raw = Some(Raw::new(s));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut raw = raw.expect("proxy listening");
    // A reply proves the proxy accepted this connection (the kernel completes the handshake from
    // its backlog before that, and a connection never accepted is not one in flight).
    assert_eq!(raw.cmd(&[b"PING"]).await, b"+PONG\r\n");
    let n = 20_000;
    let mut batch = Vec::new();
    for _ in 0..n {
        batch.extend_from_slice(b"*2\r\n$4\r\nINCR\r\n$7\r\ndrained\r\n");
    }
    raw.send(&batch).await;
    // SIGTERM to the process we started, while the pipeline is in flight.
    let pid = child.id() as i32;
    let status = Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(status.success());
    let replies = raw.read_replies(n).await;
    assert_eq!(replies.len(), n, "every pipelined request answered");
    for (i, r) in replies.iter().enumerate() {
        assert_eq!(r, format!(":{}\r\n", i + 1).as_bytes(), "reply {i}");
    }
    assert!(raw.closed().await, "connection closed after draining");
    let exit = tokio::task::block_in_place(|| {
        for _ in 0..200 {
            if let Some(s) = child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        None
    });
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    assert_eq!(exit.and_then(|s| s.code()), Some(0), "exit code 0 after drain; log: {err}");
    assert!(err.contains("draining"), "drain logged: {err}");
}

#[test]
fn deploy_files_parse_and_name_what_the_binary_serves() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let defaults = clusterless::config::Config::defaults();
    let admin_port = defaults.admin_listen.unwrap().port();
    let mut saw_probe = false;
    for entry in std::fs::read_dir(root.join("kubernetes")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = serde_yaml::Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(v.get("kind").is_some(), "{} has a kind", path.display());
        }
        if text.contains("readinessProbe") && text.contains("--listen") {
            saw_probe = true;
            assert!(text.contains("/readyz") && text.contains("/healthz"), "{}", path.display());
            assert!(text.contains(&admin_port.to_string()), "{} uses the admin port", path.display());
            assert!(text.contains("127.0.0.1:6379") || text.contains("6379"), "{}", path.display());
        }
    }
    assert!(saw_probe);
    let shared = std::fs::read_to_string(root.join("kubernetes/shared-observer.yaml")).unwrap();
    assert!(shared.contains("\"observe\"") && shared.contains("/v1/topology") && shared.contains("9737"));
    let sub = std::fs::read_to_string(root.join("kubernetes/app-with-subscribing-sidecar.yaml")).unwrap();
    assert!(sub.contains("--observer") && sub.contains("http://clusterless-observer:9737"));
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("grafana/clusterless.json")).unwrap()).unwrap();
    let exprs = dash.to_string();
    let names = clusterless::metric_names();
    for m in ["clusterless_commands_total", "clusterless_command_duration_seconds", "clusterless_redirects_total"] {
        assert!(exprs.contains(m) && names.iter().any(|n| n == m), "{m} in dashboard and registry");
    }
    // Every metric the alerts and the dashboard use is one the binary exports.
    let alerts = std::fs::read_to_string(root.join("prometheus/alerts.yml")).unwrap();
    for text in [&alerts, &exprs] {
        for token in
            text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|t| t.starts_with("clusterless_"))
        {
            let base = token.trim_end_matches("_bucket").trim_end_matches("_count").trim_end_matches("_sum");
            assert!(names.iter().any(|n| n == base), "{token} is not exported");
        }
    }
    let out =
        Command::new("promtool").args(["check", "rules"]).arg(root.join("prometheus/alerts.yml")).output().unwrap();
    assert!(
        out.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let unit = std::fs::read_to_string(root.join("systemd/clusterless.service")).unwrap();
    assert!(unit.contains("DynamicUser=yes") && unit.contains("NoNewPrivileges=yes"));
    let docker = std::fs::read_to_string(root.join("docker/Dockerfile")).unwrap();
    assert!(docker.contains("USER") && docker.matches("FROM").count() >= 2, "multi-stage, non-root");
}
