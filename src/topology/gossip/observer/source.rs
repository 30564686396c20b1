//! Where the observer's map comes from, said in the log and the metrics: the bus while any node
//! answers a PING; polling `CLUSTER SHARDS` while none does, or while the TLS bus refuses us
//! (a failed handshake, or no client certificate to offer a `tls-cluster yes` bus at all).

use super::Observer;

impl Observer {
    /// Follows the bus (`polling` false) or polls, and says so when that changes.
    pub(super) fn set_source(&mut self, polling: bool) {
        if polling != self.polling {
            match (polling, &self.tls_failed) {
                (true, Some(why)) => {
                    tracing::warn!(error = %why, "cluster bus TLS handshake failed on every link: following the cluster by polling CLUSTER SHARDS");
                    self.metrics.set_bus_fallback(Some("tls_handshake"));
                }
                (true, None) => {
                    tracing::warn!(
                        "cluster bus unreachable (no PONG from any node): following the cluster by polling CLUSTER SHARDS"
                    );
                    self.metrics.set_bus_fallback(Some("unreachable"));
                }
                (false, _) => {
                    tracing::info!("cluster bus reachable again: following the cluster from PONGs");
                    self.metrics.set_bus_fallback(None);
                }
            }
        }
        self.polling = polling;
        self.store.bus_authoritative.store(!polling, std::sync::atomic::Ordering::Relaxed);
        let source = match (polling, self.heard) {
            (true, _) => "poll",
            (false, true) => "bus",
            (false, false) => "bootstrap",
        };
        self.metrics.set_topology_source(source);
    }

    /// Marks silent nodes unreachable and switches to polling when no node answers at all.
    pub(super) fn check_health(&mut self) {
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
        // New links need a moment to connect and hear their first PONG: silence before one
        // PONG timeout has passed is not yet an unreachable bus.
        let starting = !self.heard && self.links_since.elapsed() < timeout;
        if !self.peers.is_empty() && !starting {
            self.set_source(!any_answer);
        }
        if changed {
            self.publish();
        }
    }

    /// A TLS cluster bus requires a client certificate and none is configured: no link could
    /// ever be made, so the observer polls from the start, and says why once.
    pub(super) async fn poll_only(&mut self) {
        tracing::warn!(
            "the cluster bus speaks TLS and requires a client certificate, but backend.tls has no cert_file/key_file: following the cluster by polling CLUSTER SHARDS"
        );
        self.polling = true;
        self.store.bus_authoritative.store(false, std::sync::atomic::Ordering::Relaxed);
        self.metrics.set_topology_source("poll");
        self.metrics.set_bus_fallback(Some("no_client_cert"));
        loop {
            self.poll().await;
            tokio::time::sleep(self.cfg.poll).await;
        }
    }
}
