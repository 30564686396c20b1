//! The one lock the proxy uses. A `std::sync::Mutex` is poisoned when a holder panics; every state
//! guarded here (queues, idle pools, caches) stays consistent after any single update, so a lock
//! is taken whether or not it was poisoned, instead of each call site choosing what to do.

#![allow(clippy::disallowed_types)]

/// A mutex whose lock never fails.
#[derive(Debug, Default)]
pub struct Mutex<T>(std::sync::Mutex<T>);

/// What [`Mutex::lock`] returns.
pub type Guard<'a, T> = std::sync::MutexGuard<'a, T>;

impl<T> Mutex<T> {
    pub const fn new(v: T) -> Mutex<T> {
        Mutex(std::sync::Mutex::new(v))
    }

    /// Locks, also after a panic elsewhere poisoned the lock.
    pub fn lock(&self) -> Guard<'_, T> {
        match self.0.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}
