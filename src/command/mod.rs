//! The command table: for every command, its arity, flags, where its keys are, and how the proxy
//! routes it (its routing class). Built once at start-up from a master's `COMMAND` reply, with a
//! built-in fallback generated from redis-server 7.0.15; key extraction never asks the backend.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use redis_protocol::resp2::types::{OwnedFrame, Resp2Frame};
use rustc_hash::FxHashMap;

use crate::resp::parse_int;

/// How a command is routed. One sentence each, as a routing spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// All keys must hash to one slot; sent to that slot's master (keyless use goes to any master).
    Keyed,
    /// MGET: split by slot, values merged back in request order.
    MGet,
    /// MSET: split by slot, `+OK` only when every part said OK.
    MSet,
    /// DEL/UNLINK/EXISTS/TOUCH: split by slot, integer replies summed.
    SumKeys,
    /// Sent to every master; replies merged as described by the [`Merge`].
    AllMasters(Merge),
    /// Keyless command any master can answer alone.
    AnyMaster,
    /// RANDOMKEY: asks masters in random order until one has a key.
    RandomKey,
    /// SCAN: one cursor walking every master in turn.
    Scan,
    /// INFO: built from the proxy's own state and the masters' sections.
    Info,
    /// Answered by the proxy itself (PING, ECHO, SELECT, CLIENT, AUTH, HELLO, QUIT, CLUSTER...).
    Local,
    /// Refused with the given reason.
    Refused(&'static str),
    /// Changes or depends on the client connection's state (MULTI/EXEC/WATCH, subscriptions,
    /// WAIT): run by the client task in order, after everything before it was answered.
    Stateful,
    /// PUBSUB CHANNELS/NUMSUB/NUMPAT...: asked of every node and merged.
    PubSubInfo,
}

/// How the replies of an all-masters command become one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// Integers summed (DBSIZE).
    Sum,
    /// Arrays concatenated (KEYS).
    Concat,
    /// `+OK` when all said OK, else the first error (FLUSHALL).
    AllOk,
    /// The first reply, provided none was an error (SCRIPT LOAD, FUNCTION LOAD).
    First,
    /// Element-wise AND of integer arrays (SCRIPT EXISTS).
    And,
}

/// What the router does for a command besides its class, resolved once from the name so that a
/// request never compares names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Special {
    None,
    /// EVAL, EVAL_RO, SCRIPT LOAD: remember the script at this argument (for NOSCRIPT reloads).
    RememberScript(usize),
    /// EVALSHA, EVALSHA_RO: on NOSCRIPT for a known script, load it and retry once.
    EvalSha,
    /// SCRIPT FLUSH: forget the scripts seen.
    ScriptFlush,
    /// PUBLISH: sent to the channel slot's master, so one publisher's messages keep their order.
    Publish,
}

fn special_of(name: &str) -> Special {
    match name {
        "eval" | "eval_ro" => Special::RememberScript(1),
        "script|load" => Special::RememberScript(2),
        "evalsha" | "evalsha_ro" => Special::EvalSha,
        "script|flush" => Special::ScriptFlush,
        "publish" => Special::Publish,
        _ => Special::None,
    }
}

/// Where a command's keys are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRule {
    None,
    /// Legacy (first, last, step) from COMMAND; `last < 0` counts from the end.
    Range {
        first: i32,
        last: i32,
        step: i32,
    },
    /// `numkeys` at `at`, keys right after it; `dest` is an extra key position (ZUNIONSTORE).
    NumKeys {
        at: usize,
        dest: Option<usize>,
    },
    /// Keys are the first half of the arguments after the STREAMS keyword (XREAD, XREADGROUP).
    Streams,
    /// Key at 1, plus the argument after STORE / STOREDIST (SORT, GEORADIUS).
    StoreOption,
}

