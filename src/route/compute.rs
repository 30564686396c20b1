//! Set operations over keys in several slots, computed by the proxy (`keyspace.cross_slot_reads =
//! "compute"`): SUNION, SINTER, SDIFF, SINTERCARD and SUNIONSTORE, SINTERSTORE, SDIFFSTORE. Each
//! key's members are read from its own master (SMEMBERS, all at once), the result is worked out
//! here in the order one server would (members of the first key first), and a *STORE result is
//! written to the destination in one script, atomically there. The reads are not one snapshot:
//! a key written meanwhile may be seen before or after the write, which the README says. Bounded:
//! past `keyspace.max_compute_bytes` of members the command is refused, never buffered further.

use std::collections::HashSet;

use bytes::Bytes;

use super::{send_to_slot, Router, Trace};
use crate::backend::Cx;
use crate::errors;
use crate::resp::{self, reply};
use crate::slot;

/// Writes a *STORE result: the destination replaced by the members, in chunks (Lua's `unpack`
/// has a bounded stack), answering their count as SUNIONSTORE does.
const STORE: &str = "redis.call('del', KEYS[1]) local n = 0 \
    for i = 1, #ARGV, 4000 do n = n + redis.call('sadd', KEYS[1], unpack(ARGV, i, math.min(i + 3999, #ARGV))) end \
    return n";

enum Op {
    Union,
    Inter,
    Diff,
}

/// Whether `name` is a set operation this module computes.
pub(super) fn computes(name: &str) -> bool {
    matches!(name, "sunion" | "sinter" | "sdiff" | "sintercard" | "sunionstore" | "sinterstore" | "sdiffstore")
}

pub(super) async fn set_op(p: &Router, name: &str, args: &[Bytes], limit: usize, cx: Cx, trace: &Trace) -> Bytes {
    let (op, store, keys, card_limit) = match name {
        "sunion" => (Op::Union, None, &args[1..], None),
        "sinter" => (Op::Inter, None, &args[1..], None),
        "sdiff" => (Op::Diff, None, &args[1..], None),
        "sunionstore" => (Op::Union, args.get(1), args.get(2..).unwrap_or_default(), None),
        "sinterstore" => (Op::Inter, args.get(1), args.get(2..).unwrap_or_default(), None),
        "sdiffstore" => (Op::Diff, args.get(1), args.get(2..).unwrap_or_default(), None),
        _ => match sintercard_args(args) {
            Ok((keys, lim)) => (Op::Inter, None, keys, Some(lim)),
            Err(e) => return e,
        },
    };
    let reads = keys.iter().map(|k| {
        let cmd = resp::encode_command(&[b"SMEMBERS".as_ref(), k]);
        send_to_slot(p, slot::slot(k), cmd, true, cx, trace)
    });
    let replies = futures_util::future::join_all(reads).await;
    let members = |r: &Bytes| -> Vec<Bytes> {
        resp::aggregate_elements(r).unwrap_or_default().iter().filter_map(|m| resp::as_bulk(m).flatten()).collect()
    };
    let sets = match read_within(name, &replies, limit, members, Bytes::len) {
        Ok(sets) => sets,
        Err(e) => return e,
    };
    let result = compute(op, &sets);
    if let Some(lim) = card_limit {
        return card(result.len(), lim);
    }
    match store {
        None => {
            let elems: Vec<Bytes> = result.iter().map(|m| reply::bulk(m)).collect();
            reply::set(cx.proto, &elems)
        }
        Some(dest) => {
            let mut cmd: Vec<&[u8]> = vec![b"EVAL", STORE.as_bytes(), b"1", dest];
            cmd.extend(result.iter().map(|m| m.as_ref()));
            send_to_slot(p, slot::slot(dest), resp::encode_command(&cmd), false, cx, trace).await
        }
    }
}

/// Each key's reply read by `parse`, in key order, within `limit` bytes as `size` counts them:
/// the first error a node answered (WRONGTYPE), or the proxy's refusal past the limit.
pub(super) fn read_within<T>(
    name: &str,
    replies: &[Bytes],
    limit: usize,
    parse: impl Fn(&Bytes) -> Vec<T>,
    size: impl Fn(&T) -> usize,
) -> Result<Vec<Vec<T>>, Bytes> {
    let mut inputs = Vec::with_capacity(replies.len());
    let mut bytes = 0usize;
    for r in replies {
        if resp::is_error(r) {
            return Err(r.clone());
        }
        let input = parse(r);
        bytes += input.iter().map(&size).sum::<usize>();
        if bytes > limit {
            return Err(errors::compute_too_large(name, limit));
        }
        inputs.push(input);
    }
    Ok(inputs)
}

