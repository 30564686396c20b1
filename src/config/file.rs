//! The TOML file's schema: every field optional, so that "not set" falls through to the
//! environment, the flags and the defaults; unknown keys are errors.

use serde::Deserialize;

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileConfig {
    pub(super) listen: Option<String>,
    pub(super) seeds: Option<Vec<String>>,
    #[serde(default)]
    pub(super) limits: FileLimits,
    #[serde(default)]
    pub(super) auth: FileAuth,
    #[serde(default)]
    pub(super) backend: FileBackend,
    #[serde(default)]
    pub(super) topology: FileTopology,
    #[serde(default)]
    pub(super) log: FileLog,
    #[serde(default)]
    pub(super) admin: FileAdmin,
    #[serde(default)]
    pub(super) lifecycle: FileLifecycle,
    #[serde(default)]
    pub(super) transactions: FileTransactions,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTransactions {
    pub(super) cross_slot: Option<String>,
}

#[derive(Deserialize, Debug, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct FileUser {
    pub(super) name: String,
    pub(super) password: String,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAdmin {
    pub(super) listen: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileLifecycle {
    pub(super) drain_timeout_ms: Option<u64>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileLimits {
    pub(super) threads: Option<usize>,
    pub(super) max_clients: Option<usize>,
    pub(super) max_bulk_len: Option<usize>,
    pub(super) max_inline_len: Option<usize>,
    pub(super) max_pipeline: Option<usize>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAuth {
    pub(super) requirepass: Option<String>,
    pub(super) user: Option<String>,
    #[serde(default)]
    pub(super) users: Vec<FileUser>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileBackend {
    pub(super) user: Option<String>,
    pub(super) password: Option<String>,
    pub(super) connections_per_node: Option<usize>,
    pub(super) connect_timeout_ms: Option<u64>,
    pub(super) request_timeout_ms: Option<u64>,
    pub(super) retry_budget_ms: Option<u64>,
    pub(super) max_redirects: Option<u32>,
    pub(super) dedicated_per_node: Option<usize>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTopology {
    pub(super) source: Option<String>,
    pub(super) refresh_interval_ms: Option<u64>,
    pub(super) min_refresh_gap_ms: Option<u64>,
    pub(super) bus_ping_interval_ms: Option<u64>,
    pub(super) reconcile_interval_ms: Option<u64>,
    pub(super) failover_hold_ms: Option<u64>,
    pub(super) observer: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileLog {
    pub(super) level: Option<String>,
    pub(super) format: Option<String>,
}
