//! A proxy following a shared observer: one long `GET /v1/topology/watch` (hyper's HTTP/1.1
//! client), each line a snapshot published as is; while the observer cannot be reached, the
//! proxy polls the cluster itself and reconnects with backoff.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::metrics::Metrics;
use crate::topology::{from_json, Learned, Poller, TopologyStore};

/// Follows a shared observer at `url` (`http://host:port`) forever, publishing every snapshot;
/// polls the cluster itself while the observer cannot be reached.
pub async fn subscribe(url: String, store: Arc<TopologyStore>, poller: Arc<Poller>, metrics: Arc<Metrics>) {
    let limit = poller.limit();
    let addr = url.trim_start_matches("http://").trim_end_matches('/').to_string();
    let mut backoff = Duration::from_millis(200);
    loop {
        let why = follow(&addr, &store, &metrics, limit).await;
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
async fn follow(addr: &str, store: &TopologyStore, metrics: &Metrics, limit: Duration) -> String {
    let stream = match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return format!("connect: {e}"),
        Err(_) => return "connect timed out".into(),
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
        Ok(h) => h,
        Err(e) => return format!("HTTP handshake: {e}"),
    };
    // The connection's own task; it ends when the stream does or `sender` is dropped.
    let conn = tokio::spawn(conn);
    let why = watch(addr, &mut sender, store, metrics, limit).await;
    conn.abort();
    why
}

async fn watch(
    addr: &str,
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    store: &TopologyStore,
    metrics: &Metrics,
    limit: Duration,
) -> String {
    let req = match hyper::Request::get("/v1/topology/watch")
        .header(hyper::header::HOST, addr)
        .header(hyper::header::ACCEPT, "application/x-ndjson")
        .body(Empty::<Bytes>::new())
    {
        Ok(r) => r,
        Err(e) => return format!("request: {e}"),
    };
    let resp = match tokio::time::timeout(limit, sender.send_request(req)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return format!("request: {e}"),
        Err(_) => return "no answer in time".into(),
    };
    if resp.status() != hyper::StatusCode::OK {
        return format!("unexpected answer: {}", resp.status());
    }
    tracing::info!(observer = %addr, "following the shared observer");
    // The observer's stream is settled by configEpoch; the epoch-less refresh stands aside.
    store.bus_authoritative.store(true, Ordering::Relaxed);
    // Which source serves the map is said once the observer's first snapshot is in use.
    let mut first = true;
    let mut body = resp.into_body();
    let mut lines = BytesMut::new();
    loop {
        match body.frame().await {
            None => return "stream ended".into(),
            Some(Err(e)) => return format!("read: {e}"),
            Some(Ok(f)) => {
                if let Ok(data) = f.into_data() {
                    lines.extend_from_slice(&data);
                }
            }
        }
        while let Some(nl) = lines.iter().position(|&c| c == b'\n') {
            let l = lines.split_to(nl + 1);
            match from_json(&String::from_utf8_lossy(&l)) {
                Some((nodes, slots)) => {
                    store.publish(nodes, slots, Learned::Observer);
                    if first {
                        first = false;
                        metrics.set_topology_source("observer");
                    }
                }
                None => return "unreadable snapshot".into(),
            }
        }
    }
}
