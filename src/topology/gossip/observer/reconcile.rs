//! Reconciling the bus view with the client port: the node set and bus ports from `CLUSTER NODES`
//! (asked of every master and seed, a node counted when most answers list it), and the map's gaps
//! filled from `CLUSTER SHARDS` (a cold start, a slot no master claims on the bus, polling).

use std::collections::{HashMap, HashSet};

use super::Observer;
use crate::backend::{self, Verify};
use crate::topology::gossip::nodes::{parse_cluster_nodes, NodesLine};
use crate::topology::{Learned, Role};

impl Observer {
    /// Node set from CLUSTER NODES: adds nodes, drops vanished ones; fills the map's gaps from
    /// CLUSTER SHARDS (a cold start, or a slot no master claims on the bus).
    pub(super) async fn reconcile(&mut self) {
        let mut targets: Vec<String> =
            self.peers.values().filter(|p| p.role == Role::Master).map(|p| p.addr.clone()).collect();
        targets.extend(self.poller.seeds().iter().cloned());
        targets.sort();
        targets.dedup();
        // Every target is asked, and a node counts as present when most answers list it: a node
        // the others FORGOT still lists itself, and read alone its view would keep it in the map
        // (and subscriptions on it) for good.
        let verify = Verify::Query(&*self.store);
        let auth = self.poller.auth();
        let limit = self.cfg.connect_timeout;
        let asks = targets.iter().map(|t| backend::query(t, auth, &[&["CLUSTER", "NODES"]], limit, verify));
        let views: Vec<Vec<NodesLine>> = futures_util::future::join_all(asks)
            .await
            .into_iter()
            .filter_map(|r| {
                let text = r.ok()?.first().and_then(crate::resp::as_bulk)??;
                Some(parse_cluster_nodes(&String::from_utf8_lossy(&text)))
            })
            .collect();
        if views.is_empty() {
            tracing::warn!("observer: no node answered CLUSTER NODES");
            return;
        }
        let lines = agreed(&views);
        // Our id must not be any node's, before any PING goes out.
        for l in &lines {
            self.check_id_clash(&l.id);
        }
        let present: HashSet<&str> = lines.iter().filter(|l| !l.handshake).map(|l| l.id.as_str()).collect();
        let gone: Vec<String> = self.peers.keys().filter(|id| !present.contains(id.as_str())).cloned().collect();
        for id in gone {
            if let Some(p) = self.peers.remove(&id) {
                tracing::info!(node = %p.addr, "node left the cluster");
                self.by_bus.remove(&p.bus);
            }
        }
        for l in lines.iter().filter(|l| !l.handshake) {
            match self.peers.get_mut(&l.id) {
                Some(p) => {
                    if p.header.is_none() {
                        p.role = if l.master { Role::Master } else { Role::Replica };
                        p.master_id = l.master_id.clone();
                    }
                    self.readdress(&l.id, l.addr.clone(), l.bus.clone());
                }
                None => self.add_peer(l.id.clone(), l.addr.clone(), l.bus.clone(), Some(l)),
            }
        }
        self.fill_gaps().await;
        self.publish();
    }

    async fn fill_gaps(&mut self) {
        if self.store.load().uncovered() > 0 {
            self.poll().await;
        }
    }

    pub(super) async fn poll(&mut self) {
        match self.poller.fetch(&self.store).await {
            Ok((nodes, slots)) => {
                self.store.publish(nodes, slots, Learned::Refresh);
            }
            Err(e) => tracing::warn!(error = %e, "topology poll failed"),
        }
    }
}

/// The nodes most views list (outside handshake), each as the first view that lists it says.
fn agreed(views: &[Vec<NodesLine>]) -> Vec<NodesLine> {
    let mut count: HashMap<&str, usize> = HashMap::new();
    for v in views {
        let ids: HashSet<&str> = v.iter().filter(|l| !l.handshake).map(|l| l.id.as_str()).collect();
        for id in ids {
            *count.entry(id).or_default() += 1;
        }
    }
    let mut out: Vec<NodesLine> = Vec::new();
    for l in views.iter().flatten() {
        let most = count.get(l.id.as_str()).is_some_and(|&n| n * 2 > views.len());
        if most && !l.handshake && !out.iter().any(|o| o.id == l.id) {
            out.push(l.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(text: &str) -> Vec<NodesLine> {
        parse_cluster_nodes(text)
    }

    const A: &str = "aaaa 127.0.0.1:7000@17000 master - 0 0 1 connected 0-8000";
    const B: &str = "bbbb 127.0.0.1:7001@17001 master - 0 0 2 connected 8001-16383";
    const E: &str = "eeee 127.0.0.1:7002@17002 master - 0 0 3 connected";

    #[test]
    fn a_node_only_its_own_view_lists_is_not_agreed() {
        // E was forgotten by A and B but still runs, listing itself (and them).
        let views = [view(&format!("{A}\n{B}")), view(&format!("{A}\n{B}")), view(&format!("{A}\n{B}\n{E}"))];
        let ids: Vec<String> = agreed(&views).into_iter().map(|l| l.id).collect();
        assert_eq!(ids, ["aaaa", "bbbb"]);
    }

    #[test]
    fn a_node_most_views_list_is_agreed_and_handshakes_are_not() {
        let hs = "ffff 127.0.0.1:7003@17003 master,handshake - 0 0 0 connected";
        let views = [view(&format!("{A}\n{E}\n{hs}")), view(&format!("{A}\n{E}\n{hs}")), view(A)];
        let ids: Vec<String> = agreed(&views).into_iter().map(|l| l.id).collect();
        assert_eq!(ids, ["aaaa", "eeee"]);
        // One view alone is all there is: it decides.
        assert_eq!(agreed(&[view(&format!("{A}\n{E}"))]).len(), 2);
    }
}
