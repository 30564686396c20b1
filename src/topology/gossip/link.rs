//! One bus link per node: connect to its cluster-bus port (over TLS for a `tls-cluster yes`
//! cluster), then PING, wait for the PONG, sleep
//! until the next beat, forever; on any failure report the node down and reconnect with backoff.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
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

/// One node's bus link: connect, then PING / wait for the PONG / sleep, forever; on any failure
/// report the node down and reconnect with backoff (0.5 s doubling to 5 s).
pub(super) async fn link(
    bus: String,
    my_id: Arc<Mutex<NodeId>>,
    cfg: ObserverConfig,
    beat: Beat,
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
                        let (why, answered) = ping_loop(stream, &bus, &my_id, &cfg, beat, &tx, &metrics).await;
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
    beat: Beat,
    tx: &mpsc::Sender<Event>,
    metrics: &Metrics,
) -> (String, bool) {
    // Whether a PONG came on this connection.
    let mut answered = false;
    let mut buf = BytesMut::with_capacity(8192);
    loop {
        let id = *my_id.lock();
        let sent = Instant::now();
        if let Err(e) = stream.send(&codec::encode_ping(&id)).await {
            return (format!("write: {e}"), answered);
        }
        if metrics.enabled {
            metrics.bus_pings.inc();
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
        tokio::time::sleep_until(beat.after(Instant::now())).await;
    }
}

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
}
