//! The client loop the topology tests run through the proxy while they reshard, fail over or kill
//! nodes, built so that the proxy's faults show: every write is an `APPEND key "<n>,"` of a token
//! written once, so the value of a key is the log of the writes that ran on it, in order. A token
//! missing is a lost write, a token twice a write run twice; every write is read back at once. On
//! alternate rounds a split `MSET` of unique values and the `MGET` after it cross the fan-out path.
//! One command is in flight at a time, so a fault can catch at most one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::AsyncCommands;

use super::{client_conn, Env};

pub struct WriteLoop {
    stop: Arc<AtomicBool>,
    /// Rounds completed so far.
    rounds: Arc<AtomicU64>,
    handle: tokio::task::JoinHandle<Report>,
}

/// What one command told the loop.
#[derive(Debug, Clone)]
pub struct Failure {
    pub what: String,
    pub error: String,
    /// When the command was sent.
    pub sent: Instant,
}

#[derive(Debug, Default)]
pub struct Report {
    /// Commands answered without error.
    pub ok: u64,
    pub errors: Vec<Failure>,
    /// Per APPEND key, its acknowledged tokens in order, each with when it was sent.
    pub acked: HashMap<String, Vec<(u64, Instant)>>,
    /// Tokens whose APPEND failed: they may or may not have run, so each may appear once or not.
    pub uncertain: HashMap<String, Vec<u64>>,
    /// Per MSET key, the last acknowledged value and when it was sent.
    pub mset: HashMap<String, (u64, Instant)>,
    /// Reads that did not see the acknowledged write just before them.
    pub stale: Vec<Failure>,
    /// The slowest single command.
    pub slowest: Duration,
}

/// Starts the loop over `keys` (APPEND keys). With `fan_out`, every other round is an MSET and an
/// MGET of two keys (`<key>:m`), split across nodes when their slots differ; without it, every
/// command has one key (Redis refuses a multi-key command with TRYAGAIN while its slot's keys are
/// split between two nodes by a migration).
pub fn write_loop(url: String, keys: Vec<String>, fan_out: bool) -> WriteLoop {
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let (s, done) = (stop.clone(), rounds.clone());
    let handle = tokio::spawn(async move {
        let mut c = client_conn(&url).await;
        let mut rep = Report::default();
        // Bounded in time even if the test never says stop.
        let until = Instant::now() + Duration::from_secs(180);
        let mut n = 0u64;
        while !s.load(Ordering::Relaxed) && Instant::now() < until {
            let k = &keys[n as usize % keys.len()];
            if fan_out && n % 2 == 1 && keys.len() > 1 {
                let k2 = &keys[(n as usize + 1) % keys.len()];
                rep.mset_round(&mut c, &format!("{k}:m"), &format!("{k2}:m"), n).await;
            } else {
                rep.append_round(&mut c, k, n).await;
            }
            n += 1;
            done.store(n, Ordering::Relaxed);
        }
        rep
    });
    WriteLoop { stop, rounds, handle }
}

impl Report {
    async fn append_round(&mut self, c: &mut redis::aio::MultiplexedConnection, k: &str, n: u64) {
        let sent = Instant::now();
        let r: redis::RedisResult<u64> = c.append(k, format!("{n},")).await;
        self.slowest = self.slowest.max(sent.elapsed());
        match r {
            Ok(_) => {
                self.ok += 1;
                self.acked.entry(k.to_string()).or_default().push((n, sent));
            }
            Err(e) => {
                self.failed(format!("APPEND {k} {n}"), e, sent);
                self.uncertain.entry(k.to_string()).or_default().push(n);
                return;
            }
        }
        let t = Instant::now();
        let r: redis::RedisResult<Option<String>> = c.get(k).await;
        self.slowest = self.slowest.max(t.elapsed());
        match r {
            Ok(v) => {
                self.ok += 1;
                if tokens(v.as_deref()).last() != Some(&n) {
                    self.stale.push(Failure { what: format!("GET {k}"), error: format!("{v:?} lacks {n}"), sent });
                }
            }
            Err(e) => self.failed(format!("GET {k}"), e, t),
        }
    }

    async fn mset_round(&mut self, c: &mut redis::aio::MultiplexedConnection, a: &str, b: &str, n: u64) {
        let sent = Instant::now();
        let r: redis::RedisResult<()> = c.mset(&[(a, n), (b, n)]).await;
        self.slowest = self.slowest.max(sent.elapsed());
        match r {
            Ok(()) => {
                self.ok += 1;
                self.mset.insert(a.to_string(), (n, sent));
                self.mset.insert(b.to_string(), (n, sent));
            }
            Err(e) => {
                self.failed(format!("MSET {a} {b} {n}"), e, sent);
                // Atomic per slot only: either key may or may not hold n now.
                self.mset.remove(a);
                self.mset.remove(b);
                return;
            }
        }
        let t = Instant::now();
        let r: redis::RedisResult<Vec<Option<u64>>> = c.mget(&[a, b]).await;
        self.slowest = self.slowest.max(t.elapsed());
        match r {
            Ok(v) => {
                self.ok += 1;
                if v != [Some(n), Some(n)] {
                    self.stale.push(Failure { what: format!("MGET {a} {b}"), error: format!("{v:?} != {n}"), sent });
                }
            }
            Err(e) => self.failed(format!("MGET {a} {b}"), e, t),
        }
    }

