//! The one part that knows everything: start-up (bootstrap the slot map from the seeds, load the
//! command table from a master, bind), the topology source, the accept loop ([`accept`]) on the
//! worker threads ([`workers`]), graceful drain, the admin HTTP endpoint ([`admin`]), and the
//! shared observer's own process ([`observe`]). Everything below gets a narrow handle: client
//! connections a [`conn::Shared`], routing a [`Router`].

mod accept;
mod admin;
mod memory;
pub mod observe;
mod tls;
mod workers;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

use crate::backend::{self, Auth, Backend, Verify};
use crate::command::CommandTable;
use crate::config::{Config, Source};
use crate::conn;
use crate::keyspace::Databases;
use crate::memory::Usage;
use crate::metrics::Metrics;
use crate::route::{self, Router};
use crate::stats::ProxyStats;
use crate::topology::{self, gossip, Learned, Poller, Topology, TopologyStore};

/// What the server's own tasks share: the handles it gave out, and the drain state.
struct Shared {
    cfg: Config,
    router: Arc<Router>,
    conn: Arc<conn::Shared>,
    /// Set at the start of a graceful shutdown: /readyz says 503, clients close once idle.
    draining: AtomicBool,
    /// Last topology version reflected in the metrics (to advance the changes counter).
    seen_version: AtomicU64,
}

impl Shared {
    /// Brings the gauges that mirror other state up to date; called before each scrape.
    fn refresh_gauges(&self) {
        let m = &self.router.metrics;
        let stats = &self.router.stats;
        let t = self.router.topology.load();
        m.topology_version.set(t.version as i64);
        let seen = self.seen_version.swap(t.version, Ordering::Relaxed);
        if t.version > seen {
            m.topology_changes.inc_by(t.version - seen);
        }
        m.topology_age.set(t.learned_at.elapsed().as_secs_f64());
        m.slots_uncovered.set(t.uncovered() as i64);
        m.masters.set(t.slot_owners().len() as i64);
        m.clients_connected.set(stats.connected() as i64);
        let sync = |c: &prometheus::IntCounter, v: u64| {
            if v > c.get() {
                c.inc_by(v - c.get());
            }
        };
        sync(&m.clients_accepted, stats.total_connections.load(Ordering::Relaxed));
        sync(&m.clients_rejected, stats.rejected_connections.load(Ordering::Relaxed));
        sync(&m.nodes_refused, self.router.topology.impostors());
        m.draining.set(self.draining.load(Ordering::Relaxed) as i64);
        m.buffered_bytes.set(self.conn.usage.total() as i64);
        m.memory_refusing.set(self.conn.usage.refusing() as i64);
    }
}

