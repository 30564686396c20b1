//! Connections to cluster nodes: per worker thread and node a few long-lived connections shared
//! by that worker's clients, pipelined (replies matched to requests in FIFO order), with writes
//! coalesced, connect and request timeouts, AUTH/HELLO on connect and reconnection with backoff.
//! Replies go to a waiting future, or into a client's [`Mailbox`] (one per client connection,
//! for all its batches: no channel and no future per batch on the hot path).
//! This module knows nothing of slots; it moves bytes to an address and says precisely how a
//! failure happened, because that decides whether the router may retry (never sent: always;
//! sent: only reads).

pub mod dedicated;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout, Instant};

use crate::config::BackendConfig;
use crate::metrics::{Metrics, NodeMetrics};
use crate::resp::{self, ReplyScanner};

/// How a request to a node failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum BackendError {
    /// The request never left the proxy: always safe to retry elsewhere.
    #[error("{0}")]
    NotSent(String),
    /// The connection broke after the request was written: it may or may not have run.
    #[error("{0}")]
    Lost(String),
    /// The node did not answer within the request timeout (the connection was then closed).
    #[error("{0}")]
    Timeout(String),
}

/// Credentials sent to every node when connecting.
#[derive(Clone, Debug, Default)]
pub struct Auth {
    pub user: Option<String>,
    pub password: Option<String>,
}

impl Auth {
    pub fn from_config(c: &BackendConfig) -> Auth {
        Auth { user: c.user.clone(), password: c.password.clone() }
    }
}

pub type Reply = Result<Vec<Bytes>, BackendError>;

struct Job {
    payload: Bytes,
    /// Replies this job expects (several commands may be pipelined in one payload).
    replies: usize,
    sink: Sink,
}

/// Where a job's replies go.
pub enum Sink {
    /// A future waiting for this one job.
    Once(oneshot::Sender<Reply>),
    /// A client's mailbox, under the tag the client gave the batch.
    Mailbox(Arc<Mailbox>, u64),
}

impl Sink {
    /// Nobody will read the replies any more: the job need not be written.
    fn is_closed(&self) -> bool {
        match self {
            Sink::Once(tx) => tx.is_closed(),
            Sink::Mailbox(m, _) => m.closed.load(Ordering::Relaxed),
        }
    }

    fn deliver(self, reply: Reply) {
        match self {
            Sink::Once(tx) => {
                let _ = tx.send(reply);
            }
            Sink::Mailbox(m, tag) => m.deliver(tag, reply),
        }
    }
}

/// One client connection's replies from every node, tagged by batch; the client task takes them
/// all at once when it wakes. A client's batches are not bounded by a channel: the client itself
/// stops reading once `limits.max_pipeline` requests are in flight.
#[derive(Default)]
pub struct Mailbox {
    inner: Mutex<Delivered>,
    closed: AtomicBool,
}

#[derive(Default)]
struct Delivered {
    replies: Vec<(u64, Reply)>,
    waker: Option<Waker>,
}

impl Mailbox {
    pub fn new() -> Arc<Mailbox> {
        Arc::new(Mailbox::default())
    }

    /// The client is gone: batches not yet written are dropped.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    fn deliver(&self, tag: u64, reply: Reply) {
        let mut d = lock(&self.inner);
        d.replies.push((tag, reply));
        // Kept, not taken: the client task registers the same waker again on its next wait.
        if let Some(w) = &d.waker {
            w.wake_by_ref();
        }
    }

    /// Moves every delivered reply into `into` (true if there was any); when there was none and
    /// a `waker` is given, it is woken by the next delivery.
    pub fn take(&self, waker: Option<&Waker>, into: &mut Vec<(u64, Reply)>) -> bool {
        let mut d = lock(&self.inner);
        if d.replies.is_empty() {
            if let Some(w) = waker {
                if !d.waker.as_ref().is_some_and(|old| old.will_wake(w)) {
                    d.waker = Some(w.clone());
                }
            }
            return false;
        }
        into.append(&mut d.replies);
        true
    }
}

/// Locks `m`, also after a panic elsewhere poisoned it (the data is a queue: still consistent).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Replies awaited per connection before we stop writing more.
const MAX_IN_FLIGHT: usize = 16384;
/// Batches smaller than this wait one scheduler turn for more requests before being written.
const YIELD_BELOW: usize = 8;
/// After this many turns in a row that brought nothing, turns are only tried now and then ...
const IDLE_TURNS: u32 = 8;
/// ... once every this many batches.
const PROBE_EVERY: u32 = 16;
/// Upper bound of one coalesced write.
const MAX_WRITE_BATCH: usize = 1 << 20;

/// All node connections of the proxy. Each worker thread has its own connections (a client's
/// requests then never leave its thread); slot 0 serves callers outside the workers.
pub struct Backend {
    cfg: BackendConfig,
    auth: Auth,
    metrics: Arc<Metrics>,
    pools: Vec<Mutex<Pools>>,
}

