//! The Lua scripts the proxy has seen (SCRIPT LOAD, EVAL), by SHA1, so that an EVALSHA a node
//! answers with NOSCRIPT (a master added or promoted after the load, a SCRIPT FLUSH on one node)
//! can be loaded there and retried once. Bounded: past the cap, the oldest half is forgotten.

use std::collections::HashMap;

use bytes::Bytes;

use super::{route_class, whole, Router, Trace};
use crate::backend::Cx;
use crate::command::{CommandSpec, Merge};
use crate::resp::{self, Request};
use crate::sync::Mutex;

/// Scripts remembered at most.
const CAP: usize = 10_000;

#[derive(Default)]
pub struct Scripts {
    /// Lower-case hex SHA1 -> body, with an insertion counter for eviction.
    map: Mutex<HashMap<String, (u64, Bytes)>>,
    counter: std::sync::atomic::AtomicU64,
}

/// Lower-case hex SHA1 of a script body, as Redis names it.
pub fn sha1_hex(body: &[u8]) -> String {
    sha1_smol::Sha1::from(body).digest().to_string()
}

impl Scripts {
    pub fn remember(&self, body: &Bytes) {
        let sha = sha1_hex(body);
        let n = self.counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut m = self.map.lock();
        if m.len() >= CAP && !m.contains_key(&sha) {
            let mut ages: Vec<u64> = m.values().map(|(a, _)| *a).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            m.retain(|_, (a, _)| *a > cut);
        }
        m.insert(sha, (n, body.clone()));
    }

    /// SCRIPT FLUSH through the proxy: a flushed script must not come back by itself.
    pub fn forget_all(&self) {
        self.map.lock().clear();
    }

    pub fn get(&self, sha: &[u8]) -> Option<Bytes> {
        let key = String::from_utf8_lossy(sha).to_ascii_lowercase();
        self.map.lock().get(&key).map(|(_, b)| b.clone())
    }
}

/// EVALSHA; on NOSCRIPT for a script the proxy has seen, loads it on every master and retries once
/// (the node may be a master added or promoted after the load, or one whose cache was flushed),
/// on the master.
pub(super) async fn evalsha(p: &Router, spec: &CommandSpec, req: Request, cx: Cx, trace: &Trace) -> Bytes {
    let first = route_class(p, spec, req.clone(), cx, trace).await;
    let noscript = resp::error_text(&first).is_some_and(|t| t.starts_with(b"NOSCRIPT"));
    let Some(body) = req.args.get(1).filter(|_| noscript).and_then(|sha| p.scripts.get(sha)) else { return first };
    let load = resp::encode_command(&[b"SCRIPT".as_ref(), b"LOAD", &body]);
    let loaded = whole::all_masters(p, load, Merge::First, cx).await;
    if resp::is_error(&loaded) {
        return first;
    }
    // EVALSHA_RO may have gone to a replica, which the load on the masters need not reach.
    let again = Trace { master_only: true, blocked_on: None, redirected: Default::default() };
    let reply = route_class(p, spec, req, cx, &again).await;
    if again.redirected() {
        trace.set_redirected();
    }
    reply
}

/// SCRIPT EXISTS: 1 for a script every master has, or one the proxy has seen (an EVALSHA of it
/// would load it where missing and run), as one server that has it would answer.
pub(super) async fn exists(p: &Router, req: Request, cx: Cx) -> Bytes {
    let on_all = whole::all_masters(p, req.raw.clone(), Merge::And, cx).await;
    let Some(flags) = resp::aggregate_elements(&on_all) else { return on_all };
    let shas = req.args.get(2..).unwrap_or_default();
    let out: Vec<Bytes> = flags
        .iter()
        .zip(shas)
        .map(|(f, sha)| {
            let known = resp::as_int(f).unwrap_or(0) != 0 || p.scripts.get(sha).is_some();
            crate::resp::reply::int(i64::from(known))
        })
        .collect();
    crate::resp::reply::array(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha_matches_redis() {
        // redis-cli SCRIPT LOAD "return 1"
        assert_eq!(sha1_hex(b"return 1"), "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
        let s = Scripts::default();
        s.remember(&Bytes::from_static(b"return 1"));
        assert!(s.get(b"E0E1F9FABFC9D4800C877A703B823AC0578FF8DB").is_some());
    }
}
