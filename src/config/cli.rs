//! The command line: subcommands and the proxy's flags, each also read from the `CLUSTERLESS_*`
//! variable named beside it.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, CommandFactory, Parser, Subcommand};

use super::Secret;

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
    /// File holding the bearer token subscribers must send (all paths but /healthz).
    #[arg(long, env = "CLUSTERLESS_OBSERVE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct DevArgs {
    /// Port the proxy listens on (0 picks a free one) [default: 6379, or the port of --listen].
    #[arg(long)]
    pub port: Option<u16>,
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
    /// Address clients connect to in plain TCP ("" or "none" turns it off; then --tls-listen is
    /// needed).
    #[arg(long, global = true, env = "CLUSTERLESS_LISTEN")]
    pub listen: Option<String>,
    /// Address clients connect to over TLS ("" turns it off).
    #[arg(long, global = true, env = "CLUSTERLESS_TLS_LISTEN")]
    pub tls_listen: Option<String>,
    /// PEM file of the TLS listener's certificate chain.
    #[arg(long, global = true, env = "CLUSTERLESS_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM file of the TLS listener's private key.
    #[arg(long, global = true, env = "CLUSTERLESS_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM file of the CAs client certificates must chain to (turns on mutual TLS).
    #[arg(long, global = true, env = "CLUSTERLESS_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// A cluster node to bootstrap from (repeat, or separate with commas).
    #[arg(long = "seed", global = true, env = "CLUSTERLESS_SEEDS", value_delimiter = ',')]
    pub seeds: Vec<String>,
    /// Password clients must AUTH with.
    #[arg(long, global = true, env = "CLUSTERLESS_REQUIREPASS", hide_env_values = true, value_parser = secret)]
    pub requirepass: Option<Secret>,
    /// File holding the password clients must AUTH with.
    #[arg(long, global = true, env = "CLUSTERLESS_REQUIREPASS_FILE")]
    pub requirepass_file: Option<PathBuf>,
    /// User name clients AUTH as (with requirepass).
    #[arg(long, global = true, env = "CLUSTERLESS_USER")]
    pub user: Option<String>,
    /// User name for the backend nodes.
    #[arg(long, global = true, env = "CLUSTERLESS_BACKEND_USER")]
    pub backend_user: Option<String>,
    /// Password for the backend nodes.
    #[arg(long, global = true, env = "CLUSTERLESS_BACKEND_PASSWORD", hide_env_values = true, value_parser = secret)]
    pub backend_password: Option<Secret>,
    /// File holding the password for the backend nodes.
    #[arg(long, global = true, env = "CLUSTERLESS_BACKEND_PASSWORD_FILE")]
    pub backend_password_file: Option<PathBuf>,
    /// PEM file of the CA that signed the nodes' certificates: turns on TLS toward the nodes.
    #[arg(long, global = true, env = "CLUSTERLESS_BACKEND_TLS_CA")]
    pub backend_tls_ca: Option<PathBuf>,
    /// PEM client certificate presented to the nodes (and their TLS cluster bus).
    #[arg(long, global = true, env = "CLUSTERLESS_BACKEND_TLS_CERT")]
    pub backend_tls_cert: Option<PathBuf>,
    /// PEM private key of --backend-tls-cert.
    #[arg(long, global = true, env = "CLUSTERLESS_BACKEND_TLS_KEY")]
    pub backend_tls_key: Option<PathBuf>,
    /// Name every node's certificate must carry (default: the host or IP the node is known by).
    #[arg(long, global = true, env = "CLUSTERLESS_BACKEND_TLS_SERVER_NAME")]
    pub backend_tls_server_name: Option<String>,
    /// Whether the cluster bus speaks TLS too (yes or no; default yes with backend TLS).
    #[arg(long, global = true, env = "CLUSTERLESS_BACKEND_TLS_BUS")]
    pub backend_tls_bus: Option<String>,
    /// Maximum number of client connections.
    #[arg(long, global = true, env = "CLUSTERLESS_MAX_CLIENTS")]
    pub max_clients: Option<usize>,
    /// Bytes the proxy may buffer for its clients before it refuses new requests (e.g. 512mb).
    #[arg(long, global = true, env = "CLUSTERLESS_MAX_MEMORY", value_parser = size)]
    pub max_memory: Option<usize>,
    /// Client threads, each with its own node connections (0: one per CPU, at most 4).
    #[arg(long, global = true, env = "CLUSTERLESS_THREADS")]
    pub threads: Option<usize>,
    /// Log level (error, warn, info, debug, trace) or a tracing filter.
    #[arg(long, global = true, env = "CLUSTERLESS_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Log format: plain or json.
    #[arg(long, global = true, env = "CLUSTERLESS_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Follow a shared observer (`http://HOST:PORT` or `https://HOST:PORT`) instead of watching
    /// the cluster itself.
    #[arg(long, global = true, env = "CLUSTERLESS_OBSERVER")]
    pub observer: Option<String>,
    /// File holding the bearer token to send to the shared observer.
    #[arg(long, global = true, env = "CLUSTERLESS_OBSERVER_TOKEN_FILE")]
    pub observer_token_file: Option<PathBuf>,
    /// PEM file of CA certificates trusted for an https:// observer (besides the web roots).
    #[arg(long, global = true, env = "CLUSTERLESS_OBSERVER_CA_FILE")]
    pub observer_ca_file: Option<PathBuf>,
    /// The bus observer's steady beat: ms between PINGs to each node while the cluster is quiet.
    #[arg(long = "bus-steady-interval-ms", global = true, env = "CLUSTERLESS_BUS_STEADY_INTERVAL_MS")]
    pub bus_steady_interval_ms: Option<u64>,
    /// Where the slot map comes from: bus (gossip observer) or poll.
    #[arg(long = "topology-source", global = true, env = "CLUSTERLESS_TOPOLOGY_SOURCE")]
    pub topology_source: Option<String>,
    /// Where reads go: master, master-preferred, replica-preferred, replica or nearest.
    #[arg(long, global = true, env = "CLUSTERLESS_READ_FROM")]
    pub read_from: Option<String>,
    /// After a client writes a slot, its reads of that slot go to the master for this long (0: off).
    #[arg(long, global = true, env = "CLUSTERLESS_READ_YOUR_WRITES_MS")]
    pub read_your_writes_ms: Option<u64>,
    /// Admin HTTP address for /metrics, /healthz, /readyz, /topology ("" turns it off).
    #[arg(long = "metrics", global = true, env = "CLUSTERLESS_METRICS")]
    pub metrics: Option<String>,
    /// File holding the bearer token the admin endpoint requires (but on admin.open_paths).
    #[arg(long, global = true, env = "CLUSTERLESS_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Databases SELECT may choose (keyspace.databases).
    #[arg(long, global = true, env = "CLUSTERLESS_DATABASES")]
    pub databases: Option<u32>,
    /// A database whose keys all live in one slot (repeat, or separate with commas;
    /// keyspace.one_slot_databases).
    #[arg(long = "one-slot-db", global = true, env = "CLUSTERLESS_ONE_SLOT_DBS", value_delimiter = ',')]
    pub one_slot_dbs: Vec<u32>,
    /// Set and sorted-set operations over several slots: "refuse" or "compute"
    /// (keyspace.cross_slot_reads).
    #[arg(long, global = true, env = "CLUSTERLESS_CROSS_SLOT_READS")]
    pub cross_slot_reads: Option<String>,
    /// Bytes of members one computed operation may read, e.g. 64mb (keyspace.max_compute_bytes).
    #[arg(long, global = true, env = "CLUSTERLESS_MAX_COMPUTE_BYTES")]
    pub max_compute_bytes: Option<String>,
}

