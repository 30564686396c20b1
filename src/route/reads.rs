//! Which node answers a read (`routing.read_from`): the slot's master or one of its replicas,
//! never a node flagged failed, nor for a while one that just failed a read (refused the
//! connection, timed out, answered -LOADING or -MASTERDOWN); for "nearest", by each node's PING
//! round trip, measured in the background ([`probe`]).
//!
//! Only reads ask here: writes, transactions and blocking commands go to the master without.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use tokio::time::Instant;

use super::Router;
use crate::backend::Cx;
use crate::config::ReadFrom;
use crate::sync::Mutex;
use crate::topology::{Node, Topology};

/// How long a node that failed a read is passed over (unless nothing else can answer): long
/// enough for the cluster to flag it (a stopped node is PFAIL after `cluster-node-timeout`), short
/// enough that a node back from a restart soon takes reads again.
pub const AVOID_FOR: Duration = Duration::from_secs(2);

/// How often "nearest" measures every node's PING round trip.
const PROBE_EVERY: Duration = Duration::from_millis(1000);

/// Where reads go, and what was learned of the nodes that answer them.
pub struct Reads {
    pub mode: ReadFrom,
    /// After a client writes a slot, its reads of that slot go to the master for this long; zero
    /// when reads never leave the masters, so that no write is noted for nothing.
    pub read_your_writes: Duration,
    /// Nodes passed over until the given time; a handful at most (the nodes that failed within
    /// [`AVOID_FOR`]), looked at only while `any_avoided` says there are some.
    avoided: Mutex<Vec<(String, Instant)>>,
    any_avoided: AtomicBool,
    /// Per node address its smoothed PING round trip in microseconds ("nearest" only).
    latency: ArcSwap<Vec<(String, u32)>>,
}

