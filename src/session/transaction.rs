//! MULTI / EXEC / DISCARD / WATCH / UNWATCH. Commands between MULTI and EXEC are checked and queued
//! by the proxy (arity, class, slot: the errors Redis gives at queue time), and at EXEC sent as one
//! contiguous `MULTI ... EXEC` block, so no connection is held while the client thinks. A block is
//! written in one piece to one connection, so no other client's command can land inside it. WATCH
//! needs the node to remember the watch, so it pins an exclusive connection per node, and EXEC then
//! runs on that connection. A block refused before it ran (MOVED, ASK, TRYAGAIN: the node answers
//! EXECABORT and nothing ran) is sent again where the slot now lives. A block answered late by a
//! master deposed meanwhile (see `route::LATE_REPLY`) runs again on the new owner when it only
//! reads; when it writes, EXEC says it may or may not have run.
//!
//! Across slots: by default `-CROSSSLOT` at queue time and `-EXECABORT` at EXEC, as Redis Cluster;
//! with `transactions.cross_slot = "per-shard"` one block per slot (a node refuses a block over two
//! of its slots), the blocks of a node pipelined, replies merged in queue order: atomic per slot.

use bytes::{BufMut, Bytes, BytesMut};
use std::collections::BTreeMap;
use tokio::time::Instant;

use crate::backend::dedicated::Dedicated;
use crate::backend::{BackendError, Cx};
use crate::command::{Class, CommandSpec};
use crate::config::CrossSlot;
use crate::resp::{self, reply, Request};
use crate::route::{self, Budget, Redirect, CROSSSLOT};
use crate::server::Proxy;
use crate::slot;

const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";
const NOT_IN_MULTI: &str = "ERR Command not allowed inside a transaction";

/// One client's transaction state.
#[derive(Default)]
pub struct TxState {
    multi: Option<Multi>,
    /// Exclusive connections holding this client's WATCHes, one per node.
    watches: Vec<Dedicated>,
}

#[derive(Default)]
struct Multi {
    queued: Vec<Queued>,
    /// A command was refused at queue time: EXEC answers EXECABORT.
    dirty: bool,
    /// The one slot of the keys queued so far (refuse mode).
    slot: Option<u16>,
}

struct Queued {
    raw: Bytes,
    slot: Option<u16>,
    /// Reads only (or PING, ECHO, SELECT): a block of these may run again.
    rerun: bool,
}

/// What EXEC got back from one node's block.
enum Block {
    /// The EXEC reply: an array with one reply per command.
    Done(Bytes),
    /// A WATCHed key changed: nothing ran on this node.
    Aborted,
    /// Nothing ran; send again once the map is right (MOVED, TRYAGAIN, CLUSTERDOWN, not sent).
    Again,
    /// Failed with this error (it may have run when the connection broke after sending).
    Failed(Bytes),
}

impl TxState {
    pub fn in_multi(&self) -> bool {
        self.multi.is_some()
    }

    pub fn watching(&self) -> bool {
        !self.watches.is_empty()
    }

    /// MULTI.
    pub fn begin(&mut self) -> Bytes {
        if self.multi.is_some() {
            return reply::error("ERR MULTI calls can not be nested");
        }
        self.multi = Some(Multi::default());
        reply::ok()
    }

    /// A command that failed lookup (unknown, wrong arity) inside MULTI: Redis flags the transaction.
    pub fn flag(&mut self) {
        if let Some(m) = self.multi.as_mut() {
            m.dirty = true;
        }
    }

