//! Deciding what answers each request: the session (local commands), a refusal, the node batches
//! (single-slot commands and split parts), the router, or the connection itself in order (a
//! barrier: a command that changes or depends on the connection's state).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

use super::item::{Done, Keyed, Routed, Split};
use super::record::{outcome, Rec};
use crate::backend::Cx;
use crate::command::{self, Class, CommandSpec, CommandTable, Lookup, Special};
use crate::errors;
use crate::keyspace::replies::{shape_of, Shape};
use crate::memory::Meter;
use crate::metrics::{Outcome, Timed};
use crate::resp::{reply, Request};
use crate::route::{self, Router};
use crate::session::pubsub::{Kind, PubSub};
use crate::session::transaction::TxState;
use crate::session::{local, Session};
use crate::stats::{Count, Held, ProxyStats};

/// One connection's state beyond the session: its transaction and its subscriptions.
pub(super) struct Conn {
    pub(super) session: Session,
    pub(super) tx: TxState,
    // Boxed: most clients never subscribe, and inline it would cost each of them ~300 bytes.
    pub(super) pubsub: Option<Box<PubSub>>,
    /// Its pending output, against its class's limit.
    pub(super) meter: Arc<Meter>,
    /// Counted in INFO's pubsub_clients / watching_clients while it subscribes / watches.
    pub(super) subscribed: Option<Held>,
    pub(super) watching: Option<Held>,
    /// In a prefixed database, where EXEC's array holds key names (LMPOP, KEYS... queued), in
    /// queue order: their prefix comes off.
    pub(super) exec_shapes: Vec<Option<Shape>>,
}

impl Conn {
    pub(super) fn new(session: Session, tx: TxState, meter: Arc<Meter>) -> Conn {
        Conn { session, tx, pubsub: None, meter, subscribed: None, watching: None, exec_shapes: Vec::new() }
    }

    /// Who is asking, for the backend: the protocol now, and this client's lane.
    pub(super) fn cx(&self) -> Cx {
        Cx { proto: self.session.proto, lane: self.session.id as u32, login: self.session.login }
    }

    /// Brings the INFO counts up to date after a command that may have (un)subscribed or
    /// (un)watched; dropping the connection drops its guards, and with them its counts.
    pub(super) fn recount(&mut self, stats: &Arc<ProxyStats>) {
        let subscribed = self.pubsub.as_ref().is_some_and(|ps| ps.active());
        if let Some(ps) = &self.pubsub {
            let (sub, psub, ssub) = ps.counts();
            let e = &self.session.entry;
            e.sub.store(sub as i64, Ordering::Relaxed);
            e.psub.store(psub as i64, Ordering::Relaxed);
            e.ssub.store(ssub as i64, Ordering::Relaxed);
        } else if self.session.entry.pubsub() {
            let e = &self.session.entry;
            for n in [&e.sub, &e.psub, &e.ssub] {
                n.store(0, Ordering::Relaxed);
            }
        }
        if subscribed != self.subscribed.is_some() {
            self.subscribed = subscribed.then(|| stats.hold(Count::PubSub));
        }
        let watching = self.tx.watching();
        if watching != self.watching.is_some() {
            self.watching = watching.then(|| stats.hold(Count::Watching));
        }
    }

    /// RESP2 clients with subscriptions may only (un)subscribe, PING, QUIT and RESET.
    fn subscribed_resp2(&self) -> bool {
        self.session.proto < 3 && self.pubsub.as_ref().is_some_and(|ps| ps.active())
    }
}

