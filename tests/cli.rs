//! The binary's configuration contract, run as a process: every key of the README's table read
//! from its flag, its `CLUSTERLESS_*` variable and the TOML file, in that order of precedence over
//! the defaults; unknown keys and bad values print one line naming the key and exit with code 2,
//! as does a cluster that cannot be reached (naming the address); and `backend.user` /
//! `backend.password` against nodes that require an ACL user.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use clusterless::localcluster::{ClusterSpec, LocalCluster};
use common::bin::{command, free_port, local, run_env, Bin, Dir};
use common::http::{get, scrape};
use common::{eventually_async, init_logs};

/// Exit code 2 and one line on stderr, which mentions `needle`; returns that line.
fn one_line_exit_2(args: &[&str], env: &[(&str, &str)], needle: &str) -> String {
    let (code, err) = run_env(args, env);
    assert_eq!(code, 2, "exit code for {args:?} {env:?}: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line for {args:?} {env:?}: {err}");
    assert!(lines[0].contains(needle), "{args:?} {env:?}: {:?} should mention {needle}", lines[0]);
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
    lines[0].to_string()
}

/// Nothing listens on port 1 of loopback: a start that gets past the configuration fails there.
const DEAD: &str = "127.0.0.1:1";

#[test]
fn bad_config_and_unreachable_cluster_exit_2() {
    let dir = Dir::new();
    let bad = dir.file("bad.toml", "[backend]\nrequest_timeout_ms = 0\n");
    let unknown = dir.file("unknown.toml", "[backend]\nconections_per_node = 2\n");
    let broken = dir.file("broken.toml", "listen = [\n");
    let missing = dir.0.join("missing.toml");

    one_line_exit_2(&["--config", &bad, "--seed", DEAD], &[], "backend.request_timeout_ms");
    one_line_exit_2(&["--config", &unknown, "--seed", DEAD], &[], "conections_per_node");
    one_line_exit_2(&["--config", &broken], &[], "broken.toml");
    one_line_exit_2(&["--config", missing.to_str().unwrap()], &[], "missing.toml");
    one_line_exit_2(&["--listen", "nonsense", "--seed", DEAD], &[], "listen");
    one_line_exit_2(&["--seed", "no-port"], &[], "seeds");
    one_line_exit_2(&[], &[], "no seeds");
    // A cluster that cannot be reached: the line names the address.
    let line = one_line_exit_2(&["--seed", DEAD, "--listen", "127.0.0.1:0", "--metrics", ""], &[], DEAD);
    assert!(line.contains("cannot reach the cluster"), "{line}");
    let line =
        one_line_exit_2(&["--seed", "nonexistent.invalid:7000", "--metrics", ""], &[], "nonexistent.invalid:7000");
    assert!(line.contains("cannot reach the cluster"), "{line}");
    // Every seed is named when none answers.
    let line = one_line_exit_2(&["--seed", DEAD, "--seed", "127.0.0.1:2", "--metrics", ""], &[], DEAD);
    assert!(line.contains("127.0.0.1:2"), "{line}");
}

/// Unknown keys are errors that name the key, wherever they are: top level, a section, a
/// section that does not exist, an `[[auth.users]]` entry.
#[test]
fn unknown_keys_are_errors_naming_the_key() {
    let dir = Dir::new();
    for (text, key) in [
        ("lisen = \"127.0.0.1:0\"\n", "lisen"),
        ("[limits]\nmax_client = 5\n", "max_client"),
        ("[lifecycle]\ndrain_timeout = 5\n", "drain_timeout"),
        ("[metrics]\nlisten = \"127.0.0.1:0\"\n", "metrics"),
        ("[topology]\nsource = \"bus\"\nbus_interval_ms = 5\n", "bus_interval_ms"),
        ("[[auth.users]]\nname = \"a\"\npassword = \"b\"\nrole = \"admin\"\n", "role"),
    ] {
        let f = dir.file("unknown.toml", text);
        let line = one_line_exit_2(&["--config", &f, "--seed", DEAD], &[], &format!("`{key}`"));
        assert!(line.contains("unknown field"), "{line}");
    }
}

