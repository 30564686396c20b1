//! INFO as one standalone server would answer it: the sections asked for (several at once, `all`,
//! `everything`, `default`; unknown names ignored, as Redis does) in Redis's order; the proxy's
//! own `server` facts, `clients` counts, `replication` (a master without replicas) and `cluster`;
//! the masters' other sections merged where a merge means something (counts and memory summed,
//! flags and times the largest, text and ratios the first master's; command and error stats summed
//! per command), and `keyspace` summed over masters.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;

use super::Router;
use crate::backend::Cx;
use crate::resp::{self, reply};
use crate::stats::Count;

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

/// How the masters' values of one field become the one server's value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fold {
    /// Numbers added up: the cluster's total (memory, ops, hits, CPU seconds).
    Sum,
    /// The largest: flags (`rdb_bgsave_in_progress`: any master saving), times and durations
    /// (`latest_fork_usec`), percentiles.
    Max,
    /// The first master's value: text, and ratios, which do not add up.
    First,
}

fn fold_of(section: &str, key: &str) -> Fold {
    match section {
        // Counts of work done and of memory held: a sum is the cluster's figure.
        "Stats" | "Memory" | "CPU" => {
            if key.contains("ratio") || key.contains("perc") {
                Fold::First
            } else if key == "latest_fork_usec" {
                Fold::Max
            } else {
                Fold::Sum
            }
        }
        // Flags, timestamps and durations of each master's own saves: max says "any master".
        "Persistence" if key == "rdb_changes_since_last_save" => Fold::Sum,
        "Persistence" => Fold::Max,
        _ => Fold::First,
    }
}

/// Folds numbers, keeping the way the first master wrote them (`0.67`, `12`).
fn fold_numbers(values: &[&str], how: Fold) -> Option<String> {
    if how == Fold::First {
        return None;
    }
    if let Some(ints) = values.iter().map(|v| v.parse::<i64>().ok()).collect::<Option<Vec<i64>>>() {
        let v = if how == Fold::Sum { ints.iter().sum() } else { ints.iter().copied().max()? };
        return Some(v.to_string());
    }
    let floats = values.iter().map(|v| v.parse::<f64>().ok()).collect::<Option<Vec<f64>>>()?;
    let v = if how == Fold::Sum { floats.iter().sum() } else { floats.iter().copied().fold(f64::MIN, f64::max) };
    let decimals = values.first()?.split_once('.').map(|(_, d)| d.len()).unwrap_or(0);
    Some(format!("{v:.decimals$}"))
}

/// Redis's bytesToHuman: `1.50M` for 1572864.
fn bytes_to_human(n: i64) -> String {
    let units = ["K", "M", "G", "T", "P"];
    if n < 1024 {
        return format!("{n}B");
    }
    let mut d = n as f64 / 1024.0;
    for u in units {
        if d < 1024.0 {
            return format!("{d:.2}{u}");
        }
        d /= 1024.0;
    }
    format!("{:.2}E", d)
}

/// The fields of every master, in the order they first appear (a command only some masters ran
/// is still shown), folded by [`fold_of`]; `_human` twins follow their summed byte counts.
fn merge_fields(section: &str, all: &[&Section]) -> Section {
    let mut out: Section = Vec::new();
    for sec in all {
        for (k, v) in sec.iter() {
            if !out.iter().any(|(k2, _)| k2 == k) {
                out.push((k.clone(), v.clone()));
            }
        }
    }
    for (k, v) in out.iter_mut() {
        let values: Vec<&str> =
            all.iter().filter_map(|s| s.iter().find(|(k2, _)| k2 == k)).map(|(_, v)| v.as_str()).collect();
        if let Some(folded) = fold_numbers(&values, fold_of(section, k)) {
            *v = folded;
        } else if k.ends_with("_status") {
            // `rdb_last_bgsave_status`, `aof_last_write_status`: a failure anywhere is the answer.
            if let Some(bad) = values.iter().find(|s| **s != "ok") {
                *v = bad.to_string();
            }
        }
    }
    let totals: Vec<(String, String)> = out
        .iter()
        .filter_map(|(k, _)| {
            let base = k.strip_suffix("_human")?;
            let n = out.iter().find(|(k2, _)| k2 == base)?.1.parse::<i64>().ok()?;
            Some((k.clone(), bytes_to_human(n)))
        })
        .collect();
    for (k, h) in totals {
        if let Some(e) = out.iter_mut().find(|(k2, _)| *k2 == k) {
            e.1 = h;
        }
    }
    out
}

