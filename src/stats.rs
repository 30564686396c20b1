//! Facts about the proxy process itself that its answers show as one server's would: address,
//! uptime, the cluster's Redis version, and client counts. The server owns them; INFO, HELLO and
//! CLIENT read them, client connections keep the counts.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

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
    next_client_id: AtomicU64,
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
            next_client_id: AtomicU64::new(0),
        }
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
