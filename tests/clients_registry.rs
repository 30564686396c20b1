//! One server, not many (issue 16, item 4): CLIENT LIST, INFO and KILL act on the proxy's own
//! clients, all of them, in Redis's formats. Formats are compared byte for byte with a plain
//! redis-server started beside the cluster (`start_stranger`), masking only what rightly differs
//! (ids, addresses, fds, ages, buffer sizes) and leaving out the `lib-name`/`lib-ver` fields the
//! proxy shows as Redis 7.2 does (the plain server is 7.0); the kills are checked by their
//! effect: the killed connection closes, and its blocked pop is released on the node.

mod common;

use std::net::SocketAddr;

use common::{eventually_async, small, start, Raw};

async fn raw(port: u16) -> Raw {
    Raw::connect(SocketAddr::from(([127, 0, 0, 1], port))).await
}

/// The text of a bulk (RESP2) reply.
fn bulk_text(reply: &str) -> String {
    let (head, body) = reply.split_once("\r\n").unwrap_or_else(|| panic!("not a bulk: {reply:?}"));
    assert!(head.starts_with('$'), "not a bulk: {reply:?}");
    body.strip_suffix("\r\n").unwrap_or(body).to_string()
}

/// A CLIENT LIST line with what rightly differs between two servers masked, and the Redis 7.2
/// fields a 7.0 server does not show left out.
fn masked(line: &str) -> String {
    line.split(' ')
        .filter(|kv| !kv.starts_with("lib-name=") && !kv.starts_with("lib-ver="))
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let masked = matches!(
                k,
                "id" | "addr"
                    | "laddr"
                    | "fd"
                    | "age"
                    | "idle"
                    | "qbuf"
                    | "qbuf-free"
                    | "argv-mem"
                    | "multi-mem"
                    | "rbs"
                    | "rbp"
                    | "obl"
                    | "oll"
                    | "omem"
                    | "tot-mem"
            );
            if masked {
                format!("{k}=*")
            } else {
                format!("{k}={v}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn field<'a>(line: &'a str, k: &str) -> &'a str {
    line.split(' ')
        .find_map(|kv| kv.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {k} in {line}"))
}

async fn list(r: &mut Raw, args: &[&str]) -> Vec<String> {
    let mut cmd = vec!["CLIENT", "LIST"];
    cmd.extend_from_slice(args);
    bulk_text(&r.text(&cmd).await).lines().map(str::to_string).collect()
}

/// Waits (every 20 ms, at most `common::PATIENCE`) until CLIENT LIST `args` satisfies `ok`:
/// clients connect, block and leave asynchronously.
async fn list_until(r: &mut Raw, args: &[&str], what: &str, ok: impl Fn(&[String]) -> bool) {
    let deadline = std::time::Instant::now() + common::PATIENCE;
    loop {
        let l = list(r, args).await;
        if ok(&l) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "never {what}: {l:#?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Whether a connection of node `port` is blocked in BLPOP now (flag `b`; an idle pooled
/// connection shows its last command too).
async fn blocked_on_node(port: u16) -> bool {
    let text = bulk_text(&raw(port).await.text(&["CLIENT", "LIST"]).await);
    text.lines().any(|l| field(l, "cmd") == "blpop" && field(l, "flags").contains('b'))
}

/// A connection to the proxy (side 0) or to the plain server beside it (side 1), for the tests
/// that run the same script against both and compare.
async fn side_conn(side: usize, proxy: SocketAddr, plain_port: u16) -> Raw {
    if side == 0 {
        Raw::connect(proxy).await
    } else {
        raw(plain_port).await
    }
}

async fn id_of(r: &mut Raw) -> String {
    r.text(&["CLIENT", "ID"]).await.trim_start_matches(':').trim_end().to_string()
}

/// The same clients on the proxy and on a plain server: a named one with SETINFO, one inside
/// MULTI, one subscribed; CLIENT LIST (all, TYPE, ID), CLIENT INFO, and the errors of both
/// commands and of CLIENT KILL, compared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_info_as_one_server() {
    let mut env = start(small()).await;
    let plain_port = tokio::task::block_in_place(|| env.cluster.start_stranger(None)).expect("plain redis-server");
    let proxy = env.addr();
    let mut sides = Vec::new();
    for side in 0..2 {
        // Connected and answered one at a time: ids follow the order of connection.
        let connect = || async {
            let mut r = side_conn(side, proxy, plain_port).await;
            assert_eq!(r.text(&["PING"]).await, "+PONG\r\n");
            r
        };
        let mut me = connect().await;
        let mut named = connect().await;
        assert_eq!(named.text(&["CLIENT", "SETNAME", "alpha"]).await, "+OK\r\n");
        let setinfo = named.text(&["CLIENT", "SETINFO", "lib-name", "mylib"]).await;
        let mut tx = connect().await;
        let tx_id = id_of(&mut tx).await;
        assert_eq!(tx.text(&["MULTI"]).await, "+OK\r\n");
        assert_eq!(tx.text(&["SET", "{t}a", "1"]).await, "+QUEUED\r\n");
        assert_eq!(tx.text(&["SET", "{t}b", "1"]).await, "+QUEUED\r\n");
        let mut sub = connect().await;
        let sub_id = id_of(&mut sub).await;
        sub.send(b"*2\r\n$9\r\nSUBSCRIBE\r\n$2\r\nch\r\n").await;
        assert_eq!(sub.read_replies(1).await.len(), 1);
        let ids = [id_of(&mut me).await, id_of(&mut named).await, tx_id, sub_id];
        sides.push((me, named, tx, sub, ids, setinfo));
    }
    let [(mut p, p_named, p_tx, p_sub, p_ids, p_setinfo), (mut s, _s_named, _s_tx, _s_sub, s_ids, _)] =
        <[_; 2]>::try_from(sides).ok().expect("two sides");
    // The proxy keeps SETINFO (a 7.0 server does not know it).
    assert_eq!(p_setinfo, "+OK\r\n");

    // Every client, in the order they connected; the old proxy listed the caller only.
    let pl = list(&mut p, &[]).await;
    let sl = list(&mut s, &[]).await;
    let pl_ids: Vec<&str> = pl.iter().map(|l| field(l, "id")).collect();
    assert_eq!(pl_ids, p_ids.iter().map(String::as_str).collect::<Vec<_>>(), "{pl:#?}");
    let sl_ids: Vec<&str> = sl.iter().map(|l| field(l, "id")).collect();
    assert_eq!(sl_ids, s_ids.iter().map(String::as_str).collect::<Vec<_>>(), "{sl:#?}");
    assert_eq!(pl.iter().map(|l| masked(l)).collect::<Vec<_>>(), sl.iter().map(|l| masked(l)).collect::<Vec<_>>());
    // What the 7.0 server cannot show: lib-name kept from SETINFO.
    assert_eq!(field(&pl[1], "lib-name"), "mylib", "{}", pl[1]);
    assert_eq!(field(&pl[0], "lib-name"), "", "{}", pl[0]);
    // The addresses are the clients' own, the local one the proxy's listener.
    let p_addr = field(&bulk_text(&p.text(&["CLIENT", "INFO"]).await), "addr").to_string();
    assert_eq!(field(&pl[0], "addr"), p_addr);
    assert_eq!(field(&pl[0], "laddr"), proxy.to_string());

    // Filters.
    for args in [&["TYPE", "pubsub"][..], &["TYPE", "normal"], &["TYPE", "master"], &["type", "REPLICA"]] {
        let got: Vec<String> = list(&mut p, args).await.iter().map(|l| masked(l)).collect();
        let want: Vec<String> = list(&mut s, args).await.iter().map(|l| masked(l)).collect();
        assert_eq!(got, want, "CLIENT LIST {args:?}");
    }
    assert_eq!(list(&mut p, &["TYPE", "pubsub"]).await.len(), 1);
    // ID: in the order asked, unknown ids skipped.
    let got = list(&mut p, &["ID", &p_ids[3], "999999", &p_ids[1]]).await;
    assert_eq!(got.iter().map(|l| field(l, "id")).collect::<Vec<_>>(), [p_ids[3].as_str(), p_ids[1].as_str()]);
    let want = list(&mut s, &["ID", &s_ids[3], "999999", &s_ids[1]]).await;
    assert_eq!(got.iter().map(|l| masked(l)).collect::<Vec<_>>(), want.iter().map(|l| masked(l)).collect::<Vec<_>>());

    // CLIENT INFO: the caller's line, the same fields.
    let pi = bulk_text(&p.text(&["CLIENT", "INFO"]).await);
    let si = bulk_text(&s.text(&["CLIENT", "INFO"]).await);
    assert!(pi.ends_with('\n') && si.ends_with('\n'), "{pi:?} {si:?}");
    assert_eq!(masked(pi.trim_end()), masked(si.trim_end()));

    // Errors, word for word.
    let errors: &[&[&str]] = &[
        &["CLIENT", "LIST", "TYPE", "foo"],
        &["CLIENT", "LIST", "ID", "1", "abc"],
        &["CLIENT", "LIST", "ID"],
        &["CLIENT", "LIST", "foo"],
        &["CLIENT", "KILL"],
        &["CLIENT", "KILL", "1.2.3.4:5"],
        &["CLIENT", "KILL", "ID", "abc"],
        &["CLIENT", "KILL", "ID", "0"],
        &["CLIENT", "KILL", "TYPE", "foo"],
        &["CLIENT", "KILL", "USER", "nosuch"],
        &["CLIENT", "KILL", "SKIPME", "maybe"],
        &["CLIENT", "KILL", "foo", "bar"],
        &["CLIENT", "KILL", "ID", "1", "ADDR"],
        &["CLIENT", "KILL", "ID", "999999"],
        &["CLIENT", "KILL", "ADDR", "1.2.3.4:5", "SKIPME", "no"],
    ];
    for args in errors {
        assert_eq!(p.text(args).await, s.text(args).await, "{args:?}");
    }
    drop((p_named, p_tx, p_sub));
}

/// CLIENT KILL closes the clients it names (ID, ADDR old and new form, TYPE, USER, SKIPME),
/// counts them, and a client killed in a blocked pop leaves nothing blocked on the node: an
/// element pushed afterwards stays in the list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_closes_the_clients_it_names() {
    let env = start(small()).await;
    let addr = env.addr();
    let mut me = Raw::connect(addr).await;
    let my_id = id_of(&mut me).await;

    // By ID: the count, then the connection closes; the caller is skipped by default.
    let mut a = Raw::connect(addr).await;
    let a_id = id_of(&mut a).await;
    assert_eq!(me.text(&["CLIENT", "KILL", "ID", &a_id]).await, ":1\r\n");
    assert!(a.closed().await, "killed by ID");
    assert_eq!(me.text(&["CLIENT", "KILL", "ID", &my_id]).await, ":0\r\n");
    assert_eq!(me.text(&["CLIENT", "KILL", "ID", &a_id]).await, ":0\r\n", "gone from the table");

    // The old form, by address: +OK.
    let mut b = Raw::connect(addr).await;
    let b_addr = field(&bulk_text(&b.text(&["CLIENT", "INFO"]).await), "addr").to_string();
    assert_eq!(me.text(&["CLIENT", "KILL", &b_addr]).await, "+OK\r\n");
    assert!(b.closed().await, "killed by the old form");
    assert_eq!(me.text(&["CLIENT", "KILL", &b_addr]).await, "-ERR No such client\r\n");

    // TYPE pubsub: only the subscriber.
    let mut sub = Raw::connect(addr).await;
    sub.send(b"*2\r\n$9\r\nSUBSCRIBE\r\n$2\r\nch\r\n").await;
    assert_eq!(sub.read_replies(1).await.len(), 1);
    let mut plain = Raw::connect(addr).await;
    assert_eq!(plain.text(&["PUBSUB", "NUMSUB", "ch"]).await, "*2\r\n$2\r\nch\r\n:1\r\n");
    assert_eq!(me.text(&["CLIENT", "KILL", "TYPE", "pubsub"]).await, ":1\r\n");
    assert!(sub.closed().await, "subscriber killed by TYPE");
    // Its subscription is gone from the nodes, as when a subscriber disconnects.
    eventually_async("the killed subscriber's channel has no subscriber", || async move {
        Raw::connect(addr).await.text(&["PUBSUB", "NUMSUB", "ch"]).await == "*2\r\n$2\r\nch\r\n:0\r\n"
    })
    .await;
    assert_eq!(plain.text(&["PING"]).await, "+PONG\r\n", "a normal client stays");

    // A blocked pop: the client closes, and the node's pop goes with it.
    let mut blocked = Raw::connect(addr).await;
    let blocked_id = id_of(&mut blocked).await;
    blocked.send(b"*3\r\n$5\r\nBLPOP\r\n$5\r\nqueue\r\n$1\r\n0\r\n").await;
    list_until(&mut me, &["ID", &blocked_id], "the pop shows blocked", |l| {
        l.first().is_some_and(|l| field(l, "flags") == "b" && field(l, "cmd") == "blpop")
    })
    .await;
    assert_eq!(me.text(&["CLIENT", "KILL", "ID", &blocked_id]).await, ":1\r\n");
    assert!(blocked.closed().await, "killed while blocked");
    for port in env.cluster.masters() {
        eventually_async("no pop left blocked on the node", || async move { !blocked_on_node(port).await }).await;
    }
    assert_eq!(me.text(&["RPUSH", "queue", "x"]).await, ":1\r\n");
    assert_eq!(me.text(&["LLEN", "queue"]).await, ":1\r\n", "nothing popped it");

    // MAXAGE (Redis 7.4): only clients older than that; LADDR: the address they reached.
    assert_eq!(me.text(&["CLIENT", "KILL", "MAXAGE", "1000"]).await, ":0\r\n");
    assert_eq!(me.text(&["CLIENT", "KILL", "LADDR", "127.0.0.1:1"]).await, ":0\r\n");
    assert_eq!(me.text(&["CLIENT", "KILL", "MAXAGE", "x"]).await, "-ERR value is not an integer or out of range\r\n");
    // USER default, SKIPME yes: every other client; SKIPME no: the caller too, after its reply.
    let _c = Raw::connect(addr).await;
    list_until(&mut me, &[], "plain and c listed", |l| l.len() == 3).await;
    assert_eq!(me.text(&["CLIENT", "KILL", "USER", "default"]).await, ":2\r\n");
    assert!(plain.closed().await, "killed by USER");
    assert_eq!(me.text(&["CLIENT", "KILL", "ID", &my_id, "SKIPME", "no"]).await, ":1\r\n");
    assert!(me.closed().await, "the caller killed itself after its reply");
}

/// CLIENT NO-TOUCH is accepted and shown (flag `T`), as Redis 7.2 does; it was refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_touch_is_accepted() {
    let env = start(small()).await;
    let mut c = Raw::connect(env.addr()).await;
    assert_eq!(c.text(&["CLIENT", "NO-TOUCH", "ON"]).await, "+OK\r\n");
    assert_eq!(field(&bulk_text(&c.text(&["CLIENT", "INFO"]).await), "flags"), "T");
    assert_eq!(c.text(&["CLIENT", "NO-TOUCH", "maybe"]).await, "-ERR syntax error\r\n");
    assert_eq!(c.text(&["CLIENT", "NO-TOUCH", "OFF"]).await, "+OK\r\n");
    assert_eq!(field(&bulk_text(&c.text(&["CLIENT", "INFO"]).await), "flags"), "N");
}

/// CLIENT REPLY OFF / SKIP / ON, pipelined, against a plain server: the same bytes come back
/// (nothing for OFF and SKIP themselves, nothing for the commands they silence, `+OK` for ON),
/// also for a blocking command and a keyed one; it was refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_off_skip_on_as_one_server() {
    let mut env = start(small()).await;
    let plain_port = tokio::task::block_in_place(|| env.cluster.start_stranger(None)).expect("plain redis-server");
    let script: &[&[&str]] = &[
        &["CLIENT", "REPLY", "OFF"],
        &["SET", "rk", "1"],
        &["GET", "rk"],
        &["MGET", "rk", "other"],
        &["BLPOP", "nolist", "0.01"],
        &["CLIENT", "REPLY", "ON"],
        &["GET", "rk"],
        &["CLIENT", "REPLY", "SKIP"],
        &["INCR", "rk"],
        &["GET", "rk"],
        &["CLIENT", "REPLY", "maybe"],
        &["CLIENT", "REPLY"],
        &["ECHO", "end"],
    ];
    let mut bytes = Vec::new();
    for args in script {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        bytes.extend_from_slice(&clusterless::resp::encode_command(&args));
    }
    let want: Vec<&[u8]> = vec![
        b"+OK\r\n",
        b"$1\r\n1\r\n",
        b"$1\r\n2\r\n",
        b"-ERR syntax error\r\n",
        b"-ERR wrong number of arguments for 'client|reply' command\r\n",
        b"$3\r\nend\r\n",
    ];
    let mut p = Raw::connect(env.addr()).await;
    let mut s = raw(plain_port).await;
    for r in [&mut p, &mut s] {
        r.send(&bytes).await;
        let got = r.read_replies(want.len()).await;
        assert_eq!(got, want.iter().map(|w| w.to_vec()).collect::<Vec<_>>());
        // Nothing more: the silenced replies were dropped, not delayed.
        assert_eq!(r.text(&["PING"]).await, "+PONG\r\n");
    }
    // Inside MULTI the proxy refuses it at queue time (OFF would leave a hole in EXEC's array).
    assert_eq!(p.text(&["MULTI"]).await, "+OK\r\n");
    assert_eq!(
        p.text(&["CLIENT", "REPLY", "OFF"]).await,
        "-ERR 'CLIENT REPLY' is not available through clusterless inside MULTI: a transaction runs on a node's connection, and this command acts on the client's\r\n"
    );
    assert_eq!(p.text(&["EXEC"]).await, "-EXECABORT Transaction discarded because of previous errors.\r\n");
}

/// Nothing arrives on `r` for `ms` milliseconds (time let pass on purpose: a held command must
/// stay unanswered).
async fn silent_for(r: &mut Raw, ms: u64) -> bool {
    use tokio::io::AsyncReadExt;
    let mut b = [0u8; 64];
    tokio::time::timeout(std::time::Duration::from_millis(ms), r.stream.read(&mut b)).await.is_err()
}

/// CLIENT PAUSE WRITE holds the writes of every client (reads go on) until UNPAUSE; PAUSE ALL
/// holds everything, the caller's own commands too, until the time passes; the errors are a
/// plain server's. It was refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_commands_as_one_server() {
    let mut env = start(small()).await;
    let plain_port = tokio::task::block_in_place(|| env.cluster.start_stranger(None)).expect("plain redis-server");
    let mut a = Raw::connect(env.addr()).await;
    let mut b = Raw::connect(env.addr()).await;

    assert_eq!(a.text(&["CLIENT", "PAUSE", "20000", "WRITE"]).await, "+OK\r\n");
    assert_eq!(b.text(&["GET", "pk"]).await, "$-1\r\n", "a read goes on");
    b.send(b"*3\r\n$3\r\nSET\r\n$2\r\npk\r\n$1\r\nv\r\n").await;
    assert!(silent_for(&mut b, 300).await, "the write is held");
    assert_eq!(a.text(&["GET", "pk"]).await, "$-1\r\n", "nothing written yet");
    assert_eq!(a.text(&["CLIENT", "UNPAUSE"]).await, "+OK\r\n");
    assert_eq!(b.read_replies(1).await, [b"+OK\r\n".to_vec()], "the write runs once unpaused");
    assert_eq!(a.text(&["GET", "pk"]).await, "$1\r\nv\r\n");

    // ALL, 400 ms: a read waits too, also the caller's.
    assert_eq!(a.text(&["CLIENT", "PAUSE", "400", "ALL"]).await, "+OK\r\n");
    let t0 = std::time::Instant::now();
    b.send(b"*1\r\n$4\r\nPING\r\n").await;
    assert_eq!(a.text(&["PING"]).await, "+PONG\r\n");
    assert!(t0.elapsed() >= std::time::Duration::from_millis(350), "the caller was held: {:?}", t0.elapsed());
    assert_eq!(b.read_replies(1).await, [b"+PONG\r\n".to_vec()]);
    assert!(t0.elapsed() >= std::time::Duration::from_millis(350));

    let mut p = Raw::connect(env.addr()).await;
    let mut s = raw(plain_port).await;
    let errors: &[&[&str]] = &[
        &["CLIENT", "PAUSE", "abc"],
        &["CLIENT", "PAUSE", "-1"],
        &["CLIENT", "PAUSE", "10", "sometimes"],
        &["CLIENT", "PAUSE", "10", "WRITE", "x"],
        &["CLIENT", "Pause", "10", "WRITE", "x"],
        &["CLIENT", "PAUSE"],
        &["CLIENT", "UNPAUSE", "x"],
    ];
    for args in errors {
        assert_eq!(p.text(args).await, s.text(args).await, "{args:?}");
    }
}

