//! INFO as one standalone server would answer it: the proxy's own `server`, `clients`,
//! `replication` and `cluster` sections, the masters' other sections merged (integers summed,
//! anything else taken from the first master), and `keyspace` summed over masters.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::Router;
use crate::backend::Cx;
use crate::resp::{self, reply};

type Section = Vec<(String, String)>;

fn parse_sections(text: &str) -> Vec<(String, Section)> {
    let mut out: Vec<(String, Section)> = Vec::new();
    for line in text.lines() {
        let line = line.trim_end();
        if let Some(name) = line.strip_prefix("# ") {
            out.push((name.to_string(), Vec::new()));
        } else if let Some((k, v)) = line.split_once(':') {
            if let Some((_, sec)) = out.last_mut() {
                sec.push((k.to_string(), v.to_string()));
            }
        }
    }
    out
}

/// Sums `db0:keys=1,expires=0,avg_ttl=0` lines; avg_ttl is weighted by expires.
fn merge_keyspace(all: &[&Section]) -> Section {
    let mut dbs: BTreeMap<String, (i64, i64, i128)> = BTreeMap::new();
    for sec in all {
        for (db, v) in sec.iter() {
            let mut keys = 0;
            let mut expires = 0;
            let mut ttl = 0i64;
            for kv in v.split(',') {
                match kv.split_once('=') {
                    Some(("keys", n)) => keys = n.parse().unwrap_or(0),
                    Some(("expires", n)) => expires = n.parse().unwrap_or(0),
                    Some(("avg_ttl", n)) => ttl = n.parse().unwrap_or(0),
                    _ => {}
                }
            }
            let e = dbs.entry(db.clone()).or_default();
            e.0 += keys;
            e.1 += expires;
            e.2 += ttl as i128 * expires as i128;
        }
    }
    dbs.into_iter()
        .map(|(db, (k, e, w))| {
            let avg = if e > 0 { (w / e as i128) as i64 } else { 0 };
            (db, format!("keys={k},expires={e},avg_ttl={avg}"))
        })
        .collect()
}

fn merge_numeric(all: &[&Section]) -> Section {
    let Some(first) = all.first() else { return Vec::new() };
    first
        .iter()
        .map(|(k, v)| {
            let nums: Option<Vec<i64>> =
                all.iter().map(|s| s.iter().find(|(k2, _)| k2 == k).and_then(|(_, v)| v.parse::<i64>().ok())).collect();
            match nums {
                Some(n) if v.parse::<i64>().is_ok() => (k.clone(), n.iter().sum::<i64>().to_string()),
                _ => (k.clone(), v.clone()),
            }
        })
        .collect()
}

fn own_section(p: &Router, name: &str, first: Option<&Section>) -> Option<Section> {
    let s = |k: &str, v: String| (k.to_string(), v);
    Some(match name {
        "Server" => {
            let mut sec: Section = first.cloned().unwrap_or_default();
            sec.retain(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "redis_mode"
                        | "tcp_port"
                        | "process_id"
                        | "uptime_in_seconds"
                        | "uptime_in_days"
                        | "executable"
                        | "config_file"
                )
            });
            sec.push(s("redis_mode", "standalone".into()));
            sec.push(s("proxy", "clusterless".into()));
            sec.push(s("clusterless_version", env!("CARGO_PKG_VERSION").into()));
            sec.push(s("process_id", std::process::id().to_string()));
            sec.push(s("tcp_port", p.stats.local_addr.port().to_string()));
            let up = p.stats.started.elapsed().as_secs();
            sec.push(s("uptime_in_seconds", up.to_string()));
            sec.push(s("uptime_in_days", (up / 86400).to_string()));
            sec
        }
        "Clients" => vec![
            s("connected_clients", p.stats.connected().to_string()),
            s("maxclients", p.stats.max_clients.to_string()),
            s("blocked_clients", "0".into()),
        ],
        "Replication" => vec![s("role", "master".into()), s("connected_slaves", "0".into())],
        "Cluster" => vec![s("cluster_enabled", "0".into())],
        _ => return None,
    })
}

/// Answers INFO [section ...].
pub(super) async fn info(p: &Router, args: &[Bytes], cx: Cx) -> Bytes {
    let masters: Vec<String> = p.topology.load().slot_owners().into_iter().map(str::to_string).collect();
    let cmd = resp::encode_command(args);
    let replies = futures_util::future::join_all(masters.iter().map(|m| p.backend.send(m, cx, cmd.clone(), 1))).await;
    let mut texts = Vec::new();
    for r in replies.into_iter().flatten() {
        if let Some(Some(b)) = r.first().and_then(resp::as_bulk) {
            texts.push(String::from_utf8_lossy(&b).into_owned());
        } else if let Some(f) = r.first() {
            if resp::is_error(f) {
                return f.clone();
            }
            // RESP3 verbatim string: `=len\r\ntxt:...`.
            if f.first() == Some(&b'=') {
                let body = f.iter().position(|&c| c == b'\n').and_then(|pos| f.get(pos + 1..f.len().saturating_sub(2)));
                if let Some(body) = body {
                    texts.push(String::from_utf8_lossy(body.get(4..).unwrap_or_default()).into_owned());
                }
            }
        }
    }
    let parsed: Vec<Vec<(String, Section)>> = texts.iter().map(|t| parse_sections(t)).collect();
    let wanted: Vec<String> = args.iter().skip(1).map(|a| String::from_utf8_lossy(a).to_ascii_lowercase()).collect();
    let mut names: Vec<String> = parsed.first().map(|s| s.iter().map(|(n, _)| n.clone()).collect()).unwrap_or_default();
    let everything = wanted.is_empty() || wanted.iter().any(|w| matches!(w.as_str(), "all" | "everything" | "default"));
    for own in ["Server", "Clients", "Replication", "Cluster"] {
        if !names.iter().any(|n| n == own) && (everything || wanted.iter().any(|w| w == &own.to_ascii_lowercase())) {
            names.push(own.to_string());
        }
    }
    let mut out = String::new();
    for name in &names {
        let secs: Vec<&Section> =
            parsed.iter().filter_map(|m| m.iter().find(|(n, _)| n == name).map(|(_, s)| s)).collect();
        let body = match own_section(p, name, secs.first().copied()) {
            Some(s) => s,
            None if name == "Keyspace" => merge_keyspace(&secs),
            None => merge_numeric(&secs),
        };
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        out.push_str(&format!("# {name}\r\n"));
        for (k, v) in body {
            out.push_str(&format!("{k}:{v}\r\n"));
        }
    }
    reply::bulk(out.as_bytes())
}
