//! The `clusterless` binary: parses flags and config, then runs the proxy, or (`clusterless dev`)
//! a throw-away local cluster with the proxy in front of it. Start-up failures print one line and
//! exit with code 2.

use std::process::ExitCode;

use clusterless::config::{read_secret_file, Cli, Command, Config, DevArgs, Secret};
use clusterless::localcluster::{ClusterSpec, LocalCluster};

fn main() -> ExitCode {
    let cli = match Cli::parse_or_line() {
        Ok(c) => c,
        Err(line) => return fail(&line),
    };
    let cfg = match Config::load(&cli.proxy) {
        Ok(c) => c,
        Err(e) => return fail(&e.to_string()),
    };
    init_logs(&cfg);
    match cli.command {
        Some(Command::Dev(args)) => dev(cfg, args),
        Some(Command::Observe(args)) => {
            let token = match args.token_file.as_deref().map(|p| read_secret_file("--token-file", p)).transpose() {
                Ok(t) => t,
                Err(e) => return fail(&e.to_string()),
            };
            observe(cfg, args.http, token)
        }
        None => run(cfg),
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("clusterless: {msg}");
    ExitCode::from(2)
}

fn init_logs(cfg: &Config) {
    use std::io::IsTerminal;
    let rust_log = std::env::var("RUST_LOG").ok();
    let (level, ignored) = cfg.log.filter(rust_log.as_deref());
    // The level was validated with the configuration; RUST_LOG was checked by filter().
    let filter =
        tracing_subscriber::EnvFilter::try_new(&level).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes help a person at a terminal and garble a file, journald or a log shipper.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if cfg.log.json {
        builder.json().init();
    } else {
        builder.init();
    }
    if let Some(why) = ignored {
        tracing::warn!("{why}");
    }
}

/// The control plane's runtime (accepting, topology, observer, admin HTTP): light work that one
/// thread carries; clients are served on the proxy's own worker threads (`limits.threads`).
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

fn run(cfg: Config) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    rt.block_on(async {
        let running = match clusterless::start(cfg).await {
            Ok(r) => r,
            Err(e) => return fail(&e.to_string()),
        };
        wait_for_signal(Some(&running)).await;
        drain(&running).await;
        ExitCode::SUCCESS
    })
}

/// Graceful shutdown: stop taking clients, answer what was received, then stop.
async fn drain(running: &clusterless::Running) {
    let limit = running.config().drain_timeout;
    tracing::info!(timeout_ms = limit.as_millis() as u64, "draining: no new clients; finishing requests in flight");
    if running.drain(limit).await {
        tracing::info!("drained; exiting");
    } else {
        tracing::warn!("drain timeout reached with clients still connected; exiting");
    }
    running.stop();
}

/// Runs a standalone shared observer until SIGTERM/SIGINT.
fn observe(cfg: Config, http: std::net::SocketAddr, token: Option<Secret>) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    rt.block_on(async {
        let service = match clusterless::start_observer_with_token(&cfg, http, token).await {
            Ok(s) => s,
            Err(e) => return fail(&e.to_string()),
        };
        wait_for_signal(None).await;
        drop(service);
        ExitCode::SUCCESS
    })
}

/// Starts a local cluster, then the proxy in front of it; on Ctrl-C stops both and removes files.
fn dev(mut cfg: Config, args: DevArgs) -> ExitCode {
    let spec = ClusterSpec { masters: args.masters, replicas_per_master: args.replicas, ..ClusterSpec::default() };
    eprintln!(
        "clusterless dev: starting a local cluster ({} masters, {} replicas each)...",
        spec.masters, spec.replicas_per_master
    );
    // Started on the main thread: the nodes die with the thread that spawned them (PDEATHSIG).
    let mut cluster = match LocalCluster::start(&spec) {
        Ok(c) => c,
        Err(e) => return fail(&format!("cannot start the local cluster: {e}")),
    };
    cfg.seeds = vec![cluster.seed()];
    // `--port` wins over the port of `listen` (flag, variable or file), which otherwise stands.
    if let (Some(l), Some(port)) = (&mut cfg.listen, args.port) {
        l.set_port(port);
    }
    let code = match runtime() {
        Ok(rt) => rt.block_on(async {
            let running = match clusterless::start(cfg).await {
                Ok(r) => r,
                Err(e) => return fail(&e.to_string()),
            };
            let ports: Vec<String> = cluster.ports().iter().map(u16::to_string).collect();
            println!("cluster nodes on 127.0.0.1 ports {} (files in {})", ports.join(", "), cluster.dir().display());
            println!(
                "clusterless is ready; connect with:\n\n    redis-cli -p {}\n\nCtrl-C stops the proxy and the cluster.",
                running.addr().port()
            );
            wait_for_signal(Some(&running)).await;
            drain(&running).await;
            ExitCode::SUCCESS
        }),
        Err(e) => fail(&format!("cannot start the runtime: {e}")),
    };
    eprintln!("clusterless dev: stopping the cluster");
    cluster.stop();
    code
}

/// Waits for SIGTERM or SIGINT. With a TLS listener, SIGHUP reloads its files meanwhile (the
/// outcome is logged there); without one, SIGHUP keeps its default: it ends the process.
async fn wait_for_signal(proxy: Option<&clusterless::Running>) {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    let mut hup = match proxy.filter(|p| p.tls_addr().is_some()) {
        Some(p) => signal(SignalKind::hangup()).ok().map(|s| (s, p)),
        None => None,
    };
    match (term, int) {
        (Ok(mut t), Ok(mut i)) => loop {
            tokio::select! {
                _ = t.recv() => return,
                _ = i.recv() => return,
                Some(p) = async { match &mut hup { Some((s, p)) => s.recv().await.map(|_| *p), None => None } } => {
                    let _ = p.reload_tls();
                }
            }
        },
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