    /// Queues a command inside MULTI, answering `+QUEUED` or the queue-time error.
    pub fn queue(&mut self, p: &Proxy, spec: &CommandSpec, req: Request) -> Bytes {
        let per_shard = p.cfg.transactions.cross_slot == CrossSlot::PerShard;
        let watch_node = self.watches.first().map(|w| w.addr.clone());
        let Some(m) = self.multi.as_mut() else { return reply::error("ERR internal: not in MULTI") };
        let refuse = |m: &mut Multi, e: Bytes| {
            m.dirty = true;
            e
        };
        let slot = match spec.class {
            Class::Refused(why) => return refuse(m, reply::error(why)),
            Class::Local if matches!(spec.name.as_str(), "ping" | "echo" | "select") => None,
            Class::Local => return refuse(m, reply::error(NOT_IN_MULTI)),
            Class::Keyed | Class::MGet | Class::MSet | Class::SumKeys => match spec.key_positions(&req.args) {
                Some(k) if !k.is_empty() => match route::common_slot(&req.args, &k) {
                    Some(s) => Some(s),
                    None => return refuse(m, reply::error(CROSSSLOT)),
                },
                _ => None,
            },
            _ => None,
        };
        if let (Some(s), false) = (slot, per_shard) {
            if m.slot.is_some_and(|s0| s0 != s) {
                return refuse(m, reply::error(CROSSSLOT));
            }
            // Redis Cluster answers MOVED here when the key lives elsewhere than the watched ones.
            if let Some(w) = &watch_node {
                if p.topology.load().master_for(s).is_some_and(|a| a != w) {
                    return refuse(m, reply::error(CROSSSLOT));
                }
            }
            m.slot = Some(s);
        }
        let rerun = spec.readonly || matches!(spec.class, Class::Local);
        m.queued.push(Queued { raw: req.raw, slot, rerun });
        Bytes::from_static(b"+QUEUED\r\n")
    }

    /// DISCARD.
    pub async fn discard(&mut self, p: &Proxy) -> Bytes {
        if self.multi.take().is_none() {
            return reply::error("ERR DISCARD without MULTI");
        }
        self.unwatch(p).await;
        reply::ok()
    }

    /// UNWATCH (also after EXEC and DISCARD): clears the watches and returns the connections.
    pub async fn unwatch(&mut self, p: &Proxy) -> Bytes {
        let limit = p.backend.config().request_timeout;
        for mut w in self.watches.drain(..) {
            let cmd = resp::encode_command(&["UNWATCH"]);
            if let Ok(Ok(r)) = tokio::time::timeout(limit, w.request(&cmd, 1)).await {
                if r.first().is_some_and(|r| !resp::is_error(r)) {
                    p.dedicated.put(w);
                }
            }
        }
        reply::ok()
    }

