//! What the proxy's other clients do to this connection: CLIENT PAUSE holds its requests
//! ([`pause_holds`], [`pause_over`]), and MONITOR sends it a line for each of theirs
//! ([`start_monitor`], [`feed_monitors`]).

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::plan::Conn;
use super::Shared;
use crate::resp::Request;

/// Until when CLIENT PAUSE holds `req`, if it does (ALL: every command; WRITE: those that may
/// write).
pub(super) fn pause_holds(h: &Shared, rx: &mut Option<watch::Receiver<u64>>, req: &Request) -> Option<Instant> {
    let reg = &h.router.stats.clients;
    if !reg.maybe_paused() {
        return None;
    }
    let write = match h.table.lookup(&req.args) {
        crate::command::Lookup::Found(spec) => spec.may_write,
        _ => false,
    };
    // Seen before looking: an UNPAUSE after the look wakes the wait.
    rx.get_or_insert_with(|| reg.pause_watch()).borrow_and_update();
    reg.holds(write)
}

/// MONITOR: from now on every other client's command reaches this one as a line, queued against
/// its output limit in the pubsub class (a slow monitor is closed at that limit).
pub(super) fn start_monitor(h: &Shared, c: &Conn, monitor: &mut Option<mpsc::UnboundedReceiver<Bytes>>) {
    if monitor.is_some() {
        return;
    }
    let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
    let meter = c.meter.clone();
    meter.set_pubsub(true);
    let sink: crate::stats::monitor::Sink = Arc::new(move |line: Bytes| {
        meter.queue(line.len());
        let _ = tx.send(line);
    });
    h.router.stats.monitors.add(c.session.id, sink);
    c.session.entry.monitor.store(true, std::sync::atomic::Ordering::Relaxed);
    *monitor = Some(rx);
}

/// Shows a request to the monitors, unless Redis would not (admin commands, unknown ones);
/// AUTH's arguments and HELLO's after AUTH are hidden, as Redis hides them.
pub(super) fn feed_monitors(h: &Shared, addr: &str, args: &[Bytes]) {
    let crate::command::Lookup::Found(spec) = h.table.lookup(args) else { return };
    if spec.admin {
        return;
    }
    let redact_from = match spec.name.as_str() {
        "auth" => 1,
        "hello" => args.iter().position(|a| a.eq_ignore_ascii_case(b"auth")).map_or(args.len(), |i| i + 1),
        _ => args.len(),
    };
    h.router.stats.monitors.feed(addr, args, redact_from);
}

pub(super) async fn next_line(rx: &mut Option<mpsc::UnboundedReceiver<Bytes>>) -> Option<Bytes> {
    match rx.as_mut() {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Resolves when the pause holding a request ends or changes.
pub(super) async fn pause_over(rx: &mut Option<watch::Receiver<u64>>, until: Option<Instant>) {
    let changed = async {
        let open = match rx.as_mut() {
            Some(rx) => rx.changed().await.is_ok(),
            None => false,
        };
        if !open {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = changed => {}
        _ = sleep_until_opt(until) => {}
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
