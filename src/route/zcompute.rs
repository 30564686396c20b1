//! Sorted-set operations over keys in several slots, computed by the proxy (`keyspace.
//! cross_slot_reads = "compute"`): ZUNION, ZINTER, ZDIFF (WEIGHTS, AGGREGATE, WITHSCORES),
//! ZINTERCARD and ZUNIONSTORE, ZINTERSTORE, ZDIFFSTORE. Each key is read from its own master in
//! one read-only script (a sorted set with its scores, or a plain set, whose members score 1 as in
//! Redis), the scores are combined here in Redis's order of work (t_zset.c: inputs from the
//! smallest, NaN sums taken as 0), and the result is sorted by score then member, as a sorted set
//! is. Scores are printed as the nodes of the tested version print them (`%.17g`). Not one
//! snapshot, not atomic across keys, and bounded by `keyspace.max_compute_bytes`, as for sets.

use std::cmp::Ordering;
use std::collections::HashMap;

use bytes::{BufMut, Bytes, BytesMut};

use super::compute::{card, read_within};
use super::{send_to_slot, Router, Trace};
use crate::backend::Cx;
use crate::errors;
use crate::resp::{self, reply};
use crate::slot;

/// Reads one input: `{1, zrange withscores}` for a sorted set, `{2, smembers}` for a set, `{0,
/// {}}` for no key, Redis's WRONGTYPE for anything else.
const READ: &str = "local t = redis.call('type', KEYS[1])['ok'] \
    if t == 'zset' then return {1, redis.call('zrange', KEYS[1], 0, -1, 'withscores')} \
    elseif t == 'set' then return {2, redis.call('smembers', KEYS[1])} \
    elseif t == 'none' then return {0, {}} end \
    return redis.error_reply('WRONGTYPE Operation against a key holding the wrong kind of value')";

/// Writes a *STORE result: the destination replaced by the score/member pairs, in chunks (Lua's
/// `unpack` has a bounded stack; the chunk is even so that no pair is split).
const STORE: &str = "redis.call('del', KEYS[1]) local n = 0 \
    for i = 1, #ARGV, 4000 do n = n + redis.call('zadd', KEYS[1], unpack(ARGV, i, math.min(i + 3999, #ARGV))) end \
    return n";

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Union,
    Inter,
    Diff,
}

#[derive(Clone, Copy)]
enum Aggregate {
    Sum,
    Min,
    Max,
}

/// What the command asked for, once its arguments are read.
struct Ask<'a> {
    op: Op,
    dest: Option<&'a Bytes>,
    keys: &'a [Bytes],
    weights: Vec<f64>,
    aggregate: Aggregate,
    withscores: bool,
    /// ZINTERCARD: the count only, up to this many (0: no limit).
    card: Option<usize>,
}

/// Whether `name` is a sorted-set operation this module computes.
pub(super) fn computes(name: &str) -> bool {
    matches!(name, "zunion" | "zinter" | "zdiff" | "zintercard" | "zunionstore" | "zinterstore" | "zdiffstore")
}

pub(super) async fn zset_op(p: &Router, name: &str, args: &[Bytes], limit: usize, cx: Cx, trace: &Trace) -> Bytes {
    let Some((ask, bad_option)) = parse(name, args) else { return errors::syntax() };
    let reads = ask.keys.iter().map(|k| {
        let cmd = resp::encode_command(&[b"EVAL_RO".as_ref(), READ.as_bytes(), b"1", k]);
        send_to_slot(p, slot::slot(k), cmd, true, cx, trace)
    });
    let replies = futures_util::future::join_all(reads).await;
    // Redis looks the keys up (WRONGTYPE) before it reads the options after them.
    let inputs = match read_within(name, &replies, limit, read_input, |(m, _)| m.len() + 8) {
        Ok(inputs) => inputs,
        Err(e) => return e,
    };
    if let Some(e) = bad_option {
        return e;
    }
    let result = combine(&ask, inputs);
    if let Some(lim) = ask.card {
        return card(result.len(), lim);
    }
    match ask.dest {
        None => encode(&result, ask.withscores, cx.proto),
        Some(dest) => {
            let scores: Vec<String> = result.iter().map(|(_, s)| g17(*s)).collect();
            let mut cmd: Vec<&[u8]> = vec![b"EVAL", STORE.as_bytes(), b"1", dest];
            for ((m, _), s) in result.iter().zip(&scores) {
                cmd.push(s.as_bytes());
                cmd.push(m);
            }
            send_to_slot(p, slot::slot(dest), resp::encode_command(&cmd), false, cx, trace).await
        }
    }
}

