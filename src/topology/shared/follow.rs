//! A proxy following a shared observer: one long `GET /v1/topology/watch` (hyper's HTTP/1.1
//! client), each line a snapshot published as is; while the observer cannot be reached, the
//! proxy polls the cluster itself and reconnects with backoff.
//!
//! The observer is trusted only as far as the cluster agrees with it. Its first snapshot must
//! name the nodes the proxy's seeds named (a stream about another cluster is refused), and when a
//! node connection meets a node that is not the one the map names at its address, the cluster
//! itself is asked who is there: if it does not place that node there either, the observer's map
//! was false, and the proxy stops following it for good and watches the cluster on its own.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::metrics::Metrics;
use crate::topology::{from_json, Impostor, Learned, Node, Poller, TopologyStore};

/// How following the stream ended.
enum Ended {
    /// The observer could not be reached or its stream broke: try again later.
    Lost(String),
    /// The observer's map was found false: never follow it again.
    Distrusted(String),
}

/// Follows a shared observer at `url` (`http://host:port`), publishing every snapshot; polls the
/// cluster itself while the observer cannot be reached. Once the observer is caught lying, runs
/// `fallback` (the proxy's own bus observer) instead, for good.
pub async fn subscribe(
    url: String,
    store: Arc<TopologyStore>,
    poller: Arc<Poller>,
    metrics: Arc<Metrics>,
    fallback: impl Future<Output = ()>,
) {
    let limit = poller.limit();
    let addr = url.trim_start_matches("http://").trim_end_matches('/').to_string();
    let mut backoff = Duration::from_millis(200);
    loop {
        let why = match follow(&addr, &store, &poller, &metrics, limit).await {
            Ended::Lost(why) => why,
            Ended::Distrusted(why) => {
                store.bus_authoritative.store(false, Ordering::Relaxed);
                metrics.observer_distrusted.set(1);
                tracing::error!(observer = %addr, reason = %why, "the shared observer's map is false: no longer following it; watching the cluster itself");
                // The observer's map is replaced by the cluster's own at once, not at the next
                // gossip round.
                if let Ok((nodes, slots)) = poller.fetch(&store).await {
                    store.publish(nodes, slots, Learned::Refresh);
                }
                return fallback.await;
            }
        };
        store.bus_authoritative.store(false, Ordering::Relaxed);
        metrics.set_topology_source("poll");
        tracing::warn!(observer = %addr, error = %why, "shared observer unreachable: polling the cluster until it is back");
        // Poll while reconnecting, so that the map keeps following the cluster.
        let until = tokio::time::Instant::now() + backoff;
        while tokio::time::Instant::now() < until {
            if let Ok((nodes, slots)) = poller.fetch(&store).await {
                store.publish(nodes, slots, Learned::Refresh);
            }
            tokio::time::sleep(Duration::from_millis(1000).min(backoff)).await;
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Follows the stream until it ends; returns why it ended.
async fn follow(addr: &str, store: &TopologyStore, poller: &Poller, metrics: &Metrics, limit: Duration) -> Ended {
    let stream = match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Ended::Lost(format!("connect: {e}")),
        Err(_) => return Ended::Lost("connect timed out".into()),
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
        Ok(h) => h,
        Err(e) => return Ended::Lost(format!("HTTP handshake: {e}")),
    };
    // The connection's own task; it ends when the stream does or `sender` is dropped.
    let conn = tokio::spawn(conn);
    let why = watch(addr, &mut sender, store, poller, metrics, limit).await;
    conn.abort();
    why
}

async fn watch(
    addr: &str,
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    store: &TopologyStore,
    poller: &Poller,
    metrics: &Metrics,
    limit: Duration,
) -> Ended {
    match stream(addr, sender, store, poller, metrics, limit).await {
        Err(why) => Ended::Lost(why),
        Ok(distrusted) => Ended::Distrusted(distrusted),
    }
}

/// Reads the stream; `Err` when it ends, `Ok` with the reason once the observer is caught lying.
async fn stream(
    addr: &str,
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    store: &TopologyStore,
    poller: &Poller,
    metrics: &Metrics,
    limit: Duration,
) -> Result<String, String> {
    let req = match hyper::Request::get("/v1/topology/watch")
        .header(hyper::header::HOST, addr)
        .header(hyper::header::ACCEPT, "application/x-ndjson")
        .body(Empty::<Bytes>::new())
    {
        Ok(r) => r,
        Err(e) => return Err(format!("request: {e}")),
    };
    let resp = match tokio::time::timeout(limit, sender.send_request(req)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(format!("request: {e}")),
        Err(_) => return Err("no answer in time".into()),
    };
    if resp.status() != hyper::StatusCode::OK {
        return Err(format!("unexpected answer: {}", resp.status()));
    }
    tracing::info!(observer = %addr, "following the shared observer");
    // The observer's stream is settled by configEpoch; the epoch-less refresh stands aside.
    store.bus_authoritative.store(true, Ordering::Relaxed);
    // Which source serves the map is said once the observer's first snapshot is in use.
    let mut first = true;
    let mut body = resp.into_body();
    let mut lines = BytesMut::new();
    let mut impostors = store.watch_impostors();
    impostors.mark_unchanged();
    loop {
        tokio::select! {
            frame = body.frame() => match frame {
                None => return Err("stream ended".into()),
                Some(Err(e)) => return Err(format!("read: {e}")),
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        lines.extend_from_slice(&data);
                    }
                }
            },
            Ok(()) = impostors.changed() => {
                let met = impostors.borrow_and_update().clone();
                if let Some(lie) = met {
                    if let Some(why) = contradicted(&lie, store, poller).await {
                        return Ok(why);
                    }
                }
                continue;
            }
        }
        while let Some(nl) = lines.iter().position(|&c| c == b'\n') {
            let l = lines.split_to(nl + 1);
            let Some((nodes, slots)) = from_json(&String::from_utf8_lossy(&l)) else {
                return Err("unreadable snapshot".into());
            };
            if first {
                if let Some(why) = foreign(&nodes, store) {
                    return Ok(why);
                }
            }
            store.publish(nodes, slots, Learned::Observer);
            if first {
                first = false;
                metrics.set_topology_source("observer");
            }
        }
    }
}

