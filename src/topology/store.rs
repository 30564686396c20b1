//! Where the current snapshot lives: published through `arc-swap` (read lock-free on every
//! request) and announced on a `watch` channel of its version, so that every source (polling, the
//! bus observer, a shared observer, MOVED patches) feeds the same snapshot. The data path never
//! edits a snapshot: it asks for a one-slot patch (after MOVED) or a refresh, and the store builds
//! and publishes a new one.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::{watch, Notify};

use super::snapshot::{format_addr, split_addr, UNOWNED};
use super::{Node, Role, Topology};
use crate::slot::SLOTS;
use crate::sync::Mutex;

/// Where the current snapshot lives, and how others ask for a newer one.
pub struct TopologyStore {
    current: ArcSwap<Topology>,
    version_tx: watch::Sender<u64>,
    pub(super) refresh: Notify,
    /// Rung with every refresh request and MOVED patch: the bus observer PINGs every node at its
    /// fast beat for a while (the data path saw something change before the bus did).
    pub(super) alert: Notify,
    /// Set while the bus observer settles ownership by configEpoch. CLUSTER SHARDS carries no
    /// epochs, so its majority vote must not override the bus then: right after a SIGSTOPped
    /// master resumes it still claims its old slots, and a write sent to it is acknowledged and
    /// then lost when it learns it was replaced.
    pub bus_authoritative: AtomicBool,
    /// Serializes writers. Every write reads the current snapshot and builds the next from it;
    /// without this, a MOVED patch built from an older snapshot could overwrite a newer map
    /// published in between (seen: an observer update lost to a concurrent patch). Readers never
    /// take it.
    write: Mutex<()>,
    /// Slots that lost their owner in a published map (the cluster's own answers said no node
    /// claims them): what a mismatch of node identities would inflate, so tests watch it.
    unassigned: AtomicU64,
    /// Node connections refused because the node was not the one the map names (see
    /// [`super::identity`]), and the latest such node.
    pub(super) impostors: AtomicU64,
    pub(super) impostor_tx: watch::Sender<Option<Impostor>>,
}

impl TopologyStore {
    pub fn new() -> Arc<TopologyStore> {
        let (version_tx, _) = watch::channel(0);
        Arc::new(TopologyStore {
            current: ArcSwap::from_pointee(Topology::empty()),
            version_tx,
            refresh: Notify::new(),
            alert: Notify::new(),
            bus_authoritative: AtomicBool::new(false),
            write: Mutex::new(()),
            unassigned: AtomicU64::new(0),
            impostors: AtomicU64::new(0),
            impostor_tx: watch::channel(None).0,
        })
    }

    /// The current snapshot (cheap; do not hold it across long waits).
    #[inline]
    pub fn load(&self) -> arc_swap::Guard<Arc<Topology>> {
        self.current.load()
    }

    pub fn load_full(&self) -> Arc<Topology> {
        self.current.load_full()
    }

    /// Slots that lost their owner in published maps so far.
    pub fn unassigned(&self) -> u64 {
        self.unassigned.load(Ordering::Relaxed)
    }