    /// WATCH key [key ...]: on an exclusive connection to each key's node.
    pub async fn watch(&mut self, p: &Proxy, args: &[Bytes], proto: u8) -> Bytes {
        if self.multi.is_some() {
            return reply::error("ERR WATCH inside MULTI is not allowed");
        }
        let per_shard = p.cfg.transactions.cross_slot == CrossSlot::PerShard;
        let keys = &args[1..];
        let mut budget = Budget::new(p);
        'again: loop {
            let mut by_node: BTreeMap<String, Vec<&Bytes>> = BTreeMap::new();
            {
                let t = p.topology.load();
                let first = keys.first().map(|k| slot::slot(k));
                for k in keys {
                    let s = slot::slot(k);
                    if !per_shard && Some(s) != first {
                        return reply::error(CROSSSLOT);
                    }
                    match t.master_for(s) {
                        Some(a) => by_node.entry(a.to_string()).or_default().push(k),
                        None => {
                            drop(t);
                            p.topology.request_refresh();
                            if budget.wait(p).await {
                                continue 'again;
                            }
                            return reply::error(route::SLOT_NOT_SERVED);
                        }
                    }
                }
            }
            if !per_shard {
                let other = self.watches.iter().find(|w| !by_node.contains_key(&w.addr));
                if other.is_some() {
                    return reply::error(CROSSSLOT);
                }
            }
            for (addr, ks) in by_node {
                let idx = match self.watches.iter().position(|w| w.addr == addr) {
                    Some(i) => i,
                    None => match p.dedicated.get(&addr, proto).await {
                        Ok(d) => {
                            self.watches.push(d);
                            self.watches.len() - 1
                        }
                        Err(e) => return route::lost_error(&e),
                    },
                };
                let mut cmd: Vec<&[u8]> = vec![b"WATCH"];
                cmd.extend(ks.iter().map(|k| k.as_ref()));
                let limit = p.backend.config().request_timeout;
                let w = &mut self.watches[idx];
                let r = match tokio::time::timeout(limit, w.request(&resp::encode_command(&cmd), 1)).await {
                    Ok(Ok(mut r)) => r.pop().unwrap_or_else(|| reply::error("ERR clusterless: empty reply")),
                    Ok(Err(e)) => {
                        self.watches.remove(idx);
                        return route::lost_error(&e);
                    }
                    Err(_) => {
                        self.watches.remove(idx);
                        return reply::error(&format!("ERR clusterless: {addr} did not answer WATCH"));
                    }
                };
                match route::classify(&r, &addr) {
                    Redirect::Moved { slot, addr: to } => {
                        p.topology.patch_slot(slot, &to);
                        p.topology.request_refresh();
                        if budget.wait(p).await {
                            continue 'again;
                        }
                        return r;
                    }
                    Redirect::None if !resp::is_error(&r) => {}
                    _ => return r,
                }
            }
            return reply::ok();
        }
    }

    /// EXEC: runs the queued commands and answers as Redis would (an array, nil after a WATCH
    /// abort, EXECABORT after a queue-time error).
    pub async fn exec(&mut self, p: &Proxy, cx: Cx) -> Bytes {
        let Some(m) = self.multi.take() else { return reply::error("ERR EXEC without MULTI") };
        if m.dirty {
            self.unwatch(p).await;
            return reply::error(EXECABORT);
        }
        if m.queued.is_empty() && self.watches.is_empty() {
            return Bytes::from_static(b"*0\r\n");
        }
        let mut watches: Vec<Dedicated> = std::mem::take(&mut self.watches);
        let out = run(p, cx, &m.queued, &mut watches).await;
        // EXEC cleared the watches of the connections it ran on; those are clean.
        for w in watches {
            p.dedicated.put(w);
        }
        out
    }
}

