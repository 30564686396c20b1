//! The commands the proxy answers itself, in Redis's own words: PING, ECHO, SELECT, QUIT, AUTH,
//! HELLO, RESET, ACL WHOAMI, CLIENT, CLUSTER and friends.

use bytes::Bytes;

use super::{clients, Session, DEFAULT_USER};
use crate::errors::{self, Refusal};
use crate::resp::{parse_int, reply};
use crate::route::Router;

fn eq_ci(a: &[u8], b: &str) -> bool {
    a.eq_ignore_ascii_case(b.as_bytes())
}

/// Answers a command of class `Local`. `name` is the spec's lower-case name.
pub fn handle(p: &Router, s: &mut Session, name: &str, args: &[Bytes]) -> Bytes {
    let r = answer(p, s, name, args);
    // Whatever it changed (name, user, protocol) shows in the other clients' CLIENT LIST.
    s.publish();
    r
}

fn answer(p: &Router, s: &mut Session, name: &str, args: &[Bytes]) -> Bytes {
    match name {
        // PING's arity is "at least 1" in the table; Redis's PING itself refuses a second argument.
        "ping" if args.len() > 2 => errors::wrong_arity("ping"),
        "ping" => match args.get(1) {
            Some(m) => reply::bulk(m),
            None => Bytes::from_static(b"+PONG\r\n"),
        },
        "echo" => reply::bulk(args.get(1).map(|a| a.as_ref()).unwrap_or_default()),
        "select" => match args.get(1).map(|a| s.dbs.index(a)) {
            Some(Ok(db)) => {
                s.select(db);
                reply::ok()
            }
            Some(Err(e)) => e,
            None => errors::wrong_arity("select"),
        },
        "quit" => {
            s.quit = true;
            reply::ok()
        }
        "auth" => match args.len() {
            2 => auth(s, None, &args[1]),
            3 => auth(s, Some(&args[1]), &args[2]),
            _ => errors::syntax(),
        },
        "hello" => hello(p, s, args),
        "acl|whoami" => reply::bulk(&s.user),
        "reset" => {
            s.user = Bytes::from_static(DEFAULT_USER);
            s.name = None;
            s.proto = 2;
            s.authenticated = !s.auth.required();
            s.login = 0;
            s.replies.on();
            s.select(0);
            s.tracking.off();
            Bytes::from_static(b"+RESET\r\n")
        }
        // A subcommand Redis does not know gets its usual answer, also with cluster support off.
        "cluster" if args.len() > 1 => errors::unknown_subcommand(&args[1], "cluster"),
        "cluster" | "readonly" | "readwrite" | "asking" => errors::not_cluster(),
        n if n.starts_with("cluster|") => errors::not_cluster(),
        n if n == "client" || n.starts_with("client|") => client(p, s, args),
        _ => errors::internal_routing(),
    }
}

fn auth(s: &mut Session, user: Option<&[u8]>, pass: &[u8]) -> Bytes {
    // The config, not the session, is read below while the session is changed.
    let cfg = s.auth.clone();
    if let Some(u) = user {
        let listed = cfg.users.iter().find(|listed| listed.name.as_bytes() == u);
        if let Some(want) = listed {
            return if want.password.matches(pass) {
                s.authenticated = true;
                s.login = cfg.login_of(u);
                s.user = Bytes::copy_from_slice(want.name.as_bytes());
                reply::ok()
            } else {
                errors::wrongpass()
            };
        }
    }
    let Some(required) = &cfg.requirepass else {
        if cfg.required() {
            // Only the listed users exist; the default user is off, as with `user default off`.
            return errors::wrongpass();
        }
        // Redis without a password: the default user is "nopass", so AUTH default <anything> is OK.
        return match user {
            None => errors::no_password(),
            Some(u) if eq_ci(u, "default") => {
                s.user = Bytes::from_static(DEFAULT_USER);
                reply::ok()
            }
            Some(_) => errors::wrongpass(),
        };
    };
    let want_user = cfg.user.as_deref().unwrap_or("default");
    let user_ok = user.map(|u| u == want_user.as_bytes()).unwrap_or(want_user == "default");
    if user_ok && required.matches(pass) {
        s.authenticated = true;
        s.login = 0;
        s.user = Bytes::copy_from_slice(want_user.as_bytes());
        reply::ok()
    } else {
        errors::wrongpass()
    }
}

