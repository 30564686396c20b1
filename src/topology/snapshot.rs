//! One consistent view of the cluster: the nodes, and per slot the index of its master. A
//! snapshot is immutable once built; every change builds and publishes a new one ([`super::store`]).

use std::collections::HashMap;

use tokio::time::Instant;

use crate::slot::SLOTS;

/// No node owns the slot.
pub(crate) const UNOWNED: u16 = u16::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Master,
    Replica,
}

/// What the proxy knows of one node. A node is its id; its addresses are attributes of it, so a
/// change of how a node is addressed (a hostname here, its IP there; a pod restarted on a new IP)
/// never makes a slot lose its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Cluster node id (40 hex chars), empty when only an address is known (after a MOVED).
    pub id: String,
    /// Where clients connect: the endpoint the cluster advertises (`cluster-preferred-endpoint-type`:
    /// its IP, its hostname, or the address a seed was reached at), `host:port` with IPv6 hosts in
    /// brackets. The key of the node connection pools.
    pub addr: String,
    /// The node's IP and client port as the cluster reports them (the bus, CLUSTER NODES and MOVED
    /// with `ip` endpoints know a node by it): the same as `addr` unless the endpoint is a hostname.
    pub ip_addr: String,
    pub role: Role,
    /// Master's id, for replicas.
    pub master_id: Option<String>,
    /// The node reports itself or is reported failed.
    pub failed: bool,
    /// The node's configEpoch, when the source reports it (the bus does; CLUSTER SHARDS does not).
    pub config_epoch: Option<u64>,
}

/// One consistent view of the cluster.
#[derive(Debug)]
pub struct Topology {
    pub version: u64,
    pub nodes: Vec<Node>,
    /// Per slot an index into `nodes`, or `UNOWNED`.
    pub(super) slots: Box<[u16]>,
    /// The shards that own slots (a master and its replicas), in SCAN's order: by [`Shard::key`].
    shards: Vec<Shard>,
    /// When this map was learned.
    pub learned_at: Instant,
}

impl Topology {
    /// An empty map (no slot served).
    pub fn empty() -> Topology {
        Topology::build(0, Vec::new(), vec![UNOWNED; SLOTS].into_boxed_slice())
    }

    /// A map whose every slot is served by `nodes[owner]`, for tests elsewhere in the crate.
    #[cfg(test)]
    pub(crate) fn for_tests(nodes: Vec<Node>, owner: u16) -> Topology {
        Topology::build(1, nodes, vec![owner; SLOTS].into_boxed_slice())
    }

    pub(super) fn build(version: u64, nodes: Vec<Node>, slots: Box<[u16]>) -> Topology {
        let shards = shards_of(&nodes, &slots);
        Topology { version, nodes, slots, shards, learned_at: Instant::now() }
    }

    /// Address of the master serving `slot`.
    #[inline]
    pub fn master_for(&self, slot: u16) -> Option<&str> {
        let i = *self.slots.get(slot as usize)?;
        self.nodes.get(i as usize).map(|n| n.addr.as_str())
    }

    /// The owner of every slot in this map as an index into `nodes` (the same node: by id, or by
    /// address for nodes known only by one), or [`UNOWNED`]: how a map being settled from fresh
    /// reports refers to the published one.
    pub fn owners_in(&self, nodes: &[Node]) -> Vec<u16> {
        let to_new: Vec<u16> =
            self.nodes.iter().map(|o| nodes.iter().position(|n| n.is(o)).map_or(UNOWNED, |i| i as u16)).collect();
        self.slots.iter().map(|&o| to_new.get(usize::from(o)).copied().unwrap_or(UNOWNED)).collect()
    }

    /// The master node serving `slot`.
    #[inline]
    pub fn master_node(&self, slot: u16) -> Option<&Node> {
        let i = *self.slots.get(slot as usize)?;
        self.nodes.get(i as usize)
    }

