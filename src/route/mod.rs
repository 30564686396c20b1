//! Routing: turns one client request into backend requests and their replies into one reply, as a
//! single Redis server would have answered. Owns the retry policy: MOVED (patch the slot, refresh,
//! resend), ASK (ASKING + resend, map untouched), TRYAGAIN/CLUSTERDOWN/LOADING and unreachable
//! owners (backoff within a budget), and the rule that a command already written to a connection
//! that broke is retried only when it is read-only.

pub mod info;
pub mod scripts;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::time::Instant;

use crate::backend::{BackendError, Cx};
use crate::command::{Class, CommandSpec, Merge, Special};
use crate::resp::{self, reply, Request};
use crate::server::Proxy;
use crate::slot;

pub const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";
pub(crate) const SLOT_NOT_SERVED: &str = "CLUSTERDOWN Hash slot not served";

/// What happened to one request on its way, for the metrics.
#[derive(Default)]
pub struct Trace {
    redirected: AtomicBool,
}

impl Trace {
    pub fn redirected(&self) -> bool {
        self.redirected.load(Ordering::Relaxed)
    }
}

/// Routes a request whose class is not answered locally.
pub async fn route(p: Arc<Proxy>, spec: Arc<CommandSpec>, req: Request, cx: Cx, trace: &Trace) -> Bytes {
    let readonly = spec.readonly;
    match spec.special {
        Special::None => {}
        Special::RememberScript(at) => {
            if let Some(b) = req.args.get(at) {
                p.scripts.remember(b);
            }
        }
        Special::EvalSha => return evalsha(p, spec, req, cx, trace).await,
        Special::ScriptFlush => p.scripts.forget_all(),
        // Every node hears every PUBLISH over the cluster bus, but messages sent to different
        // nodes can overtake each other: one node per channel keeps a publisher's order.
        Special::Publish if req.args.len() == 3 => {
            let s = slot::slot(&req.args[1]);
            return send_to_slot(&p, s, req.raw, false, cx, trace).await;
        }
        Special::Publish => {}
    }
    route_class(p, spec, req, cx, trace, readonly).await
}

/// EVALSHA; on NOSCRIPT for a script the proxy has seen, loads it on every master and retries once
/// (the node may be a master added or promoted after the load, or one whose cache was flushed).
async fn evalsha(p: Arc<Proxy>, spec: Arc<CommandSpec>, req: Request, cx: Cx, trace: &Trace) -> Bytes {
    let readonly = spec.readonly;
    let first = route_class(p.clone(), spec.clone(), req.clone(), cx, trace, readonly).await;
    let noscript = resp::error_text(&first).is_some_and(|t| t.starts_with(b"NOSCRIPT"));
    let Some(body) = req.args.get(1).filter(|_| noscript).and_then(|sha| p.scripts.get(sha)) else { return first };
    let load = resp::encode_command(&[b"SCRIPT".as_ref(), b"LOAD", &body]);
    let loaded = all_masters(&p, load, Merge::First, cx).await;
    if resp::is_error(&loaded) {
        return first;
    }
    route_class(p, spec, req, cx, trace, readonly).await
}

async fn route_class(
    p: Arc<Proxy>,
    spec: Arc<CommandSpec>,
    req: Request,
    cx: Cx,
    trace: &Trace,
    readonly: bool,
) -> Bytes {
    match spec.class {
        Class::Keyed => {
            let keys = spec.key_positions(&req.args);
            match keys {
                Some(k) if !k.is_empty() => match common_slot(&req.args, &k) {
                    Some(s) => send_to_slot(&p, s, req.raw, readonly, cx, trace).await,
                    None => reply::error(CROSSSLOT),
                },
                // No keys, or arguments that do not say where they are: any master answers, and
                // produces Redis's own error for a bad numkeys.
                _ => send_to_any(&p, req.raw, readonly, cx).await,
            }
        }
        Class::MGet | Class::MSet | Class::SumKeys => fan_out(&p, &spec, req, cx, trace).await,
        Class::AllMasters(m) => all_masters(&p, req.raw, m, cx).await,
        Class::AnyMaster => send_to_any(&p, req.raw, readonly, cx).await,
        Class::RandomKey => random_key(&p, cx).await,
        Class::Scan => scan(&p, req, cx).await,
        Class::Info => crate::route::info::info(&p, &req.args, cx).await,
        Class::PubSubInfo => crate::session::pubsub::pubsub_command(&p, &req.args, cx).await,
        Class::Local | Class::Refused(_) | Class::Stateful => reply::error("ERR internal routing error"),
    }
}

