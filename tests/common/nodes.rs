//! The cluster's own account of itself, read from a node's `CLUSTER NODES` with the tests' own
//! parser (not the proxy's), to compare what the proxy and the observer publish against; and which
//! of its clients are blocked, from its `CLIENT LIST`.

use clusterless::localcluster::LocalCluster;

/// One line of a node's `CLUSTER NODES`, read here (not with the proxy's parser).
#[derive(Debug, Clone)]
pub struct Truth {
    pub id: String,
    pub address: String,
    pub master: bool,
    pub master_id: Option<String>,
    pub epoch: u64,
    pub failed: bool,
    pub ranges: Vec<(u16, u16)>,
}

/// Sorted ranges with neighbours joined.
pub fn merged(mut r: Vec<(u16, u16)>) -> Vec<(u16, u16)> {
    r.sort_unstable();
    let mut out: Vec<(u16, u16)> = Vec::new();
    for (a, b) in r {
        match out.last_mut() {
            Some(last) if a <= last.1 + 1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// `CLUSTER NODES` as node `port` tells it.
pub fn cluster_nodes(cluster: &LocalCluster, port: u16) -> Vec<Truth> {
    let text = tokio::task::block_in_place(|| cluster.cli(port, &["CLUSTER", "NODES"])).expect("CLUSTER NODES");
    text.lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert!(f.len() >= 8, "CLUSTER NODES line: {l}");
            let flags: Vec<&str> = f[2].split(',').collect();
            let ranges = f[8..]
                .iter()
                .filter(|r| !r.starts_with('['))
                .map(|r| {
                    let (a, b) = r.split_once('-').unwrap_or((r, r));
                    (a.parse().unwrap(), b.parse().unwrap())
                })
                .collect();
            Truth {
                id: f[0].to_string(),
                address: f[1].split('@').next().unwrap().to_string(),
                master: flags.contains(&"master"),
                master_id: (f[3] != "-").then(|| f[3].to_string()),
                epoch: f[6].parse().unwrap(),
                failed: flags.contains(&"fail"),
                ranges: merged(ranges),
            }
        })
        .collect()
}

/// Lines of a node's `CLIENT LIST` for clients blocked in `cmd` right now (`cmd=<cmd>`, `b` in
/// their flags).
pub fn blocked_in(client_list: &str, cmd: &str) -> usize {
    client_list
        .lines()
        .filter(|l| {
            let field = |name: &str| {
                l.split(' ').find_map(|f| f.strip_prefix(name).and_then(|v| v.strip_prefix('='))).unwrap_or("")
            };
            field("cmd") == cmd && field("flags").contains('b')
        })
        .count()
}
