//! The gossip observer: one persistent link per node on its cluster-bus port, a PING at a steady
//! beat, fast only where something is changing ([`pace`]; one outstanding per link), and the slot
//! map settled from the PONGs the way Redis's own UPDATE handling does it: each master's own
//! claim, the highest configEpoch wins, a slot nobody claims keeps its last owner, a replica's
//! report of its master counts only while that master is silent. Node health (up, unreachable,
//! pfail, fail) comes from the links and the gossip flags. The node set comes from `CLUSTER NODES`
//! ([`reconcile`]).
//!
//! It never sends anything but PING, with a random id checked against every id it has learned.
//! `CLUSTER NODES` (bus ports, node set) and `CLUSTER SHARDS` (reconciliation) come from the
//! client port. When no node answers on the bus it polls instead, and says so ([`source`]).

mod pace;
mod reconcile;
mod settle;
mod source;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::codec::{Header, NodeId, FLAG_FAIL, FLAG_HANDSHAKE, FLAG_NOADDR, FLAG_PFAIL};
use super::link::{link, Beat, Event, Pace, TLS_FAILED};
use super::nodes::NodesLine;
use super::ObserverConfig;
use crate::metrics::Metrics;
use crate::sync::Mutex;
use crate::topology::{format_addr, Node, Poller, Role, TopologyStore};

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
    /// Until when the link PINGs at the fast beat ([`pace`]).
    hot_until: Option<Instant>,
    /// Tells the link which beat applies (`true`: fast).
    fast: watch::Sender<bool>,
    /// The link's place among the steady beats' instants.
    stagger: usize,
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(l) = self.link.take() {
            l.abort();
        }
    }
}

/// Runs until the process ends.
pub async fn run(store: Arc<TopologyStore>, poller: Arc<Poller>, cfg: ObserverConfig, metrics: Arc<Metrics>) {
    let (tx, rx) = mpsc::channel(1024);
    let mut o = Observer {
        beat: Beat::new(cfg.interval),
        store,
        poller,
        cfg,
        metrics,
        peers: HashMap::new(),
        by_bus: HashMap::new(),
        links_made: 0,
        my_id: Arc::new(Mutex::new(NodeId::random())),
        tx,
        polling: false,
        heard: false,
        links_since: Instant::now(),
        reconcile_asked: false,
        last: None,
        last_version: 0,
        dirty: true,
        gap_since: None,
        gap_checked: None,
        tls_failed: None,
    };
    o.metrics.bus_tls.set(i64::from(o.cfg.tls.is_some()));
    o.main(rx).await;
}

struct Observer {
    store: Arc<TopologyStore>,
    /// CLUSTER SHARDS and CLUSTER NODES on the client ports: the seeds and how to log in.
    poller: Arc<Poller>,
    cfg: ObserverConfig,
    /// The fast beat; each link's steady beat is laid on its instants.
    beat: Beat,
    metrics: Arc<Metrics>,
    /// By node id.
    peers: HashMap<String, Peer>,
    /// Bus address -> node id.
    by_bus: HashMap<String, String>,
    /// Links placed on the steady beats so far: the next one's place.
    links_made: usize,
    /// Our sender id; shared with the links so a regenerated id takes effect on the next PING.
    my_id: Arc<Mutex<NodeId>>,
    tx: mpsc::Sender<Event>,
    /// True while the bus gives us nothing and we poll instead.
    polling: bool,
    /// Whether any PONG arrived yet: until then the map in use is the start-up read.
    heard: bool,
    /// When the first links were started: silence means "unreachable" only after a PONG timeout.
    links_since: Instant,
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
    /// The last TLS handshake failure on a bus link since the last PONG: the reason given when
    /// the observer falls back to polling.
    tls_failed: Option<String>,
}

