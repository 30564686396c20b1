//! The gossip observer: one persistent link per node on its cluster-bus port, a PING at a steady
//! interval (one outstanding per link), and the slot map settled from the PONGs the way Redis's own
//! UPDATE handling does it: each master's own claim, the highest configEpoch wins, a slot nobody
//! claims keeps its last owner, a replica's report of its master counts only while that master is
//! silent. Node health (up, unreachable, pfail, fail) comes from the links and the gossip flags.
//!
//! It never sends anything but PING, with a random id checked against every id it has learned.
//! `CLUSTER NODES` (bus ports, node set) and `CLUSTER SHARDS` (reconciliation) come from the
//! client port. When no node answers on the bus it polls instead, and says so.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::codec::{self, Header, Message, NodeId, FLAG_FAIL, FLAG_HANDSHAKE, FLAG_NOADDR, FLAG_PFAIL};
use crate::backend::{self, Auth};
use crate::metrics::Metrics;
use crate::slot::SLOTS;
use crate::topology::{self, Node, Role, TopologyStore};

/// Observer settings.
#[derive(Clone, Debug)]
pub struct ObserverConfig {
    /// Time between PINGs on one link.
    pub interval: Duration,
    /// Periodic `CLUSTER NODES`/`SHARDS` reconciliation.
    pub reconcile: Duration,
    /// Poll interval while the bus is unusable.
    pub poll: Duration,
    /// Connect timeout for the client-port queries.
    pub connect_timeout: Duration,
}

impl ObserverConfig {
    /// A node that has not answered a PING for this long is unreachable (max(1 s, 2 × interval)).
    pub fn pong_timeout(&self) -> Duration {
        (self.interval * 2).max(Duration::from_secs(1))
    }
}

/// The instants every link PINGs at and the health check runs at: one shared beat, so an idle
/// observer wakes once per interval for all of them instead of once per link and timer (each
/// wake-up costs more than the PING it sends). The phase is random so that proxies started
/// together do not PING a node in step.
#[derive(Clone, Copy, Debug)]
struct Beat {
    origin: Instant,
    every: Duration,
}

impl Beat {
    fn new(every: Duration) -> Beat {
        let every = every.max(Duration::from_millis(1));
        let phase = Duration::from_micros(rand::random_range(0..every.as_micros() as u64));
        Beat { origin: Instant::now() + phase, every }
    }

    /// The first beat after `t`.
    fn after(&self, t: Instant) -> Instant {
        if t < self.origin {
            return self.origin;
        }
        let every = self.every.as_nanos();
        let beats = (t - self.origin).as_nanos() / every + 1;
        self.origin + Duration::from_nanos((beats * every) as u64)
    }
}

/// What the link tasks report.
enum Event {
    Pong { bus: String, msg: Box<Message>, rtt: Duration },
    Down { bus: String, why: String },
}

/// What the observer knows of one node.
#[derive(Debug)]
struct Peer {
    id: String,
    /// Client address `ip:port`.
    addr: String,
    /// Bus address `ip:cport`.
    bus: String,
    role: Role,
    master_id: Option<String>,
    /// The node's last PONG header, if it ever answered.
    header: Option<Header>,
    last_pong: Option<Instant>,
    /// Link state: answered within the PONG timeout.
    reachable: bool,
    /// FAIL as the cluster agreed it (seen in gossip), cleared when gossip stops saying it.
    fail: bool,
    /// Reporters currently flagging the node PFAIL.
    pfail_by: HashSet<String>,
    link: Option<JoinHandle<()>>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(l) = self.link.take() {
            l.abort();
        }
    }
}

/// One line of CLUSTER NODES.
#[derive(Debug, Clone, PartialEq)]
pub struct NodesLine {
    pub id: String,
    pub addr: String,
    pub bus: String,
    pub master: bool,
    pub fail: bool,
    pub handshake: bool,
    pub master_id: Option<String>,
    pub config_epoch: u64,
    pub slots: Vec<(u16, u16)>,
}