/// One worker's connections, by node address (looked up per batch: a fast hash, the addresses
/// come from the cluster); RESP2 and RESP3 connections apart.
type Pools = rustc_hash::FxHashMap<String, [Option<NodePool>; 2]>;

struct NodePool {
    conns: Vec<mpsc::UnboundedSender<Job>>,
}

/// Who is asking: the client's protocol version and its lane (connection affinity).
#[derive(Clone, Copy, Debug)]
pub struct Cx {
    pub proto: u8,
    pub lane: u32,
}

impl Backend {
    /// Connections for `workers` worker threads (and the control plane).
    pub fn new(cfg: BackendConfig, metrics: Arc<Metrics>, workers: usize) -> Arc<Backend> {
        let pools = (0..=workers).map(|_| Mutex::new(Pools::default())).collect();
        Arc::new(Backend { auth: Auth::from_config(&cfg), cfg, metrics, pools })
    }

    pub fn auth(&self) -> &Auth {
        &self.auth
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
            Err(_) => Err(BackendError::NotSent(format!("connection to {addr} closed before sending"))),
        }
    }

    /// Queues `payload` (holding `replies` pipelined commands) for `addr`; the replies, or how
    /// they failed, go to `sink`. Queued at once, never waiting: a client's requests to one node
    /// are written in the order it submitted them.
    pub fn submit(&self, addr: &str, cx: Cx, payload: Bytes, replies: usize, sink: Sink) {
        self.pick(addr, cx, |conn| {
            if let Err(mpsc::error::SendError(job)) = conn.send(Job { payload, replies, sink }) {
                job.sink.deliver(Err(BackendError::NotSent(format!("connection to {addr} is closed"))));
            }
        })
    }

    /// Runs `f` on the connection to `addr` that `cx`'s lane uses on this worker.
    fn pick<R>(&self, addr: &str, cx: Cx, f: impl FnOnce(&mpsc::UnboundedSender<Job>) -> R) -> R {
        let w = crate::server::workers::current().min(self.pools.len() - 1);
        // Only this worker's own tasks (and the retain sweep) take this lock: uncontended.
        let mut pools = lock(&self.pools[w]);
        let v = usize::from(cx.proto >= 3);
        if let Some(Some(p)) = pools.get(addr).map(|e| &e[v]) {
            return f(p.pick(cx.lane));
        }
        let entry = pools.entry(addr.to_string()).or_default();
        let pool = entry[v].get_or_insert_with(|| {
            let conns = (0..self.cfg.connections_per_node)
                .map(|_| {
                    let (tx, rx) = mpsc::unbounded_channel();
                    let nm = self.metrics.node(addr);
                    let proto = if v == 1 { 3 } else { 2 };
                    tokio::spawn(connection_task(addr.to_string(), proto, self.cfg.clone(), self.auth.clone(), nm, rx));
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
            if let Ok(mut pools) = w.lock() {
                pools.retain(|addr, _| {
                    let k = keep(addr);
                    if !k {
                        gone.push(addr.clone());
                    }
                    k
                });
            }
        }
        gone.sort();
        gone.dedup();
        for addr in gone {
            self.metrics.forget_node(&addr);
        }
    }
}

impl NodePool {
    fn pick(&self, lane: u32) -> &mpsc::UnboundedSender<Job> {
        &self.conns[lane as usize % self.conns.len()]
    }
}

/// Owns one logical connection to a node: connects lazily, reconnects with backoff, and while a
/// connect is failing answers queued jobs at once with `NotSent` so that no client hangs.
async fn connection_task(
    addr: String,
    proto: u8,
    cfg: BackendConfig,
    auth: Auth,
    nm: NodeMetrics,
    mut rx: mpsc::UnboundedReceiver<Job>,
) {
    let mut backoff = Duration::from_millis(20);
    // Logged once per transition, not per attempt.
    let mut down = false;
    loop {
        let Some(first) = rx.recv().await else { return };
        match connect(&addr, proto, &auth, cfg.connect_timeout).await {
            Ok(stream) => {
                backoff = Duration::from_millis(20);
                if down {
                    tracing::info!(node = %addr, "node reachable again");
                    down = false;
                }
                nm.connections.inc();
                let (pool_open, failure) = run(stream, &addr, &cfg, &nm, first, &mut rx).await;
                nm.connections.dec();
                if let Some(f) = failure {
                    match f {
                        BackendError::Timeout(_) => nm.timeout.inc(),
                        _ => nm.lost.inc(),
                    }
                    tracing::info!(node = %addr, error = %f, "connection to node lost");
                }
                if !pool_open {
                    return;
                }
            }
            Err(e) => {
                nm.connect.inc();
                if !down {
                    tracing::warn!(node = %addr, error = %e, "node unreachable");
                    down = true;
                }
                first.sink.deliver(Err(BackendError::NotSent(e.clone())));
                let until = Instant::now() + backoff;
                loop {
                    tokio::select! {
                        job = rx.recv() => match job {
                            Some(j) => j.sink.deliver(Err(BackendError::NotSent(e.clone()))),
                            None => return,
                        },
                        _ = tokio::time::sleep_until(until) => break,
                    }
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Opens a connection, sets TCP_NODELAY and authenticates (HELLO 3 for RESP3 connections).
pub async fn connect(addr: &str, proto: u8, auth: &Auth, limit: Duration) -> Result<TcpStream, String> {
    let mut stream = match timeout(limit, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(format!("cannot connect to {addr}: {e}")),
        Err(_) => return Err(format!("cannot connect to {addr}: timed out after {} ms", limit.as_millis())),
    };
    let _ = stream.set_nodelay(true);
    let mut handshake: Vec<Vec<Bytes>> = Vec::new();
    let pass = auth.password.as_deref().map(|p| Bytes::copy_from_slice(p.as_bytes()));
    let user = Bytes::copy_from_slice(auth.user.as_deref().unwrap_or("default").as_bytes());
    if proto >= 3 {
        let mut h = vec![Bytes::from_static(b"HELLO"), Bytes::from_static(b"3")];
        if let Some(p) = pass {
            h.extend([Bytes::from_static(b"AUTH"), user, p]);
        }
        handshake.push(h);
    } else if let Some(p) = pass {
        handshake.push(vec![Bytes::from_static(b"AUTH"), user, p]);
    }
    if !handshake.is_empty() {
        let mut out = BytesMut::new();
        for h in &handshake {
            out.extend_from_slice(&resp::encode_command(h));
        }
        let replies = match timeout(limit, exchange(&mut stream, &out, handshake.len())).await {
            Ok(r) => r?,
            Err(_) => return Err(format!("{addr}: no answer to AUTH/HELLO within {} ms", limit.as_millis())),
        };
        for r in replies {
            if resp::is_error(&r) {
                let text = String::from_utf8_lossy(resp::error_text(&r).unwrap_or(&r)).into_owned();
                return Err(format!("{addr} refused authentication: {text}"));
            }
        }
    }
    Ok(stream)
}

/// Writes `out` and reads `n` replies: the blocking request/reply used for handshakes and for
/// out-of-band queries (topology, COMMAND).
pub async fn exchange(stream: &mut TcpStream, out: &[u8], n: usize) -> Result<Vec<Bytes>, String> {
    stream.write_all(out).await.map_err(|e| format!("write failed: {e}"))?;
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut scanner = ReplyScanner::default();
    let mut replies = Vec::with_capacity(n);
    while replies.len() < n {
        match scanner.scan(&buf).map_err(|e| e.to_string())? {
            Some(len) => replies.push(buf.split_to(len).freeze()),
            None => {
                if stream.read_buf(&mut buf).await.map_err(|e| format!("read failed: {e}"))? == 0 {
                    return Err("connection closed by node".into());
                }
            }
        }
    }
    Ok(replies)
}

/// One-shot query on a fresh connection (for topology refreshes and start-up), bounded by `limit`.
pub async fn query(addr: &str, auth: &Auth, cmds: &[&[&str]], limit: Duration) -> Result<Vec<Bytes>, String> {
    let work = async {
        let mut stream = connect(addr, 2, auth, limit).await?;
        let mut out = BytesMut::new();
        for c in cmds {
            out.extend_from_slice(&resp::encode_command(c));
        }
        exchange(&mut stream, &out, cmds.len()).await
    };
    match timeout(limit * 2, work).await {
        Ok(r) => r,
        Err(_) => Err(format!("{addr}: no answer within {} ms", (limit * 2).as_millis())),
    }
}

struct Pending {
    sink: Sink,
    want: usize,
    got: Vec<Bytes>,
    sent_at: Instant,
}

/// Drives one established connection. Returns whether the pool is still open (false: stop for
/// good) and the failure that ended the connection, if one did.
async fn run(
    mut stream: TcpStream,
    addr: &str,
    cfg: &BackendConfig,
    nm: &NodeMetrics,
    first: Job,
    rx: &mut mpsc::UnboundedReceiver<Job>,
) -> (bool, Option<BackendError>) {
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut rbuf = BytesMut::with_capacity(64 * 1024);
    let mut wbuf = BytesMut::with_capacity(64 * 1024);
    let mut scanner = ReplyScanner::default();
    let mut tick = tokio::time::interval(cfg.request_timeout / 4);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_job = Some(first);
    let mut pool_open = true;
    // Observations are buffered and flushed once per read: per-reply atomics on a histogram
    // shared across cores cost measurable throughput on pipelined loads.
    let latency = nm.latency.local();

    // Scheduler turns waited in a row that brought no more requests, and batches since the last
    // turn tried while they do not pay.
    let mut idle_turns = 0u32;
    let mut skipped = 0u32;

    let failure: BackendError = 'conn: loop {
        // Write everything queued, in one syscall where possible; one clock read for the batch.
        let mut batch_at = None;
        let mut batched = 0;
        let mut yielded = false;
        loop {
            while let Some(job) = next_job.take() {
                if job.sink.is_closed() {
                    // The client went away before we wrote: nothing to do for it.
                } else {
                    wbuf.extend_from_slice(&job.payload);
                    let sent_at = *batch_at.get_or_insert_with(Instant::now);
                    let got = Vec::with_capacity(job.replies);
                    pending.push_back(Pending { sink: job.sink, want: job.replies, got, sent_at });
                    batched += 1;
                }
                if wbuf.len() < MAX_WRITE_BATCH && pending.len() < MAX_IN_FLIGHT {
                    if let Ok(j) = rx.try_recv() {
                        next_job = Some(j);
                    }
                }
            }
            // A small batch waits one scheduler turn for the requests other client tasks are
            // about to queue: under load one write then carries many clients' commands (fewer
            // syscalls per request). The turn costs a poll for I/O (a system call) before the
            // task resumes, so when turns keep bringing nothing (one client at a time) only
            // every `PROBE_EVERY`th batch tries one, to notice when load comes back.
            if yielded || batched == 0 || batched >= YIELD_BELOW {
                break;
            }
            if idle_turns >= IDLE_TURNS {
                skipped += 1;
                if skipped < PROBE_EVERY {
                    break;
                }
            }
            skipped = 0;
            yielded = true;
            tokio::task::yield_now().await;
            match rx.try_recv() {
                Ok(j) => {
                    idle_turns = 0;
                    next_job = Some(j);
                }
                Err(_) => {
                    idle_turns = idle_turns.saturating_add(1);
                    break;
                }
            }
        }
        if !wbuf.is_empty() {
            match timeout(cfg.request_timeout, stream.write_all(&wbuf)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => break 'conn BackendError::Lost(format!("connection to {addr} lost while sending: {e}")),
                Err(_) => {
                    break 'conn BackendError::Timeout(format!(
                        "{addr} did not accept data within {} ms",
                        cfg.request_timeout.as_millis()
                    ))
                }
            }
            wbuf.clear();
        }
        if !pool_open && pending.is_empty() {
            return (false, None);
        }
        tokio::select! {
            r = stream.read_buf(&mut rbuf) => {
                match r {
                    Ok(0) => break 'conn BackendError::Lost(format!("connection to {addr} closed by the node")),
                    Err(e) => break 'conn BackendError::Lost(format!("connection to {addr} lost: {e}")),
                    Ok(_) => {}
                }
                let mut read_at = None;
                loop {
                    match scanner.scan(&rbuf) {
                        Ok(Some(len)) => {
                            let frame = rbuf.split_to(len).freeze();
                            let Some(p) = pending.front_mut() else {
                                // Push messages are not expected on these connections; an unsolicited
                                // reply means we lost track of the stream.
                                break 'conn BackendError::Lost(format!("unexpected reply from {addr}"));
                            };
                            p.got.push(frame);
                            if p.got.len() == p.want {
                                if let Some(p) = pending.pop_front() {
                                    if nm.enabled {
                                        let now = *read_at.get_or_insert_with(Instant::now);
                                        latency.observe(now.saturating_duration_since(p.sent_at).as_secs_f64());
                                    }
                                    p.sink.deliver(Ok(p.got));
                                }
                            }
                        }
                        Ok(None) => break,
                        Err(e) => break 'conn BackendError::Lost(format!("{addr}: {e}")),
                    }
                }
                if read_at.is_some() {
                    latency.flush();
                }
                if rbuf.capacity() - rbuf.len() < 4096 {
                    rbuf.reserve(64 * 1024);
                }
            }
            job = rx.recv(), if pool_open && pending.len() < MAX_IN_FLIGHT => {
                match job {
                    Some(j) => next_job = Some(j),
                    None => pool_open = false,
                }
            }
            _ = tick.tick(), if !pending.is_empty() => {
                if let Some(p) = pending.front() {
                    if p.sent_at.elapsed() > cfg.request_timeout {
                        break 'conn BackendError::Timeout(format!(
                            "{addr} did not answer within {} ms", cfg.request_timeout.as_millis()));
                    }
                }
            }
        }
    };
    tracing::debug!(node = %addr, error = %failure, in_flight = pending.len(), "backend connection dropped");
    for p in pending.drain(..) {
        p.sink.deliver(Err(failure.clone()));
    }
    (pool_open, Some(failure))
}
