//! Learning the map from the nodes' client ports: `CLUSTER SHARDS` (`CLUSTER SLOTS` on servers
//! before 7.0) asked of the known masters and the seeds at once, each slot settled by majority;
//! and the refresher that does so on request and periodically.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use redis_protocol::resp2::types::{OwnedFrame, Resp2Frame};
use tokio::time::Instant;

use super::snapshot::{format_addr, promote_owners, split_addr, UNOWNED};
use super::{Learned, Node, Role, TopologyStore};
use crate::backend::{self, Auth, BackendError, Verify};
use crate::slot::SLOTS;

/// A map as one node reported it.
#[derive(Debug, Default)]
struct Reported {
    nodes: Vec<Node>,
    /// (start, end, master address)
    ranges: Vec<(u16, u16, String)>,
}

fn str_of(f: &OwnedFrame) -> Option<String> {
    match f {
        OwnedFrame::Integer(i) => Some(i.to_string()),
        other => other.as_str().map(str::to_string),
    }
}

fn int_of(f: &OwnedFrame) -> Option<i64> {
    match f {
        OwnedFrame::Integer(i) => Some(*i),
        other => other.as_str()?.parse().ok(),
    }
}

/// Flat key/value array (RESP2 rendering of a map) to pairs.
fn pairs(f: &OwnedFrame) -> Vec<(String, &OwnedFrame)> {
    match f {
        OwnedFrame::Array(a) => a.chunks(2).filter_map(|c| Some((str_of(c.first()?)?, c.get(1)?))).collect(),
        _ => Vec::new(),
    }
}

/// The host part of the address a question was sent to: where a node that does not know its
/// endpoint (`cluster-preferred-endpoint-type unknown-endpoint`) is reached, as Redis tells
/// clients to do.
fn asked_host(asked: &str) -> &str {
    split_addr(asked).map(|(h, _)| h).unwrap_or(asked)
}

/// A node's connect address and IP address from its reported endpoint (`None`: not reported;
/// `""`: unknown, reached where the answering node was; `"?"`: the preferred hostname is missing),
/// IP and port. `None` when it cannot be reached.
fn addresses(endpoint: Option<&str>, ip: Option<&str>, port: i64, asked: &str) -> Option<(String, String)> {
    let port = u16::try_from(port).ok().filter(|&p| p > 0)?;
    let ip = ip.filter(|i| !i.is_empty() && *i != "?");
    let host = match endpoint {
        Some("") => asked_host(asked),
        Some("?") | None => ip?,
        Some(e) => e,
    };
    let addr = format_addr(host, port);
    let ip_addr = ip.map_or_else(|| addr.clone(), |i| format_addr(i, port));
    Some((addr, ip_addr))
}

