//! MONITOR: the clients watching every command the proxy's other clients send, and the line
//! each of them receives, in Redis's format (`+<unix time>.<micros> [0 <addr>] "arg" ...`,
//! arguments quoted as Redis's `sdscatrepr` quotes them).

use std::fmt::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::sync::Mutex;

/// Where a monitor's lines go: its connection queues them (and counts them against its output
/// limit, as a pubsub-class client's).
pub type Sink = Arc<dyn Fn(Bytes) + Send + Sync>;

#[derive(Default)]
pub struct Monitors {
    sinks: Mutex<Vec<(u64, Sink)>>,
    /// How many: what every request reads when nobody monitors.
    count: AtomicUsize,
}

impl Monitors {
    pub fn add(&self, id: u64, sink: Sink) {
        let mut g = self.sinks.lock();
        g.push((id, sink));
        self.count.store(g.len(), Ordering::Relaxed);
    }

    pub fn remove(&self, id: u64) {
        let mut g = self.sinks.lock();
        g.retain(|(i, _)| *i != id);
        self.count.store(g.len(), Ordering::Relaxed);
    }

    pub fn any(&self) -> bool {
        self.count.load(Ordering::Relaxed) > 0
    }

    /// Sends the line of `args`, sent by the client at `addr`, to every monitor.
    pub fn feed(&self, addr: &str, args: &[Bytes], redact_from: usize) {
        let sinks: Vec<Sink> = self.sinks.lock().iter().map(|(_, s)| s.clone()).collect();
        if sinks.is_empty() {
            return;
        }
        let line = Bytes::from(line(addr, args, redact_from));
        for s in sinks {
            s(line.clone());
        }
    }
}

/// One MONITOR line. Arguments from `redact_from` on show as `(redacted)`, as Redis hides AUTH's.
pub fn line(addr: &str, args: &[Bytes], redact_from: usize) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let mut out = format!("+{}.{:06} [0 {}] ", now.as_secs(), now.subsec_micros(), addr);
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        repr(&mut out, if i >= redact_from { b"(redacted)" } else { a });
    }
    out.push_str("\r\n");
    out
}

/// Redis's `sdscatrepr`: quoted, with `\\`, `\"`, `\n`, `\r`, `\t`, `\a`, `\b` escaped and other
/// unprintable bytes as `\xHH`.
fn repr(out: &mut String, b: &[u8]) {
    out.push('"');
    for &c in b {
        match c {
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            7 => out.push_str("\\a"),
            8 => out.push_str("\\b"),
            32..=126 => out.push(c as char),
            _ => {
                let _ = write!(out, "\\x{c:02x}");
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    #[test]
    fn quotes_as_redis() {
        let mut s = String::new();
        super::repr(&mut s, b"a b\"\\\n\r\t\x07\x08\x01\xff");
        assert_eq!(s, r#""a b\"\\\n\r\t\a\b\x01\xff""#);
    }
}
