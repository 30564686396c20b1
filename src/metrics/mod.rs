//! Prometheus metrics: one registry per proxy and the handles the hot path uses. Every labelled
//! child that a request touches is resolved once (per command name, per class, per node
//! connection) so recording is an atomic add, never a label hash; label values are bounded
//! (command names come from the command table, everything else is `other`).

use std::collections::HashMap;
use std::sync::Arc;

mod handles;

pub use handles::{CommandCounters, NodeMetrics, Outcome};

use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry,
};

/// Latency buckets from 50 µs to about 1.6 s.
fn latency_buckets() -> Vec<f64> {
    exponential_buckets(0.00005, 2.0, 16).unwrap_or_default()
}

/// Every metric of the proxy.
pub struct Metrics {
    pub registry: Registry,
    /// When false nothing is recorded (admin endpoint off), to measure what recording costs.
    pub enabled: bool,
    /// Indexed by [`crate::command::CommandSpec::metric_id`] (the order of the names given to `new`).
    commands: Vec<CommandCounters>,
    by_name: HashMap<String, usize>,
    other: CommandCounters,
    /// Indexed by [`Timed`].
    latency: Vec<Histogram>,
    pub clients_connected: IntGauge,
    pub clients_accepted: IntCounter,
    pub clients_rejected: IntCounter,
    pub clients_protocol_errors: IntCounter,
    pub bytes_in: IntCounter,
    pub bytes_out: IntCounter,
    backend_connections: IntGaugeVec,
    backend_latency: HistogramVec,
    backend_errors: IntCounterVec,
    redirects: IntCounterVec,
    pub retries: IntCounter,
    pub held: IntCounter,
    pub hold_seconds: Histogram,
    pub topology_version: IntGauge,
    pub topology_changes: IntCounter,
    pub topology_age: prometheus::Gauge,
    topology_source: IntGaugeVec,
    pub slots_uncovered: IntGauge,
    pub masters: IntGauge,
    pub draining: IntGauge,
    /// PINGs sent on the bus, by the beat they went at (`slow` while the node is quiet, `fast`
    /// while something about it is changing).
    pub bus_pings: IntCounterVec,
    /// Nodes the observer PINGs at the fast beat now.
    pub bus_fast_nodes: IntGauge,
    pub bus_pongs: IntCounter,
    pub bus_rtt: HistogramVec,
    /// Per node: 0 up, 1 suspected (PFAIL reports), 2 failed (FAIL), 3 unreachable from here.
    pub node_health: IntGaugeVec,
    /// Clients closed for overcoming their output buffer limit, by class.
    output_limit_closed: IntCounterVec,
    /// Clients closed for holding the most output when `limits.max_memory` was passed.
    pub clients_evicted: IntCounter,
    /// Bytes buffered for all clients (what `limits.max_memory` caps).
    pub buffered_bytes: IntGauge,
    /// 1 while past 3/4 of `limits.max_memory` (new requests refused with -OOM).
    pub memory_refusing: IntGauge,
    /// Node connections refused because the node was not the one the slot map names there.
    pub nodes_refused: IntCounter,
    /// 1 once the shared observer was caught placing a node where the cluster does not (the
    /// proxy then watches the cluster itself).
    pub observer_distrusted: IntGauge,
    /// Reloads of the TLS listener's files, by result (`ok`, `error`: the old ones stay).
    pub tls_reloads: IntCounterVec,
    /// TLS handshakes with clients that failed, by reason (`timeout`, `error`).
    pub tls_handshake_failures: IntCounterVec,
    /// 1 while the gossip observer's bus links speak TLS (`tls-cluster yes`).
    pub bus_tls: IntGauge,
    /// Why the gossip observer polls instead of following the bus (1 for the reason in effect).
    bus_fallback: IntGaugeVec,
}

/// The values of `clusterless_bus_fallback{reason}`: no node answers on the bus; the bus speaks
/// TLS and the handshake fails; the bus speaks TLS and no client certificate is configured.
pub const BUS_FALLBACK_REASONS: [&str; 3] = ["unreachable", "tls_handshake", "no_client_cert"];

