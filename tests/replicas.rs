//! Reads from replicas (`backend.read_from = "replicas"`, the setting under test): a read goes
//! to a live replica of its slot's master, a write to the master; by default nothing reaches a
//! replica.

mod common;

use common::{key_in_slot, start_with, with_replicas, Env, Raw};

/// How many times `port` ran `cmd`, by its own INFO commandstats.
fn calls(env: &Env, port: u16, cmd: &str) -> u64 {
    let stats = env.cluster.cli(port, &["INFO", "commandstats"]).expect("INFO");
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{cmd}:calls=")))
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn reads_and_writes(replicas: bool) -> (u64, u64) {
    let env = start_with(with_replicas(), |c| c.backend.read_from_replicas = replicas).await;
    let masters = env.cluster.masters();
    let keys: Vec<String> = masters.iter().map(|&m| key_in_slot(env.cluster.slots_of(m)[0], "rr-")).collect();
    let mut c = Raw::connect(env.addr()).await;
    for k in &keys {
        assert_eq!(c.text(&["SET", k, k]).await, "+OK\r\n");
    }
    // Every master's replica has the writes before they are read there.
    assert_eq!(c.text(&["WAIT", "1", "5000"]).await, ":1\r\n");
    for _ in 0..10 {
        for k in &keys {
            assert_eq!(c.text(&["GET", k]).await, format!("${}\r\n{k}\r\n", k.len()));
        }
    }
    let replica_ports: Vec<u16> = masters.iter().flat_map(|&m| env.cluster.replicas_of(m)).collect();
    assert_eq!(replica_ports.len(), 3);
    let on_masters: u64 = masters.iter().map(|&m| calls(&env, m, "get")).sum();
    let on_replicas: u64 = replica_ports.iter().map(|&r| calls(&env, r, "get")).sum();
    (on_masters, on_replicas)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_replicas_only_when_asked() {
    // The values read are the ones written (checked in `reads_and_writes`): the writes went to
    // the masters, which replicated them.
    assert_eq!(reads_and_writes(true).await, (0, 30), "(GETs on masters, GETs on replicas)");
    assert_eq!(reads_and_writes(false).await, (30, 0));
}
