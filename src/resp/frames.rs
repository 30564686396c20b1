//! Node replies: where one RESP2/RESP3 reply ends (iteratively, any depth), and reading the few
//! scalars and aggregates the proxy looks into.

use bytes::Bytes;

use super::{find_crlf, parse_int};

/// Error from scanning a backend reply: the stream is unusable and the connection must be dropped.
#[derive(Debug, thiserror::Error)]
#[error("malformed reply from backend: {0}")]
pub struct ReplyError(pub &'static str);

/// Resumable scanner that finds where one RESP2/RESP3 reply ends, without recursion (a reply of any
/// depth costs a counter per level) and without re-reading bytes already scanned.
#[derive(Debug, Default)]
pub struct ReplyScanner {
    pos: usize,
    /// Elements still expected at each open aggregate level.
    stack: Vec<u64>,
    /// After `Ok(None)`: the buffer length a bulk string being read needs (0: not known).
    wanted: usize,
}

impl ReplyScanner {
    /// After `scan` said more bytes are needed: how long the buffer must grow for the bulk
    /// string it is in to be complete, so that a big value is read into one allocation of its
    /// size rather than into a buffer that doubles (and then holds twice the value).
    pub fn wanted(&self) -> usize {
        self.wanted
    }

    /// Returns the length of the complete reply at the front of `buf`, or `None` if more bytes are
    /// needed. After `Some(n)` the caller must remove those `n` bytes; the scanner has reset.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, ReplyError> {
        self.wanted = 0;
        loop {
            let Some(&ty) = buf.get(self.pos) else { return Ok(None) };
            let Some(eol) = find_crlf(buf, self.pos + 1) else { return Ok(None) };
            let line = &buf[self.pos + 1..eol];
            let mut next = eol + 2;
            // Children this element opens (0 for scalars).
            let mut children: u64 = 0;
            match ty {
                b'+' | b'-' | b':' | b'_' | b'#' | b',' | b'(' => {}
                b'$' | b'!' | b'=' => {
                    let n = parse_int(line).ok_or(ReplyError("bad bulk length"))?;
                    if n >= 0 {
                        let end = next + n as usize + 2;
                        if buf.len() < end {
                            self.wanted = end;
                            return Ok(None);
                        }
                        next = end;
                    } else if n != -1 {
                        return Err(ReplyError("bad bulk length"));
                    }
                }
                b'*' | b'~' | b'>' | b'%' | b'|' => {
                    let n = parse_int(line).ok_or(ReplyError("bad aggregate length"))?;
                    if n >= 0 {
                        children = n as u64;
                        if ty == b'%' {
                            children *= 2;
                        } else if ty == b'|' {
                            // An attribute map is followed by the reply it annotates.
                            children = children * 2 + 1;
                        }
                    } else if n != -1 {
                        return Err(ReplyError("bad aggregate length"));
                    }
                }
                _ => return Err(ReplyError("unknown type byte")),
            }
            self.pos = next;
            if children > 0 {
                self.stack.push(children);
                continue;
            }
            // A scalar (or empty aggregate) finished: close every level it completes.
            loop {
                match self.stack.last_mut() {
                    None => {
                        let len = self.pos;
                        self.pos = 0;
                        return Ok(Some(len));
                    }
                    Some(top) => {
                        *top -= 1;
                        if *top > 0 {
                            break;
                        }
                        self.stack.pop();
                    }
                }
            }
        }
    }
}

/// Length of the complete reply at the front of `buf`, if there is one.
pub fn reply_len(buf: &[u8]) -> Result<Option<usize>, ReplyError> {
    ReplyScanner::default().scan(buf)
}

/// The elements of an aggregate reply as slices of it, without copying; iteration stops early
/// on a malformed element, which is then still counted in [`Elements::len`].
pub struct Elements<'a> {
    frame: &'a [u8],
    pos: usize,
    left: usize,
}