/// Why the observer's first snapshot is about another cluster: it names fewer than half of the
/// node ids the proxy's own start-up read found (a staging observer's URL in a production
/// manifest, or a stream made up).
fn foreign(nodes: &[Node], store: &TopologyStore) -> Option<String> {
    let ours: HashSet<String> = store.load().nodes.iter().map(|n| n.id.clone()).filter(|id| !id.is_empty()).collect();
    if ours.is_empty() {
        return None;
    }
    let shared = nodes.iter().filter(|n| ours.contains(&n.id)).count();
    (shared * 2 < ours.len()).then(|| {
        format!("its map names {shared} of the {} nodes the seeds named: it watches another cluster", ours.len())
    })
}

/// Why the observer is wrong about the node a connection met at `lie.addr`: the map (the
/// observer's) names a node there, the node there is someone else, and the cluster's own answer
/// does not place the named node at that address either. `None` when the cluster agrees with the
/// observer (the node itself changed: the refresh it asked for sorts it out) or cannot say.
async fn contradicted(lie: &Impostor, store: &TopologyStore, poller: &Poller) -> Option<String> {
    let expected = lie.expected.as_deref()?;
    let (nodes, _) = poller.fetch(store).await.ok()?;
    let there = nodes.iter().find(|n| n.addr == lie.addr || n.ip_addr == lie.addr);
    if there.is_some_and(|n| n.id == expected) {
        return None;
    }
    Some(format!(
        "it placed node {expected} at {}, where the node answered {} and the cluster places {}",
        lie.addr,
        lie.answered,
        there.map(|n| n.id.as_str()).unwrap_or("no node")
    ))
}