    /// The replicas of `master` that are not flagged failed (none when its id is unknown).
    pub fn live_replicas<'a>(&'a self, master: &'a Node) -> impl Iterator<Item = &'a Node> + 'a {
        self.nodes.iter().filter(move |n| {
            n.role == Role::Replica && !n.failed && !master.id.is_empty() && n.master_id.as_deref() == Some(&master.id)
        })
    }

    /// Addresses of the masters that own slots, in SCAN's shard order.
    pub fn slot_owners(&self) -> Vec<&str> {
        self.shards.iter().filter_map(|s| self.nodes.get(usize::from(s.master))).map(|n| n.addr.as_str()).collect()
    }

    /// The shards that own slots, in SCAN's order (ascending [`Shard::key`], each key once).
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// Addresses of every live master, with or without slots (so that SCRIPT LOAD reaches new ones).
    pub fn masters(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.slot_owners();
        for n in &self.nodes {
            if n.role == Role::Master && !n.failed && !v.contains(&n.addr.as_str()) {
                v.push(&n.addr);
            }
        }
        v
    }

    /// Number of slots nobody serves.
    pub fn uncovered(&self) -> usize {
        self.slots.iter().filter(|&&n| n == UNOWNED).count()
    }

    /// Slot ranges of each node index, for reporting.
    pub fn ranges(&self) -> HashMap<usize, Vec<(u16, u16)>> {
        let mut out: HashMap<usize, Vec<(u16, u16)>> = HashMap::new();
        let mut s = 0usize;
        while s < SLOTS {
            let n = self.slots[s];
            let start = s;
            while s + 1 < SLOTS && self.slots[s + 1] == n {
                s += 1;
            }
            if n != UNOWNED {
                out.entry(n as usize).or_default().push((start as u16, s as u16));
            }
            s += 1;
        }
        out
    }

    pub(super) fn same_map(&self, other: &Topology) -> bool {
        fn node(t: &Topology, i: u16) -> Option<(&str, &str)> {
            t.nodes.get(usize::from(i)).map(|n| (n.id.as_str(), n.addr.as_str()))
        }
        let key = |n: &'_ Node| (n.id.clone(), n.addr.clone(), n.ip_addr.clone(), n.role, n.failed, n.config_epoch);
        let mut a: Vec<_> = self.nodes.iter().map(key).collect();
        let mut b: Vec<_> = other.nodes.iter().map(key).collect();
        a.sort();
        b.sort();
        a == b && (0..SLOTS).all(|s| node(self, self.slots[s]) == node(other, other.slots[s]))
    }

    /// The node `addr` names: by its connect address, then by its IP address (a MOVED may name a
    /// node either way).
    pub fn find_addr(&self, addr: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.addr == addr).or_else(|| self.nodes.iter().position(|n| n.ip_addr == addr))
    }
}

/// A master that owns slots, with its replicas: what SCAN walks one after the other.
///
/// A shard is known by its *identity*, the lowest node id among its nodes (the master's address
/// when its id is unknown). A failover swaps roles inside the same set of nodes and a reshard moves
/// slots, neither changes it; only a node joining or leaving the shard with a lower id than all the
/// others does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    /// 1..=65535, unique in a map: 1 + the 64-bit FNV-1a hash (`stable_hash`) of the identity mod
    /// 65535, moved up (or, at the top of the range, down) by as little as makes the keys
    /// distinct, in the order of (hash, identity). Depends only on the identities, so every proxy in front of
    /// the cluster, and every map with the same shards, gives a shard the same key.
    pub key: u16,
    /// The master, an index into [`Topology::nodes`].
    pub master: u16,
    /// The master and its replicas (indexes into [`Topology::nodes`]), ordered by node id (then
    /// address): a failover changes the master's place in it unless nodes also joined or left.
    pub members: Vec<u16>,
}

