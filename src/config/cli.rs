//! The command line: subcommands and the proxy's flags, each also read from the `CLUSTERLESS_*`
//! variable named beside it.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Command line.
#[derive(Parser, Debug)]
#[command(name = "clusterless", version, about = "Makes a Redis Cluster look like one plain Redis server")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub proxy: ProxyArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start a throw-away local Redis Cluster (3 masters + 3 replicas) and the proxy in front of it.
    Dev(DevArgs),
    /// Run a standalone shared observer serving /v1/topology and /v1/topology/watch.
    Observe(ObserveArgs),
}

#[derive(Args, Debug)]
pub struct ObserveArgs {
    /// HTTP address to serve the topology on.
    #[arg(long, default_value = "127.0.0.1:9737")]
    pub http: SocketAddr,
}

#[derive(Args, Debug)]
pub struct DevArgs {
    /// Port the proxy listens on (0 picks a free one).
    #[arg(long, default_value_t = 6379)]
    pub port: u16,
    /// Number of masters.
    #[arg(long, default_value_t = 3)]
    pub masters: usize,
    /// Replicas per master.
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
}

/// Flags of the proxy; each also reads the `CLUSTERLESS_*` variable named beside it.
#[derive(Args, Debug, Default)]
pub struct ProxyArgs {
    /// TOML configuration file (see config/clusterless.toml).
    #[arg(long, env = "CLUSTERLESS_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Address clients connect to.
    #[arg(long, global = true, env = "CLUSTERLESS_LISTEN")]
    pub listen: Option<String>,
    /// A cluster node to bootstrap from (repeat, or separate with commas).
    #[arg(long = "seed", global = true, env = "CLUSTERLESS_SEEDS", value_delimiter = ',')]
    pub seeds: Vec<String>,
    /// Password clients must AUTH with.
    #[arg(long, global = true, env = "CLUSTERLESS_REQUIREPASS")]
    pub requirepass: Option<String>,
    /// User name clients AUTH as (with requirepass).
    #[arg(long, global = true, env = "CLUSTERLESS_USER")]
    pub user: Option<String>,
    /// User name for the backend nodes.
    #[arg(long, global = true, env = "CLUSTERLESS_BACKEND_USER")]
    pub backend_user: Option<String>,
    /// Password for the backend nodes.
    #[arg(long, global = true, env = "CLUSTERLESS_BACKEND_PASSWORD")]
    pub backend_password: Option<String>,
    /// Maximum number of client connections.
    #[arg(long, global = true, env = "CLUSTERLESS_MAX_CLIENTS")]
    pub max_clients: Option<usize>,
    /// Client threads, each with its own node connections (0: one per CPU).
    #[arg(long, global = true, env = "CLUSTERLESS_THREADS")]
    pub threads: Option<usize>,
    /// Log level (error, warn, info, debug, trace) or a tracing filter.
    #[arg(long, global = true, env = "CLUSTERLESS_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Log format: plain or json.
    #[arg(long, global = true, env = "CLUSTERLESS_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Follow a shared observer (`http://HOST:PORT`) instead of watching the cluster itself.
    #[arg(long, global = true, env = "CLUSTERLESS_OBSERVER")]
    pub observer: Option<String>,
    /// Where the slot map comes from: bus (gossip observer) or poll.
    #[arg(long = "topology-source", global = true, env = "CLUSTERLESS_TOPOLOGY_SOURCE")]
    pub topology_source: Option<String>,
    /// Admin HTTP address for /metrics, /healthz, /readyz, /topology ("" turns it off).
    #[arg(long = "metrics", global = true, env = "CLUSTERLESS_METRICS")]
    pub metrics: Option<String>,
}