impl Observer {
    async fn main(&mut self, mut rx: mpsc::Receiver<Event>) {
        self.set_source(false);
        // Node set and bus ports first: the id check must happen before the first PING.
        self.reconcile().await;
        self.links_since = Instant::now();
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
                    self.pace();
                }
                // The data path met a MOVED or lost a node: something is changing somewhere.
                _ = self.store.alert.notified() => {
                    self.heat_all();
                    self.pace();
                }
                _ = health.tick() => {
                    self.check_health();
                    self.pace();
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

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Down { bus, why } => {
                if why.starts_with(TLS_FAILED) {
                    self.tls_failed = Some(why.clone());
                }
                if let Some(p) = self.by_bus.get(&bus).and_then(|id| self.peers.get_mut(id)) {
                    if p.reachable {
                        tracing::info!(node = %p.addr, error = %why, "bus link to node lost");
                        self.dirty = true;
                        // A node that left the cluster (del-node shuts it down) is dropped from
                        // the node set by CLUSTER NODES: ask now rather than at the next
                        // periodic check.
                        self.reconcile_asked = true;
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
                self.tls_failed = None;
                if self.metrics.enabled {
                    self.metrics.bus_pongs.inc();
                    self.metrics.bus_rtt.with_label_values(&[bus.as_str()]).observe(rtt.as_secs_f64());
                }
                // The same bus address answering with another id: the node was replaced.
                if let Some(old) = self.by_bus.get(&bus).cloned() {
                    if old != id {
                        if let Some(mut p) = self.peers.remove(&old) {
                            let mut fresh = Peer::new(id.clone(), p.addr.clone(), bus.clone(), p.stagger);
                            // The link keeps running: it keeps listening to the same pace.
                            fresh.fast = std::mem::replace(&mut p.fast, watch::Sender::new(false));
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
                // A claim that changed (a promotion, a demotion, slots moved, a new epoch): the
                // shard it left and the one it joined are watched closely until things settle.
                let claim_changed = !same && p.header.is_some();
                let was_under = p.master_id.clone();
                p.role = if h.is_master() { Role::Master } else { Role::Replica };
                p.master_id = h.slaveof.map(|s| s.to_string());
                p.last_pong = Some(Instant::now());
                if !p.reachable {
                    tracing::info!(node = %p.addr, "node answering on the bus");
                }
                self.dirty |= !same || !p.reachable;
                p.reachable = true;
                p.header = Some(h);
                if claim_changed {
                    if let Some(m) = was_under {
                        self.heat_shard(&m);
                    }
                    self.heat_shard(&id);
                }
                let reporter = id;
                let mut seen_about = HashSet::new();
                for g in msg.gossip {
                    if !g.nodename.is_valid() || g.flags & (FLAG_HANDSHAKE | FLAG_NOADDR) != 0 {
                        continue;
                    }
                    let about = g.nodename.to_string();
                    self.check_id_clash(&about);
                    seen_about.insert(about.clone());
                    if !g.ip.is_empty() && g.port != 0 && g.cport != 0 {
                        let (addr, bus) = (format_addr(&g.ip, g.port), format_addr(&g.ip, g.cport));
                        if self.peers.contains_key(&about) {
                            self.readdress(&about, addr, bus);
                        } else {
                            tracing::info!(node = %addr, "node learned from gossip");
                            self.add_peer(about.clone(), addr, bus, None);
                            self.dirty = true;
                        }
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
                if !self.heard {
                    // The settle after this event publishes the first map made of claims.
                    self.heard = true;
                    self.set_source(self.polling);
                }
            }
        }
    }

    /// Regenerates our id if any node in the cluster has it (impersonation must be impossible).
    fn check_id_clash(&self, id: &str) {
        let mut mine = self.my_id.lock();
        if mine.as_str() == id {
            *mine = NodeId::random();
            tracing::warn!("observer id collided with a cluster node id; regenerated");
        }
    }

    fn add_peer(&mut self, id: String, addr: String, bus: String, line: Option<&NodesLine>) {
        let mut p = Peer::new(id.clone(), addr, bus.clone(), self.links_made);
        self.links_made += 1;
        if let Some(l) = line {
            p.role = if l.master { Role::Master } else { Role::Replica };
            p.master_id = l.master_id.clone();
            p.fail = l.fail;
        }
        p.link = Some(self.spawn_link(&bus, &p));
        self.by_bus.insert(bus, id.clone());
        self.peers.insert(id, p);
    }

    fn spawn_link(&self, bus: &str, p: &Peer) -> JoinHandle<()> {
        let (id, cfg, tx, metrics) = (self.my_id.clone(), self.cfg.clone(), self.tx.clone(), self.metrics.clone());
        let steady = Beat::staggered(self.beat, cfg.steady, p.stagger);
        let pace = Pace { fast: self.beat, steady, fast_now: p.fast.subscribe() };
        tokio::spawn(link(bus.to_string(), id, cfg, pace, tx, metrics))
    }

    /// A known node reported at another address (restarted elsewhere, as a pod with a new IP
    /// keeps its id): followed there, unless it still answers where it is (a report may be older
    /// than what the node itself said).
    fn readdress(&mut self, id: &str, addr: String, bus: String) {
        let Some(p) = self.peers.get(id) else { return };
        if (p.addr == addr && p.bus == bus) || (p.reachable && p.header.is_some()) {
            return;
        }
        tracing::info!(node = %id, from = %p.addr, to = %addr, "node moved to a new address");
        let link = self.spawn_link(&bus, p);
        let Some(p) = self.peers.get_mut(id) else { return };
        self.by_bus.remove(&p.bus);
        if let Some(old) = p.link.replace(link) {
            old.abort();
        }
        p.addr = addr;
        p.bus = bus.clone();
        p.last_pong = None;
        self.by_bus.insert(bus, id.to_string());
        self.dirty = true;
    }
}

impl Peer {
    fn new(id: String, addr: String, bus: String, stagger: usize) -> Peer {
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
            hot_until: None,
            fast: watch::Sender::new(false),
            stagger,
        }
    }
}
