//! The shared observer and its subscribers. `clusterless observe` runs one observer for many
//! proxies and serves its snapshot over HTTP: `GET /v1/topology` (the current map as JSON) and
//! `GET /v1/topology/watch` (newline-delimited JSON, one snapshot now and one per change). A proxy
//! started with `--observer http://ADDR` follows that stream instead of pinging the nodes itself,
//! so N sidecars cost the nodes one observer's PINGs; while the observer is unreachable it polls
//! `CLUSTER SHARDS` on its own and reconnects with backoff.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::backend::Auth;
use crate::metrics::Metrics;
use crate::topology::{self, Node, Role, TopologyStore};

type Body = BoxBody<Bytes, Infallible>;

fn full(status: StatusCode, ctype: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(ctype));
    r
}

/// Serves the observer's snapshot until the task is stopped; the connections (watch streams
/// included) belong to this task and end with it, so subscribers notice at once.
pub async fn serve(store: Arc<TopologyStore>, metrics: Arc<Metrics>, listener: TcpListener) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let (store, metrics) = (store.clone(), metrics.clone());
        conns.spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let (store, metrics) = (store.clone(), metrics.clone());
                async move { Ok::<_, Infallible>(handle(&store, &metrics, req)) }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

fn handle(store: &Arc<TopologyStore>, metrics: &Metrics, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    if !matches!(path.as_str(), "/v1/topology" | "/v1/topology/watch" | "/healthz" | "/metrics") {
        return full(StatusCode::NOT_FOUND, "text/plain", "not found\n");
    }
    if req.method() != Method::GET {
        return full(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "method not allowed\n");
    }
    match path.as_str() {
        "/healthz" => full(StatusCode::OK, "text/plain", "ok\n"),
        "/metrics" => full(StatusCode::OK, "text/plain; version=0.0.4", metrics.render()),
        "/v1/topology" => {
            full(StatusCode::OK, "application/json", crate::server::admin::topology_json(&store.load_full()))
        }
        _ => {
            // One line now, then one per published version.
            let rx = store.subscribe();
            let first = Some(line(store));
            let store = store.clone();
            let stream = futures_util::stream::unfold((first, rx, store), |(first, mut rx, store)| async move {
                if let Some(l) = first {
                    return Some((Ok(Frame::data(l)), (None, rx, store)));
                }
                rx.changed().await.ok()?;
                let l = line(&store);
                Some((Ok(Frame::data(l)), (None, rx, store)))
            });
            let mut r = Response::new(StreamBody::new(stream).boxed());
            r.headers_mut()
                .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/x-ndjson"));
            r
        }
    }
}

fn line(store: &TopologyStore) -> Bytes {
    let mut s = crate::server::admin::topology_json(&store.load_full());
    s.push('\n');
    Bytes::from(s)
}

/// Rebuilds a map from the JSON snapshot (`None` if it is not one).
pub fn from_json(text: &str) -> Option<(Vec<Node>, Box<[u16]>)> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let mut nodes = Vec::new();
    let mut slots = vec![u16::MAX; crate::slot::SLOTS].into_boxed_slice();
    for (i, n) in v.get("nodes")?.as_array()?.iter().enumerate() {
        nodes.push(Node {
            id: n.get("id")?.as_str()?.to_string(),
            addr: n.get("address")?.as_str()?.to_string(),
            role: if n.get("role")?.as_str()? == "master" { Role::Master } else { Role::Replica },
            master_id: n.get("master").and_then(|m| m.as_str()).map(str::to_string),
            failed: n.get("health").and_then(|h| h.as_str()) == Some("fail"),
            config_epoch: n.get("configEpoch").and_then(|e| e.as_u64()),
        });
        for r in n.get("slots")?.as_array()? {
            let (a, b) = (r.get(0)?.as_u64()? as usize, r.get(1)?.as_u64()? as usize);
            for s in slots.get_mut(a..=b)? {
                *s = i as u16;
            }
        }
    }
    Some((nodes, slots))
}

/// Decodes an HTTP/1.1 chunked body incrementally.
#[derive(Default)]
struct Chunked {
    raw: BytesMut,
    /// Bytes still to take from the current chunk (plus its CRLF).
    left: Option<usize>,
}

impl Chunked {
    /// Moves every complete chunk's data from `raw` into `out`; false at the last chunk.
    fn drain(&mut self, out: &mut BytesMut) -> Result<bool, String> {
        loop {
            match self.left {
                None => {
                    let Some(eol) = self.raw.windows(2).position(|w| w == b"\r\n") else { return Ok(true) };
                    let size_text = String::from_utf8_lossy(&self.raw[..eol]).to_string();
                    let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                        .map_err(|_| format!("bad chunk size {size_text:?}"))?;
                    let _ = self.raw.split_to(eol + 2);
                    if size == 0 {
                        return Ok(false);
                    }
                    self.left = Some(size + 2);
                }
                Some(left) => {
                    if self.raw.len() < left {
                        return Ok(true);
                    }
                    let chunk = self.raw.split_to(left);
                    out.extend_from_slice(&chunk[..left - 2]);
                    self.left = None;
                }
            }
        }
    }
}

