//! Client-side caching through the proxy: CLIENT TRACKING, CACHING, GETREDIR and TRACKINGINFO, in
//! Redis 7's semantics and wording. One client's mode lives in its session ([`Tracking`]); what
//! all clients track, and the fan-out of invalidations, in the shared [`Hub`]; the links that
//! bring every master's changed keys in [`links`]. A client's invalidations reach it (RESP3: a
//! push on its own connection) or the client it redirects to (RESP2: the `__redis__:invalidate`
//! message on a subscribed connection) through that client's inbox, written between its replies
//! ([`frame`]).

mod hub;
mod links;

pub use hub::Hub;

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::command::CommandSpec;
use crate::errors;
use crate::resp::{self, parse_int, reply};
use crate::route::Router;
use crate::stats::inbox::Inval;
use crate::stats::{Count, Held};

fn eq_ci(a: &[u8], b: &str) -> bool {
    a.eq_ignore_ascii_case(b.as_bytes())
}

/// One client's CLIENT TRACKING mode, while on.
#[derive(Debug, Clone, Default)]
struct Mode {
    /// CLIENT TRACKING ... REDIRECT id (0: none).
    redirect: u64,
    bcast: bool,
    prefixes: Vec<Bytes>,
    optin: bool,
    optout: bool,
    noloop: bool,
    /// CLIENT CACHING yes (OPTIN) / no (OPTOUT), for the next command.
    caching: bool,
}

/// One client's tracking, in its session. Turned off when the client leaves.
pub struct Tracking {
    hub: Arc<Hub>,
    id: u64,
    mode: Option<Mode>,
    /// Counted in INFO's tracking_clients while on.
    _held: Option<Held>,
}

impl std::fmt::Debug for Tracking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracking").field("id", &self.id).field("mode", &self.mode).finish_non_exhaustive()
    }
}

impl Drop for Tracking {
    fn drop(&mut self) {
        if self.mode.is_some() {
            self.hub.disable(self.id);
        }
    }
}

impl Tracking {
    pub fn new(hub: Arc<Hub>, id: u64) -> Tracking {
        Tracking { hub, id, mode: None, _held: None }
    }

    pub fn is_on(&self) -> bool {
        self.mode.is_some()
    }

    /// CLIENT TRACKING off, and RESET.
    pub fn off(&mut self) {
        if self.mode.take().is_some() {
            self.hub.disable(self.id);
            self._held = None;
        }
    }

    /// After CLIENT TRACKING (`reply`, with tracking `was_on` before it): waits (a bounded while)
    /// for the links to every master, so that nothing the client reads can change unseen. When
    /// they do not come up, tracking just turned on is turned off again and the command fails:
    /// a cache without invalidations would serve stale values.
    pub async fn settle(&mut self, reply: Bytes, was_on: bool) -> Bytes {
        if self.mode.is_none() || links::wait_ready(&self.hub).await || was_on {
            return reply;
        }
        self.off();
        errors::tracking_links_down()
    }

    /// What a command the client sent means for its tracking: the keys a read-only command
    /// reads are tracked (default mode, as OPTIN/OPTOUT and CLIENT CACHING allow), the keys a
    /// write writes are its own (NOLOOP); CLIENT CACHING lasts for one command (outside MULTI).
    pub fn note(&mut self, spec: &CommandSpec, args: &[Bytes], in_multi: bool) {
        let Some(m) = self.mode.as_mut() else { return };
        // Redis clears the flag after each command but CLIENT ones, outside MULTI; MULTI itself
        // enters MULTI, so the reads queued after it keep the flag until EXEC.
        let keeps = spec.name.starts_with("client") || spec.name == "multi";
        // Scripts and functions may read their keys (Redis tracks the reads inside them): their
        // declared keys are tracked too, which is never less than needed.
        let reads = spec.readonly || spec.name.starts_with("eval") || spec.name.starts_with("fcall");
        if reads && !m.bcast && !((m.optin && !m.caching) || (m.optout && m.caching)) {
            if let Some(pos) = spec.key_positions(args) {
                self.hub.remember(self.id, pos.iter().filter_map(|&i| args.get(i)));
            }
        }
        if m.noloop && spec.may_write {
            if let Some(pos) = spec.key_positions(args) {
                self.hub.wrote(self.id, pos.iter().filter_map(|&i| args.get(i)));
            }
        }
        if !in_multi && !keeps {
            m.caching = false;
        }
    }

