//! A proxy following a shared observer: one long `GET /v1/topology/watch` (hyper's HTTP/1.1
//! client, over TLS for `https://`, with the bearer token when one is configured), each line a
//! snapshot published as is; while the observer cannot be reached, or refuses the token, the
//! proxy polls the cluster itself and reconnects with backoff.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::config::Secret;
use crate::metrics::Metrics;
use crate::topology::{from_json, Learned, Poller, TopologyStore};

/// How a refusal of the token (401) begins the reason [`follow`] returns: it is logged once per
/// run of refusals, not at every retry.
const REFUSED: &str = "401 Unauthorized";

/// How to reach a shared observer: where, with which token, over TLS or not.
pub struct Link {
    /// `host:port`, also the Host header.
    addr: String,
    /// The `Authorization` header's value, marked sensitive; `None` without a token.
    auth: Option<hyper::header::HeaderValue>,
    /// For `https://`: the TLS client and the name the certificate must carry.
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl Link {
    /// The link for `url` (`http://HOST:PORT` or `https://HOST:PORT`, checked by the config).
    /// An https link trusts the web's roots (webpki-roots) and the PEM certificates in
    /// `ca_file`. Errors name the configuration key and say what is wrong without showing the
    /// token.
    pub fn new(url: &str, token: Option<&Secret>, ca_file: Option<&Path>) -> Result<Link, (&'static str, String)> {
        let (https, rest) = match url.strip_prefix("https://") {
            Some(rest) => (true, rest),
            None => (false, url.trim_start_matches("http://")),
        };
        let addr = rest.trim_end_matches('/').to_string();
        let auth = match token {
            Some(t) => {
                let mut v = hyper::header::HeaderValue::from_str(&format!("Bearer {}", t.expose())).map_err(|_| {
                    ("topology.observer_token_file", "the token has characters an HTTP header cannot carry".into())
                })?;
                // Kept out of hyper's own debug output.
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        let tls = match https {
            false => None,
            true => {
                let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let name = ServerName::try_from(host.to_string())
                    .map_err(|e| ("topology.observer", format!("`{host}` cannot name a TLS server: {e}")))?;
                let config = client_config(ca_file).map_err(|e| ("topology.observer_ca_file", e))?;
                Some((TlsConnector::from(Arc::new(config)), name))
            }
        };
        Ok(Link { addr, auth, tls })
    }
}

/// A TLS client trusting the web's roots and the certificates in `ca_file`.
fn client_config(ca_file: Option<&Path>) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{} holds no PEM certificate", path.display()));
        }
        for c in certs {
            roots.add(c).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    // The provider is named rather than taken from the process default, which would be a panic
    // if none were installed. ring, which rustls 0.23.48 marks deprecated for lacking
    // post-quantum key exchange, because it builds with a C compiler alone (aws-lc needs cmake
    // and minutes of build); the TLS issue, which serves TLS too, may move both sides to aws-lc.
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .map_err(|e| format!("TLS: {e}"))
}

/// Follows a shared observer through `link` forever, publishing every snapshot; polls the
/// cluster itself while the observer cannot be reached or refuses the token.
pub async fn subscribe(link: Link, store: Arc<TopologyStore>, poller: Arc<Poller>, metrics: Arc<Metrics>) {
    let limit = poller.limit();
    let addr = &link.addr;
    let mut backoff = Duration::from_millis(200);
    // Whether the last attempt was refused: a refusal is an error to fix, said once per episode.
    let mut refused = false;
    loop {
        let why = follow(&link, &store, &metrics, limit).await;
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
async fn follow(link: &Link, store: &TopologyStore, metrics: &Metrics, limit: Duration) -> String {
    let stream = match tokio::time::timeout(limit, TcpStream::connect(&link.addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return format!("connect: {e}"),
        Err(_) => return "connect timed out".into(),
    };
    match &link.tls {
        None => over(stream, link, store, metrics, limit).await,
        Some((tls, name)) => match tokio::time::timeout(limit, tls.connect(name.clone(), stream)).await {
            Ok(Ok(s)) => over(s, link, store, metrics, limit).await,
            Ok(Err(e)) => format!("TLS handshake: {e}"),
            Err(_) => "TLS handshake timed out".into(),
        },
    }
}

/// HTTP over an open connection (plain or TLS).
async fn over<IO>(io: IO, link: &Link, store: &TopologyStore, metrics: &Metrics, limit: Duration) -> String
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(io)).await {
        Ok(h) => h,
        Err(e) => return format!("HTTP handshake: {e}"),
    };
    // The connection's own task; it ends when the stream does or `sender` is dropped.
    let conn = tokio::spawn(conn);
    let why = watch(&link.addr, link.auth.as_ref(), &mut sender, store, metrics, limit).await;
    conn.abort();
    why
}

async fn watch(
    addr: &str,
    auth: Option<&hyper::header::HeaderValue>,
    sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    store: &TopologyStore,
    metrics: &Metrics,
    limit: Duration,
) -> String {
    let mut req = hyper::Request::get("/v1/topology/watch")
        .header(hyper::header::HOST, addr)
        .header(hyper::header::ACCEPT, "application/x-ndjson");
    if let Some(a) = auth {
        req = req.header(hyper::header::AUTHORIZATION, a.clone());
    }
    let req = match req.body(Empty::<Bytes>::new()) {
        Ok(r) => r,
        Err(e) => return format!("request: {e}"),
    };
    let resp = match tokio::time::timeout(limit, sender.send_request(req)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return format!("request: {e}"),
        Err(_) => return "no answer in time".into(),
    };
    if resp.status() == hyper::StatusCode::UNAUTHORIZED {
        let why = if auth.is_some() { "the token was refused" } else { "the observer requires a token" };
        return format!("{REFUSED}: {why}");
    }
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
