//! The retry and redirect policy (README, "Topology and failures"): TRYAGAIN, CLUSTERDOWN and
//! LOADING retried within `backend.retry_budget_ms`, at most `backend.max_redirects` MOVED/ASK
//! hops, the refreshes a burst of MOVED costs, the slot map settled by majority at bootstrap and at
//! refresh, a request for a master that is gone held at most `topology.failover_hold_ms` and then
//! answered with an error, a slot nobody claims answered `-CLUSTERDOWN Hash slot not served`, and
//! subscriptions moved off a node removed from the cluster.
//!
//! Real clusters wherever one can be made to answer what the claim is about; the scripted fake
//! node (tests/common/fake.rs) only for LOADING on demand, MOVED and ASK loops between two nodes,
//! and nodes that disagree about the map, which no real cluster produces on request.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clusterless::resp::encode_command;
use common::fake::{id_of, Fake, Script};
use common::*;

/// Slack on top of a documented bound for scheduling on a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(1);

const LOADING: &str = "-LOADING Redis is loading the dataset in memory\r\n";

fn bulk(s: &str) -> String {
    format!("${}\r\n{s}\r\n", s.len())
}

fn is_get(args: &[Vec<u8>]) -> bool {
    args.first().is_some_and(|a| a.eq_ignore_ascii_case(b"GET"))
}

/// A proxy with the shipped defaults in front of fake nodes (`seeds`), `tweak` applied.
async fn proxy_for(seeds: &[&Fake], tweak: impl FnOnce(&mut clusterless::config::Config)) -> clusterless::Running {
    init_logs();
    let mut cfg = shipped_config(seeds[0].addr());
    cfg.seeds = seeds.iter().map(|f| f.addr()).collect();
    tweak(&mut cfg);
    clusterless::start(cfg).await.expect("start proxy")
}

/// LOADING (fake node: a real node answers LOADING only while it loads its dataset at start-up,
/// for a time the test cannot choose; the real-cluster test of the same retry loop is
/// `tryagain_is_retried_until_the_migration_ends_or_the_budget_runs_out` below, TRYAGAIN and
/// LOADING being one branch of `route::retry`). A GET answered LOADING three times is sent again
/// until the value comes; one answered LOADING for ever gets the node's LOADING error once the
/// retry budget (3 s shipped) is spent, after a handful of paced attempts, not thousands. The
/// admin endpoint is on (port 0) only so that `retries_total` and `requests_held_total` can be read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loading_is_retried_within_the_retry_budget() {
    let mut node = Fake::bind(&id_of('a')).await;
    let warm = Arc::new(AtomicU64::new(0));
    let cold = Arc::new(AtomicU64::new(0));
    let (w, c) = (warm.clone(), cold.clone());
    let script: Script = Arc::new(move |args, _| {
        if !is_get(args) {
            return None;
        }
        match args.get(1).map(Vec::as_slice) {
            Some(b"warm") => {
                let n = w.fetch_add(1, Ordering::SeqCst) + 1;
                Some(if n <= 3 { LOADING.as_bytes().to_vec() } else { b"$5\r\nready\r\n".to_vec() })
            }
            Some(b"cold") => {
                c.fetch_add(1, Ordering::SeqCst);
                Some(LOADING.as_bytes().to_vec())
            }
            _ => None,
        }
    });
    let view = vec![node.member(&[(0, 16383)])];
    node.serve(view, script);
    let proxy = proxy_for(&[&node], common::http::admin_on).await;
    let budget = proxy.config().backend.retry_budget;
    let admin = proxy.admin_addr().expect("admin endpoint");
    let mut c = Raw::connect(proxy.addr()).await;

    let before = common::http::scrape(admin).await;
    assert_eq!(c.text(&["GET", "warm"]).await, "$5\r\nready\r\n");
    assert_eq!(warm.load(Ordering::SeqCst), 4, "three LOADING answers, then the value: four GETs");
    let after = common::http::scrape(admin).await;
    let delta = |k: &str| common::http::get(&after, k) - common::http::get(&before, k);
    assert_eq!(delta("clusterless_retries_total"), 3.0, "sent again three times");
    assert_eq!(delta("clusterless_requests_held_total"), 1.0, "one request waited for the cluster");

    let t = Instant::now();
    assert_eq!(c.text(&["GET", "cold"]).await, LOADING);
    let took = t.elapsed();
    assert!(took >= budget && took < budget + SLACK, "LOADING returned after the retry budget {budget:?}: {took:?}");
    // Backoff doubling from a few ms to 200 ms fits about twenty attempts in 3 s; no retry gives
    // 1, a retry without pause thousands.
    let tries = cold.load(Ordering::SeqCst);
    assert!((5..=60).contains(&tries), "paced retries within the budget: {tries} GETs");
    assert_eq!(c.text(&["PING"]).await, "+PONG\r\n", "the connection stays usable");
}