/// Parses `CLUSTER NODES` text; lines it cannot read are skipped.
pub fn parse_cluster_nodes(text: &str) -> Vec<NodesLine> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            // ip:port@cport[,hostname]
            let (hostport, rest) = f[1].split_once('@')?;
            let cport = rest.split(',').next()?;
            let (ip, port) = hostport.rsplit_once(':')?;
            if ip.is_empty() || port == "0" {
                return None;
            }
            let flags = f[2];
            let mut slots = Vec::new();
            for r in &f[8..] {
                if r.starts_with('[') {
                    continue;
                }
                let (a, b) = match r.split_once('-') {
                    Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
                    None => {
                        let s: u16 = r.parse().ok()?;
                        (s, s)
                    }
                };
                slots.push((a, b));
            }
            Some(NodesLine {
                id: f[0].to_string(),
                addr: format!("{ip}:{port}"),
                bus: format!("{ip}:{cport}"),
                master: flags.contains("master"),
                fail: flags.split(',').any(|x| x == "fail"),
                handshake: flags.contains("handshake") || flags.contains("noaddr"),
                master_id: (f[3] != "-").then(|| f[3].to_string()),
                config_epoch: f[6].parse().unwrap_or(0),
                slots,
            })
        })
        .collect()
}

/// Runs until the process ends.
pub async fn run(
    store: Arc<TopologyStore>,
    seeds: Vec<String>,
    auth: Auth,
    cfg: ObserverConfig,
    metrics: Arc<Metrics>,
) {
    let (tx, rx) = mpsc::channel(1024);
    let mut o = Observer {
        beat: Beat::new(cfg.interval),
        store,
        seeds,
        auth,
        cfg,
        metrics,
        peers: HashMap::new(),
        by_bus: HashMap::new(),
        my_id: Arc::new(Mutex::new(NodeId::random())),
        tx,
        polling: false,
        reconcile_asked: false,
        last: None,
        last_version: 0,
        dirty: true,
        gap_since: None,
        gap_checked: None,
    };
    o.main(rx).await;
}

struct Observer {
    store: Arc<TopologyStore>,
    seeds: Vec<String>,
    auth: Auth,
    cfg: ObserverConfig,
    beat: Beat,
    metrics: Arc<Metrics>,
    /// By node id.
    peers: HashMap<String, Peer>,
    /// Bus address -> node id.
    by_bus: HashMap<String, String>,
    /// Our sender id; shared with the links so a regenerated id takes effect on the next PING.
    my_id: Arc<Mutex<NodeId>>,
    tx: mpsc::Sender<Event>,
    /// True while the bus gives us nothing and we poll instead.
    polling: bool,
    reconcile_asked: bool,
    /// What this observer last computed, and the store version it published (or saw) then.
    last: Option<(Vec<Node>, Box<[u16]>)>,
    last_version: u64,
    /// Whether a bus event changed anything the map or the nodes' health is made of since the
    /// last settle. Most PONGs repeat the one before; those need no settling.
    dirty: bool,
    /// Since when some slot has had no claimant on the bus, and when we last asked about it.
    gap_since: Option<Instant>,
    gap_checked: Option<Instant>,
}

/// True when `t` maps every slot to the same address as `slots` over `nodes` does.
fn same_owners(t: &topology::Topology, nodes: &[Node], slots: &[u16]) -> bool {
    slots.iter().enumerate().all(|(s, &i)| t.master_for(s as u16) == nodes.get(i as usize).map(|n| n.addr.as_str()))
}

