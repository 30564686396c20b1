//! Configuration: defaults, overridden by a TOML file ([`file`]), overridden by `CLUSTERLESS_*`
//! environment variables and command-line flags ([`cli`]). Everything is validated once
//! ([`load`]) into a [`Config`] the rest of the proxy reads; errors name the key and fit on one
//! line.

mod check;
mod cli;
mod file;
mod load;
mod node_tls;
pub(crate) mod pem;
mod redis_syntax;
mod routing;
mod secret;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::memory::OutputLimits;

pub use cli::{Cli, Command, DevArgs, ObserveArgs, ProxyArgs};
pub use node_tls::NodeTls;
pub use secret::{read_file as read_secret_file, Secret};
pub use tls::TlsConfig;

/// A configuration problem, reported as one line naming the key or file.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The whole, validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The plain (unencrypted) client listener; `None` when it is off (`listen = ""`), which
    /// needs `tls` set.
    pub listen: Option<SocketAddr>,
    /// The TLS client listener, when on.
    pub tls: Option<TlsConfig>,
    pub seeds: Vec<String>,
    pub limits: LimitsConfig,
    pub auth: AuthConfig,
    pub backend: BackendConfig,
    pub topology: TopologyConfig,
    pub log: LogConfig,
    /// Admin HTTP address; `None` turns the endpoint (and metric recording) off.
    pub admin_listen: Option<SocketAddr>,
    pub admin: AdminConfig,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    pub drain_timeout: Duration,
    pub transactions: TransactionsConfig,
    pub commands: CommandsConfig,
    pub keyspace: KeyspaceConfig,
    pub routing: RoutingConfig,
}

/// Where reads go (`[routing]`).
#[derive(Clone, Debug, Default)]
pub struct RoutingConfig {
    pub read_from: ReadFrom,
    /// After a client writes a slot, its reads of that slot go to the master for this long;
    /// zero: off.
    pub read_your_writes: Duration,
    /// `read_from` came from the deprecated `backend.read_from`: said once in the log at start.
    pub deprecated_key: bool,
}

/// Which node answers a read (a command the command table flags `readonly`, outside MULTI, not
/// blocking): Lettuce's `ReadFrom` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReadFrom {
    /// The slot's master, always.
    #[default]
    Master,
    /// The master; a healthy replica only while the master is failed or avoided.
    MasterPreferred,
    /// A healthy replica; the master when none is.
    ReplicaPreferred,
    /// Only a healthy replica; none: an error, never the master.
    Replica,
    /// The master or a replica, whichever answers PING fastest.
    Nearest,
}

impl ReadFrom {
    /// The names the settings take, in the order of the variants.
    pub const NAMES: [&'static str; 5] = ["master", "master-preferred", "replica-preferred", "replica", "nearest"];

    pub fn parse(name: &str) -> Option<ReadFrom> {
        use ReadFrom::*;
        let all = [Master, MasterPreferred, ReplicaPreferred, Replica, Nearest];
        ReadFrom::NAMES.iter().position(|n| *n == name).map(|i| all[i])
    }

    pub fn name(self) -> &'static str {
        ReadFrom::NAMES[self as usize]
    }

    /// Whether reads may reach replicas: node connections then send READONLY.
    pub fn reaches_replicas(self) -> bool {
        self != ReadFrom::Master
    }
}

/// What the proxy does for the keyspace a cluster splits.
#[derive(Clone, Debug)]
pub struct KeyspaceConfig {
    /// Databases SELECT may choose (`keyspace.databases`): database n > 0 is a namespace of
    /// prefixed key names.
    pub databases: u32,
    /// Databases whose keys all live in one slot (`keyspace.one_slot_databases`).
    pub one_slot_databases: Vec<u32>,
    /// Set operations over keys in several slots (SUNION, SINTER, SDIFF, SINTERCARD and the
    /// *STORE forms): computed by the proxy from each key's members, within this many bytes of
    /// members; `None`: refused with CROSSSLOT, as Redis Cluster does.
    pub compute_cross_slot: Option<usize>,
}

impl Default for KeyspaceConfig {
    fn default() -> KeyspaceConfig {
        KeyspaceConfig { databases: 1, one_slot_databases: Vec::new(), compute_cross_slot: None }
    }
}

