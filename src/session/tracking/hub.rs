//! What the proxy's clients track, shared by all of them: per tracking client its delivery target
//! (itself, or the client it redirects to), its mode and the keys it read (default mode) or its
//! prefixes (BCAST); the index key -> clients; and the fan-out of the invalidations that the
//! per-master links ([`super::links`]) bring. Bounded: a client past [`MAX_KEYS_PER_CLIENT`]
//! keys, or the one holding the most when all pass [`MAX_KEYS`], is sent a flush and starts over,
//! as Redis evicts keys from its tracking table with invalidations.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::route::Router;
use crate::slot;
use crate::stats::inbox::Inval;
use crate::sync::Mutex;

/// Keys one client may track in default mode before it is sent a flush.
pub const MAX_KEYS_PER_CLIENT: usize = 100_000;
/// Keys all clients together may track before the one with the most is sent a flush.
pub const MAX_KEYS: usize = 1_000_000;
/// A key read this recently stays tracked after an invalidation: the read may still be on its
/// way (the proxy tracks it when it sends it, the node runs it later), and a write that ran
/// before it must not end the tracking of the value it will return. Redis tracks a key once per
/// read; here a key read and written often may be invalidated more than once in this window,
/// which is only ever more than needed.
const KEEP_AFTER_READ: Duration = Duration::from_secs(10);
/// NOLOOP writes remembered over all clients, whose invalidations are not sent to their writers
/// (past it they are forgotten, and a client may get an invalidation of its own write: coarser,
/// never wrong).
const MAX_OWN_WRITES: usize = 100_000;

/// How one client tracks, as the hub needs it.
pub(super) struct Tracker {
    /// Who gets this client's invalidations: itself, or the client of CLIENT TRACKING REDIRECT.
    pub(super) target: u64,
    /// BCAST: its prefixes (`""` for every key); `None` in default mode.
    pub(super) prefixes: Option<Vec<Bytes>>,
    pub(super) noloop: bool,
    /// Default mode: the keys it read since their last invalidation, and when it last read each.
    keys: HashMap<Bytes, Instant>,
    /// The redirect target left and the client was told (once, as Redis tells it).
    broken: bool,
}

#[derive(Default)]
struct State {
    trackers: HashMap<u64, Tracker>,
    /// Default mode: key -> the clients that read it.
    keys: HashMap<Bytes, Vec<u64>>,
    /// Keys tracked over all clients (with repeats).
    total: usize,
    /// The BCAST clients: every invalidation is matched against their prefixes.
    bcast: HashSet<u64>,
    /// NOLOOP: key -> the clients that wrote it and whose invalidation has not come back yet;
    /// and how many such entries there are.
    own: HashMap<Bytes, Vec<u64>>,
    own_total: usize,
}

/// The proxy's tracking table and its links to the masters.
pub struct Hub {
    pub(super) router: Arc<Router>,
    state: Mutex<State>,
    /// Whether the links ([`super::links`]) run, and the generation of the ones that do.
    pub(super) run: Mutex<Run>,
    /// Masters whose invalidation link is up now, with the generation of that link.
    pub(super) up: Mutex<HashMap<String, u64>>,
}

/// The links' run: started with the first tracking client, stopped once none is left.
#[derive(Default)]
pub(super) struct Run {
    pub(super) on: bool,
    pub(super) gen: u64,
}

impl Hub {
    pub fn new(router: Arc<Router>) -> Arc<Hub> {
        Arc::new(Hub { router, state: Mutex::default(), run: Mutex::default(), up: Mutex::default() })
    }

    /// CLIENT TRACKING on: `id` tracks now (keeping the keys it read, when it tracked already).
    pub(super) fn enable(&self, id: u64, target: u64, prefixes: Option<Vec<Bytes>>, noloop: bool) {
        {
            let mut g = self.state.lock();
            let t = g.trackers.entry(id).or_insert_with(|| Tracker {
                target,
                prefixes: None,
                noloop,
                keys: HashMap::new(),
                broken: false,
            });
            t.target = target;
            t.noloop = noloop;
            t.broken = false;
            if prefixes.is_some() {
                g.bcast.insert(id);
            } else {
                g.bcast.remove(&id);
            }
            if let Some(t) = g.trackers.get_mut(&id) {
                t.prefixes = prefixes;
            }
        }
    }