impl Observer {
    async fn main(&mut self, mut rx: mpsc::Receiver<Event>) {
        self.set_source(false);
        // Node set and bus ports first: the id check must happen before the first PING.
        self.reconcile().await;
        let mut reconcile = tokio::time::interval(self.cfg.reconcile);
        reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        reconcile.tick().await;
        let mut health = tokio::time::interval_at(self.beat.after(Instant::now()), self.cfg.interval);
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_poll = Instant::now();
        loop {
            tokio::select! {
                Some(ev) = rx.recv() => {
                    self.handle(ev);
                    // Everything already queued is applied before one recomputation.
                    while let Ok(ev) = rx.try_recv() {
                        self.handle(ev);
                    }
                    if self.dirty || self.store.load().version != self.last_version {
                        self.publish();
                    }
                }
                _ = health.tick() => {
                    self.check_health();
                    if self.polling && last_poll.elapsed() >= self.cfg.poll {
                        last_poll = Instant::now();
                        self.poll().await;
                    }
                    let gap_old = self.gap_since.is_some_and(|t| t.elapsed() > Duration::from_millis(300));
                    let checked_recently = self.gap_checked.is_some_and(|t| t.elapsed() < Duration::from_secs(1));
                    if gap_old && !checked_recently && !self.polling {
                        // The map keeps unclaimed slots with their last owner; CLUSTER SHARDS says
                        // where the cluster itself now sends them, and the bus view then builds
                        // on that (an unclaimed slot keeps whatever owner is current).
                        self.gap_checked = Some(Instant::now());
                        self.poll().await;
                        self.publish();
                    }
                    if self.reconcile_asked {
                        self.reconcile_asked = false;
                        self.reconcile().await;
                    }
                }
                _ = reconcile.tick() => self.reconcile().await,
            }
        }
    }

    fn set_source(&mut self, polling: bool) {
        if polling != self.polling {
            if polling {
                tracing::warn!(
                    "cluster bus unreachable (no PONG from any node): following the cluster by polling CLUSTER SHARDS"
                );
            } else {
                tracing::info!("cluster bus reachable again: following the cluster from PONGs");
            }
        }
        self.polling = polling;
        self.store.bus_authoritative.store(!polling, std::sync::atomic::Ordering::Relaxed);
        self.metrics.topology_source.with_label_values(&["bus"]).set(!polling as i64);
        self.metrics.topology_source.with_label_values(&["poll"]).set(polling as i64);
    }

