//! One task per client connection: reads and parses everything in the read buffer, dispatches each
//! request (local answer, refusal, a node's batch, or a routing future), and writes replies back
//! strictly in request order, batching every reply that is ready into one write. The single-slot
//! keyed commands of one read, and the per-slot parts of its multi-key commands (merged once all
//! parts are in), go to each node as one batch.
//!
//! Commands that change or depend on the connection's state (MULTI/EXEC/WATCH, blocking commands,
//! subscriptions, WAIT, RESET) are barriers: the task first answers everything before them, then
//! runs them alone, watching the client's socket so that a client that leaves mid-block releases
//! its node connection at once. Subscription messages are written as they arrive.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Poll, Waker};

use bytes::{Bytes, BytesMut};
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::backend::{Cx, Mailbox, Sink};
use crate::command::{self, Class, CommandSpec, Lookup, Special};
use crate::metrics::{Outcome, Timed};
use crate::resp::{self, reply, Limits, Parsed, Request, RequestParser};
use crate::route::{How, Parts, Settled, Trace};
use crate::server::Proxy;
use crate::session::pubsub::{self, Event, Kind, PubSub};
use crate::session::transaction::TxState;
use crate::session::{self, Session};

/// A reply and what to record about it once it is written.
type Done = (Bytes, Option<Rec>);

type Running = Pin<Box<dyn Future<Output = Filled> + Send>>;

/// What a running future answers: one request, or a batch sent to one node.
enum Filled {
    One(u64, Done),
    Many(Vec<Answer>),
}

/// One command's answer from a node's batch.
enum Answer {
    /// The reply to a whole request.
    Whole(u64, Done),
    /// Part `idx` of split request `seq`, and whether it was redirected on its way.
    Part(u64, usize, Bytes, bool),
}

/// A split multi-key request whose parts are out in the node batches; answered once all are in.
struct Merge {
    spec: Arc<CommandSpec>,
    argc: usize,
    parts: Parts,
    replies: Vec<Bytes>,
    left: usize,
    redirected: bool,
    proto: u8,
    started: Option<Instant>,
}

impl Merge {
    /// Takes part `idx`'s reply; the merged reply once it was the last one missing.
    fn fill(&mut self, idx: usize, reply: Bytes, redirected: bool) -> Option<Done> {
        let slot = self.replies.get_mut(idx)?;
        *slot = reply;
        self.redirected |= redirected;
        self.left -= 1;
        if self.left > 0 {
            return None;
        }
        let replies = std::mem::take(&mut self.replies);
        let merged = crate::route::merge_fan_out(self.spec.class, self.argc, &self.parts, replies, self.proto);
        let rec = self.started.map(|t| Rec::new(&self.spec, outcome(&merged, self.redirected), Timed::Fanout, t));
        Some((merged, rec))
    }
}

/// One request's place in [`Inflight`].
enum Slot {
    Waiting,
    /// A split request, collecting its parts' replies (found by sequence number in O(1), even
    /// with a thousand MGETs in one pipeline).
    Merging(Box<Merge>),
    Ready(Done),
}

/// A node batch written for this client, waiting for its replies in the mailbox.
struct Sent {
    addr: Arc<str>,
    cx: Cx,
    at: Instant,
    items: Vec<Item>,
}

/// The client's requests in flight, in the order they arrived: one slot per request, filled as
/// its reply comes (from a node batch's replies in the mailbox, or from a routing future),
/// written strictly from the front.
struct Inflight {
    p: Arc<Proxy>,
    /// Sequence number of `slots[0]`.
    base: u64,
    slots: VecDeque<Slot>,
    running: FuturesUnordered<Running>,
    /// Node batches out, by tag: `sent[0]` has tag `sent_base`; answered ones are `None`.
    sent: VecDeque<Option<Sent>>,
    sent_base: u64,
    mailbox: Arc<Mailbox>,
    /// Replies taken from the mailbox, kept to reuse its allocation.
    delivered: Vec<(u64, crate::backend::Reply)>,
}

impl Drop for Inflight {
    fn drop(&mut self) {
        self.mailbox.close();
    }
}

