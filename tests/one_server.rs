//! One server, not many (issue 16, items 3 and 7): what the proxy answers where a cluster node
//! would answer for itself. Each check sends the same command to the proxy and to a plain
//! redis-server started beside the cluster (`start_stranger`) and compares the replies byte for
//! byte, masking only values that rightly differ (ids, buffer sizes); where a plain server cannot
//! show the answer (it has 16 databases), the proxy's bytes are checked exactly.

mod common;

use std::net::SocketAddr;

use common::{key_in_slot, small, start, with_replicas, Env, Raw};

type Sections = Vec<(String, Vec<(String, String)>)>;

/// A raw connection to a node or a plain server on loopback.
async fn raw(port: u16) -> Raw {
    Raw::connect(SocketAddr::from(([127, 0, 0, 1], port))).await
}

/// A plain redis-server beside the cluster: what one server answers.
fn plain(env: &mut Env) -> u16 {
    tokio::task::block_in_place(|| env.cluster.start_stranger(None)).expect("plain redis-server")
}

/// The text of an INFO reply, RESP2 bulk or RESP3 verbatim (`txt:` dropped).
fn info_text(reply: &[u8]) -> String {
    let s = String::from_utf8_lossy(reply).into_owned();
    let (head, body) = s.split_once("\r\n").unwrap_or_else(|| panic!("not a string reply: {s:?}"));
    assert!(head.starts_with('$') || head.starts_with('='), "not a string reply: {s:?}");
    let body = body.strip_suffix("\r\n").unwrap_or(body);
    body.strip_prefix("txt:").unwrap_or(body).to_string()
}

fn sections(text: &str) -> Sections {
    let mut out: Sections = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("# ") {
            out.push((name.to_string(), Vec::new()));
        } else if let Some((k, v)) = line.split_once(':') {
            out.last_mut().expect("a field before any section").1.push((k.to_string(), v.to_string()));
        }
    }
    out
}

async fn info(r: &mut Raw, args: &[&str]) -> Sections {
    let mut cmd = vec!["INFO"];
    cmd.extend_from_slice(args);
    let cmd: Vec<&[u8]> = cmd.iter().map(|a| a.as_bytes()).collect();
    sections(&info_text(&r.cmd(&cmd).await))
}

/// One section's fields.
async fn section(r: &mut Raw, name: &str) -> Vec<(String, String)> {
    let all = info(r, &[name]).await;
    assert_eq!(all.len(), 1, "INFO {name}: {all:?}");
    all.into_iter().next().map(|(_, f)| f).unwrap_or_default()
}

