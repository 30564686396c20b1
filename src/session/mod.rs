//! One client's state between requests (authentication and user, protocol version, name, id) and the
//! per-connection features built on it: the commands the proxy answers itself ([`local`]; CLIENT
//! LIST/INFO/KILL over all of its clients in [`clients`]),
//! transactions ([`transaction`]), blocking commands and WAIT ([`blocking`]), subscriptions
//! ([`pubsub`]), client-side caching ([`tracking`]).

pub mod blocking;
pub mod clients;
pub mod local;
pub mod pubsub;
pub mod tracking;
pub mod transaction;

use std::sync::Arc;

use bytes::Bytes;

use crate::config::AuthConfig;
use crate::keyspace::Databases;
use crate::stats::clients::Entry;

/// The user every connection starts as, as in Redis.
pub const DEFAULT_USER: &[u8] = b"default";

/// What one client connection carries between requests.
#[derive(Debug)]
pub struct Session {
    pub id: u64,
    pub name: Option<Bytes>,
    pub authenticated: bool,
    /// The user it authenticated as (ACL WHOAMI): `default` until an AUTH names another.
    pub user: Bytes,
    /// RESP version negotiated with HELLO (2 or 3).
    pub proto: u8,
    /// Set by QUIT: reply, flush, close.
    pub quit: bool,
    /// Who may authenticate, and how.
    pub auth: Arc<AuthConfig>,
    /// The node credentials this client's requests use (see `AuthConfig::login_of`).
    pub login: u16,
    /// This client in the proxy's client table (CLIENT LIST), kept up to date by [`publish`].
    ///
    /// [`publish`]: Session::publish
    pub entry: Arc<Entry>,
    /// CLIENT REPLY: whether replies are written.
    pub replies: Replies,
    /// The databases there are, and the one SELECT chose.
    pub dbs: Arc<Databases>,
    pub db: u32,
    /// The selected database's stored-name prefix; `None` for a plain database 0.
    pub prefix: Option<Bytes>,
    /// CLIENT TRACKING.
    pub tracking: tracking::Tracking,
}

/// CLIENT REPLY's state, as Redis keeps it: OFF drops every reply until ON; SKIP drops the next
/// command's.
#[derive(Debug, Default)]
pub struct Replies {
    pub off: bool,
    pub skip_next: bool,
    skip: bool,
}

impl Replies {
    /// Called once for each request, after it was planned: whether its reply is dropped. A SKIP
    /// reaches the command after the one that set it, as Redis moves its flag on after each call.
    pub fn mute_this(&mut self) -> bool {
        let mute = self.off || self.skip;
        self.skip = std::mem::take(&mut self.skip_next);
        mute
    }

    /// CLIENT REPLY ON, and RESET.
    pub fn on(&mut self) {
        *self = Replies::default();
    }
}

impl Session {
    pub fn new(
        id: u64,
        auth: Arc<AuthConfig>,
        entry: Arc<Entry>,
        dbs: Arc<Databases>,
        hub: Arc<tracking::Hub>,
    ) -> Session {
        let prefix = dbs.prefix(0);
        Session {
            dbs,
            db: 0,
            prefix,
            id,
            name: None,
            authenticated: !auth.required(),
            user: Bytes::from_static(DEFAULT_USER),
            proto: 2,
            quit: false,
            auth,
            login: 0,
            entry,
            replies: Replies::default(),
            tracking: tracking::Tracking::new(hub, id),
        }
    }

    /// SELECT: requests name keys of database `db` from now on.
    pub fn select(&mut self, db: u32) {
        self.db = db;
        self.prefix = self.dbs.prefix(db);
        self.entry.db.store(db, std::sync::atomic::Ordering::Relaxed);
    }

    /// Shows the name, user and protocol the last command may have changed to the other clients
    /// (CLIENT LIST).
    pub fn publish(&self) {
        let mut g = self.entry.ident.lock();
        g.name = self.name.clone().unwrap_or_default();
        g.user = self.user.clone();
        self.entry.resp.store(self.proto, std::sync::atomic::Ordering::Relaxed);
        let (redir, bcast) = self.tracking.shown();
        self.entry.redir.store(redir, std::sync::atomic::Ordering::Relaxed);
        self.entry.bcast.store(bcast, std::sync::atomic::Ordering::Relaxed);
    }
}
