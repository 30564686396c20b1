//! `CLUSTER NODES` as the observer reads it: node ids, client and bus addresses, roles, flags,
//! configEpoch and slots, for the node set and its bus ports.

use crate::topology::format_addr;

/// One line of CLUSTER NODES.
#[derive(Debug, Clone, PartialEq)]
pub struct NodesLine {
    pub id: String,
    pub addr: String,
    pub bus: String,
    pub master: bool,
    pub fail: bool,
    pub handshake: bool,
    pub master_id: Option<String>,
    pub config_epoch: u64,
    pub slots: Vec<(u16, u16)>,
}

/// Parses `CLUSTER NODES` text; lines it cannot read are skipped.
pub fn parse_cluster_nodes(text: &str) -> Vec<NodesLine> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            // ip:port@cport[,hostname]
            let (hostport, rest) = f[1].split_once('@')?;
            let cport = rest.split(',').next()?;
            let (ip, port) = hostport.rsplit_once(':')?;
            let (port, cport): (u16, u16) = (port.parse().ok()?, cport.parse().ok()?);
            if ip.is_empty() || port == 0 {
                return None;
            }
            let flags = f[2];
            let mut slots = Vec::new();
            for r in &f[8..] {
                if r.starts_with('[') {
                    continue;
                }
                let (a, b) = match r.split_once('-') {
                    Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
                    None => {
                        let s: u16 = r.parse().ok()?;
                        (s, s)
                    }
                };
                slots.push((a, b));
            }
            Some(NodesLine {
                id: f[0].to_string(),
                addr: format_addr(ip, port),
                bus: format_addr(ip, cport),
                master: flags.contains("master"),
                fail: flags.split(',').any(|x| x == "fail"),
                handshake: flags.contains("handshake") || flags.contains("noaddr"),
                master_id: (f[3] != "-").then(|| f[3].to_string()),
                config_epoch: f[6].parse().unwrap_or(0),
                slots,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cluster_nodes_lines() {
        let text = "07c3 127.0.0.1:30004@40004 master - 0 1426238317239 4 connected 0-10 12 [13->-abc]\n\
                    67ed 127.0.0.1:30002@40002,host2 slave 07c3 0 1426238316232 2 connected\n\
                    bad line\n\
                    e7d1 :0@0 master,noaddr - 0 0 0 disconnected\n";
        let l = parse_cluster_nodes(text);
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].bus, "127.0.0.1:40004");
        assert_eq!(l[0].slots, vec![(0, 10), (12, 12)]);
        assert_eq!(l[0].config_epoch, 4);
        assert!(l[0].master);
        assert_eq!(l[1].bus, "127.0.0.1:40002");
        assert_eq!(l[1].master_id.as_deref(), Some("07c3"));
    }
}
