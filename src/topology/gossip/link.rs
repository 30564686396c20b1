//! One bus link per node: connect to its cluster-bus port (over TLS for a `tls-cluster yes`
//! cluster), then PING, wait for the PONG, sleep until the next beat of the link's pace (steady
//! while the node is quiet, fast while the observer says something about it is changing),
//! forever; on any failure, including the node closing the link while we sleep, report the node
//! down and reconnect with backoff.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::codec::{self, Message, NodeId};
use super::ObserverConfig;
use crate::backend::NodeStream;
use crate::metrics::Metrics;
use crate::sync::Mutex;

/// The instants every link PINGs at and the health check runs at: one shared beat, so an idle
/// observer wakes once per interval for all of them instead of once per link and timer (each
/// wake-up costs more than the PING it sends). The phase is random so that proxies started
/// together do not PING a node in step.
#[derive(Clone, Copy, Debug)]
pub(super) struct Beat {
    origin: Instant,
    every: Duration,
}

impl Beat {
    pub(super) fn new(every: Duration) -> Beat {
        let every = every.max(Duration::from_millis(1));
        let phase = Duration::from_micros(rand::random_range(0..every.as_micros() as u64));
        Beat { origin: Instant::now() + phase, every }
    }

    /// A steady beat of `every` for the `k`-th link, laid on the instants of `fast`. The links'
    /// steady PINGs are spread over the period, so that the PFAIL and FAIL flags every PONG
    /// carries are sampled every `every / links` rather than all at once per period; they still
    /// fall on fast instants, so links that share one share the wake-up. The `k`-th link takes the
    /// `k`-th point of the van der Corput sequence (0, 1/2, 1/4, 3/4, 1/8...): however many links
    /// there are, they are spread evenly.
    pub(super) fn staggered(fast: Beat, every: Duration, k: usize) -> Beat {
        let steps = (every.as_nanos() / fast.every.as_nanos()).max(1) as u64;
        let point = (k as u64).reverse_bits() as f64 / 2f64.powi(64);
        let step = ((point * steps as f64) as u64).min(steps - 1);
        let every = fast.every * steps as u32;
        Beat { origin: fast.origin + Duration::from_nanos((fast.every.as_nanos() as u64) * step), every }
    }

    /// The first beat after `t`.
    pub(super) fn after(&self, t: Instant) -> Instant {
        if t < self.origin {
            return self.origin;
        }
        let every = self.every.as_nanos();
        let beats = (t - self.origin).as_nanos() / every + 1;
        self.origin + Duration::from_nanos((beats * every) as u64)
    }
}

/// How a link failure caused by TLS begins its reason: the observer then says the bus fell back
/// to polling because of TLS.
pub(super) const TLS_FAILED: &str = "TLS handshake: ";

/// What the link tasks report.
pub(super) enum Event {
    Pong { bus: String, msg: Box<Message>, rtt: Duration },
    Down { bus: String, why: String },
}

/// What a link needs besides its address: our id, the two beats it PINGs at, and the observer's
/// word on which one applies now (`true`: fast).
pub(super) struct Pace {
    pub fast: Beat,
    pub steady: Beat,
    pub fast_now: watch::Receiver<bool>,
}