/// Where one read goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Pick<'t> {
    Master(&'t str),
    Replica(&'t str),
    /// The slot has no healthy master (nor, by the mode, a replica to read from instead): the
    /// router waits for one.
    NoMaster,
    /// `read_from = "replica"` and no healthy replica serves the slot.
    NoReplica,
}

impl Reads {
    pub fn new(mode: ReadFrom, read_your_writes: Duration) -> Reads {
        Reads {
            mode,
            read_your_writes: if mode.reaches_replicas() { read_your_writes } else { Duration::ZERO },
            avoided: Mutex::new(Vec::new()),
            any_avoided: AtomicBool::new(false),
            latency: ArcSwap::from_pointee(Vec::new()),
        }
    }

    /// Whether reads may go to replicas at all.
    pub fn reaches_replicas(&self) -> bool {
        self.mode.reaches_replicas()
    }

    /// The node that answers a read of `slot` for the client on `lane` (a client keeps to one
    /// replica per shard, so that its reads come back in the order it sent them).
    pub fn pick<'t>(&self, topo: &'t Topology, slot: u16, lane: u32) -> Pick<'t> {
        let Some(master) = topo.master_node(slot) else { return Pick::NoMaster };
        let master_ok = !master.failed;
        let replica = || self.replica(topo, master, lane);
        let fallback = || if master_ok { Pick::Master(&master.addr) } else { Pick::NoMaster };
        match self.mode {
            ReadFrom::Master => fallback(),
            ReadFrom::MasterPreferred if master_ok && !self.avoided(&master.addr) => Pick::Master(&master.addr),
            ReadFrom::MasterPreferred | ReadFrom::ReplicaPreferred => replica().map_or_else(fallback, Pick::Replica),
            ReadFrom::Replica => replica().map_or(Pick::NoReplica, Pick::Replica),
            ReadFrom::Nearest => self.nearest(topo, master).unwrap_or_else(fallback),
        }
    }

    /// A live replica of `master` not avoided, chosen by `lane`.
    fn replica<'t>(&self, topo: &'t Topology, master: &'t Node, lane: u32) -> Option<&'t str> {
        let usable = || topo.live_replicas(master).filter(|n| !self.avoided(&n.addr));
        let n = usable().count();
        if n == 0 {
            return None;
        }
        usable().nth(lane as usize % n).map(|n| n.addr.as_str())
    }

    /// The live, not avoided node of `master`'s shard with the shortest measured round trip; the
    /// master on a tie or before anything was measured.
    fn nearest<'t>(&self, topo: &'t Topology, master: &'t Node) -> Option<Pick<'t>> {
        let latency = self.latency.load();
        let rtt = |addr: &str| latency.iter().find(|(a, _)| a == addr).map_or(u32::MAX, |(_, us)| *us);
        let mut best: Option<(u32, Pick<'t>)> = None;
        if !master.failed && !self.avoided(&master.addr) {
            best = Some((rtt(&master.addr), Pick::Master(&master.addr)));
        }
        for r in topo.live_replicas(master).filter(|n| !self.avoided(&n.addr)) {
            let t = rtt(&r.addr);
            if best.as_ref().is_none_or(|(b, _)| t < *b) {
                best = Some((t, Pick::Replica(&r.addr)));
            }
        }
        best.map(|(_, p)| p)
    }

    /// Passes over `addr` for reads for [`AVOID_FOR`].
    pub fn avoid(&self, addr: &str) {
        let until = Instant::now() + AVOID_FOR;
        let mut v = self.avoided.lock();
        match v.iter_mut().find(|(a, _)| a == addr) {
            Some(e) => e.1 = until,
            None => v.push((addr.to_string(), until)),
        }
        self.any_avoided.store(true, Ordering::Relaxed);
    }

    fn avoided(&self, addr: &str) -> bool {
        if !self.any_avoided.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        let mut v = self.avoided.lock();
        v.retain(|(_, until)| *until > now);
        if v.is_empty() {
            self.any_avoided.store(false, Ordering::Relaxed);
        }
        v.iter().any(|(a, _)| a == addr)
    }

    /// Folds one measured round trip of `addr` into its average (`None`: no answer in time).
    fn measured(&self, addr: &str, rtt: Option<Duration>) {
        let us = rtt.map_or(u32::MAX, |d| u32::try_from(d.as_micros()).unwrap_or(u32::MAX));
        let mut next: Vec<(String, u32)> = (**self.latency.load()).clone();
        match next.iter_mut().find(|(a, _)| a == addr) {
            // A quarter of each new sample: one slow PING does not move reads away at once.
            Some(e) if us != u32::MAX && e.1 != u32::MAX => e.1 = ((u64::from(e.1) * 3 + u64::from(us)) / 4) as u32,
            Some(e) => e.1 = us,
            None => next.push((addr.to_string(), us)),
        }
        self.latency.store(Arc::new(next));
    }

    /// Forgets the round trips of nodes no longer in `topo`.
    fn keep_only(&self, topo: &Topology) {
        let now: Vec<(String, u32)> =
            self.latency.load().iter().filter(|(a, _)| topo.nodes.iter().any(|n| &n.addr == a)).cloned().collect();
        self.latency.store(Arc::new(now));
    }
}