impl Cli {
    /// Parses the process's command line. `--help` and `--version` print and exit as with clap's
    /// own `parse`; any other mistake comes back as one line naming the flag, or the
    /// `CLUSTERLESS_*` variable the bad value came from, for the caller to print: clap's own
    /// report spans several lines and names only the flag, even for a value read from a variable.
    pub fn parse_or_line() -> Result<Cli, String> {
        let argv: Vec<OsString> = std::env::args_os().collect();
        Cli::try_parse_from(&argv).map_err(|e| {
            if !e.use_stderr() {
                e.exit();
            }
            one_line(&e, &argv, |var| std::env::var_os(var).is_some())
        })
    }
}

/// One line for a command-line error; `env_set` tells whether a variable is set.
fn one_line(e: &clap::Error, argv: &[OsString], env_set: impl Fn(&str) -> bool) -> String {
    let context = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => Some(s.as_str()),
        _ => None,
    };
    let pair = (context(ContextKind::InvalidArg), context(ContextKind::InvalidValue));
    // A value its parser refused; clap's own first line says the rest well (a missing value).
    if let (ErrorKind::ValueValidation, (Some(arg), Some(value))) = (e.kind(), pair) {
        // clap renders the argument as "--threads <THREADS>".
        let flag = arg.split_whitespace().next().unwrap_or(arg);
        let why = std::error::Error::source(e).map(|s| s.to_string()).unwrap_or_else(|| e.kind().to_string());
        let on_line = argv
            .iter()
            .filter_map(|a| a.to_str())
            .any(|a| a == flag || a.strip_prefix(flag).is_some_and(|rest| rest.starts_with('=')));
        return match env_of(flag).filter(|var| !on_line && env_set(var)) {
            Some(var) => format!("invalid value '{value}' for {var} ({flag}): {why}"),
            None => format!("invalid value '{value}' for {flag}: {why}"),
        };
    }
    let rendered = e.render().to_string();
    let first = rendered.lines().next().unwrap_or_default();
    format!("{} (clusterless --help lists the flags)", first.trim_start_matches("error: "))
}

