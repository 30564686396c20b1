//! The buffers a worker thread lends its connections: a client holds a read buffer only while it
//! has bytes to parse or requests in flight, and a write buffer only while it has bytes to write;
//! between, they wait here for the next client that reads or writes. An idle client holds
//! neither (ten thousand idle clients, ten thousand buffers otherwise: glibc could not give their
//! memory back, each a hole between the clients' long-lived state), and a busy one takes a warm
//! buffer instead of a fresh allocation.
//!
//! Per thread, without a lock: a client's task and its buffers never leave their worker.

use std::cell::RefCell;

use bytes::BytesMut;

/// Buffers kept per thread: enough for every client of a busy thread to have one out at once,
/// each at most [`KEEP_CAPACITY`] (1 MB per thread at most).
const KEEP: usize = 64;

/// A buffer grown past this by a burst is freed rather than kept.
const KEEP_CAPACITY: usize = 16 * 1024;

thread_local! {
    static POOL: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// A buffer for `buf` when it has none: one from the pool, or a new one of `size`.
pub(super) fn lend(buf: &mut BytesMut, size: usize) {
    if buf.capacity() == 0 {
        *buf = POOL.with(|p| p.borrow_mut().pop()).unwrap_or_else(|| BytesMut::with_capacity(size));
    }
}

/// Takes `buf` back if it is empty (a buffer holding bytes stays with its client).
pub(super) fn give_back(buf: &mut BytesMut) {
    if !buf.is_empty() || buf.capacity() == 0 {
        return;
    }
    let b = std::mem::take(buf);
    if b.capacity() <= KEEP_CAPACITY {
        POOL.with(|p| {
            let mut p = p.borrow_mut();
            if p.len() < KEEP {
                p.push(b);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_buffer_goes_back_and_is_lent_again() {
        let mut a = BytesMut::with_capacity(1024);
        let ptr = a.as_ptr();
        give_back(&mut a);
        assert_eq!(a.capacity(), 0, "the client holds nothing once it gave its buffer back");
        let mut b = BytesMut::new();
        lend(&mut b, 512);
        assert_eq!((b.as_ptr(), b.capacity()), (ptr, 1024), "the same allocation, lent again");
    }

    #[test]
    fn bytes_and_big_buffers_are_not_pooled() {
        let mut held = BytesMut::from(&b"*1\r\n$4\r\nPI"[..]);
        give_back(&mut held);
        assert_eq!(&held[..], b"*1\r\n$4\r\nPI", "a partial request stays with its client");
        let mut big = BytesMut::with_capacity(KEEP_CAPACITY + 1);
        give_back(&mut big);
        assert_eq!(big.capacity(), 0);
        let mut next = BytesMut::new();
        lend(&mut next, 100);
        assert_eq!(next.capacity(), 100, "the big one was freed, not lent");
    }
}
