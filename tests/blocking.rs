//! Blocking commands through the proxy (README row "Blocking"), against real clusters with the
//! shipped defaults unless a test is about a setting: each single-slot blocking command blocks on
//! its master, wakes for another client's write, honours its timeout and frees its node connection
//! when its client leaves; the ones that cannot be split refuse several slots; the pops that can be
//! split keep one server's semantics (first non-empty key wins, any key wakes them, nothing lost or
//! delivered twice, a cancelled pop's element back at the head of its list); and
//! `backend.dedicated_per_node` bounds the exclusive connections per node.
//!
//! Whether a command is blocked is read from the node itself (`CLIENT LIST`, flag `b`), never
//! guessed from elapsed time.

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use clusterless::resp::encode_command;
use common::*;

const CROSSSLOT: &str = "-CROSSSLOT Keys in request don't hash to the same slot\r\n";

fn bulk(s: &str) -> String {
    format!("${}\r\n{s}\r\n", s.len())
}

fn arr(items: &[String]) -> String {
    format!("*{}\r\n{}", items.len(), items.concat())
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn slot_of(k: &str) -> u16 {
    clusterless::slot::slot(k.as_bytes())
}

/// Direct connections to every master, for what the nodes themselves say.
struct Nodes(Vec<(u16, redis::aio::MultiplexedConnection)>);

impl Nodes {
    async fn of(env: &Env) -> Nodes {
        let mut v = Vec::new();
        for m in env.cluster.masters() {
            v.push((m, env.node(m).await));
        }
        Nodes(v)
    }

    fn conn(&self, port: u16) -> redis::aio::MultiplexedConnection {
        self.0.iter().find(|(p, _)| *p == port).map(|(_, c)| c.clone()).expect("a master")
    }

    /// Clients of node `port` blocked in `cmd` right now (CLIENT LIST: `cmd=<cmd>`, `b` in flags).
    async fn blocked(&self, port: u16, cmd: &str) -> usize {
        let list: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut self.conn(port)).await.unwrap();
        common::nodes::blocked_in(&list, cmd)
    }

    async fn blocked_anywhere(&self, cmd: &str) -> usize {
        let mut n = 0;
        for (p, _) in &self.0 {
            n += self.blocked(*p, cmd).await;
        }
        n
    }

    /// Clients of node `port` that speak RESP3 (CLIENT LIST: `resp=3`).
    async fn resp3_clients(&self, port: u16) -> usize {
        let list: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut self.conn(port)).await.unwrap();
        list.lines().filter(|l| l.split(' ').any(|f| f == "resp=3")).count()
    }

    /// How many times node `port` ran `cmd` (INFO commandstats).
    async fn calls(&self, port: u16, cmd: &str) -> u64 {
        let info: String = redis::cmd("INFO").arg("commandstats").query_async(&mut self.conn(port)).await.unwrap();
        let prefix = format!("cmdstat_{cmd}:calls=");
        info.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|rest| rest.split(',').next())
            .map(|n| n.parse().unwrap())
            .unwrap_or(0)
    }
}

/// One command on a fresh raw connection to `addr`, its reply as text.
async fn once(addr: std::net::SocketAddr, args: &[&str]) -> String {
    Raw::connect(addr).await.text(args).await
}

fn node_addr(port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], port))
}