/// One command (or subcommand) as the proxy knows it.
#[derive(Debug)]
pub struct CommandSpec {
    /// Lower-case full name, `container|sub` for subcommands (used in Redis's error texts).
    pub name: String,
    pub arity: i32,
    pub write: bool,
    pub readonly: bool,
    pub blocking: bool,
    pub keys: KeyRule,
    pub class: Class,
    pub special: Special,
    pub subcommands: FxHashMap<Box<[u8]>, Arc<CommandSpec>>,
    /// Where this command's counters sit in the metrics (subcommands share their container's);
    /// `u32::MAX` counts as `other`. Set once by [`CommandTable::bind_metrics`].
    pub metric_id: u32,
}

impl CommandSpec {
    /// Redis's arity rule: positive means exactly, negative means at least.
    pub fn arity_ok(&self, argc: usize) -> bool {
        let a = self.arity;
        (a > 0 && argc == a as usize) || (a < 0 && argc >= (-a) as usize)
    }

    /// The one slot all of the command's keys hash to; `None` when it has no keys, its arguments
    /// do not say where they are, or they span several slots. Allocates nothing for the common
    /// single-key commands.
    pub fn single_slot(&self, args: &[Bytes]) -> Option<u16> {
        if let KeyRule::Range { first, last, .. } = self.keys {
            if first > 0 && (first == last || (last < 0 && args.len() as i32 + last == first)) {
                return args.get(first as usize).map(|k| crate::slot::slot(k));
            }
        }
        let keys = self.key_positions(args)?;
        let mut slots = keys.iter().filter_map(|&i| args.get(i)).map(|k| crate::slot::slot(k));
        let first = slots.next()?;
        slots.all(|s| s == first).then_some(first)
    }

    /// Positions of the keys in `args`, or `None` when the arguments do not say (a bad numkeys):
    /// the caller then lets a master produce the proper error.
    pub fn key_positions(&self, args: &[Bytes]) -> Option<Vec<usize>> {
        let n = args.len();
        match self.keys {
            KeyRule::None => Some(Vec::new()),
            KeyRule::Range { first, last, step } => {
                if first <= 0 || step <= 0 {
                    return Some(Vec::new());
                }
                let last = if last < 0 { n as i32 + last } else { last.min(n as i32 - 1) };
                Some((first..=last).step_by(step as usize).map(|i| i as usize).filter(|&i| i < n).collect())
            }
            KeyRule::NumKeys { at, dest } => {
                let num = parse_int(args.get(at)?)?;
                if num < 0 || at + 1 + num as usize > n {
                    return None;
                }
                let mut v: Vec<usize> = dest.into_iter().collect();
                v.extend(at + 1..at + 1 + num as usize);
                Some(v)
            }
            KeyRule::Streams => {
                let pos = args.iter().position(|a| a.eq_ignore_ascii_case(b"streams"))?;
                let rest = n - pos - 1;
                if rest == 0 || rest % 2 != 0 {
                    return None;
                }
                Some((pos + 1..pos + 1 + rest / 2).collect())
            }
            KeyRule::StoreOption => {
                let mut v = vec![1];
                let mut i = 2;
                while i < n {
                    if (args[i].eq_ignore_ascii_case(b"store") || args[i].eq_ignore_ascii_case(b"storedist"))
                        && i + 1 < n
                    {
                        v.push(i + 1);
                        i += 1;
                    }
                    i += 1;
                }
                Some(v)
            }
        }
    }
}

/// The table, shared read-only by every client task.
#[derive(Debug, Default)]
pub struct CommandTable {
    /// Looked up once per request: a fast hash (the table is fixed, so the keys a client sends
    /// cannot crowd it).
    map: FxHashMap<Box<[u8]>, Arc<CommandSpec>>,
}

/// Outcome of looking a request up.
pub enum Lookup<'a> {
    Found(&'a Arc<CommandSpec>),
    /// `-ERR unknown command ...` in Redis's wording.
    Unknown(Bytes),
    /// `-ERR wrong number of arguments ...`.
    WrongArity(Bytes),
}