/// A MOVED loop and an ASK loop (fake nodes: real nodes agree on a slot's owner within a gossip round and never
/// send a request back and forth; the real-cluster MOVED path is `a_burst_of_moved_is_coalesced_into_few_refreshes`
/// below and `transactions_are_sent_again_after_moved_and_ask` in tests/stateful.rs). Two nodes
/// answer every GET with MOVED (or, for one key, ASK) to each other: the request ends after
/// `max_redirects` hops (5 shipped: 6 GETs in all) with the last redirect, promptly; with
/// `max_redirects = 1` (the setting under test), after 2 GETs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_loop_ends_after_max_redirects() {
    let mut a = Fake::bind(&id_of('a')).await;
    let mut b = Fake::bind(&id_of('b')).await;
    // Both nodes are members (B without slots): a MOVED or ASK to a node the cluster does not
    // list would be refused by the proxy's identity check, not followed.
    let view = vec![a.member(&[(0, 16383)]), b.member(&[])];
    // GET askloop is answered ASK to the other node, every other GET MOVED to it.
    let moved_to = |port: u16| -> Script {
        Arc::new(move |args, _| {
            if !is_get(args) {
                return None;
            }
            let key = args.get(1)?;
            let kind = if key == b"askloop" { "ASK" } else { "MOVED" };
            Some(format!("-{kind} {} 127.0.0.1:{port}\r\n", clusterless::slot::slot(key)).into_bytes())
        })
    };
    a.serve(view.clone(), moved_to(b.port));
    b.serve(view, moved_to(a.port));
    let slot = clusterless::slot::slot(b"loop");
    let (to_a, to_b) =
        (format!("-MOVED {slot} 127.0.0.1:{}\r\n", a.port), format!("-MOVED {slot} 127.0.0.1:{}\r\n", b.port));
    let gets = || a.count("GET") + b.count("GET");

    let proxy = proxy_for(&[&a], |_| {}).await;
    let max = proxy.config().backend.max_redirects as u64;
    assert_eq!(max, 5, "the shipped default");
    let mut c = Raw::connect(proxy.addr()).await;
    let t = Instant::now();
    let got = c.text(&["GET", "loop"]).await;
    let took = t.elapsed();
    assert!(got == to_a || got == to_b, "the last MOVED is the answer: {got:?}");
    assert_eq!(gets(), max + 1, "one GET and {max} redirected ones");
    assert!(took < SLACK, "MOVED is followed without waiting: {took:?}");

    // ASK hops count too, and ASK leaves the map alone: A (the map's owner) answers first, so the
    // sixth GET, the last, goes to B, whose ASK back to A is the answer.
    let (before, asking) = (gets(), a.count("ASKING") + b.count("ASKING"));
    let s = clusterless::slot::slot(b"askloop");
    assert_eq!(c.text(&["GET", "askloop"]).await, format!("-ASK {s} 127.0.0.1:{}\r\n", a.port));
    assert_eq!(gets() - before, max + 1, "one GET and {max} sent after ASKING");
    assert_eq!(a.count("ASKING") + b.count("ASKING") - asking, max, "one ASKING per hop");
    assert_eq!(proxy.topology().master_for(s), Some(a.addr().as_str()), "ASK leaves the map alone");

    let before = gets();
    let tight = proxy_for(&[&a], |cfg| cfg.backend.max_redirects = 1).await;
    let mut c = Raw::connect(tight.addr()).await;
    let got = c.text(&["GET", "loop"]).await;
    assert!(got == to_a || got == to_b, "the last MOVED is the answer: {got:?}");
    assert_eq!(gets() - before, 2, "max_redirects = 1: one GET and one redirected one");
}

