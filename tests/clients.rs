//! Real client libraries' stateful features through the proxy, each against its own small cluster:
//! redis-py (transactions, WATCH, pub/sub, blocking pops, scripts; RESP2 and RESP3) and Celery with
//! a Redis broker and result backend (Python scripts under tests/python); go-redis, rueidis, ioredis,
//! node-redis, Lettuce and Jedis in their default standalone configurations (programs under
//! tests/clients/go, tests/clients/node and tests/clients/java), a minimal Spring Boot application
//! with Spring Session (tests/clients/spring), and each of those six libraries writing through a
//! kill -9 of a master. Every run is bounded (the child is killed past its limit; a write loop ends
//! itself after 90 s and is killed when its test fails) and its output is shown on failure.

mod common;

use common::*;

/// `--nodes P1,P2,...`: the masters' ports, which redis_py_stateful.py asks directly (never through
/// the proxy) where a subscription sits, to check every PUBLISH count exactly.
fn nodes(env: &Env) -> String {
    env.cluster.masters().iter().map(u16::to_string).collect::<Vec<_>>().join(",")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_stateful_resp2() {
    let env = start(small()).await;
    expect_ok(&env, "redis_py_stateful.py", &["--protocol", "2", "--nodes", &nodes(&env)], "redis-py stateful ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_stateful_resp3() {
    let env = start(small()).await;
    expect_ok(&env, "redis_py_stateful.py", &["--protocol", "3", "--nodes", &nodes(&env)], "redis-py stateful ok");
}

/// redis-py's client-side cache (`protocol=3, cache_config=CacheConfig()`): cached GETs are
/// invalidated by another client's SET through the proxy and by a SET straight on the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_cache_config() {
    let env = start(small()).await;
    expect_ok(&env, "redis_py_cache.py", &["--nodes", &nodes(&env)], "redis-py cache ok");
}

/// Every key Celery touches under one hash tag (`global_keyprefix = "{celery}:"`): one slot, so
/// MULTI/EXEC, the 4-queue BRPOP and the chord's join script work with the default proxy settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn celery_with_keyprefix_incl_chord() {
    let env = start(small()).await;
    expect_ok(&env, "celery_run.py", &["--keyprefix", "{celery}:"], "celery ok 231 tasks");
}

/// Celery's default settings spread its keys over the cluster: MULTI/EXEC over several slots on every
/// delivery and ack (needs per-shard transactions) and BRPOP over a queue and its three priority
/// sub-queues in different slots. Two things cannot work on any cluster and are left out: queue
/// expiry (kombu 5.7 binds expiring queues, i.e. the worker's pidbox, mingle and gossip queues,
/// with a script over two keys in different slots, and the worker dies at startup on -CROSSSLOT),
/// hence `--no-queue-expiry`; and chords (their join script spans slots too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn celery_default_settings() {
    let env = start_with(small(), |cfg| cfg.transactions.cross_slot = clusterless::config::CrossSlot::PerShard).await;
    expect_ok(&env, "celery_run.py", &["--no-queue-expiry"], "celery ok 220 tasks");
}

/// Celery with its default settings, unchanged (no key prefix, queue expiry and chords on),
/// through a proxy whose database 0 is one-slot (`keyspace.one_slot_databases = [0]`): every key
/// is stored under one hash tag, so kombu's MULTI/EXEC, its queue-binding script, the 4-queue BRPOP
/// (whose reply names the queue, prefix taken off) and the chord's join script all run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn celery_default_settings_one_slot_database() {
    let env = start_with(small(), |cfg| cfg.keyspace.one_slot_databases = vec![0]).await;
    expect_ok(&env, "celery_run.py", &["--chord"], "celery ok 231 tasks");
    // Every key Celery wrote is stored under database 0's tag, so all live on one master.
    let mut holding = Vec::new();
    for port in env.cluster.masters() {
        let mut node = env.node(port).await;
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut node).await.unwrap();
        assert!(keys.iter().all(|k| k.starts_with("{__db0}:")), "{port}: {keys:?}");
        if !keys.is_empty() {
            holding.push(port);
        }
    }
    assert_eq!(holding.len(), 1, "masters holding Celery's keys: {holding:?}");
}

