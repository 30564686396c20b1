//! Client-side caching through the proxy (CLIENT TRACKING), on a real cluster with raw RESP:
//! RESP3 pushes and RESP2 REDIRECT, default and BCAST modes, OPTIN/OPTOUT, NOLOOP, changes made
//! through the proxy and straight on a node, a failover, a lost link and a moved slot (each a
//! flush), TRACKING off, and the commands' replies and errors as Redis 7 gives them.
//!
//! That a message is NOT sent is shown by order: keys in one slot come through one master's
//! invalidation link in the order they were written, so when the message of a later write arrives
//! first, the earlier write sent none.

mod common;

use common::*;

fn push(keys: &[&str]) -> Vec<u8> {
    let mut v = format!(">2\r\n$10\r\ninvalidate\r\n*{}\r\n", keys.len()).into_bytes();
    for k in keys {
        v.extend_from_slice(format!("${}\r\n{k}\r\n", k.len()).as_bytes());
    }
    v
}

const FLUSH: &[u8] = b">2\r\n$10\r\ninvalidate\r\n_\r\n";

async fn resp3(env: &Env) -> Raw {
    let mut c = Raw::connect(env.addr()).await;
    assert!(c.cmd(&[b"HELLO", b"3"]).await.starts_with(b"%7\r\n"));
    c
}

async fn next(c: &mut Raw) -> Vec<u8> {
    c.read_replies(1).await.pop().expect("a frame")
}

async fn tracking_clients(c: &mut Raw) -> String {
    let info = c.text(&["INFO", "clients"]).await;
    info.lines().find(|l| l.starts_with("tracking_clients:")).unwrap_or_default().to_string()
}

/// Default mode: a key read while tracking is invalidated (one push, byte-exact) when another
/// client writes it through the proxy or straight on its node, on every master; a key not read
/// sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_mode_pushes_on_every_master() {
    let env = start(small()).await;
    env.converges("start").await;
    let mut a = resp3(&env).await;
    let mut b = Raw::connect(env.addr()).await;
    assert_eq!(tracking_clients(&mut b).await, "tracking_clients:0");
    assert_eq!(a.cmd(&[b"CLIENT", b"TRACKING", b"on"]).await, b"+OK\r\n");
    assert_eq!(tracking_clients(&mut b).await, "tracking_clients:1");
    for slot in [0u16, 8000, 16000] {
        let k = key_in_slot(slot, "dm");
        let tag = format!("{{{}}}", k);
        let (k, other) = (format!("{tag}k"), format!("{tag}other"));
        assert_eq!(a.cmd(&[b"GET", k.as_bytes()]).await, b"_\r\n");
        // Through the proxy: first a key A did not read, then the one it did.
        assert_eq!(b.text(&["SET", &other, "x"]).await, "+OK\r\n");
        assert_eq!(b.text(&["SET", &k, "1"]).await, "+OK\r\n");
        assert_eq!(next(&mut a).await, push(&[&k]), "slot {slot}");
        // Straight on the node, behind the proxy's back.
        assert_eq!(a.cmd(&[b"GET", k.as_bytes()]).await, b"$1\r\n1\r\n");
        let port = env.cluster.slot_owner(clusterless::slot::slot(k.as_bytes())).expect("owner");
        let mut node = env.node(port).await;
        let _: () = redis::cmd("SET").arg(&k).arg("2").query_async(&mut node).await.expect("SET on node");
        assert_eq!(next(&mut a).await, push(&[&k]), "slot {slot}, written on the node");
    }
    // CLIENT REPLY OFF drops replies, not invalidations (as Redis).
    assert_eq!(a.cmd(&[b"GET", b"{dm}quiet"]).await, b"_\r\n");
    a.send(&clusterless::resp::encode_command(&["CLIENT", "REPLY", "OFF"])).await;
    let addr = env.addr();
    eventually_async("the proxy has read CLIENT REPLY OFF", || async move {
        let mut c = Raw::connect(addr).await;
        c.text(&["CLIENT", "LIST"]).await.contains("cmd=client|reply")
    })
    .await;
    assert_eq!(b.text(&["SET", "{dm}quiet", "1"]).await, "+OK\r\n");
    assert_eq!(next(&mut a).await, push(&["{dm}quiet"]));
    assert_eq!(a.cmd(&[b"CLIENT", b"REPLY", b"ON"]).await, b"+OK\r\n");
    assert_eq!(a.cmd(&[b"CLIENT", b"GETREDIR"]).await, b":0\r\n");
    assert_eq!(
        a.cmd(&[b"CLIENT", b"TRACKINGINFO"]).await,
        b"%3\r\n$5\r\nflags\r\n~1\r\n$2\r\non\r\n$8\r\nredirect\r\n:0\r\n$8\r\nprefixes\r\n*0\r\n"
    );
    // Off: nothing more. C tracks the same key; once C has its message, A would have had its own.
    assert_eq!(a.cmd(&[b"GET", b"{dm}off"]).await, b"_\r\n");
    assert_eq!(a.cmd(&[b"CLIENT", b"TRACKING", b"off"]).await, b"+OK\r\n");
    assert_eq!(tracking_clients(&mut b).await, "tracking_clients:0");
    let mut c = resp3(&env).await;
    assert_eq!(c.cmd(&[b"CLIENT", b"TRACKING", b"on"]).await, b"+OK\r\n");
    assert_eq!(c.cmd(&[b"GET", b"{dm}off"]).await, b"_\r\n");
    assert_eq!(b.text(&["SET", "{dm}off", "1"]).await, "+OK\r\n");
    assert_eq!(next(&mut c).await, push(&["{dm}off"]));
    assert_eq!(a.cmd(&[b"PING"]).await, b"+PONG\r\n");
    assert_eq!(a.cmd(&[b"PING"]).await, b"+PONG\r\n");
    assert_eq!(
        a.cmd(&[b"CLIENT", b"TRACKINGINFO"]).await,
        b"%3\r\n$5\r\nflags\r\n~1\r\n$3\r\noff\r\n$8\r\nredirect\r\n:-1\r\n$8\r\nprefixes\r\n*0\r\n"
    );
}