/// The slot all `keys` share, or `None` when they span several.
pub fn common_slot(args: &[Bytes], keys: &[usize]) -> Option<u16> {
    let mut it = keys.iter().filter_map(|&i| args.get(i));
    let first = slot::slot(it.next()?);
    for k in it {
        if slot::slot(k) != first {
            return None;
        }
    }
    Some(first)
}

/// What an error reply asks us to do.
pub(crate) enum Redirect {
    Moved {
        slot: u16,
        addr: String,
    },
    Ask {
        addr: String,
    },
    /// TRYAGAIN, CLUSTERDOWN, LOADING: the same request may succeed shortly (metric label given).
    Retry(&'static str),
    None,
}

pub(crate) fn classify(reply: &[u8], from: &str) -> Redirect {
    let Some(text) = resp::error_text(reply) else { return Redirect::None };
    let mut parts = text.split(|&b| b == b' ');
    let code = parts.next().unwrap_or_default();
    match code {
        b"MOVED" | b"ASK" => {
            let slot = parts.next().and_then(resp::parse_int);
            let target = parts.next().map(|a| String::from_utf8_lossy(a).into_owned());
            let (Some(slot), Some(mut addr)) = (slot, target) else { return Redirect::None };
            if !(0..slot::SLOTS as i64).contains(&slot) {
                return Redirect::None;
            }
            // A node that does not know its own IP answers ":port"; it is reachable where we
            // reached the node that said so.
            if addr.starts_with(':') {
                let host = from.rsplit_once(':').map(|(h, _)| h).unwrap_or("127.0.0.1");
                addr = format!("{host}{addr}");
            }
            if code == b"MOVED" {
                Redirect::Moved { slot: slot as u16, addr }
            } else {
                Redirect::Ask { addr }
            }
        }
        b"TRYAGAIN" => Redirect::Retry("tryagain"),
        b"CLUSTERDOWN" => Redirect::Retry("clusterdown"),
        b"LOADING" => Redirect::Retry("loading"),
        _ => Redirect::None,
    }
}

/// Retry pacing within a request's budget; wakes early when a new topology is published. A
/// request that waits at least once counts as held; its total wait is recorded when it is done.
pub(crate) struct Budget<'a> {
    p: &'a Proxy,
    deadline: Instant,
    /// Until when a request for a failing master waits for the new owner's claim.
    hold_until: Instant,
    backoff: Duration,
    held_since: Option<Instant>,
}

impl Drop for Budget<'_> {
    fn drop(&mut self) {
        if let (Some(t), true) = (self.held_since, self.p.metrics.enabled) {
            self.p.metrics.hold_seconds.observe(t.elapsed().as_secs_f64());
        }
    }
}

impl<'a> Budget<'a> {
    pub(crate) fn new(p: &'a Proxy) -> Budget<'a> {
        let now = Instant::now();
        Budget {
            p,
            deadline: now + p.backend.config().retry_budget,
            hold_until: now + p.cfg.topology.failover_hold,
            backoff: Duration::from_millis(5),
            held_since: None,
        }
    }

    /// Holds a request whose master is failing until the map changes (the new owner's claim
    /// lands) or the hold runs out; false once it ran out, and the request then goes ahead.
    pub(crate) async fn hold(&mut self, p: &Proxy) -> bool {
        if Instant::now() >= self.hold_until {
            return false;
        }
        let until = self.hold_until;
        self.pause(p, until).await
    }

    /// Waits before the next attempt; false when the budget is spent.
    pub(crate) async fn wait(&mut self, p: &Proxy) -> bool {
        let until = self.deadline;
        self.pause(p, until).await
    }

    async fn pause(&mut self, p: &Proxy, deadline: Instant) -> bool {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        if self.held_since.is_none() {
            self.held_since = Some(now);
            if p.metrics.enabled {
                p.metrics.held.inc();
            }
        }
        if p.metrics.enabled {
            p.metrics.retries.inc();
        }
        let pause = self.backoff.min(deadline - now);
        let mut changes = p.topology.subscribe();
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = changes.changed() => {}
        }
        self.backoff = (self.backoff * 2).min(Duration::from_millis(200));
        true
    }
}

pub(crate) fn lost_error(e: &BackendError) -> Bytes {
    match e {
        BackendError::Timeout(m) => {
            reply::error(&format!("ERR clusterless: {m}; the command may or may not have been executed"))
        }
        BackendError::Lost(m) => reply::error(&format!(
            "ERR clusterless: {m} after the command was sent; it may or may not have been executed"
        )),
        BackendError::NotSent(m) => reply::error(&format!("ERR clusterless: {m}")),
    }
}

const ASKING: &[u8] = b"*1\r\n$6\r\nASKING\r\n";

