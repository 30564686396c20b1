//! One shared node connection's task: connects lazily, writes the jobs of many clients coalesced
//! into few writes, matches replies to jobs in FIFO order, times out a silent node, and reconnects
//! with backoff. While a connect is failing it answers queued jobs at once with `NotSent`, so that
//! no client hangs on a node that is down.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};

use super::mailbox::Sink;
use super::{connect, Auth, BackendError, Directory, Failure, NodeStream, Reason, Verify};
use crate::config::BackendConfig;
use crate::metrics::NodeMetrics;
use crate::resp::ReplyScanner;

/// A batch of commands queued for one connection.
pub(super) struct Job {
    pub payload: Bytes,
    /// Replies this job expects (several commands may be pipelined in one payload).
    pub replies: usize,
    pub sink: Sink,
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

/// Owns one logical connection to a node until its queue closes (the node left the map).
pub(super) async fn connection_task(
    addr: String,
    proto: u8,
    cfg: BackendConfig,
    auth: Auth,
    directory: Arc<dyn Directory>,
    nm: NodeMetrics,
    mut rx: mpsc::UnboundedReceiver<Job>,
) {
    let mut backoff = Duration::from_millis(20);
    // Logged once per transition, not per attempt.
    let mut down = false;
    loop {
        let Some(first) = rx.recv().await else { return };
        match connect(&addr, proto, &auth, cfg.connect_timeout, Verify::Node(&*directory)).await {
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
                    match f.failure {
                        Failure::Timeout => nm.timeout.inc(),
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
                first.sink.deliver(Err(e.clone()), 0);
                let until = Instant::now() + backoff;
                loop {
                    tokio::select! {
                        job = rx.recv() => match job {
                            Some(j) => j.sink.deliver(Err(e.clone()), 0),
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

struct Pending {
    sink: Sink,
    want: usize,
    /// Replies read so far, kept or not (a client that left does not keep them).
    seen: usize,
    got: Vec<Bytes>,
    /// Bytes of `got` its sink admitted.
    admitted: usize,
    sent_at: Instant,
}

/// Drives one established connection. Returns whether the pool is still open (false: stop for
/// good) and the failure that ended the connection, if one did.
async fn run(
    mut stream: NodeStream,
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
                    pending.push_back(Pending {
                        sink: job.sink,
                        want: job.replies,
                        seen: 0,
                        got,
                        admitted: 0,
                        sent_at,
                    });
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
            match timeout(cfg.request_timeout, stream.send(&wbuf)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => break 'conn BackendError::lost(addr, Reason::WriteFailed).caused_by(e),
                Err(_) => break 'conn BackendError::timeout(addr, Reason::WriteTimeout(cfg.request_timeout)),
            }
            wbuf.clear();
            crate::memory::settle(&mut wbuf, 64 * 1024);
        }
        if !pool_open && pending.is_empty() {
            return (false, None);
        }
        tokio::select! {
            r = stream.read_buf(&mut rbuf) => {
                match r {
                    Ok(0) => break 'conn BackendError::lost(addr, Reason::ClosedByNode),
                    Err(e) => break 'conn BackendError::lost(addr, Reason::ReadFailed).caused_by(e),
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
                                break 'conn BackendError::lost(addr, Reason::Unsolicited);
                            };
                            p.seen += 1;
                            if p.sink.admit(frame.len()) {
                                p.admitted += frame.len();
                                p.got.push(frame);
                            }
                            if p.seen == p.want {
                                if let Some(p) = pending.pop_front() {
                                    if nm.enabled {
                                        let now = *read_at.get_or_insert_with(Instant::now);
                                        latency.observe(now.saturating_duration_since(p.sent_at).as_secs_f64());
                                    }
                                    p.sink.deliver(Ok(p.got), p.admitted);
                                }
                            }
                        }
                        Ok(None) => break,
                        Err(e) => break 'conn BackendError::lost(addr, Reason::Malformed(e.0)),
                    }
                }
                if read_at.is_some() {
                    latency.flush();
                }
                crate::memory::settle(&mut rbuf, 64 * 1024);
                if scanner.wanted() > rbuf.capacity() {
                    // A fresh buffer of exactly the frame's size: `reserve` may double an
                    // allocation, and the frame would then hold twice its size until written.
                    let mut exact = BytesMut::with_capacity(scanner.wanted());
                    exact.extend_from_slice(&rbuf);
                    rbuf = exact;
                } else if rbuf.capacity() - rbuf.len() < 4096 {
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
                        break 'conn BackendError::timeout(addr, Reason::ReplyTimeout(cfg.request_timeout));
                    }
                }
            }
        }
    };
    tracing::debug!(node = %addr, error = %failure, in_flight = pending.len(), "backend connection dropped");
    for p in pending.drain(..) {
        p.sink.deliver(Err(failure.clone()), p.admitted);
    }
    (pool_open, Some(failure))
}
