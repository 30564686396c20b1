//! The slot map as the node connections' [`Directory`]: who each address must be, and what
//! happens when a node answers `CLUSTER MYID` with someone else's id (or none). The mismatch is
//! recorded and announced on a channel: whoever follows a source that can lie (the shared
//! observer) compares that source with the cluster's own answers and stops trusting it; the map
//! is asked to refresh either way, because a node replaced at the same address is also a
//! mismatch and the cluster will say who is there now.

use std::sync::atomic::Ordering;

use crate::backend::Directory;

use super::store::Impostor;
use super::TopologyStore;

impl Directory for TopologyStore {
    fn id_at(&self, addr: &str) -> Option<String> {
        let t = self.load();
        // A node known only by an address (patched in after a MOVED) has no id yet.
        t.find_addr(addr).map(|i| t.nodes[i].id.clone()).filter(|id| !id.is_empty())
    }

    fn knows(&self, id: &str) -> bool {
        self.load().nodes.iter().any(|n| n.id == id)
    }

    fn impostor(&self, addr: &str, expected: Option<&str>, answered: &str) {
        self.impostors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            node = %addr,
            expected = expected.unwrap_or("a node of this cluster"),
            answered,
            "the node at this address is not the one the slot map names: nothing is sent to it"
        );
        self.impostor_tx.send_replace(Some(Impostor {
            addr: addr.to_string(),
            expected: expected.map(str::to_string),
            answered: answered.to_string(),
        }));
        self.request_refresh();
    }
}

impl TopologyStore {
    /// Node connections refused so far because the node was not the one expected.
    pub fn impostors(&self) -> u64 {
        self.impostors.load(Ordering::Relaxed)
    }

    /// A receiver that wakes on every refused node (the latest one is kept).
    pub fn watch_impostors(&self) -> tokio::sync::watch::Receiver<Option<Impostor>> {
        self.impostor_tx.subscribe()
    }
}