/// One single-slot blocking command, checked as a client of one server would see it.
struct Single<'a> {
    /// Its name in the node's CLIENT LIST.
    name: &'a str,
    /// The command with this timeout.
    cmd: &'a dyn Fn(&str) -> Vec<String>,
    /// A short timeout as the command writes it, and as a duration.
    short: (&'a str, Duration),
    /// Run first, and again after the keys are deleted (a stream's consumer group).
    setup: &'a [&'a [&'a str]],
    /// Another client's write that serves the blocked command, and what the command then answers.
    wake: &'a [&'a str],
    delivered: String,
    /// Reads with their replies right after that: what the command left (or moved).
    woken: Vec<(Vec<&'a str>, String)>,
    /// After a client left mid-block: a write, then reads with their replies showing that no
    /// leftover pop took anything.
    untouched: &'a [&'a str],
    reads: Vec<(Vec<&'a str>, String)>,
}

/// Deletes `keys`, then runs `setup` (each must answer +OK).
async fn reset(c: &mut Raw, keys: &[&str], setup: &[&[&str]]) {
    let mut del = vec!["DEL"];
    del.extend_from_slice(keys);
    assert!(c.text(&del).await.starts_with(':'));
    for s in setup {
        assert_eq!(c.text(s).await, "+OK\r\n", "{s:?}");
    }
}

async fn check_single(env: &Env, nodes: &Nodes, owner: u16, keys: &[&str], c: &Single<'_>) {
    let mut other = Raw::connect(env.addr()).await;
    reset(&mut other, keys, c.setup).await;

    // The timeout: the node's own nil, not before the timeout ran out.
    let short = (c.cmd)(c.short.0);
    let t = Instant::now();
    let got = once(env.addr(), &strs(&short)).await;
    let took = t.elapsed();
    let own = once(node_addr(owner), &strs(&short)).await;
    assert_eq!(got, own, "{}: the timeout's reply is the node's own", c.name);
    assert!(own.starts_with("*-1") || own.starts_with("$-1"), "{}: {own:?}", c.name);
    assert!(took >= c.short.1 && took < c.short.1 + Duration::from_secs(3), "{}: nil after {took:?}", c.name);

    // Blocked on the key's master until another client's write serves it.
    let forever = (c.cmd)("0");
    let mut blocked = Raw::connect(env.addr()).await;
    blocked.send(&encode_command(&strs(&forever))).await;
    eventually_async(&format!("{} blocks on the key's master", c.name), || async move {
        nodes.blocked(owner, c.name).await == 1
    })
    .await;
    assert!(!other.text(c.wake).await.starts_with('-'), "{:?}", c.wake);
    assert_eq!(String::from_utf8_lossy(&blocked.read_replies(1).await[0]), c.delivered, "{}", c.name);
    assert_eq!(nodes.blocked(owner, c.name).await, 0, "{}: served, not blocked any more", c.name);
    for (read, want) in &c.woken {
        assert_eq!(&other.text(read).await, want, "{}: {read:?} after it was served", c.name);
    }
    reset(&mut other, keys, c.setup).await;

    // A client that leaves mid-block: the node connection it blocked on is closed, so nothing
    // pops on its behalf afterwards.
    let mut leaving = Raw::connect(env.addr()).await;
    leaving.send(&encode_command(&strs(&forever))).await;
    eventually_async(&format!("{} blocks again", c.name), || async move { nodes.blocked(owner, c.name).await == 1 })
        .await;
    drop(leaving);
    eventually_async(&format!("{}: the departed client's node connection is closed", c.name), || async move {
        nodes.blocked(owner, c.name).await == 0
    })
    .await;
    if !c.untouched.is_empty() {
        assert!(!other.text(c.untouched).await.starts_with('-'));
        for (read, want) in &c.reads {
            assert_eq!(&other.text(read).await, want, "{}: {read:?} after the client left", c.name);
        }
    }
    blocked.send(b"PING\r\n").await;
    assert_eq!(blocked.read_replies(1).await[0], b"+PONG\r\n", "{}: the served client goes on", c.name);
}

/// BLMPOP, BZMPOP, BRPOPLPUSH, BLMOVE, XREAD BLOCK and XREADGROUP BLOCK over one slot: each blocks
/// on the slot's master, gets the element another client writes, answers the node's own nil no
/// sooner than its timeout, and a client that leaves mid-block frees its node connection. The ones
/// that cannot be split answer -CROSSSLOT over several slots, at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_slot_blocking_commands_block_wake_time_out_and_free_their_connection() {
    let env = start(small()).await;
    let nodes = Nodes::of(&env).await;
    let owner = env.cluster.slot_owner(slot_of("{s}")).unwrap();
    let keys = ["{s}l", "{s}d", "{s}z", "{s}x", "{s}g"];
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<String>>();
    let lrange = |k: &'static str, want: &[&str]| {
        (vec!["LRANGE", k, "0", "-1"], arr(&want.iter().map(|w| bulk(w)).collect::<Vec<_>>()))
    };
    let entry = |id: &str| arr(&[bulk(id), arr(&[bulk("f"), bulk("v")])]);
    let cases = [
        Single {
            name: "blmpop",
            cmd: &|t| s(&["BLMPOP", t, "1", "{s}l", "LEFT", "COUNT", "2"]),
            short: ("0.3", Duration::from_millis(300)),
            setup: &[],
            wake: &["RPUSH", "{s}l", "a", "b", "c"],
            delivered: arr(&[bulk("{s}l"), arr(&[bulk("a"), bulk("b")])]),
            woken: vec![lrange("{s}l", &["c"])],
            untouched: &["RPUSH", "{s}l", "ghost"],
            reads: vec![lrange("{s}l", &["ghost"])],
        },
        Single {
            name: "bzmpop",
            cmd: &|t| s(&["BZMPOP", t, "1", "{s}z", "MIN"]),
            short: ("0.3", Duration::from_millis(300)),
            setup: &[],
            wake: &["ZADD", "{s}z", "1.5", "m"],
            delivered: arr(&[bulk("{s}z"), arr(&[arr(&[bulk("m"), bulk("1.5")])])]),
            woken: vec![(vec!["EXISTS", "{s}z"], ":0\r\n".into())],
            untouched: &["ZADD", "{s}z", "2", "ghost"],
            reads: vec![(vec!["ZRANGE", "{s}z", "0", "-1", "WITHSCORES"], arr(&[bulk("ghost"), bulk("2")]))],
        },
        Single {
            name: "brpoplpush",
            cmd: &|t| s(&["BRPOPLPUSH", "{s}l", "{s}d", t]),
            short: ("0.3", Duration::from_millis(300)),
            setup: &[],
            wake: &["RPUSH", "{s}l", "a"],
            delivered: bulk("a"),
            woken: vec![lrange("{s}l", &[]), lrange("{s}d", &["a"])],
            untouched: &["RPUSH", "{s}l", "ghost"],
            reads: vec![lrange("{s}l", &["ghost"]), lrange("{s}d", &[])],
        },
        Single {
            name: "blmove",
            cmd: &|t| s(&["BLMOVE", "{s}l", "{s}d", "LEFT", "RIGHT", t]),
            short: ("0.3", Duration::from_millis(300)),
            setup: &[],
            wake: &["RPUSH", "{s}l", "a", "b"],
            delivered: bulk("a"),
            woken: vec![lrange("{s}l", &["b"]), lrange("{s}d", &["a"])],
            untouched: &["RPUSH", "{s}l", "ghost"],
            reads: vec![lrange("{s}l", &["ghost"]), lrange("{s}d", &[])],
        },
        Single {
            name: "xread",
            cmd: &|t| s(&["XREAD", "BLOCK", t, "STREAMS", "{s}x", "$"]),
            short: ("300", Duration::from_millis(300)),
            setup: &[],
            wake: &["XADD", "{s}x", "5-1", "f", "v"],
            delivered: arr(&[arr(&[bulk("{s}x"), arr(&[entry("5-1")])])]),
            woken: vec![],
            // XREAD takes nothing away: there is nothing a leftover read could have consumed.
            untouched: &[],
            reads: vec![],
        },
        Single {
            name: "xreadgroup",
            cmd: &|t| s(&["XREADGROUP", "GROUP", "grp", "c1", "BLOCK", t, "STREAMS", "{s}g", ">"]),
            short: ("300", Duration::from_millis(300)),
            setup: &[&["XGROUP", "CREATE", "{s}g", "grp", "$", "MKSTREAM"]],
            wake: &["XADD", "{s}g", "7-1", "f", "v"],
            delivered: arr(&[arr(&[bulk("{s}g"), arr(&[entry("7-1")])])]),
            // Pending for the consumer that read it.
            woken: vec![(
                vec!["XPENDING", "{s}g", "grp"],
                arr(&[":1\r\n".into(), bulk("7-1"), bulk("7-1"), arr(&[arr(&[bulk("c1"), bulk("1")])])]),
            )],
            // Delivered to nobody: not pending for any consumer, and a new reader gets it.
            untouched: &["XADD", "{s}g", "9-1", "f", "v"],
            reads: vec![
                (vec!["XPENDING", "{s}g", "grp"], "*4\r\n:0\r\n$-1\r\n$-1\r\n*-1\r\n".to_string()),
                (
                    vec!["XREADGROUP", "GROUP", "grp", "c2", "STREAMS", "{s}g", ">"],
                    arr(&[arr(&[bulk("{s}g"), arr(&[entry("9-1")])])]),
                ),
            ],
        },
    ];
    for c in &cases {
        check_single(&env, &nodes, owner, &keys, c).await;
    }

    // Requests pipelined behind a blocked pop wait their turn and do not cut it short.
    let mut raw = Raw::connect(env.addr()).await;
    let t = Instant::now();
    raw.send(b"BLPOP {p}q 1\r\nPING\r\n").await;
    assert_eq!(raw.read_replies(2).await, vec![b"*-1\r\n".to_vec(), b"+PONG\r\n".to_vec()]);
    assert!(t.elapsed() >= Duration::from_secs(1), "{:?}", t.elapsed());

    // Over several slots these cannot be split: refused at once, as Redis Cluster does.
    let (a, b) = ("a{1}", "b{2}");
    assert_ne!(slot_of(a), slot_of(b));
    for cmd in [
        vec!["BLMOVE", a, b, "LEFT", "LEFT", "5"],
        vec!["BRPOPLPUSH", a, b, "5"],
        vec!["XREAD", "BLOCK", "5000", "STREAMS", a, b, "$", "$"],
        vec!["XREADGROUP", "GROUP", "g", "c", "BLOCK", "5000", "STREAMS", a, b, ">", ">"],
    ] {
        let t = Instant::now();
        assert_eq!(raw.text(&cmd).await, CROSSSLOT, "{cmd:?}");
        assert!(t.elapsed() < Duration::from_secs(2), "{cmd:?} refused without blocking: {:?}", t.elapsed());
    }
}

