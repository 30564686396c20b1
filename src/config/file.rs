//! The TOML file's schema: every field optional, so that "not set" falls through to the
//! environment, the flags and the defaults; unknown keys are errors. Reading it reports any
//! problem on one line naming the file, the line and the dotted key.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::ConfigError;

/// Reads and parses the file at `path`.
pub(super) fn read(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
    toml::from_str::<FileConfig>(&text).map_err(|e| {
        let mut at = String::new();
        if let Some(span) = e.span() {
            at = format!(", line {}", line_of(&text, span.start));
            // serde's message says what was wrong ("invalid type: string "five", expected
            // u32") but not where; the operator needs the key to find it.
            if let Some(key) = key_at(&text, span.start) {
                at.push_str(&format!(", `{key}`"));
            }
        }
        let msg = plain_types(&e.message().replace('\n', " "));
        ConfigError(format!("invalid config file {}{at}: {msg}", path.display()))
    })
}

/// serde names the expected type as Rust spells it (`expected u32`); the file's reader thinks in
/// TOML's types.
fn plain_types(msg: &str) -> String {
    // TOML integers are i64, so u64 and usize only refuse negative numbers.
    for (rust, toml) in [
        ("u16", "an integer from 0 to 65535"),
        ("u32", "an integer from 0 to 4294967295"),
        ("u64", "a non-negative integer"),
        ("usize", "a non-negative integer"),
    ] {
        if let Some(head) = msg.strip_suffix(&format!("expected {rust}")) {
            return format!("{head}expected {toml}");
        }
    }
    msg.to_string()
}

/// The 1-based line holding byte `pos`: one more than the line breaks before it.
fn line_of(text: &str, pos: usize) -> usize {
    let pos = pos.min(text.len());
    text.as_bytes()[..pos].iter().filter(|&&b| b == b'\n').count() + 1
}

/// The dotted key (`backend.max_redirects`, `auth.users[0].name`) whose key or value holds byte
/// `pos`, the deepest one when they nest; `None` when the text does not parse as TOML.
fn key_at(text: &str, pos: usize) -> Option<String> {
    let root = DeTable::parse(text).ok()?;
    let mut path = Vec::new();
    if !in_table(root.get_ref(), pos, &mut path) {
        return None;
    }
    let mut key = String::new();
    for part in path {
        if !key.is_empty() && !part.starts_with('[') {
            key.push('.');
        }
        key.push_str(&part);
    }
    Some(key)
}

fn covers(span: std::ops::Range<usize>, pos: usize) -> bool {
    span.contains(&pos) || (span.is_empty() && span.start == pos)
}

/// Leaves in `path` the keys down to the one that holds `pos` when there is one.
fn in_table(t: &DeTable<'_>, pos: usize, path: &mut Vec<String>) -> bool {
    for (k, v) in t.iter() {
        path.push(k.get_ref().to_string());
        if in_value(v, pos, path) || covers(k.span(), pos) {
            return true;
        }
        path.pop();
    }
    false
}

fn in_value(v: &Spanned<DeValue<'_>>, pos: usize, path: &mut Vec<String>) -> bool {
    match v.get_ref() {
        // Children first: a table's or array's span may enclose several of its keys.
        DeValue::Table(t) if in_table(t, pos, path) => return true,
        DeValue::Array(a) => {
            for (i, e) in a.iter().enumerate() {
                path.push(format!("[{i}]"));
                if in_value(e, pos, path) {
                    return true;
                }
                path.pop();
            }
        }
        _ => {}
    }
    covers(v.span(), pos)
}

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
    #[serde(default)]
    pub(super) commands: FileCommands,
    #[serde(default)]
    pub(super) keyspace: FileKeyspace,
    #[serde(default)]
    pub(super) tls: FileTls,
    #[serde(default)]
    pub(super) routing: FileRouting,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTls {
    pub(super) listen: Option<String>,
    pub(super) cert_file: Option<PathBuf>,
    pub(super) key_file: Option<PathBuf>,
    pub(super) client_ca_file: Option<PathBuf>,
    pub(super) handshake_timeout_ms: Option<u64>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRouting {
    pub(super) read_from: Option<String>,
    pub(super) read_your_writes_ms: Option<u64>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileKeyspace {
    pub(super) databases: Option<u32>,
    pub(super) one_slot_databases: Option<Vec<u32>>,
    pub(super) cross_slot_reads: Option<String>,
    pub(super) max_compute_bytes: Option<String>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileCommands {
    pub(super) config_set: Option<String>,
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
    pub(super) password: Option<String>,
    pub(super) password_file: Option<PathBuf>,
    pub(super) backend_user: Option<String>,
    pub(super) backend_password: Option<String>,
    pub(super) backend_password_file: Option<PathBuf>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAdmin {
    pub(super) listen: Option<String>,
    pub(super) token_file: Option<PathBuf>,
    pub(super) open_paths: Option<Vec<String>>,
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
    pub(super) client_output_buffer_limit: Option<Vec<String>>,
    pub(super) client_query_buffer_limit: Option<Size>,
    pub(super) max_memory: Option<Size>,
}

/// A size as a number of bytes or as Redis writes them (`"32mb"`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Size(pub(super) usize);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Size, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number of bytes or a size like \"512mb\"")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Size, E> {
                usize::try_from(n).map(Size).map_err(|_| E::custom("too large"))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Size, E> {
                usize::try_from(n).map(Size).map_err(|_| E::custom(format!("{n} is not a size")))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Size, E> {
                super::redis_syntax::parse_size(s)
                    .map(Size)
                    .ok_or_else(|| E::custom(format!("`{s}` is not a size (like 512mb)")))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAuth {
    pub(super) requirepass: Option<String>,
    pub(super) requirepass_file: Option<PathBuf>,
    pub(super) user: Option<String>,
    #[serde(default)]
    pub(super) users: Vec<FileUser>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileBackend {
    pub(super) user: Option<String>,
    pub(super) password: Option<String>,
    pub(super) password_file: Option<PathBuf>,
    pub(super) connections_per_node: Option<usize>,
    pub(super) connect_timeout_ms: Option<u64>,
    pub(super) request_timeout_ms: Option<u64>,
    pub(super) retry_budget_ms: Option<u64>,
    pub(super) max_redirects: Option<u32>,
    pub(super) dedicated_per_node: Option<usize>,
    pub(super) read_from: Option<String>,
    #[serde(default)]
    pub(super) tls: FileBackendTls,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileBackendTls {
    pub(super) ca_file: Option<PathBuf>,
    pub(super) cert_file: Option<PathBuf>,
    pub(super) key_file: Option<PathBuf>,
    pub(super) server_name: Option<String>,
    pub(super) bus: Option<bool>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTopology {
    pub(super) source: Option<String>,
    pub(super) refresh_interval_ms: Option<u64>,
    pub(super) min_refresh_gap_ms: Option<u64>,
    pub(super) bus_ping_interval_ms: Option<u64>,
    pub(super) bus_steady_interval_ms: Option<u64>,
    pub(super) reconcile_interval_ms: Option<u64>,
    pub(super) failover_hold_ms: Option<u64>,
    pub(super) observer: Option<String>,
    pub(super) observer_token_file: Option<PathBuf>,
    pub(super) observer_ca_file: Option<PathBuf>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct FileLog {
    pub(super) level: Option<String>,
    pub(super) format: Option<String>,
}