/// "nearest": PINGs every live node of the map each [`PROBE_EVERY`] on the proxy's own
/// connections, until the router is gone.
pub async fn probe(router: Weak<Router>) {
    const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";
    let cx = Cx { proto: 2, lane: 0, login: 0 };
    loop {
        let Some(p) = router.upgrade() else { return };
        let topo = p.topology.load_full();
        p.reads.keep_only(&topo);
        for n in topo.nodes.iter().filter(|n| !n.failed) {
            let sent = Instant::now();
            let limit = p.backend.config().request_timeout.min(PROBE_EVERY);
            let answer = tokio::time::timeout(limit, p.backend.send_one(&n.addr, cx, Bytes::from_static(PING))).await;
            let rtt = matches!(answer, Ok(Ok(ref r)) if r.starts_with(b"+PONG")).then(|| sent.elapsed());
            p.reads.measured(&n.addr, rtt);
        }
        drop(p);
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

/// The name of the command in `raw` (a RESP array), lower case, for an error naming it.
pub fn command_name(raw: &[u8]) -> String {
    let mut lines = raw.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let name = lines.nth(2).unwrap_or_default();
    String::from_utf8_lossy(name).to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::Role;

    fn node(id: &str, port: u16, role: Role, master: Option<&str>, failed: bool) -> Node {
        let addr = format!("127.0.0.1:{port}");
        Node {
            id: id.into(),
            addr: addr.clone(),
            ip_addr: addr,
            role,
            master_id: master.map(str::to_string),
            failed,
            config_epoch: None,
        }
    }

    /// One shard owning every slot: master `m` (7000) with replicas 7001 and 7002.
    fn shard(master_failed: bool, r1_failed: bool) -> Topology {
        let nodes = vec![
            node("m", 7000, Role::Master, None, master_failed),
            node("r1", 7001, Role::Replica, Some("m"), r1_failed),
            node("r2", 7002, Role::Replica, Some("m"), false),
        ];
        Topology::for_tests(nodes, 0)
    }

    #[test]
    fn each_mode_picks_as_documented() {
        let healthy = shard(false, false);
        let at = |mode, t: &Topology, lane| Reads::new(mode, Duration::ZERO).pick(t, 5, lane).clone_addr();
        assert_eq!(at(ReadFrom::Master, &healthy, 0), "m:127.0.0.1:7000");
        assert_eq!(at(ReadFrom::MasterPreferred, &healthy, 0), "m:127.0.0.1:7000");
        assert_eq!(at(ReadFrom::ReplicaPreferred, &healthy, 0), "r:127.0.0.1:7001");
        assert_eq!(at(ReadFrom::ReplicaPreferred, &healthy, 1), "r:127.0.0.1:7002");
        assert_eq!(at(ReadFrom::Replica, &healthy, 3), "r:127.0.0.1:7002");
        assert_eq!(at(ReadFrom::Nearest, &healthy, 0), "m:127.0.0.1:7000", "nothing measured: the master");
        // A failed master: the preferring modes read from a replica, "master" waits.
        let down = shard(true, false);
        assert_eq!(at(ReadFrom::Master, &down, 0), "none");
        assert_eq!(at(ReadFrom::MasterPreferred, &down, 0), "r:127.0.0.1:7001");
        // A failed replica is skipped.
        let one = shard(false, true);
        assert_eq!(at(ReadFrom::ReplicaPreferred, &one, 0), "r:127.0.0.1:7002");
        assert_eq!(at(ReadFrom::ReplicaPreferred, &one, 1), "r:127.0.0.1:7002");
    }

    #[test]
    fn avoided_nodes_are_passed_over_and_nearest_follows_round_trips() {
        let t = shard(false, false);
        let reads = Reads::new(ReadFrom::Replica, Duration::ZERO);
        reads.avoid("127.0.0.1:7001");
        assert_eq!(reads.pick(&t, 5, 0).clone_addr(), "r:127.0.0.1:7002");
        reads.avoid("127.0.0.1:7002");
        assert_eq!(reads.pick(&t, 5, 0), Pick::NoReplica);
        let reads = Reads::new(ReadFrom::ReplicaPreferred, Duration::ZERO);
        reads.avoid("127.0.0.1:7001");
        reads.avoid("127.0.0.1:7002");
        assert_eq!(reads.pick(&t, 5, 0).clone_addr(), "m:127.0.0.1:7000");

        let reads = Reads::new(ReadFrom::Nearest, Duration::ZERO);
        reads.measured("127.0.0.1:7000", Some(Duration::from_micros(300)));
        reads.measured("127.0.0.1:7001", Some(Duration::from_micros(100)));
        reads.measured("127.0.0.1:7002", None);
        assert_eq!(reads.pick(&t, 5, 0).clone_addr(), "r:127.0.0.1:7001");
        // Averaged: one fast answer of the master does not yet beat the replica.
        reads.measured("127.0.0.1:7000", Some(Duration::from_micros(20)));
        assert_eq!(reads.pick(&t, 5, 0).clone_addr(), "r:127.0.0.1:7001");
        reads.avoid("127.0.0.1:7001");
        assert_eq!(reads.pick(&t, 5, 0).clone_addr(), "m:127.0.0.1:7000");
    }

    #[test]
    fn names_the_command() {
        assert_eq!(command_name(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"), "get");
        assert_eq!(command_name(b""), "");
    }

    impl Pick<'_> {
        fn clone_addr(&self) -> String {
            match self {
                Pick::Master(a) => format!("m:{a}"),
                Pick::Replica(a) => format!("r:{a}"),
                Pick::NoMaster | Pick::NoReplica => "none".into(),
            }
        }
    }
}