/// Seeds that disagree (fake nodes: a real cluster's nodes converge within a gossip round, so
/// the disagreement cannot be held still for a bootstrap; every real-cluster test bootstraps
/// through the same `poll::fetch`, where all seeds agree). Two of three seeds say slots 0-8191
/// are A's and 8192-16383 B's; the third says it owns everything. The map taken is the
/// majority's, whether the dissenting seed is listed first or last, and requests go there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_takes_the_majoritys_map() {
    let mut a = Fake::bind(&id_of('a')).await;
    let mut b = Fake::bind(&id_of('b')).await;
    let mut d = Fake::bind(&id_of('d')).await;
    let majority = vec![a.member(&[(0, 8191)]), b.member(&[(8192, 16383)])];
    let dissent = vec![d.member(&[(0, 16383)])];
    let says =
        |name: &'static str| -> Script { Arc::new(move |args, _| is_get(args).then(|| bulk(name).into_bytes())) };
    a.serve(majority.clone(), says("A"));
    // The fake names itself as it announces itself (the proxy may check a node's identity).
    let mut direct = Raw::connect(common::fake::sock(a.port)).await;
    assert_eq!(direct.text(&["CLUSTER", "MYID"]).await, bulk(&a.id));
    assert!(direct.text(&["CLUSTER", "NODES"]).await.contains(&format!("{} {}@", a.id, a.addr())));
    b.serve(majority, says("B"));
    d.serve(dissent, says("D"));
    let low = key_in_slot(0, "maj-");
    let high = key_in_slot(16383, "maj-");

    for seeds in [[&d, &a, &b], [&a, &b, &d]] {
        let asked = d.count("CLUSTER SHARDS");
        let proxy = proxy_for(&seeds, |_| {}).await;
        assert!(d.count("CLUSTER SHARDS") > asked, "the dissenting seed was asked");
        let t = proxy.topology();
        assert_eq!(t.master_for(0), Some(a.addr().as_str()));
        assert_eq!(t.master_for(8191), Some(a.addr().as_str()));
        assert_eq!(t.master_for(8192), Some(b.addr().as_str()));
        assert_eq!(t.master_for(16383), Some(b.addr().as_str()));
        let mut c = Raw::connect(proxy.addr()).await;
        assert_eq!(c.text(&["GET", &low]).await, bulk("A"));
        assert_eq!(c.text(&["GET", &high]).await, bulk("B"));
    }
    assert_eq!(d.count("GET"), 0, "nothing was sent to the minority's owner");
}

/// Seeds that come to disagree after start-up (fake nodes, for the reason above; the real-cluster
/// refresh through the same `poll::fetch` is `a_burst_of_moved_is_coalesced_into_few_refreshes`
/// with `topology.source = "poll"`). Three seeds agree at start that A owns every slot. One of
/// them then says C owns everything: the proxy keeps polling (the fakes' bus never answers, so
/// the shipped bus observer polls CLUSTER SHARDS every second) and keeps A, the majority's
/// owner. A second one says the same: the majority now names C, and the map and the requests
/// follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_follows_the_majority_not_one_dissenting_node() {
    let mut a = Fake::bind(&id_of('a')).await;
    let mut b = Fake::bind(&id_of('b')).await;
    let mut c = Fake::bind(&id_of('c')).await;
    let owned_by = |owner: &Fake| -> Vec<common::fake::Member> {
        [&a, &b, &c].iter().map(|f| f.member(if f.id == owner.id { &[(0, 16383)] } else { &[] })).collect()
    };
    let (all_a, all_c) = (owned_by(&a), owned_by(&c));
    let says =
        |name: &'static str| -> Script { Arc::new(move |args, _| is_get(args).then(|| bulk(name).into_bytes())) };
    a.serve(all_a.clone(), says("A"));
    b.serve(all_a.clone(), says("B"));
    c.serve(all_a, says("C"));
    let proxy = proxy_for(&[&a, &b, &c], |_| {}).await;
    let key = key_in_slot(7, "maj-r-");
    let mut cl = Raw::connect(proxy.addr()).await;
    assert_eq!(cl.text(&["GET", &key]).await, bulk("A"));

    // One node of three dissents: two whole polls after it changed its view, still A.
    c.set_view(all_c.clone());
    let asked = (a.count("CLUSTER SHARDS"), c.count("CLUSTER SHARDS"));
    eventually("two polls asked both A and the dissenting node", || {
        a.count("CLUSTER SHARDS") >= asked.0 + 2 && c.count("CLUSTER SHARDS") >= asked.1 + 2
    })
    .await;
    assert_eq!(proxy.topology().master_for(7), Some(a.addr().as_str()), "one dissenting node of three");
    assert_eq!(cl.text(&["GET", &key]).await, bulk("A"));

    // Two of three: the majority's owner is C.
    b.set_view(all_c);
    eventually("the map follows the majority", || proxy.topology().master_for(7) == Some(c.addr().as_str())).await;
    assert_eq!(cl.text(&["GET", &key]).await, bulk("C"));
}

