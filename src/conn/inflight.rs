//! The client's requests in flight, in the order they arrived: one place per request, filled as
//! its reply comes (from a node batch's replies in the client's mailbox, or from a routing
//! future), and emptied strictly from the front, so replies go back in request order. A split
//! request's place collects its parts and is filled once all are in; a batch command that did not
//! simply succeed goes on through the router's retry loop.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Poll, Waker};

use bytes::{Bytes, BytesMut};
use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::FutureExt;
use tokio::time::Instant;

use super::item::{Done, Item, Routed};
use super::record::{outcome, Rec};
use crate::backend::{Cx, Mailbox, Reply, Sink};
use crate::command::CommandSpec;
use crate::memory::Meter;
use crate::metrics::Timed;
use crate::route::{self, FirstTry, How, Parts, Router, Settled, Trace};

type Running = Pin<Box<dyn Future<Output = Filled> + Send>>;

/// What a running future answers: one request, or a batch sent to one node.
enum Filled {
    One(u64, Done),
    Many(Vec<Answer>),
}

/// One command's answer from a node's batch.
pub(super) enum Answer {
    /// The reply to a whole request.
    Whole(u64, Done),
    /// Part `idx` of split request `seq`, and whether it was redirected on its way.
    Part(u64, usize, Bytes, bool),
}

/// A split multi-key request whose parts are out in the node batches; answered once all are in.
pub(super) struct Merge {
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
    pub(super) fn new(spec: Arc<CommandSpec>, argc: usize, parts: Parts, proto: u8, started: Option<Instant>) -> Merge {
        let n = parts.len();
        Merge { spec, argc, parts, replies: vec![Bytes::new(); n], left: n, redirected: false, proto, started }
    }

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
        let merged = route::merge_fan_out(self.spec.class, self.argc, &self.parts, replies, self.proto);
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
pub(super) struct Inflight {
    p: Arc<Router>,
    /// Sequence number of `slots[0]`.
    base: u64,
    slots: VecDeque<Slot>,
    /// Made when the first one starts: most clients never route a request this way, and an
    /// empty set is two allocations (144 bytes) per client.
    running: Option<FuturesUnordered<Running>>,
    /// Node batches out, by tag: `sent[0]` has tag `sent_base`; answered ones are `None`.
    sent: VecDeque<Option<Sent>>,
    sent_base: u64,
    mailbox: Arc<Mailbox>,
    /// Replies taken from the mailbox, kept to reuse its allocation.
    delivered: Vec<(u64, Reply)>,
    /// The size of each request in flight, in the order of `slots`, and their sum: a client's
    /// requests in flight are bounded by bytes (`limits.client_query_buffer_limit`) as well.
    sizes: VecDeque<u32>,
    request_bytes: usize,
    /// Bytes of the replies ready and not yet written (what the client holds, for its output
    /// limit).
    ready_bytes: usize,
    meter: Arc<Meter>,
    /// Requests whose replies are not written (CLIENT REPLY OFF / SKIP), by sequence number.
    muted: VecDeque<u64>,
}

impl Drop for Inflight {
    fn drop(&mut self) {
        self.mailbox.close();
    }
}

impl Inflight {
    pub(super) fn new(p: Arc<Router>, meter: Arc<Meter>) -> Inflight {
        Inflight {
            p,
            base: 0,
            slots: VecDeque::new(),
            muted: VecDeque::new(),
            running: None,
            sent: VecDeque::new(),
            sent_base: 0,
            mailbox: Mailbox::new(meter.clone()),
            meter,
            delivered: Vec::new(),
            sizes: VecDeque::new(),
            request_bytes: 0,
            ready_bytes: 0,
        }
    }

    /// Drops the queues' capacity when nothing is in flight.
    pub(super) fn shed(&mut self) {
        if self.slots.is_empty() && self.running.as_ref().is_none_or(|r| r.is_empty()) && self.sent.is_empty() {
            self.slots = VecDeque::new();
            self.sizes = VecDeque::new();
            self.sent = VecDeque::new();
            self.muted = VecDeque::new();
            self.delivered = Vec::new();
            self.running = None;
            self.mailbox.shed();
        }
    }

    /// Bytes of the requests in flight.
    pub(super) fn request_bytes(&self) -> usize {
        self.request_bytes
    }

    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The reply to a request of `size` bytes, answered already.
    pub(super) fn ready(&mut self, done: Done, size: usize) {
        self.ready_bytes += done.0.len();
        self.push(Slot::Ready(done), size);
    }

    /// A place for the reply to a request of `size` bytes that will come later; returns its
    /// sequence number.
    pub(super) fn reserve(&mut self, size: usize) -> u64 {
        self.push(Slot::Waiting, size)
    }

    /// A place for a split request of `size` bytes, answered once `merge` has all its parts.
    pub(super) fn reserve_merge(&mut self, merge: Merge, size: usize) -> u64 {
        self.push(Slot::Merging(Box::new(merge)), size)
    }

    /// The sequence number the next reserved place gets.
    pub(super) fn next_seq(&self) -> u64 {
        self.base + self.slots.len() as u64
    }

    fn push(&mut self, slot: Slot, size: usize) -> u64 {
        self.slots.push_back(slot);
        // A request is at most `limits.max_bulk_len` per argument; counted in full up to 4 GB.
        let size = u32::try_from(size).unwrap_or(u32::MAX);
        self.sizes.push_back(size);
        self.request_bytes += size as usize;
        self.base + self.slots.len() as u64 - 1
    }

    fn start(&mut self, f: Running) {
        self.running.get_or_insert_with(FuturesUnordered::new).push(f);
    }

