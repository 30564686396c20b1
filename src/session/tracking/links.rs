//! The proxy's invalidation links: one RESP3 connection per master that owns slots, running
//! `CLIENT TRACKING on BCAST`, so that the master pushes every key changed on it (by a client of
//! this proxy, of another one, or of the node itself) to the hub. Started with the first tracking
//! client, they follow the map: a link to each new master, none to a node that no longer owns
//! slots; they stop when no client tracks any more. Whenever the proxy may have missed a change it
//! flushes the clients it concerns: a link
//! lost or (re)made after a gap (the keys of that master's slots), and a slot whose owner changed
//! (a failover, a reshard).

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinHandle;

use super::hub::Hub;
use crate::backend::Cx;
use crate::resp::{self, as_bulk};
use crate::route::Router;

/// How long CLIENT TRACKING on waits for the links (then it fails: invalidations could not
/// come).
pub(super) const READY_WITHIN: Duration = Duration::from_secs(3);
/// Between attempts to (re)open a link.
const RETRY_EVERY: Duration = Duration::from_millis(100);

/// How often the supervisor looks whether any client still tracks.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Starts the links' supervisor unless it runs (the first tracking client, or the first after
/// they stopped).
pub(super) fn start(hub: &Arc<Hub>) {
    let mut r = hub.run.lock();
    if !r.on {
        r.on = true;
        r.gen += 1;
        tokio::spawn(supervise(Arc::downgrade(hub), hub.router.clone(), r.gen));
    }
}

/// Whether every master owning slots has its link of the current run up.
fn ready(hub: &Hub) -> bool {
    let gen = hub.run.lock().gen;
    let t = hub.router.topology.load();
    let up = hub.up.lock();
    let owners = t.slot_owners();
    !owners.is_empty() && owners.iter().all(|m| up.get(*m) == Some(&gen))
}

