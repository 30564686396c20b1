//! Keyspace notifications as one server sends them. In a cluster each node publishes the events
//! of its own keys only, and never over the bus, so a subscription to `__keyspace@0__:...` or
//! `__keyevent@0__:...` (or a pattern that can match them) is made on every master, on a
//! connection of its own, and follows the masters as the map changes. Each event then reaches
//! the client once: event channels' messages are taken from these connections only, and every
//! other message from the main subscription connection only (every node hears every PUBLISH).

use bytes::{Bytes, BytesMut};

use super::{Kind, PubSub};
use crate::resp;
use crate::route::Router;

/// Prefixes of the channels Redis publishes keyspace notifications on.
const PREFIXES: [&[u8]; 2] = [b"__keyspace@", b"__keyevent@"];

/// Whether `channel` is one keyspace notifications are published on.
pub(super) fn is_event_channel(channel: &[u8]) -> bool {
    PREFIXES.iter().any(|p| channel.starts_with(p))
}

/// Whether subscribing to `name` of this kind can bring keyspace notifications: an event channel,
/// or a glob pattern that can match one.
pub(super) fn may_carry_events(name: &[u8], pattern: bool) -> bool {
    if pattern {
        PREFIXES.iter().any(|p| glob_prefix(name, p))
    } else {
        is_event_channel(name)
    }
}

/// Whether glob `pattern` (Redis's syntax: `*`, `?`, `[...]`, `\x`) can match some string that
/// starts with `prefix`. A character class is taken as matching any one character: a pattern is
/// then subscribed where it might not match, which costs a connection, never an event.
fn glob_prefix(pattern: &[u8], prefix: &[u8]) -> bool {
    let (mut i, mut j) = (0, 0);
    while j < prefix.len() {
        let Some(&c) = pattern.get(i) else { return false };
        match c {
            b'*' => return true,
            b'?' => i += 1,
            b'[' => {
                // Skip to the closing bracket (a `\` escapes the next character).
                i += 1;
                while i < pattern.len() && pattern[i] != b']' {
                    i += if pattern[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'\\' if i + 1 < pattern.len() => {
                if pattern[i + 1] != prefix[j] {
                    return false;
                }
                i += 2;
            }
            _ => {
                if c != prefix[j] {
                    return false;
                }
                i += 1;
            }
        }
        j += 1;
    }
    true
}

impl PubSub {
    /// The channels and patterns held that can bring keyspace notifications.
    pub(super) fn carrying_events(&self) -> (Vec<Bytes>, Vec<Bytes>) {
        let chans = self.channels.iter().filter(|c| may_carry_events(c, false)).cloned().collect();
        let pats = self.patterns.iter().filter(|c| may_carry_events(c, true)).cloned().collect();
        (chans, pats)
    }

    /// Subscribes `names` (new ones, of `kind`) on every master's events connection, opening the
    /// missing connections with everything held; returns the confirmations to wait for.
    pub(super) async fn sub_events(&mut self, p: &Router, kind: Kind, names: &[Bytes]) -> Vec<(u64, Bytes)> {
        let mut waiting = Vec::new();
        let wire = self.wire(names);
        let mut cmd: Vec<&[u8]> = vec![kind.sub_word().as_bytes()];
        cmd.extend(wire.iter().map(|n| n.as_ref()));
        let payload = resp::encode_command(&cmd);
        for c in self.events.values_mut() {
            if c.wr.write_all(&payload).await.is_ok() {
                waiting.extend(wire.iter().map(|n| (c.id, n.clone())));
            }
        }
        // Masters without one yet get every subscription held plus these.
        let (mut chans, mut pats) = self.carrying_events();
        match kind {
            Kind::Channel => chans.extend(names.iter().cloned()),
            _ => pats.extend(names.iter().cloned()),
        }
        for (id, _) in self.open_events(p, &chans, &pats).await {
            waiting.extend(wire.iter().map(|n| (id, n.clone())));
        }
        waiting
    }

    /// Opens an events connection on each live master that has none, subscribed to `chans` and
    /// `pats`; returns (id, address) of those opened. Failures are left for the next repair.
    async fn open_events(&mut self, p: &Router, chans: &[Bytes], pats: &[Bytes]) -> Vec<(u64, String)> {
        let missing: Vec<String> = live_masters(p).into_iter().filter(|a| !self.events.contains_key(a)).collect();
        let (chans, pats) = (&self.wire(chans)[..], &self.wire(pats)[..]);
        let mut opened = Vec::new();
        for addr in missing {
            let Ok(mut c) = self.open(p, &addr).await else {
                self.needs_repair = true;
                continue;
            };
            let mut payload = BytesMut::new();
            for (word, names) in [("subscribe", chans), ("psubscribe", pats)] {
                if !names.is_empty() {
                    let mut cmd: Vec<&[u8]> = vec![word.as_bytes()];
                    cmd.extend(names.iter().map(|n| n.as_ref()));
                    payload.extend_from_slice(&resp::encode_command(&cmd));
                }
            }
            if c.wr.write_all(&payload).await.is_err() {
                self.needs_repair = true;
                continue;
            }
            opened.push((c.id, addr.clone()));
            self.events.insert(addr, c);
        }
        opened
    }

    /// Makes the events connections match the live masters: dropped where a node is no longer
    /// one (a demoted master's replica stream would repeat its new master's events), opened
    /// where a master has none. Returns false when one could not be opened.
    pub(super) async fn sync_events(&mut self, p: &Router) -> bool {
        let (chans, pats) = self.carrying_events();
        if chans.is_empty() && pats.is_empty() {
            self.events.clear();
            return true;
        }
        let masters = live_masters(p);
        self.events.retain(|a, _| masters.contains(a));
        let before = self.needs_repair;
        self.needs_repair = false;
        self.open_events(p, &chans, &pats).await;
        let ok = !self.needs_repair;
        self.needs_repair |= before;
        ok
    }
}

/// The masters that own slots and are not failed, by address.
fn live_masters(p: &Router) -> Vec<String> {
    let t = p.topology.load();
    t.masters().into_iter().filter(|a| !t.nodes.iter().any(|n| n.addr == *a && n.failed)).map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_channels_and_patterns_that_can_match_them() {
        assert!(is_event_channel(b"__keyspace@0__:user:1"));
        assert!(is_event_channel(b"__keyevent@0__:expired"));
        assert!(!is_event_channel(b"news"));
        for p in [
            "*",
            "__key*",
            "__keyspace@0__:*",
            "__key???ce@*",
            "__key[es]*",
            "_\\_keyevent@0__:del",
            "__keyevent@?__:*",
        ] {
            assert!(may_carry_events(p.as_bytes(), true), "{p}");
        }
        for p in ["news*", "__keyspace", "x*", "__keyspacE@*", "?"] {
            assert!(!may_carry_events(p.as_bytes(), true), "{p}");
        }
        // A channel is one only if it is an event channel itself.
        assert!(!may_carry_events(b"*", false));
    }
}