    /// A receiver that wakes on every published version.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version_tx.subscribe()
    }

    /// Asks the refresher for a refresh; a burst of requests costs one refresh.
    pub fn request_refresh(&self) {
        self.refresh.notify_one();
        self.alert.notify_one();
    }

    /// Publishes a map learned from `source` if it differs from the current one. Returns true if
    /// published.
    pub fn publish(&self, nodes: Vec<Node>, slots: Box<[u16]>, source: Learned) -> bool {
        let _writer = self.write.lock();
        self.publish_locked(nodes, slots, source)
    }

    /// `publish` with the writer lock already held.
    fn publish_locked(&self, mut nodes: Vec<Node>, mut slots: Box<[u16]>, source: Learned) -> bool {
        let cur = self.current.load_full();
        for n in nodes.iter_mut() {
            let Some(c) = cur.nodes.iter().find(|c| c.is(n)) else { continue };
            // Sources that do not know epochs (CLUSTER SHARDS) keep the ones the bus reported.
            if n.config_epoch.is_none() {
                n.config_epoch = c.config_epoch;
            }
            if source == Learned::Bus {
                n.addr = bus_endpoint(c, n);
            }
        }
        if !source.may_unassign() {
            keep_owners(&cur, &mut nodes, &mut slots, source);
        }
        let next = Topology::build(cur.version + 1, nodes, slots);
        if cur.same_map(&next) {
            return false;
        }
        let lost = (0..SLOTS as u16).filter(|&s| cur.master_node(s).is_some() && next.master_node(s).is_none()).count();
        self.unassigned.fetch_add(lost as u64, Ordering::Relaxed);
        log_change(&cur, &next, source.as_str());
        self.current.store(Arc::new(next));
        self.version_tx.send_replace(cur.version + 1);
        true
    }

    /// The node a redirect from `from` means by `addr`: a `?:port` target (a hostname is preferred
    /// but the node has none) is the known node with that port when only one has it; otherwise
    /// the map is refreshed and `from`'s host tried.
    pub fn resolve(&self, addr: String, from: &str) -> String {
        let Some(("?", port)) = split_addr(&addr) else { return addr };
        let t = self.load();
        let mut with_port = t.nodes.iter().filter(|n| split_addr(&n.ip_addr).is_some_and(|(_, q)| q == port));
        match (with_port.next(), with_port.next()) {
            (Some(n), None) => n.addr.clone(),
            _ => {
                self.request_refresh();
                format_addr(split_addr(from).map(|(h, _)| h).unwrap_or("127.0.0.1"), port)
            }
        }
    }

    /// Points one slot at the node `addr` names after a MOVED, at once and without touching any
    /// other slot. A MOVED names a node by its endpoint or its IP (`cluster-preferred-endpoint-type`
    /// of the node that answered): both find it.
    pub fn patch_slot(&self, slot: u16, addr: &str) {
        self.alert.notify_one();
        if split_addr(addr).is_some_and(|(h, _)| h == "?") {
            // Not a node we can name (see `resolve`): the refresh it asked for will place the slot.
            self.request_refresh();
            return;
        }
        let _writer = self.write.lock();
        let cur = self.current.load_full();
        let mut nodes = cur.nodes.clone();
        let idx = match cur.find_addr(addr) {
            Some(i) => i,
            None => {
                nodes.push(Node {
                    id: String::new(),
                    addr: addr.to_string(),
                    ip_addr: addr.to_string(),
                    role: Role::Master,
                    master_id: None,
                    failed: false,
                    config_epoch: None,
                });
                nodes.len() - 1
            }
        };
        if cur.master_node(slot).is_some_and(|o| o.is(&nodes[idx])) {
            return;
        }
        let mut slots = cur.slots.clone();
        slots[slot as usize] = idx as u16;
        if let Some(n) = nodes.get_mut(idx) {
            n.role = Role::Master;
            n.failed = false;
        }
        self.publish_locked(nodes, slots, Learned::Moved);
    }
}

/// A node connection that met the wrong node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Impostor {
    pub addr: String,
    /// The id the map names at `addr` (None: the map names none there; the node was not one of
    /// the cluster's known nodes).
    pub expected: Option<String>,
    /// What the node answered: its id, or why it has none.
    pub answered: String,
}

/// Where a map came from, which decides what it may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Learned {
    /// CLUSTER SHARDS at start-up.
    Bootstrap,
    /// CLUSTER SHARDS asked again (polling, a refresh asked by the data path, a gap in the bus's
    /// claims).
    Refresh,
    /// The bus observer's claims: it knows nodes by id and IP, not by their advertised endpoint.
    Bus,
    /// A shared observer's snapshot.
    Observer,
    /// A MOVED reply.
    Moved,
}

impl Learned {
    pub fn as_str(self) -> &'static str {
        match self {
            Learned::Bootstrap => "bootstrap",
            Learned::Refresh => "refresh",
            Learned::Bus => "bus",
            Learned::Observer => "observer",
            Learned::Moved => "MOVED",
        }
    }

    /// Whether a slot this source reports unowned loses its owner. Only CLUSTER SHARDS says a
    /// slot has none (no node answering claims it); on the bus an unclaimed slot keeps its last
    /// owner, as Redis's own nodes do, and a MOVED or a shared observer's snapshot changes hands,
    /// never takes them away.
    fn may_unassign(self) -> bool {
        matches!(self, Learned::Bootstrap | Learned::Refresh)
    }
}

