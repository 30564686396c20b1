//! Pub/Sub for one client: SUBSCRIBE / PSUBSCRIBE on one exclusive connection to a master (the
//! cluster broadcasts PUBLISH to every node, so any node sees every message), SSUBSCRIBE on one
//! exclusive connection per node owning the channels' slots. The proxy keeps the client's
//! subscription sets itself, answers the confirmations with the client's own counts, and repairs
//! subscriptions without the client noticing: when the node behind them dies, leaves the map, or
//! (shard channels) gives up the slot, they are made again on the new node. Messages published
//! during the gap may be missed, as with pub/sub anywhere. Keyspace notifications, which each node
//! publishes for its own keys only, are subscribed on every master ([`events`]), under each
//! database's names ([`databases`]). The connections themselves, and their repair: [`conn`].

mod conn;
mod databases;
mod events;

pub use conn::Event;
use conn::SubConn;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

use crate::backend::{BackendError, Reason};
use crate::errors;
use crate::keyspace::Databases;
use crate::memory::Meter;
use crate::resp::{self, reply};
use crate::route::Router;
use crate::slot;

/// Why a subscription could not be made.
#[derive(Debug, thiserror::Error)]
enum SubscribeError {
    #[error("no master known")]
    NoMaster,
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// The kinds of subscription.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Channel,
    Pattern,
    Shard,
}

impl Kind {
    fn sub_word(self) -> &'static str {
        match self {
            Kind::Channel => "subscribe",
            Kind::Pattern => "psubscribe",
            Kind::Shard => "ssubscribe",
        }
    }
    fn unsub_word(self) -> &'static str {
        match self {
            Kind::Channel => "unsubscribe",
            Kind::Pattern => "punsubscribe",
            Kind::Shard => "sunsubscribe",
        }
    }
}

/// One client's subscriptions.
pub struct PubSub {
    proto: u8,
    /// The node credentials its subscription connections use.
    login: u16,
    channels: BTreeSet<Bytes>,
    patterns: BTreeSet<Bytes>,
    /// Shard channel -> the node it is subscribed on.
    shard: BTreeMap<Bytes, String>,
    main: Option<SubConn>,
    shard_conns: HashMap<String, SubConn>,
    /// Per master, the connection carrying the subscriptions that can bring keyspace notifications.
    events: HashMap<String, SubConn>,
    /// Frames of every subscription connection, in the order they came. Not bounded by the
    /// channel but by the client's output limit: what waits here counts in `meter`.
    tx: mpsc::UnboundedSender<Event>,
    rx: mpsc::UnboundedReceiver<Event>,
    meter: Arc<Meter>,
    next_id: u64,
    /// Something must be subscribed again (a connection died, a slot moved).
    pub needs_repair: bool,
    /// With several databases: keyspace notification channels are translated to and from the
    /// nodes' (`keyspace::events`).
    dbs: Option<Arc<Databases>>,
}

impl Drop for PubSub {
    /// Out of the pubsub class; what its subscriptions queued and the client never took is freed
    /// with the channel.
    fn drop(&mut self) {
        self.meter.set_pubsub(false);
        // The readers first (they run on this thread: stopped once aborted), then what they sent.
        self.main = None;
        self.shard_conns.clear();
        self.events.clear();
        while let Ok(ev) = self.rx.try_recv() {
            if let Event::Frame(_, f) = ev {
                self.meter.unqueue(f.len());
            }
        }
    }
}

impl PubSub {
    pub fn new(proto: u8, login: u16, meter: Arc<Meter>, dbs: &Arc<Databases>) -> PubSub {
        let (tx, rx) = mpsc::unbounded_channel();
        PubSub {
            proto,
            login,
            channels: BTreeSet::new(),
            patterns: BTreeSet::new(),
            shard: BTreeMap::new(),
            main: None,
            shard_conns: HashMap::new(),
            events: HashMap::new(),
            tx,
            rx,
            meter,
            next_id: 0,
            needs_repair: false,
            dbs: dbs.several().then(|| dbs.clone()),
        }
    }

    /// True while the client holds any subscription (RESP2 clients are then in subscribed mode).
    pub fn active(&self) -> bool {
        !(self.channels.is_empty() && self.patterns.is_empty() && self.shard.is_empty())
    }