    fn failed(&mut self, what: String, e: redis::RedisError, sent: Instant) {
        self.errors.push(Failure { what, error: e.to_string(), sent });
    }
}

/// The tokens of an APPEND log value (`"3,7,"` -> [3, 7]).
fn tokens(v: Option<&str>) -> Vec<u64> {
    v.unwrap_or_default().split(',').filter(|t| !t.is_empty()).filter_map(|t| t.parse().ok()).collect()
}

/// What the cluster itself may lose when a master dies or hangs: Redis replicates asynchronously,
/// and a master sends a write to its replicas in the same event-loop turn in which it answers the
/// client, so only writes it answered in its very last moments can be missing from the replica
/// that takes over. Writes *sent* within this window before the crash are excused when lost
/// (counted and printed); a loaded 2-core machine can delay the replica's read by tens of
/// milliseconds, and the window is that plus the test's own clock read after the signal.
pub const REPLICATION_WINDOW: Duration = Duration::from_millis(250);

impl Drop for WriteLoop {
    /// A test that fails before `finish` stops its loop too, instead of leaving it to its own
    /// time bound.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl WriteLoop {
    /// Waits until the loop has done a few rounds: faults are injected into a running loop.
    pub async fn running(&self) {
        self.more_rounds(20).await;
    }

    /// Waits until the loop has done `n` more rounds: it works on the map as it is now.
    pub async fn more_rounds(&self, n: u64) {
        let from = self.rounds.load(Ordering::Relaxed);
        super::eventually("the client loop makes progress", || self.rounds.load(Ordering::Relaxed) >= from + n).await;
    }

    pub async fn finish(mut self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        (&mut self.handle).await.expect("client loop task")
    }
}

impl Report {
    /// Every error, each checked by `allowed`; returns how many there were.
    pub fn errors_are(&self, why: &str, allowed: impl Fn(&Failure) -> bool) -> usize {
        for f in &self.errors {
            assert!(allowed(f), "{why}: {} failed: {}", f.what, f.error);
        }
        self.errors.len()
    }

    /// Only commands in flight when a master failed may fail, and each says it may or may not
    /// have run (never a dropped connection or a vague error). With one command in flight at a
    /// time, that is at most one error per fault.
    pub fn only_in_flight_failed(&self, faults: usize) {
        let n = self.errors_are("a command not in flight at the fault", |f| {
            f.error.contains("may or may not have been executed")
        });
        assert!(n <= faults, "{n} errors for {faults} fault(s), one command in flight: {:?}", self.errors);
    }

    /// Reads every key back through the proxy and checks the logs: each acknowledged write there
    /// exactly once and in order, nothing that was not written, nothing twice. With `crash`, a
    /// write sent within [`REPLICATION_WINDOW`] before it may be missing (the cluster's own loss);
    /// returns how many were.
    pub async fn verify(&self, env: &Env, crash: Option<Instant>) -> usize {
        self.verify_at(&env.url(), crash).await
    }

    /// [`Report::verify`], reading back through `url` (a database other than 0: `redis://.../1`).
    pub async fn verify_at(&self, url: &str, crash: Option<Instant>) -> usize {
        let excused = |sent: Instant| crash.is_some_and(|c| sent <= c && c.duration_since(sent) < REPLICATION_WINDOW);
        let mut c = client_conn(url).await;
        let mut lost = Vec::new();
        for (k, acked) in &self.acked {
            let v: Option<String> = c.get(k).await.expect("read back");
            let got = tokens(v.as_deref());
            let mut sorted = got.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted, got, "{k}: a write ran twice or out of order: {got:?}");
            let maybe = self.uncertain.get(k).map(Vec::as_slice).unwrap_or_default();
            for t in &got {
                assert!(
                    acked.iter().any(|(a, _)| a == t) || maybe.contains(t),
                    "{k}: token {t} was never written (or written by another loop): {got:?}"
                );
            }
            for &(t, sent) in acked {
                if !got.contains(&t) {
                    assert!(
                        excused(sent),
                        "{k}: acknowledged write {t} lost, sent {:?} before the end",
                        sent.elapsed()
                    );
                    lost.push(format!("{k}:{t} (holds {got:?})"));
                }
            }
        }
        for (k, &(v, sent)) in &self.mset {
            let got: Option<u64> = c.get(k).await.expect("read back");
            if got != Some(v) {
                assert!(excused(sent), "{k}: acknowledged MSET of {v} lost (reads {got:?})");
                lost.push(format!("{k}={v}"));
            }
        }
        for s in &self.stale {
            assert!(excused(s.sent), "a read missed an acknowledged write: {} {}", s.what, s.error);
        }
        if !lost.is_empty() || !self.stale.is_empty() {
            eprintln!(
                "excused as the cluster's own loss (sent within {REPLICATION_WINDOW:?} before the crash): \
                 {} writes {lost:?}, {} stale reads",
                lost.len(),
                self.stale.len()
            );
        }
        assert!(self.ok > 50, "the loop made progress: {} commands", self.ok);
        lost.len()
    }
}