/// The variable a flag (`--threads`) is also read from, looked up in every subcommand too.
fn env_of(flag: &str) -> Option<String> {
    let long = flag.strip_prefix("--")?;
    let cmd = Cli::command();
    let found = std::iter::once(&cmd)
        .chain(cmd.get_subcommands())
        .flat_map(|c| c.get_arguments())
        .find(|a| a.get_long() == Some(long))?;
    found.get_env().and_then(|v| v.to_str()).map(str::to_string)
}

/// A password given as a flag or variable, kept as a [`Secret`] so that printing the parsed
/// command line cannot show it.
fn secret(s: &str) -> Result<Secret, String> {
    Ok(Secret::new(s))
}

/// A size as Redis writes them, for flags.
fn size(s: &str) -> Result<usize, String> {
    super::redis_syntax::parse_size(s).ok_or_else(|| "not a size (like 512mb)".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(args: &[&str], env: &[&str]) -> String {
        let argv: Vec<OsString> =
            std::iter::once("clusterless").chain(args.iter().copied()).map(OsString::from).collect();
        let e = Cli::try_parse_from(&argv).unwrap_err();
        one_line(&e, &argv, |var| env.contains(&var))
    }

    #[test]
    fn errors_are_one_line_naming_flag_or_variable() {
        assert_eq!(line(&["--threads", "x"], &[]), "invalid value 'x' for --threads: invalid digit found in string");
        assert_eq!(
            line(&["--max-clients=-1"], &["CLUSTERLESS_MAX_CLIENTS"]),
            "invalid value '-1' for --max-clients: invalid digit found in string"
        );
        assert_eq!(
            line(&["observe", "--http", "nope"], &[]),
            "invalid value 'nope' for --http: invalid socket address syntax"
        );
        assert_eq!(line(&["--bogus"], &[]), "unexpected argument '--bogus' found (clusterless --help lists the flags)");
        assert_eq!(
            line(&["--threads"], &[]),
            "a value is required for '--threads <THREADS>' but none was supplied (clusterless --help lists the flags)"
        );
        assert_eq!(env_of("--threads").as_deref(), Some("CLUSTERLESS_THREADS"));
        assert_eq!(env_of("--seed").as_deref(), Some("CLUSTERLESS_SEEDS"));
        assert_eq!(env_of("--read-from").as_deref(), Some("CLUSTERLESS_READ_FROM"));
        assert_eq!(env_of("--read-your-writes-ms").as_deref(), Some("CLUSTERLESS_READ_YOUR_WRITES_MS"));
        assert_eq!(env_of("--http"), None);
    }
}
