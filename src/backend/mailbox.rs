//! Where a node batch's replies go: a future waiting for that one batch, or a client's
//! [`Mailbox`], one per client connection for all its batches (no channel and no future per batch
//! on the hot path).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Waker;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::BackendError;
use crate::memory::Meter;
use crate::sync::Mutex;

/// A batch's replies, one per command it carried, or how the batch failed.
pub type Reply = Result<Vec<Bytes>, BackendError>;

/// Where a job's replies go.
pub enum Sink {
    /// A future waiting for this one job.
    Once(oneshot::Sender<Reply>),
    /// A client's mailbox, under the tag the client gave the batch.
    Mailbox(Arc<Mailbox>, u64),
}

impl Sink {
    /// Nobody will read the replies any more: the job need not be written.
    pub(super) fn is_closed(&self) -> bool {
        match self {
            Sink::Once(tx) => tx.is_closed(),
            Sink::Mailbox(m, _) => m.closed.load(Ordering::Relaxed),
        }
    }

    /// A reply frame of `n` bytes came for this job: whether to keep it. A client's frames count
    /// against its output as they come, not once the batch is whole: a batch of a thousand 1 MB
    /// GETs must not gather a gigabyte before anyone sees it. The frames of a client that left or
    /// is being closed for its output are dropped at once.
    pub(super) fn admit(&self, n: usize) -> bool {
        match self {
            Sink::Once(_) => true,
            Sink::Mailbox(m, _) => {
                if m.closed.load(Ordering::Relaxed) || m.meter.is_over() {
                    return false;
                }
                m.meter.queue(n);
                true
            }
        }
    }

    /// Hands the batch's replies over; `admitted` is what [`Sink::admit`] counted for them.
    pub(super) fn deliver(self, reply: Reply, admitted: usize) {
        match self {
            Sink::Once(tx) => {
                let _ = tx.send(reply);
            }
            Sink::Mailbox(m, tag) => m.deliver(tag, reply, admitted),
        }
    }
}

/// One client connection's replies from every node, tagged by batch; the client task takes them
/// all at once when it wakes. A client's batches are not bounded by a channel: the client itself
/// stops reading once `limits.max_pipeline` requests are in flight.
pub struct Mailbox {
    inner: Mutex<Delivered>,
    closed: AtomicBool,
    /// The client's output: what is delivered here is pending for it until taken.
    meter: Arc<Meter>,
}

#[derive(Default)]
struct Delivered {
    replies: Vec<(u64, Reply)>,
    /// Bytes of `replies`.
    bytes: usize,
    waker: Option<Waker>,
}

impl Mailbox {
    pub fn new(meter: Arc<Meter>) -> Arc<Mailbox> {
        Arc::new(Mailbox { inner: Mutex::new(Delivered::default()), closed: AtomicBool::new(false), meter })
    }

    /// The client is gone: batches not yet written are dropped.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    fn deliver(&self, tag: u64, reply: Reply, admitted: usize) {
        if self.closed.load(Ordering::Relaxed) || self.meter.is_over() {
            // For a client that left or is being closed for its output: freed now.
            self.meter.unqueue(admitted);
            return;
        }
        let bytes = if reply.is_ok() {
            admitted
        } else {
            // What came of a failed batch goes with it; the error is small.
            self.meter.unqueue(admitted);
            0
        };
        let mut d = self.inner.lock();
        d.replies.push((tag, reply));
        d.bytes += bytes;
        // Kept, not taken: the client task registers the same waker again on its next wait.
        if let Some(w) = &d.waker {
            w.wake_by_ref();
        }
    }

    /// Drops the queue's capacity when it is empty (an idle client's).
    pub fn shed(&self) {
        let mut d = self.inner.lock();
        if d.replies.is_empty() {
            d.replies = Vec::new();
        }
    }

    /// Moves every delivered reply into `into` (true if there was any); when there was none and
    /// a `waker` is given, it is woken by the next delivery.
    pub fn take(&self, waker: Option<&Waker>, into: &mut Vec<(u64, Reply)>) -> bool {
        let mut d = self.inner.lock();
        if d.replies.is_empty() {
            if let Some(w) = waker {
                if !d.waker.as_ref().is_some_and(|old| old.will_wake(w)) {
                    d.waker = Some(w.clone());
                }
            }
            return false;
        }
        into.append(&mut d.replies);
        self.meter.unqueue(std::mem::take(&mut d.bytes));
        true
    }
}
