//! The whole-keyspace commands of one database when the cluster holds several
//! (`keyspace.databases`, `keyspace.one_slot_databases`): KEYS, SCAN, RANDOMKEY, DBSIZE and
//! FLUSHDB see only the selected database's keys (by their stored-name prefix, or for a plain
//! database 0 every key without a reserved prefix), and MOVE between databases.
//!
//! COPY into another database whose stored name is in another slot: DUMP and RESTORE.
//!
//! DBSIZE and FLUSHDB walk the database with SCAN (a node's DBSIZE counts every database), so they
//! cost one pass over the cluster's keys; FLUSHDB unlinks what that pass finds, so keys written
//! during it may stay. MOVE is one script when both names share a slot (atomic), else DUMP,
//! RESTORE at the destination and DEL of the source (not atomic: a write to the key in between is
//! lost with the source).

use bytes::Bytes;
use rustc_hash::FxHashMap;

use super::{scan, whole, Trace};
use crate::backend::Cx;
use crate::command::Merge;
use crate::errors;
use crate::keyspace::replies::{own, strip, Shape};
use crate::keyspace::Databases;
use crate::resp::{aggregate_elements, as_bulk, as_int, encode_command, is_error, is_null, reply, Request};
use crate::slot;

use super::Router;

/// Keys asked of the nodes per SCAN call while DBSIZE, FLUSHDB or RANDOMKEY walk a database.
const PAGE: &[u8] = b"1000";
/// RANDOMKEY tries the nodes' own this many times before it looks for a key with SCAN.
const RANDOM_TRIES: usize = 16;

/// Which database a command runs in: its stored-name prefix (`None`: a plain database 0).
#[derive(Clone, Copy)]
pub struct Db<'a> {
    pub index: u32,
    pub prefix: Option<&'a [u8]>,
    pub all: &'a Databases,
}

/// Whether `name` is one of the commands this module answers when the cluster holds several
/// databases.
pub fn whole_keyspace(name: &str) -> bool {
    matches!(name, "keys" | "scan" | "randomkey" | "dbsize" | "flushdb" | "move" | "swapdb" | "copy")
}

/// Answers a whole-keyspace command (see [`whole_keyspace`]) in database `db`.
pub async fn run(p: &Router, name: &str, args: &[Bytes], db: Db<'_>, cx: Cx) -> Bytes {
    match name {
        "keys" => keys(p, args, db, cx).await,
        "scan" => scan_db(p, args, db, cx).await,
        "randomkey" => random_key(p, db, cx).await,
        "dbsize" => dbsize(p, db, cx).await,
        "flushdb" => flushdb(p, args, db, cx).await,
        "move" => move_key(p, args, db, cx).await,
        "copy" => copy(p, args, db, cx).await,
        _ => errors::swapdb(),
    }
}

/// The pattern as stored: the database's prefix before the client's.
fn stored_pattern(db: Db<'_>, pattern: &[u8]) -> Bytes {
    let mut v = db.prefix.unwrap_or_default().to_vec();
    v.extend_from_slice(pattern);
    Bytes::from(v)
}

/// KEYS, whose pattern the request's rewriting has already prefixed (`keyspace::rewrite`).
async fn keys(p: &Router, args: &[Bytes], db: Db<'_>, cx: Cx) -> Bytes {
    let pattern = args.get(1).map(|a| &a[..]).unwrap_or(b"*");
    let cmd = encode_command(&[&b"KEYS"[..], pattern]);
    strip(db.prefix, Shape::List, whole::all_masters(p, cmd, Merge::Concat, cx).await)
}

async fn scan_db(p: &Router, args: &[Bytes], db: Db<'_>, cx: Cx) -> Bytes {
    let mut out: Vec<Bytes> = Vec::with_capacity(args.len() + 2);
    let mut matched = false;
    let mut i = 0;
    while i < args.len() {
        out.push(args[i].clone());
        if i >= 2 && args[i].eq_ignore_ascii_case(b"match") && i + 1 < args.len() {
            out.push(stored_pattern(db, &args[i + 1]));
            matched = true;
            i += 1;
        }
        i += 1;
    }
    if !matched && db.prefix.is_some() {
        out.push(Bytes::from_static(b"MATCH"));
        out.push(stored_pattern(db, b"*"));
    }
    strip(db.prefix, Shape::Scan, scan::scan(p, Request::from_args(out), cx).await)
}

