//! The Redis Cluster bus wire format, as far as an observer needs it: decoding PONGs (header,
//! gossip entries, ping extensions) and encoding the one message we ever send, a plain PING.
//!
//! There is deliberately no way to build MEET, FAIL, UPDATE or PUBLISH: a MEET makes the node adopt
//! our address and start a handshake that gossips us to the whole cluster, and the others act on
//! the cluster's state. A PING from an unknown sender id only earns a PONG and changes nothing
//! (design/cluster-bus.md, section 3). Every read is bounds-checked: a node's bytes never panic us.

use std::fmt;

/// Size of the fixed header (`sizeof(clusterMsg)` minus the data union).
pub const HEADER_LEN: usize = 2256;
/// Size of one gossip entry.
pub const GOSSIP_LEN: usize = 104;
/// Largest message we accept; a PONG from a 1000-node cluster is about 110 KB.
pub const MAX_MESSAGE: usize = 1 << 20;
pub const SIGNATURE: &[u8; 4] = b"RCmb";

pub const TYPE_PING: u16 = 0;
pub const TYPE_PONG: u16 = 1;
pub const TYPE_MEET: u16 = 2;

pub const FLAG_MASTER: u16 = 1;
pub const FLAG_SLAVE: u16 = 2;
pub const FLAG_PFAIL: u16 = 4;
pub const FLAG_FAIL: u16 = 8;
pub const FLAG_MYSELF: u16 = 16;
pub const FLAG_HANDSHAKE: u16 = 32;
pub const FLAG_NOADDR: u16 = 64;
pub const FLAG_MEET: u16 = 128;
pub const FLAG_MIGRATE_TO: u16 = 256;
pub const FLAG_NOFAILOVER: u16 = 512;
pub const FLAG_EXTENSIONS_SUPPORTED: u16 = 1024;
pub const FLAG_LIGHT_HDR_SUPPORTED: u16 = 2048;

pub const MFLAG_PAUSED: u8 = 1;
pub const MFLAG_FORCEACK: u8 = 2;
pub const MFLAG_EXT_DATA: u8 = 4;

pub const EXT_HOSTNAME: u16 = 0;
pub const EXT_HUMAN_NODENAME: u16 = 1;
pub const EXT_FORGOTTEN_NODE: u16 = 2;
pub const EXT_SHARDID: u16 = 3;
pub const EXT_CLIENT_IPV4: u16 = 4;
pub const EXT_CLIENT_IPV6: u16 = 5;

/// Why bytes are not a message we accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("bad signature (not a cluster bus message)")]
    BadSignature,
    #[error("message length {0} below the 2256-byte header")]
    TooShort(usize),
    #[error("message length {0} above the {MAX_MESSAGE}-byte limit")]
    TooLong(usize),
    #[error("totlen says {declared} bytes but {actual} were given")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("truncated {0}")]
    Truncated(&'static str),
    #[error("bad extension: {0}")]
    BadExtension(&'static str),
}

/// A 40-byte node id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub [u8; 40]);

impl NodeId {
    /// A fresh random lowercase-hex id (160 random bits).
    pub fn random() -> NodeId {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut id = [0u8; 40];
        for b in id.iter_mut() {
            *b = HEX[rand::random_range(0..16usize)];
        }
        NodeId(id)
    }

    /// Redis accepts only `[a-z0-9]{40}` as a node id.
    pub fn is_valid(&self) -> bool {
        self.0.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    }

    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|&c| c == 0)
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("<invalid id>")
    }

    /// From a 40-character id string.
    pub fn parse(s: &str) -> Option<NodeId> {
        let b: [u8; 40] = s.as_bytes().try_into().ok()?;
        Some(NodeId(b))
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.as_str())
    }
}

/// The 16384-bit slot bitmap: slot j is bit (j & 7) of byte j >> 3.
#[derive(Clone, PartialEq, Eq)]
pub struct SlotBitmap(pub Box<[u8; 2048]>);

impl SlotBitmap {
    pub fn contains(&self, slot: u16) -> bool {
        let s = slot as usize;
        s < 16384 && self.0[s >> 3] & (1 << (s & 7)) != 0
    }

    pub fn count(&self) -> usize {
        self.0.iter().map(|b| b.count_ones() as usize).sum()
    }

