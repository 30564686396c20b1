//! The bus codec against real PONGs captured from Redis 7.0.15, 7.4.1, 8.0 and Valkey 8.0.1, the
//! PING we send, and arbitrary or damaged bytes (errors, never a panic).

use clusterless::bus_codec::*;
use proptest::prelude::*;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/pong-samples/{name}.hex", env!("CARGO_MANIFEST_DIR"));
    let hex = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let hex = hex.trim();
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

const ALL: [&str; 6] = [
    "redis-7.0.15-master",
    "redis-7.0.15-replica-hostname",
    "redis-7.4.1-master-hostname-shardid",
    "redis-7.4.1-master-hostname-humanname-shardid",
    "redis-8.0-7.9.224-master",
    "valkey-8.0.1-master",
];

#[test]
fn redis_7_0_master() {
    let m = decode(&fixture("redis-7.0.15-master")).unwrap();
    let h = &m.header;
    assert_eq!(h.totlen, 2568);
    assert_eq!(h.msg_type(), TYPE_PONG);
    assert_eq!((h.port, h.cport, h.pport), (30004, 40004, 0));
    assert_eq!(h.flags, FLAG_MASTER | FLAG_MYSELF | FLAG_MIGRATE_TO);
    assert_eq!((h.current_epoch, h.config_epoch, h.offset), (18, 18, 3185));
    assert_eq!(h.sender.as_str(), "f895631cd66cc2e340cc3dc4a7fafe53a8f94a0c");
    assert!(h.sender.is_valid());
    assert_eq!(h.slaveof, None);
    assert_eq!(h.myslots.ranges(), vec![(0, 5460)]);
    assert_eq!(h.myslots.count(), 5461);
    assert!(h.cluster_ok() && !h.paused());
    assert_eq!(h.mflags, [0, 0, 0]);
    assert_eq!(h.myip, None);
    assert_eq!(h.count, 3);
    assert_eq!(m.gossip.len(), 3);
    let g = &m.gossip[2];
    assert_eq!(g.nodename.as_str(), "8a4d438ebacc14db0a93261ff6979cfb80d91e5c");
    assert_eq!((g.ip.as_str(), g.port, g.cport, g.flags), ("127.0.0.1", 30005, 40005, FLAG_SLAVE));
    assert_eq!(m.gossip[0].flags, FLAG_MASTER | FLAG_MIGRATE_TO);
    assert!(m.extensions.is_empty());
}

#[test]
fn redis_7_0_replica_with_hostname() {
    let master = decode(&fixture("redis-7.0.15-master")).unwrap();
    let m = decode(&fixture("redis-7.0.15-replica-hostname")).unwrap();
    let h = &m.header;
    assert_eq!((h.port, h.cport), (30001, 40001));
    assert_eq!(h.flags, FLAG_SLAVE | FLAG_MYSELF);
    assert!(h.is_replica() && !h.is_master());
    // A replica names its master and carries the master's slots and configEpoch.
    assert_eq!(h.slaveof, Some(master.header.sender));
    assert_eq!(h.myslots.ranges(), vec![(0, 5460)]);
    assert_eq!(h.config_epoch, master.header.config_epoch);
    assert_eq!(h.mflags[0], MFLAG_EXT_DATA);
    assert_eq!(h.extensions, 1);
    assert_eq!(m.extensions, vec![Extension::Hostname("replica-30001.example".into())]);
}

#[test]
fn redis_7_4_extensions() {
    let m = decode(&fixture("redis-7.4.1-master-hostname-shardid")).unwrap();
    assert_eq!((m.header.port, m.header.cport, m.header.config_epoch), (31001, 41001, 1));
    assert_eq!(m.header.flags, FLAG_MASTER | FLAG_MYSELF);
    assert_eq!(m.header.myslots.ranges(), vec![(0, 5460)]);
    assert_eq!(
        m.extensions,
        vec![
            Extension::Hostname("host-31001".into()),
            Extension::ShardId(NodeId::parse("55ed9024ae717a7894f665ecb57e103a18cd70ca").unwrap()),
        ]
    );
    let m = decode(&fixture("redis-7.4.1-master-hostname-humanname-shardid")).unwrap();
    assert_eq!(m.header.sender.as_str(), "9a8b2de96ec6a52248f8c547d80e156a7505577f");
    assert_eq!(m.header.myslots.ranges(), vec![(5461, 10922)]);
    assert_eq!(m.header.config_epoch, 2);
    assert_eq!(m.header.extensions, 3);
    assert_eq!(
        m.extensions,
        vec![
            Extension::Hostname("h-31002".into()),
            Extension::HumanNodename("human-31002".into()),
            Extension::ShardId(NodeId::parse("802af7fb7d5b575cab642fbda47065c1b08904f1").unwrap()),
        ]
    );
    // Its one gossip entry is the other master of that capture.
    assert_eq!(m.gossip[0].nodename.as_str(), "bd941219f229c10aa9151fb9a60971135bcb61a3");
    assert_eq!((m.gossip[0].port, m.gossip[0].cport), (31001, 41001));
}

