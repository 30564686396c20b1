//! Each client's inbox of cache invalidations: where the proxy's tracking puts what the client
//! (or a client that redirects to it) must drop from its cache, for the client's own task to write
//! between its replies; and what the proxy asks of the client's task ([`Ask`]): no task carries a
//! waiter of its own for these.
//! Bounded: past [`MAX_PENDING`] messages the queue collapses into one flush, which is what it
//! would have meant anyway, only coarser.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::task::Poll;

use bytes::Bytes;
use futures_util::task::AtomicWaker;

use crate::sync::Mutex;

/// Messages one client may have waiting before they become one flush.
pub const MAX_PENDING: usize = 4096;

/// One invalidation message, as Redis sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inval {
    /// These keys changed.
    Keys(Vec<Bytes>),
    /// Everything may have changed: drop the whole cache (Redis's null invalidation).
    Flush,
    /// The client that `tracker` redirected to left: sent to `tracker` itself (RESP3 only).
    RedirBroken(u64),
}

/// A client's waiting invalidations and the wake-up of its task. Its task waits on it on every
/// turn of its loop: a flag and a waker, no lock, so that costs nothing when nothing comes.
#[derive(Default)]
pub struct Inbox {
    queue: Mutex<VecDeque<Inval>>,
    pending: AtomicBool,
    waker: AtomicWaker,
    /// What was asked ([`Ask`] bits) and not yet taken.
    asks: AtomicU8,
}

/// What the proxy asks of a client's task through its inbox.
#[derive(Clone, Copy, Debug)]
pub enum Ask {
    /// It has been idle a while: let go of what it keeps between requests.
    Shed = 1,
    /// The proxy is draining: close once everything received is answered.
    Drain = 2,
}

/// The [`Ask`]s taken at once.
#[derive(Clone, Copy, Debug, Default)]
pub struct Asked(u8);

impl Asked {
    pub fn has(self, a: Ask) -> bool {
        self.0 & a as u8 != 0
    }
}

impl Inbox {
    pub fn put(&self, m: Inval) {
        {
            let mut q = self.queue.lock();
            if q.len() >= MAX_PENDING {
                q.clear();
                q.push_back(Inval::Flush);
            } else if !(m == Inval::Flush && q.back() == Some(&Inval::Flush)) {
                q.push_back(m);
            }
        }
        self.pending.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Resolves once something was put since the last [`take`](Inbox::take).
    pub async fn ready(&self) {
        std::future::poll_fn(|cx| {
            if self.pending.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            self.waker.register(cx.waker());
            if self.pending.load(Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    /// Wakes the client's task with `a`.
    pub fn ask(&self, a: Ask) {
        self.asks.fetch_or(a as u8, Ordering::AcqRel);
        self.pending.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// What was asked since the task last looked; called after [`take`](Inbox::take), so that
    /// an ask made between the two is seen now or wakes the task again.
    pub fn take_asks(&self) -> Asked {
        Asked(self.asks.swap(0, Ordering::AcqRel))
    }

    /// Everything waiting, in the order it was put.
    pub fn take(&self) -> VecDeque<Inval> {
        self.pending.store(false, Ordering::Release);
        std::mem::take(&mut *self.queue.lock())
    }
}
