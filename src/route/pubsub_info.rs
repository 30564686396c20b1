//! PUBSUB CHANNELS / NUMSUB / NUMPAT / SHARDCHANNELS / SHARDNUMSUB: asked of every node (each
//! knows only its own subscribers) and merged as one server would count them.

use std::collections::BTreeSet;

use bytes::Bytes;

use super::Router;
use crate::backend::Cx;
use crate::errors;
use crate::resp::{self, reply};

/// PUBSUB CHANNELS / NUMSUB / NUMPAT / SHARDCHANNELS / SHARDNUMSUB across every node.
pub(super) async fn pubsub(p: &Router, args: &[Bytes], cx: Cx) -> Bytes {
    let Some(sub) = args.get(1) else { return errors::wrong_arity("pubsub") };
    let sub = String::from_utf8_lossy(sub).to_ascii_lowercase();
    let nodes: Vec<String> = p.topology.load().nodes.iter().filter(|n| !n.failed).map(|n| n.addr.clone()).collect();
    let cmd = resp::encode_command(args);
    let replies = futures_util::future::join_all(nodes.iter().map(|n| p.backend.send(n, cx, cmd.clone(), 1))).await;
    let mut frames = Vec::new();
    // A node that cannot answer is left out (as if it had no subscribers).
    for mut v in replies.into_iter().flatten() {
        let f = v.pop().unwrap_or_default();
        if resp::is_error(&f) {
            return f;
        }
        frames.push(f);
    }
    match sub.as_str() {
        "channels" | "shardchannels" => {
            let mut all: BTreeSet<Bytes> = BTreeSet::new();
            for f in &frames {
                for e in resp::aggregate_elements(f).unwrap_or_default() {
                    if let Some(Some(b)) = resp::as_bulk(&e) {
                        all.insert(b);
                    }
                }
            }
            let el: Vec<Bytes> = all.iter().map(|c| reply::bulk(c)).collect();
            reply::array(&el)
        }
        "numsub" | "shardnumsub" => {
            let names = &args[2..];
            let mut sums = vec![0i64; names.len()];
            for f in &frames {
                // A flat [name, count, ...] array in either protocol.
                let el = resp::aggregate_elements(f).unwrap_or_default();
                for (i, pair) in el.chunks(2).enumerate() {
                    if let (Some(s), Some(c)) = (sums.get_mut(i), pair.get(1)) {
                        *s += resp::as_int(c).unwrap_or(0);
                    }
                }
            }
            // A flat array in both protocols, as Redis answers it.
            let flat: Vec<Bytes> = names.iter().zip(sums).flat_map(|(n, c)| [reply::bulk(n), reply::int(c)]).collect();
            reply::array(&flat)
        }
        "numpat" => reply::int(frames.iter().filter_map(|f| resp::as_int(f)).sum()),
        _ => frames.into_iter().next().unwrap_or_else(errors::no_node_answered),
    }
}
