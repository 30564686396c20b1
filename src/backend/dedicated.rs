//! Exclusive node connections, for requests that hold connection state or block: blocking
//! commands, WATCH ... EXEC and subscriptions. They never carry another client's traffic. Bounded
//! per node (a semaphore, so a flood of blocked clients cannot exhaust a node's connections); a
//! connection goes back to a small idle pool only when its request ended cleanly, and is closed
//! otherwise (a client that disconnects mid-block must not leave a pending pop on a pooled one).
//!
//! An idle connection keeps its place under the bound (it is still open on the node), so a
//! client waiting for a place is woken when one is given back, and closes an idle connection of
//! the other protocol to make room: only connections in use may ever make a client wait.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use super::{connect, exchange, Auth, BackendError, Cx, Directory, NodeReader, NodeStream, NodeWriter, Reason, Verify};
use crate::resp::{self, ReplyScanner};
use crate::sync::Mutex;

/// Idle connections kept per (node, protocol).
const MAX_IDLE: usize = 8;

/// The exclusive connections of the proxy, per node.
pub struct DedicatedPool {
    /// Per login, the credentials (see [`super::Cx::login`]).
    logins: Arc<[Auth]>,
    directory: Arc<dyn Directory>,
    connect_timeout: Duration,
    per_node: usize,
    limits: Mutex<HashMap<String, Arc<Bound>>>,
    idle: Mutex<HashMap<Kind, Vec<Dedicated>>>,
}

/// Which connections are interchangeable: the same node, protocol and login.
type Kind = (String, u8, u16);

/// One node's bound: a permit per open connection, in use or idle.
struct Bound {
    permits: Arc<Semaphore>,
    /// Signalled when a connection goes idle: its permit is not released, so a client waiting
    /// for one would not otherwise learn that a connection can be had.
    returned: Notify,
}

/// One exclusive connection to a node.
pub struct Dedicated {
    pub addr: String,
    pub proto: u8,
    pub login: u16,
    /// The node's own id for this connection (`CLIENT ID`), to unblock it from elsewhere.
    pub node_client_id: i64,
    stream: NodeStream,
    rbuf: BytesMut,
    scanner: ReplyScanner,
    _permit: OwnedSemaphorePermit,
}

impl DedicatedPool {
    pub fn new(
        logins: Arc<[Auth]>,
        directory: Arc<dyn Directory>,
        connect_timeout: Duration,
        per_node: usize,
    ) -> DedicatedPool {
        DedicatedPool {
            directory,
            logins,
            connect_timeout,
            per_node: per_node.max(1),
            limits: Mutex::new(HashMap::new()),
            idle: Mutex::new(HashMap::new()),
        }
    }

