//! Test support shared by the integration tests: a real cluster from the one harness
//! (`clusterless::localcluster`), a proxy started in-process in front of it on a free port, and small
//! raw-RESP and redis-rs clients. Everything started here is stopped on drop, pass or fail.
#![allow(dead_code)]

mod load;
// Not every test file runs the loop.
#[allow(unused_imports)]
pub use load::{write_loop, LoopReport, WriteLoop};

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clusterless::config::Config;
use clusterless::localcluster::{ClusterSpec, LocalCluster};
use clusterless::Running;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A cluster plus a proxy in front of it.
pub struct Env {
    pub proxy: Running,
    pub cluster: LocalCluster,
}

impl Env {
    pub fn addr(&self) -> SocketAddr {
        self.proxy.addr()
    }

    pub fn url(&self) -> String {
        format!("redis://{}/", self.proxy.addr())
    }

    /// A redis-rs connection to the proxy (a plain, non-cluster client).
    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        client_conn(&self.url()).await
    }

    /// A redis-rs connection straight to one node.
    pub async fn node(&self, port: u16) -> redis::aio::MultiplexedConnection {
        let url = match self.cluster.password() {
            Some(p) => format!("redis://:{p}@127.0.0.1:{port}/"),
            None => format!("redis://127.0.0.1:{port}/"),
        };
        redis::Client::open(url).expect("url").get_multiplexed_async_connection().await.expect("connect to node")
    }
}

/// A plain redis-rs connection whose own response timeout is longer than the proxy's retry budget,
/// so that tests observe the proxy's behaviour, not the client library's patience.
pub async fn client_conn(url: &str) -> redis::aio::MultiplexedConnection {
    let cfg = redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(30)));
    redis::Client::open(url)
        .expect("url")
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
        .expect("connect to proxy")
}

/// Proxy configuration for tests: loopback, free port, short timeouts.
pub fn test_config(seed: String) -> Config {
    let mut cfg = Config::defaults();
    cfg.listen = "127.0.0.1:0".parse().expect("addr");
    cfg.seeds = vec![seed];
    cfg.backend.request_timeout = Duration::from_millis(3000);
    cfg.backend.retry_budget = Duration::from_millis(8000);
    cfg.topology.refresh_interval = Duration::from_millis(1000);
    // Parallel tests must not fight over the default admin port; tests that scrape turn it on.
    cfg.admin_listen = None;
    cfg
}

/// Starts a cluster on the calling thread (its nodes die with it) and a proxy in front of it.
pub async fn start(spec: ClusterSpec) -> Env {
    start_with(spec, |_| {}).await
}

pub async fn start_with(spec: ClusterSpec, tweak: impl FnOnce(&mut Config)) -> Env {
    init_logs();
    let cluster = tokio::task::block_in_place(|| LocalCluster::start(&spec)).expect("start cluster");
    let mut cfg = test_config(cluster.seed());
    if let Some(p) = cluster.password() {
        cfg.backend.password = Some(p.to_string());
    }
    tweak(&mut cfg);
    let proxy = clusterless::start(cfg).await.expect("start proxy");
    Env { proxy, cluster }
}

pub fn small() -> ClusterSpec {
    ClusterSpec { masters: 3, replicas_per_master: 0, ..ClusterSpec::default() }
}

pub fn with_replicas() -> ClusterSpec {
    ClusterSpec { masters: 3, replicas_per_master: 1, ..ClusterSpec::default() }
}

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// A raw RESP client for byte-exact checks.
pub struct Raw {
    pub stream: TcpStream,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        Raw { stream: TcpStream::connect(addr).await.expect("connect") }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Reads until `n` complete replies arrived (or the peer closed), with a deadline.
    pub async fn read_replies(&mut self, n: usize) -> Vec<Vec<u8>> {
        let mut buf = Vec::new();
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            while out.len() < n {
                match clusterless::resp::reply_len(&buf).expect("valid reply") {
                    Some(len) => out.push(buf.drain(..len).collect()),
                    None => break,
                }
            }
            if out.len() >= n {
                return out;
            }
            let mut chunk = vec![0u8; 64 * 1024];
            let r = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await;
            match r {
                Ok(Ok(0)) | Ok(Err(_)) => return out,
                Ok(Ok(k)) => buf.extend_from_slice(&chunk[..k]),
                Err(_) => panic!("timed out waiting for {n} replies, got {}", out.len()),
            }
        }
    }

    /// Sends one command and returns its raw reply.
    pub async fn cmd(&mut self, args: &[&[u8]]) -> Vec<u8> {
        self.send(&clusterless::resp::encode_command(args)).await;
        self.read_replies(1).await.pop().expect("a reply")
    }

    /// True once the proxy has closed this connection.
    pub async fn closed(&mut self) -> bool {
        let mut b = [0u8; 1024];
        loop {
            match tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut b)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }
}

/// Every slot's key: `keys_for_slots(n)` gives n keys whose slots are spread over the keyspace.
pub fn spread_keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}:{i}")).collect()
}

/// A key that hashes to `slot` (found by search; cheap for one slot).
pub fn key_in_slot(slot: u16, tag: &str) -> String {
    for i in 0u64.. {
        let k = format!("{tag}{i}");
        if clusterless::slot::slot(k.as_bytes()) == slot {
            return k;
        }
    }
    unreachable!()
}

// === real client programs (Python scripts under tests/python) ===

/// Wall-clock limit for one client script (the scripts bound themselves well below this).
const SCRIPT_LIMIT: Duration = Duration::from_secs(180);

fn script(name: &str) -> String {
    format!("{}/tests/python/{name}", env!("CARGO_MANIFEST_DIR"))
}

struct Outcome {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs `python3 SCRIPT ARGS...` to completion, killing it if it outlives `SCRIPT_LIMIT`. Blocking, so
/// call it inside `block_in_place`.
fn run_python(name: &str, args: &[&str]) -> Outcome {
    let mut child = Command::new("python3")
        .arg(script(name))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/setup installs redis-py and celery)");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for python3") {
            break Some(status);
        }
        if started.elapsed() > SCRIPT_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
    let mut stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    if status.is_none() {
        stderr.push_str(&format!("\n[killed after {SCRIPT_LIMIT:?}]"));
    }
    Outcome { ok: status.is_some_and(|s| s.success()), stdout, stderr }
}

/// Runs the script against the proxy and checks it succeeded and printed `done`.
pub fn expect_ok(env: &Env, name: &str, extra: &[&str], done: &str) {
    let port = env.addr().port().to_string();
    let mut args = vec![port.as_str()];
    args.extend_from_slice(extra);
    let o = tokio::task::block_in_place(|| run_python(name, &args));
    assert!(
        o.ok && o.stdout.contains(done),
        "{name} {extra:?} failed:\n--- stdout\n{}\n--- stderr\n{}",
        o.stdout,
        o.stderr
    );
}