impl CommandTable {
    /// The built-in table (redis-server 7.0.15's commands).
    pub fn builtin() -> CommandTable {
        let mut rows = Vec::new();
        for line in include_str!("table.txt").lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 6 {
                continue;
            }
            let num = |s: &str| s.parse::<i32>().unwrap_or(0);
            rows.push(Row {
                name: f[0].to_string(),
                arity: num(f[1]),
                first: num(f[2]),
                last: num(f[3]),
                step: num(f[4]),
                flags: f[5].split(',').map(str::to_string).collect(),
            });
        }
        CommandTable::from_rows(rows)
    }

    /// Builds the table from a raw `COMMAND` reply; `None` if it cannot be read.
    pub fn from_command_reply(reply: &[u8]) -> Option<CommandTable> {
        let (frame, _) = redis_protocol::resp2::decode::decode(reply).ok()??;
        let OwnedFrame::Array(entries) = frame else { return None };
        let mut rows = Vec::new();
        fn walk(e: &OwnedFrame, rows: &mut Vec<Row>) -> Option<()> {
            let OwnedFrame::Array(f) = e else { return None };
            let name = f.first()?.as_str()?.to_ascii_lowercase();
            let int = |i: usize| match f.get(i) {
                Some(OwnedFrame::Integer(v)) => Some(*v as i32),
                _ => None,
            };
            let flags = match f.get(2)? {
                OwnedFrame::Array(fl) => fl.iter().filter_map(|x| x.as_str().map(|s| s.to_ascii_lowercase())).collect(),
                _ => Vec::new(),
            };
            rows.push(Row { name, arity: int(1)?, first: int(3)?, last: int(4)?, step: int(5)?, flags });
            if let Some(OwnedFrame::Array(subs)) = f.get(9) {
                for s in subs {
                    walk(s, rows)?;
                }
            }
            Some(())
        }
        for e in &entries {
            walk(e, &mut rows)?;
        }
        if rows.len() < 50 {
            return None;
        }
        Some(CommandTable::from_rows(rows))
    }

    fn from_rows(rows: Vec<Row>) -> CommandTable {
        let mut top: HashMap<String, CommandSpec> = HashMap::new();
        let mut subs: Vec<(String, String, CommandSpec)> = Vec::new();
        for r in rows {
            let spec = r.into_spec();
            match spec.name.split_once('|') {
                Some((parent, sub)) => subs.push((parent.to_string(), sub.to_string(), spec)),
                None => {
                    top.insert(spec.name.clone(), spec);
                }
            }
        }
        for (parent, sub, spec) in subs {
            if let Some(p) = top.get_mut(&parent) {
                p.subcommands.insert(sub.into_bytes().into_boxed_slice(), Arc::new(spec));
            }
        }
        // Commands the proxy itself implements even if the cluster's table lacks them.
        for (name, arity) in [("hello", -1), ("reset", 1)] {
            top.entry(name.to_string()).or_insert_with(|| {
                Row { name: name.to_string(), arity, first: 0, last: 0, step: 0, flags: Vec::new() }.into_spec()
            });
        }
        let map = top.into_iter().map(|(k, v)| (k.into_bytes().into_boxed_slice(), Arc::new(v))).collect();
        CommandTable { map }
    }

    /// Top-level command names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.map.keys().map(|k| String::from_utf8_lossy(k).into_owned()).collect();
        v.sort();
        v
    }

    /// Resolves each command's metric counters once, so that a request finds them by index.
    /// Runs before the table is shared, while every spec has a single owner.
    pub fn bind_metrics(&mut self, m: &crate::metrics::Metrics) {
        for spec in self.map.values_mut() {
            let id = m.command_id(&spec.name).unwrap_or(u32::MAX);
            if let Some(s) = Arc::get_mut(spec) {
                s.metric_id = id;
                for sub in s.subcommands.values_mut() {
                    if let Some(sub) = Arc::get_mut(sub) {
                        sub.metric_id = id;
                    }
                }
            }
        }
    }

    /// Number of top-level commands.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Finds the spec for a request, descending into subcommands, and checks arity.
    pub fn lookup(&self, args: &[Bytes]) -> Lookup<'_> {
        let Some(name) = args.first() else { return Lookup::Unknown(unknown_command(b"", &[])) };
        let Some(spec) = get_ci(&self.map, name) else {
            return Lookup::Unknown(unknown_command(name, &args[1..]));
        };
        if !spec.arity_ok(args.len()) {
            return Lookup::WrongArity(wrong_arity(&spec.name));
        }
        if !spec.subcommands.is_empty() {
            if let Some(sub) = args.get(1).and_then(|s| get_ci(&spec.subcommands, s)) {
                if !sub.arity_ok(args.len()) {
                    return Lookup::WrongArity(wrong_arity(&sub.name));
                }
                return Lookup::Found(sub);
            }
        }
        Lookup::Found(spec)
    }

    /// Spec by lower-case name (`container|sub` for subcommands).
    pub fn get(&self, name: &str) -> Option<&Arc<CommandSpec>> {
        match name.split_once('|') {
            Some((p, s)) => self.map.get(p.as_bytes())?.subcommands.get(s.as_bytes()),
            None => self.map.get(name.as_bytes()),
        }
    }
}

