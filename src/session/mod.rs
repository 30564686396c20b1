//! Per-client connection state (authentication, protocol version, name, id) and the commands the
//! proxy answers itself, in Redis's own words: PING, ECHO, SELECT, QUIT, AUTH, HELLO, RESET,
//! CLIENT, CLUSTER and friends.

pub mod blocking;
pub mod pubsub;
pub mod transaction;

use bytes::Bytes;

use crate::resp::{parse_int, reply};
use crate::server::Proxy;

/// What one client connection carries between requests.
#[derive(Debug)]
pub struct Session {
    pub id: u64,
    pub peer: String,
    pub name: Option<Bytes>,
    pub authenticated: bool,
    /// RESP version negotiated with HELLO (2 or 3).
    pub proto: u8,
    /// Set by QUIT: reply, flush, close.
    pub quit: bool,
}

impl Session {
    pub fn new(p: &Proxy, id: u64, peer: String) -> Session {
        Session { id, peer, name: None, authenticated: !p.cfg.auth.required(), proto: 2, quit: false }
    }
}

const NO_PASSWORD: &str = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?";
const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";
const NOT_CLUSTER: &str = "ERR This instance has cluster support disabled";
const BAD_NAME: &str = "ERR Client names cannot contain spaces, newlines or special characters.";

fn eq_ci(a: &[u8], b: &str) -> bool {
    a.eq_ignore_ascii_case(b.as_bytes())
}

/// Answers a command of class `Local`. `name` is the spec's lower-case name.
pub fn handle(p: &Proxy, s: &mut Session, name: &str, args: &[Bytes]) -> Bytes {
    match name {
        "ping" => match args.get(1) {
            Some(m) => reply::bulk(m),
            None => Bytes::from_static(b"+PONG\r\n"),
        },
        "echo" => reply::bulk(args.get(1).map(|a| a.as_ref()).unwrap_or_default()),
        "select" => match args.get(1).and_then(|a| parse_int(a)) {
            Some(0) => reply::ok(),
            Some(_) => reply::error("ERR DB index is out of range"),
            None => reply::error("ERR value is not an integer or out of range"),
        },
        "quit" => {
            s.quit = true;
            reply::ok()
        }
        "auth" => match args.len() {
            2 => auth(p, s, None, &args[1]),
            3 => auth(p, s, Some(&args[1]), &args[2]),
            _ => reply::error("ERR syntax error"),
        },
        "hello" => hello(p, s, args),
        "reset" => {
            s.name = None;
            s.proto = 2;
            s.authenticated = !p.cfg.auth.required();
            Bytes::from_static(b"+RESET\r\n")
        }
        "cluster" | "readonly" | "readwrite" | "asking" => reply::error(NOT_CLUSTER),
        n if n.starts_with("cluster|") => reply::error(NOT_CLUSTER),
        n if n == "client" || n.starts_with("client|") => client(p, s, args),
        _ => reply::error("ERR internal: not a local command"),
    }
}

fn auth(p: &Proxy, s: &mut Session, user: Option<&[u8]>, pass: &[u8]) -> Bytes {
    if let Some(u) = user {
        let listed = p.cfg.auth.users.iter().find(|(name, _)| name.as_bytes() == u);
        if let Some((_, want)) = listed {
            return if constant_time_eq(pass, want.as_bytes()) {
                s.authenticated = true;
                reply::ok()
            } else {
                reply::error(WRONGPASS)
            };
        }
    }
    let Some(required) = &p.cfg.auth.requirepass else {
        if p.cfg.auth.required() {
            // Only the listed users exist; the default user is off, as with `user default off`.
            return reply::error(WRONGPASS);
        }
        // Redis without a password: the default user is "nopass", so AUTH default <anything> is OK.
        return match user {
            None => reply::error(NO_PASSWORD),
            Some(u) if eq_ci(u, "default") => reply::ok(),
            Some(_) => reply::error(WRONGPASS),
        };
    };
    let want_user = p.cfg.auth.user.as_deref().unwrap_or("default");
    let user_ok = user.map(|u| u == want_user.as_bytes()).unwrap_or(want_user == "default");
    if user_ok && constant_time_eq(pass, required.as_bytes()) {
        s.authenticated = true;
        reply::ok()
    } else {
        reply::error(WRONGPASS)
    }
}

