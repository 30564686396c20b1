//! Databases on one cluster (`keyspace.databases`, `keyspace.one_slot_databases`): SELECT n
//! isolates key names, the whole-keyspace commands see one database, replies name keys without
//! the stored prefix (RESP2 and RESP3), MOVE, SWAPDB's and SELECT's refusals in Redis's words, a
//! one-slot database runs transactions and scripts over any of its keys, and reshards and a
//! failover under load leave every key in its own namespace. Stored names are checked on the
//! nodes themselves.

mod common;

use std::collections::BTreeSet;

use common::*;

fn url(env: &Env, db: u32) -> String {
    format!("redis://{}/{db}", env.addr())
}

/// Every key on every master, as the nodes store them, with the master holding it.
async fn stored(env: &Env) -> Vec<(u16, String)> {
    let mut out = Vec::new();
    for port in env.cluster.masters() {
        let mut node = env.node(port).await;
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut node).await.expect("KEYS on a node");
        out.extend(keys.into_iter().map(|k| (port, k)));
    }
    out
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Every key of the database a SCAN walk finds, with COUNT 1 so that it takes many calls.
async fn scan_all(c: &mut redis::aio::MultiplexedConnection) -> BTreeSet<String> {
    let mut cursor = 0u64;
    let mut all = BTreeSet::new();
    loop {
        let (next, keys): (u64, Vec<String>) =
            redis::cmd("SCAN").arg(cursor).arg("COUNT").arg(1).query_async(c).await.expect("SCAN");
        all.extend(keys);
        if next == 0 {
            return all;
        }
        cursor = next;
    }
}

async fn db_view(env: &Env, db: u32) -> (BTreeSet<String>, BTreeSet<String>, i64, Option<String>) {
    let mut c = client_conn(&url(env, db)).await;
    let keys: BTreeSet<String> = redis::cmd("KEYS").arg("*").query_async(&mut c).await.expect("KEYS");
    let scanned = scan_all(&mut c).await;
    let size: i64 = redis::cmd("DBSIZE").query_async(&mut c).await.expect("DBSIZE");
    let random: Option<String> = redis::cmd("RANDOMKEY").query_async(&mut c).await.expect("RANDOMKEY");
    (keys, scanned, size, random)
}

