//! The admin HTTP endpoint (hyper 1.x): `/metrics` (Prometheus text), `/healthz` (the process is
//! alive), `/readyz` (200 only with a usable slot map while accepting clients; 503 and a one-line
//! reason otherwise, and while draining) and `/topology` (the current snapshot as JSON, the schema
//! the shared observer serves at `/v1/topology`). GET and HEAD (hyper leaves the body out) are
//! answered, as by the shared observer; other paths are 404, other methods 405. With
//! `admin.token_file` set, every path but `admin.open_paths` first needs `Authorization: Bearer
//! <token>` (401 otherwise, before anything else is said about the path).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::{Shared, StartError};
use crate::topology::to_json;

/// Binds the admin listener; errors name the address.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|err| StartError::Listen { addr, what: "admin.listen", err })
}

/// Serves until the task is stopped. It keeps answering during a drain, so that /readyz can say
/// 503 while in-flight requests finish.
pub async fn serve(p: Arc<Shared>, listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let p = p.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let p = p.clone();
                async move { Ok::<_, Infallible>(handle(&p, req)) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// 401 with the challenge RFC 6750 asks for.
fn unauthorized() -> Response<Full<Bytes>> {
    let mut r = text(StatusCode::UNAUTHORIZED, "unauthorized: send Authorization: Bearer <admin token>\n");
    r.headers_mut().insert(hyper::header::WWW_AUTHENTICATE, hyper::header::HeaderValue::from_static("Bearer"));
    r
}

fn handle(p: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let admin = &p.cfg.admin;
    if let Some(token) = &admin.token {
        let given = req.headers().get(hyper::header::AUTHORIZATION).map(|v| v.as_bytes());
        if !admin.open_paths.iter().any(|o| o == path) && !token.authorizes(given) {
            return unauthorized();
        }
    }
    let known = matches!(path, "/metrics" | "/healthz" | "/readyz" | "/topology");
    if !known {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut().insert(hyper::header::ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match path {
        "/metrics" => {
            p.refresh_gauges();
            let mut r = text(StatusCode::OK, p.router.metrics.render());
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => match not_ready(p) {
            None => text(StatusCode::OK, "ready\n"),
            Some(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
        },
        _ => {
            let mut r = text(StatusCode::OK, to_json(&p.router.topology.load_full()));
            r.headers_mut()
                .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
            r
        }
    }
}

/// Why the proxy should not get traffic now, if it should not.
pub fn not_ready(p: &Shared) -> Option<String> {
    if p.draining.load(Ordering::Relaxed) {
        return Some("draining: shutting down".into());
    }
    let t = p.router.topology.load();
    if t.version == 0 {
        return Some("no topology loaded yet".into());
    }
    let uncovered = t.uncovered();
    if uncovered > 0 {
        return Some(format!("{uncovered} slots have no master"));
    }
    let usage = &p.conn.usage;
    if usage.refusing() {
        return Some(format!(
            "{} bytes buffered for clients, past 3/4 of limits.max_memory ({}): new requests are refused",
            usage.total(),
            usage.max()
        ));
    }
    None
}