#[test]
fn redis_8_and_valkey_8_send_ext_data_without_extensions() {
    let m = decode(&fixture("redis-8.0-7.9.224-master")).unwrap();
    assert_eq!((m.header.port, m.header.cport), (32001, 42001));
    assert_eq!(m.header.mflags[0], MFLAG_EXT_DATA);
    assert_eq!(m.header.extensions, 0);
    assert!(m.extensions.is_empty());
    assert_eq!(m.gossip[0].flags, FLAG_MASTER | FLAG_EXTENSIONS_SUPPORTED);
    let v = decode(&fixture("valkey-8.0.1-master")).unwrap();
    assert_eq!(v.header.flags, FLAG_MASTER | FLAG_MYSELF | FLAG_LIGHT_HDR_SUPPORTED);
    assert_eq!((v.header.current_epoch, v.header.config_epoch), (3, 1));
    assert_eq!(v.header.myslots.ranges(), vec![(0, 5460)]);
    assert_eq!(v.gossip[0].flags, FLAG_MASTER | FLAG_EXTENSIONS_SUPPORTED | FLAG_LIGHT_HDR_SUPPORTED);
    assert!(v.extensions.is_empty());
}

#[test]
fn ping_is_exactly_what_the_design_says() {
    let id = NodeId::random();
    assert!(id.is_valid());
    let ping = encode_ping(&id);
    assert_eq!(ping.len(), 2256);
    let m = decode(&ping).unwrap();
    assert_eq!(m.header.msg_type(), TYPE_PING);
    assert_eq!(m.header.sender, id);
    assert_eq!((m.header.count, m.header.extensions, m.header.ver), (0, 0, 1));
    assert_eq!(m.header.mflags, [MFLAG_EXT_DATA, 0, 0]);
    assert_eq!(m.header.flags, 0, "no MEET, no role claimed");
    assert_eq!(m.header.myslots.count(), 0, "claims no slots");
    // Every byte other than sig, totlen, ver, type, sender and mflags[0] is zero.
    for (i, &b) in ping.iter().enumerate() {
        let expected_nonzero = matches!(i, 0..=3 | 4..=7 | 8..=9 | 12..=13 | 40..=79 | 2253);
        if !expected_nonzero {
            assert_eq!(b, 0, "byte {i}");
        }
    }
}

#[test]
fn framing_across_every_split() {
    let mut stream = Vec::new();
    for f in ALL {
        stream.extend(fixture(f));
    }
    for cut in (0..stream.len()).step_by(7) {
        let mut buf: Vec<u8> = stream[..cut].to_vec();
        let mut got = 0;
        let mut rest = &stream[cut..];
        loop {
            match frame_len(&buf).unwrap() {
                Some(n) if buf.len() >= n => {
                    decode(&buf[..n]).unwrap();
                    buf.drain(..n);
                    got += 1;
                }
                _ if !rest.is_empty() => {
                    buf.extend_from_slice(rest);
                    rest = &[];
                }
                _ => break,
            }
        }
        assert_eq!(got, ALL.len(), "cut {cut}");
    }
}

#[test]
fn every_truncation_is_an_error() {
    for f in ALL {
        let b = fixture(f);
        for n in 0..b.len() {
            assert!(decode(&b[..n]).is_err(), "{f} truncated to {n}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..5000)) {
        let _ = frame_len(&bytes);
        let _ = decode(&bytes);
    }

    #[test]
    fn valid_header_then_garbage_never_panics(extra in proptest::collection::vec(any::<u8>(), 0..3000), count in 0u16..50, ext in 0u16..10, mflags in any::<u8>()) {
        let mut m = encode_ping(&NodeId::random()).to_vec();
        m.extend_from_slice(&extra);
        let len = m.len() as u32;
        m[4..8].copy_from_slice(&len.to_be_bytes());
        m[12..14].copy_from_slice(&TYPE_PONG.to_be_bytes());
        m[14..16].copy_from_slice(&count.to_be_bytes());
        m[2214..2216].copy_from_slice(&ext.to_be_bytes());
        m[2253] = mflags;
        let _ = decode(&m);
    }

    #[test]
    fn bit_flips_in_fixtures_never_panic(which in 0usize..6, flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..20)) {
        let mut b = fixture(ALL[which]);
        for (i, x) in flips {
            let at = i.index(b.len());
            b[at] ^= x;
        }
        let _ = frame_len(&b);
        let _ = decode(&b);
    }
}
