//! Client requests: a resumable scanner of RESP multibulks of bulk strings and of inline
//! commands, with Redis's limits and protocol-error wording; arguments are zero-copy slices.

use bytes::{Bytes, BytesMut};

use super::{encode_command, find_crlf, parse_int};

/// Limits applied while reading client requests; Redis's defaults unless configured otherwise.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest bulk string accepted (`proto-max-bulk-len`, 512 MB).
    pub max_bulk_len: usize,
    /// Longest inline command line (`PROTO_INLINE_MAX_SIZE`, 64 KB).
    pub max_inline_len: usize,
    /// Largest request, all its arguments together (`client-query-buffer-limit`).
    pub max_request: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_bulk_len: 512 * 1024 * 1024, max_inline_len: 64 * 1024, max_request: 1 << 30 }
    }
}

/// Multibulk counts above this are refused, as Redis does (`ll > INT_MAX`).
const MAX_MULTIBULK: i64 = i32::MAX as i64;
/// Before AUTH Redis accepts only tiny requests, so an unauthenticated peer cannot make us buffer much.
const UNAUTH_MAX_MULTIBULK: i64 = 10;
const UNAUTH_MAX_BULK: i64 = 16384;

/// One client request: the raw frame as received and its arguments (slices of `raw`, or of a frame
/// re-encoded from an inline command).
#[derive(Clone, Debug)]
pub struct Request {
    pub raw: Bytes,
    pub args: Vec<Bytes>,
}

impl Request {
    /// Builds a request from arguments, encoding it as a RESP multibulk.
    pub fn from_args(args: Vec<Bytes>) -> Request {
        let raw = encode_command(&args);
        Request { raw, args }
    }
}

/// A protocol error: the reply text (without `-` and CRLF) Redis sends before closing the connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProtocolError(pub String);

impl ProtocolError {
    fn new(msg: impl Into<String>) -> Self {
        ProtocolError(crate::errors::protocol(msg.into()))
    }
}

/// Resumable request scanner. Call [`RequestParser::next`] whenever bytes were appended to the
/// buffer; it resumes where it stopped, so a request arriving in many small reads costs linear time.
#[derive(Debug, Default)]
pub struct RequestParser {
    limits: Limits,
    /// Set once the client has authenticated (or when no password is configured).
    pub authenticated: bool,
    state: Option<Multibulk>,
    /// Where each argument of the request being scanned lies: kept from one request to the next
    /// (one allocation per request less; a large request's is not kept, [`KEEP_RANGES`]).
    ranges: Vec<(usize, usize)>,
}

/// Arguments whose places the parser keeps room for between requests.
const KEEP_RANGES: usize = 256;

#[derive(Debug)]
struct Multibulk {
    /// Arguments still expected.
    remaining: usize,
    /// Scan position in the buffer (all of the frame so far starts at 0).
    pos: usize,
    /// Length of the bulk whose `$len` line was read but whose payload has not fully arrived.
    pending_bulk: Option<usize>,
}

/// What the parser found at the front of the buffer.
#[derive(Debug)]
pub enum Parsed {
    Request(Request),
    /// An empty line or a `*0`/`*-1` multibulk: consumed, nothing to answer (as Redis does).
    Empty,
    /// More bytes are needed.
    Incomplete,
}

impl RequestParser {
    pub fn new(limits: Limits, authenticated: bool) -> Self {
        RequestParser { limits, authenticated, state: None, ranges: Vec::new() }
    }

