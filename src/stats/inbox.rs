//! Each client's inbox of cache invalidations: where the proxy's tracking puts what the client
//! (or a client that redirects to it) must drop from its cache, for the client's own task to write
//! between its replies. Bounded: past [`MAX_PENDING`] messages the queue collapses into one flush,
//! which is what it would have meant anyway, only coarser.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
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

    /// Everything waiting, in the order it was put.
    pub fn take(&self) -> VecDeque<Inval> {
        self.pending.store(false, Ordering::Release);
        std::mem::take(&mut *self.queue.lock())
    }
}
