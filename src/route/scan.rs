//! SCAN with one cursor over the whole cluster: the shards (a master and its replicas) are walked
//! one after the other, each to its end, in the order of their [`Shard::key`], a number derived
//! from the shard's lowest node id, which neither a reshard nor a failover changes.
//!
//! # The cursor
//!
//! A u64 in decimal, as Redis's. 0 starts a scan and ends one. Otherwise, from the low bits:
//!
//! | bits   | field |
//! |--------|-------|
//! | 0-15   | the key of the shard being scanned (1..=65535; 0 with other bits set is `-ERR invalid cursor`) |
//! | 16-27  | which master of the shard the node cursor came from: its place among the shard's nodes ordered by id (4 bits, 15 for 15 and more) and an 8-bit hash of its id |
//! | 28-63  | that master's own SCAN cursor (one that does not fit: `-ERR clusterless: node cursor too large to encode`) |
//!
//! # Continuing a cursor
//!
//! 1. The shard with the cursor's key. If its master is the node the cursor came from (same place
//!    among the shard's nodes, same hash), the master's cursor goes on; if not (a failover), the
//!    shard is scanned again from its start: another node's cursor means nothing there (its hash
//!    table, seeded per process, orders keys differently).
//! 2. If no shard has that key (it left the cluster, its lowest node id changed, or it is seen
//!    mid-failover with the demoted master not yet reported as the new one's replica), the scan
//!    starts again from the first shard: the shard may be anywhere in the order now, and a repeat
//!    is allowed where a gap is not.
//! 3. When a shard's master answers 0, the scan goes on at the first shard with a greater key.
//!
//! # What is guaranteed
//!
//! As Redis's SCAN, for every key whose slot stayed on the same shard for the whole scan: present
//! for the whole scan, it is returned at least once; present for part of it, it may or may not be.
//! That holds through failovers inside the shard (the new master is scanned from its start, so
//! keys already returned may come again) and through reshards of other slots. With no topology
//! change every key is returned exactly once. Not covered:
//!
//! - keys of slots that moved from one shard to another during the scan: missed or repeated;
//! - a shard whose key changed while the scan had not reached it yet (a node with a lower id than
//!   all of its nodes joined it, or its lowest-id node left it; or, for the moment between a new
//!   master's claim and the demoted one's report that it follows it, a failover; rarer, a shard
//!   with the same 16-bit hash joined or left, which moves keys by one): if the scan went past its
//!   new key meanwhile, it is skipped;
//! - a failover while the scan is in the shard, seen with other nodes than when the cursor was
//!   issued (nodes joined or left, or, for a moment, the demoted master not yet reported as a
//!   replica), if the new master has the old one's place among them: with odds of 1 in 256 its
//!   id's hash is the old one's too, and the old master's cursor is used on it. With the same
//!   nodes a new master always has another place; in a shard of a master and one replica a
//!   failover is always recognized (seen alone, the new master has place 0; the old one had place
//!   0 only if its id was the lower, and then the shard's key, from its lowest id, changed).

use bytes::Bytes;

use super::Router;
use crate::backend::Cx;
use crate::errors;
use crate::resp::{self, reply, Request};
use crate::topology::{stable_hash, Node, Shard};

/// Bits of the shard key (the lowest of the cursor).
const SHARD_BITS: u32 = 16;
/// Bits saying which master of the shard (above the shard key): its place, then a hash.
const TAG_BITS: u32 = 12;
/// Of the tag: bits of the hash of the master's id (the place has the 4 above).
const TAG_HASH_BITS: u32 = 8;
/// Where the node's own cursor starts; it has the 36 bits above.
const NODE_SHIFT: u32 = SHARD_BITS + TAG_BITS;

/// A non-zero SCAN cursor of the proxy, decoded (see the module doc for the layout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanCursor {
    /// The key of the shard being scanned ([`Shard::key`]), 1..=65535.
    pub shard: u16,
    /// [`ScanCursor::tag_of`] the master whose cursor `node` is (`TAG_BITS` bits).
    pub tag: u16,
    /// The master's own cursor: 0 = the shard's start.
    pub node: u64,
}

