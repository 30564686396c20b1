//! Keyspace notification channels under several databases (`keyspace.databases`): the names
//! subscribed on the nodes, and the nodes' messages under the client's names
//! ([`crate::keyspace::events`]).

use bytes::{Bytes, BytesMut};

use super::{events, Kind, PubSub};
use crate::keyspace::events as db_events;
use crate::resp::{self, reply};

impl PubSub {
    /// The node names of `names` (keyspace notification channels of other databases than a
    /// plain 0 differ).
    pub(super) fn wire(&self, names: &[Bytes]) -> Vec<Bytes> {
        match &self.dbs {
            Some(d) => names.iter().map(|n| db_events::to_node(d, n).unwrap_or_else(|| n.clone())).collect(),
            None => names.to_vec(),
        }
    }

    /// The node names of `removed` that no subscription still held needs (two databases'
    /// `__keyevent@<n>__:set` are one node channel).
    pub(super) fn unneeded(&self, kind: Kind, removed: &[Bytes]) -> Vec<Bytes> {
        let held: Vec<Bytes> = match kind {
            Kind::Channel => self.channels.iter().cloned().collect(),
            Kind::Pattern => self.patterns.iter().cloned().collect(),
            Kind::Shard => return removed.to_vec(),
        };
        let held = self.wire(&held);
        let mut out: Vec<Bytes> = Vec::new();
        for n in self.wire(removed) {
            if !held.contains(&n) && !out.contains(&n) {
                out.push(n);
            }
        }
        out
    }

    /// A node's message or pmessage with the names of the client's databases, once per
    /// subscription it matches; `None` when none does.
    pub(super) fn translated(&self, word: &[u8], el: &[Bytes], from_events: bool) -> Option<Bytes> {
        let d = self.dbs.as_ref()?;
        let pattern = word == b"pmessage";
        let at = usize::from(pattern);
        let channel = resp::as_bulk(el.get(1 + at)?)??;
        let payload = resp::as_bulk(el.get(2 + at)?)??;
        if events::is_event_channel(&channel) != from_events {
            return None;
        }
        let (chan, payload) = db_events::from_node(d, &channel, &payload)?;
        let mut out = BytesMut::new();
        let head: &[u8] = if self.proto >= 3 { b">" } else { b"*" };
        if !pattern {
            if !self.channels.contains(&chan) {
                return None;
            }
            out.extend_from_slice(head);
            out.extend_from_slice(b"3\r\n");
            for part in [&b"message"[..], &chan, &payload] {
                out.extend_from_slice(&reply::bulk(part));
            }
            return Some(out.freeze());
        }
        let node_pattern = resp::as_bulk(el.get(1)?)??;
        for p in &self.patterns {
            let wire = db_events::to_node(d, p).unwrap_or_else(|| p.clone());
            if wire == node_pattern && db_events::same_database(p, &chan) {
                out.extend_from_slice(head);
                out.extend_from_slice(b"4\r\n");
                for part in [&b"pmessage"[..], p, &chan, &payload] {
                    out.extend_from_slice(&reply::bulk(part));
                }
            }
        }
        (!out.is_empty()).then(|| out.freeze())
    }
}
