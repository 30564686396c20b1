//! Keyspace notification channels per database. The nodes publish every event as database 0's,
//! with the stored key name: `__keyspace@0__:__db1:k` and `__keyevent@0__:set` carrying
//! `__db1:k`. Clients subscribe, as with Redis, to `__keyspace@1__:k` and `__keyevent@1__:set`
//! (from any database: channels are not per database) and get those names back, the key without
//! its prefix. An event of a key that is in no database (a name reserved for another) is dropped.

use bytes::{Bytes, BytesMut};

use super::Databases;

const SPACE: &[u8] = b"__keyspace@";
const EVENT: &[u8] = b"__keyevent@";

/// Splits `__keyspace@<n>__:<rest>` (or keyevent) into (which, n, rest).
fn parse(name: &[u8]) -> Option<(&'static [u8], u32, &[u8])> {
    let (which, rest) =
        if let Some(r) = name.strip_prefix(SPACE) { (SPACE, r) } else { (EVENT, name.strip_prefix(EVENT)?) };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let n: u32 = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    let rest = rest[digits..].strip_prefix(b"__:")?;
    Some((which, n, rest))
}

fn join(parts: &[&[u8]]) -> Bytes {
    let mut b = BytesMut::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        b.extend_from_slice(p);
    }
    b.freeze()
}

/// The name to subscribe on the nodes for a client's channel or pattern (a pattern is mapped when
/// it starts with the literal `__keyspace@<n>__:` or `__keyevent@<n>__:`); `None`: the same name.
pub fn to_node(dbs: &Databases, name: &[u8]) -> Option<Bytes> {
    let (which, n, rest) = parse(name)?;
    if n >= dbs.count() {
        return None;
    }
    if which == SPACE {
        let prefix = dbs.prefix(n)?;
        Some(join(&[b"__keyspace@0__:", &prefix, rest]))
    } else if n == 0 {
        None
    } else {
        Some(join(&[b"__keyevent@0__:", rest]))
    }
}

/// The database of a stored key name and the length of its prefix; `None` when the name is in
/// no database (a reserved prefix of a database that does not exist or has the other form, or an
/// unprefixed name while database 0 is one-slot).
fn db_of(dbs: &Databases, stored: &[u8]) -> Option<(u32, usize)> {
    if super::reserved(stored) {
        let digits_at = if stored[0] == b'{' { 5 } else { 4 };
        let digits = stored[digits_at..].iter().take_while(|b| b.is_ascii_digit()).count();
        let n: u32 = std::str::from_utf8(&stored[digits_at..digits_at + digits]).ok()?.parse().ok()?;
        let prefix = dbs.prefix(n).filter(|_| n < dbs.count())?;
        return stored.starts_with(&prefix).then_some((n, prefix.len()));
    }
    dbs.prefix(0).is_none().then_some((0, 0))
}

/// A node's notification as the client sees it: (channel, payload), or `None` to drop it. Other
/// channels come back unchanged.
pub fn from_node(dbs: &Databases, channel: &Bytes, payload: &Bytes) -> Option<(Bytes, Bytes)> {
    let Some((which, 0, rest)) = parse(channel) else { return Some((channel.clone(), payload.clone())) };
    if which == SPACE {
        let (n, plen) = db_of(dbs, rest)?;
        let chan = join(&[b"__keyspace@", n.to_string().as_bytes(), b"__:", &rest[plen..]]);
        Some((chan, payload.clone()))
    } else {
        let (n, plen) = db_of(dbs, payload)?;
        let chan = join(&[b"__keyevent@", n.to_string().as_bytes(), b"__:", rest]);
        Some((chan, payload.slice(plen..)))
    }
}

/// Whether a message translated to `channel` belongs to the client's `pattern` as far as the
/// database goes: a pattern naming a database gets only that database's events.
pub fn same_database(pattern: &[u8], channel: &[u8]) -> bool {
    match (parse(pattern), parse(channel)) {
        (Some((_, a, _)), Some((_, b, _))) => a == b,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn channels_map_both_ways() {
        let d = Databases::new(3, vec![2]);
        assert_eq!(to_node(&d, b"__keyspace@1__:k").unwrap(), b("__keyspace@0__:__db1:k"));
        assert_eq!(to_node(&d, b"__keyspace@2__:*").unwrap(), b("__keyspace@0__:{__db2}:*"));
        assert_eq!(to_node(&d, b"__keyspace@0__:k"), None);
        assert_eq!(to_node(&d, b"__keyevent@1__:set").unwrap(), b("__keyevent@0__:set"));
        assert_eq!(to_node(&d, b"__keyevent@0__:set"), None);
        assert_eq!(to_node(&d, b"__keyspace@3__:k"), None);
        assert_eq!(to_node(&d, b"news"), None);
        let m = |c: &str, p: &str| from_node(&d, &b(c), &b(p));
        assert_eq!(m("__keyspace@0__:__db1:k", "set"), Some((b("__keyspace@1__:k"), b("set"))));
        assert_eq!(m("__keyspace@0__:{__db2}:k", "del"), Some((b("__keyspace@2__:k"), b("del"))));
        assert_eq!(m("__keyspace@0__:k", "set"), Some((b("__keyspace@0__:k"), b("set"))));
        assert_eq!(m("__keyspace@0__:__db2:k", "set"), None);
        assert_eq!(m("__keyevent@0__:set", "__db1:k"), Some((b("__keyevent@1__:set"), b("k"))));
        assert_eq!(m("__keyevent@0__:set", "k"), Some((b("__keyevent@0__:set"), b("k"))));
        assert_eq!(m("news", "__db1:k"), Some((b("news"), b("__db1:k"))));
        let one = Databases::new(1, vec![0]);
        assert_eq!(from_node(&one, &b("__keyspace@0__:k"), &b("set")), None);
        assert_eq!(from_node(&one, &b("__keyspace@0__:{__db0}:k"), &b("set")), Some((b("__keyspace@0__:k"), b("set"))));
        assert!(same_database(b"__keyevent@1__:*", b"__keyevent@1__:set"));
        assert!(!same_database(b"__keyevent@1__:*", b"__keyevent@0__:set"));
        assert!(same_database(b"__key*", b"__keyevent@0__:set"));
    }
}