impl ScanCursor {
    /// The cursor a client holds for this position, or `None` if the node cursor does not fit.
    pub fn encode(self) -> Option<u64> {
        if self.shard == 0 || self.node >> (64 - NODE_SHIFT) != 0 {
            return None;
        }
        let tag = u64::from(self.tag) & ((1 << TAG_BITS) - 1);
        Some(self.node << NODE_SHIFT | tag << SHARD_BITS | u64::from(self.shard))
    }

    /// A client's non-zero cursor; `None` if the proxy cannot have issued it (no shard key).
    pub fn decode(cursor: u64) -> Option<ScanCursor> {
        let shard = (cursor & ((1 << SHARD_BITS) - 1)) as u16;
        let tag = ((cursor >> SHARD_BITS) & ((1 << TAG_BITS) - 1)) as u16;
        (shard != 0).then_some(ScanCursor { shard, tag, node: cursor >> NODE_SHIFT })
    }

    /// Which master of `shard` a cursor came from: the master's place in [`Shard::members`] (up to
    /// 15) and 8 bits of the hash of its id (of its address if the id is unknown).
    pub fn tag_of(shard: &Shard, nodes: &[Node]) -> u16 {
        let place = shard.members.iter().position(|&m| m == shard.master).unwrap_or(0).min(15) as u16;
        let hash = nodes.get(usize::from(shard.master)).map_or(0, |n| {
            let name = if n.id.is_empty() { &n.addr } else { &n.id };
            (stable_hash(name.as_bytes()) >> (64 - TAG_HASH_BITS)) as u16
        });
        place << TAG_HASH_BITS | hash
    }
}

/// What one SCAN call does.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Send SCAN `node` to the master of `shards[shard]`; `pos` is the scan's position (the shard
    /// key the reply's cursor names while this shard is not finished).
    Scan { pos: u16, shard: usize, node: u64 },
    /// No shard serves slots.
    Done,
}

/// Where a client's cursor continues, in `shards` (ordered by key) whose masters' tags `tag`
/// gives.
fn resolve(shards: &[Shard], tag: impl Fn(&Shard) -> u16, cursor: Option<ScanCursor>) -> Step {
    let found = cursor.and_then(|c| Some((c, shards.iter().position(|s| s.key == c.shard)?)));
    match found {
        Some((c, i)) => {
            let node = if tag(&shards[i]) == c.tag { c.node } else { 0 };
            Step::Scan { pos: c.shard, shard: i, node }
        }
        // A new scan, or the shard not found: from the first shard.
        None if shards.is_empty() => Step::Done,
        None => Step::Scan { pos: shards[0].key, shard: 0, node: 0 },
    }
}

/// The client's next cursor after the master of `shards[shard]` answered `next`. `None`: `next`
/// does not fit.
fn next_cursor(shards: &[Shard], tag: impl Fn(&Shard) -> u16, pos: u16, shard: usize, next: u64) -> Option<u64> {
    if next != 0 {
        let master = shards.get(shard).map_or(0, &tag);
        return ScanCursor { shard: pos, tag: master, node: next }.encode();
    }
    match shards.iter().find(|s| s.key > pos) {
        Some(s) => ScanCursor { shard: s.key, tag: tag(s), node: 0 }.encode(),
        None => Some(0),
    }
}

