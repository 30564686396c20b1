//! Start-up and shared state: bootstraps the slot map from the seeds, loads the command table from
//! a master, binds the listener, accepts clients (bounded by `max_clients`) and hands each to its
//! own task. [`Proxy`] is the read-mostly state every client task shares.

pub mod admin;
pub mod workers;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

use crate::backend::{self, Backend};
use crate::command::CommandTable;
use crate::config::{Config, Source};
use crate::metrics::Metrics;
use crate::topology::gossip::observer::{self, ObserverConfig};
use crate::topology::{self, TopologyStore};

/// State shared by every client task.
pub struct Proxy {
    pub cfg: Config,
    pub table: CommandTable,
    pub topology: Arc<TopologyStore>,
    pub backend: Arc<Backend>,
    /// Exclusive connections: blocking commands, WATCH, subscriptions.
    pub dedicated: crate::backend::dedicated::DedicatedPool,
    /// Scripts seen, for reloading on NOSCRIPT.
    pub scripts: crate::route::scripts::Scripts,
    pub stats: Stats,
    pub started: Instant,
    /// The address actually bound (the configured port may be 0).
    pub local_addr: SocketAddr,
    /// `redis_version` the masters report, shown in HELLO and INFO.
    pub redis_version: String,
    pub metrics: Arc<Metrics>,
    /// Set at the start of a graceful shutdown: /readyz says 503, clients close once idle.
    pub draining: AtomicBool,
    /// Flips to true when draining starts; client tasks watch it.
    pub shutdown: watch::Receiver<bool>,
    any_rr: AtomicUsize,
    /// Last topology version reflected in the metrics (to advance the changes counter).
    seen_version: AtomicU64,
}

/// Counters the proxy keeps for INFO (Prometheus metrics build on them later).
#[derive(Default)]
pub struct Stats {
    pub connected_clients: AtomicUsize,
    pub total_connections: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub next_client_id: AtomicU64,
}

impl Proxy {
    /// Round-robin counter for commands any master can answer.
    pub fn next_any(&self) -> usize {
        self.any_rr.fetch_add(1, Ordering::Relaxed)
    }

    /// Brings the gauges that mirror other state up to date; called before each scrape.
    pub fn refresh_gauges(&self) {
        let m = &self.metrics;
        let t = self.topology.load();
        m.topology_version.set(t.version as i64);
        let seen = self.seen_version.swap(t.version, Ordering::Relaxed);
        if t.version > seen {
            m.topology_changes.inc_by(t.version - seen);
        }
        m.topology_age.set(t.learned_at.elapsed().as_secs_f64());
        m.slots_uncovered.set(t.uncovered() as i64);
        m.masters.set(t.slot_owners().len() as i64);
        m.clients_connected.set(self.stats.connected_clients.load(Ordering::Relaxed) as i64);
        let sync = |c: &prometheus::IntCounter, v: u64| {
            if v > c.get() {
                c.inc_by(v - c.get());
            }
        };
        sync(&m.clients_accepted, self.stats.total_connections.load(Ordering::Relaxed));
        sync(&m.clients_rejected, self.stats.rejected_connections.load(Ordering::Relaxed));
        m.draining.set(self.draining.load(Ordering::Relaxed) as i64);
    }
}

/// Why the proxy could not start; `main` prints it on one line and exits with code 2.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no seeds: pass --seed HOST:PORT or set `seeds` in the config file")]
    NoSeeds,
    #[error("cannot reach the cluster: {0}")]
    Unreachable(String),
    #[error("cannot listen on {addr}: {err}")]
    Listen { addr: SocketAddr, err: std::io::Error },
    #[error("{0}")]
    Admin(String),
}

/// A started proxy: its address, and the switch that stops it.
pub struct Running {
    pub proxy: Arc<Proxy>,
    pub addr: SocketAddr,
    /// Where the admin HTTP endpoint listens, when it is on.
    pub admin_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Held only: the client threads stop when the last handle is dropped.
    _workers: Arc<crate::server::workers::Workers>,
}