impl Inflight {
    fn new(p: Arc<Proxy>) -> Inflight {
        Inflight {
            p,
            base: 0,
            slots: VecDeque::new(),
            running: FuturesUnordered::new(),
            sent: VecDeque::new(),
            sent_base: 0,
            mailbox: Mailbox::new(),
            delivered: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.slots.len()
    }

    fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn ready(&mut self, done: Done) {
        self.slots.push_back(Slot::Ready(done));
    }

    /// A place for a reply that will come later; returns its sequence number.
    fn reserve(&mut self) -> u64 {
        self.push(Slot::Waiting)
    }

    /// A place for a split request, answered once `merge` has all its parts.
    fn reserve_merge(&mut self, merge: Merge) -> u64 {
        self.push(Slot::Merging(Box::new(merge)))
    }

    /// The sequence number the next reserved place gets.
    fn next_seq(&self) -> u64 {
        self.base + self.slots.len() as u64
    }

    fn push(&mut self, slot: Slot) -> u64 {
        self.slots.push_back(slot);
        self.base + self.slots.len() as u64 - 1
    }

    fn start(&mut self, f: Running) {
        self.running.push(f);
    }

    /// A request for the router, answered in its place. Polled at once, so that its first send
    /// is queued before any batch this client sends after it: batches are queued as they are
    /// made, a future only when polled (a hash-tagged MSET sent whole, then a GET of one of its
    /// keys, must reach the node in that order).
    fn route(&mut self, r: Routed, cx: Cx) {
        let seq = self.reserve();
        self.start(Box::pin(route(self.p.clone(), r, cx).map(move |d| Filled::One(seq, d))));
        self.collect();
    }

    /// Writes `items` to `addr` as one batch; its replies come back through the mailbox.
    fn send(&mut self, addr: Arc<str>, cx: Cx, items: Vec<Item>) {
        let n = items.len();
        let payload = match &items[..] {
            [one] => one.payload().clone(),
            all => {
                let mut b = BytesMut::with_capacity(all.iter().map(|i| i.payload().len()).sum());
                all.iter().for_each(|i| b.extend_from_slice(i.payload()));
                b.freeze()
            }
        };
        let tag = self.sent_base + self.sent.len() as u64;
        let sink = Sink::Mailbox(self.mailbox.clone(), tag);
        self.p.backend.submit(&addr, cx, payload, n, sink);
        self.sent.push_back(Some(Sent { addr, cx, at: Instant::now(), items }));
    }

    /// Answers each command of batch `tag` from the node's reply; commands redirected, refused,
    /// lost or answered late ([`crate::route::settle`]) go on through the router's own retry
    /// loop, as if sent there.
    fn answer_batch(&mut self, tag: u64, reply: crate::backend::Reply) {
        let Some(sent) = tag.checked_sub(self.sent_base).and_then(|i| self.sent.get_mut(i as usize)) else { return };
        let Some(sent) = sent.take() else { return };
        while matches!(self.sent.front(), Some(None)) {
            self.sent.pop_front();
            self.sent_base += 1;
        }
        match crate::route::settle(&sent.addr, sent.at, reply, sent.items.len()) {
            Settled::Stand(frames) => {
                for (item, frame) in sent.items.into_iter().zip(frames) {
                    self.answer(answered(item, frame));
                }
            }
            Settled::Each(each) => self.start(Box::pin(carry_on_batch(self.p.clone(), sent.cx, sent.items, each))),
        }
    }

    fn place(&mut self, filled: Filled) {
        match filled {
            Filled::One(seq, done) => self.put(seq, done),
            Filled::Many(all) => all.into_iter().for_each(|a| self.answer(a)),
        }
    }

    fn answer(&mut self, a: Answer) {
        match a {
            Answer::Whole(seq, done) => self.put(seq, done),
            Answer::Part(seq, idx, reply, redirected) => {
                let Some(s) = self.slot(seq) else { return };
                let Slot::Merging(m) = s else { return };
                if let Some(done) = m.fill(idx, reply, redirected) {
                    *s = Slot::Ready(done);
                }
            }
        }
    }

    fn slot(&mut self, seq: u64) -> Option<&mut Slot> {
        seq.checked_sub(self.base).and_then(|i| self.slots.get_mut(i as usize))
    }

    fn put(&mut self, seq: u64, done: Done) {
        if let Some(s) = self.slot(seq) {
            *s = Slot::Ready(done);
        }
    }

    /// Resolves once the oldest request has its reply. Cancel-safe: whatever arrives is placed.
    async fn front_ready(&mut self) {
        std::future::poll_fn(|cx| loop {
            if !matches!(self.slots.front(), Some(Slot::Waiting | Slot::Merging(_))) {
                return Poll::Ready(());
            }
            if !self.progress(Some(cx.waker()), cx) {
                return Poll::Pending;
            }
        })
        .await
    }

    /// Places every reply that is already there, without waiting.
    fn collect(&mut self) {
        let mut cx = std::task::Context::from_waker(futures_util::task::noop_waker_ref());
        while self.progress(None, &mut cx) {}
    }

    /// Places the replies that have come, from the mailbox and the running futures; false when
    /// there were none. `waker` (the mailbox's) and `cx` are woken when more come.
    fn progress(&mut self, waker: Option<&Waker>, cx: &mut std::task::Context<'_>) -> bool {
        let mut any = false;
        let mut got = std::mem::take(&mut self.delivered);
        if self.mailbox.take(waker, &mut got) {
            any = true;
            for (tag, reply) in got.drain(..) {
                self.answer_batch(tag, reply);
            }
        }
        self.delivered = got;
        while !self.running.is_empty() {
            let Poll::Ready(Some(f)) = self.running.poll_next_unpin(cx) else { break };
            self.place(f);
            any = true;
        }
        any
    }

    /// The oldest request's reply, if it has come.
    fn pop(&mut self) -> Option<Done> {
        if !matches!(self.slots.front(), Some(Slot::Ready(_))) {
            return None;
        }
        self.base += 1;
        match self.slots.pop_front() {
            Some(Slot::Ready(done)) => Some(done),
            _ => None,
        }
    }
}

/// A single-slot keyed command on its way to the slot's master, in its client's batch.
struct Keyed {
    spec: Arc<CommandSpec>,
    req: Request,
    slot: u16,
    started: Option<Instant>,
}

/// A multi-key request split per slot (MGET, MSET, DEL...), on its way to the node batches.
struct Split {
    spec: Arc<CommandSpec>,
    parts: Parts,
    req: Request,
    started: Option<Instant>,
}

/// One command of a node's batch: a whole single-slot request, or one slot's part of a split one.
enum Item {
    Whole(u64, Keyed),
    Part { seq: u64, idx: usize, slot: u16, cmd: Bytes, readonly: bool },
}

impl Item {
    fn payload(&self) -> &Bytes {
        match self {
            Item::Whole(_, k) => &k.req.raw,
            Item::Part { cmd, .. } => cmd,
        }
    }
}

/// Commands parsed from one read, gathered per node: each node gets one request carrying all of
/// them (one queued job, one delivery to the mailbox), instead of one per command or per part.
#[derive(Default)]
struct Gather {
    groups: Vec<(Arc<str>, Vec<Item>)>,
    /// Node addresses this client sent to, shared by its batches instead of copied per batch.
    addrs: Vec<Arc<str>>,
}

/// The healthy master of `slot` in `topo`, if it has one.
fn healthy_master(topo: &crate::topology::Topology, slot: u16) -> Option<&str> {
    topo.master_node(slot).filter(|n| !n.failed).map(|n| n.addr.as_str())
}

impl Gather {
    /// Adds `k` to its node's batch; gives it back when its slot has no healthy master in the map
    /// (the router then waits for one).
    fn add(&mut self, p: &Proxy, k: Keyed, inflight: &mut Inflight) -> Result<(), Keyed> {
        let topo = p.topology.load();
        let Some(addr) = healthy_master(&topo, k.slot) else { return Err(k) };
        let seq = inflight.reserve();
        self.push(addr, Item::Whole(seq, k));
        Ok(())
    }