/// Three databases (2 one-slot): the same name holds a different value in each; KEYS, SCAN,
/// DBSIZE and RANDOMKEY see one database; the nodes hold `k`, `__db1:k` and `{__db2}:k`; MOVE,
/// FLUSHDB, FLUSHALL; SELECT, SWAPDB and SELECT-in-MULTI refusals byte for byte; CLIENT INFO's db
/// and RESET's return to database 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_isolates_databases() {
    let env = start_with(small(), |c| {
        c.keyspace.databases = 3;
        c.keyspace.one_slot_databases = vec![2];
    })
    .await;
    let mut c = Raw::connect(env.addr()).await;
    for (db, v) in [("0", "zero"), ("1", "one"), ("2", "two")] {
        assert_eq!(c.text(&["SELECT", db]).await, "+OK\r\n");
        assert_eq!(c.text(&["SET", "k", v]).await, "+OK\r\n");
        assert_eq!(c.text(&["SET", &format!("only{db}"), "x"]).await, "+OK\r\n");
    }
    for (db, v) in [("0", "$4\r\nzero\r\n"), ("1", "$3\r\none\r\n"), ("2", "$3\r\ntwo\r\n")] {
        assert_eq!(c.text(&["SELECT", db]).await, "+OK\r\n");
        assert_eq!(c.text(&["GET", "k"]).await, v, "db {db}");
    }
    for db in 0..3u32 {
        let want = set(&["k", &format!("only{db}")]);
        let (keys, scanned, size, random) = db_view(&env, db).await;
        assert_eq!(keys, want, "KEYS in db {db}");
        assert_eq!(scanned, want, "SCAN in db {db}");
        assert_eq!(size, 2, "DBSIZE in db {db}");
        assert!(want.contains(&random.clone().unwrap_or_default()), "RANDOMKEY in db {db}: {random:?}");
    }
    let on_nodes: BTreeSet<String> = stored(&env).await.into_iter().map(|(_, k)| k).collect();
    assert_eq!(on_nodes, set(&["k", "only0", "__db1:k", "__db1:only1", "{__db2}:k", "{__db2}:only2"]));

    // Refusals, in Redis's words where Redis has them.
    assert_eq!(c.text(&["SELECT", "3"]).await, "-ERR DB index is out of range\r\n");
    assert_eq!(c.text(&["SELECT", "-1"]).await, "-ERR DB index is out of range\r\n");
    assert_eq!(c.text(&["SELECT", "x"]).await, "-ERR value is not an integer or out of range\r\n");
    assert_eq!(
        c.text(&["SWAPDB", "0", "1"]).await,
        "-ERR 'SWAPDB' is not available through clusterless: its databases are key-name prefixes in one cluster, \
         and swapping two would rename every key of both\r\n"
    );
    assert_eq!(c.text(&["MULTI"]).await, "+OK\r\n");
    assert_eq!(
        c.text(&["SELECT", "1"]).await,
        "-ERR 'SELECT' is not available through clusterless inside MULTI: a transaction runs on a node's \
         connection, and this command acts on the client's\r\n"
    );
    assert_eq!(c.text(&["EXEC"]).await, "-EXECABORT Transaction discarded because of previous errors.\r\n");

    // MOVE: into a database without the key, not onto one that has it, not to itself.
    assert_eq!(c.text(&["SELECT", "1"]).await, "+OK\r\n");
    assert_eq!(c.text(&["MOVE", "only1", "0"]).await, ":1\r\n");
    assert_eq!(c.text(&["EXISTS", "only1"]).await, ":0\r\n");
    assert_eq!(c.text(&["MOVE", "k", "2"]).await, ":0\r\n");
    assert_eq!(c.text(&["MOVE", "nothing", "2"]).await, ":0\r\n");
    assert_eq!(c.text(&["MOVE", "k", "1"]).await, "-ERR source and destination objects are the same\r\n");
    assert_eq!(c.text(&["MOVE", "k", "7"]).await, "-ERR DB index is out of range\r\n");
    assert_eq!(c.text(&["SELECT", "0"]).await, "+OK\r\n");
    assert_eq!(c.text(&["GET", "only1"]).await, "$1\r\nx\r\n");
    assert_eq!(c.text(&["MOVE", "only1", "2"]).await, ":1\r\n");
    assert_eq!(c.text(&["SELECT", "2"]).await, "+OK\r\n");
    assert_eq!(c.text(&["GET", "only1"]).await, "$1\r\nx\r\n");

    // COPY into another database (another slot: DUMP and RESTORE), refused onto a key it has
    // unless REPLACE.
    assert_eq!(c.text(&["COPY", "k", "kc", "DB", "1"]).await, ":1\r\n");
    assert_eq!(c.text(&["COPY", "k", "kc", "DB", "1"]).await, ":0\r\n");
    assert_eq!(c.text(&["COPY", "k", "kc", "DB", "1", "REPLACE"]).await, ":1\r\n");
    assert_eq!(c.text(&["COPY", "k", "kc", "DB", "3"]).await, "-ERR DB index is out of range\r\n");
    assert_eq!(c.text(&["SELECT", "1"]).await, "+OK\r\n");
    assert_eq!(c.text(&["GET", "kc"]).await, "$3\r\ntwo\r\n");
    assert_eq!(c.text(&["SELECT", "2"]).await, "+OK\r\n");

    // CLIENT INFO shows the database; RESET goes back to 0.
    assert!(c.text(&["CLIENT", "INFO"]).await.contains(" db=2 "));
    assert_eq!(c.text(&["RESET"]).await, "+RESET\r\n");
    assert!(c.text(&["CLIENT", "INFO"]).await.contains(" db=0 "));
    assert_eq!(c.text(&["GET", "k"]).await, "$4\r\nzero\r\n");

    // A transaction and a watch in database 1 act on its names.
    assert_eq!(c.text(&["SELECT", "1"]).await, "+OK\r\n");
    assert_eq!(c.text(&["WATCH", "{t}a"]).await, "+OK\r\n");
    assert_eq!(c.text(&["MULTI"]).await, "+OK\r\n");
    assert_eq!(c.text(&["SET", "{t}a", "1"]).await, "+QUEUED\r\n");
    assert_eq!(c.text(&["INCR", "{t}a"]).await, "+QUEUED\r\n");
    assert_eq!(c.text(&["EXEC"]).await, "*2\r\n+OK\r\n:2\r\n");
    let owner = env.cluster.slot_owner(clusterless::slot::slot(b"{t}")).expect("owner");
    let on_owner: Option<String> =
        redis::cmd("GET").arg("__db1:{t}a").query_async(&mut env.node(owner).await).await.expect("GET on the node");
    assert_eq!(on_owner.as_deref(), Some("2"), "__db1:{{t}}a hashes as {{t}}");
    assert_eq!(c.text(&["DEL", "{t}a"]).await, ":1\r\n");
    // Replies naming keys inside EXEC's array lose the prefix too.
    assert_eq!(c.text(&["RPUSH", "{t}l", "a"]).await, ":1\r\n");
    assert_eq!(c.text(&["MULTI"]).await, "+OK\r\n");
    for cmd in [&["KEYS", "{t}*"][..], &["LMPOP", "1", "{t}l", "LEFT"], &["GET", "{t}x"]] {
        assert_eq!(c.text(cmd).await, "+QUEUED\r\n");
    }
    assert_eq!(c.text(&["EXEC"]).await, "*3\r\n*1\r\n$4\r\n{t}l\r\n*2\r\n$4\r\n{t}l\r\n*1\r\n$1\r\na\r\n$-1\r\n");

    // FLUSHDB empties one database; FLUSHALL all of them.
    assert_eq!(c.text(&["SELECT", "1"]).await, "+OK\r\n");
    assert_eq!(c.text(&["FLUSHDB"]).await, "+OK\r\n");
    assert_eq!(c.text(&["DBSIZE"]).await, ":0\r\n");
    assert_eq!(c.text(&["SELECT", "2"]).await, "+OK\r\n");
    assert_eq!(c.text(&["DBSIZE"]).await, ":3\r\n");
    assert_eq!(c.text(&["SELECT", "0"]).await, "+OK\r\n");
    assert_eq!(c.text(&["DBSIZE"]).await, ":2\r\n");
    assert_eq!(c.text(&["FLUSHALL"]).await, "+OK\r\n");
    assert!(stored(&env).await.is_empty());
    assert_eq!(c.text(&["RANDOMKEY"]).await, "$-1\r\n");
}

