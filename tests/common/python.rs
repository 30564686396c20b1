//! The real client programs (Python scripts under tests/python), run to completion against the
//! proxy with a wall-clock limit.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::Env;

/// Wall-clock limit for one client script (the scripts bound themselves well below this).
const SCRIPT_LIMIT: Duration = Duration::from_secs(180);

fn script(name: &str) -> String {
    format!("{}/tests/python/{name}", env!("CARGO_MANIFEST_DIR"))
}

struct Outcome {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs `python3 SCRIPT ARGS...` to completion, killing it if it outlives `SCRIPT_LIMIT`. Blocking, so
/// call it inside `block_in_place`.
fn run_python(name: &str, args: &[&str]) -> Outcome {
    let mut child = Command::new("python3")
        .arg(script(name))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/setup installs redis-py and celery)");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for python3") {
            break Some(status);
        }
        if started.elapsed() > SCRIPT_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned();
    let mut stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
    if status.is_none() {
        stderr.push_str(&format!("\n[killed after {SCRIPT_LIMIT:?}]"));
    }
    Outcome { ok: status.is_some_and(|s| s.success()), stdout, stderr }
}

/// Runs the script against the proxy and checks it succeeded and printed `done`.
pub fn expect_ok(env: &Env, name: &str, extra: &[&str], done: &str) {
    expect_ok_at(env.addr().port(), name, extra, done);
}

/// [`expect_ok`] against the listener on `port` (the TLS one, say).
pub fn expect_ok_at(port: u16, name: &str, extra: &[&str], done: &str) {
    let port = port.to_string();
    let mut args = vec![port.as_str()];
    args.extend_from_slice(extra);
    let o = tokio::task::block_in_place(|| run_python(name, &args));
    assert!(
        o.ok && o.stdout.contains(done),
        "{name} {extra:?} failed:\n--- stdout\n{}\n--- stderr\n{}",
        o.stdout,
        o.stderr
    );
}
