//! Where the current snapshot lives: published through `arc-swap` (read lock-free on every
//! request) and announced on a `watch` channel of its version, so that every source (polling, the
//! bus observer, a shared observer, MOVED patches) feeds the same snapshot. The data path never
//! edits a snapshot: it asks for a one-slot patch (after MOVED) or a refresh, and the store builds
//! and publishes a new one.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::{watch, Notify};

use super::{Node, Role, Topology};
use crate::slot::SLOTS;
use crate::sync::Mutex;

/// Where the current snapshot lives, and how others ask for a newer one.
pub struct TopologyStore {
    current: ArcSwap<Topology>,
    version_tx: watch::Sender<u64>,
    pub(super) refresh: Notify,
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
}

impl TopologyStore {
    pub fn new() -> Arc<TopologyStore> {
        let (version_tx, _) = watch::channel(0);
        Arc::new(TopologyStore {
            current: ArcSwap::from_pointee(Topology::empty()),
            version_tx,
            refresh: Notify::new(),
            bus_authoritative: AtomicBool::new(false),
            write: Mutex::new(()),
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

    /// A receiver that wakes on every published version.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version_tx.subscribe()
    }

    /// Asks the refresher for a refresh; a burst of requests costs one refresh.
    pub fn request_refresh(&self) {
        self.refresh.notify_one();
    }

    /// Publishes a map learned elsewhere if it differs from the current one. Returns true if published.
    pub fn publish(&self, nodes: Vec<Node>, slots: Box<[u16]>, why: &str) -> bool {
        let _writer = self.write.lock();
        self.publish_locked(nodes, slots, why)
    }

    /// `publish` with the writer lock already held.
    fn publish_locked(&self, mut nodes: Vec<Node>, slots: Box<[u16]>, why: &str) -> bool {
        let cur = self.current.load_full();
        // Sources that do not know epochs (CLUSTER SHARDS) keep the ones the bus reported.
        for n in nodes.iter_mut().filter(|n| n.config_epoch.is_none()) {
            n.config_epoch = cur.nodes.iter().find(|c| c.addr == n.addr).and_then(|c| c.config_epoch);
        }
        let next = Topology::build(cur.version + 1, nodes, slots);
        if cur.same_map(&next) {
            return false;
        }
        log_change(&cur, &next, why);
        self.current.store(Arc::new(next));
        self.version_tx.send_replace(cur.version + 1);
        true
    }

    /// Points one slot at `addr` after a MOVED, at once and without touching any other slot.
    pub fn patch_slot(&self, slot: u16, addr: &str) {
        let _writer = self.write.lock();
        let cur = self.current.load_full();
        if cur.master_for(slot) == Some(addr) {
            return;
        }
        let mut nodes = cur.nodes.clone();
        let idx = match nodes.iter().position(|n| n.addr == addr) {
            Some(i) => i,
            None => {
                nodes.push(Node {
                    id: String::new(),
                    addr: addr.to_string(),
                    role: Role::Master,
                    master_id: None,
                    failed: false,
                    config_epoch: None,
                });
                nodes.len() - 1
            }
        };
        let mut slots = cur.slots.clone();
        slots[slot as usize] = idx as u16;
        if let Some(n) = nodes.get_mut(idx) {
            n.role = Role::Master;
            n.failed = false;
        }
        self.publish_locked(nodes, slots, "MOVED");
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

    #[test]
    fn patch_changes_exactly_one_slot() {
        let store = TopologyStore::new();
        let nodes = vec![
            Node {
                id: "a".into(),
                addr: "127.0.0.1:1".into(),
                role: Role::Master,
                master_id: None,
                failed: false,
                config_epoch: None,
            },
            Node {
                id: "b".into(),
                addr: "127.0.0.1:2".into(),
                role: Role::Master,
                master_id: None,
                failed: false,
                config_epoch: None,
            },
        ];
        let mut slots = vec![0u16; SLOTS].into_boxed_slice();
        for s in 8192..SLOTS {
            slots[s] = 1;
        }
        assert!(store.publish(nodes.clone(), slots.clone(), "test"));
        assert!(!store.publish(nodes, slots, "test"), "same map must not publish");
        let v = store.load().version;
        store.patch_slot(100, "127.0.0.1:2");
        let t = store.load();
        assert_eq!(t.version, v + 1);
        assert_eq!(t.master_for(100), Some("127.0.0.1:2"));
        assert_eq!(t.master_for(99), Some("127.0.0.1:1"));
        assert_eq!(t.master_for(101), Some("127.0.0.1:1"));
        assert_eq!(t.slot_owners(), vec!["127.0.0.1:1", "127.0.0.1:2"]);
        store.patch_slot(5, "127.0.0.1:3");
        assert_eq!(store.load().master_for(5), Some("127.0.0.1:3"));
        assert_eq!(store.load().uncovered(), 0);
    }
}