/// Replies that name keys (LMPOP, BLPOP, BRPOP woken by a push, BZPOPMIN, XREAD, KEYS) name them
/// as the client wrote them, in a plain database over RESP2 and a one-slot one over RESP3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_name_keys_without_the_prefix() {
    let env = start_with(small(), |c| {
        c.keyspace.databases = 3;
        c.keyspace.one_slot_databases = vec![2];
    })
    .await;
    for (proto, db) in [(2, "1"), (3, "2")] {
        let mut c = Raw::connect(env.addr()).await;
        if proto == 3 {
            assert!(c.text(&["HELLO", "3"]).await.starts_with('%'));
        }
        assert_eq!(c.text(&["SELECT", db]).await, "+OK\r\n");
        assert_eq!(c.text(&["RPUSH", "l", "a", "b"]).await, ":2\r\n");
        assert_eq!(c.text(&["LMPOP", "1", "l", "LEFT"]).await, "*2\r\n$1\r\nl\r\n*1\r\n$1\r\na\r\n");
        assert_eq!(c.text(&["BLPOP", "none", "l", "1"]).await, "*2\r\n$1\r\nl\r\n$1\r\nb\r\n");
        // A pop that blocks, woken by another client's push in the same database.
        let mut pusher = Raw::connect(env.addr()).await;
        assert_eq!(pusher.text(&["SELECT", db]).await, "+OK\r\n");
        c.send(&clusterless::resp::encode_command(&["BRPOP", "q", "10"])).await;
        eventually_async("the pop blocks", || async {
            let mut probe = Raw::connect(env.addr()).await;
            probe.text(&["CLIENT", "LIST"]).await.contains("cmd=brpop")
        })
        .await;
        assert_eq!(pusher.text(&["LPUSH", "q", "v"]).await, ":1\r\n");
        assert_eq!(c.read_replies(1).await[0], b"*2\r\n$1\r\nq\r\n$1\r\nv\r\n");
        assert_eq!(c.text(&["ZADD", "z", "1", "m"]).await, ":1\r\n");
        let score = if proto == 3 { ",1\r\n" } else { "$1\r\n1\r\n" };
        assert_eq!(c.text(&["BZPOPMIN", "z", "1"]).await, format!("*3\r\n$1\r\nz\r\n$1\r\nm\r\n{score}"));
        assert_eq!(c.text(&["XADD", "s", "1-1", "f", "v"]).await, "$3\r\n1-1\r\n");
        let entries = "*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n";
        let want = if proto == 3 {
            format!("%1\r\n$1\r\ns\r\n{entries}")
        } else {
            format!("*1\r\n*2\r\n$1\r\ns\r\n{entries}")
        };
        assert_eq!(c.text(&["XREAD", "STREAMS", "s", "0"]).await, want);
        assert_eq!(c.text(&["XREAD", "BLOCK", "100", "STREAMS", "s", "0"]).await, want);
        assert_eq!(c.text(&["KEYS", "s*"]).await, "*1\r\n$1\r\ns\r\n");
        assert_eq!(c.text(&["FLUSHDB"]).await, "+OK\r\n");
    }
    assert!(stored(&env).await.is_empty());
}