/// BCAST: every key under a prefix, read or not, one message per write with all its keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bcast_prefixes() {
    let env = start(small()).await;
    env.converges("start").await;
    let mut a = resp3(&env).await;
    let mut b = Raw::connect(env.addr()).await;
    assert_eq!(a.cmd(&[b"CLIENT", b"TRACKING", b"on", b"BCAST", b"PREFIX", b"p:"]).await, b"+OK\r\n");
    assert_eq!(b.text(&["SET", "q:{t}1", "x"]).await, "+OK\r\n");
    assert_eq!(b.text(&["MSET", "p:{t}1", "a", "p:{t}2", "b"]).await, "+OK\r\n");
    assert_eq!(next(&mut a).await, push(&["p:{t}1", "p:{t}2"]));
    assert_eq!(b.text(&["SET", "p:other", "x"]).await, "+OK\r\n");
    assert_eq!(next(&mut a).await, push(&["p:other"]));
    assert_eq!(
        a.cmd(&[b"CLIENT", b"TRACKINGINFO"]).await,
        b"%3\r\n$5\r\nflags\r\n~2\r\n$2\r\non\r\n$5\r\nbcast\r\n$8\r\nredirect\r\n:0\r\n$8\r\nprefixes\r\n*1\r\n$2\r\np:\r\n"
    );
    let info = a.text(&["CLIENT", "INFO"]).await;
    assert!(info.contains(" flags=tB ") && info.contains(" redir=0 "), "{info}");
    // Redis's errors, word for word.
    let errs: &[(&[&str], &str)] = &[
        (&["CLIENT", "TRACKING", "on"], "-ERR You can't switch BCAST mode on/off before disabling tracking for this client, and then re-enabling it with a different mode.\r\n"),
        (&["CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "p:x"], "-ERR Prefix 'p:x' overlaps with an existing prefix 'p:'. Prefixes for a single client must not overlap.\r\n"),
        (&["CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "a", "PREFIX", "ab"], "-ERR Prefix 'a' overlaps with another provided prefix 'ab'. Prefixes for a single client must not overlap.\r\n"),
        (&["CLIENT", "TRACKING", "on", "BCAST", "OPTIN"], "-ERR OPTIN and OPTOUT are not compatible with BCAST\r\n"),
        (&["CLIENT", "TRACKING", "maybe"], "-ERR syntax error\r\n"),
        (&["CLIENT", "CACHING", "yes"], "-ERR CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.\r\n"),
    ];
    for (cmd, want) in errs {
        assert_eq!(a.text(cmd).await, *want, "{cmd:?}");
    }
    assert_eq!(a.text(&["CLIENT", "TRACKING", "off"]).await, "+OK\r\n");
    let errs: &[(&[&str], &str)] = &[
        (&["CLIENT", "TRACKING", "on", "PREFIX", "a"], "-ERR PREFIX option requires BCAST mode to be enabled\r\n"),
        (&["CLIENT", "TRACKING", "on", "OPTIN", "OPTOUT"], "-ERR You can't specify both OPTIN mode and OPTOUT mode\r\n"),
        (&["CLIENT", "TRACKING", "on", "REDIRECT", "999999"], "-ERR The client ID you want redirect to does not exist\r\n"),
        (&["CLIENT", "CACHING", "yes"], "-ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled\r\n"),
        (&["CLIENT", "TRACKING"], "-ERR wrong number of arguments for 'client|tracking' command\r\n"),
    ];
    for (cmd, want) in errs {
        assert_eq!(a.text(cmd).await, *want, "{cmd:?}");
    }
}

/// OPTIN tracks only the read after CLIENT CACHING yes; OPTOUT all reads but the one after
/// CLIENT CACHING no.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optin_and_optout() {
    let env = start(small()).await;
    env.converges("start").await;
    let mut b = Raw::connect(env.addr()).await;

    let mut a = resp3(&env).await;
    assert_eq!(a.cmd(&[b"CLIENT", b"TRACKING", b"on", b"OPTIN"]).await, b"+OK\r\n");
    assert_eq!(a.cmd(&[b"GET", b"{oi}skip"]).await, b"_\r\n");
    assert_eq!(a.cmd(&[b"CLIENT", b"CACHING", b"yes"]).await, b"+OK\r\n");
    assert_eq!(
        a.cmd(&[b"CLIENT", b"TRACKINGINFO"]).await,
        b"%3\r\n$5\r\nflags\r\n~3\r\n$2\r\non\r\n$5\r\noptin\r\n$11\r\ncaching-yes\r\n$8\r\nredirect\r\n:0\r\n$8\r\nprefixes\r\n*0\r\n"
    );
    assert_eq!(a.cmd(&[b"GET", b"{oi}kept"]).await, b"_\r\n");
    assert_eq!(b.text(&["SET", "{oi}skip", "1"]).await, "+OK\r\n");
    assert_eq!(b.text(&["SET", "{oi}kept", "1"]).await, "+OK\r\n");
    assert_eq!(next(&mut a).await, push(&["{oi}kept"]));

    let mut o = resp3(&env).await;
    assert_eq!(o.cmd(&[b"CLIENT", b"TRACKING", b"on", b"OPTOUT"]).await, b"+OK\r\n");
    assert_eq!(o.cmd(&[b"CLIENT", b"CACHING", b"no"]).await, b"+OK\r\n");
    assert_eq!(o.cmd(&[b"GET", b"{oo}skip"]).await, b"_\r\n");
    assert_eq!(o.cmd(&[b"GET", b"{oo}kept"]).await, b"_\r\n");
    assert_eq!(b.text(&["SET", "{oo}skip", "1"]).await, "+OK\r\n");
    assert_eq!(b.text(&["SET", "{oo}kept", "1"]).await, "+OK\r\n");
    assert_eq!(next(&mut o).await, push(&["{oo}kept"]));
    assert_eq!(
        o.text(&["CLIENT", "CACHING", "yes"]).await,
        "-ERR CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.\r\n"
    );
}

/// NOLOOP: the client's own write sends it nothing, another client's write does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noloop_skips_own_writes() {
    let env = start(small()).await;
    env.converges("start").await;
    let mut a = resp3(&env).await;
    let mut b = Raw::connect(env.addr()).await;
    assert_eq!(a.cmd(&[b"CLIENT", b"TRACKING", b"on", b"NOLOOP"]).await, b"+OK\r\n");
    assert_eq!(a.cmd(&[b"GET", b"{nl}own"]).await, b"_\r\n");
    assert_eq!(a.cmd(&[b"GET", b"{nl}theirs"]).await, b"_\r\n");
    assert_eq!(a.cmd(&[b"SET", b"{nl}own", b"1"]).await, b"+OK\r\n");
    assert_eq!(b.text(&["SET", "{nl}theirs", "1"]).await, "+OK\r\n");
    assert_eq!(next(&mut a).await, push(&["{nl}theirs"]));
    // Without NOLOOP its own write comes back, after the write's reply.
    let mut c = resp3(&env).await;
    assert_eq!(c.cmd(&[b"CLIENT", b"TRACKING", b"on"]).await, b"+OK\r\n");
    assert_eq!(c.cmd(&[b"GET", b"{nl}mine"]).await, b"_\r\n");
    assert_eq!(c.cmd(&[b"SET", b"{nl}mine", b"1"]).await, b"+OK\r\n");
    assert_eq!(next(&mut c).await, push(&["{nl}mine"]));
}

/// RESP2: invalidations go to the client named by REDIRECT, subscribed to
/// `__redis__:invalidate`, as Redis's pub/sub message; a flush is its null.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp2_redirect_to_a_subscribed_client() {
    let env = start(small()).await;
    env.converges("start").await;
    let mut r = Raw::connect(env.addr()).await;
    let id = r.text(&["CLIENT", "ID"]).await.trim_start_matches(':').trim_end().to_string();
    assert_eq!(
        r.text(&["SUBSCRIBE", "__redis__:invalidate"]).await,
        "*3\r\n$9\r\nsubscribe\r\n$20\r\n__redis__:invalidate\r\n:1\r\n"
    );
    let mut a = Raw::connect(env.addr()).await;
    let mut b = Raw::connect(env.addr()).await;
    assert_eq!(a.text(&["CLIENT", "TRACKING", "on", "REDIRECT", &id]).await, "+OK\r\n");
    assert_eq!(a.text(&["CLIENT", "GETREDIR"]).await, format!(":{id}\r\n"));
    assert_eq!(
        a.text(&["CLIENT", "TRACKINGINFO"]).await,
        format!("*6\r\n$5\r\nflags\r\n*1\r\n$2\r\non\r\n$8\r\nredirect\r\n:{id}\r\n$8\r\nprefixes\r\n*0\r\n")
    );
    let info = a.text(&["CLIENT", "INFO"]).await;
    assert!(info.contains(" flags=t ") && info.contains(&format!(" redir={id} ")), "{info}");
    assert_eq!(a.text(&["GET", "rk"]).await, "$-1\r\n");
    assert_eq!(b.text(&["SET", "rk", "1"]).await, "+OK\r\n");
    assert_eq!(next(&mut r).await, b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*1\r\n$2\r\nrk\r\n");
    // FLUSHALL on the nodes: everything may have changed.
    assert_eq!(a.text(&["GET", "rk"]).await, "$1\r\n1\r\n");
    assert_eq!(b.text(&["FLUSHALL"]).await, "+OK\r\n");
    assert_eq!(next(&mut r).await, b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n$-1\r\n");
}

/// A failover of the key's master: the proxy cannot know what the new master saw before its link
/// to it was up, so the client's cache is flushed; then tracking goes on with the new master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_flushes_then_follows_the_new_master() {
    let env = start(with_replicas()).await;
    env.converges("start").await;
    let mut a = resp3(&env).await;
    let mut b = Raw::connect(env.addr()).await;
    assert_eq!(a.cmd(&[b"CLIENT", b"TRACKING", b"on"]).await, b"+OK\r\n");
    let k = "fo-key";
    assert_eq!(a.cmd(&[b"GET", k.as_bytes()]).await, b"_\r\n");
    let m = env.cluster.slot_owner(clusterless::slot::slot(k.as_bytes())).expect("owner");
    let r = env.cluster.replicas_of(m)[0];
    tokio::task::block_in_place(|| env.cluster.failover(r)).expect("CLUSTER FAILOVER");
    assert_eq!(next(&mut a).await, FLUSH);
    env.converges("failover").await;
    // More flushes may follow (the link, then the map): read off while tracking again.
    tracking_goes_on(&mut a, &mut b, k).await;
}

/// After flushes: A tracks `k` again and a write of it by B reaches A (late flushes, from the
/// map settling, are read off and the key tracked again).
async fn tracking_goes_on(a: &mut Raw, b: &mut Raw, k: &str) {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let v = format!("v{}", deadline.elapsed().as_nanos() % 1000);
        loop {
            let f = a.cmd(&[b"GET", k.as_bytes()]).await;
            if f != FLUSH {
                break;
            }
            next(a).await;
        }
        assert_eq!(b.text(&["SET", k, &v]).await, "+OK\r\n");
        let f = next(a).await;
        if f == push(&[k]) {
            return;
        }
        assert_eq!(f, FLUSH);
        assert!(std::time::Instant::now() < deadline, "writes never reached the tracking client again");
    }
}