    /// Inclusive ranges of the slots set.
    pub fn ranges(&self) -> Vec<(u16, u16)> {
        let mut out = Vec::new();
        let mut start: Option<u16> = None;
        for s in 0..16384u16 {
            match (self.contains(s), start) {
                (true, None) => start = Some(s),
                (false, Some(a)) => {
                    out.push((a, s - 1));
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(a) = start {
            out.push((a, 16383));
        }
        out
    }
}

impl fmt::Debug for SlotBitmap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SlotBitmap({:?})", self.ranges())
    }
}

/// The fixed header of every bus message (design section 2.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub totlen: u32,
    pub ver: u16,
    pub port: u16,
    /// Raw type field; Valkey uses bit 15 as a "light header" modifier.
    pub raw_type: u16,
    pub count: u16,
    pub current_epoch: u64,
    pub config_epoch: u64,
    pub offset: u64,
    pub sender: NodeId,
    pub myslots: SlotBitmap,
    /// The master's id for a replica; `None` (all NUL) for a master.
    pub slaveof: Option<NodeId>,
    /// `cluster-announce-ip`, when set.
    pub myip: Option<String>,
    pub extensions: u16,
    pub pport: u16,
    pub cport: u16,
    pub flags: u16,
    /// 0 = ok, 1 = fail, as the sender sees the cluster.
    pub state: u8,
    pub mflags: [u8; 3],
}

impl Header {
    /// The message type without Valkey's light-header bit.
    pub fn msg_type(&self) -> u16 {
        self.raw_type & 0x7fff
    }

    pub fn is_master(&self) -> bool {
        self.flags & FLAG_MASTER != 0
    }

    pub fn is_replica(&self) -> bool {
        self.flags & FLAG_SLAVE != 0
    }

    pub fn cluster_ok(&self) -> bool {
        self.state == 0
    }

    pub fn paused(&self) -> bool {
        self.mflags[0] & MFLAG_PAUSED != 0
    }
}

/// One gossip entry: the sender's view of another node (design section 2.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GossipEntry {
    pub nodename: NodeId,
    pub ping_sent: u32,
    pub pong_received: u32,
    pub ip: String,
    pub port: u16,
    pub cport: u16,
    pub flags: u16,
    pub pport: u16,
}

/// A ping extension (design section 2.6); unknown types are kept raw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Extension {
    Hostname(String),
    HumanNodename(String),
    ForgottenNode { name: NodeId, ttl: u64 },
    ShardId(NodeId),
    ClientIpv4(String),
    ClientIpv6(String),
    Unknown { ty: u16, payload: Vec<u8> },
}

/// A decoded message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub header: Header,
    pub gossip: Vec<GossipEntry>,
    pub extensions: Vec<Extension>,
}

// === bounds-checked readers ===

fn take<'a>(b: &'a [u8], at: usize, n: usize, what: &'static str) -> Result<&'a [u8], CodecError> {
    b.get(at..at.checked_add(n).ok_or(CodecError::Truncated(what))?).ok_or(CodecError::Truncated(what))
}

fn u16_at(b: &[u8], at: usize, what: &'static str) -> Result<u16, CodecError> {
    let s = take(b, at, 2, what)?;
    Ok(u16::from_be_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: usize, what: &'static str) -> Result<u32, CodecError> {
    let s = take(b, at, 4, what)?;
    Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], at: usize, what: &'static str) -> Result<u64, CodecError> {
    let s = take(b, at, 8, what)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Ok(u64::from_be_bytes(a))
}

fn id_at(b: &[u8], at: usize, what: &'static str) -> Result<NodeId, CodecError> {
    let s = take(b, at, 40, what)?;
    let mut a = [0u8; 40];
    a.copy_from_slice(s);
    Ok(NodeId(a))
}

