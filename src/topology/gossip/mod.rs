//! The cluster-bus side of topology: the wire codec ([`codec`]), the per-node PING links
//! ([`link`]), `CLUSTER NODES` for the node set and bus ports ([`nodes`]), and the observer that
//! settles slot ownership from the PONGs ([`observer`]).

pub mod codec;
mod link;
mod nodes;
mod observer;

pub use observer::run;

use std::time::Duration;

use crate::config::NodeTls;

/// Observer settings.
#[derive(Clone, Debug)]
pub struct ObserverConfig {
    /// Time between PINGs on one link while something about its node is changing (the fast beat).
    pub interval: Duration,
    /// Time between PINGs on one link while the cluster is quiet (the steady beat; at least
    /// `interval`).
    pub steady: Duration,
    /// Periodic `CLUSTER NODES`/`SHARDS` reconciliation.
    pub reconcile: Duration,
    /// Poll interval while the bus is unusable.
    pub poll: Duration,
    /// Connect timeout for the client-port queries.
    pub connect_timeout: Duration,
    /// TLS on the bus (`tls-cluster yes`; the nodes then require a client certificate): the
    /// backend's TLS client, certificate and key.
    pub tls: Option<NodeTls>,
}

impl ObserverConfig {
    /// A node that has not answered a PING for this long is unreachable (max(1 s, 2 × interval)).
    pub fn pong_timeout(&self) -> Duration {
        (self.interval * 2).max(Duration::from_secs(1))
    }

    /// A node whose last PONG is older than this is unreachable even if its link said nothing: one
    /// steady period plus the PONG timeout.
    pub fn stale_after(&self) -> Duration {
        self.steady.max(self.interval) + self.pong_timeout()
    }
}