    /// CLIENT TRACKING on|off [REDIRECT id] [PREFIX p ...] [BCAST] [OPTIN] [OPTOUT] [NOLOOP].
    pub fn command(&mut self, p: &Router, args: &[Bytes]) -> Bytes {
        let on = if eq_ci(&args[2], "on") {
            true
        } else if eq_ci(&args[2], "off") {
            false
        } else {
            return errors::syntax();
        };
        let mut new = Mode::default();
        let mut i = 3;
        while i < args.len() {
            let more = i + 1 < args.len();
            let a = &args[i];
            if eq_ci(a, "redirect") && more {
                i += 1;
                if new.redirect != 0 {
                    return errors::tracking_one_redirect();
                }
                let Some(id) = parse_int(&args[i]) else { return errors::not_an_integer() };
                match u64::try_from(id).ok().filter(|&id| id > 0 && p.stats.clients.get(id).is_some()) {
                    Some(id) => new.redirect = id,
                    None => return errors::tracking_no_redirect_target(),
                }
            } else if eq_ci(a, "bcast") {
                new.bcast = true;
            } else if eq_ci(a, "optin") {
                new.optin = true;
            } else if eq_ci(a, "optout") {
                new.optout = true;
            } else if eq_ci(a, "noloop") {
                new.noloop = true;
            } else if eq_ci(a, "prefix") && more {
                i += 1;
                new.prefixes.push(args[i].clone());
            } else {
                return errors::syntax();
            }
            i += 1;
        }
        if !on {
            self.off();
            return reply::ok();
        }
        if !new.bcast && !new.prefixes.is_empty() {
            return errors::tracking_prefix_needs_bcast();
        }
        if let Some(old) = &self.mode {
            if old.bcast != new.bcast {
                return errors::tracking_switch_bcast();
            }
        }
        if new.bcast && (new.optin || new.optout) {
            return errors::tracking_optin_bcast();
        }
        if new.optin && new.optout {
            return errors::tracking_optin_and_optout();
        }
        if let Some(old) = &self.mode {
            if (new.optin && old.optout) || (new.optout && old.optin) {
                return errors::tracking_switch_optin();
            }
        }
        let old_prefixes = self.mode.as_ref().map(|m| m.prefixes.clone()).unwrap_or_default();
        if new.bcast {
            let overlap = |a: &[u8], b: &[u8]| a.starts_with(b) || b.starts_with(a);
            for (j, pre) in new.prefixes.iter().enumerate() {
                if let Some(e) = old_prefixes.iter().find(|e| overlap(e, pre)) {
                    return errors::tracking_prefix_overlap(pre, e, true);
                }
                if let Some(o) = new.prefixes[j + 1..].iter().find(|o| overlap(o, pre)) {
                    return errors::tracking_prefix_overlap(pre, o, false);
                }
            }
            if new.prefixes.is_empty() && !old_prefixes.iter().any(|e| e.is_empty()) {
                new.prefixes.push(Bytes::new());
            }
            let mut all = old_prefixes;
            all.extend(new.prefixes.into_iter().map(|p| Bytes::copy_from_slice(&p)));
            new.prefixes = all;
        }
        new.caching = false;
        let target = if new.redirect != 0 { new.redirect } else { self.id };
        self.hub.enable(self.id, target, new.bcast.then(|| new.prefixes.clone()), new.noloop);
        links::start(&self.hub);
        if self._held.is_none() {
            self._held = Some(p.stats.hold(Count::Tracking));
        }
        self.mode = Some(new);
        reply::ok()
    }

    /// CLIENT CACHING yes|no.
    pub fn caching(&mut self, arg: &[u8]) -> Bytes {
        let Some(m) = self.mode.as_mut() else { return errors::caching_not_tracking() };
        if eq_ci(arg, "yes") {
            if !m.optin {
                return errors::caching_yes_needs_optin();
            }
        } else if eq_ci(arg, "no") {
            if !m.optout {
                return errors::caching_no_needs_optout();
            }
        } else {
            return errors::syntax();
        }
        m.caching = true;
        reply::ok()
    }