/// How the proxy answers commands about the servers themselves.
#[derive(Clone, Debug)]
pub struct CommandsConfig {
    /// CONFIG SET / RESETSTAT / REWRITE: sent to every node (and remembered for nodes that join
    /// later), or refused.
    pub config_set_all_nodes: bool,
}

impl Default for CommandsConfig {
    fn default() -> CommandsConfig {
        CommandsConfig { config_set_all_nodes: true }
    }
}

/// What MULTI ... EXEC does when its commands touch several slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CrossSlot {
    /// `-CROSSSLOT` at queue time and `-EXECABORT` at EXEC, as Redis Cluster does.
    #[default]
    Refuse,
    /// One MULTI/EXEC per node at EXEC, replies merged in order: atomic per shard only.
    PerShard,
}

#[derive(Clone, Debug, Default)]
pub struct TransactionsConfig {
    pub cross_slot: CrossSlot,
}

#[derive(Clone, Debug)]
pub struct LimitsConfig {
    /// Client threads, each with its own node connections; 0 means one per CPU, at most 4.
    pub threads: usize,
    pub max_clients: usize,
    pub max_bulk_len: usize,
    pub max_inline_len: usize,
    /// Requests one client may have in flight before we stop reading from it.
    pub max_pipeline: usize,
    /// Redis's `client-output-buffer-limit` for the proxy's clients.
    pub output: OutputLimits,
    /// Redis's `client-query-buffer-limit`: the largest request, and the bytes of requests one
    /// client may have in flight before we stop reading from it.
    pub query_buffer: usize,
    /// Bytes the proxy may buffer for all clients before it refuses new requests; 0: no cap.
    pub max_memory: usize,
}

/// Who may use the admin HTTP endpoint.
#[derive(Clone, Debug)]
pub struct AdminConfig {
    /// When set, every path but `open_paths` needs `Authorization: Bearer <token>`.
    pub token: Option<Secret>,
    /// Paths answered without the token (probes cannot send one).
    pub open_paths: Vec<String>,
}

impl Default for AdminConfig {
    fn default() -> AdminConfig {
        AdminConfig { token: None, open_paths: vec!["/healthz".into(), "/readyz".into()] }
    }
}

#[derive(Clone, Debug, Default)]
pub struct AuthConfig {
    /// When set, clients must AUTH before anything else.
    pub requirepass: Option<Secret>,
    /// The user name accepted with the password (`default` when unset).
    pub user: Option<String>,
    /// Further ACL-style users (`AUTH name password`), besides `user`/`requirepass`.
    pub users: Vec<User>,
}

/// A user clients may `AUTH name password` as (`[[auth.users]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub password: Secret,
    /// The nodes' credentials for this user's commands; `None`: the `backend` ones.
    pub backend: Option<Credentials>,
}

/// A user name and password for the nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: Secret,
}

impl AuthConfig {
    /// Whether clients must authenticate at all.
    pub fn required(&self) -> bool {
        self.requirepass.is_some() || !self.users.is_empty()
    }

    /// The node credentials of the users that have their own, in order: login `i + 1` of the
    /// node connections is entry `i`; login 0 is `backend.user`/`backend.password`.
    pub fn backend_logins(&self) -> Vec<&Credentials> {
        self.users.iter().filter_map(|u| u.backend.as_ref()).collect()
    }

    /// The node connections' login for user `name`: its own credentials' (see
    /// [`AuthConfig::backend_logins`]), or 0 (the `backend` ones).
    pub fn login_of(&self, name: &[u8]) -> u16 {
        let mut login = 0u16;
        for u in &self.users {
            if u.backend.is_some() {
                login = login.saturating_add(1);
            }
            if u.name.as_bytes() == name {
                return if u.backend.is_some() { login } else { 0 };
            }
        }
        0
    }
}

#[derive(Clone, Debug)]
pub struct BackendConfig {
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub connections_per_node: usize,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub retry_budget: Duration,
    pub max_redirects: u32,
    /// Exclusive connections (blocking commands, WATCH, subscriptions) allowed per node.
    pub dedicated_per_node: usize,
    /// TLS toward the nodes (`[backend.tls]`); `None`: plain TCP.
    pub tls: Option<NodeTls>,
}

