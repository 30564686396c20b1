//! Commands about the server, answered as one server would across the cluster: CONFIG SET on
//! every node (and on nodes that join later), the slow log merged over the masters, SCRIPT EXISTS
//! for what the proxy can run, SCRIPT KILL wherever the script runs.

mod common;

use common::{eventually, key_in_slot, small, start, with_replicas, Raw};

fn config_get(env: &common::Env, port: u16, param: &str) -> String {
    let out = env.cluster.cli(port, &["CONFIG", "GET", param]).expect("CONFIG GET");
    out.lines().nth(1).unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_set_reaches_every_node_and_nodes_that_join() {
    let mut env = start(with_replicas()).await;
    let mut c = Raw::connect(env.addr()).await;
    assert_eq!(c.text(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru", "hz", "17"]).await, "+OK\r\n");
    let ports = env.cluster.ports();
    assert_eq!(ports.len(), 6);
    for &p in &ports {
        assert_eq!(config_get(&env, p, "maxmemory-policy"), "allkeys-lru", "node {p}");
        assert_eq!(config_get(&env, p, "hz"), "17", "node {p}");
    }
    assert_eq!(c.text(&["CONFIG", "GET", "hz"]).await, "*2\r\n$2\r\nhz\r\n$2\r\n17\r\n");

    // A refusal is the node's own error, naming the node; nothing claims success.
    let bad = c.text(&["CONFIG", "SET", "maxmemory-policy", "sometimes"]).await;
    assert!(bad.starts_with("-ERR CONFIG SET failed (possibly related to argument 'maxmemory-policy')"), "{bad}");
    assert!(bad.trim_end().ends_with(')') && bad.contains("(node 127.0.0.1:"), "{bad}");

    // A master that joins later gets what was set through the proxy.
    let new = tokio::task::block_in_place(|| env.cluster.add_master()).expect("add master");
    assert_ne!(config_get(&env, new, "hz"), "", "the new node answers");
    eventually("the joined node has the settings", || {
        config_get(&env, new, "hz") == "17" && config_get(&env, new, "maxmemory-policy") == "allkeys-lru"
    })
    .await;
    assert_eq!(c.text(&["CONFIG", "RESETSTAT"]).await, "+OK\r\n");
}

/// `commands.config_set = "refuse"`: the setting this test is about.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_set_can_be_refused() {
    let env = common::start_with(small(), |c| c.commands.config_set_all_nodes = false).await;
    let mut c = Raw::connect(env.addr()).await;
    let why = "it acts on one server; run it on the cluster's nodes";
    for (args, shown) in
        [(&["CONFIG", "SET", "hz", "17"][..], "CONFIG SET"), (&["config", "rewrite"], "CONFIG REWRITE")]
    {
        let want = format!("-ERR '{shown}' is not available through clusterless: {why}\r\n");
        assert_eq!(c.text(args).await, want);
    }
    for &p in &env.cluster.ports() {
        assert_eq!(config_get(&env, p, "hz"), "10", "node {p}");
    }
    assert_eq!(c.text(&["CONFIG", "GET", "hz"]).await, "*2\r\n$2\r\nhz\r\n$2\r\n10\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowlog_is_one_log_over_the_masters() {
    let env = start(small()).await;
    let mut c = Raw::connect(env.addr()).await;
    assert_eq!(c.text(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]).await, "+OK\r\n");
    assert_eq!(c.text(&["SLOWLOG", "RESET"]).await, "+OK\r\n");
    let masters = env.cluster.masters();
    let keys: Vec<String> = masters.iter().map(|&m| key_in_slot(env.cluster.slots_of(m)[0], "slow-")).collect();
    for k in &keys {
        assert_eq!(c.text(&["SET", k, "v"]).await, "+OK\r\n");
    }
    // Every master's SET is in the one log.
    let all = c.text(&["SLOWLOG", "GET", "-1"]).await;
    for k in &keys {
        assert!(all.contains(&format!("${}\r\n{k}\r\n", k.len())), "{k} missing from {all}");
    }
    // LEN is the sum of the masters' logs (each also logged the SLOWLOG GET that reached it).
    let len: i64 = c.text(&["SLOWLOG", "LEN"]).await.trim_start_matches(':').trim().parse().expect("an integer");
    let on_nodes: i64 = masters
        .iter()
        .map(|&m| env.cluster.cli(m, &["SLOWLOG", "LEN"]).expect("LEN").trim().parse::<i64>().expect("n"))
        .sum();
    // Each node logged its own SLOWLOG LEN just now (slower than 0 us): at most one more each.
    assert!((on_nodes - masters.len() as i64..=on_nodes).contains(&len), "proxy {len}, nodes {on_nodes}");
    // A count is a count of the whole log, newest first.
    let two = c.text(&["SLOWLOG", "GET", "2"]).await;
    assert!(two.starts_with("*2\r\n*6\r\n"), "{two}");
    let times: Vec<i64> = two
        .split("*6\r\n")
        .skip(1)
        .map(|e| e.split("\r\n").nth(1).and_then(|t| t.trim_start_matches(':').parse().ok()).expect("a time"))
        .collect();
    assert!(times[0] >= times[1], "{times:?}");
    assert_eq!(c.text(&["SLOWLOG", "RESET"]).await, "+OK\r\n");
    for &m in &masters {
        assert_eq!(env.cluster.cli(m, &["SLOWLOG", "GET", "0"]).expect("GET").trim(), "");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_exist_where_the_proxy_can_run_them_and_die_where_they_run() {
    let env = start(small()).await;
    let mut c = Raw::connect(env.addr()).await;
    let sha = c.text(&["SCRIPT", "LOAD", "return 7"]).await;
    let sha = sha.split("\r\n").nth(1).expect("a sha").to_string();
    let unknown = "0123456789012345678901234567890123456789";
    assert_eq!(c.text(&["SCRIPT", "EXISTS", &sha, unknown]).await, "*2\r\n:1\r\n:0\r\n");
    // One master loses it behind the proxy's back: EVALSHA still runs it, so it exists.
    let m = env.cluster.masters()[1];
    env.cluster.cli(m, &["SCRIPT", "FLUSH"]).expect("flush one node");
    assert_eq!(c.text(&["SCRIPT", "EXISTS", &sha]).await, "*1\r\n:1\r\n");
    let k = key_in_slot(env.cluster.slots_of(m)[0], "s-");
    assert_eq!(c.text(&["EVALSHA", &sha, "1", &k]).await, ":7\r\n");

    assert_eq!(c.text(&["SCRIPT", "KILL"]).await, "-NOTBUSY No scripts in execution right now.\r\n");
    // A script that never ends, on whichever master runs keyless EVAL; killed through the proxy.
    assert_eq!(c.text(&["CONFIG", "SET", "busy-reply-threshold", "100"]).await, "+OK\r\n");
    let mut looping = Raw::connect(env.addr()).await;
    looping.send(&clusterless::resp::encode_command(&["EVAL", "while true do end", "0"])).await;
    let mut killed = String::new();
    for _ in 0..200 {
        killed = c.text(&["SCRIPT", "KILL"]).await;
        if killed == "+OK\r\n" {
            break;
        }
        // The script may not have started yet: NOTBUSY everywhere until it does.
        assert!(killed.starts_with("-NOTBUSY"), "{killed}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(killed, "+OK\r\n");
    let r = String::from_utf8_lossy(&looping.read_replies(1).await[0]).into_owned();
    assert!(r.starts_with("-ERR") && r.contains("Script killed by user with SCRIPT KILL"), "{r}");
}
