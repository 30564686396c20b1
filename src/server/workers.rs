//! Worker threads, each running its own single-threaded runtime: a client's task and the node
//! connections it feeds live on one thread, so a request is never handed to another core and back
//! (cross-thread wake-ups were the largest item of the proxy's profile: bench/RESULTS.md). The
//! control plane (accepting, topology, observer, admin HTTP) stays on the caller's runtime.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::Handle;
use tokio::sync::watch;

/// Workers started by default at most: each worker opens its own connections to every master it
/// sends to, so a sidecar on a 64-core host without a CPU limit would hold 64 connections to each
/// master, in every pod; a sidecar that needs more than this many cores is rare and says so.
pub const MAX_DEFAULT: usize = 4;

/// Resolves the configured thread count: 0 means one per CPU the process may use (the CPU
/// quota of its container counts: `available_parallelism` reads cgroup limits), at most
/// [`MAX_DEFAULT`].
pub fn count(configured: usize) -> usize {
    if configured > 0 {
        configured
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_DEFAULT))
    }
}

/// The running workers; dropping this stops them, cancelling whatever they still run.
pub struct Workers {
    handles: Vec<Handle>,
    next: AtomicUsize,
    stop: watch::Sender<bool>,
}

impl Workers {
    /// Starts `n` worker threads (n >= 1).
    pub fn start(n: usize) -> std::io::Result<Workers> {
        let (stop, stopped) = watch::channel(false);
        let mut handles = Vec::with_capacity(n);
        for i in 0..n.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            handles.push(rt.handle().clone());
            let mut stopped = stopped.clone();
            std::thread::Builder::new().name(format!("clusterless-w{}", i + 1)).spawn(move || {
                crate::backend::enter_worker(i + 1);
                rt.block_on(async move {
                    // An error means the sender is gone: stop as well.
                    while !*stopped.borrow() {
                        if stopped.changed().await.is_err() {
                            break;
                        }
                    }
                });
            })?;
        }
        Ok(Workers { handles, next: AtomicUsize::new(0), stop })
    }

    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// The worker the next client goes to, in turn.
    pub fn next(&self) -> &Handle {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        &self.handles[i]
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