/// The number in `INFO errorstats`/`commandstats` line `name:calls=N,...` (or `count=N`) of a node.
fn node_stat(env: &Env, port: u16, section: &str, prefix: &str) -> u64 {
    let info = tokio::task::block_in_place(|| env.cluster.cli(port, &["INFO", section])).expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|rest| rest.split([',', '=']).nth(1))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// TRYAGAIN (real cluster): a slot half migrated, one of two keys of the slot already on the
/// target; MGET of both (one slot, so one MGET sent whole) is refused by the source with TRYAGAIN.
/// While the migration stays half done, the proxy sends it again until the retry budget (3 s
/// shipped) is spent, then answers the node's TRYAGAIN; when the migration finishes within the
/// budget, the retried MGET follows the MOVED and answers both values. The admin endpoint is on
/// (port 0) only so that the proxy's redirect counters can be read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tryagain_is_retried_until_the_migration_ends_or_the_budget_runs_out() {
    let env = start_with(small(), common::http::admin_on).await;
    let budget = env.proxy.config().backend.retry_budget;
    let m = env.cluster.masters();
    let (from, to) = (m[0], m[2]);
    let slot = env.cluster.slots_of(from)[11];
    let (ka, kb) = (key_in_slot(slot, "tra-"), key_in_slot(slot, "trb-"));
    let mut c = Raw::connect(env.addr()).await;
    assert_eq!(c.text(&["SET", &ka, "1"]).await, "+OK\r\n");
    assert_eq!(c.text(&["SET", &kb, "2"]).await, "+OK\r\n");
    tokio::task::block_in_place(|| env.cluster.migrate_slot_manual_begin(slot, from, to)).expect("migrate half");
    let on_target = env.cluster.cli(to, &["CLUSTER", "COUNTKEYSINSLOT", &slot.to_string()]).unwrap();
    assert_eq!(on_target, "1", "one key of the two moved");
    let errorstat = "errorstat_TRYAGAIN:";

    // Still half migrated at the end of the budget: the node's own TRYAGAIN, after several tries.
    let (proxy_seen, node_seen) = (env.proxy.redirects("tryagain"), node_stat(&env, from, "errorstats", errorstat));
    let t = Instant::now();
    let got = c.text(&["MGET", &ka, &kb]).await;
    let took = t.elapsed();
    assert_eq!(got, "-TRYAGAIN Multiple keys request during rehashing of slot\r\n");
    assert!(took >= budget && took < budget + SLACK, "answered after the retry budget {budget:?}: {took:?}");
    let node_count = node_stat(&env, from, "errorstats", errorstat) - node_seen;
    assert!(node_count >= 3, "the source refused it {node_count} times: sent again, not given up at once");
    assert_eq!(env.proxy.redirects("tryagain") - proxy_seen, node_count, "each refusal counted once");

    // The migration finishes while the MGET is being retried: it answers both values.
    let (proxy_seen, node_seen) = (env.proxy.redirects("tryagain"), node_stat(&env, from, "errorstats", errorstat));
    let addr = env.addr();
    let mget = {
        let (ka, kb) = (ka.clone(), kb.clone());
        tokio::spawn(async move {
            let mut c = Raw::connect(addr).await;
            c.text(&["MGET", &ka, &kb]).await
        })
    };
    eventually("the source refused the MGET", || env.proxy.redirects("tryagain") > proxy_seen).await;
    assert!(!mget.is_finished(), "a refused MGET waits for the slot, it is not answered with the refusal");
    tokio::task::block_in_place(|| env.cluster.migrate_slot_manual_finish(slot, from, to)).expect("finish");
    assert_eq!(mget.await.unwrap(), "*2\r\n$1\r\n1\r\n$1\r\n2\r\n");
    assert!(node_stat(&env, from, "errorstats", errorstat) > node_seen);
    assert_eq!(env.cluster.cli(to, &["CLUSTER", "COUNTKEYSINSLOT", &slot.to_string()]).unwrap(), "2");
}

