//! Connections to cluster nodes: per worker thread and node a few long-lived connections shared
//! by that worker's clients, pipelined (replies matched to requests in FIFO order), with writes
//! coalesced, connect and request timeouts, AUTH/HELLO on connect and reconnection with backoff
//! ([`conn`]); exclusive connections for requests that hold connection state ([`dedicated`]).
//! Every one of them runs over a [`NodeStream`]: plain TCP, or TLS when `[backend.tls]` is set.
//! Replies go to a waiting future, or into a client's [`Mailbox`].
//!
//! This module knows nothing of slots; it moves bytes to an address and says precisely how a
//! failure happened ([`BackendError`]), because that decides whether the router may retry (never
//! sent: always; sent: only reads).

mod conn;
mod connect;
pub mod dedicated;
mod error;
mod identity;
mod mailbox;
mod stream;

use std::cell::Cell;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

pub use connect::{connect, exchange, query, Auth};
pub use dedicated::{Dedicated, DedicatedPool};
pub use error::{BackendError, Failure, Reason};
pub use identity::{Directory, Verify};
pub use mailbox::{Mailbox, Reply, Sink};
pub use stream::{NodeReader, NodeStream, NodeWriter};

use crate::config::BackendConfig;
use crate::metrics::Metrics;
use crate::sync::Mutex;