fn hello(p: &Router, s: &mut Session, args: &[Bytes]) -> Bytes {
    let mut proto = s.proto;
    if let Some(v) = args.get(1) {
        match parse_int(v) {
            Some(n @ 2..=3) => proto = n as u8,
            Some(_) => return errors::noproto(),
            None => return errors::proto_not_an_integer(),
        }
    }
    let mut i = 2;
    let mut setname = None;
    let mut authed_now = false;
    while i < args.len() {
        if eq_ci(&args[i], "auth") && i + 2 < args.len() {
            let r = auth(s, Some(&args[i + 1]), &args[i + 2]);
            if crate::resp::is_error(&r) {
                return r;
            }
            authed_now = true;
            i += 3;
        } else if eq_ci(&args[i], "setname") && i + 1 < args.len() {
            setname = Some(args[i + 1].clone());
            i += 2;
        } else {
            return errors::hello_option(&args[i]);
        }
    }
    if !s.authenticated && !authed_now {
        return errors::noauth_hello();
    }
    if let Some(n) = setname {
        if !valid_name(&n) {
            return errors::bad_client_name();
        }
        s.name = Some(n);
    }
    s.proto = proto;
    let version = p.stats.version();
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

fn client(p: &Router, s: &mut Session, args: &[Bytes]) -> Bytes {
    let Some(sub) = args.get(1) else { return errors::wrong_arity("client") };
    let sub_l = String::from_utf8_lossy(sub).to_ascii_lowercase();
    match sub_l.as_str() {
        "setname" if args.len() == 3 => {
            let n = &args[2];
            if !valid_name(n) {
                return errors::bad_client_name();
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
                    return errors::setinfo_value(&args[2]);
                }
                let mut ident = s.entry.ident.lock();
                let field = if eq_ci(&args[2], "lib-name") { &mut ident.lib_name } else { &mut ident.lib_ver };
                *field = args[3].clone();
                reply::ok()
            } else {
                errors::unrecognized_option(&args[2])
            }
        }
        "info" if args.len() == 2 => clients::info(s),
        "list" => clients::list(p, s, args),
        "kill" if args.len() >= 3 => clients::kill(p, s, args),
        "setname" | "getname" | "id" | "setinfo" | "info" | "kill" => errors::wrong_arity(&format!("client|{sub_l}")),
        // Flags CLIENT LIST shows. The proxy's own connections to the nodes are never evicted
        // for a client's sake, and it keeps no access times for NO-TOUCH to spare.
        "no-evict" | "no-touch" if args.len() == 3 && (eq_ci(&args[2], "on") || eq_ci(&args[2], "off")) => {
            let flag = if sub_l == "no-evict" { &s.entry.no_evict } else { &s.entry.no_touch };
            flag.store(eq_ci(&args[2], "on"), std::sync::atomic::Ordering::Relaxed);
            reply::ok()
        }
        "no-evict" | "no-touch" if args.len() == 3 => errors::syntax(),
        "no-evict" | "no-touch" => errors::wrong_arity(&format!("client|{sub_l}")),
        // OFF and SKIP are not answered (the connection drops what they return), ON is.
        "reply" if args.len() == 3 && eq_ci(&args[2], "on") => {
            s.replies.on();
            reply::ok()
        }
        "reply" if args.len() == 3 && eq_ci(&args[2], "off") => {
            s.replies.off = true;
            Bytes::new()
        }
        "reply" if args.len() == 3 && eq_ci(&args[2], "skip") => {
            s.replies.skip_next = !s.replies.off;
            Bytes::new()
        }
        "reply" if args.len() == 3 => errors::syntax(),
        "pause" if args.len() == 3 || args.len() == 4 => {
            let all = match args.get(3) {
                None => true,
                Some(m) if eq_ci(m, "all") => true,
                Some(m) if eq_ci(m, "write") => false,
                Some(_) => return errors::pause_mode(),
            };
            let ms = match parse_int(&args[2]) {
                Some(ms) if ms < 0 => return errors::timeout_negative(),
                Some(ms) => ms as u64,
                None => return errors::timeout_not_an_integer(),
            };
            let until = tokio::time::Instant::now() + std::time::Duration::from_millis(ms);
            p.stats.clients.pause(until, all);
            reply::ok()
        }
        "unpause" if args.len() == 2 => {
            p.stats.clients.unpause();
            reply::ok()
        }
        "unblock" if args.len() == 3 || args.len() == 4 => clients::unblock(p, s, args),
        "unblock" if args.len() > 4 => errors::subcommand_syntax(sub, "client"),
        "pause" if args.len() > 4 => errors::subcommand_syntax(sub, "client"),
        "pause" | "unpause" => errors::wrong_arity(&format!("client|{sub_l}")),
        "reply" => errors::wrong_arity("client|reply"),
        "tracking" if args.len() >= 3 => s.tracking.command(p, args),
        "caching" if args.len() == 3 => s.tracking.caching(&args[2]),
        "getredir" if args.len() == 2 => s.tracking.getredir(),
        "trackinginfo" if args.len() == 2 => s.tracking.info(s.proto),
        "tracking" | "caching" | "getredir" | "trackinginfo" => errors::wrong_arity(&format!("client|{sub_l}")),
        _ if refusal_of(&format!("client|{sub_l}")).is_some() => {
            let name = format!("client|{sub_l}");
            refusal_of(&name).unwrap_or(Refusal::InMulti).frame(&name)
        }
        "help" => reply::array(&[reply::bulk(
            b"CLIENT SETNAME | GETNAME | ID | SETINFO | INFO | LIST | KILL | NO-EVICT | NO-TOUCH | REPLY | PAUSE | UNPAUSE | UNBLOCK | TRACKING | CACHING | GETREDIR | TRACKINGINFO are answered by clusterless.",
        )]),
        _ => errors::unknown_subcommand(sub, "client"),
    }
}

/// The CLIENT subcommands the proxy refuses, and why (also inside MULTI, at queue time).
pub fn refusal_of(name: &str) -> Option<Refusal> {
    match name.strip_prefix("client|")? {
        // Reached only inside MULTI (the command itself is answered above): OFF and SKIP answer
        // nothing, which would leave a hole in EXEC's array; tracking is the client's connection's.
        "reply" | "tracking" | "trackinginfo" | "caching" | "getredir" => Some(Refusal::InMulti),
        _ => None,
    }
}
