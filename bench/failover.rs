//! Failover timing: how long after a fault clients are routed to the new owner, and how many
//! client errors the fault costs, with the bus observer versus polling CLUSTER SHARDS every second.
//!
//! Run: `cargo bench --bench failover` (writes a Markdown table to stdout). Each scenario starts
//! its own 3-master + 3-replica cluster (node timeout 2000 ms) from the test harness, a proxy in
//! process, and one client writing keys of the victim's slots back to back; the "idle" rows have no
//! client, so nothing on the data path (a failed write, a MOVED) tells the bus observer that
//! something changed: it must see it on the bus, on its steady beat.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clusterless::sync::Mutex;
use std::time::{Duration, Instant};

use clusterless::config::{Config, Source};
use clusterless::localcluster::{ClusterSpec, LocalCluster};
use redis::AsyncCommands;

#[derive(Clone, Copy, Debug)]
enum Fault {
    Kill9,
    SigStop,
    ManualFailover,
}

struct Outcome {
    /// Fault to the promoted replica answering ROLE as master (10 ms polling: its claim).
    claim_ms: f64,
    /// Fault to the proxy's map pointing the victim's slots at the new owner.
    map_ms: f64,
    /// Fault to the first write acknowledged after the map switch.
    first_ok_ms: f64,
    errors: usize,
    writes: u64,
}

fn key_in_slot(slot: u16) -> String {
    (0u64..).map(|i| format!("fo{i}")).find(|k| clusterless::slot::slot(k.as_bytes()) == slot).unwrap_or_default()
}

async fn scenario(source: Source, fault: Fault, idle: bool, fixed_beat: bool) -> Outcome {
    let spec = ClusterSpec { masters: 3, replicas_per_master: 1, node_timeout_ms: 2000, ..ClusterSpec::default() };
    let mut cluster = tokio::task::block_in_place(|| LocalCluster::start(&spec)).expect("cluster");
    let mut cfg = Config::defaults();
    cfg.listen = Some("127.0.0.1:0".parse().unwrap());
    cfg.seeds = vec![cluster.seed()];
    cfg.admin_listen = None;
    cfg.topology.source = source;
    if fixed_beat {
        // How the observer watched before the adaptive beat: every node on the fast beat always.
        cfg.topology.bus_steady_interval = cfg.topology.bus_ping_interval;
    }
    cfg.topology.refresh_interval = Duration::from_millis(1000);
    cfg.backend.request_timeout = Duration::from_millis(3000);
    let proxy = clusterless::start(cfg).await.expect("proxy");
    let victim = cluster.masters()[0];
    let replica = cluster.replicas_of(victim)[0];
    let slots = cluster.slots_of(victim);
    let keys: Vec<String> = slots.iter().step_by(slots.len() / 20).map(|&s| key_in_slot(s)).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let acks: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let url = format!("redis://{}/", proxy.addr());
    let client = {
        let (stop, acks) = (stop.clone(), acks.clone());
        tokio::spawn(async move {
            if idle {
                return (0, 0);
            }
            let cfg = redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(30)));
            let mut c =
                redis::Client::open(url).unwrap().get_multiplexed_async_connection_with_config(&cfg).await.unwrap();
            let (mut errors, mut writes, mut i) = (0usize, 0u64, 0usize);
            while !stop.load(Ordering::Relaxed) {
                match c.set::<_, _, ()>(&keys[i % keys.len()], i).await {
                    Ok(()) => {
                        writes += 1;
                        acks.lock().push(Instant::now());
                    }
                    Err(_) => errors += 1,
                }
                i += 1;
            }
            (errors, writes)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let new_owner = format!("127.0.0.1:{replica}");
    let t0 = Instant::now();
    match fault {
        Fault::Kill9 => tokio::task::block_in_place(|| cluster.kill9(victim)).unwrap(),
        Fault::SigStop => tokio::task::block_in_place(|| cluster.sigstop(victim)).unwrap(),
        Fault::ManualFailover => {
            let _ = tokio::task::block_in_place(|| cluster.cli(replica, &["CLUSTER", "FAILOVER"]));
        }
    }
    let mut claim = None;
    let mut map = None;
    while (claim.is_none() || map.is_none()) && t0.elapsed() < Duration::from_secs(30) {
        if claim.is_none() {
            let role = tokio::task::block_in_place(|| cluster.cli(replica, &["ROLE"])).unwrap_or_default();
            if role.starts_with("master") {
                claim = Some(t0.elapsed());
            }
        }
        if map.is_none() && proxy.topology().master_for(slots[0]) == Some(new_owner.as_str()) {
            map = Some(t0.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(2000)).await;
    if matches!(fault, Fault::SigStop) {
        let _ = tokio::task::block_in_place(|| cluster.sigcont(victim));
    }
    stop.store(true, Ordering::Relaxed);
    let (errors, writes) = client.await.unwrap();
    let map_at = map.unwrap_or(Duration::from_secs(30));
    let first_ok = acks.lock().iter().map(|t| t.duration_since(t0)).find(|d| *d >= map_at).unwrap_or(Duration::ZERO);
    let first_ok = if idle { map_at } else { first_ok };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Outcome {
        claim_ms: claim.map(ms).unwrap_or(f64::NAN),
        map_ms: ms(map_at),
        first_ok_ms: ms(first_ok),
        errors,
        writes,
    }
}

fn main() {
    // `cargo bench` passes --bench; any other argument keeps only the rows whose source names
    // contain it (`cargo bench --bench failover -- idle`).
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!("| fault | source | claim (ms) | map switched (ms) | first write acked on new owner (ms) | map - claim (ms) | client errors | writes |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for fault in [Fault::Kill9, Fault::SigStop, Fault::ManualFailover] {
        for (name, source, idle, fixed) in [
            ("bus", Source::Bus, false, false),
            ("bus, idle", Source::Bus, true, false),
            ("bus, idle, fixed 250 ms beat", Source::Bus, true, true),
            ("poll 1 s", Source::Poll, false, false),
        ] {
            if !only.is_empty() && !only.iter().any(|o| name.contains(o.as_str())) {
                continue;
            }
            let o = rt.block_on(scenario(source, fault, idle, fixed));
            println!(
                "| {fault:?} | {name} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} |",
                o.claim_ms,
                o.map_ms,
                o.first_ok_ms,
                o.map_ms - o.claim_ms,
                o.errors,
                o.writes
            );
        }
    }
}
