//! The snapshot as JSON, the one schema served by the admin endpoint (`/topology`) and the shared
//! observer (`/v1/topology`, `/v1/topology/watch`), and read back by proxies that follow a shared
//! observer.

use super::{Node, Role, Topology};

/// The snapshot as JSON: version, and per node id, address, role, master, health, configEpoch
/// (null when the source does not report it) and slot ranges.
pub fn to_json(t: &Topology) -> String {
    let ranges = t.ranges();
    let nodes: Vec<serde_json::Value> = t
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let slots: Vec<[u16; 2]> =
                ranges.get(&i).map(|r| r.iter().map(|&(a, b)| [a, b]).collect()).unwrap_or_default();
            serde_json::json!({
                "id": n.id,
                "address": n.addr,
                "ip": n.ip_addr,
                "role": if n.role == Role::Master { "master" } else { "replica" },
                "master": n.master_id,
                "health": if n.failed { "fail" } else { "up" },
                "configEpoch": n.config_epoch,
                "slots": slots,
            })
        })
        .collect();
    let v = serde_json::json!({
        "version": t.version,
        "age_seconds": t.learned_at.elapsed().as_secs_f64(),
        "uncovered_slots": t.uncovered(),
        "nodes": nodes,
    });
    v.to_string()
}

/// Rebuilds a map from the JSON snapshot (`None` if it is not one).
pub fn from_json(text: &str) -> Option<(Vec<Node>, Box<[u16]>)> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let mut nodes = Vec::new();
    let mut slots = vec![super::snapshot::UNOWNED; crate::slot::SLOTS].into_boxed_slice();
    for (i, n) in v.get("nodes")?.as_array()?.iter().enumerate() {
        nodes.push(Node {
            id: n.get("id")?.as_str()?.to_string(),
            addr: n.get("address")?.as_str()?.to_string(),
            // Snapshots of observers before the "ip" field: the address is the IP.
            ip_addr: n.get("ip").or(n.get("address"))?.as_str()?.to_string(),
            role: if n.get("role")?.as_str()? == "master" { Role::Master } else { Role::Replica },
            master_id: n.get("master").and_then(|m| m.as_str()).map(str::to_string),
            failed: n.get("health").and_then(|h| h.as_str()) == Some("fail"),
            config_epoch: n.get("configEpoch").and_then(|e| e.as_u64()),
        });
        for r in n.get("slots")?.as_array()? {
            let (a, b) = (r.get(0)?.as_u64()? as usize, r.get(1)?.as_u64()? as usize);
            for s in slots.get_mut(a..=b)? {
                *s = i as u16;
            }
        }
    }
    Some((nodes, slots))
}
