//! The subscription connections: each an exclusive node connection whose reader task forwards
//! every frame to the client's task ([`Event`]), opened for the client's protocol and login, and
//! made to match the map again when it changes ([`PubSub::repair`]).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::task::JoinHandle;

use super::{Kind, PubSub, SubscribeError};
use crate::backend::{Cx, NodeReader, NodeWriter};
use crate::memory::Meter;
use crate::resp::{self, ReplyScanner};
use crate::route::Router;
use crate::slot;

/// What a subscription connection's reader reports.
pub enum Event {
    Frame(u64, Bytes),
    Closed(u64),
}

pub(super) struct SubConn {
    pub(super) id: u64,
    pub(super) addr: String,
    pub(super) wr: NodeWriter,
    reader: JoinHandle<()>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for SubConn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl PubSub {
    pub(super) async fn open(&mut self, p: &Router, addr: &str) -> Result<SubConn, SubscribeError> {
        let d = p.dedicated.get(addr, Cx { proto: self.proto, lane: 0, login: self.login }).await?;
        let (rd, wr, buf, permit) = d.into_split();
        self.next_id += 1;
        let id = self.next_id;
        let reader = tokio::spawn(read_loop(id, rd, buf, self.tx.clone(), self.meter.clone()));
        Ok(SubConn { id, addr: addr.to_string(), wr, reader, _permit: permit })
    }

    /// Whether subscription connection `id`, just closed, was the channels' and patterns'
    /// connection and its node still serves: a healthy master in the map that answers a PING. Such
    /// a node dropped this subscriber on purpose (its output buffer limit reached, CLIENT KILL),
    /// and what was published meanwhile is lost: its client must be dropped as Redis would have
    /// dropped it, not resubscribed in silence. A node that died answers no PING (a refused or
    /// failed connection within [`PROBE_TIMEOUT`]), and its subscriptions move as before.
    pub async fn dropped_by_node(&self, id: u64, p: &Router) -> bool {
        let Some(c) = self.main.as_ref().filter(|c| c.id == id) else { return false };
        let t = p.topology.load();
        let healthy = t.masters().contains(&c.addr.as_str()) && !t.nodes.iter().any(|n| n.addr == c.addr && n.failed);
        drop(t);
        if !healthy {
            return false;
        }
        let cx = Cx { proto: self.proto, lane: 0, login: self.login };
        let ping = p.backend.send_one(&c.addr, cx, resp::encode_command(&[&b"PING"[..]]));
        matches!(tokio::time::timeout(PROBE_TIMEOUT, ping).await, Ok(Ok(r)) if !resp::is_error(&r))
    }

    /// Makes the subscriptions match the current map: channels and patterns on a live master,
    /// each shard channel on its slot's owner. Returns false when something could not be done yet
    /// (call again later).
    pub async fn repair(&mut self, p: &Router) -> bool {
        let mut ok = true;
        // The main connection's node failed or left the map: move before it goes silent for good.
        if let Some(c) = &self.main {
            let t = p.topology.load();
            let gone = !t.masters().contains(&c.addr.as_str()) || t.nodes.iter().any(|n| n.addr == c.addr && n.failed);
            if gone {
                self.main = None;
            }
        }
        if self.main.is_none() && !(self.channels.is_empty() && self.patterns.is_empty()) {
            let chans: Vec<Bytes> = self.channels.iter().cloned().collect();
            let pats: Vec<Bytes> = self.patterns.iter().cloned().collect();
            let mut r = Ok(0);
            if !chans.is_empty() {
                r = self.send_sub(p, Kind::Channel, None, &chans).await;
            }
            if r.is_ok() && !pats.is_empty() {
                r = self.send_sub(p, Kind::Pattern, None, &pats).await;
            }
            match r {
                Ok(_) => {
                    tracing::info!(node = ?self.main.as_ref().map(|c| c.addr.clone()), "subscriptions moved to another node")
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot resubscribe yet");
                    self.main = None;
                    ok = false;
                }
            }
        }
        if !self.sync_events(p).await {
            ok = false;
        }
        // Shard channels whose slot owner changed or whose connection died.
        let moves: Vec<(Bytes, String)> = {
            let t = p.topology.load();
            self.shard
                .iter()
                .filter_map(|(ch, node)| {
                    let owner = t.master_for(slot::slot(ch))?;
                    (owner != node || !self.shard_conns.contains_key(node)).then(|| (ch.clone(), owner.to_string()))
                })
                .collect()
        };
        for (ch, owner) in moves {
            if let Some(old) = self.shard.get(&ch).cloned() {
                if let Some(c) = self.shard_conns.get_mut(&old) {
                    let _ = c.wr.write_all(&resp::encode_command(&[b"SUNSUBSCRIBE".as_ref(), &ch])).await;
                }
            }
            match self.send_sub(p, Kind::Shard, Some(&owner), std::slice::from_ref(&ch)).await {
                Ok(_) => {
                    self.shard.insert(ch, owner);
                }
                Err(_) => ok = false,
            }
        }
        self.close_unused();
        self.needs_repair = !ok;
        ok
    }
}

/// How long a node whose subscription connection closed has to answer a PING to count as alive.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// Forwards every frame of a subscription connection to its client task.
async fn read_loop(
    id: u64,
    mut rd: NodeReader,
    mut buf: BytesMut,
    tx: mpsc::UnboundedSender<Event>,
    meter: Arc<Meter>,
) {
    let mut scanner = ReplyScanner::default();
    loop {
        loop {
            match scanner.scan(&buf) {
                Ok(Some(n)) => {
                    if meter.is_over() {
                        // The client is being closed for its output: nothing more is queued.
                        return;
                    }
                    // Counted before it is queued, so that a client over its limit is closed
                    // however fast the node publishes.
                    meter.queue(n);
                    if tx.send(Event::Frame(id, buf.split_to(n).freeze())).is_err() {
                        meter.unqueue(n);
                        return;
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    let _ = tx.send(Event::Closed(id));
                    return;
                }
            }
        }
        crate::memory::settle(&mut buf, 16 * 1024);
        match rd.read_buf(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = tx.send(Event::Closed(id));
                return;
            }
            Ok(_) => {}
        }
    }
}
