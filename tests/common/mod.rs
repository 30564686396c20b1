//! Test support shared by the integration tests: a real cluster from the one harness
//! (`clusterless::localcluster`), a proxy started in-process in front of it with the shipped
//! defaults (only its addresses changed), the topology source under test, condition waits,
//! raw-RESP and redis-rs clients, and the client programs under tests/python. Everything started
//! here is stopped on drop, pass or fail.
#![allow(dead_code)]

pub mod bin;
pub mod fake;
pub mod http;
mod load;
pub mod nodes;
mod python;
pub mod tls;
// Not every test file uses each of these.
#[allow(unused_imports)]
pub use load::{write_loop, Report, WriteLoop};
#[allow(unused_imports)]
pub use python::{expect_ok, expect_ok_at};

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clusterless::config::{Config, Source};
use clusterless::localcluster::{ClusterSpec, LocalCluster};
use clusterless::{ObserverService, Running};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where the proxy under test learns the slot map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topo {
    /// Its own gossip observer on the cluster bus (the default).
    Bus,
    /// `CLUSTER SHARDS` polling only (`topology.source = "poll"`).
    Poll,
    /// A shared observer (`clusterless observe`) it follows over HTTP.
    Observer,
}

/// A cluster plus a proxy in front of it (and the shared observer the proxy follows, if any).
pub struct Env {
    pub proxy: Running,
    pub observer: Option<ObserverService>,
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