/// Where the slot map comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The gossip observer on the nodes' cluster bus (falls back to polling on its own).
    Bus,
    /// `CLUSTER SHARDS` polling only.
    Poll,
}

#[derive(Clone, Debug)]
pub struct TopologyConfig {
    pub source: Source,
    pub refresh_interval: Duration,
    pub min_refresh_gap: Duration,
    /// The bus observer's fast beat: PINGs per node while something about it is changing.
    pub bus_ping_interval: Duration,
    /// The bus observer's steady beat: PINGs per node while the cluster is quiet.
    pub bus_steady_interval: Duration,
    pub reconcile_interval: Duration,
    /// How long requests for a slot whose master is failing are held for the new owner.
    pub failover_hold: Duration,
    /// A shared observer to follow instead of the proxy's own (`http://HOST:PORT` or
    /// `https://HOST:PORT`).
    pub observer: Option<String>,
    /// The bearer token sent to the shared observer.
    pub observer_token: Option<Secret>,
    /// PEM certificates trusted for an `https://` observer, besides the built-in web roots.
    pub observer_ca_file: Option<PathBuf>,
}

#[derive(Clone, Debug)]
pub struct LogConfig {
    /// A level or tracing filter; `info` unless given.
    pub level: String,
    /// Whether `level` was given (flag, variable or file): `RUST_LOG` applies only when not.
    pub level_given: bool,
    pub json: bool,
}

impl LogConfig {
    /// The filter to log with, given the value of `RUST_LOG`: a level given to clusterless wins,
    /// since it is what this deployment's configuration asked for and a `RUST_LOG` left in the
    /// environment for another program must not silence or flood it; otherwise a non-empty
    /// `RUST_LOG` (the Rust convention) applies. Also returns why `RUST_LOG` was not used when
    /// it was set but cannot be read, for a warning once logging runs.
    pub fn filter(&self, rust_log: Option<&str>) -> (String, Option<String>) {
        match rust_log.filter(|r| !r.trim().is_empty() && !self.level_given) {
            Some(r) => match tracing_subscriber::EnvFilter::try_new(r) {
                Ok(_) => (r.to_string(), None),
                Err(e) => (self.level.clone(), Some(format!("RUST_LOG `{r}` ignored: {e}"))),
            },
            None => (self.level.clone(), None),
        }
    }
}

impl Config {
    /// Defaults, documented one by one in config/clusterless.toml.
    pub fn defaults() -> Config {
        Config {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 6379))),
            tls: None,
            seeds: Vec::new(),
            limits: LimitsConfig {
                threads: 0,
                max_clients: 10_000,
                max_bulk_len: 512 * 1024 * 1024,
                max_inline_len: 64 * 1024,
                max_pipeline: 1024,
                output: OutputLimits::default(),
                query_buffer: 128 << 20,
                max_memory: 0,
            },
            auth: AuthConfig::default(),
            backend: BackendConfig {
                user: None,
                password: None,
                connections_per_node: 1,
                connect_timeout: Duration::from_millis(1000),
                request_timeout: Duration::from_millis(5000),
                retry_budget: Duration::from_millis(3000),
                max_redirects: 5,
                dedicated_per_node: 256,
                tls: None,
            },
            topology: TopologyConfig {
                source: Source::Bus,
                refresh_interval: Duration::from_millis(10_000),
                min_refresh_gap: Duration::from_millis(100),
                bus_ping_interval: Duration::from_millis(250),
                bus_steady_interval: Duration::from_millis(2000),
                reconcile_interval: Duration::from_millis(30_000),
                failover_hold: Duration::from_millis(5000),
                observer: None,
                observer_token: None,
                observer_ca_file: None,
            },
            log: LogConfig { level: "info".into(), level_given: false, json: false },
            admin_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9736))),
            admin: AdminConfig::default(),
            drain_timeout: Duration::from_millis(10_000),
            transactions: TransactionsConfig::default(),
            commands: CommandsConfig::default(),
            keyspace: KeyspaceConfig::default(),
            routing: RoutingConfig::default(),
        }
    }
}