/// With `transactions.cross_slot = "per-shard"`, a MULTI over keys in different slots succeeds and
/// EXEC returns every reply in the order queued (the default-mode runs above check the refusal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_stateful_per_shard_transactions() {
    let env = start_with(small(), |cfg| cfg.transactions.cross_slot = clusterless::config::CrossSlot::PerShard).await;
    expect_ok(
        &env,
        "redis_py_stateful.py",
        &["--cross-slot", "per-shard", "--nodes", &nodes(&env)],
        "redis-py stateful ok",
    );
}

// --- Go and Node.js clients (tests/clients/) ---------------------------------------------------
//
// One program per client library under tests/clients/, each using the library in its default
// standalone configuration (as an application that moved from one Redis to the cluster), run
// against the proxy with `--nodes` so it can ask the masters directly what the proxy could get
// wrong. A program prints one line per check and exits non-zero on the first failure.

/// Wall-clock limit for one client program (each finishes in a few seconds; the programs have
/// their own 60 s watchdogs).
const PROGRAM_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

fn clients_dir(sub: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients").join(sub)
}

/// Runs `cmd` to completion (killed past `limit`), returning success and the combined output.
fn run_program(mut cmd: std::process::Command, limit: std::time::Duration) -> (bool, String) {
    use std::io::Read;
    use std::process::Stdio;
    let what = format!("{cmd:?}");
    let mut child =
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap_or_else(|e| {
            panic!("{what} does not start ({e}); scripts/setup installs the clients' dependencies")
        });
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut text = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    if !stderr.is_empty() {
        text.push_str("\n--- stderr\n");
        text.push_str(&stderr);
    }
    if status.is_none() {
        text.push_str(&format!("\n[killed after {limit:?}]"));
    }
    (status.is_some_and(|s| s.success()), text)
}

/// Builds tests/clients/go once per test run into target/clients/ (`go build` caches, so a rerun
/// with nothing changed takes well under a second). scripts/setup downloads the modules go.sum
/// pins and builds it first, so this is a cache hit there; a cold build cache compiles the
/// standard library too (minutes on a loaded 2-core machine, hence the generous limit).
fn go_program() -> std::path::PathBuf {
    static BUILT: std::sync::OnceLock<Result<std::path::PathBuf, String>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/clients/go-clients");
            let mut cmd = std::process::Command::new("go");
            cmd.arg("build").arg("-o").arg(&bin).arg(".").current_dir(clients_dir("go"));
            let (ok, out) = run_program(cmd, std::time::Duration::from_secs(600));
            if ok {
                Ok(bin)
            } else {
                Err(out)
            }
        })
        .clone()
        .unwrap_or_else(|out| panic!("go build of tests/clients/go failed:\n{out}"))
}

/// Runs one Go client's checks against the proxy; fails with the program's output.
async fn go_client(client: &str) {
    let env = start(small()).await;
    let bin = go_program();
    let mut cmd = std::process::Command::new(bin);
    cmd.args(["-client", client, "-addr", &env.addr().to_string(), "-nodes", &nodes(&env)]);
    let started = std::time::Instant::now();
    let (ok, out) = tokio::task::block_in_place(|| run_program(cmd, PROGRAM_LIMIT));
    assert!(ok && out.contains(&format!("{client} ok in")), "{client} failed:\n{out}");
    eprintln!("{client}: {:?}\n{out}", started.elapsed());
}

/// go-redis v9 with `redis.NewClient(&redis.Options{Addr})`: RESP3, CLIENT SETINFO, pipelines,
/// TxPipelined and the Watch retry loop, pub/sub, BLPOP, Script.Run, the SCAN iterator, MGET/DEL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_redis() {
    go_client("go-redis").await;
}

/// rueidis (RESP3 only) with all its defaults, client-side caching included: DoCache reads are
/// cached, and another client's write through the proxy or on the node reaches the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rueidis() {
    go_client("rueidis").await;
}

/// `npm ci` into tests/clients/node/node_modules (gitignored) once per test run, when it is
/// missing or older than package-lock.json; scripts/setup does the same, so a rerun costs nothing.
fn node_modules() {
    static INSTALLED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let dir = clients_dir("node");
            let modified = |p: std::path::PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
            let installed = modified(dir.join("node_modules/.package-lock.json"));
            let locked = modified(dir.join("package-lock.json"));
            if installed.is_some() && installed >= locked {
                return Ok(());
            }
            let mut cmd = std::process::Command::new("npm");
            cmd.args(["ci", "--no-audit", "--no-fund"]).current_dir(&dir);
            let (ok, out) = run_program(cmd, std::time::Duration::from_secs(600));
            if ok {
                Ok(())
            } else {
                Err(out)
            }
        })
        .clone()
        .unwrap_or_else(|out| panic!("npm ci in tests/clients/node failed:\n{out}"))
}