/// 64-bit FNV-1a: a hash that is the same in every build and process (SCAN cursors are handed to
/// clients and come back, possibly to another proxy), unlike std's.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// The shards of a map, ordered and keyed as [`Shard::key`] says.
fn shards_of(nodes: &[Node], slots: &[u16]) -> Vec<Shard> {
    let mut owns = vec![false; nodes.len()];
    for &o in slots {
        if let Some(x) = owns.get_mut(usize::from(o)) {
            *x = true;
        }
    }
    // (hash key, identity, master, members)
    let mut found: Vec<(u32, String, u16, Vec<u16>)> = Vec::new();
    for (m, master) in nodes.iter().enumerate().filter(|&(i, _)| owns.get(i).copied().unwrap_or(false)) {
        let Ok(m) = u16::try_from(m) else { continue };
        let mut members = vec![m];
        if !master.id.is_empty() {
            for (r, n) in nodes.iter().enumerate() {
                if n.role == Role::Replica
                    && n.master_id.as_deref() == Some(master.id.as_str())
                    && owns.get(r) != Some(&true)
                {
                    if let Ok(r) = u16::try_from(r) {
                        members.push(r);
                    }
                }
            }
        }
        members.sort_by_key(|&i| nodes.get(usize::from(i)).map(|n| (n.id.as_str(), n.addr.as_str())));
        let identity = members
            .iter()
            .filter_map(|&i| nodes.get(usize::from(i)))
            .map(|n| n.id.as_str())
            .filter(|id| !id.is_empty())
            .min()
            .unwrap_or(master.addr.as_str())
            .to_string();
        let key = 1 + (stable_hash(identity.as_bytes()) % 65535) as u32;
        found.push((key, identity, m, members));
    }
    found.sort();
    let keys = distinct_keys(found.iter().map(|f| f.0).collect());
    found
        .into_iter()
        .zip(keys)
        .map(|((_, _, master, members), key)| Shard { key: u16::try_from(key).unwrap_or(u16::MAX), master, members })
        .collect()
}

/// Sorted keys in 1..=65535 made distinct, each as close to its own as the others allow: up past
/// equal ones, then down from the top of the range if that overflowed it (a map has fewer than
/// 65535 shards: node indexes are u16 and one is reserved).
fn distinct_keys(mut keys: Vec<u32>) -> Vec<u32> {
    for i in 1..keys.len() {
        keys[i] = keys[i].max(keys[i - 1] + 1);
    }
    let mut ceiling = 65536u32;
    for k in keys.iter_mut().rev() {
        *k = (*k).min(ceiling - 1);
        ceiling = *k;
    }
    keys
}

impl Node {
    /// Whether `other` is the same node: the same id when both have one, else an address in common.
    pub fn is(&self, other: &Node) -> bool {
        if !self.id.is_empty() && !other.id.is_empty() {
            return self.id == other.id;
        }
        self.addr == other.addr || self.ip_addr == other.ip_addr
    }
}

