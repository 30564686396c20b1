//! `clusterless observe`: one shared observer for many proxies. It bootstraps from the seeds, runs
//! the bus observer (polling on its own when the bus is unreachable) and serves its snapshot over
//! HTTP (`/v1/topology`, `/v1/topology/watch`, `/healthz`, `/metrics`), all but `/healthz`
//! behind a bearer token when one is given.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

use super::StartError;
use crate::backend::Auth;
use crate::config::{Config, Secret};
use crate::metrics::Metrics;
use crate::topology::{self, gossip, Learned, Poller, TopologyStore};

/// A running shared observer; dropping it stops it.
pub struct ObserverService {
    addr: SocketAddr,
    store: Arc<TopologyStore>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl ObserverService {
    /// Where it serves HTTP.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The map it serves now.
    pub fn topology(&self) -> Arc<topology::Topology> {
        self.store.load_full()
    }
}

impl Drop for ObserverService {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts a shared observer serving on `http`, open to all.
pub async fn start(cfg: &Config, http: SocketAddr) -> Result<ObserverService, StartError> {
    start_with_token(cfg, http, None).await
}

/// Starts a shared observer serving on `http`; with `token`, subscribers must send it.
pub async fn start_with_token(
    cfg: &Config,
    http: SocketAddr,
    token: Option<Secret>,
) -> Result<ObserverService, StartError> {
    if cfg.seeds.is_empty() {
        return Err(StartError::NoSeeds);
    }
    let poller = Poller::new(cfg.seeds.clone(), Auth::from_config(&cfg.backend), cfg.backend.connect_timeout);
    let store = TopologyStore::new();
    let (nodes, slots) = poller.fetch(&store).await?;
    store.publish(nodes, slots, Learned::Bootstrap);
    let metrics = Metrics::new(&[], true)?;
    let listener =
        TcpListener::bind(http).await.map_err(|err| StartError::Listen { addr: http, what: "--http", err })?;
    let addr = listener.local_addr().map_err(|err| StartError::Listen { addr: http, what: "--http", err })?;
    let ocfg = super::observer_config(cfg);
    let tasks = vec![
        tokio::spawn(gossip::run(store.clone(), poller, ocfg, metrics.clone())),
        tokio::spawn(topology::shared::serve(store.clone(), metrics, listener, token.clone())),
    ];
    tracing::info!(http = %addr, token = token.is_some(), "shared observer serving /v1/topology and /v1/topology/watch");
    Ok(ObserverService { addr, store, tasks })
}
