//! Operations: metrics that move by exactly what real traffic explains (and pass `promtool check
//! metrics`), graceful drain in process and through the real binary (SIGTERM with a deep pipeline
//! in flight, SIGINT with a half-sent request, the drain timeout running out on a client blocked
//! forever), logs (a given level beats RUST_LOG, no colour codes in a file, JSON), and the deploy/
//! files. The admin endpoint's topology, readiness and
//! failure metrics are in tests/admin.rs.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clusterless::localcluster::LocalCluster;
use common::bin::{free_port, local, Bin, Dir};
use common::http::{admin_on, get, http, samples, scrape};
use common::*;
use serde::Deserialize;
use serde_json::Value;

/// A raw client that counts the bytes it sends and receives.
struct Counted {
    raw: Raw,
    sent: usize,
    received: usize,
}

impl Counted {
    async fn cmd(&mut self, args: &[&str]) -> String {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let frame = clusterless::resp::encode_command(&args);
        self.sent += frame.len();
        self.raw.send(&frame).await;
        let r = self.raw.read_replies(1).await.pop().expect("a reply");
        self.received += r.len();
        String::from_utf8_lossy(&r).into_owned()
    }
}

/// Every figure the traffic explains, checked by its exact amount: commands by name and result
/// (`ok`, `error` from the proxy and from a node, `redirect` after a real MOVED), durations by
/// class, bytes each way, retries and holds, the topology figures; the bus observer's PONGs per
/// node; and promtool agrees the exposition is well-formed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_by_exactly_the_traffic_sent() {
    let env = start_with(small(), admin_on).await;
    let admin = env.proxy.admin_addr().expect("admin on");
    let mut c = Counted { raw: Raw::connect(env.addr()).await, sent: 0, received: 0 };
    // Accepted before the first scrape.
    assert_eq!(c.cmd(&["PING"]).await, "+PONG\r\n");
    let before = scrape(admin).await;
    let (sent0, received0) = (c.sent, c.received);

    for i in 0..100 {
        assert_eq!(c.cmd(&["SET", &format!("m{i}"), &i.to_string()]).await, "+OK\r\n");
    }
    for i in 0..40 {
        let v = i.to_string();
        assert_eq!(c.cmd(&["GET", &format!("m{i}")]).await, format!("${}\r\n{v}\r\n", v.len()));
    }
    let keys: Vec<String> = (0..30).map(|i| format!("m{i}")).collect();
    let mut mget = vec!["MGET"];
    mget.extend(keys.iter().map(String::as_str));
    assert!(c.cmd(&mget).await.starts_with("*30\r\n$1\r\n0\r\n"));
    for _ in 0..7 {
        assert!(c.cmd(&["NOSUCHCMD"]).await.starts_with("-ERR unknown command 'NOSUCHCMD'"));
    }
    // A known command with the wrong number of arguments counts under its own name (a
    // subcommand under its container), as any error of that command does.
    for _ in 0..4 {
        assert_eq!(c.cmd(&["GET"]).await, "-ERR wrong number of arguments for 'get' command\r\n");
    }
    assert_eq!(
        c.cmd(&["OBJECT", "ENCODING"]).await,
        "-ERR wrong number of arguments for 'object|encoding' command\r\n"
    );
    assert_eq!(c.cmd(&["LPUSH", "mlist", "a"]).await, ":1\r\n");
    // Errors from a node count as errors of the command.
    for _ in 0..3 {
        assert_eq!(
            c.cmd(&["GET", "mlist"]).await,
            "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
        );
    }
    for _ in 0..5 {
        assert_eq!(c.cmd(&["PING"]).await, "+PONG\r\n");
    }
    for _ in 0..2 {
        assert!(c.cmd(&["TIME"]).await.starts_with("*2\r\n"));
    }
    assert_eq!(c.cmd(&["DBSIZE"]).await, ":101\r\n");
    assert!(c.cmd(&["SCAN", "0"]).await.starts_with("*2\r\n"));
    assert!(c.cmd(&["INFO", "server"]).await.starts_with('$'));
    assert!(c.cmd(&["DEBUG", "SLEEP", "0"]).await.starts_with("-ERR"));
    // A transaction (each of its commands is timed as one) and two blocking commands.
    assert_eq!(c.cmd(&["MULTI"]).await, "+OK\r\n");
    assert_eq!(c.cmd(&["INCR", "mcounter"]).await, "+QUEUED\r\n");
    assert_eq!(c.cmd(&["EXEC"]).await, "*1\r\n:1\r\n");
    assert_eq!(c.cmd(&["BLPOP", "mlist", "1"]).await, "*2\r\n$5\r\nmlist\r\n$1\r\na\r\n");
    assert_eq!(c.cmd(&["WAIT", "0", "0"]).await, ":0\r\n");
    // A real MOVED from the cluster: point one slot of the proxy's map at the wrong master. The
    // bus re-asserts the right owner within a ping interval, so a GET may find it fixed already;
    // count the tries until one met the MOVED.
    let key = "moved-key";
    let slot = clusterless::slot::slot(key.as_bytes());
    let owner = env.cluster.slot_owner(slot).unwrap();
    let wrong = env.cluster.masters().into_iter().find(|&m| m != owner).unwrap();
    let mut tries = 0.0;
    while env.proxy.redirects("moved") == 0 {
        assert!(tries < 50.0, "never met a MOVED");
        env.proxy.misroute_slot(slot, &format!("127.0.0.1:{wrong}"));
        assert_eq!(c.cmd(&["GET", key]).await, "$-1\r\n");
        tries += 1.0;
    }

    let (status, text) = http(admin, "GET", "/metrics").await;
    assert_eq!(status, 200);
    let after = samples(&text);
    let delta = |k: &str| get(&after, k) - get(&before, k);
    let cmd = |name: &str, result: &str| {
        delta(&format!("clusterless_commands_total{{command=\"{name}\",result=\"{result}\"}}"))
    };
    assert_eq!(cmd("set", "ok"), 100.0);
    assert_eq!(cmd("get", "ok"), 40.0 + tries - 1.0);
    assert_eq!(cmd("get", "error"), 3.0 + 4.0, "WRONGTYPE from the node, and GET without its key");
    assert_eq!(cmd("object", "error"), 1.0, "OBJECT ENCODING without its key");
    assert_eq!(cmd("get", "redirect"), 1.0);
    assert_eq!(cmd("mget", "ok"), 1.0);
    assert_eq!(cmd("lpush", "ok"), 1.0);
    assert_eq!(cmd("other", "error"), 7.0, "unknown commands, and only they");
    assert_eq!(cmd("ping", "ok"), 5.0);
    assert_eq!(cmd("time", "ok"), 2.0);
    assert_eq!(cmd("dbsize", "ok"), 1.0);
    assert_eq!(cmd("scan", "ok"), 1.0);
    assert_eq!(cmd("info", "ok"), 1.0);
    assert_eq!(cmd("debug", "error"), 1.0);
    assert_eq!(cmd("set", "error") + cmd("mget", "error") + cmd("ping", "error"), 0.0);
    let class = |c: &str| delta(&format!("clusterless_command_duration_seconds_count{{class=\"{c}\"}}"));
    assert_eq!(class("keyed"), 100.0 + 40.0 + 1.0 + 3.0 + tries);
    assert_eq!(class("fanout"), 1.0);
    assert_eq!(class("local"), 5.0);
    assert_eq!(class("any_master"), 2.0);
    assert_eq!(class("all_masters"), 1.0);
    assert_eq!(class("scan"), 1.0);
    assert_eq!(class("info"), 1.0);
    // DEBUG, the unknown commands and the wrong arities: answered by the proxy's refusal.
    assert_eq!(class("refused"), 1.0 + 7.0 + 5.0);
    assert_eq!(class("transaction"), 3.0, "MULTI, the queued INCR, EXEC");
    assert_eq!((cmd("multi", "ok"), cmd("incr", "ok"), cmd("exec", "ok")), (1.0, 1.0, 1.0));
    assert_eq!(class("blocking"), 2.0, "BLPOP and WAIT");
    assert_eq!((cmd("blpop", "ok"), cmd("wait", "ok")), (1.0, 1.0));
    // The README names every class the histogram has.
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let row = readme.lines().find(|l| l.starts_with("| `command_duration_seconds`")).expect("README's duration row");
    let classes: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("clusterless_command_duration_seconds_count{class=\""))
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert_eq!(classes.len(), 10, "{classes:?}");
    for c in classes {
        assert!(row.contains(&format!("`{c}`")), "README's duration row does not name class {c}: {row}");
    }
    // Every command counted is timed once, in exactly one class.
    let total = |family: &str| -> f64 {
        after.keys().filter(|k| k.starts_with(family)).map(|k| get(&after, k) - get(&before, k)).sum()
    };
    assert_eq!(total("clusterless_command_duration_seconds_count{"), total("clusterless_commands_total{"));
    assert_eq!(delta(r#"clusterless_redirects_total{kind="moved"}"#), 1.0);
    assert_eq!(delta(r#"clusterless_redirects_total{kind="ask"}"#), 0.0);
    assert_eq!(delta("clusterless_retries_total"), 1.0, "the GET sent again after its MOVED");
    assert_eq!(delta("clusterless_requests_held_total"), 0.0, "nothing waited for the cluster");
    assert_eq!(delta("clusterless_client_protocol_errors_total"), 0.0);
    assert_eq!(get(&after, "clusterless_client_connections"), 1.0);
    let versions = delta("clusterless_topology_version");
    assert!(versions >= 1.0, "the MOVED patch is a new map");
    assert_eq!(delta("clusterless_topology_changes_total"), versions);
    assert_eq!(get(&after, "clusterless_slots_uncovered"), 0.0);
    assert_eq!(get(&after, "clusterless_masters"), 3.0);
    assert_eq!(get(&after, "clusterless_draining"), 0.0);
    for (source, v) in [("bus", 1.0), ("bootstrap", 0.0), ("poll", 0.0), ("observer", 0.0)] {
        let got = after.get(&format!("clusterless_topology_source{{source=\"{source}\"}}"));
        assert_eq!(got, Some(&v), "the bus observer is the default source ({source})");
    }
    // Connections to exactly the three masters.
    let mut conns: Vec<String> = after
        .iter()
        .filter(|(k, v)| k.starts_with("clusterless_backend_connections{") && **v >= 1.0)
        .map(|(k, _)| k.split('"').nth(1).unwrap().to_string())
        .collect();
    conns.sort();
    let mut masters: Vec<String> = env.cluster.masters().iter().map(|p| format!("127.0.0.1:{p}")).collect();
    masters.sort();
    assert_eq!(conns, masters);
    // Bytes each way, exactly what this client sent and read (counted once written).
    let (sent, received) = ((c.sent - sent0) as f64, (c.received - received0) as f64);
    eventually_async("bytes in and out are the client's", || async {
        let s = scrape(admin).await;
        let d = |k: &str| get(&s, k) - get(&before, k);
        d("clusterless_client_bytes_received_total") == sent && d("clusterless_client_bytes_sent_total") == received
    })
    .await;
    // The bus observer's PONGs, per node bus port (client port + 10000 in the harness).
    eventually_async("PONGs from every node", || async {
        let s = scrape(admin).await;
        env.cluster.ports().iter().all(|p| {
            get(&s, &format!("clusterless_observer_pong_seconds_count{{bus=\"127.0.0.1:{}\"}}", p + 10000)) > 0.0
        }) && get(&s, "clusterless_observer_pongs_total") > get(&before, "clusterless_observer_pongs_total")
            && get(&s, "clusterless_observer_pings_total{mode=\"slow\"}")
                + get(&s, "clusterless_observer_pings_total{mode=\"fast\"}")
                >= get(&s, "clusterless_observer_pongs_total")
    })
    .await;

    // promtool agrees the exposition is well-formed and well-named.
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (installed by scripts/setup from Debian's prometheus package)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_503_while_draining() {
    let env = start_with(small(), admin_on).await;
    let admin = env.proxy.admin_addr().unwrap();
    assert_eq!(http(admin, "GET", "/readyz").await, (200, "ready\n".to_string()));
    // A client in the middle of sending a request keeps the drain waiting, once the proxy has
    // read that half.
    let mut half = Raw::connect(env.addr()).await;
    let head = b"*2\r\n$3\r\nGET\r\n";
    half.send(head).await;
    eventually_async("the proxy read the half-sent request", || async {
        get(&scrape(admin).await, "clusterless_client_bytes_received_total") == head.len() as f64
    })
    .await;
    let drained = {
        let proxy = &env.proxy;
        let drain = proxy.drain(PATIENCE);
        tokio::pin!(drain);
        // Let time pass on purpose: the drain must still be waiting after it.
        tokio::select! {
            _ = &mut drain => panic!("drain must wait for the half-sent request"),
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
        }
        assert_eq!(http(admin, "GET", "/readyz").await, (503, "draining: shutting down\n".to_string()));
        assert_eq!(get(&scrape(admin).await, "clusterless_draining"), 1.0);
        // New clients are refused once draining started.
        assert!(tokio::net::TcpStream::connect(env.addr()).await.is_err(), "listener closed");
        // The half-sent request completes and is answered.
        half.send(b"$1\r\nk\r\n").await;
        assert_eq!(half.read_replies(1).await, vec![b"$-1\r\n".to_vec()]);
        drain.await
    };
    assert!(drained, "drain finishes once the last client is answered");
    assert!(half.closed().await, "the answered client is closed");
}

fn cluster() -> LocalCluster {
    init_logs();
    tokio::task::block_in_place(|| LocalCluster::start(&small())).expect("start cluster")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_every_pipelined_request_then_exits_0() {
    let cluster = cluster();
    let addr = local(free_port());
    let mut bin = Bin::spawn(&["--seed", &cluster.seed(), "--listen", &addr.to_string(), "--metrics", ""]);
    let mut raw = bin.client(addr).await;
    let n = 20_000;
    let mut batch = Vec::new();
    for _ in 0..n {
        batch.extend_from_slice(b"*2\r\n$4\r\nINCR\r\n$7\r\ndrained\r\n");
    }
    raw.send(&batch).await;
    // SIGTERM to the process we started, while the pipeline is in flight.
    bin.signal("TERM");
    let replies = raw.read_replies(n).await;
    assert_eq!(replies.len(), n, "every pipelined request answered");
    for (i, r) in replies.iter().enumerate() {
        assert_eq!(r, format!(":{}\r\n", i + 1).as_bytes(), "reply {i}");
    }
    assert!(raw.closed().await, "connection closed after draining");
    let exit = bin.exit_code(PATIENCE).await;
    let log = bin.log();
    assert_eq!(exit, Some(0), "exit code 0 after drain; log: {log}");
    assert!(log.contains("draining: no new clients; finishing requests in flight"), "drain logged: {log}");
    assert!(log.contains("drained; exiting"), "{log}");
    // stderr is a file here, not a terminal: no colour codes in it.
    assert!(!log.contains('\u{1b}'), "ANSI escapes in a log file: {log:?}");
}

/// SIGINT drains as SIGTERM does, seen from outside the process: /readyz turns 503 with the
/// reason, the listener closes, a client's half-sent request keeps the process alive until it is
/// completed and answered, then its connection closes and the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_drains_like_sigterm() {
    let cluster = cluster();
    let (addr, admin) = (local(free_port()), local(free_port()));
    let mut bin =
        Bin::spawn(&["--seed", &cluster.seed(), "--listen", &addr.to_string(), "--metrics", &admin.to_string()]);
    let mut raw = bin.client(addr).await;
    assert_eq!(http(admin, "GET", "/readyz").await, (200, "ready\n".to_string()));
    let head = clusterless::resp::encode_command(&[&b"SET"[..], b"sigint", b"v"]);
    let (first, rest) = head.split_at(head.len() - 3);
    raw.send(first).await;
    let ping = clusterless::resp::encode_command(&[b"PING"]).len();
    eventually_async("the proxy read the half-sent request", || async {
        get(&scrape(admin).await, "clusterless_client_bytes_received_total") == (ping + first.len()) as f64
    })
    .await;

    bin.signal("INT");
    eventually_async("/readyz says draining", || async {
        http(admin, "GET", "/readyz").await == (503, "draining: shutting down\n".to_string())
    })
    .await;
    eventually_async("the listener closes", || async { tokio::net::TcpStream::connect(addr).await.is_err() }).await;
    // Let time pass on purpose: the half-sent request keeps the process draining.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(bin.running(), "exited with a request half sent; log: {}", bin.log());
    raw.send(rest).await;
    assert_eq!(raw.read_replies(1).await, vec![b"+OK\r\n".to_vec()]);
    assert!(raw.closed().await, "connection closed once answered");
    let exit = bin.exit_code(PATIENCE).await;
    let log = bin.log();
    assert_eq!(exit, Some(0), "exit code 0 after SIGINT; log: {log}");
    assert!(log.contains("draining: no new clients; finishing requests in flight"), "{log}");
    assert!(log.contains("drained; exiting"), "{log}");
    let owner = cluster.slot_owner(clusterless::slot::slot(b"sigint")).unwrap();
    assert_eq!(tokio::task::block_in_place(|| cluster.cli(owner, &["GET", "sigint"])).unwrap(), "v", "it ran");
}

/// `lifecycle.drain_timeout_ms = 1500` (the test is about that setting): a client blocked in
/// `BLPOP ... 0` is never answered, so after SIGTERM the drain runs out after about that long,
/// logs the warning, and the process still exits 0, closing the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_timeout_runs_out_on_a_blocked_client_and_exits_0() {
    let cluster = cluster();
    let dir = Dir::new();
    let file = dir.0.join("drain.toml");
    std::fs::write(&file, "[lifecycle]\ndrain_timeout_ms = 1500\n").unwrap();
    let addr = local(free_port());
    let mut bin = Bin::spawn(&[
        "--config",
        file.to_str().unwrap(),
        "--seed",
        &cluster.seed(),
        "--listen",
        &addr.to_string(),
        "--metrics",
        "",
    ]);
    let mut blocked = bin.client(addr).await;
    blocked.send(&clusterless::resp::encode_command(&[&b"BLPOP"[..], b"never-pushed", b"0"])).await;
    let owner = cluster.slot_owner(clusterless::slot::slot(b"never-pushed")).unwrap();
    eventually("the BLPOP is blocked on its node", || {
        tokio::task::block_in_place(|| cluster.cli(owner, &["CLIENT", "LIST"])).unwrap().contains("cmd=blpop")
    })
    .await;

    let signalled = Instant::now();
    bin.signal("TERM");
    let exit = bin.exit_code(PATIENCE).await;
    let took = signalled.elapsed();
    let log = bin.log();
    assert_eq!(exit, Some(0), "exit code 0 after the drain timeout; log: {log}");
    // Not before the timeout, and long before the 10 s default.
    assert!(took >= Duration::from_millis(1500) && took < Duration::from_secs(5), "exited {took:?} after SIGTERM");
    let warn = log.lines().find(|l| l.contains("drain timeout reached with clients still connected; exiting"));
    assert!(warn.is_some_and(|l| l.contains("WARN")), "the drain timeout is logged as a warning: {log}");
    assert!(log.contains("timeout_ms=1500"), "{log}");
    assert!(!log.contains("drained; exiting"), "{log}");
    assert_eq!(blocked.read_replies(1).await, Vec::<Vec<u8>>::new(), "closed without an answer");
}

/// `log.level` (the test is about that setting) given by flag, variable or file wins over
/// `RUST_LOG`, which applies only when no level is given; the plain format written to a file
/// carries no colour codes. What each filter lets through is told by two lines every start
/// writes or not: "clusterless is serving" (INFO) and, after a client's protocol error, "closing
/// client after protocol error" (DEBUG).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_given_log_level_wins_over_rust_log() {
    let cluster = cluster();
    let dir = Dir::new();
    let file = dir.file("log.toml", "[log]\nlevel = \"info\"\n");
    let seed = cluster.seed();
    for (what, args, env, info, debug) in [
        ("flag", vec!["--log-level", "info"], vec![("RUST_LOG", "warn")], true, false),
        ("variable", vec![], vec![("RUST_LOG", "warn"), ("CLUSTERLESS_LOG_LEVEL", "info")], true, false),
        ("file", vec!["--config", file.as_str()], vec![("RUST_LOG", "debug")], true, false),
        ("flag over debug", vec!["--log-level", "warn"], vec![("RUST_LOG", "debug")], false, false),
        ("RUST_LOG alone", vec![], vec![("RUST_LOG", "clusterless=debug")], true, true),
        ("RUST_LOG alone, warn", vec![], vec![("RUST_LOG", "warn")], false, false),
    ] {
        let addr = local(free_port());
        let addr_s = addr.to_string();
        let mut all = vec!["--seed", seed.as_str(), "--listen", addr_s.as_str(), "--metrics", ""];
        all.extend(args);
        let mut bin = Bin::spawn_env(&all, &env);
        let mut c = bin.client(addr).await;
        c.send(b"*x\r\n").await;
        assert_eq!(c.read_replies(1).await, vec![b"-ERR Protocol error: invalid multibulk length\r\n".to_vec()]);
        assert!(c.closed().await, "{what}: closed after the protocol error");
        assert_eq!(bin.stop().await, Some(0), "{what}: {}", bin.log());
        let log = bin.log();
        let has = |m: &str| log.lines().any(|l| l.contains(m));
        assert_eq!(has("clusterless is serving"), info, "{what}: INFO lines: {log}");
        assert_eq!(has("closing client after protocol error"), debug, "{what}: DEBUG lines: {log}");
        assert!(!log.contains('\u{1b}'), "{what}: ANSI escapes in a log file: {log:?}");
    }
}

/// `--log-format json` (the test is about that setting): every line on stderr is one JSON object
/// with a level and a message; start-up, the bootstrap topology change (with its source), a
/// rejected client (`--max-clients 1`) and the drain each log a line; serving requests logs
/// nothing at `info`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_one_object_per_line() {
    let cluster = cluster();
    let addr = local(free_port());
    let mut bin = Bin::spawn(&[
        "--seed",
        &cluster.seed(),
        "--listen",
        &addr.to_string(),
        "--metrics",
        "",
        "--log-format",
        "json",
        "--max-clients",
        "1",
    ]);
    let mut c = bin.client(addr).await;
    let lines = |bin: &Bin| -> Vec<Value> {
        bin.log()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
            .collect()
    };
    let message = |v: &Value| v["fields"]["message"].as_str().unwrap_or_default().to_string();
    let before = lines(&bin).len();
    for i in 0..200 {
        let k = format!("json{i}");
        assert_eq!(c.cmd(&[b"SET", k.as_bytes(), b"v"]).await, b"+OK\r\n");
        assert_eq!(c.cmd(&[b"GET", k.as_bytes()]).await, b"$1\r\nv\r\n");
    }
    // Whatever was logged meanwhile came from the topology source (the bus links coming up),
    // none of it from serving the 400 requests.
    let during: Vec<Value> = lines(&bin).into_iter().skip(before).collect();
    assert!(
        during.iter().all(|v| v["target"].as_str().unwrap_or_default().starts_with("clusterless::topology")),
        "logged while serving requests: {during:?}"
    );
    let mut second = Raw::connect(addr).await;
    assert_eq!(second.read_replies(1).await, vec![b"-ERR max number of clients reached\r\n".to_vec()]);
    eventually("the rejected client is logged", || {
        lines(&bin).iter().any(|v| message(v) == "client rejected: max number of clients reached")
    })
    .await;
    bin.signal("TERM");
    drop(c);
    let exit = bin.exit_code(PATIENCE).await;
    assert_eq!(exit, Some(0), "log: {}", bin.log());

    let all = lines(&bin);
    for v in &all {
        let level = v["level"].as_str().unwrap_or_default();
        assert!(["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level), "a level: {v}");
        assert!(v["fields"]["message"].is_string(), "a message: {v}");
        assert!(v["timestamp"].is_string(), "a timestamp: {v}");
    }
    let has = |m: &str| all.iter().find(|v| message(v).starts_with(m)).cloned();
    assert!(has("clusterless is serving").is_some_and(|v| v["fields"]["listen"] == addr.to_string()));
    let boot = has("topology changed: ").expect("the bootstrap map is logged");
    assert_eq!(boot["fields"]["source"], "bootstrap");
    assert_eq!(boot["level"], "INFO");
    for p in tokio::task::block_in_place(|| cluster.masters()) {
        assert!(message(&boot).contains(&format!("none -> 127.0.0.1:{p}")), "what moved where: {boot}");
    }
    assert!(has("draining: no new clients").is_some_and(|v| v["fields"]["timeout_ms"] == 10000));
    assert!(has("drained; exiting").is_some());
}

#[test]
fn deploy_files_parse_and_name_what_the_binary_serves() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let defaults = clusterless::config::Config::defaults();
    let admin_port = defaults.admin_listen.unwrap().port();
    let mut saw_probe = false;
    for entry in std::fs::read_dir(root.join("kubernetes")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = serde_yaml::Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(v.get("kind").is_some(), "{} has a kind", path.display());
        }
        if text.contains("readinessProbe") && text.contains("--listen") {
            saw_probe = true;
            assert!(text.contains("/readyz") && text.contains("/healthz"), "{}", path.display());
            assert!(text.contains(&admin_port.to_string()), "{} uses the admin port", path.display());
            assert!(text.contains("127.0.0.1:6379") || text.contains("6379"), "{}", path.display());
        }
    }
    assert!(saw_probe);
    let shared = std::fs::read_to_string(root.join("kubernetes/shared-observer.yaml")).unwrap();
    assert!(shared.contains("\"observe\"") && shared.contains("/v1/topology") && shared.contains("9737"));
    let sub = std::fs::read_to_string(root.join("kubernetes/app-with-subscribing-sidecar.yaml")).unwrap();
    assert!(sub.contains("--observer") && sub.contains("http://clusterless-observer:9737"));
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("grafana/clusterless.json")).unwrap()).unwrap();
    let exprs = dash.to_string();
    let names = clusterless::metric_names();
    for m in ["clusterless_commands_total", "clusterless_command_duration_seconds", "clusterless_redirects_total"] {
        assert!(exprs.contains(m) && names.iter().any(|n| n == m), "{m} in dashboard and registry");
    }
    // Every metric the alerts and the dashboard use is one the binary exports.
    let alerts = std::fs::read_to_string(root.join("prometheus/alerts.yml")).unwrap();
    for text in [&alerts, &exprs] {
        for token in
            text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|t| t.starts_with("clusterless_"))
        {
            let base = token.trim_end_matches("_bucket").trim_end_matches("_count").trim_end_matches("_sum");
            assert!(names.iter().any(|n| n == base), "{token} is not exported");
        }
    }
    let out =
        Command::new("promtool").args(["check", "rules"]).arg(root.join("prometheus/alerts.yml")).output().unwrap();
    assert!(
        out.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let unit = std::fs::read_to_string(root.join("systemd/clusterless.service")).unwrap();
    assert!(unit.contains("DynamicUser=yes") && unit.contains("NoNewPrivileges=yes"));
    let docker = std::fs::read_to_string(root.join("docker/Dockerfile")).unwrap();
    assert!(docker.contains("USER") && docker.matches("FROM").count() >= 2, "multi-stage, non-root");
}

/// `limits.threads = 0` starts one worker per CPU the process may use, at most 4, and each worker
/// keeps its own connection to a master its clients send to: counted on the master itself, the
/// connections whose last command was a GET, after clients spread over every worker sent one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_worker_has_its_own_connection_to_a_master_and_the_default_is_capped_at_4() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (threads, workers) in [(0, cpus.min(4)), (1, 1)] {
        let env = start_with(small(), |c| c.limits.threads = threads).await;
        let owner = env.cluster.slot_owner(clusterless::slot::slot(b"per-worker")).unwrap();
        // Clients are handed to the workers in turn: twice as many as workers reach each of them.
        let mut clients = Vec::new();
        for _ in 0..2 * workers {
            let mut c = Raw::connect(env.addr()).await;
            assert_eq!(c.cmd(&[b"GET", b"per-worker"]).await, b"$-1\r\n");
            clients.push(c);
        }
        let list = tokio::task::block_in_place(|| env.cluster.cli(owner, &["CLIENT", "LIST"])).unwrap();
        let gets = list.lines().filter(|l| l.contains(" cmd=get ")).count();
        assert_eq!(gets, workers, "threads = {threads}: one connection per worker to the master\n{list}");
    }
}