impl Running {
    /// Graceful shutdown: /readyz turns 503, the listener closes, and every client connection is
    /// closed once the requests it already sent are answered, or when `limit` runs out. Returns
    /// true when every client finished in time.
    pub async fn drain(&self, limit: Duration) -> bool {
        self.proxy.draining.store(true, Ordering::Relaxed);
        let _ = self.shutdown.send(true);
        let deadline = Instant::now() + limit;
        while self.proxy.stats.connected_clients.load(Ordering::Relaxed) > 0 {
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

/// Bootstraps, binds and starts serving. Errors when no seed answers or the address is taken.
pub async fn start(cfg: Config) -> Result<Running, StartError> {
    if cfg.seeds.is_empty() {
        return Err(StartError::NoSeeds);
    }
    let metrics_on = cfg.admin_listen.is_some();
    // Names for the per-command series come from the built-in table, so that they do not depend
    // on which node answered COMMAND.
    let names = CommandTable::builtin().names();
    let metrics = Metrics::new(&names, metrics_on).map_err(|e| StartError::Admin(format!("metrics: {e}")))?;
    let workers = crate::server::workers::Workers::start(crate::server::workers::count(cfg.limits.threads))
        .map_err(|e| StartError::Admin(format!("cannot start the worker threads: {e}")))?;
    let backend = Backend::new(cfg.backend.clone(), metrics.clone(), workers.len());
    let store = TopologyStore::new();
    let limit = cfg.backend.connect_timeout;
    let (nodes, slots) =
        topology::fetch(&store, &cfg.seeds, backend.auth(), limit).await.map_err(StartError::Unreachable)?;
    store.publish(nodes, slots, "bootstrap");
    let topo = store.load_full();
    if topo.uncovered() > 0 {
        tracing::warn!(uncovered = topo.uncovered(), "some slots are not served by any master");
    }
    let first_master = topo.slot_owners().first().map(|s| s.to_string());
    let (mut table, redis_version) = match &first_master {
        Some(m) => load_table(m, &backend).await,
        None => (CommandTable::builtin(), String::new()),
    };
    table.bind_metrics(&metrics);

    let listener = TcpListener::bind(cfg.listen).await.map_err(|err| StartError::Listen { addr: cfg.listen, err })?;
    let addr = listener.local_addr().map_err(|err| StartError::Listen { addr: cfg.listen, err })?;
    let admin = match cfg.admin_listen {
        Some(a) => Some(crate::server::admin::bind(a).await.map_err(StartError::Admin)?),
        None => None,
    };
    let admin_addr = admin.as_ref().and_then(|l| l.local_addr().ok());
    let (shutdown, shutdown_rx) = watch::channel(false);
    let proxy = Arc::new(Proxy {
        table,
        topology: store.clone(),
        backend: backend.clone(),
        dedicated: crate::backend::dedicated::DedicatedPool::new(
            backend.auth().clone(),
            cfg.backend.connect_timeout,
            cfg.backend.dedicated_per_node,
        ),
        scripts: crate::route::scripts::Scripts::default(),
        stats: Stats::default(),
        started: Instant::now(),
        local_addr: addr,
        redis_version,
        metrics,
        draining: AtomicBool::new(false),
        shutdown: shutdown_rx.clone(),
        any_rr: AtomicUsize::new(0),
        seen_version: AtomicU64::new(0),
        cfg,
    });
    let tc = &proxy.cfg.topology;
    // MOVED, lost connections and CLUSTERDOWN ask for a CLUSTER SHARDS refresh in either mode;
    // with the bus observer the periodic part is its reconciliation interval.
    let poll_every = if tc.source == Source::Bus { tc.reconcile_interval } else { tc.refresh_interval };
    let refresher = tokio::spawn(topology::run_refresher(
        store.clone(),
        proxy.cfg.seeds.clone(),
        backend.auth().clone(),
        limit,
        poll_every,
        tc.min_refresh_gap,
    ));
    let mut tasks = vec![refresher];
    if let Some(url) = tc.observer.clone() {
        tasks.push(tokio::spawn(crate::topology::gossip::shared::subscribe(
            url,
            store,
            proxy.cfg.seeds.clone(),
            backend.auth().clone(),
            proxy.metrics.clone(),
            limit,
        )));
    } else if tc.source == Source::Bus {
        let ocfg = ObserverConfig {
            interval: tc.bus_ping_interval,
            reconcile: tc.reconcile_interval,
            poll: tc.refresh_interval.min(Duration::from_secs(1)),
            connect_timeout: limit,
        };
        tasks.push(tokio::spawn(observer::run(
            store,
            proxy.cfg.seeds.clone(),
            backend.auth().clone(),
            ocfg,
            proxy.metrics.clone(),
        )));
    }
    let workers = Arc::new(workers);
    let acceptor = tokio::spawn(accept_loop(proxy.clone(), listener, workers.clone(), shutdown_rx));
    tasks.push(acceptor);
    tasks.push(tokio::spawn(drop_departed_pools(proxy.clone())));
    tasks.push(tokio::spawn(release_memory_after_bursts(proxy.clone())));
    if let Some(l) = admin {
        tasks.push(tokio::spawn(crate::server::admin::serve(proxy.clone(), l)));
    }
    tracing::info!(listen = %addr, admin = ?admin_addr, masters = topo.slot_owners().len(), commands = proxy.table.len(), "clusterless is serving");
    Ok(Running { proxy, addr, admin_addr, shutdown, tasks, _workers: workers })
}

/// Closes the connection pools of nodes that left the cluster, as each new map is published.
async fn drop_departed_pools(p: Arc<Proxy>) {
    let mut changes = p.topology.subscribe();
    while changes.changed().await.is_ok() {
        let t = p.topology.load_full();
        p.backend.retain(&|addr| t.nodes.iter().any(|n| n.addr == addr));
        p.dedicated.retain(&|addr| t.nodes.iter().any(|n| n.addr == addr));
    }
}

/// Gives memory back to the system after a burst of clients has gone. glibc's allocator keeps the
/// pages of freed client buffers in its arenas (measured: 72 MB stayed resident after 10,000 idle
/// clients disconnected, against 9 MB before); `malloc_trim` returns them.
async fn release_memory_after_bursts(p: Arc<Proxy>) {
    let mut peak = 0usize;
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        let now = p.stats.connected_clients.load(Ordering::Relaxed);
        peak = peak.max(now);
        if peak >= now + 256 && now < peak / 2 {
            trim();
            peak = now;
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() {
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes no pointers from us.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

async fn load_table(master: &str, backend: &Backend) -> (CommandTable, String) {
    let limit = backend.config().connect_timeout * 3;
    let version = match backend::query(master, backend.auth(), &[&["INFO", "server"]], limit).await {
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
    match backend::query(master, backend.auth(), &[&["COMMAND"]], limit).await {
        Ok(r) => match r.first().and_then(|reply| CommandTable::from_command_reply(reply)) {
            Some(t) => return (t, version),
            None => tracing::warn!(node = master, "unreadable COMMAND reply; using the built-in command table"),
        },
        Err(e) => tracing::warn!(node = master, error = %e, "COMMAND failed; using the built-in command table"),
    }
    (CommandTable::builtin(), version)
}

async fn accept_loop(
    proxy: Arc<Proxy>,
    listener: TcpListener,
    workers: Arc<crate::server::workers::Workers>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(proxy.cfg.limits.max_clients));
    let mut backoff = std::time::Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            // Returning drops the listener: new connections are refused from here on.
            _ = shutdown.changed() => return,
        };
        let (mut stream, peer) = match accepted {
            Ok(s) => {
                backoff = std::time::Duration::from_millis(5);
                s
            }
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(1));
                continue;
            }
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                proxy.stats.rejected_connections.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%peer, "client rejected: max number of clients reached");
                tokio::spawn(async move {
                    let _ = stream.write_all(b"-ERR max number of clients reached\r\n").await;
                    let _ = stream.shutdown().await;
                });
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // The socket moves to the worker's own reactor.
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "cannot hand the client to a worker");
                continue;
            }
        };
        let p = proxy.clone();
        workers.spawn(async move {
            match TcpStream::from_std(stream) {
                Ok(stream) => crate::conn::serve(p, stream, peer).await,
                Err(e) => tracing::warn!(%peer, error = %e, "cannot register the client with its worker"),
            }
            drop(permit);
        });
    }
}