    /// Adds each part of a split request to its node's batch, and the request to those waiting
    /// for their parts; gives it back when some part's slot has no healthy master.
    // The request comes back whole on the rare refusal; boxing it would cost every split request
    // an allocation.
    #[allow(clippy::result_large_err)]
    fn add_split(&mut self, p: &Proxy, sp: Split, cx: Cx, inflight: &mut Inflight) -> Result<(), Split> {
        let topo = p.topology.load();
        if sp.parts.iter().any(|part| healthy_master(&topo, part.slot).is_none()) {
            return Err(sp);
        }
        let readonly = sp.spec.readonly;
        let seq = inflight.next_seq();
        for (idx, part) in sp.parts.iter().enumerate() {
            if let Some(addr) = healthy_master(&topo, part.slot) {
                self.push(addr, Item::Part { seq, idx, slot: part.slot, cmd: sp.parts.cmd(part), readonly });
            }
        }
        let n = sp.parts.len();
        let reserved = inflight.reserve_merge(Merge {
            argc: sp.req.args.len(),
            spec: sp.spec,
            parts: sp.parts,
            replies: vec![Bytes::new(); n],
            left: n,
            redirected: false,
            proto: cx.proto,
            started: sp.started,
        });
        debug_assert_eq!(reserved, seq);
        Ok(())
    }

    fn push(&mut self, addr: &str, item: Item) {
        if let Some((_, items)) = self.groups.iter_mut().find(|(a, _)| &**a == addr) {
            items.push(item);
            return;
        }
        let shared = match self.addrs.iter().find(|a| &***a == addr) {
            Some(a) => a.clone(),
            None => {
                // Bounded by the nodes a client reaches; forgotten nodes are dropped past that.
                if self.addrs.len() >= MAX_ADDRS {
                    self.addrs.clear();
                }
                let a: Arc<str> = Arc::from(addr);
                self.addrs.push(a.clone());
                a
            }
        };
        // Room for a few: vectors grown from one by doubling were a tenth of an MGET's allocations.
        let mut items = Vec::with_capacity(4);
        items.push(item);
        self.groups.push((shared, items));
    }