    /// Takes the next complete request off the front of `buf`.
    ///
    /// Errors carry Redis's wording; after one the connection must be closed, because the stream
    /// can no longer be framed.
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Parsed, ProtocolError> {
        if self.state.is_none() {
            match buf.first() {
                None => return Ok(Parsed::Incomplete),
                Some(b'*') => {}
                Some(_) => return self.inline(buf),
            }
            let Some(eol) = find_crlf(buf, 1) else {
                if buf.len() > self.limits.max_inline_len {
                    return Err(ProtocolError::new("too big mbulk count string"));
                }
                return Ok(Parsed::Incomplete);
            };
            let count = parse_int(&buf[1..eol])
                .filter(|&n| n <= MAX_MULTIBULK)
                .ok_or_else(|| ProtocolError::new("invalid multibulk length"))?;
            if count > UNAUTH_MAX_MULTIBULK && !self.authenticated {
                return Err(ProtocolError::new("unauthenticated multibulk length"));
            }
            if count <= 0 {
                let _ = buf.split_to(eol + 2);
                return Ok(Parsed::Empty);
            }
            let count = count as usize;
            self.ranges.clear();
            self.ranges.reserve(count.min(1024));
            self.state = Some(Multibulk { remaining: count, pos: eol + 2, pending_bulk: None });
        }
        // ok: set just above or on a previous call
        let Some(st) = self.state.as_mut() else { return Ok(Parsed::Incomplete) };
        while st.remaining > 0 {
            let len = match st.pending_bulk {
                Some(len) => len,
                None => {
                    let Some(&first) = buf.get(st.pos) else { return Ok(Parsed::Incomplete) };
                    if first != b'$' {
                        let got = first as char;
                        self.state = None;
                        return Err(ProtocolError::new(format!("expected '$', got '{got}'")));
                    }
                    let Some(eol) = find_crlf(buf, st.pos + 1) else {
                        if buf.len() - st.pos > self.limits.max_inline_len {
                            self.state = None;
                            return Err(ProtocolError::new("too big bulk count string"));
                        }
                        return Ok(Parsed::Incomplete);
                    };
                    let max = if self.authenticated {
                        self.limits.max_bulk_len as i64
                    } else {
                        UNAUTH_MAX_BULK.min(self.limits.max_bulk_len as i64)
                    };
                    let parsed = parse_int(&buf[st.pos + 1..eol]);
                    let len = match parsed {
                        Some(n) if (0..=max).contains(&n) => n as usize,
                        Some(n) if n > max && !self.authenticated => {
                            self.state = None;
                            return Err(ProtocolError::new("unauthenticated bulk length"));
                        }
                        _ => {
                            self.state = None;
                            return Err(ProtocolError::new("invalid bulk length"));
                        }
                    };
                    st.pos = eol + 2;
                    st.pending_bulk = Some(len);
                    let need = st.pos + len + 2;
                    if need > self.limits.max_request {
                        // Refused on the header, before anything is buffered for it.
                        self.state = None;
                        return Err(ProtocolError::new("client reached max query buffer length"));
                    }
                    // Grow once to the size the headers announce, so a big value is not copied
                    // over and over while it trickles in.
                    if need > buf.capacity() {
                        buf.reserve(need - buf.len());
                    }
                    len
                }
            };
            if buf.len() < st.pos + len + 2 {
                return Ok(Parsed::Incomplete);
            }
            // Redis skips the two bytes after a bulk without checking them; so do we.
            self.ranges.push((st.pos, st.pos + len));
            st.pos += len + 2;
            st.pending_bulk = None;
            st.remaining -= 1;
        }
        let Some(st) = self.state.take() else { return Ok(Parsed::Incomplete) };
        let raw = buf.split_to(st.pos).freeze();
        let args = self.ranges.iter().map(|&(a, b)| raw.slice(a..b)).collect();
        if self.ranges.capacity() > KEEP_RANGES {
            self.ranges = Vec::new();
        }
        Ok(Parsed::Request(Request { raw, args }))
    }

    fn inline(&mut self, buf: &mut BytesMut) -> Result<Parsed, ProtocolError> {
        let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
            if buf.len() > self.limits.max_inline_len {
                return Err(ProtocolError::new("too big inline request"));
            }
            return Ok(Parsed::Incomplete);
        };
        let line = buf.split_to(nl + 1);
        let mut end = nl;
        if end > 0 && line[end - 1] == b'\r' {
            end -= 1;
        }
        let args = split_inline(&line[..end]).ok_or_else(|| ProtocolError::new("unbalanced quotes in request"))?;
        if args.is_empty() {
            return Ok(Parsed::Empty);
        }
        if args.len() as i64 > UNAUTH_MAX_MULTIBULK && !self.authenticated {
            return Err(ProtocolError::new("unauthenticated multibulk length"));
        }
        Ok(Parsed::Request(Request::from_args(args.into_iter().map(Bytes::from).collect())))
    }
}