/// Sends one command for `slot` to its master, following redirects and retrying within budget.
pub async fn send_to_slot(p: &Proxy, slot: u16, cmd: Bytes, readonly: bool, cx: Cx, trace: &Trace) -> Bytes {
    continue_slot(p, slot, cmd, How::shared(readonly), cx, trace, None).await
}

/// The outcome of one command's first attempt, made elsewhere (the client's batch to one node):
/// the node it went to, its reply or how sending failed, and when it was sent.
pub(crate) type FirstTry = (String, Result<Vec<Bytes>, BackendError>, Instant);

/// A node that answers a command this long after it was sent, and meanwhile lost the command's
/// slot, may have been a master that hung (SIGSTOP, a stall) while its replica was promoted: it
/// runs what was queued on resuming, before it learns it was deposed, and its data is then
/// discarded when it rejoins as a replica.
pub(crate) const LATE_REPLY: Duration = Duration::from_millis(500);

/// Whether a late reply from `addr` may come from a deposed master (see [`LATE_REPLY`]): the slot
/// has another owner now, or its owner is flagged failed. Returns the owner now.
pub(crate) fn deposed(p: &Proxy, slot: u16, addr: &str, sent: Instant) -> Option<String> {
    if !late(sent) {
        return None;
    }
    let t = p.topology.load();
    let owner = t.master_node(slot)?;
    // Flagged failed and still the owner: the promotion has not reached our map yet.
    (owner.addr != addr || owner.failed).then(|| owner.addr.clone())
}

/// Whether a reply to a command sent at `sent` comes late (see [`LATE_REPLY`]).
fn late(sent: Instant) -> bool {
    sent.elapsed() >= LATE_REPLY
}

/// The error for a write whose acknowledgement came late from a master that has since been
/// deposed (see [`LATE_REPLY`]): its effect may be discarded with the old master's data.
pub(crate) fn deposed_error(addr: &str, slot: u16, owner: &str, sent: Instant) -> Bytes {
    reply::error(&format!(
        "ERR clusterless: {addr} answered after {} ms, when slot {slot} was failing over (owner now {owner}); \
         the command may or may not have been executed",
        sent.elapsed().as_millis()
    ))
}

/// How the `n` commands of one pipelined batch fared.
pub(crate) enum Settled {
    /// Every reply stands (the common case: the node's replies, as they came).
    Stand(Vec<Bytes>),
    /// Each command's reply when it stands, or its first try for [`continue_slot`].
    Each(Vec<Result<Bytes, FirstTry>>),
}

impl Settled {
    pub(crate) fn into_each(self) -> Vec<Result<Bytes, FirstTry>> {
        match self {
            Settled::Stand(frames) => frames.into_iter().map(Ok).collect(),
            Settled::Each(each) => each,
        }
    }
}

/// Settles the `n` commands of one pipelined batch sent to `addr` at `sent`, once the node
/// answered: a reply stands unless it was redirected, refused, lost or answered late (it may
/// come from a deposed master).
pub(crate) fn settle(addr: &str, sent: Instant, result: Result<Vec<Bytes>, BackendError>, n: usize) -> Settled {
    let late = late(sent);
    match result {
        Ok(frames) if frames.len() == n => {
            if !late && frames.iter().all(|f| matches!(classify(f, addr), Redirect::None)) {
                return Settled::Stand(frames);
            }
            Settled::Each(
                frames
                    .into_iter()
                    .map(|f| match classify(&f, addr) {
                        Redirect::None if !late => Ok(f),
                        _ => Err((addr.to_string(), Ok(vec![f]), sent)),
                    })
                    .collect(),
            )
        }
        Ok(_) => Settled::Each(vec![Ok(reply::error("ERR clusterless: reply count mismatch from node")); n]),
        Err(e) => Settled::Each((0..n).map(|_| Err((addr.to_string(), Err(e.clone()), sent))).collect()),
    }
}

/// How a command travels to a slot's master.
#[derive(Clone, Copy)]
pub(crate) struct How {
    /// Whether it may be sent again after its connection broke (it changes nothing).
    pub readonly: bool,
    /// On a connection of its own (blocking commands) instead of the client's shared lane: taken
    /// from the dedicated pool and given back only once fully answered, so that a client leaving
    /// mid-block closes it. Its replies may come any time later, so they are not held late.
    pub exclusive: bool,
}

impl How {
    pub(crate) fn shared(readonly: bool) -> How {
        How { readonly, exclusive: false }
    }

    pub(crate) fn exclusive(readonly: bool) -> How {
        How { readonly, exclusive: true }
    }
}