/// Waits until INFO clients on `r` shows every `want` value (checking every 20 ms, at most
/// `common::PATIENCE`): clients connect, block and leave asynchronously.
async fn clients_reach(r: &mut Raw, want: &[(&str, &str)], who: &str) {
    let deadline = std::time::Instant::now() + common::PATIENCE;
    loop {
        let f = section(r, "clients").await;
        if want.iter().all(|(k, v)| field(&f, k) == *v) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{who}: never {want:?}: {f:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn field<'a>(fields: &'a [(String, String)], k: &str) -> &'a str {
    fields.iter().find(|(k2, _)| k2 == k).map(|(_, v)| v.as_str()).unwrap_or_else(|| panic!("no {k} in {fields:?}"))
}

fn names(fields: &[(String, String)]) -> Vec<&str> {
    fields.iter().map(|(k, _)| k.as_str()).collect()
}

/// Redis's bytesToHuman.
fn human(n: i64) -> String {
    let mut d = n as f64;
    if n < 1024 {
        return format!("{n}B");
    }
    for u in ["K", "M", "G", "T"] {
        d /= 1024.0;
        if d < 1024.0 {
            return format!("{d:.2}{u}");
        }
    }
    format!("{:.2}P", d / 1024.0)
}

/// `calls=1,usec=2,...` as pairs.
fn stat_line(v: &str) -> Vec<(String, String)> {
    v.split(',').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// INFO through the proxy against a plain server (with one replica per master, so that a proxy
/// showing a node's own replication or client figures cannot pass): the sections asked for,
/// the clients section's fields and counts, replication, server, stats and command statistics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_answers_as_one_server() {
    let mut env = start(with_replicas()).await;
    let plain_port = plain(&mut env);
    let masters = env.cluster.masters();
    let mut p = Raw::connect(env.addr()).await;
    let mut s = raw(plain_port).await;

    // Sections: several in one call, `all`, `everything`, `default`, case-insensitive names, and
    // unknown names ignored; Redis's order whatever the order asked.
    let cases: &[&[&str]] = &[
        &[],
        &["server", "clients"],
        &["clients", "server"],
        &["CLIENTS", "replication", "cluster"],
        &["cpu", "nosuch"],
        &["default"],
        &["all"],
        &["everything"],
        &["keyspace", "commandstats", "errorstats"],
    ];
    for args in cases {
        let got: Vec<String> = info(&mut p, args).await.into_iter().map(|(n, _)| n).collect();
        let want: Vec<String> = info(&mut s, args).await.into_iter().map(|(n, _)| n).collect();
        assert_eq!(got, want, "INFO {args:?}: section names");
    }
    assert_eq!(p.cmd(&[b"INFO", b"nosuch"]).await, s.cmd(&[b"INFO", b"nosuch"]).await, "unknown section");
    assert_eq!(p.cmd(&[b"INFO", b"nosuch"]).await, b"$0\r\n\r\n");

    // Cluster: one server's own, byte for byte (a node says cluster_enabled:1), in RESP2 and as a
    // RESP3 verbatim string.
    assert_eq!(p.cmd(&[b"INFO", b"cluster"]).await, s.cmd(&[b"INFO", b"cluster"]).await);
    {
        let mut p3 = Raw::connect(env.addr()).await;
        let mut s3 = raw(plain_port).await;
        assert!(p3.text(&["HELLO", "3"]).await.starts_with("%7\r\n"));
        assert!(s3.text(&["HELLO", "3"]).await.starts_with("%7\r\n"));
        let got = p3.cmd(&[b"INFO", b"cluster"]).await;
        assert_eq!(got, s3.cmd(&[b"INFO", b"cluster"]).await);
        assert_eq!(got, b"=34\r\ntxt:# Cluster\r\ncluster_enabled:0\r\n\r\n");
        assert_eq!(p3.cmd(&[b"INFO", b"nosuch"]).await, s3.cmd(&[b"INFO", b"nosuch"]).await);
        // CLIENT INFO is a verbatim string in RESP3 too (its fields differ: ids, addresses).
        assert!(p3.text(&["CLIENT", "INFO"]).await.starts_with('='));
        assert!(s3.text(&["CLIENT", "INFO"]).await.starts_with('='));
    }

    // Replication: a master without replicas, field for field as the plain server prints it (the
    // masters each have a replica, which a node's own section would show); only the replication
    // id differs, 40 hex characters of the proxy's own.
    for &m in &masters {
        let own = section(&mut raw(m).await, "replication").await;
        assert_eq!(field(&own, "connected_slaves"), "1", "control: master {m} has its replica");
    }
    let mask = |mut f: Vec<(String, String)>, k: &str| {
        for (k2, v) in f.iter_mut() {
            if k2 == k {
                *v = "*".into();
            }
        }
        f
    };
    let got = section(&mut p, "replication").await;
    let replid = field(&got, "master_replid").to_string();
    assert!(replid.len() == 40 && replid.bytes().all(|c| c.is_ascii_hexdigit()), "{replid}");
    assert_eq!(mask(got, "master_replid"), mask(section(&mut s, "replication").await, "master_replid"));

    // Server: the plain server's fields in its order, then the proxy's name and version; the
    // process facts are the proxy's (a test runs it in-process), its run_id its own and stable.
    let got = section(&mut p, "server").await;
    let want = section(&mut s, "server").await;
    let mut want_names = names(&want);
    want_names.extend(["proxy", "clusterless_version"]);
    assert_eq!(names(&got), want_names);
    assert_eq!(field(&got, "redis_mode"), "standalone");
    assert_eq!(field(&got, "tcp_port"), env.addr().port().to_string());
    assert_eq!(field(&got, "process_id"), std::process::id().to_string());
    assert_eq!(field(&got, "executable"), std::env::current_exe().unwrap().display().to_string());
    assert_eq!(field(&got, "config_file"), "");
    let run_id = field(&got, "run_id").to_string();
    assert_eq!(run_id.len(), 40);
    for &m in &masters {
        let own = section(&mut raw(m).await, "server").await;
        assert_ne!(field(&own, "run_id"), run_id, "master {m}'s run_id");
    }
    assert_eq!(field(&section(&mut p, "server").await, "run_id"), run_id, "the same on every call");

    // Clients: the same clients on both sides (blocked in BLPOP over two slots, BLPOP with a
    // timeout, XREAD BLOCK, WAIT, a subscriber, a watcher, and this one), and the same counts.
    let stream_id = "$";
    let blockers: [&[&str]; 4] = [
        &["BLPOP", "q:a", "q:b", "0"],
        &["BLPOP", "q:c", "30"],
        &["XREAD", "BLOCK", "0", "STREAMS", "st", stream_id],
        &["WAIT", "5", "0"],
    ];
    let mut held = Vec::new();
    for addr in [env.addr(), SocketAddr::from(([127, 0, 0, 1], plain_port))] {
        for b in &blockers {
            let mut c = Raw::connect(addr).await;
            let args: Vec<&[u8]> = b.iter().map(|a| a.as_bytes()).collect();
            c.send(&clusterless::resp::encode_command(&args)).await;
            held.push(c);
        }
        let mut sub = Raw::connect(addr).await;
        assert!(sub.text(&["SUBSCRIBE", "ch"]).await.starts_with("*3\r\n$9\r\nsubscribe\r\n"));
        let mut w = Raw::connect(addr).await;
        assert_eq!(w.text(&["WATCH", "wk"]).await, "+OK\r\n");
        held.extend([sub, w]);
    }
    for (who, r) in [("proxy", &mut p), ("plain", &mut s)] {
        clients_reach(r, &[("blocked_clients", "4"), ("connected_clients", "7")], who).await;
    }
    let buffers = ["client_recent_max_input_buffer", "client_recent_max_output_buffer"];
    let got = section(&mut p, "clients").await;
    let want = section(&mut s, "clients").await;
    let strip = |f: &[(String, String)], keep: &dyn Fn(&str) -> bool| -> Vec<(String, String)> {
        f.iter()
            .filter(|(k, _)| keep(k))
            .map(|(k, v)| (k.clone(), if buffers.contains(&k.as_str()) { "*".into() } else { v.clone() }))
            .collect()
    };
    let plain_names: Vec<String> = want.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(strip(&got, &|k| plain_names.iter().any(|n| n == k)), strip(&want, &|_| true), "{got:?}");
    assert_eq!(field(&got, "connected_clients"), "7");
    assert_eq!(field(&got, "clients_in_timeout_table"), "1", "BLPOP with a timeout only");
    // Redis 7.2's fields, which the plain 7.0 server does not print.
    let extra: Vec<(&str, &str)> =
        got.iter().filter(|(k, _)| !plain_names.contains(k)).map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(extra, [("pubsub_clients", "1"), ("watching_clients", "1"), ("total_blocking_keys", "0")]);
    drop(held);
    let gone = [
        ("blocked_clients", "0"),
        ("clients_in_timeout_table", "0"),
        ("pubsub_clients", "0"),
        ("watching_clients", "0"),
        ("connected_clients", "1"),
    ];
    clients_reach(&mut p, &gone, "proxy, once those clients left").await;

    // Stats: connections are the proxy's own (three more, exactly), the rest summed over masters.
    let before: i64 = field(&section(&mut p, "stats").await, "total_connections_received").parse().unwrap();
    for _ in 0..3 {
        let mut c = Raw::connect(env.addr()).await;
        assert_eq!(c.text(&["PING"]).await, "+PONG\r\n");
    }
    let after = section(&mut p, "stats").await;
    assert_eq!(field(&after, "total_connections_received"), (before + 3).to_string());
    assert_eq!(field(&after, "rejected_connections"), "0");

    // Command and error statistics: every master's lines (commands some masters never ran
    // included), summed per command; usec_per_call worked out from the sums.
    for &m in &masters {
        assert_eq!(raw(m).await.text(&["CONFIG", "RESETSTAT"]).await, "+OK\r\n");
    }
    let key_on = |m: u16, tag: &str| key_in_slot(env.cluster.slots_of(m)[0], tag);
    let ks: Vec<String> = masters.iter().map(|&m| key_on(m, "k")).collect();
    for k in &ks {
        assert_eq!(p.text(&["SET", k, "v"]).await, "+OK\r\n");
        assert_eq!(p.text(&["GET", k]).await, "$1\r\nv\r\n");
        assert_eq!(p.text(&["GET", &format!("{k}-missing")]).await, "$-1\r\n");
    }
    assert_eq!(p.text(&["SADD", &key_on(masters[1], "s"), "x"]).await, ":1\r\n");
    assert_eq!(p.text(&["HSET", &key_on(masters[2], "h"), "f", "v"]).await, ":1\r\n");
    let wrongtype = "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";
    assert_eq!(p.text(&["LPUSH", &ks[0], "x"]).await, wrongtype);
    assert_eq!(p.text(&["LPUSH", &ks[1], "x"]).await, wrongtype);
    // The cluster's own commands (here one sent straight to a master) are no client's.
    assert!(raw(masters[0]).await.text(&["CLUSTER", "INFO"]).await.contains("cluster_state:ok"));
    let got = info(&mut p, &["commandstats", "errorstats", "stats", "memory"]).await;
    let mut own = Vec::new();
    for &m in &masters {
        own.push(info(&mut raw(m).await, &["commandstats", "errorstats", "stats"]).await);
    }
    let sec = |all: &Sections, n: &str| all.iter().find(|(x, _)| x == n).map(|(_, f)| f.clone()).unwrap_or_default();
    let find = |f: &[(String, String)], k: &str| f.iter().find(|(x, _)| x == k).map(|(_, v)| v.clone());
    let cs = sec(&got, "Commandstats");
    assert!(find(&sec(&own[0], "Commandstats"), "cmdstat_cluster|info").is_some(), "control");
    assert!(!cs.iter().any(|(k, _)| k.starts_with("cmdstat_cluster|")), "{cs:?}");
    // Lines one master alone has: its own line, as it wrote it.
    assert_eq!(find(&cs, "cmdstat_sadd"), find(&sec(&own[1], "Commandstats"), "cmdstat_sadd"), "{cs:?}");
    assert_eq!(find(&cs, "cmdstat_hset"), find(&sec(&own[2], "Commandstats"), "cmdstat_hset"), "{cs:?}");
    for cmd in ["cmdstat_get", "cmdstat_set", "cmdstat_lpush"] {
        let lines: Vec<Vec<(String, String)>> =
            own.iter().filter_map(|o| find(&sec(o, "Commandstats"), cmd)).map(|v| stat_line(&v)).collect();
        let sum = |f: &str| -> i64 { lines.iter().map(|l| field(l, f).parse::<i64>().unwrap()).sum() };
        let (calls, usec) = (sum("calls"), sum("usec"));
        let want = format!(
            "calls={calls},usec={usec},usec_per_call={:.2},rejected_calls={},failed_calls={}",
            usec as f64 / calls as f64,
            sum("rejected_calls"),
            sum("failed_calls")
        );
        assert_eq!(find(&cs, cmd), Some(want), "{cmd}");
    }
    assert_eq!(find(&cs, "cmdstat_get").map(|v| field(&stat_line(&v), "calls").to_string()), Some("6".into()));
    assert_eq!(find(&sec(&got, "Errorstats"), "errorstat_WRONGTYPE"), Some("count=2".into()), "one per master");
    let stats = sec(&got, "Stats");
    for k in ["keyspace_hits", "keyspace_misses"] {
        let sum: i64 = own.iter().map(|o| field(&sec(o, "Stats"), k).parse::<i64>().unwrap()).sum();
        assert_eq!(field(&stats, k), sum.to_string(), "{k}");
    }
    assert_eq!(field(&stats, "keyspace_hits"), "3");
    // Memory: the byte counts summed, their `_human` forms written from the sums.
    let mem = sec(&got, "Memory");
    assert_eq!(field(&mem, "used_memory_human"), human(field(&mem, "used_memory").parse().unwrap()));
}

/// Edges where one server's answer differs from a node's or the proxy refused before: PING's
/// arity, ACL WHOAMI, unknown subcommands of refused commands, SORT_RO/GEORADIUS_RO with STORE,
/// COPY with DB, and refusals inside MULTI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_answer_as_one_server() {
    let mut env = start(small()).await;
    let plain_port = plain(&mut env);
    let mut p = Raw::connect(env.addr()).await;
    let mut s = raw(plain_port).await;

    // The same bytes from the proxy and from the plain server, in RESP2 and in RESP3.
    let same: &[&[&str]] = &[
        &["PING", "a", "b"],
        &["PING", "a"],
        &["PING"],
        &["ACL", "WHOAMI"],
        &["ACL", "WHOAMI", "x"],
        &["ACL", "FOO"],
        &["CONFIG", "FOO"],
        &["MODULE", "FOO"],
        &["CLUSTER", "FOO"],
        &["SORT_RO", "a", "BY", "x", "STORE", "c"],
        &["GEORADIUS_RO", "a", "0", "0", "1", "km", "STORE", "c"],
        &["GEORADIUSBYMEMBER_RO", "a", "m", "1", "km", "STORE", "c"],
        &["SET", "{c}src", "v"],
        &["COPY", "{c}src", "{c}dst", "DB", "0"],
        &["COPY", "{c}src", "{c}dst", "DB", "0", "REPLACE"],
        &["COPY", "{c}src", "{c}dst2", "DB", "x"],
        &["COPY", "{c}src", "{c}dst2", "FOO", "DB", "1"],
        &["GET", "{c}dst"],
        // COPY's own errors come first, as on one server: `a` and `c` are in different slots,
        // yet no CROSSSLOT.
        &["COPY", "a", "c", "FOO"],
        &["COPY", "a", "c", "DB"],
        &["COPY", "a", "c", "DB", "x"],
        &["COPY", "a", "c", "REPLACE", "DB", "0", "DB"],
        &["CLIENT", "NO-EVICT", "x"],
        &["CLIENT", "NO-EVICT", "on"],
    ];
    for proto in ["2", "3"] {
        assert!(p.text(&["HELLO", proto]).await.starts_with(if proto == "2" { "*14\r\n" } else { "%7\r\n" }));
        assert!(s.text(&["HELLO", proto]).await.starts_with(if proto == "2" { "*14\r\n" } else { "%7\r\n" }));
        for args in same {
            assert_eq!(p.text(args).await, s.text(args).await, "RESP{proto} {args:?}");
        }
    }
    // The texts themselves (so that a wrong plain server could not make the above pass).
    assert_eq!(p.text(&["PING", "a", "b"]).await, "-ERR wrong number of arguments for 'ping' command\r\n");
    assert_eq!(p.text(&["ACL", "WHOAMI"]).await, "$7\r\ndefault\r\n");
    assert_eq!(p.text(&["ACL", "FOO"]).await, "-ERR unknown subcommand 'FOO'. Try ACL HELP.\r\n");
    // `a` and `c` hash to different slots: SORT_RO takes no STORE, so no CROSSSLOT first.
    assert_ne!(clusterless::slot::slot(b"a"), clusterless::slot::slot(b"c"));
    assert_eq!(p.text(&["SORT_RO", "a", "STORE", "c"]).await, "-ERR syntax error\r\n");
    // COPY into another database: one database here, as SELECT says; nothing copied.
    assert_eq!(p.text(&["SELECT", "1"]).await, "-ERR DB index is out of range\r\n");
    assert_eq!(p.text(&["COPY", "{c}src", "{c}dst2", "DB", "1"]).await, "-ERR DB index is out of range\r\n");
    assert_eq!(
        p.text(&["COPY", "{c}src", "{c}dst2", "REPLACE", "DB", "15"]).await,
        "-ERR DB index is out of range\r\n"
    );
    assert_eq!(p.text(&["EXISTS", "{c}dst2"]).await, ":0\r\n");
    // Refusals name their command.
    assert_eq!(
        p.text(&["ACL", "USERS"]).await,
        "-ERR 'ACL USERS' is not available through clusterless: it acts on one server; run it on the cluster's nodes\r\n"
    );

    // Inside MULTI: queue-time errors as Redis gives them (unknown command, arity), and the
    // proxy's refusals at queue time too, each making EXEC answer EXECABORT; nothing runs.
    let execabort = "-EXECABORT Transaction discarded because of previous errors.\r\n";
    for r in [&mut p, &mut s] {
        assert!(r.text(&["HELLO", "2"]).await.starts_with("*14\r\n"));
    }
    let tx = |bad: &'static [&'static str]| -> Vec<&'static [&'static str]> {
        vec![&["MULTI"], &["SET", "{t}k", "1"], bad, &["SET", "{t}k2", "2"], &["EXEC"]]
    };
    for bad in [&["NOSUCH", "x"][..], &["GET", "a", "b"], &["PING", "a", "b"]] {
        for args in tx(bad) {
            assert_eq!(p.text(args).await, s.text(args).await, "{args:?} in MULTI with {bad:?}");
        }
    }
    assert_eq!(p.text(&["DEL", "{t}k", "{t}k2"]).await, ":2\r\n", "PING a b fails at EXEC only, as in Redis");
    let refused: &[(&[&str], String)] = &[
        (
            &["CONFIG", "SET", "maxmemory", "1"],
            "-ERR 'CONFIG SET' is not available through clusterless inside MULTI: it goes to every node, and a transaction runs on one\r\n".into(),
        ),
        (
            &["DEBUG", "SLEEP", "0"],
            "-ERR 'DEBUG' is not available through clusterless: it acts on one server; run it on the cluster's nodes\r\n".into(),
        ),
        (&["SUBSCRIBE", "ch"], in_multi("SUBSCRIBE")),
        (&["PSUBSCRIBE", "c*"], in_multi("PSUBSCRIBE")),
        (&["HELLO", "3"], in_multi("HELLO")),
        (&["AUTH", "x"], in_multi("AUTH")),
        (&["CLIENT", "TRACKING", "ON"], in_multi("CLIENT TRACKING")),
        // A non-cluster server's own answer, at queue time here (Redis gives it at EXEC).
        (&["CLUSTER", "INFO"], "-ERR This instance has cluster support disabled\r\n".into()),
        (&["READONLY"], "-ERR This instance has cluster support disabled\r\n".into()),
    ];
    for (bad, err) in refused {
        assert_eq!(p.text(&["MULTI"]).await, "+OK\r\n");
        assert_eq!(p.text(&["SET", "{t}k", "1"]).await, "+QUEUED\r\n");
        assert_eq!(&p.text(bad).await, err, "{bad:?}");
        assert_eq!(p.text(&["EXEC"]).await, execabort, "{bad:?}");
        assert_eq!(p.text(&["EXISTS", "{t}k"]).await, ":0\r\n", "nothing ran after {bad:?}");
    }
    // Commands the proxy answers itself, inside MULTI: queued, run at EXEC in their places in
    // its array (ACL WHOAMI names the client's user, not the node's), not at all after DISCARD
    // or a WATCH abort.
    let mut other = Raw::connect(env.addr()).await;
    let steps: &[&[&str]] = &[
        &["MULTI"],
        &["CLIENT", "SETNAME", "n1"],
        &["SET", "{t}a", "1"],
        &["CLIENT", "GETNAME"],
        &["ACL", "WHOAMI"],
        &["CLIENT", "NO-EVICT", "on"],
        &["GET", "{t}a"],
        &["EXEC"],
        &["CLIENT", "GETNAME"],
        &["MULTI"],
        &["CLIENT", "SETNAME", "n2"],
        &["ACL", "WHOAMI"],
        &["EXEC"],
        &["MULTI"],
        &["CLIENT", "SETNAME", "n3"],
        &["DISCARD"],
        &["CLIENT", "GETNAME"],
    ];
    for args in steps {
        assert_eq!(p.text(args).await, s.text(args).await, "{args:?}");
    }
    // COPY's own errors inside MULTI: queued, and failing in EXEC's array as on one server (keys
    // of two slots included: no CROSSSLOT), the other commands running.
    for args in
        [&["UNWATCH"][..], &["MULTI"], &["SET", "{t}x", "1"], &["COPY", "a", "c", "FOO"], &["GET", "{t}x"], &["EXEC"]]
    {
        assert_eq!(p.text(args).await, s.text(args).await, "{args:?}");
    }
    assert_eq!(p.text(&["MULTI"]).await, "+OK\r\n");
    assert_eq!(p.text(&["COPY", "{c}src", "{c}dst3", "DB", "1"]).await, "+QUEUED\r\n");
    assert_eq!(p.text(&["EXEC"]).await, "*1\r\n-ERR DB index is out of range\r\n");
    assert_eq!(p.text(&["WATCH", "{t}w"]).await, "+OK\r\n");
    assert_eq!(s.text(&["WATCH", "{t}w"]).await, "+OK\r\n");
    for args in [&["MULTI"][..], &["CLIENT", "SETNAME", "n4"], &["SET", "{t}b", "1"]] {
        assert_eq!(p.text(args).await, s.text(args).await, "{args:?}");
    }
    // The watched key changes on each side: EXEC answers nil, and the name stays.
    assert_eq!(other.text(&["SET", "{t}w", "x"]).await, "+OK\r\n");
    assert_eq!(raw(plain_port).await.text(&["SET", "{t}w", "x"]).await, "+OK\r\n");
    for args in [&["EXEC"][..], &["CLIENT", "GETNAME"], &["EXISTS", "{t}b"]] {
        assert_eq!(p.text(args).await, s.text(args).await, "{args:?}");
    }
    assert_eq!(p.text(&["CLIENT", "GETNAME"]).await, "$2\r\nn2\r\n");
    // A RESP2 subscriber's PING: the same arity rule, and the same pong array.
    let mut psub = Raw::connect(env.addr()).await;
    let mut ssub = raw(plain_port).await;
    for args in [&["SUBSCRIBE", "ch"][..], &["PING", "a", "b"], &["PING", "a"], &["PING"]] {
        assert_eq!(psub.text(args).await, ssub.text(args).await, "subscribed: {args:?}");
    }
    // The node connections stayed ordinary (a SUBSCRIBE sent in a block would have left a shared
    // one subscribed): other clients' commands on every master still work.
    for m in env.cluster.masters() {
        let k = key_in_slot(env.cluster.slots_of(m)[0], "after");
        assert_eq!(other.text(&["SET", &k, "1"]).await, "+OK\r\n");
        assert_eq!(other.text(&["GET", &k]).await, "$1\r\n1\r\n");
    }
}

