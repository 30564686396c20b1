//! Multi-key commands over several slots (MGET, MSET, DEL, UNLINK, EXISTS, TOUCH): split into one
//! command per slot, every node's parts pipelined in one write, and the replies merged as one
//! server would have answered.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::time::Instant;

use super::redirect::{settle, FirstTry};
use super::retry::{continue_slot, send_to_slot, How};
use super::{Router, Trace};
use crate::backend::Cx;
use crate::command::{Class, CommandSpec};
use crate::errors;
use crate::resp::{self, reply, Request};
use crate::slot;

/// One per-slot part of a split command.
pub struct Part {
    pub slot: u16,
    /// Where this part's key indices are in [`Parts::order`].
    keys: std::ops::Range<usize>,
    /// Where this part's command is in [`Parts::cmds`].
    cmd: std::ops::Range<usize>,
}

/// A command split per slot: its parts in slot order (the parts deref as a slice).
pub struct Parts {
    /// Indices of the keys (into the original args), grouped by part: one allocation for all
    /// parts instead of one per part.
    order: Box<[usize]>,
    /// Every part's command, one after the other: one buffer for all, each part's cut from it
    /// only when it is sent (reference counting the cuts was a sixth of an MGET's user time).
    cmds: Bytes,
    list: Vec<Part>,
}

impl Parts {
    /// Indices of the keys (into the original args) `part` carries.
    pub fn keys(&self, part: &Part) -> &[usize] {
        self.order.get(part.keys.clone()).unwrap_or_default()
    }

    /// The command that carries `part`.
    pub fn cmd(&self, part: &Part) -> Bytes {
        self.cmds.slice(part.cmd.clone())
    }

    /// The same, borrowed, for copying into a node's batch.
    pub fn cmd_bytes(&self, part: &Part) -> &[u8] {
        self.cmds.get(part.cmd.clone()).unwrap_or_default()
    }
}

impl std::ops::Deref for Parts {
    type Target = [Part];
    fn deref(&self) -> &[Part] {
        &self.list
    }
}

/// Splits an MGET/MSET/DEL-like request into one command per slot (MSET: key/value pairs), in
/// slot order. `None` when all keys share one slot: the request is then forwarded untouched.
pub fn split(class: Class, args: &[Bytes]) -> Option<Parts> {
    let step = if class == Class::MSet { 2 } else { 1 };
    // (slot, key index), grouped by sorting: one allocation, where a map of vectors made one per
    // slot (allocation was the largest user-space cost of an MGET in perf).
    let mut keys: Vec<(u16, usize)> = (1..args.len()).step_by(step).map(|i| (slot::slot(&args[i]), i)).collect();
    keys.sort_unstable();
    if keys.first().map(|k| k.0) == keys.last().map(|k| k.0) {
        return None;
    }
    // All parts' commands in one buffer, each part's a range of it (see `Parts::cmds`).
    let name = &args[0];
    let mut start = 0;
    // Sized first: collected from chunk_by's unknown length the vector grew three times.
    let same_slot = |a: &(u16, usize), b: &(u16, usize)| a.0 == b.0;
    let mut parts: Vec<Part> = Vec::with_capacity(keys.chunk_by(same_slot).count());
    parts.extend(keys.chunk_by(same_slot).map(|run| {
        start += run.len();
        Part { slot: run[0].0, keys: start - run.len()..start, cmd: 0..0 }
    }));
    let order: Box<[usize]> = keys.iter().map(|&(_, k)| k).collect();
    // Headers: at most 24 bytes per array and per bulk string besides their contents.
    let total: usize = parts.len() * (48 + name.len())
        + keys
            .iter()
            .map(|&(_, k)| 24 + args[k].len() + if step == 2 { 24 + args[k + 1].len() } else { 0 })
            .sum::<usize>();
    let mut buf = BytesMut::with_capacity(total);
    for part in &mut parts {
        let from = buf.len();
        resp::put_array_header(&mut buf, 1 + part.keys.len() * step);
        resp::put_bulk(&mut buf, name);
        for &k in &order[part.keys.clone()] {
            resp::put_bulk(&mut buf, &args[k]);
            if step == 2 {
                resp::put_bulk(&mut buf, &args[k + 1]);
            }
        }
        part.cmd = from..buf.len();
    }
    Some(Parts { order, cmds: buf.freeze(), list: parts })
}