    /// An idle connection to `addr`, or a new one when the node's bound allows it. Waits up to the
    /// connect timeout for a place under the bound; never sends anything that could run twice.
    /// The connection speaks `cx`'s protocol and authenticates as its login.
    pub async fn get(&self, addr: &str, cx: Cx) -> Result<Dedicated, BackendError> {
        let proto = if cx.proto >= 3 { 3 } else { 2 };
        let login = cx.login.min((self.logins.len() - 1) as u16);
        let bound = self.bound(addr);
        let deadline = Instant::now() + self.connect_timeout;
        let permit = loop {
            // Registered before looking, so that a connection given back meanwhile still wakes us.
            let returned = bound.returned.notified();
            tokio::pin!(returned);
            returned.as_mut().enable();
            if let Some(d) = self.take_idle(&(addr.to_string(), proto, login)) {
                return Ok(d);
            }
            if let Ok(p) = bound.permits.clone().try_acquire_owned() {
                break p;
            }
            // An idle connection of another protocol or login holds a place nobody uses: closing
            // it frees its permit for the next look.
            let unused = {
                let mut idle = self.idle.lock();
                let other = idle.iter_mut().find(|(k, v)| k.0 == addr && (k.1, k.2) != (proto, login) && !v.is_empty());
                other.and_then(|(_, v)| v.pop())
            };
            if let Some(d) = unused {
                drop(d);
                continue;
            }
            tokio::select! {
                p = bound.permits.clone().acquire_owned() => match p {
                    Ok(p) => break p,
                    Err(_) => return Err(BackendError::not_sent(addr, Reason::DedicatedBusy(self.per_node))),
                },
                _ = &mut returned => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(BackendError::not_sent(addr, Reason::DedicatedBusy(self.per_node)))
                }
            }
        };
        let auth = &self.logins[usize::from(login)];
        let mut stream = connect(addr, proto, auth, self.connect_timeout, Verify::Node(&*self.directory)).await?;
        let id = match tokio::time::timeout(
            self.connect_timeout,
            exchange(&mut stream, addr, &resp::encode_command(&["CLIENT", "ID"]), 1),
        )
        .await
        {
            Ok(Ok(r)) => r.first().and_then(|f| resp::as_int(f)).unwrap_or(-1),
            // Nothing but the handshake went out: the caller's request was not sent.
            Ok(Err(e)) => return Err(e.not_sent_after_all()),
            Err(_) => return Err(BackendError::not_sent(addr, Reason::NoClientId)),
        };
        Ok(Dedicated {
            addr: addr.to_string(),
            proto,
            login,
            node_client_id: id,
            stream,
            rbuf: BytesMut::with_capacity(4096),
            scanner: ReplyScanner::default(),
            _permit: permit,
        })
    }

    /// The bound of `addr`, made on first use.
    fn bound(&self, addr: &str) -> Arc<Bound> {
        self.limits
            .lock()
            .entry(addr.to_string())
            .or_insert_with(|| {
                Arc::new(Bound { permits: Arc::new(Semaphore::new(self.per_node)), returned: Notify::new() })
            })
            .clone()
    }

    /// An idle connection of `kind` that is still open.
    fn take_idle(&self, kind: &Kind) -> Option<Dedicated> {
        loop {
            let d = self.idle.lock().get_mut(kind).and_then(Vec::pop)?;
            // An idle connection has nothing to say; one that reads EOF or bytes was closed by the
            // node (restarted, failed over) and must not carry a request that would then fail.
            if d.stream.idle_ok() {
                return Some(d);
            }
        }
    }

    /// Returns a connection whose last request was fully answered; it is closed instead when the
    /// idle pool is full or it still holds unread bytes.
    pub fn put(&self, mut d: Dedicated) {
        if !d.rbuf.is_empty() {
            return;
        }
        crate::memory::settle(&mut d.rbuf, 4096);
        let addr = d.addr.clone();
        {
            let mut m = self.idle.lock();
            let v = m.entry((addr.clone(), d.proto, d.login)).or_default();
            if v.len() >= MAX_IDLE {
                // Closed: its permit goes to a waiter by itself.
                return;
            }
            v.push(d);
        }
        if let Some(b) = self.limits.lock().get(&addr) {
            b.returned.notify_waiters();
        }
    }

    /// Closes idle connections to nodes that `keep` rejects.
    pub fn retain(&self, keep: &dyn Fn(&str) -> bool) {
        self.idle.lock().retain(|(addr, _, _), _| keep(addr));
    }
}

impl Dedicated {
    /// Writes a request. What runs here is one command, a `MULTI ... EXEC` block, or a marker
    /// script that changes nothing before WAIT: a write that failed did not deliver anything that
    /// runs (a node runs only complete commands, a block only with its EXEC), so it counts as not
    /// sent.
    pub async fn send(&mut self, payload: &[u8]) -> Result<(), BackendError> {
        self.stream
            .send(payload)
            .await
            .map_err(|e| BackendError::not_sent(&self.addr, Reason::WriteFailed).caused_by(e))
    }

    /// The next complete frame. Cancel-safe: a partial frame stays buffered for the next call.
    pub async fn read(&mut self) -> Result<Bytes, BackendError> {
        loop {
            match self.scanner.scan(&self.rbuf) {
                Ok(Some(n)) => return Ok(self.rbuf.split_to(n).freeze()),
                Ok(None) => {}
                Err(e) => return Err(BackendError::lost(&self.addr, Reason::Malformed(e.0))),
            }
            match self.stream.read_buf(&mut self.rbuf).await {
                Ok(0) => return Err(BackendError::lost(&self.addr, Reason::ClosedByNode)),
                Ok(_) => {}
                Err(e) => return Err(BackendError::lost(&self.addr, Reason::ReadFailed).caused_by(e)),
            }
        }
    }

    /// Sends `payload` holding `n` commands and reads their `n` replies (no time limit: blocking
    /// commands bound themselves; callers wrap others in a timeout).
    pub async fn request(&mut self, payload: &[u8], n: usize) -> Result<Vec<Bytes>, BackendError> {
        self.send(payload).await?;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            out.push(self.read().await?);
        }
        Ok(out)
    }

    /// Splits into halves for a subscription: the reader task owns one, the client task the other.
    /// Bytes already buffered come along.
    pub fn into_split(self) -> (NodeReader, NodeWriter, BytesMut, OwnedSemaphorePermit) {
        let (r, w) = self.stream.split();
        (r, w, self.rbuf, self._permit)
    }
}
