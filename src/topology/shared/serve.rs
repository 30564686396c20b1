//! The shared observer's HTTP side: its snapshot, a stream of snapshots, health and metrics.
//! With a token (`clusterless observe --token-file`), every path but `/healthz` (which says only
//! that the process runs, and which probes cannot send a token to) needs `Authorization: Bearer
//! <token>`: the snapshot names every node of the cluster.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::config::Secret;
use crate::metrics::Metrics;
use crate::topology::{to_json, TopologyStore};

type Body = BoxBody<Bytes, Infallible>;

fn full(status: StatusCode, ctype: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(ctype));
    r
}

/// Serves the observer's snapshot until the task is stopped; the connections (watch streams
/// included) belong to this task and end with it, so subscribers notice at once.
pub async fn serve(store: Arc<TopologyStore>, metrics: Arc<Metrics>, listener: TcpListener, token: Option<Secret>) {
    let token = Arc::new(token);
    let mut conns = tokio::task::JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let (store, metrics, token) = (store.clone(), metrics.clone(), token.clone());
        conns.spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let (store, metrics, token) = (store.clone(), metrics.clone(), token.clone());
                async move { Ok::<_, Infallible>(handle(&store, &metrics, token.as_ref().as_ref(), req)) }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

fn handle(
    store: &Arc<TopologyStore>,
    metrics: &Metrics,
    token: Option<&Secret>,
    req: Request<Incoming>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    if let Some(token) = token {
        let given = req.headers().get(hyper::header::AUTHORIZATION).map(|v| v.as_bytes());
        if path != "/healthz" && !token.authorizes(given) {
            let mut r = full(
                StatusCode::UNAUTHORIZED,
                "text/plain",
                "unauthorized: send Authorization: Bearer <observer token>\n",
            );
            r.headers_mut().insert(hyper::header::WWW_AUTHENTICATE, hyper::header::HeaderValue::from_static("Bearer"));
            return r;
        }
    }
    if !matches!(path.as_str(), "/v1/topology" | "/v1/topology/watch" | "/healthz" | "/metrics") {
        return full(StatusCode::NOT_FOUND, "text/plain", "not found\n");
    }
    // HEAD wherever GET is, as HTTP asks (probes and monitors use it); hyper leaves the body out.
    let head = req.method() == Method::HEAD;
    if req.method() != Method::GET && !head {
        let mut r = full(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "method not allowed\n");
        r.headers_mut().insert(hyper::header::ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match path.as_str() {
        "/healthz" => full(StatusCode::OK, "text/plain", "ok\n"),
        "/metrics" => full(StatusCode::OK, "text/plain; version=0.0.4", metrics.render()),
        "/v1/topology" => full(StatusCode::OK, "application/json", to_json(&store.load_full())),
        _ if head => {
            // The stream's headers (chunked, as for GET) without subscribing to a stream that
            // would never be read.
            let none = futures_util::stream::empty::<Result<Frame<Bytes>, Infallible>>();
            let mut r = Response::new(StreamBody::new(none).boxed());
            r.headers_mut()
                .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/x-ndjson"));
            r
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
    let mut s = to_json(&store.load_full());
    s.push('\n');
    Bytes::from(s)
}