impl<'a> Elements<'a> {
    /// The elements of `frame`, when it is an array, set or push.
    pub fn of(frame: &'a [u8]) -> Option<Elements<'a>> {
        if !matches!(frame.first()?, b'*' | b'~' | b'>') {
            return None;
        }
        let eol = find_crlf(frame, 1)?;
        let n = parse_int(&frame[1..eol])?;
        Some(Elements { frame, pos: eol + 2, left: usize::try_from(n).unwrap_or(0) })
    }

    /// Elements the header announces and not yet taken.
    pub fn len(&self) -> usize {
        self.left
    }

    pub fn is_empty(&self) -> bool {
        self.left == 0
    }
}

impl<'a> Iterator for Elements<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        let rest = self.frame.get(self.pos..)?;
        let len = reply_len(rest).ok()??;
        self.pos += len;
        self.left -= 1;
        rest.get(..len)
    }
}

/// Splits an aggregate reply (`*`, `~`, `>`) into its elements' raw bytes. `None` when `frame` is
/// not a complete aggregate.
pub fn aggregate_elements(frame: &Bytes) -> Option<Vec<Bytes>> {
    let mut el = Elements::of(frame)?;
    let out: Vec<Bytes> = el.by_ref().map(|e| frame.slice_ref(e)).collect();
    el.is_empty().then_some(out)
}

/// The integer of a `:` reply.
pub fn as_int(frame: &[u8]) -> Option<i64> {
    if frame.first() != Some(&b':') {
        return None;
    }
    let eol = find_crlf(frame, 1)?;
    parse_int(&frame[1..eol])
}

/// The payload of a `$` bulk reply (`Some(None)` for a null bulk).
pub fn as_bulk(frame: &Bytes) -> Option<Option<Bytes>> {
    match frame.first()? {
        b'_' => Some(None),
        b'$' => {
            let eol = find_crlf(frame, 1)?;
            let n = parse_int(&frame[1..eol])?;
            if n < 0 {
                return Some(None);
            }
            let start = eol + 2;
            frame.get(start..start + n as usize)?;
            Some(Some(frame.slice(start..start + n as usize)))
        }
        b'+' => {
            let eol = find_crlf(frame, 1)?;
            Some(Some(frame.slice(1..eol)))
        }
        _ => None,
    }
}

/// True for a null reply in either protocol: RESP2's null bulk and null array, RESP3's `_`.
pub fn is_null(frame: &[u8]) -> bool {
    matches!(frame, b"*-1\r\n" | b"$-1\r\n" | b"_\r\n")
}

/// True for an error reply (`-` or RESP3 `!`).
#[inline]
pub fn is_error(frame: &[u8]) -> bool {
    matches!(frame.first(), Some(b'-') | Some(b'!'))
}