/// Runs `node PROGRAM` once per argument set against one cluster and proxy; fails with the output
/// of the first run that fails.
async fn node_client(program: &str, runs: &[&[&str]], done: &[&str]) {
    let env = start(small()).await;
    node_modules();
    for (extra, done) in runs.iter().zip(done) {
        let mut cmd = std::process::Command::new("node");
        cmd.arg(program).args(["--addr", &env.addr().to_string(), "--nodes", &nodes(&env)]).args(*extra);
        cmd.current_dir(clients_dir("node"));
        let started = std::time::Instant::now();
        let (ok, out) = tokio::task::block_in_place(|| run_program(cmd, PROGRAM_LIMIT));
        assert!(ok && out.contains(done), "{program} {extra:?} failed:\n{out}");
        eprintln!("{program} {extra:?}: {:?}\n{out}", started.elapsed());
    }
}

/// ioredis 6 with `new Redis({host, port})`: RESP3 (its default since v6) and RESP2 (`protocol:
/// 2`, what ioredis 5 speaks): ready check, pipeline, multi, watch, pub/sub, BLPOP, defineCommand,
/// scanStream, MGET/DEL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ioredis() {
    node_client("ioredis.js", &[&[], &["--protocol", "2"]], &["ioredis resp3 ok in", "ioredis resp2 ok in"]).await;
}

/// node-redis (`redis` on npm) with `createClient({url})`: v5 with its default RESP2 and with
/// `RESP: 3`, and v6 (default RESP3): pipelines, multi, watch, pub/sub, BLPOP, defineScript,
/// scanIterator, MGET/DEL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_redis() {
    node_client(
        "node_redis.js",
        &[&[], &["--protocol", "3"], &["--package", "redis6"]],
        &["node-redis 5.12.4 resp2 ok in", "node-redis 5.12.4 resp3 ok in", "node-redis 6.4.0 resp3 ok in"],
    )
    .await;
}

// --- Java clients (tests/clients/java) ---------------------------------------------------------
//
// One Maven project, built by scripts/setup (`mvn compile dependency:copy-dependencies`, pinned
// versions in pom.xml) into target/clients/java/{classes,lib}; the tests run the programs with a
// plain `java -cp`, so they need no Maven, only when a source is newer than its class file do they
// build again (offline, from ~/.m2).

/// The classpath of one Maven project under tests/clients (`java`, `spring`), whose sources are
/// in `src/main/java/<package>`, built once per test run when missing or out of date.
fn java_classpath(project: &'static str, package: &str) -> String {
    static JAVA: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
    static SPRING: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
    let cell = if project == "spring" { &SPRING } else { &JAVA };
    cell.get_or_init(|| maven_build(project, package)).clone().unwrap_or_else(|out| {
        panic!("mvn -o in tests/clients/{project} failed (scripts/setup resolves it online first):\n{out}")
    })
}

fn maven_build(project: &str, package: &str) -> Result<String, String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = root.join("target/clients").join(project);
    let dir = clients_dir(project);
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut newest = modified(&dir.join("pom.xml"));
    let mut built = modified(&out.join("lib"));
    for entry in std::fs::read_dir(dir.join("src/main/java").join(package)).expect("tests/clients sources") {
        let path = entry.expect("source").path();
        newest = newest.max(modified(&path));
        let class = out.join("classes").join(package).join(path.with_extension("class").file_name().expect("name"));
        built = built.min(modified(&class));
    }
    if built.is_none() || built < newest {
        // Emptied first so that a version bump in pom.xml leaves no old jar behind.
        let _ = std::fs::remove_dir_all(out.join("lib"));
        let mut cmd = std::process::Command::new("mvn");
        cmd.args(["-q", "-B", "-o", "compile", "dependency:copy-dependencies"]).current_dir(&dir);
        let (ok, text) = run_program(cmd, std::time::Duration::from_secs(600));
        if !ok {
            return Err(text);
        }
    }
    Ok(format!("{}:{}", out.join("classes").display(), out.join("lib/*").display()))
}