/// Refreshes coalesced for a burst of MOVED (real cluster, `topology.source = "poll"`: with the
/// bus observer the map follows the bus and a MOVED asks no CLUSTER SHARDS while the bus answers,
/// so the refresher is what this claim is about). 200 slots of one master are pointed at another
/// in the proxy's map; 200 pipelined GETs, one per slot, all meet MOVED at once. Each is answered
/// with its value, the proxy counts 200 MOVED, and every master is asked CLUSTER SHARDS (counted
/// by the nodes themselves, `INFO commandstats`) a bounded number of times: not once per MOVED.
///
/// Bound, from first principles: one refresh at the first MOVED, one more for the MOVEDs met while
/// it ran (they may have seen a change it missed), and the requests made during the minimum-gap
/// pause before that second one are answered by it; a burst longer than the gap may buy one more
/// per gap. (Before the refresher dropped requests made during its pause, such a burst cost 2 or
/// 3.) The admin endpoint is on (port 0) only so that the redirect counters can be read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_moved_is_coalesced_into_few_refreshes() {
    let env = start_topo(small(), Topo::Poll, common::http::admin_on).await;
    let m = env.cluster.masters();
    let (owner, wrong) = (m[0], m[1]);
    let wrong_addr = format!("127.0.0.1:{wrong}");
    let slots: Vec<u16> = env.cluster.slots_of(owner).into_iter().take(200).collect();
    let keys: Vec<String> = slots.iter().map(|&s| key_in_slot(s, "mb-")).collect();
    let mut c = Raw::connect(env.addr()).await;
    let sets: Vec<u8> = keys.iter().flat_map(|k| encode_command(&["SET", k, k]).to_vec()).collect();
    c.send(&sets).await;
    assert!(c.read_replies(keys.len()).await.iter().all(|r| r == b"+OK\r\n"));
    let shards = |p: u16| node_stat(&env, p, "commandstats", "cmdstat_cluster|shards:");

    // One MOVED first: its refresh restarts the refresher's periodic timer (10 s), so that no
    // periodic refresh falls into the measurement below.
    let before: u64 = m.iter().map(|&p| shards(p)).sum();
    env.proxy.misroute_slot(slots[0], &wrong_addr);
    assert_eq!(c.text(&["GET", &keys[0]]).await, bulk(&keys[0]));
    eventually("the first MOVED's refresh ran", || m.iter().map(|&p| shards(p)).sum::<u64>() > before).await;

    let base: Vec<u64> = m.iter().map(|&p| shards(p)).collect();
    let moved = env.proxy.redirects("moved");
    for &s in &slots {
        env.proxy.misroute_slot(s, &wrong_addr);
    }
    let gets: Vec<u8> = keys.iter().flat_map(|k| encode_command(&["GET", k]).to_vec()).collect();
    let sent = Instant::now();
    c.send(&gets).await;
    let replies = c.read_replies(keys.len()).await;
    let lasted = sent.elapsed();
    for (k, r) in keys.iter().zip(&replies) {
        assert_eq!(String::from_utf8_lossy(r), bulk(k), "{k} answered after its MOVED");
    }
    assert_eq!(env.proxy.redirects("moved") - moved, 200, "every GET met MOVED");
    // Time passes on purpose: a refresh per MOVED, even paced by the 100 ms minimum gap, would
    // show ten more in this second.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let gap = env.proxy.config().topology.min_refresh_gap;
    let bound = 2 + (lasted.as_millis() / gap.as_millis()) as u64;
    for (&p, b) in m.iter().zip(&base) {
        let n = shards(p) - b;
        assert!(
            (1..=bound).contains(&n),
            "node {p} asked CLUSTER SHARDS {n} times for a burst of 200 MOVED answered in {lasted:?} (bound {bound})"
        );
    }
    let t = env.proxy.topology();
    let owner_addr = format!("127.0.0.1:{owner}");
    assert!(slots.iter().all(|&s| t.master_for(s) == Some(owner_addr.as_str())), "the map is right again");
}