/// The connect address of node `n` reported by the bus, which knows it by IP, given `c`, what
/// the current map says of the same node: the current endpoint while the node keeps its IP and
/// port; after it moved (a restarted pod), a hostname endpoint keeps its name with the new port,
/// an IP endpoint takes the new IP.
fn bus_endpoint(c: &Node, n: &Node) -> String {
    if c.ip_addr == n.ip_addr {
        return c.addr.clone();
    }
    let host = split_addr(&c.addr).map(|(h, _)| h).filter(|_| c.addr != c.ip_addr);
    match (host, split_addr(&n.ip_addr)) {
        (Some(h), Some((_, port))) => format_addr(h, port),
        _ => n.addr.clone(),
    }
}

/// Keeps the owner of every slot that `slots` leaves unowned but the current map assigns (see
/// [`Learned::may_unassign`]), adding the owner back to `nodes` if the new map dropped it.
fn keep_owners(cur: &Topology, nodes: &mut Vec<Node>, slots: &mut [u16], source: Learned) {
    let owners = cur.owners_in(nodes);
    let mut kept = 0usize;
    for (s, new) in slots.iter_mut().enumerate() {
        if *new != UNOWNED {
            continue;
        }
        let Some(c) = cur.master_node(s as u16) else { continue };
        let i = match owners.get(s).copied().filter(|&o| o != UNOWNED) {
            Some(o) => o,
            None => match nodes.iter().position(|n| n.is(c)) {
                Some(i) => i as u16,
                None => {
                    nodes.push(c.clone());
                    (nodes.len() - 1) as u16
                }
            },
        };
        *new = i;
        kept += 1;
    }
    if kept > 0 {
        tracing::debug!(slots = kept, source = source.as_str(), "kept the owners of slots the map left unowned");
    }
}

