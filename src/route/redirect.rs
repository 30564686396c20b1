//! What a node's reply asks of a request: a redirect (MOVED, ASK), a retry (TRYAGAIN,
//! CLUSTERDOWN, LOADING), nothing, or suspicion (an answer that came late from a master that may
//! have been deposed meanwhile); and how the commands of one pipelined batch fared.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::Router;
use crate::backend::BackendError;
use crate::resp;
use crate::slot;
use crate::topology::{format_addr, split_addr};

/// What an error reply asks us to do.
pub enum Redirect {
    Moved {
        slot: u16,
        addr: String,
    },
    Ask {
        addr: String,
    },
    /// TRYAGAIN, CLUSTERDOWN, LOADING, MASTERDOWN: the same request may succeed shortly (metric label given).
    Retry(&'static str),
    None,
}

pub fn classify(reply: &[u8], from: &str) -> Redirect {
    let Some(text) = resp::error_text(reply) else { return Redirect::None };
    let mut parts = text.split(|&b| b == b' ');
    let code = parts.next().unwrap_or_default();
    match code {
        b"MOVED" | b"ASK" => {
            let slot = parts.next().and_then(resp::parse_int);
            let target = parts.next().map(|a| String::from_utf8_lossy(a).into_owned());
            let (Some(slot), Some(target)) = (slot, target) else { return Redirect::None };
            if !(0..slot::SLOTS as i64).contains(&slot) {
                return Redirect::None;
            }
            let Some(addr) = target_addr(&target, from) else { return Redirect::None };
            if code == b"MOVED" {
                Redirect::Moved { slot: slot as u16, addr }
            } else {
                Redirect::Ask { addr }
            }
        }
        b"TRYAGAIN" => Redirect::Retry("tryagain"),
        b"CLUSTERDOWN" => Redirect::Retry("clusterdown"),
        b"LOADING" => Redirect::Retry("loading"),
        // Only a replica says it (its link to its master is down, `replica-serve-stale-data no`).
        b"MASTERDOWN" => Redirect::Retry("masterdown"),
        _ => Redirect::None,
    }
}

/// Whether a node's reply says it ended a blocked command because it turned replica (a
/// failover): the command did not run, and the node closes that connection after the reply.
pub fn unblocked_by_failover(reply: &[u8]) -> bool {
    resp::error_text(reply).is_some_and(|t| t.starts_with(crate::errors::UNBLOCKED_ROLE_CHANGE))
}

/// The address a MOVED or ASK names, as the proxy writes addresses: Redis writes IPv6 hosts
/// without brackets (`::1:7000`), and an empty host (`:7000`, `cluster-preferred-endpoint-type
/// unknown-endpoint`) means where the node that answered was reached. A `?` host (a hostname is
/// preferred but the node has none) is kept for the map to resolve
/// ([`crate::topology::TopologyStore::resolve`]).
fn target_addr(target: &str, from: &str) -> Option<String> {
    let (host, port) = split_addr(target)?;
    if !host.is_empty() {
        return Some(format_addr(host, port));
    }
    let from_host = split_addr(from).map(|(h, _)| h).filter(|h| !h.is_empty()).unwrap_or("127.0.0.1");
    Some(format_addr(from_host, port))
}

/// The outcome of one command's first attempt, made elsewhere (the client's batch to one node):
/// the node it went to, its reply or how sending failed, and when it was sent.
pub type FirstTry = (String, Result<Vec<Bytes>, BackendError>, Instant);

/// A node that answers a command this long after it was sent, and meanwhile lost the command's
/// slot, may have been a master that hung (SIGSTOP, a stall) while its replica was promoted: it
/// runs what was queued on resuming, before it learns it was deposed, and its data is then
/// discarded when it rejoins as a replica.
pub const LATE_REPLY: Duration = Duration::from_millis(500);

/// Whether a late reply from `addr` may come from a deposed master (see [`LATE_REPLY`]): the slot
/// has another owner now, or its owner is flagged failed. Returns the owner now. When the map
/// still names `addr` as the slot's healthy owner, it may not have heard of a failover yet
/// (polling learns of one only at its next question): the cluster itself is asked, once for all
/// the late replies that wait at the same time.
pub async fn deposed(p: &Router, slot: u16, addr: &str, sent: Instant) -> Option<String> {
    if !late(sent) {
        return None;
    }
    let owner = p.topology.load().master_node(slot).map(|o| (o.addr.clone(), o.failed))?;
    match owner {
        // Flagged failed and still the owner: the promotion has not reached our map yet.
        (o, failed) if o != addr || failed => Some(o),
        _ => {
            let now = p.poller.owner_since(&p.topology, slot, Instant::now()).await?;
            if now == addr {
                return None;
            }
            p.topology.request_refresh();
            Some(now)
        }
    }
}

/// Whether a reply to a command sent at `sent` comes late (see [`LATE_REPLY`]).
fn late(sent: Instant) -> bool {
    sent.elapsed() >= LATE_REPLY
}

/// The error for a write whose acknowledgement came late from a master that has since been
/// deposed (see [`LATE_REPLY`]): its effect may be discarded with the old master's data.
pub fn deposed_error(addr: &str, slot: u16, owner: &str, sent: Instant) -> Bytes {
    crate::errors::deposed(addr, sent.elapsed().as_millis(), slot, owner)
}

/// How the `n` commands of one pipelined batch fared.
pub enum Settled {
    /// Every reply stands (the common case: the node's replies, as they came).
    Stand(Vec<Bytes>),
    /// Each command's reply when it stands, or its first try for [`continue_slot`].
    Each(Vec<Result<Bytes, FirstTry>>),
}

impl Settled {
    pub fn into_each(self) -> Vec<Result<Bytes, FirstTry>> {
        match self {
            Settled::Stand(frames) => frames.into_iter().map(Ok).collect(),
            Settled::Each(each) => each,
        }
    }
}

/// Settles the `n` commands of one pipelined batch sent to `addr` at `sent`, once the node
/// answered: a reply stands unless it was redirected, refused, lost or answered late (it may
/// come from a deposed master).
pub fn settle(addr: &str, sent: Instant, result: Result<Vec<Bytes>, BackendError>, n: usize) -> Settled {
    let late = late(sent);
    match result {
        Ok(frames) if frames.len() == n => {
            if !late && frames.iter().all(|f| matches!(classify(f, addr), Redirect::None)) {
                return Settled::Stand(frames);
            }
            Settled::Each(
                frames
                    .into_iter()
                    .map(|f| match classify(&f, addr) {
                        Redirect::None if !late => Ok(f),
                        _ => Err((addr.to_string(), Ok(vec![f]), sent)),
                    })
                    .collect(),
            )
        }
        Ok(_) => Settled::Each(vec![Ok(crate::errors::reply_count_mismatch()); n]),
        Err(e) => Settled::Each((0..n).map(|_| Err((addr.to_string(), Err(e.clone()), sent))).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_redirects() {
        assert!(
            matches!(classify(b"-MOVED 3999 127.0.0.1:6381\r\n", "x:1"), Redirect::Moved { slot: 3999, ref addr } if addr == "127.0.0.1:6381")
        );
        assert!(
            matches!(classify(b"-ASK 3999 :6381\r\n", "10.0.0.1:7000"), Redirect::Ask { ref addr } if addr == "10.0.0.1:6381")
        );
        assert!(matches!(
            classify(b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n", "x:1"),
            Redirect::Retry("tryagain")
        ));
        assert!(matches!(classify(b"-CLUSTERDOWN The cluster is down\r\n", "x:1"), Redirect::Retry("clusterdown")));
        assert!(matches!(
            classify(b"-MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.\r\n", "x:1"),
            Redirect::Retry("masterdown")
        ));
        assert!(matches!(classify(b"-ERR MOVED\r\n", "x:1"), Redirect::None));
        assert!(matches!(classify(b"-MOVED 99999 a:1\r\n", "x:1"), Redirect::None));
        // Redis writes IPv6 without brackets; hostnames and `?` as they are.
        assert!(
            matches!(classify(b"-MOVED 7365 ::1:34003\r\n", "[::1]:34002"), Redirect::Moved { slot: 7365, ref addr } if addr == "[::1]:34003")
        );
        assert!(
            matches!(classify(b"-ASK 7365 :34003\r\n", "[::1]:34002"), Redirect::Ask { ref addr } if addr == "[::1]:34003")
        );
        assert!(
            matches!(classify(b"-MOVED 11058 localhost:31003\r\n", "localhost:31001"), Redirect::Moved { ref addr, .. } if addr == "localhost:31003")
        );
        assert!(
            matches!(classify(b"-MOVED 7365 ?:31002\r\n", "x:1"), Redirect::Moved { ref addr, .. } if addr == "?:31002")
        );
        assert!(matches!(classify(b"$1\r\nx\r\n", "x:1"), Redirect::None));
    }
}