/// A one-slot database 0: MULTI/EXEC, WATCH and EVAL over keys that hash to three different
/// slots run as on one server, and every key lives on one master under `{__db0}:`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_slot_database_runs_transactions_and_scripts() {
    let env = start_with(small(), |c| c.keyspace.one_slot_databases = vec![0]).await;
    let slots: BTreeSet<u16> = ["a", "b", "c"].iter().map(|k| clusterless::slot::slot(k.as_bytes())).collect();
    assert_eq!(slots.len(), 3, "the keys' own slots differ");
    let mut c = Raw::connect(env.addr()).await;
    assert_eq!(c.text(&["MULTI"]).await, "+OK\r\n");
    for cmd in [&["SET", "a", "1"][..], &["INCR", "b"], &["LPUSH", "c", "x"]] {
        assert_eq!(c.text(cmd).await, "+QUEUED\r\n");
    }
    assert_eq!(c.text(&["EXEC"]).await, "*3\r\n+OK\r\n:1\r\n:1\r\n");
    assert_eq!(c.text(&["WATCH", "a", "c"]).await, "+OK\r\n");
    assert_eq!(c.text(&["MULTI"]).await, "+OK\r\n");
    assert_eq!(c.text(&["GET", "b"]).await, "+QUEUED\r\n");
    assert_eq!(c.text(&["EXEC"]).await, "*1\r\n$1\r\n1\r\n");
    let script = "return {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2]), redis.call('LLEN', KEYS[3])}";
    assert_eq!(c.text(&["EVAL", script, "3", "a", "b", "c"]).await, "*3\r\n$1\r\n1\r\n$1\r\n1\r\n:1\r\n");
    let on_nodes = stored(&env).await;
    let masters: BTreeSet<u16> = on_nodes.iter().map(|(p, _)| *p).collect();
    assert_eq!(masters.len(), 1, "{on_nodes:?}");
    let names: BTreeSet<String> = on_nodes.into_iter().map(|(_, k)| k).collect();
    assert_eq!(names, set(&["{__db0}:a", "{__db0}:b", "{__db0}:c"]));
    assert_eq!(c.text(&["KEYS", "*"]).await.len(), "*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n".len());
}