/// CLIENT UNBLOCK of a client blocked in BLPOP through the proxy, TIMEOUT and ERROR, against a
/// plain server: the same replies to both clients, and the node's pop is gone (an element
/// pushed afterwards stays). It was refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unblock_as_one_server() {
    let mut env = start(small()).await;
    let plain_port = tokio::task::block_in_place(|| env.cluster.start_stranger(None)).expect("plain redis-server");
    let proxy = env.addr();
    let mut seen: Vec<Vec<String>> = Vec::new();
    for side in 0..2 {
        let connect = || side_conn(side, proxy, plain_port);
        let mut a = connect().await;
        let mut b = connect().await;
        let b_id = id_of(&mut b).await;
        let mut got = vec![a.text(&["CLIENT", "UNBLOCK", &b_id]).await];
        for mode in [None, Some("TIMEOUT"), Some("ERROR")] {
            b.send(b"*3\r\n$5\r\nBLPOP\r\n$4\r\nukey\r\n$1\r\n0\r\n").await;
            list_until(&mut a, &["ID", &b_id], "the pop shows blocked", |l| {
                l.first().is_some_and(|l| field(l, "flags") == "b")
            })
            .await;
            let mut cmd = vec!["CLIENT", "UNBLOCK", b_id.as_str()];
            cmd.extend(mode);
            got.push(a.text(&cmd).await);
            got.push(String::from_utf8_lossy(&b.read_replies(1).await.concat()).into_owned());
        }
        if side == 0 {
            for port in env.cluster.masters() {
                eventually_async("no pop left blocked on the node", || async move { !blocked_on_node(port).await })
                    .await;
            }
        }
        got.push(a.text(&["RPUSH", "ukey", "x"]).await);
        got.push(a.text(&["LLEN", "ukey"]).await);
        got.push(a.text(&["CLIENT", "UNBLOCK", "abc"]).await);
        got.push(a.text(&["CLIENT", "UNBLOCK", &b_id, "maybe"]).await);
        got.push(a.text(&["CLIENT", "UNBLOCK", "999999"]).await);
        seen.push(got);
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0][..5], [":0\r\n", ":1\r\n", "*-1\r\n", ":1\r\n", "*-1\r\n"], "{:?}", seen[0]);
    assert_eq!(seen[0][6], "-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n", "{:?}", seen[0]);
    assert_eq!(seen[0][8], ":1\r\n", "{:?}", seen[0]);
}

