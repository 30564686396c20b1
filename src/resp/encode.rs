//! Writing RESP: commands sent to nodes, and the headers of replies built by the proxy.

use bytes::{BufMut, Bytes, BytesMut};

/// Encodes a command as a RESP multibulk of bulk strings.
pub fn encode_command<B: AsRef<[u8]>>(args: &[B]) -> Bytes {
    let mut out = BytesMut::with_capacity(16 + args.iter().map(|a| a.as_ref().len() + 16).sum::<usize>());
    put_array_header(&mut out, args.len());
    for a in args {
        put_bulk(&mut out, a.as_ref());
    }
    out.freeze()
}

pub fn put_array_header(out: &mut BytesMut, n: usize) {
    put_header(out, b'*', n);
}

pub fn put_bulk(out: &mut BytesMut, b: &[u8]) {
    put_header(out, b'$', b.len());
    out.put_slice(b);
    out.put_slice(b"\r\n");
}

/// `*n\r\n` or `$n\r\n`: split commands and merged replies write one per key, and the lengths are
/// nearly always below 100 (one write instead of a digit loop and three writes).
fn put_header(out: &mut BytesMut, tag: u8, n: usize) {
    if n < 10 {
        out.put_slice(&[tag, b'0' + n as u8, b'\r', b'\n']);
    } else if n < 100 {
        out.put_slice(&[tag, b'0' + (n / 10) as u8, b'0' + (n % 10) as u8, b'\r', b'\n']);
    } else {
        out.put_u8(tag);
        put_decimal(out, n as i64);
        out.put_slice(b"\r\n");
    }
}

pub fn put_int(out: &mut BytesMut, v: i64) {
    out.put_u8(b':');
    put_decimal(out, v);
    out.put_slice(b"\r\n");
}

pub(super) fn put_decimal(out: &mut BytesMut, v: i64) {
    let mut tmp = itoa_buf(v);
    out.put_slice(tmp.as_bytes_mut());
}

pub(super) struct Decimal {
    buf: [u8; 20],
    start: usize,
}

impl Decimal {
    pub(super) fn as_bytes_mut(&mut self) -> &[u8] {
        &self.buf[self.start..]
    }
}

pub(super) fn itoa_buf(v: i64) -> Decimal {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let neg = v < 0;
    let mut u = v.unsigned_abs();
    loop {
        i -= 1;
        buf[i] = b'0' + (u % 10) as u8;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    if neg {
        i -= 1;
        buf[i] = b'-';
    }
    Decimal { buf, start: i }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_of_every_width() {
        for n in [0usize, 1, 9, 10, 42, 99, 100, 12345] {
            let mut out = BytesMut::new();
            put_array_header(&mut out, n);
            put_bulk(&mut out, &vec![b'x'; n]);
            assert_eq!(out, format!("*{n}\r\n${n}\r\n{}\r\n", "x".repeat(n)).as_bytes());
        }
    }
}
