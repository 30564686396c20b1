//! The command table: for every command, its arity, flags, where its keys are, and how the proxy
//! routes it (its routing class). Built once at start-up from a master's `COMMAND` reply, with a
//! built-in fallback generated from redis-server 7.0.15 ([`table`]); each command's class and
//! special handling are the proxy's own decisions ([`class`]); key extraction never asks a node.

mod class;
mod table;

use std::sync::Arc;

use bytes::Bytes;
use rustc_hash::FxHashMap;

pub use class::{asks_to_block, copy_error};
pub use table::{CommandTable, Lookup};

use crate::errors::Refusal;
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
    /// Refused, for the given reason.
    Refused(Refusal),
    /// Changes or depends on the client connection's state (MULTI/EXEC/WATCH, subscriptions,
    /// WAIT): run by the client task in order, after everything before it was answered.
    Stateful,
    /// PUBSUB CHANNELS/NUMSUB/NUMPAT...: asked of every node and merged.
    PubSubInfo,
    /// SLOWLOG GET/LEN/RESET, LATENCY LATEST/HISTORY/RESET: every master's log, merged as one.
    ServerLog,
    /// CONFIG SET/RESETSTAT/REWRITE: every node, masters and replicas; CONFIG SET remembered for
    /// nodes that join later.
    AllNodes,
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
    /// `+OK` when any said OK (a script was killed somewhere), else the first error (NOTBUSY):
    /// SCRIPT KILL, FUNCTION KILL.
    AnyOk,
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
    /// SCRIPT EXISTS: a script the proxy would load where missing exists.
    ScriptExists,
    /// PUBLISH: sent to the channel slot's master, so one publisher's messages keep their order.
    Publish,
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
    /// The same name as shared bytes: what CLIENT LIST's `cmd=` shows, kept per client without
    /// copying.
    pub name_bytes: bytes::Bytes,
    pub arity: i32,
    pub readonly: bool,
    /// Held by CLIENT PAUSE WRITE: Redis's write commands and those that may replicate one
    /// (scripts, functions, PUBLISH, EXEC, PFCOUNT).
    pub may_write: bool,
    /// Redis's `admin` commands are not shown to MONITOR.
    pub admin: bool,
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
    /// The answer to a refused command: for a container (ACL, CONFIG, MODULE) reached with a
    /// subcommand the table does not know, Redis's `unknown subcommand`, as one server answers;
    /// otherwise the refusal naming the command.
    pub fn refusal(&self, why: Refusal, args: &[Bytes]) -> Bytes {
        match args.get(1) {
            Some(sub) if !self.subcommands.is_empty() => crate::errors::unknown_subcommand(sub, &self.name),
            _ => why.frame(&self.name),
        }
    }

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
