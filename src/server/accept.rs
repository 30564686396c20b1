//! The accept loops, one per listener (plain TCP, TLS): together bounded by `limits.max_clients`
//! (past it, Redis's own error and a close), with backoff when accepting fails (out of file
//! descriptors), each client handed to a worker thread. A TLS client's handshake runs on its
//! worker, within `tls.handshake_timeout_ms`, before the connection is served like any other.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use super::tls::Tls;
use super::workers::Workers;
use super::Shared;
use crate::conn::{self, ClientStream};
use crate::metrics::Metrics;

/// TLS clients past `limits.max_clients` told so at once (each costs a handshake).
const MAX_TLS_REFUSALS: usize = 64;

/// What a listener's clients speak.
#[derive(Clone)]
pub(super) enum Kind {
    Plain,
    Tls(Arc<Tls>),
}

pub(super) async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    kind: Kind,
    slots: Arc<Semaphore>,
    workers: Arc<Workers>,
    mut shutdown: watch::Receiver<bool>,
) {
    let stats = &shared.router.stats;
    // A TLS refusal costs a handshake: past this many at once, the refused are just closed.
    let refusing = Arc::new(Semaphore::new(MAX_TLS_REFUSALS));
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            // Returning drops the listener: new connections are refused from here on.
            _ = shutdown.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(s) => {
                backoff = Duration::from_millis(5);
                s
            }
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                stats.rejected_connections.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%peer, "client rejected: max number of clients reached");
                let turn = match kind {
                    Kind::Plain => None,
                    Kind::Tls(_) => match refusing.clone().try_acquire_owned() {
                        Ok(t) => Some(t),
                        Err(_) => continue,
                    },
                };
                let m = shared.router.metrics.clone();
                let kind = kind.clone();
                tokio::spawn(async move {
                    refuse(stream, kind, m, peer).await;
                    drop(turn);
                });
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // The socket moves to the worker's own reactor.
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "cannot hand the client to a worker");
                continue;
            }
        };
        let h = shared.conn.clone();
        let worker = workers.next();
        match &kind {
            // Registered with the worker's reactor from here, and its task made at once: a task
            // in between, freed as soon as it spawned the client's, left a hole per client in
            // the heap (measured: 1 KB per idle client more after a burst of connections).
            Kind::Plain => {
                let stream = {
                    let _in = worker.enter();
                    TcpStream::from_std(stream)
                };
                match stream {
                    Ok(s) => drop(worker.spawn(conn::serve(h, ClientStream::Plain(s), peer, permit))),
                    Err(e) => tracing::warn!(%peer, error = %e, "cannot register the client with its worker"),
                }
            }
            Kind::Tls(tls) => {
                let tls = tls.clone();
                drop(worker.spawn(async move {
                    let stream = match TcpStream::from_std(stream) {
                        Ok(s) => s,
                        Err(e) => {
                            return tracing::warn!(%peer, error = %e, "cannot register the client with its worker")
                        }
                    };
                    let Some(stream) = handshake(&tls, stream, &h.router.metrics, peer).await else { return };
                    // A task of its own, without the handshake's state.
                    tokio::spawn(conn::serve(h, stream, peer, permit));
                }));
            }
        }
    }
}

/// The TLS handshake, within its time limit; `None` (logged, counted) when it fails.
async fn handshake(tls: &Tls, stream: TcpStream, m: &Metrics, peer: SocketAddr) -> Option<ClientStream> {
    match tokio::time::timeout(tls.handshake_timeout(), tls.acceptor().accept(stream)).await {
        Ok(Ok(s)) => Some(ClientStream::Tls(Box::new(s))),
        Ok(Err(e)) => {
            m.tls_handshake_failures.with_label_values(&["error"]).inc();
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            m.tls_handshake_failures.with_label_values(&["timeout"]).inc();
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

/// Tells a client past `limits.max_clients` why it is closed, as Redis does, in the listener's
/// own protocol: a TLS client could not read a plain error.
async fn refuse(stream: TcpStream, kind: Kind, m: Arc<Metrics>, peer: SocketAddr) {
    async fn say<S: AsyncWrite + Unpin>(mut s: S) {
        let _ = s.write_all(&crate::errors::max_clients()).await;
        let _ = s.shutdown().await;
    }
    match kind {
        Kind::Plain => say(stream).await,
        Kind::Tls(tls) => {
            if let Some(ClientStream::Tls(s)) = handshake(&tls, stream, &m, peer).await {
                // The write is bounded as the handshake was: the client may not read.
                let _ = tokio::time::timeout(tls.handshake_timeout(), say(s)).await;
            }
        }
    }
}