    /// Sends every batch gathered so far. Called before anything else is started, so that a
    /// client's commands reach each node in the order it sent them.
    fn flush(&mut self, cx: Cx, inflight: &mut Inflight) {
        for (addr, items) in self.groups.drain(..) {
            inflight.send(addr, cx, items);
        }
    }
}

/// The rest of a node batch that did not simply succeed: each command redirected, refused, lost
/// or answered late goes on through the router's retry loop. Resent concurrently and started in
/// order, like commands sent one by one: a client's SET and GET of one key, both redirected,
/// reach the new owner in the order it sent them (the test of pipelines through ASK and MOVED
/// found this). After a lost connection each command decides alone (retry a read, report a
/// write as possibly executed).
async fn carry_on_batch(
    p: Arc<Proxy>,
    cx: Cx,
    items: Vec<Item>,
    settled: Vec<Result<Bytes, crate::route::FirstTry>>,
) -> Filled {
    let p = &p;
    let all = items.into_iter().zip(settled).map(|(item, s)| async move {
        match s {
            Ok(f) => answered(item, f),
            Err(first) => carry_on(p, item, cx, first).await,
        }
    });
    Filled::Many(futures_util::future::join_all(all).await)
}

/// The answer for a command whose reply came straight from its node.
fn answered(item: Item, frame: Bytes) -> Answer {
    match item {
        Item::Whole(seq, k) => {
            let rec = k.started.map(|t| Rec::new(&k.spec, outcome(&frame, false), Timed::Keyed, t));
            Answer::Whole(seq, (frame, rec))
        }
        Item::Part { seq, idx, .. } => Answer::Part(seq, idx, frame, false),
    }
}

/// Hands a command whose first attempt did not simply succeed to the router's retry loop.
async fn carry_on(p: &Proxy, item: Item, cx: Cx, first: crate::route::FirstTry) -> Answer {
    let trace = Trace::default();
    match item {
        Item::Whole(seq, k) => {
            let how = How::shared(k.spec.readonly);
            let reply = crate::route::continue_slot(p, k.slot, k.req.raw, how, cx, &trace, Some(first)).await;
            let rec = k.started.map(|t| Rec::new(&k.spec, outcome(&reply, trace.redirected()), Timed::Keyed, t));
            Answer::Whole(seq, (reply, rec))
        }
        Item::Part { seq, idx, slot, cmd, readonly } => {
            let reply = crate::route::continue_slot(p, slot, cmd, How::shared(readonly), cx, &trace, Some(first)).await;
            Answer::Part(seq, idx, reply, trace.redirected())
        }
    }
}

/// One request's metrics, recorded by the client task when its reply is written.
struct Rec {
    id: u32,
    outcome: Outcome,
    class: Timed,
    started: Instant,
}

impl Rec {
    fn new(spec: &CommandSpec, outcome: Outcome, class: Timed, started: Instant) -> Rec {
        Rec { id: spec.metric_id, outcome, class, started }
    }
}

/// How a reply counts in the metrics; `redirected` when the router followed a redirect for it.
fn outcome(reply: &[u8], redirected: bool) -> Outcome {
    if resp::is_error(reply) {
        Outcome::Error
    } else if redirected {
        Outcome::Redirect
    } else {
        Outcome::Ok
    }
}

/// Metric updates gathered over one batch of replies and applied once per batch: the shared
/// counters and histograms are atomics that both cores would otherwise fight over per request.
struct Batch {
    /// Made on first use, per class: an idle client holds none.
    latency: Vec<Option<prometheus::local::LocalHistogram>>,
    counts: Vec<(u32, Outcome, u64)>,
    now: Option<Instant>,
}

impl Batch {
    fn new() -> Batch {
        Batch { latency: Vec::new(), counts: Vec::new(), now: None }
    }

    #[inline]
    fn add(&mut self, p: &Proxy, r: Rec) {
        // One clock read per batch: every reply in it is ready by the time it is written.
        let now = *self.now.get_or_insert_with(Instant::now);
        let i = r.class as usize;
        if self.latency.len() <= i {
            self.latency.resize_with(i + 1, || None);
        }
        let h = self.latency[i].get_or_insert_with(|| p.metrics.latency(r.class).local());
        h.observe(now.saturating_duration_since(r.started).as_secs_f64());
        match self.counts.iter_mut().find(|(id, o, _)| *id == r.id && *o == r.outcome) {
            Some((_, _, n)) => *n += 1,
            None => self.counts.push((r.id, r.outcome, 1)),
        }
    }

