//! What the proxy buffers for its clients, counted so that it stays bounded: per client, the
//! output waiting to be written to it (node replies in its mailbox, subscription messages, replies
//! ready and its write buffer), held to Redis's `client-output-buffer-limit` for its class; in all,
//! the sum of every client's, held to `limits.max_memory`: past three quarters of it new requests
//! that bring replies in are refused while what is buffered drains, and at it the client holding
//! the most is closed, one at a time, as Redis's `maxmemory-clients` does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::Poll;
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::time::Instant;

use crate::sync::Mutex;

/// One class's `client-output-buffer-limit`: a client whose pending output reaches `hard`, or
/// stays above `soft` for `soft_for`, is disconnected. 0 turns a bound off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct OutputLimit {
    pub hard: usize,
    pub soft: usize,
    pub soft_for: Duration,
}

impl OutputLimit {
    fn off(&self) -> bool {
        self.hard == 0 && (self.soft == 0 || self.soft_for.is_zero())
    }
}

/// The limits of the classes a proxy client can be in (Redis's `normal` and `pubsub`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputLimits {
    pub normal: OutputLimit,
    pub pubsub: OutputLimit,
}

impl Default for OutputLimits {
    /// Redis's defaults: `normal 0 0 0`, `pubsub 32mb 8mb 60`.
    fn default() -> Self {
        OutputLimits {
            normal: OutputLimit::default(),
            pubsub: OutputLimit { hard: 32 << 20, soft: 8 << 20, soft_for: Duration::from_secs(60) },
        }
    }
}

/// Counter shards: each thread adds to its own, so that two cores never fight over one line.
const SHARDS: usize = 16;

#[repr(align(64))]
#[derive(Default)]
struct Shard {
    buffered: AtomicIsize,
    /// Bytes released so far (what the allocator may have to give back).
    released: AtomicUsize,
}

thread_local! {
    static SHARD: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS
    };
}

/// The bytes buffered for all clients, against `limits.max_memory`.
pub struct Usage {
    shards: [Shard; SHARDS],
    /// 0: no cap.
    max: usize,
    /// Every client's meter while there is a cap, to find the one holding the most.
    clients: Mutex<HashMap<u64, Weak<Meter>>>,
    next_id: AtomicU64,
    /// A client closed for the total has not gone yet: no second one meanwhile, since what the
    /// first holds is about to be freed.
    evicting: AtomicBool,
}

impl Usage {
    pub fn new(max: usize) -> Arc<Usage> {
        Arc::new(Usage {
            shards: Default::default(),
            max,
            clients: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            evicting: AtomicBool::new(false),
        })
    }

    fn add(&self, n: isize) {
        if n != 0 {
            SHARD.with(|&i| {
                let s = &self.shards[i];
                s.buffered.fetch_add(n, Ordering::Relaxed);
                if n < 0 {
                    s.released.fetch_add(n.unsigned_abs(), Ordering::Relaxed);
                }
            });
        }
    }

    /// Bytes buffered now.
    pub fn total(&self) -> usize {
        self.shards.iter().map(|s| s.buffered.load(Ordering::Relaxed)).sum::<isize>().max(0) as usize
    }

    /// Bytes released since the last call.
    pub fn take_released(&self) -> usize {
        self.shards.iter().map(|s| s.released.swap(0, Ordering::Relaxed)).sum()
    }

    /// Whether the proxy buffers more than three quarters of `limits.max_memory`: new requests
    /// that bring replies in are then refused, so that the replies on their way fit under it.
    pub fn refusing(&self) -> bool {
        self.max > 0 && self.total() > self.max / 4 * 3
    }

    /// Whether the proxy buffers more than `limits.max_memory`: a client is then closed.
    fn past_cap(&self) -> bool {
        self.max > 0 && self.total() > self.max
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Past the cap: closes the client holding the most output, unless one is already closing.
    fn evict(&self) {
        if self.evicting.swap(true, Ordering::AcqRel) {
            return;
        }
        // Upgraded under the lock, compared and dropped after it: the last reference to a meter
        // may go here, and its drop takes the lock.
        let all: Vec<Arc<Meter>> = self.clients.lock().values().filter_map(Weak::upgrade).collect();
        let biggest = all.iter().filter(|m| !m.is_over()).max_by_key(|m| m.pending());
        match biggest {
            Some(m) if m.pending() > 0 => m.trip(Why::MaxMemory),
            _ => self.evicting.store(false, Ordering::Release),
        }
    }
}

/// Why a client is to be closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// Its class's output buffer limit.
    OutputLimit,
    /// It held the most when all clients' output passed `limits.max_memory`.
    MaxMemory,
}