/// Runs one Java client program once per argument set against one cluster and proxy; fails with
/// the output of the first run that fails.
async fn java_client(project: &'static str, package: &str, class: &str, runs: &[(&[&str], &str)]) {
    let env = start(small()).await;
    let cp = java_classpath(project, package);
    for (extra, done) in runs {
        let mut cmd = std::process::Command::new("java");
        // One compiler thread and no C2: the programs run a few seconds on a shared 2-core box.
        cmd.args(["-XX:TieredStopAtLevel=1", "-XX:CICompilerCount=1", "-cp", &cp, class]);
        cmd.args(["--addr", &env.addr().to_string(), "--nodes", &nodes(&env)]).args(*extra);
        let started = std::time::Instant::now();
        let (ok, out) = tokio::task::block_in_place(|| run_program(cmd, PROGRAM_LIMIT));
        assert!(ok && out.contains(done), "{class} {extra:?} failed:\n{out}");
        eprintln!("{class} {extra:?}: {:?}\n{out}", started.elapsed());
    }
}

/// Lettuce 7 with `RedisClient.create(RedisURI.create(host, port))`: RESP3 (HELLO 3, CLIENT
/// SETINFO; its default) and RESP2 (`ClientOptions.protocolVersion(RESP2)`), a pipeline with auto-flush off, MULTI/EXEC, WATCH, pub/sub (with a command while
/// subscribed), BLPOP, EVALSHA with the NOSCRIPT fallback, ScanIterator, MSET/MGET/DEL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lettuce() {
    java_client(
        "java",
        "clusterless",
        "clusterless.LettuceChecks",
        &[(&[], "lettuce 7.7.0.RELEASE resp3 ok in"), (&["--protocol", "2"], "lettuce 7.7.0.RELEASE resp2 ok in")],
    )
    .await;
}

/// Jedis 8 with `RedisClient.create(host, port)` (its pooled standalone client; RESP3 and CLIENT
/// SETINFO by default) and with `protocol(RESP2)`: pipelined(), multi(), transaction(false) for WATCH, subscribe/psubscribe
/// with a JedisPubSub, BLPOP from another thread, EVALSHA with the NOSCRIPT fallback, a SCAN loop,
/// MSET/MGET/DEL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jedis() {
    java_client(
        "java",
        "clusterless",
        "clusterless.JedisChecks",
        &[(&[], "jedis 8.0.2 resp3 ok in"), (&["--protocol", "2"], "jedis 8.0.2 resp2 ok in")],
    )
    .await;
}

/// A minimal Spring Boot 4 application (tests/clients/spring) with only spring.data.redis.host and
/// port: StringRedisTemplate set/get, and Spring Session's indexed repository, whose own `CONFIG
/// SET notify-keyspace-events` must reach every node and whose sessions expire after 2 s, one at
/// least on every master: every SessionExpiredEvent arrives (keyspace events from every master).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spring_boot() {
    java_client("spring", "clusterless/spring", "clusterless.spring.SpringApp", &[(&[], "spring-boot 4.0.7 ok in")])
        .await;
}

// --- kill -9 of a master under load (tests/clients/*/writes*) ---------------------------------
//
// One write-loop program per client library, each with the library's default settings, all with
// the same protocol (tests/clients/go/writes.go describes it): RPUSH of a sequence number to 60
// keys in turn, one command at a time, "running" after 100 acknowledged writes, one "error SEQ
// TEXT" line per failed write; on "mark" (the proxy knows the new master) 200 more writes; then
// every key read back: "lost N [...]" (acknowledged but missing), "failed-but-written N [...]"
// (failed in the client, yet it ran: shown, not judged), "duplicates N [...]" (a number twice),
// "slowest D", "writes ok=N errors=M after-mark-errors=K".

/// The proxy's own error for a write already sent to the master that died ("connection to
/// HOST:PORT lost ... after the command was sent; it may or may not have been executed").
const IN_FLIGHT: &str = "may or may not have been executed";
/// The proxy's error for a request held past `topology.failover_hold` with no new owner
/// ("master of slot N is unreachable: ...").
const UNREACHABLE: &str = "is unreachable";

/// What one write loop printed through a kill -9 of a master.
struct Kill9 {
    lines: Vec<String>,
    /// From the kill to the proxy's map equal to the cluster's (the promotion seen).
    learned: std::time::Duration,
    hold: std::time::Duration,
}

impl Kill9 {
    fn out(&self) -> String {
        self.lines.join("\n")
    }

    /// The "error SEQ TEXT" lines.
    fn errors(&self) -> Vec<&str> {
        self.lines.iter().filter(|l| l.starts_with("error ")).map(String::as_str).collect()
    }