/// SCAN with one cursor over the whole cluster (see the module doc).
pub(super) async fn scan(p: &Router, req: Request, cx: Cx) -> Bytes {
    let invalid = || errors::invalid_cursor();
    let Some(cursor) = req.args.get(1).and_then(|c| std::str::from_utf8(c).ok()?.parse::<u64>().ok()) else {
        return invalid();
    };
    let client = match cursor {
        0 => None,
        c => match ScanCursor::decode(c) {
            Some(c) => Some(c),
            None => return invalid(),
        },
    };
    let topo = p.topology.load_full();
    let shards = topo.shards();
    let tag = |s: &Shard| ScanCursor::tag_of(s, &topo.nodes);
    let (pos, shard, node_cursor) = match resolve(shards, tag, client) {
        Step::Scan { pos, shard, node } => (pos, shard, node),
        Step::Done => return errors::slot_not_served(),
    };
    let Some(addr) = shards.get(shard).and_then(|s| topo.nodes.get(usize::from(s.master))).map(|n| n.addr.clone())
    else {
        return errors::slot_not_served();
    };
    let mut args: Vec<&[u8]> = req.args.iter().map(|a| a.as_ref()).collect();
    let nc = node_cursor.to_string();
    args[1] = nc.as_bytes();
    let cmd = resp::encode_command(&args);
    let r = match p.backend.send_one(&addr, cx, cmd).await {
        Ok(r) => r,
        Err(e) => return e.reply(),
    };
    if resp::is_error(&r) {
        return r;
    }
    let Some(parts) = resp::aggregate_elements(&r) else {
        return errors::unexpected_reply("SCAN reply");
    };
    let (Some(c), Some(keys)) = (parts.first(), parts.get(1)) else {
        return errors::unexpected_reply("SCAN reply");
    };
    let next: u64 = match resp::as_bulk(c).flatten().and_then(|b| std::str::from_utf8(&b).ok()?.parse().ok()) {
        Some(n) => n,
        None => return errors::unexpected_reply("SCAN cursor"),
    };
    let Some(client_next) = next_cursor(shards, tag, pos, shard, next) else {
        return errors::scan_cursor_too_large();
    };
    reply::array(&[reply::bulk(client_next.to_string().as_bytes()), keys.clone()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::Role;

    fn shard(key: u16, master: u16, members: &[u16]) -> Shard {
        Shard { key, master, members: members.to_vec() }
    }

    /// A shard's tag in these tests: 100 + its master's index.
    fn tag(s: &Shard) -> u16 {
        100 + s.master
    }

    fn node(id: &str, addr: &str) -> Node {
        Node {
            id: id.into(),
            addr: addr.into(),
            ip_addr: addr.into(),
            role: Role::Master,
            master_id: None,
            failed: false,
            config_epoch: None,
        }
    }

    #[test]
    fn layout_is_shard_then_tag_then_node_cursor() {
        let c = ScanCursor { shard: 5, tag: 3, node: 7 };
        assert_eq!(c.encode(), Some((7 << 28) | (3 << 16) | 5));
        assert_eq!(ScanCursor::decode((7 << 28) | (3 << 16) | 5), Some(c));
        let max = ScanCursor { shard: 65535, tag: 4095, node: (1 << 36) - 1 };
        assert_eq!(max.encode(), Some(u64::MAX));
        assert_eq!(ScanCursor::decode(u64::MAX), Some(max));
    }

    #[test]
    fn round_trips() {
        for (shard, tag, node) in
            [(1, 0, 0), (65535, 4095, 0), (300, 17, 1), (9, 4095, 12_345_678_901), (2, 1, 1 << 35)]
        {
            let c = ScanCursor { shard, tag, node };
            let n = c.encode().expect("fits");
            assert_ne!(n, 0, "a cursor naming a shard is never 0 (the end)");
            assert_eq!(ScanCursor::decode(n), Some(c));
        }
    }

    #[test]
    fn node_cursor_too_large_does_not_encode() {
        assert_eq!(ScanCursor { shard: 1, tag: 0, node: 1 << 36 }.encode(), None);
        assert_eq!(ScanCursor { shard: 1, tag: 0, node: u64::MAX }.encode(), None);
    }

    #[test]
    fn a_cursor_without_shard_key_is_invalid() {
        assert_eq!(ScanCursor::decode(1 << 16), None);
        assert_eq!(ScanCursor::decode(1 << 28), None);
        assert_eq!(ScanCursor::decode(u64::MAX << 16), None);
    }

    #[test]
    fn the_tag_is_the_masters_place_and_a_hash_of_its_id() {
        let nodes = [node("aaa", "127.0.0.1:1"), node("bbb", "127.0.0.1:2"), node("", "127.0.0.1:3")];
        let h = |name: &str| (stable_hash(name.as_bytes()) >> 56) as u16;
        // Members ordered by id: aaa (0), bbb (1).
        assert_eq!(ScanCursor::tag_of(&shard(1, 0, &[0, 1]), &nodes), h("aaa"));
        assert_eq!(ScanCursor::tag_of(&shard(1, 1, &[0, 1]), &nodes), 1 << 8 | h("bbb"));
        // A failover inside the same nodes always changes the place, whatever the hashes.
        assert_ne!(
            ScanCursor::tag_of(&shard(1, 0, &[0, 1]), &nodes) >> 8,
            ScanCursor::tag_of(&shard(1, 1, &[0, 1]), &nodes) >> 8
        );
        // No id: the address's hash.
        assert_eq!(ScanCursor::tag_of(&shard(1, 2, &[2]), &nodes), h("127.0.0.1:3"));
        // The place saturates at 15: it stays in 12 bits.
        let members: Vec<u16> = (0..20).collect();
        let many: Vec<Node> = (0..20).map(|i| node(&format!("{i:02}"), "127.0.0.1:1")).collect();
        assert_eq!(ScanCursor::tag_of(&shard(1, 19, &members), &many), 15 << 8 | h("19"));
    }

    #[test]
    fn a_scan_walks_every_shard_in_key_order_once() {
        let shards = [shard(10, 0, &[0, 3]), shard(20, 1, &[1]), shard(30, 2, &[2, 4])];
        let mut step = resolve(&shards, tag, None);
        let mut visited = Vec::new();
        // Each master answers a non-zero cursor once, then 0.
        let mut cursor = 0u64;
        for _ in 0..10 {
            let Step::Scan { pos, shard, node } = step else { break };
            visited.push((shards[shard].key, node));
            let next = if node == 0 { 42 } else { 0 };
            cursor = next_cursor(&shards, tag, pos, shard, next).expect("fits");
            if cursor == 0 {
                break;
            }
            step = resolve(&shards, tag, ScanCursor::decode(cursor));
        }
        assert_eq!(cursor, 0);
        assert_eq!(visited, [(10, 0), (10, 42), (20, 0), (20, 42), (30, 0), (30, 42)]);
    }

    #[test]
    fn the_cursor_continues_on_the_same_master() {
        let shards = [shard(10, 0, &[0, 3]), shard(20, 1, &[1])];
        let c = ScanCursor { shard: 10, tag: 100, node: 77 };
        assert_eq!(resolve(&shards, tag, Some(c)), Step::Scan { pos: 10, shard: 0, node: 77 });
    }

    #[test]
    fn a_failed_over_shard_starts_again_on_its_new_master() {
        // Node 3 was the master (the cursor's tag), node 0 is now.
        let shards = [shard(10, 0, &[0, 3]), shard(20, 1, &[1])];
        let c = ScanCursor { shard: 10, tag: 103, node: 77 };
        assert_eq!(resolve(&shards, tag, Some(c)), Step::Scan { pos: 10, shard: 0, node: 0 });
        // The next cursor carries the new master's tag, so it continues there.
        let next = next_cursor(&shards, tag, 10, 0, 5).expect("fits");
        assert_eq!(ScanCursor::decode(next), Some(ScanCursor { shard: 10, tag: 100, node: 5 }));
    }

    #[test]
    fn a_shard_not_found_restarts_the_scan() {
        let shards = [shard(10, 0, &[0]), shard(30, 2, &[2])];
        for key in [5, 20, 40] {
            let c = ScanCursor { shard: key, tag: 100, node: 9 };
            assert_eq!(resolve(&shards, tag, Some(c)), Step::Scan { pos: 10, shard: 0, node: 0 }, "key {key}");
        }
        assert_eq!(resolve(&[], tag, Some(ScanCursor { shard: 5, tag: 0, node: 9 })), Step::Done);
        assert_eq!(resolve(&[], tag, None), Step::Done);
    }

    #[test]
    fn the_last_shard_finished_ends_the_scan() {
        let shards = [shard(10, 0, &[0]), shard(30, 2, &[2])];
        assert_eq!(next_cursor(&shards, tag, 30, 1, 0), Some(0));
        assert_eq!(next_cursor(&shards, tag, 30, 1, 1 << 36), None, "too large");
    }
}