/// A value of the wrong TOML type, an unknown key or broken syntax: one line naming the file, the
/// line (counted from 1, also when the key starts its line) and the dotted key, with what was
/// expected in TOML's words.
#[test]
fn file_errors_name_the_line_and_the_key() {
    let dir = Dir::new();
    for (text, at) in [
        (
            "# comment\n\n[backend]\nuser = \"\"\nmax_redirects = \"five\"\n",
            "line 5, `backend.max_redirects`: invalid type: string \"five\", expected an integer from 0 to 4294967295",
        ),
        ("[listen]\nport = \"x\"\n", "line 1, `listen`: invalid type: map, expected a string"),
        (
            "[limits]\n# the count\n\nthreads = \"x\"\n",
            "line 4, `limits.threads`: invalid type: string \"x\", expected a non-negative integer",
        ),
        (
            "[topology]\nfailover_hold_ms = true\n",
            "line 2, `topology.failover_hold_ms`: invalid type: boolean `true`, expected a non-negative integer",
        ),
        (
            "seeds = \"127.0.0.1:7000\"\n",
            "line 1, `seeds`: invalid type: string \"127.0.0.1:7000\", expected a sequence",
        ),
        (
            "[[auth.users]]\nname = \"a\"\npassword = \"b\"\n\n[[auth.users]]\nname = 5\npassword = \"c\"\n",
            "line 6, `auth.users[1].name`: invalid type: integer `5`, expected a string",
        ),
        (
            "[backend]\n\nconections_per_node = 2\n",
            "line 3, `backend.conections_per_node`: unknown field `conections_per_node`, expected one of `user`, \
             `password`, `password_file`, `connections_per_node`, `connect_timeout_ms`, `request_timeout_ms`, `retry_budget_ms`, \
             `max_redirects`, `dedicated_per_node`, `read_from`, `tls`",
        ),
        ("[limits]\nthreads = 1\nmax_clients = = 2\n", "line 3: extra `=`, expected nothing"),
    ] {
        let f = dir.file("typed.toml", text);
        let line = one_line_exit_2(&["--config", &f, "--seed", DEAD, "--metrics", ""], &[], at);
        assert_eq!(line, format!("clusterless: invalid config file {f}, {at}"), "{text:?}");
    }
}

