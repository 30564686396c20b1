//! Giving memory back to the system: the allocator told to return big buffers as soon as they are
//! freed, and trimmed after a burst of clients or of buffered bytes is over.

use std::sync::Arc;
use std::time::Duration;

use crate::memory::Usage;
use crate::stats::ProxyStats;

/// Buffers from this size on get their own mapping, unmapped when freed.
const MMAP_FROM: usize = 128 * 1024;

/// A burst of buffered bytes worth trimming after: released within consecutive seconds, each
/// releasing at least a quarter of it.
const BYTES_BURST: usize = 16 << 20;

/// A client idle this long keeps no buffers (Redis frees an idle client's query buffer after 2 s).
const SHED_AFTER_MS: u64 = 2000;

/// Clients letting go of their buffers in one turn worth a trim after: a kilobyte or more each.
const SHED_TRIM: usize = 256;

/// glibc raises its mmap threshold to the size of each mapped buffer it frees (up to 32 MB), so
/// after one burst of 512 KB values every later one came from the arenas and stayed there: RSS
/// measured 104 MB resident after such a burst, 12 MB with the threshold held fixed.
pub(super) fn hold_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: mallopt only sets an allocator parameter (glibc takes its own lock); no pointers.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_FROM as libc::c_int);
    }
}

/// Trims the allocator once a burst is over: of clients (measured: 72 MB stayed resident after
/// 10,000 idle clients disconnected, against 9 MB before), or of bytes buffered for clients (the
/// small frames of a burst of messages fill the arenas: 49 MB stayed resident after a slow
/// subscriber was closed at its 32 MB, 9 MB after a trim). Not while bytes keep flowing: what a
/// steady stream frees is reused at once, and a trim would only make it fault the pages in again.
///
/// Every other second it also asks the clients idle for [`SHED_AFTER_MS`] to let go of their
/// buffers (read and write buffers, the capacity of their queues), and trims after many did.
pub(super) async fn release_after_bursts(stats: Arc<ProxyStats>, usage: Arc<Usage>) {
    let (mut clients_peak, mut burst) = (0usize, 0usize);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut turn = 0u32;
    let mut shed = 0usize;
    loop {
        tick.tick().await;
        turn = turn.wrapping_add(1);
        // The clients asked a turn ago have let go by now.
        if shed >= SHED_TRIM {
            trim();
        }
        shed = if turn % 2 == 0 { stats.clients.shed_idle(SHED_AFTER_MS) } else { 0 };
        let released = usage.take_released();
        if released >= BYTES_BURST / 4 {
            burst += released;
        } else {
            if burst + released >= BYTES_BURST {
                trim();
            }
            burst = 0;
        }
        // Clients every 5 s, as before: connection counts move slowly.
        if turn % 5 == 0 {
            let now = stats.connected();
            clients_peak = clients_peak.max(now);
            if clients_peak >= now + 256 && now < clients_peak / 2 {
                trim();
                clients_peak = now;
            }
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() {
    // SAFETY: malloc_trim only walks the allocator's own free lists; it takes no pointers from us.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
