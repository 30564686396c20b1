//! The client loop the topology tests run through the proxy while they reshard, fail over or kill
//! nodes: it writes a counter to keys in turn, reads each write back at once, and at the end every
//! acknowledged write must read back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::AsyncCommands;

use super::{client_conn, Env};

pub struct WriteLoop {
    stop: Arc<AtomicBool>,
    handle: tokio::task::JoinHandle<LoopReport>,
}

#[derive(Debug, Default)]
pub struct LoopReport {
    /// Commands answered without error.
    pub ok: u64,
    pub errors: Vec<String>,
    /// Reads that missed the acknowledged write just before them, and when that write was sent.
    pub stale: Vec<(String, Instant)>,
    /// The last acknowledged value of each key and when its write was sent. A key whose write
    /// failed is dropped: the error may say it was executed or not, so its value is unknown.
    pub acked: HashMap<String, (u64, Instant)>,
    /// Slowest single command.
    pub slowest: Duration,
}

/// Starts the loop over `keys`. With `fan_out`, every other round writes and reads two keys at
/// once with MSET and MGET (split across nodes when their slots differ).
pub fn write_loop(url: String, keys: Vec<String>, fan_out: bool) -> WriteLoop {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let handle = tokio::spawn(async move {
        let mut c = client_conn(&url).await;
        let mut rep = LoopReport::default();
        // Bounded in time and in collected errors even if the test never says stop.
        let until = Instant::now() + Duration::from_secs(180);
        let mut i = 0u64;
        while !s.load(Ordering::Relaxed) && Instant::now() < until && rep.errors.len() < 100 {
            let n = keys.len();
            let ks: Vec<&String> = if fan_out && i % 2 == 1 && n > 1 {
                vec![&keys[i as usize % n], &keys[(i as usize + 1) % n]]
            } else {
                vec![&keys[i as usize % n]]
            };
            // The send time decides: a write sent before a crash may have run on the old master
            // even though its acknowledgement is read after the crash instant.
            let sent = Instant::now();
            let written: redis::RedisResult<()> =
                if ks.len() == 1 { c.set(ks[0], i).await } else { c.mset(&[(ks[0], i), (ks[1], i)]).await };
            rep.slowest = rep.slowest.max(sent.elapsed());
            match written {
                Ok(()) => {
                    rep.ok += 1;
                    for k in &ks {
                        rep.acked.insert(k.to_string(), (i, sent));
                    }
                }
                Err(e) => {
                    rep.errors.push(format!("write {ks:?}: {e}"));
                    for k in &ks {
                        rep.acked.remove(k.as_str());
                    }
                }
            }
            let t = Instant::now();
            let read: redis::RedisResult<Vec<Option<u64>>> =
                if ks.len() == 1 { c.get::<_, Option<u64>>(ks[0]).await.map(|v| vec![v]) } else { c.mget(&ks).await };
            rep.slowest = rep.slowest.max(t.elapsed());
            match read {
                Ok(values) => {
                    rep.ok += 1;
                    for (k, v) in ks.iter().zip(values) {
                        if let Some(&(w, at)) = rep.acked.get(k.as_str()).filter(|(w, _)| v != Some(*w)) {
                            rep.stale.push((format!("read {k}: {v:?} != {w}"), at));
                        }
                    }
                }
                Err(e) => rep.errors.push(format!("read {ks:?}: {e}")),
            }
            i += 1;
        }
        rep
    });
    WriteLoop { stop, handle }
}

impl WriteLoop {
    pub async fn finish(self) -> LoopReport {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.await.expect("client loop task")
    }
}

impl LoopReport {
    /// Checks that no read missed an acknowledged write and that every acknowledged write reads
    /// back through the proxy. `crash` is when a master was killed or stopped: Redis replicates
    /// asynchronously, so a write that master acknowledged just before (not yet sent to its
    /// replica) can be gone after the promotion; that is the cluster's loss, not the proxy's, and
    /// is excused for writes sent in the second before the crash, a handful at most. A write sent
    /// after it must never be lost: that would mean a command went to the old master.
    pub async fn verify(&self, env: &Env, crash: Option<Instant>) {
        let excused =
            |sent: Instant| crash.is_some_and(|c| sent <= c && c.duration_since(sent) < Duration::from_secs(1));
        for (what, at) in &self.stale {
            let when =
                crash.map(|c| format!("; its write was sent {:?} after the crash", at.saturating_duration_since(c)));
            assert!(excused(*at), "a read missed an acknowledged write: {what}{}", when.unwrap_or_default());
        }
        let mut c = env.conn().await;
        let mut lost = 0;
        for (k, &(v, at)) in &self.acked {
            let got: Option<u64> = c.get(k).await.expect("read back");
            if got != Some(v) {
                assert!(excused(at), "acked write of {k} lost ({got:?} != {v})");
                lost += 1;
            }
        }
        assert!(lost <= 5 && self.stale.len() <= 5, "lost {lost}, stale reads {}", self.stale.len());
    }

    /// The first few errors, for a failure message.
    pub fn first_errors(&self) -> &[String] {
        &self.errors[..self.errors.len().min(10)]
    }
}