/// Values the command line cannot even read (not a number, not an address), from a flag or from
/// its variable, and flags that do not exist: one line naming the flag, or the variable the value
/// came from, and the value; exit code 2, as for any bad configuration. A flag hides a bad
/// variable, as for every other key.
#[test]
fn unreadable_flag_and_variable_values_are_one_line() {
    let off = ["--seed", DEAD, "--metrics", ""];
    for (args, env, want) in [
        (
            &["--threads", "x"][..],
            &[][..],
            "clusterless: invalid value 'x' for --threads: invalid digit found in string",
        ),
        (
            &["--max-clients=-5"],
            &[],
            "clusterless: invalid value '-5' for --max-clients: invalid digit found in string",
        ),
        (
            &[],
            &[("CLUSTERLESS_THREADS", "many")],
            "clusterless: invalid value 'many' for CLUSTERLESS_THREADS (--threads): invalid digit found in string",
        ),
        (
            &[],
            &[("CLUSTERLESS_MAX_CLIENTS", "")],
            "clusterless: invalid value '' for CLUSTERLESS_MAX_CLIENTS (--max-clients): cannot parse integer from \
             empty string",
        ),
        // The flag's value is the one read, so the flag is named even with the variable set.
        (
            &["--threads", "2x"],
            &[("CLUSTERLESS_THREADS", "2")],
            "clusterless: invalid value '2x' for --threads: invalid digit found in string",
        ),
        (
            &["observe", "--http", "nope"],
            &[],
            "clusterless: invalid value 'nope' for --http: invalid socket address syntax",
        ),
        (&["dev", "--port", "70000"], &[], "clusterless: invalid value '70000' for --port: 70000 is not in 0..=65535"),
        (&["--max-memory", "lots"], &[], "clusterless: invalid value 'lots' for --max-memory: not a size (like 512mb)"),
        (
            &[],
            &[("CLUSTERLESS_MAX_MEMORY", "2x")],
            "clusterless: invalid value '2x' for CLUSTERLESS_MAX_MEMORY (--max-memory): not a size (like 512mb)",
        ),
        (
            &["--treads", "2"],
            &[],
            "clusterless: unexpected argument '--treads' found (clusterless --help lists the flags)",
        ),
    ] {
        let line = one_line_exit_2(&[&off[..], args].concat(), env, want);
        assert_eq!(line, want, "{args:?} {env:?}");
    }
    let line = one_line_exit_2(&[&off[..], &["--threads", "1"]].concat(), &[("CLUSTERLESS_THREADS", "x")], DEAD);
    assert!(line.contains("cannot reach the cluster"), "{line}");
    // --help and --version still print to stdout and exit 0.
    let out = command(&["--version"], &[]).output().unwrap();
    assert_eq!((out.status.code(), String::from_utf8_lossy(&out.stdout).trim()), (Some(0), "clusterless 0.1.0"));
    let out = command(&["--help"], &[]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--log-level <LOG_LEVEL>"));
}

/// Each key of the table that has a flag and a variable, with a value it refuses and one it
/// takes (a taken value lets the start go on until the unreachable seed).
struct Key {
    name: &'static str,
    flag: &'static str,
    env: &'static str,
    /// `[section]` and key in the file.
    section: Option<&'static str>,
    file_key: &'static str,
    bad: &'static str,
    good: &'static str,
}

const KEYS: &[Key] = &[
    Key {
        name: "listen",
        flag: "--listen",
        env: "CLUSTERLESS_LISTEN",
        section: None,
        file_key: "listen",
        bad: "nonsense",
        good: "127.0.0.1:0",
    },
    Key {
        name: "limits.threads",
        flag: "--threads",
        env: "CLUSTERLESS_THREADS",
        section: Some("limits"),
        file_key: "threads",
        bad: "5000",
        good: "1",
    },
    Key {
        name: "limits.max_clients",
        flag: "--max-clients",
        env: "CLUSTERLESS_MAX_CLIENTS",
        section: Some("limits"),
        file_key: "max_clients",
        bad: "0",
        good: "10",
    },
    Key {
        name: "auth.user",
        flag: "--user",
        env: "CLUSTERLESS_USER",
        section: Some("auth"),
        file_key: "user",
        bad: "bob",
        good: "",
    },
    Key {
        name: "backend.user",
        flag: "--backend-user",
        env: "CLUSTERLESS_BACKEND_USER",
        section: Some("backend"),
        file_key: "user",
        bad: "app",
        good: "",
    },
    Key {
        name: "topology.source",
        flag: "--topology-source",
        env: "CLUSTERLESS_TOPOLOGY_SOURCE",
        section: Some("topology"),
        file_key: "source",
        bad: "gossip",
        good: "poll",
    },
    Key {
        name: "topology.observer",
        flag: "--observer",
        env: "CLUSTERLESS_OBSERVER",
        section: Some("topology"),
        file_key: "observer",
        bad: "ftp://x",
        good: "",
    },
    Key {
        name: "log.level",
        flag: "--log-level",
        env: "CLUSTERLESS_LOG_LEVEL",
        section: Some("log"),
        file_key: "level",
        bad: "foo[",
        good: "warn",
    },
    Key {
        name: "log.format",
        flag: "--log-format",
        env: "CLUSTERLESS_LOG_FORMAT",
        section: Some("log"),
        file_key: "format",
        bad: "xml",
        good: "plain",
    },
    Key {
        name: "admin.listen",
        flag: "--metrics",
        env: "CLUSTERLESS_METRICS",
        section: Some("admin"),
        file_key: "listen",
        bad: "nope",
        good: "",
    },
    Key {
        name: "keyspace.databases",
        flag: "--databases",
        env: "CLUSTERLESS_DATABASES",
        section: Some("keyspace"),
        file_key: "databases",
        bad: "0",
        good: "4",
    },
    Key {
        name: "keyspace.one_slot_databases",
        flag: "--one-slot-db",
        env: "CLUSTERLESS_ONE_SLOT_DBS",
        section: Some("keyspace"),
        file_key: "one_slot_databases",
        // The default `keyspace.databases` is 1: database 3 does not exist.
        bad: "3",
        good: "0",
    },
    Key {
        name: "keyspace.cross_slot_reads",
        flag: "--cross-slot-reads",
        env: "CLUSTERLESS_CROSS_SLOT_READS",
        section: Some("keyspace"),
        file_key: "cross_slot_reads",
        bad: "maybe",
        good: "compute",
    },
    Key {
        name: "keyspace.max_compute_bytes",
        flag: "--max-compute-bytes",
        env: "CLUSTERLESS_MAX_COMPUTE_BYTES",
        section: Some("keyspace"),
        file_key: "max_compute_bytes",
        bad: "lots",
        good: "1mb",
    },
];

impl Key {
    fn toml(&self, value: &str) -> String {
        match self.section {
            // Numbers are TOML integers.
            Some("limits") => format!("[limits]\n{} = {value}\n", self.file_key),
            Some("keyspace") if self.file_key == "one_slot_databases" => {
                format!("[keyspace]\n{} = [{value}]\n", self.file_key)
            }
            Some("keyspace") if self.file_key == "databases" => format!("[keyspace]\n{} = {value}\n", self.file_key),
            Some(s) => format!("[{s}]\n{} = \"{value}\"\n", self.file_key),
            None => format!("{} = \"{value}\"\n", self.file_key),
        }
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Flags > `CLUSTERLESS_*` > file, key by key: a refused value is reported, naming the key, from
/// whichever of the three it comes; and a value taken from a higher place hides a refused one
/// below it (the start then gets as far as the unreachable seed, named instead of the key).
#[test]
fn every_key_from_flag_env_and_file_in_that_order() {
    let dir = Dir::new();
    let unreachable = |args: &[&str], env: &[(&str, &str)], k: &Key| {
        let line = one_line_exit_2(args, env, DEAD);
        assert!(line.contains("cannot reach the cluster") && !line.contains(k.name), "{}: {line}", k.name);
    };
    // No admin endpoint unless the key under test sets it: parallel runs would fight over 9736.
    let base = ["--seed", DEAD];
    for k in KEYS {
        let bad_file = dir.file(&format!("{}-bad.toml", k.name), &k.toml(k.bad));
        let good_file = dir.file(&format!("{}-good.toml", k.name), &k.toml(k.good));
        let admin_off: &[&str] = if k.name == "admin.listen" { &[] } else { &["--metrics", ""] };
        let key = format!("`{}`", k.name);
        let with = |extra: &[&str]| -> Vec<String> {
            base.iter().chain(admin_off).chain(extra).map(|s| s.to_string()).collect()
        };

        // Each place on its own: the refused value is reported, naming the key.
        let a = with(&[k.flag, k.bad]);
        one_line_exit_2(&strs(&a), &[], &key);
        let a = with(&[]);
        one_line_exit_2(&strs(&a), &[(k.env, k.bad)], &key);
        let a = with(&["--config", &bad_file]);
        one_line_exit_2(&strs(&a), &[], &key);
        // The taken value from each place gets past the configuration.
        let a = with(&[k.flag, k.good]);
        unreachable(&strs(&a), &[], k);
        let a = with(&[]);
        unreachable(&strs(&a), &[(k.env, k.good)], k);
        let a = with(&["--config", &good_file]);
        unreachable(&strs(&a), &[], k);
        // Flag over variable, flag over file, variable over file; and not the other way round.
        let a = with(&[k.flag, k.good]);
        unreachable(&strs(&a), &[(k.env, k.bad)], k);
        let a = with(&[k.flag, k.good, "--config", &bad_file]);
        unreachable(&strs(&a), &[], k);
        let a = with(&["--config", &bad_file]);
        unreachable(&strs(&a), &[(k.env, k.good)], k);
        let a = with(&[k.flag, k.bad]);
        one_line_exit_2(&strs(&a), &[(k.env, k.good)], &key);
        let a = with(&["--config", &good_file]);
        one_line_exit_2(&strs(&a), &[(k.env, k.bad)], &key);
    }

    // The seeds: a flag (repeated or a comma list), the variable (a comma list) or the file;
    // every seed named when none answers, and the higher place wins.
    let seeds = dir.file("seeds.toml", "seeds = [\"127.0.0.1:3\"]\n");
    let off = ["--metrics", ""];
    let line = one_line_exit_2(&[&off[..], &["--seed", "127.0.0.1:1,127.0.0.1:2"]].concat(), &[], "127.0.0.1:1");
    assert!(line.contains("127.0.0.1:2"), "{line}");
    let line = one_line_exit_2(&off, &[("CLUSTERLESS_SEEDS", "127.0.0.1:1,127.0.0.1:2")], "127.0.0.1:2");
    assert!(line.contains("127.0.0.1:1"), "{line}");
    let line = one_line_exit_2(&[&off[..], &["--config", &seeds]].concat(), &[], "127.0.0.1:3");
    assert!(!line.contains("127.0.0.1:1"), "{line}");
    let line =
        one_line_exit_2(&[&off[..], &["--config", &seeds]].concat(), &[("CLUSTERLESS_SEEDS", "127.0.0.1:1")], DEAD);
    assert!(!line.contains("127.0.0.1:3"), "the variable beats the file: {line}");
    let line = one_line_exit_2(
        &[&off[..], &["--seed", "127.0.0.1:2"]].concat(),
        &[("CLUSTERLESS_SEEDS", DEAD)],
        "127.0.0.1:2",
    );
    assert!(!line.contains(DEAD), "the flag beats the variable: {line}");
    one_line_exit_2(&off, &[("CLUSTERLESS_SEEDS", "no-port")], "`seeds`");
    one_line_exit_2(
        &[&off[..], &["--config", &dir.file("s.toml", "seeds = [\"no-port\"]\n")]].concat(),
        &[],
        "`seeds`",
    );

    // auth.requirepass from each place: with it, auth.user is accepted.
    let f = dir.file("auth.toml", "[auth]\nrequirepass = \"pw\"\nuser = \"bob\"\n");
    for (args, env) in [
        (vec!["--user", "bob", "--requirepass", "pw"], vec![]),
        (vec!["--user", "bob"], vec![("CLUSTERLESS_REQUIREPASS", "pw")]),
        (vec!["--config", f.as_str()], vec![]),
    ] {
        let line = one_line_exit_2(&[&base[..], &off[..], &args[..]].concat(), &env, DEAD);
        assert!(!line.contains("auth.user"), "{line}");
    }
    // backend.password from each place: with it, backend.user is accepted.
    let f = dir.file("backend.toml", "[backend]\nuser = \"app\"\npassword = \"pw\"\n");
    for (args, env) in [
        (vec!["--backend-user", "app", "--backend-password", "pw"], vec![]),
        (vec!["--backend-user", "app"], vec![("CLUSTERLESS_BACKEND_PASSWORD", "pw")]),
        (vec!["--config", f.as_str()], vec![]),
    ] {
        let line = one_line_exit_2(&[&base[..], &off[..], &args[..]].concat(), &env, DEAD);
        assert!(!line.contains("backend.user"), "{line}");
    }
}

/// Keys that only the file sets: each refused value is one line naming the key, exit code 2.
#[test]
fn file_only_keys_are_validated_by_name() {
    let dir = Dir::new();
    for (text, key) in [
        ("[limits]\nmax_bulk_len = 0\n", "limits.max_bulk_len"),
        ("[limits]\nmax_inline_len = 0\n", "limits.max_inline_len"),
        ("[limits]\nmax_pipeline = 0\n", "limits.max_pipeline"),
        ("[backend]\nconnections_per_node = 0\n", "backend.connections_per_node"),
        ("[backend]\nconnect_timeout_ms = 0\n", "backend.connect_timeout_ms"),
        ("[backend]\nrequest_timeout_ms = 0\n", "backend.request_timeout_ms"),
        ("[backend]\nretry_budget_ms = 0\n", "backend.retry_budget_ms"),
        ("[backend]\nmax_redirects = 0\n", "backend.max_redirects"),
        ("[backend]\ndedicated_per_node = 0\n", "backend.dedicated_per_node"),
        ("[transactions]\ncross_slot = \"sometimes\"\n", "transactions.cross_slot"),
        ("[[auth.users]]\nname = \"a b\"\npassword = \"x\"\n", "auth.users"),
        ("[[auth.users]]\nname = \"app\"\npassword = \"\"\n", "auth.users"),
        ("[topology]\nbus_ping_interval_ms = 0\n", "topology.bus_ping_interval_ms"),
        ("[topology]\nbus_steady_interval_ms = 0\n", "topology.bus_steady_interval_ms"),
        ("[topology]\nbus_steady_interval_ms = 100\n", "topology.bus_steady_interval_ms"),
        ("[topology]\nreconcile_interval_ms = 0\n", "topology.reconcile_interval_ms"),
        ("[topology]\nfailover_hold_ms = 0\n", "topology.failover_hold_ms"),
        ("[topology]\nrefresh_interval_ms = 0\n", "topology.refresh_interval_ms"),
        ("[topology]\nmin_refresh_gap_ms = 0\n", "topology.min_refresh_gap_ms"),
        ("[lifecycle]\ndrain_timeout_ms = 0\n", "lifecycle.drain_timeout_ms"),
        ("[limits]\nmax_memory = \"12zb\"\n", "limits.max_memory"),
        ("[limits]\nmax_memory = true\n", "limits.max_memory"),
        ("[limits]\nclient_query_buffer_limit = 0\n", "limits.client_query_buffer_limit"),
        ("[limits]\nclient_query_buffer_limit = -1\n", "limits.client_query_buffer_limit"),
        ("[limits]\nclient_output_buffer_limit = [\"pubsub 1mb\"]\n", "limits.client_output_buffer_limit"),
        ("[limits]\nclient_output_buffer_limit = [\"replica 0 0 0\"]\n", "limits.client_output_buffer_limit"),
        ("[limits]\nclient_output_buffer_limit = [\"pubsub 1xb 0 0\"]\n", "limits.client_output_buffer_limit"),
    ] {
        let f = dir.file("k.toml", text);
        one_line_exit_2(&["--config", &f, "--seed", DEAD, "--metrics", ""], &[], &format!("`{key}`"));
    }
    // The shipped example file is valid as it is.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/clusterless.toml");
    let line = one_line_exit_2(&["--config", example.to_str().unwrap(), "--seed", DEAD, "--metrics", ""], &[], DEAD);
    assert!(line.contains("cannot reach the cluster"), "{line}");
}

async fn refused(addr: SocketAddr) -> bool {
    tokio::net::TcpStream::connect(addr).await.is_err()
}

/// The same keys given in all three places against a real cluster: the proxy listens, serves its
/// admin endpoint and takes its topology source where the flags say; without flags where the
/// variables say; with the file alone where the file says (each time nowhere else). The seeds
/// come from the same three places, a comma list with a dead node first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_beat_env_beat_file_on_a_real_cluster() {
    init_logs();
    let cluster = tokio::task::block_in_place(|| {
        LocalCluster::start(&ClusterSpec { masters: 3, replicas_per_master: 0, ..ClusterSpec::default() })
    })
    .expect("cluster");
    let seed = cluster.seed();
    let ([fa, ea, la], [fm, em, lm]) = (
        [local(free_port()), local(free_port()), local(free_port())],
        [local(free_port()), local(free_port()), local(free_port())],
    );
    let dir = Dir::new();
    let file = dir.file(
        "all.toml",
        &format!(
            "listen = \"{fa}\"\nseeds = [\"{seed}\"]\n[topology]\nsource = \"poll\"\n[admin]\nlisten = \"{fm}\"\n"
        ),
    );
    let env_seeds = format!("{DEAD},{seed}");
    let (ea_s, em_s) = (ea.to_string(), em.to_string());
    let env = [
        ("CLUSTERLESS_LISTEN", ea_s.as_str()),
        ("CLUSTERLESS_SEEDS", env_seeds.as_str()),
        ("CLUSTERLESS_TOPOLOGY_SOURCE", "bus"),
        ("CLUSTERLESS_METRICS", em_s.as_str()),
    ];
    let (la_s, lm_s) = (la.to_string(), lm.to_string());
    let flags = ["--listen", &la_s, "--seed", DEAD, "--seed", &seed, "--topology-source", "poll", "--metrics", &lm_s];

    for (what, args, env, listen, admin, source) in [
        ("flags", [&["--config", file.as_str()][..], &flags[..]].concat(), &env[..], la, lm, "poll"),
        ("environment", vec!["--config", file.as_str()], &env[..], ea, em, "bus"),
        ("file", vec!["--config", file.as_str()], &[][..], fa, fm, "poll"),
    ] {
        let mut p = Bin::spawn_env(&args, env);
        let mut c = p.client(listen).await;
        assert_eq!(c.cmd(&[b"SET", what.as_bytes(), b"1"]).await, b"+OK\r\n");
        for other in [fa, ea, la, fm, em, lm].into_iter().filter(|a| *a != listen && *a != admin) {
            assert!(refused(other).await, "{what}: something listens on {other}");
        }
        let src = |m: &HashMap<String, f64>, s: &str| get(m, &format!("clusterless_topology_source{{source=\"{s}\"}}"));
        if source == "poll" {
            // Let time pass on purpose: a bus observer would have pinged every node in it (every
            // 250 ms); polling never does.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let m = scrape(admin).await;
            assert_eq!((src(&m, "poll"), src(&m, "bus"), src(&m, "bootstrap")), (1.0, 0.0, 0.0), "{what}");
            assert_eq!(get(&m, "clusterless_observer_pings_total"), 0.0, "{what}: polling pinged the bus");
        } else {
            eventually_async(&format!("{what}: the bus observer is the source"), || async {
                let m = scrape(admin).await;
                src(&m, "bus") == 1.0 && src(&m, "poll") == 0.0 && get(&m, "clusterless_observer_pongs_total") > 0.0
            })
            .await;
        }
        assert_eq!(p.stop().await, Some(0), "{what}: {}", p.log());
    }
}

/// `backend.user` / `backend.password` against nodes that require them: the default user has a
/// password of its own (requirepass on every node) and `app` is an ACL user created on every node.
/// With app's credentials the proxy serves every master, logged in as app; with a wrong password
/// or none, start-up fails with one line naming the node, exit code 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_acl_user() {
    init_logs();
    let spec = ClusterSpec {
        masters: 3,
        replicas_per_master: 0,
        password: Some("default-pw".into()),
        ..ClusterSpec::default()
    };
    let cluster = tokio::task::block_in_place(|| LocalCluster::start(&spec)).expect("cluster");
    let ports = cluster.ports();
    for &p in &ports {
        let ok = tokio::task::block_in_place(|| {
            cluster.cli(p, &["ACL", "SETUSER", "app", "on", ">app-pw", "~*", "&*", "+@all"])
        });
        assert_eq!(ok.unwrap(), "OK");
    }
    let seed = cluster.seed();
    let dir = Dir::new();
    let file = dir.file("acl.toml", "[backend]\nuser = \"app\"\npassword = \"app-pw\"\n");
    let addr = local(free_port());
    let addr_s = addr.to_string();
    let mut p = Bin::spawn_env(&["--config", &file, "--seed", &seed, "--listen", &addr_s, "--metrics", ""], &[]);
    let mut c = p.client(addr).await;
    for i in 0..30 {
        let k = format!("acl:{i}");
        assert_eq!(c.cmd(&[b"SET", k.as_bytes(), b"v"]).await, b"+OK\r\n");
        assert_eq!(c.cmd(&[b"GET", k.as_bytes()]).await, b"$1\r\nv\r\n");
    }
    assert_eq!(c.cmd(&[b"DBSIZE"]).await, b":30\r\n");
    for &port in &ports {
        let list = tokio::task::block_in_place(|| cluster.cli(port, &["CLIENT", "LIST"])).unwrap();
        assert!(list.lines().any(|l| l.contains(" user=app ")), "node {port}: the proxy logged in as app: {list}");
    }
    drop(c);
    assert_eq!(p.stop().await, Some(0), "{}", p.log());

    let node = seed.as_str();
    let base = ["--seed", node, "--listen", "127.0.0.1:0", "--metrics", ""];
    let line =
        one_line_exit_2(&base, &[("CLUSTERLESS_BACKEND_USER", "app"), ("CLUSTERLESS_BACKEND_PASSWORD", "wrong")], node);
    assert!(line.contains("WRONGPASS"), "{line}");
    let line =
        one_line_exit_2(&[&base[..], &["--backend-user", "app", "--backend-password", "wrong"]].concat(), &[], node);
    assert!(line.contains("WRONGPASS"), "{line}");
    // app's password is not the default user's.
    let line = one_line_exit_2(&[&base[..], &["--backend-password", "app-pw"]].concat(), &[], node);
    assert!(line.contains("WRONGPASS"), "{line}");
    let line = one_line_exit_2(&base, &[], node);
    assert!(line.contains("NOAUTH"), "{line}");
}

/// `clusterless dev` (the README's first command): its own cluster and a proxy on the address
/// `--listen` names (the `--port` flag, when given, would set only its port); SET and GET answer
/// there, and Ctrl-C stops both with exit code 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_serves_on_its_listen_address_and_stops_on_ctrl_c() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut bin = Bin::spawn(&["dev", "--replicas", "0", "--listen", &listen, "--metrics", ""]);
    let addr: SocketAddr = listen.parse().expect("addr");
    eventually_async("the dev proxy answers on --listen", || async {
        tokio::net::TcpStream::connect(addr).await.is_ok()
    })
    .await;
    let mut c = common::Raw::connect(addr).await;
    assert_eq!(c.text(&["SET", "dev-key", "v"]).await, "+OK\r\n");
    assert_eq!(c.text(&["GET", "dev-key"]).await, "$1\r\nv\r\n");
    assert_eq!(c.text(&["DBSIZE"]).await, ":1\r\n");
    drop(c);
    bin.signal("INT");
    assert_eq!(bin.exit_code(common::CLUSTER_PATIENCE).await, Some(0), "log: {}", bin.log());
}
