//! The built `clusterless` binary as a child process, for the tests of what only a process shows
//! (exit codes, stderr, signals, flags and environment variables): started with no
//! `CLUSTERLESS_*` or `RUST_LOG` from the test's own environment, its stderr in a file, stopped
//! by its PID. Also free loopback ports and a scratch directory for config files.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Raw, PATIENCE};

/// The binary with these flags and variables, and no other `CLUSTERLESS_*` or `RUST_LOG`.
pub fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_clusterless"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CLUSTERLESS_") || k == "RUST_LOG") {
        cmd.env_remove(k);
    }
    cmd.args(args).envs(env.iter().copied()).env("RUST_BACKTRACE", "1");
    cmd
}

/// Runs the binary to its end: exit code and stderr.
pub fn run_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = command(args, env).stdin(Stdio::null()).output().expect("run clusterless");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A loopback port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The binary running, its stderr in a file; killed on drop if still running, and the file
/// removed.
pub struct Bin {
    pub child: std::process::Child,
    log: PathBuf,
}

impl Bin {
    pub fn spawn(args: &[&str]) -> Bin {
        Bin::spawn_env(args, &[])
    }

    pub fn spawn_env(args: &[&str], env: &[(&str, &str)]) -> Bin {
        let log = std::env::temp_dir().join(format!(
            "clusterless-bin-{}-{:08x}.log",
            std::process::id(),
            rand::random::<u32>()
        ));
        let child = command(args, env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start clusterless");
        Bin { child, log }
    }

    /// Everything it wrote to stderr so far, as written.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal to this process (by its PID).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([&format!("-{sig}"), &self.child.id().to_string()]).status().unwrap();
        assert!(ok.success());
    }

    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Its exit code, waiting up to `limit`; None if it is still running then.
    pub async fn exit_code(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s.code().unwrap_or(-1));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    /// SIGTERM, then its exit code (None if it is still running after [`PATIENCE`]).
    pub async fn stop(&mut self) -> Option<i32> {
        self.signal("TERM");
        self.exit_code(PATIENCE).await
    }

    /// A client at `addr`, once the proxy answers there; a PONG proves it was accepted (the
    /// kernel completes a handshake from the backlog before the proxy accepts). Fails with the
    /// log if the process exits or never listens.
    pub async fn client(&mut self, addr: SocketAddr) -> Raw {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(s) = tokio::net::TcpStream::connect(addr).await {
                let mut raw = Raw::new(s);
                assert_eq!(raw.cmd(&[b"PING"]).await, b"+PONG\r\n");
                return raw;
            }
            assert!(self.running() && Instant::now() < deadline, "not serving on {addr}; log: {}", self.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Bin {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A scratch directory for config files, removed on drop (pass or fail).
pub struct Dir(pub PathBuf);

impl Dir {
    pub fn new() -> Dir {
        let d =
            std::env::temp_dir().join(format!("clusterless-dir-{}-{:08x}", std::process::id(), rand::random::<u32>()));
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    /// Writes `text` to the file `name` in it; its path.
    pub fn file(&self, name: &str, text: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    }
}

impl Default for Dir {
    fn default() -> Dir {
        Dir::new()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
