//! A proxy following a shared observer: one long `GET /v1/topology/watch` (hyper's HTTP/1.1
//! client, over TLS for `https://`, with the bearer token when one is configured), each line a
//! snapshot published as is; while the observer cannot be reached, or refuses the token, the
//! proxy polls the cluster itself and reconnects with backoff. Once the cluster contradicts the
//! observer ([`super::trust`]), the proxy stops following it for good.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::link::Link;
use super::trust::{contradicted, foreign};
use crate::metrics::Metrics;
use crate::topology::{from_json, Learned, Poller, TopologyStore};

/// How a refusal of the token (401) begins the reason [`follow`] returns: it is logged once per
/// run of refusals, not at every retry.
const REFUSED: &str = "401 Unauthorized";

/// How following the stream ended.
enum Ended {
    /// The observer could not be reached, refused us, or its stream broke: try again later.
    Lost(String),
    /// The observer's map was found false: never follow it again.
    Distrusted(String),
}

/// Follows a shared observer through `link`, publishing every snapshot; polls the cluster itself
/// while the observer cannot be reached or refuses the token. Once the observer is caught lying,
/// runs `fallback` (the proxy's own way of watching the cluster) instead, for good.
pub async fn subscribe(
    link: Link,
    store: Arc<TopologyStore>,
    poller: Arc<Poller>,
    metrics: Arc<Metrics>,
    fallback: impl Future<Output = ()>,
) {
    let limit = poller.limit();
    let addr = &link.addr;
    let mut backoff = Duration::from_millis(200);
    // Whether the last attempt was refused: a refusal is an error to fix, said once per episode.
    let mut refused = false;
    loop {
        let why = match follow(&link, &store, &poller, &metrics, limit).await {
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
        if why.starts_with(REFUSED) {
            if !refused {
                tracing::error!(observer = %addr, error = %why, "the shared observer refused this proxy (check topology.observer_token_file): polling the cluster until it accepts");
            }
            refused = true;
        } else {
            refused = false;
            tracing::warn!(observer = %addr, error = %why, "shared observer unreachable: polling the cluster until it is back");
        }
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
async fn follow(link: &Link, store: &TopologyStore, poller: &Poller, metrics: &Metrics, limit: Duration) -> Ended {
    let stream = match tokio::time::timeout(limit, TcpStream::connect(&link.addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Ended::Lost(format!("connect: {e}")),
        Err(_) => return Ended::Lost("connect timed out".into()),
    };
    match &link.tls {
        None => over(stream, link, store, poller, metrics, limit).await,
        Some((tls, name)) => match tokio::time::timeout(limit, tls.connect(name.clone(), stream)).await {
            Ok(Ok(s)) => over(s, link, store, poller, metrics, limit).await,
            Ok(Err(e)) => Ended::Lost(format!("TLS handshake: {e}")),
            Err(_) => Ended::Lost("TLS handshake timed out".into()),
        },
    }
}

/// HTTP over an open connection (plain or TLS).
async fn over<IO>(
    io: IO,
    link: &Link,
    store: &TopologyStore,
    poller: &Poller,
    metrics: &Metrics,
    limit: Duration,
) -> Ended
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(io)).await {
        Ok(h) => h,
        Err(e) => return Ended::Lost(format!("HTTP handshake: {e}")),
    };
    // The connection's own task; it ends when the stream does or `sender` is dropped.
    let conn = tokio::spawn(conn);
    let why = match watch(&link.addr, link.auth.as_ref(), &mut sender, store, poller, metrics, limit).await {
        Err(why) => Ended::Lost(why),
        Ok(distrusted) => Ended::Distrusted(distrusted),
    };
    conn.abort();
    why
}

/// Reads the stream: `Err` with why it ended, `Ok` with the reason once the observer is caught
/// lying.
async fn watch(
    addr: &str,
    auth: Option<&hyper::header::HeaderValue>,
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    store: &TopologyStore,
    poller: &Poller,
    metrics: &Metrics,
    limit: Duration,
) -> Result<String, String> {
    let mut req = hyper::Request::get("/v1/topology/watch")
        .header(hyper::header::HOST, addr)
        .header(hyper::header::ACCEPT, "application/x-ndjson");
    if let Some(a) = auth {
        req = req.header(hyper::header::AUTHORIZATION, a.clone());
    }
    let req = match req.body(Empty::<Bytes>::new()) {
        Ok(r) => r,
        Err(e) => return Err(format!("request: {e}")),
    };
    let resp = match tokio::time::timeout(limit, sender.send_request(req)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(format!("request: {e}")),
        Err(_) => return Err("no answer in time".into()),
    };
    if resp.status() == hyper::StatusCode::UNAUTHORIZED {
        let why = if auth.is_some() { "the token was refused" } else { "the observer requires a token" };
        return Err(format!("{REFUSED}: {why}"));
    }
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
