//! Commands parsed from one read, gathered per node: each node gets one batch carrying all of its
//! single-slot commands and split parts, instead of one job per command or per part. Here reads
//! find their node (`routing.read_from`: the master or a replica), and the client's writes are
//! noted for read-your-writes ([`super::fresh`]).

use std::sync::Arc;

use super::fresh::RecentWrites;
use super::inflight::{Inflight, Merge};
use super::item::{Item, Keyed, Routed, Split};
use crate::backend::Cx;
use crate::command::CommandSpec;
use crate::route::reads::Pick;
use crate::route::Router;
use crate::topology::Topology;

/// Commands parsed from one read, gathered per node: each node gets one request carrying all of
/// them (one queued job, one delivery to the mailbox), instead of one per command or per part.
#[derive(Default)]
pub(super) struct Gather {
    groups: Vec<(Arc<str>, Vec<Item>)>,
    /// Node addresses this client sent to, shared by its batches instead of copied per batch.
    addrs: Vec<Arc<str>>,
    /// The slots this client wrote within `routing.read_your_writes_ms`.
    recent: RecentWrites,
}

/// The healthy master of `slot` in `topo`, if it has one.
fn healthy_master(topo: &Topology, slot: u16) -> Option<&str> {
    topo.master_node(slot).filter(|n| !n.failed).map(|n| n.addr.as_str())
}

impl Gather {
    /// Adds `k` to its node's batch; gives it back when its slot has no healthy master in the map
    /// (the router then waits for one), or, for a read, no node `routing.read_from` allows.
    pub(super) fn add(&mut self, p: &Router, mut k: Keyed, cx: Cx, inflight: &mut Inflight) -> Result<(), Keyed> {
        let topo = p.topology.load();
        let addr = match self.read_node(p, &k.spec, k.slot).map(|r| r && !k.master_only) {
            // This client's reads keep to one node per shard (its lane picks which replica), so
            // they come back in order; their retries, if any, go where the router picks again.
            Some(true) => match p.reads.pick(&topo, k.slot, cx.lane) {
                Pick::Master(a) | Pick::Replica(a) => a,
                Pick::NoMaster | Pick::NoReplica => return Err(k),
            },
            read => {
                k.master_only |= read.is_some();
                let Some(master) = healthy_master(&topo, k.slot) else { return Err(k) };
                master
            }
        };
        let seq = inflight.reserve(k.req.raw.len());
        self.push(addr, Item::Whole(seq, k));
        Ok(())
    }

    /// For a read of `slot`, whether a replica may answer it (`Some(false)`: the client wrote
    /// the slot lately); `None` for a write, which is noted for read-your-writes.
    fn read_node(&mut self, p: &Router, spec: &CommandSpec, slot: u16) -> Option<bool> {
        if !spec.readonly {
            self.recent.wrote(Some(slot), p.reads.read_your_writes);
            return None;
        }
        Some(p.reads.reaches_replicas() && !self.recent.fresh(Some(slot)))
    }

    /// Adds each part of a split request to its node's batch, and the request to those waiting
    /// for their parts; gives it back when some part's slot has no healthy master.
    // The request comes back whole on the rare refusal; boxing it would cost every split request
    // an allocation.
    #[allow(clippy::result_large_err)]
    pub(super) fn add_split(&mut self, p: &Router, sp: Split, cx: Cx, inflight: &mut Inflight) -> Result<(), Split> {
        let topo = p.topology.load();
        let master_only = sp.master_only;
        // Checked first, then picked again as they are pushed (no vector of picks per request):
        // between the two, only a node failing a read meanwhile can change a pick.
        if sp.parts.iter().any(|part| self.part_node(p, &topo, &sp.spec, part.slot, master_only, cx).is_none()) {
            return Err(sp);
        }
        let readonly = sp.spec.readonly;
        let seq = inflight.next_seq();
        for (idx, part) in sp.parts.iter().enumerate() {
            // Every part must be sent: one whose pick failed just now (a node that failed a read
            // on another thread in between) goes to its slot's master, which the check saw.
            let picked = self.part_node(p, &topo, &sp.spec, part.slot, master_only, cx);
            let Some((addr, master_only)) = picked.or_else(|| topo.master_for(part.slot).map(|m| (m, true))) else {
                debug_assert!(false, "checked above");
                continue;
            };
            let cmd = sp.parts.cmd(part);
            self.push(addr, Item::Part { seq, idx, slot: part.slot, cmd, readonly, master_only });
        }
        let size = sp.req.raw.len();
        let merge = Merge::new(sp.spec, sp.req.args.len(), sp.parts, cx.proto, sp.started);
        let reserved = inflight.reserve_merge(merge, size);
        debug_assert_eq!(reserved, seq);
        Ok(())
    }

    /// The node for one part of a split request, and whether it must be read from the master.
    fn part_node<'t>(
        &mut self,
        p: &Router,
        topo: &'t Topology,
        spec: &CommandSpec,
        slot: u16,
        master_only: bool,
        cx: Cx,
    ) -> Option<(&'t str, bool)> {
        match self.read_node(p, spec, slot).map(|r| r && !master_only) {
            Some(true) => match p.reads.pick(topo, slot, cx.lane) {
                Pick::Master(a) | Pick::Replica(a) => Some((a, false)),
                Pick::NoMaster | Pick::NoReplica => None,
            },
            read => healthy_master(topo, slot).map(|m| (m, master_only || read.is_some())),
        }
    }

    /// Sends what was gathered, then hands `r` to the router: a write is noted for
    /// read-your-writes (its slot when it has one, else every slot), a read the client wrote the
    /// slots of lately is kept on the master.
    pub(super) fn route(&mut self, p: &Router, mut r: Routed, cx: Cx, inflight: &mut Inflight) {
        if !p.reads.read_your_writes.is_zero() {
            let slot = r.spec.single_slot(&r.req.args);
            match r.spec.readonly {
                true => r.master_only |= self.recent.fresh(slot),
                false => self.recent.wrote(slot, p.reads.read_your_writes),
            }
        }
        self.flush(cx, inflight);
        inflight.route(r, cx);
    }

    /// A barrier command is about to run: EXEC and blocking writes (BLMOVE...) write slots not
    /// known here, so every slot counts as written for read-your-writes.
    pub(super) fn barrier(&mut self, p: &Router, spec: &CommandSpec) {
        if spec.name == "exec" || (spec.blocking && !spec.readonly) {
            self.recent.wrote(None, p.reads.read_your_writes);
        }
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

    /// Drops the capacity of the batches (empty between reads).
    pub(super) fn shed(&mut self) {
        if self.groups.is_empty() {
            self.groups = Vec::new();
        }
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
