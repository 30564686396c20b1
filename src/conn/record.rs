//! Each request's metrics, recorded when its reply is written, gathered per batch of replies:
//! the shared counters and histograms are atomics that both cores would fight over per request.

use tokio::time::Instant;

use crate::command::CommandSpec;
use crate::metrics::{Metrics, Outcome, Timed};
use crate::resp;

/// One request's metrics, recorded by the client task when its reply is written.
pub(super) struct Rec {
    id: u32,
    outcome: Outcome,
    class: Timed,
    started: Instant,
}

impl Rec {
    pub(super) fn new(spec: &CommandSpec, outcome: Outcome, class: Timed, started: Instant) -> Rec {
        Rec::with_id(spec.metric_id, outcome, class, started)
    }

    /// For a command known by its metric id ([`CommandSpec::metric_id`]).
    pub(super) fn with_id(id: u32, outcome: Outcome, class: Timed, started: Instant) -> Rec {
        Rec { id, outcome, class, started }
    }
}

/// How a reply counts in the metrics; `redirected` when the router followed a redirect for it.
pub(super) fn outcome(reply: &[u8], redirected: bool) -> Outcome {
    if resp::is_error(reply) {
        Outcome::Error
    } else if redirected {
        Outcome::Redirect
    } else {
        Outcome::Ok
    }
}

/// Metric updates gathered over one batch of replies and applied once per batch: the shared
/// counters and histograms are atomics that both cores would otherwise fight over per request.
pub(super) struct Batch {
    /// Made on first use, per class: an idle client holds none.
    latency: Vec<Option<prometheus::local::LocalHistogram>>,
    counts: Vec<(u32, Outcome, u64)>,
    now: Option<Instant>,
}

impl Batch {
    pub(super) fn new() -> Batch {
        Batch { latency: Vec::new(), counts: Vec::new(), now: None }
    }

    #[inline]
    pub(super) fn add(&mut self, m: &Metrics, r: Rec) {
        // One clock read per batch: every reply in it is ready by the time it is written.
        let now = *self.now.get_or_insert_with(Instant::now);
        let i = r.class as usize;
        if self.latency.len() <= i {
            self.latency.resize_with(i + 1, || None);
        }
        let h = self.latency[i].get_or_insert_with(|| m.latency(r.class).local());
        h.observe(now.saturating_duration_since(r.started).as_secs_f64());
        match self.counts.iter_mut().find(|(id, o, _)| *id == r.id && *o == r.outcome) {
            Some((_, _, n)) => *n += 1,
            None => self.counts.push((r.id, r.outcome, 1)),
        }
    }

    /// Lets go of the per-class histograms and the counts' capacity (flushed already: a batch is
    /// flushed before its replies are written).
    pub(super) fn shed(&mut self) {
        self.latency = Vec::new();
        self.counts = Vec::new();
    }

    pub(super) fn flush(&mut self, m: &Metrics) {
        if self.now.take().is_none() {
            return;
        }
        for h in self.latency.iter().flatten() {
            h.flush();
        }
        for (id, o, n) in self.counts.drain(..) {
            m.command_by_id(id).record_n(o, n);
        }
    }
}