    /// A request for the router, answered in its place. Polled at once, so that its first send
    /// is queued before any batch this client sends after it: batches are queued as they are
    /// made, a future only when polled (a hash-tagged MSET sent whole, then a GET of one of its
    /// keys, must reach the node in that order).
    pub(super) fn route(&mut self, r: Routed, cx: Cx) {
        let seq = self.reserve(r.req.raw.len());
        self.start(Box::pin(route(self.p.clone(), r, cx).map(move |d| Filled::One(seq, d))));
        self.collect();
    }

    /// Writes `items` to `addr` as one batch; its replies come back through the mailbox.
    pub(super) fn send(&mut self, addr: Arc<str>, cx: Cx, items: Vec<Item>) {
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
    /// lost or answered late ([`route::settle`]) go on through the router's own retry
    /// loop, as if sent there.
    fn answer_batch(&mut self, tag: u64, reply: Reply) {
        let Some(sent) = tag.checked_sub(self.sent_base).and_then(|i| self.sent.get_mut(i as usize)) else { return };
        let Some(sent) = sent.take() else { return };
        while matches!(self.sent.front(), Some(None)) {
            self.sent.pop_front();
            self.sent_base += 1;
        }
        match route::settle(&sent.addr, sent.at, reply, sent.items.len()) {
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
                    let n = done.0.len();
                    *s = Slot::Ready(done);
                    self.ready_bytes += n;
                }
            }
        }
    }

    fn slot(&mut self, seq: u64) -> Option<&mut Slot> {
        seq.checked_sub(self.base).and_then(|i| self.slots.get_mut(i as usize))
    }

    fn put(&mut self, seq: u64, done: Done) {
        let n = done.0.len();
        if let Some(s) = self.slot(seq) {
            *s = Slot::Ready(done);
            self.ready_bytes += n;
        }
    }

    /// Resolves once the oldest request has its reply. Cancel-safe: whatever arrives is placed.
    pub(super) async fn front_ready(&mut self) {
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
    pub(super) fn collect(&mut self) {
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
        while let Some(running) = self.running.as_mut().filter(|r| !r.is_empty()) {
            let Poll::Ready(Some(f)) = running.poll_next_unpin(cx) else { break };
            self.place(f);
            any = true;
        }
        if any {
            self.count_ready();
        }
        any
    }

    /// Tells the client's meter what waits here: taken from the mailbox, these bytes left its
    /// count there, and replies behind an unanswered request can wait a while.
    pub(super) fn count_ready(&self) {
        self.meter.set_ready(self.ready_bytes);
    }

    /// The reply to request `seq` (not yet answered) is dropped instead of written.
    pub(super) fn mute(&mut self, seq: u64) {
        self.muted.push_back(seq);
    }

    /// The oldest request's reply, if it has come (empty when muted).
    pub(super) fn pop(&mut self) -> Option<Done> {
        if !matches!(self.slots.front(), Some(Slot::Ready(_))) {
            return None;
        }
        let seq = self.base;
        self.base += 1;
        if self.muted.front() == Some(&seq) {
            self.muted.pop_front();
            self.request_bytes -= self.sizes.pop_front().unwrap_or(0) as usize;
            return match self.slots.pop_front() {
                Some(Slot::Ready((r, rec))) => {
                    self.ready_bytes -= r.len();
                    Some((bytes::Bytes::new(), rec))
                }
                _ => None,
            };
        }
        self.request_bytes -= self.sizes.pop_front().unwrap_or(0) as usize;
        match self.slots.pop_front() {
            Some(Slot::Ready(done)) => {
                self.ready_bytes -= done.0.len();
                Some(done)
            }
            _ => None,
        }
    }
}

/// The rest of a node batch that did not simply succeed: each command redirected, refused, lost
/// or answered late goes on through the router's retry loop. Resent concurrently and started in
/// order, like commands sent one by one: a client's SET and GET of one key, both redirected,
/// reach the new owner in the order it sent them (the test of pipelines through ASK and MOVED
/// found this). After a lost connection each command decides alone (retry a read, report a
/// write as possibly executed).
async fn carry_on_batch(p: Arc<Router>, cx: Cx, items: Vec<Item>, settled: Vec<Result<Bytes, FirstTry>>) -> Filled {
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
async fn carry_on(p: &Router, item: Item, cx: Cx, first: FirstTry) -> Answer {
    let trace = Trace::default();
    match item {
        Item::Whole(seq, k) => {
            let how = How::shared(k.spec.readonly).master_only(k.master_only);
            let reply = route::continue_slot(p, k.slot, k.req.raw, how, cx, &trace, Some(first)).await;
            let rec = k.started.map(|t| Rec::new(&k.spec, outcome(&reply, trace.redirected()), Timed::Keyed, t));
            Answer::Whole(seq, (reply, rec))
        }
        Item::Part { seq, idx, slot, cmd, readonly, master_only } => {
            let how = How::shared(readonly).master_only(master_only);
            let reply = route::continue_slot(p, slot, cmd, how, cx, &trace, Some(first)).await;
            Answer::Part(seq, idx, reply, trace.redirected())
        }
    }
}

/// Routes `r` and records what its metrics need.
async fn route(p: Arc<Router>, r: Routed, cx: Cx) -> Done {
    let mut trace = Trace::default();
    trace.master_only = r.master_only;
    let reply = route::route(p, r.spec.clone(), r.req, cx, &trace).await;
    let rec = r.started.map(|t| Rec::new(&r.spec, outcome(&reply, trace.redirected()), r.class, t));
    (reply, rec)
}