    fn flush(&mut self, p: &Proxy) {
        if self.now.take().is_none() {
            return;
        }
        for h in self.latency.iter().flatten() {
            h.flush();
        }
        for (id, o, n) in self.counts.drain(..) {
            p.metrics.command_by_id(id).record_n(o, n);
        }
    }
}

const NOAUTH: &str = "NOAUTH Authentication required.";

/// Node addresses a client keeps for its batches (a cluster's masters, with room for changes).
const MAX_ADDRS: usize = 64;

/// Read sizes: the first read of a connection, and the most one read asks for.
const MIN_READ: usize = 1024;
const MAX_READ: usize = 64 * 1024;

/// Bytes a client may send ahead while one of its commands blocks, before we stop reading.
const MAX_READ_AHEAD: usize = 1 << 20;

/// One connection's state beyond the session: its transaction and its subscriptions.
struct Conn {
    session: Session,
    tx: TxState,
    pubsub: Option<PubSub>,
}

impl Conn {
    /// Who is asking, for the backend: the protocol now, and this client's lane.
    fn cx(&self) -> Cx {
        Cx { proto: self.session.proto, lane: self.session.id as u32 }
    }

    /// RESP2 clients with subscriptions may only (un)subscribe, PING, QUIT and RESET.
    fn subscribed_resp2(&self) -> bool {
        self.session.proto < 3 && self.pubsub.as_ref().is_some_and(|ps| ps.active())
    }
}

/// What to do with one parsed request.
enum Plan {
    /// Answered already (locally, or refused).
    Ready(Done),
    /// A single-slot keyed command: joins its node's batch.
    Keyed(Keyed),
    /// A multi-key command over several slots: its parts join their nodes' batches.
    Split(Split),
    /// Everything else the router answers.
    Routed(Routed),
    /// Run alone, once everything before it is answered.
    Barrier(Arc<CommandSpec>, Request, Option<Instant>),
}

/// A request for the router, with what its metrics need.
struct Routed {
    spec: Arc<CommandSpec>,
    req: Request,
    class: Timed,
    started: Option<Instant>,
}

async fn route(p: Arc<Proxy>, r: Routed, cx: Cx) -> Done {
    let trace = Trace::default();
    let reply = crate::route::route(p, r.spec.clone(), r.req, cx, &trace).await;
    let rec = r.started.map(|t| Rec::new(&r.spec, outcome(&reply, trace.redirected()), r.class, t));
    (reply, rec)
}

/// Serves one client until it disconnects, sends QUIT, or breaks the protocol.
pub async fn serve(p: Arc<Proxy>, stream: TcpStream, peer: SocketAddr) {
    let id = p.stats.next_client_id.fetch_add(1, Ordering::Relaxed) + 1;
    p.stats.connected_clients.fetch_add(1, Ordering::Relaxed);
    p.stats.total_connections.fetch_add(1, Ordering::Relaxed);
    let mut c = Conn { session: Session::new(&p, id, peer.to_string()), tx: TxState::default(), pubsub: None };
    let (mut rd, mut wr) = stream.into_split();
    let limits = Limits { max_bulk_len: p.cfg.limits.max_bulk_len, max_inline_len: p.cfg.limits.max_inline_len };
    let mut parser = RequestParser::new(limits, c.session.authenticated);
    let max_pipeline = p.cfg.limits.max_pipeline;
    // Buffers start small and grow with the client's bursts: ten thousand idle clients must not
    // cost ten thousand 16 KB buffers.
    let mut rbuf = BytesMut::new();
    let mut wbuf = BytesMut::new();
    let mut read_size = MIN_READ;
    let mut inflight = Inflight::new(p.clone());
    let mut gather = Gather::default();
    let mut barrier: Option<(Arc<CommandSpec>, Request, Option<Instant>)> = None;
    // Once set we read no more: remaining replies are flushed, then the connection closes.
    let mut closing = false;
    // Set when the parser needs more bytes; cleared whenever new bytes arrive.
    let mut need_bytes = true;
    let mut shutdown = p.shutdown.clone();
    let mut draining = *shutdown.borrow();
    // One wait for the whole connection: a fresh `changed()` per loop turn registered and dropped
    // a waiter every request (2 % of the proxy's CPU at pipeline 1).
    let stop = async move {
        let _ = shutdown.changed().await;
    };
    tokio::pin!(stop);
    // Polled on every turn the client waits, and a registered `changed()` locks its waiter list on
    // each poll: once registered for this task's waker, it is polled again only when the watch did
    // change.
    let seen = p.shutdown.clone();
    let mut stop_waker: Option<Waker> = None;
    let mut changes = p.topology.subscribe();
    let mut batch = Batch::new();
    'conn: loop {
        // Requests already buffered are parsed before reading more, as soon as there is room:
        // a client that sent a deep pipeline and now only waits must not stall.
        // One clock read per batch of requests parsed from the buffer, not one per request.
        let mut batch_clock = None;
        while barrier.is_none() && !closing && !need_bytes && inflight.len() < max_pipeline {
            match parser.next(&mut rbuf) {
                Ok(Parsed::Request(req)) => {
                    let started = p.metrics.enabled.then(|| *batch_clock.get_or_insert_with(Instant::now));
                    let cx = c.cx();
                    match plan(&p, &mut c, req, started) {
                        Plan::Keyed(k) => {
                            if let Err(k) = gather.add(&p, k, &mut inflight) {
                                gather.flush(cx, &mut inflight);
                                let r = Routed { spec: k.spec, req: k.req, class: Timed::Keyed, started: k.started };
                                inflight.route(r, cx);
                            }
                        }
                        Plan::Split(sp) => {
                            if let Err(sp) = gather.add_split(&p, sp, cx, &mut inflight) {
                                gather.flush(cx, &mut inflight);
                                let r =
                                    Routed { spec: sp.spec, req: sp.req, class: Timed::Fanout, started: sp.started };
                                inflight.route(r, cx);
                            }
                        }
                        Plan::Ready(done) => {
                            // Before anything that may change the session (HELLO 3, AUTH).
                            gather.flush(cx, &mut inflight);
                            inflight.ready(done);
                        }
                        Plan::Routed(r) => {
                            gather.flush(cx, &mut inflight);
                            inflight.route(r, cx);
                        }
                        Plan::Barrier(spec, req, t) => barrier = Some((spec, req, t)),
                    }
                    parser.authenticated = c.session.authenticated;
                    if c.session.quit {
                        closing = true;
                    }
                }
                Ok(Parsed::Empty) => {}
                Ok(Parsed::Incomplete) => need_bytes = true,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "closing client after protocol error");
                    p.metrics.clients_protocol_errors.inc();
                    inflight.ready((reply::error(&e.0), None));
                    closing = true;
                }
            }
        }
        gather.flush(c.cx(), &mut inflight);
        if inflight.is_empty() {
            if let Some((spec, req, started)) = barrier.take() {
                let mut more = false;
                let out = {
                    let run = run_barrier(&p, &mut c, &spec, req, started);
                    tokio::pin!(run);
                    loop {
                        tokio::select! {
                            out = &mut run => break out,
                            gone = client_gone(&mut rd, &mut rbuf, &p) => {
                                if gone {
                                    // Dropping the command's future closes its node connection.
                                    break 'conn;
                                }
                                // More requests behind this one: parsed once it is answered.
                                more = true;
                            }
                        }
                    }
                };
                if more {
                    need_bytes = false;
                }
                for f in &out {
                    wbuf.extend_from_slice(f);
                }
                if write_out(&p, &mut wr, &mut wbuf).await.is_err() {
                    break;
                }
                parser.authenticated = c.session.authenticated;
                if c.session.quit {
                    closing = true;
                }
                continue;
            }
        }
        if closing && inflight.is_empty() {
            break;
        }
        // Draining: leave once everything received is answered and nothing more is waiting.
        if draining && inflight.is_empty() && need_bytes {
            rbuf.reserve(MIN_READ);
            match rd.try_read_buf(&mut rbuf) {
                Ok(0) => break,
                Ok(n) => {
                    count_in(&p, n);
                    need_bytes = false;
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && rbuf.is_empty() => break,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
        }
        if rbuf.is_empty() && rbuf.capacity() > MAX_READ {
            // A burst is over: give its memory back.
            rbuf = BytesMut::new();
            read_size = MIN_READ;
        }
        // Room for at least half a read: `read_size` grows with the requests, so that a request
        // of 1 KB does not arrive in two reads of a buffer with 1 KB left.
        if rbuf.capacity() - rbuf.len() < read_size / 2 {
            rbuf.reserve(read_size);
        }
        let subscribed = c.pubsub.as_ref().is_some_and(|ps| ps.active());
        let repair = c.pubsub.as_ref().is_some_and(|ps| ps.needs_repair);
        tokio::select! {
            biased;
            _ = inflight.front_ready(), if !inflight.is_empty() => {
                inflight.collect();
                while let Some((r, rec)) = inflight.pop() {
                    wbuf.extend_from_slice(&r);
                    if let Some(r) = rec {
                        batch.add(&p, r);
                    }
                }
                // Before the write: a client that reads its reply and then scrapes sees it counted.
                batch.flush(&p);
                if write_out(&p, &mut wr, &mut wbuf).await.is_err() {
                    break;
                }
            }
            Some(ev) = next_event(&mut c.pubsub), if subscribed => {
                if let Some(ps) = c.pubsub.as_mut() {
                    match ev {
                        Event::Frame(id, f) => {
                            if let Some(m) = ps.on_frame(id, f) {
                                wbuf.extend_from_slice(&m);
                            }
                        }
                        Event::Closed(id) => ps.on_closed(id),
                    }
                    if ps.needs_repair {
                        ps.repair(&p).await;
                    }
                }
                if !wbuf.is_empty() && write_out(&p, &mut wr, &mut wbuf).await.is_err() {
                    break;
                }
            }
            _ = changes.changed(), if subscribed => {
                if let Some(ps) = c.pubsub.as_mut() {
                    ps.repair(&p).await;
                }
            }
            _ = repair_due(), if repair => {
                if let Some(ps) = c.pubsub.as_mut() {
                    ps.repair(&p).await;
                }
            }
            r = rd.read_buf(&mut rbuf), if !closing && need_bytes && inflight.len() < max_pipeline => {
                match r {
                    // The client closed its side: answer what it already sent, then close.
                    Ok(0) | Err(_) => closing = true,
                    Ok(n) => {
                        count_in(&p, n);
                        need_bytes = false;
                        if n >= read_size / 2 {
                            read_size = (read_size * 2).min(MAX_READ);
                        }
                    }
                }
            }
            _ = std::future::poll_fn(|cx| {
                if stop_waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) && !seen.has_changed().unwrap_or(true) {
                    return Poll::Pending;
                }
                stop_waker = Some(cx.waker().clone());
                stop.as_mut().poll(cx)
            }), if !draining => draining = true,
        }
    }
    // Watches, subscriptions and blocked pops end with their connections.
    drop(c);
    let _ = wr.shutdown().await;
    p.stats.connected_clients.fetch_sub(1, Ordering::Relaxed);
}