/// The values of `clusterless_topology_source{source}`: `bootstrap` while the map in use is the
/// one read at start-up and nothing follows the cluster yet (the bus observer has had no PONG,
/// the shared observer no snapshot); then the source that keeps it current.
const SOURCES: [&str; 4] = ["bootstrap", "bus", "poll", "observer"];

/// The classes commands are timed by (`clusterless_command_duration_seconds{class}`).
pub const CLASSES: [&str; 10] =
    ["keyed", "fanout", "all_masters", "any_master", "scan", "info", "local", "refused", "blocking", "transaction"];

/// Index into [`CLASSES`]: the hot path picks its histogram by position, never by label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timed {
    Keyed = 0,
    Fanout,
    AllMasters,
    AnyMaster,
    Scan,
    Info,
    Local,
    Refused,
    Blocking,
    Transaction,
}

macro_rules! reg {
    ($r:expr, $m:expr) => {{
        let m = $m;
        // Registration fails only on a duplicate name, which the caller reports as an error.
        $r.register(Box::new(m.clone())).map(|_| m)
    }};
}

impl Metrics {
    /// Builds the registry with a counter set for each of `command_names`.
    pub fn new(command_names: &[String], enabled: bool) -> Result<Arc<Metrics>, prometheus::Error> {
        let r = Registry::new();
        let cmds = reg!(
            r,
            IntCounterVec::new(
                Opts::new("clusterless_commands_total", "Commands answered, by command and result"),
                &["command", "result"]
            )?
        )?;
        let counters = |name: &str| {
            CommandCounters([
                cmds.with_label_values(&[name, "ok"]),
                cmds.with_label_values(&[name, "error"]),
                cmds.with_label_values(&[name, "redirect"]),
            ])
        };
        let commands = command_names.iter().map(|n| counters(n)).collect();
        let by_name = command_names.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect();
        let other = counters("other");
        let latency_vec = reg!(
            r,
            HistogramVec::new(
                HistogramOpts::new("clusterless_command_duration_seconds", "Time from request parsed to reply ready")
                    .buckets(latency_buckets()),
                &["class"]
            )?
        )?;
        let latency = CLASSES.iter().map(|c| latency_vec.with_label_values(&[c])).collect();
        let topology_source = reg!(
            r,
            IntGaugeVec::new(
                Opts::new("clusterless_topology_source", "Where the slot map comes from (1 = active)"),
                &["source"]
            )?
        )?;
        for (s, v) in SOURCES.iter().zip([1, 0, 0, 0]) {
            topology_source.with_label_values(&[s]).set(v);
        }
        let redirects = reg!(
            r,
            IntCounterVec::new(
                Opts::new("clusterless_redirects_total", "Redirect and retry replies from nodes"),
                &["kind"]
            )?
        )?;
        for k in ["moved", "ask", "tryagain", "clusterdown"] {
            redirects.with_label_values(&[k]);
        }
        Ok(Arc::new(Metrics {
            enabled,
            commands,
            by_name,
            other,
            latency,
            clients_connected: reg!(
                r,
                IntGauge::new("clusterless_client_connections", "Client connections open now")?
            )?,
            clients_accepted: reg!(
                r,
                IntCounter::new("clusterless_client_connections_accepted_total", "Client connections accepted")?
            )?,
            clients_rejected: reg!(
                r,
                IntCounter::new(
                    "clusterless_client_connections_rejected_total",
                    "Client connections refused (max clients, draining)"
                )?
            )?,
            clients_protocol_errors: reg!(
                r,
                IntCounter::new(
                    "clusterless_client_protocol_errors_total",
                    "Client connections closed after a protocol error"
                )?
            )?,
            bytes_in: reg!(r, IntCounter::new("clusterless_client_bytes_received_total", "Bytes read from clients")?)?,
            bytes_out: reg!(r, IntCounter::new("clusterless_client_bytes_sent_total", "Bytes written to clients")?)?,
            backend_connections: reg!(
                r,
                IntGaugeVec::new(
                    Opts::new("clusterless_backend_connections", "Open connections to each node"),
                    &["node"]
                )?
            )?,
            backend_latency: reg!(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "clusterless_backend_request_duration_seconds",
                        "Node round trip, write to reply"
                    )
                    .buckets(latency_buckets()),
                    &["node"]
                )?
            )?,
            backend_errors: reg!(
                r,
                IntCounterVec::new(
                    Opts::new("clusterless_backend_errors_total", "Node connections that failed, by kind"),
                    &["node", "kind"]
                )?
            )?,
            redirects,
            retries: reg!(
                r,
                IntCounter::new("clusterless_retries_total", "Requests sent again after a redirect or failure")?
            )?,
            held: reg!(
                r,
                IntCounter::new(
                    "clusterless_requests_held_total",
                    "Requests that waited for the cluster (TRYAGAIN, CLUSTERDOWN, owner unreachable or failing over)"
                )?
            )?,
            hold_seconds: reg!(
                r,
                Histogram::with_opts(
                    HistogramOpts::new("clusterless_request_hold_seconds", "Time held requests waited")
                        .buckets(exponential_buckets(0.001, 2.0, 14).unwrap_or_default())
                )?
            )?,
            topology_version: reg!(
                r,
                IntGauge::new("clusterless_topology_version", "Version of the slot map in use")?
            )?,
            topology_changes: reg!(
                r,
                IntCounter::new("clusterless_topology_changes_total", "Slot map changes published")?
            )?,
            topology_age: reg!(
                r,
                prometheus::Gauge::new(
                    "clusterless_topology_age_seconds",
                    "Seconds since the slot map in use was learned"
                )?
            )?,
            topology_source,
            slots_uncovered: reg!(r, IntGauge::new("clusterless_slots_uncovered", "Slots no master serves")?)?,
            masters: reg!(r, IntGauge::new("clusterless_masters", "Masters that own slots")?)?,
            draining: reg!(r, IntGauge::new("clusterless_draining", "1 while shutting down")?)?,
            bus_pings: reg!(
                r,
                IntCounterVec::new(
                    Opts::new("clusterless_observer_pings_total", "PINGs sent on the cluster bus, by beat"),
                    &["mode"]
                )?
            )?,
            bus_fast_nodes: reg!(
                r,
                IntGauge::new("clusterless_observer_fast_nodes", "Nodes the observer PINGs at the fast beat now")?
            )?,
            bus_pongs: reg!(
                r,
                IntCounter::new("clusterless_observer_pongs_total", "PONGs received on the cluster bus")?
            )?,
            bus_rtt: reg!(
                r,
                HistogramVec::new(
                    HistogramOpts::new("clusterless_observer_pong_seconds", "Bus PING to PONG round trip")
                        .buckets(latency_buckets()),
                    &["bus"]
                )?
            )?,
            node_health: reg!(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "clusterless_node_health",
                        "Node health seen by the observer: 0 up, 1 suspected, 2 failed, 3 unreachable"
                    ),
                    &["node"]
                )?
            )?,
            output_limit_closed: {
                let c = reg!(
                    r,
                    IntCounterVec::new(
                        Opts::new(
                            "clusterless_client_output_limit_closed_total",
                            "Clients closed for overcoming their output buffer limit, by class"
                        ),
                        &["class"]
                    )?
                )?;
                for class in ["normal", "pubsub"] {
                    c.with_label_values(&[class]);
                }
                c
            },
            clients_evicted: reg!(
                r,
                IntCounter::new(
                    "clusterless_clients_evicted_total",
                    "Clients closed for holding the most output when limits.max_memory was passed"
                )?
            )?,
            buffered_bytes: reg!(
                r,
                IntGauge::new("clusterless_buffered_bytes", "Bytes buffered for clients (limits.max_memory caps it)")?
            )?,
            memory_refusing: reg!(
                r,
                IntGauge::new(
                    "clusterless_memory_refusing",
                    "1 while past 3/4 of limits.max_memory: requests that bring replies in are refused with -OOM"
                )?
            )?,
            nodes_refused: reg!(
                r,
                IntCounter::new(
                    "clusterless_node_identity_refused_total",
                    "Node connections dropped before use: CLUSTER MYID did not name the node the slot map names there"
                )?
            )?,
            observer_distrusted: reg!(
                r,
                IntGauge::new(
                    "clusterless_observer_distrusted",
                    "1 once the shared observer placed a node where the cluster does not: the proxy watches the cluster itself"
                )?
            )?,
            tls_reloads: labelled(
                &r,
                Opts::new("clusterless_tls_reloads_total", "Reloads of the TLS listener's files, by result"),
                "result",
                &["ok", "error"],
            )?,
            tls_handshake_failures: labelled(
                &r,
                Opts::new("clusterless_tls_handshake_failures_total", "TLS handshakes with clients that failed, by reason"),
                "reason",
                &["timeout", "error"],
            )?,
            bus_tls: reg!(
                r,
                IntGauge::new("clusterless_bus_tls", "1 while the gossip observer's cluster-bus links speak TLS")?
            )?,
            bus_fallback: reg!(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "clusterless_bus_fallback",
                        "Why the gossip observer polls CLUSTER SHARDS instead of following the bus (1 = in effect)"
                    ),
                    &["reason"]
                )?
            )?,
            registry: r,
        }))
    }

    #[inline]
    pub fn latency(&self, class: Timed) -> &Histogram {
        &self.latency[class as usize]
    }

    /// Counts a redirect-like reply (`moved`, `ask`, `tryagain`, `clusterdown`).
    pub fn redirect(&self, kind: &str) {
        if self.enabled {
            self.redirects.with_label_values(&[kind]).inc();
        }
    }

    /// Counts a client closed for overcoming its output buffer limit.
    pub fn output_limit_closed(&self, class: &str) {
        self.output_limit_closed.with_label_values(&[class]).inc();
    }

    /// Marks `source` (one of `bootstrap`, `bus`, `poll`, `observer`) as what keeps the slot map
    /// current now.
    pub fn set_topology_source(&self, source: &str) {
        for s in SOURCES {
            self.topology_source.with_label_values(&[s]).set(i64::from(s == source));
        }
    }

    /// Marks why the gossip observer polls (one of [`BUS_FALLBACK_REASONS`]), or `None` when it
    /// follows the bus.
    pub fn set_bus_fallback(&self, reason: Option<&str>) {
        for r in BUS_FALLBACK_REASONS {
            self.bus_fallback.with_label_values(&[r]).set(i64::from(Some(r) == reason));
        }
    }

    /// Why the gossip observer polls now, if it does.
    pub fn bus_fallback(&self) -> Option<&'static str> {
        BUS_FALLBACK_REASONS.into_iter().find(|r| self.bus_fallback.with_label_values(&[r]).get() == 1)
    }

    /// Where the slot map comes from now.
    pub fn topology_source(&self) -> &'static str {
        SOURCES.into_iter().find(|s| self.topology_source.with_label_values(&[s]).get() == 1).unwrap_or("bootstrap")
    }

    /// Redirect replies of one kind seen so far (0 when metrics are off).
    pub fn redirects_seen(&self, kind: &str) -> u64 {
        self.redirects.get_metric_with_label_values(&[kind]).map(|c| c.get()).unwrap_or(0)
    }

    /// Prometheus text exposition of everything.
    pub fn render(&self) -> Vec<u8> {
        use prometheus::Encoder;
        let mut buf = Vec::new();
        let _ = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }
}

/// A registered counter with one label, each of `values` present from the start (at 0).
fn labelled(r: &Registry, opts: Opts, label: &str, values: &[&str]) -> Result<IntCounterVec, prometheus::Error> {
    let c = reg!(r, IntCounterVec::new(opts, &[label])?)?;
    for v in values {
        c.with_label_values(&[v]);
    }
    Ok(c)
}

/// The name of every metric family the proxy exports (per-node families included), for the
/// checks that the dashboards and alerts name only what exists.
pub fn exported_names() -> Vec<String> {
    let Ok(m) = Metrics::new(&["get".into()], true) else { return Vec::new() };
    // Per-node series exist once a node is used.
    let _node = m.node("127.0.0.1:7000");
    m.registry.gather().iter().map(|f| f.name().to_string()).collect()
}