    /// Waits until the proxy's slot map equals what the cluster itself reports (read with the
    /// harness's own CLUSTER NODES reader, not the proxy's), every slot covered. Nodes are told
    /// apart by port: the proxy may name a node by hostname or IP, as the cluster advertises it.
    pub async fn converges(&self, what: &str) {
        let deadline = Instant::now() + PATIENCE;
        let port = |a: &str| a.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok());
        loop {
            let want = tokio::task::block_in_place(|| self.cluster.slot_map());
            let t = self.proxy.topology();
            let differ = (0..16384u16).filter(|&s| t.master_for(s).and_then(port) != want[s as usize]).count();
            if differ == 0 && want.iter().all(Option::is_some) {
                return;
            }
            assert!(Instant::now() < deadline, "after {what}: {differ} slots differ from the cluster's own map");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// How long a condition may take to come true before a test fails: generous, because a loaded
/// 2-core machine can stall anything for seconds, and a wait that succeeds returns at once.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// How long the cluster itself may take to settle after a fault (a resumed master's full sync
/// alone waits 5 s before it starts): not a bound on the proxy, so generous.
pub const CLUSTER_PATIENCE: Duration = Duration::from_secs(60);

/// Waits until `cond` holds, checking every 20 ms; fails the test after [`PATIENCE`].
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "never true: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`eventually`] for a condition that needs to await (a client round trip).
pub async fn eventually_async<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !cond().await {
        assert!(Instant::now() < deadline, "never true: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A plain redis-rs connection. Its own response timeout is only a hang detector, longer than
/// anything the proxy may take ([`longest_answer`]); what a test asserts are the proxy's bounds.
pub async fn client_conn(url: &str) -> redis::aio::MultiplexedConnection {
    let cfg = redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(30)));
    redis::Client::open(url)
        .expect("url")
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
        .expect("connect to proxy")
}

/// The longest a request may take with the shipped defaults while a master fails, from first
/// principles: it may be held for the new owner up to `topology.failover_hold`; a command already
/// written to a master that then hangs waits `backend.request_timeout` for its answer; and the
/// two do not add up, because a request written to a hung master is not held afterwards (its
/// error is returned). One more second covers scheduling on a loaded 2-core machine.
pub fn longest_answer(cfg: &Config) -> Duration {
    cfg.topology.failover_hold.max(cfg.backend.request_timeout) + Duration::from_secs(1)
}

/// The proxy configuration users get, on a free loopback port, bootstrapping from `seed`.
/// The admin endpoint is off: parallel tests would fight over its port (tests that scrape turn
/// it on, on port 0).
pub fn shipped_config(seed: String) -> Config {
    let mut cfg = Config::defaults();
    cfg.listen = Some("127.0.0.1:0".parse().expect("addr"));
    cfg.seeds = vec![seed];
    cfg.admin_listen = None;
    cfg
}

/// Starts a cluster on the calling thread (its nodes die with it) and a proxy in front of it.
pub async fn start(spec: ClusterSpec) -> Env {
    start_with(spec, |_| {}).await
}

pub async fn start_with(spec: ClusterSpec, tweak: impl FnOnce(&mut Config)) -> Env {
    start_topo(spec, Topo::Bus, tweak).await
}

/// A cluster and a proxy that learns the map from `topo`.
pub async fn start_topo(spec: ClusterSpec, topo: Topo, tweak: impl FnOnce(&mut Config)) -> Env {
    init_logs();
    let cluster = tokio::task::block_in_place(|| LocalCluster::start(&spec)).expect("start cluster");
    let mut cfg = shipped_config(cluster.seed());
    if let Some(p) = cluster.password() {
        cfg.backend.password = Some(p.into());
    }
    let observer = match topo {
        Topo::Bus => None,
        Topo::Poll => {
            cfg.topology.source = Source::Poll;
            None
        }
        Topo::Observer => {
            let service =
                clusterless::start_observer(&cfg, "127.0.0.1:0".parse().expect("addr")).await.expect("observer");
            cfg.topology.observer = Some(format!("http://{}", service.addr()));
            Some(service)
        }
    };
    tweak(&mut cfg);
    let proxy = clusterless::start(cfg).await.expect("start proxy");
    let env = Env { proxy, observer, cluster };
    let want = match topo {
        Topo::Bus => "bus",
        Topo::Poll => "poll",
        Topo::Observer => "observer",
    };
    eventually(&format!("the proxy follows the {want} source"), || env.proxy.topology_source() == want).await;
    env
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
    buf: Vec<u8>,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        Raw::new(TcpStream::connect(addr).await.expect("connect"))
    }

    pub fn new(stream: TcpStream) -> Raw {
        Raw { stream, buf: Vec::new() }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Reads until `n` complete replies arrived (or the peer closed), with a deadline. Bytes past
    /// the `n`th reply stay buffered for the next read.
    pub async fn read_replies(&mut self, n: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            while out.len() < n {
                match clusterless::resp::reply_len(&self.buf).expect("valid reply") {
                    Some(len) => out.push(self.buf.drain(..len).collect()),
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
                Ok(Ok(k)) => self.buf.extend_from_slice(&chunk[..k]),
                Err(_) => panic!("timed out waiting for {n} replies, got {}", out.len()),
            }
        }
    }

    /// Sends one command and returns its raw reply.
    pub async fn cmd(&mut self, args: &[&[u8]]) -> Vec<u8> {
        self.send(&clusterless::resp::encode_command(args)).await;
        self.read_replies(1).await.pop().expect("a reply")
    }

    /// The same, as text (for error messages and prefix checks).
    pub async fn text(&mut self, args: &[&str]) -> String {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        String::from_utf8_lossy(&self.cmd(&args).await).into_owned()
    }

    /// True once the proxy has closed this connection (within [`PATIENCE`]).
    pub async fn closed(&mut self) -> bool {
        let mut b = [0u8; 1024];
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read(&mut b)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }
}

/// `n` keys named `prefix:i`: spread over the whole keyspace.
pub fn spread_keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}:{i}")).collect()
}

/// A key that hashes to `slot` (found by search; cheap for one slot).
pub fn key_in_slot(slot: u16, tag: &str) -> String {
    (0u64..).map(|i| format!("{tag}{i}")).find(|k| clusterless::slot::slot(k.as_bytes()) == slot).unwrap_or_default()
}

/// `per_slot` keys in each of `slots`.
pub fn keys_for_slots(slots: &[u16], per_slot: usize) -> Vec<String> {
    slots.iter().flat_map(|&s| (0..per_slot).map(move |j| key_in_slot(s, &format!("w{j}-")))).collect()
}
