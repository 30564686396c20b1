//! The accept loop: bounded by `limits.max_clients` (past it, Redis's own error and a close), with
//! backoff when accepting fails (out of file descriptors), each client handed to a worker thread.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use super::workers::Workers;
use super::Shared;
use crate::conn;

pub(super) async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    workers: Arc<Workers>,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(shared.cfg.limits.max_clients));
    let stats = &shared.router.stats;
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            // Returning drops the listener: new connections are refused from here on.
            _ = shutdown.changed() => return,
        };
        let (mut stream, peer) = match accepted {
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
                tokio::spawn(async move {
                    let _ = stream.write_all(&crate::errors::max_clients()).await;
                    let _ = stream.shutdown().await;
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
        workers.spawn(async move {
            match TcpStream::from_std(stream) {
                Ok(stream) => conn::serve(h, stream, peer).await,
                Err(e) => tracing::warn!(%peer, error = %e, "cannot register the client with its worker"),
            }
            drop(permit);
        });
    }
}