/// MGET / MSET / DEL-like commands: grouped by slot, every group of one node in one pipelined write.
pub(super) async fn fan_out(p: &Router, spec: &CommandSpec, req: Request, cx: Cx, trace: &Trace) -> Bytes {
    let args = &req.args;
    if spec.class == Class::MSet && (args.len() - 1) % 2 != 0 {
        return errors::wrong_arity(&spec.name);
    }
    let Some(parts) = split(spec.class, args) else {
        // All keys in one slot: forward the request untouched.
        let s = args.get(1).map(|k| slot::slot(k)).unwrap_or(0);
        return send_to_slot(p, s, req.raw, spec.readonly, cx, trace).await;
    };
    let replies = send_parts(p, &parts, spec.readonly, cx, trace).await;
    merge_fan_out(spec.class, args.len(), &parts, replies, cx.proto)
}

/// Sends every part, pipelining all parts owned by one node into one write; a part redirected,
/// refused, lost or answered late goes on alone through the retry loop of [`continue_slot`], as if
/// sent there.
async fn send_parts(p: &Router, parts: &Parts, readonly: bool, cx: Cx, trace: &Trace) -> Vec<Bytes> {
    let mut by_node: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut unowned = Vec::new();
    {
        let t = p.topology.load();
        for (i, part) in parts.iter().enumerate() {
            match t.master_for(part.slot) {
                Some(a) => by_node.entry(a.to_string()).or_default().push(i),
                None => unowned.push(i),
            }
        }
    }
    let sent = Instant::now();
    let sends = by_node.iter().map(|(addr, idx)| {
        let mut payload = BytesMut::with_capacity(idx.iter().map(|&i| parts[i].cmd.len()).sum());
        for &i in idx {
            payload.put_slice(parts.cmd_bytes(&parts[i]));
        }
        p.backend.send(addr, cx, payload.freeze(), idx.len())
    });
    let results = futures_util::future::join_all(sends).await;
    let mut out: Vec<Option<Bytes>> = vec![None; parts.len()];
    let mut again: Vec<(usize, Option<FirstTry>)> = unowned.into_iter().map(|i| (i, None)).collect();
    for ((addr, idx), res) in by_node.into_iter().zip(results) {
        let n = idx.len();
        for (i, s) in idx.into_iter().zip(settle(&addr, sent, res, n).into_each()) {
            match s {
                Ok(r) => out[i] = Some(r),
                Err(first) => again.push((i, Some(first))),
            }
        }
    }
    if !again.is_empty() {
        let how = How::shared(readonly).master_only(trace.master_only);
        let retried = futures_util::future::join_all(again.into_iter().map(|(i, first)| async move {
            (i, continue_slot(p, parts[i].slot, parts.cmd(&parts[i]), how, cx, trace, first).await)
        }))
        .await;
        for (i, r) in retried {
            out[i] = Some(r);
        }
    }
    out.into_iter().map(|r| r.unwrap_or_else(errors::missing_reply)).collect()
}

