//! The handles the hot path records through, each resolved once: a command name's counters
//! (found by position, not by a label hash, per request) and one backend connection's series.

use prometheus::{Histogram, IntCounter, IntGauge};

use super::Metrics;

/// Result label of `clusterless_commands_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok = 0,
    Error = 1,
    Redirect = 2,
}

/// The three counters of one command name.
pub struct CommandCounters(pub(super) [IntCounter; 3]);

impl CommandCounters {
    #[inline]
    pub fn record(&self, o: Outcome) {
        self.0[o as usize].inc();
    }

    #[inline]
    pub fn record_n(&self, o: Outcome, n: u64) {
        self.0[o as usize].inc_by(n);
    }
}

/// Metrics of one backend connection.
#[derive(Clone)]
pub struct NodeMetrics {
    pub enabled: bool,
    pub connections: IntGauge,
    pub latency: Histogram,
    pub lost: IntCounter,
    pub timeout: IntCounter,
    pub connect: IntCounter,
}

impl Metrics {
    /// Position of a command name's counters, for [`crate::command::CommandTable::bind_metrics`].
    pub fn command_id(&self, name: &str) -> Option<u32> {
        self.by_name.get(name).map(|&i| i as u32)
    }

    /// Counters by position: an index, not a hash, per request.
    #[inline]
    pub fn command_by_id(&self, id: u32) -> &CommandCounters {
        self.commands.get(id as usize).unwrap_or(&self.other)
    }

    /// Per-node handles, resolved once per backend connection.
    pub fn node(&self, node: &str) -> NodeMetrics {
        NodeMetrics {
            enabled: self.enabled,
            connections: self.backend_connections.with_label_values(&[node]),
            latency: self.backend_latency.with_label_values(&[node]),
            lost: self.backend_errors.with_label_values(&[node, "lost"]),
            timeout: self.backend_errors.with_label_values(&[node, "timeout"]),
            connect: self.backend_errors.with_label_values(&[node, "connect"]),
        }
    }

    /// Forgets per-node series of nodes that left the cluster.
    pub fn forget_node(&self, node: &str) {
        let _ = self.backend_connections.remove_label_values(&[node]);
        let _ = self.backend_latency.remove_label_values(&[node]);
        for k in ["lost", "timeout", "connect"] {
            let _ = self.backend_errors.remove_label_values(&[node, k]);
        }
    }
}
