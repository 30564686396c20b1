//! CONFIG SET, RESETSTAT and REWRITE as one server takes them: sent to every node, masters and
//! replicas (a replica promoted later must already behave like its master), one `+OK` only when
//! every node said OK, otherwise the first node's error naming the node. What CONFIG SET set is
//! remembered and set again on nodes that join the map later (a new master, a node seen for the
//! first time), as scripts are loaded where they are missing.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;

use super::Router;
use crate::backend::Cx;
use crate::errors;
use crate::resp;
use crate::sync::Mutex;

/// Parameters set through the proxy, in the order set (a later value replaces an earlier one),
/// and the nodes (by id) known to have them all.
#[derive(Default)]
pub struct NodeConfig {
    set: Mutex<Vec<(Bytes, Bytes)>>,
    applied: Mutex<HashSet<String>>,
}

impl NodeConfig {
    fn remember(&self, pairs: &[Bytes]) {
        let mut set = self.set.lock();
        for pair in pairs.chunks_exact(2) {
            let name = Bytes::from(pair[0].to_ascii_lowercase());
            set.retain(|(n, _)| *n != name);
            set.push((name, pair[1].clone()));
        }
    }

    /// `CONFIG SET` of everything remembered, or `None` when nothing was.
    fn command(&self) -> Option<Bytes> {
        let set = self.set.lock();
        if set.is_empty() {
            return None;
        }
        let mut args: Vec<&[u8]> = vec![b"CONFIG", b"SET"];
        for (n, v) in set.iter() {
            args.push(n);
            args.push(v);
        }
        Some(resp::encode_command(&args))
    }
}

/// The live nodes of the map, as (id, address).
fn live_nodes(p: &Router) -> Vec<(String, String)> {
    p.topology.load().nodes.iter().filter(|n| !n.failed).map(|n| (n.id.clone(), n.addr.clone())).collect()
}

pub(super) async fn all_nodes(p: &Router, args: &[Bytes], cx: Cx) -> Bytes {
    let nodes = live_nodes(p);
    if nodes.is_empty() {
        return errors::slot_not_served();
    }
    let addrs: Vec<String> = nodes.iter().map(|(_, a)| a.clone()).collect();
    let replies = super::whole::ask_each(p, &addrs, &resp::encode_command(args), cx).await;
    if let Some((r, (_, addr))) = replies.iter().zip(&nodes).find(|(r, _)| resp::is_error(r)) {
        return errors::on_node(r, addr);
    }
    let is_set = args.get(1).is_some_and(|s| s.eq_ignore_ascii_case(b"set"));
    if is_set {
        p.node_config.remember(args.get(2..).unwrap_or_default());
        p.node_config.applied.lock().extend(nodes.into_iter().map(|(id, _)| id));
    }
    replies.into_iter().next().unwrap_or_else(errors::empty_reply)
}

/// Sets what CONFIG SET set on every node that appears in the map without it, for as long as the
/// proxy runs. Uses the proxy's own login: the client that set it may be gone.
pub async fn keep_node_config(p: Arc<Router>) {
    let mut changes = p.topology.subscribe();
    while changes.changed().await.is_ok() {
        let Some(cmd) = p.node_config.command() else { continue };
        let missing: Vec<(String, String)> = {
            let applied = p.node_config.applied.lock();
            live_nodes(&p).into_iter().filter(|(id, _)| !id.is_empty() && !applied.contains(id)).collect()
        };
        for (id, addr) in missing {
            let cx = Cx { proto: 2, lane: 0, login: 0 };
            match p.backend.send_one(&addr, cx, cmd.clone()).await {
                Ok(r) if !resp::is_error(&r) => {
                    tracing::info!(node = %addr, "settings made with CONFIG SET applied to a node that joined");
                    p.node_config.applied.lock().insert(id);
                }
                Ok(r) => {
                    let text = String::from_utf8_lossy(&r).trim_end().to_string();
                    tracing::warn!(node = %addr, error = %text, "a node that joined refused the settings made with CONFIG SET");
                }
                // Not reachable yet: tried again at the next change of the map.
                Err(e) => tracing::debug!(node = %addr, error = %e, "cannot apply CONFIG SET settings yet"),
            }
        }
    }
}