/// One attempt: `payload` holding `n` commands to `addr`, their `n` replies.
async fn attempt(
    p: &Proxy,
    how: How,
    addr: &str,
    cx: Cx,
    payload: Bytes,
    n: usize,
) -> Result<Vec<Bytes>, BackendError> {
    if !how.exclusive {
        return p.backend.send(addr, cx, payload, n).await;
    }
    let mut conn = p.dedicated.get(addr, cx.proto).await?;
    let replies = conn.request(&payload, n).await?;
    p.dedicated.put(conn);
    Ok(replies)
}

/// [`send_to_slot`], taking over after a first attempt made elsewhere: a redirect, a refusal or a
/// lost connection is handled exactly as if this loop had sent the command itself.
pub(crate) async fn continue_slot(
    p: &Proxy,
    slot: u16,
    cmd: Bytes,
    how: How,
    cx: Cx,
    trace: &Trace,
    mut first: Option<FirstTry>,
) -> Bytes {
    let readonly = how.readonly;
    let mut budget = Budget::new(p);
    let mut redirects = 0;
    let mut asking: Option<String> = None;
    loop {
        let (addr, result, sent) = match first.take() {
            Some(tried) => tried,
            None => {
                // Read the snapshot into owned values first: its guard must not live across a wait.
                let owner = p.topology.load().master_node(slot).map(|n| (n.addr.clone(), n.failed));
                let (addr, payload, n) = match asking.take() {
                    Some(a) => {
                        let mut b = BytesMut::with_capacity(ASKING.len() + cmd.len());
                        b.put_slice(ASKING);
                        b.put_slice(&cmd);
                        (a, b.freeze(), 2)
                    }
                    None => match owner {
                        Some((_, true)) if budget.hold(p).await => continue,
                        Some((a, _)) => (a, cmd.clone(), 1),
                        None => {
                            p.topology.request_refresh();
                            if budget.wait(p).await {
                                continue;
                            }
                            return reply::error(SLOT_NOT_SERVED);
                        }
                    },
                };
                let sent = Instant::now();
                let result = attempt(p, how, &addr, cx, payload, n).await;
                (addr, result, sent)
            }
        };
        match result {
            Ok(mut replies) => {
                let Some(r) = replies.pop() else { return reply::error("ERR clusterless: empty reply") };
                match classify(&r, &addr) {
                    Redirect::None => match (!how.exclusive).then(|| deposed(p, slot, &addr, sent)).flatten() {
                        None => return r,
                        // A write's effect may be lost: say so rather than acknowledge it.
                        Some(now) if !readonly => return deposed_error(&addr, slot, &now, sent),
                        // A read may be stale: ask the new owner.
                        Some(_) => {
                            p.metrics.redirect("late");
                            redirects += 1;
                            if redirects > p.backend.config().max_redirects {
                                return r;
                            }
                        }
                    },
                    Redirect::Moved { slot: s, addr: to } => {
                        p.metrics.redirect("moved");
                        trace.redirected.store(true, Ordering::Relaxed);
                        if p.metrics.enabled {
                            p.metrics.retries.inc();
                        }
                        p.topology.patch_slot(s, &to);
                        p.topology.request_refresh();
                        redirects += 1;
                        if redirects > p.backend.config().max_redirects {
                            return r;
                        }
                    }
                    Redirect::Ask { addr: to } => {
                        p.metrics.redirect("ask");
                        trace.redirected.store(true, Ordering::Relaxed);
                        if p.metrics.enabled {
                            p.metrics.retries.inc();
                        }
                        redirects += 1;
                        if redirects > p.backend.config().max_redirects {
                            return r;
                        }
                        asking = Some(to);
                    }
                    Redirect::Retry(kind) => {
                        p.metrics.redirect(kind);
                        trace.redirected.store(true, Ordering::Relaxed);
                        // CLUSTERDOWN may mean our map is stale (a failover we have not seen yet).
                        p.topology.request_refresh();
                        if !budget.wait(p).await {
                            return r;
                        }
                    }
                }
            }
            Err(BackendError::NotSent(e)) => {
                p.topology.request_refresh();
                if !budget.wait(p).await {
                    return reply::error(&format!("ERR clusterless: master of slot {slot} is unreachable: {e}"));
                }
            }
            Err(e) => {
                p.topology.request_refresh();
                if !readonly || !budget.wait(p).await {
                    return lost_error(&e);
                }
            }
        }
    }
}

