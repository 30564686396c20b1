//! How far a shared observer is trusted: as far as the cluster agrees with it. Its first snapshot
//! must name the nodes the proxy's seeds named (a stream about another cluster is refused), and
//! when a node connection meets a node other than the one the map names at its address, the
//! cluster itself is asked who is there: if it does not place that node there either, the
//! observer's map was false.

use std::collections::HashSet;

use crate::topology::{Impostor, Node, Poller, TopologyStore};

/// Why the observer's first snapshot is about another cluster: it names fewer than half of the
/// node ids the proxy's own start-up read found (a staging observer's URL in a production
/// manifest, or a stream made up).
pub(super) fn foreign(nodes: &[Node], store: &TopologyStore) -> Option<String> {
    let ours: HashSet<String> = store.load().nodes.iter().map(|n| n.id.clone()).filter(|id| !id.is_empty()).collect();
    if ours.is_empty() {
        return None;
    }
    let shared = nodes.iter().filter(|n| ours.contains(&n.id)).count();
    (shared * 2 < ours.len()).then(|| {
        format!("its map names {shared} of the {} nodes the seeds named: it watches another cluster", ours.len())
    })
}

/// Why the observer is wrong about the node a connection met at `lie.addr`: the map (the
/// observer's) names a node there, the node there is someone else, and the cluster's own answer
/// does not place the named node at that address either. `None` when the cluster agrees with the
/// observer (the node itself changed: the refresh it asked for sorts it out) or cannot say.
pub(super) async fn contradicted(lie: &Impostor, store: &TopologyStore, poller: &Poller) -> Option<String> {
    let expected = lie.expected.as_deref()?;
    let (nodes, _) = poller.fetch(store).await.ok()?;
    let there = nodes.iter().find(|n| n.addr == lie.addr || n.ip_addr == lie.addr);
    if there.is_some_and(|n| n.id == expected) {
        return None;
    }
    Some(format!(
        "it placed node {expected} at {}, where the node answered {} and the cluster places {}",
        lie.addr,
        lie.answered,
        there.map(|n| n.id.as_str()).unwrap_or("no node")
    ))
}