/// Resolves after the subscriptions' repair interval. A `sleep()` written in the `select!` was
/// made (clock read, runtime handle) and dropped on every loop turn, even with its branch
/// disabled; this future builds it only when polled, i.e. when a repair is due.
async fn repair_due() {
    tokio::time::sleep(pubsub::REPAIR_EVERY).await
}

async fn next_event(ps: &mut Option<PubSub>) -> Option<Event> {
    match ps.as_mut() {
        Some(ps) => ps.next_event().await,
        None => std::future::pending().await,
    }
}

async fn write_out(p: &Proxy, wr: &mut tokio::net::tcp::OwnedWriteHalf, wbuf: &mut BytesMut) -> std::io::Result<()> {
    wr.write_all(wbuf).await?;
    if p.metrics.enabled {
        p.metrics.bytes_out.inc_by(wbuf.len() as u64);
    }
    wbuf.clear();
    if wbuf.capacity() > MAX_READ {
        *wbuf = BytesMut::new();
    }
    Ok(())
}

/// Resolves when the client has gone away (true), or sent more bytes (false, to be parsed once
/// the running command is done). Stops reading once enough is buffered; then only the command's
/// own end, or the connection's, ends the wait.
async fn client_gone(rd: &mut tokio::net::tcp::OwnedReadHalf, rbuf: &mut BytesMut, p: &Proxy) -> bool {
    if rbuf.len() >= MAX_READ_AHEAD {
        return std::future::pending().await;
    }
    rbuf.reserve(4096);
    match rd.read_buf(rbuf).await {
        Ok(0) | Err(_) => true,
        Ok(n) => {
            count_in(p, n);
            false
        }
    }
}

