//! RESP framing: client requests in, backend replies in, replies we build ourselves out.
//!
//! Requests are scanned by our own resumable state machine rather than handed to `redis-protocol`,
//! because that crate (measured in design/crates.md) recurses on nested arrays until the process
//! aborts, re-parses a partial frame from byte 0 on every read (quadratic on big requests) and has no
//! inline commands. A client request is only ever a flat array of bulk strings, so the scanner
//! checks exactly that, keeps its position across reads, answers with Redis's own protocol-error
//! wording, and yields the arguments as zero-copy `Bytes` slices of the frame it split off the read
//! buffer. The raw frame is kept so single-slot commands are forwarded untouched.
//!
//! Backend replies are only delimited here ([`ReplyScanner`], iterative, RESP2 and RESP3); the
//! structured decoding of the few replies we inspect (CLUSTER SHARDS, COMMAND, INFO) is done with
//! `redis-protocol` in the modules that need it.

mod encode;
mod frames;
pub mod reply;
mod request;

pub use encode::{encode_command, put_array_header, put_bulk, put_int};
pub use frames::{
    aggregate_elements, as_bulk, as_int, error_text, is_error, is_null, reply_len, Elements, ReplyError, ReplyScanner,
};
pub use request::{split_inline, Limits, Parsed, ProtocolError, Request, RequestParser};

/// Where the next CRLF at or after `from` starts.
#[inline]
pub(crate) fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    let hay = buf.get(from..)?;
    let mut i = 0;
    while let Some(off) = hay[i..].iter().position(|&b| b == b'\r') {
        let at = i + off;
        match hay.get(at + 1) {
            Some(b'\n') => return Some(from + at),
            Some(_) => i = at + 1,
            None => return None,
        }
    }
    None
}

/// Parses a signed decimal integer the way Redis's `string2ll` does (no spaces, no `+`, no leading
/// zeros except "0" itself).
pub fn parse_int(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.first()? {
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 || (digits.len() > 1 && digits[0] == b'0') {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((d - b'0') as i64)?;
    }
    if neg {
        if v == 0 {
            return None;
        }
        Some(-v)
    } else {
        Some(v)
    }
}
