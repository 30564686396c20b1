//! The registry of the proxy's own clients: what CLIENT LIST, CLIENT INFO and CLIENT KILL show
//! and act on, as one server's client table. Each connection registers one [`Entry`] and keeps
//! it up to date (name, user, protocol, last command, subscriptions, MULTI); the entry leaves the
//! table when its connection ends.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;

use super::inbox::Ask;
use crate::sync::Mutex;

/// Where a client's blocking command waits on a node right now, for CLIENT UNBLOCK to reach it
/// there.
pub type NodeConn = Arc<Mutex<BlockedOn>>;

#[derive(Clone, Debug, Default)]
pub enum BlockedOn {
    /// Not in a command CLIENT UNBLOCK can end (none, WAIT, a pop over several slots).
    #[default]
    Nothing,
    /// In one, not yet sent to its node.
    Starting,
    /// Waiting on node `.0`'s connection with id `.1`.
    At(String, i64),
}

/// Every client connected now, by id (Redis lists its clients in the order they connected,
/// which is the order of their ids).
pub struct Registry {
    clients: Mutex<BTreeMap<u64, Arc<Entry>>>,
    /// CLIENT PAUSE: until when, and whether all commands (or only writes) are held.
    pause: Mutex<Option<(Instant, bool)>>,
    /// Set while a pause may be on: a request reads this alone when nothing is paused.
    paused: AtomicBool,
    /// Bumped by every PAUSE / UNPAUSE, for the clients holding a command to look again.
    pause_changed: watch::Sender<u64>,
}

impl Default for Registry {
    fn default() -> Registry {
        Registry {
            clients: Mutex::default(),
            pause: Mutex::new(None),
            paused: AtomicBool::new(false),
            pause_changed: watch::Sender::new(0),
        }
    }
}

impl Registry {
    /// Adds a client; it leaves with [`Registered`]'s drop.
    pub fn register(self: &Arc<Self>, entry: Entry) -> Registered {
        let entry = Arc::new(entry);
        self.clients.lock().insert(entry.id, entry.clone());
        Registered { registry: self.clone(), entry }
    }

    /// The clients connected now, in id order.
    pub fn all(&self) -> Vec<Arc<Entry>> {
        self.clients.lock().values().cloned().collect()
    }

    /// Asks the clients idle for `idle_ms` (once per idle spell) to let go of the buffers they
    /// keep between requests, as Redis frees an idle client's query buffer; returns how many were
    /// asked.
    pub fn shed_idle(&self, idle_ms: u64) -> usize {
        let now = Instant::now();
        self.clients.lock().values().filter(|e| e.shed_if_idle(now, idle_ms)).count()
    }

    /// Asks every client to drain: it closes once what it sent is answered.
    pub fn drain_all(&self) {
        for e in self.clients.lock().values() {
            e.inbox.ask(Ask::Drain);
        }
    }

    pub fn get(&self, id: u64) -> Option<Arc<Entry>> {
        self.clients.lock().get(&id).cloned()
    }

    /// CLIENT PAUSE: as in Redis, a pause already on is never shortened nor narrowed by a new
    /// one.
    pub fn pause(&self, until: Instant, all: bool) {
        let mut g = self.pause.lock();
        let now = Instant::now();
        let (until, all) = match *g {
            Some((u, a)) if u > now => (u.max(until), a || all),
            _ => (until, all),
        };
        *g = Some((until, all));
        self.paused.store(true, Ordering::Relaxed);
        drop(g);
        self.pause_changed.send_modify(|n| *n += 1);
    }

    /// CLIENT UNPAUSE.
    pub fn unpause(&self) {
        *self.pause.lock() = None;
        self.paused.store(false, Ordering::Relaxed);
        self.pause_changed.send_modify(|n| *n += 1);
    }

    /// False when no pause is on (one atomic read: what every request pays).
    pub fn maybe_paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    /// Until when a command is held (`write`: one CLIENT PAUSE WRITE holds), if it is.
    pub fn holds(&self, write: bool) -> Option<Instant> {
        if !self.paused.load(Ordering::Relaxed) {
            return None;
        }
        let mut g = self.pause.lock();
        match *g {
            Some((until, all)) if until > Instant::now() => (all || write).then_some(until),
            _ => {
                *g = None;
                self.paused.store(false, Ordering::Relaxed);
                None
            }
        }
    }

    /// Changes whenever a pause starts or ends.
    pub fn pause_watch(&self) -> watch::Receiver<u64> {
        self.pause_changed.subscribe()
    }
}

/// A client's place in the registry, held by its connection for as long as it lives.
pub struct Registered {
    registry: Arc<Registry>,
    pub entry: Arc<Entry>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.clients.lock().remove(&self.entry.id);
        // The copy of the socket goes before the connection's own, so that closing that one
        // closes the connection.
        self.entry.socket.lock().take();
    }
}

/// What the table shows of a client that changes only with the commands that set it.
#[derive(Clone, Debug, Default)]
pub struct Ident {
    pub name: Bytes,
    pub user: Bytes,
    pub lib_name: Bytes,
    pub lib_ver: Bytes,
    /// The full name of the last command (`client|list`), empty before the first.
    pub cmd: Bytes,
}