/// Lines of `name:a=1,b=2.00,...` (Commandstats, Errorstats, Latencystats), merged per line over
/// every master: counts summed, `usec_per_call` worked out again from the sums, percentiles
/// (which cannot be merged without the histograms) the largest over the masters, an upper bound.
fn merge_stat_lines(all: &[&Section]) -> Section {
    let mut names: Vec<String> = Vec::new();
    for sec in all {
        for (k, _) in sec.iter() {
            if !names.contains(k) && !cluster_internal(k) {
                names.push(k.clone());
            }
        }
    }
    names
        .into_iter()
        .map(|name| {
            let lines: Vec<Vec<(&str, &str)>> = all
                .iter()
                .filter_map(|s| s.iter().find(|(k, _)| *k == name))
                .map(|(_, v)| v.split(',').filter_map(|kv| kv.split_once('=')).collect())
                .collect();
            let Some(first) = lines.first() else { return (name, String::new()) };
            let mut fields: Vec<(String, String)> = first
                .iter()
                .map(|(f, v0)| {
                    let values: Vec<&str> =
                        lines.iter().filter_map(|l| l.iter().find(|(f2, _)| f2 == f)).map(|(_, v)| *v).collect();
                    let how = if f.starts_with('p') { Fold::Max } else { Fold::Sum };
                    (f.to_string(), fold_numbers(&values, how).unwrap_or_else(|| v0.to_string()))
                })
                .collect();
            let get = |fields: &[(String, String)], f: &str| {
                fields.iter().find(|(k, _)| k == f).and_then(|(_, v)| v.parse::<f64>().ok())
            };
            if let (Some(calls), Some(usec)) = (get(&fields, "calls"), get(&fields, "usec")) {
                if let Some(e) = fields.iter_mut().find(|(k, _)| k == "usec_per_call") {
                    e.1 = format!("{:.2}", if calls > 0.0 { usec / calls } else { 0.0 });
                }
            }
            let v = fields.iter().map(|(f, v)| format!("{f}={v}")).collect::<Vec<_>>().join(",");
            (name, v)
        })
        .collect()
}

/// A command-statistics line of a command no client of the proxy can have run: the cluster's own
/// (CLUSTER, replication, ASKING and READONLY/READWRITE are answered or refused by the proxy), sent
/// by replicas, tools and the proxy itself. One server's statistics count its clients' commands.
fn cluster_internal(line: &str) -> bool {
    let cmd =
        line.strip_prefix("cmdstat_").or_else(|| line.strip_prefix("latency_percentiles_usec_")).unwrap_or_default();
    cmd.starts_with("cluster|")
        || matches!(cmd, "cluster" | "psync" | "sync" | "replconf" | "asking" | "readonly" | "readwrite")
}

