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

    #[test]
    fn integers_of_every_sign_and_width() {
        for v in [0i64, 7, -7, 10, -10, 99, 100, 123_456_789, -123_456_789, i64::MAX, i64::MIN] {
            let mut out = BytesMut::new();
            put_int(&mut out, v);
            assert_eq!(out, format!(":{v}\r\n").as_bytes());
        }
        assert_eq!(encode_command(&["SET", "k", ""]), Bytes::from_static(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"));
        assert_eq!(encode_command::<&[u8]>(&[]), Bytes::from_static(b"*0\r\n"));
    }

    /// The replies the proxy builds, in each protocol where they differ.
    #[test]
    fn built_replies() {
        use crate::resp::reply;
        assert_eq!(reply::ok(), Bytes::from_static(b"+OK\r\n"));
        assert_eq!(reply::simple("QUEUED"), Bytes::from_static(b"+QUEUED\r\n"));
        assert_eq!(reply::int(-1), Bytes::from_static(b":-1\r\n"));
        assert_eq!(reply::bulk(b"a\r\nb"), Bytes::from_static(b"$4\r\na\r\nb\r\n"));
        assert_eq!((reply::null(2), reply::null(3)), (Bytes::from_static(b"$-1\r\n"), Bytes::from_static(b"_\r\n")));
        assert_eq!(reply::null(4), Bytes::from_static(b"_\r\n"));
        assert_eq!(
            (reply::null_array(2), reply::null_array(3)),
            (Bytes::from_static(b"*-1\r\n"), Bytes::from_static(b"_\r\n"))
        );
        let twelve: Vec<Bytes> = (0..12).map(reply::int).collect();
        let arr = reply::array(&twelve);
        assert!(arr.starts_with(b"*12\r\n:0\r\n:1\r\n") && arr.ends_with(b":11\r\n"));
        assert_eq!(arr.len(), 5 + twelve.iter().map(|e| e.len()).sum::<usize>());
        assert_eq!(reply::array::<Bytes>(&[]), Bytes::from_static(b"*0\r\n"));
        let pairs = [(reply::bulk(b"k"), reply::int(1)), (reply::bulk(b"j"), reply::int(2))];
        assert_eq!(reply::map(3, &pairs), Bytes::from_static(b"%2\r\n$1\r\nk\r\n:1\r\n$1\r\nj\r\n:2\r\n"));
        assert_eq!(reply::map(2, &pairs), Bytes::from_static(b"*4\r\n$1\r\nk\r\n:1\r\n$1\r\nj\r\n:2\r\n"));
        assert_eq!(reply::map(3, &[]), Bytes::from_static(b"%0\r\n"));
        assert_eq!(reply::map(2, &pairs[..1]), Bytes::from_static(b"*2\r\n$1\r\nk\r\n:1\r\n"));
        let many: Vec<Bytes> = (0..1000).map(reply::int).collect();
        assert!(reply::array(&many).starts_with(b"*1000\r\n:0\r\n"));
    }
}