#[inline]
fn count_in(p: &Proxy, n: usize) {
    if p.metrics.enabled {
        p.metrics.bytes_in.inc_by(n as u64);
    }
}

const SUBSCRIBED_ONLY: &str =
    "only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context";

/// Decides what answers `req`: the session (local commands), a refusal, the router, or the
/// connection itself in order (a barrier).
fn plan(p: &Proxy, c: &mut Conn, req: Request, started: Option<Instant>) -> Plan {
    let m = &p.metrics;
    let spec = match p.table.lookup(&req.args) {
        Lookup::Found(spec) => spec.clone(),
        Lookup::Unknown(e) | Lookup::WrongArity(e) => {
            let reply = if c.session.authenticated {
                c.tx.flag();
                e
            } else {
                reply::error(NOAUTH)
            };
            if m.enabled {
                m.command("other").record(Outcome::Error);
            }
            return Plan::Ready((reply, None));
        }
    };
    let id = spec.metric_id;
    let local = |reply: Bytes, class: Timed| {
        let rec = started.map(|started| Rec { id, outcome: outcome(&reply, false), class, started });
        Plan::Ready((reply, rec))
    };
    let name = spec.name.as_str();
    if !c.session.authenticated && !matches!(name, "auth" | "hello" | "quit") {
        return local(reply::error(NOAUTH), Timed::Refused);
    }
    if c.subscribed_resp2() && sub_kind(name).is_none() && !matches!(name, "ping" | "quit" | "reset") {
        let e = format!("ERR Can't execute '{name}': {SUBSCRIBED_ONLY}");
        return local(reply::error(&e), Timed::Refused);
    }
    if c.tx.in_multi() {
        return match name {
            "exec" | "discard" | "reset" => Plan::Barrier(spec, req, started),
            "multi" => local(c.tx.begin(), Timed::Transaction),
            "watch" => local(reply::error("ERR WATCH inside MULTI is not allowed"), Timed::Transaction),
            "quit" => local(session::handle(p, &mut c.session, name, &req.args), Timed::Local),
            _ => {
                let r = c.tx.queue(p, &spec, req);
                local(r, Timed::Transaction)
            }
        };
    }
    if c.subscribed_resp2() && name == "ping" {
        // In subscribed mode Redis answers PING with a push-style array.
        let msg = req.args.get(1).cloned().unwrap_or_default();
        return local(reply::array(&[reply::bulk(b"pong"), reply::bulk(&msg)]), Timed::Local);
    }
    let class = match spec.class {
        Class::Stateful => match name {
            "multi" => return local(c.tx.begin(), Timed::Transaction),
            "unwatch" if !c.tx.watching() => return local(reply::ok(), Timed::Transaction),
            _ => return Plan::Barrier(spec, req, started),
        },
        Class::Local if name == "reset" => return Plan::Barrier(spec, req, started),
        Class::Local => return local(session::handle(p, &mut c.session, name, &req.args), Timed::Local),
        Class::Refused(why) => return local(reply::error(why), Timed::Refused),
        _ if spec.blocking && (!matches!(name, "xread" | "xreadgroup") || command::asks_to_block(&spec, &req.args)) => {
            return Plan::Barrier(spec, req, started)
        }
        Class::Keyed => Timed::Keyed,
        Class::MGet | Class::MSet | Class::SumKeys => Timed::Fanout,
        Class::AllMasters(_) | Class::RandomKey | Class::PubSubInfo => Timed::AllMasters,
        Class::AnyMaster => Timed::AnyMaster,
        Class::Scan => Timed::Scan,
        Class::Info => Timed::Info,
    };
    if matches!(spec.class, Class::Keyed) && matches!(spec.special, Special::None) {
        if let Some(slot) = spec.single_slot(&req.args) {
            return Plan::Keyed(Keyed { spec, req, slot, started });
        }
    }
    // MSET with a key missing its value is left to the router, which answers Redis's error.
    let pairs_ok = spec.class != Class::MSet || req.args.len() % 2 == 1;
    if class == Timed::Fanout && pairs_ok && matches!(spec.special, Special::None) {
        if let Some(parts) = crate::route::split(spec.class, &req.args) {
            return Plan::Split(Split { spec, parts, req, started });
        }
    }
    Plan::Routed(Routed { spec, req, class, started })
}