/// One page of a walk over the database's keys (stored names): the next cursor (`None` at the
/// end) and the keys; an error reply when a node failed.
async fn page(p: &Router, cursor: &Bytes, db: Db<'_>, cx: Cx) -> Result<(Option<Bytes>, Vec<Bytes>), Bytes> {
    let pattern = stored_pattern(db, b"*");
    let req = Request::from_args(vec![
        Bytes::from_static(b"SCAN"),
        cursor.clone(),
        Bytes::from_static(b"MATCH"),
        pattern,
        Bytes::from_static(b"COUNT"),
        Bytes::from_static(PAGE),
    ]);
    let r = scan::scan(p, req, Cx { proto: 2, ..cx }).await;
    if is_error(&r) {
        return Err(r);
    }
    let parts = aggregate_elements(&r).ok_or_else(errors::internal_routing)?;
    let next = parts.first().and_then(as_bulk).flatten().ok_or_else(errors::internal_routing)?;
    let found = parts.get(1).and_then(aggregate_elements).ok_or_else(errors::internal_routing)?;
    let mut keys = Vec::with_capacity(found.len());
    for k in found {
        if let Some(Some(k)) = as_bulk(&k) {
            if own(db.prefix, &k).is_some() {
                keys.push(k);
            }
        }
    }
    Ok(((&next[..] != b"0").then_some(next), keys))
}

async fn dbsize(p: &Router, db: Db<'_>, cx: Cx) -> Bytes {
    let mut cursor = Bytes::from_static(b"0");
    let mut n = 0i64;
    loop {
        match page(p, &cursor, db, cx).await {
            Ok((next, keys)) => {
                n += keys.len() as i64;
                match next {
                    Some(c) => cursor = c,
                    None => return reply::int(n),
                }
            }
            Err(e) => return e,
        }
    }
}

async fn flushdb(p: &Router, args: &[Bytes], db: Db<'_>, cx: Cx) -> Bytes {
    if args.len() > 2
        || args.get(1).is_some_and(|a| !a.eq_ignore_ascii_case(b"async") && !a.eq_ignore_ascii_case(b"sync"))
    {
        return errors::syntax();
    }
    let mut cursor = Bytes::from_static(b"0");
    loop {
        let (next, keys) = match page(p, &cursor, db, cx).await {
            Ok(found) => found,
            Err(e) => return e,
        };
        let mut by_slot: FxHashMap<u16, Vec<Bytes>> = FxHashMap::default();
        for k in keys {
            by_slot.entry(slot::slot(&k)).or_default().push(k);
        }
        for (s, mut keys) in by_slot {
            keys.insert(0, Bytes::from_static(b"UNLINK"));
            let r = super::send_to_slot(p, s, encode_command(&keys), false, cx, &Trace::default()).await;
            if is_error(&r) {
                return r;
            }
        }
        match next {
            Some(c) => cursor = c,
            None => return reply::ok(),
        }
    }
}

async fn random_key(p: &Router, db: Db<'_>, cx: Cx) -> Bytes {
    for _ in 0..RANDOM_TRIES {
        let r = whole::random_key(p, cx).await;
        if is_error(&r) || is_null(&r) {
            return r;
        }
        if matches!(as_bulk(&r), Some(Some(k)) if own(db.prefix, &k).is_some()) {
            return strip(db.prefix, Shape::One, r);
        }
    }
    // The database holds few of the cluster's keys: its first key found by a walk.
    let mut cursor = Bytes::from_static(b"0");
    loop {
        match page(p, &cursor, db, cx).await {
            Ok((_, keys)) if !keys.is_empty() => return strip(db.prefix, Shape::One, reply::bulk(&keys[0])),
            Ok((Some(next), _)) => cursor = next,
            Ok((None, _)) => return reply::null(cx.proto),
            Err(e) => return e,
        }
    }
}