/// Compares passwords without stopping at the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn hello(p: &Proxy, s: &mut Session, args: &[Bytes]) -> Bytes {
    let mut proto = s.proto;
    if let Some(v) = args.get(1) {
        match parse_int(v) {
            Some(n @ 2..=3) => proto = n as u8,
            Some(_) => return reply::error("NOPROTO unsupported protocol version"),
            None => return reply::error("ERR Protocol version is not an integer or out of range"),
        }
    }
    let mut i = 2;
    let mut setname = None;
    let mut authed_now = false;
    while i < args.len() {
        if eq_ci(&args[i], "auth") && i + 2 < args.len() {
            let r = auth(p, s, Some(&args[i + 1]), &args[i + 2]);
            if crate::resp::is_error(&r) {
                return r;
            }
            authed_now = true;
            i += 3;
        } else if eq_ci(&args[i], "setname") && i + 1 < args.len() {
            setname = Some(args[i + 1].clone());
            i += 2;
        } else {
            return reply::error(&format!("ERR Syntax error in HELLO option '{}'", String::from_utf8_lossy(&args[i])));
        }
    }
    if !s.authenticated && !authed_now {
        return reply::error("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time");
    }
    if let Some(n) = setname {
        if !valid_name(&n) {
            return reply::error(BAD_NAME);
        }
        s.name = Some(n);
    }
    s.proto = proto;
    let version = if p.redis_version.is_empty() { "7.0.0" } else { p.redis_version.as_str() };
    reply::map(
        proto,
        &[
            (reply::bulk(b"server"), reply::bulk(b"redis")),
            (reply::bulk(b"version"), reply::bulk(version.as_bytes())),
            (reply::bulk(b"proto"), reply::int(proto as i64)),
            (reply::bulk(b"id"), reply::int(s.id as i64)),
            (reply::bulk(b"mode"), reply::bulk(b"standalone")),
            (reply::bulk(b"role"), reply::bulk(b"master")),
            (reply::bulk(b"modules"), Bytes::from_static(b"*0\r\n")),
        ],
    )
}

fn valid_name(n: &[u8]) -> bool {
    n.iter().all(|&c| (b'!'..=b'~').contains(&c))
}

fn client(p: &Proxy, s: &mut Session, args: &[Bytes]) -> Bytes {
    let Some(sub) = args.get(1) else { return crate::command::wrong_arity("client") };
    let sub_l = String::from_utf8_lossy(sub).to_ascii_lowercase();
    match sub_l.as_str() {
        "setname" if args.len() == 3 => {
            let n = &args[2];
            if !valid_name(n) {
                return reply::error(BAD_NAME);
            }
            s.name = if n.is_empty() { None } else { Some(n.clone()) };
            reply::ok()
        }
        "getname" if args.len() == 2 => match &s.name {
            Some(n) => reply::bulk(n),
            None => reply::null(s.proto),
        },
        "id" if args.len() == 2 => reply::int(s.id as i64),
        "setinfo" if args.len() == 4 => {
            if eq_ci(&args[2], "lib-name") || eq_ci(&args[2], "lib-ver") {
                if args[3].iter().any(|&c| !(b'!'..=b'~').contains(&c)) {
                    return reply::error(&format!(
                        "ERR {} cannot contain spaces, newlines or special characters.",
                        String::from_utf8_lossy(&args[2])
                    ));
                }
                reply::ok()
            } else {
                reply::error(&format!("ERR Unrecognized option '{}'", String::from_utf8_lossy(&args[2])))
            }
        }
        "info" if args.len() == 2 => reply::bulk(client_line(p, s).as_bytes()),
        "list" => reply::bulk(client_line(p, s).as_bytes()),
        "setname" | "getname" | "id" | "setinfo" | "info" => crate::command::wrong_arity(&format!("client|{sub_l}")),
        // The proxy's own connections to the nodes are never evicted for a client's sake.
        "no-evict" if args.len() == 3 && (eq_ci(&args[2], "on") || eq_ci(&args[2], "off")) => reply::ok(),
        "kill" | "pause" | "unpause" | "unblock" | "no-touch" | "reply" => reply::error(&format!(
            "ERR CLIENT {} is not supported through clusterless: it acts on one node's connections, and the proxy's clients are not the nodes' clients",
            sub_l.to_ascii_uppercase()
        )),
        "tracking" | "trackinginfo" | "caching" | "getredir" => reply::error(&format!(
            "ERR CLIENT {} is not supported through clusterless: client-side caching needs each node to send invalidations for one client connection",
            sub_l.to_ascii_uppercase()
        )),
        "help" => reply::array(&[reply::bulk(
            b"CLIENT SETNAME | GETNAME | ID | SETINFO | INFO | LIST are answered by clusterless.",
        )]),
        _ => reply::error(&format!("ERR unknown subcommand '{}'. Try CLIENT HELP.", String::from_utf8_lossy(sub))),
    }
}

fn client_line(p: &Proxy, s: &Session) -> String {
    let name = s.name.as_ref().map(|n| String::from_utf8_lossy(n).into_owned()).unwrap_or_default();
    format!(
        "id={} addr={} laddr={} fd=0 name={} age=0 idle=0 flags=N db=0 sub=0 psub=0 ssub=0 multi=-1 resp={} lib-name= lib-ver=\n",
        s.id, s.peer, p.local_addr, name, s.proto
    )
}
