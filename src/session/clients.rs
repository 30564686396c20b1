//! CLIENT LIST, INFO, KILL and UNBLOCK over the proxy's own clients (the registry in
//! [`crate::stats::clients`]), in Redis's formats and with Redis's filters and error texts.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::Session;
use crate::backend::Cx;
use crate::errors;
use crate::resp::{parse_int, reply};
use crate::route::Router;
use crate::stats::clients::{BlockedOn, Entry};

fn eq_ci(a: &[u8], b: &str) -> bool {
    a.eq_ignore_ascii_case(b.as_bytes())
}

/// A client type as CLIENT LIST / KILL TYPE name it. The proxy's clients are never masters or
/// replicas, so those types match none of them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Type {
    Normal,
    PubSub,
    Node,
}

fn type_of(name: &[u8]) -> Option<Type> {
    if eq_ci(name, "normal") {
        Some(Type::Normal)
    } else if eq_ci(name, "pubsub") {
        Some(Type::PubSub)
    } else if ["master", "replica", "slave"].iter().any(|t| eq_ci(name, t)) {
        Some(Type::Node)
    } else {
        None
    }
}

fn is_type(e: &Entry, t: Type) -> bool {
    match t {
        Type::Normal => !e.pubsub(),
        Type::PubSub => e.pubsub(),
        Type::Node => false,
    }
}

/// One client's line, as Redis 7.2's CLIENT LIST writes it (without the newline). The buffer
/// fields show 0: the proxy's buffers are not Redis's, and a client reads them as sizes only.
pub fn line(e: &Entry, out: &mut String) {
    let ident = e.ident.lock().clone();
    let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
    let multi = e.multi.load(Ordering::Relaxed);
    let mut flags = String::new();
    if e.monitor.load(Ordering::Relaxed) {
        flags.push('O');
    }
    if e.pubsub() {
        flags.push('P');
    }
    if multi >= 0 {
        flags.push('x');
    }
    if e.blocked.load(Ordering::Relaxed) {
        flags.push('b');
    }
    let redir = e.redir.load(Ordering::Relaxed);
    if redir >= 0 {
        flags.push('t');
        if e.bcast.load(Ordering::Relaxed) {
            flags.push('B');
        }
    }
    if e.no_evict.load(Ordering::Relaxed) {
        flags.push('e');
    }
    if e.no_touch.load(Ordering::Relaxed) {
        flags.push('T');
    }
    if flags.is_empty() {
        flags.push('N');
    }
    let cmd = if ident.cmd.is_empty() { "NULL".to_string() } else { text(&ident.cmd) };
    let _ = write!(
        out,
        "id={} addr={} laddr={} fd={} name={} age={} idle={} flags={} db={} sub={} psub={} ssub={} multi={} \
         qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r \
         cmd={} user={} redir={} resp={} lib-name={} lib-ver={}",
        e.id,
        e.addr,
        e.laddr,
        e.fd,
        text(&ident.name),
        e.age(),
        e.idle(),
        flags,
        e.db.load(Ordering::Relaxed),
        e.sub.load(Ordering::Relaxed),
        e.psub.load(Ordering::Relaxed),
        e.ssub.load(Ordering::Relaxed),
        multi,
        cmd,
        text(&ident.user),
        redir,
        e.resp.load(Ordering::Relaxed),
        text(&ident.lib_name),
        text(&ident.lib_ver),
    );
}

fn lines<'a>(entries: impl Iterator<Item = &'a Entry>) -> String {
    let mut out = String::new();
    for e in entries {
        line(e, &mut out);
        out.push('\n');
    }
    out
}

/// CLIENT INFO: the caller's line.
pub fn info(s: &Session) -> Bytes {
    reply::verbatim(s.proto, lines(std::iter::once(&*s.entry)).as_bytes())
}

/// CLIENT LIST [TYPE type | ID id ... | USER name].
pub fn list(p: &Router, s: &Session, args: &[Bytes]) -> Bytes {
    let all = p.stats.clients.all();
    let text = match args.len() {
        2 => lines(all.iter().map(|e| &**e)),
        4 if eq_ci(&args[2], "type") => match type_of(&args[3]) {
            Some(t) => lines(all.iter().map(|e| &**e).filter(|e| is_type(e, t))),
            None => return errors::unknown_client_type(&args[3]),
        },
        // USER (Redis 8's filter, shared with CLIENT KILL): the clients logged in as that user.
        4 if eq_ci(&args[2], "user") => {
            if !user_exists(s, &args[3]) {
                return errors::no_such_user(&args[3]);
            }
            lines(all.iter().map(|e| &**e).filter(|e| e.ident.lock().user == args[3]))
        }
        n if n > 3 && eq_ci(&args[2], "id") => {
            // In the order asked, as Redis lists them; an id that is not connected is skipped.
            let mut ids = Vec::new();
            for a in &args[3..] {
                match parse_int(a) {
                    Some(id) => ids.push(id),
                    None => return errors::invalid_client_id(),
                }
            }
            let found: Vec<_> =
                ids.iter().filter_map(|&id| u64::try_from(id).ok().and_then(|id| p.stats.clients.get(id))).collect();
            lines(found.iter().map(|e| &**e))
        }
        _ => return errors::syntax(),
    };
    reply::verbatim(s.proto, text.as_bytes())
}

/// What CLIENT KILL's new form matches.
#[derive(Default)]
struct Filter {
    id: Option<u64>,
    kind: Option<Type>,
    addr: Option<Bytes>,
    laddr: Option<Bytes>,
    user: Option<Bytes>,
    max_age: Option<i64>,
    skip_me: bool,
}