/// Why the proxy could not start; `main` prints it on one line and exits with code 2.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no seeds: pass --seed HOST:PORT or set `seeds` in the config file")]
    NoSeeds,
    #[error("no listener: set `listen` or `tls.listen`")]
    NoListener,
    #[error("cannot reach the cluster: {0}")]
    Unreachable(#[from] topology::FetchError),
    #[error("cannot listen on {addr} ({what}): {err}")]
    Listen { addr: SocketAddr, what: &'static str, err: std::io::Error },
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cannot start the worker threads: {0}")]
    Workers(std::io::Error),
    #[error("invalid config: `{key}`: {why}")]
    Observer { key: &'static str, why: String },
    /// A `[tls]` file that cannot be used: the key naming it, and what is wrong.
    #[error("invalid config: `{key}`: {why}")]
    Tls { key: &'static str, why: String },
}

/// A started proxy: its addresses, a small API for what tests and `main` need to see, and the
/// switch that stops it.
pub struct Running {
    shared: Arc<Shared>,
    addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    tls: Option<Arc<tls::Tls>>,
    admin_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Held only: the client threads stop when the last handle is dropped.
    _workers: Arc<workers::Workers>,
}

impl Running {
    /// Where clients connect: the plain listener, or the TLS one when it is the only one.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where TLS clients connect, when the TLS listener is on.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// Reads the TLS listener's files again (SIGHUP): new handshakes use them, connected clients
    /// keep their sessions. When they cannot be used, the ones in use stay and the error (the
    /// key and file) is returned; logged and counted either way. Nothing to do without TLS.
    pub fn reload_tls(&self) -> Result<(), String> {
        match &self.tls {
            Some(t) => t.reload("SIGHUP", &self.shared.router.metrics),
            None => Ok(()),
        }
    }

    /// Where the admin HTTP endpoint listens, when it is on.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    pub fn config(&self) -> &Config {
        &self.shared.cfg
    }

    /// The slot map in use now.
    pub fn topology(&self) -> Arc<Topology> {
        self.shared.router.topology.load_full()
    }

    /// Slots that lost their owner in a published map since start: only CLUSTER SHARDS answers
    /// in which no node claims a slot may do that.
    pub fn slots_unassigned(&self) -> u64 {
        self.shared.router.topology.unassigned()
    }

    /// Redirect-like replies of one kind seen so far (`moved`, `ask`, `late`, ...; 0 with metrics
    /// off).
    pub fn redirects(&self, kind: &str) -> u64 {
        self.shared.router.metrics.redirects_seen(kind)
    }

    /// What keeps the slot map current: `bootstrap` (nothing yet: the map read at start-up),
    /// `bus`, `poll` or `observer`.
    pub fn topology_source(&self) -> &'static str {
        self.shared.router.metrics.topology_source()
    }

    /// Why the gossip observer polls instead of following the bus (`unreachable`,
    /// `tls_handshake`, `no_client_cert`), or `None` while it follows the bus.
    pub fn bus_fallback(&self) -> Option<&'static str> {
        self.shared.router.metrics.bus_fallback()
    }

    /// Whether the gossip observer's bus links speak TLS.
    pub fn bus_tls(&self) -> bool {
        self.shared.router.metrics.bus_tls.get() == 1
    }

    /// Points one slot at `addr` as a MOVED would: the map is then wrong until the cluster says
    /// otherwise (tests use it to make the proxy meet a redirect).
    pub fn misroute_slot(&self, slot: u16, addr: &str) {
        self.shared.router.topology.patch_slot(slot, addr);
    }

    /// Graceful shutdown: /readyz turns 503, the listener closes, and every client connection is
    /// closed once the requests it already sent are answered, or when `limit` runs out. Returns
    /// true when every client finished in time.
    pub async fn drain(&self, limit: Duration) -> bool {
        self.shared.draining.store(true, Ordering::Relaxed);
        let _ = self.shutdown.send(true);
        // After the flag: a client registered from now on sees it when it starts.
        self.shared.router.stats.clients.drain_all();
        let deadline = Instant::now() + limit;
        while self.shared.router.stats.connected() > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Stops accepting and stops the background tasks (client tasks end with their connections).
    pub fn stop(&self) {
        let _ = self.shutdown.send(true);
        self.shared.router.stats.clients.drain_all();
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Bootstraps, binds and starts serving. Errors when no seed answers or an address is taken.
pub async fn start(cfg: Config) -> Result<Running, StartError> {
    if cfg.seeds.is_empty() {
        return Err(StartError::NoSeeds);
    }
    // Like the observer's CA file below: unusable certificate files are a configuration error
    // whether or not the cluster answers.
    let tls = match &cfg.tls {
        Some(t) => Some(Arc::new(tls::Tls::load(t).map_err(|(key, why)| StartError::Tls { key, why })?)),
        None => None,
    };
    // Before the cluster is asked anything: a CA file that holds no certificate is a
    // configuration error, whether or not the cluster answers.
    let link = match &cfg.topology.observer {
        Some(url) => Some(
            topology::shared::Link::new(
                url,
                cfg.topology.observer_token.as_ref(),
                cfg.topology.observer_ca_file.as_deref(),
            )
            .map_err(|(key, why)| StartError::Observer { key, why })?,
        ),
        None => None,
    };
    memory::hold_mmap_threshold();
    // Names for the per-command series come from the built-in table, so that they do not depend
    // on which node answered COMMAND.
    let metrics = Metrics::new(&CommandTable::builtin().names(), cfg.admin_listen.is_some())?;
    let workers = workers::Workers::start(workers::count(cfg.limits.threads)).map_err(StartError::Workers)?;
    let store = TopologyStore::new();
    let backend = Backend::new(
        cfg.backend.clone(),
        Auth::logins(&cfg.backend, &cfg.auth.backend_logins(), cfg.routing.read_from.reaches_replicas()),
        store.clone(),
        metrics.clone(),
        workers.len(),
    );
    let poller = Poller::new(cfg.seeds.clone(), backend.auth().clone(), cfg.backend.connect_timeout);
    let (nodes, slots) = poller.fetch(&store).await?;
    store.publish(nodes, slots, Learned::Bootstrap);
    let topo = store.load_full();
    if topo.uncovered() > 0 {
        tracing::warn!(uncovered = topo.uncovered(), "some slots are not served by any master");
    }
    let (mut table, redis_version) = match topo.slot_owners().first() {
        Some(m) => load_table(m, &backend).await,
        None => (CommandTable::builtin(), String::new()),
    };
    table.bind_metrics(&metrics);
    if !cfg.commands.config_set_all_nodes {
        table.refuse_all_nodes(crate::errors::Refusal::NodeAdmin);
    }

    let plain = match cfg.listen {
        Some(a) => Some(bind(a, "listen").await?),
        None => None,
    };
    let secure = match &cfg.tls {
        Some(t) => Some(bind(t.listen, "tls.listen").await?),
        None => None,
    };
    let tls_addr = secure.as_ref().map(|l| l.1);
    // The config refuses to have neither listener.
    let Some(addr) = plain.as_ref().map(|l| l.1).or(tls_addr) else {
        return Err(StartError::NoListener);
    };
    let admin = match cfg.admin_listen {
        Some(a) => Some(admin::bind(a).await?),
        None => None,
    };
    let admin_addr = admin.as_ref().and_then(|l| l.local_addr().ok());
    let (shutdown, shutdown_rx) = watch::channel(false);
    let stats = Arc::new(ProxyStats::new(addr, redis_version, cfg.limits.max_clients));
    let mut router =
        Router::new(store.clone(), poller.clone(), backend.clone(), metrics, stats, cfg.topology.failover_hold);
    router.compute_cross_slot = cfg.keyspace.compute_cross_slot;
    router.reads = crate::route::reads::Reads::new(cfg.routing.read_from, cfg.routing.read_your_writes);
    let router = Arc::new(router);
    if cfg.routing.read_from == crate::config::ReadFrom::Nearest {
        tokio::spawn(crate::route::reads::probe(Arc::downgrade(&router)));
    }
    let conn = Arc::new(conn::Shared {
        router: router.clone(),
        table,
        limits: cfg.limits.clone(),
        auth: Arc::new(cfg.auth.clone()),
        cross_slot: cfg.transactions.cross_slot,
        shutdown: shutdown_rx.clone(),
        usage: Usage::new(cfg.limits.max_memory),
        databases: Arc::new(Databases::new(cfg.keyspace.databases, cfg.keyspace.one_slot_databases.clone())),
        tracking: crate::session::tracking::Hub::new(router.clone()),
    });
    let mut tasks = topology_tasks(&cfg, link, &store, &poller, &router.metrics);
    let shared =
        Arc::new(Shared { cfg, router, conn, draining: AtomicBool::new(false), seen_version: AtomicU64::new(0) });
    let workers = Arc::new(workers);
    // One bound on clients for both listeners.
    let slots = Arc::new(Semaphore::new(shared.cfg.limits.max_clients));
    let listeners =
        [plain.map(|l| (l.0, accept::Kind::Plain)), secure.zip(tls.clone()).map(|(l, t)| (l.0, accept::Kind::Tls(t)))];
    for (l, kind) in listeners.into_iter().flatten() {
        let accept = accept::accept_loop(shared.clone(), l, kind, slots.clone(), workers.clone(), shutdown_rx.clone());
        tasks.push(tokio::spawn(accept));
    }
    if let Some(t) = &tls {
        tasks.push(tokio::spawn(tls::watch_files(t.clone(), shared.router.metrics.clone())));
    }
    tasks.push(tokio::spawn(drop_departed_pools(shared.router.clone())));
    tasks.push(tokio::spawn(route::keep_node_config(shared.router.clone())));
    tasks.push(tokio::spawn(memory::release_after_bursts(shared.router.stats.clone(), shared.conn.usage.clone())));
    if let Some(l) = admin {
        tasks.push(tokio::spawn(admin::serve(shared.clone(), l)));
    }
    if shared.cfg.routing.deprecated_key {
        tracing::warn!(
            read_from = shared.cfg.routing.read_from.name(),
            "backend.read_from is deprecated; set routing.read_from instead (\"replicas\" is \"replica-preferred\")"
        );
    }
    // Addresses as operators grep them (`127.0.0.1:6379`, or `none`), not as Rust's Option.
    let shown = |a: Option<SocketAddr>| a.map_or_else(|| "none".to_string(), |a| a.to_string());
    tracing::info!(listen = %shown(shared.cfg.listen.map(|_| addr)), tls = %shown(tls_addr), admin = %shown(admin_addr), masters = topo.slot_owners().len(), commands = shared.conn.table.len(), "clusterless is serving");
    Ok(Running { shared, addr, tls_addr, tls, admin_addr, shutdown, tasks, _workers: workers })
}

/// A bound listener and the address it got (port 0 picks one).
async fn bind(addr: SocketAddr, what: &'static str) -> Result<(TcpListener, SocketAddr), StartError> {
    let l = TcpListener::bind(addr).await.map_err(|err| StartError::Listen { addr, what, err })?;
    let bound = l.local_addr().map_err(|err| StartError::Listen { addr, what, err })?;
    Ok((l, bound))
}

/// The tasks that keep the slot map current: the CLUSTER SHARDS refresher in every mode (MOVED,
/// lost connections and CLUSTERDOWN ask it for a refresh; with the bus observer its periodic part
/// is the reconciliation interval), plus the shared-observer stream or the bus observer.
fn topology_tasks(
    cfg: &Config,
    observer: Option<topology::shared::Link>,
    store: &Arc<TopologyStore>,
    poller: &Arc<Poller>,
    metrics: &Arc<Metrics>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let tc = &cfg.topology;
    let poll_every = if tc.source == Source::Bus { tc.reconcile_interval } else { tc.refresh_interval };
    let refresher = topology::run_refresher(store.clone(), poller.clone(), poll_every, tc.min_refresh_gap);
    let mut tasks = vec![tokio::spawn(refresher)];
    if let Some(link) = observer {
        // Should the observer be caught lying, the proxy watches the cluster itself, as it would
        // without an observer.
        let own: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> = if tc.source == Source::Bus {
            Box::pin(gossip::run(store.clone(), poller.clone(), observer_config(cfg), metrics.clone()))
        } else {
            let m = metrics.clone();
            Box::pin(async move {
                m.set_topology_source("poll");
                std::future::pending().await
            })
        };
        let follow = topology::shared::subscribe(link, store.clone(), poller.clone(), metrics.clone(), own);
        tasks.push(tokio::spawn(follow));
    } else if tc.source == Source::Bus {
        let observer = gossip::run(store.clone(), poller.clone(), observer_config(cfg), metrics.clone());
        tasks.push(tokio::spawn(observer));
    } else {
        // The start-up read was this poller's first; it follows the cluster from now on.
        metrics.set_topology_source("poll");
    }
    tasks
}

/// The bus observer's settings from the proxy's configuration.
fn observer_config(cfg: &Config) -> gossip::ObserverConfig {
    let tc = &cfg.topology;
    gossip::ObserverConfig {
        interval: tc.bus_ping_interval,
        steady: tc.bus_steady_interval,
        reconcile: tc.reconcile_interval,
        poll: tc.refresh_interval.min(Duration::from_secs(1)),
        connect_timeout: cfg.backend.connect_timeout,
        tls: cfg.backend.tls.clone().filter(|t| t.bus),
    }
}

/// Closes the connection pools of nodes that left the cluster, as each new map is published.
async fn drop_departed_pools(p: Arc<Router>) {
    let mut changes = p.topology.subscribe();
    while changes.changed().await.is_ok() {
        let t = p.topology.load_full();
        p.backend.retain(&|addr| t.nodes.iter().any(|n| n.addr == addr));
        p.dedicated.retain(&|addr| t.nodes.iter().any(|n| n.addr == addr));
    }
}

/// The cluster's command table and Redis version, from one master; the built-in table when the
/// master cannot give it.
async fn load_table(master: &str, backend: &Backend) -> (CommandTable, String) {
    let limit = backend.config().connect_timeout * 3;
    let version = match backend::query(
        master,
        backend.auth(),
        &[&["INFO", "server"]],
        limit,
        Verify::Node(&**backend.directory()),
    )
    .await
    {
        Ok(r) => r
            .first()
            .and_then(crate::resp::as_bulk)
            .flatten()
            .and_then(|b| {
                String::from_utf8_lossy(&b)
                    .lines()
                    .find_map(|l| l.strip_prefix("redis_version:").map(|v| v.trim().to_string()))
            })
            .unwrap_or_default(),
        Err(_) => String::new(),
    };
    match backend::query(master, backend.auth(), &[&["COMMAND"]], limit, Verify::Node(&**backend.directory())).await {
        Ok(r) => match r.first().and_then(|reply| CommandTable::from_command_reply(reply)) {
            Some(t) => return (t, version),
            None => tracing::warn!(node = master, "unreadable COMMAND reply; using the built-in command table"),
        },
        Err(e) => tracing::warn!(node = master, error = %e, "COMMAND failed; using the built-in command table"),
    }
    (CommandTable::builtin(), version)
}
