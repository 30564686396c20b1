//! What the cluster says of itself, from `CLUSTER NODES` read with redis-cli and parsed here (a
//! reader of the harness's own, independent of the proxy's parsers): masters, replicas, slots and
//! node ids, as tests compare the proxy's view with them.

use std::collections::HashMap;

use super::{HarnessError, LocalCluster, Result};

impl LocalCluster {
    /// CLUSTER NODES from the first live node that answers, parsed.
    pub(super) fn nodes_view(&self) -> Result<Vec<NodeLine>> {
        let mut last = None;
        for p in self.live_ports() {
            match self.cli(p, &["CLUSTER", "NODES"]) {
                Ok(out) => return Ok(node_lines(&out)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| HarnessError::Other("no live node".into())))
    }

    /// Ports of the masters (not failed) that own slots, in slot order.
    pub fn masters(&self) -> Vec<u16> {
        let mut v: Vec<(u16, u16)> = self
            .nodes_view()
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n.master && !n.failed && !n.slots.is_empty())
            .map(|n| (n.slots[0], n.port))
            .collect();
        v.sort();
        v.into_iter().map(|(_, p)| p).collect()
    }

    /// Ports of the replicas of a master.
    pub fn replicas_of(&self, master: u16) -> Vec<u16> {
        let view = self.nodes_view().unwrap_or_default();
        let Some(id) = view.iter().find(|n| n.port == master).map(|n| n.id.clone()) else { return Vec::new() };
        view.iter().filter(|n| n.master_id.as_deref() == Some(&id) && !n.failed).map(|n| n.port).collect()
    }

    /// The node id of a port.
    pub fn node_id(&self, port: u16) -> Option<String> {
        self.nodes_view().ok()?.into_iter().find(|n| n.port == port).map(|n| n.id)
    }

    /// Slots a master owns, ascending.
    pub fn slots_of(&self, master: u16) -> Vec<u16> {
        self.nodes_view()
            .unwrap_or_default()
            .into_iter()
            .find(|n| n.port == master)
            .map(|n| n.slots)
            .unwrap_or_default()
    }

    /// For every slot, the port of the master owning it (one CLUSTER NODES call).
    pub fn slot_map(&self) -> Vec<Option<u16>> {
        let mut map = vec![None; 16384];
        for n in self.nodes_view().unwrap_or_default().into_iter().filter(|n| n.master) {
            for s in n.slots {
                if let Some(e) = map.get_mut(s as usize) {
                    *e = Some(n.port);
                }
            }
        }
        map
    }

    /// The port of the master owning `slot`, as the cluster reports it.
    pub fn slot_owner(&self, slot: u16) -> Option<u16> {
        self.nodes_view().ok()?.into_iter().find(|n| n.master && n.slots.binary_search(&slot).is_ok()).map(|n| n.port)
    }

    /// Per node port, its node id (live nodes).
    pub fn ids(&self) -> HashMap<u16, String> {
        self.nodes_view().unwrap_or_default().into_iter().map(|n| (n.port, n.id)).collect()
    }
}

/// One node of CLUSTER NODES, in the shape the harness queries it: client port and every slot.
#[derive(Debug, Clone)]
pub(super) struct NodeLine {
    pub(super) id: String,
    pub(super) port: u16,
    pub(super) master: bool,
    pub(super) failed: bool,
    pub(super) handshake: bool,
    pub(super) master_id: Option<String>,
    pub(super) slots: Vec<u16>,
}

/// Parses CLUSTER NODES: `id ip:port@cport[,hostname] flags master ping pong epoch link slot...`;
/// lines it cannot read are skipped, slot ranges `a-b` expanded, migration entries `[...]` ignored.
pub(super) fn node_lines(text: &str) -> Vec<NodeLine> {
    text.lines().filter_map(node_line).collect()
}

fn node_line(line: &str) -> Option<NodeLine> {
    let f: Vec<&str> = line.split(' ').filter(|x| !x.is_empty()).collect();
    let [id, addr, flags, master, _ping, _pong, _epoch, _link, slots @ ..] = &f[..] else { return None };
    let hostport = addr.split('@').next()?;
    let port: u16 = hostport.rsplit(':').next()?.parse().ok()?;
    let flags: Vec<&str> = flags.split(',').collect();
    let mut owned = Vec::new();
    for r in slots.iter().filter(|r| !r.starts_with('[')) {
        let (a, b) = r.split_once('-').unwrap_or((r, r));
        owned.extend(a.parse::<u16>().ok()?..=b.parse::<u16>().ok()?);
    }
    owned.sort_unstable();
    Some(NodeLine {
        id: id.to_string(),
        port,
        master: flags.contains(&"master"),
        failed: flags.contains(&"fail"),
        handshake: flags.contains(&"handshake") || flags.contains(&"noaddr"),
        master_id: (*master != "-").then(|| master.to_string()),
        slots: owned,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cluster_nodes() {
        let text = "07c3 127.0.0.1:30004@40004 myself,master - 0 1426238317239 4 connected 0-2 5 [6->-abc]\n\
                    67ed 127.0.0.1:30002@40002,host2 slave,fail 07c3 0 1426238316232 2 connected\n\
                    bad line\n";
        let l = node_lines(text);
        assert_eq!(l.len(), 2);
        assert_eq!((l[0].port, l[0].master, l[0].slots.clone()), (30004, true, vec![0, 1, 2, 5]));
        assert_eq!((l[1].port, l[1].failed, l[1].master_id.as_deref()), (30002, true, Some("07c3")));
    }
}