/// Four keys in four slots on three masters (two on the first).
fn four_slots(env: &Env) -> Vec<String> {
    let m = env.cluster.masters();
    let k = |port: u16, i: usize, tag: &str| key_in_slot(env.cluster.slots_of(port)[i], tag);
    vec![k(m[0], 0, "k0-"), k(m[1], 0, "k1-"), k(m[2], 0, "k2-"), k(m[0], 1, "k3-")]
}

/// The splittable pops: how to write one over `keys` with a timeout, how to fill a key with two
/// elements (`x1` before `x2`, scores 1 and 2), and what the pop answers for such a key.
#[derive(Clone, Copy)]
enum Kind {
    Blpop,
    Brpop,
    Bzpopmin,
    Bzpopmax,
    /// BLMPOP ... LEFT COUNT 5
    Blmpop,
    /// BZMPOP ... MAX COUNT 5
    Bzmpop,
}

impl Kind {
    const ALL: [Kind; 6] = [Kind::Blpop, Kind::Brpop, Kind::Bzpopmin, Kind::Bzpopmax, Kind::Blmpop, Kind::Bzmpop];

    fn name(self) -> &'static str {
        match self {
            Kind::Blpop => "blpop",
            Kind::Brpop => "brpop",
            Kind::Bzpopmin => "bzpopmin",
            Kind::Bzpopmax => "bzpopmax",
            Kind::Blmpop => "blmpop",
            Kind::Bzmpop => "bzmpop",
        }
    }

    fn zset(self) -> bool {
        matches!(self, Kind::Bzpopmin | Kind::Bzpopmax | Kind::Bzmpop)
    }

    fn cmd(self, keys: &[String], t: &str) -> Vec<String> {
        let mut v: Vec<String> = vec![self.name().to_uppercase()];
        let n = keys.len().to_string();
        match self {
            Kind::Blmpop | Kind::Bzmpop => {
                v.extend([t.to_string(), n]);
                v.extend(keys.iter().cloned());
                v.extend([if self.zset() { "MAX" } else { "LEFT" }.to_string(), "COUNT".into(), "5".into()]);
            }
            _ => {
                v.extend(keys.iter().cloned());
                v.push(t.to_string());
            }
        }
        v
    }

    /// Writes `<p>1` and `<p>2` to `key` (scores 1 and 2), as one command.
    fn fill(self, key: &str, p: &str) -> Vec<String> {
        if self.zset() {
            vec!["ZADD".into(), key.into(), "1".into(), format!("{p}1"), "2".into(), format!("{p}2")]
        } else {
            vec!["RPUSH".into(), key.into(), format!("{p}1"), format!("{p}2")]
        }
    }

    /// The pop's reply for a key filled by [`Kind::fill`].
    fn reply(self, key: &str, p: &str) -> String {
        let (one, two) = (format!("{p}1"), format!("{p}2"));
        match self {
            Kind::Blpop => arr(&[bulk(key), bulk(&one)]),
            Kind::Brpop => arr(&[bulk(key), bulk(&two)]),
            Kind::Bzpopmin => arr(&[bulk(key), bulk(&one), bulk("1")]),
            Kind::Bzpopmax => arr(&[bulk(key), bulk(&two), bulk("2")]),
            Kind::Blmpop => arr(&[bulk(key), arr(&[bulk(&one), bulk(&two)])]),
            Kind::Bzmpop => arr(&[bulk(key), arr(&[arr(&[bulk(&two), bulk("2")]), arr(&[bulk(&one), bulk("1")])])]),
        }
    }

    /// What a filled key holds after the pop took its part.
    fn rest(self, key: &str, p: &str) -> (Vec<String>, String) {
        if self.zset() {
            let left = match self {
                Kind::Bzpopmin => arr(&[bulk(&format!("{p}2")), bulk("2")]),
                Kind::Bzpopmax => arr(&[bulk(&format!("{p}1")), bulk("1")]),
                _ => arr(&[]),
            };
            (strs_owned(&["ZRANGE", key, "0", "-1", "WITHSCORES"]), left)
        } else {
            let left = match self {
                Kind::Blpop => arr(&[bulk(&format!("{p}2"))]),
                Kind::Brpop => arr(&[bulk(&format!("{p}1"))]),
                _ => arr(&[]),
            };
            (strs_owned(&["LRANGE", key, "0", "-1"]), left)
        }
    }

    /// What a filled key holds when nothing was taken from it.
    fn full(self, key: &str, p: &str) -> (Vec<String>, String) {
        let (one, two) = (format!("{p}1"), format!("{p}2"));
        if self.zset() {
            (
                strs_owned(&["ZRANGE", key, "0", "-1", "WITHSCORES"]),
                arr(&[bulk(&one), bulk("1"), bulk(&two), bulk("2")]),
            )
        } else {
            (strs_owned(&["LRANGE", key, "0", "-1"]), arr(&[bulk(&one), bulk(&two)]))
        }
    }
}

