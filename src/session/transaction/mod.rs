//! MULTI / EXEC / DISCARD / WATCH / UNWATCH. Commands between MULTI and EXEC are checked and queued
//! by the proxy (arity, class, slot: the errors Redis gives at queue time), and at EXEC sent as one
//! contiguous `MULTI ... EXEC` block, so no connection is held while the client thinks. A block is
//! written in one piece to one connection, so no other client's command can land inside it. WATCH
//! needs the node to remember the watch, so it pins an exclusive connection per node, and EXEC then
//! runs on that connection. A block refused before it ran (MOVED, ASK, TRYAGAIN: the node answers
//! EXECABORT, or TRYAGAIN to EXEC itself, and nothing ran) is sent again where the slot now lives,
//! within the retry budget; a node still refusing then gives EXEC its answer. A block answered
//! late by a master deposed meanwhile (see `route::LATE_REPLY`) runs again on the new owner when
//! it only reads; when it writes, EXEC says it may or may not have run.
//!
//! Across slots: by default `-CROSSSLOT` at queue time and `-EXECABORT` at EXEC, as Redis Cluster;
//! with `transactions.cross_slot = "per-shard"` one block per slot (a node refuses a block over two
//! of its slots), the blocks of a node pipelined, replies merged in queue order: atomic per slot.

mod exec;

use std::collections::BTreeMap;

use bytes::Bytes;

use super::{local, Session};
use crate::backend::{BackendError, Cx, Dedicated, Reason};
use crate::command::{self, Class, CommandSpec};
use crate::config::CrossSlot;
use crate::errors::{self, Refusal};
use crate::resp::{self, reply, Request};
use crate::route::{self, Budget, Redirect, Router};
use crate::slot;

/// The commands the proxy answers itself that may be queued: they read or name the client's own
/// connection without changing how it talks (HELLO, AUTH and subscriptions would, mid-EXEC).
fn local_in_multi(name: &str) -> bool {
    matches!(
        name,
        "acl|whoami"
            | "client|setname"
            | "client|getname"
            | "client|id"
            | "client|info"
            | "client|list"
            | "client|no-evict"
            | "client|setinfo"
    )
}

/// One client's transaction state.
pub struct TxState {
    /// What MULTI ... EXEC does when its commands touch several slots.
    cross_slot: CrossSlot,
    multi: Option<Multi>,
    /// Exclusive connections holding this client's WATCHes, one per node.
    watches: Vec<Dedicated>,
}

#[derive(Default)]
struct Multi {
    queued: Vec<Queued>,
    /// Commands the proxy answers itself (CLIENT SETNAME, ACL WHOAMI, ...), by their place in
    /// the queue: run at EXEC, in order, once the nodes' part has run.
    local: Vec<(usize, Local)>,
    /// A command was refused at queue time: EXEC answers EXECABORT.
    dirty: bool,
    /// The one slot of the keys queued so far (refuse mode).
    slot: Option<u16>,
}

/// A queued command the proxy answers at EXEC without a node.
enum Local {
    /// Run then by the proxy (CLIENT SETNAME, ACL WHOAMI, ...).
    Run(String, Vec<Bytes>),
    /// Known already: an error one server gives only when the command runs (COPY ... DB 1).
    Answer(Bytes),
}

pub(super) struct Queued {
    pub(super) raw: Bytes,
    pub(super) slot: Option<u16>,
    /// Reads only (or PING, ECHO, SELECT): a block of these may run again.
    pub(super) rerun: bool,
}

impl TxState {
    pub fn new(cross_slot: CrossSlot) -> TxState {
        TxState { cross_slot, multi: None, watches: Vec::new() }
    }

    pub fn in_multi(&self) -> bool {
        self.multi.is_some()
    }

    pub fn watching(&self) -> bool {
        !self.watches.is_empty()
    }

