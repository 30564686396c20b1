//! The client-facing protocol: Redis's exact replies for local commands and errors, protocol
//! garbage closing only the offending connection while another client's loop goes on, AUTH, and
//! the client limit.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use redis::AsyncCommands;
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_commands_and_errors_match_redis() {
    let env = start(small()).await;
    let mut r = Raw::connect(env.addr()).await;
    let cases: &[(&[&[u8]], &[u8])] = &[
        (&[b"PING"], b"+PONG\r\n"),
        (&[b"ping", b"hi"], b"$2\r\nhi\r\n"),
        (&[b"ECHO", b"a\r\nb"], b"$4\r\na\r\nb\r\n"),
        (&[b"SELECT", b"0"], b"+OK\r\n"),
        (&[b"SELECT", b"1"], b"-ERR DB index is out of range\r\n"),
        (&[b"SELECT", b"x"], b"-ERR value is not an integer or out of range\r\n"),
        (&[b"foo", b"a"], b"-ERR unknown command 'foo', with args beginning with: 'a' \r\n"),
        (&[b"foo"], b"-ERR unknown command 'foo', with args beginning with: \r\n"),
        (&[b"FOO", b"a", b"b c"], b"-ERR unknown command 'FOO', with args beginning with: 'a' 'b c' \r\n"),
        (&[b"get"], b"-ERR wrong number of arguments for 'get' command\r\n"),
        (&[b"SET", b"a"], b"-ERR wrong number of arguments for 'set' command\r\n"),
        (&[b"config", b"get"], b"-ERR wrong number of arguments for 'config|get' command\r\n"),
        (&[b"object", b"encoding"], b"-ERR wrong number of arguments for 'object|encoding' command\r\n"),
        (&[b"CLUSTER", b"INFO"], b"-ERR This instance has cluster support disabled\r\n"),
        (&[b"cluster", b"slots"], b"-ERR This instance has cluster support disabled\r\n"),
        (&[b"READONLY"], b"-ERR This instance has cluster support disabled\r\n"),
        (&[b"CLIENT", b"GETNAME"], b"$-1\r\n"),
        (&[b"CLIENT", b"SETNAME", b"a b"], b"-ERR Client names cannot contain spaces, newlines or special characters.\r\n"),
        (&[b"CLIENT", b"SETNAME", b"app"], b"+OK\r\n"),
        (&[b"CLIENT", b"GETNAME"], b"$3\r\napp\r\n"),
        (&[b"CLIENT", b"SETINFO", b"lib-name", b"x"], b"+OK\r\n"),
        (&[b"CLIENT", b"fooo"], b"-ERR unknown subcommand 'fooo'. Try CLIENT HELP.\r\n"),
        (&[b"AUTH", b"x"], b"-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n"),
        (&[b"HELLO", b"4"], b"-NOPROTO unsupported protocol version\r\n"),
        (&[b"MSETNX", b"a", b"1", b"b", b"2"], b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"),
        (&[b"SCAN", b"abc"], b"-ERR invalid cursor\r\n"),
    ];
    for (cmd, want) in cases {
        let got = r.cmd(cmd).await;
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(want),
            "for {:?}",
            cmd.iter().map(|a| String::from_utf8_lossy(a)).collect::<Vec<_>>()
        );
    }
    // Commands that act on one node's connection get the proxy's refusal naming them (a node's
    // own error would read differently), and the connection stays usable.
    let refusals: &[(&[&[u8]], &[u8])] = &[
        (
            &[b"SHUTDOWN"],
            b"-ERR 'SHUTDOWN' is not available through clusterless: it acts on one server; run it on the cluster's nodes\r\n",
        ),
        (&[b"MOVE", b"k", b"1"], b"-ERR MOVE is not allowed in cluster mode\r\n"),
    ];
    for (cmd, want) in refusals {
        assert_eq!(String::from_utf8_lossy(&r.cmd(cmd).await), String::from_utf8_lossy(want));
        assert_eq!(r.cmd(&[b"PING"]).await, b"+PONG\r\n");
    }
    // Stateful commands run in order with the pipelined ones around them.
    r.send(b"SET {p}k 1\r\nMULTI\r\nINCR {p}k\r\nEXEC\r\nBLPOP {p}empty 0.1\r\nGET {p}k\r\n").await;
    let got = r.read_replies(6).await;
    assert_eq!(got[3], b"*1\r\n:2\r\n");
    assert_eq!(got[4], b"*-1\r\n");
    assert_eq!(got[5], b"$1\r\n2\r\n");
    assert_eq!(r.cmd(&[b"SET", b"k", b"v"]).await, b"+OK\r\n");
    // CLIENT ID: this connection's id, as CLIENT INFO shows it.
    let id = r.text(&["CLIENT", "ID"]).await;
    let id: u64 = id.strip_prefix(':').and_then(|i| i.strip_suffix("\r\n")).and_then(|i| i.parse().ok()).expect(&id);
    let info = r.text(&["CLIENT", "INFO"]).await;
    assert!(info.contains(&format!("\r\nid={id} ")), "CLIENT ID {id}, CLIENT INFO {info}");
    // Inline commands, as telnet users send them, and QUIT.
    r.send(b"PING\r\nset inl \"a b\"\r\nGET inl\n").await;
    assert_eq!(r.read_replies(3).await, vec![b"+PONG\r\n".to_vec(), b"+OK\r\n".to_vec(), b"$3\r\na b\r\n".to_vec()]);
    assert_eq!(r.cmd(&[b"QUIT"]).await, b"+OK\r\n");
    assert!(r.closed().await);

    let mut c = env.conn().await;
    let t: Vec<String> = redis::cmd("TIME").query_async(&mut c).await.unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert_eq!(t.len(), 2);
    assert!((t[0].parse::<i64>().unwrap() - now).abs() <= 5, "TIME {t:?}, now {now}");
    assert!(t[1].parse::<u32>().unwrap() < 1_000_000, "{t:?}");
    let n: usize = redis::cmd("COMMAND").arg("COUNT").query_async(&mut c).await.unwrap();
    let mut node = env.node(env.cluster.masters()[0]).await;
    let direct: usize = redis::cmd("COMMAND").arg("COUNT").query_async(&mut node).await.unwrap();
    assert_eq!(n, direct, "COMMAND COUNT is a master's");
    // HELLO 2: a standalone master speaking RESP2.
    let mut r = Raw::connect(env.addr()).await;
    let h = r.text(&["HELLO", "2"]).await;
    assert!(h.starts_with("*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n"), "{h}");
    for field in ["$5\r\nproto\r\n:2\r\n", "$4\r\nmode\r\n$10\r\nstandalone\r\n", "$4\r\nrole\r\n$6\r\nmaster\r\n"] {
        assert!(h.contains(field), "{field:?} in {h}");
    }
    assert!(h.ends_with("$7\r\nmodules\r\n*0\r\n"), "{h}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_closes_only_the_offending_connection() {
    let env = start(small()).await;
    let addr = env.addr();
    // A well-behaved client keeps a loop going the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let bg = {
        let (stop, done) = (stop.clone(), done.clone());
        let url = env.url();
        tokio::spawn(async move {
            let mut c = client_conn(&url).await;
            let mut i = 0u64;
            let until = std::time::Instant::now() + Duration::from_secs(180);
            while !stop.load(Ordering::Relaxed) && std::time::Instant::now() < until {
                let k = format!("loop:{}", i % 100);
                let _: () = c.set(&k, i).await.expect("loop SET must not fail");
                let v: u64 = c.get(&k).await.expect("loop GET must not fail");
                assert_eq!(v, i);
                i += 1;
                done.store(i, Ordering::Relaxed);
            }
            i
        })
    };

    let cases: &[(&[u8], &[u8])] = &[
        (b"*2\r\n$x\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*1\r\n$-5\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*x\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*1\r\n+PING\r\n", b"-ERR Protocol error: expected '$', got '+'\r\n"),
        (b"SET a \"unterminated\r\n", b"-ERR Protocol error: unbalanced quotes in request\r\n"),
    ];
    for (input, want) in cases {
        let mut r = Raw::connect(addr).await;
        r.send(input).await;
        let got = r.read_replies(1).await;
        assert_eq!(got, vec![want.to_vec()]);
        assert!(r.closed().await, "connection closed after protocol error");
    }
    // 10,000 nested arrays: refused at the first nested header, never recursed into.
    let mut r = Raw::connect(addr).await;
    r.send(&b"*1\r\n".repeat(10_000)).await;
    assert_eq!(r.read_replies(1).await, vec![b"-ERR Protocol error: expected '$', got '*'\r\n".to_vec()]);
    assert!(r.closed().await);
    // An inline line without end, over 64 KB.
    let mut r = Raw::connect(addr).await;
    let _ = r.stream.write_all(&vec![b'a'; 70_000]).await;
    assert_eq!(r.read_replies(1).await, vec![b"-ERR Protocol error: too big inline request\r\n".to_vec()]);
    assert!(r.closed().await);
    // A 1,000,000-argument request arriving in small reads is served (EXISTS over 999,999 keys).
    let mut r = Raw::connect(addr).await;
    let mut req = b"*1000000\r\n$6\r\nEXISTS\r\n".to_vec();
    for i in 0..999_999 {
        let k = format!("x{}", i % 1000);
        req.extend_from_slice(format!("${}\r\n{}\r\n", k.len(), k).as_bytes());
    }
    let started = std::time::Instant::now();
    for chunk in req.chunks(1400) {
        r.send(chunk).await;
    }
    let got = r.read_replies(1).await;
    assert_eq!(got, vec![b":0\r\n".to_vec()]);
    assert!(started.elapsed() < Duration::from_secs(60));

    let before = done.load(Ordering::Relaxed);
    eventually("the other client goes on after the garbage", || done.load(Ordering::Relaxed) > before + 10).await;
    stop.store(true, Ordering::Relaxed);
    let total = bg.await.expect("the other client's loop never saw an error");
    assert!(total > before && before > 0, "the other client kept going ({before} -> {total})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_and_client_limit() {
    let env = start_with(small(), |c| {
        c.auth.requirepass = Some("s3cret".into());
        c.limits.max_clients = 3;
    })
    .await;
    let mut r = Raw::connect(env.addr()).await;
    assert_eq!(r.cmd(&[b"GET", b"a"]).await, b"-NOAUTH Authentication required.\r\n");
    assert_eq!(r.cmd(&[b"AUTH", b"nope"]).await, b"-WRONGPASS invalid username-password pair or user is disabled.\r\n");
    assert_eq!(r.cmd(&[b"AUTH", b"s3cret"]).await, b"+OK\r\n");
    assert_eq!(r.cmd(&[b"SET", b"a", b"1"]).await, b"+OK\r\n");
    let mut r2 = Raw::connect(env.addr()).await;
    let h = r2.cmd(&[b"HELLO", b"2", b"AUTH", b"default", b"s3cret"]).await;
    assert!(h.starts_with(b"*14\r\n"), "{}", String::from_utf8_lossy(&h));
    assert_eq!(r2.cmd(&[b"GET", b"a"]).await, b"$1\r\n1\r\n");
    let mut r3 = Raw::connect(env.addr()).await;
    // Answered (NOAUTH, not the limit's error): the third client was accepted and counts.
    assert_eq!(r3.cmd(&[b"PING"]).await, b"-NOAUTH Authentication required.\r\n");
    let mut r4 = Raw::connect(env.addr()).await;
    assert_eq!(r4.read_replies(1).await, vec![b"-ERR max number of clients reached\r\n".to_vec()]);
    assert!(r4.closed().await);
    drop(r);
    // Once the proxy has seen the first client leave, a new one is served again.
    let addr = env.addr();
    eventually_async("a freed slot is reusable", || async move {
        let mut r5 = Raw::connect(addr).await;
        let got = r5.cmd(&[b"AUTH", b"s3cret"]).await;
        if got == b"-ERR max number of clients reached\r\n" {
            return false;
        }
        assert_eq!(got, b"+OK\r\n");
        // And the limit still holds with the new client in the freed slot.
        let mut r6 = Raw::connect(addr).await;
        assert_eq!(r6.read_replies(1).await, vec![b"-ERR max number of clients reached\r\n".to_vec()]);
        true
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_protected_cluster() {
    let spec = clusterless::localcluster::ClusterSpec { password: Some("nodepass".into()), ..small() };
    let env = start(spec).await;
    let mut c = env.conn().await;
    let _: () = c.set("pk", "v").await.unwrap();
    let v: String = c.get("pk").await.unwrap();
    assert_eq!(v, "v");
    let pairs: Vec<(String, i32)> = (0..50).map(|i| (format!("pk{i}"), i)).collect();
    let _: () = c.mset(&pairs).await.unwrap();
    let n: i64 = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap();
    assert_eq!(n, 51);
}