/// Splits an inline command line the way Redis's `sdssplitargs` does: spaces separate arguments,
/// "double quotes" take `\n \r \t \b \a \\ \" \xHH` escapes, 'single quotes' take `\'`, and a closing
/// quote must be followed by a space or the end. `None` means unbalanced quotes.
pub fn split_inline(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut i = 0;
    let n = line.len();
    loop {
        while i < n && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= n {
            return Some(out);
        }
        let mut cur = Vec::new();
        let mut in_dq = false;
        let mut in_sq = false;
        loop {
            if in_dq {
                if i >= n {
                    return None;
                }
                let c = line[i];
                if c == b'\\' && i + 3 < n && line[i + 1] == b'x' && is_hex(line[i + 2]) && is_hex(line[i + 3]) {
                    cur.push(hex_val(line[i + 2]) * 16 + hex_val(line[i + 3]));
                    i += 3;
                } else if c == b'\\' && i + 1 < n {
                    i += 1;
                    cur.push(match line[i] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                } else if c == b'"' {
                    i = after_closing_quote(line, i)?;
                    break;
                } else {
                    cur.push(c);
                }
                i += 1;
            } else if in_sq {
                if i >= n {
                    return None;
                }
                let c = line[i];
                if c == b'\\' && i + 1 < n && line[i + 1] == b'\'' {
                    cur.push(b'\'');
                    i += 1;
                } else if c == b'\'' {
                    i = after_closing_quote(line, i)?;
                    break;
                } else {
                    cur.push(c);
                }
                i += 1;
            } else {
                if i >= n {
                    break;
                }
                match line[i] {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => {
                        i += 1;
                        break;
                    }
                    b'"' => in_dq = true,
                    b'\'' => in_sq = true,
                    c => cur.push(c),
                }
                i += 1;
            }
        }
        out.push(cur);
    }
}

/// Position after a closing quote at `i`; `None` when it is glued to the next argument, which
/// Redis treats as unbalanced quotes.
fn after_closing_quote(line: &[u8], i: usize) -> Option<usize> {
    match line.get(i + 1) {
        Some(c) if !c.is_ascii_whitespace() => None,
        _ => Some(i + 1),
    }
}

fn is_hex(b: u8) -> bool {
    b.is_ascii_hexdigit()
}

fn hex_val(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> Result<Vec<Vec<Vec<u8>>>, ProtocolError> {
        let mut p = RequestParser::new(Limits::default(), true);
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        loop {
            match p.next(&mut buf)? {
                Parsed::Request(r) => out.push(r.args.iter().map(|a| a.to_vec()).collect()),
                Parsed::Empty => {}
                Parsed::Incomplete => return Ok(out),
            }
        }
    }

    #[test]
    fn multibulk_and_inline() {
        let got = parse_all(b"*2\r\n$3\r\nGET\r\n$1\r\na\r\nPING\r\n\r\n*0\r\nset a \"b c\"\n").unwrap();
        assert_eq!(
            got,
            vec![
                vec![b"GET".to_vec(), b"a".to_vec()],
                vec![b"PING".to_vec()],
                vec![b"set".to_vec(), b"a".to_vec(), b"b c".to_vec()]
            ]
        );
    }

    #[test]
    fn split_at_every_byte() {
        let input = b"*3\r\n$3\r\nSET\r\n$4\r\nk\r\n\0\r\n$5\r\nhello\r\n*1\r\n$4\r\nPING\r\n";
        for cut in 0..input.len() {
            let mut p = RequestParser::new(Limits::default(), true);
            let mut buf = BytesMut::from(&input[..cut]);
            let mut got = Vec::new();
            loop {
                let parsed = p.next(&mut buf).unwrap();
                match parsed {
                    Parsed::Request(r) => got.push(r.args),
                    Parsed::Empty => {}
                    Parsed::Incomplete => break,
                }
            }
            buf.extend_from_slice(&input[cut..]);
            loop {
                let parsed = p.next(&mut buf).unwrap();
                match parsed {
                    Parsed::Request(r) => got.push(r.args),
                    Parsed::Empty => {}
                    Parsed::Incomplete => break,
                }
            }
            assert_eq!(got.len(), 2, "cut at {cut}");
            assert_eq!(&got[0][1][..], b"k\r\n\0");
            assert_eq!(&got[1][0][..], b"PING");
        }
    }

    #[test]
    fn protocol_errors_use_redis_wording() {
        let e = |b: &[u8]| parse_all(b).unwrap_err().0;
        assert_eq!(e(b"*x\r\n"), "ERR Protocol error: invalid multibulk length");
        assert_eq!(e(b"*2\r\n$x\r\n"), "ERR Protocol error: invalid bulk length");
        assert_eq!(e(b"*1\r\n$-1\r\n"), "ERR Protocol error: invalid bulk length");
        assert_eq!(e(b"*2\r\n+a\r\n"), "ERR Protocol error: expected '$', got '+'");
        assert_eq!(e(b"*1\r\n*1\r\n"), "ERR Protocol error: expected '$', got '*'");
        assert_eq!(e(b"set a \"b\r\n"), "ERR Protocol error: unbalanced quotes in request");
        assert_eq!(e(&[b'A'; 70000]), "ERR Protocol error: too big inline request");
        let mut big = b"*".to_vec();
        big.extend(std::iter::repeat_n(b'1', 70000));
        assert_eq!(e(&big), "ERR Protocol error: too big mbulk count string");
    }

    #[test]
    fn a_request_past_the_query_buffer_limit_is_refused_on_its_header() {
        let limits = Limits { max_request: 64, ..Limits::default() };
        let mut p = RequestParser::new(limits, true);
        let mut buf = BytesMut::from(&b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$30\r\n"[..]);
        assert!(matches!(p.next(&mut buf), Ok(Parsed::Incomplete)), "30 more bytes fit: 25 + 30 + 2 <= 64");
        let mut p = RequestParser::new(limits, true);
        let mut buf = BytesMut::from(&b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$50\r\n"[..]);
        let e = p.next(&mut buf).err().map(|e| e.0);
        assert_eq!(e.as_deref(), Some("ERR Protocol error: client reached max query buffer length"));
        assert!(buf.capacity() < 1024, "nothing reserved for the refused value");
    }

    #[test]
    fn unauthenticated_limits() {
        let mut p = RequestParser::new(Limits::default(), false);
        let mut buf = BytesMut::from(&b"*11\r\n"[..]);
        assert_eq!(p.next(&mut buf).unwrap_err().0, "ERR Protocol error: unauthenticated multibulk length");
    }

    /// `limits.max_bulk_len`, and the smaller limits before AUTH (a bulk of 16 KB, ten arguments,
    /// inline too), each at its boundary.
    #[test]
    fn bulk_and_count_limits_at_their_boundaries() {
        let limits = Limits { max_bulk_len: 10, ..Limits::default() };
        let mut p = RequestParser::new(limits, true);
        let mut buf = BytesMut::from(&b"*1\r\n$10\r\n0123456789\r\n"[..]);
        assert!(matches!(p.next(&mut buf), Ok(Parsed::Request(r)) if r.args == [Bytes::from_static(b"0123456789")]));
        let mut p = RequestParser::new(limits, true);
        let mut buf = BytesMut::from(&b"*1\r\n$11\r\n"[..]);
        assert_eq!(p.next(&mut buf).unwrap_err().0, "ERR Protocol error: invalid bulk length");
        // Before AUTH: 16384 bytes and ten arguments pass, one more of either does not.
        let mut p = RequestParser::new(Limits::default(), false);
        let mut buf = BytesMut::from(&b"*10\r\n$16384\r\n"[..]);
        assert!(matches!(p.next(&mut buf), Ok(Parsed::Incomplete)));
        let mut p = RequestParser::new(Limits::default(), false);
        let mut buf = BytesMut::from(&b"*1\r\n$16385\r\n"[..]);
        assert_eq!(p.next(&mut buf).unwrap_err().0, "ERR Protocol error: unauthenticated bulk length");
        // Once authenticated, the same bulk is fine.
        let mut p = RequestParser::new(Limits::default(), true);
        let mut buf = BytesMut::from(&b"*1\r\n$16385\r\n"[..]);
        assert!(matches!(p.next(&mut buf), Ok(Parsed::Incomplete)));
        let ten = "a ".repeat(10);
        let mut p = RequestParser::new(Limits::default(), false);
        let mut buf = BytesMut::from(format!("{ten}\r\n").as_bytes());
        assert!(matches!(p.next(&mut buf), Ok(Parsed::Request(r)) if r.args.len() == 10));
        let mut buf = BytesMut::from(format!("{ten}a\r\n").as_bytes());
        assert_eq!(p.next(&mut buf).unwrap_err().0, "ERR Protocol error: unauthenticated multibulk length");
        let mut p = RequestParser::new(Limits::default(), true);
        let mut buf = BytesMut::from(format!("{ten}a\r\n").as_bytes());
        assert!(matches!(p.next(&mut buf), Ok(Parsed::Request(r)) if r.args.len() == 11));
        // The multibulk count: up to i32::MAX, not one more.
        let mut p = RequestParser::new(Limits::default(), true);
        let mut buf = BytesMut::from(&b"*2147483647\r\n"[..]);
        assert!(matches!(p.next(&mut buf), Ok(Parsed::Incomplete)));
        let mut p = RequestParser::new(Limits::default(), true);
        let mut buf = BytesMut::from(&b"*2147483648\r\n"[..]);
        assert_eq!(p.next(&mut buf).unwrap_err().0, "ERR Protocol error: invalid multibulk length");
        // A bulk length line that never ends.
        let mut p = RequestParser::new(Limits { max_inline_len: 100, ..Limits::default() }, true);
        let mut buf = BytesMut::from(&b"*1\r\n$"[..]);
        buf.extend_from_slice(&[b'1'; 99]);
        assert!(matches!(p.next(&mut buf), Ok(Parsed::Incomplete)), "exactly the limit: still waiting");
        buf.extend_from_slice(b"1");
        assert_eq!(p.next(&mut buf).unwrap_err().0, "ERR Protocol error: too big bulk count string");
        // And a multibulk count line that never ends, at the same limit.
        let mut p = RequestParser::new(Limits { max_inline_len: 100, ..Limits::default() }, true);
        let mut buf = BytesMut::from(&b"*"[..]);
        buf.extend_from_slice(&[b'1'; 99]);
        assert!(matches!(p.next(&mut buf), Ok(Parsed::Incomplete)), "exactly the limit: still waiting");
        buf.extend_from_slice(b"1");
        assert_eq!(p.next(&mut buf).unwrap_err().0, "ERR Protocol error: too big mbulk count string");
        // An inline line at the limit waits; one byte more is refused.
        let mut p = RequestParser::new(Limits { max_inline_len: 100, ..Limits::default() }, true);
        let mut buf = BytesMut::from(&[b'a'; 100][..]);
        assert!(matches!(p.next(&mut buf), Ok(Parsed::Incomplete)));
        buf.extend_from_slice(b"a");
        assert_eq!(p.next(&mut buf).unwrap_err().0, "ERR Protocol error: too big inline request");
    }

    /// The query buffer limit at its boundary, and the buffer grown once to what the header
    /// announces.
    #[test]
    fn max_request_boundary_and_one_reservation() {
        let limits = Limits { max_request: 64, ..Limits::default() };
        // 25 bytes of headers and arguments, then a 37-byte bulk and its CRLF: exactly 64.
        let mut p = RequestParser::new(limits, true);
        let mut buf = BytesMut::from(&b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$37\r\n"[..]);
        assert!(matches!(p.next(&mut buf), Ok(Parsed::Incomplete)));
        assert!(buf.capacity() >= 64, "grown to the announced size: {}", buf.capacity());
        let mut p = RequestParser::new(limits, true);
        let mut buf = BytesMut::from(&b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$38\r\n"[..]);
        assert!(p.next(&mut buf).is_err());
        let mut p = RequestParser::new(Limits::default(), true);
        let mut buf = BytesMut::from(&b"*1\r\n$100000\r\n"[..]);
        assert!(matches!(p.next(&mut buf), Ok(Parsed::Incomplete)));
        assert!(buf.capacity() >= 100_000 + 14, "one reservation for the value: {}", buf.capacity());
    }

    /// `*0` and `*-1` are consumed silently, as Redis does; what follows them is read; a request
    /// built from arguments carries its own encoding.
    #[test]
    fn empty_multibulks_and_built_requests() {
        let mut p = RequestParser::new(Limits::default(), true);
        let mut buf = BytesMut::from(&b"*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n"[..]);
        assert!(matches!(p.next(&mut buf), Ok(Parsed::Empty)));
        assert_eq!(&buf[..], b"*-1\r\n*1\r\n$4\r\nPING\r\n");
        assert!(matches!(p.next(&mut buf), Ok(Parsed::Empty)));
        assert!(matches!(p.next(&mut buf), Ok(Parsed::Request(r)) if &r.raw[..] == b"*1\r\n$4\r\nPING\r\n"));
        assert!(buf.is_empty());
        assert!(matches!(p.next(&mut buf), Ok(Parsed::Incomplete)));
        let r = Request::from_args(vec![Bytes::from_static(b"GET"), Bytes::from_static(b"k")]);
        assert_eq!(&r.raw[..], b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
        assert_eq!(r.args.len(), 2);
        // An inline request is re-encoded as a multibulk; an empty line is nothing.
        let mut buf = BytesMut::from(&b"\n\r\nGET k\n"[..]);
        assert!(matches!(p.next(&mut buf), Ok(Parsed::Empty)));
        assert!(matches!(p.next(&mut buf), Ok(Parsed::Empty)));
        assert!(matches!(p.next(&mut buf), Ok(Parsed::Request(r)) if &r.raw[..] == b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"));
    }

    /// Every escape of `sdssplitargs`, in both quotes, and every separator.
    #[test]
    fn inline_escapes_and_separators() {
        assert_eq!(
            split_inline(b"\"\\n\\r\\t\\b\\a\\\\\\\"\\q\" \"\\x4a\\x4A\\xfF\\x09\\xg1\"").unwrap(),
            vec![b"\n\r\t\x08\x07\\\"q".to_vec(), b"JJ\xff\txg1".to_vec()]
        );
        assert_eq!(split_inline(b"'a\\b' 'c\\'d'").unwrap(), vec![b"a\\b".to_vec(), b"c'd".to_vec()]);
        assert_eq!(
            split_inline(b"a\tb\rc\nd\0e  f").unwrap(),
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec(), b"d".to_vec(), b"e".to_vec(), b"f".to_vec()]
        );
        assert_eq!(split_inline(b"x\"y z\"").unwrap(), vec![b"xy z".to_vec()], "a quote inside an argument");
        assert_eq!(split_inline(b"\"\"").unwrap(), vec![Vec::<u8>::new()], "an empty quoted argument");
        assert!(split_inline(b"\"ab\\").is_none(), "a trailing backslash leaves the quote open");
        assert_eq!(split_inline(b"\"\\x4\"").unwrap(), vec![b"x4".to_vec()], "too short for \\xHH");
        assert!(split_inline(b"'a'b").is_none());
        // A quote left open right after an escape's backslash, or inside a short \\x.
        assert!(split_inline(b"\"\\x4").is_none());
        assert!(split_inline(b"'a\\").is_none());
        assert_eq!(split_inline(b"'a' b").unwrap(), vec![b"a".to_vec(), b"b".to_vec()]);
    }

    #[test]
    fn inline_quotes() {
        assert_eq!(
            split_inline(b"a \"\\x41\\n\" 'it\\'s'").unwrap(),
            vec![b"a".to_vec(), b"A\n".to_vec(), b"it's".to_vec()]
        );
        assert!(split_inline(b"\"a\"b").is_none());
        assert!(split_inline(b"'abc").is_none());
        assert_eq!(split_inline(b"   ").unwrap(), Vec::<Vec<u8>>::new());
    }
}