fn in_multi(shown: &str) -> String {
    format!(
        "-ERR '{shown}' is not available through clusterless inside MULTI: a transaction runs on a node's connection, and this command acts on the client's\r\n"
    )
}

/// ACL WHOAMI names the user the client authenticated as, as Redis does: the proxy with a
/// password and an extra user (the setting under test) against a plain server given the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_whoami_names_the_authenticated_user() {
    let mut env = start(small()).await;
    let plain_port = plain(&mut env);
    let mut cfg = common::shipped_config(env.cluster.seed());
    cfg.auth.requirepass = Some("pw".into());
    cfg.auth.users = vec![clusterless::config::User { name: "alice".into(), password: "apw".into(), backend: None }];
    let proxy = clusterless::start(cfg).await.expect("second proxy");
    let mut admin = raw(plain_port).await;
    assert_eq!(admin.text(&["ACL", "SETUSER", "alice", "on", ">apw", "~*", "&*", "+@all"]).await, "+OK\r\n");
    assert_eq!(admin.text(&["CONFIG", "SET", "requirepass", "pw"]).await, "+OK\r\n");
    let mut p = Raw::connect(proxy.addr()).await;
    let mut s = raw(plain_port).await;
    let steps: &[&[&str]] = &[
        &["ACL", "WHOAMI"],
        &["AUTH", "pw"],
        &["ACL", "WHOAMI"],
        &["AUTH", "alice", "apw"],
        &["ACL", "WHOAMI"],
        &["AUTH", "alice", "wrong"],
        &["ACL", "WHOAMI"],
        &["RESET"],
        &["ACL", "WHOAMI"],
        &["HELLO", "3", "AUTH", "alice", "apw"],
        &["ACL", "WHOAMI"],
    ];
    for args in steps {
        let got = p.text(args).await;
        if args[0] == "HELLO" {
            // Ids differ; the RESP3 map's shape does not.
            assert!(got.starts_with("%7\r\n") && s.text(args).await.starts_with("%7\r\n"), "{got}");
            continue;
        }
        assert_eq!(got, s.text(args).await, "{args:?}");
    }
    assert_eq!(p.text(&["ACL", "WHOAMI"]).await, "$5\r\nalice\r\n");
    for args in [&["MULTI"][..], &["ACL", "WHOAMI"], &["EXEC"]] {
        assert_eq!(p.text(args).await, s.text(args).await, "{args:?}");
    }
    assert_eq!(p.text(&["EXEC"]).await, "-ERR EXEC without MULTI\r\n");
}
