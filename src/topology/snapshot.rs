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
