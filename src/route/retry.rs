//! The retry and redirect policy of one command: MOVED (patch the slot, refresh, resend), ASK
//! (ASKING + resend, map untouched), TRYAGAIN/CLUSTERDOWN/LOADING and unreachable owners (backoff
//! within a budget), a failing master's requests held for its successor, and the rule that a
//! command already written to a connection that broke is retried only when it is read-only.
//! A read may go to a replica ([`super::reads`]); one that fails there is asked again elsewhere.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::time::Instant;

use super::reads::Pick;
use super::redirect::{classify, deposed, FirstTry, Redirect};
use super::{Router, Trace};
use crate::backend::{BackendError, Cx, Failure};
use crate::errors;
use crate::stats::clients::BlockedOn;

/// Retry pacing within a request's budget; wakes early when a new topology is published. A
/// request that waits at least once counts as held; its total wait is recorded when it is done.
pub struct Budget<'a> {
    p: &'a Router,
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
    pub fn new(p: &'a Router) -> Budget<'a> {
        let now = Instant::now();
        Budget {
            p,
            deadline: now + p.backend.config().retry_budget,
            hold_until: now + p.failover_hold,
            backoff: Duration::from_millis(5),
            held_since: None,
        }
    }

    /// Holds a request whose master is failing until the map changes (the new owner's claim
    /// lands) or the hold runs out; false once it ran out, and the request then goes ahead.
    pub async fn hold(&mut self) -> bool {
        if Instant::now() >= self.hold_until {
            return false;
        }
        let until = self.hold_until;
        self.pause(until).await
    }

    /// Waits before the next attempt; false when the budget is spent.
    pub async fn wait(&mut self) -> bool {
        let until = self.deadline;
        self.pause(until).await
    }

    async fn pause(&mut self, deadline: Instant) -> bool {
        let p = self.p;
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

const ASKING: &[u8] = b"*1\r\n$6\r\nASKING\r\n";

/// Sends one command for `slot` to its master (a read: to the node `routing.read_from` picks),
/// following redirects and retrying within budget.
pub async fn send_to_slot(p: &Router, slot: u16, cmd: Bytes, readonly: bool, cx: Cx, trace: &Trace) -> Bytes {
    continue_slot(p, slot, cmd, How::shared(readonly).master_only(trace.master_only), cx, trace, None).await
}

/// How a command travels to a slot's master.
#[derive(Clone, Copy)]
pub struct How {
    /// Whether it may be sent again after its connection broke (it changes nothing).
    pub readonly: bool,
    /// On a connection of its own (blocking commands) instead of the client's shared lane: taken
    /// from the dedicated pool and given back only once fully answered, so that a client leaving
    /// mid-block closes it. Its replies may come any time later, so they are not held late.
    pub exclusive: bool,
    /// A read that must not go to a replica (read-your-writes).
    pub master_only: bool,
}

impl How {
    pub fn shared(readonly: bool) -> How {
        How { readonly, exclusive: false, master_only: false }
    }

    pub fn exclusive(readonly: bool) -> How {
        How { readonly, exclusive: true, master_only: false }
    }

    pub fn master_only(self, master_only: bool) -> How {
        How { master_only, ..self }
    }

    /// Whether a replica may answer, as `routing.read_from` says: reads on shared connections.
    fn replica_ok(self, p: &Router) -> bool {
        self.readonly && !self.exclusive && !self.master_only && p.reads.reaches_replicas()
    }
}

/// One attempt: `payload` holding `n` commands to `addr`, their `n` replies.
async fn attempt(
    p: &Router,
    how: How,
    addr: &str,
    cx: Cx,
    payload: Bytes,
    n: usize,
    trace: &Trace,
) -> Result<Vec<Bytes>, BackendError> {
    if !how.exclusive {
        return p.backend.send(addr, cx, payload, n).await;
    }
    let mut conn = p.dedicated.get(addr, cx).await?;
    if let Some(at) = &trace.blocked_on {
        *at.lock() = BlockedOn::At(addr.to_string(), conn.node_client_id);
    }
    let replies = conn.request(&payload, n).await;
    if let Some(at) = &trace.blocked_on {
        // A retry (a failover's UNBLOCKED, a redirect) sends it again.
        *at.lock() = BlockedOn::Starting;
    }
    let replies = replies?;
    // A master turning replica closes the connections of the blocked clients it ends: pooled,
    // this one would fail the next request written to it.
    if !replies.last().is_some_and(|r| super::redirect::unblocked_by_failover(r)) {
        p.dedicated.put(conn);
    }
    Ok(replies)
}

/// [`send_to_slot`], taking over after a first attempt made elsewhere: a redirect, a refusal or a
/// lost connection is handled exactly as if this loop had sent the command itself.
pub async fn continue_slot(
    p: &Router,
    slot: u16,
    cmd: Bytes,
    how: How,
    cx: Cx,
    trace: &Trace,
    mut first: Option<FirstTry>,
) -> Bytes {
    let readonly = how.readonly;
    let replica_ok = how.replica_ok(p);
    let mut budget = Budget::new(p);
    let mut redirects = 0;
    let mut asking: Option<String> = None;
    loop {
        let (addr, result, sent) = match first.take() {
            Some(tried) => tried,
            None => {
                // Read the snapshot into owned values first: its guard must not live across a wait.
                let (owner, pick) = {
                    let t = p.topology.load();
                    let owner = t.master_node(slot).map(|n| (n.addr.clone(), n.failed));
                    let pick = match replica_ok.then(|| p.reads.pick(&t, slot, cx.lane)) {
                        Some(Pick::Replica(a) | Pick::Master(a)) => Some(Ok(a.to_string())),
                        Some(Pick::NoReplica) => Some(Err(())),
                        Some(Pick::NoMaster) | None => None,
                    };
                    (owner, pick)
                };
                let (addr, payload, n) = match asking.take() {
                    Some(a) => {
                        let mut b = BytesMut::with_capacity(ASKING.len() + cmd.len());
                        b.put_slice(ASKING);
                        b.put_slice(&cmd);
                        (a, b.freeze(), 2)
                    }
                    None if pick.is_some() => match pick {
                        Some(Ok(a)) => (a, cmd.clone(), 1),
                        // `read_from = "replica"`: never the master; wait for a replica within
                        // the budget (a failed one's flag clears, a new one joins).
                        _ => {
                            p.topology.request_refresh();
                            if budget.wait().await {
                                continue;
                            }
                            return crate::errors::no_replica(&super::reads::command_name(&cmd), slot);
                        }
                    },
                    None => match owner {
                        Some((_, true)) if budget.hold().await => continue,
                        Some((a, _)) => (a, cmd.clone(), 1),
                        None => {
                            p.topology.request_refresh();
                            if budget.wait().await {
                                continue;
                            }
                            return errors::slot_not_served();
                        }
                    },
                };
                let sent = Instant::now();
                let result = attempt(p, how, &addr, cx, payload, n, trace).await;
                (addr, result, sent)
            }
        };
        if replica_ok {
            // A read another node could answer: one that failed it is passed over for a while
            // and the read asked again elsewhere; a replica's answer may be behind by design, so
            // it is not checked for lateness.
            let on_replica = p.topology.load().master_node(slot).is_none_or(|m| m.addr != addr);
            match &result {
                Ok(replies) => match replies.last().map(|r| classify(r, &addr)) {
                    Some(Redirect::None) if on_replica => {
                        return replies.last().cloned().unwrap_or_else(errors::empty_reply)
                    }
                    Some(Redirect::Retry(kind)) => {
                        p.metrics.redirect(kind);
                        p.reads.avoid(&addr);
                        if budget.wait().await {
                            continue;
                        }
                    }
                    _ => {}
                },
                Err(e) if !e.busy() => {
                    p.reads.avoid(&addr);
                    if budget.wait().await {
                        continue;
                    }
                }
                Err(_) => {}
            }
        }
        match result {
            Ok(mut replies) => {
                let Some(r) = replies.pop() else { return errors::empty_reply() };
                match classify(&r, &addr) {
                    Redirect::None => match if how.exclusive { None } else { deposed(p, slot, &addr, sent).await } {
                        None => return r,
                        // A write's effect may be lost: say so rather than acknowledge it.
                        Some(now) if !readonly => return super::redirect::deposed_error(&addr, slot, &now, sent),
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
                        let to = p.topology.resolve(to, &addr);
                        p.metrics.redirect("moved");
                        trace.set_redirected();
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
                        let to = p.topology.resolve(to, &addr);
                        p.metrics.redirect("ask");
                        trace.set_redirected();
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
                        trace.set_redirected();
                        // CLUSTERDOWN may mean our map is stale (a failover we have not seen yet).
                        p.topology.request_refresh();
                        if !budget.wait().await {
                            return r;
                        }
                    }
                }
            }
            // The node is fine, only the proxy's bound is reached: holding the request for a
            // failover would only delay the error by failover_hold.
            Err(e) if e.busy() => return e.reply(),
            Err(e) if e.failure == Failure::NotSent => {
                // A master that cannot be reached may be one that died: it is failing over as far
                // as this request can tell (polling learns of a failure only from the nodes), so
                // the request is held for a new owner like one for a master flagged failed.
                p.topology.request_refresh();
                if !(budget.hold().await || budget.wait().await) {
                    return errors::unreachable(slot, &e);
                }
            }
            Err(e) => {
                p.topology.request_refresh();
                if !e.may_retry(readonly) || !budget.wait().await {
                    return e.reply();
                }
            }
        }
    }
}

/// Sends a keyless command to one master (round robin), retrying another on failure.
pub async fn send_to_any(p: &Router, cmd: Bytes, readonly: bool, cx: Cx) -> Bytes {
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
            if budget.wait().await {
                continue;
            }
            return errors::slot_not_served();
        };
        match p.backend.send_one(&addr, cx, cmd.clone()).await {
            Ok(reply) => {
                if matches!(classify(&reply, &addr), Redirect::Retry(_)) && budget.wait().await {
                    continue;
                }
                return reply;
            }
            Err(e) => {
                if e.failure == Failure::NotSent {
                    p.topology.request_refresh();
                }
                if !e.may_retry(readonly) || !budget.wait().await {
                    return e.reply();
                }
            }
        }
    }
}