    /// What CLIENT LIST shows: `redir` (-1 off, 0 no redirect) and whether in BCAST mode.
    pub fn shown(&self) -> (i64, bool) {
        self.mode.as_ref().map_or((-1, false), |m| (m.redirect as i64, m.bcast))
    }

    /// CLIENT GETREDIR: the redirect target, 0 without one, -1 when not tracking.
    pub fn getredir(&self) -> Bytes {
        reply::int(self.mode.as_ref().map_or(-1, |m| m.redirect as i64))
    }

    /// CLIENT TRACKINGINFO, as Redis's map of flags, redirect and prefixes.
    pub fn info(&self, proto: u8) -> Bytes {
        let (flags, redirect, prefixes) = match &self.mode {
            None => (vec![reply::bulk(b"off")], -1, Vec::new()),
            Some(m) => {
                let mut f = vec![reply::bulk(b"on")];
                let mut flag = |on: bool, name: &[u8]| {
                    if on {
                        f.push(reply::bulk(name));
                    }
                };
                flag(m.bcast, b"bcast");
                flag(m.optin, b"optin");
                flag(m.optout, b"optout");
                flag(m.optin && m.caching, b"caching-yes");
                flag(m.optout && m.caching, b"caching-no");
                flag(m.noloop, b"noloop");
                flag(m.redirect != 0 && self.hub.broken(self.id), b"broken_redirect");
                let pre = if m.bcast { m.prefixes.iter().map(|p| reply::bulk(p)).collect() } else { Vec::new() };
                (f, m.redirect as i64, pre)
            }
        };
        reply::map(
            proto,
            &[
                (reply::bulk(b"flags"), reply::set(proto, &flags)),
                (reply::bulk(b"redirect"), reply::int(redirect)),
                (reply::bulk(b"prefixes"), reply::array(&prefixes)),
            ],
        )
    }
}

/// An invalidation as the client `proto` (subscribed or not) receives it: RESP3, the
/// `invalidate` push; RESP2, the `__redis__:invalidate` message, written only to a client in
/// subscribed mode (a redirect target). `None`: nothing this client can be sent.
pub fn frame(m: &Inval, proto: u8, subscribed: bool) -> Option<Bytes> {
    let mut out = BytesMut::new();
    let value = |out: &mut BytesMut, keys: Option<&[Bytes]>| match keys {
        Some(keys) => {
            resp::put_array_header(out, keys.len());
            for k in keys {
                resp::put_bulk(out, k);
            }
        }
        None => out.put_slice(if proto >= 3 { b"_\r\n" } else { b"$-1\r\n" }),
    };
    let keys = match m {
        Inval::Keys(k) => Some(&k[..]),
        Inval::Flush => None,
        Inval::RedirBroken(id) => {
            if proto < 3 {
                return None;
            }
            out.put_slice(b">2\r\n");
            resp::put_bulk(&mut out, b"tracking-redir-broken");
            resp::put_int(&mut out, *id as i64);
            return Some(out.freeze());
        }
    };
    if proto >= 3 {
        out.put_slice(b">2\r\n");
        resp::put_bulk(&mut out, b"invalidate");
    } else if subscribed {
        out.put_slice(b"*3\r\n");
        resp::put_bulk(&mut out, b"message");
        resp::put_bulk(&mut out, b"__redis__:invalidate");
    } else {
        return None;
    }
    value(&mut out, keys);
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_as_redis_writes_them() {
        let k = Inval::Keys(vec![Bytes::from_static(b"k")]);
        assert_eq!(frame(&k, 3, false).as_deref(), Some(&b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n"[..]));
        assert_eq!(frame(&Inval::Flush, 3, false).as_deref(), Some(&b">2\r\n$10\r\ninvalidate\r\n_\r\n"[..]));
        assert_eq!(
            frame(&k, 2, true).as_deref(),
            Some(&b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n*1\r\n$1\r\nk\r\n"[..])
        );
        assert_eq!(
            frame(&Inval::Flush, 2, true).as_deref(),
            Some(&b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n$-1\r\n"[..])
        );
        assert_eq!(frame(&k, 2, false), None);
    }
}
