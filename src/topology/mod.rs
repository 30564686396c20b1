//! The slot map: one immutable, versioned [`Topology`] snapshot published through `arc-swap`
//! (read lock-free on every request) and announced through a `watch` channel of its version, so
//! any source (the refresher here, the gossip observer later) feeds the same snapshot. The data
//! path never edits a snapshot: it asks for a one-slot patch (after MOVED) or a refresh, and the
//! store builds and publishes a new one.

pub mod gossip;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use redis_protocol::resp2::types::{OwnedFrame, Resp2Frame};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::backend::{self, Auth};
use crate::slot::SLOTS;

/// No node owns the slot.
const UNOWNED: u16 = u16::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Master,
    Replica,
}

/// What the proxy knows of one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Cluster node id (40 hex chars), empty when only the address is known (after a MOVED).
    pub id: String,
    /// `ip:port` of the client port, the key of backend pools.
    pub addr: String,
    pub role: Role,
    /// Master's id, for replicas.
    pub master_id: Option<String>,
    /// The node reports itself or is reported failed.
    pub failed: bool,
    /// The node's configEpoch, when the source reports it (the bus does; CLUSTER SHARDS does not).
    pub config_epoch: Option<u64>,
}

/// One consistent view of the cluster.
#[derive(Debug)]
pub struct Topology {
    pub version: u64,
    pub nodes: Vec<Node>,
    /// Per slot an index into `nodes`, or `UNOWNED`.
    slots: Box<[u16]>,
    /// Masters that own slots, ordered by their lowest slot (stable across failovers, used by SCAN).
    owners: Vec<u16>,
    /// When this map was learned.
    pub learned_at: Instant,
}

impl Topology {
    /// An empty map (no slot served).
    pub fn empty() -> Topology {
        Topology::build(0, Vec::new(), vec![UNOWNED; SLOTS].into_boxed_slice())
    }

    fn build(version: u64, nodes: Vec<Node>, slots: Box<[u16]>) -> Topology {
        // Each owner's lowest slot, in one pass over the slots.
        let mut first: Vec<Option<usize>> = vec![None; nodes.len()];
        for (s, &n) in slots.iter().enumerate() {
            if let Some(f @ None) = first.get_mut(n as usize) {
                *f = Some(s);
            }
        }
        let mut owners: Vec<(usize, u16)> =
            first.iter().enumerate().filter_map(|(n, f)| f.map(|s| (s, n as u16))).collect();
        owners.sort();
        Topology {
            version,
            nodes,
            slots,
            owners: owners.into_iter().map(|(_, n)| n).collect(),
            learned_at: Instant::now(),
        }
    }

    /// Address of the master serving `slot`.
    #[inline]
    pub fn master_for(&self, slot: u16) -> Option<&str> {
        let i = *self.slots.get(slot as usize)?;
        self.nodes.get(i as usize).map(|n| n.addr.as_str())
    }

    /// The owner of every slot in this map as an index into `nodes` (matched by address), or
    /// [`UNOWNED`]: how a map being settled from fresh reports refers to the published one.
    pub fn owners_in(&self, nodes: &[Node]) -> Vec<u16> {
        let to_new: Vec<u16> = self
            .nodes
            .iter()
            .map(|o| nodes.iter().position(|n| n.addr == o.addr).map_or(UNOWNED, |i| i as u16))
            .collect();
        self.slots.iter().map(|&o| to_new.get(usize::from(o)).copied().unwrap_or(UNOWNED)).collect()
    }

    /// The master node serving `slot`.
    #[inline]
    pub fn master_node(&self, slot: u16) -> Option<&Node> {
        let i = *self.slots.get(slot as usize)?;
        self.nodes.get(i as usize)
    }

    /// Addresses of the masters that own slots, in slot order.
    pub fn slot_owners(&self) -> Vec<&str> {
        self.owners.iter().filter_map(|&i| self.nodes.get(i as usize)).map(|n| n.addr.as_str()).collect()
    }

    /// Addresses of every live master, with or without slots (so that SCRIPT LOAD reaches new ones).
    pub fn masters(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.slot_owners();
        for n in &self.nodes {
            if n.role == Role::Master && !n.failed && !v.contains(&n.addr.as_str()) {
                v.push(&n.addr);
            }
        }
        v
    }

    /// Number of slots nobody serves.
    pub fn uncovered(&self) -> usize {
        self.slots.iter().filter(|&&n| n == UNOWNED).count()
    }