/// Runs the queued commands as one block per slot (a node runs `MULTI ... EXEC` only over one
/// slot's keys), the blocks of one node pipelined on the client's lane. A watched node's first
/// block runs on its watch connection, where the node checks the watch; its other blocks follow
/// once that one ran. `watches` keep the connections that are still clean.
async fn run(p: &Proxy, cx: Cx, queued: &[Queued], watches: &mut Vec<Dedicated>) -> Bytes {
    let mut results: Vec<Option<Bytes>> = vec![None; queued.len()];
    let mut pending: Vec<usize> = (0..queued.len()).collect();
    let mut aborted_any = false;
    let mut done_any = false;
    let mut budget = Budget::new(p);
    let mut first_round = true;
    loop {
        // Node -> slot -> commands; keyless commands join the first block.
        let mut groups: BTreeMap<String, BTreeMap<Option<u16>, Vec<usize>>> = BTreeMap::new();
        let mut keyless = Vec::new();
        {
            let t = p.topology.load();
            for &i in &pending {
                match queued[i].slot.and_then(|s| Some((s, t.master_for(s)?))) {
                    Some((s, a)) => groups.entry(a.to_string()).or_default().entry(Some(s)).or_default().push(i),
                    None => keyless.push(i),
                }
            }
            if !keyless.is_empty() {
                let target = groups
                    .keys()
                    .next()
                    .cloned()
                    .or_else(|| watches.first().map(|w| w.addr.clone()))
                    .or_else(|| t.masters().first().map(|a| a.to_string()));
                let Some(a) = target else { return reply::error(route::SLOT_NOT_SERVED) };
                let node = groups.entry(a).or_default();
                let first = node.keys().next().copied().unwrap_or(None);
                let b = node.entry(first).or_default();
                b.extend(keyless);
                b.sort_unstable();
            }
        }
        if first_round {
            first_round = false;
            // A watched node with no command of ours still decides: a changed key aborts all.
            let checks: Vec<usize> =
                (0..watches.len()).filter(|&i| !groups.contains_key(&watches[i].addr)).rev().collect();
            for i in checks {
                let mut w = watches.remove(i);
                let limit = p.backend.config().request_timeout;
                match tokio::time::timeout(limit, w.request(b"*1\r\n$5\r\nMULTI\r\n*1\r\n$4\r\nEXEC\r\n", 2)).await {
                    Ok(Ok(r)) if r.last().is_some_and(|r| !resp::is_null(r) && !resp::is_error(r)) => {
                        p.dedicated.put(w)
                    }
                    // Changed (nil), or the node cannot confirm: do not run anything.
                    _ => return reply::null_array(cx.proto),
                }
            }
        }
        let mut runs = Vec::new();
        for (addr, blocks) in groups {
            let conn = watches.iter().position(|w| w.addr == addr).map(|i| watches.remove(i));
            runs.push(node_blocks(p, cx, addr, blocks.into_values().collect(), queued, conn));
        }
        let outcomes = futures_util::future::join_all(runs).await;
        pending.clear();
        let mut again = false;
        for (done, conn) in outcomes {
            if let Some(c) = conn {
                watches.push(c);
            }
            for (idx, b) in done {
                match b {
                    Block::Done(r) => {
                        let el = resp::aggregate_elements(&r).unwrap_or_default();
                        if el.len() != idx.len() {
                            let e = reply::error("ERR clusterless: unexpected EXEC reply from a node");
                            idx.iter().for_each(|&i| results[i] = Some(e.clone()));
                        } else {
                            for (&i, v) in idx.iter().zip(el) {
                                results[i] = Some(v);
                            }
                        }
                        done_any = true;
                    }
                    Block::Aborted => {
                        aborted_any = true;
                        let e = reply::error(
                            "EXECABORT clusterless: a WATCHed key changed on this command's node; its part did not run",
                        );
                        idx.iter().for_each(|&i| results[i] = Some(e.clone()));
                    }
                    Block::Again => {
                        again = true;
                        pending.extend(idx);
                    }
                    Block::Failed(e) => {
                        done_any = true;
                        idx.iter().for_each(|&i| results[i] = Some(e.clone()));
                    }
                }
            }
        }
        if pending.is_empty() {
            break;
        }
        if again && !budget.wait(p).await {
            let e = reply::error("ERR clusterless: the transaction's slots kept moving; it did not run");
            if !done_any && !aborted_any {
                return e;
            }
            pending.iter().for_each(|&i| results[i] = Some(e.clone()));
            break;
        }
        pending.sort_unstable();
    }
    if aborted_any && !done_any {
        return reply::null_array(cx.proto);
    }
    let all: Vec<Bytes> =
        results.into_iter().map(|r| r.unwrap_or_else(|| reply::error("ERR clusterless: missing reply"))).collect();
    reply::array(&all)
}

/// One node's blocks: on the watch connection first when there is one (if it aborts, the
/// node's other blocks do not run), the rest pipelined on the client's lane.
async fn node_blocks(
    p: &Proxy,
    cx: Cx,
    addr: String,
    mut blocks: Vec<Vec<usize>>,
    queued: &[Queued],
    conn: Option<Dedicated>,
) -> (Vec<(Vec<usize>, Block)>, Option<Dedicated>) {
    let mut out = Vec::new();
    let mut conn = conn;
    if conn.is_some() && !blocks.is_empty() {
        let first = blocks.remove(0);
        let (b, c) = block(p, cx, &addr, &first, queued, conn.take()).await;
        conn = c;
        let aborted = matches!(b, Block::Aborted);
        out.push((first, b));
        if aborted {
            out.extend(blocks.into_iter().map(|idx| (idx, Block::Aborted)));
            return (out, conn);
        }
    }
    let rest = futures_util::future::join_all(blocks.iter().map(|idx| block(p, cx, &addr, idx, queued, None))).await;
    out.extend(blocks.into_iter().zip(rest.into_iter().map(|(b, _)| b)));
    (out, conn)
}