/// Follows a shared observer at `url` (`http://host:port`) forever, publishing every snapshot;
/// polls the cluster itself while the observer cannot be reached.
pub async fn subscribe(
    url: String,
    store: Arc<TopologyStore>,
    seeds: Vec<String>,
    auth: Auth,
    metrics: Arc<Metrics>,
    limit: Duration,
) {
    let addr = url.trim_start_matches("http://").trim_end_matches('/').to_string();
    let mut backoff = Duration::from_millis(200);
    loop {
        let why = follow(&addr, &store, &metrics, limit).await;
        store.bus_authoritative.store(false, std::sync::atomic::Ordering::Relaxed);
        metrics.topology_source.with_label_values(&["observer"]).set(0);
        metrics.topology_source.with_label_values(&["poll"]).set(1);
        tracing::warn!(observer = %addr, error = %why, "shared observer unreachable: polling the cluster until it is back");
        // Poll while reconnecting, so that the map keeps following the cluster.
        let until = tokio::time::Instant::now() + backoff;
        while tokio::time::Instant::now() < until {
            if let Ok((nodes, slots)) = topology::fetch(&store, &seeds, &auth, limit).await {
                store.publish(nodes, slots, "poll");
            }
            tokio::time::sleep(Duration::from_millis(1000).min(backoff)).await;
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn follow(addr: &str, store: &TopologyStore, metrics: &Metrics, limit: Duration) -> String {
    let mut s = match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return format!("connect: {e}"),
        Err(_) => return "connect timed out".into(),
    };
    let req = format!("GET /v1/topology/watch HTTP/1.1\r\nHost: {addr}\r\nAccept: application/x-ndjson\r\n\r\n");
    if let Err(e) = s.write_all(req.as_bytes()).await {
        return format!("write: {e}");
    }
    let mut head = BytesMut::new();
    let mut body = Chunked::default();
    loop {
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let h = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
            if !h.starts_with("http/1.1 200") || !h.contains("transfer-encoding: chunked") {
                return format!("unexpected answer: {}", h.lines().next().unwrap_or(""));
            }
            body.raw.extend_from_slice(&head[end + 4..]);
            break;
        }
        match s.read_buf(&mut head).await {
            Ok(0) => return "closed".into(),
            Ok(_) => {}
            Err(e) => return format!("read: {e}"),
        }
    }
    tracing::info!(observer = %addr, "following the shared observer");
    // The observer's stream is settled by configEpoch; the epoch-less refresh stands aside.
    store.bus_authoritative.store(true, std::sync::atomic::Ordering::Relaxed);
    metrics.topology_source.with_label_values(&["observer"]).set(1);
    metrics.topology_source.with_label_values(&["poll"]).set(0);
    metrics.topology_source.with_label_values(&["bus"]).set(0);
    let mut lines = BytesMut::new();
    loop {
        match body.drain(&mut lines) {
            Ok(true) => {}
            Ok(false) => return "stream ended".into(),
            Err(e) => return e,
        }
        while let Some(nl) = lines.iter().position(|&c| c == b'\n') {
            let l = lines.split_to(nl + 1);
            match from_json(&String::from_utf8_lossy(&l)) {
                Some((nodes, slots)) => {
                    store.publish(nodes, slots, "observer");
                }
                None => return "unreadable snapshot".into(),
            }
        }
        match s.read_buf(&mut body.raw).await {
            Ok(0) => return "closed".into(),
            Ok(_) => {}
            Err(e) => return format!("read: {e}"),
        }
    }
}

/// A running shared observer.
pub struct ObserverService {
    pub addr: SocketAddr,
    pub store: Arc<TopologyStore>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for ObserverService {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Bootstraps from the seeds, starts the bus observer (polling on its own when the bus is
/// unreachable) and serves `/v1/topology` and `/v1/topology/watch` on `http`.
pub async fn start_service(cfg: &crate::config::Config, http: SocketAddr) -> Result<ObserverService, String> {
    if cfg.seeds.is_empty() {
        return Err("no seeds: pass --seed HOST:PORT or set `seeds` in the config file".into());
    }
    let auth = Auth::from_config(&cfg.backend);
    let limit = cfg.backend.connect_timeout;
    let store = TopologyStore::new();
    let (nodes, slots) = topology::fetch(&store, &cfg.seeds, &auth, limit)
        .await
        .map_err(|e| format!("cannot reach the cluster: {e}"))?;
    store.publish(nodes, slots, "bootstrap");
    let metrics = Metrics::new(&[], true).map_err(|e| format!("metrics: {e}"))?;
    let listener = bind(http).await?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let tc = &cfg.topology;
    let ocfg = super::observer::ObserverConfig {
        interval: tc.bus_ping_interval,
        reconcile: tc.reconcile_interval,
        poll: tc.refresh_interval.min(Duration::from_secs(1)),
        connect_timeout: limit,
    };
    let tasks = vec![
        tokio::spawn(super::observer::run(store.clone(), cfg.seeds.clone(), auth.clone(), ocfg, metrics.clone())),
        tokio::spawn(serve(store.clone(), metrics, listener)),
    ];
    tracing::info!(http = %addr, "shared observer serving /v1/topology and /v1/topology/watch");
    Ok(ObserverService { addr, store, tasks })
}

/// Binds the observer's HTTP address; errors name it.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr} (--http): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_decoding_across_splits() {
        let wire = b"5\r\nhello\r\n3;x=y\r\n ab\r\n0\r\n\r\n";
        for cut in 0..wire.len() {
            let mut c = Chunked::default();
            let mut out = BytesMut::new();
            c.raw.extend_from_slice(&wire[..cut]);
            // The stream may end early only when the cut already holds the last-chunk line.
            let more = c.drain(&mut out).unwrap(); // ok: test
            assert!(more || cut >= wire.len() - 2, "cut {cut}");
            if more {
                c.raw.extend_from_slice(&wire[cut..]);
                assert!(!c.drain(&mut out).unwrap()); // ok: test
            }
            assert_eq!(&out[..], b"hello ab");
        }
    }
}
