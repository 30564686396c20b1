//! Tests of the CLUSTER SHARDS and CLUSTER SLOTS reply parsers of [`super`].
#![cfg(test)]
use super::*;

/// A reply value, written as RESP2 by [`enc`].
enum V {
    S(&'static str),
    I(i64),
    A(Vec<V>),
    Null,
}
use V::*;

fn enc(v: &V, out: &mut Vec<u8>) {
    match v {
        S(s) => out.extend(format!("${}\r\n{s}\r\n", s.len()).bytes()),
        I(i) => out.extend(format!(":{i}\r\n").bytes()),
        Null => out.extend(b"$-1\r\n"),
        A(items) => {
            out.extend(format!("*{}\r\n", items.len()).bytes());
            items.iter().for_each(|i| enc(i, out));
        }
    }
}

fn wire(v: V) -> Vec<u8> {
    let mut out = Vec::new();
    enc(&v, &mut out);
    out
}

#[test]
fn parses_cluster_slots() {
    let reply = b"*1\r\n*4\r\n:0\r\n:16383\r\n*3\r\n$9\r\n127.0.0.1\r\n:7000\r\n$3\r\nid1\r\n*3\r\n$9\r\n127.0.0.1\r\n:7001\r\n$3\r\nid2\r\n";
    let r = parse_slots(reply, "127.0.0.1:7000").unwrap();
    assert_eq!(r.ranges, vec![(0, 16383, "127.0.0.1:7000".to_string())]);
    assert_eq!(r.nodes.len(), 2);
    assert_eq!(r.nodes[1].role, Role::Replica);
    assert_eq!(r.nodes[1].master_id.as_deref(), Some("id1"));
}

/// The forms measured on Redis 7.0.15 (cluster-preferred-endpoint-type hostname,
/// unknown-endpoint, and a node without a hostname while hostnames are preferred).
#[test]
fn endpoints_of_every_kind() {
    let slots =
        |host: V, meta: Vec<V>| wire(A(vec![A(vec![I(0), I(16383), A(vec![host, I(31001), S("id1"), A(meta)])])]));
    let r = parse_slots(&slots(S("localhost"), vec![S("ip"), S("127.0.0.1")]), "127.0.0.1:31002").unwrap();
    assert_eq!((r.nodes[0].addr.as_str(), r.nodes[0].ip_addr.as_str()), ("localhost:31001", "127.0.0.1:31001"));
    let r = parse_slots(&slots(Null, vec![S("ip"), S("10.0.0.1"), S("hostname"), S("h")]), "proxy-vip:31002").unwrap();
    assert_eq!((r.nodes[0].addr.as_str(), r.nodes[0].ip_addr.as_str()), ("proxy-vip:31001", "10.0.0.1:31001"));
    let r = parse_slots(&slots(S("?"), vec![S("ip"), S("127.0.0.1")]), "x:1").unwrap();
    assert_eq!(r.nodes[0].addr, "127.0.0.1:31001");
    let r = parse_slots(&slots(S("::1"), vec![]), "x:1").unwrap();
    assert_eq!((r.nodes[0].addr.as_str(), r.ranges[0].2.as_str()), ("[::1]:31001", "[::1]:31001"));

    let shard = |endpoint: &'static str| {
        wire(A(vec![A(vec![
            S("slots"),
            A(vec![I(0), I(5460)]),
            S("nodes"),
            A(vec![A(vec![
                S("id"),
                S("id1"),
                S("port"),
                I(31001),
                S("ip"),
                S("127.0.0.1"),
                S("endpoint"),
                S(endpoint),
                S("role"),
                S("master"),
                S("health"),
                S("online"),
            ])]),
        ])]))
    };
    for (endpoint, addr) in [
        ("localhost", "localhost:31001"),
        ("127.0.0.1", "127.0.0.1:31001"),
        ("", "seed.example:31001"),
        ("?", "127.0.0.1:31001"),
    ] {
        let r = parse_shards(&shard(endpoint), "seed.example:31002", false).unwrap();
        assert_eq!((r.nodes[0].addr.as_str(), r.nodes[0].ip_addr.as_str()), (addr, "127.0.0.1:31001"), "{endpoint:?}");
        assert_eq!(r.ranges, vec![(0, 5460, addr.to_string())]);
    }
}

#[test]
fn a_tls_proxy_takes_the_tls_port_of_a_node_listing_both() {
    let both = wire(A(vec![A(vec![
        S("slots"),
        A(vec![I(0), I(16383)]),
        S("nodes"),
        A(vec![A(vec![
            S("id"),
            S("id1"),
            S("port"),
            I(7000),
            S("tls-port"),
            I(7100),
            S("ip"),
            S("10.0.0.1"),
            S("endpoint"),
            S("10.0.0.1"),
            S("role"),
            S("master"),
            S("health"),
            S("online"),
        ])]),
    ])]));
    let plain = parse_shards(&both, "10.0.0.1:7000", false).unwrap();
    assert_eq!(plain.nodes[0].addr, "10.0.0.1:7000");
    let tls = parse_shards(&both, "10.0.0.1:7100", true).unwrap();
    assert_eq!(tls.nodes[0].addr, "10.0.0.1:7100");
    assert_eq!(tls.ranges, vec![(0, 16383, "10.0.0.1:7100".to_string())]);
}