    /// MULTI.
    pub fn begin(&mut self) -> Bytes {
        if self.multi.is_some() {
            return errors::multi_nested();
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
    pub fn queue(&mut self, p: &Router, spec: &CommandSpec, req: Request) -> Bytes {
        let per_shard = self.cross_slot == CrossSlot::PerShard;
        let watch_node = self.watches.first().map(|w| w.addr.clone());
        let Some(m) = self.multi.as_mut() else { return errors::exec_without_multi() };
        let refuse = |m: &mut Multi, e: Bytes| {
            m.dirty = true;
            e
        };
        // One server fails COPY's bad options when it runs, in EXEC's array, whatever its keys'
        // slots; the node, in a cluster's words.
        if let Some(e) = (spec.name == "copy").then(|| command::copy_error(&req.args)).flatten() {
            m.local.push((m.queued.len() + m.local.len(), Local::Answer(e)));
            return Bytes::from_static(b"+QUEUED\r\n");
        }
        let slot = match spec.class {
            Class::Refused(why) => return refuse(m, spec.refusal(why, &req.args)),
            Class::Local if matches!(spec.name.as_str(), "ping" | "echo" | "select") => None,
            // A non-cluster server's answer, given at queue time (Redis gives it at EXEC).
            Class::Local if spec.name == "cluster" => {
                let e = match req.args.get(1) {
                    Some(sub) => errors::unknown_subcommand(sub, "cluster"),
                    None => errors::not_cluster(),
                };
                return refuse(m, e);
            }
            Class::Local if matches!(spec.name.as_str(), "readonly" | "readwrite" | "asking") => {
                return refuse(m, errors::not_cluster())
            }
            Class::Local if spec.name.starts_with("cluster|") => return refuse(m, errors::not_cluster()),
            // Answered by the proxy at EXEC, in their place in EXEC's array.
            Class::Local if local_in_multi(&spec.name) => {
                m.local.push((m.queued.len() + m.local.len(), Local::Run(spec.name.clone(), req.args)));
                return Bytes::from_static(b"+QUEUED\r\n");
            }
            Class::Local if local::refusal_of(&spec.name).is_some() => {
                let why = local::refusal_of(&spec.name).unwrap_or(Refusal::InMulti);
                return refuse(m, why.frame(&spec.name));
            }
            // Sent in the block, they would act on the node's connection, not on the client's;
            // answered at EXEC, they would change the connection in the middle of EXEC's reply.
            Class::Local => return refuse(m, Refusal::InMulti.frame(&spec.name)),
            Class::Stateful if spec.name.contains("subscribe") => return refuse(m, Refusal::InMulti.frame(&spec.name)),
            Class::AllNodes => return refuse(m, Refusal::AllNodesInMulti.frame(&spec.name)),
            Class::Keyed | Class::MGet | Class::MSet | Class::SumKeys => match spec.key_positions(&req.args) {
                Some(k) if !k.is_empty() => match route::common_slot(&req.args, &k) {
                    Some(s) => Some(s),
                    None => return refuse(m, errors::crossslot()),
                },
                _ => None,
            },
            _ => None,
        };
        if let (Some(s), false) = (slot, per_shard) {
            if m.slot.is_some_and(|s0| s0 != s) {
                return refuse(m, errors::crossslot());
            }
            // Redis Cluster answers MOVED here when the key lives elsewhere than the watched ones.
            if let Some(w) = &watch_node {
                if p.topology.load().master_for(s).is_some_and(|a| a != w) {
                    return refuse(m, errors::crossslot());
                }
            }
            m.slot = Some(s);
        }
        let rerun = spec.readonly || matches!(spec.class, Class::Local);
        m.queued.push(Queued { raw: req.raw, slot, rerun });
        Bytes::from_static(b"+QUEUED\r\n")
    }

    /// DISCARD.
    pub async fn discard(&mut self, p: &Router) -> Bytes {
        if self.multi.take().is_none() {
            return errors::discard_without_multi();
        }
        self.unwatch(p).await;
        reply::ok()
    }

    /// UNWATCH (also after EXEC and DISCARD): clears the watches and returns the connections.
    pub async fn unwatch(&mut self, p: &Router) -> Bytes {
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
    pub async fn watch(&mut self, p: &Router, args: &[Bytes], cx: Cx) -> Bytes {
        if self.multi.is_some() {
            return errors::watch_in_multi();
        }
        let per_shard = self.cross_slot == CrossSlot::PerShard;
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
                        return errors::crossslot();
                    }
                    match t.master_for(s) {
                        Some(a) => by_node.entry(a.to_string()).or_default().push(k),
                        None => {
                            drop(t);
                            p.topology.request_refresh();
                            if budget.wait().await {
                                continue 'again;
                            }
                            return errors::slot_not_served();
                        }
                    }
                }
            }
            if !per_shard {
                let other = self.watches.iter().find(|w| !by_node.contains_key(&w.addr));
                if other.is_some() {
                    return errors::crossslot();
                }
            }
            for (addr, ks) in by_node {
                let idx = match self.watches.iter().position(|w| w.addr == addr) {
                    Some(i) => i,
                    None => match p.dedicated.get(&addr, cx).await {
                        Ok(d) => {
                            self.watches.push(d);
                            self.watches.len() - 1
                        }
                        Err(e) => return e.reply(),
                    },
                };
                let mut cmd: Vec<&[u8]> = vec![b"WATCH"];
                cmd.extend(ks.iter().map(|k| k.as_ref()));
                let limit = p.backend.config().request_timeout;
                let w = &mut self.watches[idx];
                let r = match tokio::time::timeout(limit, w.request(&resp::encode_command(&cmd), 1)).await {
                    Ok(Ok(mut r)) => r.pop().unwrap_or_else(errors::empty_reply),
                    Ok(Err(e)) => {
                        self.watches.remove(idx);
                        return e.reply();
                    }
                    Err(_) => {
                        self.watches.remove(idx);
                        return BackendError::timeout(&addr, Reason::NoAnswerTo("WATCH")).reply();
                    }
                };
                match route::classify(&r, &addr) {
                    Redirect::Moved { slot, addr: to } => {
                        p.topology.patch_slot(slot, &to);
                        p.topology.request_refresh();
                        if budget.wait().await {
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
    /// abort, EXECABORT after a queue-time error). The commands the proxy answers itself run
    /// after the nodes' part, only if it ran, and take their places in the array.
    pub async fn exec(&mut self, p: &Router, cx: Cx, session: &mut Session) -> Bytes {
        let Some(m) = self.multi.take() else { return errors::exec_without_multi() };
        if m.dirty {
            self.unwatch(p).await;
            return errors::execabort();
        }
        let nodes = if m.queued.is_empty() && self.watches.is_empty() {
            Bytes::from_static(b"*0\r\n")
        } else {
            let mut watches: Vec<Dedicated> = std::mem::take(&mut self.watches);
            let out = exec::run(p, cx, &m.queued, &mut watches).await;
            // EXEC cleared the watches of the connections it ran on; those are clean.
            for w in watches {
                p.dedicated.put(w);
            }
            out
        };
        if m.local.is_empty() {
            return nodes;
        }
        // Nil (a watched key changed) or an error: nothing ran, the local commands neither.
        if resp::is_null(&nodes) {
            return nodes;
        }
        let Some(mut from_nodes) = resp::aggregate_elements(&nodes).map(Vec::into_iter) else { return nodes };
        let mut local = m.local.into_iter().peekable();
        let mut all = Vec::new();
        for i in 0.. {
            match local.peek() {
                Some((at, ..)) if *at == i => match local.next() {
                    Some((_, Local::Run(name, args))) => all.push(local::handle(p, session, &name, &args)),
                    Some((_, Local::Answer(r))) => all.push(r),
                    None => {}
                },
                _ => match from_nodes.next() {
                    Some(r) => all.push(r),
                    None if local.peek().is_none() => break,
                    None => all.push(errors::missing_reply()),
                },
            }
        }
        reply::array(&all)
    }
}