    /// Marks silent nodes unreachable and switches to polling when no node answers at all.
    fn check_health(&mut self) {
        let timeout = self.cfg.pong_timeout();
        let mut changed = false;
        for p in self.peers.values_mut() {
            let fresh = p.last_pong.is_some_and(|t| t.elapsed() < timeout);
            if p.reachable && !fresh {
                tracing::info!(node = %p.addr, "node stopped answering on the bus");
                changed = true;
            }
            p.reachable = fresh;
        }
        let any_answer = self.peers.values().any(|p| p.last_pong.is_some_and(|t| t.elapsed() < timeout * 3));
        if !self.peers.is_empty() {
            self.set_source(!any_answer);
        }
        if changed {
            self.publish();
        }
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Down { bus, why } => {
                if let Some(p) = self.by_bus.get(&bus).and_then(|id| self.peers.get_mut(id)) {
                    if p.reachable {
                        tracing::info!(node = %p.addr, error = %why, "bus link to node lost");
                        self.dirty = true;
                    }
                    p.reachable = false;
                }
            }
            Event::Pong { bus, msg, rtt } => {
                let h = msg.header;
                let id = h.sender.to_string();
                if !h.sender.is_valid() {
                    return;
                }
                self.check_id_clash(&id);
                if self.metrics.enabled {
                    self.metrics.bus_pongs.inc();
                    self.metrics.bus_rtt.with_label_values(&[bus.as_str()]).observe(rtt.as_secs_f64());
                }
                // The same bus address answering with another id: the node was replaced.
                if let Some(old) = self.by_bus.get(&bus).cloned() {
                    if old != id {
                        if let Some(mut p) = self.peers.remove(&old) {
                            let mut fresh = Peer::new(id.clone(), p.addr.clone(), bus.clone());
                            fresh.link = p.link.take();
                            self.peers.insert(id.clone(), fresh);
                        }
                        self.by_bus.insert(bus.clone(), id.clone());
                        self.dirty = true;
                    }
                }
                let Some(p) = self.peers.get_mut(&id) else { return };
                // What settling reads of a header; the rest (replication offset...) moves on every PONG.
                let same = p.header.as_ref().is_some_and(|o| {
                    o.config_epoch == h.config_epoch
                        && o.flags == h.flags
                        && o.slaveof == h.slaveof
                        && o.myslots == h.myslots
                });
                p.role = if h.is_master() { Role::Master } else { Role::Replica };
                p.master_id = h.slaveof.map(|s| s.to_string());
                p.last_pong = Some(Instant::now());
                if !p.reachable {
                    tracing::info!(node = %p.addr, "node answering on the bus");
                }
                self.dirty |= !same || !p.reachable;
                p.reachable = true;
                p.header = Some(h);
                let reporter = id;
                let mut seen_about = HashSet::new();
                for g in msg.gossip {
                    if !g.nodename.is_valid() || g.flags & (FLAG_HANDSHAKE | FLAG_NOADDR) != 0 {
                        continue;
                    }
                    let about = g.nodename.to_string();
                    self.check_id_clash(&about);
                    seen_about.insert(about.clone());
                    if !self.peers.contains_key(&about) && !g.ip.is_empty() && g.port != 0 && g.cport != 0 {
                        let addr = format!("{}:{}", g.ip, g.port);
                        let bus = format!("{}:{}", g.ip, g.cport);
                        tracing::info!(node = %addr, "node learned from gossip");
                        self.add_peer(about.clone(), addr, bus, None);
                        self.dirty = true;
                    }
                    if let Some(q) = self.peers.get_mut(&about) {
                        let fail = g.flags & FLAG_FAIL != 0;
                        let flagged = if g.flags & FLAG_PFAIL != 0 {
                            q.pfail_by.insert(reporter.clone())
                        } else {
                            q.pfail_by.remove(&reporter)
                        };
                        self.dirty |= flagged || q.fail != fail;
                        q.fail = fail;
                    }
                }
            }
        }
    }

    /// Regenerates our id if any node in the cluster has it (impersonation must be impossible).
    fn check_id_clash(&self, id: &str) {
        if let Ok(mut mine) = self.my_id.lock() {
            if mine.as_str() == id {
                *mine = NodeId::random();
                tracing::warn!("observer id collided with a cluster node id; regenerated");
            }
        }
    }

    fn add_peer(&mut self, id: String, addr: String, bus: String, line: Option<&NodesLine>) {
        let mut p = Peer::new(id.clone(), addr, bus.clone());
        if let Some(l) = line {
            p.role = if l.master { Role::Master } else { Role::Replica };
            p.master_id = l.master_id.clone();
            p.fail = l.fail;
        }
        p.link = Some(tokio::spawn(link(
            bus.clone(),
            self.my_id.clone(),
            self.cfg.clone(),
            self.beat,
            self.tx.clone(),
            self.metrics.clone(),
        )));
        self.by_bus.insert(bus, id.clone());
        self.peers.insert(id, p);
    }

    /// Node set from CLUSTER NODES: adds nodes, drops vanished ones; fills the map's gaps from
    /// CLUSTER SHARDS (a cold start, or a slot no master claims on the bus).
    async fn reconcile(&mut self) {
        let mut targets: Vec<String> =
            self.peers.values().filter(|p| p.role == Role::Master).map(|p| p.addr.clone()).collect();
        targets.extend(self.seeds.iter().cloned());
        let mut lines = None;
        for t in &targets {
            if let Ok(r) = backend::query(t, &self.auth, &[&["CLUSTER", "NODES"]], self.cfg.connect_timeout).await {
                if let Some(Some(text)) = r.first().and_then(crate::resp::as_bulk) {
                    lines = Some(parse_cluster_nodes(&String::from_utf8_lossy(&text)));
                    break;
                }
            }
        }
        let Some(lines) = lines else {
            tracing::warn!("observer: no node answered CLUSTER NODES");
            return;
        };
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

    async fn poll(&mut self) {
        match topology::fetch(&self.store, &self.seeds, &self.auth, self.cfg.connect_timeout).await {
            Ok((nodes, slots)) => {
                self.store.publish(nodes, slots, "CLUSTER SHARDS");
            }
            Err(e) => tracing::warn!(error = %e, "topology poll failed"),
        }
    }

    /// Settles every slot from the claims and publishes if anything changed.
    fn publish(&mut self) {
        self.dirty = false;
        if self.polling || self.peers.is_empty() {
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
            self.store.publish(nodes.clone(), slots.clone(), "bus");
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
        topology::promote_owners(&mut nodes, &slots);
        (nodes, slots, tie, gaps)
    }
}

impl Peer {
    fn new(id: String, addr: String, bus: String) -> Peer {
        Peer {
            id,
            addr,
            bus,
            role: Role::Master,
            master_id: None,
            header: None,
            last_pong: None,
            reachable: false,
            fail: false,
            pfail_by: HashSet::new(),
            link: None,
        }
    }
}

/// One node's bus link: connect, then PING / wait for the PONG / sleep, forever; on any failure
/// report the node down and reconnect with backoff (0.5 s doubling to 5 s).
async fn link(
    bus: String,
    my_id: Arc<Mutex<NodeId>>,
    cfg: ObserverConfig,
    beat: Beat,
    tx: mpsc::Sender<Event>,
    metrics: Arc<Metrics>,
) {
    let mut backoff = Duration::from_millis(500);
    loop {
        let why = match tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(&bus)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                backoff = Duration::from_millis(500);
                ping_loop(stream, &bus, &my_id, &cfg, beat, &tx, &metrics).await
            }
            Ok(Err(e)) => format!("connect: {e}"),
            Err(_) => "connect timed out".to_string(),
        };
        if tx.send(Event::Down { bus: bus.clone(), why }).await.is_err() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn ping_loop(
    mut stream: TcpStream,
    bus: &str,
    my_id: &Mutex<NodeId>,
    cfg: &ObserverConfig,
    beat: Beat,
    tx: &mpsc::Sender<Event>,
    metrics: &Metrics,
) -> String {
    let mut buf = BytesMut::with_capacity(8192);
    loop {
        let id = match my_id.lock() {
            Ok(g) => *g,
            Err(_) => return "observer state poisoned".into(),
        };
        let sent = Instant::now();
        if let Err(e) = stream.write_all(&codec::encode_ping(&id)).await {
            return format!("write: {e}");
        }
        if metrics.enabled {
            metrics.bus_pings.inc();
        }
        // One PING outstanding: wait for its PONG (other message types are skipped).
        let deadline = sent + cfg.pong_timeout();
        let msg = loop {
            match codec::frame_len(&buf) {
                Err(e) => return format!("bad frame: {e}"),
                Ok(Some(n)) if buf.len() >= n => {
                    let frame = buf.split_to(n);
                    match codec::decode(&frame) {
                        Ok(m) if m.header.msg_type() == codec::TYPE_PONG => break m,
                        Ok(_) => continue,
                        Err(e) => return format!("bad message: {e}"),
                    }
                }
                _ => {}
            }
            match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
                Ok(Ok(0)) => return "closed by node".into(),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return format!("read: {e}"),
                Err(_) => return format!("no PONG within {} ms", cfg.pong_timeout().as_millis()),
            }
        };
        let rtt = sent.elapsed();
        if tx.send(Event::Pong { bus: bus.to_string(), msg: Box::new(msg), rtt }).await.is_err() {
            return "observer stopped".into();
        }
        tokio::time::sleep_until(beat.after(Instant::now())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_are_shared_instants() {
        let every = Duration::from_millis(250);
        let b = Beat::new(every);
        assert!(b.origin >= Instant::now() - every && b.origin <= Instant::now() + every);
        assert_eq!(b.after(b.origin - Duration::from_millis(1)), b.origin);
        assert_eq!(b.after(b.origin), b.origin + every);
        assert_eq!(b.after(b.origin + Duration::from_millis(100)), b.origin + every);
        assert_eq!(b.after(b.origin + every * 1000 + Duration::from_nanos(1)), b.origin + every * 1001);
    }

    #[test]
    fn parses_cluster_nodes_lines() {
        let text = "07c3 127.0.0.1:30004@40004 master - 0 1426238317239 4 connected 0-10 12 [13->-abc]\n\
                    67ed 127.0.0.1:30002@40002,host2 slave 07c3 0 1426238316232 2 connected\n\
                    bad line\n\
                    e7d1 :0@0 master,noaddr - 0 0 0 disconnected\n";
        let l = parse_cluster_nodes(text);
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].bus, "127.0.0.1:40004");
        assert_eq!(l[0].slots, vec![(0, 10), (12, 12)]);
        assert_eq!(l[0].config_epoch, 4);
        assert!(l[0].master);
        assert_eq!(l[1].bus, "127.0.0.1:40002");
        assert_eq!(l[1].master_id.as_deref(), Some("07c3"));
    }
}
