//! Blocking commands (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP, BZPOPMIN/MAX, BZMPOP, XREAD and
//! XREADGROUP with BLOCK): each runs on an exclusive connection, never on a shared one, so a
//! blocked client delays nobody. The node honours the timeout; when the client goes away the
//! future is dropped and with it the connection (closed, never pooled with a pop pending).
//!
//! Pops over keys in several slots keep one server's semantics ([`pop`]); WAIT counts the
//! replicas of every shard ([`wait`]).

mod pop;
mod wait;

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

pub use wait::wait;

use crate::backend::Cx;
use crate::command::CommandSpec;
use crate::errors;
use crate::resp::{reply, Request};
use crate::route::{self, How, Router, Trace};
use crate::stats::clients::{BlockedOn, NodeConn};

/// Clears what CLIENT UNBLOCK may reach when the command ends, also when it is dropped.
struct Unblockable<'a>(&'a NodeConn);

impl Drop for Unblockable<'_> {
    fn drop(&mut self) {
        *self.0.lock() = BlockedOn::Nothing;
    }
}

/// Whether a barrier command named `name` makes its client wait (Redis's blocked_clients): the
/// blocking commands, and WAIT.
pub fn blocks(name: &str) -> bool {
    matches!(
        name,
        "blpop"
            | "brpop"
            | "blmove"
            | "brpoplpush"
            | "blmpop"
            | "bzpopmin"
            | "bzpopmax"
            | "bzmpop"
            | "xread"
            | "xreadgroup"
            | "wait"
    )
}

/// Whether the command blocks with a timeout (not 0, "forever"): Redis keeps such clients in its
/// timeout table (clients_in_timeout_table).
pub fn has_timeout(name: &str, args: &[Bytes]) -> bool {
    let at = match name {
        "blmpop" | "bzmpop" => args.get(1),
        "wait" => args.get(2),
        "xread" | "xreadgroup" => {
            args.iter().position(|a| a.eq_ignore_ascii_case(b"block")).and_then(|i| args.get(i + 1))
        }
        _ => args.last(),
    };
    at.and_then(|t| std::str::from_utf8(t).ok()).and_then(|t| t.parse::<f64>().ok()).is_some_and(|t| t > 0.0)
}

/// Pops the proxy can spread over several slots.
fn splittable(name: &str) -> bool {
    matches!(name, "blpop" | "brpop" | "bzpopmin" | "bzpopmax" | "blmpop" | "bzmpop")
}

/// Runs a blocking command for a client.
/// `blocked_on` is told where it waits (CLIENT UNBLOCK).
pub async fn run(p: &Router, spec: &CommandSpec, req: Request, cx: Cx, blocked_on: &NodeConn) -> Bytes {
    let Some(keys) = spec.key_positions(&req.args).filter(|k| !k.is_empty()) else {
        // Bad numkeys and the like: any master produces Redis's own error, without blocking.
        return single(p, spec, None, &req.args, req.raw, cx, blocked_on).await;
    };
    match route::common_slot(&req.args, &keys) {
        Some(s) => single(p, spec, Some(s), &req.args, req.raw, cx, blocked_on).await,
        None if splittable(&spec.name) => match pop::Pop::parse(&spec.name, &req.args, &keys) {
            Some(pop) => pop.run(p, cx).await,
            None => single(p, spec, None, &req.args, req.raw, cx, blocked_on).await,
        },
        None => errors::crossslot(),
    }
}

/// Where a pop's timeout (seconds) is: the last argument, or the first after the name for
/// BLMPOP and BZMPOP. `None` for XREAD and XREADGROUP, which are not blocked again after a
/// failover: `$` would then mean "after the new master's last entry", and an entry added
/// meanwhile would be skipped, so the node's UNBLOCKED reaches the client.
fn timeout_arg(name: &str, args: &[Bytes]) -> Option<usize> {
    match name {
        "blpop" | "brpop" | "bzpopmin" | "bzpopmax" | "blmove" | "brpoplpush" => args.len().checked_sub(1),
        "blmpop" | "bzmpop" => Some(1).filter(|&i| i < args.len()),
        _ => None,
    }
}

/// A blocking command whose keys share one slot, on an exclusive connection to its master, with
/// the router's redirect and retry rules. Without a slot (arguments that do not say where the keys
/// are), any master answers with Redis's own error; slot 0's is as good as any.
///
/// A pop that its master ended because the master turned replica (`-UNBLOCKED ...`, a
/// failover) did not run: it blocks again on the new master, with what is left of its timeout,
/// as after a MOVED in a reshard.
async fn single(
    p: &Router,
    spec: &CommandSpec,
    slot: Option<u16>,
    args: &[Bytes],
    cmd: Bytes,
    cx: Cx,
    blocked_on: &NodeConn,
) -> Bytes {
    let mut trace = Trace::default();
    trace.blocked_on = Some(blocked_on.clone());
    *blocked_on.lock() = BlockedOn::Starting;
    let _done = Unblockable(blocked_on);
    let how = How::exclusive(spec.readonly);
    let at = slot.and(timeout_arg(&spec.name, args));
    let secs = at.and_then(|i| pop::seconds(&args[i]));
    let deadline = secs.filter(|&t| t > 0.0).map(|t| Instant::now() + Duration::from_secs_f64(t));
    let mut cmd = cmd;
    loop {
        let r = route::continue_slot(p, slot.unwrap_or(0), cmd.clone(), how, cx, &trace, None).await;
        let (Some(i), Some(_)) = (at, secs) else { return r };
        if !route::unblocked_by_failover(&r) {
            return r;
        }
        p.metrics.redirect("unblocked");
        p.topology.request_refresh();
        let Some(left) = pop::seconds_left(deadline) else { return reply::null_array(cx.proto) };
        let t = pop::format_secs(left);
        let mut again: Vec<&[u8]> = args.iter().map(|a| a.as_ref()).collect();
        again[i] = t.as_bytes();
        cmd = crate::resp::encode_command(&again);
    }
}