/// Sends a keyless command to one master (round robin), retrying another on failure.
async fn send_to_any(p: &Proxy, cmd: Bytes, readonly: bool, cx: Cx) -> Bytes {
    let mut budget = Budget::new(p);
    loop {
        let addr = {
            let t = p.topology.load();
            let m = t.masters();
            if m.is_empty() {
                None
            } else {
                Some(m[p.next_any() % m.len()].to_string())
            }
        };
        let Some(addr) = addr else {
            p.topology.request_refresh();
            if budget.wait(p).await {
                continue;
            }
            return reply::error(SLOT_NOT_SERVED);
        };
        match p.backend.send(&addr, cx, cmd.clone(), 1).await {
            Ok(mut r) => match r.pop() {
                Some(reply) => {
                    if matches!(classify(&reply, &addr), Redirect::Retry(_)) && budget.wait(p).await {
                        continue;
                    }
                    return reply;
                }
                None => return reply::error("ERR clusterless: empty reply"),
            },
            Err(BackendError::NotSent(e)) => {
                p.topology.request_refresh();
                if !budget.wait(p).await {
                    return reply::error(&format!("ERR clusterless: {e}"));
                }
            }
            Err(e) => {
                if !readonly || !budget.wait(p).await {
                    return lost_error(&e);
                }
            }
        }
    }
}

/// One per-slot part of a split command.
pub struct Part {
    pub slot: u16,
    /// Where this part's key indices are in [`Parts::order`].
    keys: std::ops::Range<usize>,
    /// Where this part's command is in [`Parts::cmds`].
    cmd: std::ops::Range<usize>,
}

/// A command split per slot: its parts in slot order (the parts deref as a slice).
pub struct Parts {
    /// Indices of the keys (into the original args), grouped by part: one allocation for all
    /// parts instead of one per part.
    order: Box<[usize]>,
    /// Every part's command, one after the other: one buffer for all, each part's cut from it
    /// only when it is sent (reference counting the cuts was a sixth of an MGET's user time).
    cmds: Bytes,
    list: Vec<Part>,
}

impl Parts {
    /// Indices of the keys (into the original args) `part` carries.
    pub fn keys(&self, part: &Part) -> &[usize] {
        self.order.get(part.keys.clone()).unwrap_or_default()
    }

    /// The command that carries `part`.
    pub fn cmd(&self, part: &Part) -> Bytes {
        self.cmds.slice(part.cmd.clone())
    }

    /// The same, borrowed, for copying into a node's batch.
    pub fn cmd_bytes(&self, part: &Part) -> &[u8] {
        self.cmds.get(part.cmd.clone()).unwrap_or_default()
    }
}

impl std::ops::Deref for Parts {
    type Target = [Part];
    fn deref(&self) -> &[Part] {
        &self.list
    }
}

/// Splits an MGET/MSET/DEL-like request into one command per slot (MSET: key/value pairs), in
/// slot order. `None` when all keys share one slot: the request is then forwarded untouched.
pub fn split(class: Class, args: &[Bytes]) -> Option<Parts> {
    let step = if class == Class::MSet { 2 } else { 1 };
    // (slot, key index), grouped by sorting: one allocation, where a map of vectors made one per
    // slot (allocation was the largest user-space cost of an MGET in perf).
    let mut keys: Vec<(u16, usize)> = (1..args.len()).step_by(step).map(|i| (slot::slot(&args[i]), i)).collect();
    keys.sort_unstable();
    if keys.first().map(|k| k.0) == keys.last().map(|k| k.0) {
        return None;
    }
    // All parts' commands in one buffer, each part's a range of it (see `Parts::cmds`).
    let name = &args[0];
    let mut start = 0;
    // Sized first: collected from chunk_by's unknown length the vector grew three times.
    let same_slot = |a: &(u16, usize), b: &(u16, usize)| a.0 == b.0;
    let mut parts: Vec<Part> = Vec::with_capacity(keys.chunk_by(same_slot).count());
    parts.extend(keys.chunk_by(same_slot).map(|run| {
        start += run.len();
        Part { slot: run[0].0, keys: start - run.len()..start, cmd: 0..0 }
    }));
    let order: Box<[usize]> = keys.iter().map(|&(_, k)| k).collect();
    // Headers: at most 24 bytes per array and per bulk string besides their contents.
    let total: usize = parts.len() * (48 + name.len())
        + keys
            .iter()
            .map(|&(_, k)| 24 + args[k].len() + if step == 2 { 24 + args[k + 1].len() } else { 0 })
            .sum::<usize>();
    let mut buf = BytesMut::with_capacity(total);
    for part in &mut parts {
        let from = buf.len();
        resp::put_array_header(&mut buf, 1 + part.keys.len() * step);
        resp::put_bulk(&mut buf, name);
        for &k in &order[part.keys.clone()] {
            resp::put_bulk(&mut buf, &args[k]);
            if step == 2 {
                resp::put_bulk(&mut buf, &args[k + 1]);
            }
        }
        part.cmd = from..buf.len();
    }
    Some(Parts { order, cmds: buf.freeze(), list: parts })
}