/// MONITOR against a plain server: the monitor gets `+OK`, then one line per command of another
/// client, in Redis's format (time with 6 decimals, `[0 <addr>]`, arguments quoted and escaped
/// as Redis quotes them, AUTH's hidden, admin commands not shown). It was refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_as_one_server() {
    let mut env = start(small()).await;
    let plain_port = tokio::task::block_in_place(|| env.cluster.start_stranger(None)).expect("plain redis-server");
    let proxy = env.addr();
    let mut seen = Vec::new();
    for side in 0..2 {
        let connect = || side_conn(side, proxy, plain_port);
        let mut m = connect().await;
        let mut c = connect().await;
        let c_addr = field(&bulk_text(&c.text(&["CLIENT", "INFO"]).await), "addr").to_string();
        let m_id = id_of(&mut m).await;
        assert_eq!(m.text(&["MONITOR"]).await, "+OK\r\n");
        // Listed with flag O, its last command MONITOR.
        let m_line = masked(&list(&mut c, &["ID", &m_id]).await[0]);
        let mut replies = vec![m_line];
        for args in [
            &["SET", "a b", "x\n\"y\x01\\"][..],
            &["get", "a b"],
            &["AUTH", "secret"],
            &["CONFIG", "GET", "maxmemory"],
            &["PING"],
        ] {
            replies.push(c.text(args).await);
        }
        let lines = m.read_replies(4).await;
        let mut shown = Vec::new();
        for l in lines {
            let l = String::from_utf8(l).unwrap();
            let (time, rest) = l.strip_prefix('+').unwrap().split_once(' ').unwrap();
            let (secs, micros) = time.split_once('.').unwrap();
            assert!(secs.len() >= 10 && secs.bytes().all(|b| b.is_ascii_digit()), "{l:?}");
            assert!(micros.len() == 6 && micros.bytes().all(|b| b.is_ascii_digit()), "{l:?}");
            let rest =
                rest.strip_prefix(&format!("[0 {c_addr}] ")).unwrap_or_else(|| panic!("{l:?} not from {c_addr}"));
            shown.push(rest.to_string());
        }
        // Nothing was left out between: the next command is the next line.
        assert_eq!(c.text(&["ECHO", "z"]).await, "$1\r\nz\r\n");
        let next = String::from_utf8(m.read_replies(1).await.concat()).unwrap();
        assert!(next.ends_with(&format!("[0 {c_addr}] \"ECHO\" \"z\"\r\n")), "{next:?}");
        seen.push((shown, replies));
    }
    assert_eq!(seen[0].0, seen[1].0);
    assert_eq!(seen[0].0[0], "\"SET\" \"a b\" \"x\\n\\\"y\\x01\\\\\"\r\n");
    assert_eq!(seen[0].1[..3], seen[1].1[..3]);
    assert!(seen[0].1[0].contains(" flags=O "), "{}", seen[0].1[0]);
}

