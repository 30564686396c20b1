//! Read-your-writes for one client (`routing.read_your_writes_ms`): the slots it wrote lately,
//! whose reads go to the master until the write is that old, since a replica may not have it yet.

use std::time::Duration;

use tokio::time::Instant;

/// Slots tracked one by one; past that, every slot counts as written (still bounded, still safe:
/// reads go to the master a little more often than needed).
const MAX_SLOTS: usize = 32;

/// The slots one client wrote within the window, each with when its window ends.
#[derive(Default)]
pub(super) struct RecentWrites {
    slots: Vec<(u16, Instant)>,
    /// Until when every slot counts as written (a write whose slots are not known here, or more
    /// slots than are tracked).
    all_until: Option<Instant>,
}

impl RecentWrites {
    /// The client wrote `slot` (`None`: slots not known here); its reads of it go to the master
    /// for `window`.
    pub(super) fn wrote(&mut self, slot: Option<u16>, window: Duration) {
        if window.is_zero() {
            return;
        }
        let now = Instant::now();
        let until = now + window;
        let Some(slot) = slot else {
            self.all_until = Some(until);
            return;
        };
        if let Some(e) = self.slots.iter_mut().find(|(s, _)| *s == slot) {
            e.1 = until;
            return;
        }
        if self.slots.len() >= MAX_SLOTS {
            self.slots.retain(|(_, t)| *t > now);
        }
        if self.slots.len() >= MAX_SLOTS {
            self.slots.clear();
            self.all_until = Some(until);
            return;
        }
        self.slots.push((slot, until));
    }

    /// Whether a read of `slot` (`None`: of slots not known here) must go to the master.
    pub(super) fn fresh(&mut self, slot: Option<u16>) -> bool {
        if self.slots.is_empty() && self.all_until.is_none() {
            return false;
        }
        let now = Instant::now();
        if self.all_until.is_some_and(|t| t <= now) {
            self.all_until = None;
        }
        if self.all_until.is_some() {
            return true;
        }
        match slot {
            Some(s) => self.slots.iter().any(|(x, t)| *x == s && *t > now),
            None => self.slots.iter().any(|(_, t)| *t > now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn slots_stay_fresh_for_the_window_and_memory_stays_bounded() {
        let w = Duration::from_millis(100);
        let mut r = RecentWrites::default();
        r.wrote(Some(7), Duration::ZERO);
        assert!(!r.fresh(Some(7)), "a zero window is off");
        r.wrote(Some(7), w);
        assert!(r.fresh(Some(7)) && !r.fresh(Some(8)) && r.fresh(None));
        tokio::time::advance(Duration::from_millis(101)).await;
        assert!(!r.fresh(Some(7)));
        for s in 0..=MAX_SLOTS as u16 {
            r.wrote(Some(s), w);
        }
        assert!(r.slots.len() <= MAX_SLOTS);
        assert!(r.fresh(Some(9999)), "past the cap every slot counts as written");
        tokio::time::advance(Duration::from_millis(101)).await;
        assert!(!r.fresh(Some(9999)) && !r.fresh(Some(1)));
        r.wrote(None, w);
        assert!(r.fresh(Some(1)));
    }
}
