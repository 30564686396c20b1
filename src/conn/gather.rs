//! Commands parsed from one read, gathered per node: each node gets one batch carrying all of its
//! single-slot commands and split parts, instead of one job per command or per part.

use std::sync::Arc;

use super::inflight::{Inflight, Merge};
use super::item::{Item, Keyed, Split};
use crate::backend::Cx;
use crate::route::Router;
use crate::topology::Topology;

/// Commands parsed from one read, gathered per node: each node gets one request carrying all of
/// them (one queued job, one delivery to the mailbox), instead of one per command or per part.
#[derive(Default)]
pub(super) struct Gather {
    groups: Vec<(Arc<str>, Vec<Item>)>,
    /// Node addresses this client sent to, shared by its batches instead of copied per batch.
    addrs: Vec<Arc<str>>,
}

/// The healthy master of `slot` in `topo`, if it has one.
fn healthy_master(topo: &Topology, slot: u16) -> Option<&str> {
    topo.master_node(slot).filter(|n| !n.failed).map(|n| n.addr.as_str())
}

impl Gather {
    /// Adds `k` to its node's batch; gives it back when its slot has no healthy master in the map
    /// (the router then waits for one).
    pub(super) fn add(&mut self, p: &Router, k: Keyed, cx: Cx, inflight: &mut Inflight) -> Result<(), Keyed> {
        let topo = p.topology.load();
        let Some(master) = healthy_master(&topo, k.slot) else { return Err(k) };
        // With `backend.read_from = "replicas"`, a read goes to one of the master's live replicas
        // (this client's lane picks which, so its reads stay in order on one connection); its
        // retries, if any, go to the master.
        let addr = match k.spec.readonly && p.backend.config().read_from_replicas {
            true => topo.replica_for(k.slot, cx.lane).unwrap_or(master),
            false => master,
        };
        let seq = inflight.reserve(k.req.raw.len());
        self.push(addr, Item::Whole(seq, k));
        Ok(())
    }

    /// Adds each part of a split request to its node's batch, and the request to those waiting
    /// for their parts; gives it back when some part's slot has no healthy master.
    // The request comes back whole on the rare refusal; boxing it would cost every split request
    // an allocation.
    #[allow(clippy::result_large_err)]
    pub(super) fn add_split(&mut self, p: &Router, sp: Split, cx: Cx, inflight: &mut Inflight) -> Result<(), Split> {
        let topo = p.topology.load();
        if sp.parts.iter().any(|part| healthy_master(&topo, part.slot).is_none()) {
            return Err(sp);
        }
        let readonly = sp.spec.readonly;
        let seq = inflight.next_seq();
        for (idx, part) in sp.parts.iter().enumerate() {
            if let Some(addr) = healthy_master(&topo, part.slot) {
                self.push(addr, Item::Part { seq, idx, slot: part.slot, cmd: sp.parts.cmd(part), readonly });
            }
        }
        let size = sp.req.raw.len();
        let merge = Merge::new(sp.spec, sp.req.args.len(), sp.parts, cx.proto, sp.started);
        let reserved = inflight.reserve_merge(merge, size);
        debug_assert_eq!(reserved, seq);
        Ok(())
    }

    fn push(&mut self, addr: &str, item: Item) {
        if let Some((_, items)) = self.groups.iter_mut().find(|(a, _)| &**a == addr) {
            items.push(item);
            return;
        }
        let shared = match self.addrs.iter().find(|a| &***a == addr) {
            Some(a) => a.clone(),
            None => {
                // Bounded by the nodes a client reaches; forgotten nodes are dropped past that.
                if self.addrs.len() >= MAX_ADDRS {
                    self.addrs.clear();
                }
                let a: Arc<str> = Arc::from(addr);
                self.addrs.push(a.clone());
                a
            }
        };
        // Room for a few: vectors grown from one by doubling were a tenth of an MGET's allocations.
        let mut items = Vec::with_capacity(4);
        items.push(item);
        self.groups.push((shared, items));
    }

    /// Sends every batch gathered so far. Called before anything else is started, so that a
    /// client's commands reach each node in the order it sent them.
    pub(super) fn flush(&mut self, cx: Cx, inflight: &mut Inflight) {
        for (addr, items) in self.groups.drain(..) {
            inflight.send(addr, cx, items);
        }
    }
}

/// Node addresses a client keeps for its batches (a cluster's masters, with room for changes).
const MAX_ADDRS: usize = 64;