/// `host:port`, with an IPv6 host in brackets (Redis writes IPv6 addresses without them: `::1:7000`).
pub fn format_addr(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Splits `host:port` at its last colon: the host as Redis writes it (an IPv6 address without
/// brackets, a hostname, empty, or `?`) and the port.
pub fn split_addr(addr: &str) -> Option<(&str, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    Some((host, port.parse().ok()?))
}

/// A node that owns slots in a settled map is a master, whatever an older report said.
pub fn promote_owners(nodes: &mut [Node], slots: &[u16]) {
    let mut owns = vec![false; nodes.len()];
    for &o in slots {
        if let Some(x) = owns.get_mut(usize::from(o)) {
            *x = true;
        }
    }
    for (n, _) in nodes.iter_mut().zip(owns).filter(|(_, o)| *o) {
        n.role = Role::Master;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, port: u16, master_of: Option<&str>) -> Node {
        let addr = format!("127.0.0.1:{port}");
        Node {
            id: id.to_string(),
            addr: addr.clone(),
            ip_addr: addr,
            role: if master_of.is_some() { Role::Replica } else { Role::Master },
            master_id: master_of.map(str::to_string),
            failed: false,
            config_epoch: None,
        }
    }

    fn node_at(id: &str, addr: &str, role: Role) -> Node {
        Node {
            id: id.into(),
            addr: addr.into(),
            ip_addr: addr.into(),
            role,
            master_id: None,
            failed: false,
            config_epoch: None,
        }
    }

    /// Slots in three equal thirds over nodes 0, 1, 2.
    fn thirds() -> Box<[u16]> {
        (0..SLOTS).map(|s| (s * 3 / SLOTS) as u16).collect()
    }

    /// (key, master id, member ids sorted) per shard, in order.
    fn shape(t: &Topology) -> Vec<(u16, String, Vec<String>)> {
        t.shards()
            .iter()
            .map(|s| {
                let mut m: Vec<String> = s.members.iter().map(|&i| t.nodes[usize::from(i)].id.clone()).collect();
                m.sort();
                (s.key, t.nodes[usize::from(s.master)].id.clone(), m)
            })
            .collect()
    }

    fn three_with_replicas() -> Vec<Node> {
        vec![
            node("m-c", 1, None),
            node("m-a", 2, None),
            node("m-b", 3, None),
            node("r-c", 4, Some("m-c")),
            node("a-r", 5, Some("m-a")),
            node("r-b", 6, Some("m-b")),
        ]
    }

    #[test]
    fn a_shard_is_its_master_and_replicas_keyed_by_the_lowest_id() {
        let t = Topology::build(1, three_with_replicas(), thirds());
        let got = shape(&t);
        assert_eq!(got.len(), 3);
        let keys: Vec<u16> = got.iter().map(|s| s.0).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "ordered by distinct keys: {keys:?}");
        for (key, master, members) in &got {
            let lowest = members.first().expect("members");
            assert_eq!(*key, 1 + (stable_hash(lowest.as_bytes()) % 65535) as u16, "key of {master}");
        }
        let shard_a = got.iter().find(|s| s.1 == "m-a").expect("m-a");
        assert_eq!(shard_a.2, ["a-r", "m-a"]);
        for s in t.shards() {
            let ids: Vec<&str> = s.members.iter().map(|&i| t.nodes[usize::from(i)].id.as_str()).collect();
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "members in id order: {ids:?}");
        }
        assert_eq!(t.slot_owners().len(), 3);
    }

    #[test]
    fn neither_a_reshard_nor_a_failover_changes_the_shards_keys() {
        let before = Topology::build(1, three_with_replicas(), thirds());
        // Slot 0 moves from the first master to the third: the order by lowest slot would change.
        let mut slots = thirds();
        slots[0] = 2;
        let resharded = Topology::build(2, three_with_replicas(), slots);
        // m-a fails over to a-r.
        let mut nodes = three_with_replicas();
        nodes[1].role = Role::Replica;
        nodes[1].master_id = Some("a-r".into());
        nodes[4].role = Role::Master;
        nodes[4].master_id = None;
        let slots: Box<[u16]> = thirds().iter().map(|&o| if o == 1 { 4 } else { o }).collect();
        let failed_over = Topology::build(3, nodes, slots);
        let keys = |t: &Topology| -> Vec<(u16, Vec<String>)> { shape(t).into_iter().map(|(k, _, m)| (k, m)).collect() };
        assert_eq!(keys(&resharded), keys(&before));
        assert_eq!(keys(&failed_over), keys(&before));
        assert!(shape(&failed_over).iter().any(|s| s.1 == "a-r"), "a-r is the master now");
    }

    #[test]
    fn colliding_keys_are_made_distinct_in_range() {
        // Many shards: keys distinct, ascending, in 1..=65535, and the same whatever order the
        // nodes come in.
        let n = 3000usize;
        let nodes: Vec<Node> = (0..n).map(|i| node(&format!("{i:040x}"), i as u16, None)).collect();
        let slots: Box<[u16]> = (0..SLOTS).map(|s| (s % n) as u16).collect();
        let t = Topology::build(1, nodes.clone(), slots.clone());
        let keys: Vec<u16> = t.shards().iter().map(|s| s.key).collect();
        assert_eq!(keys.len(), n);
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        assert!(keys[0] >= 1);
        let hashes: std::collections::HashSet<u64> =
            t.nodes.iter().map(|n| 1 + stable_hash(n.id.as_bytes()) % 65535).collect();
        assert!(hashes.len() < n, "some hashes collide, so the test shows them made distinct");
        let mut rev = nodes;
        rev.reverse();
        let slots_rev: Box<[u16]> = slots.iter().map(|&o| (n - 1 - usize::from(o)) as u16).collect();
        let t2 = Topology::build(1, rev, slots_rev);
        assert_eq!(shape(&t2), shape(&t));
        // Keys forced up against the top of the range come down from it.
        assert_eq!(distinct_keys(vec![7, 7, 8, 65535, 65535, 65535]), [7, 8, 9, 65533, 65534, 65535]);
        assert_eq!(distinct_keys(vec![1, 65534, 65535, 65535]), [1, 65533, 65534, 65535]);
    }

    /// Three masters (b owns the lowest slots although listed second), a replica, a master
    /// without slots and a failed one.
    fn sample() -> Topology {
        let mut nodes = vec![
            node_at("a", "h:1", Role::Master),
            node_at("b", "h:2", Role::Master),
            node_at("r", "h:3", Role::Replica),
            node_at("c", "h:4", Role::Master),
            node_at("e", "h:5", Role::Master),
            node_at("f", "h:6", Role::Master),
        ];
        nodes[5].failed = true;
        let mut slots = vec![UNOWNED; SLOTS];
        slots[0..100].fill(1);
        slots[100..200].fill(0);
        slots[200..300].fill(1);
        slots[300..16380].fill(3);
        // 16380..16384 unowned.
        Topology::build(7, nodes, slots.into_boxed_slice())
    }

    #[test]
    fn lookups() {
        let t = sample();
        assert_eq!(t.version, 7);
        assert_eq!((t.master_for(0), t.master_for(99), t.master_for(100)), (Some("h:2"), Some("h:2"), Some("h:1")));
        assert_eq!((t.master_for(16379), t.master_for(16380), t.master_for(16383)), (Some("h:4"), None, None));
        assert_eq!(t.master_for(16384), None);
        assert_eq!(t.master_node(150).map(|n| n.id.as_str()), Some("a"));
        assert!(t.master_node(16383).is_none() && t.master_node(20000).is_none());
        // In the shards' order (their keys), which no reshard or failover changes.
        let by_key: Vec<&str> = t.shards().iter().map(|s| t.nodes[usize::from(s.master)].addr.as_str()).collect();
        assert_eq!(t.slot_owners(), by_key);
        let mut owners = t.slot_owners();
        owners.sort();
        assert_eq!(owners, vec!["h:1", "h:2", "h:4"]);
        let mut masters = t.slot_owners();
        masters.push("h:5");
        assert_eq!(t.masters(), masters, "then live masters without slots");
        assert_eq!(t.uncovered(), 4);
        let r = t.ranges();
        assert_eq!(r[&1], vec![(0, 99), (200, 299)]);
        assert_eq!(r[&0], vec![(100, 199)]);
        assert_eq!(r[&3], vec![(300, 16379)]);
        assert_eq!(r.len(), 3);
        let e = Topology::empty();
        assert_eq!((e.uncovered(), e.slot_owners().len(), e.masters().len(), e.ranges().len()), (SLOTS, 0, 0, 0));
        let mut full = vec![0u16; SLOTS];
        full[16383] = 1;
        let t2 =
            Topology::build(1, vec![node_at("a", "h:1", Role::Master), node_at("b", "h:2", Role::Master)], full.into());
        assert_eq!(t2.ranges()[&1], vec![(16383, 16383)]);
        assert_eq!(t2.ranges()[&0], vec![(0, 16382)]);
    }

    #[test]
    fn addresses() {
        let mut t = sample();
        t.nodes[3].ip_addr = "10.0.0.4:4".into();
        t.nodes[3].addr = "host-c:4".into();
        assert_eq!(t.find_addr("host-c:4"), Some(3));
        assert_eq!(t.find_addr("10.0.0.4:4"), Some(3), "by IP when the endpoint is a hostname");
        assert_eq!(t.find_addr("h:9"), None);
        assert_eq!(format_addr("::1", 7000), "[::1]:7000");
        assert_eq!(format_addr("[::1]", 7000), "[::1]:7000");
        assert_eq!(format_addr("10.0.0.1", 7000), "10.0.0.1:7000");
        assert_eq!(split_addr("::1:7000"), Some(("::1", 7000)));
        assert_eq!(split_addr("[::1]:7000"), Some(("::1", 7000)));
        assert_eq!(split_addr("?:7000"), Some(("?", 7000)));
        assert_eq!(split_addr(":7000"), Some(("", 7000)));
        assert_eq!(split_addr("host"), None);
        assert_eq!(split_addr("host:x"), None);
    }

    #[test]
    fn node_identity_and_map_comparison() {
        let a = node_at("a", "h:1", Role::Master);
        assert!(a.is(&node_at("a", "elsewhere:1", Role::Replica)), "the same id");
        assert!(!a.is(&node_at("b", "h:1", Role::Master)), "two ids differ, whatever the address");
        assert!(a.is(&node_at("", "h:1", Role::Master)), "no id: by address");
        let mut by_ip = node_at("", "name:1", Role::Master);
        by_ip.ip_addr = "h:1".into();
        assert!(a.is(&by_ip), "no id: by IP address");
        assert!(!a.is(&node_at("", "h:2", Role::Master)));
        assert!(node_at("", "h:1", Role::Master).is(&a));

        let t = sample();
        // owners_in: the same nodes in another order, one missing.
        let reordered = vec![node_at("c", "x:4", Role::Master), node_at("a", "x:1", Role::Master)];
        let o = t.owners_in(&reordered);
        assert_eq!((o[0], o[100], o[300], o[16383]), (UNOWNED, 1, 0, UNOWNED));

        assert!(t.same_map(&sample()));
        let mut nodes = sample().nodes;
        nodes.reverse();
        let mut slots = sample().slots.to_vec();
        for s in slots.iter_mut().filter(|s| **s != UNOWNED) {
            *s = 5 - *s;
        }
        assert!(t.same_map(&Topology::build(8, nodes, slots.clone().into())), "node order does not matter");
        let mut moved = slots.clone();
        moved[16380] = 0;
        assert!(!t.same_map(&Topology::build(8, sample().nodes.into_iter().rev().collect(), moved.into())));
        for change in 0..4 {
            let mut n = sample().nodes;
            match change {
                0 => n[2].role = Role::Master,
                1 => n[4].failed = true,
                2 => n[1].config_epoch = Some(3),
                _ => n[0].ip_addr = "10.0.0.1:1".into(),
            }
            assert!(!t.same_map(&Topology::build(7, n, sample().slots)), "change {change}");
        }
    }

    #[test]
    fn owners_become_masters() {
        let mut nodes = vec![node_at("a", "h:1", Role::Replica), node_at("b", "h:2", Role::Replica)];
        promote_owners(&mut nodes, &[1, 1, UNOWNED]);
        assert_eq!((nodes[0].role, nodes[1].role), (Role::Replica, Role::Master));
    }
}
