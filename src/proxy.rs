//! Start-up and shared state: bootstraps the slot map from the seeds, loads the command table from
//! a master, binds the listener, accepts clients (bounded by `max_clients`) and hands each to its
//! own task. [`Proxy`] is the read-mostly state every client task shares.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

use crate::backend::{self, Backend};
use crate::command::CommandTable;
use crate::config::Config;
use crate::topology::{self, TopologyStore};

/// State shared by every client task.
pub struct Proxy {
    pub cfg: Config,
    pub table: CommandTable,
    pub topology: Arc<TopologyStore>,
    pub backend: Arc<Backend>,
    pub stats: Stats,
    pub started: Instant,
    /// The address actually bound (the configured port may be 0).
    pub local_addr: SocketAddr,
    /// `redis_version` the masters report, shown in HELLO and INFO.
    pub redis_version: String,
    any_rr: AtomicUsize,
}

/// Counters the proxy keeps for INFO (Prometheus metrics build on them later).
#[derive(Default)]
pub struct Stats {
    pub connected_clients: AtomicUsize,
    pub total_connections: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub total_commands: AtomicU64,
    pub next_client_id: AtomicU64,
}

impl Proxy {
    /// Round-robin counter for commands any master can answer.
    pub fn next_any(&self) -> usize {
        self.any_rr.fetch_add(1, Ordering::Relaxed)
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
}

/// A started proxy: its address, and the switch that stops it.
pub struct Running {
    pub proxy: Arc<Proxy>,
    pub addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
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
    let backend = Backend::new(cfg.backend.clone());
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
    let (table, redis_version) = match &first_master {
        Some(m) => load_table(m, &backend).await,
        None => (CommandTable::builtin(), String::new()),
    };

    let listener = TcpListener::bind(cfg.listen).await.map_err(|err| StartError::Listen { addr: cfg.listen, err })?;
    let addr = listener.local_addr().map_err(|err| StartError::Listen { addr: cfg.listen, err })?;
    let proxy = Arc::new(Proxy {
        table,
        topology: store.clone(),
        backend: backend.clone(),
        stats: Stats::default(),
        started: Instant::now(),
        local_addr: addr,
        redis_version,
        any_rr: AtomicUsize::new(0),
        cfg,
    });
    let (shutdown, shutdown_rx) = watch::channel(false);
    let refresher = tokio::spawn(topology::run_refresher(
        store,
        proxy.cfg.seeds.clone(),
        backend.auth().clone(),
        limit,
        proxy.cfg.topology.refresh_interval,
        proxy.cfg.topology.min_refresh_gap,
    ));
    let acceptor = tokio::spawn(accept_loop(proxy.clone(), listener, shutdown_rx));
    tracing::info!(listen = %addr, masters = topo.slot_owners().len(), commands = proxy.table.len(), "clusterless is serving");
    Ok(Running { proxy, addr, shutdown, tasks: vec![refresher, acceptor] })
}

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

async fn accept_loop(proxy: Arc<Proxy>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(proxy.cfg.limits.max_clients));
    let mut backoff = std::time::Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
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
        let p = proxy.clone();
        tokio::spawn(async move {
            crate::client::serve(p, stream, peer).await;
            drop(permit);
        });
    }
}