/// MGET / MSET / DEL-like commands: grouped by slot, every group of one node in one pipelined write.
async fn fan_out(p: &Proxy, spec: &CommandSpec, req: Request, cx: Cx, trace: &Trace) -> Bytes {
    let args = &req.args;
    if spec.class == Class::MSet && (args.len() - 1) % 2 != 0 {
        return crate::command::wrong_arity(&spec.name);
    }
    let Some(parts) = split(spec.class, args) else {
        // All keys in one slot: forward the request untouched.
        let s = args.get(1).map(|k| slot::slot(k)).unwrap_or(0);
        return send_to_slot(p, s, req.raw, spec.readonly, cx, trace).await;
    };
    let replies = send_parts(p, &parts, spec.readonly, cx, trace).await;
    merge_fan_out(spec.class, args.len(), &parts, replies, cx.proto)
}

/// Sends every part, pipelining all parts owned by one node into one write; a part redirected,
/// refused, lost or answered late goes on alone through the retry loop of [`continue_slot`], as if
/// sent there.
async fn send_parts(p: &Proxy, parts: &Parts, readonly: bool, cx: Cx, trace: &Trace) -> Vec<Bytes> {
    let mut by_node: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut unowned = Vec::new();
    {
        let t = p.topology.load();
        for (i, part) in parts.iter().enumerate() {
            match t.master_for(part.slot) {
                Some(a) => by_node.entry(a.to_string()).or_default().push(i),
                None => unowned.push(i),
            }
        }
    }
    let sent = Instant::now();
    let sends = by_node.iter().map(|(addr, idx)| {
        let mut payload = BytesMut::with_capacity(idx.iter().map(|&i| parts[i].cmd.len()).sum());
        for &i in idx {
            payload.put_slice(parts.cmd_bytes(&parts[i]));
        }
        p.backend.send(addr, cx, payload.freeze(), idx.len())
    });
    let results = futures_util::future::join_all(sends).await;
    let mut out: Vec<Option<Bytes>> = vec![None; parts.len()];
    let mut again: Vec<(usize, Option<FirstTry>)> = unowned.into_iter().map(|i| (i, None)).collect();
    for ((addr, idx), res) in by_node.into_iter().zip(results) {
        let n = idx.len();
        for (i, s) in idx.into_iter().zip(settle(&addr, sent, res, n).into_each()) {
            match s {
                Ok(r) => out[i] = Some(r),
                Err(first) => again.push((i, Some(first))),
            }
        }
    }
    if !again.is_empty() {
        let how = How::shared(readonly);
        let retried = futures_util::future::join_all(again.into_iter().map(|(i, first)| async move {
            (i, continue_slot(p, parts[i].slot, parts.cmd(&parts[i]), how, cx, trace, first).await)
        }))
        .await;
        for (i, r) in retried {
            out[i] = Some(r);
        }
    }
    out.into_iter().map(|r| r.unwrap_or_else(|| reply::error("ERR clusterless: missing reply"))).collect()
}

/// Merges the parts' replies into the reply one server would have given (MGET values back in
/// request order, MSET's OK, the others' integers summed); the first error wins.
pub fn merge_fan_out(class: Class, argc: usize, parts: &Parts, replies: Vec<Bytes>, proto: u8) -> Bytes {
    if let Some(e) = replies.iter().find(|r| resp::is_error(r)) {
        return e.clone();
    }
    match class {
        Class::MGet => {
            // Values as slices of the parts' replies, written once into the merged reply.
            let null = reply::null(proto);
            let mut values: Vec<&[u8]> = vec![&null[..]; argc];
            for (part, r) in parts.iter().zip(&replies) {
                let keys = parts.keys(part);
                match resp::Elements::of(r) {
                    Some(mut el) if el.len() == keys.len() => {
                        for (&k, v) in keys.iter().zip(el.by_ref()) {
                            values[k] = v;
                        }
                        // Elements left untaken: one of them was malformed.
                        if !el.is_empty() {
                            return reply::error("ERR clusterless: unexpected MGET reply from a node");
                        }
                    }
                    _ => return reply::error("ERR clusterless: unexpected MGET reply from a node"),
                }
            }
            reply::array(values.get(1..).unwrap_or_default())
        }
        Class::MSet => reply::ok(),
        _ => {
            let mut sum = 0i64;
            for r in &replies {
                match resp::as_int(r) {
                    Some(n) => sum += n,
                    None => return reply::error("ERR clusterless: unexpected integer reply from a node"),
                }
            }
            reply::int(sum)
        }
    }
}

