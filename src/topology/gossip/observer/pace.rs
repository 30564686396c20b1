//! How often each node is PINGed. Every PONG costs its node CPU, and every sidecar PINGs every
//! node, so a quiet cluster gets the steady beat (seconds apart, spread over the links). A shard
//! gets the fast beat, master and replicas, while something about it is changing: its master is
//! suspected (PFAIL in any PONG's gossip), failed (FAIL), unreachable from here (the link closed,
//! as a killed process's kernel closes it, or a PONG did not come) or in a manual failover
//! (PAUSED), as long as that master still owns slots in the map, that is until the new owner is
//! known; a node's claim changed (role, configEpoch, slots); plus a short linger after. Everything
//! is PINGed fast for the linger when a node reports the cluster down, or when the data path met a
//! MOVED or a lost node connection (it asked the store for a refresh).

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::Instant;

use super::Observer;
use crate::topology::Role;

/// How long a shard stays on the fast beat after the last sign of change: a few fast beats, so
/// the aftermath (the old master rejoining as a replica, the other nodes taking the new claim) is
/// seen at the fast beat too.
fn linger(fast: Duration) -> Duration {
    (fast * 8).max(Duration::from_secs(2))
}

impl Observer {
    /// Puts `id`'s shard (its master, the master's replicas, and `id` itself) on the fast beat.
    pub(super) fn heat_shard(&mut self, id: &str) {
        let until = Instant::now() + linger(self.cfg.interval);
        let master = match self.peers.get(id) {
            Some(p) if p.role == Role::Replica => p.master_id.clone().unwrap_or_else(|| id.to_string()),
            _ => id.to_string(),
        };
        for p in self.peers.values_mut() {
            if p.id == id || p.id == master || p.master_id.as_deref() == Some(master.as_str()) {
                p.hot_until = Some(until);
            }
        }
    }

    /// Puts every node on the fast beat for the linger.
    pub(super) fn heat_all(&mut self) {
        let until = Instant::now() + linger(self.cfg.interval);
        for p in self.peers.values_mut() {
            p.hot_until = Some(until);
        }
    }

    /// Heats the shards in trouble, then tells each link which beat applies now.
    pub(super) fn pace(&mut self) {
        let owners: HashSet<String> = {
            let t = self.store.load();
            t.shards().iter().filter_map(|s| t.nodes.get(usize::from(s.master))).map(|n| n.id.clone()).collect()
        };
        let troubled: Vec<String> = self
            .peers
            .values()
            .filter(|p| p.role == Role::Master && owners.contains(&p.id))
            .filter(|p| {
                let lost = p.header.is_some() && !p.reachable;
                let paused = p.header.as_ref().is_some_and(|h| h.paused());
                lost || paused || p.fail || !p.pfail_by.is_empty()
            })
            .map(|p| p.id.clone())
            .collect();
        for id in troubled {
            self.heat_shard(&id);
        }
        if self.peers.values().any(|p| p.reachable && p.header.as_ref().is_some_and(|h| !h.cluster_ok())) {
            self.heat_all();
        }
        let now = Instant::now();
        let mut fast_nodes = 0;
        for p in self.peers.values_mut() {
            let fast = p.hot_until.is_some_and(|t| t > now);
            if !fast {
                p.hot_until = None;
            }
            fast_nodes += i64::from(fast);
            p.fast.send_if_modified(|f| std::mem::replace(f, fast) != fast);
        }
        if self.metrics.enabled {
            self.metrics.bus_fast_nodes.set(fast_nodes);
        }
    }
}