/// One client's pending output, against its class's limit. Others add what they queue for it;
/// the client's task says what it holds itself. Dropped with the client: what it counted is then
/// freed and leaves the total.
pub struct Meter {
    /// Queued by others (its mailbox, its subscriptions), not yet taken by the client task.
    queued: AtomicUsize,
    /// Replies the client task took and holds until their turn to be written (a node's reply
    /// waits for an earlier request's from another node), as it last said.
    ready: AtomicUsize,
    /// In the client task's write buffers, as it last said.
    held: AtomicUsize,
    /// In the pubsub class (holds subscriptions).
    pubsub: AtomicBool,
    /// Nanoseconds after `born` since when the output has been above the soft limit; 0: not.
    soft_since: AtomicU64,
    born: Instant,
    /// Over its limit: the client is to be disconnected.
    over: AtomicBool,
    /// Set with `over`: closed for the total rather than its own limit.
    evicted: AtomicBool,
    /// The connection ended: nothing is counted any more.
    gone: AtomicBool,
    id: u64,
    waker: AtomicWaker,
    limits: OutputLimits,
    usage: Arc<Usage>,
}

impl Meter {
    pub fn new(limits: OutputLimits, usage: Arc<Usage>) -> Arc<Meter> {
        let id = usage.next_id.fetch_add(1, Ordering::Relaxed);
        let capped = usage.max > 0;
        let m = Arc::new_cyclic(|me| {
            if capped {
                usage.clients.lock().insert(id, me.clone());
            }
            Meter {
                queued: AtomicUsize::new(0),
                ready: AtomicUsize::new(0),
                held: AtomicUsize::new(0),
                pubsub: AtomicBool::new(false),
                soft_since: AtomicU64::new(0),
                born: Instant::now(),
                over: AtomicBool::new(false),
                evicted: AtomicBool::new(false),
                gone: AtomicBool::new(false),
                id,
                waker: AtomicWaker::new(),
                limits,
                usage,
            }
        });
        m
    }

    /// `n` bytes queued for the client by another task.
    pub fn queue(&self, n: usize) {
        if self.gone.load(Ordering::Relaxed) {
            return;
        }
        self.queued.fetch_add(n, Ordering::Relaxed);
        self.usage.add(n as isize);
        self.check();
    }

    /// `n` queued bytes taken by the client task (now in what it holds).
    pub fn unqueue(&self, n: usize) {
        if self.gone.load(Ordering::Relaxed) {
            return;
        }
        self.queued.fetch_sub(n, Ordering::Relaxed);
        self.usage.add(-(n as isize));
    }

    /// The client task holds `n` bytes in its write buffers now.
    pub fn hold(&self, n: usize) {
        self.set(&self.held, n);
    }

    /// The client task holds `n` bytes of replies waiting for their turn now.
    pub fn set_ready(&self, n: usize) {
        self.set(&self.ready, n);
    }

    fn set(&self, counter: &AtomicUsize, n: usize) {
        if self.gone.load(Ordering::Relaxed) {
            return;
        }
        let old = counter.swap(n, Ordering::Relaxed);
        self.usage.add(n as isize - old as isize);
        if n > old {
            self.check();
        }
    }

    /// The connection ended: what it counted leaves the total now, though replies still on their
    /// way may keep this meter alive a while, and the next client may be closed for the total.
    pub fn gone(&self) {
        self.gone.store(true, Ordering::Relaxed);
        let n = self.queued.swap(0, Ordering::Relaxed)
            + self.ready.swap(0, Ordering::Relaxed)
            + self.held.swap(0, Ordering::Relaxed);
        self.usage.add(-(n as isize));
        if self.evicted.load(Ordering::Relaxed) {
            self.usage.evicting.store(false, Ordering::Release);
        }
    }

    /// The client holds subscriptions (Redis's pubsub class) or not.
    pub fn set_pubsub(&self, on: bool) {
        self.pubsub.store(on, Ordering::Relaxed);
    }

    fn limit(&self) -> OutputLimit {
        if self.pubsub.load(Ordering::Relaxed) {
            self.limits.pubsub
        } else {
            self.limits.normal
        }
    }

    /// Whether the client may be closed for its output now: its class has a limit, or the
    /// proxy a cap (a client without either never waits on it).
    pub fn limited(&self) -> bool {
        self.usage.max > 0 || !self.limit().off()
    }