impl Filter {
    fn matches(&self, e: &Entry, me: u64) -> bool {
        if self.skip_me && e.id == me {
            return false;
        }
        self.id.is_none_or(|id| e.id == id)
            && self.kind.is_none_or(|t| is_type(e, t))
            && self.addr.as_ref().is_none_or(|a| a[..] == *e.addr.as_bytes())
            && self.laddr.as_ref().is_none_or(|a| a[..] == *e.laddr.as_bytes())
            && self.user.as_ref().is_none_or(|u| *u == e.ident.lock().user)
            // Redis 7.4's MAXAGE: only clients connected for longer than that many seconds.
            && self.max_age.is_none_or(|m| m == 0 || e.age() as i64 > m)
    }
}

/// CLIENT KILL addr:port (+OK or `No such client`), or CLIENT KILL filter value ... (how many).
/// A killed client answers what it had received and closes; the caller itself, when it matches,
/// after this reply.
pub fn kill(p: &Router, s: &Session, args: &[Bytes]) -> Bytes {
    let all = p.stats.clients.all();
    if args.len() == 3 {
        // The old form, which may kill the caller itself.
        let hit: Vec<_> = all.iter().filter(|e| args[2][..] == *e.addr.as_bytes()).collect();
        if hit.is_empty() {
            return errors::no_such_client();
        }
        hit.iter().for_each(|e| e.kill());
        return reply::ok();
    }
    let mut f = Filter { skip_me: true, ..Filter::default() };
    let mut i = 2;
    while i < args.len() {
        let (opt, Some(v)) = (&args[i], args.get(i + 1)) else { return errors::syntax() };
        if eq_ci(opt, "id") {
            match parse_int(v) {
                Some(id) if id > 0 => f.id = Some(id as u64),
                _ => return errors::client_id_positive(),
            }
        } else if eq_ci(opt, "type") {
            match type_of(v) {
                Some(t) => f.kind = Some(t),
                None => return errors::unknown_client_type(v),
            }
        } else if eq_ci(opt, "addr") {
            f.addr = Some(v.clone());
        } else if eq_ci(opt, "laddr") {
            f.laddr = Some(v.clone());
        } else if eq_ci(opt, "user") {
            if !user_exists(s, v) {
                return errors::no_such_user(v);
            }
            f.user = Some(v.clone());
        } else if eq_ci(opt, "skipme") {
            if eq_ci(v, "yes") {
                f.skip_me = true;
            } else if eq_ci(v, "no") {
                f.skip_me = false;
            } else {
                return errors::syntax();
            }
        } else if eq_ci(opt, "maxage") {
            match parse_int(v) {
                Some(m) => f.max_age = Some(m),
                None => return errors::not_an_integer(),
            }
        } else {
            return errors::syntax();
        }
        i += 2;
    }
    let mut n = 0;
    for e in all.iter().filter(|e| f.matches(e, s.id)) {
        e.kill();
        n += 1;
    }
    reply::int(n)
}

/// The users a client of the proxy may be: `default`, the requirepass user, `[[auth.users]]`.
fn user_exists(s: &Session, u: &[u8]) -> bool {
    let cfg = &s.auth;
    u == b"default"
        || cfg.user.as_deref().is_some_and(|n| n.as_bytes() == u)
        || cfg.users.iter().any(|listed| listed.name.as_bytes() == u)
}

/// CLIENT UNBLOCK id [TIMEOUT|ERROR]: a client of the proxy blocked in a pop or XREAD BLOCK on one
/// node is unblocked there, by the node, with the same reason: the node answers it as Redis does
/// (its timeout reply, or `-UNBLOCKED client unblocked via CLIENT UNBLOCK`), and a pop that took
/// an element already answers with it, so nothing is lost. WAIT and pops over several slots are
/// not reached (`:0`).
pub fn unblock(p: &Router, s: &Session, args: &[Bytes]) -> Bytes {
    let mode = match args.get(3) {
        None => "TIMEOUT",
        Some(r) if eq_ci(r, "timeout") => "TIMEOUT",
        Some(r) if eq_ci(r, "error") => "ERROR",
        Some(_) => return errors::unblock_reason(),
    };
    let Some(id) = parse_int(&args[2]) else { return errors::not_an_integer() };
    let Some(target) = u64::try_from(id).ok().and_then(|id| p.stats.clients.get(id)) else { return reply::int(0) };
    if matches!(*target.blocked_on.lock(), BlockedOn::Nothing) {
        return reply::int(0);
    }
    let backend = p.backend.clone();
    // The proxy's own login: the client's user may not be allowed CLIENT UNBLOCK on the nodes.
    let cx = Cx { proto: 2, lane: s.id as u32, login: 0 };
    tokio::spawn(async move {
        // The command may not have reached its node yet: asked again every 20 ms while it is
        // still waiting, as the cancel of a pop over several slots does.
        for _ in 0..500 {
            let at = target.blocked_on.lock().clone();
            match at {
                BlockedOn::Nothing => return,
                BlockedOn::Starting => {}
                BlockedOn::At(addr, node_id) => {
                    let id = node_id.to_string();
                    let cmd = crate::resp::encode_command(&["CLIENT", "UNBLOCK", id.as_str(), mode]);
                    if backend.send_one(&addr, cx, cmd).await.is_ok_and(|r| r[..] == b":1\r\n"[..]) {
                        return;
                    }
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    });
    reply::int(1)
}
