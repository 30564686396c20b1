//! Building the table (from a master's `COMMAND` reply, or the built-in one) and looking a request
//! up in it.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use redis_protocol::resp2::types::{OwnedFrame, Resp2Frame};
use rustc_hash::FxHashMap;

use super::class::{class_of, key_rule, special_of};
use super::{CommandSpec, KeyRule};
use crate::errors::{unknown_command, wrong_arity};

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
    /// `-ERR wrong number of arguments ...`, for a command (or subcommand) the table knows.
    WrongArity(&'a Arc<CommandSpec>, Bytes),
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
        // Commands the proxy itself implements or refuses by name even if the cluster's table
        // lacks them (a 7.0 cluster knows no WAITAOF: it was answered "unknown command").
        for (name, arity) in [("hello", -1), ("reset", 1), ("waitaof", 4)] {
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

    /// Refuses the commands sent to every node (CONFIG SET ...) for `why`: the setting
    /// `commands.config_set = "refuse"`. Runs before the table is shared.
    pub fn refuse_all_nodes(&mut self, why: crate::errors::Refusal) {
        for spec in self.map.values_mut() {
            let Some(s) = Arc::get_mut(spec) else { continue };
            for sub in s.subcommands.values_mut() {
                if let Some(sub) = Arc::get_mut(sub).filter(|sub| sub.class == super::Class::AllNodes) {
                    sub.class = super::Class::Refused(why);
                }
            }
        }
    }

    /// Number of top-level commands.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Finds the spec for a request, descending into subcommands, and checks arity.
    pub fn lookup(&self, args: &[Bytes]) -> Lookup<'_> {
        let Some(name) = args.first() else { return Lookup::Unknown(unknown_command(b"", &[])) };
        let Some(spec) = get_ci(&self.map, name) else {
            return Lookup::Unknown(unknown_command(name, &args[1..]));
        };
        if !spec.arity_ok(args.len()) {
            return Lookup::WrongArity(spec, wrong_arity(&spec.name));
        }
        if !spec.subcommands.is_empty() {
            if let Some(sub) = args.get(1).and_then(|s| get_ci(&spec.subcommands, s)) {
                if !sub.arity_ok(args.len()) {
                    return Lookup::WrongArity(sub, wrong_arity(&sub.name));
                }
                return Lookup::Found(sub);
            }
        }
        Lookup::Found(spec)
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
            readonly: has("readonly"),
            admin: has("admin"),
            may_write: has("write")
                || has("may_replicate")
                || matches!(
                    self.name.as_str(),
                    "eval" | "evalsha" | "fcall" | "publish" | "spublish" | "exec" | "pfcount"
                ),
            blocking: has("blocking"),
            keys,
            class,
            special: special_of(&self.name),
            subcommands: FxHashMap::default(),
            metric_id: u32::MAX,
            name_bytes: bytes::Bytes::from(self.name.clone()),
            name: self.name,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Class, Merge, Special};

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
        let Lookup::WrongArity(spec, e) = t.lookup(&args("GET")) else { panic!() };
        assert_eq!(spec.name, "get");
        assert_eq!(&e[..], b"-ERR wrong number of arguments for 'get' command\r\n");
        let Lookup::WrongArity(spec, e) = t.lookup(&args("object encoding")) else { panic!() };
        assert_eq!(spec.name, "object|encoding");
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
        assert_eq!(class("config set maxmemory 1"), Class::AllNodes);
        assert_eq!(class("slowlog get"), Class::ServerLog);
        assert_eq!(class("script kill"), Class::AllMasters(Merge::AnyOk));
        let mut refusing = CommandTable::builtin();
        refusing.refuse_all_nodes(crate::errors::Refusal::NodeAdmin);
        match refusing.lookup(&args("config set maxmemory 1")) {
            Lookup::Found(spec) => assert!(matches!(spec.class, Class::Refused(_))),
            _ => panic!(),
        }
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
        assert!(matches!(class("waitaof 0 0 0"), Class::Refused(_)), "refused by name on a 7.0 table too");
    }

    fn spec<'a>(t: &'a CommandTable, s: &str) -> &'a Arc<CommandSpec> {
        match t.lookup(&args(s)) {
            Lookup::Found(spec) => spec,
            _ => panic!("lookup failed for {s}"),
        }
    }

    /// Every arm of the proxy's routing decision, by the names in the built-in table.
    #[test]
    fn every_class_by_name() {
        use crate::errors::Refusal;
        let t = CommandTable::builtin();
        let class = |s: &str| spec(&t, s).class;
        for s in ["del a", "unlink a", "exists a", "touch a"] {
            assert_eq!(class(s), Class::SumKeys, "{s}");
        }
        assert_eq!(class("mset a 1"), Class::MSet);
        assert_eq!(class("dbsize"), Class::AllMasters(Merge::Sum));
        assert_eq!(class("keys *"), Class::AllMasters(Merge::Concat));
        for s in ["flushall", "flushdb", "script flush", "function flush", "function delete l", "function restore x"] {
            assert_eq!(class(s), Class::AllMasters(Merge::AllOk), "{s}");
        }
        assert_eq!(class("function load x"), Class::AllMasters(Merge::First));
        assert_eq!(class("randomkey"), Class::RandomKey);
        assert_eq!(class("scan 0"), Class::Scan);
        assert_eq!(class("info"), Class::Info);
        for s in ["ping", "echo x", "select 0", "quit", "auth x", "hello", "reset", "readonly", "readwrite", "asking"] {
            assert_eq!(class(s), Class::Local, "{s}");
        }
        assert_eq!(class("client id"), Class::Local);
        for s in ["exec", "discard", "watch a", "unwatch", "subscribe c", "psubscribe p", "unsubscribe", "punsubscribe"]
        {
            assert_eq!(class(s), Class::Stateful, "{s}");
        }
        for s in ["ssubscribe c", "sunsubscribe", "wait 0 0"] {
            assert_eq!(class(s), Class::Stateful, "{s}");
        }
        assert_eq!(class("pubsub channels"), Class::PubSubInfo);
        assert_eq!(class("migrate h 1 k 0 1"), Class::Refused(Refusal::Migrate));
        assert_eq!(class("waitaof 0 0 0"), Class::Refused(Refusal::WaitAof));
        assert_eq!(class("move k 1"), Class::Refused(Refusal::OneDatabase));
        assert_eq!(class("swapdb 0 1"), Class::Refused(Refusal::OneDatabase));
        for s in ["monitor", "shutdown", "debug sleep 0", "failover", "save", "bgsave", "bgrewriteaof", "replicaof a b"]
        {
            assert_eq!(class(s), Class::Refused(Refusal::NodeAdmin), "{s}");
        }
        for s in ["slaveof a b", "sync", "psync a 1", "module list", "acl users"] {
            assert_eq!(class(s), Class::Refused(Refusal::NodeAdmin), "{s}");
        }
        assert_eq!(class("acl whoami"), Class::Local);
        for s in ["config set a b", "config rewrite", "config resetstat"] {
            assert_eq!(class(s), Class::AllNodes, "{s}");
        }
        assert_eq!(class("get k"), Class::Keyed);
        assert_eq!(class("lastsave"), Class::AnyMaster);
        assert_eq!(class("memory stats"), Class::AnyMaster);
        let special = |s: &str| spec(&t, s).special;
        assert_eq!(special("eval_ro s 0"), Special::RememberScript(1));
        assert_eq!(special("evalsha_ro abc 0"), Special::EvalSha);
        assert_eq!(special("script flush"), Special::ScriptFlush);
        assert_eq!(special("fcall f 0"), Special::None);
        let s = spec(&t, "get k");
        assert!(s.readonly && !s.blocking);
        let s = spec(&t, "blpop k 0");
        assert!(s.blocking && !s.readonly);
    }

    /// The key rules the table alone cannot give, and the edges of each rule.
    #[test]
    fn key_rules_and_their_edges() {
        let t = CommandTable::builtin();
        assert_eq!(keys(&t, "ZINTERSTORE d 2 a b"), Some(vec![1, 3, 4]));
        assert_eq!(keys(&t, "ZDIFFSTORE d 1 a"), Some(vec![1, 3]));
        assert_eq!(keys(&t, "SINTERCARD 2 a b LIMIT 1"), Some(vec![2, 3]));
        assert_eq!(keys(&t, "ZMPOP 1 a MIN"), Some(vec![2]));
        assert_eq!(keys(&t, "ZINTERCARD 2 a b"), Some(vec![2, 3]));
        assert_eq!(keys(&t, "BLMPOP 0 2 a b LEFT"), Some(vec![3, 4]));
        assert_eq!(keys(&t, "BZMPOP 0 1 a MIN"), Some(vec![3]));
        assert_eq!(keys(&t, "FCALL_RO f 1 k"), Some(vec![3]));
        assert_eq!(keys(&t, "EVALSHA_RO s 1 k"), Some(vec![3]));
        assert_eq!(keys(&t, "EVAL s 0"), Some(vec![]));
        assert_eq!(keys(&t, "EVAL s -1"), None);
        assert_eq!(keys(&t, "EVAL s x"), None);
        assert_eq!(keys(&t, "EVAL s 1 k"), Some(vec![3]), "exactly enough arguments");
        assert_eq!(keys(&t, "XREADGROUP GROUP g c STREAMS s1 s2 > >"), Some(vec![5, 6]));
        assert_eq!(keys(&t, "XREAD STREAMS s1 s2 0"), None, "odd count after STREAMS");
        assert_eq!(keys(&t, "XREAD COUNT 1 STREAMS"), None);
        assert_eq!(keys(&t, "XREAD COUNT 1 BLOCK 0"), None, "no STREAMS");
        assert_eq!(keys(&t, "SORT_RO k BY x"), Some(vec![1]));
        assert_eq!(keys(&t, "SORT k STORE"), Some(vec![1]), "STORE without its argument");
        assert_eq!(keys(&t, "SORT k store d1 STORE d2"), Some(vec![1, 3, 5]));
        assert_eq!(keys(&t, "GEORADIUS k 0 0 1 km STOREDIST d"), Some(vec![1, 7]));
        assert_eq!(keys(&t, "GEORADIUSBYMEMBER k m 1 km STORE d"), Some(vec![1, 6]));
        // Ranges: a step, a last counted from the end, no keys.
        assert_eq!(keys(&t, "MSET a 1 b 2 c 3"), Some(vec![1, 3, 5]));
        assert_eq!(keys(&t, "DEL a b c"), Some(vec![1, 2, 3]));
        assert_eq!(keys(&t, "RPOPLPUSH a b"), Some(vec![1, 2]));
        assert_eq!(keys(&t, "BLPOP a b 0"), Some(vec![1, 2]));
        assert_eq!(keys(&t, "PING"), Some(vec![]));
        let range = |first, last, step| CommandSpec {
            name: "x".into(),
            name_bytes: bytes::Bytes::from_static(b"x"),
            arity: -1,
            readonly: false,
            may_write: false,
            admin: false,
            blocking: false,
            keys: KeyRule::Range { first, last, step },
            class: Class::Keyed,
            special: Special::None,
            subcommands: FxHashMap::default(),
            metric_id: u32::MAX,
        };
        let a = args("x a b c d");
        assert_eq!(range(1, 2, 1).key_positions(&a), Some(vec![1, 2]));
        assert_eq!(range(1, 9, 1).key_positions(&a), Some(vec![1, 2, 3, 4]), "last past the end");
        assert_eq!(range(2, -2, 1).key_positions(&a), Some(vec![2, 3]));
        assert_eq!(range(0, 2, 1).key_positions(&a), Some(vec![]));
        assert_eq!(range(1, 2, 0).key_positions(&a), Some(vec![]));
        assert_eq!(range(1, -1, 2).key_positions(&a), Some(vec![1, 3]));
        // single_slot's shortcut for one key: first == last, or a last from the end that lands on it.
        let k = |s: &str| Some(crate::slot::slot(s.as_bytes()));
        assert_eq!(range(1, 1, 1).single_slot(&args("x a b")), k("a"));
        assert_eq!(range(2, 2, 1).single_slot(&args("x a b")), k("b"));
        assert_eq!(range(1, -1, 1).single_slot(&args("x a")), k("a"));
        assert_eq!(range(1, -1, 1).single_slot(&args("x a b")), None);
        assert_eq!(range(1, -2, 1).single_slot(&args("x a b")), k("a"));
        assert_eq!(range(1, -1, 1).single_slot(&args("x {t}a {t}b")), k("t"));
        assert_eq!(range(1, 1, 1).single_slot(&args("x")), None);
    }

    #[test]
    fn arity_blocking_reads_and_lookups() {
        let t = CommandTable::builtin();
        let get = spec(&t, "get k");
        assert!(get.arity_ok(2) && !get.arity_ok(1) && !get.arity_ok(3));
        let del = spec(&t, "del k");
        assert!(del.arity_ok(2) && del.arity_ok(9) && !del.arity_ok(1));
        let xread = spec(&t, "xread streams s 0");
        assert!(crate::command::asks_to_block(xread, &args("XREAD BLOCK 0 STREAMS s 0")));
        assert!(crate::command::asks_to_block(xread, &args("xread count 1 block 10 streams s 0")));
        assert!(!crate::command::asks_to_block(xread, &args("XREAD STREAMS block 0")), "a stream named block");
        assert!(!crate::command::asks_to_block(xread, &args("XREAD COUNT 1 STREAMS s 0")));
        let xg = spec(&t, "xreadgroup group g c streams s >");
        assert!(crate::command::asks_to_block(xg, &args("XREADGROUP GROUP g c BLOCK 0 STREAMS s >")));
        assert!(!crate::command::asks_to_block(get, &args("GET block")));
        // Lookups: any case, a name longer than the stack buffer, no name at all.
        assert_eq!(spec(&t, "gEt k").name, "get");
        assert_eq!(spec(&t, "CLIENT SETNAME x").name, "client|setname");
        assert_eq!(spec(&t, "client nosuchsub").name, "client", "an unknown subcommand is the container's");
        let long = "x".repeat(40);
        assert!(matches!(t.lookup(&args(&long)), Lookup::Unknown(_)));
        let Lookup::Unknown(e) = t.lookup(&[]) else { panic!() };
        assert_eq!(&e[..], b"-ERR unknown command '', with args beginning with: \r\n");
        let Lookup::WrongArity(_, e) = t.lookup(&args("CLIENT")) else { panic!() };
        assert_eq!(&e[..], b"-ERR wrong number of arguments for 'client' command\r\n");
        let names = t.names();
        assert_eq!(names.len(), t.len());
        assert!(names.windows(2).all(|w| w[0] < w[1]), "sorted");
        assert!(names.iter().any(|n| n == "hello") && names.iter().any(|n| n == "waitaof"));
    }

    /// A table read from a node's own COMMAND reply: names lower-cased, subcommands nested, too
    /// short a reply refused.
    #[test]
    fn table_from_a_command_reply() {
        fn entry(name: &str, arity: i64, flags: &[&str], first: i64, last: i64, step: i64, subs: &[String]) -> String {
            let mut e = format!("*10\r\n${}\r\n{name}\r\n:{arity}\r\n*{}\r\n", name.len(), flags.len());
            for f in flags {
                e.push_str(&format!("+{f}\r\n"));
            }
            e.push_str(&format!(":{first}\r\n:{last}\r\n:{step}\r\n*0\r\n*0\r\n*0\r\n*{}\r\n", subs.len()));
            for s in subs {
                e.push_str(s);
            }
            e
        }
        let mut entries = vec![
            entry("GET", 2, &["readonly"], 1, 1, 1, &[]),
            entry("object", -2, &[], 0, 0, 0, &[entry("object|encoding", 3, &["readonly"], 2, 2, 1, &[])]),
        ];
        for i in 0..48 {
            entries.push(entry(&format!("cmd{i}"), -1, &[], 0, 0, 0, &[]));
        }
        let reply = format!("*{}\r\n{}", entries.len(), entries.concat());
        let t = CommandTable::from_command_reply(reply.as_bytes()).expect("50 commands");
        assert_eq!(t.len(), 50 + 3, "hello, reset and waitaof added");
        let get = spec(&t, "get k");
        assert!(get.readonly && get.arity == 2);
        assert_eq!(get.keys, KeyRule::Range { first: 1, last: 1, step: 1 });
        assert_eq!(spec(&t, "object encoding k").name, "object|encoding");
        assert_eq!(keys(&t, "object encoding k"), Some(vec![2]));
        // 48 entries: 49 rows with the subcommand, one short of the 50 a real table has.
        let short = format!("*{}\r\n{}", 48, entries[..48].concat());
        assert!(CommandTable::from_command_reply(short.as_bytes()).is_none(), "fewer than 50 commands");
        let just = format!("*{}\r\n{}", 49, entries[..49].concat());
        assert!(CommandTable::from_command_reply(just.as_bytes()).is_some(), "50 rows");
        assert!(CommandTable::from_command_reply(b"+OK\r\n").is_none());
        assert!(CommandTable::from_command_reply(b"*1\r\n:1\r\n").is_none());
    }
}