/// Sends the same command to every master and merges the replies.
pub async fn all_masters(p: &Proxy, cmd: Bytes, merge: Merge, cx: Cx) -> Bytes {
    let masters: Vec<String> = p.topology.load().masters().into_iter().map(str::to_string).collect();
    if masters.is_empty() {
        return reply::error(SLOT_NOT_SERVED);
    }
    let replies = futures_util::future::join_all(masters.iter().map(|m| {
        let cmd = cmd.clone();
        async move {
            match p.backend.send(m, cx, cmd, 1).await {
                Ok(mut r) => r.pop().unwrap_or_else(|| reply::error("ERR clusterless: empty reply")),
                Err(e) => reply::error(&format!("ERR clusterless: {m}: {e}")),
            }
        }
    }))
    .await;
    merge_all(merge, replies)
}

fn merge_all(merge: Merge, replies: Vec<Bytes>) -> Bytes {
    if let Some(e) = replies.iter().find(|r| resp::is_error(r)) {
        return e.clone();
    }
    match merge {
        Merge::Sum => {
            let mut sum = 0i64;
            for r in &replies {
                sum += resp::as_int(r).unwrap_or(0);
            }
            reply::int(sum)
        }
        Merge::Concat => {
            let mut all = Vec::new();
            for r in &replies {
                all.extend(resp::aggregate_elements(r).unwrap_or_default());
            }
            reply::array(&all)
        }
        Merge::AllOk => reply::ok(),
        Merge::First => replies.into_iter().next().unwrap_or_else(reply::ok),
        Merge::And => {
            let lists: Vec<Vec<Bytes>> =
                replies.iter().map(|r| resp::aggregate_elements(r).unwrap_or_default()).collect();
            let n = lists.iter().map(Vec::len).min().unwrap_or(0);
            let out: Vec<Bytes> = (0..n)
                .map(|i| {
                    let all = lists.iter().all(|l| resp::as_int(&l[i]).unwrap_or(0) != 0);
                    reply::int(all as i64)
                })
                .collect();
            reply::array(&out)
        }
    }
}

async fn random_key(p: &Proxy, cx: Cx) -> Bytes {
    use rand::seq::SliceRandom;
    let mut masters: Vec<String> = p.topology.load().slot_owners().into_iter().map(str::to_string).collect();
    masters.shuffle(&mut rand::rng());
    let cmd = resp::encode_command(&[b"RANDOMKEY"]);
    for m in &masters {
        match p.backend.send(m, cx, cmd.clone(), 1).await {
            Ok(mut r) => {
                if let Some(r) = r.pop() {
                    if resp::is_error(&r) || !matches!(resp::as_bulk(&r), Some(None)) {
                        return r;
                    }
                }
            }
            Err(e) => return reply::error(&format!("ERR clusterless: {m}: {e}")),
        }
    }
    reply::null(cx.proto)
}

/// Bits of the client cursor that say which master the scan is on (up to 1024 masters).
const SCAN_NODE_BITS: u32 = 10;