/// Case-insensitive lookup without allocating for ordinary command names.
fn get_ci<'a>(map: &'a FxHashMap<Box<[u8]>, Arc<CommandSpec>>, name: &[u8]) -> Option<&'a Arc<CommandSpec>> {
    let mut buf = [0u8; 32];
    if name.len() <= buf.len() {
        let lower = &mut buf[..name.len()];
        lower.copy_from_slice(name);
        lower.make_ascii_lowercase();
        map.get(&*lower)
    } else {
        map.get(&*name.to_ascii_lowercase())
    }
}

/// Redis's text: `unknown command 'foo', with args beginning with: 'a' 'b' `.
pub fn unknown_command(name: &[u8], args: &[Bytes]) -> Bytes {
    let mut msg = format!("ERR unknown command '{}', with args beginning with: ", shorten(name, 128));
    let mut budget = 128usize;
    for a in args {
        if budget == 0 {
            break;
        }
        let s = shorten(a, budget);
        budget = budget.saturating_sub(s.len());
        msg.push_str(&format!("'{s}' "));
    }
    crate::resp::reply::error(&msg)
}

pub fn wrong_arity(name: &str) -> Bytes {
    crate::resp::reply::error(&format!("ERR wrong number of arguments for '{name}' command"))
}

fn shorten(b: &[u8], max: usize) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(max)]);
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

struct Row {
    name: String,
    arity: i32,
    first: i32,
    last: i32,
    step: i32,
    flags: Vec<String>,
}

impl Row {
    fn into_spec(self) -> CommandSpec {
        let has = |f: &str| self.flags.iter().any(|x| x == f);
        let keys = key_rule(&self.name).unwrap_or(if self.first > 0 {
            KeyRule::Range { first: self.first, last: self.last, step: self.step }
        } else {
            KeyRule::None
        });
        let class = class_of(&self.name, keys);
        CommandSpec {
            arity: self.arity,
            write: has("write"),
            readonly: has("readonly"),
            blocking: has("blocking"),
            keys,
            class,
            special: special_of(&self.name),
            subcommands: FxHashMap::default(),
            metric_id: u32::MAX,
            name: self.name,
        }
    }
}

/// Explicit key rules for commands whose keys move (`movablekeys`): the legacy range is not enough.
fn key_rule(name: &str) -> Option<KeyRule> {
    Some(match name {
        "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall" | "fcall_ro" => KeyRule::NumKeys { at: 2, dest: None },
        "zunionstore" | "zinterstore" | "zdiffstore" => KeyRule::NumKeys { at: 2, dest: Some(1) },
        "zunion" | "zinter" | "zdiff" | "zintercard" | "sintercard" | "lmpop" | "zmpop" => {
            KeyRule::NumKeys { at: 1, dest: None }
        }
        "blmpop" | "bzmpop" => KeyRule::NumKeys { at: 2, dest: None },
        "xread" | "xreadgroup" => KeyRule::Streams,
        "sort" | "sort_ro" | "georadius" | "georadiusbymember" | "georadius_ro" | "georadiusbymember_ro" => {
            KeyRule::StoreOption
        }
        _ => return None,
    })
}

const NODE_ADMIN: &str =
    "ERR this command acts on one server and is not available through clusterless; run it on the cluster's nodes";

