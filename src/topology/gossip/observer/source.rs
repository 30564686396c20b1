//! Where the observer's map comes from, said in the log and the metrics: the bus while any node
//! answers a PING; polling `CLUSTER SHARDS` while none does, or while a TLS bus refuses every
//! session (nodes with `tls-auth-clients yes` require a client certificate on the bus too; one
//! is tried without when none is configured, since nodes with `optional` or `no` accept that).

use super::Observer;

impl Observer {
    /// Follows the bus (`polling` false) or polls, and says so, with why, when that or the
    /// reason changes (a bus that was unreachable may turn out to refuse our TLS sessions).
    pub(super) fn set_source(&mut self, polling: bool) {
        let no_cert = self.cfg.tls.as_ref().is_some_and(|t| !t.client_cert);
        let reason = match (polling, &self.tls_failed) {
            (false, _) => None,
            (true, Some(_)) if no_cert => Some("no_client_cert"),
            (true, Some(_)) => Some("tls_handshake"),
            (true, None) => Some("unreachable"),
        };
        if reason != self.metrics.bus_fallback() {
            let why = self.tls_failed.as_deref().unwrap_or_default();
            match reason {
                Some("no_client_cert") => {
                    tracing::warn!(error = %why, "the TLS cluster bus refused every session and backend.tls has no cert_file/key_file (nodes with tls-auth-clients yes require a client certificate on the bus): following the cluster by polling CLUSTER SHARDS")
                }
                Some("tls_handshake") => {
                    tracing::warn!(error = %why, "cluster bus TLS handshake failed on every link: following the cluster by polling CLUSTER SHARDS")
                }
                Some(_) => tracing::warn!(
                    "cluster bus unreachable (no PONG from any node): following the cluster by polling CLUSTER SHARDS"
                ),
                None => tracing::info!("cluster bus reachable again: following the cluster from PONGs"),
            }
            self.metrics.set_bus_fallback(reason);
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
        let stale = self.cfg.stale_after();
        let mut changed = false;
        for p in self.peers.values_mut() {
            let fresh = p.last_pong.is_some_and(|t| t.elapsed() < stale);
            if p.reachable && !fresh {
                tracing::info!(node = %p.addr, "node stopped answering on the bus");
                changed = true;
                p.reachable = false;
            }
        }
        let any_answer =
            self.peers.values().any(|p| p.reachable || p.last_pong.is_some_and(|t| t.elapsed() < timeout * 3));
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
}