/// Hold expiry (real cluster, shipped defaults, masters without replicas): a master killed with
/// nothing to take over. Once the proxy sees it failing, a request for one of its slots is held
/// for `topology.failover_hold_ms` (5 s) for a new owner that never comes, then answered with the
/// proxy's unreachable error: not earlier (it was held), not later than the bound plus slack.
///
/// CLUSTERDOWN (same cluster): once the live masters declare the dead one failed, the cluster is
/// down (`cluster-require-full-coverage yes`, Redis's default) and they refuse their own slots
/// with `-CLUSTERDOWN The cluster is down`. A request for such a slot is not held (its master is
/// fine) but retried within the retry budget (3 s shipped), then answered with the node's error;
/// the node counts the refusals itself (`INFO errorstats`). The admin endpoint is on (port 0)
/// only so that the proxy's redirect counters can be read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_for_a_master_gone_for_good_is_held_for_the_bound_then_fails() {
    let mut env = start_with(small(), common::http::admin_on).await;
    env.converges("start").await;
    let hold = env.proxy.config().topology.failover_hold;
    assert_eq!(hold, Duration::from_millis(5000), "the shipped default");
    let victim = env.cluster.masters()[1];
    let slot = env.cluster.slots_of(victim)[3];
    let key = key_in_slot(slot, "hold-");
    let mut c = Raw::connect(env.addr()).await;
    assert_eq!(c.text(&["SET", &key, "v"]).await, "+OK\r\n");
    tokio::task::block_in_place(|| env.cluster.kill9(victim)).expect("kill -9");
    let port = format!(":{victim}");
    eventually("the proxy sees the master failing", || {
        env.proxy.topology().nodes.iter().any(|n| n.addr.ends_with(&port) && n.failed)
    })
    .await;

    let t = Instant::now();
    let got = c.text(&["GET", &key]).await;
    let took = t.elapsed();
    let want = format!("-ERR clusterless: master of slot {slot} is unreachable: ");
    assert!(got.starts_with(&want), "{got:?}");
    assert!(took >= hold, "held for the new owner up to {hold:?}, answered after {took:?}");
    assert!(took < hold + SLACK, "held at most {hold:?}: {took:?}");

    let budget = env.proxy.config().backend.retry_budget;
    let live = env.cluster.masters().into_iter().find(|&m| m != victim).expect("a live master");
    let other = key_in_slot(env.cluster.slots_of(live)[3], "down-");
    let down = "-CLUSTERDOWN The cluster is down\r\n";
    let mut n = Raw::connect(common::fake::sock(live)).await;
    let deadline = Instant::now() + PATIENCE;
    while n.text(&["GET", &other]).await != down {
        assert!(Instant::now() < deadline, "the live masters never declared the cluster down");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let errorstat = "errorstat_CLUSTERDOWN:";
    let (proxy_seen, node_seen) = (env.proxy.redirects("clusterdown"), node_stat(&env, live, "errorstats", errorstat));
    let t = Instant::now();
    assert_eq!(c.text(&["GET", &other]).await, down);
    let took = t.elapsed();
    assert!(took >= budget && took < budget + SLACK, "answered after the retry budget {budget:?}: {took:?}");
    let refused = node_stat(&env, live, "errorstats", errorstat) - node_seen;
    assert!(refused >= 3, "the node refused it {refused} times: sent again, not given up at once");
    assert_eq!(env.proxy.redirects("clusterdown") - proxy_seen, refused, "each refusal counted once");
}

