//! The proxy's own routing decision for each command name, its key rule where the legacy range
//! from COMMAND is not enough, and what the router does for it besides its class.

use bytes::Bytes;

use super::{Class, CommandSpec, KeyRule, Merge, Special};
use crate::errors::{self, Refusal};
use crate::resp::parse_int;

pub(super) fn special_of(name: &str) -> Special {
    match name {
        "eval" | "eval_ro" => Special::RememberScript(1),
        "script|load" => Special::RememberScript(2),
        "evalsha" | "evalsha_ro" => Special::EvalSha,
        "script|flush" => Special::ScriptFlush,
        "script|exists" => Special::ScriptExists,
        "publish" => Special::Publish,
        _ => Special::None,
    }
}

/// Explicit key rules for commands whose keys move (`movablekeys`): the legacy range is not enough.
pub(super) fn key_rule(name: &str) -> Option<KeyRule> {
    Some(match name {
        "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall" | "fcall_ro" => KeyRule::NumKeys { at: 2, dest: None },
        "zunionstore" | "zinterstore" | "zdiffstore" => KeyRule::NumKeys { at: 2, dest: Some(1) },
        "zunion" | "zinter" | "zdiff" | "zintercard" | "sintercard" | "lmpop" | "zmpop" => {
            KeyRule::NumKeys { at: 1, dest: None }
        }
        "blmpop" | "bzmpop" => KeyRule::NumKeys { at: 2, dest: None },
        "xread" | "xreadgroup" => KeyRule::Streams,
        // Only the writing forms take STORE: SORT_RO and the _RO GEORADIUS forms answer `syntax
        // error` to it, as on one server, so their STORE argument is no key (no CROSSSLOT first).
        "sort" | "georadius" | "georadiusbymember" => KeyRule::StoreOption,
        _ => return None,
    })
}

/// The proxy's own routing decision for each command name.
pub(super) fn class_of(name: &str, keys: KeyRule) -> Class {
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
        "script|kill" | "function|kill" => Class::AllMasters(Merge::AnyOk),
        "slowlog|get" | "slowlog|len" | "slowlog|reset" | "latency|latest" | "latency|history" | "latency|reset" => {
            Class::ServerLog
        }
        "randomkey" => Class::RandomKey,
        "scan" => Class::Scan,
        "info" => Class::Info,
        "ping" | "echo" | "select" | "quit" | "auth" | "hello" | "reset" | "cluster" | "readonly" | "readwrite"
        | "asking" | "acl|whoami" => Class::Local,
        n if n == "client" || n.starts_with("client|") || n.starts_with("cluster|") => Class::Local,
        // Connection-state commands: the client task runs them in order, one at a time.
        "multi" | "exec" | "discard" | "watch" | "unwatch" | "subscribe" | "psubscribe" | "unsubscribe"
        | "punsubscribe" | "ssubscribe" | "sunsubscribe" | "wait" => Class::Stateful,
        n if n == "pubsub" || n.starts_with("pubsub|") => Class::PubSubInfo,
        "waitaof" => Class::Refused(Refusal::WaitAof),
        "migrate" => Class::Refused(Refusal::Migrate),
        "move" | "swapdb" => Class::Refused(Refusal::OneDatabase),
        "monitor" | "sync" | "psync" | "replconf" | "replicaof" | "slaveof" | "shutdown" | "debug" | "failover"
        | "save" | "bgsave" | "bgrewriteaof" | "module" | "acl" => Class::Refused(Refusal::NodeAdmin),
        n if n == "config" || n == "module" || n.starts_with("module|") || n.starts_with("acl|") => {
            Class::Refused(Refusal::NodeAdmin)
        }
        "config|get" | "config|help" => Class::AnyMaster,
        "config|set" | "config|resetstat" | "config|rewrite" => Class::AllNodes,
        n if n.starts_with("config|") => Class::Refused(Refusal::NodeAdmin),
        _ => {
            if matches!(keys, KeyRule::None) {
                Class::AnyMaster
            } else {
                Class::Keyed
            }
        }
    }
}

/// COPY's own errors, which one server answers from the arguments alone, before anything else:
/// an unknown option (`syntax error`), a DB that is not a number, and a DB other than 0 (the proxy
/// is a server with one database: `DB index is out of range`, as SELECT says; a cluster node's own
/// answer would name the cluster). Checked in Redis's order, so that keys of two slots with a bad
/// option get the option's error, as on one server, not `-CROSSSLOT`.
pub fn copy_error(args: &[Bytes]) -> Option<Bytes> {
    let mut i = 3;
    while let Some(a) = args.get(i) {
        if a.eq_ignore_ascii_case(b"replace") {
            i += 1;
        } else if a.eq_ignore_ascii_case(b"db") && i + 1 < args.len() {
            match args.get(i + 1).and_then(|d| parse_int(d)) {
                Some(0) => i += 2,
                Some(_) => return Some(errors::db_out_of_range()),
                None => return Some(errors::not_an_integer()),
            }
        } else {
            return Some(errors::syntax());
        }
    }
    None
}

/// True when `args` ask a command to block (XREAD/XREADGROUP with BLOCK).
pub fn asks_to_block(spec: &CommandSpec, args: &[Bytes]) -> bool {
    matches!(spec.name.as_str(), "xread" | "xreadgroup")
        && args.iter().take_while(|a| !a.eq_ignore_ascii_case(b"streams")).any(|a| a.eq_ignore_ascii_case(b"block"))
}