/// Three write loops with the same key names in databases 0, 1 and a one-slot 2, through two
/// reshards and a failover: every acknowledged write is read back in its own database, and the
/// nodes hold each loop's keys under its own prefix only (a write in the wrong namespace would
/// put a token in another loop's log, or a key under a name no loop uses).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reshards_and_a_failover_keep_databases_apart() {
    let env = start_with(with_replicas(), |c| {
        c.keyspace.databases = 3;
        c.keyspace.one_slot_databases = vec![2];
    })
    .await;
    env.converges("start").await;
    let keys = spread_keys("w", 30);
    let loops: Vec<(u32, WriteLoop)> =
        [0, 1, 2].into_iter().map(|db| (db, write_loop(url(&env, db), keys.clone(), false))).collect();
    for (_, w) in &loops {
        w.running().await;
    }
    let ms = env.cluster.masters();
    tokio::task::block_in_place(|| env.cluster.reshard(ms[0], ms[1], 300)).expect("reshard");
    // The one-slot database's slot moves too.
    let one_slot = clusterless::slot::slot(b"{__db2}:w");
    let owner = env.cluster.slot_owner(one_slot).expect("owner");
    let to = *ms.iter().find(|&&m| m != owner).expect("another master");
    tokio::task::block_in_place(|| {
        env.cluster.migrate_slot_manual_begin(one_slot, owner, to)?;
        env.cluster.migrate_slot_manual_finish(one_slot, owner, to)
    })
    .expect("move the one-slot database's slot");
    for (_, w) in &loops {
        w.more_rounds(10).await;
    }
    let replica = env.cluster.replicas_of(ms[2])[0];
    tokio::task::block_in_place(|| env.cluster.failover(replica)).expect("failover");
    env.converges("reshards and a failover").await;
    for (_, w) in &loops {
        w.more_rounds(10).await;
    }
    for (db, w) in loops {
        let rep = w.finish().await;
        rep.errors_are("a write during a planned reshard or failover", |f| {
            f.error.contains("may or may not have been executed")
        });
        rep.verify_at(&url(&env, db), None).await;
    }
    let allowed: BTreeSet<String> =
        keys.iter().flat_map(|k| [k.clone(), format!("__db1:{k}"), format!("{{__db2}}:{k}")]).collect();
    let on_nodes = stored(&env).await;
    for (port, k) in &on_nodes {
        assert!(allowed.contains(k), "{port} holds {k}, a name in no database's namespace");
    }
    let db2: BTreeSet<u16> = on_nodes.iter().filter(|(_, k)| k.starts_with("{__db2}:")).map(|(p, _)| *p).collect();
    assert_eq!(db2.len(), 1, "the one-slot database on one master: {db2:?}");
    assert_eq!(on_nodes.len(), 90, "30 keys in each of three databases");
}

