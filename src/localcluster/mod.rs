//! Throw-away local Redis Clusters: the one place that starts, changes and stops them, used by
//! `clusterless dev` and by every test. Nodes are `redis-server` processes from PATH on loopback,
//! on ports picked at random (so tests run in parallel), with their files in a private temporary
//! directory. Only processes started here are ever signalled, by PID; dropping a [`LocalCluster`]
//! kills them and removes the directory, whether the caller succeeded or panicked. What the
//! cluster says of itself is read with redis-cli and this module's own reader ([`view`]), never
//! with the proxy's parsers, so that tests compare the proxy with an independent account.
//! A cluster may run TLS everywhere ([`TlsSpec`]): redis-cli then speaks TLS too.

mod health;
mod ops;
mod view;

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What to start.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    pub masters: usize,
    pub replicas_per_master: usize,
    pub node_timeout_ms: u64,
    /// `requirepass` and `masterauth` on every node.
    pub password: Option<String>,
    /// The loopback address the nodes bind: `127.0.0.1`, or `::1` for an IPv6 cluster.
    pub host: String,
    /// `cluster-announce-hostname` of every node.
    pub hostname: Option<String>,
    /// `cluster-preferred-endpoint-type` of every node: `ip`, `hostname` or `unknown-endpoint`.
    pub endpoint_type: Option<String>,
    /// TLS everywhere: client ports (`port 0`), the cluster bus and replication; `None`: plain.
    pub tls: Option<TlsSpec>,
}

/// The certificates of a TLS cluster (PEM files made by the caller): each node serves `cert`
/// (also its client certificate on the bus and for replication), all trust `ca`, and the
/// harness's own redis-cli calls present `cert` too.
#[derive(Clone, Debug)]
pub struct TlsSpec {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// `tls-auth-clients` on the client ports: `yes` (a client certificate is required),
    /// `optional` or `no`. The bus always requires one.
    pub auth_clients: String,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            masters: 3,
            replicas_per_master: 1,
            node_timeout_ms: 2000,
            password: None,
            host: "127.0.0.1".into(),
            hostname: None,
            endpoint_type: None,
            tls: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("redis-server/redis-cli not found on PATH (install the redis-server and redis-tools packages)")]
    MissingRedis,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{what} (waited {secs} s)")]
    Timeout { what: String, secs: u64 },
    #[error("redis-cli {args} failed: {out}")]
    Cli { args: String, out: String },
    #[error("{0}")]
    Other(String),
}

type Result<T> = std::result::Result<T, HarnessError>;

struct NodeProc {
    port: u16,
    child: Option<Child>,
    /// SIGSTOPped: alive, but every query to it would hang until its timeout.
    stopped: bool,
}

/// A running local cluster; stopped on drop.
pub struct LocalCluster {
    nodes: Vec<NodeProc>,
    /// Plain (non-cluster) servers started beside the cluster, to stand where a node was.
    strangers: Vec<NodeProc>,
    dir: PathBuf,
    spec: ClusterSpec,
}

/// True when redis-server and redis-cli can be run.
pub fn redis_server_available() -> bool {
    let ok = |bin: &str| Command::new(bin).arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    ok("redis-server") && ok("redis-cli")
}

/// Ports below this keep their bus port (+10000) under 55536, which cluster mode requires.
const MAX_PORT: u16 = 45535;
const MIN_PORT: u16 = 20000;

fn port_free(host: &str, p: u16) -> bool {
    TcpListener::bind((host, p)).is_ok()
}

/// Picks `n` client ports on `host` whose bus ports are free too.
fn pick_ports(host: &str, n: usize, avoid: &[u16]) -> Vec<u16> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let p = rand::random_range(MIN_PORT..=MAX_PORT);
        if !out.contains(&p) && !avoid.contains(&p) && port_free(host, p) && port_free(host, p + 10000) {
            out.push(p);
        }
    }
    out
}