/// Merges the parts' replies into the reply one server would have given (MGET values back in
/// request order, MSET's OK, the others' integers summed); the first error wins.
pub fn merge_fan_out(class: Class, argc: usize, parts: &Parts, replies: Vec<Bytes>, proto: u8) -> Bytes {
    if let Some(e) = replies.iter().find(|r| resp::is_error(r)) {
        return e.clone();
    }
    match class {
        Class::MGet => {
            // Values as slices of the parts' replies, written once into the merged reply.
            let null = reply::null(proto);
            let mut values: Vec<&[u8]> = vec![&null[..]; argc];
            for (part, r) in parts.iter().zip(&replies) {
                let keys = parts.keys(part);
                match resp::Elements::of(r) {
                    Some(mut el) if el.len() == keys.len() => {
                        for (&k, v) in keys.iter().zip(el.by_ref()) {
                            values[k] = v;
                        }
                        // Elements left untaken: one of them was malformed.
                        if !el.is_empty() {
                            return errors::unexpected_reply("MGET reply");
                        }
                    }
                    _ => return errors::unexpected_reply("MGET reply"),
                }
            }
            reply::array(values.get(1..).unwrap_or_default())
        }
        Class::MSet => reply::ok(),
        _ => {
            let mut sum = 0i64;
            for r in &replies {
                match resp::as_int(r) {
                    Some(n) => sum += n,
                    None => return errors::unexpected_reply("integer reply"),
                }
            }
            reply::int(sum)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_groups_keys_by_slot_in_request_order() {
        // {a} and {b} tags: two slots, keys of each interleaved in the request.
        let args: Vec<Bytes> = ["MSET", "{a}1", "x", "{b}1", "yy", "{a}2", "", "{b}2", "z"].map(b).to_vec();
        let parts = split(Class::MSet, &args).expect("two slots");
        let mut want = [(slot::slot(b"{a}"), vec![1, 5]), (slot::slot(b"{b}"), vec![3, 7])];
        want.sort();
        assert_eq!(parts.len(), 2);
        for (part, (s, keys)) in parts.iter().zip(want) {
            assert_eq!((part.slot, parts.keys(part)), (s, &keys[..]));
            let mut sub = vec![args[0].clone()];
            keys.iter().for_each(|&k| sub.extend([args[k].clone(), args[k + 1].clone()]));
            assert_eq!(parts.cmd(part), resp::encode_command(&sub));
        }
        let mget: Vec<Bytes> = ["MGET", "{a}1", "{b}1", "{a}2"].map(b).to_vec();
        let parts = split(Class::MGet, &mget).expect("two slots");
        let a = parts.iter().find(|p| p.slot == slot::slot(b"{a}")).expect("slot of {a}");
        assert_eq!(parts.keys(a), [1, 3]);
        assert_eq!(parts.cmd(a), resp::encode_command(&[&b"MGET"[..], b"{a}1", b"{a}2"]));
        assert!(split(Class::MGet, &["MGET", "{a}1", "{a}2"].map(b)).is_none(), "one slot: forwarded whole");
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    /// Keys longer than the 24 bytes a header takes, and a long command name: the buffer is sized
    /// from them, and each part's borrowed command is the same as its owned one.
    #[test]
    fn long_keys_and_borrowed_commands() {
        let long = |t: &str| format!("{{{t}}}{}", "k".repeat(100));
        let args: Vec<Bytes> =
            ["MSET".to_string(), long("a"), "v".repeat(50), long("b"), String::new(), long("c"), "w".to_string()]
                .iter()
                .map(|s| b(s))
                .collect();
        let parts = split(Class::MSet, &args).expect("three slots");
        assert_eq!(parts.len(), 3);
        for part in parts.iter() {
            assert_eq!(parts.cmd_bytes(part), &parts.cmd(part)[..]);
            let k = parts.keys(part)[0];
            assert_eq!(parts.cmd(part), resp::encode_command(&[args[0].clone(), args[k].clone(), args[k + 1].clone()]));
        }
        // Values longer than their keys.
        let big = "v".repeat(300);
        let args: Vec<Bytes> = ["MSET", "{a}", &big, "{b}", &big].map(b).to_vec();
        let parts = split(Class::MSet, &args).expect("two slots");
        for part in parts.iter() {
            let k = parts.keys(part)[0];
            assert_eq!(parts.cmd(part), resp::encode_command(&[args[0].clone(), args[k].clone(), args[k + 1].clone()]));
        }
        let del: Vec<Bytes> = ["UNLINK", &long("a"), &long("b")].map(b).to_vec();
        let parts = split(Class::SumKeys, &del).expect("two slots");
        for part in parts.iter() {
            assert_eq!(parts.cmd_bytes(part), &parts.cmd(part)[..]);
            assert_eq!(parts.cmd(part), resp::encode_command(&[del[0].clone(), del[parts.keys(part)[0]].clone()]));
        }
    }

    /// MGET values back in request order from the parts' replies (missing keys as the client's
    /// null), MSET's OK, the others summed; the first error wins; a reply of the wrong shape is
    /// the proxy's own error.
    #[test]
    fn merges_as_one_server_answers() {
        let mget: Vec<Bytes> = ["MGET", "{a}1", "{b}1", "{a}2", "{b}2"].map(b).to_vec();
        let parts = split(Class::MGet, &mget).expect("two slots");
        let reply_of = |part: &Part| -> Bytes {
            let keys = parts.keys(part);
            let vals: Vec<Bytes> = keys
                .iter()
                .map(|&k| if k == 3 { reply::null(2) } else { reply::bulk(&[b"v".as_slice(), &mget[k]].concat()) })
                .collect();
            reply::array(&vals)
        };
        let replies: Vec<Bytes> = parts.iter().map(reply_of).collect();
        let merged = merge_fan_out(Class::MGet, mget.len(), &parts, replies.clone(), 2);
        assert_eq!(&merged[..], b"*4\r\n$5\r\nv{a}1\r\n$5\r\nv{b}1\r\n$-1\r\n$5\r\nv{b}2\r\n");
        // A part with fewer or more elements than its keys, or not an array: unexpected.
        let unexpected = errors::unexpected_reply("MGET reply");
        let mut short = replies.clone();
        short[0] = reply::array(&[reply::bulk(b"x")]);
        assert_eq!(merge_fan_out(Class::MGet, mget.len(), &parts, short, 2), unexpected);
        let mut long = replies.clone();
        long[1] = reply::array(&[reply::bulk(b"x"), reply::bulk(b"y"), reply::bulk(b"z")]);
        assert_eq!(merge_fan_out(Class::MGet, mget.len(), &parts, long, 2), unexpected);
        let mut scalar = replies.clone();
        scalar[1] = reply::int(2);
        assert_eq!(merge_fan_out(Class::MGet, mget.len(), &parts, scalar, 2), unexpected);
        // An error in any part is the answer, the first one.
        let mut failed = replies.clone();
        failed[1] = Bytes::from_static(b"-ERR second\r\n");
        assert_eq!(&merge_fan_out(Class::MGet, mget.len(), &parts, failed.clone(), 2)[..], b"-ERR second\r\n");
        failed[0] = Bytes::from_static(b"-ERR first\r\n");
        assert_eq!(&merge_fan_out(Class::MGet, mget.len(), &parts, failed, 2)[..], b"-ERR first\r\n");

        let mset: Vec<Bytes> = ["MSET", "{a}1", "x", "{b}1", "y"].map(b).to_vec();
        let parts = split(Class::MSet, &mset).expect("two slots");
        let oks = vec![reply::ok(), reply::ok()];
        assert_eq!(merge_fan_out(Class::MSet, mset.len(), &parts, oks, 2), reply::ok());
        let one_failed = vec![reply::ok(), Bytes::from_static(b"-OOM no\r\n")];
        assert_eq!(&merge_fan_out(Class::MSet, mset.len(), &parts, one_failed, 2)[..], b"-OOM no\r\n");

        let del: Vec<Bytes> = ["DEL", "{a}1", "{b}1", "{a}2"].map(b).to_vec();
        let parts = split(Class::SumKeys, &del).expect("two slots");
        let counts = vec![reply::int(2), reply::int(5)];
        assert_eq!(merge_fan_out(Class::SumKeys, del.len(), &parts, counts, 2), reply::int(7));
        let not_int = vec![reply::int(2), reply::bulk(b"5")];
        assert_eq!(
            merge_fan_out(Class::SumKeys, del.len(), &parts, not_int, 2),
            errors::unexpected_reply("integer reply")
        );
    }
}