/// "Hash slot not served" with `topology.source = "poll"` (real cluster; the bus source, and a
/// proxy started after the slot was dropped, are in tests/commands.rs, `slot_not_served`). Here
/// the proxy's own map loses the slot's owner: only CLUSTER SHARDS answers in which no node
/// claims a slot may do that (README). One slot is deleted from every node's map (CLUSTER
/// DELSLOTS, the owner first; `cluster-require-full-coverage no` so that the nodes keep serving
/// the rest). Its key gets `-CLUSTERDOWN Hash slot not served` within the retry budget, the map
/// then has no owner for that slot (and only that slot), the owner's other slots still work, and
/// once the owner claims the slot again (ADDSLOTS) the key is served again, with its value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_nobody_claims_is_not_served_then_served_again() {
    let env = start_topo(small(), Topo::Poll, |_| {}).await;
    let not_served = "-CLUSTERDOWN Hash slot not served\r\n";
    let budget = env.proxy.config().backend.retry_budget;
    let owner = env.cluster.masters()[1];
    let owned = env.cluster.slots_of(owner);
    let gone = owned[5];
    let (key, other) = (key_in_slot(gone, "ns-"), key_in_slot(owned[6], "ns-"));
    let mut c = Raw::connect(env.addr()).await;
    assert_eq!(c.text(&["SET", &key, "1"]).await, "+OK\r\n");
    let ports = env.cluster.ports();
    tokio::task::block_in_place(|| {
        for &p in &ports {
            env.cluster.cli(p, &["CONFIG", "SET", "cluster-require-full-coverage", "no"]).expect("CONFIG SET");
        }
    });
    let mut order = vec![owner];
    order.extend(ports.iter().copied().filter(|&p| p != owner));
    for p in order {
        let mut n = Raw::connect(common::fake::sock(p)).await;
        let deadline = Instant::now() + PATIENCE;
        loop {
            tokio::task::block_in_place(|| env.cluster.cli(p, &["CLUSTER", "DELSLOTS", &gone.to_string()])).ok();
            let got = n.text(&["GET", &key]).await;
            if got == not_served {
                break;
            }
            assert!(Instant::now() < deadline, "node {p} still serves slot {gone}: {got:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let t = Instant::now();
    assert_eq!(c.text(&["GET", &key]).await, not_served);
    assert!(t.elapsed() < budget + SLACK, "answered within the retry budget: {:?}", t.elapsed());
    eventually("the proxy's map has no owner for the slot", || env.proxy.topology().master_for(gone).is_none()).await;
    assert_eq!(env.proxy.slots_unassigned(), 1, "only the deleted slot lost its owner");
    assert_eq!(env.proxy.topology().uncovered(), 1);
    let t = Instant::now();
    assert_eq!(c.text(&["GET", &key]).await, not_served, "the proxy's own answer, the same text");
    assert!(t.elapsed() < budget + SLACK, "answered within the retry budget: {:?}", t.elapsed());
    assert_eq!(c.text(&["SET", &other, "x"]).await, "+OK\r\n", "the owner's other slots work");

    tokio::task::block_in_place(|| env.cluster.cli(owner, &["CLUSTER", "ADDSLOTS", &gone.to_string()]))
        .expect("ADDSLOTS");
    let mut answers = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let got = c.text(&["GET", &key]).await;
        let done = got == "$1\r\n1\r\n";
        answers.push(got);
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "never served again: {answers:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        answers.iter().all(|a| a == "$1\r\n1\r\n" || a == not_served),
        "only the value or the not-served error meanwhile: {answers:?}"
    );
    assert_eq!(env.proxy.topology().master_for(gone), Some(format!("127.0.0.1:{owner}").as_str()));
}

/// A pub/sub message frame as a RESP2 subscriber gets it.
fn message(ch: &str, payload: &str) -> String {
    format!("*3\r\n{}{}{}", bulk("message"), bulk(ch), bulk(payload))
}

/// Subscribers on `ch` that node `port` itself counts (PUBSUB NUMSUB asked of the node).
fn numsub(env: &Env, port: u16, ch: &str) -> u64 {
    let out = tokio::task::block_in_place(|| env.cluster.cli(port, &["PUBSUB", "NUMSUB", ch])).unwrap_or_default();
    out.lines().nth(1).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
}

/// Reads one frame from `sub` within `limit`: None when nothing came.
async fn next_frame(sub: &mut Raw, limit: Duration) -> Option<String> {
    let frames = tokio::time::timeout(limit, sub.read_replies(1)).await.ok()?;
    assert!(!frames.is_empty(), "the subscriber's connection was closed");
    Some(String::from_utf8_lossy(&frames[0]).into_owned())
}

/// Pub/sub repair when a node leaves the cluster (real cluster): a fourth master, without slots,
/// holds a client's SUBSCRIBE; it is then removed the way operators remove a node,
/// `redis-cli --cluster del-node` (every other node FORGETs it, then it is shut down). The proxy
/// drops it from its map and subscribes again on a member, without the client noticing (no
/// unsubscribe, no error, the connection open); messages published during the gap may be missed
/// (README), those after arrive each once, in order, at every subscriber, and the nodes
/// themselves show where the subscriptions are. (The node dying, and leaving the masters by
/// CLUSTER FAILOVER, are in tests/stateful.rs, `subscriptions_move_when_their_node_leaves_or_dies`.
/// A node FORGOTTEN by the others but left running is not repaired reliably: see the report
/// that came with this test.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_moves_when_its_node_is_removed_from_the_cluster() {
    let mut env = start(small()).await;
    let leaving = tokio::task::block_in_place(|| env.cluster.add_master()).expect("add master");
    let leaving_addr = format!("127.0.0.1:{leaving}");
    eventually("the proxy knows the new master", || env.proxy.topology().masters().contains(&leaving_addr.as_str()))
        .await;
    let ch = "leaving-news";
    let subscribed = format!("*3\r\n{}{}:1\r\n", bulk("subscribe"), bulk(ch));
    // Subscriptions go to the masters in turn: subscribe until one lands on the leaving node.
    let mut subs = Vec::new();
    while numsub(&env, leaving, ch) == 0 {
        assert!(subs.len() < 8, "no subscription went to the new master");
        let mut s = Raw::connect(env.addr()).await;
        assert_eq!(s.text(&["SUBSCRIBE", ch]).await, subscribed);
        subs.push(s);
    }
    let members: Vec<u16> = env.cluster.masters().into_iter().filter(|&m| m != leaving).collect();
    tokio::task::block_in_place(|| env.cluster.remove_node(leaving)).expect("del-node");
    let removed = Instant::now();

    let mut c = Raw::connect(env.addr()).await;
    let sub = subs.last_mut().expect("a subscriber");
    let deadline = removed + PATIENCE;
    'probe: for i in 1.. {
        assert!(
            Instant::now() < deadline,
            "no message reached the subscriber {:?} after its node left",
            removed.elapsed()
        );
        assert!(c.text(&["PUBLISH", ch, &format!("probe-{i}")]).await.starts_with(':'));
        while let Some(f) = next_frame(sub, Duration::from_millis(300)).await {
            let payload = f.rsplit("\r\n").nth(1).unwrap_or_default().to_string();
            assert_eq!(f, message(ch, &payload), "only this channel's messages, no unsubscribe or error");
            if payload.starts_with("probe-") {
                break 'probe;
            }
        }
    }
    eventually("the node that left is out of the proxy's map", || {
        !env.proxy.topology().nodes.iter().any(|n| n.addr == leaving_addr)
    })
    .await;
    let on_members: u64 = members.iter().map(|&m| numsub(&env, m, ch)).sum();
    assert_eq!(on_members, subs.len() as u64, "every subscriber's subscription on a cluster member");
    let want: Vec<String> = (0..3).map(|i| format!("after-{i}")).collect();
    for w in &want {
        assert!(c.text(&["PUBLISH", ch, w]).await.starts_with(':'));
    }
    for s in subs.iter_mut() {
        let mut got = Vec::new();
        while got.len() < want.len() {
            let f = next_frame(s, PATIENCE).await.expect("a message");
            let payload = f.rsplit("\r\n").nth(1).unwrap_or_default().to_string();
            assert_eq!(f, message(ch, &payload));
            if !payload.starts_with("probe-") {
                got.push(payload);
            }
        }
        assert_eq!(got, want, "every message once, in order");
    }
}
