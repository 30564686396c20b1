//! What reaches the client between its requests: the replies that are ready, in request order
//! and with their metrics recorded first; subscription messages as they arrive (and the repair of
//! subscriptions the map moved); cache invalidations (CLIENT TRACKING), after the replies already
//! due; the close of a client that overcame its output limit; and an idle client's buffers let go.

use super::{Client, Next};
use crate::memory::Why;
use crate::session::pubsub::{self, Event, PubSub};
use crate::session::tracking;
use crate::stats::inbox::Ask;

impl Client {
    /// Writes every reply that is ready, in order, with their metrics recorded first.
    pub(super) async fn write_ready(&mut self) -> Next {
        let m = &self.h.router.metrics;
        self.inflight.collect();
        while let Some((r, rec)) = self.inflight.pop() {
            self.out.push(&r);
            if let Some(r) = rec {
                self.batch.add(m, r);
            }
        }
        self.inflight.count_ready();
        // Before the write: a client that reads its reply and then scrapes sees it counted.
        self.batch.flush(m);
        if self.flush().await {
            Next::Loop
        } else {
            Next::Close
        }
    }

    /// Writes the write buffer out; false when the connection is to close: the write failed, or
    /// the client went over its output limit meanwhile (a slow reader while replies or messages
    /// pile up for it).
    pub(super) async fn flush(&mut self) -> bool {
        let (meter, m) = (&self.c.meter, &self.h.router.metrics);
        if self.out.flush(meter, m).await {
            return true;
        }
        if meter.is_over() {
            self.over_limit();
        }
        false
    }

    /// The client went over its output buffer limit, or held the most when all clients' output
    /// passed `limits.max_memory`: closed, as Redis closes it, and what was held for it freed.
    pub(super) fn over_limit(&self) -> Next {
        let (meter, m) = (&self.c.meter, &self.h.router.metrics);
        let pending = meter.pending();
        match meter.why() {
            Why::OutputLimit => {
                let class = meter.class();
                tracing::info!(peer = %self.peer, class, pending, "client closed for overcoming its output buffer limit");
                m.output_limit_closed(class);
            }
            Why::MaxMemory => {
                tracing::info!(peer = %self.peer, pending, "client evicted: it held the most output when limits.max_memory was passed");
                m.clients_evicted.inc();
            }
        }
        Next::Close
    }

    pub(super) async fn on_event(&mut self, ev: Event) -> Next {
        if let Some(ps) = self.c.pubsub.as_mut() {
            match ev {
                Event::Frame(id, f) => {
                    // CLIENT REPLY OFF drops messages too, as Redis drops every write.
                    if let Some(m) = ps.on_frame(id, f).filter(|_| !self.c.session.replies.off) {
                        self.out.push(&m);
                    }
                }
                Event::Closed(id) => {
                    if ps.dropped_by_node(id, &self.h.router).await {
                        tracing::info!(peer = %self.peer, "client closed: a node dropped its subscription connection");
                        return Next::Close;
                    }
                    ps.on_closed(id)
                }
            }
            if ps.needs_repair {
                ps.repair(&self.h.router).await;
            }
        }
        if !self.out.is_empty() && !self.flush().await {
            return Next::Close;
        }
        Next::Loop
    }

    /// What came to the client's inbox. The cache invalidations, in its protocol, each in the
    /// place of a reply after those of the requests already in flight: an invalidation that came
    /// by another connection than the read it concerns must not overtake that read's reply. Then
    /// what the proxy asked: to drain, or to let go of its buffers.
    pub(super) fn read_inbox(&mut self) {
        let subscribed = self.c.pubsub.as_ref().is_some_and(|ps| ps.active());
        // Written under CLIENT REPLY OFF too, as Redis writes its pushes.
        let inbox = &self.c.session.entry.inbox;
        for m in inbox.take() {
            if let Some(f) = tracking::frame(&m, self.c.session.proto, subscribed) {
                self.inflight.ready((f, None), 0);
            }
        }
        let asked = inbox.take_asks();
        if asked.has(Ask::Drain) {
            self.draining = true;
        }
        if asked.has(Ask::Shed) {
            self.shed();
        }
    }

    /// Idle for a while (the memory check asked): lets go of every buffer and queue kept between
    /// requests for the next burst, so that an idle client costs its task, its socket and its
    /// state only. Whatever holds bytes or requests right now is kept.
    fn shed(&mut self) {
        if self.rbuf.is_empty() {
            self.rbuf = bytes::BytesMut::new();
            self.read_size = super::MIN_READ;
        }
        self.out.shed();
        self.inflight.shed();
        self.gather.shed();
        self.batch.shed();
    }

    pub(super) async fn repair(&mut self) {
        if let Some(ps) = self.c.pubsub.as_mut() {
            ps.repair(&self.h.router).await;
        }
    }
}

/// Resolves after the subscriptions' repair interval. A `sleep()` written in the `select!` was
/// made (clock read, runtime handle) and dropped on every loop turn, even with its branch
/// disabled; this future builds it only when polled, i.e. when a repair is due.
pub(super) async fn repair_due() {
    tokio::time::sleep(pubsub::REPAIR_EVERY).await
}

pub(super) async fn next_event(ps: &mut Option<Box<PubSub>>) -> Option<Event> {
    match ps.as_mut() {
        Some(ps) => ps.next_event().await,
        None => std::future::pending().await,
    }
}