/// The master's invalidation link killed on the node: the proxy may have missed changes, so the
/// clients with keys there are flushed; the link comes back and tracking goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_link_flushes() {
    let env = start(small()).await;
    env.converges("start").await;
    let mut a = resp3(&env).await;
    let mut b = Raw::connect(env.addr()).await;
    assert_eq!(a.cmd(&[b"CLIENT", b"TRACKING", b"on"]).await, b"+OK\r\n");
    let k = "ll-key";
    assert_eq!(a.cmd(&[b"GET", k.as_bytes()]).await, b"_\r\n");
    let port = env.cluster.slot_owner(clusterless::slot::slot(k.as_bytes())).expect("owner");
    let mut node = env.node(port).await;
    let links = tracking_links(&env, port).await;
    assert_eq!(links.len(), 1, "{links:?}");
    let id = &links[0];
    let killed: i64 = redis::cmd("CLIENT").arg("KILL").arg("ID").arg(id).query_async(&mut node).await.expect("KILL");
    assert_eq!(killed, 1);
    assert_eq!(next(&mut a).await, FLUSH);
    tracking_goes_on(&mut a, &mut b, k).await;
}

/// A slot moved to another master (SETSLOT ... NODE): the proxy cannot know what the new owner
/// saw before, so a client with a key of that slot is flushed. The key does not exist, so no
/// MIGRATE of it sends an invalidation of its own: the flush is the owner change's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_slot_flushes() {
    let env = start(small()).await;
    env.converges("start").await;
    let mut a = resp3(&env).await;
    let mut b = Raw::connect(env.addr()).await;
    assert_eq!(a.cmd(&[b"CLIENT", b"TRACKING", b"on"]).await, b"+OK\r\n");
    let k = "ms-key";
    let slot = clusterless::slot::slot(k.as_bytes());
    assert_eq!(a.cmd(&[b"GET", k.as_bytes()]).await, b"_\r\n");
    let from = env.cluster.slot_owner(slot).expect("owner");
    let to = *env.cluster.masters().iter().find(|&&m| m != from).expect("another master");
    tokio::task::block_in_place(|| {
        env.cluster.migrate_slot_manual_begin(slot, from, to)?;
        env.cluster.migrate_slot_manual_finish(slot, from, to)
    })
    .expect("move the slot");
    assert_eq!(next(&mut a).await, FLUSH);
    env.converges("slot moved").await;
    tracking_goes_on(&mut a, &mut b, k).await;
}