/// Waits until every master has its link up, for at most [`READY_WITHIN`]; whether they are.
pub(super) async fn wait_ready(hub: &Hub) -> bool {
    let deadline = tokio::time::Instant::now() + READY_WITHIN;
    loop {
        if ready(hub) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Keeps one link per master owning slots, and flushes the clients of slots whose owner changed;
/// ends the links when no client tracks.
async fn supervise(hub: Weak<Hub>, router: Arc<Router>, gen: u64) {
    let mut changes = router.topology.subscribe();
    let mut links: HashMap<String, JoinHandle<()>> = HashMap::new();
    let mut owners: Option<Vec<Option<String>>> = None;
    loop {
        let Some(h) = hub.upgrade() else { break };
        let t = router.topology.load_full();
        let now: Vec<Option<String>> =
            (0..crate::slot::SLOTS as u16).map(|s| t.master_for(s).map(str::to_string)).collect();
        if let Some(before) = &owners {
            if *before != now {
                h.flush_where(&|s| before.get(usize::from(s)) != now.get(usize::from(s)));
            }
        }
        owners = Some(now);
        let masters: Vec<String> = t.slot_owners().into_iter().map(str::to_string).collect();
        links.retain(|addr, task| {
            let keep = masters.contains(addr) && !task.is_finished();
            if !keep {
                task.abort();
                forget(&h, addr, gen);
            }
            keep
        });
        for m in masters {
            if !links.contains_key(&m) {
                links.insert(m.clone(), tokio::spawn(link(hub.clone(), router.clone(), m, gen)));
            }
        }
        drop(h);
        loop {
            tokio::select! {
                r = changes.changed() => {
                    if r.is_err() {
                        return stop(&hub, links, gen);
                    }
                    break;
                }
                _ = tokio::time::sleep(IDLE_CHECK) => {
                    let Some(h) = hub.upgrade() else { return stop(&hub, links, gen) };
                    if h.stop_if_idle(gen) {
                        tracing::debug!("no client tracks: invalidation links closed");
                        return stop(&hub, links, gen);
                    }
                }
            }
        }
    }
    stop(&hub, links, gen)
}

fn stop(hub: &Weak<Hub>, links: HashMap<String, JoinHandle<()>>, gen: u64) {
    for (addr, task) in links {
        task.abort();
        if let Some(h) = hub.upgrade() {
            forget(&h, &addr, gen);
        }
    }
}

/// `addr`'s link of run `gen` is down (a later run's link stays).
fn forget(h: &Hub, addr: &str, gen: u64) {
    let mut up = h.up.lock();
    if up.get(addr) == Some(&gen) {
        up.remove(addr);
    }
}

/// One master's link, opened again whenever it drops.
async fn link(hub: Weak<Hub>, router: Arc<Router>, addr: String, gen: u64) {
    // A gap before the first link (a failed first attempt) may have missed changes too.
    let mut gap = false;
    loop {
        match open(&router, &addr).await {
            Ok(mut d) => {
                let Some(h) = hub.upgrade() else { return };
                h.up.lock().insert(addr.clone(), gen);
                if gap {
                    flush_master(&h, &router, &addr);
                }
                drop(h);
                loop {
                    let frame = match d.read().await {
                        Ok(f) => f,
                        Err(e) => {
                            tracing::info!(node = %addr, error = %e, "invalidation link lost");
                            break;
                        }
                    };
                    let Some(h) = hub.upgrade() else { return };
                    match invalidated(&frame) {
                        Some(Some(keys)) => h.invalidate(&keys),
                        Some(None) => flush_master(&h, &router, &addr),
                        None => {}
                    }
                }
                let Some(h) = hub.upgrade() else { return };
                forget(&h, &addr, gen);
                flush_master(&h, &router, &addr);
            }
            Err(e) => tracing::debug!(node = %addr, error = %e, "cannot open the invalidation link yet"),
        }
        gap = true;
        tokio::time::sleep(RETRY_EVERY).await;
    }
}

/// A RESP3 connection of the proxy's own login that the master tracks in BCAST mode.
async fn open(router: &Router, addr: &str) -> Result<crate::backend::Dedicated, String> {
    let mut d = router.dedicated.get(addr, Cx { proto: 3, lane: 0, login: 0 }).await.map_err(|e| e.to_string())?;
    let cmd = resp::encode_command(&["CLIENT", "TRACKING", "on", "BCAST"]);
    match tokio::time::timeout(READY_WITHIN, d.request(&cmd, 1)).await {
        Ok(Ok(r)) if r.first().is_some_and(|f| &f[..] == b"+OK\r\n") => Ok(d),
        Ok(Ok(r)) => {
            Err(format!("CLIENT TRACKING answered {:?}", r.first().map(|f| String::from_utf8_lossy(f).into_owned())))
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("CLIENT TRACKING timed out".into()),
    }
}

/// An invalidation push: `Some(Some(keys))`, or `Some(None)` for a flush (FLUSHALL on the node);
/// `None` for anything else.
fn invalidated(frame: &Bytes) -> Option<Option<Vec<Bytes>>> {
    if frame.first() != Some(&b'>') {
        return None;
    }
    let el = resp::aggregate_elements(frame)?;
    if el.len() != 2 || as_bulk(&el[0])?.as_deref() != Some(&b"invalidate"[..]) {
        return None;
    }
    if resp::is_null(&el[1]) {
        return Some(None);
    }
    let keys = resp::aggregate_elements(&el[1])?;
    Some(Some(keys.iter().filter_map(|k| as_bulk(k).flatten()).collect()))
}

/// Flushes the clients of the slots `addr` owns.
fn flush_master(h: &Hub, router: &Router, addr: &str) {
    let t = router.topology.load();
    h.flush_where(&|s| t.master_for(s) == Some(addr));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_invalidation_pushes() {
        let keys = Bytes::from_static(b">2\r\n$10\r\ninvalidate\r\n*2\r\n$1\r\na\r\n$2\r\nbc\r\n");
        assert_eq!(invalidated(&keys), Some(Some(vec![Bytes::from_static(b"a"), Bytes::from_static(b"bc")])));
        assert_eq!(invalidated(&Bytes::from_static(b">2\r\n$10\r\ninvalidate\r\n_\r\n")), Some(None));
        assert_eq!(invalidated(&Bytes::from_static(b"+OK\r\n")), None);
    }
}