/// Keyspace notifications per database: `__keyspace@1__:k` and `__keyevent@1__:set` hear database
/// 1's `k` only (the nodes publish `__keyspace@0__:__db1:k`), a pattern on the one-slot database
/// 2 hears its keys, and database 0's same name reaches none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyspace_notifications_per_database() {
    let env = start_with(small(), |c| {
        c.keyspace.databases = 3;
        c.keyspace.one_slot_databases = vec![2];
    })
    .await;
    let mut w = Raw::connect(env.addr()).await;
    assert_eq!(w.text(&["CONFIG", "SET", "notify-keyspace-events", "KEA"]).await, "+OK\r\n");
    let mut s = Raw::connect(env.addr()).await;
    s.send(&clusterless::resp::encode_command(&["SUBSCRIBE", "__keyspace@1__:k", "__keyevent@1__:set"])).await;
    let confirmed = s.read_replies(2).await;
    assert_eq!(confirmed[0], b"*3\r\n$9\r\nsubscribe\r\n$16\r\n__keyspace@1__:k\r\n:1\r\n");
    assert_eq!(confirmed[1], b"*3\r\n$9\r\nsubscribe\r\n$18\r\n__keyevent@1__:set\r\n:2\r\n");
    assert_eq!(
        s.text(&["PSUBSCRIBE", "__keyspace@2__:*"]).await,
        "*3\r\n$10\r\npsubscribe\r\n$16\r\n__keyspace@2__:*\r\n:3\r\n"
    );
    // Database 0's `k` first: nothing of it may reach the subscriber.
    assert_eq!(w.text(&["SET", "k", "0"]).await, "+OK\r\n");
    assert_eq!(w.text(&["SELECT", "1"]).await, "+OK\r\n");
    assert_eq!(w.text(&["SET", "k", "1"]).await, "+OK\r\n");
    let got: BTreeSet<Vec<u8>> = s.read_replies(2).await.into_iter().collect();
    let want: BTreeSet<Vec<u8>> = [
        b"*3\r\n$7\r\nmessage\r\n$16\r\n__keyspace@1__:k\r\n$3\r\nset\r\n".to_vec(),
        b"*3\r\n$7\r\nmessage\r\n$18\r\n__keyevent@1__:set\r\n$1\r\nk\r\n".to_vec(),
    ]
    .into();
    assert_eq!(got, want);
    assert_eq!(w.text(&["SELECT", "2"]).await, "+OK\r\n");
    assert_eq!(w.text(&["DEL", "nothing", "k2"]).await, ":0\r\n");
    assert_eq!(w.text(&["LPUSH", "k2", "x"]).await, ":1\r\n");
    assert_eq!(
        s.read_replies(1).await[0],
        b"*4\r\n$8\r\npmessage\r\n$16\r\n__keyspace@2__:*\r\n$17\r\n__keyspace@2__:k2\r\n$5\r\nlpush\r\n"
    );
    // Unsubscribing database 1's event channel keeps the keyspace one.
    assert_eq!(
        s.text(&["UNSUBSCRIBE", "__keyevent@1__:set"]).await,
        "*3\r\n$11\r\nunsubscribe\r\n$18\r\n__keyevent@1__:set\r\n:2\r\n"
    );
    assert_eq!(w.text(&["SELECT", "1"]).await, "+OK\r\n");
    assert_eq!(w.text(&["DEL", "k"]).await, ":1\r\n");
    assert_eq!(s.read_replies(1).await[0], b"*3\r\n$7\r\nmessage\r\n$16\r\n__keyspace@1__:k\r\n$3\r\ndel\r\n");
}