/// The ids of a node's tracking clients in BCAST mode (flags `t` and `B`): the proxy's links.
async fn tracking_links(env: &Env, port: u16) -> Vec<String> {
    let mut node = env.node(port).await;
    let list: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut node).await.expect("CLIENT LIST");
    list.lines()
        .filter(|l| l.split(' ').any(|f| f.starts_with("flags=") && f.contains('t') && f.contains('B')))
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")).map(str::to_string))
        .collect()
}

/// The links run while a client tracks: gone from every master once none does, back with the
/// next CLIENT TRACKING on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_close_when_nobody_tracks() {
    let env = start(small()).await;
    env.converges("start").await;
    let masters = env.cluster.masters();
    let mut a = resp3(&env).await;
    let mut b = Raw::connect(env.addr()).await;
    for &m in &masters {
        assert!(tracking_links(&env, m).await.is_empty(), "a link on {m} before any client tracks");
    }
    assert_eq!(a.cmd(&[b"CLIENT", b"TRACKING", b"on"]).await, b"+OK\r\n");
    for &m in &masters {
        assert_eq!(tracking_links(&env, m).await.len(), 1, "master {m}");
    }
    assert_eq!(a.cmd(&[b"CLIENT", b"TRACKING", b"off"]).await, b"+OK\r\n");
    for &m in &masters {
        eventually_async(&format!("the link on {m} closes"), || async { tracking_links(&env, m).await.is_empty() })
            .await;
    }
    assert_eq!(a.cmd(&[b"CLIENT", b"TRACKING", b"on"]).await, b"+OK\r\n");
    for &m in &masters {
        assert_eq!(tracking_links(&env, m).await.len(), 1, "master {m} again");
    }
    assert_eq!(a.cmd(&[b"GET", b"lc-key"]).await, b"_\r\n");
    assert_eq!(b.text(&["SET", "lc-key", "1"]).await, "+OK\r\n");
    assert_eq!(next(&mut a).await, push(&["lc-key"]));
}