/// SCAN with one cursor over the whole cluster: the low bits pick the master (in slot order), the
/// rest is that master's own cursor; each master is walked to its end before the next begins.
async fn scan(p: &Proxy, req: Request, cx: Cx) -> Bytes {
    let invalid = || reply::error("ERR invalid cursor");
    let Some(cursor) = req.args.get(1).and_then(|c| std::str::from_utf8(c).ok()?.parse::<u64>().ok()) else {
        return invalid();
    };
    let owners: Vec<String> = p.topology.load().slot_owners().into_iter().map(str::to_string).collect();
    let idx = (cursor & ((1 << SCAN_NODE_BITS) - 1)) as usize;
    let node_cursor = cursor >> SCAN_NODE_BITS;
    let Some(addr) = owners.get(idx) else {
        return if owners.is_empty() { reply::error(SLOT_NOT_SERVED) } else { invalid() };
    };
    let mut args: Vec<&[u8]> = req.args.iter().map(|a| a.as_ref()).collect();
    let nc = node_cursor.to_string();
    args[1] = nc.as_bytes();
    let cmd = resp::encode_command(&args);
    let r = match p.backend.send(addr, cx, cmd, 1).await {
        Ok(mut r) => r.pop().unwrap_or_else(|| reply::error("ERR clusterless: empty reply")),
        Err(e) => return lost_error(&e),
    };
    if resp::is_error(&r) {
        return r;
    }
    let Some(parts) = resp::aggregate_elements(&r) else {
        return reply::error("ERR clusterless: unexpected SCAN reply");
    };
    let (Some(c), Some(keys)) = (parts.first(), parts.get(1)) else {
        return reply::error("ERR clusterless: unexpected SCAN reply");
    };
    let next: u64 = match resp::as_bulk(c).flatten().and_then(|b| std::str::from_utf8(&b).ok()?.parse().ok()) {
        Some(n) => n,
        None => return reply::error("ERR clusterless: unexpected SCAN cursor"),
    };
    let client_next = if next == 0 {
        if idx + 1 >= owners.len() {
            0
        } else {
            (idx + 1) as u64
        }
    } else if next >> (64 - SCAN_NODE_BITS) != 0 {
        return reply::error("ERR clusterless: node cursor too large to encode");
    } else {
        (next << SCAN_NODE_BITS) | idx as u64
    };
    reply::array(&[reply::bulk(client_next.to_string().as_bytes()), keys.clone()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_redirects() {
        assert!(
            matches!(classify(b"-MOVED 3999 127.0.0.1:6381\r\n", "x:1"), Redirect::Moved { slot: 3999, ref addr } if addr == "127.0.0.1:6381")
        );
        assert!(
            matches!(classify(b"-ASK 3999 :6381\r\n", "10.0.0.1:7000"), Redirect::Ask { ref addr } if addr == "10.0.0.1:6381")
        );
        assert!(matches!(
            classify(b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n", "x:1"),
            Redirect::Retry("tryagain")
        ));
        assert!(matches!(classify(b"-CLUSTERDOWN The cluster is down\r\n", "x:1"), Redirect::Retry("clusterdown")));
        assert!(matches!(classify(b"-ERR MOVED\r\n", "x:1"), Redirect::None));
        assert!(matches!(classify(b"-MOVED 99999 a:1\r\n", "x:1"), Redirect::None));
        assert!(matches!(classify(b"$1\r\nx\r\n", "x:1"), Redirect::None));
    }

    #[test]
    fn split_groups_keys_by_slot_in_request_order() {
        let b = |s: &str| Bytes::copy_from_slice(s.as_bytes());
        // {a} and {b} tags: two slots, keys of each interleaved in the request.
        let args: Vec<Bytes> = ["MSET", "{a}1", "x", "{b}1", "yy", "{a}2", "", "{b}2", "z"].map(b).to_vec();
        let parts = split(Class::MSet, &args).expect("two slots"); // ok: test
        let mut want = [(slot::slot(b"{a}"), vec![1, 5]), (slot::slot(b"{b}"), vec![3, 7])];
        want.sort();
        assert_eq!(parts.len(), 2);
        for (part, (s, keys)) in parts.iter().zip(want) {
            assert_eq!((part.slot, parts.keys(part)), (s, &keys[..]));
            let mut sub = vec![args[0].clone()];
            keys.iter().for_each(|&k| sub.extend([args[k].clone(), args[k + 1].clone()]));
            assert_eq!(parts.cmd(part), resp::encode_command(&sub));
        }
        let mget: Vec<Bytes> = ["MGET", "{a}1", "{b}1", "{a}2"].map(b).to_vec();
        let parts = split(Class::MGet, &mget).expect("two slots"); // ok: test
        let a = parts.iter().find(|p| p.slot == slot::slot(b"{a}")).expect("slot of {a}"); // ok: test
        assert_eq!(parts.keys(a), [1, 3]);
        assert_eq!(parts.cmd(a), resp::encode_command(&[&b"MGET"[..], b"{a}1", b"{a}2"]));
        assert!(split(Class::MGet, &["MGET", "{a}1", "{a}2"].map(b)).is_none(), "one slot: forwarded whole");
    }

    #[test]
    fn merges() {
        let r = merge_all(Merge::Sum, vec![reply::int(2), reply::int(3)]);
        assert_eq!(&r[..], b":5\r\n");
        let r = merge_all(
            Merge::And,
            vec![Bytes::from_static(b"*2\r\n:1\r\n:1\r\n"), Bytes::from_static(b"*2\r\n:1\r\n:0\r\n")],
        );
        assert_eq!(&r[..], b"*2\r\n:1\r\n:0\r\n");
        let r = merge_all(Merge::Concat, vec![Bytes::from_static(b"*1\r\n$1\r\na\r\n"), Bytes::from_static(b"*0\r\n")]);
        assert_eq!(&r[..], b"*1\r\n$1\r\na\r\n");
        let r = merge_all(Merge::AllOk, vec![reply::ok(), reply::error("ERR x")]);
        assert_eq!(&r[..], b"-ERR x\r\n");
    }
}