thread_local! {
    /// 1-based index of the worker thread running here; 0 on any other thread.
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// Marks the calling thread as worker `i` (1-based): its clients use that worker's connections.
pub fn enter_worker(i: usize) {
    WORKER.with(|w| w.set(i));
}

/// The worker this code runs on (1..=n), or 0 outside the workers: per-worker state is indexed
/// by it, with slot 0 for callers on the control plane.
fn current_worker() -> usize {
    WORKER.with(|w| w.get())
}

/// All node connections of the proxy. Each worker thread has its own connections (a client's
/// requests then never leave its thread); slot 0 serves callers outside the workers.
pub struct Backend {
    cfg: BackendConfig,
    /// Per login (see [`Cx::login`]) the credentials its connections authenticate with.
    logins: Arc<[Auth]>,
    /// Who each address must be: every new connection is checked against it.
    directory: Arc<dyn Directory>,
    metrics: Arc<Metrics>,
    pools: Vec<Mutex<Pools>>,
}

/// One worker's connections, by node address (looked up per batch: a fast hash, the addresses
/// come from the cluster), then by login and protocol (index `login * 2 + (RESP3 ? 1 : 0)`).
type Pools = rustc_hash::FxHashMap<String, Vec<Option<NodePool>>>;

struct NodePool {
    conns: Vec<mpsc::UnboundedSender<conn::Job>>,
}

impl NodePool {
    fn pick(&self, lane: u32) -> &mpsc::UnboundedSender<conn::Job> {
        &self.conns[lane as usize % self.conns.len()]
    }
}

/// Who is asking: the client's protocol version, its lane (connection affinity) and the login
/// its requests use on the nodes.
#[derive(Clone, Copy, Debug)]
pub struct Cx {
    pub proto: u8,
    pub lane: u32,
    /// Index of the node credentials (0: `backend.user`; others: a proxy user's own).
    pub login: u16,
}

impl Backend {
    /// Connections for `workers` worker threads (and the control plane).
    /// `logins[0]` is what topology queries and the proxy's own upkeep use (see [`Auth::logins`]).
    pub fn new(
        cfg: BackendConfig,
        logins: Vec<Auth>,
        directory: Arc<dyn Directory>,
        metrics: Arc<Metrics>,
        workers: usize,
    ) -> Arc<Backend> {
        let pools = (0..=workers).map(|_| Mutex::new(Pools::default())).collect();
        let logins: Arc<[Auth]> = if logins.is_empty() { Arc::from([Auth::from_config(&cfg)]) } else { logins.into() };
        Arc::new(Backend { logins, cfg, directory, metrics, pools })
    }

    /// The proxy's own login (login 0).
    pub fn auth(&self) -> &Auth {
        &self.logins[0]
    }

    pub fn logins(&self) -> &Arc<[Auth]> {
        &self.logins
    }

    pub fn directory(&self) -> &Arc<dyn Directory> {
        &self.directory
    }

    pub fn config(&self) -> &BackendConfig {
        &self.cfg
    }

    /// Sends `payload` (holding `replies` pipelined commands) to `addr` and waits for the replies.
    /// Requests with the same `lane` (one client) always take the same connection of a node, so a
    /// client's pipelined commands to one node run in the order it sent them.
    pub async fn send(&self, addr: &str, cx: Cx, payload: Bytes, replies: usize) -> Reply {
        let (tx, rx) = oneshot::channel();
        self.submit(addr, cx, payload, replies, Sink::Once(tx));
        match rx.await {
            Ok(r) => r,
            // The connection task dropped the job before writing it.
            Err(_) => Err(BackendError::not_sent(addr, Reason::ClosedBeforeSend)),
        }
    }

    /// Sends one command and returns its reply.
    pub async fn send_one(&self, addr: &str, cx: Cx, cmd: Bytes) -> Result<Bytes, BackendError> {
        let mut r = self.send(addr, cx, cmd, 1).await?;
        Ok(r.pop().unwrap_or_else(crate::errors::empty_reply))
    }

    /// Queues `payload` (holding `replies` pipelined commands) for `addr`; the replies, or how
    /// they failed, go to `sink`. Queued at once, never waiting: a client's requests to one node
    /// are written in the order it submitted them.
    pub fn submit(&self, addr: &str, cx: Cx, payload: Bytes, replies: usize, sink: Sink) {
        self.pick(addr, cx, |conn| {
            if let Err(mpsc::error::SendError(job)) = conn.send(conn::Job { payload, replies, sink }) {
                job.sink.deliver(Err(BackendError::not_sent(addr, Reason::Closed)), 0);
            }
        })
    }

    /// Runs `f` on the connection to `addr` that `cx`'s lane uses on this worker.
    fn pick<R>(&self, addr: &str, cx: Cx, f: impl FnOnce(&mpsc::UnboundedSender<conn::Job>) -> R) -> R {
        let w = current_worker().min(self.pools.len() - 1);
        // Only this worker's own tasks (and the retain sweep) take this lock: uncontended.
        let mut pools = self.pools[w].lock();
        let login = usize::from(cx.login).min(self.logins.len() - 1);
        let v = login * 2 + usize::from(cx.proto >= 3);
        if let Some(Some(p)) = pools.get(addr).and_then(|e| e.get(v)) {
            return f(p.pick(cx.lane));
        }
        let entry = pools.entry(addr.to_string()).or_default();
        if entry.len() <= v {
            entry.resize_with(v + 1, || None);
        }
        let pool = entry[v].get_or_insert_with(|| {
            let conns = (0..self.cfg.connections_per_node)
                .map(|_| {
                    let (tx, rx) = mpsc::unbounded_channel();
                    let nm = self.metrics.node(addr);
                    let proto = if v % 2 == 1 { 3 } else { 2 };
                    tokio::spawn(conn::connection_task(
                        addr.to_string(),
                        proto,
                        self.cfg.clone(),
                        self.logins[login].clone(),
                        self.directory.clone(),
                        nm,
                        rx,
                    ));
                    tx
                })
                .collect();
            NodePool { conns }
        });
        f(pool.pick(cx.lane))
    }

    /// Drops the pools of nodes that left the cluster; their tasks end once their queues drain.
    pub fn retain(&self, keep: &dyn Fn(&str) -> bool) {
        let mut gone = Vec::new();
        for w in &self.pools {
            w.lock().retain(|addr, _| {
                let k = keep(addr);
                if !k {
                    gone.push(addr.clone());
                }
                k
            });
        }
        gone.sort();
        gone.dedup();
        for addr in gone {
            self.metrics.forget_node(&addr);
        }
    }
}