fn strs_owned(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// BLPOP, BRPOP, BZPOPMIN, BZPOPMAX, BLMPOP and BZMPOP over keys in four slots on three masters:
/// the first non-empty key in argument order wins when several have elements; with all empty,
/// the pop blocks on every slot at once and an element written to any key is delivered, the other
/// pops cancelled before the reply (no node still has it blocked) and nothing taken elsewhere; and
/// with nothing written, the node's own nil after the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_slot_pops_keep_one_servers_order_wake_and_timeout() {
    let env = start(small()).await;
    let nodes = Nodes::of(&env).await;
    let keys = four_slots(&env);
    let slots: HashSet<u16> = keys.iter().map(|k| slot_of(k)).collect();
    assert_eq!(slots.len(), 4);
    let mut c = Raw::connect(env.addr()).await;
    let mut del = vec!["DEL"];
    del.extend(strs(&keys));
    for kind in Kind::ALL {
        // Several non-empty: the first in argument order wins, even with lower scores elsewhere.
        assert!(c.text(&del).await.starts_with(':'));
        assert!(!c.text(&strs(&kind.fill(&keys[2], "x"))).await.starts_with('-'));
        assert!(!c.text(&strs(&kind.fill(&keys[3], "y"))).await.starts_with('-'));
        let got = c.text(&strs(&kind.cmd(&keys, "1"))).await;
        assert_eq!(got, kind.reply(&keys[2], "x"), "{}: first non-empty key wins", kind.name());
        let (read, want) = kind.full(&keys[3], "y");
        assert_eq!(c.text(&strs(&read)).await, want, "{}: the later key is untouched", kind.name());
        let (read, want) = kind.rest(&keys[2], "x");
        assert_eq!(c.text(&strs(&read)).await, want, "{}", kind.name());

        // All empty: one blocking pop per slot; a write to any one key is delivered.
        assert!(c.text(&del).await.starts_with(':'));
        let mut popper = Raw::connect(env.addr()).await;
        popper.send(&encode_command(&strs(&kind.cmd(&keys, "0")))).await;
        let nodes = &nodes;
        eventually_async(&format!("{} blocks on each of the four slots", kind.name()), || async move {
            nodes.blocked_anywhere(kind.name()).await == 4
        })
        .await;
        assert!(!c.text(&strs(&kind.fill(&keys[1], "w"))).await.starts_with('-'));
        let got = String::from_utf8_lossy(&popper.read_replies(1).await[0]).into_owned();
        assert_eq!(got, kind.reply(&keys[1], "w"), "{}: woken by a write to the second key", kind.name());
        assert_eq!(nodes.blocked_anywhere(kind.name()).await, 0, "{}: the other pops were cancelled", kind.name());
        let (read, want) = kind.rest(&keys[1], "w");
        assert_eq!(c.text(&strs(&read)).await, want, "{}", kind.name());
        let exists = ["EXISTS", keys[0].as_str(), keys[2].as_str(), keys[3].as_str()];
        assert_eq!(c.text(&exists).await, ":0\r\n", "{}: nothing appeared on the other keys", kind.name());

        // A client that leaves while blocked on every slot: all four node connections are closed,
        // so nothing is popped on its behalf afterwards.
        assert!(c.text(&del).await.starts_with(':'));
        let mut leaving = Raw::connect(env.addr()).await;
        leaving.send(&encode_command(&strs(&kind.cmd(&keys, "0")))).await;
        eventually_async(&format!("{} blocks on the four slots again", kind.name()), || async move {
            nodes.blocked_anywhere(kind.name()).await == 4
        })
        .await;
        drop(leaving);
        eventually_async(&format!("{}: the departed client's pops are gone", kind.name()), || async move {
            nodes.blocked_anywhere(kind.name()).await == 0
        })
        .await;
        assert!(!c.text(&strs(&kind.fill(&keys[2], "g"))).await.starts_with('-'));
        let (read, want) = kind.full(&keys[2], "g");
        assert_eq!(c.text(&strs(&read)).await, want, "{}: nothing taken after the client left", kind.name());

        // Nothing written: the node's own nil, not before the timeout.
        assert!(c.text(&del).await.starts_with(':'));
        let t = Instant::now();
        let got = c.text(&strs(&kind.cmd(&keys, "0.3"))).await;
        let took = t.elapsed();
        let own = once(node_addr(env.cluster.masters()[0]), &strs(&kind.cmd(&keys[..1], "0.3"))).await;
        assert_eq!(got, own, "{}: nil as the node says it", kind.name());
        assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(3), "{}: {took:?}", kind.name());
    }
}