/// Sends one node's `MULTI ... EXEC` block, on the watch connection when there is one, else on
/// the client's lane. Follows ASK itself; everything else that means "nothing ran" is `Again`.
async fn block(
    p: &Proxy,
    cx: Cx,
    addr: &str,
    idx: &[usize],
    queued: &[Queued],
    mut conn: Option<Dedicated>,
) -> (Block, Option<Dedicated>) {
    let mut target = addr.to_string();
    let mut asking = false;
    for _ in 0..=p.backend.config().max_redirects {
        let mut payload = BytesMut::new();
        if asking {
            payload.put_slice(b"*1\r\n$6\r\nASKING\r\n");
        }
        payload.put_slice(b"*1\r\n$5\r\nMULTI\r\n");
        for &i in idx {
            payload.put_slice(&queued[i].raw);
        }
        payload.put_slice(b"*1\r\n$4\r\nEXEC\r\n");
        let n = idx.len() + 2 + asking as usize;
        let started = Instant::now();
        let sent = match conn.as_mut() {
            Some(c) => {
                let limit = p.backend.config().request_timeout;
                match tokio::time::timeout(limit, c.request(&payload, n)).await {
                    Ok(r) => r,
                    Err(_) => Err(BackendError::Timeout(format!("{addr} did not answer EXEC"))),
                }
            }
            None => p.backend.send(&target, cx, payload.freeze(), n).await,
        };
        let replies = match sent {
            Ok(r) => r,
            Err(BackendError::NotSent(_)) if conn.is_none() => {
                p.topology.request_refresh();
                return (Block::Again, None);
            }
            Err(e) => return (Block::Failed(route::lost_error(&e)), None),
        };
        let Some(exec) = replies.last() else {
            return (Block::Failed(reply::error("ERR clusterless: empty reply")), conn);
        };
        if resp::is_null(exec) {
            return (Block::Aborted, conn);
        }
        if !resp::is_error(exec) {
            // Answered late by a master deposed meanwhile: what ran may be discarded with its data.
            let slots = idx.iter().filter_map(|&i| queued[i].slot);
            if let Some((s, owner)) = slots.filter_map(|s| Some((s, route::deposed(p, s, &target, started)?))).next() {
                if idx.iter().all(|&i| queued[i].rerun) {
                    p.metrics.redirect("late");
                    // Reads only, maybe stale: run them again where the slot lives now, as a lone
                    // read is asked again. Under WATCH the watch was on the deposed node: EXEC's
                    // nil tells the client to watch and try again.
                    return (if conn.is_some() { Block::Aborted } else { Block::Again }, None);
                }
                return (Block::Failed(route::deposed_error(&target, s, &owner, started)), None);
            }
            return (Block::Done(exec.clone()), conn);
        }
        // EXECABORT: find out why from the queued commands' own replies.
        let mut why = Redirect::None;
        for r in &replies[..replies.len() - 1] {
            match route::classify(r, &target) {
                Redirect::None => {}
                other => {
                    why = other;
                    break;
                }
            }
        }
        match why {
            Redirect::Moved { slot, addr: to } => {
                p.metrics.redirect("moved");
                p.topology.patch_slot(slot, &to);
                p.topology.request_refresh();
                // A watch connection is on the old owner: its watched keys moved away.
                return (if conn.is_some() { Block::Aborted } else { Block::Again }, conn);
            }
            Redirect::Ask { addr: to } if conn.is_none() => {
                p.metrics.redirect("ask");
                target = to;
                asking = true;
            }
            Redirect::Retry(kind) => {
                p.metrics.redirect(kind);
                return (if conn.is_some() { Block::Aborted } else { Block::Again }, conn);
            }
            _ => return (Block::Failed(exec.clone()), conn),
        }
    }
    (Block::Failed(reply::error("ERR clusterless: too many redirects for a transaction")), conn)
}
