//! EXEC: the queued commands as one `MULTI ... EXEC` block per slot (a node runs a block only over
//! one slot's keys), the blocks of a node pipelined, a watched node's first block on its watch
//! connection, blocks refused before they ran sent again where their slot now lives, and the
//! replies merged in queue order.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::time::Instant;

use super::{Queued, Watch};
use crate::backend::{BackendError, Cx, Dedicated, Failure, Reason};
use crate::errors;
use crate::resp::{self, reply};
use crate::route::{self, Budget, Redirect, Router};

/// What EXEC got back from one node's block.
enum Block {
    /// The EXEC reply: an array with one reply per command.
    Done(Bytes),
    /// A WATCHed key changed: nothing ran on this node.
    Aborted,
    /// Nothing ran; send again once the map is right (MOVED, TRYAGAIN, CLUSTERDOWN, not sent).
    /// With the node's refusal when it asked to wait (TRYAGAIN, CLUSTERDOWN, LOADING): what EXEC
    /// answers if the node still refuses when the retry budget runs out.
    Again(Option<Bytes>),
    /// Failed with this error (it may have run when the connection broke after sending).
    Failed(Bytes),
}

/// Runs the queued commands as one block per slot (a node runs `MULTI ... EXEC` only over one
/// slot's keys), the blocks of one node pipelined on the client's lane. A watched node's first
/// block runs on its watch connection, where the node checks the watch; its other blocks follow
/// once that one ran. `watches` keep the connections that are still clean.
pub(super) async fn run(p: &Router, cx: Cx, queued: &[Queued], watches: &mut Vec<Watch>) -> Bytes {
    let mut results: Vec<Option<Bytes>> = vec![None; queued.len()];
    let mut pending: Vec<usize> = (0..queued.len()).collect();
    let mut aborted_any = false;
    let mut done_any = false;
    // Counted from the first retry, as for a lone command: a block that came back late from a
    // hung master (asked again of the new owner) has its whole budget after the wait.
    let mut budget: Option<Budget<'_>> = None;
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
                    .or_else(|| watches.first().map(|w| w.conn.addr.clone()))
                    .or_else(|| t.masters().first().map(|a| a.to_string()));
                let Some(a) = target else { return errors::slot_not_served() };
                let node = groups.entry(a).or_default();
                let first = node.keys().next().copied().unwrap_or(None);
                let b = node.entry(first).or_default();
                b.extend(keyless);
                b.sort_unstable();
            }
        }
        if first_round {
            first_round = false;
            // A watch sees only the writes that reach its node. Once the node no longer owns a
            // watched slot (the slot moved, or the node was failed over and is a replica now),
            // a write to the watched key lands elsewhere and this watch cannot see it; running
            // the block anyway, on the new owner where nothing is watched, would commit over
            // a change the client asked to be told about. Redis's answer for a watch that
            // cannot vouch for its keys is EXEC's nil: nothing runs, and the client watches
            // again (on the new owner) and retries, as after any WATCH conflict.
            if !owns_watched(p, &groups, watches).await {
                // The connections may still hold watches: closed, not pooled.
                watches.clear();
                return reply::null_array(cx.proto);
            }
            // A watched node with no command of ours still decides: a changed key aborts all.
            let checks: Vec<usize> =
                (0..watches.len()).filter(|&i| !groups.contains_key(&watches[i].conn.addr)).rev().collect();
            for i in checks {
                let mut w = watches.remove(i).conn;
                let limit = p.backend.config().request_timeout;
                match tokio::time::timeout(limit, w.request(b"*1\r\n$5\r\nMULTI\r\n*1\r\n$4\r\nEXEC\r\n", 2)).await {
                    Ok(Ok(r)) if r.last().is_some_and(|r| !resp::is_null(r) && !resp::is_error(r)) => {
                        p.dedicated.put(w)
                    }
                    // Changed (nil), or the node cannot confirm: do not run anything.
                    _ => {
                        watches.clear();
                        return reply::null_array(cx.proto);
                    }
                }
            }
        }
        let mut runs = Vec::new();
        for (addr, blocks) in groups {
            let conn = watches.iter().position(|w| w.conn.addr == addr).map(|i| watches.remove(i).conn);
            runs.push(node_blocks(p, cx, addr, blocks.into_values().collect(), queued, conn));
        }
        let outcomes = futures_util::future::join_all(runs).await;
        pending.clear();
        let mut again = false;
        let mut refusal = None;
        for (done, conn) in outcomes {
            if let Some(c) = conn {
                watches.push(Watch { conn: c, slots: BTreeMap::new() });
            }
            for (idx, b) in done {
                match b {
                    Block::Done(r) => {
                        let el = resp::aggregate_elements(&r).unwrap_or_default();
                        if el.len() != idx.len() {
                            let e = errors::unexpected_reply("EXEC reply");
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
                        let e = errors::tx_part_aborted();
                        idx.iter().for_each(|&i| results[i] = Some(e.clone()));
                    }
                    Block::Again(r) => {
                        again = true;
                        refusal = r.or(refusal);
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
        if again && !budget.get_or_insert_with(|| Budget::new(p)).wait().await {
            // A node that still refuses has said why, in the words Redis Cluster answers EXEC with
            // (TRYAGAIN: a client knows to try again); a map that kept changing is the proxy's to say.
            let e = refusal.unwrap_or_else(errors::tx_slots_kept_moving);
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
    let all: Vec<Bytes> = results.into_iter().map(|r| r.unwrap_or_else(errors::missing_reply)).collect();
    reply::array(&all)
}

/// Whether every watch connection's node still owns the slots it watches: by the proxy's map
/// first, then, for watched slots that the connection's first block does not cover (its own
/// commands would be redirected if their slot had moved), by asking the node on that connection
/// (`EXISTS key` is answered MOVED or ASK by a node that lost the slot or is losing it, and by a
/// master demoted to replica). A map that has not yet heard of a move is caught either way: the
/// watch connection's block is then refused by the node (`block` turns that into an abort).
async fn owns_watched(
    p: &Router,
    groups: &BTreeMap<String, BTreeMap<Option<u16>, Vec<usize>>>,
    watches: &mut [Watch],
) -> bool {
    {
        let t = p.topology.load();
        for w in watches.iter() {
            if w.slots.keys().any(|&s| t.master_for(s) != Some(w.conn.addr.as_str())) {
                return false;
            }
        }
    }
    let limit = p.backend.config().request_timeout;
    for w in watches.iter_mut() {
        let covered = groups.get(&w.conn.addr).and_then(|b| b.keys().next().copied().flatten());
        let mut probe = BytesMut::new();
        let mut n = 0;
        for (_, k) in w.slots.iter().filter(|(s, _)| Some(**s) != covered) {
            probe.put_slice(&resp::encode_command(&[b"EXISTS".as_ref(), k]));
            n += 1;
        }
        if n == 0 {
            continue;
        }
        match tokio::time::timeout(limit, w.conn.request(&probe, n)).await {
            Ok(Ok(r)) if r.len() == n && r.iter().all(|r| !resp::is_error(r)) => {}
            // Redirected, refused, or no answer: the watch cannot vouch for its keys.
            _ => return false,
        }
    }
    true
}

/// One node's blocks: on the watch connection first when there is one (if it aborts, the
/// node's other blocks do not run), the rest pipelined on the client's lane.
async fn node_blocks(
    p: &Router,
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
    p: &Router,
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
                    Err(_) => Err(BackendError::timeout(addr, Reason::NoAnswerTo("EXEC"))),
                }
            }
            None => p.backend.send(&target, cx, payload.freeze(), n).await,
        };
        let replies = match sent {
            Ok(r) => r,
            Err(e) if e.failure == Failure::NotSent && conn.is_none() => {
                p.topology.request_refresh();
                return (Block::Again(None), None);
            }
            Err(e) => return (Block::Failed(e.reply()), None),
        };
        let Some(exec) = replies.last() else {
            return (Block::Failed(errors::empty_reply()), conn);
        };
        if resp::is_null(exec) {
            return (Block::Aborted, conn);
        }
        if !resp::is_error(exec) {
            // Answered late by a master deposed meanwhile: what ran may be discarded with its data.
            let mut deposed = None;
            for s in idx.iter().filter_map(|&i| queued[i].slot) {
                if let Some(owner) = route::deposed(p, s, &target, started).await {
                    deposed = Some((s, owner));
                    break;
                }
            }
            if let Some((s, owner)) = deposed {
                if idx.iter().all(|&i| queued[i].rerun) {
                    p.metrics.redirect("late");
                    // Reads only, maybe stale: run them again where the slot lives now, as a lone
                    // read is asked again. Under WATCH the watch was on the deposed node: EXEC's
                    // nil tells the client to watch and try again.
                    return (if conn.is_some() { Block::Aborted } else { Block::Again(None) }, None);
                }
                return (Block::Failed(route::deposed_error(&target, s, &owner, started)), None);
            }
            return (Block::Done(exec.clone()), conn);
        }
        // Why nothing ran: a queued command's refusal (EXEC then answers EXECABORT), or EXEC's own:
        // a node refuses EXEC itself with TRYAGAIN when the keys of a half-migrated slot are split
        // between it and the other node (each command alone was fine).
        let (why, refusal) = replies[..replies.len() - 1]
            .iter()
            .chain(std::iter::once(exec))
            .map(|r| (route::classify(r, &target), r))
            .find(|(why, _)| !matches!(why, Redirect::None))
            .unwrap_or((Redirect::None, exec));
        match why {
            Redirect::Moved { slot, addr: to } => {
                p.metrics.redirect("moved");
                p.topology.patch_slot(slot, &to);
                p.topology.request_refresh();
                // A watch connection is on the old owner: its watched keys moved away.
                return (if conn.is_some() { Block::Aborted } else { Block::Again(None) }, conn);
            }
            // The watch connection's node is giving the slot away (an absent key's writes go to
            // the target already): its watch cannot vouch for the key.
            Redirect::Ask { .. } if conn.is_some() => {
                p.metrics.redirect("ask");
                return (Block::Aborted, conn);
            }
            Redirect::Ask { addr: to } => {
                p.metrics.redirect("ask");
                target = p.topology.resolve(to, &target);
                asking = true;
            }
            Redirect::Retry(kind) => {
                p.metrics.redirect(kind);
                return (if conn.is_some() { Block::Aborted } else { Block::Again(Some(refusal.clone())) }, conn);
            }
            _ => return (Block::Failed(exec.clone()), conn),
        }
    }
    (Block::Failed(errors::tx_too_many_redirects()), conn)
}