/// The request's parts, and the error its options earn (answered after the key lookups, as
/// Redis does). `None`: the key positions themselves do not parse (the table's key rule
/// already checked them, so only a malformed request gets here).
fn parse<'a>(name: &str, args: &'a [Bytes]) -> Option<(Ask<'a>, Option<Bytes>)> {
    let (op, dest, at) = match name {
        "zunion" => (Op::Union, None, 1),
        "zinter" | "zintercard" => (Op::Inter, None, 1),
        "zdiff" => (Op::Diff, None, 1),
        "zunionstore" => (Op::Union, args.get(1), 2),
        "zinterstore" => (Op::Inter, args.get(1), 2),
        _ => (Op::Diff, args.get(1), 2),
    };
    let n: usize = std::str::from_utf8(args.get(at)?).ok()?.parse().ok()?;
    let keys = args.get(at + 1..at + 1 + n)?;
    let card_only = name == "zintercard";
    let mut ask = Ask {
        op,
        dest,
        keys,
        weights: vec![1.0; n],
        aggregate: Aggregate::Sum,
        withscores: false,
        card: card_only.then_some(0),
    };
    let mut rest = &args[at + 1 + n..];
    let is = |b: &Bytes, w: &str| b.eq_ignore_ascii_case(w.as_bytes());
    while let Some(opt) = rest.first() {
        let weighted = op != Op::Diff && !card_only;
        if weighted && rest.len() > n && is(opt, "weights") {
            for (w, v) in ask.weights.iter_mut().zip(&rest[1..=n]) {
                match std::str::from_utf8(v).ok().and_then(parse_double) {
                    Some(x) => *w = x,
                    None => return Some((ask, Some(errors::weight_not_float()))),
                }
            }
            rest = &rest[n + 1..];
        } else if weighted && rest.len() >= 2 && is(opt, "aggregate") {
            ask.aggregate = match &rest[1] {
                a if is(a, "sum") => Aggregate::Sum,
                a if is(a, "min") => Aggregate::Min,
                a if is(a, "max") => Aggregate::Max,
                _ => return Some((ask, Some(errors::syntax()))),
            };
            rest = &rest[2..];
        } else if dest.is_none() && !card_only && is(opt, "withscores") {
            ask.withscores = true;
            rest = &rest[1..];
        } else if card_only && rest.len() >= 2 && is(opt, "limit") {
            match std::str::from_utf8(&rest[1]).ok().and_then(|v| v.parse::<i64>().ok()) {
                Some(l) if l >= 0 => ask.card = Some(l as usize),
                Some(_) => return Some((ask, Some(errors::limit_negative()))),
                None => return Some((ask, Some(errors::not_an_integer()))),
            }
            rest = &rest[2..];
        } else {
            return Some((ask, Some(errors::syntax())));
        }
    }
    Some((ask, None))
}

/// A float as Redis reads one (`inf`, `-inf`, no NaN).
fn parse_double(s: &str) -> Option<f64> {
    let x: f64 = s.parse().ok()?;
    (!x.is_nan() && !s.is_empty() && !s.starts_with(char::is_whitespace)).then_some(x)
}

/// One input's members and scores from the READ script's reply.
fn read_input(r: &Bytes) -> Vec<(Bytes, f64)> {
    let parts = resp::aggregate_elements(r).unwrap_or_default();
    let kind = parts.first().and_then(|k| resp::as_int(k)).unwrap_or(0);
    let items: Vec<Bytes> = parts
        .get(1)
        .and_then(resp::aggregate_elements)
        .unwrap_or_default()
        .iter()
        .filter_map(|m| resp::as_bulk(m).flatten())
        .collect();
    match kind {
        1 => items
            .chunks_exact(2)
            .map(|p| (p[0].clone(), std::str::from_utf8(&p[1]).ok().and_then(|s| s.parse().ok()).unwrap_or(0.0)))
            .collect(),
        2 => items.into_iter().map(|m| (m, 1.0)).collect(),
        _ => Vec::new(),
    }
}

/// The result, sorted as a sorted set is (score, then member bytes), worked out as t_zset.c
/// does: union and intersection take the inputs from the smallest, so that sums of the same
/// floats are added in the same order.
fn combine(ask: &Ask<'_>, inputs: Vec<Vec<(Bytes, f64)>>) -> Vec<(Bytes, f64)> {
    let mut srcs: Vec<(Vec<(Bytes, f64)>, f64)> = inputs.into_iter().zip(ask.weights.iter().copied()).collect();
    if ask.op != Op::Diff {
        srcs.sort_by_key(|(s, _)| s.len());
    }
    let weighted = |score: f64, w: f64| {
        let v = score * w;
        if v.is_nan() {
            0.0
        } else {
            v
        }
    };
    let mut out: Vec<(Bytes, f64)> = match ask.op {
        Op::Union => {
            let mut acc: HashMap<Bytes, f64> = HashMap::new();
            for (set, w) in &srcs {
                for (m, s) in set {
                    let v = weighted(*s, *w);
                    acc.entry(m.clone()).and_modify(|t| aggregate(t, v, ask.aggregate)).or_insert(v);
                }
            }
            acc.into_iter().collect()
        }
        Op::Inter => {
            let Some(((first, w0), rest)) = srcs.split_first() else { return Vec::new() };
            let others: Vec<(HashMap<&Bytes, f64>, f64)> =
                rest.iter().map(|(s, w)| (s.iter().map(|(m, v)| (m, *v)).collect(), *w)).collect();
            first
                .iter()
                .filter_map(|(m, s)| {
                    let mut t = weighted(*s, *w0);
                    for (o, w) in &others {
                        // Only the first input's product is cleared of NaN (t_zset.c); a later
                        // NaN reaches the aggregate, where a sum makes it 0 and MIN/MAX skip it.
                        aggregate(&mut t, *o.get(m)? * *w, ask.aggregate);
                    }
                    Some((m.clone(), t))
                })
                .collect()
        }
        Op::Diff => {
            let Some(((first, _), rest)) = srcs.split_first() else { return Vec::new() };
            let others: std::collections::HashSet<&Bytes> =
                rest.iter().flat_map(|(s, _)| s.iter().map(|(m, _)| m)).collect();
            first.iter().filter(|(m, _)| !others.contains(m)).cloned().collect()
        }
    };
    out.sort_by(|(ma, a), (mb, b)| a.partial_cmp(b).unwrap_or(Ordering::Equal).then_with(|| ma.cmp(mb)));
    out
}