impl LocalCluster {
    /// Starts the nodes, joins them into a cluster and waits until it is healthy. On failure
    /// everything started is cleaned up; port clashes with a parallel test are retried.
    pub fn start(spec: &ClusterSpec) -> Result<LocalCluster> {
        if !redis_server_available() {
            return Err(HarnessError::MissingRedis);
        }
        let mut last = None;
        for _ in 0..4 {
            match LocalCluster::try_start(spec) {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| HarnessError::Other("cluster start failed".into())))
    }

    fn try_start(spec: &ClusterSpec) -> Result<LocalCluster> {
        let n = spec.masters * (1 + spec.replicas_per_master);
        let dir = std::env::temp_dir().join(format!(
            "clusterless-cluster-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir)?;
        let mut c = LocalCluster { nodes: Vec::new(), strangers: Vec::new(), dir, spec: spec.clone() };
        for port in pick_ports(&spec.host, n, &[]) {
            c.spawn_node(port, None)?;
        }
        for i in 0..c.nodes.len() {
            c.wait_ping(c.nodes[i].port, Duration::from_secs(10))?;
        }
        let mut args: Vec<String> = vec!["--cluster".into(), "create".into()];
        args.extend(c.nodes.iter().map(|n| c.at(n.port)));
        args.extend(["--cluster-replicas".into(), spec.replicas_per_master.to_string(), "--cluster-yes".into()]);
        let seed = c.nodes[0].port;
        c.cli_args(seed, &args, Duration::from_secs(60))?;
        c.wait_ok(Duration::from_secs(30))?;
        Ok(c)
    }

    /// Starts a node on `port`; with `config_from`, with that node's cluster configuration (its id
    /// and what it knows of the cluster), as a node restarted elsewhere.
    fn spawn_node(&mut self, port: u16, config_from: Option<u16>) -> Result<()> {
        let child = self.spawn(port, config_from, true)?;
        self.nodes.push(NodeProc { port, child: Some(child), stopped: false });
        Ok(())
    }

    /// Starts a plain, non-cluster redis-server on `port` (a free one when `None`), with the
    /// cluster's password: what a proxy must never mistake for a node, whatever tells it the
    /// address. Stopped with the cluster. Returns its port.
    pub fn start_stranger(&mut self, port: Option<u16>) -> Result<u16> {
        let used: Vec<u16> = self.ports().into_iter().chain(self.strangers.iter().map(|n| n.port)).collect();
        let port = port.unwrap_or_else(|| pick_ports(&self.spec.host, 1, &used)[0]);
        let child = self.spawn(port, None, false)?;
        self.strangers.push(NodeProc { port, child: Some(child), stopped: false });
        self.wait_ping(port, Duration::from_secs(10))?;
        Ok(port)
    }

    fn spawn(&mut self, port: u16, config_from: Option<u16>, cluster: bool) -> Result<Child> {
        let dir = self.dir.join(format!("{port}{}", if cluster { "" } else { "-plain" }));
        std::fs::create_dir_all(&dir)?;
        if let Some(old) = config_from {
            std::fs::copy(self.dir.join(old.to_string()).join("nodes.conf"), dir.join("nodes.conf"))?;
        }
        let listen = match &self.spec.tls {
            None => format!("port {port}"),
            Some(t) => format!(
                "port 0\ntls-port {port}\ntls-replication yes\ntls-cert-file {}\ntls-key-file {}\n\
                 tls-ca-cert-file {}\ntls-auth-clients {}{}",
                t.cert.display(),
                t.key.display(),
                t.ca.display(),
                t.auth_clients,
                if cluster { "\ntls-cluster yes" } else { "" }
            ),
        };
        let mut conf = format!(
            "{listen}\nbind {}\nprotected-mode no\nappendonly no\nsave \"\"\ndaemonize no\ndir {}\nlogfile {}\n",
            self.spec.host,
            dir.display(),
            dir.join("redis.log").display()
        );
        if cluster {
            conf.push_str(&format!(
                "cluster-enabled yes\ncluster-config-file nodes.conf\ncluster-node-timeout {}\n",
                self.spec.node_timeout_ms
            ));
        }
        if let Some(p) = &self.spec.password {
            conf.push_str(&format!("requirepass {p}\nmasterauth {p}\n"));
        }
        if let Some(h) = self.spec.hostname.as_ref().filter(|_| cluster) {
            conf.push_str(&format!("cluster-announce-hostname {h}\n"));
        }
        if let Some(t) = self.spec.endpoint_type.as_ref().filter(|_| cluster) {
            conf.push_str(&format!("cluster-preferred-endpoint-type {t}\n"));
        }
        let conf_path = dir.join("redis.conf");
        std::fs::write(&conf_path, conf)?;
        let mut cmd = Command::new("redis-server");
        cmd.arg(&conf_path).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        // The nodes must not outlive the process that started them, even if it is killed. Note
        // that PDEATHSIG follows the spawning *thread*: start clusters from a thread that outlives
        // them (the test's own thread, or main).
        set_pdeathsig(&mut cmd);
        Ok(cmd.spawn()?)
    }

    fn wait_ping(&self, port: u16, limit: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            if let Ok(out) = self.cli(port, &["PING"]) {
                if out.contains("PONG") {
                    return Ok(());
                }
            }
            // A stranger may stand on a killed node's port: only a port where nothing started
            // here is alive has seen its server exit.
            let mut started = self.nodes.iter().chain(&self.strangers).filter(|n| n.port == port).peekable();
            if started.peek().is_some() && !started.any(NodeProc::alive) {
                return Err(HarnessError::Other(format!("redis-server on port {port} exited at start")));
            }
            if start.elapsed() > limit {
                return Err(HarnessError::Timeout {
                    what: format!("node {port} to answer PING"),
                    secs: limit.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Client ports of every node started (killed and removed ones included).
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// Nodes that are running and not stopped: the ones worth asking.
    fn live_ports(&self) -> Vec<u16> {
        self.nodes.iter().filter(|n| n.child.is_some() && !n.stopped).map(|n| n.port).collect()
    }

    /// `HOST:PORT` of a live node, as the proxy takes it (an IPv6 host in brackets).
    pub fn seed(&self) -> String {
        let port = self.live_ports().first().copied().unwrap_or(0);
        if self.spec.host.contains(':') {
            format!("[{}]:{port}", self.spec.host)
        } else {
            format!("{}:{port}", self.spec.host)
        }
    }

    /// `HOST:PORT` of a node as redis-cli's cluster commands take it (IPv6 without brackets).
    fn at(&self, port: u16) -> String {
        format!("{}:{port}", self.spec.host)
    }

    /// The certificates of a TLS cluster; `None` for a plain one.
    pub fn tls(&self) -> Option<&TlsSpec> {
        self.spec.tls.as_ref()
    }

    pub fn password(&self) -> Option<&str> {
        self.spec.password.as_deref()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log_path(&self, port: u16) -> PathBuf {
        self.dir.join(port.to_string()).join("redis.log")
    }

    /// Runs redis-cli against one node and returns its trimmed output.
    pub fn cli(&self, port: u16, args: &[&str]) -> Result<String> {
        let owned: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        self.cli_args(port, &owned, Duration::from_secs(20))
    }

    fn cli_args(&self, port: u16, args: &[String], limit: Duration) -> Result<String> {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", &self.spec.host, "-p", &port.to_string()]);
        if let Some(p) = &self.spec.password {
            cmd.args(["-a", p, "--no-auth-warning"]);
        }
        if let Some(t) = &self.spec.tls {
            cmd.arg("--tls").arg("--cacert").arg(&t.ca).arg("--cert").arg(&t.cert).arg("--key").arg(&t.key);
        }
        // Output goes to files, not pipes: a long reshard prints more than a pipe holds, and
        // redis-cli would block writing while we wait for it to exit.
        let tag = format!("cli-{}-{:08x}", std::process::id(), rand::random::<u32>());
        let out_path = std::env::temp_dir().join(format!("{tag}.out"));
        let err_path = std::env::temp_dir().join(format!("{tag}.err"));
        let result = (|| {
            let out_file = std::fs::File::create(&out_path)?;
            let err_file = std::fs::File::create(&err_path)?;
            cmd.args(args).stdin(Stdio::null()).stdout(out_file).stderr(err_file);
            let mut child = cmd.spawn()?;
            let start = Instant::now();
            // A SIGSTOPped node would make redis-cli wait forever: poll with a deadline.
            let status = loop {
                if let Some(st) = child.try_wait()? {
                    break st;
                }
                if start.elapsed() > limit {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(HarnessError::Timeout {
                        what: format!("redis-cli {}", args.join(" ")),
                        secs: limit.as_secs(),
                    });
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
            let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
            let text = format!("{stdout}{stderr}");
            if !status.success() || text.starts_with("ERR") || text.contains("[ERR]") {
                return Err(HarnessError::Cli { args: args.join(" "), out: text.trim().to_string() });
            }
            Ok(stdout.trim().to_string())
        })();
        let _ = std::fs::remove_file(&out_path);
        let _ = std::fs::remove_file(&err_path);
        result
    }

    fn node_mut(&mut self, port: u16) -> Result<&mut NodeProc> {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .ok_or_else(|| HarnessError::Other(format!("no node on port {port}")))
    }

    fn signal(&mut self, port: u16, sig: i32) -> Result<()> {
        let n = self.node_mut(port)?;
        let Some(child) = n.child.as_ref() else {
            return Err(HarnessError::Other(format!("node {port} is not running")));
        };
        let pid = child.id() as i32;
        if kill(pid, sig) != 0 {
            return Err(HarnessError::Other(format!("signal {sig} to pid {pid} failed")));
        }
        Ok(())
    }

    /// SIGKILL of one node (a process this cluster started), then reaps it.
    pub fn kill9(&mut self, port: u16) -> Result<()> {
        let n = self.node_mut(port)?;
        if let Some(mut child) = n.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        Ok(())
    }

    /// SIGSTOP: the node hangs without closing its sockets.
    pub fn sigstop(&mut self, port: u16) -> Result<()> {
        self.signal(port, libc::SIGSTOP)?;
        self.node_mut(port)?.stopped = true;
        Ok(())
    }

    pub fn sigcont(&mut self, port: u16) -> Result<()> {
        self.signal(port, libc::SIGCONT)?;
        self.node_mut(port)?.stopped = false;
        Ok(())
    }

    /// Kills every node and removes the directory. Safe to call more than once.
    pub fn stop(&mut self) {
        for n in self.nodes.iter_mut().chain(self.strangers.iter_mut()) {
            if let Some(mut child) = n.child.take() {
                let pid = child.id() as i32;
                // A stopped process ignores SIGKILL until continued on some kernels' accounting; be sure.
                kill(pid, libc::SIGCONT);
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// Lines a node logged at WARNING level (`#`), for tests that check the nodes stayed quiet.
    pub fn warnings(&self, port: u16) -> Vec<String> {
        std::fs::read_to_string(self.log_path(port))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(" # "))
            .map(str::to_string)
            .collect()
    }
}

impl NodeProc {
    fn alive(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Asks the kernel to SIGKILL the child when the spawning thread exits.
#[allow(unsafe_code)]
fn set_pdeathsig(cmd: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec and only calls prctl(2), which is
    // async-signal-safe and touches no memory shared with the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// kill(2) on a PID this harness spawned and has not reaped yet (so it cannot have been reused).
#[allow(unsafe_code)]
fn kill(pid: i32, sig: i32) -> i32 {
    // SAFETY: plain syscall wrapper; no memory is passed.
    unsafe { libc::kill(pid, sig) }
}