    /// Slot ranges of each node index, for reporting.
    pub fn ranges(&self) -> HashMap<usize, Vec<(u16, u16)>> {
        let mut out: HashMap<usize, Vec<(u16, u16)>> = HashMap::new();
        let mut s = 0usize;
        while s < SLOTS {
            let n = self.slots[s];
            let start = s;
            while s + 1 < SLOTS && self.slots[s + 1] == n {
                s += 1;
            }
            if n != UNOWNED {
                out.entry(n as usize).or_default().push((start as u16, s as u16));
            }
            s += 1;
        }
        out
    }

    fn same_map(&self, other: &Topology) -> bool {
        fn addr(t: &Topology, i: u16) -> Option<&str> {
            t.nodes.get(usize::from(i)).map(|n| n.addr.as_str())
        }
        let mut a: Vec<_> = self.nodes.iter().map(|n| (&n.addr, n.role, n.failed, n.config_epoch)).collect();
        let mut b: Vec<_> = other.nodes.iter().map(|n| (&n.addr, n.role, n.failed, n.config_epoch)).collect();
        a.sort();
        b.sort();
        a == b && (0..SLOTS).all(|s| addr(self, self.slots[s]) == addr(other, other.slots[s]))
    }
}

/// Where the current snapshot lives, and how others ask for a newer one.
pub struct TopologyStore {
    current: ArcSwap<Topology>,
    version_tx: watch::Sender<u64>,
    refresh: Notify,
    /// Set while the bus observer settles ownership by configEpoch. CLUSTER SHARDS carries no
    /// epochs, so its majority vote must not override the bus then: right after a SIGSTOPped
    /// master resumes it still claims its old slots, and a write sent to it is acknowledged and
    /// then lost when it learns it was replaced.
    pub bus_authoritative: std::sync::atomic::AtomicBool,
    /// Serializes writers. Every write reads the current snapshot and builds the next from it;
    /// without this, a MOVED patch built from an older snapshot could overwrite a newer map
    /// published in between (seen: an observer update lost to a concurrent patch). Readers never
    /// take it.
    write: std::sync::Mutex<()>,
}

impl TopologyStore {
    pub fn new() -> Arc<TopologyStore> {
        let (version_tx, _) = watch::channel(0);
        Arc::new(TopologyStore {
            current: ArcSwap::from_pointee(Topology::empty()),
            version_tx,
            refresh: Notify::new(),
            bus_authoritative: std::sync::atomic::AtomicBool::new(false),
            write: std::sync::Mutex::new(()),
        })
    }

    /// The current snapshot (cheap; do not hold it across long waits).
    #[inline]
    pub fn load(&self) -> arc_swap::Guard<Arc<Topology>> {
        self.current.load()
    }

    pub fn load_full(&self) -> Arc<Topology> {
        self.current.load_full()
    }

    /// A receiver that wakes on every published version.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version_tx.subscribe()
    }

    /// Asks the refresher for a refresh; a burst of requests costs one refresh.
    pub fn request_refresh(&self) {
        self.refresh.notify_one();
    }

    /// Publishes a map learned elsewhere if it differs from the current one. Returns true if published.
    pub fn publish(&self, nodes: Vec<Node>, slots: Box<[u16]>, why: &str) -> bool {
        let _writer = self.write.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.publish_locked(nodes, slots, why)
    }

    /// `publish` with the writer lock already held.
    fn publish_locked(&self, mut nodes: Vec<Node>, slots: Box<[u16]>, why: &str) -> bool {
        let cur = self.current.load_full();
        // Sources that do not know epochs (CLUSTER SHARDS) keep the ones the bus reported.
        for n in nodes.iter_mut().filter(|n| n.config_epoch.is_none()) {
            n.config_epoch = cur.nodes.iter().find(|c| c.addr == n.addr).and_then(|c| c.config_epoch);
        }
        let next = Topology::build(cur.version + 1, nodes, slots);
        if cur.same_map(&next) {
            return false;
        }
        log_change(&cur, &next, why);
        self.current.store(Arc::new(next));
        self.version_tx.send_replace(cur.version + 1);
        true
    }

    /// Points one slot at `addr` after a MOVED, at once and without touching any other slot.
    pub fn patch_slot(&self, slot: u16, addr: &str) {
        let _writer = self.write.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let cur = self.current.load_full();
        if cur.master_for(slot) == Some(addr) {
            return;
        }
        let mut nodes = cur.nodes.clone();
        let idx = match nodes.iter().position(|n| n.addr == addr) {
            Some(i) => i,
            None => {
                nodes.push(Node {
                    id: String::new(),
                    addr: addr.to_string(),
                    role: Role::Master,
                    master_id: None,
                    failed: false,
                    config_epoch: None,
                });
                nodes.len() - 1
            }
        };
        let mut slots = cur.slots.clone();
        slots[slot as usize] = idx as u16;
        if let Some(n) = nodes.get_mut(idx) {
            n.role = Role::Master;
            n.failed = false;
        }
        self.publish_locked(nodes, slots, "MOVED");
    }
}