    /// The first line starting with `prefix`, without it.
    fn line(&self, prefix: &str) -> &str {
        let found = self.lines.iter().find_map(|l| l.strip_prefix(prefix));
        found.unwrap_or_else(|| panic!("no line {prefix:?}:\n{}", self.out()))
    }

    /// The checks that hold whatever the client: once the proxy knew the new master every write
    /// succeeded, no acknowledged write is missing, and of the proxy's own errors there is the
    /// in-flight one at most once (one command in flight at the crash) and the unreachable one
    /// only if the promotion took longer than `failover_hold`. Returns the errors that are not the
    /// proxy's (what the client made of the failover itself), for the caller to judge.
    fn proxy_errors_as_documented(&self) -> Vec<&str> {
        let out = self.out();
        let summary = self.lines.last().expect("summary");
        assert!(summary.starts_with("writes ok="), "no summary:\n{out}");
        assert!(summary.ends_with(" after-mark-errors=0"), "writes failed after the new master was known:\n{out}");
        assert_eq!(self.line("lost "), "0 []", "acknowledged writes missing:\n{out}");
        let errors = self.errors();
        let in_flight = errors.iter().filter(|l| l.contains(IN_FLIGHT)).count();
        let unreachable = errors.iter().filter(|l| l.contains(UNREACHABLE)).count();
        assert!(in_flight <= 1, "one command in flight at the crash:\n{out}");
        assert!(
            unreachable == 0 || self.learned > self.hold,
            "unreachable errors although promotion took {:?}:\n{out}",
            self.learned
        );
        errors.into_iter().filter(|l| !l.contains(IN_FLIGHT) && !l.contains(UNREACHABLE)).collect()
    }
}

/// Kills the child on drop (a failed assertion must not leave a write loop behind).
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a cluster with replicas and a proxy, runs the write loop `program` builds (given the
/// proxy's address), and kill -9s a master once it is running; says "mark" when the proxy's map
/// equals the cluster's again, and returns what the loop printed.
async fn kill9_under_load(name: &str, program: impl FnOnce(String) -> std::process::Command) -> Kill9 {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    use std::sync::mpsc;

    let mut env = start(with_replicas()).await;
    env.converges("start").await;
    let mut cmd = program(env.addr().to_string());
    let child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn();
    let mut child = ChildGuard(child.unwrap_or_else(|e| panic!("{name}: {cmd:?} does not start ({e})")));
    let mut stdin = child.0.stdin.take().expect("stdin");
    let stdout = child.0.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let wait_for = |prefix: &str, lines: &mut Vec<String>| {
        let deadline = std::time::Instant::now() + CLUSTER_PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let hit = line.starts_with(prefix);
                    lines.push(line);
                    if hit {
                        return;
                    }
                }
                Err(e) => panic!("{name}: no line {prefix:?} from the write loop ({e}); got:\n{}", lines.join("\n")),
            }
        }
    };
    wait_for("running", &mut lines);

    let victim = env.cluster.masters()[1];
    tokio::task::block_in_place(|| env.cluster.kill9(victim)).expect("kill -9");
    let crash = std::time::Instant::now();
    tokio::task::block_in_place(|| env.cluster.wait_for_promotion(victim)).expect("promotion");
    env.converges("kill -9").await;
    let learned = crash.elapsed();
    writeln!(stdin, "mark").expect("tell the write loop");
    wait_for("writes ", &mut lines);
    drop(stdin);
    let status = tokio::task::block_in_place(|| child.0.wait()).expect("wait");
    reader.join().expect("reader");
    let run = Kill9 { lines, learned, hold: env.proxy.config().topology.failover_hold };
    assert!(status.success(), "{name}: write loop failed:\n{}", run.out());
    eprintln!("{name} under kill -9 (promotion seen after {learned:?}):\n{}", run.out());
    run
}

/// The Go write loop (tests/clients/go/writes.go, writes_rueidis.go) with `-client client`.
async fn go_kill9(client: &str) -> Kill9 {
    let bin = go_program();
    kill9_under_load(client, |addr| {
        let mut cmd = std::process::Command::new(bin);
        cmd.args(["-client", client, "-mode", "writes", "-addr", &addr]);
        cmd
    })
    .await
}

/// The Node.js write loop (tests/clients/node/writes.js) with `--client client`.
async fn node_kill9(client: &str) -> Kill9 {
    node_modules();
    kill9_under_load(client, |addr| {
        let mut cmd = std::process::Command::new("node");
        cmd.args(["writes.js", "--client", client, "--addr", &addr]).current_dir(clients_dir("node"));
        cmd
    })
    .await
}

