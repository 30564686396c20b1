//! Blocking commands (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP, BZPOPMIN/MAX, BZMPOP, XREAD and
//! XREADGROUP with BLOCK): each runs on an exclusive connection, never on a shared one, so a
//! blocked client delays nobody. The node honours the timeout; when the client goes away the
//! future is dropped and with it the connection (closed, never pooled with a pop pending).
//!
//! Pops over keys in several slots keep one server's semantics ([`pop`]); WAIT counts the
//! replicas of every shard ([`wait`]).

mod pop;
mod wait;

use bytes::Bytes;

pub use wait::wait;

use crate::backend::Cx;
use crate::command::CommandSpec;
use crate::errors;
use crate::resp::Request;
use crate::route::{self, How, Router, Trace};

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
pub async fn run(p: &Router, spec: &CommandSpec, req: Request, cx: Cx) -> Bytes {
    let Some(keys) = spec.key_positions(&req.args).filter(|k| !k.is_empty()) else {
        // Bad numkeys and the like: any master produces Redis's own error, without blocking.
        return single(p, spec, None, req.raw, cx).await;
    };
    match route::common_slot(&req.args, &keys) {
        Some(s) => single(p, spec, Some(s), req.raw, cx).await,
        None if splittable(&spec.name) => match pop::Pop::parse(&spec.name, &req.args, &keys) {
            Some(pop) => pop.run(p, cx).await,
            None => single(p, spec, None, req.raw, cx).await,
        },
        None => errors::crossslot(),
    }
}

/// A blocking command whose keys share one slot, on an exclusive connection to its master, with
/// the router's redirect and retry rules. Without a slot (arguments that do not say where the keys
/// are), any master answers with Redis's own error; slot 0's is as good as any.
async fn single(p: &Router, spec: &CommandSpec, slot: Option<u16>, cmd: Bytes, cx: Cx) -> Bytes {
    let how = How::exclusive(spec.readonly);
    route::continue_slot(p, slot.unwrap_or(0), cmd, how, cx, &Trace::default(), None).await
}
