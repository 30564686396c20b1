//! One client connection, one task: reads and parses everything in the read buffer, decides what
//! answers each request ([`plan`]), and writes replies back strictly in request order, batching
//! every reply that is ready into one write. The single-slot commands of one read, and the
//! per-slot parts of its multi-key commands, go to each node as one batch ([`gather`]); replies
//! find their place in the client's requests in flight ([`inflight`]); their metrics are recorded
//! per batch of replies ([`record`]) and they leave through [`output`], held to the client's
//! output limit ([`deliver`]: what is written between requests).
//!
//! Commands that change or depend on the connection's state (MULTI/EXEC/WATCH, blocking commands,
//! subscriptions, WAIT, RESET) are barriers ([`barrier`]): the task first answers everything
//! before them, then runs them alone, watching the client's socket so that a client that leaves
//! mid-block releases its node connection at once. Subscription messages are written as they
//! arrive, and so are MONITOR's lines; a CLIENT PAUSE holds requests before they are planned
//! ([`shared_state`]).

mod barrier;
mod deliver;
mod fresh;
mod gather;
mod inflight;
mod item;
mod output;
mod plan;
mod pool;
mod record;
mod shared_state;
mod stream;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use barrier::{client_gone, run_barrier};
use deliver::{next_event, repair_due};
use gather::Gather;
use inflight::Inflight;
use item::Routed;
use output::Output;
use plan::{plan, Conn, Plan};
use record::Batch;
use shared_state::{feed_monitors, next_line, pause_holds, pause_over, start_monitor};
pub use stream::ClientStream;
use stream::ReadHalf;

use crate::command::{CommandSpec, CommandTable};
use crate::config::{AuthConfig, CrossSlot, LimitsConfig};
use crate::keyspace::Databases;
use crate::memory::{Meter, Usage};
use crate::metrics::{Metrics, Timed};
use crate::resp::{Limits, Parsed, Request, RequestParser};
use crate::route::Router;
use crate::session::transaction::TxState;
use crate::session::Session;
use crate::stats::clients::Entry;

/// What a client connection needs from the server, shared by all of them.
pub struct Shared {
    pub router: Arc<Router>,
    pub table: CommandTable,
    pub limits: LimitsConfig,
    pub auth: Arc<AuthConfig>,
    pub cross_slot: CrossSlot,
    /// Flips to true when the proxy starts draining.
    pub shutdown: watch::Receiver<bool>,
    /// What all clients have buffered, against `limits.max_memory`.
    pub usage: Arc<Usage>,
    /// The databases SELECT may choose.
    pub databases: Arc<Databases>,
    /// What the clients track for client-side caching (CLIENT TRACKING).
    pub tracking: Arc<crate::session::tracking::Hub>,
}

/// Read sizes: the first read of a connection, and the most one read asks for.
const MIN_READ: usize = 1024;
const MAX_READ: usize = 64 * 1024;

/// The task that serves one client until it disconnects, sends QUIT, or breaks the protocol;
/// `held` (the listener's slot for it) is dropped when it ends. The client is set up here, before
/// the task: what it was made from would otherwise stay in the task for the connection's life
/// (an async fn keeps its arguments), and a task is what an idle client costs.
pub fn serve<G: Send + 'static>(
    h: Arc<Shared>,
    stream: ClientStream,
    peer: SocketAddr,
    held: G,
) -> impl Future<Output = ()> + Send + 'static {
    let stats = h.router.stats.clone();
    let id = stats.client_connected();
    let laddr = stream.local_addr().map_or_else(|_| stats.local_addr.to_string(), |a| a.to_string());
    let (fd, dup) = (stream.fd(), stream.dup());
    // Listed (CLIENT LIST) until this guard drops, when the connection ends.
    let registered = stats.clients.register(Entry::new(id, peer.to_string(), laddr, fd, dup));
    let mut client = Client::new(h, stream, peer, registered.entry.clone());
    async move {
        client.run().await;
        if client.monitor.is_some() {
            stats.monitors.remove(id);
        }
        drop(registered);
        // Watches, subscriptions and blocked pops end with their connections.
        let Client { c, out, .. } = client;
        // What it held leaves the total now, not when the last reply on its way has come.
        c.meter.gone();
        drop(c);
        out.shutdown().await;
        stats.client_disconnected();
        drop(held);
    }
}

/// What the loop does after a step.
enum Next {
    /// Parse and dispatch again.
    Loop,
    /// Wait for replies, bytes or events.
    Wait,
    /// Close the connection.
    Close,
}

/// A command that runs alone, its request, and when it was read (for its latency metric).
type Barrier = (Arc<CommandSpec>, Request, Option<Instant>);