/// A NUL-terminated string in a fixed field.
fn cstr(field: &[u8]) -> String {
    let end = field.iter().position(|&c| c == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// How long the message at the front of `buf` is, once its first 8 bytes arrived; `Ok(None)` when
/// more bytes are needed. Errors mean the stream cannot be framed and the link must be dropped.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, CodecError> {
    if buf.len() < 8 {
        return Ok(None);
    }
    if &buf[0..4] != SIGNATURE {
        return Err(CodecError::BadSignature);
    }
    let len = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
    if len < HEADER_LEN {
        return Err(CodecError::TooShort(len));
    }
    if len > MAX_MESSAGE {
        return Err(CodecError::TooLong(len));
    }
    Ok(Some(len))
}

/// Decodes one whole message (exactly `totlen` bytes).
pub fn decode(msg: &[u8]) -> Result<Message, CodecError> {
    let declared = match frame_len(msg)? {
        Some(n) => n,
        None => return Err(CodecError::Truncated("header")),
    };
    if declared != msg.len() {
        return Err(CodecError::LengthMismatch { declared, actual: msg.len() });
    }
    let slaveof = id_at(msg, 2128, "slaveof")?;
    let myip = cstr(take(msg, 2168, 46, "myip")?);
    let mut slots = Box::new([0u8; 2048]);
    slots.copy_from_slice(take(msg, 80, 2048, "myslots")?);
    let mflags = take(msg, 2253, 3, "mflags")?;
    let header = Header {
        totlen: declared as u32,
        ver: u16_at(msg, 8, "ver")?,
        port: u16_at(msg, 10, "port")?,
        raw_type: u16_at(msg, 12, "type")?,
        count: u16_at(msg, 14, "count")?,
        current_epoch: u64_at(msg, 16, "currentEpoch")?,
        config_epoch: u64_at(msg, 24, "configEpoch")?,
        offset: u64_at(msg, 32, "offset")?,
        sender: id_at(msg, 40, "sender")?,
        myslots: SlotBitmap(slots),
        slaveof: (!slaveof.is_zero()).then_some(slaveof),
        myip: (!myip.is_empty()).then_some(myip),
        extensions: u16_at(msg, 2214, "extensions")?,
        pport: u16_at(msg, 2246, "pport")?,
        cport: u16_at(msg, 2248, "cport")?,
        flags: u16_at(msg, 2250, "flags")?,
        state: *take(msg, 2252, 1, "state")?.first().ok_or(CodecError::Truncated("state"))?,
        mflags: [mflags[0], mflags[1], mflags[2]],
    };
    let mut out = Message { header, gossip: Vec::new(), extensions: Vec::new() };
    if !matches!(out.header.msg_type(), TYPE_PING | TYPE_PONG | TYPE_MEET) {
        return Ok(out);
    }
    let count = out.header.count as usize;
    let gossip_end = HEADER_LEN + GOSSIP_LEN * count;
    if gossip_end > msg.len() {
        return Err(CodecError::Truncated("gossip section"));
    }
    for i in 0..count {
        let e = HEADER_LEN + GOSSIP_LEN * i;
        out.gossip.push(GossipEntry {
            nodename: id_at(msg, e, "gossip nodename")?,
            ping_sent: u32_at(msg, e + 40, "gossip ping_sent")?,
            pong_received: u32_at(msg, e + 44, "gossip pong_received")?,
            ip: cstr(take(msg, e + 48, 46, "gossip ip")?),
            port: u16_at(msg, e + 94, "gossip port")?,
            cport: u16_at(msg, e + 96, "gossip cport")?,
            flags: u16_at(msg, e + 98, "gossip flags")?,
            pport: u16_at(msg, e + 100, "gossip pport")?,
        });
    }
    if out.header.mflags[0] & MFLAG_EXT_DATA != 0 {
        let mut at = gossip_end;
        for _ in 0..out.header.extensions {
            let len = u32_at(msg, at, "extension length")? as usize;
            if len < 8 || len % 8 != 0 {
                return Err(CodecError::BadExtension("length not a multiple of 8"));
            }
            let ty = u16_at(msg, at + 4, "extension type")?;
            let payload = take(msg, at + 8, len - 8, "extension payload")?;
            out.extensions.push(match ty {
                EXT_HOSTNAME => Extension::Hostname(cstr(payload)),
                EXT_HUMAN_NODENAME => Extension::HumanNodename(cstr(payload)),
                EXT_FORGOTTEN_NODE => Extension::ForgottenNode {
                    name: id_at(payload, 0, "forgotten node name")?,
                    ttl: u64_at(payload, 40, "forgotten node ttl")?,
                },
                EXT_SHARDID => Extension::ShardId(id_at(payload, 0, "shard id")?),
                EXT_CLIENT_IPV4 => Extension::ClientIpv4(cstr(payload)),
                EXT_CLIENT_IPV6 => Extension::ClientIpv6(cstr(payload)),
                ty => Extension::Unknown { ty, payload: payload.to_vec() },
            });
            at += len;
        }
        if at != msg.len() {
            return Err(CodecError::LengthMismatch { declared: at, actual: msg.len() });
        }
    } else if gossip_end != msg.len() {
        return Err(CodecError::LengthMismatch { declared: gossip_end, actual: msg.len() });
    }
    Ok(out)
}

/// The only message we send: a 2256-byte PING with our `sender` id, no gossip, no extensions,
/// `EXT_DATA` set (so newer nodes may send extensions), every other field zero.
pub fn encode_ping(sender: &NodeId) -> [u8; HEADER_LEN] {
    let mut m = [0u8; HEADER_LEN];
    m[0..4].copy_from_slice(SIGNATURE);
    m[4..8].copy_from_slice(&(HEADER_LEN as u32).to_be_bytes());
    m[8..10].copy_from_slice(&1u16.to_be_bytes());
    m[12..14].copy_from_slice(&TYPE_PING.to_be_bytes());
    m[40..80].copy_from_slice(&sender.0);
    m[2253] = MFLAG_EXT_DATA;
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put16(m: &mut [u8], at: usize, v: u16) {
        m[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }

    fn put32(m: &mut [u8], at: usize, v: u32) {
        m[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }

    fn put64(m: &mut [u8], at: usize, v: u64) {
        m[at..at + 8].copy_from_slice(&v.to_be_bytes());
    }

    fn id(c: u8) -> NodeId {
        NodeId([c; 40])
    }

    /// A message of type `ty` from our PING's header, `body` appended, totlen and count set.
    fn message(ty: u16, count: u16, body: &[u8]) -> Vec<u8> {
        let mut m = encode_ping(&id(b'a')).to_vec();
        m.extend_from_slice(body);
        let len = m.len() as u32;
        put32(&mut m, 4, len);
        put16(&mut m, 12, ty);
        put16(&mut m, 14, count);
        m
    }

    /// One ping extension: length (header included, padded to 8), type, payload.
    fn extension(ty: u16, payload: &[u8]) -> Vec<u8> {
        let len = (8 + payload.len()).div_ceil(8) * 8;
        let mut e = vec![0u8; len];
        put32(&mut e, 0, len as u32);
        put16(&mut e, 4, ty);
        e[8..8 + payload.len()].copy_from_slice(payload);
        e
    }

    #[test]
    fn node_ids() {
        let r = NodeId::random();
        assert!(r.is_valid() && !r.is_zero());
        assert_ne!(NodeId::random(), r);
        assert!(id(b'z').is_valid() && id(b'0').is_valid());
        assert!(!id(b'A').is_valid() && !id(b'-').is_valid() && !id(0).is_valid());
        assert!(id(0).is_zero() && !id(b'0').is_zero());
        let mut one = [0u8; 40];
        one[39] = 1;
        assert!(!NodeId(one).is_zero());
        assert_eq!(NodeId::parse(&"ab".repeat(20)), Some(NodeId(*b"abababababababababababababababababababab")));
        assert_eq!(NodeId::parse("abc"), None);
        assert_eq!(NodeId::parse(&"a".repeat(41)), None);
        assert_eq!(id(b'c').to_string(), "c".repeat(40));
        assert_eq!(format!("{:?}", id(b'c')), format!("NodeId({})", "c".repeat(40)));
        assert_eq!(NodeId([0xff; 40]).as_str(), "<invalid id>");
    }

    #[test]
    fn slot_bitmaps() {
        let mut b = SlotBitmap(Box::new([0u8; 2048]));
        assert_eq!((b.count(), b.ranges()), (0, vec![]));
        for s in [0u16, 1, 2, 9, 100, 16383] {
            b.0[s as usize >> 3] |= 1 << (s & 7);
        }
        assert!(b.contains(0) && b.contains(9) && b.contains(16383));
        assert!(!b.contains(3) && !b.contains(8) && !b.contains(16382) && !b.contains(16384));
        assert_eq!(b.count(), 6);
        assert_eq!(b.ranges(), vec![(0, 2), (9, 9), (100, 100), (16383, 16383)]);
        assert_eq!(format!("{b:?}"), "SlotBitmap([(0, 2), (9, 9), (100, 100), (16383, 16383)])");
        let full = SlotBitmap(Box::new([0xff; 2048]));
        assert_eq!((full.count(), full.ranges()), (16384, vec![(0, 16383)]));
    }

    #[test]
    fn framing_limits() {
        let ping = encode_ping(&id(b'a'));
        assert_eq!(frame_len(&ping[..7]), Ok(None));
        assert_eq!(frame_len(&ping[..8]), Ok(Some(HEADER_LEN)));
        assert_eq!(frame_len(b"RCmc\0\0\x08\xd0"), Err(CodecError::BadSignature));
        let with_len = |n: u32| {
            let mut h = SIGNATURE.to_vec();
            h.extend_from_slice(&n.to_be_bytes());
            frame_len(&h)
        };
        assert_eq!(with_len(HEADER_LEN as u32 - 1), Err(CodecError::TooShort(HEADER_LEN - 1)));
        assert_eq!(with_len(MAX_MESSAGE as u32), Ok(Some(MAX_MESSAGE)));
        assert_eq!(with_len(MAX_MESSAGE as u32 + 1), Err(CodecError::TooLong(MAX_MESSAGE + 1)));
        assert_eq!(decode(&ping[..7]), Err(CodecError::Truncated("header")));
        // totlen must be the message's length exactly.
        let mut longer = ping.to_vec();
        longer.push(0);
        assert_eq!(decode(&longer), Err(CodecError::LengthMismatch { declared: HEADER_LEN, actual: HEADER_LEN + 1 }));
    }

    /// Every header field read from its own offset.
    #[test]
    fn header_fields_at_their_offsets() {
        let mut m = message(TYPE_PONG | 0x8000, 0, &[]);
        put16(&mut m, 8, 1);
        put16(&mut m, 10, 7001);
        put64(&mut m, 16, 11);
        put64(&mut m, 24, 12);
        put64(&mut m, 32, 13);
        m[40..80].copy_from_slice(&id(b's').0);
        m[80] = 0b0000_0110;
        m[2128..2168].copy_from_slice(&id(b'm').0);
        m[2168..2176].copy_from_slice(b"10.0.0.9");
        put16(&mut m, 2246, 7002);
        put16(&mut m, 2248, 17001);
        put16(&mut m, 2250, FLAG_SLAVE | FLAG_PFAIL);
        m[2252] = 1;
        m[2253] = MFLAG_PAUSED;
        m[2254] = 5;
        m[2255] = 6;
        let h = decode(&m).unwrap().header;
        assert_eq!((h.totlen, h.ver, h.port, h.raw_type, h.count), (HEADER_LEN as u32, 1, 7001, 0x8001, 0));
        assert_eq!(h.msg_type(), TYPE_PONG, "the light-header bit is not part of the type");
        assert_eq!((h.current_epoch, h.config_epoch, h.offset), (11, 12, 13));
        assert_eq!(h.sender, id(b's'));
        assert_eq!(h.myslots.ranges(), vec![(1, 2)]);
        assert_eq!(h.slaveof, Some(id(b'm')));
        assert_eq!(h.myip.as_deref(), Some("10.0.0.9"));
        assert_eq!(
            (h.pport, h.cport, h.flags, h.state, h.mflags),
            (7002, 17001, FLAG_SLAVE | FLAG_PFAIL, 1, [1, 5, 6])
        );
        assert!(h.is_replica() && !h.is_master() && !h.cluster_ok() && h.paused());
        let mut m = message(TYPE_PONG, 0, &[]);
        put16(&mut m, 2250, FLAG_MASTER);
        m[2253] = MFLAG_FORCEACK;
        let h = decode(&m).unwrap().header;
        assert!(h.is_master() && !h.is_replica() && h.cluster_ok() && !h.paused());
        assert_eq!((h.slaveof, h.myip), (None, None));
    }

    /// Gossip entries read from their offsets, for PING, PONG and MEET only.
    #[test]
    fn gossip_entries() {
        let mut e = vec![0u8; GOSSIP_LEN];
        e[0..40].copy_from_slice(&id(b'g').0);
        put32(&mut e, 40, 1000);
        put32(&mut e, 44, 2000);
        e[48..57].copy_from_slice(b"127.0.0.1");
        put16(&mut e, 94, 7005);
        put16(&mut e, 96, 17005);
        put16(&mut e, 98, FLAG_FAIL | FLAG_MASTER);
        put16(&mut e, 100, 7006);
        let mut two = e.clone();
        two.extend_from_slice(&e);
        two[GOSSIP_LEN] = b'h';
        for ty in [TYPE_PING, TYPE_PONG, TYPE_MEET] {
            let m = decode(&message(ty, 2, &two)).unwrap();
            assert_eq!(m.gossip.len(), 2);
            let g = &m.gossip[0];
            assert_eq!((g.nodename, g.ping_sent, g.pong_received), (id(b'g'), 1000, 2000));
            assert_eq!((g.ip.as_str(), g.port, g.cport, g.flags, g.pport), ("127.0.0.1", 7005, 17005, 9, 7006));
            assert_eq!(m.gossip[1].nodename.0[0], b'h');
        }
        // Other types (FAIL, UPDATE, ...) are read as a header only.
        let m = decode(&message(3, 2, &two)).unwrap();
        assert!(m.gossip.is_empty());
        assert_eq!(decode(&message(TYPE_PONG, 3, &two)), Err(CodecError::Truncated("gossip section")));
        // Without EXT_DATA, nothing may follow the gossip section.
        let mut m = message(TYPE_PONG, 1, &two);
        m[2253] = 0;
        assert_eq!(
            decode(&m),
            Err(CodecError::LengthMismatch { declared: HEADER_LEN + GOSSIP_LEN, actual: HEADER_LEN + 2 * GOSSIP_LEN })
        );
    }

    #[test]
    fn extensions_of_every_type() {
        let mut forgotten = id(b'f').0.to_vec();
        forgotten.extend_from_slice(&30u64.to_be_bytes());
        let exts = [
            extension(EXT_HOSTNAME, b"node-1.example\0"),
            extension(EXT_HUMAN_NODENAME, b"human"),
            extension(EXT_FORGOTTEN_NODE, &forgotten),
            extension(EXT_SHARDID, &id(b'd').0),
            extension(EXT_CLIENT_IPV4, b"10.1.2.3"),
            extension(EXT_CLIENT_IPV6, b"::1"),
            extension(99, b"raw"),
            extension(98, b""),
        ];
        let mut m = message(TYPE_PONG, 0, &exts.concat());
        put16(&mut m, 2214, exts.len() as u16);
        let got = decode(&m).unwrap().extensions;
        assert_eq!(
            got,
            vec![
                Extension::Hostname("node-1.example".into()),
                Extension::HumanNodename("human".into()),
                Extension::ForgottenNode { name: id(b'f'), ttl: 30 },
                Extension::ShardId(id(b'd')),
                Extension::ClientIpv4("10.1.2.3".into()),
                Extension::ClientIpv6("::1".into()),
                Extension::Unknown { ty: 99, payload: b"raw\0\0\0\0\0".to_vec() },
                Extension::Unknown { ty: 98, payload: Vec::new() },
            ]
        );
        // Only as many extensions as the header says are read; the rest must not be there.
        put16(&mut m, 2214, 1);
        assert!(matches!(decode(&m), Err(CodecError::LengthMismatch { .. })));
        // Without EXT_DATA the extensions are not read at all.
        let mut plain = message(TYPE_PONG, 0, &[]);
        put16(&mut plain, 2214, 2);
        plain[2253] = 0;
        assert!(decode(&plain).unwrap().extensions.is_empty());
        // Lengths below the 8-byte header or not a multiple of 8 are refused.
        for len in [0u32, 4, 12] {
            let mut e = extension(EXT_HOSTNAME, b"abcdefgh");
            put32(&mut e, 0, len);
            let mut m = message(TYPE_PONG, 0, &e);
            put16(&mut m, 2214, 1);
            assert_eq!(decode(&m), Err(CodecError::BadExtension("length not a multiple of 8")), "length {len}");
        }
        // An extension longer than the message is truncated.
        let mut e = extension(EXT_HOSTNAME, b"abcdefgh");
        put32(&mut e, 0, 24);
        let mut m = message(TYPE_PONG, 0, &e);
        put16(&mut m, 2214, 1);
        assert_eq!(decode(&m), Err(CodecError::Truncated("extension payload")));
    }
}