/// A master the proxy cannot hear (SIGSTOP): CLIENT TRACKING on fails after its wait, with the
/// proxy's reason, rather than promise invalidations that cannot come; once the master is back,
/// it succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_fails_while_a_master_cannot_be_heard() {
    let mut env = start(small()).await;
    env.converges("start").await;
    let m = env.cluster.masters()[0];
    env.cluster.sigstop(m).expect("SIGSTOP");
    let mut a = resp3(&env).await;
    assert_eq!(
        a.text(&["CLIENT", "TRACKING", "on"]).await,
        "-ERR clusterless: client-side caching is unavailable: the invalidation link to a master is not up; try again\r\n"
    );
    assert_eq!(
        a.cmd(&[b"CLIENT", b"TRACKINGINFO"]).await,
        b"%3\r\n$5\r\nflags\r\n~1\r\n$3\r\noff\r\n$8\r\nredirect\r\n:-1\r\n$8\r\nprefixes\r\n*0\r\n"
    );
    env.cluster.sigcont(m).expect("SIGCONT");
    eventually_async("CLIENT TRACKING on succeeds again", || async {
        let mut c = resp3(&env).await;
        c.cmd(&[b"CLIENT", b"TRACKING", b"on"]).await == b"+OK\r\n"
    })
    .await;
}

/// kill -9 of the key's master: its link drops at once, so the client is flushed before the
/// cluster even promotes a replica; tracking then goes on with the new master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_of_the_keys_master_flushes_at_once() {
    let mut env = start(with_replicas()).await;
    env.converges("start").await;
    let mut a = resp3(&env).await;
    let mut b = Raw::connect(env.addr()).await;
    assert_eq!(a.cmd(&[b"CLIENT", b"TRACKING", b"on"]).await, b"+OK\r\n");
    let k = "k9-key";
    assert_eq!(a.cmd(&[b"GET", k.as_bytes()]).await, b"_\r\n");
    let m = env.cluster.slot_owner(clusterless::slot::slot(k.as_bytes())).expect("owner");
    env.cluster.kill9(m).expect("kill -9");
    assert_eq!(next(&mut a).await, FLUSH);
    tokio::task::block_in_place(|| env.cluster.wait_for_promotion(m)).expect("promotion");
    env.converges("kill -9").await;
    tracking_goes_on(&mut a, &mut b, k).await;
}