/// `tls`: the proxy reaches the nodes over TLS, so a node's `tls-port` is the one to use when it
/// lists a plain `port` too (a cluster serving both during a move to TLS).
fn parse_shards(reply: &[u8], asked: &str, tls: bool) -> Option<Reported> {
    let ports = if tls { ["tls-port", "port"] } else { ["port", "tls-port"] };
    let (frame, _) = redis_protocol::resp2::decode::decode(reply).ok()??;
    let OwnedFrame::Array(shards) = frame else { return None };
    let mut out = Reported::default();
    for shard in &shards {
        let kv = pairs(shard);
        let mut slot_list = Vec::new();
        let mut master_addr = None;
        let mut members = Vec::new();
        for (k, v) in &kv {
            match k.as_str() {
                "slots" => {
                    if let OwnedFrame::Array(s) = v {
                        slot_list = s.iter().filter_map(int_of).collect();
                    }
                }
                "nodes" => {
                    if let OwnedFrame::Array(ns) = v {
                        for n in ns {
                            let nkv: HashMap<String, &OwnedFrame> = pairs(n).into_iter().collect();
                            let ip = nkv.get("ip").and_then(|f| str_of(f));
                            let endpoint = nkv.get("endpoint").and_then(|f| str_of(f));
                            let port = ports.iter().find_map(|p| nkv.get(*p)).and_then(|f| int_of(f)).unwrap_or(0);
                            let Some((addr, ip_addr)) = addresses(endpoint.as_deref(), ip.as_deref(), port, asked)
                            else {
                                continue;
                            };
                            let role = match nkv.get("role").and_then(|f| str_of(f)).as_deref() {
                                Some("master") => Role::Master,
                                _ => Role::Replica,
                            };
                            let failed =
                                nkv.get("health").and_then(|f| str_of(f)).is_some_and(|h| h == "fail" || h == "failed");
                            let id = nkv.get("id").and_then(|f| str_of(f)).unwrap_or_default();
                            if role == Role::Master && (master_addr.is_none() || !failed) {
                                master_addr = Some((addr.clone(), id.clone()));
                            }
                            members.push(Node { id, addr, ip_addr, role, master_id: None, failed, config_epoch: None });
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some((addr, id)) = &master_addr {
            for m in members.iter_mut() {
                if m.role == Role::Replica {
                    m.master_id = Some(id.clone());
                }
            }
            for c in slot_list.chunks(2) {
                if let [a, b] = c {
                    if (0..SLOTS as i64).contains(a) && (0..SLOTS as i64).contains(b) && a <= b {
                        out.ranges.push((*a as u16, *b as u16, addr.clone()));
                    }
                }
            }
        }
        out.nodes.extend(members);
    }
    Some(out)
}

fn parse_slots(reply: &[u8], asked: &str) -> Option<Reported> {
    let (frame, _) = redis_protocol::resp2::decode::decode(reply).ok()??;
    let OwnedFrame::Array(entries) = frame else { return None };
    let mut out = Reported::default();
    let mut seen = HashSet::new();
    for e in &entries {
        let OwnedFrame::Array(f) = e else { continue };
        let (Some(a), Some(b)) = (f.first().and_then(int_of), f.get(1).and_then(int_of)) else { continue };
        let mut master_id = None;
        for (i, n) in f.iter().skip(2).enumerate() {
            let OwnedFrame::Array(nf) = n else { continue };
            let Some(port) = nf.get(1).and_then(int_of) else { continue };
            // The host is the preferred endpoint (null when unknown); the metadata after the id
            // carries the other forms (`ip`, `hostname`).
            let host = match nf.first() {
                Some(OwnedFrame::Null) | None => Some(String::new()),
                Some(f) => str_of(f),
            };
            let meta = nf.get(3).map(pairs).unwrap_or_default();
            let ip = meta.iter().find(|(k, _)| k == "ip").and_then(|(_, v)| str_of(v));
            // Without metadata the host is the IP (the endpoint type is `ip`).
            let ip = ip.or_else(|| host.clone().filter(|h| !h.is_empty() && h != "?"));
            let Some((addr, ip_addr)) = addresses(host.as_deref(), ip.as_deref(), port, asked) else { continue };
            let id = nf.get(2).and_then(str_of).unwrap_or_default();
            if i == 0 {
                if (0..SLOTS as i64).contains(&a) && (0..SLOTS as i64).contains(&b) && a <= b {
                    out.ranges.push((a as u16, b as u16, addr.clone()));
                }
                master_id = Some(id.clone());
            }
            if seen.insert(addr.clone()) {
                let role = if i == 0 { Role::Master } else { Role::Replica };
                let mid = if i == 0 { None } else { master_id.clone() };
                out.nodes.push(Node { id, addr, ip_addr, role, master_id: mid, failed: false, config_epoch: None });
            }
        }
    }
    Some(out)
}

/// A map as the cluster says it: its nodes, and per slot the index of its master.
pub type Map = (Vec<Node>, Box<[u16]>);

/// Why one node could not tell the map.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("{node}: {text}")]
    Refused { node: String, text: String },
    #[error("{node}: unreadable {what} reply")]
    Unreadable { node: String, what: &'static str },
    #[error("{0}: reports no slots")]
    NoSlots(String),
}

/// No node could tell the map: why each one could not.
#[derive(Debug, thiserror::Error)]
pub struct FetchError(pub Vec<NodeError>);

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

async fn ask_node(addr: &str, auth: &Auth, limit: Duration, verify: Verify<'_>) -> Result<Reported, NodeError> {
    let unreadable = |what| NodeError::Unreadable { node: addr.to_string(), what };
    let r = backend::query(addr, auth, &[&["CLUSTER", "SHARDS"]], limit, verify).await?;
    let reply: &Bytes = r.first().ok_or_else(|| unreadable("CLUSTER SHARDS"))?;
    if !crate::resp::is_error(reply) {
        return parse_shards(reply, addr, auth.tls.is_some()).ok_or_else(|| unreadable("CLUSTER SHARDS"));
    }
    // Servers before 7.0 have no SHARDS.
    let r = backend::query(addr, auth, &[&["CLUSTER", "SLOTS"]], limit, verify).await?;
    let reply: &Bytes = r.first().ok_or_else(|| unreadable("CLUSTER SLOTS"))?;
    if crate::resp::is_error(reply) {
        let text = String::from_utf8_lossy(reply).trim_end().to_string();
        return Err(NodeError::Refused { node: addr.to_string(), text });
    }
    parse_slots(reply, addr).ok_or_else(|| unreadable("CLUSTER SLOTS"))
}

/// Asks the known masters (or, without any, the seeds) concurrently and settles each slot by
/// majority among the answers, ties going to the current owner: right after a failover a node
/// that has not yet heard of it must not undo what the others (and a MOVED) already say.
pub async fn fetch(store: &TopologyStore, seeds: &[String], auth: &Auth, limit: Duration) -> Result<Map, FetchError> {
    let cur = store.load_full();
    let mut targets: Vec<String> = cur.masters().into_iter().map(str::to_string).collect();
    for s in seeds {
        if !targets.contains(s) {
            targets.push(s.clone());
        }
    }
    let answers =
        futures_util::future::join_all(targets.iter().map(|t| ask_node(t, auth, limit, Verify::Query(store)))).await;
    let mut errors = Vec::new();
    let mut reports = Vec::new();
    for (t, a) in targets.iter().zip(answers) {
        match a {
            Ok(r) if !r.ranges.is_empty() => reports.push(r),
            Ok(_) => errors.push(NodeError::NoSlots(t.clone())),
            Err(e) => errors.push(e),
        }
    }
    if reports.is_empty() {
        return Err(FetchError(errors));
    }
    // Nodes merged by identity (their id; the address for a master a report names without one),
    // so that two reports spelling a node differently still agree on it.
    let mut nodes: Vec<Node> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let key = |n: &Node| if n.id.is_empty() { n.addr.clone() } else { n.id.clone() };
    // Each report's owner of each slot, as indices into `nodes`: one table per report, where a
    // map of votes per slot made sixteen thousand allocations per poll.
    let mut claims: Vec<Box<[u16]>> = Vec::with_capacity(reports.len());
    for r in &reports {
        // This report's addresses, as indices into `nodes`.
        let mut local: HashMap<&str, usize> = HashMap::new();
        for n in &r.nodes {
            let i = match index.get(&key(n)) {
                Some(&i) => {
                    // Later reports only add facts: a failure seen by anyone counts.
                    if n.failed {
                        nodes[i].failed = true;
                    }
                    i
                }
                None => {
                    index.insert(key(n), nodes.len());
                    nodes.push(n.clone());
                    nodes.len() - 1
                }
            };
            local.insert(n.addr.as_str(), i);
        }
        let mut own = vec![UNOWNED; SLOTS].into_boxed_slice();
        for (a, b, addr) in &r.ranges {
            let idx = match local.get(addr.as_str()).or_else(|| index.get(addr)) {
                Some(&i) => i,
                None => {
                    index.insert(addr.clone(), nodes.len());
                    nodes.push(Node {
                        id: String::new(),
                        addr: addr.clone(),
                        ip_addr: addr.clone(),
                        role: Role::Master,
                        master_id: None,
                        failed: false,
                        config_epoch: None,
                    });
                    nodes.len() - 1
                }
            } as u16;
            for o in own.iter_mut().take(usize::from(*b) + 1).skip(usize::from(*a)) {
                *o = idx;
            }
        }
        claims.push(own);
    }
    let current = cur.owners_in(&nodes);
    let mut slots = vec![UNOWNED; SLOTS].into_boxed_slice();
    let mut tally: Vec<(u16, u32)> = Vec::new();
    for (s, settled) in slots.iter_mut().enumerate() {
        let first = claims[0][s];
        if claims.iter().all(|c| c[s] == first) {
            *settled = first;
            continue;
        }
        tally.clear();
        for o in claims.iter().map(|c| c[s]).filter(|&o| o != UNOWNED) {
            match tally.iter_mut().find(|(i, _)| *i == o) {
                Some(t) => t.1 += 1,
                None => tally.push((o, 1)),
            }
        }
        let best = tally.iter().map(|t| t.1).max().unwrap_or(0);
        let c = current[s];
        *settled = if tally.iter().any(|&(i, n)| i == c && n == best) {
            c
        } else {
            tally.iter().filter(|t| t.1 == best).map(|t| t.0).min().unwrap_or(UNOWNED)
        };
    }
    promote_owners(&mut nodes, &slots);
    Ok((nodes, slots))
}

/// Runs until the process ends: refreshes on request (single-flight, at most one per
/// `min_gap`) and every `interval`.
pub async fn run_refresher(store: Arc<TopologyStore>, poller: Arc<Poller>, interval: Duration, min_gap: Duration) {
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = store.refresh.notified() => {}
            _ = tokio::time::sleep(interval) => {}
        }
        let since = last.elapsed();
        if since < min_gap {
            tokio::time::sleep(min_gap - since).await;
        }
        // Requests made until now are answered by the fetch about to start: a burst of MOVEDs
        // that kept arriving during the pause must not buy a refresh of its own afterwards.
        let _ = futures_util::FutureExt::now_or_never(store.refresh.notified());
        last = Instant::now();
        if store.bus_authoritative.load(std::sync::atomic::Ordering::Relaxed) {
            continue;
        }
        match poller.fetch(&store).await {
            Ok((nodes, slots)) => {
                store.publish(nodes, slots, Learned::Refresh);
            }
            Err(e) => tracing::warn!(error = %e, "topology refresh failed"),
        }
    }
}

/// Asks the cluster itself, on the nodes' client ports, where the slots are: what the refresher,
/// the fallbacks of the other sources, and a doubt about a late answer use.
pub struct Poller {
    seeds: Vec<String>,
    auth: Auth,
    /// Connect timeout; a whole question is bounded by twice this.
    limit: Duration,
    /// The last answer asked for a doubt, and when its questions were sent. One question at a
    /// time: a burst of doubts (a hung master answering a deep pipeline at once) costs one.
    last: tokio::sync::Mutex<Option<(Instant, Arc<Map>)>>,
}

impl Poller {
    pub fn new(seeds: Vec<String>, auth: Auth, limit: Duration) -> Arc<Poller> {
        Arc::new(Poller { seeds, auth, limit, last: tokio::sync::Mutex::new(None) })
    }

    /// The seeds asked when no master is known (and always, besides the masters).
    pub fn seeds(&self) -> &[String] {
        &self.seeds
    }

    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// The connect timeout of its questions.
    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// The map by majority of the known masters and the seeds (see [`fetch`]).
    pub async fn fetch(&self, store: &TopologyStore) -> Result<Map, FetchError> {
        fetch(store, &self.seeds, &self.auth, self.limit).await
    }

    /// The address of `slot`'s master as the cluster says it in an answer asked for at or after
    /// `since`; `None` when no node could say.
    pub async fn owner_since(&self, store: &TopologyStore, slot: u16, since: Instant) -> Option<String> {
        let mut last = self.last.lock().await;
        let fresh = last.as_ref().filter(|(asked, _)| *asked >= since).map(|(_, m)| m.clone());
        let map = match fresh {
            Some(m) => m,
            None => {
                let asked = Instant::now();
                let m = Arc::new(self.fetch(store).await.ok()?);
                *last = Some((asked, m.clone()));
                m
            }
        };
        let (nodes, slots) = &*map;
        let owner = *slots.get(usize::from(slot))?;
        nodes.get(usize::from(owner)).map(|n| n.addr.clone())
    }
}

// The reply parsers' tests, in poll/tests.rs to keep this file one concept's length.
#[cfg(test)]
mod tests;