/// One connection's loop state.
struct Client {
    h: Arc<Shared>,
    peer: SocketAddr,
    c: Conn,
    rd: ReadHalf,
    out: Output,
    parser: RequestParser,
    // Lent by the worker's pool while there are bytes to parse or requests in flight ([`pool`]),
    // grown with the client's bursts: ten thousand idle clients must not cost ten thousand
    // buffers.
    rbuf: BytesMut,
    read_size: usize,
    inflight: Inflight,
    gather: Gather,
    // This and `held` are boxed: rare, and inline they would cost every idle client 150 bytes.
    barrier: Option<Box<Barrier>>,
    /// The barrier's replies are dropped (CLIENT REPLY OFF / SKIP).
    barrier_muted: bool,
    /// A request held by CLIENT PAUSE, and until when; the pause's changes, once one held it.
    held: Option<Box<(Request, Instant)>>,
    pause_rx: Option<watch::Receiver<u64>>,
    /// In MONITOR: the lines of the other clients' commands.
    monitor: Option<mpsc::UnboundedReceiver<Bytes>>,
    /// Once set we read no more: remaining replies are flushed, then the connection closes.
    closing: bool,
    /// Set when the parser needs more bytes; cleared whenever new bytes arrive.
    need_bytes: bool,
    draining: bool,
    batch: Batch,
}

impl Client {
    fn new(h: Arc<Shared>, stream: ClientStream, peer: SocketAddr, entry: Arc<Entry>) -> Client {
        let session = Session::new(entry.id, h.auth.clone(), entry, h.databases.clone(), h.tracking.clone());
        let limits = Limits {
            max_bulk_len: h.limits.max_bulk_len,
            max_inline_len: h.limits.max_inline_len,
            max_request: h.limits.query_buffer,
        };
        let parser = RequestParser::new(limits, session.authenticated);
        let meter = Meter::new(h.limits.output, h.usage.clone());
        let c = Conn::new(session, TxState::new(h.cross_slot), meter.clone());
        let (rd, wr) = stream.into_split();
        let draining = *h.shutdown.borrow();
        Client {
            inflight: Inflight::new(h.router.clone(), meter),
            h,
            peer,
            c,
            rd,
            out: Output::new(wr),
            parser,
            rbuf: BytesMut::new(),
            read_size: MIN_READ,
            gather: Gather::default(),
            barrier: None,
            barrier_muted: false,
            held: None,
            pause_rx: None,
            monitor: None,
            closing: false,
            need_bytes: true,
            draining,
            batch: Batch::new(),
        }
    }

    async fn run(&mut self) {
        // A drain comes through the client's inbox, as everything else the proxy asks of it: no
        // waiter of its own on the shutdown signal (a fresh `changed()` per turn was 2 % of the
        // CPU at pipeline 1; one kept for the connection's life, 224 bytes of every client).
        let mut changes = self.h.router.topology.subscribe();
        loop {
            self.dispatch_buffered();
            if self.inflight.is_empty() && self.barrier.is_some() {
                match self.run_barrier().await {
                    Next::Loop => continue,
                    Next::Close => return,
                    Next::Wait => {}
                }
            }
            if self.closing && self.inflight.is_empty() {
                return;
            }
            match self.drain_step() {
                Next::Loop => continue,
                Next::Close => return,
                Next::Wait => {}
            }
            self.tidy_read_buffer();
            if let Next::Close = self.wait(&mut changes).await {
                return;
            }
        }
    }