/// Writes `a` to node `pa` and `b` to node `pb` at the same instant (two threads released by one
/// barrier, each on its own connection straight to its node) and waits for both replies.
fn write_both_at_once(pa: u16, a: Vec<u8>, pb: u16, b: Vec<u8>) {
    let barrier = Arc::new(Barrier::new(2));
    let threads: Vec<_> = [(pa, a), (pb, b)]
        .into_iter()
        .map(|(port, bytes)| {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to node");
            s.set_read_timeout(Some(PATIENCE)).unwrap();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                s.write_all(&bytes).unwrap();
                let mut buf = [0u8; 64];
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0 && buf[0] == b':', "{:?}", String::from_utf8_lossy(&buf[..n]));
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// The race the README's push-back is for: a pop blocked on two slots of two masters, and both
/// keys written at the same instant straight on their nodes, so that both per-slot pops may take
/// an element before the proxy cancels the loser. Exactly one element is delivered; the loser's
/// key holds all it was given, in order, its first element first in line again (and a sorted
/// set's element back with its score). The nodes' own command counts show a push-back happened
/// (the test itself writes with RPUSH and one ZADD per key): rounds repeat until three did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_slot_pop_pushes_back_what_a_cancelled_pop_took() {
    let env = start(small()).await;
    let nodes = Nodes::of(&env).await;
    let m = env.cluster.masters();
    let (pa, pb) = (m[0], m[1]);
    let ka = key_in_slot(env.cluster.slots_of(pa)[5], "race-a-");
    let kb = key_in_slot(env.cluster.slots_of(pb)[5], "race-b-");
    let keys = vec![ka.clone(), kb.clone()];
    let mut c = Raw::connect(env.addr()).await;
    for kind in Kind::ALL {
        // The command a push-back uses, and how many of them the test itself sends per key.
        let (back, own) = match kind {
            Kind::Blpop | Kind::Blmpop => ("lpush", 0),
            Kind::Brpop => ("rpush", 1),
            _ => ("zadd", 1),
        };
        let mut pushed_back = 0;
        let mut rounds = 0;
        while pushed_back < 3 {
            rounds += 1;
            assert!(
                rounds <= 40,
                "{}: in {rounds} rounds only {pushed_back} cancelled pops took an element",
                kind.name()
            );
            assert!(c.text(&["DEL", &ka, &kb]).await.starts_with(':'));
            let before = (nodes.calls(pa, back).await, nodes.calls(pb, back).await);
            let mut popper = Raw::connect(env.addr()).await;
            popper.send(&encode_command(&strs(&kind.cmd(&keys, "0")))).await;
            let nodes = &nodes;
            eventually_async("the pop blocks on both nodes", || async move {
                nodes.blocked(pa, kind.name()).await == 1 && nodes.blocked(pb, kind.name()).await == 1
            })
            .await;
            let (fa, fb) =
                (encode_command(&kind.fill(&ka, "a")).to_vec(), encode_command(&kind.fill(&kb, "b")).to_vec());
            tokio::task::block_in_place(|| write_both_at_once(pa, fa, pb, fb));
            let got = String::from_utf8_lossy(&popper.read_replies(1).await[0]).into_owned();
            let (won, lost, lost_port) = if got == kind.reply(&ka, "a") {
                ((&ka, "a"), (&kb, "b"), pb)
            } else {
                assert_eq!(got, kind.reply(&kb, "b"), "{}: one element from either key", kind.name());
                ((&kb, "b"), (&ka, "a"), pa)
            };
            let (read, want) = kind.rest(won.0, won.1);
            assert_eq!(c.text(&strs(&read)).await, want, "{}: the winner's key", kind.name());
            let (read, want) = kind.full(lost.0, lost.1);
            assert_eq!(c.text(&strs(&read)).await, want, "{}: the loser's key has everything, in order", kind.name());
            // (A sorted set's full contents above include the scores.)
            if !kind.zset() {
                let (end, first) = match kind {
                    Kind::Brpop => ("-1", format!("{}2", lost.1)),
                    _ => ("0", format!("{}1", lost.1)),
                };
                assert_eq!(
                    c.text(&["LINDEX", lost.0, end]).await,
                    bulk(&first),
                    "{}: first in line again",
                    kind.name()
                );
            }
            assert_eq!(nodes.blocked_anywhere(kind.name()).await, 0);
            let after = if lost_port == pa {
                nodes.calls(pa, back).await - before.0
            } else {
                nodes.calls(pb, back).await - before.1
            };
            pushed_back += after - own;
        }
        eprintln!("{}: {pushed_back} push-backs in {rounds} rounds", kind.name());
    }
}

/// Celery's shape: a queue and its priority sub-queues, each in its own slot.
fn queues() -> Vec<String> {
    let q = vec!["celery".to_string(), "celery\x06\x163".into(), "celery\x06\x166".into(), "celery\x06\x169".into()];
    let slots: HashSet<u16> = q.iter().map(|k| slot_of(k)).collect();
    assert_eq!(slots.len(), 4, "the queues hash to different slots");
    q
}

/// Many producers and consumers over four slots, the consumers mixing BRPOP and BLMPOP ... RIGHT
/// COUNT 2: every element is delivered exactly once and nothing is left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_slot_pops_deliver_every_element_exactly_once() {
    let env = start(small()).await;
    let q = queues();
    let (producers, per_producer, consumers) = (3, 300, 4);
    let done = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for ci in 0..consumers {
        let (url, q, done) = (env.url(), q.clone(), done.clone());
        handles.push(tokio::spawn(async move {
            let mut c = client_conn(&url).await;
            let mut got: Vec<String> = Vec::new();
            loop {
                let popped: Vec<(String, String)> = if ci % 2 == 0 {
                    let r: Option<(String, String)> =
                        redis::cmd("BRPOP").arg(&q).arg(1).query_async(&mut c).await.unwrap();
                    r.into_iter().collect()
                } else {
                    let r: Option<(String, Vec<String>)> = redis::cmd("BLMPOP")
                        .arg(1)
                        .arg(q.len())
                        .arg(&q)
                        .arg("RIGHT")
                        .arg("COUNT")
                        .arg(2)
                        .query_async(&mut c)
                        .await
                        .unwrap();
                    r.into_iter().flat_map(|(k, vs)| vs.into_iter().map(move |v| (k.clone(), v))).collect()
                };
                if popped.is_empty() && done.load(Ordering::SeqCst) {
                    return got;
                }
                for (key, v) in popped {
                    assert!(v.starts_with(&format!("{key}|")), "{v} came from {key}");
                    got.push(v);
                }
            }
        }));
    }
    let mut pushers = Vec::new();
    for pi in 0..producers {
        let (url, q) = (env.url(), q.clone());
        pushers.push(tokio::spawn(async move {
            let mut c = client_conn(&url).await;
            for i in 0..per_producer {
                let key = &q[(i + pi) % q.len()];
                let _: i64 =
                    redis::cmd("LPUSH").arg(key).arg(format!("{key}|{pi}:{i}")).query_async(&mut c).await.unwrap();
                if i % 50 == 0 {
                    // A pause on purpose: the consumers drain the queues and block on every slot
                    // again, so both the non-blocking and the blocking paths get traffic.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    for p in pushers {
        p.await.unwrap();
    }
    let c = env.conn().await;
    eventually_async("the consumers empty the queues", || {
        let (q, mut c) = (q.clone(), c.clone());
        async move {
            let n: i64 = redis::cmd("EXISTS").arg(&q).query_async(&mut c).await.unwrap();
            n == 0
        }
    })
    .await;
    done.store(true, Ordering::SeqCst);
    let mut all: Vec<String> = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "no element delivered twice");
    assert_eq!(all.len(), producers * per_producer, "every element delivered");
    let n: i64 = redis::cmd("EXISTS").arg(&q).query_async(&mut c.clone()).await.unwrap();
    assert_eq!(n, 0, "nothing pushed back and left behind");
}

/// `backend.dedicated_per_node = 2` (the setting under test): with two clients blocked on one
/// node, WATCH, WAIT and a third blocking command (over that node's key alone or with another
/// node's), which need an exclusive connection to it, get the busy error after the connect
/// timeout; other nodes are not affected; once one blocked client is served, a blocking
/// command and WATCH on that node work again, also for a client that was already waiting; and
/// idle connections of one protocol make room for the other's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedicated_per_node_bounds_exclusive_connections() {
    let env = start_with(small(), |cfg| cfg.backend.dedicated_per_node = 2).await;
    let nodes = Nodes::of(&env).await;
    let connect_timeout = env.proxy.config().backend.connect_timeout;
    let owner = env.cluster.slot_owner(slot_of("{d}")).unwrap();
    let busy = format!(
        "-ERR clusterless: all 2 dedicated connections to 127.0.0.1:{owner} are busy (backend.dedicated_per_node)\r\n"
    );
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut h = Raw::connect(env.addr()).await;
        h.send(b"BLPOP {d}q 0\r\n").await;
        holders.push(h);
    }
    let nodes = &nodes;
    eventually_async("two clients blocked on the node", || async move { nodes.blocked(owner, "blpop").await == 2 })
        .await;

    let mut c = Raw::connect(env.addr()).await;
    let elsewhere = env.cluster.masters().into_iter().find(|&m| m != owner).unwrap();
    let other_key = key_in_slot(env.cluster.slots_of(elsewhere)[0], "free-");
    // A third blocking command, alone or over the busy node's key and a free node's (in either
    // order, timeout longer or equal to the connect timeout), gets the same error: a full pool is
    // not a failing master to wait for (failover_hold), nor a moving slot to retry, nor a timeout.
    for cmd in [
        &["WATCH", "{d}k"][..],
        &["WAIT", "0", "100"],
        &["BLPOP", "{d}q", "0"],
        &["BLPOP", "{d}q", &other_key, "10"],
        &["BLPOP", &other_key, "{d}q", "1"],
    ] {
        let t = Instant::now();
        assert_eq!(c.text(cmd).await, busy, "{cmd:?}");
        let took = t.elapsed();
        assert!(
            took >= connect_timeout && took < connect_timeout + Duration::from_secs(2),
            "{cmd:?}: the error after the connect timeout, not {took:?}"
        );
    }
    assert_eq!(nodes.blocked(owner, "blpop").await, 2, "only the two holders are blocked");
    assert_eq!(nodes.blocked(elsewhere, "blpop").await, 0, "the free node's pop was never sent");
    // Another node's bound is its own.
    let t = Instant::now();
    assert_eq!(c.text(&["BLPOP", &other_key, "0.2"]).await, "*-1\r\n");
    assert!(t.elapsed() < connect_timeout, "no wait for a permit on another node: {:?}", t.elapsed());

    // One blocked client served: its connection is free again.
    assert_eq!(c.text(&["RPUSH", "{d}q", "v"]).await, ":1\r\n");
    let (h0, h1) = holders.split_at_mut(1);
    let (served, got) = tokio::select! {
        r = h0[0].read_replies(1) => (0, r),
        r = h1[0].read_replies(1) => (1, r),
    };
    assert_eq!(got[0], b"*2\r\n$4\r\n{d}q\r\n$1\r\nv\r\n");
    assert_eq!(nodes.blocked(owner, "blpop").await, 1, "the other holder is still blocked");
    let t = Instant::now();
    assert_eq!(c.text(&["BLPOP", "{d}q", "0.3"]).await, "*-1\r\n", "a blocking command runs again on the node");
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(300) && took < connect_timeout, "ran at once, then timed out: {took:?}");
    assert_eq!(c.text(&["WATCH", "{d}k"]).await, "+OK\r\n");
    assert_eq!(c.text(&["UNWATCH"]).await, "+OK\r\n");

    // A client already waiting for a connection gets the one a served client gives back (which
    // stays open, idle, holding its place under the bound): it does not time out beside it.
    let mut held = holders.swap_remove(1 - served);
    let mut second = Raw::connect(env.addr()).await;
    second.send(b"BLPOP {d}q 0\r\n").await;
    eventually_async(
        "the idle connection serves a new pop",
        || async move { nodes.blocked(owner, "blpop").await == 2 },
    )
    .await;
    let mut waiter = Raw::connect(env.addr()).await;
    waiter.send(b"BLPOP {d}q 0\r\n").await;
    // On purpose: the waiter's request reaches the pool and waits there for a connection.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(c.text(&["RPUSH", "{d}q", "v1"]).await, ":1\r\n");
    assert_eq!(held.read_replies(1).await[0], b"*2\r\n$4\r\n{d}q\r\n$2\r\nv1\r\n", "the first blocked is served");
    eventually_async("the waiter blocks on the returned connection", || async move {
        nodes.blocked(owner, "blpop").await == 2
    })
    .await;
    for (client, v) in [(&mut second, "v2"), (&mut waiter, "v3")] {
        assert_eq!(c.text(&["RPUSH", "{d}q", v]).await, ":1\r\n");
        assert_eq!(
            String::from_utf8_lossy(&client.read_replies(1).await[0]),
            format!("*2\r\n$4\r\n{{d}}q\r\n{}", bulk(v))
        );
    }

    // Idle connections are kept per protocol, and each holds its place under the bound. Two idle
    // RESP2 ones make room for two RESP3 pops, whose connections, idle in turn, make room for a
    // RESP2 WATCH and pop: nothing is in use, so nobody may be told the node is busy. The node's
    // own client list shows the idle RESP3 connections closed one by one.
    let mut resp3 = Vec::new();
    for _ in 0..2 {
        let mut r = Raw::connect(env.addr()).await;
        assert!(r.text(&["HELLO", "3"]).await.starts_with("%7\r\n"));
        r.send(b"BLPOP {d}q 0\r\n").await;
        resp3.push(r);
    }
    eventually_async("both RESP3 pops block", || async move { nodes.blocked(owner, "blpop").await == 2 }).await;
    let mut got = Vec::new();
    for v in ["v4", "v5"] {
        assert_eq!(c.text(&["RPUSH", "{d}q", v]).await, ":1\r\n");
    }
    for r in &mut resp3 {
        got.push(String::from_utf8_lossy(&r.read_replies(1).await[0]).into_owned());
    }
    got.sort();
    assert_eq!(got, ["v4", "v5"].map(|v| format!("*2\r\n$4\r\n{{d}}q\r\n{}", bulk(v))));
    assert_eq!(nodes.resp3_clients(owner).await, 2, "two idle RESP3 connections");
    let t = Instant::now();
    assert_eq!(c.text(&["WATCH", "{d}k"]).await, "+OK\r\n");
    assert!(t.elapsed() < connect_timeout, "WATCH did not wait for a permit: {:?}", t.elapsed());
    eventually_async("one idle RESP3 connection closed", || async move { nodes.resp3_clients(owner).await == 1 }).await;
    let t = Instant::now();
    assert_eq!(once(env.addr(), &["BLPOP", "{d}q", "0.3"]).await, "*-1\r\n");
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(300) && took < connect_timeout, "ran at once, then timed out: {took:?}");
    eventually_async("the other one too", || async move { nodes.resp3_clients(owner).await == 0 }).await;
    assert_eq!(c.text(&["UNWATCH"]).await, "+OK\r\n");
}