/// One client as the table shows it.
pub struct Entry {
    pub id: u64,
    pub addr: String,
    pub laddr: String,
    pub fd: i64,
    pub created: Instant,
    /// Milliseconds after `created` of the last command (CLIENT LIST's `idle`).
    last_ms: AtomicU64,
    /// Where the name of the last command starts ([`Entry::touch`]).
    cmd_at: AtomicUsize,
    /// `last_ms + 1` when it was last asked to shed its buffers (0: never): once per idle spell.
    shed_at: AtomicU64,
    pub ident: Mutex<Ident>,
    pub resp: AtomicU8,
    /// The database SELECT chose (CLIENT LIST's `db`).
    pub db: AtomicU32,
    /// Channels, patterns and shard channels subscribed.
    pub sub: AtomicI64,
    pub psub: AtomicI64,
    pub ssub: AtomicI64,
    /// Commands queued in MULTI, -1 outside MULTI.
    pub multi: AtomicI64,
    pub blocked: AtomicBool,
    /// Set while its blocking command waits on a node connection of its own.
    pub blocked_on: NodeConn,
    pub no_evict: AtomicBool,
    pub no_touch: AtomicBool,
    pub monitor: AtomicBool,
    killed: AtomicBool,
    /// CLIENT TRACKING: -1 off, else the redirect target (0: none); CLIENT LIST's `redir` and
    /// flags `t` and `B` (BCAST).
    pub redir: AtomicI64,
    pub bcast: AtomicBool,
    /// Cache invalidations for this client to write (its own tracking's, or another client's that
    /// redirects to it).
    pub inbox: super::inbox::Inbox,
    /// A second handle on the client's socket (a `dup`), through which CLIENT KILL ends its
    /// reads: the connection sees end of input wherever it waits (idle, blocked, subscribed)
    /// and closes after answering what it had, at no cost to its loop.
    socket: Mutex<Option<std::net::TcpStream>>,
}

impl Entry {
    pub fn new(id: u64, addr: String, laddr: String, fd: i64, socket: Option<std::net::TcpStream>) -> Entry {
        Entry {
            id,
            addr,
            laddr,
            fd,
            created: Instant::now(),
            last_ms: AtomicU64::new(0),
            shed_at: AtomicU64::new(0),
            cmd_at: AtomicUsize::new(0),
            ident: Mutex::new(Ident { user: Bytes::from_static(b"default"), ..Ident::default() }),
            resp: AtomicU8::new(2),
            db: AtomicU32::new(0),
            sub: AtomicI64::new(0),
            psub: AtomicI64::new(0),
            ssub: AtomicI64::new(0),
            multi: AtomicI64::new(-1),
            blocked: AtomicBool::new(false),
            blocked_on: NodeConn::default(),
            no_evict: AtomicBool::new(false),
            no_touch: AtomicBool::new(false),
            monitor: AtomicBool::new(false),
            killed: AtomicBool::new(false),
            redir: AtomicI64::new(-1),
            bcast: AtomicBool::new(false),
            inbox: super::inbox::Inbox::default(),
            socket: Mutex::new(socket),
        }
    }

    /// A command arrived at `now` (the time its batch of requests was read: one clock read per
    /// batch, not per command): `idle` starts again, and `cmd` names it. The name is swapped,
    /// under the lock, only when it changes: a pipeline of one command takes no lock.
    pub fn touch(&self, cmd: &Bytes, now: Instant) {
        self.last_ms.store(now.saturating_duration_since(self.created).as_millis() as u64, Ordering::Relaxed);
        // Where a name starts tells it apart: the one held in `ident` keeps its allocation alive,
        // so no other name can start there.
        let name = cmd.as_ptr() as usize;
        if self.cmd_at.swap(name, Ordering::Relaxed) != name {
            self.ident.lock().cmd = cmd.clone();
        }
    }

    /// Seconds since it connected.
    pub fn age(&self) -> u64 {
        self.created.elapsed().as_secs()
    }

    /// Seconds since its last command (or since it connected).
    pub fn idle(&self) -> u64 {
        let now = self.created.elapsed().as_millis() as u64;
        now.saturating_sub(self.last_ms.load(Ordering::Relaxed)) / 1000
    }

    /// Asks its task to let go of its buffers if it has been idle for `idle_ms` at `now` and was
    /// not asked since its last command.
    fn shed_if_idle(&self, now: Instant, idle_ms: u64) -> bool {
        let last = self.last_ms.load(Ordering::Relaxed);
        let age = now.saturating_duration_since(self.created).as_millis() as u64;
        if age.saturating_sub(last) < idle_ms || self.shed_at.load(Ordering::Relaxed) == last + 1 {
            return false;
        }
        self.shed_at.store(last + 1, Ordering::Relaxed);
        self.inbox.ask(Ask::Shed);
        true
    }

    pub fn pubsub(&self) -> bool {
        self.sub.load(Ordering::Relaxed) + self.psub.load(Ordering::Relaxed) + self.ssub.load(Ordering::Relaxed) > 0
    }

    /// Shown blocked (flag `b`) until the returned guard drops.
    pub fn block(self: &Arc<Self>) -> BlockedFlag {
        self.blocked.store(true, Ordering::Relaxed);
        BlockedFlag(self.clone())
    }

    /// CLIENT KILL: the connection reads nothing more, answers what it had, and closes.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::Relaxed);
        if let Some(s) = self.socket.lock().as_ref() {
            // Fails only when the client is already gone.
            let _ = s.shutdown(std::net::Shutdown::Read);
        }
    }

    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Relaxed)
    }
}

/// A client shown blocked while this lives ([`Entry::block`]).
pub struct BlockedFlag(Arc<Entry>);

impl Drop for BlockedFlag {
    fn drop(&mut self) {
        self.0.blocked.store(false, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry").field("id", &self.id).field("addr", &self.addr).finish_non_exhaustive()
    }
}
