//! Changing a running cluster the way operators do: failovers, reshards (redis-cli and a manual
//! SETSLOT/MIGRATE sequence that leaves a slot in ASK state), adding and removing masters.

use std::time::{Duration, Instant};

use super::view::node_lines;
use super::{pick_ports, HarnessError, LocalCluster, Result};

impl LocalCluster {
    /// `CLUSTER FAILOVER` on a replica; waits until it is a master and the cluster is healthy.
    pub fn failover(&self, replica: u16) -> Result<()> {
        self.cli(replica, &["CLUSTER", "FAILOVER"])?;
        let start = Instant::now();
        loop {
            let role = self.cli(replica, &["ROLE"]).unwrap_or_default();
            if role.starts_with("master") {
                break;
            }
            if start.elapsed() > Duration::from_secs(20) {
                return Err(HarnessError::Timeout { what: format!("replica {replica} to be promoted"), secs: 20 });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.wait_ok(Duration::from_secs(30))
    }

    /// After a master died: waits until the live nodes agree another master owns its slots.
    pub fn wait_for_promotion(&self, dead: u16) -> Result<()> {
        let start = Instant::now();
        let live: Vec<u16> = self.live_ports();
        loop {
            let done = live.iter().all(|&p| {
                let info = self.cli(p, &["CLUSTER", "INFO"]).unwrap_or_default();
                let nodes = self.cli(p, &["CLUSTER", "NODES"]).unwrap_or_default();
                info.contains("cluster_state:ok")
                    && node_lines(&nodes).iter().all(|n| n.port != dead || n.slots.is_empty())
            });
            if done {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(30) {
                return Err(HarnessError::Timeout { what: format!("a replica of {dead} to take over"), secs: 30 });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Moves `n` slots with `redis-cli --cluster reshard` and waits for a clean `--cluster check`.
    pub fn reshard(&self, from: u16, to: u16, n: usize) -> Result<()> {
        let (Some(from_id), Some(to_id)) = (self.node_id(from), self.node_id(to)) else {
            return Err(HarnessError::Other("unknown reshard node".into()));
        };
        let args: Vec<String> = [
            "--cluster",
            "reshard",
            &self.at(from),
            "--cluster-from",
            &from_id,
            "--cluster-to",
            &to_id,
            "--cluster-slots",
            &n.to_string(),
            "--cluster-yes",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        self.cli_args(from, &args, Duration::from_secs(120))?;
        self.check_clean(from)
    }

    fn check_clean(&self, port: u16) -> Result<()> {
        let start = Instant::now();
        loop {
            let args = vec!["--cluster".to_string(), "check".to_string(), self.at(port)];
            match self.cli_args(port, &args, Duration::from_secs(30)) {
                Ok(out) if out.contains("[OK] All 16384 slots covered") && !out.contains("[WARNING]") => return Ok(()),
                _ if start.elapsed() > Duration::from_secs(30) => {
                    return Err(HarnessError::Timeout {
                        what: "redis-cli --cluster check to be clean".into(),
                        secs: 30,
                    })
                }
                _ => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    fn keys_in_slot(&self, port: u16, slot: u16) -> Result<Vec<String>> {
        let out = self.cli(port, &["CLUSTER", "GETKEYSINSLOT", &slot.to_string(), "100000"])?;
        Ok(out.lines().map(str::to_string).filter(|s| !s.is_empty()).collect())
    }

    fn migrate_keys(&self, from: u16, to: u16, keys: &[String]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut args: Vec<String> =
            vec!["MIGRATE".into(), self.spec.host.clone(), to.to_string(), "".into(), "0".into(), "5000".into()];
        if let Some(p) = &self.spec.password {
            args.extend(["AUTH".into(), p.clone()]);
        }
        args.push("KEYS".into());
        args.extend(keys.iter().cloned());
        self.cli_args(from, &args, Duration::from_secs(30)).map(|_| ())
    }

    /// First half of a manual slot move: IMPORTING on the target, MIGRATING on the source, and about
    /// half of the slot's keys migrated, which leaves the slot in ASK state.
    pub fn migrate_slot_manual_begin(&self, slot: u16, from: u16, to: u16) -> Result<()> {
        let (Some(from_id), Some(to_id)) = (self.node_id(from), self.node_id(to)) else {
            return Err(HarnessError::Other("unknown migration node".into()));
        };
        let s = slot.to_string();
        self.cli(to, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id])?;
        self.cli(from, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id])?;
        let keys = self.keys_in_slot(from, slot)?;
        self.migrate_keys(from, to, &keys[..keys.len() / 2])
    }

    /// Second half: migrates the rest and assigns the slot to the target everywhere (target first).
    pub fn migrate_slot_manual_finish(&self, slot: u16, from: u16, to: u16) -> Result<()> {
        let to_id = self.node_id(to).ok_or_else(|| HarnessError::Other("unknown target".into()))?;
        let keys = self.keys_in_slot(from, slot)?;
        self.migrate_keys(from, to, &keys)?;
        let s = slot.to_string();
        self.cli(to, &["CLUSTER", "SETSLOT", &s, "NODE", &to_id])?;
        self.cli(from, &["CLUSTER", "SETSLOT", &s, "NODE", &to_id])?;
        for m in self.masters() {
            if m != from && m != to {
                self.cli(m, &["CLUSTER", "SETSLOT", &s, "NODE", &to_id])?;
            }
        }
        Ok(())
    }

    /// Starts an empty node and joins it as a master without slots.
    pub fn add_master(&mut self) -> Result<u16> {
        let used = self.ports();
        let port = pick_ports(&self.spec.host, 1, &used)[0];
        self.spawn_node(port, None)?;
        self.wait_ping(port, Duration::from_secs(10))?;
        let seed = self.live_ports()[0];
        let args = vec!["--cluster".into(), "add-node".into(), self.at(port), self.at(seed)];
        self.cli_args(seed, &args, Duration::from_secs(60))?;
        self.wait_ok(Duration::from_secs(30))?;
        Ok(port)
    }

    /// Removes a node that owns no slots (`redis-cli --cluster del-node`, which also shuts it down).
    pub fn remove_node(&mut self, port: u16) -> Result<()> {
        let id = self.node_id(port).ok_or_else(|| HarnessError::Other(format!("no node {port}")))?;
        let seed = self.live_ports().into_iter().find(|&p| p != port).unwrap_or(port);
        let args = vec!["--cluster".into(), "del-node".into(), self.at(seed), id];
        self.cli_args(seed, &args, Duration::from_secs(60))?;
        self.kill9(port)?;
        self.wait_ok(Duration::from_secs(30))
    }

    /// Stops a node and starts it again on a new port with its cluster configuration, as a pod
    /// restarted with a new address keeps its id: the other nodes learn the new address from its
    /// first PING. Nothing is persisted, so a master comes back empty. Returns the new port.
    pub fn restart_on_new_port(&mut self, port: u16) -> Result<u16> {
        // SIGTERM: the node saves its cluster configuration on the way out.
        self.signal(port, libc::SIGTERM)?;
        let start = Instant::now();
        loop {
            let n = self.node_mut(port)?;
            if let Some(child) = n.child.as_mut() {
                if child.try_wait()?.is_some() {
                    n.child = None;
                    break;
                }
            }
            if start.elapsed() > Duration::from_secs(20) {
                return Err(HarnessError::Timeout { what: format!("node {port} to shut down"), secs: 20 });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let used = self.ports();
        let new = pick_ports(&self.spec.host, 1, &used)[0];
        self.spawn_node(new, Some(port))?;
        self.wait_ping(new, Duration::from_secs(10))?;
        Ok(new)
    }
}
