//! Stateful commands through the proxy on real clusters: transactions (default and per-shard),
//! blocking commands (exactly-once pops across slots, timeouts, clients that leave mid-block),
//! pub/sub through a failover, NOSCRIPT reload, WAIT and RESP3 replies.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use clusterless::config::CrossSlot;
use common::*;

fn b(s: &str) -> &[u8] {
    s.as_bytes()
}

/// Two keys in different slots owned by different masters.
fn keys_on_two_masters(env: &Env) -> (String, String) {
    let masters = env.cluster.masters();
    let a = key_in_slot(env.cluster.slots_of(masters[0])[0], "ka");
    let b = key_in_slot(env.cluster.slots_of(masters[1])[0], "kb");
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_slot_transactions_behave_as_on_redis() {
    let env = start(small()).await;
    let mut c = Raw::connect(env.addr()).await;
    // Queued replies, then EXEC's array.
    c.send(b"MULTI\r\nSET {t}a 1\r\nINCR {t}a\r\nGET {t}a\r\nEXEC\r\n").await;
    let r = c.read_replies(5).await;
    assert_eq!(r[0], b"+OK\r\n");
    assert_eq!(r[1], b"+QUEUED\r\n");
    assert_eq!(r[4], b"*3\r\n+OK\r\n:2\r\n$1\r\n2\r\n");
    // A queue-time error discards the transaction; nothing ran.
    c.send(b"MULTI\r\nSET {t}b 1\r\nGET\r\nEXEC\r\nEXISTS {t}b\r\n").await;
    let r = c.read_replies(5).await;
    assert_eq!(r[2], b"-ERR wrong number of arguments for 'get' command\r\n");
    assert_eq!(r[3], b"-EXECABORT Transaction discarded because of previous errors.\r\n");
    assert_eq!(r[4], b":0\r\n");
    // Exec-time errors stay inside the array, the rest runs.
    c.send(b"MULTI\r\nSET {t}s x\r\nINCR {t}s\r\nSET {t}c 1\r\nEXEC\r\n").await;
    let r = c.read_replies(5).await;
    assert!(r[4].starts_with(b"*3\r\n+OK\r\n-ERR value is not an integer"), "{:?}", String::from_utf8_lossy(&r[4]));
    assert_eq!(c.cmd(&[b"EXEC"]).await, b"-ERR EXEC without MULTI\r\n");
    assert_eq!(c.cmd(&[b"DISCARD"]).await, b"-ERR DISCARD without MULTI\r\n");
    c.send(b"MULTI\r\nMULTI\r\nDISCARD\r\n").await;
    let r = c.read_replies(3).await;
    assert_eq!(r[1], b"-ERR MULTI calls can not be nested\r\n");
    assert_eq!(r[2], b"+OK\r\n");

    // WATCH: a change by another client between WATCH and EXEC aborts with a nil reply.
    let mut other = env.conn().await;
    assert_eq!(c.cmd(&[b"WATCH", b"{t}w"]).await, b"+OK\r\n");
    let _: () = redis::cmd("SET").arg("{t}w").arg("changed").query_async(&mut other).await.unwrap();
    c.send(b"MULTI\r\nSET {t}w mine\r\nEXEC\r\n").await;
    assert_eq!(c.read_replies(3).await[2], b"*-1\r\n");
    let v: String = redis::cmd("GET").arg("{t}w").query_async(&mut other).await.unwrap();
    assert_eq!(v, "changed");
    // Unchanged: EXEC runs.
    assert_eq!(c.cmd(&[b"WATCH", b"{t}w"]).await, b"+OK\r\n");
    c.send(b"MULTI\r\nSET {t}w mine\r\nEXEC\r\n").await;
    assert_eq!(c.read_replies(3).await[2], b"*1\r\n+OK\r\n");

    // Keys of several slots: CROSSSLOT when queued, EXECABORT at EXEC, as Redis Cluster.
    let (ka, kb) = keys_on_two_masters(&env);
    c.send(&clusterless::resp::encode_command(&[b"MULTI"])).await;
    c.send(&clusterless::resp::encode_command(&[b"SET", b(&ka), b"1"])).await;
    c.send(&clusterless::resp::encode_command(&[b"SET", b(&kb), b"1"])).await;
    c.send(&clusterless::resp::encode_command(&[b"EXEC"])).await;
    let r = c.read_replies(4).await;
    assert_eq!(r[1], b"+QUEUED\r\n");
    assert_eq!(r[2], b"-CROSSSLOT Keys in request don't hash to the same slot\r\n");
    assert_eq!(r[3], b"-EXECABORT Transaction discarded because of previous errors.\r\n");
    let n: i64 = redis::cmd("EXISTS").arg(&ka).query_async(&mut other).await.unwrap();
    assert_eq!(n, 0, "nothing of an aborted transaction ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_shard_transactions_run_on_every_node_in_order() {
    let env = start_with(small(), |cfg| cfg.transactions.cross_slot = CrossSlot::PerShard).await;
    let (ka, kb) = keys_on_two_masters(&env);
    // A second slot of the first key's master: a node runs one block per slot.
    let ka2 = key_in_slot(env.cluster.slots_of(env.cluster.masters()[0])[1], "ka2");
    let mut c = Raw::connect(env.addr()).await;
    let cmds: Vec<Vec<&[u8]>> = vec![
        vec![b"MULTI"],
        vec![b"SET", b(&ka), b"1"],
        vec![b"SET", b(&kb), b"2"],
        vec![b"INCR", b(&ka)],
        vec![b"GET", b(&kb)],
        vec![b"PING"],
        vec![b"INCRBY", b(&ka2), b"5"],
        vec![b"EXEC"],
    ];
    for cmd in &cmds {
        c.send(&clusterless::resp::encode_command(cmd)).await;
    }
    let r = c.read_replies(cmds.len()).await;
    assert_eq!(r[7], b"*6\r\n+OK\r\n+OK\r\n:2\r\n$1\r\n2\r\n+PONG\r\n:5\r\n", "{}", String::from_utf8_lossy(&r[7]));
    // The writes landed on their owners.
    let mut na = env.node(env.cluster.masters()[0]).await;
    let v: String = redis::cmd("GET").arg(&ka).query_async(&mut na).await.unwrap();
    assert_eq!(v, "2");

    // WATCH on two nodes: a change on either aborts the whole transaction, nothing runs.
    let mut other = env.conn().await;
    c.send(&clusterless::resp::encode_command(&[b"WATCH", b(&ka), b(&kb)])).await;
    assert_eq!(c.read_replies(1).await[0], b"+OK\r\n");
    let _: () = redis::cmd("SET").arg(&kb).arg("x").query_async(&mut other).await.unwrap();
    for cmd in [vec![b"MULTI".as_ref()], vec![b"SET", b(&ka), b"watched"], vec![b"EXEC"]] {
        c.send(&clusterless::resp::encode_command(&cmd)).await;
    }
    assert_eq!(c.read_replies(3).await[2], b"*-1\r\n");
    let v: String = redis::cmd("GET").arg(&ka).query_async(&mut other).await.unwrap();
    assert_eq!(v, "2", "the other node's part did not run either");
}

/// Celery's shape: a queue and its priority sub-queues, each in its own slot.
fn queues() -> Vec<String> {
    let q = vec!["celery".to_string(), "celery\x06\x163".into(), "celery\x06\x166".into(), "celery\x06\x169".into()];
    let slots: HashSet<u16> = q.iter().map(|k| clusterless::slot::slot(k.as_bytes())).collect();
    assert_eq!(slots.len(), 4, "the queues hash to different slots");
    q
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_slot_brpop_delivers_every_element_exactly_once() {
    let env = start(small()).await;
    let q = queues();
    let producers = 3;
    let per_producer = 300;
    let consumers = 4;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut handles = Vec::new();
    for _ in 0..consumers {
        let url = env.url();
        let q = q.clone();
        let done = done.clone();
        handles.push(tokio::spawn(async move {
            let mut c = client_conn(&url).await;
            let mut got: Vec<String> = Vec::new();
            loop {
                let r: Option<(String, String)> = redis::cmd("BRPOP").arg(&q).arg(1).query_async(&mut c).await.unwrap();
                match r {
                    Some((key, v)) => {
                        assert!(v.starts_with(&format!("{key}|")), "{v} came from {key}");
                        got.push(v);
                    }
                    None if done.load(std::sync::atomic::Ordering::SeqCst) => return got,
                    None => {}
                }
            }
        }));
    }
    let mut pushers = Vec::new();
    for pi in 0..producers {
        let url = env.url();
        let q = q.clone();
        pushers.push(tokio::spawn(async move {
            let mut c = client_conn(&url).await;
            for i in 0..per_producer {
                let key = &q[(i + pi) % q.len()];
                let _: i64 =
                    redis::cmd("LPUSH").arg(key).arg(format!("{key}|{pi}:{i}")).query_async(&mut c).await.unwrap();
                if i % 50 == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    for p in pushers {
        p.await.unwrap();
    }
    // Let the consumers empty the queues, then let them stop at their next timeout.
    let mut c = env.conn().await;
    for _ in 0..200 {
        let mut left = 0;
        for k in &q {
            let n: i64 = redis::cmd("LLEN").arg(k).query_async(&mut c).await.unwrap();
            left += n;
        }
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut all: Vec<String> = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "no element delivered twice");
    assert_eq!(all.len(), producers * per_producer, "every element delivered");
    for k in &q {
        let n: i64 = redis::cmd("LLEN").arg(k).query_async(&mut c).await.unwrap();
        assert_eq!(n, 0, "{k:?} is empty: nothing pushed back and left behind");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_pops_honour_timeouts_order_and_disconnects() {
    let env = start(small()).await;
    let q = queues();
    let mut c = env.conn().await;
    // The first non-empty key in argument order wins, as on one server.
    let _: i64 = redis::cmd("RPUSH").arg(&q[2]).arg("two").query_async(&mut c).await.unwrap();
    let _: i64 = redis::cmd("RPUSH").arg(&q[1]).arg("one").query_async(&mut c).await.unwrap();
    let r: (String, String) = redis::cmd("BLPOP").arg(&q).arg(1).query_async(&mut c).await.unwrap();
    assert_eq!(r, (q[1].clone(), "one".to_string()));
    let _: i64 = redis::cmd("DEL").arg(&q).query_async(&mut c).await.unwrap();

    // Nothing to pop: nil after the timeout, not before.
    let t = std::time::Instant::now();
    let r: Option<(String, String)> = redis::cmd("BLPOP").arg(&q).arg(1).query_async(&mut c).await.unwrap();
    assert!(r.is_none());
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(950) && took < Duration::from_secs(4), "{took:?}");

    // A push from another connection wakes a cross-slot BLPOP.
    let url = env.url();
    let key = q[3].clone();
    let pusher = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut c = client_conn(&url).await;
        let _: i64 = redis::cmd("LPUSH").arg(&key).arg("late").query_async(&mut c).await.unwrap();
    });
    let r: (String, String) = redis::cmd("BLPOP").arg(&q).arg(0).query_async(&mut c).await.unwrap();
    assert_eq!(r, (q[3].clone(), "late".to_string()));
    pusher.await.unwrap();

    // BZPOPMIN across slots, same shape as on one server.
    let _: i64 = redis::cmd("ZADD").arg("z{1}").arg(2.5).arg("m").query_async(&mut c).await.unwrap();
    let r: (String, String, f64) =
        redis::cmd("BZPOPMIN").arg("z{0}").arg("z{1}").arg(1).query_async(&mut c).await.unwrap();
    assert_eq!(r, ("z{1}".to_string(), "m".to_string(), 2.5));

    // Requests sent while a pop blocks wait their turn; the pop is not cut short by them.
    let mut raw = Raw::connect(env.addr()).await;
    let t = std::time::Instant::now();
    raw.send(b"BLPOP {p}q 1\r\n").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    raw.send(b"PING\r\n").await;
    assert_eq!(raw.read_replies(2).await, vec![b"*-1\r\n".to_vec(), b"+PONG\r\n".to_vec()]);
    assert!(t.elapsed() >= Duration::from_millis(950));

    // A client that leaves mid-block frees its node connection and pops nothing afterwards.
    let mut raw = Raw::connect(env.addr()).await;
    raw.send(&clusterless::resp::encode_command(&[b"BLPOP".as_ref(), b"gone{x}", b"0"])).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let owner = env.cluster.slot_owner(clusterless::slot::slot(b"gone{x}")).unwrap();
    let blocked = |cluster: &clusterless::localcluster::LocalCluster| {
        cluster.cli(owner, &["CLIENT", "LIST"]).unwrap().lines().filter(|l| l.contains("cmd=blpop")).count()
    };
    assert_eq!(blocked(&env.cluster), 1, "the pop blocks on the key's master");
    drop(raw);
    let mut freed = false;
    for _ in 0..50 {
        if blocked(&env.cluster) == 0 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(freed, "the node connection of a departed client is closed");
    let _: i64 = redis::cmd("LPUSH").arg("gone{x}").arg("kept").query_async(&mut c).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let n: i64 = redis::cmd("LLEN").arg("gone{x}").query_async(&mut c).await.unwrap();
    assert_eq!(n, 1, "no ghost pop took the element");

    // Cross-slot BLMOVE cannot be atomic: refused like Redis Cluster does.
    let e = redis::cmd("BLMOVE").arg("a{1}").arg("b{2}").arg("LEFT").arg("LEFT").arg(1).query_async::<()>(&mut c).await;
    assert!(format!("{:?}", e.unwrap_err()).to_lowercase().contains("crossslot"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_keeps_receiving_through_a_failover() {
    let mut env = start(with_replicas()).await;
    let mut sub = Raw::connect(env.addr()).await;
    let r = sub.cmd(&[b"SUBSCRIBE", b"news"]).await;
    assert_eq!(r, b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n");
    assert_eq!(
        sub.cmd(&[b"GET", b"x"]).await,
        b"-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n"
    );
    let mut c = env.conn().await;
    let n: i64 = redis::cmd("PUBLISH").arg("news").arg("before").query_async(&mut c).await.unwrap();
    assert!(n <= 1);
    let m = sub.read_replies(1).await;
    assert_eq!(m[0], b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$6\r\nbefore\r\n");
    let nums: Vec<redis::Value> = redis::cmd("PUBSUB").arg("NUMSUB").arg("news").query_async(&mut c).await.unwrap();
    assert_eq!(nums.len(), 2);
    assert_eq!(nums[1], redis::Value::Int(1), "NUMSUB counts over the whole cluster");

    // Kill the master holding the subscription.
    let holder = env
        .cluster
        .masters()
        .into_iter()
        .find(|&m| env.cluster.cli(m, &["CLIENT", "LIST"]).unwrap().lines().any(|l| l.contains("sub=1")))
        .expect("the subscription sits on a master");
    env.cluster.kill9(holder).unwrap();
    let t = std::time::Instant::now();
    let mut received = false;
    let mut i = 0;
    while t.elapsed() < Duration::from_secs(40) && !received {
        i += 1;
        let _ = redis::cmd("PUBLISH").arg("news").arg(format!("after{i}")).query_async::<i64>(&mut c).await;
        let mut buf = vec![0u8; 4096];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(300), tokio::io::AsyncReadExt::read(&mut sub.stream, &mut buf))
                .await
        {
            received = n > 0 && String::from_utf8_lossy(&buf[..n]).contains("after");
        }
    }
    assert!(received, "messages arrive again after the failover");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_reload_on_noscript_and_wait_counts_replicas() {
    let env = start(with_replicas()).await;
    let mut c = env.conn().await;
    let body = "return redis.call('GET', KEYS[1])";
    let sha: String = redis::cmd("SCRIPT").arg("LOAD").arg(body).query_async(&mut c).await.unwrap();
    let _: () = redis::cmd("SET").arg("sk").arg("v").query_async(&mut c).await.unwrap();
    // The key's master forgets the script (as a master added or promoted later would not have it).
    let owner = env.cluster.slot_owner(clusterless::slot::slot(b"sk")).unwrap();
    env.cluster.cli(owner, &["SCRIPT", "FLUSH"]).unwrap();
    let v: String = redis::cmd("EVALSHA").arg(&sha).arg(1).arg("sk").query_async(&mut c).await.unwrap();
    assert_eq!(v, "v", "reloaded on NOSCRIPT and retried");
    // Cross-slot scripts cannot run on a cluster.
    let e = redis::cmd("EVALSHA").arg(&sha).arg(2).arg("sk").arg("other").query_async::<()>(&mut c).await;
    assert!(format!("{:?}", e.unwrap_err()).to_lowercase().contains("crossslot"));
    // SCRIPT FLUSH through the proxy: the script is gone for good.
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query_async(&mut c).await.unwrap();
    let e = redis::cmd("EVALSHA").arg(&sha).arg(1).arg("sk").query_async::<String>(&mut c).await;
    assert!(format!("{:?}", e.unwrap_err()).to_lowercase().contains("noscript"));

    // WAIT: each master has one replica, which catches up.
    let _: () = redis::cmd("SET").arg("w").arg("1").query_async(&mut c).await.unwrap();
    let n: i64 = redis::cmd("WAIT").arg(1).arg(2000).query_async(&mut c).await.unwrap();
    assert_eq!(n, 1);
    let n: i64 = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap();
    assert_eq!(n, 2, "WAIT's marker write leaves nothing behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp3_clients_get_resp3_replies_and_pushes() {
    let env = start(small()).await;
    let mut c = Raw::connect(env.addr()).await;
    let hello = c.cmd(&[b"HELLO", b"3"]).await;
    assert!(hello.starts_with(b"%7\r\n"));
    c.cmd(&[b"HSET", b"h", b"f", b"v"]).await;
    assert_eq!(c.cmd(&[b"HGETALL", b"h"]).await, b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n");
    c.cmd(&[b"SADD", b"s", b"m"]).await;
    assert_eq!(c.cmd(&[b"SMEMBERS", b"s"]).await, b"~1\r\n$1\r\nm\r\n");
    c.cmd(&[b"ZADD", b"z", b"1.5", b"m"]).await;
    assert_eq!(c.cmd(&[b"ZSCORE", b"z", b"m"]).await, b",1.5\r\n");
    assert_eq!(c.cmd(&[b"GET", b"missing"]).await, b"_\r\n");
    assert_eq!(c.cmd(&[b"MGET", b"missing", b"h2"]).await, b"*2\r\n_\r\n_\r\n");
    // Subscribed RESP3 clients get pushes and may still run any command.
    assert_eq!(c.cmd(&[b"SUBSCRIBE", b"ch"]).await, b">3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n");
    assert_eq!(c.cmd(&[b"GET", b"missing"]).await, b"_\r\n");
    let mut p = env.conn().await;
    let _: i64 = redis::cmd("PUBLISH").arg("ch").arg("hi").query_async(&mut p).await.unwrap();
    assert_eq!(c.read_replies(1).await[0], b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n");
    assert_eq!(c.cmd(&[b"RESET"]).await, b"+RESET\r\n");
    assert_eq!(c.cmd(&[b"GET", b"missing"]).await, b"$-1\r\n", "RESET returns to RESP2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_style_users_from_config() {
    let env = start_with(small(), |cfg| cfg.auth.users = vec![("app".into(), "s3cret".into())]).await;
    let mut c = Raw::connect(env.addr()).await;
    assert_eq!(c.cmd(&[b"GET", b"k"]).await, b"-NOAUTH Authentication required.\r\n");
    assert_eq!(
        c.cmd(&[b"AUTH", b"s3cret"]).await,
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(
        c.cmd(&[b"AUTH", b"app", b"nope"]).await,
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    let hello = c.cmd(&[b"HELLO", b"3", b"AUTH", b"app", b"s3cret", b"SETNAME", b"worker"]).await;
    assert!(hello.starts_with(b"%7\r\n"), "{}", String::from_utf8_lossy(&hello));
    assert_eq!(c.cmd(&[b"CLIENT", b"GETNAME"]).await, b"$6\r\nworker\r\n");
    assert_eq!(c.cmd(&[b"GET", b"k"]).await, b"_\r\n");
    assert_eq!(c.cmd(&[b"CLIENT", b"NO-EVICT", b"on"]).await, b"+OK\r\n");
    assert!(c
        .cmd(&[b"CLIENT", b"TRACKING", b"on"])
        .await
        .starts_with(b"-ERR 'CLIENT TRACKING' is not available through clusterless: client-side caching"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_subscriber_follows_its_channel_slot_to_a_new_master() {
    let env = start(small()).await;
    let ch = "orders";
    let s = clusterless::slot::slot(ch.as_bytes());
    let from = env.cluster.slot_owner(s).unwrap();
    let to = env.cluster.masters().into_iter().find(|&m| m != from).unwrap();
    let mut sub = Raw::connect(env.addr()).await;
    assert_eq!(sub.cmd(&[b"SSUBSCRIBE", b(ch)]).await, b"*3\r\n$10\r\nssubscribe\r\n$6\r\norders\r\n:1\r\n");
    let mut c = env.conn().await;
    let _: i64 = redis::cmd("SPUBLISH").arg(ch).arg("m0").query_async(&mut c).await.unwrap();
    assert_eq!(sub.read_replies(1).await[0], b"*3\r\n$8\r\nsmessage\r\n$6\r\norders\r\n$2\r\nm0\r\n");

    tokio::task::block_in_place(|| {
        env.cluster.migrate_slot_manual_begin(s, from, to).unwrap();
        env.cluster.migrate_slot_manual_finish(s, from, to).unwrap();
    });
    // Published on the new owner, the messages reach the client without it doing anything.
    let t = std::time::Instant::now();
    let mut received = false;
    let mut i = 0;
    while t.elapsed() < Duration::from_secs(20) && !received {
        i += 1;
        let _ = redis::cmd("SPUBLISH").arg(ch).arg(format!("m{i}")).query_async::<i64>(&mut c).await;
        let mut buf = vec![0u8; 4096];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(200), tokio::io::AsyncReadExt::read(&mut sub.stream, &mut buf))
                .await
        {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            assert!(!text.contains("sunsubscribe"), "the node's unsubscribe is not passed on: {text:?}");
            received = text.contains("smessage");
        }
    }
    assert!(received, "shard messages arrive from the slot's new master");
    // The map may still move while the claims of the two nodes settle: the subscription ends up
    // on the new owner.
    eventually("subscribed on the new owner", || {
        let on_new = env.cluster.cli(to, &["PUBSUB", "SHARDNUMSUB", ch]).unwrap_or_default();
        on_new.lines().nth(1) == Some("1")
    })
    .await;
}
