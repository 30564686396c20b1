//! WAIT numreplicas timeout, for one server made of many: on an exclusive connection per master,
//! after a marker write there, so each master's WAIT covers every write it acknowledged before;
//! the answer is the smallest count over the masters.

use bytes::Bytes;

use crate::backend::{BackendError, Cx, Reason};
use crate::errors;
use crate::resp::{self, reply};
use crate::route::Router;
use crate::slot;

/// A key name whose slot is `slot`, reserved for the proxy (WAIT's marker write).
fn marker_key(slot: u16) -> Vec<u8> {
    let mut i: u32 = 0;
    loop {
        let tag = format!("w{i}");
        if slot::slot(tag.as_bytes()) == slot {
            return format!("__clusterless_wait__{{{tag}}}").into_bytes();
        }
        i += 1;
    }
}

/// Makes a propagated write that changes nothing (the key exists only inside the script), so
/// that WAIT on a fresh connection waits for everything the master had before it.
const MARKER: &str = "if redis.call('set', KEYS[1], '1', 'NX') then redis.call('del', KEYS[1]) end return 0";

/// WAIT numreplicas timeout: on an exclusive connection per master, after a marker write there,
/// so each master's WAIT covers every write it acknowledged before (this client's included).
/// Answers the smallest count over the masters: how many replicas of every shard caught up.
pub async fn wait(p: &Router, args: &[Bytes], cx: Cx) -> Bytes {
    let (Some(n), Some(t)) = (args.get(1), args.get(2)) else { return errors::wrong_arity("wait") };
    if resp::parse_int(n).is_none() || resp::parse_int(t).is_none_or(|t| t < 0) {
        return errors::timeout_not_an_integer();
    }
    let targets: Vec<(String, u16)> = {
        let topo = p.topology.load();
        let mut seen: Vec<(String, u16)> = Vec::new();
        for s in 0..slot::SLOTS as u16 {
            if let Some(a) = topo.master_for(s) {
                if !seen.iter().any(|(x, _)| x == a) {
                    seen.push((a.to_string(), s));
                }
            }
        }
        seen
    };
    if targets.is_empty() {
        return errors::slot_not_served();
    }
    // WAIT 0 blocks until enough replicas ack, as on one server; otherwise a master that says
    // nothing past its own timeout (stopped) is given up on.
    let guard = resp::parse_int(t)
        .filter(|&ms| ms > 0)
        .map(|ms| std::time::Duration::from_millis(ms as u64) + p.backend.config().request_timeout);
    let runs = targets.iter().map(|(addr, s)| async move {
        let mut c = p.dedicated.get(addr, cx).await?;
        let key = marker_key(*s);
        let mut payload = resp::encode_command(&[b"EVAL".as_ref(), MARKER.as_bytes(), b"1", &key]).to_vec();
        payload.extend_from_slice(&resp::encode_command(&[b"WAIT".as_ref(), n, t]));
        let r = match guard {
            Some(g) => tokio::time::timeout(g, c.request(&payload, 2))
                .await
                .map_err(|_| BackendError::timeout(addr, Reason::NoAnswerTo("WAIT")))??,
            None => c.request(&payload, 2).await?,
        };
        p.dedicated.put(c);
        Ok::<Bytes, BackendError>(r.last().cloned().unwrap_or_default())
    });
    let mut min: Option<i64> = None;
    for r in futures_util::future::join_all(runs).await {
        match r {
            Ok(f) if resp::is_error(&f) => return f,
            Ok(f) => match resp::as_int(&f) {
                Some(v) => min = Some(min.map_or(v, |m| m.min(v))),
                None => return errors::unexpected_reply("WAIT reply"),
            },
            Err(e) => return e.reply(),
        }
    }
    reply::int(min.unwrap_or(0))
}