/// The proxy's own routing decision for each command name.
fn class_of(name: &str, keys: KeyRule) -> Class {
    match name {
        "mget" => Class::MGet,
        "mset" => Class::MSet,
        "del" | "unlink" | "exists" | "touch" => Class::SumKeys,
        "dbsize" => Class::AllMasters(Merge::Sum),
        "keys" => Class::AllMasters(Merge::Concat),
        "flushall" | "flushdb" | "script|flush" | "function|flush" | "function|delete" | "function|restore" => {
            Class::AllMasters(Merge::AllOk)
        }
        "script|load" | "function|load" => Class::AllMasters(Merge::First),
        "script|exists" => Class::AllMasters(Merge::And),
        "randomkey" => Class::RandomKey,
        "scan" => Class::Scan,
        "info" => Class::Info,
        "ping" | "echo" | "select" | "quit" | "auth" | "hello" | "reset" | "cluster" | "readonly" | "readwrite"
        | "asking" => Class::Local,
        n if n == "client" || n.starts_with("client|") || n.starts_with("cluster|") => Class::Local,
        // Connection-state commands: the client task runs them in order, one at a time.
        "multi" | "exec" | "discard" | "watch" | "unwatch" | "subscribe" | "psubscribe" | "unsubscribe"
        | "punsubscribe" | "ssubscribe" | "sunsubscribe" | "wait" => Class::Stateful,
        n if n == "pubsub" || n.starts_with("pubsub|") => Class::PubSubInfo,
        "waitaof" => Class::Refused(
            "ERR WAITAOF is not supported through clusterless: it refers to one connection's writes on one node",
        ),
        "migrate" => {
            Class::Refused("ERR MIGRATE is not supported through clusterless: it moves keys behind the proxy's back")
        }
        "move" => Class::Refused("ERR MOVE is not allowed in cluster mode"),
        "swapdb" => Class::Refused("ERR SWAPDB is not allowed in cluster mode"),
        "monitor" | "sync" | "psync" | "replconf" | "replicaof" | "slaveof" | "shutdown" | "debug" | "failover"
        | "save" | "bgsave" | "bgrewriteaof" | "module" | "acl" => Class::Refused(NODE_ADMIN),
        n if n == "config" || n == "module" || n.starts_with("module|") || n.starts_with("acl|") => {
            Class::Refused(NODE_ADMIN)
        }
        "config|get" => Class::AnyMaster,
        n if n.starts_with("config|") => Class::Refused(NODE_ADMIN),
        _ => {
            if matches!(keys, KeyRule::None) {
                Class::AnyMaster
            } else {
                Class::Keyed
            }
        }
    }
}