/// The text of a `-` error reply, without the `-` and CRLF.
pub fn error_text(frame: &[u8]) -> Option<&[u8]> {
    if frame.first() != Some(&b'-') {
        return None;
    }
    let eol = find_crlf(frame, 1)?;
    Some(&frame[1..eol])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::reply;

    #[test]
    fn reply_scanner_handles_nesting_and_resp3() {
        let frames: &[&[u8]] = &[
            b"+OK\r\n",
            b"-ERR x\r\n",
            b":12\r\n",
            b"$-1\r\n",
            b"$3\r\na\r\n\r\n",
            b"*-1\r\n",
            b"*0\r\n",
            b"*2\r\n*1\r\n:1\r\n$1\r\nx\r\n",
            b"%1\r\n+a\r\n*2\r\n_\r\n#t\r\n",
            b"|1\r\n+k\r\n+v\r\n:5\r\n",
            b",3.5\r\n",
            b"=7\r\ntxt:abc\r\n",
        ];
        for f in frames {
            for cut in 0..f.len() {
                let mut s = ReplyScanner::default();
                assert_eq!(s.scan(&f[..cut]).unwrap(), None, "{:?} cut {cut}", String::from_utf8_lossy(f));
                assert_eq!(s.scan(f).unwrap(), Some(f.len()));
            }
        }
        let mut deep = Vec::new();
        for _ in 0..100_000 {
            deep.extend_from_slice(b"*1\r\n");
        }
        deep.extend_from_slice(b":1\r\n");
        assert_eq!(reply_len(&deep).unwrap(), Some(deep.len()));
    }

    #[test]
    fn the_scanner_says_how_long_a_big_bulk_needs_the_buffer() {
        let mut s = ReplyScanner::default();
        assert_eq!(s.scan(b"*2\r\n:1\r\n$1000000\r\nabc").unwrap(), None);
        assert_eq!(s.wanted(), 8 + 10 + 1_000_000 + 2, "header, bulk header, value, CRLF");
        assert_eq!(s.scan(b"*2\r\n:1\r\n$100").unwrap(), None);
        assert_eq!(s.wanted(), 0, "the length is not known yet");
    }

    #[test]
    fn elements_and_scalars() {
        let f = Bytes::from_static(b"*3\r\n$1\r\na\r\n$-1\r\n:4\r\n");
        let el = aggregate_elements(&f).unwrap();
        assert_eq!(el.len(), 3);
        assert_eq!(as_bulk(&el[0]).unwrap().unwrap(), Bytes::from_static(b"a"));
        assert_eq!(as_bulk(&el[1]).unwrap(), None);
        assert_eq!(as_int(&el[2]), Some(4));
        assert_eq!(reply::int(-42), Bytes::from_static(b":-42\r\n"));
        assert_eq!(parse_int(b"007"), None);
        assert_eq!(parse_int(b"-0"), None);
        assert_eq!(parse_int(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_int(b"9223372036854775808"), None);
    }

    /// Malformed replies are errors (the connection is dropped), never a length.
    #[test]
    fn the_scanner_refuses_what_is_not_resp() {
        for (frame, why) in [
            (&b"$x\r\n"[..], "bad bulk length"),
            (b"$-2\r\n", "bad bulk length"),
            (b"!-5\r\n", "bad bulk length"),
            (b"*x\r\n", "bad aggregate length"),
            (b"*-2\r\n", "bad aggregate length"),
            (b"%-3\r\n", "bad aggregate length"),
            (b"?1\r\n", "unknown type byte"),
            (b"*1\r\n?\r\n", "unknown type byte"),
            (b"\r\n:1\r\n", "unknown type byte"),
        ] {
            assert_eq!(reply_len(frame).err().map(|e| e.0), Some(why), "{}", String::from_utf8_lossy(frame));
        }
        // Null bulks and arrays of every kind are complete scalars; a reply is measured alone,
        // without what follows it.
        for frame in [&b"$-1\r\n"[..], b"*-1\r\n", b"%-1\r\n", b"!0\r\n\r\n", b"~0\r\n", b">1\r\n:1\r\n"] {
            let mut with_more = frame.to_vec();
            with_more.extend_from_slice(b"+next\r\n");
            assert_eq!(reply_len(&with_more).unwrap(), Some(frame.len()), "{}", String::from_utf8_lossy(frame));
        }
        // One scanner, several replies: each measured from the front after the caller took the
        // one before.
        let mut s = ReplyScanner::default();
        let mut buf = b"*2\r\n:1\r\n%1\r\n+a\r\n+b\r\n$1\r\nx\r\n".to_vec();
        let n = s.scan(&buf).unwrap().unwrap();
        assert_eq!(n, buf.len() - 7);
        buf.drain(..n);
        assert_eq!(s.scan(&buf).unwrap(), Some(7));
        // A map's pairs and an attribute's reply are all counted.
        assert_eq!(reply_len(b"%2\r\n+a\r\n:1\r\n+b\r\n").unwrap(), None, "one value missing");
        assert_eq!(reply_len(b"|1\r\n+k\r\n+v\r\n").unwrap(), None, "the annotated reply missing");
    }

    #[test]
    fn elements_of_arrays_sets_and_pushes_only() {
        for head in [b'*', b'~', b'>'] {
            let mut f = vec![head];
            f.extend_from_slice(b"2\r\n+a\r\n:7\r\n");
            let mut el = Elements::of(&f).unwrap();
            assert_eq!((el.len(), el.is_empty()), (2, false));
            assert_eq!(el.next(), Some(&b"+a\r\n"[..]));
            assert_eq!(el.len(), 1);
            assert_eq!(el.next(), Some(&b":7\r\n"[..]));
            assert_eq!((el.len(), el.is_empty()), (0, true));
            assert_eq!(el.next(), None);
        }
        for f in [&b"%1\r\n+a\r\n+b\r\n"[..], b"+OK\r\n", b"$1\r\nx\r\n", b"", b"*2", b"*x\r\n"] {
            assert!(Elements::of(f).is_none(), "{}", String::from_utf8_lossy(f));
        }
        // A header of several digits.
        let twelve = reply::array(&(0..12).map(reply::int).collect::<Vec<_>>());
        let el = Elements::of(&twelve).unwrap();
        assert_eq!(el.len(), 12);
        assert_eq!(
            el.collect::<Vec<_>>(),
            (0..12).map(|i| format!(":{i}\r\n")).collect::<Vec<_>>().iter().map(|s| s.as_bytes()).collect::<Vec<_>>()
        );
        // A null array has no elements.
        assert_eq!(Elements::of(b"*-1\r\n").map(|e| e.len()), Some(0));
        // A malformed or missing element stops the iteration and stays counted.
        let mut el = Elements::of(b"*3\r\n:1\r\n?x\r\n:2\r\n").unwrap();
        assert_eq!(el.next(), Some(&b":1\r\n"[..]));
        assert_eq!(el.next(), None);
        assert_eq!(el.len(), 2);
        assert_eq!(aggregate_elements(&Bytes::from_static(b"*2\r\n:1\r\n")), None, "incomplete");
        assert_eq!(aggregate_elements(&Bytes::from_static(b":1\r\n")), None);
        assert_eq!(aggregate_elements(&Bytes::from_static(b"*0\r\n")), Some(vec![]));
    }

    #[test]
    fn scalars_nulls_and_errors() {
        assert_eq!(as_int(b":-3\r\n"), Some(-3));
        assert_eq!(as_int(b"+3\r\n"), None);
        assert_eq!(as_int(b":3"), None);
        assert_eq!(as_bulk(&Bytes::from_static(b"+PONG\r\n")), Some(Some(Bytes::from_static(b"PONG"))));
        assert_eq!(as_bulk(&Bytes::from_static(b"_\r\n")), Some(None));
        assert_eq!(as_bulk(&Bytes::from_static(b"$0\r\n\r\n")), Some(Some(Bytes::new())));
        assert_eq!(as_bulk(&Bytes::from_static(b"$3\r\nab")), None, "truncated");
        assert_eq!(as_bulk(&Bytes::from_static(b"$3\r\nabc\r\n")), Some(Some(Bytes::from_static(b"abc"))));
        assert_eq!(
            as_bulk(&Bytes::from_static(b"$10\r\n0123456789\r\n")),
            Some(Some(Bytes::from_static(b"0123456789")))
        );
        assert_eq!(as_bulk(&Bytes::from_static(b":1\r\n")), None);
        assert_eq!(as_bulk(&Bytes::new()), None);
        for null in [&b"*-1\r\n"[..], b"$-1\r\n", b"_\r\n"] {
            assert!(is_null(null));
        }
        for not in [&b"$0\r\n\r\n"[..], b"*0\r\n", b":0\r\n", b"-ERR\r\n"] {
            assert!(!is_null(not));
        }
        assert!(is_error(b"-ERR x\r\n") && is_error(b"!3\r\nerr\r\n"));
        assert!(!is_error(b"+OK\r\n") && !is_error(b""));
        assert_eq!(error_text(b"-MOVED 1 a:1\r\n"), Some(&b"MOVED 1 a:1"[..]));
        assert_eq!(error_text(b"+OK\r\n"), None);
        assert_eq!(error_text(b"-ERR"), None);
    }

    /// `find_crlf` skips a lone CR; `parse_int` reads as Redis's `string2ll`.
    #[test]
    fn crlf_and_integers() {
        use crate::resp::find_crlf;
        assert_eq!(find_crlf(b"a\rb\r\n", 0), Some(3));
        assert_eq!(find_crlf(b"\r\r\n", 0), Some(1));
        assert_eq!(find_crlf(b"ab\r\ncd\r\n", 3), Some(6));
        assert_eq!(find_crlf(b"ab\r", 0), None);
        assert_eq!(find_crlf(b"ab\rx", 0), None);
        assert_eq!(find_crlf(b"ab", 5), None);
        assert_eq!(parse_int(b"0"), Some(0));
        assert_eq!(parse_int(b"-5"), Some(-5));
        assert_eq!(parse_int(b"1234567890"), Some(1_234_567_890));
        assert_eq!(parse_int(b"-9223372036854775807"), Some(-i64::MAX));
        for bad in [&b""[..], b"-", b"+5", b"12a", b" 1", b"1 ", b"00", b"-01", b"12345678901234567890"] {
            assert_eq!(parse_int(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
