//! Replies that name keys, as the selected database shows them: its prefix taken off, and the
//! keys of other databases left out where a reply lists keys (KEYS, SCAN).

use bytes::{Bytes, BytesMut};

use super::reserved;
use crate::resp::{as_bulk, put_array_header, put_bulk, Elements};

/// Where a reply names keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// The first element of an array (BLPOP, BZPOPMIN, LMPOP, BLMPOP, ZMPOP...).
    First,
    /// XREAD/XREADGROUP: `[[stream, entries], ...]`, or a map `stream => entries` in RESP3.
    Streams,
    /// KEYS: an array of key names.
    List,
    /// SCAN: `[cursor, [key, ...]]`.
    Scan,
    /// RANDOMKEY: one key name.
    One,
}

/// The shape of the reply of a command that names keys in it, by the command's name.
pub fn shape_of(name: &str) -> Option<Shape> {
    Some(match name {
        "blpop" | "brpop" | "bzpopmin" | "bzpopmax" | "blmpop" | "bzmpop" | "lmpop" | "zmpop" => Shape::First,
        "xread" | "xreadgroup" => Shape::Streams,
        "keys" => Shape::List,
        "scan" => Shape::Scan,
        "randomkey" => Shape::One,
        _ => return None,
    })
}

/// The key as the database sees it: without `prefix`, or for the plain database 0 (`None`) the
/// key unless it belongs to another database. `None` when it is not this database's.
pub fn own<'a>(prefix: Option<&[u8]>, key: &'a [u8]) -> Option<&'a [u8]> {
    match prefix {
        Some(p) => key.strip_prefix(p),
        None => (!reserved(key)).then_some(key),
    }
}

/// `reply` as the database of `prefix` sees it; anything it does not recognise (errors, nulls)
/// is returned as it is.
pub fn strip(prefix: Option<&[u8]>, shape: Shape, reply: Bytes) -> Bytes {
    let done = match shape {
        Shape::First => first(prefix, &reply),
        Shape::Streams => streams(prefix, &reply),
        Shape::List => list(prefix, &reply),
        Shape::Scan => scan(prefix, &reply),
        Shape::One => one(prefix, &reply),
    };
    done.unwrap_or(reply)
}

fn bulk_of(frame: &[u8]) -> Option<Bytes> {
    as_bulk(&Bytes::copy_from_slice(frame))?
}

fn first(prefix: Option<&[u8]>, reply: &Bytes) -> Option<Bytes> {
    let header_end = reply.iter().position(|&b| b == b'\n')? + 1;
    let mut el = Elements::of(reply)?;
    let key = el.next()?;
    let name = bulk_of(key)?;
    let mut out = BytesMut::with_capacity(reply.len());
    out.extend_from_slice(&reply[..header_end]);
    put_bulk(&mut out, own(prefix, &name).unwrap_or(&name));
    out.extend_from_slice(&reply[header_end + key.len()..]);
    Some(out.freeze())
}

fn streams(prefix: Option<&[u8]>, reply: &Bytes) -> Option<Bytes> {
    let mut out = BytesMut::with_capacity(reply.len());
    if reply.first() == Some(&b'%') {
        // RESP3: a map of stream name to entries, i.e. 2n frames after the header.
        let eol = reply.iter().position(|&b| b == b'\n')? + 1;
        let n = crate::resp::parse_int(&reply[1..eol - 2])?;
        let doubled = format!("*{}\r\n", n * 2);
        let mut as_array = BytesMut::from(doubled.as_bytes());
        as_array.extend_from_slice(&reply[eol..]);
        out.extend_from_slice(&reply[..eol]);
        let mut el = Elements::of(&as_array)?;
        while let (Some(k), Some(v)) = (el.next(), el.next()) {
            let name = bulk_of(k)?;
            put_bulk(&mut out, own(prefix, &name).unwrap_or(&name));
            out.extend_from_slice(v);
        }
        return Some(out.freeze());
    }
    let el = Elements::of(reply)?;
    put_array_header(&mut out, el.len());
    for stream in el {
        out.extend_from_slice(&first(prefix, &Bytes::copy_from_slice(stream))?);
    }
    Some(out.freeze())
}