fn log_change(old: &Topology, new: &Topology, why: &str) {
    let mut moved: BTreeMap<(String, String), usize> = BTreeMap::new();
    for s in 0..SLOTS {
        let a = old.master_for(s as u16).unwrap_or("none").to_string();
        let b = new.master_for(s as u16).unwrap_or("none").to_string();
        if a != b {
            *moved.entry((a, b)).or_default() += 1;
        }
    }
    let summary: Vec<String> = moved.iter().map(|((a, b), n)| format!("{n} slots {a} -> {b}")).collect();
    tracing::info!(
        version = new.version,
        source = why,
        masters = new.slot_owners().len(),
        uncovered = new.uncovered(),
        "topology changed: {}",
        if summary.is_empty() { "node set or roles changed".to_string() } else { summary.join(", ") }
    );
}

// === learning the map from CLUSTER SHARDS / CLUSTER SLOTS ===

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

fn parse_shards(reply: &[u8]) -> Option<Reported> {
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
                            let host = match endpoint {
                                Some(e) if !e.is_empty() && e != "?" => e,
                                _ => ip.unwrap_or_default(),
                            };
                            let port = nkv.get("port").or(nkv.get("tls-port")).and_then(|f| int_of(f)).unwrap_or(0);
                            if host.is_empty() || port <= 0 {
                                continue;
                            }
                            let addr = format_addr(&host, port);
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
                            members.push(Node { id, addr, role, master_id: None, failed, config_epoch: None });
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

fn parse_slots(reply: &[u8]) -> Option<Reported> {
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
            let (Some(host), Some(port)) = (nf.first().and_then(str_of), nf.get(1).and_then(int_of)) else { continue };
            if host.is_empty() || host == "?" {
                continue;
            }
            let addr = format_addr(&host, port);
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
                out.nodes.push(Node { id, addr, role, master_id: mid, failed: false, config_epoch: None });
            }
        }
    }
    Some(out)
}

fn format_addr(host: &str, port: i64) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

async fn ask_node(addr: &str, auth: &Auth, limit: Duration) -> Result<Reported, String> {
    let r = backend::query(addr, auth, &[&["CLUSTER", "SHARDS"]], limit).await?;
    let reply: &Bytes = r.first().ok_or("no reply")?;
    if !crate::resp::is_error(reply) {
        return parse_shards(reply).ok_or_else(|| format!("{addr}: unreadable CLUSTER SHARDS reply"));
    }
    // Servers before 7.0 have no SHARDS.
    let r = backend::query(addr, auth, &[&["CLUSTER", "SLOTS"]], limit).await?;
    let reply: &Bytes = r.first().ok_or("no reply")?;
    if crate::resp::is_error(reply) {
        return Err(format!("{addr}: {}", String::from_utf8_lossy(reply).trim_end()));
    }
    parse_slots(reply).ok_or_else(|| format!("{addr}: unreadable CLUSTER SLOTS reply"))
}

/// A node that owns slots in a settled map is a master, whatever an older report said.
pub fn promote_owners(nodes: &mut [Node], slots: &[u16]) {
    let mut owns = vec![false; nodes.len()];
    for &o in slots {
        if let Some(x) = owns.get_mut(usize::from(o)) {
            *x = true;
        }
    }
    for (n, _) in nodes.iter_mut().zip(owns).filter(|(_, o)| *o) {
        n.role = Role::Master;
    }
}

