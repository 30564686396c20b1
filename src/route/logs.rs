//! The servers' own logs, as one server would keep them: SLOWLOG and LATENCY asked of every master
//! and merged. A slow command ran on one master, so the logs are disjoint: the merge orders them
//! (newest first for SLOWLOG, oldest first for a LATENCY HISTORY, as Redis does) and cuts them to
//! what was asked; the entries' ids stay the nodes' own (they are only unique per node).

use bytes::Bytes;

use super::{all_masters, Router};
use crate::backend::Cx;
use crate::command::Merge;
use crate::resp::{self, reply};

/// Redis's default count of SLOWLOG GET.
const SLOWLOG_DEFAULT: usize = 10;
/// Samples Redis keeps per latency event.
const LATENCY_SAMPLES: usize = 160;

pub(super) async fn server_log(p: &Router, args: &[Bytes], cx: Cx) -> Bytes {
    let cmd = resp::encode_command(args);
    let sub = args.get(1).map(|s| s.to_ascii_lowercase()).unwrap_or_default();
    let top = args.first().map(|s| s.to_ascii_lowercase()).unwrap_or_default();
    let merge = match (&top[..], &sub[..]) {
        (b"slowlog", b"len") | (b"latency", b"reset") => Merge::Sum,
        (b"slowlog", b"reset") => Merge::AllOk,
        _ => Merge::Concat,
    };
    let merged = all_masters(p, cmd, merge, cx).await;
    if merge != Merge::Concat || resp::is_error(&merged) {
        return merged;
    }
    let entries = resp::aggregate_elements(&merged).unwrap_or_default();
    match (&top[..], &sub[..]) {
        (b"slowlog", _) => {
            // The nodes checked the count; what they accepted parses.
            let count = args.get(2).and_then(|c| std::str::from_utf8(c).ok()?.parse::<i64>().ok());
            let keep = match count {
                None => SLOWLOG_DEFAULT,
                Some(n) if n < 0 => usize::MAX,
                Some(n) => n as usize,
            };
            reply::array(&newest_first(entries, keep))
        }
        (_, b"latest") => reply::array(&latest_per_event(entries)),
        _ => reply::array(&oldest_first(entries, LATENCY_SAMPLES)),
    }
}

/// An entry's integer field `i`.
fn field(entry: &Bytes, i: usize) -> i64 {
    resp::aggregate_elements(entry).and_then(|e| e.get(i).and_then(|f| resp::as_int(f))).unwrap_or(0)
}

/// SLOWLOG entries `[id, time, duration, args, client, name]`, newest first, at most `keep`.
fn newest_first(mut entries: Vec<Bytes>, keep: usize) -> Vec<Bytes> {
    entries.sort_by_key(|e| std::cmp::Reverse((field(e, 1), field(e, 0))));
    entries.truncate(keep);
    entries
}

/// LATENCY HISTORY samples `[time, latency]`, oldest first, the `keep` most recent.
fn oldest_first(mut samples: Vec<Bytes>, keep: usize) -> Vec<Bytes> {
    samples.sort_by_key(|s| field(s, 0));
    let cut = samples.len().saturating_sub(keep);
    samples.split_off(cut)
}

/// LATENCY LATEST entries `[event, time, latest, max]`, one per event: the latest sample of any
/// master, with the highest maximum of all.
fn latest_per_event(entries: Vec<Bytes>) -> Vec<Bytes> {
    let mut by_event: std::collections::BTreeMap<Bytes, (i64, Bytes, i64)> = std::collections::BTreeMap::new();
    for e in entries {
        let Some(el) = resp::aggregate_elements(&e) else { continue };
        let Some(Some(name)) = el.first().and_then(resp::as_bulk) else { continue };
        let (time, max) = (field(&e, 1), field(&e, 3));
        let slot = by_event.entry(name).or_insert((time, e.clone(), max));
        if time > slot.0 {
            slot.0 = time;
            slot.1 = e.clone();
        }
        slot.2 = slot.2.max(max);
    }
    by_event
        .into_iter()
        .map(|(name, (time, e, max))| {
            let latest = field(&e, 2);
            reply::array(&[reply::bulk(&name), reply::int(time), reply::int(latest), reply::int(max)])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slow(id: i64, time: i64) -> Bytes {
        reply::array(&[
            reply::int(id),
            reply::int(time),
            reply::int(20000),
            reply::array(&[reply::bulk(b"DEBUG")]),
            reply::bulk(b"127.0.0.1:5000"),
            reply::bulk(b""),
        ])
    }

    #[test]
    fn slowlog_is_newest_first_and_cut_to_the_count() {
        let merged = newest_first(vec![slow(0, 100), slow(1, 300), slow(0, 200), slow(2, 300)], 3);
        let order: Vec<(i64, i64)> = merged.iter().map(|e| (field(e, 1), field(e, 0))).collect();
        assert_eq!(order, [(300, 2), (300, 1), (200, 0)]);
    }

    #[test]
    fn latency_history_keeps_the_most_recent_samples_oldest_first() {
        let s = |t: i64| reply::array(&[reply::int(t), reply::int(5)]);
        let kept = oldest_first(vec![s(5), s(1), s(3), s(2)], 3);
        assert_eq!(kept.iter().map(|e| field(e, 0)).collect::<Vec<_>>(), [2, 3, 5]);
    }

    #[test]
    fn latency_latest_is_one_entry_per_event() {
        let e = |n: &str, t: i64, l: i64, m: i64| {
            reply::array(&[reply::bulk(n.as_bytes()), reply::int(t), reply::int(l), reply::int(m)])
        };
        let merged = latest_per_event(vec![e("command", 10, 7, 50), e("fork", 5, 1, 1), e("command", 20, 3, 9)]);
        assert_eq!(merged, vec![e("command", 20, 3, 50), e("fork", 5, 1, 1)]);
    }
}