fn log_change(old: &Topology, new: &Topology, why: &str) {
    let mut moved: BTreeMap<(String, String), usize> = BTreeMap::new();
    for s in 0..SLOTS {
        let a = old.master_for(s as u16).unwrap_or("none").to_string();
        let b = new.master_for(s as u16).unwrap_or("none").to_string();
        if a != b {
            *moved.entry((a, b)).or_default() += 1;
        }
    }
    let summary: Vec<String> = moved.iter().map(|((a, b), n)| format!("{n} slots {a} -> {b}")).collect();
    tracing::info!(
        version = new.version,
        source = why,
        masters = new.slot_owners().len(),
        uncovered = new.uncovered(),
        "topology changed: {}",
        if summary.is_empty() { "node set or roles changed".to_string() } else { summary.join(", ") }
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::Node;

    fn node(id: &str, addr: &str, ip_addr: &str) -> Node {
        Node {
            id: id.into(),
            addr: addr.into(),
            ip_addr: ip_addr.into(),
            role: Role::Master,
            master_id: None,
            failed: false,
            config_epoch: None,
        }
    }

    /// Slots 0-8191 on node 0, the rest on node 1.
    fn halves() -> Box<[u16]> {
        (0..SLOTS).map(|s| u16::from(s >= 8192)).collect()
    }

    #[test]
    fn patch_changes_exactly_one_slot() {
        let store = TopologyStore::new();
        let nodes = vec![node("a", "127.0.0.1:1", "127.0.0.1:1"), node("b", "127.0.0.1:2", "127.0.0.1:2")];
        assert!(store.publish(nodes.clone(), halves(), Learned::Bootstrap));
        assert!(!store.publish(nodes, halves(), Learned::Bootstrap), "same map must not publish");
        let v = store.load().version;
        store.patch_slot(100, "127.0.0.1:2");
        let t = store.load();
        assert_eq!(t.version, v + 1);
        assert_eq!(t.master_for(100), Some("127.0.0.1:2"));
        assert_eq!(t.master_for(99), Some("127.0.0.1:1"));
        assert_eq!(t.master_for(101), Some("127.0.0.1:1"));
        let mut owners = t.slot_owners();
        owners.sort();
        assert_eq!(owners, vec!["127.0.0.1:1", "127.0.0.1:2"]);
        store.patch_slot(5, "127.0.0.1:3");
        assert_eq!(store.load().master_for(5), Some("127.0.0.1:3"));
        assert_eq!(store.load().uncovered(), 0);
    }

    /// A hostname cluster: CLUSTER SHARDS says `localhost:P`, the bus says `127.0.0.1:P`. The same
    /// nodes: no slot changes hands, the advertised endpoint stays, and a MOVED naming either
    /// spelling finds the node instead of adding a second master.
    #[test]
    fn a_node_is_its_id_whatever_spelling_names_it() {
        let store = TopologyStore::new();
        let shards = vec![node("a", "localhost:1", "127.0.0.1:1"), node("b", "localhost:2", "127.0.0.1:2")];
        store.publish(shards, halves(), Learned::Bootstrap);
        let bus = vec![node("a", "127.0.0.1:1", "127.0.0.1:1"), node("b", "127.0.0.1:2", "127.0.0.1:2")];
        // Before any PONG the bus has no claims: its map leaves every slot unowned.
        store.publish(bus.clone(), vec![UNOWNED; SLOTS].into_boxed_slice(), Learned::Bus);
        let t = store.load_full();
        assert_eq!((t.uncovered(), t.master_for(0), t.master_for(9000)), (0, Some("localhost:1"), Some("localhost:2")));
        store.publish(bus, halves(), Learned::Bus);
        let t = store.load_full();
        assert_eq!(t.nodes.len(), 2);
        assert_eq!((t.master_for(0), t.master_for(9000)), (Some("localhost:1"), Some("localhost:2")));
        store.patch_slot(7, "127.0.0.1:2");
        store.patch_slot(8, "localhost:2");
        let t = store.load_full();
        assert_eq!((t.master_for(7), t.master_for(8), t.nodes.len()), (Some("localhost:2"), Some("localhost:2"), 2));
    }

    /// A pod restarted on a new port keeps its id and hostname: the bus's new IP address moves the
    /// endpoint to the new port; an IP endpoint takes the new IP.
    #[test]
    fn a_node_that_moved_is_followed() {
        let store = TopologyStore::new();
        store.publish(
            vec![node("a", "pod-a:1", "10.0.0.1:1"), node("b", "10.0.0.2:2", "10.0.0.2:2")],
            halves(),
            Learned::Bootstrap,
        );
        store.publish(
            vec![node("a", "10.0.0.9:11", "10.0.0.9:11"), node("b", "10.0.0.8:2", "10.0.0.8:2")],
            halves(),
            Learned::Bus,
        );
        let t = store.load_full();
        assert_eq!((t.master_for(0), t.master_for(9000)), (Some("pod-a:11"), Some("10.0.0.8:2")));
    }

    /// Only CLUSTER SHARDS takes an owner away (no node claims the slot); the bus, a MOVED and a
    /// shared observer's snapshot never do.
    #[test]
    fn only_the_nodes_answers_unassign_a_slot() {
        let store = TopologyStore::new();
        let nodes = vec![node("a", "127.0.0.1:1", "127.0.0.1:1"), node("b", "127.0.0.1:2", "127.0.0.1:2")];
        store.publish(nodes.clone(), halves(), Learned::Bootstrap);
        let mut gap = halves();
        gap[9000] = UNOWNED;
        for source in [Learned::Bus, Learned::Observer] {
            store.publish(nodes.clone(), gap.clone(), source);
            assert_eq!(store.load().master_for(9000), Some("127.0.0.1:2"), "{source:?}");
        }
        // A map without node b at all still keeps its slots on it.
        store.publish(
            vec![nodes[0].clone()],
            vec![0; 8192].into_iter().chain(vec![UNOWNED; 8192]).collect(),
            Learned::Bus,
        );
        assert_eq!((store.load().master_for(9000), store.load().uncovered()), (Some("127.0.0.1:2"), 0));
        store.publish(nodes, gap, Learned::Refresh);
        assert_eq!((store.load().master_for(9000), store.load().uncovered()), (None, 1));
        assert_eq!(store.unassigned(), 1, "the one slot that lost its owner is counted");
    }

    /// Whether a refresh was asked for since the last check.
    fn refresh_asked(store: &TopologyStore) -> bool {
        use futures_util::FutureExt;
        store.refresh.notified().now_or_never().is_some()
    }

    /// Every published version is announced; an unchanged map is not published; epochs the bus
    /// reported survive a CLUSTER SHARDS map that has none.
    #[test]
    fn versions_announced_and_epochs_kept() {
        let store = TopologyStore::new();
        let rx = store.subscribe();
        assert_eq!((*rx.borrow(), store.load().version, store.unassigned()), (0, 0, 0));
        let mut bus = vec![node("a", "127.0.0.1:1", "127.0.0.1:1"), node("b", "127.0.0.1:2", "127.0.0.1:2")];
        bus[0].config_epoch = Some(7);
        assert!(store.publish(bus, halves(), Learned::Bus));
        assert_eq!((*rx.borrow(), store.load_full().version), (1, 1));
        let shards = vec![node("a", "127.0.0.1:1", "127.0.0.1:1"), node("b", "127.0.0.1:2", "127.0.0.1:2")];
        assert!(!store.publish(shards.clone(), halves(), Learned::Refresh), "the same map, epochs kept");
        assert_eq!(store.load().nodes[0].config_epoch, Some(7));
        let mut failed = shards;
        failed[1].failed = true;
        assert!(store.publish(failed, halves(), Learned::Refresh), "a node's health is part of the map");
        assert_eq!((*rx.borrow(), store.load().version), (2, 2));
        assert_eq!(store.unassigned(), 0);
    }

    /// A MOVED to the slot's current owner changes nothing; to a failed node or a replica makes
    /// it a live master; `?:port` (no hostname) changes nothing and asks for a refresh.
    #[test]
    fn patches() {
        let store = TopologyStore::new();
        let mut nodes = vec![node("a", "127.0.0.1:1", "127.0.0.1:1"), node("b", "127.0.0.1:2", "127.0.0.1:2")];
        nodes[1].failed = true;
        nodes.push(Node { role: Role::Replica, ..node("c", "127.0.0.1:3", "127.0.0.1:3") });
        store.publish(nodes, halves(), Learned::Bootstrap);
        assert!(!refresh_asked(&store));
        store.patch_slot(1, "127.0.0.1:1");
        assert_eq!(store.load().version, 1, "already its owner");
        store.patch_slot(1, "?:2");
        assert_eq!(store.load().version, 1);
        assert!(refresh_asked(&store));
        store.patch_slot(9000, "127.0.0.1:3");
        let t = store.load_full();
        assert_eq!((t.version, t.master_for(9000)), (2, Some("127.0.0.1:3")));
        assert_eq!(t.nodes[2].role, Role::Master);
        store.patch_slot(1, "127.0.0.1:2");
        let t = store.load_full();
        assert_eq!(t.master_for(1), Some("127.0.0.1:2"));
        assert!(!t.nodes[1].failed, "a node answering for a slot is not failed");
        assert_eq!(t.nodes.len(), 3);
    }

    /// `?:port` names the one known node with that port; when none or several have it, the
    /// redirecting node's host is tried and a refresh asked.
    #[test]
    fn resolving_unknown_endpoints() {
        let store = TopologyStore::new();
        store.publish(
            vec![
                node("a", "pod-a:7000", "10.0.0.1:7000"),
                node("b", "pod-b:7001", "10.0.0.2:7001"),
                node("c", "pod-c:7001", "10.0.0.3:7001"),
            ],
            halves(),
            Learned::Bootstrap,
        );
        assert_eq!(store.resolve("10.0.0.9:5".into(), "10.0.0.1:7000"), "10.0.0.9:5", "a real address as it is");
        assert!(!refresh_asked(&store));
        assert_eq!(store.resolve("?:7000".into(), "10.0.0.2:7001"), "pod-a:7000");
        assert!(!refresh_asked(&store));
        assert_eq!(store.resolve("?:7001".into(), "10.0.0.1:7000"), "10.0.0.1:7001", "two nodes have it");
        assert!(refresh_asked(&store));
        assert_eq!(store.resolve("?:7009".into(), "[::1]:7000"), "[::1]:7009", "nobody has it");
        assert!(refresh_asked(&store));
        assert_eq!(store.resolve("?:7009".into(), "garbage"), "127.0.0.1:7009");
    }

    #[test]
    fn sources_by_name() {
        let all = [Learned::Bootstrap, Learned::Refresh, Learned::Bus, Learned::Observer, Learned::Moved];
        assert_eq!(all.map(Learned::as_str), ["bootstrap", "refresh", "bus", "observer", "MOVED"]);
        assert_eq!(all.map(Learned::may_unassign), [true, true, false, false, false]);
    }
}