/// Asks the known masters (or, without any, the seeds) concurrently and settles each slot by
/// majority among the answers, ties going to the current owner: right after a failover a node
/// that has not yet heard of it must not undo what the others (and a MOVED) already say.
pub async fn fetch(
    store: &TopologyStore,
    seeds: &[String],
    auth: &Auth,
    limit: Duration,
) -> Result<(Vec<Node>, Box<[u16]>), String> {
    let cur = store.load_full();
    let mut targets: Vec<String> = cur.masters().into_iter().map(str::to_string).collect();
    for s in seeds {
        if !targets.contains(s) {
            targets.push(s.clone());
        }
    }
    let answers = futures_util::future::join_all(targets.iter().map(|t| ask_node(t, auth, limit))).await;
    let mut errors = Vec::new();
    let mut reports = Vec::new();
    for (t, a) in targets.iter().zip(answers) {
        match a {
            Ok(r) if !r.ranges.is_empty() => reports.push(r),
            Ok(_) => errors.push(format!("{t}: reports no slots")),
            Err(e) => errors.push(e),
        }
    }
    if reports.is_empty() {
        return Err(errors.join("; "));
    }
    let mut nodes: Vec<Node> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for r in &reports {
        for n in &r.nodes {
            match index.get(&n.addr) {
                Some(&i) => {
                    // Later reports only add facts: a failure seen by anyone counts.
                    if n.failed {
                        nodes[i].failed = true;
                    }
                }
                None => {
                    index.insert(n.addr.clone(), nodes.len());
                    nodes.push(n.clone());
                }
            }
        }
    }
    // Each report's owner of each slot, as indices into `nodes`: one table per report, where a
    // map of votes per slot made sixteen thousand allocations per poll.
    let mut claims: Vec<Box<[u16]>> = Vec::with_capacity(reports.len());
    for r in &reports {
        let mut own = vec![UNOWNED; SLOTS].into_boxed_slice();
        for (a, b, addr) in &r.ranges {
            let idx = match index.get(addr) {
                Some(&i) => i,
                None => {
                    index.insert(addr.clone(), nodes.len());
                    nodes.push(Node {
                        id: String::new(),
                        addr: addr.clone(),
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
pub async fn run_refresher(
    store: Arc<TopologyStore>,
    seeds: Vec<String>,
    auth: Auth,
    limit: Duration,
    interval: Duration,
    min_gap: Duration,
) {
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
        last = Instant::now();
        if store.bus_authoritative.load(std::sync::atomic::Ordering::Relaxed) {
            continue;
        }
        match fetch(&store, &seeds, &auth, limit).await {
            Ok((nodes, slots)) => {
                store.publish(nodes, slots, "refresh");
            }
            Err(e) => tracing::warn!(error = %e, "topology refresh failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_changes_exactly_one_slot() {
        let store = TopologyStore::new();
        let nodes = vec![
            Node {
                id: "a".into(),
                addr: "127.0.0.1:1".into(),
                role: Role::Master,
                master_id: None,
                failed: false,
                config_epoch: None,
            },
            Node {
                id: "b".into(),
                addr: "127.0.0.1:2".into(),
                role: Role::Master,
                master_id: None,
                failed: false,
                config_epoch: None,
            },
        ];
        let mut slots = vec![0u16; SLOTS].into_boxed_slice();
        for s in 8192..SLOTS {
            slots[s] = 1;
        }
        assert!(store.publish(nodes.clone(), slots.clone(), "test"));
        assert!(!store.publish(nodes, slots, "test"), "same map must not publish");
        let v = store.load().version;
        store.patch_slot(100, "127.0.0.1:2");
        let t = store.load();
        assert_eq!(t.version, v + 1);
        assert_eq!(t.master_for(100), Some("127.0.0.1:2"));
        assert_eq!(t.master_for(99), Some("127.0.0.1:1"));
        assert_eq!(t.master_for(101), Some("127.0.0.1:1"));
        assert_eq!(t.slot_owners(), vec!["127.0.0.1:1", "127.0.0.1:2"]);
        store.patch_slot(5, "127.0.0.1:3");
        assert_eq!(store.load().master_for(5), Some("127.0.0.1:3"));
        assert_eq!(store.load().uncovered(), 0);
    }

    #[test]
    fn parses_cluster_slots() {
        let reply = b"*1\r\n*4\r\n:0\r\n:16383\r\n*3\r\n$9\r\n127.0.0.1\r\n:7000\r\n$3\r\nid1\r\n*3\r\n$9\r\n127.0.0.1\r\n:7001\r\n$3\r\nid2\r\n";
        let r = parse_slots(reply).unwrap(); // ok: test
        assert_eq!(r.ranges, vec![(0, 16383, "127.0.0.1:7000".to_string())]);
        assert_eq!(r.nodes.len(), 2);
        assert_eq!(r.nodes[1].role, Role::Replica);
        assert_eq!(r.nodes[1].master_id.as_deref(), Some("id1"));
    }
}
