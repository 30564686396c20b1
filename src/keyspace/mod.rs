//! Databases on one cluster: `SELECT n` as a namespace of key names. Database 0 is stored
//! unchanged; every other database, and every one-slot database, stores its keys under a reserved
//! prefix ([`Databases::prefix`]) that the client never sees: requests get it added to each key
//! ([`rewrite`]), replies that name keys get it taken off ([`replies`]).
//!
//! The prefixes (reserved: database 0 neither shows nor counts keys that start with them):
//! - database n > 0: `__db<n>:`, no braces, so that the user's own hash tag stays the first
//!   `{...}` of the stored name and `__db1:{user}:x` hashes like `{user}:x`;
//! - a one-slot database n (0 included): `{__db<n>}:`, whose tag puts every key of the database
//!   in one slot, so transactions and scripts over any of its keys run as on one server.

pub mod events;
pub mod replies;

use bytes::{Bytes, BytesMut};

use crate::command::CommandSpec;
use crate::errors;
use crate::resp::{parse_int, Request};

/// The databases the proxy offers (`keyspace.databases`, `keyspace.one_slot_databases`).
#[derive(Clone, Debug)]
pub struct Databases {
    count: u32,
    one_slot: Vec<u32>,
}

impl Default for Databases {
    fn default() -> Self {
        Databases { count: 1, one_slot: Vec::new() }
    }
}

