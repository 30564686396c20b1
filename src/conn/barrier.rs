//! Barrier commands, run alone once everything before them is answered: transactions, blocking
//! commands, WAIT, subscriptions and RESET; and the watch on the client's socket meanwhile, so a
//! client that leaves mid-block releases its node connection at once.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use super::plan::{sub_kind, Conn};
use super::record::outcome;
use crate::command::CommandSpec;
use crate::keyspace::replies::{shape_of, strip, Shape};
use crate::metrics::{Metrics, Timed};
use crate::resp::Request;
use crate::route::databases::Db;
use crate::route::{self, Router};
use crate::session::pubsub::PubSub;
use crate::session::{blocking, local};
use crate::stats::Count;

/// Runs a barrier command; returns the frames to write.
pub(super) async fn run_barrier(
    p: &Router,
    c: &mut Conn,
    spec: &Arc<CommandSpec>,
    req: Request,
    started: Option<Instant>,
) -> Vec<Bytes> {
    let cx = c.cx();
    let name = spec.name.as_str();
    // Counted in INFO's blocked_clients while it runs; the guard goes with this future, also
    // when the client leaves mid-block.
    let _blocked = blocking::blocks(name).then(|| {
        let with_timeout = blocking::has_timeout(name, &req.args).then(|| p.stats.hold(Count::InTimeoutTable));
        (p.stats.hold(Count::Blocked), with_timeout, c.session.entry.block())
    });
    let (out, class): (Vec<Bytes>, Timed) = match name {
        "exec" => {
            let r = c.tx.exec(p, cx, &mut c.session).await;
            let shapes = std::mem::take(&mut c.exec_shapes);
            (vec![strip_exec(c.session.prefix.as_deref(), &shapes, r)], Timed::Transaction)
        }
        "discard" => {
            c.exec_shapes.clear();
            (vec![c.tx.discard(p).await], Timed::Transaction)
        }
        "watch" => (vec![c.tx.watch(p, &req.args, cx).await], Timed::Transaction),
        "unwatch" => (vec![c.tx.unwatch(p).await], Timed::Transaction),
        "reset" => {
            c.exec_shapes.clear();
            c.tx.discard(p).await;
            c.tx.unwatch(p).await;
            c.pubsub = None;
            (vec![local::handle(p, &mut c.session, name, &req.args)], Timed::Local)
        }
        "wait" => (vec![blocking::wait(p, &req.args, cx).await], Timed::Blocking),
        "client|tracking" => {
            let was_on = c.session.tracking.is_on();
            let r = local::handle(p, &mut c.session, name, &req.args);
            let r = c.session.tracking.settle(r, was_on).await;
            c.session.publish();
            (vec![r], Timed::Local)
        }
        _ => match sub_kind(name) {
            Some((kind, true)) => {
                let (proto, login, meter) = (c.session.proto, c.session.login, &c.meter);
                let ps =
                    c.pubsub.get_or_insert_with(|| Box::new(PubSub::new(proto, login, meter.clone(), &c.session.dbs)));
                (ps.subscribe(p, kind, &req.args[1..]).await, Timed::Local)
            }
            Some((kind, false)) => {
                let (proto, login, meter) = (c.session.proto, c.session.login, &c.meter);
                let ps =
                    c.pubsub.get_or_insert_with(|| Box::new(PubSub::new(proto, login, meter.clone(), &c.session.dbs)));
                let out = ps.unsubscribe(kind, &req.args[1..]).await;
                if !ps.active() {
                    c.pubsub = None;
                }
                (out, Timed::Local)
            }
            None if route::databases::whole_keyspace(name) => {
                let s = &c.session;
                let db = Db { index: s.db, prefix: s.prefix.as_deref(), all: &s.dbs };
                (vec![route::databases::run(p, name, &req.args, db, cx).await], Timed::AllMasters)
            }
            None => {
                let blocks = spec.blocking
                    && (!matches!(name, "xread" | "xreadgroup") || crate::command::asks_to_block(spec, &req.args));
                let r = if blocks {
                    blocking::run(p, spec, req, cx, &c.session.entry.blocked_on).await
                } else {
                    route::route_plain(p, spec, req, cx).await
                };
                // In a prefixed database, the keys a pop or XREAD names lose the prefix.
                let r = match (&c.session.prefix, shape_of(name)) {
                    (Some(pre), Some(shape)) => strip(Some(pre), shape, r),
                    _ => r,
                };
                (vec![r], if blocks { Timed::Blocking } else { Timed::Keyed })
            }
        },
    };
    c.recount(&p.stats);
    if let Some(t) = started {
        let first = out.first().map(|r| &r[..]).unwrap_or_default();
        p.metrics.command_by_id(spec.metric_id).record(outcome(first, false));
        p.metrics.latency(class).observe(t.elapsed().as_secs_f64());
    }
    out
}

/// EXEC's array with the prefix taken off the key names its replies hold (see
/// `Conn::exec_shapes`); anything else (nil, EXECABORT) as it is.
fn strip_exec(prefix: Option<&[u8]>, shapes: &[Option<Shape>], r: Bytes) -> Bytes {
    let Some(prefix) = prefix.filter(|_| shapes.iter().any(Option::is_some)) else { return r };
    let Some(el) = crate::resp::aggregate_elements(&r) else { return r };
    if el.len() != shapes.len() {
        return r;
    }
    let header_end = r.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut out = BytesMut::with_capacity(r.len());
    out.extend_from_slice(&r[..header_end]);
    for (e, shape) in el.into_iter().zip(shapes) {
        match shape {
            Some(sh) => out.extend_from_slice(&strip(Some(prefix), *sh, e)),
            None => out.extend_from_slice(&e),
        }
    }
    out.freeze()
}

/// Resolves when the client has gone away (true), or sent more bytes (false, to be parsed once
/// the running command is done). Stops reading once enough is buffered; then only the command's
/// own end, or the connection's, ends the wait.
pub(super) async fn client_gone(rd: &mut super::stream::ReadHalf, rbuf: &mut BytesMut, m: &Metrics) -> bool {
    if rbuf.len() >= MAX_READ_AHEAD {
        return std::future::pending().await;
    }
    match rd.read_into(rbuf, 4096).await {
        Ok(0) | Err(_) => true,
        Ok(n) => {
            super::count_in(m, n);
            false
        }
    }
}

/// Bytes a client may send ahead while one of its commands blocks, before we stop reading.
const MAX_READ_AHEAD: usize = 1 << 20;
