//! The binary's start-up contract: bad configuration or an unreachable cluster print one line
//! naming the key or address and exit with code 2, without a panic or backtrace.

use std::process::Command;

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_clusterless"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .env_remove("RUST_LOG")
        .output()
        .expect("run clusterless");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn assert_one_line_exit_2(args: &[&str], needle: &str) {
    let (code, err) = run(args);
    assert_eq!(code, 2, "exit code for {args:?}: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line for {args:?}: {err}");
    assert!(lines[0].contains(needle), "{:?} should mention {needle}", lines[0]);
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
}

#[test]
fn bad_config_and_unreachable_cluster_exit_2() {
    let dir = std::env::temp_dir().join(format!("clusterless-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[backend]\nrequest_timeout_ms = 0\n").unwrap();
    let unknown = dir.join("unknown.toml");
    std::fs::write(&unknown, "[backend]\nconections_per_node = 2\n").unwrap();
    let broken = dir.join("broken.toml");
    std::fs::write(&broken, "listen = [\n").unwrap();

    assert_one_line_exit_2(&["--config", bad.to_str().unwrap(), "--seed", "127.0.0.1:1"], "backend.request_timeout_ms");
    assert_one_line_exit_2(&["--config", unknown.to_str().unwrap(), "--seed", "127.0.0.1:1"], "conections_per_node");
    assert_one_line_exit_2(&["--config", broken.to_str().unwrap()], "broken.toml");
    assert_one_line_exit_2(&["--config", dir.join("missing.toml").to_str().unwrap()], "missing.toml");
    assert_one_line_exit_2(&["--listen", "nonsense", "--seed", "127.0.0.1:1"], "listen");
    assert_one_line_exit_2(&["--seed", "no-port"], "seeds");
    assert_one_line_exit_2(&[], "no seeds");
    // Nothing listens on port 1 of loopback.
    assert_one_line_exit_2(&["--seed", "127.0.0.1:1", "--listen", "127.0.0.1:0"], "127.0.0.1:1");
    let _ = std::fs::remove_dir_all(&dir);
}