    /// Channels, patterns and shard channels held (CLIENT LIST's `sub`, `psub`, `ssub`).
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.channels.len(), self.patterns.len(), self.shard.len())
    }

    /// The next event from any subscription connection.
    pub async fn next_event(&mut self) -> Option<Event> {
        let ev = self.rx.recv().await;
        if let Some(Event::Frame(_, f)) = &ev {
            self.meter.unqueue(f.len());
        }
        ev
    }

    fn confirm(&self, word: &str, name: Option<&[u8]>, count: usize) -> Bytes {
        let mut out = BytesMut::new();
        out.extend_from_slice(if self.proto >= 3 { b">3\r\n" } else { b"*3\r\n" });
        out.extend_from_slice(&reply::bulk(word.as_bytes()));
        match name {
            Some(n) => out.extend_from_slice(&reply::bulk(n)),
            None => out.extend_from_slice(&reply::null(self.proto)),
        }
        out.extend_from_slice(&reply::int(count as i64));
        out.freeze()
    }

    fn count(&self, kind: Kind) -> usize {
        match kind {
            Kind::Shard => self.shard.len(),
            _ => self.channels.len() + self.patterns.len(),
        }
    }

    /// The connection for channels and patterns, opened on a live master when there is none.
    async fn main_conn(&mut self, p: &Router) -> Result<&mut SubConn, SubscribeError> {
        if self.main.is_none() {
            let masters: Vec<String> = {
                let t = p.topology.load();
                let mut m: Vec<(bool, String)> = t
                    .masters()
                    .into_iter()
                    .map(|a| (t.nodes.iter().any(|n| n.addr == a && n.failed), a.to_string()))
                    .collect();
                m.sort_by_key(|(failed, _)| *failed);
                let start = p.next_any();
                let n = m.len().max(1);
                (0..m.len()).map(|i| m[(start + i) % n].1.clone()).collect()
            };
            let mut last = SubscribeError::NoMaster;
            for a in masters {
                match self.open(p, &a).await {
                    Ok(c) => {
                        self.main = Some(c);
                        break;
                    }
                    Err(e) => last = e,
                }
            }
            if self.main.is_none() {
                return Err(last);
            }
        }
        self.main.as_mut().ok_or(SubscribeError::NoMaster)
    }

    async fn shard_conn(&mut self, p: &Router, addr: &str) -> Result<&mut SubConn, SubscribeError> {
        if !self.shard_conns.contains_key(addr) {
            let c = self.open(p, addr).await?;
            self.shard_conns.insert(addr.to_string(), c);
        }
        // Inserted just above when missing.
        self.shard_conns.get_mut(addr).ok_or(SubscribeError::NoMaster)
    }

    /// SUBSCRIBE / PSUBSCRIBE / SSUBSCRIBE: returns what to write to the client, in order (the
    /// confirmations, after any message that arrived while the nodes confirmed).
    pub async fn subscribe(&mut self, p: &Router, kind: Kind, names: &[Bytes]) -> Vec<Bytes> {
        let mut out = Vec::new();
        let mut fresh: Vec<Bytes> = Vec::new();
        for n in names {
            let known = match kind {
                Kind::Channel => self.channels.contains(n),
                Kind::Pattern => self.patterns.contains(n),
                Kind::Shard => self.shard.contains_key(n),
            };
            if !known && !fresh.contains(n) {
                fresh.push(n.clone());
            }
        }
        if !fresh.is_empty() {
            // Wait for the nodes' own confirmations: a message published after the client saw its
            // confirmation must reach it.
            let mut waiting: Vec<(u64, Bytes)> = Vec::new();
            let sent = if kind == Kind::Shard {
                let mut by_node: BTreeMap<String, Vec<Bytes>> = BTreeMap::new();
                {
                    let t = p.topology.load();
                    for c in &fresh {
                        match t.master_for(slot::slot(c)) {
                            Some(a) => by_node.entry(a.to_string()).or_default().push(c.clone()),
                            None => return vec![errors::slot_not_served()],
                        }
                    }
                }
                let mut r = Ok(());
                for (addr, chans) in by_node {
                    match self.send_sub(p, kind, Some(&addr), &chans).await {
                        Ok(id) => {
                            waiting.extend(chans.iter().map(|c| (id, c.clone())));
                            for c in chans {
                                self.shard.insert(c, addr.clone());
                            }
                        }
                        Err(e) => r = Err(e),
                    }
                }
                r
            } else {
                match self.send_sub(p, kind, None, &fresh).await {
                    Ok(id) => {
                        waiting.extend(self.wire(&fresh).into_iter().map(|c| (id, c)));
                        let carrying: Vec<Bytes> = fresh
                            .iter()
                            .filter(|n| events::may_carry_events(n, kind == Kind::Pattern))
                            .cloned()
                            .collect();
                        if !carrying.is_empty() {
                            waiting.extend(self.sub_events(p, kind, &carrying).await);
                        }
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            };
            if let Err(e) = sent {
                return vec![errors::proxy(format_args!("cannot subscribe: {e}"))];
            }
            let deadline = tokio::time::Instant::now() + p.backend.config().request_timeout;
            while !waiting.is_empty() {
                match tokio::time::timeout_at(deadline, self.next_event()).await {
                    Ok(Some(Event::Frame(id, f))) => {
                        let el = resp::aggregate_elements(&f).unwrap_or_default();
                        let word = el.first().and_then(|w| resp::as_bulk(w).flatten());
                        let name = el.get(1).and_then(|w| resp::as_bulk(w).flatten());
                        if word.as_deref() == Some(kind.sub_word().as_bytes()) {
                            waiting.retain(|(i, c)| !(*i == id && Some(c) == name.as_ref()));
                        } else if let Some(m) = self.on_frame(id, f) {
                            out.push(m);
                        }
                    }
                    Ok(Some(Event::Closed(id))) => {
                        self.on_closed(id);
                        waiting.retain(|(i, _)| *i != id);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }
        for n in names {
            match kind {
                Kind::Channel => self.channels.insert(n.clone()),
                Kind::Pattern => self.patterns.insert(n.clone()),
                Kind::Shard => false,
            };
            out.push(self.confirm(kind.sub_word(), Some(n), self.count(kind)));
        }
        self.meter.set_pubsub(self.active());
        out
    }

    async fn send_sub(
        &mut self,
        p: &Router,
        kind: Kind,
        addr: Option<&str>,
        names: &[Bytes],
    ) -> Result<u64, SubscribeError> {
        let wire = self.wire(names);
        let mut cmd: Vec<&[u8]> = vec![kind.sub_word().as_bytes()];
        cmd.extend(wire.iter().map(|n| n.as_ref()));
        let payload = resp::encode_command(&cmd);
        let conn = match addr {
            Some(a) => self.shard_conn(p, a).await?,
            None => self.main_conn(p).await?,
        };
        if let Err(e) = conn.wr.write_all(&payload).await {
            return Err(BackendError::not_sent(&conn.addr, Reason::WriteFailed).caused_by(e).into());
        }
        Ok(conn.id)
    }

    /// UNSUBSCRIBE / PUNSUBSCRIBE / SUNSUBSCRIBE (no names: all of that kind).
    pub async fn unsubscribe(&mut self, kind: Kind, names: &[Bytes]) -> Vec<Bytes> {
        let targets: Vec<Bytes> = if names.is_empty() {
            match kind {
                Kind::Channel => self.channels.iter().cloned().collect(),
                Kind::Pattern => self.patterns.iter().cloned().collect(),
                Kind::Shard => self.shard.keys().cloned().collect(),
            }
        } else {
            names.to_vec()
        };
        if targets.is_empty() {
            return vec![self.confirm(kind.unsub_word(), None, self.count(kind))];
        }
        let mut out = Vec::new();
        let mut by_node: BTreeMap<Option<String>, Vec<Bytes>> = BTreeMap::new();
        for n in &targets {
            let removed = match kind {
                Kind::Channel => self.channels.remove(n).then_some(None),
                Kind::Pattern => self.patterns.remove(n).then_some(None),
                Kind::Shard => self.shard.remove(n).map(Some),
            };
            if let Some(node) = removed {
                by_node.entry(node).or_default().push(n.clone());
            }
            out.push(self.confirm(kind.unsub_word(), Some(n), self.count(kind)));
        }
        let carrying: Vec<Bytes> =
            targets.iter().filter(|n| events::may_carry_events(n, kind == Kind::Pattern)).cloned().collect();
        let carrying = self.unneeded(kind, &carrying);
        if let Some(chans) = by_node.get_mut(&None) {
            *chans = self.unneeded(kind, chans);
        }
        if kind != Kind::Shard && !carrying.is_empty() {
            let mut cmd: Vec<&[u8]> = vec![kind.unsub_word().as_bytes()];
            cmd.extend(carrying.iter().map(|c| c.as_ref()));
            let payload = resp::encode_command(&cmd);
            for c in self.events.values_mut() {
                let _ = c.wr.write_all(&payload).await;
            }
        }
        for (node, chans) in by_node {
            let mut cmd: Vec<&[u8]> = vec![kind.unsub_word().as_bytes()];
            cmd.extend(chans.iter().map(|c| c.as_ref()));
            let payload = resp::encode_command(&cmd);
            let conn = match &node {
                Some(a) => self.shard_conns.get_mut(a),
                None => self.main.as_mut(),
            };
            if let Some(c) = conn {
                // A failed write shows up as the connection closing; its repair skips these.
                let _ = c.wr.write_all(&payload).await;
            }
        }
        self.close_unused();
        self.meter.set_pubsub(self.active());
        out
    }

    /// Closes connections that no longer carry a subscription.
    fn close_unused(&mut self) {
        if self.channels.is_empty() && self.patterns.is_empty() {
            self.main = None;
        }
        let (chans, pats) = self.carrying_events();
        if chans.is_empty() && pats.is_empty() {
            self.events.clear();
        }
        let used: BTreeSet<&String> = self.shard.values().collect();
        self.shard_conns.retain(|a, _| used.contains(a));
    }

    /// A frame from a subscription connection: a message to forward, or `None` (confirmations,
    /// which the proxy answers itself, and frames of connections it already dropped).
    pub fn on_frame(&mut self, id: u64, f: Bytes) -> Option<Bytes> {
        let from_events = self.events.values().any(|c| c.id == id);
        let current = from_events
            || self.main.as_ref().is_some_and(|c| c.id == id)
            || self.shard_conns.values().any(|c| c.id == id);
        if !current {
            return None;
        }
        let el = resp::aggregate_elements(&f)?;
        let word = resp::as_bulk(el.first()?)??;
        match &word[..] {
            // Only for what the client is subscribed to now: the node may still deliver a message
            // published before it read our UNSUBSCRIBE, which the client has already seen confirmed.
            b"message" | b"pmessage" if self.dbs.is_some() => self.translated(&word, &el, from_events),
            b"message" | b"pmessage" | b"smessage" => {
                let name = resp::as_bulk(el.get(1)?)??;
                // Each message once: keyspace notifications from the masters' own connections,
                // everything else from the main one.
                if word.as_ref() != b"smessage" {
                    let channel = if &word[..] == b"pmessage" { resp::as_bulk(el.get(2)?)?? } else { name.clone() };
                    if events::is_event_channel(&channel) != from_events {
                        return None;
                    }
                }
                let wanted = match &word[..] {
                    b"message" => self.channels.contains(&name),
                    b"pmessage" => self.patterns.contains(&name),
                    _ => self.shard.contains_key(&name),
                };
                wanted.then_some(f)
            }
            b"sunsubscribe" => {
                // Unasked for: the node gave up the channel's slot. Subscribe again where it went.
                if let Some(ch) = el.get(1).and_then(|c| resp::as_bulk(c).flatten()) {
                    let node = self.shard_conns.values().find(|c| c.id == id).map(|c| c.addr.clone());
                    if node.is_some() && self.shard.get(&ch) == node.as_ref() {
                        self.needs_repair = true;
                    }
                }
                None
            }
            _ => None,
        }
    }

    pub fn on_closed(&mut self, id: u64) {
        let before = self.events.len();
        self.events.retain(|_, c| c.id != id);
        if self.events.len() != before {
            self.needs_repair = true;
        }
        if self.main.as_ref().is_some_and(|c| c.id == id) {
            self.main = None;
            self.needs_repair = true;
        }
        let before = self.shard_conns.len();
        self.shard_conns.retain(|_, c| c.id != id);
        if self.shard_conns.len() != before {
            self.needs_repair = true;
        }
    }
}

/// How often a client whose subscriptions need repair tries again.
pub const REPAIR_EVERY: Duration = Duration::from_millis(100);