/// One node's bus link: connect, then PING / wait for the PONG / sleep, forever; on any failure
/// report the node down and reconnect with backoff (0.5 s doubling to 5 s).
pub(super) async fn link(
    bus: String,
    my_id: Arc<Mutex<NodeId>>,
    cfg: ObserverConfig,
    mut pace: Pace,
    tx: mpsc::Sender<Event>,
    metrics: Arc<Metrics>,
) {
    let mut backoff = Duration::from_millis(500);
    loop {
        let why = match tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(&bus)).await {
            Ok(Ok(tcp)) => {
                let _ = tcp.set_nodelay(true);
                let stream = match &cfg.tls {
                    None => Ok(NodeStream::Plain(tcp)),
                    Some(tls) => match tokio::time::timeout(cfg.connect_timeout, NodeStream::tls(tcp, &bus, tls)).await
                    {
                        Ok(r) => r,
                        Err(_) => Err("no handshake in time".to_string()),
                    },
                };
                match stream {
                    Ok(stream) => {
                        backoff = Duration::from_millis(500);
                        let (why, answered) = ping_loop(stream, &bus, &my_id, &cfg, &mut pace, &tx, &metrics).await;
                        // In TLS 1.3 a node checks the client certificate after the client's
                        // handshake is done: a refusal shows as the first read failing.
                        match cfg.tls.is_some() && !answered {
                            true => format!("{TLS_FAILED}the node ended the session before its first PONG ({why})"),
                            false => why,
                        }
                    }
                    Err(why) => format!("{TLS_FAILED}{why}"),
                }
            }
            Ok(Err(e)) => format!("connect: {e}"),
            Err(_) => "connect timed out".to_string(),
        };
        if tx.send(Event::Down { bus: bus.clone(), why }).await.is_err() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn ping_loop(
    mut stream: NodeStream,
    bus: &str,
    my_id: &Mutex<NodeId>,
    cfg: &ObserverConfig,
    pace: &mut Pace,
    tx: &mpsc::Sender<Event>,
    metrics: &Metrics,
) -> (String, bool) {
    // Whether a PONG came on this connection.
    let mut answered = false;
    let mut buf = BytesMut::with_capacity(8192);
    loop {
        let id = *my_id.lock();
        let fast = *pace.fast_now.borrow_and_update();
        let sent = Instant::now();
        if let Err(e) = stream.send(&codec::encode_ping(&id)).await {
            return (format!("write: {e}"), answered);
        }
        if metrics.enabled {
            metrics.bus_pings.with_label_values(&[if fast { "fast" } else { "slow" }]).inc();
        }
        // One PING outstanding: wait for its PONG (other message types are skipped).
        let deadline = sent + cfg.pong_timeout();
        let msg = loop {
            match codec::frame_len(&buf) {
                Err(e) => return (format!("bad frame: {e}"), answered),
                Ok(Some(n)) if buf.len() >= n => {
                    let frame = buf.split_to(n);
                    match codec::decode(&frame) {
                        Ok(m) if m.header.msg_type() == codec::TYPE_PONG => break m,
                        Ok(_) => continue,
                        Err(e) => return (format!("bad message: {e}"), answered),
                    }
                }
                _ => {}
            }
            match tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)).await {
                Ok(Ok(0)) => return ("closed by node".into(), answered),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return (format!("read: {e}"), answered),
                Err(_) => return (format!("no PONG within {} ms", cfg.pong_timeout().as_millis()), answered),
            }
        };
        answered = true;
        let rtt = sent.elapsed();
        if tx.send(Event::Pong { bus: bus.to_string(), msg: Box::new(msg), rtt }).await.is_err() {
            return ("observer stopped".into(), answered);
        }
        if let Err(why) = rest(&mut stream, &mut buf, pace).await {
            return (why, answered);
        }
    }
}

/// Sleeps until the link's next PING is due: the next beat of its pace, or at once when the
/// observer switches it to fast. Meanwhile the socket is read, so a node that closes the link (the
/// kernel does it for a killed process) is reported now, not at the next PING, which on the
/// steady beat may be seconds away. Nodes send an unknown sender nothing but PONGs; anything else
/// is kept for the PONG wait to skip, up to a bound.
async fn rest(stream: &mut NodeStream, buf: &mut BytesMut, pace: &mut Pace) -> Result<(), String> {
    loop {
        let fast = *pace.fast_now.borrow_and_update();
        let beat = if fast { pace.fast } else { pace.steady };
        tokio::select! {
            _ = tokio::time::sleep_until(beat.after(Instant::now())) => return Ok(()),
            changed = pace.fast_now.changed() => {
                if changed.is_err() {
                    return Err("observer stopped".into());
                }
                if !fast && *pace.fast_now.borrow() {
                    return Ok(());
                }
            }
            read = stream.read_buf(buf) => match read {
                Ok(0) => return Err("closed by node".into()),
                Ok(_) if buf.len() > MAX_UNASKED => return Err("node sent unasked data".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("read: {e}")),
            },
        }
    }
}

/// What a node may send between PINGs before the link is dropped (it should send nothing).
const MAX_UNASKED: usize = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_are_shared_instants() {
        let every = Duration::from_millis(250);
        let b = Beat::new(every);
        assert!(b.origin >= Instant::now() - every && b.origin <= Instant::now() + every);
        assert_eq!(b.after(b.origin - Duration::from_millis(1)), b.origin);
        assert_eq!(b.after(b.origin), b.origin + every);
        assert_eq!(b.after(b.origin + Duration::from_millis(100)), b.origin + every);
        assert_eq!(b.after(b.origin + every * 1000 + Duration::from_nanos(1)), b.origin + every * 1001);
    }

    #[test]
    fn steady_beats_spread_over_the_period_on_fast_instants() {
        let fast = Beat::new(Duration::from_millis(250));
        let steady: Vec<Beat> = (0..6).map(|k| Beat::staggered(fast, Duration::from_secs(2), k)).collect();
        let mut offsets: Vec<u128> = steady.iter().map(|b| (b.origin - fast.origin).as_millis()).collect();
        for b in &steady {
            assert_eq!(b.every, Duration::from_secs(2));
            assert_eq!((b.origin - fast.origin).as_millis() % 250, 0, "on a fast instant");
        }
        offsets.sort();
        offsets.dedup();
        assert_eq!(offsets.len(), 6, "six links, six distinct instants in the period: {offsets:?}");
        // A steady beat shorter than the fast one is the fast one.
        assert_eq!(Beat::staggered(fast, Duration::from_millis(100), 3).every, fast.every);
    }
}
