//! Facts about the proxy process itself that its answers show as one server's would: address,
//! uptime, run id, the cluster's Redis version, and client counts (connected, blocked, subscribed,
//! watching). The server owns them; INFO, HELLO and CLIENT read them, client connections keep the
//! counts, the registry of its clients ([`clients`]) and its monitors ([`monitor`]).

pub mod clients;
pub mod inbox;
pub mod monitor;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::time::Instant;

pub struct ProxyStats {
    pub started: Instant,
    /// The address actually bound (the configured port may be 0).
    pub local_addr: SocketAddr,
    /// `redis_version` the masters report, shown in HELLO and INFO.
    pub redis_version: String,
    pub max_clients: usize,
    pub connected_clients: AtomicUsize,
    pub total_connections: AtomicU64,
    pub rejected_connections: AtomicU64,
    /// This process's `run_id` (40 hex characters, new at every start, as Redis's): the masters'
    /// own would change with a failover and be the same for every proxy in front of them.
    pub run_id: String,
    /// The replication id shown by INFO replication (the proxy is a master without replicas).
    pub replid: String,
    /// The clients connected now, for CLIENT LIST / INFO / KILL.
    pub clients: Arc<clients::Registry>,
    /// The clients in MONITOR.
    pub monitors: monitor::Monitors,
    next_client_id: AtomicU64,
    counts: [AtomicUsize; 5],
}

/// A client count INFO clients shows, held while a client is in that state ([`ProxyStats::hold`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    /// Waiting in a blocking command (BLPOP, XREAD BLOCK, WAIT, ...): `blocked_clients`.
    Blocked,
    /// Blocked with a timeout: `clients_in_timeout_table`.
    InTimeoutTable,
    /// Holding at least one subscription: `pubsub_clients`.
    PubSub,
    /// Holding at least one WATCH: `watching_clients`.
    Watching,
    /// With CLIENT TRACKING on: `tracking_clients`.
    Tracking,
}

/// One client counted in a [`Count`] until this is dropped (also when its connection ends).
pub struct Held {
    stats: Arc<ProxyStats>,
    what: Count,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.stats.counts[self.what as usize].fetch_sub(1, Ordering::Relaxed);
    }
}

/// 40 random hex characters, as Redis makes its run id.
fn random_hex40() -> String {
    use rand::Rng;
    let mut r = rand::rng();
    (0..40).map(|_| char::from_digit(r.random_range(0..16), 16).unwrap_or('0')).collect()
}

impl ProxyStats {
    pub fn new(local_addr: SocketAddr, redis_version: String, max_clients: usize) -> ProxyStats {
        ProxyStats {
            started: Instant::now(),
            local_addr,
            redis_version,
            max_clients,
            connected_clients: AtomicUsize::new(0),
            total_connections: AtomicU64::new(0),
            rejected_connections: AtomicU64::new(0),
            run_id: random_hex40(),
            replid: random_hex40(),
            clients: Arc::default(),
            monitors: monitor::Monitors::default(),
            next_client_id: AtomicU64::new(0),
            counts: Default::default(),
        }
    }

    /// Counts one client in `what` until the returned guard is dropped.
    pub fn hold(self: &Arc<Self>, what: Count) -> Held {
        self.counts[what as usize].fetch_add(1, Ordering::Relaxed);
        Held { stats: self.clone(), what }
    }

    /// How many clients are in `what` now.
    pub fn count(&self, what: Count) -> usize {
        self.counts[what as usize].load(Ordering::Relaxed)
    }

    /// A client connected: its id (1, 2, ...).
    pub fn client_connected(&self) -> u64 {
        self.connected_clients.fetch_add(1, Ordering::Relaxed);
        self.total_connections.fetch_add(1, Ordering::Relaxed);
        self.next_client_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn client_disconnected(&self) {
        self.connected_clients.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn connected(&self) -> usize {
        self.connected_clients.load(Ordering::Relaxed)
    }

    /// The Redis version to report: the cluster's, or a 7.0 baseline when it was not learned.
    pub fn version(&self) -> &str {
        if self.redis_version.is_empty() {
            "7.0.0"
        } else {
            &self.redis_version
        }
    }
}