/// COPY source destination [REPLACE], its destination already named in its database
/// (`keyspace::rewrite` turned `DB n` into the destination's prefix): sent whole when both names
/// share a slot; into another database across slots, DUMP and RESTORE (not atomic); within one
/// database across slots, `-CROSSSLOT` as always.
async fn copy(p: &Router, args: &[Bytes], db: Db<'_>, cx: Cx) -> Bytes {
    let (Some(src), Some(dst)) = (args.get(1), args.get(2)) else { return errors::wrong_arity("copy") };
    let replace = args.len() > 3;
    let (from_slot, to_slot) = (slot::slot(src), slot::slot(dst));
    let t = Trace::default();
    if from_slot == to_slot {
        return super::send_to_slot(p, from_slot, encode_command(args), false, cx, &t).await;
    }
    let same_db = match db.prefix {
        Some(pre) => dst.starts_with(pre),
        None => !crate::keyspace::reserved(dst),
    };
    if same_db {
        return errors::crossslot();
    }
    let restored = match dump_restore(p, src, dst, replace, cx).await {
        Ok(r) => r,
        Err(e) => return e,
    };
    reply::int(i64::from(restored))
}

/// DUMP and PTTL of `src`, RESTORE as `dst` (with REPLACE when asked): whether it was restored
/// (false: no source, or the destination exists and no REPLACE), or the error of a node.
async fn dump_restore(p: &Router, src: &[u8], dst: &[u8], replace: bool, cx: Cx) -> Result<bool, Bytes> {
    let t = Trace::default();
    let cx2 = Cx { proto: 2, ..cx };
    let (from_slot, to_slot) = (slot::slot(src), slot::slot(dst));
    let dump = super::send_to_slot(p, from_slot, encode_command(&[&b"DUMP"[..], src]), true, cx2, &t).await;
    let payload = match as_bulk(&dump) {
        Some(Some(v)) => v,
        Some(None) => return Ok(false),
        None => return Err(dump),
    };
    let pttl = super::send_to_slot(p, from_slot, encode_command(&[&b"PTTL"[..], src]), true, cx2, &t).await;
    let ttl = match as_int(&pttl) {
        Some(ms) if ms > 0 => ms,
        Some(-2) => return Ok(false),
        Some(_) => 0,
        None => return Err(pttl),
    };
    let ttl = ttl.to_string();
    let mut cmd: Vec<&[u8]> = vec![b"RESTORE", dst, ttl.as_bytes(), &payload];
    if replace {
        cmd.push(b"REPLACE");
    }
    let restored = super::send_to_slot(p, to_slot, encode_command(&cmd), false, cx2, &t).await;
    if is_error(&restored) {
        // BUSYKEY: the destination has the key; COPY and MOVE answer 0, as Redis does.
        return if restored.starts_with(b"-BUSYKEY") { Ok(false) } else { Err(restored) };
    }
    Ok(true)
}

/// MOVE's one-slot form: COPY (which refuses an existing destination) then DEL, in one script.
const MOVE_SCRIPT: &[u8] =
    b"if redis.call('copy', KEYS[1], KEYS[2]) == 1 then redis.call('del', KEYS[1]) return 1 end return 0";

async fn move_key(p: &Router, args: &[Bytes], db: Db<'_>, cx: Cx) -> Bytes {
    let (Some(src), Some(to)) = (args.get(1), args.get(2)) else { return errors::wrong_arity("move") };
    let to = match db.all.index(to) {
        Ok(n) => n,
        Err(e) => return e,
    };
    if to == db.index {
        return errors::same_object();
    }
    let name = match db.prefix {
        Some(pre) => src.strip_prefix(pre).unwrap_or(src),
        None => &src[..],
    };
    let mut dst = db.all.prefix(to).map(|p| p.to_vec()).unwrap_or_default();
    dst.extend_from_slice(name);
    let (from_slot, to_slot) = (slot::slot(src), slot::slot(&dst));
    let t = Trace::default();
    if from_slot == to_slot {
        let cmd = encode_command(&[&b"EVAL"[..], MOVE_SCRIPT, b"2", src, &dst]);
        return super::send_to_slot(p, from_slot, cmd, false, cx, &t).await;
    }
    match dump_restore(p, src, &dst, false, cx).await {
        Ok(true) => {}
        Ok(false) => return reply::int(0),
        Err(e) => return e,
    }
    let cx2 = Cx { proto: 2, ..cx };
    let del = super::send_to_slot(p, from_slot, encode_command(&[&b"DEL"[..], src]), false, cx2, &t).await;
    if is_error(&del) {
        return del;
    }
    reply::int(1)
}