/// The Java write loop (tests/clients/java/.../Writes.java) with `--client client`, started with
/// the JVM flags java_client uses.
async fn java_kill9(client: &str) -> Kill9 {
    let cp = java_classpath("java", "clusterless");
    kill9_under_load(client, |addr| {
        let mut cmd = std::process::Command::new("java");
        cmd.args(["-XX:TieredStopAtLevel=1", "-XX:CICompilerCount=1", "-cp", &cp, "clusterless.Writes"]);
        cmd.args(["--client", client, "--addr", &addr]);
        cmd
    })
    .await
}

/// Asserts the client surfaced nothing of its own: every error it showed is the proxy's
/// documented one, and no write ran twice.
fn only_proxy_errors(run: &Kill9) {
    let out = run.out();
    let others = run.proxy_errors_as_documented();
    assert!(others.is_empty(), "errors other than the proxy's documented ones:\n{out}");
    assert_eq!(run.line("duplicates "), "0 []", "a write ran twice:\n{out}");
}

/// kill -9 of a master (with replicas) while a go-redis client with its default settings (three
/// retries) writes through the proxy one command at a time: the only error the application may
/// see is the proxy's documented one for the command in flight on the dead master ("... may or
/// may not have been executed"), at most once, or the unreachable error if the cluster took
/// longer than `failover_hold` to promote; once the proxy knows the new master, 200 more writes
/// all succeed; no acknowledged write is missing and none is there twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_redis_failover_kill9() {
    only_proxy_errors(&go_kill9("go-redis").await);
}

/// The same with rueidis (`DisableCache: true`, as in tests/clients.rs::rueidis, its other
/// defaults kept).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rueidis_failover_kill9() {
    only_proxy_errors(&go_kill9("rueidis").await);
}

/// The same with ioredis 6 (`new Redis({host, port})`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ioredis_failover_kill9() {
    only_proxy_errors(&node_kill9("ioredis").await);
}

/// The same with node-redis 5 (`createClient({url})`, RESP2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_redis_failover_kill9() {
    only_proxy_errors(&node_kill9("node-redis").await);
}

/// The same with node-redis 6 (`createClient({url})`, RESP3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_redis6_failover_kill9() {
    only_proxy_errors(&node_kill9("node-redis6").await);
}

/// The same with Lettuce 7 (`RedisClient.create(RedisURI.create(host, port))`, one connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lettuce_failover_kill9() {
    only_proxy_errors(&java_kill9("lettuce").await);
}

/// The same with Jedis 8 (`RedisClient.create(host, port)`, pooled), whose default socket timeout
/// (`Protocol.DEFAULT_TIMEOUT`, 2 s) is shorter than `topology.failover_hold` (5 s): a write the
/// proxy holds for the new master longer than 2 s fails in Jedis with `JedisConnectionException:
/// java.net.SocketTimeoutException: Read timed out` (Jedis drops that pooled connection; the proxy
/// may still run the write once the new master is known: "failed-but-written"). That is Jedis's
/// documented timeout, not an error of the proxy's, so it is allowed, but only as a hold can
/// cause it: each takes 2 s of the time before the proxy knew the new master, so there are at most
/// `learned / 2 s + 1`, none after the mark (checked for every client), none unless the promotion
/// took over 2 s. Jedis's default executor (`DefaultCommandExecutor`) makes one attempt, so
/// nothing may be written twice, and the proxy's own errors are checked as for every client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jedis_failover_kill9() {
    const JEDIS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
    let run = java_kill9("jedis").await;
    let out = run.out();
    let others = run.proxy_errors_as_documented();
    let timeouts = others.iter().filter(|l| l.ends_with("SocketTimeoutException: Read timed out")).count();
    assert_eq!(timeouts, others.len(), "errors other than the proxy's and Jedis's read timeout:\n{out}");
    let most = (run.learned.as_secs_f64() / JEDIS_TIMEOUT.as_secs_f64()) as usize + 1;
    assert!(
        timeouts <= most,
        "{timeouts} read timeouts in the {:?} before the new master was known:\n{out}",
        run.learned
    );
    assert!(
        timeouts == 0 || run.learned > JEDIS_TIMEOUT,
        "a read timeout although promotion took {:?}:\n{out}",
        run.learned
    );
    assert_eq!(run.line("duplicates "), "0 []", "a write ran twice:\n{out}");
}
