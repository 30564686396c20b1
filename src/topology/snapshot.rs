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
    /// Masters that own slots, ordered by their lowest slot (stable across failovers, used by SCAN).
    owners: Vec<u16>,
    /// When this map was learned.
    pub learned_at: Instant,
}

impl Topology {
    /// An empty map (no slot served).
    pub fn empty() -> Topology {
        Topology::build(0, Vec::new(), vec![UNOWNED; SLOTS].into_boxed_slice())
    }

    pub(super) fn build(version: u64, nodes: Vec<Node>, slots: Box<[u16]>) -> Topology {
        // Each owner's lowest slot, in one pass over the slots.
        let mut first: Vec<Option<usize>> = vec![None; nodes.len()];
        for (s, &n) in slots.iter().enumerate() {
            if let Some(f @ None) = first.get_mut(n as usize) {
                *f = Some(s);
            }
        }
        let mut owners: Vec<(usize, u16)> =
            first.iter().enumerate().filter_map(|(n, f)| f.map(|s| (s, n as u16))).collect();
        owners.sort();
        Topology {
            version,
            nodes,
            slots,
            owners: owners.into_iter().map(|(_, n)| n).collect(),
            learned_at: Instant::now(),
        }
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

    /// Addresses of the masters that own slots, in slot order.
    pub fn slot_owners(&self) -> Vec<&str> {
        self.owners.iter().filter_map(|&i| self.nodes.get(i as usize)).map(|n| n.addr.as_str()).collect()
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

    fn node(id: &str, addr: &str, role: Role) -> Node {
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

    /// Three masters (b owns the lowest slots although listed second), a replica, a master
    /// without slots and a failed one.
    fn sample() -> Topology {
        let mut nodes = vec![
            node("a", "h:1", Role::Master),
            node("b", "h:2", Role::Master),
            node("r", "h:3", Role::Replica),
            node("c", "h:4", Role::Master),
            node("e", "h:5", Role::Master),
            node("f", "h:6", Role::Master),
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
        assert_eq!(t.slot_owners(), vec!["h:2", "h:1", "h:4"], "ordered by lowest slot");
        assert_eq!(t.masters(), vec!["h:2", "h:1", "h:4", "h:5"], "then live masters without slots");
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
        let t2 = Topology::build(1, vec![node("a", "h:1", Role::Master), node("b", "h:2", Role::Master)], full.into());
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
        let a = node("a", "h:1", Role::Master);
        assert!(a.is(&node("a", "elsewhere:1", Role::Replica)), "the same id");
        assert!(!a.is(&node("b", "h:1", Role::Master)), "two ids differ, whatever the address");
        assert!(a.is(&node("", "h:1", Role::Master)), "no id: by address");
        let mut by_ip = node("", "name:1", Role::Master);
        by_ip.ip_addr = "h:1".into();
        assert!(a.is(&by_ip), "no id: by IP address");
        assert!(!a.is(&node("", "h:2", Role::Master)));
        assert!(node("", "h:1", Role::Master).is(&a));

        let t = sample();
        // owners_in: the same nodes in another order, one missing.
        let reordered = vec![node("c", "x:4", Role::Master), node("a", "x:1", Role::Master)];
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
        let mut nodes = vec![node("a", "h:1", Role::Replica), node("b", "h:2", Role::Replica)];
        promote_owners(&mut nodes, &[1, 1, UNOWNED]);
        assert_eq!((nodes[0].role, nodes[1].role), (Role::Replica, Role::Master));
    }
}
