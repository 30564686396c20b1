//! Commands for the whole cluster: sent to every master and merged (DBSIZE summed, KEYS joined,
//! FLUSHALL only OK when all said OK, SCRIPT EXISTS element-wise AND), and RANDOMKEY.

use bytes::Bytes;

use super::Router;
use crate::backend::Cx;
use crate::command::Merge;
use crate::errors;
use crate::resp::{self, reply};

/// Sends the same command to every master and merges the replies.
pub async fn all_masters(p: &Router, cmd: Bytes, merge: Merge, cx: Cx) -> Bytes {
    let masters: Vec<String> = p.topology.load().masters().into_iter().map(str::to_string).collect();
    if masters.is_empty() {
        return errors::slot_not_served();
    }
    merge_all(merge, ask_each(p, &masters, &cmd, cx).await)
}

/// Sends `cmd` to each of `addrs` at once; each node's reply, or how asking it failed, in order.
pub(super) async fn ask_each(p: &Router, addrs: &[String], cmd: &Bytes, cx: Cx) -> Vec<Bytes> {
    futures_util::future::join_all(addrs.iter().map(|a| async move {
        match p.backend.send_one(a, cx, cmd.clone()).await {
            Ok(r) => r,
            Err(e) => e.reply(),
        }
    }))
    .await
}

fn merge_all(merge: Merge, replies: Vec<Bytes>) -> Bytes {
    if merge == Merge::AnyOk {
        // A script runs on one master at a time: killing it anywhere is killing it.
        return match replies.iter().find(|r| !resp::is_error(r)) {
            Some(ok) => ok.clone(),
            None => replies.into_iter().next().unwrap_or_else(errors::empty_reply),
        };
    }
    if let Some(e) = replies.iter().find(|r| resp::is_error(r)) {
        return e.clone();
    }
    match merge {
        Merge::Sum => {
            let mut sum = 0i64;
            for r in &replies {
                sum += resp::as_int(r).unwrap_or(0);
            }
            reply::int(sum)
        }
        Merge::Concat => {
            let mut all = Vec::new();
            for r in &replies {
                all.extend(resp::aggregate_elements(r).unwrap_or_default());
            }
            reply::array(&all)
        }
        Merge::AllOk | Merge::AnyOk => reply::ok(),
        Merge::First => replies.into_iter().next().unwrap_or_else(reply::ok),
        Merge::And => {
            let lists: Vec<Vec<Bytes>> =
                replies.iter().map(|r| resp::aggregate_elements(r).unwrap_or_default()).collect();
            let n = lists.iter().map(Vec::len).min().unwrap_or(0);
            let out: Vec<Bytes> = (0..n)
                .map(|i| {
                    let all = lists.iter().all(|l| resp::as_int(&l[i]).unwrap_or(0) != 0);
                    reply::int(all as i64)
                })
                .collect();
            reply::array(&out)
        }
    }
}

pub(super) async fn random_key(p: &Router, cx: Cx) -> Bytes {
    use rand::seq::SliceRandom;
    let mut masters: Vec<String> = p.topology.load().slot_owners().into_iter().map(str::to_string).collect();
    masters.shuffle(&mut rand::rng());
    let cmd = resp::encode_command(&[b"RANDOMKEY"]);
    for m in &masters {
        match p.backend.send_one(m, cx, cmd.clone()).await {
            Ok(r) => {
                if resp::is_error(&r) || !matches!(resp::as_bulk(&r), Some(None)) {
                    return r;
                }
            }
            Err(e) => return e.reply(),
        }
    }
    reply::null(cx.proto)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges() {
        let r = merge_all(Merge::Sum, vec![reply::int(2), reply::int(3)]);
        assert_eq!(&r[..], b":5\r\n");
        let r = merge_all(
            Merge::And,
            vec![Bytes::from_static(b"*2\r\n:1\r\n:1\r\n"), Bytes::from_static(b"*2\r\n:1\r\n:0\r\n")],
        );
        assert_eq!(&r[..], b"*2\r\n:1\r\n:0\r\n");
        let r = merge_all(Merge::Concat, vec![Bytes::from_static(b"*1\r\n$1\r\na\r\n"), Bytes::from_static(b"*0\r\n")]);
        assert_eq!(&r[..], b"*1\r\n$1\r\na\r\n");
        let r = merge_all(Merge::AllOk, vec![reply::ok(), errors::frame("ERR x")]);
        assert_eq!(&r[..], b"-ERR x\r\n");
    }
}