/// Job-queue libraries' own patterns over many keys, unchanged, in a one-slot database (the
/// setting under test: database 1 one-slot, database 0 plain beside it): a Sidekiq-like push
/// (MULTI: SADD queues + LPUSH queue + ZADD schedule) and its retry move script, and a
/// BullMQ-like add-job script over eight declared keys (id counter, job hash, wait list,
/// priority set, meta hash, events stream, marker). In database 0 the same script gets
/// Redis Cluster's CROSSSLOT, which is what a one-slot database is for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_queue_scripts_over_many_keys_run_in_a_one_slot_database() {
    let env = start_with(small(), |c| {
        c.keyspace.databases = 2;
        c.keyspace.one_slot_databases = vec![1];
    })
    .await;
    let mut c = Raw::connect(env.addr()).await;
    assert_eq!(c.text(&["SELECT", "1"]).await, "+OK\r\n");
    // Sidekiq's client push: one transaction over the queue set, the queue and the schedule.
    assert_eq!(c.text(&["MULTI"]).await, "+OK\r\n");
    assert_eq!(c.text(&["SADD", "queues", "default"]).await, "+QUEUED\r\n");
    assert_eq!(c.text(&["LPUSH", "queue:default", "{\"jid\":\"j1\"}"]).await, "+QUEUED\r\n");
    assert_eq!(c.text(&["ZADD", "retry", "10", "{\"jid\":\"j2\"}"]).await, "+QUEUED\r\n");
    assert_eq!(c.text(&["EXEC"]).await, "*3\r\n:1\r\n:1\r\n:1\r\n");
    // Its scheduled-set poller: due jobs move from the sorted set to their queue, atomically.
    let poll = "local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100) \
                for _, job in ipairs(due) do redis.call('ZREM', KEYS[1], job) redis.call('LPUSH', KEYS[2], job) end \
                return #due";
    assert_eq!(c.text(&["EVAL", poll, "2", "retry", "queue:default", "20"]).await, ":1\r\n");
    assert_eq!(
        c.text(&["LRANGE", "queue:default", "0", "-1"]).await,
        "*2\r\n$12\r\n{\"jid\":\"j2\"}\r\n$12\r\n{\"jid\":\"j1\"}\r\n"
    );
    // BullMQ's addJob shape: every key declared, eight of them, each in its own slot on its own.
    let keys = [
        "bull:q:id",
        "bull:q:wait",
        "bull:q:paused",
        "bull:q:meta",
        "bull:q:prioritized",
        "bull:q:events",
        "bull:q:marker",
        "bull:q:1",
    ];
    let slots: BTreeSet<u16> = keys.iter().map(|k| clusterless::slot::slot(k.as_bytes())).collect();
    assert!(slots.len() >= 6, "the keys' own slots differ: {slots:?}");
    let add = "local id = redis.call('INCR', KEYS[1]) \
               redis.call('HSET', KEYS[8], 'name', ARGV[1], 'data', ARGV[2]) \
               if redis.call('HEXISTS', KEYS[4], 'paused') == 1 then redis.call('LPUSH', KEYS[3], id) \
               else redis.call('LPUSH', KEYS[2], id) end \
               redis.call('ZADD', KEYS[5], 0, id) \
               redis.call('XADD', KEYS[6], '*', 'event', 'added', 'jobId', id) \
               redis.call('ZADD', KEYS[7], 0, '0') \
               return id";
    let mut cmd = vec!["EVAL", add, "8"];
    cmd.extend(keys);
    cmd.extend(["email", "{}"]);
    assert_eq!(c.text(&cmd).await, ":1\r\n");
    assert_eq!(c.text(&cmd).await, ":2\r\n");
    assert_eq!(c.text(&["LRANGE", "bull:q:wait", "0", "-1"]).await, "*2\r\n$1\r\n2\r\n$1\r\n1\r\n");
    assert_eq!(c.text(&["XLEN", "bull:q:events"]).await, ":2\r\n");
    assert_eq!(c.text(&["HGET", "bull:q:1", "name"]).await, "$5\r\nemail\r\n");
    // All of it on one master, under database 1's tag.
    let on_nodes = stored(&env).await;
    let masters: BTreeSet<u16> = on_nodes.iter().map(|(p, _)| *p).collect();
    assert_eq!(masters.len(), 1, "{on_nodes:?}");
    assert!(on_nodes.iter().all(|(_, k)| k.starts_with("{__db1}:")), "{on_nodes:?}");
    assert_eq!(on_nodes.len(), 8, "{on_nodes:?}");
    // The same script in the plain database 0: the cluster's refusal.
    assert_eq!(c.text(&["SELECT", "0"]).await, "+OK\r\n");
    assert_eq!(c.text(&cmd).await, "-CROSSSLOT Keys in request don't hash to the same slot\r\n");
}
