//! Settling the slot map from the PONGs: each master's own claim, the highest configEpoch per slot,
//! a slot nobody claims kept with its last owner, a replica speaking for its master only while the
//! master is silent; and publishing the result when it differs from what the store holds.

use tokio::time::Instant;

use super::Observer;
use crate::slot::SLOTS;
use crate::topology::gossip::codec::Header;
use crate::topology::snapshot::promote_owners;
use crate::topology::{self, Learned, Node};

/// True when `t` maps every slot to the same node as `slots` over `nodes` does.
fn same_owners(t: &topology::Topology, nodes: &[Node], slots: &[u16]) -> bool {
    slots.iter().enumerate().all(|(s, &i)| match (t.master_node(s as u16), nodes.get(i as usize)) {
        (Some(a), Some(b)) => a.is(b),
        (a, b) => a.is_none() && b.is_none(),
    })
}

impl Observer {
    /// Settles every slot from the claims and publishes if anything changed.
    pub(super) fn publish(&mut self) {
        self.dirty = false;
        // Before the first PONG there are no claims: a map made of them would only repeat the
        // current one, spelled by the bus's addresses.
        if self.polling || !self.peers.values().any(|p| p.header.is_some()) {
            return;
        }
        let (nodes, slots, tie, gaps) = self.settle();
        // A slot no master claims keeps its last owner for now; if that lasts, ask the client port.
        self.gap_since = match (gaps, self.gap_since) {
            (0, _) => None,
            (_, Some(t)) => Some(t),
            (_, None) => Some(Instant::now()),
        };
        if tie {
            // Equal epochs: Redis resolves the collision shortly; meanwhile ask the client port.
            self.reconcile_asked = true;
        }
        if self.metrics.enabled {
            for p in self.peers.values() {
                let health = if !p.reachable && p.header.is_some() {
                    3
                } else if p.fail {
                    2
                } else if !p.pfail_by.is_empty() {
                    1
                } else {
                    0
                };
                self.metrics.node_health.with_label_values(&[p.addr.as_str()]).set(health);
            }
        }
        // Publish when the bus view changed, or when another source (a MOVED patch, a CLUSTER
        // SHARDS refresh) published a different slot ownership since: the bus then re-asserts
        // what the claims say. Flags alone differing between sources is not worth a new version.
        let cur = self.store.load_full();
        let changed = self.last.as_ref().is_none_or(|(n, s)| n != &nodes || s != &slots);
        let overridden = cur.version != self.last_version && !same_owners(&cur, &nodes, &slots);
        if changed || overridden {
            self.store.publish(nodes.clone(), slots.clone(), Learned::Bus);
            self.last_version = self.store.load().version;
            self.last = Some((nodes, slots));
        } else {
            // Another source's map that agrees with the bus: nothing to re-check until it changes.
            self.last_version = cur.version;
        }
    }

    /// The map the claims give: highest configEpoch per slot, sticky when unclaimed. Returns the
    /// nodes, the slot table and whether two masters claimed a slot with the same epoch.
    fn settle(&self) -> (Vec<Node>, Box<[u16]>, bool, usize) {
        // Runs whenever a bus event changes what the map is made of (at worst on every PONG, a
        // dozen a second): slot loops work on node indices, never on hashed ids.
        let cur = self.store.load_full();
        let mut nodes: Vec<Node> = self
            .peers
            .values()
            .map(|p| Node {
                id: p.id.clone(),
                addr: p.addr.clone(),
                ip_addr: p.addr.clone(),
                role: p.role,
                master_id: p.master_id.clone(),
                failed: p.fail || (p.header.is_some() && !p.reachable),
                config_epoch: p.header.as_ref().map(|h| h.config_epoch),
            })
            .collect();
        nodes.sort_by(|a, b| a.addr.cmp(&b.addr));
        let index_of = |id: &str| nodes.iter().position(|n| n.id == id).map(|i| i as u16);
        let silent = |id: &str| self.peers.get(id).is_none_or(|p| p.header.is_none() || !p.reachable);
        let mut claims: Vec<(u16, u64, &Header)> = Vec::new();
        for p in self.peers.values() {
            let Some(h) = &p.header else { continue };
            let claimant = if h.is_master() {
                Some(p.id.as_str())
            } else {
                // A replica speaks for its master only while the master itself is silent.
                p.master_id.as_deref().filter(|m| silent(m) && self.peers.contains_key(*m))
            };
            if let Some(i) = claimant.and_then(index_of) {
                claims.push((i, h.config_epoch, h));
            }
        }
        // The owner in the published map, as an index into `nodes`.
        let current = cur.owners_in(&nodes);
        let mut best: Vec<Option<(u64, u16)>> = vec![None; SLOTS];
        let mut tie = false;
        for &(i, epoch, h) in &claims {
            for (a, b) in h.myslots.ranges() {
                for s in a as usize..=b as usize {
                    let e = &mut best[s];
                    match *e {
                        Some((be, bi)) if be > epoch || (be == epoch && bi == i) => {}
                        Some((be, _)) if be == epoch => {
                            tie = true;
                            if current[s] == i {
                                *e = Some((epoch, i));
                            }
                        }
                        _ => *e = Some((epoch, i)),
                    }
                }
            }
        }
        let gaps = best.iter().filter(|b| b.is_none()).count();
        // Nobody claims it: keep the last owner (sticky, as Redis does).
        let slots: Box<[u16]> = best.iter().zip(&current).map(|(b, &c)| b.map_or(c, |(_, i)| i)).collect();
        promote_owners(&mut nodes, &slots);
        (nodes, slots, tie, gaps)
    }
}
