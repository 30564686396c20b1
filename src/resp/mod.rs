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

use bytes::{BufMut, Bytes, BytesMut};

/// Limits applied while reading client requests; Redis's defaults unless configured otherwise.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest bulk string accepted (`proto-max-bulk-len`, 512 MB).
    pub max_bulk_len: usize,
    /// Longest inline command line (`PROTO_INLINE_MAX_SIZE`, 64 KB).
    pub max_inline_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_bulk_len: 512 * 1024 * 1024, max_inline_len: 64 * 1024 }
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
        ProtocolError(format!("ERR Protocol error: {}", msg.into()))
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
}

#[derive(Debug)]
struct Multibulk {
    /// Arguments still expected.
    remaining: usize,
    /// Scan position in the buffer (all of the frame so far starts at 0).
    pos: usize,
    /// Length of the bulk whose `$len` line was read but whose payload has not fully arrived.
    pending_bulk: Option<usize>,
    ranges: Vec<(usize, usize)>,
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
        RequestParser { limits, authenticated, state: None }
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
            self.state = Some(Multibulk {
                remaining: count,
                pos: eol + 2,
                pending_bulk: None,
                ranges: Vec::with_capacity(count.min(1024)),
            });
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
                    // Grow once to the size the headers announce, so a big value is not copied
                    // over and over while it trickles in.
                    let need = st.pos + len + 2;
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
            st.ranges.push((st.pos, st.pos + len));
            st.pos += len + 2;
            st.pending_bulk = None;
            st.remaining -= 1;
        }
        let Some(st) = self.state.take() else { return Ok(Parsed::Incomplete) };
        let raw = buf.split_to(st.pos).freeze();
        let args = st.ranges.into_iter().map(|(a, b)| raw.slice(a..b)).collect();
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

#[inline]
fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
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
}

impl ReplyScanner {
    /// Returns the length of the complete reply at the front of `buf`, or `None` if more bytes are
    /// needed. After `Some(n)` the caller must remove those `n` bytes; the scanner has reset.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, ReplyError> {
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

// === encoding ===

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

fn put_decimal(out: &mut BytesMut, v: i64) {
    let mut tmp = itoa_buf(v);
    out.put_slice(tmp.as_bytes_mut());
}

struct Decimal {
    buf: [u8; 20],
    start: usize,
}

impl Decimal {
    fn as_bytes_mut(&mut self) -> &[u8] {
        &self.buf[self.start..]
    }
}

fn itoa_buf(v: i64) -> Decimal {
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

/// Canned and built replies.
pub mod reply {
    use super::*;

    pub fn ok() -> Bytes {
        Bytes::from_static(b"+OK\r\n")
    }

    pub fn simple(s: &str) -> Bytes {
        Bytes::from(format!("+{s}\r\n"))
    }

    /// An error reply; `msg` starts with the error code (`ERR ...`, `CROSSSLOT ...`). CR and LF in
    /// it are replaced, since they would break the framing.
    pub fn error(msg: &str) -> Bytes {
        let clean: String = msg.chars().map(|c| if c == '\r' || c == '\n' { ' ' } else { c }).collect();
        Bytes::from(format!("-{clean}\r\n"))
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
    fn headers_of_every_width() {
        for n in [0usize, 1, 9, 10, 42, 99, 100, 12345] {
            let mut out = BytesMut::new();
            put_array_header(&mut out, n);
            put_bulk(&mut out, &vec![b'x'; n]);
            assert_eq!(out, format!("*{n}\r\n${n}\r\n{}\r\n", "x".repeat(n)).as_bytes());
        }
    }

    #[test]
    fn multibulk_and_inline() {
        let got = parse_all(b"*2\r\n$3\r\nGET\r\n$1\r\na\r\nPING\r\n\r\n*0\r\nset a \"b c\"\n").unwrap(); // ok: test
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
                let parsed = p.next(&mut buf).unwrap(); // ok: test
                match parsed {
                    Parsed::Request(r) => got.push(r.args),
                    Parsed::Empty => {}
                    Parsed::Incomplete => break,
                }
            }
            buf.extend_from_slice(&input[cut..]);
            loop {
                let parsed = p.next(&mut buf).unwrap(); // ok: test
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
    fn unauthenticated_limits() {
        let mut p = RequestParser::new(Limits::default(), false);
        let mut buf = BytesMut::from(&b"*11\r\n"[..]);
        assert_eq!(p.next(&mut buf).unwrap_err().0, "ERR Protocol error: unauthenticated multibulk length");
    }

    #[test]
    fn inline_quotes() {
        assert_eq!(
            split_inline(b"a \"\\x41\\n\" 'it\\'s'").unwrap(), // ok: test
            vec![b"a".to_vec(), b"A\n".to_vec(), b"it's".to_vec()]
        );
        assert!(split_inline(b"\"a\"b").is_none());
        assert!(split_inline(b"'abc").is_none());
        assert_eq!(split_inline(b"   ").unwrap(), Vec::<Vec<u8>>::new()); // ok: test
    }

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
                assert_eq!(s.scan(&f[..cut]).unwrap(), None, "{:?} cut {cut}", String::from_utf8_lossy(f)); // ok: test
                assert_eq!(s.scan(f).unwrap(), Some(f.len())); // ok: test
            }
        }
        let mut deep = Vec::new();
        for _ in 0..100_000 {
            deep.extend_from_slice(b"*1\r\n");
        }
        deep.extend_from_slice(b":1\r\n");
        assert_eq!(reply_len(&deep).unwrap(), Some(deep.len())); // ok: test
    }

    #[test]
    fn elements_and_scalars() {
        let f = Bytes::from_static(b"*3\r\n$1\r\na\r\n$-1\r\n:4\r\n");
        let el = aggregate_elements(&f).unwrap(); // ok: test
        assert_eq!(el.len(), 3);
        assert_eq!(as_bulk(&el[0]).unwrap().unwrap(), Bytes::from_static(b"a")); // ok: test
        assert_eq!(as_bulk(&el[1]).unwrap(), None); // ok: test
        assert_eq!(as_int(&el[2]), Some(4));
        assert_eq!(reply::int(-42), Bytes::from_static(b":-42\r\n"));
        assert_eq!(parse_int(b"007"), None);
        assert_eq!(parse_int(b"-0"), None);
        assert_eq!(parse_int(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_int(b"9223372036854775808"), None);
    }
}
