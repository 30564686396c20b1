//! Real client tools against the proxy: redis-benchmark (pipelined, several command types) and
//! redis-py (RESP2 and RESP3).

mod common;

use std::process::Command;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_benchmark_runs_without_errors() {
    let env = start(small()).await;
    let port = env.addr().port().to_string();
    let out = tokio::task::block_in_place(|| {
        Command::new("redis-benchmark")
            .args(["-h", "127.0.0.1", "-p", &port, "-t", "set,get,mset,lpush,incr", "-n", "20000", "-P", "16", "-q"])
            .output()
    })
    .expect("redis-benchmark runs (installed by scripts/setup)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "redis-benchmark failed: {stdout}{stderr}");
    for t in ["SET", "GET", "INCR", "LPUSH", "MSET"] {
        // redis-benchmark redraws progress with \r; the final figure follows the last one.
        let done =
            stdout.split(['\r', '\n']).any(|l| l.trim_start().starts_with(t) && l.contains("requests per second"));
        assert!(done, "{t} missing: {stdout}");
    }
    assert!(!stdout.contains("rror") && !stderr.contains("rror"), "errors: {stdout}{stderr}");
    let mut c = env.conn().await;
    let n: i64 = redis::cmd("GET").arg("counter:__rand_int__").query_async(&mut c).await.unwrap();
    assert_eq!(n, 20000, "every INCR landed once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_works_as_with_one_server() {
    let env = start(small()).await;
    expect_ok(&env, "redis_py_smoke.py", &[], "redis-py ok");
}