fn list(prefix: Option<&[u8]>, reply: &Bytes) -> Option<Bytes> {
    let mut keys = Vec::new();
    for k in Elements::of(reply)? {
        let name = bulk_of(k)?;
        if let Some(mine) = own(prefix, &name) {
            keys.push(name.slice_ref(mine));
        }
    }
    let mut out = BytesMut::with_capacity(reply.len());
    // A set in RESP3 stays a set (`~`), an array an array.
    out.extend_from_slice(if reply.first() == Some(&b'~') { b"~" } else { b"*" });
    out.extend_from_slice(keys.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for k in keys {
        put_bulk(&mut out, &k);
    }
    Some(out.freeze())
}

fn scan(prefix: Option<&[u8]>, reply: &Bytes) -> Option<Bytes> {
    let mut el = Elements::of(reply)?;
    let cursor = el.next()?;
    let keys = el.next()?;
    let mut out = BytesMut::with_capacity(reply.len());
    put_array_header(&mut out, 2);
    out.extend_from_slice(cursor);
    out.extend_from_slice(&list(prefix, &Bytes::copy_from_slice(keys))?);
    Some(out.freeze())
}

fn one(prefix: Option<&[u8]>, reply: &Bytes) -> Option<Bytes> {
    let name = as_bulk(reply)??;
    own(prefix, &name).map(|k| {
        let mut out = BytesMut::with_capacity(reply.len());
        put_bulk(&mut out, k);
        out.freeze()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(prefix: Option<&str>, shape: Shape, reply: &str) -> String {
        let out = strip(prefix.map(str::as_bytes), shape, Bytes::copy_from_slice(reply.as_bytes()));
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn prefixes_come_off_replies() {
        assert_eq!(
            s(Some("__db1:"), Shape::First, "*2\r\n$7\r\n__db1:q\r\n$1\r\nv\r\n"),
            "*2\r\n$1\r\nq\r\n$1\r\nv\r\n"
        );
        assert_eq!(s(Some("__db1:"), Shape::First, "*-1\r\n"), "*-1\r\n");
        assert_eq!(
            s(Some("__db1:"), Shape::First, "*2\r\n$7\r\n__db1:l\r\n*1\r\n$1\r\na\r\n"),
            "*2\r\n$1\r\nl\r\n*1\r\n$1\r\na\r\n"
        );
        assert_eq!(
            s(Some("{__db0}:"), Shape::List, "*3\r\n$9\r\n{__db0}:a\r\n$1\r\nb\r\n$9\r\n{__db0}:c\r\n"),
            "*2\r\n$1\r\na\r\n$1\r\nc\r\n"
        );
        assert_eq!(s(None, Shape::List, "*2\r\n$7\r\n__db1:a\r\n$1\r\nb\r\n"), "*1\r\n$1\r\nb\r\n");
        assert_eq!(
            s(Some("__db1:"), Shape::Scan, "*2\r\n$2\r\n17\r\n*1\r\n$7\r\n__db1:a\r\n"),
            "*2\r\n$2\r\n17\r\n*1\r\n$1\r\na\r\n"
        );
        assert_eq!(s(Some("__db1:"), Shape::One, "$7\r\n__db1:a\r\n"), "$1\r\na\r\n");
        let entries = "*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n";
        assert_eq!(
            s(Some("__db1:"), Shape::Streams, &format!("*1\r\n*2\r\n$7\r\n__db1:s\r\n{entries}")),
            format!("*1\r\n*2\r\n$1\r\ns\r\n{entries}")
        );
        assert_eq!(
            s(Some("__db1:"), Shape::Streams, &format!("%1\r\n$7\r\n__db1:s\r\n{entries}")),
            format!("%1\r\n$1\r\ns\r\n{entries}")
        );
    }
}