    /// CLIENT TRACKING off, RESET, or the client left: it tracks nothing more.
    pub(super) fn disable(&self, id: u64) {
        let mut g = self.state.lock();
        let Some(t) = g.trackers.remove(&id) else { return };
        g.bcast.remove(&id);
        let n = t.keys.len();
        for k in t.keys.into_keys() {
            unindex(&mut g.keys, &k, id);
        }
        g.total -= n;
    }

    /// A tracking client read these keys (default mode).
    pub(super) fn remember<'a>(&self, id: u64, keys: impl Iterator<Item = &'a Bytes>) {
        let mut out = Vec::new();
        {
            let mut g = self.state.lock();
            let State { trackers, keys: index, total, .. } = &mut *g;
            let Some(t) = trackers.get_mut(&id) else { return };
            let now = Instant::now();
            for k in keys {
                if let Some(at) = t.keys.get_mut(k) {
                    *at = now;
                    continue;
                }
                // Copied: the request's bytes may share a large read buffer.
                let k = Bytes::copy_from_slice(k);
                t.keys.insert(k.clone(), now);
                index.entry(k).or_default().push(id);
                *total += 1;
            }
            if t.keys.len() > MAX_KEYS_PER_CLIENT {
                out.push((t.target, Inval::Flush));
                let n = t.keys.len();
                for k in std::mem::take(&mut t.keys).into_keys() {
                    unindex(index, &k, id);
                }
                *total -= n;
            }
            if *total > MAX_KEYS {
                let most = trackers.iter().max_by_key(|(_, t)| t.keys.len()).map(|(&id, _)| id);
                if let Some(t) = most.and_then(|most| trackers.get_mut(&most).map(|t| (most, t))) {
                    let (most, t) = t;
                    out.push((t.target, Inval::Flush));
                    let n = t.keys.len();
                    for k in std::mem::take(&mut t.keys).into_keys() {
                        unindex(index, &k, most);
                    }
                    *total -= n;
                }
            }
        }
        self.deliver(out);
    }

    /// A NOLOOP client wrote these keys: their next invalidation is not sent to it.
    pub(super) fn wrote<'a>(&self, id: u64, keys: impl Iterator<Item = &'a Bytes>) {
        let mut g = self.state.lock();
        if !g.trackers.get(&id).is_some_and(|t| t.noloop) {
            return;
        }
        for k in keys {
            if g.own_total >= MAX_OWN_WRITES {
                g.own.clear();
                g.own_total = 0;
            }
            let writers = g.own.entry(Bytes::copy_from_slice(k)).or_default();
            if !writers.contains(&id) {
                writers.push(id);
                g.own_total += 1;
            }
        }
    }

    /// Keys changed on a master (one invalidation message of its link): each tracking client of
    /// one of them is told, default-mode clients one key per message and then no more about it
    /// until they read it again, BCAST clients the keys under their prefixes in one message.
    pub(super) fn invalidate(&self, keys: &[Bytes]) {
        let mut out = Vec::new();
        {
            let mut g = self.state.lock();
            let State { trackers, keys: index, total, bcast, own, own_total } = &mut *g;
            let now = Instant::now();
            // Who wrote each key itself with NOLOOP: consumed by this invalidation.
            let writers: Vec<Vec<u64>> = keys
                .iter()
                .map(|k| {
                    let w = own.remove(k).unwrap_or_default();
                    *own_total -= w.len();
                    w
                })
                .collect();
            for (k, writers) in keys.iter().zip(&writers) {
                let Some(ids) = index.remove(k) else { continue };
                let mut keep = Vec::new();
                for id in ids {
                    let Some(t) = trackers.get_mut(&id) else { continue };
                    // Its own write (NOLOOP): not told, and the key stays tracked (it may have
                    // read it again since).
                    let own = t.noloop && writers.contains(&id);
                    let recent = t.keys.get(k).is_some_and(|&at| now.duration_since(at) < KEEP_AFTER_READ);
                    if own || recent {
                        keep.push(id);
                    } else {
                        t.keys.remove(k);
                        *total -= 1;
                    }
                    if !own {
                        out.push((t.target, Inval::Keys(vec![k.clone()])));
                    }
                }
                if !keep.is_empty() {
                    index.insert(k.clone(), keep);
                }
            }
            for id in bcast.iter() {
                let Some(t) = trackers.get(id) else { continue };
                let Some(prefixes) = &t.prefixes else { continue };
                let hit: Vec<Bytes> = keys
                    .iter()
                    .zip(&writers)
                    .filter(|(k, w)| prefixes.iter().any(|p| k.starts_with(p)) && !(t.noloop && w.contains(id)))
                    .map(|(k, _)| k.clone())
                    .collect();
                if !hit.is_empty() {
                    out.push((t.target, Inval::Keys(hit)));
                }
            }
        }
        self.deliver(out);
    }

    /// The proxy cannot be sure what changed in these slots (a link lost, a failover, a slot
    /// moved): every BCAST client, and every default-mode client holding a key in one of them,
    /// is sent a flush and forgets its keys.
    pub(super) fn flush_where(&self, affected: &dyn Fn(u16) -> bool) {
        let mut out = Vec::new();
        {
            let mut g = self.state.lock();
            let State { trackers, keys: index, total, own, own_total, .. } = &mut *g;
            own.clear();
            *own_total = 0;
            for (&id, t) in trackers.iter_mut() {
                let hit = t.prefixes.is_some() || t.keys.keys().any(|k| affected(slot::slot(k)));
                if !hit {
                    continue;
                }
                out.push((t.target, Inval::Flush));
                let n = t.keys.len();
                for k in std::mem::take(&mut t.keys).into_keys() {
                    unindex(index, &k, id);
                }
                *total -= n;
            }
        }
        self.deliver(out);
    }

    /// Ends run `gen` of the links when no client tracks: decided under the table's lock, so that
    /// a client enabling tracking meanwhile either is seen here or starts a new run.
    pub(super) fn stop_if_idle(&self, gen: u64) -> bool {
        let g = self.state.lock();
        if !g.trackers.is_empty() {
            return false;
        }
        let mut r = self.run.lock();
        if r.gen == gen {
            r.on = false;
        }
        true
    }

    /// Puts each message in its target's inbox. A target that left makes its tracker get
    /// `tracking-redir-broken` once.
    fn deliver(&self, out: Vec<(u64, Inval)>) {
        let clients = &self.router.stats.clients;
        for (target, m) in out {
            match clients.get(target) {
                Some(e) => e.inbox.put(m),
                None => self.redirect_broken(target),
            }
        }
    }

    fn redirect_broken(&self, target: u64) {
        let told: Vec<u64> = {
            let mut g = self.state.lock();
            g.trackers
                .iter_mut()
                .filter(|(&id, t)| t.target == target && id != target && !t.broken)
                .map(|(&id, t)| {
                    t.broken = true;
                    id
                })
                .collect()
        };
        for id in told {
            if let Some(e) = self.router.stats.clients.get(id) {
                e.inbox.put(Inval::RedirBroken(target));
            }
        }
    }

    /// Whether `id`'s redirect target left (CLIENT TRACKINGINFO's `broken_redirect`).
    pub(super) fn broken(&self, id: u64) -> bool {
        let target = {
            let g = self.state.lock();
            match g.trackers.get(&id) {
                Some(t) if t.broken => return true,
                Some(t) if t.target != id && t.target != 0 => t.target,
                _ => return false,
            }
        };
        self.router.stats.clients.get(target).is_none()
    }
}

fn unindex(index: &mut HashMap<Bytes, Vec<u64>>, k: &Bytes, id: u64) {
    if let Some(ids) = index.get_mut(k) {
        ids.retain(|&i| i != id);
        if ids.is_empty() {
            index.remove(k);
        }
    }
}