/// A *INTERCARD reply: the result's size, up to `limit` (0: no limit).
pub(super) fn card(len: usize, limit: usize) -> Bytes {
    reply::int(if limit == 0 { len } else { len.min(limit) } as i64)
}

/// The members of the result in one server's order: the first set's, then (a union) each next
/// set's new ones.
fn compute(op: Op, sets: &[Vec<Bytes>]) -> Vec<Bytes> {
    let Some((first, rest)) = sets.split_first() else { return Vec::new() };
    match op {
        Op::Union => {
            let mut seen: HashSet<&Bytes> = HashSet::new();
            sets.iter().flatten().filter(|m| seen.insert(m)).cloned().collect()
        }
        Op::Inter => {
            let others: Vec<HashSet<&Bytes>> = rest.iter().map(|s| s.iter().collect()).collect();
            first.iter().filter(|m| others.iter().all(|o| o.contains(m))).cloned().collect()
        }
        Op::Diff => {
            let others: HashSet<&Bytes> = rest.iter().flatten().collect();
            first.iter().filter(|m| !others.contains(m)).cloned().collect()
        }
    }
}

/// `SINTERCARD numkeys key [key ...] [LIMIT limit]`: the keys and the limit (0: none), or
/// Redis's error.
fn sintercard_args(args: &[Bytes]) -> Result<(&[Bytes], usize), Bytes> {
    let n = args.get(1).and_then(|n| std::str::from_utf8(n).ok()?.parse::<usize>().ok());
    let Some(n) = n.filter(|&n| n > 0) else { return Err(errors::numkeys_positive()) };
    let Some(keys) = args.get(2..2 + n) else { return Err(errors::numkeys_too_many()) };
    let mut limit = 0;
    let mut rest = &args[2 + n..];
    while let [opt, value, tail @ ..] = rest {
        if !opt.eq_ignore_ascii_case(b"limit") {
            return Err(errors::syntax());
        }
        limit = match std::str::from_utf8(value).ok().and_then(|v| v.parse::<usize>().ok()) {
            Some(l) => l,
            None => return Err(errors::limit_negative()),
        };
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(errors::syntax());
    }
    Ok((keys, limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(members: &[&str]) -> Vec<Bytes> {
        members.iter().map(|m| Bytes::copy_from_slice(m.as_bytes())).collect()
    }

    fn names(v: Vec<Bytes>) -> Vec<String> {
        v.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect()
    }

    #[test]
    fn set_operations_in_one_servers_order() {
        let sets = [set(&["a", "b", "c"]), set(&["c", "d", "a"]), set(&["a", "e"])];
        assert_eq!(names(compute(Op::Union, &sets)), ["a", "b", "c", "d", "e"]);
        assert_eq!(names(compute(Op::Inter, &sets)), ["a"]);
        assert_eq!(names(compute(Op::Diff, &sets)), ["b"]);
        assert!(compute(Op::Inter, &[set(&["a"]), set(&[])]).is_empty());
        assert!(compute(Op::Union, &[]).is_empty());
    }

    #[test]
    fn sintercard_arguments() {
        let a = |s: &str| s.split(' ').map(|w| Bytes::copy_from_slice(w.as_bytes())).collect::<Vec<_>>();
        let args = a("sintercard 2 x y LIMIT 3");
        let (keys, lim) = sintercard_args(&args).unwrap();
        assert_eq!((keys.len(), lim), (2, 3));
        assert_eq!(sintercard_args(&a("sintercard 2 x y")).unwrap().1, 0);
        assert!(sintercard_args(&a("sintercard 0 x")).is_err());
        assert!(sintercard_args(&a("sintercard 3 x y")).is_err());
        assert!(sintercard_args(&a("sintercard 1 x LIMIT")).is_err());
        assert!(sintercard_args(&a("sintercard 1 x LIMIT -1")).is_err());
    }
}