/// What to do with one parsed request.
pub(super) enum Plan {
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

impl Plan {
    /// Whether the plan brings node replies in (what `limits.max_memory` refuses when reached):
    /// everything but an answer the proxy gives itself or a barrier (run alone, one at a time).
    pub(super) fn allocates(&self) -> bool {
        matches!(self, Plan::Keyed(_) | Plan::Split(_) | Plan::Routed(_))
    }
}

/// Decides what answers `req`, read at `now` (for CLIENT LIST's `idle`; `started` too when
/// metrics are on).
pub(super) fn plan(
    p: &Router,
    table: &CommandTable,
    c: &mut Conn,
    req: Request,
    now: Instant,
    started: Option<Instant>,
) -> Plan {
    let spec = match table.lookup(&req.args) {
        Lookup::Found(spec) => spec.clone(),
        // Counted as `other`: a name the table does not know would be an unbounded label value.
        Lookup::Unknown(e) => return not_run(c, e, OTHER, started),
        // A known name is a bounded label value, whatever the arguments.
        Lookup::WrongArity(spec, e) => return not_run(c, e, spec.metric_id, started),
    };
    // In a prefixed database the keys get the prefix now, from the spec just looked up.
    let req = match namespaced(&spec, c, req) {
        Ok(req) => req,
        Err(e) => return not_run(c, e, OTHER, started),
    };
    // CLIENT LIST's `cmd` and `idle`.
    c.session.entry.touch(&spec.name_bytes, now);
    let id = spec.metric_id;
    let answer = |reply: Bytes, class: Timed| {
        let rec = started.map(|started| Rec::with_id(id, outcome(&reply, false), class, started));
        Plan::Ready((reply, rec))
    };
    let name = spec.name.as_str();
    if !c.session.authenticated && !matches!(name, "auth" | "hello" | "quit") {
        return answer(errors::noauth(), Timed::Refused);
    }
    if c.subscribed_resp2() && sub_kind(name).is_none() && !matches!(name, "ping" | "quit" | "reset") {
        return answer(errors::subscribed_only(name), Timed::Refused);
    }
    if c.session.tracking.is_on() {
        let in_multi = c.tx.in_multi();
        c.session.tracking.note(&spec, &req.args, in_multi);
    }
    if c.tx.in_multi() {
        return match name {
            "exec" | "discard" | "reset" => Plan::Barrier(spec, req, started),
            "multi" => answer(c.tx.begin(), Timed::Transaction),
            "watch" => answer(errors::watch_in_multi(), Timed::Transaction),
            // The queued commands' keys are prefixed as they are queued, with the database
            // selected then: a SELECT running at EXEC would come too late for them.
            "select" if c.session.dbs.count() > 1 => {
                c.tx.flag();
                answer(errors::Refusal::InMulti.frame(name), Timed::Refused)
            }
            "quit" => answer(local::handle(p, &mut c.session, name, &req.args), Timed::Local),
            _ => {
                let r = c.tx.queue(p, &spec, req);
                if c.session.prefix.is_some() && &r[..] == b"+QUEUED\r\n" {
                    c.exec_shapes.push(shape_of(name));
                }
                answer(r, Timed::Transaction)
            }
        };
    }
    if c.subscribed_resp2() && name == "ping" && req.args.len() > 2 {
        return answer(errors::wrong_arity("ping"), Timed::Local);
    }
    if c.subscribed_resp2() && name == "ping" {
        // In subscribed mode Redis answers PING with a push-style array.
        let msg = req.args.get(1).cloned().unwrap_or_default();
        return answer(reply::array(&[reply::bulk(b"pong"), reply::bulk(&msg)]), Timed::Local);
    }
    if db_barrier(&c.session, name) {
        return Plan::Barrier(spec, req, started);
    }
    let class = match spec.class {
        Class::Stateful => match name {
            "multi" => {
                c.exec_shapes.clear();
                return answer(c.tx.begin(), Timed::Transaction);
            }
            "unwatch" if !c.tx.watching() => return answer(reply::ok(), Timed::Transaction),
            _ => return Plan::Barrier(spec, req, started),
        },
        // CLIENT TRACKING on waits for the proxy's invalidation links before it answers.
        Class::Local if name == "reset" || name == "client|tracking" => return Plan::Barrier(spec, req, started),
        Class::Local => return answer(local::handle(p, &mut c.session, name, &req.args), Timed::Local),
        Class::Refused(why) => return answer(spec.refusal(why, &req.args), Timed::Refused),
        Class::Keyed if name == "copy" => {
            if let Some(e) = command::copy_error(&req.args) {
                return answer(e, Timed::Keyed);
            }
            Timed::Keyed
        }
        _ if spec.blocking && (!matches!(name, "xread" | "xreadgroup") || command::asks_to_block(&spec, &req.args)) => {
            return Plan::Barrier(spec, req, started)
        }
        Class::Keyed => Timed::Keyed,
        Class::MGet | Class::MSet | Class::SumKeys => Timed::Fanout,
        Class::AllMasters(_) | Class::RandomKey | Class::PubSubInfo | Class::ServerLog | Class::AllNodes => {
            Timed::AllMasters
        }
        Class::AnyMaster => Timed::AnyMaster,
        Class::Scan => Timed::Scan,
        Class::Info => Timed::Info,
    };
    // A client in WATCH reads from the master: a replica behind it could show a value older
    // than the one WATCH guards, and EXEC would then run on a stale read.
    let master_only = c.tx.watching();
    if matches!(spec.class, Class::Keyed) && matches!(spec.special, Special::None) {
        if let Some(slot) = spec.single_slot(&req.args) {
            return Plan::Keyed(Keyed { spec, req, slot, started, master_only });
        }
    }
    // MSET with a key missing its value is left to the router, which answers Redis's error.
    let pairs_ok = spec.class != Class::MSet || req.args.len() % 2 == 1;
    if class == Timed::Fanout && pairs_ok && matches!(spec.special, Special::None) {
        if let Some(parts) = route::split(spec.class, &req.args) {
            return Plan::Split(Split { spec, parts, req, started, master_only });
        }
    }
    Plan::Routed(Routed { spec, req, class, started, master_only })
}

/// The request with its keys stored under the selected database's prefix (none for a plain
/// database 0: the request goes on untouched); an error Redis answers from the arguments (a bad
/// `COPY ... DB n`).
fn namespaced(spec: &CommandSpec, c: &Conn, req: Request) -> Result<Request, Bytes> {
    let s = &c.session;
    let prefix = match &s.prefix {
        Some(p) => &p[..],
        // Database 0's names are stored as they are; only a COPY into another database changes.
        None if s.dbs.count() > 1 && req.args.first().is_some_and(|a| a.eq_ignore_ascii_case(b"copy")) => b"",
        None => return Ok(req),
    };
    crate::keyspace::rewrite(spec, req, prefix, &s.dbs)
}

/// Commands run alone because of databases (`keyspace.databases`, one-slot databases): those
/// over the whole keyspace (they must see one database's keys only), MOVE between databases, and
/// in a prefixed database those whose replies name keys (the prefix comes off).
fn db_barrier(s: &Session, name: &str) -> bool {
    if !s.dbs.several() {
        return false;
    }
    match name {
        "move" | "swapdb" | "copy" => s.dbs.count() > 1,
        n if route::databases::whole_keyspace(n) => true,
        n => s.prefix.is_some() && crate::keyspace::replies::shape_of(n).is_some(),
    }
}

/// The metric id that counts as `other` ([`crate::metrics::Metrics::command_by_id`]).
const OTHER: u32 = u32::MAX;

/// A request the table refused before anything could run: its error, or NOAUTH before AUTH (as
/// Redis checks authentication first); inside MULTI it also dooms the EXEC, as in Redis.
fn not_run(c: &mut Conn, e: Bytes, id: u32, started: Option<Instant>) -> Plan {
    let reply = if c.session.authenticated {
        c.tx.flag();
        e
    } else {
        errors::noauth()
    };
    let rec = started.map(|t| Rec::with_id(id, Outcome::Error, Timed::Refused, t));
    Plan::Ready((reply, rec))
}

pub(super) fn sub_kind(name: &str) -> Option<(Kind, bool)> {
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