/// A monitor that does not read is closed at the pubsub class's output limit (32 MB hard, the
/// shipped default), as Redis closes a slow client; the client it watched goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_monitor_is_closed_at_its_output_limit() {
    let env = start(small()).await;
    let mut m = Raw::connect(env.addr()).await;
    assert_eq!(m.text(&["MONITOR"]).await, "+OK\r\n");
    let mut c = Raw::connect(env.addr()).await;
    let value = "v".repeat(1 << 20);
    // 48 lines of 1 MB: more than the 32 MB limit plus what the sockets' buffers hold.
    for i in 0..48 {
        assert_eq!(c.text(&["SET", &format!("big:{i}"), &value]).await, "+OK\r\n");
    }
    assert!(m.closed().await, "the slow monitor was closed");
    assert_eq!(c.text(&["PING"]).await, "+PONG\r\n");
}

/// CLIENT LIST USER (Redis 8's filter): the clients logged in as that user, and Redis's error for
/// a user that does not exist. Two users from `[[auth.users]]`, the setting this is about.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_by_user() {
    let user = |n: &str| clusterless::config::User { name: n.into(), password: "pw".into(), backend: None };
    let env = common::start_with(small(), |cfg| cfg.auth.users = vec![user("app"), user("ops")]).await;
    let mut by = Vec::new();
    for name in ["app", "ops", "app"] {
        let mut r = Raw::connect(env.addr()).await;
        assert_eq!(r.text(&["AUTH", name, "pw"]).await, "+OK\r\n");
        let id = id_of(&mut r).await;
        by.push((name, id, r));
    }
    let ids: Vec<String> = by.iter().map(|(_, id, _)| id.clone()).collect();
    let app = list(&mut by[1].2, &["USER", "app"]).await;
    assert_eq!(app.iter().map(|l| field(l, "id")).collect::<Vec<_>>(), [ids[0].as_str(), ids[2].as_str()]);
    assert!(app.iter().all(|l| field(l, "user") == "app"), "{app:#?}");
    let r = &mut by[0].2;
    let ops = list(r, &["USER", "ops"]).await;
    assert_eq!(ops.iter().map(|l| field(l, "id")).collect::<Vec<_>>(), [ids[1].as_str()]);
    assert_eq!(r.text(&["CLIENT", "LIST", "USER", "nobody"]).await, "-ERR No such user 'nobody'\r\n");
}