    /// Parses and dispatches the requests already buffered, as long as there is room: a client
    /// that sent a deep pipeline and now only waits must not stall.
    fn dispatch_buffered(&mut self) {
        let p = &self.h.router;
        // One clock read per batch of requests parsed from the buffer, not one per request.
        let mut batch_clock = None;
        while self.barrier.is_none() && !self.closing && (!self.need_bytes || self.held.is_some()) && self.room() {
            let next = match self.held.take().map(|h| *h) {
                Some((req, _)) => Ok(Parsed::Request(req)),
                None => self.parser.next(&mut self.rbuf),
            };
            match next {
                Ok(Parsed::Request(req)) => {
                    if let Some(until) = pause_holds(&self.h, &mut self.pause_rx, &req) {
                        // CLIENT PAUSE: this request and those behind it wait; the replies
                        // before it are still written.
                        self.held = Some(Box::new((req, until)));
                        break;
                    }
                    if p.stats.monitors.any() && self.monitor.is_none() {
                        feed_monitors(&self.h, &self.c.session.entry.addr, &req.args);
                    }
                    if self.c.session.authenticated
                        && !self.c.tx.in_multi()
                        && req.args.len() == 1
                        && req.args[0].eq_ignore_ascii_case(b"monitor")
                    {
                        self.gather.flush(self.c.cx(), &mut self.inflight);
                        self.c.session.entry.touch(&Bytes::from_static(b"monitor"), Instant::now());
                        start_monitor(&self.h, &self.c, &mut self.monitor);
                        self.inflight.ready((crate::resp::reply::ok(), None), req.raw.len());
                        continue;
                    }
                    let now = *batch_clock.get_or_insert_with(Instant::now);
                    let started = p.metrics.enabled.then_some(now);
                    let cx = self.c.cx();
                    let size = req.raw.len();
                    let (gather, inflight) = (&mut self.gather, &mut self.inflight);
                    let mut planned = plan(p, &self.h.table, &mut self.c, req, now, started);
                    if self.h.usage.refusing() && planned.allocates() {
                        // Near `limits.max_memory`: what would bring more node replies in is
                        // refused, as Redis refuses commands past maxmemory; replies drain.
                        planned = Plan::Ready((crate::errors::oom(), None));
                    }
                    // CLIENT REPLY OFF / SKIP: this request's reply is dropped in its place.
                    let seq = inflight.next_seq();
                    let mute = self.c.session.replies.mute_this();
                    if mute && !matches!(planned, Plan::Barrier(..)) {
                        inflight.mute(seq);
                    }
                    self.barrier_muted = mute;
                    match planned {
                        Plan::Keyed(k) => {
                            if let Err(k) = gather.add(p, k, cx, inflight) {
                                gather.route(p, Routed::from_keyed(k), cx, inflight);
                            }
                        }
                        Plan::Split(sp) => {
                            if let Err(sp) = gather.add_split(p, sp, cx, inflight) {
                                gather.route(p, Routed::from_split(sp), cx, inflight);
                            }
                        }
                        Plan::Ready(done) => {
                            // Before anything that may change the session (HELLO 3, AUTH).
                            gather.flush(cx, inflight);
                            inflight.ready(done, size);
                        }
                        Plan::Routed(r) => gather.route(p, r, cx, inflight),
                        Plan::Barrier(spec, req, t) => {
                            gather.barrier(p, &spec);
                            self.barrier = Some(Box::new((spec, req, t)))
                        }
                    }
                    after_command(&mut self.parser, &self.c, &mut self.closing);
                }
                Ok(Parsed::Empty) => {}
                Ok(Parsed::Incomplete) => self.need_bytes = true,
                Err(e) => {
                    tracing::debug!(peer = %self.peer, error = %e, "closing client after protocol error");
                    p.metrics.clients_protocol_errors.inc();
                    self.inflight.ready((crate::errors::frame(&e.0), None), 0);
                    self.closing = true;
                }
            }
        }
        self.gather.flush(self.c.cx(), &mut self.inflight);
    }

    /// Runs the barrier command alone (everything before it is answered), watching the client's
    /// socket meanwhile, and writes its replies.
    async fn run_barrier(&mut self) -> Next {
        let Some((spec, req, started)) = self.barrier.take().map(|b| *b) else { return Next::Wait };
        let mut more = false;
        let out = {
            // Boxed: a transaction's or a pop's future is kilobytes, and inlined into this
            // connection's future every idle client would carry it (5.5 KB each, issue 19).
            let mut run = Box::pin(run_barrier(&self.h.router, &mut self.c, &spec, req, started));
            loop {
                tokio::select! {
                    out = &mut run => break out,
                    gone = client_gone(&mut self.rd, &mut self.rbuf, &self.h.router.metrics) => {
                        if gone {
                            // Dropping the command's future closes its node connection.
                            return Next::Close;
                        }
                        // More requests behind this one: parsed once it is answered.
                        more = true;
                    }
                }
            }
        };
        if more {
            self.need_bytes = false;
        }
        if !self.barrier_muted {
            for f in &out {
                self.out.push(f);
            }
        }
        if !self.flush().await {
            return Next::Close;
        }
        after_command(&mut self.parser, &self.c, &mut self.closing);
        Next::Loop
    }