impl Databases {
    pub fn new(count: u32, one_slot: Vec<u32>) -> Databases {
        Databases { count: count.max(1), one_slot }
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    /// Whether any database besides a plain database 0 exists: then database 0's whole-keyspace
    /// commands (KEYS, SCAN, DBSIZE, RANDOMKEY, FLUSHDB) must leave the others' keys out.
    pub fn several(&self) -> bool {
        self.count > 1 || !self.one_slot.is_empty()
    }

    pub fn one_slot(&self, db: u32) -> bool {
        self.one_slot.contains(&db)
    }

    /// The stored-name prefix of database `db`; `None` for a plain database 0.
    pub fn prefix(&self, db: u32) -> Option<Bytes> {
        if self.one_slot(db) {
            Some(Bytes::from(format!("{{__db{db}}}:")))
        } else if db == 0 {
            None
        } else {
            Some(Bytes::from(format!("__db{db}:")))
        }
    }

    /// The database a SELECT (or MOVE, COPY ... DB) argument names, or the error Redis answers.
    pub fn index(&self, arg: &[u8]) -> Result<u32, Bytes> {
        match parse_int(arg) {
            Some(n) if n >= 0 && n < self.count as i64 => Ok(n as u32),
            Some(_) => Err(errors::db_out_of_range()),
            None => Err(errors::not_an_integer()),
        }
    }
}

/// Whether a stored key belongs to a database other than a plain database 0 (`__db<n>:` or
/// `{__db<n>}:`).
pub fn reserved(key: &[u8]) -> bool {
    let (rest, end): (&[u8], &[u8]) = match key.strip_prefix(b"{__db") {
        Some(r) => (r, b"}:"),
        None => match key.strip_prefix(b"__db") {
            Some(r) => (r, b":"),
            None => return false,
        },
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    digits > 0 && rest[digits..].starts_with(end)
}

/// Commands whose "keys" in the table are shard channels, which are not namespaced.
fn channels_not_keys(name: &str) -> bool {
    matches!(name, "spublish" | "ssubscribe" | "sunsubscribe")
}

fn prefixed(prefix: &[u8], key: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(prefix.len() + key.len());
    b.extend_from_slice(prefix);
    b.extend_from_slice(key);
    b.freeze()
}

/// The request with every key it names stored under `prefix` (the selected database's);
/// arguments that do not say where their keys are go unchanged (the node answers the error).
/// COPY's `DB n` names the destination's database: its key gets that database's prefix and the
/// option is dropped. SORT's BY and GET patterns name keys too.
pub fn rewrite(spec: &CommandSpec, req: Request, prefix: &[u8], dbs: &Databases) -> Result<Request, Bytes> {
    let name = spec.name.as_str();
    if channels_not_keys(name) {
        return Ok(req);
    }
    if name == "copy" {
        return copy(req, prefix, dbs);
    }
    if name == "keys" && req.args.len() == 2 {
        // KEYS's pattern names keys too (also queued in MULTI, where the proxy cannot filter).
        return Ok(Request::from_args(vec![req.args[0].clone(), prefixed(prefix, &req.args[1])]));
    }
    let Some(keys) = spec.key_positions(&req.args) else { return Ok(req) };
    if keys.is_empty() {
        return Ok(req);
    }
    let mut args = req.args;
    for i in keys {
        if let Some(a) = args.get_mut(i) {
            *a = prefixed(prefix, a);
        }
    }
    if name == "sort" || name == "sort_ro" {
        sort_patterns(&mut args, prefix);
    }
    Ok(Request::from_args(args))
}

/// SORT key [BY pattern] [GET pattern ...]: the patterns are key names (`nosort` and `#` are not).
fn sort_patterns(args: &mut [Bytes], prefix: &[u8]) {
    let mut i = 2;
    while i + 1 < args.len() {
        let by = args[i].eq_ignore_ascii_case(b"by");
        let get = args[i].eq_ignore_ascii_case(b"get");
        if by || get {
            let p = &args[i + 1];
            let special = if by { p.eq_ignore_ascii_case(b"nosort") } else { &p[..] == b"#" };
            if !special {
                args[i + 1] = prefixed(prefix, p);
            }
            i += 2;
        } else if args[i].eq_ignore_ascii_case(b"limit") {
            i += 3;
        } else {
            i += 1;
        }
    }
}

/// COPY source destination [DB n] [REPLACE], with Redis's checks of the options first.
fn copy(req: Request, prefix: &[u8], dbs: &Databases) -> Result<Request, Bytes> {
    let args = req.args;
    let mut dest_prefix = Some(Bytes::copy_from_slice(prefix));
    let mut out: Vec<Bytes> = args.iter().take(3).cloned().collect();
    let mut i = 3;
    while let Some(a) = args.get(i) {
        if a.eq_ignore_ascii_case(b"replace") {
            out.push(a.clone());
            i += 1;
        } else if a.eq_ignore_ascii_case(b"db") && i + 1 < args.len() {
            dest_prefix = dbs.prefix(dbs.index(&args[i + 1])?);
            i += 2;
        } else {
            return Err(errors::syntax());
        }
    }
    if let Some(src) = out.get_mut(1) {
        *src = prefixed(prefix, src);
    }
    if let Some(dst) = out.get_mut(2) {
        *dst = prefixed(dest_prefix.as_deref().unwrap_or_default(), dst);
    }
    Ok(Request::from_args(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{CommandTable, Lookup};

    fn rewritten(args: &[&str]) -> Result<Vec<String>, String> {
        let t = CommandTable::builtin();
        let req = Request::from_args(args.iter().map(|a| Bytes::copy_from_slice(a.as_bytes())).collect());
        let Lookup::Found(spec) = t.lookup(&req.args) else { panic!("{args:?} not in the table") };
        let d = Databases::new(3, vec![2]);
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match rewrite(spec, req, b"__db1:", &d) {
            Ok(r) => Ok(r.args.iter().map(|a| text(a)).collect()),
            Err(e) => Err(text(&e)),
        }
    }

    #[test]
    fn keys_get_the_prefix_and_nothing_else_does() {
        let ok = |v: &[&str]| Ok(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(rewritten(&["GET", "k"]), ok(&["GET", "__db1:k"]));
        assert_eq!(rewritten(&["EVAL", "s", "2", "a", "b", "x"]), ok(&["EVAL", "s", "2", "__db1:a", "__db1:b", "x"]));
        assert_eq!(rewritten(&["SPUBLISH", "ch", "m"]), ok(&["SPUBLISH", "ch", "m"]));
        assert_eq!(rewritten(&["PUBLISH", "ch", "m"]), ok(&["PUBLISH", "ch", "m"]));
        assert_eq!(rewritten(&["KEYS", "a*"]), ok(&["KEYS", "__db1:a*"]));
        assert_eq!(
            rewritten(&["XREAD", "COUNT", "1", "STREAMS", "s", "t", "0", "0"]),
            ok(&["XREAD", "COUNT", "1", "STREAMS", "__db1:s", "__db1:t", "0", "0"])
        );
        assert_eq!(
            rewritten(&["SORT", "l", "BY", "w_*", "LIMIT", "0", "5", "GET", "#", "GET", "o_*", "STORE", "d"]),
            ok(&[
                "SORT",
                "__db1:l",
                "BY",
                "__db1:w_*",
                "LIMIT",
                "0",
                "5",
                "GET",
                "#",
                "GET",
                "__db1:o_*",
                "STORE",
                "__db1:d"
            ])
        );
        assert_eq!(
            rewritten(&["COPY", "a", "b", "DB", "2", "REPLACE"]),
            ok(&["COPY", "__db1:a", "{__db2}:b", "REPLACE"])
        );
        assert_eq!(rewritten(&["COPY", "a", "b", "DB", "0"]), ok(&["COPY", "__db1:a", "b"]));
        assert_eq!(rewritten(&["COPY", "a", "b", "DB", "3"]), Err("-ERR DB index is out of range\r\n".into()));
        assert_eq!(rewritten(&["COPY", "a", "b", "NOPE"]), Err("-ERR syntax error\r\n".into()));
    }

    #[test]
    fn prefixes_keep_or_replace_the_hash_tag() {
        let d = Databases::new(4, vec![0, 2]);
        assert_eq!(d.prefix(0).as_deref(), Some(&b"{__db0}:"[..]));
        assert_eq!(d.prefix(1).as_deref(), Some(&b"__db1:"[..]));
        assert_eq!(d.prefix(2).as_deref(), Some(&b"{__db2}:"[..]));
        assert_eq!(Databases::new(2, vec![]).prefix(0), None);
        // The user's tag survives a plain prefix; a one-slot prefix's own tag wins.
        assert_eq!(crate::slot::slot(b"__db1:{user}:x"), crate::slot::slot(b"{user}"));
        assert_eq!(crate::slot::slot(b"{__db2}:{user}:x"), crate::slot::slot(b"{__db2}:other"));
        assert!(reserved(b"__db12:k") && reserved(b"{__db0}:k") && reserved(b"__db1:"));
        assert!(!reserved(b"__db:k") && !reserved(b"__dbx:k") && !reserved(b"{__db1:k") && !reserved(b"db1:k"));
        assert_eq!(d.index(b"3"), Ok(3));
        assert_eq!(&d.index(b"4").unwrap_err()[..], b"-ERR DB index is out of range\r\n");
        assert_eq!(&d.index(b"-1").unwrap_err()[..], b"-ERR DB index is out of range\r\n");
    }
}
