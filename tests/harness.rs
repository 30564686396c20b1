//! The one cluster harness: clusters start healthy on free ports (in parallel too), and leave
//! no process or file behind when dropped.

use std::path::Path;

use clusterless::localcluster::{ClusterSpec, LocalCluster};

fn pid_of_port(port: u16) -> Option<u32> {
    let out =
        std::process::Command::new("redis-cli").args(["-p", &port.to_string(), "INFO", "server"]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| l.strip_prefix("process_id:")?.trim().parse().ok())
}

#[test]
fn clusters_start_in_parallel_and_clean_up() {
    let spec = ClusterSpec { masters: 3, replicas_per_master: 1, ..ClusterSpec::default() };
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let spec = spec.clone();
            std::thread::spawn(move || {
                let c = LocalCluster::start(&spec).expect("start");
                let masters = c.masters();
                assert_eq!(masters.len(), 3);
                let owned: usize = masters.iter().map(|&m| c.slots_of(m).len()).sum();
                assert_eq!(owned, 16384, "all slots covered");
                for &m in &masters {
                    assert_eq!(c.replicas_of(m).len(), 1, "one replica for {m}");
                }
                let map = c.slot_map();
                assert!(map.iter().all(Option::is_some));
                assert_eq!(c.slot_owner(12182), map[12182]);
                let pids: Vec<u32> = c.ports().iter().filter_map(|&p| pid_of_port(p)).collect();
                assert_eq!(pids.len(), 6);
                let dir = c.dir().to_path_buf();
                let ports = c.ports();
                drop(c);
                (pids, dir, ports)
            })
        })
        .collect();
    let mut all_ports = Vec::new();
    for h in handles {
        let (pids, dir, ports) = h.join().expect("cluster thread");
        for pid in pids {
            assert!(!Path::new(&format!("/proc/{pid}")).exists(), "pid {pid} still running after drop");
        }
        assert!(!dir.exists(), "{} removed", dir.display());
        all_ports.extend(ports);
    }
    let mut dedup = all_ports.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), all_ports.len(), "parallel clusters never share a port");
}