/// True when `args` ask a command to block (XREAD/XREADGROUP with BLOCK).
pub fn asks_to_block(spec: &CommandSpec, args: &[Bytes]) -> bool {
    matches!(spec.name.as_str(), "xread" | "xreadgroup")
        && args.iter().take_while(|a| !a.eq_ignore_ascii_case(b"streams")).any(|a| a.eq_ignore_ascii_case(b"block"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<Bytes> {
        s.split(' ').map(|a| Bytes::copy_from_slice(a.as_bytes())).collect()
    }

    fn keys(t: &CommandTable, s: &str) -> Option<Vec<usize>> {
        let a = args(s);
        match t.lookup(&a) {
            Lookup::Found(spec) => spec.key_positions(&a),
            _ => panic!("lookup failed for {s}"),
        }
    }

    #[test]
    fn builtin_table_key_positions() {
        let t = CommandTable::builtin();
        assert!(t.len() > 200);
        assert_eq!(keys(&t, "GET a"), Some(vec![1]));
        assert_eq!(keys(&t, "mset a 1 b 2"), Some(vec![1, 3]));
        assert_eq!(keys(&t, "EVAL s 2 k1 k2 a"), Some(vec![3, 4]));
        assert_eq!(keys(&t, "EVAL s 3 k1"), None);
        assert_eq!(keys(&t, "ZUNIONSTORE d 2 a b WEIGHTS 1 2"), Some(vec![1, 3, 4]));
        assert_eq!(keys(&t, "ZUNION 2 a b"), Some(vec![2, 3]));
        assert_eq!(keys(&t, "XREAD COUNT 2 STREAMS s1 s2 0 0"), Some(vec![4, 5]));
        assert_eq!(keys(&t, "SORT k BY x STORE d"), Some(vec![1, 5]));
        assert_eq!(keys(&t, "object encoding k"), Some(vec![2]));
        assert_eq!(keys(&t, "lmpop 2 a b LEFT"), Some(vec![2, 3]));
    }

    #[test]
    fn single_slot_agrees_with_key_positions() {
        let t = CommandTable::builtin();
        let slot_of = |s: &str| {
            let a = args(s);
            match t.lookup(&a) {
                Lookup::Found(spec) => spec.single_slot(&a),
                _ => panic!("lookup failed for {s}"),
            }
        };
        let k = |key: &str| Some(crate::slot::slot(key.as_bytes()));
        assert_eq!(slot_of("GET a"), k("a"));
        assert_eq!(slot_of("SET {u}x 1"), k("u"));
        assert_eq!(slot_of("DEL a"), k("a"));
        assert_eq!(slot_of("DEL {t}a {t}b"), k("t"));
        assert_eq!(slot_of("DEL a b"), None);
        assert_eq!(slot_of("RENAME {t}a {t}b"), k("t"));
        assert_eq!(slot_of("RENAME a b"), None);
        assert_eq!(slot_of("EVAL s 1 k"), k("k"));
        assert_eq!(slot_of("EVAL s 0"), None);
        assert_eq!(slot_of("EVAL s 3 k1"), None);
        assert_eq!(slot_of("PING"), None);
    }

    #[test]
    fn errors_match_redis() {
        let t = CommandTable::builtin();
        let Lookup::Unknown(e) = t.lookup(&args("foo a bb")) else { panic!() };
        assert_eq!(&e[..], b"-ERR unknown command 'foo', with args beginning with: 'a' 'bb' \r\n");
        let Lookup::Unknown(e) = t.lookup(&args("foo")) else { panic!() };
        assert_eq!(&e[..], b"-ERR unknown command 'foo', with args beginning with: \r\n");
        let Lookup::WrongArity(e) = t.lookup(&args("GET")) else { panic!() };
        assert_eq!(&e[..], b"-ERR wrong number of arguments for 'get' command\r\n");
        let Lookup::WrongArity(e) = t.lookup(&args("object encoding")) else { panic!() };
        assert_eq!(&e[..], b"-ERR wrong number of arguments for 'object|encoding' command\r\n");
    }

    #[test]
    fn classes() {
        let t = CommandTable::builtin();
        let class = |s: &str| match t.lookup(&args(s)) {
            Lookup::Found(spec) => spec.class,
            _ => panic!(),
        };
        assert_eq!(class("mget a b"), Class::MGet);
        assert_eq!(class("msetnx a 1 b 2"), Class::Keyed);
        assert_eq!(class("script load x"), Class::AllMasters(Merge::First));
        assert_eq!(class("script exists a"), Class::AllMasters(Merge::And));
        assert_eq!(class("client setname x"), Class::Local);
        assert_eq!(class("cluster info"), Class::Local);
        assert_eq!(class("cluster slots"), Class::Local);
        assert_eq!(class("config get maxmemory"), Class::AnyMaster);
        assert!(matches!(class("config set maxmemory 1"), Class::Refused(_)));
        assert_eq!(class("blpop a 0"), Class::Keyed);
        assert_eq!(class("multi"), Class::Stateful);
        assert_eq!(class("pubsub numsub a"), Class::PubSubInfo);
        let special = |x: &str| match t.lookup(&args(x)) {
            Lookup::Found(spec) => spec.special,
            _ => panic!(),
        };
        assert_eq!(special("script load x"), Special::RememberScript(2));
        assert_eq!(special("eval s 0"), Special::RememberScript(1));
        assert_eq!(special("evalsha abc 0"), Special::EvalSha);
        assert_eq!(special("publish ch m"), Special::Publish);
        assert_eq!(special("get k"), Special::None);
        assert_eq!(class("time"), Class::AnyMaster);
    }
}