    fn check(&self) {
        if self.usage.past_cap() {
            self.usage.evict();
        }
        let l = self.limit();
        if l.off() {
            return;
        }
        let pending = self.queued.load(Ordering::Relaxed)
            + self.ready.load(Ordering::Relaxed)
            + self.held.load(Ordering::Relaxed);
        if l.hard > 0 && pending >= l.hard {
            return self.trip(Why::OutputLimit);
        }
        if l.soft == 0 || l.soft_for.is_zero() || pending < l.soft {
            self.soft_since.store(0, Ordering::Relaxed);
            return;
        }
        let now = (self.born.elapsed().as_nanos() as u64).max(1);
        match self.soft_since.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => {}
            Err(since) if Duration::from_nanos(now.saturating_sub(since)) >= l.soft_for => self.trip(Why::OutputLimit),
            Err(_) => {}
        }
    }

    fn trip(&self, why: Why) {
        if !self.over.swap(true, Ordering::AcqRel) {
            if why == Why::MaxMemory {
                self.evicted.store(true, Ordering::Relaxed);
            }
            self.waker.wake();
        } else if why == Why::MaxMemory {
            // Closing already: the next eviction need not wait for it.
            self.usage.evicting.store(false, Ordering::Release);
        }
    }

    pub fn is_over(&self) -> bool {
        self.over.load(Ordering::Acquire)
    }

    /// Why the client is to be closed, once it is.
    pub fn why(&self) -> Why {
        if self.evicted.load(Ordering::Relaxed) {
            Why::MaxMemory
        } else {
            Why::OutputLimit
        }
    }

    /// The class whose limit the client is held to, for logs and metrics.
    pub fn class(&self) -> &'static str {
        if self.pubsub.load(Ordering::Relaxed) {
            "pubsub"
        } else {
            "normal"
        }
    }

    /// Bytes pending for the client now.
    pub fn pending(&self) -> usize {
        self.queued.load(Ordering::Relaxed) + self.ready.load(Ordering::Relaxed) + self.held.load(Ordering::Relaxed)
    }

    /// Resolves once the client went over its limit.
    pub async fn tripped(&self) {
        std::future::poll_fn(|cx| {
            if self.is_over() {
                return Poll::Ready(());
            }
            self.waker.register(cx.waker());
            if self.is_over() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        self.gone();
        if self.usage.max > 0 {
            self.usage.clients.lock().remove(&self.id);
        }
    }
}

/// A read or write buffer that a big frame grew: once what it holds is small again, its contents
/// move to a fresh buffer of `keep` bytes and the big allocation goes back to the system.
/// A frame split off a read buffer shares its allocation, so the buffer's tail alone would keep a
/// 64 MB value's memory for as long as the connection lives.
pub fn settle(buf: &mut bytes::BytesMut, keep: usize) {
    if buf.capacity() > SETTLE_ABOVE.max(keep) && buf.len() <= keep {
        let mut fresh = bytes::BytesMut::with_capacity(keep);
        fresh.extend_from_slice(buf);
        *buf = fresh;
    }
}

/// Buffers are left alone up to this capacity: giving back less is not worth the copy.
const SETTLE_ABOVE: usize = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settled_buffers_let_a_big_frame_go() {
        let mut buf = bytes::BytesMut::with_capacity(8 << 20);
        buf.extend_from_slice(&[b'x'; 3 << 20]);
        buf.extend_from_slice(b"+OK");
        let frame = buf.split_to(3 << 20).freeze();
        settle(&mut buf, 64 * 1024);
        assert_eq!((&buf[..], buf.capacity()), (&b"+OK"[..], 64 * 1024));
        assert!(frame.len() == 3 << 20, "the frame keeps its bytes");
        let mut small = bytes::BytesMut::with_capacity(512 * 1024);
        settle(&mut small, 4096);
        assert_eq!(small.capacity(), 512 * 1024, "below the threshold: kept");
    }

    #[test]
    fn hard_and_soft_limits_trip_and_the_total_follows() {
        let usage = Usage::new(100);
        let limits = OutputLimits {
            normal: OutputLimit { hard: 50, soft: 20, soft_for: Duration::from_secs(3600) },
            ..OutputLimits::default()
        };
        let m = Meter::new(limits, usage.clone());
        m.queue(30);
        m.hold(15);
        assert_eq!((usage.total(), m.is_over()), (45, false), "above soft, not long enough");
        m.unqueue(30);
        m.hold(45);
        assert_eq!((usage.total(), m.is_over()), (45, false));
        m.queue(10);
        assert!(m.is_over(), "hard limit");
        drop(m);
        assert_eq!(usage.total(), 0, "a dropped client's bytes leave the total");
        let soft = Meter::new(
            OutputLimits {
                normal: OutputLimit { hard: 0, soft: 10, soft_for: Duration::from_millis(1) },
                ..OutputLimits::default()
            },
            usage,
        );
        soft.hold(11);
        std::thread::sleep(Duration::from_millis(5));
        soft.queue(1);
        assert!(soft.is_over(), "above soft for longer than allowed");
    }

    #[test]
    fn near_the_cap_requests_are_refused_and_past_it_the_biggest_client_goes() {
        let usage = Usage::new(100);
        let a = Meter::new(OutputLimits::default(), usage.clone());
        let b = Meter::new(OutputLimits::default(), usage.clone());
        assert!(a.limited(), "a cap makes every client closable");
        a.hold(40);
        b.hold(35);
        assert!(!usage.refusing(), "75 is three quarters, not past them");
        b.hold(36);
        assert!(usage.refusing() && !a.is_over() && !b.is_over(), "refusing, nobody closed");
        a.queue(30);
        assert_eq!((a.is_over(), a.why(), b.is_over()), (true, Why::MaxMemory, false), "the biggest goes");
        b.hold(80);
        assert!(!b.is_over(), "one at a time: a is still leaving");
        a.gone();
        assert_eq!(usage.total(), 80, "a's bytes left with it");
        a.queue(1000);
        assert_eq!(usage.total(), 80, "replies on their way for a gone client are not counted");
        b.hold(101);
        assert!(b.is_over(), "past the cap again: b goes");
        drop((a, b));
        assert_eq!((usage.total(), usage.clients.lock().len()), (0, 0));
    }
}