    /// Draining: leave once everything received is answered and nothing more is waiting.
    fn drain_step(&mut self) -> Next {
        if !(self.draining && self.inflight.is_empty() && self.need_bytes) {
            return Next::Wait;
        }
        pool::lend(&mut self.rbuf, MIN_READ);
        self.rbuf.reserve(MIN_READ);
        match self.rd.try_read_buf(&mut self.rbuf) {
            Ok(0) => Next::Close,
            Ok(n) => {
                count_in(&self.h.router.metrics, n);
                self.need_bytes = false;
                Next::Loop
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && self.rbuf.is_empty() => Next::Close,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Next::Wait,
            Err(_) => Next::Close,
        }
    }

    fn tidy_read_buffer(&mut self) {
        if self.rbuf.is_empty() && self.rbuf.capacity() > MAX_READ {
            // A burst is over: give its memory back.
            self.rbuf = BytesMut::new();
            self.read_size = MIN_READ;
        } else if self.rbuf.is_empty() && self.inflight.is_empty() {
            // Nothing to parse, no request of it in flight: the next read takes a buffer again.
            pool::give_back(&mut self.rbuf);
        } else {
            // A big request's allocation, still held by a small rest behind it.
            crate::memory::settle(&mut self.rbuf, MAX_READ);
        }
    }

    /// Waits for the first of: the oldest request's reply, a subscription event, a map change or
    /// a repair due (subscribers), more bytes from the client, the start of a drain.
    async fn wait(&mut self, changes: &mut watch::Receiver<u64>) -> Next {
        let subscribed = self.c.pubsub.as_ref().is_some_and(|ps| ps.active());
        let repair = self.c.pubsub.as_ref().is_some_and(|ps| ps.needs_repair);
        let can_read = !self.closing && self.need_bytes && self.room();
        let limited = self.c.meter.limited();
        let metrics = &self.h.router.metrics;
        tokio::select! {
            biased;
            _ = self.c.meter.tripped(), if limited => return self.over_limit(),
            _ = self.inflight.front_ready(), if !self.inflight.is_empty() => return self.write_ready().await,
            // A subscriber's futures are boxed when first polled, which a disabled branch never
            // is: every waiting client holds this select's futures, and inline they would cost
            // each of them what only subscribers use (the same for the timers and MONITOR below).
            Some(ev) = async { Box::pin(next_event(&mut self.c.pubsub)).await }, if subscribed => {
                return Box::pin(self.on_event(ev)).await
            }
            _ = async { Box::pin(changes.changed()).await }, if subscribed => Box::pin(self.repair()).await,
            // Timers are a few hundred bytes each.
            _ = async { Box::pin(repair_due()).await }, if repair => Box::pin(self.repair()).await,
            r = self.rd.read_into(&mut self.rbuf, self.read_size), if can_read => match r {
                // The client closed its side: answer what it already sent, then close.
                Ok(0) | Err(_) => self.closing = true,
                Ok(n) => {
                    count_in(metrics, n);
                    self.need_bytes = false;
                    if n >= self.read_size / 2 {
                        self.read_size = (self.read_size * 2).min(MAX_READ);
                    }
                }
            },
            Some(line) = async { Box::pin(next_line(&mut self.monitor)).await }, if self.monitor.is_some() => {
                self.c.meter.unqueue(line.len());
                self.out.push(&line);
                if !self.flush().await {
                    return Next::Close;
                }
            }
            _ = async { Box::pin(pause_over(&mut self.pause_rx, self.held.as_ref().map(|h| h.1))).await }, if self.held.is_some() => {}
            _ = self.c.session.entry.inbox.ready() => self.read_inbox(),
        }
        Next::Loop
    }

    /// Whether another request may be read: fewer than `limits.max_pipeline` in flight, and
    /// fewer bytes of them than `limits.client_query_buffer_limit`.
    fn room(&self) -> bool {
        self.inflight.len() < self.h.limits.max_pipeline && self.inflight.request_bytes() < self.h.limits.query_buffer
    }
}

/// What a command may have changed in the session that the loop itself acts on.
fn after_command(parser: &mut RequestParser, c: &Conn, closing: &mut bool) {
    parser.authenticated = c.session.authenticated;
    let entry = &c.session.entry;
    entry.multi.store(c.tx.queued(), std::sync::atomic::Ordering::Relaxed);
    // QUIT, or CLIENT KILL of this client (by itself too): its reply is written, then it closes.
    if c.session.quit || entry.is_killed() {
        *closing = true;
    }
}

#[inline]
fn count_in(m: &Metrics, n: usize) {
    if m.enabled {
        m.bytes_in.inc_by(n as u64);
    }
}

impl Routed {
    /// A single-slot command whose slot had no healthy master when it was gathered: the router
    /// waits for one.
    fn from_keyed(k: item::Keyed) -> Routed {
        Routed { spec: k.spec, req: k.req, class: Timed::Keyed, started: k.started, master_only: k.master_only }
    }

    /// The same for a split command with a part whose slot had no healthy master.
    fn from_split(sp: item::Split) -> Routed {
        Routed { spec: sp.spec, req: sp.req, class: Timed::Fanout, started: sp.started, master_only: sp.master_only }
    }
}
