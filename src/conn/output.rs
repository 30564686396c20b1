//! What goes out to one client: replies and messages in order, written together, held to the
//! client's output limit while the write waits on a slow reader.
//!
//! Small frames are copied into one buffer so that a pipeline's replies leave in one write; a
//! large one (a big value) is written from the node's read buffer it arrived in, never copied: a
//! 64 MB GET must not cost 64 MB more, nor leave a 64 MB write buffer behind.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;

use super::stream::WriteHalf;
use crate::memory::Meter;
use crate::metrics::Metrics;

/// Frames from this size on are written as they are rather than copied.
const COPY_BELOW: usize = 16 * 1024;

pub(super) struct Output {
    wr: WriteHalf,
    /// Frames ready to be written, in order: copied runs of small ones and big ones as they came.
    parts: VecDeque<Bytes>,
    /// The small frames after the last of `parts`.
    buf: BytesMut,
}

impl Output {
    pub(super) fn new(wr: WriteHalf) -> Output {
        Output { wr, parts: VecDeque::new(), buf: BytesMut::new() }
    }

    pub(super) fn push(&mut self, frame: &Bytes) {
        if frame.len() < COPY_BELOW {
            super::pool::lend(&mut self.buf, 1024);
            self.buf.extend_from_slice(frame);
            return;
        }
        if !self.buf.is_empty() {
            self.parts.push_back(self.buf.split().freeze());
        }
        self.parts.push_back(frame.clone());
    }

    /// Bytes waiting to be written.
    pub(super) fn len(&self) -> usize {
        self.parts.iter().map(Bytes::len).sum::<usize>() + self.buf.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.parts.is_empty() && self.buf.is_empty()
    }

    /// Writes everything out; false when the connection is to close: the write failed, or the
    /// client went over its output limit while the write waited.
    pub(super) async fn flush(&mut self, meter: &Meter, m: &Metrics) -> bool {
        let total = self.len();
        meter.hold(total);
        let written = if meter.limited() {
            tokio::select! {
                biased;
                _ = meter.tripped() => false,
                ok = write_parts(&mut self.wr, &mut self.parts, &mut self.buf) => ok,
            }
        } else {
            write_parts(&mut self.wr, &mut self.parts, &mut self.buf).await
        };
        if !written {
            return false;
        }
        if m.enabled {
            m.bytes_out.inc_by(total as u64);
        }
        // Written: the buffer waits in the worker's pool (or is freed, grown by a burst) until
        // this client has something to write again.
        super::pool::give_back(&mut self.buf);
        meter.hold(0);
        true
    }

    /// Drops the queue's capacity when nothing waits in it.
    pub(super) fn shed(&mut self) {
        if self.parts.is_empty() {
            self.parts = VecDeque::new();
        }
    }

    pub(super) async fn shutdown(mut self) {
        let _ = self.wr.shutdown().await;
    }
}

/// Writes and releases each part in turn (a big value is freed as soon as it is out), then the
/// buffer of small frames.
async fn write_parts(wr: &mut WriteHalf, parts: &mut VecDeque<Bytes>, buf: &mut BytesMut) -> bool {
    while let Some(p) = parts.front() {
        if wr.write_all(p).await.is_err() {
            return false;
        }
        parts.pop_front();
    }
    if wr.write_all(buf).await.is_err() {
        return false;
    }
    buf.clear();
    // TLS keeps what the socket did not take in its session until flushed; plain TCP has
    // nothing to flush.
    wr.flush().await.is_ok()
}