fn sub_kind(name: &str) -> Option<(Kind, bool)> {
    Some(match name {
        "subscribe" => (Kind::Channel, true),
        "psubscribe" => (Kind::Pattern, true),
        "ssubscribe" => (Kind::Shard, true),
        "unsubscribe" => (Kind::Channel, false),
        "punsubscribe" => (Kind::Pattern, false),
        "sunsubscribe" => (Kind::Shard, false),
        _ => return None,
    })
}

/// Runs a barrier command; returns the frames to write.
async fn run_barrier(
    p: &Arc<Proxy>,
    c: &mut Conn,
    spec: &Arc<CommandSpec>,
    req: Request,
    started: Option<Instant>,
) -> Vec<Bytes> {
    let cx = c.cx();
    let name = spec.name.as_str();
    let (out, class): (Vec<Bytes>, Timed) = match name {
        "exec" => (vec![c.tx.exec(p, cx).await], Timed::Transaction),
        "discard" => (vec![c.tx.discard(p).await], Timed::Transaction),
        "watch" => (vec![c.tx.watch(p, &req.args, cx.proto).await], Timed::Transaction),
        "unwatch" => (vec![c.tx.unwatch(p).await], Timed::Transaction),
        "reset" => {
            c.tx.discard(p).await;
            c.tx.unwatch(p).await;
            c.pubsub = None;
            (vec![session::handle(p, &mut c.session, name, &req.args)], Timed::Local)
        }
        "wait" => (vec![crate::session::blocking::wait(p, &req.args, cx).await], Timed::Blocking),
        _ => match sub_kind(name) {
            Some((kind, true)) => {
                let proto = c.session.proto;
                let ps = c.pubsub.get_or_insert_with(|| PubSub::new(proto));
                (ps.subscribe(p, kind, &req.args[1..]).await, Timed::Local)
            }
            Some((kind, false)) => {
                let proto = c.session.proto;
                let ps = c.pubsub.get_or_insert_with(|| PubSub::new(proto));
                let out = ps.unsubscribe(kind, &req.args[1..]).await;
                if !ps.active() {
                    c.pubsub = None;
                }
                (out, Timed::Local)
            }
            None => (vec![crate::session::blocking::run(p, spec, req, cx).await], Timed::Blocking),
        },
    };
    if let Some(t) = started {
        let first = out.first().map(|r| &r[..]).unwrap_or_default();
        p.metrics.command_by_id(spec.metric_id).record(outcome(first, false));
        p.metrics.latency(class).observe(t.elapsed().as_secs_f64());
    }
    out
}
