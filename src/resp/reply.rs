//! Canned and built replies, in the client's protocol where RESP2 and RESP3 differ.

use bytes::{BufMut, Bytes, BytesMut};

use super::encode::{itoa_buf, put_array_header, put_bulk, put_decimal, put_int};

pub fn ok() -> Bytes {
    Bytes::from_static(b"+OK\r\n")
}

pub fn simple(s: &str) -> Bytes {
    Bytes::from(format!("+{s}\r\n"))
}

pub fn int(v: i64) -> Bytes {
    let mut out = BytesMut::with_capacity(24);
    put_int(&mut out, v);
    out.freeze()
}

pub fn bulk(b: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(b.len() + 16);
    put_bulk(&mut out, b);
    out.freeze()
}

/// Text as Redis sends INFO and CLIENT INFO/LIST: a RESP3 verbatim string (`=len\r\ntxt:...`),
/// a bulk string in RESP2.
pub fn verbatim(proto: u8, text: &[u8]) -> Bytes {
    if proto < 3 {
        return bulk(text);
    }
    let mut out = BytesMut::with_capacity(text.len() + 24);
    out.put_u8(b'=');
    put_decimal(&mut out, text.len() as i64 + 4);
    out.put_slice(b"\r\ntxt:");
    out.put_slice(text);
    out.put_slice(b"\r\n");
    out.freeze()
}

/// The null reply in the client's protocol version.
pub fn null(proto: u8) -> Bytes {
    if proto >= 3 {
        Bytes::from_static(b"_\r\n")
    } else {
        Bytes::from_static(b"$-1\r\n")
    }
}

/// The null array in the client's protocol (a timed-out blocking pop, an aborted EXEC).
pub fn null_array(proto: u8) -> Bytes {
    if proto >= 3 {
        Bytes::from_static(b"_\r\n")
    } else {
        Bytes::from_static(b"*-1\r\n")
    }
}

/// An array of already-encoded elements.
pub fn array<T: AsRef<[u8]>>(elems: &[T]) -> Bytes {
    // Exactly sized: a buffer with spare room costs a second allocation when frozen.
    let header = 3 + itoa_buf(elems.len() as i64).as_bytes_mut().len();
    let mut out = BytesMut::with_capacity(header + elems.iter().map(|e| e.as_ref().len()).sum::<usize>());
    put_array_header(&mut out, elems.len());
    for e in elems {
        out.put_slice(e.as_ref());
    }
    out.freeze()
}

/// A set of already-encoded elements in the client's protocol: RESP3 `~`, or an array in RESP2.
pub fn set<T: AsRef<[u8]>>(proto: u8, elems: &[T]) -> Bytes {
    let arr = array(elems);
    if proto < 3 {
        return arr;
    }
    let mut out = BytesMut::with_capacity(arr.len());
    out.put_u8(b'~');
    out.put_slice(&arr[1..]);
    out.freeze()
}

/// A map in the client's protocol: RESP3 `%`, or a flat key/value array in RESP2 (as Redis does).
pub fn map(proto: u8, pairs: &[(Bytes, Bytes)]) -> Bytes {
    let mut out = BytesMut::new();
    if proto >= 3 {
        out.put_u8(b'%');
        put_decimal(&mut out, pairs.len() as i64);
        out.put_slice(b"\r\n");
    } else {
        put_array_header(&mut out, pairs.len() * 2);
    }
    for (k, v) in pairs {
        out.put_slice(k);
        out.put_slice(v);
    }
    out.freeze()
}