fn own_section(p: &Router, name: &str, first: Option<&Section>, all: &[&Section]) -> Option<Section> {
    let s = |k: &str, v: String| (k.to_string(), v);
    let up = p.stats.started.elapsed().as_secs();
    Some(match name {
        // The first master's build facts, with the fields of this process in their places (a
        // client parsing the section in Redis's order finds them where Redis puts them), and the
        // proxy's name and version at the end.
        "Server" => {
            let mut sec: Section = first.cloned().unwrap_or_default();
            for (k, v) in sec.iter_mut() {
                match k.as_str() {
                    "redis_mode" => *v = "standalone".into(),
                    "process_id" => *v = std::process::id().to_string(),
                    "run_id" => *v = p.stats.run_id.clone(),
                    "tcp_port" => *v = p.stats.local_addr.port().to_string(),
                    "uptime_in_seconds" => *v = up.to_string(),
                    "uptime_in_days" => *v = (up / 86400).to_string(),
                    "executable" => *v = std::env::current_exe().map(|e| e.display().to_string()).unwrap_or_default(),
                    // The proxy's configuration is not a redis.conf.
                    "config_file" => v.clear(),
                    _ => {}
                }
            }
            sec.push(s("proxy", "clusterless".into()));
            sec.push(s("clusterless_version", env!("CARGO_PKG_VERSION").into()));
            sec
        }
        // Redis 7.2's fields, in its order, counting the proxy's own clients. Not tracked, so 0:
        // the recent largest query/output buffers, and total_blocking_keys (the distinct keys
        // blocked on would need a registry shared by every client thread); no node links are
        // clients.
        "Clients" => {
            let n = |c: Count| p.stats.count(c).to_string();
            vec![
                s("connected_clients", p.stats.connected().to_string()),
                s("cluster_connections", "0".into()),
                s("maxclients", p.stats.max_clients.to_string()),
                s("client_recent_max_input_buffer", "0".into()),
                s("client_recent_max_output_buffer", "0".into()),
                s("blocked_clients", n(Count::Blocked)),
                s("tracking_clients", n(Count::Tracking)),
                s("pubsub_clients", n(Count::PubSub)),
                s("watching_clients", n(Count::Watching)),
                s("clients_in_timeout_table", n(Count::InTimeoutTable)),
                s("total_blocking_keys", "0".into()),
            ]
        }
        // What Redis prints for a master without replicas: the proxy has none, and the masters'
        // replicas are the cluster's business.
        "Replication" => vec![
            s("role", "master".into()),
            s("connected_slaves", "0".into()),
            s("master_failover_state", "no-failover".into()),
            s("master_replid", p.stats.replid.clone()),
            s("master_replid2", "0".repeat(40)),
            s("master_repl_offset", "0".into()),
            s("second_repl_offset", "-1".into()),
            s("repl_backlog_active", "0".into()),
            s("repl_backlog_size", "1048576".into()),
            s("repl_backlog_first_byte_offset", "0".into()),
            s("repl_backlog_histlen", "0".into()),
        ],
        // The masters' sums, with the connections the proxy itself accepted and refused in place
        // of the masters' (which count the proxy's own node connections).
        "Stats" => {
            let mut sec = merge_fields(name, all);
            for (k, v) in sec.iter_mut() {
                match k.as_str() {
                    "total_connections_received" => *v = p.stats.total_connections.load(Relaxed).to_string(),
                    "rejected_connections" => *v = p.stats.rejected_connections.load(Relaxed).to_string(),
                    _ => {}
                }
            }
            sec
        }
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
        let body = match own_section(p, name, secs.first().copied(), &secs) {
            Some(s) => s,
            None if name == "Keyspace" => merge_keyspace(&secs),
            None if matches!(name.as_str(), "Commandstats" | "Errorstats" | "Latencystats") => merge_stat_lines(&secs),
            None => merge_fields(name, &secs),
        };
        if !out.is_empty() {
            out.push_str("\r\n");
        }
        out.push_str(&format!("# {name}\r\n"));
        for (k, v) in body {
            out.push_str(&format!("{k}:{v}\r\n"));
        }
    }
    reply::verbatim(cx.proto, out.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sec(pairs: &[(&str, &str)]) -> Section {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn stat_lines_are_the_union_summed_per_line() {
        let a = sec(&[("cmdstat_get", "calls=3,usec=9,usec_per_call=3.00,rejected_calls=0,failed_calls=1")]);
        let b = sec(&[
            ("cmdstat_set", "calls=1,usec=5,usec_per_call=5.00,rejected_calls=0,failed_calls=0"),
            ("cmdstat_get", "calls=1,usec=1,usec_per_call=1.00,rejected_calls=2,failed_calls=0"),
        ]);
        let got = merge_stat_lines(&[&a, &b]);
        assert_eq!(
            got,
            sec(&[
                ("cmdstat_get", "calls=4,usec=10,usec_per_call=2.50,rejected_calls=2,failed_calls=1"),
                ("cmdstat_set", "calls=1,usec=5,usec_per_call=5.00,rejected_calls=0,failed_calls=0"),
            ])
        );
        let internal = sec(&[("cmdstat_cluster|nodes", "calls=1"), ("cmdstat_psync", "calls=1")]);
        assert_eq!(merge_stat_lines(&[&internal]), Vec::new());
        let p = merge_stat_lines(&[
            &sec(&[("latency_percentiles_usec_get", "p50=1.003,p99=9.001")]),
            &sec(&[("latency_percentiles_usec_get", "p50=2.007,p99=3.001")]),
        ]);
        assert_eq!(p, sec(&[("latency_percentiles_usec_get", "p50=2.007,p99=9.001")]));
    }

    #[test]
    fn fields_fold_by_meaning() {
        let a = sec(&[("used_memory", "1048576"), ("used_memory_human", "1.00M"), ("mem_fragmentation_ratio", "2.50")]);
        let b =
            sec(&[("used_memory", "524288"), ("used_memory_human", "512.00K"), ("mem_fragmentation_ratio", "1.10")]);
        assert_eq!(
            merge_fields("Memory", &[&a, &b]),
            sec(&[("used_memory", "1572864"), ("used_memory_human", "1.50M"), ("mem_fragmentation_ratio", "2.50")])
        );
        let a = sec(&[
            ("rdb_bgsave_in_progress", "0"),
            ("rdb_last_bgsave_status", "ok"),
            ("rdb_changes_since_last_save", "3"),
        ]);
        let b = sec(&[
            ("rdb_bgsave_in_progress", "1"),
            ("rdb_last_bgsave_status", "err"),
            ("rdb_changes_since_last_save", "4"),
        ]);
        assert_eq!(
            merge_fields("Persistence", &[&a, &b]),
            sec(&[
                ("rdb_bgsave_in_progress", "1"),
                ("rdb_last_bgsave_status", "err"),
                ("rdb_changes_since_last_save", "7")
            ])
        );
        let a = sec(&[("instantaneous_input_kbps", "0.25"), ("latest_fork_usec", "300")]);
        let b = sec(&[("instantaneous_input_kbps", "1.50"), ("latest_fork_usec", "200")]);
        assert_eq!(
            merge_fields("Stats", &[&a, &b]),
            sec(&[("instantaneous_input_kbps", "1.75"), ("latest_fork_usec", "300")])
        );
        assert_eq!(bytes_to_human(1023), "1023B");
        assert_eq!(bytes_to_human(1024 * 1024 * 1024 * 3 / 2), "1.50G");
    }
}