fn aggregate(t: &mut f64, v: f64, how: Aggregate) {
    match how {
        Aggregate::Sum => {
            *t += v;
            // +inf plus -inf: Redis keeps 0 rather than NaN.
            if t.is_nan() {
                *t = 0.0;
            }
        }
        Aggregate::Min => *t = t.min(v),
        Aggregate::Max => *t = t.max(v),
    }
}

/// The reply: members, or members with scores (RESP2 a flat list of strings, RESP3 pairs with
/// doubles), as ZRANGE's.
fn encode(result: &[(Bytes, f64)], withscores: bool, proto: u8) -> Bytes {
    let mut out = BytesMut::new();
    let pairs = withscores && proto >= 3;
    let n = if withscores && !pairs { result.len() * 2 } else { result.len() };
    out.put_slice(format!("*{n}\r\n").as_bytes());
    for (m, s) in result {
        if pairs {
            out.put_slice(b"*2\r\n");
        }
        out.put_slice(&reply::bulk(m));
        if withscores {
            let g = g17(*s);
            if pairs {
                out.put_slice(format!(",{g}\r\n").as_bytes());
            } else {
                out.put_slice(&reply::bulk(g.as_bytes()));
            }
        }
    }
    out.freeze()
}

/// A double as C's `%.17g` prints it (Redis 7.0's replies and the text ZADD reads back
/// exactly): 17 significant digits, trailing zeros dropped, exponent form outside 1e-4..1e17.
fn g17(d: f64) -> String {
    if d.is_infinite() {
        return if d > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let sci = format!("{d:.16e}");
    let Some((mantissa, exp)) = sci.split_once('e') else { return sci };
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if (-4..17).contains(&exp) {
        let decimals = (16 - exp).max(0) as usize;
        trim(&format!("{d:.decimals$}"))
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exp.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_print_as_percent_17g() {
        for (d, want) in [
            (1.1, "1.1000000000000001"),
            (0.1, "0.10000000000000001"),
            (3.0, "3"),
            (2.5, "2.5"),
            (-0.5, "-0.5"),
            (1e16, "10000000000000000"),
            (1e17, "1e+17"),
            (1e21, "1e+21"),
            (1e-5, "1.0000000000000001e-05"),
            (0.0001, "0.0001"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (0.0, "0"),
        ] {
            assert_eq!(g17(d), want, "{d}");
        }
    }

    fn args(s: &str) -> Vec<Bytes> {
        s.split(' ').map(|w| Bytes::copy_from_slice(w.as_bytes())).collect()
    }

    #[test]
    fn options_parse_as_redis_reads_them() {
        let a = args("zunion 2 a b WEIGHTS 2 0.5 AGGREGATE max WITHSCORES");
        let (ask, bad) = parse("zunion", &a).unwrap();
        assert!(bad.is_none());
        assert_eq!(ask.weights, [2.0, 0.5]);
        assert!(ask.withscores && matches!(ask.aggregate, Aggregate::Max));
        assert!(parse("zdiff", &args("zdiff 2 a b WEIGHTS 1 2")).unwrap().1.is_some());
        assert!(parse("zunionstore", &args("zunionstore d 2 a b WITHSCORES")).unwrap().1.is_some());
        assert!(parse("zunion", &args("zunion 2 a b WEIGHTS 1 x")).unwrap().1.is_some());
        assert!(parse("zunion", &args("zunion 2 a b WEIGHTS 1")).unwrap().1.is_some());
        assert_eq!(parse("zintercard", &args("zintercard 2 a b LIMIT 3")).unwrap().0.card, Some(3));
        assert!(parse("zintercard", &args("zintercard 2 a b LIMIT -1")).unwrap().1.is_some());
    }

    #[test]
    fn sums_of_infinities_are_zero_and_order_is_score_then_member() {
        let a = args("zunion 2 a b");
        let ask = parse("zunion", &a).unwrap().0;
        let b = |s: &str| Bytes::copy_from_slice(s.as_bytes());
        let r = combine(
            &ask,
            vec![vec![(b("x"), f64::INFINITY), (b("b"), 1.0)], vec![(b("x"), f64::NEG_INFINITY), (b("a"), 1.0)]],
        );
        assert_eq!(r, vec![(b("x"), 0.0), (b("a"), 1.0), (b("b"), 1.0)]);
    }
}
