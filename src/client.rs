//! One task per client connection: reads and parses everything in the read buffer, dispatches each
//! request (local answer, refusal, or a routing future), and writes replies back strictly in request
//! order, batching every reply that is ready into one write.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::stream::{FuturesOrdered, StreamExt};
use futures_util::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::backend::Cx;
use crate::command::{self, Class, Lookup};
use crate::metrics::Outcome;
use crate::proxy::Proxy;
use crate::resp::{self, reply, Limits, Parsed, Request, RequestParser};
use crate::router::Trace;
use crate::session::{self, Session};

/// A reply that is either known now or still being routed; avoids boxing local answers.
enum ReplyFut {
    Ready(Option<Bytes>),
    Routed(Pin<Box<dyn Future<Output = Bytes> + Send>>),
}

impl Future for ReplyFut {
    type Output = Bytes;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Bytes> {
        match self.get_mut() {
            ReplyFut::Ready(b) => Poll::Ready(b.take().unwrap_or_default()),
            ReplyFut::Routed(f) => f.as_mut().poll(cx),
        }
    }
}

const NOAUTH: &str = "NOAUTH Authentication required.";

/// Serves one client until it disconnects, sends QUIT, or breaks the protocol.
pub async fn serve(p: Arc<Proxy>, stream: TcpStream, peer: SocketAddr) {
    let id = p.stats.next_client_id.fetch_add(1, Ordering::Relaxed) + 1;
    p.stats.connected_clients.fetch_add(1, Ordering::Relaxed);
    p.stats.total_connections.fetch_add(1, Ordering::Relaxed);
    let mut session = Session::new(&p, id, peer.to_string());
    let (mut rd, mut wr) = stream.into_split();
    let limits = Limits { max_bulk_len: p.cfg.limits.max_bulk_len, max_inline_len: p.cfg.limits.max_inline_len };
    let mut parser = RequestParser::new(limits, session.authenticated);
    let max_pipeline = p.cfg.limits.max_pipeline;
    let mut rbuf = BytesMut::with_capacity(16 * 1024);
    let mut wbuf = BytesMut::with_capacity(16 * 1024);
    let mut inflight: FuturesOrdered<ReplyFut> = FuturesOrdered::new();
    // Once set we read no more: remaining replies are flushed, then the connection closes.
    let mut closing = false;

    // Set when the parser needs more bytes; cleared whenever new bytes arrive.
    let mut need_bytes = true;
    let mut shutdown = p.shutdown.clone();
    let mut draining = *shutdown.borrow();
    loop {
        // Requests already buffered are parsed before reading more, as soon as there is room:
        // a client that sent a deep pipeline and now only waits must not stall.
        while !closing && !need_bytes && inflight.len() < max_pipeline {
            match parser.next(&mut rbuf) {
                Ok(Parsed::Request(req)) => {
                    inflight.push_back(dispatch(&p, &mut session, req));
                    parser.authenticated = session.authenticated;
                    if session.quit {
                        closing = true;
                    }
                }
                Ok(Parsed::Empty) => {}
                Ok(Parsed::Incomplete) => need_bytes = true,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "closing client after protocol error");
                    p.metrics.clients_protocol_errors.inc();
                    inflight.push_back(ReplyFut::Ready(Some(reply::error(&e.0))));
                    closing = true;
                }
            }
        }
        if closing && inflight.is_empty() {
            break;
        }
        // Draining: leave once everything received is answered and nothing more is waiting.
        if draining && inflight.is_empty() && need_bytes {
            match rd.try_read_buf(&mut rbuf) {
                Ok(0) => break,
                Ok(n) => {
                    count_in(&p, n);
                    need_bytes = false;
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && rbuf.is_empty() => break,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
        }
        tokio::select! {
            biased;
            Some(first) = inflight.next(), if !inflight.is_empty() => {
                wbuf.extend_from_slice(&first);
                while let Some(Some(r)) = inflight.next().now_or_never() {
                    wbuf.extend_from_slice(&r);
                }
                if wr.write_all(&wbuf).await.is_err() {
                    break;
                }
                if p.metrics.enabled {
                    p.metrics.bytes_out.inc_by(wbuf.len() as u64);
                }
                wbuf.clear();
                if wbuf.capacity() > 4 * 1024 * 1024 {
                    wbuf = BytesMut::with_capacity(16 * 1024);
                }
            }
            r = rd.read_buf(&mut rbuf), if !closing && need_bytes && inflight.len() < max_pipeline => {
                match r {
                    // The client closed its side: answer what it already sent, then close.
                    Ok(0) | Err(_) => closing = true,
                    Ok(n) => {
                        count_in(&p, n);
                        need_bytes = false;
                    }
                }
                if rbuf.capacity() - rbuf.len() < 1024 {
                    rbuf.reserve(16 * 1024);
                }
            }
            _ = shutdown.changed(), if !draining => draining = true,
        }
    }
    let _ = wr.shutdown().await;
    p.stats.connected_clients.fetch_sub(1, Ordering::Relaxed);
}

#[inline]
fn count_in(p: &Proxy, n: usize) {
    if p.metrics.enabled {
        p.metrics.bytes_in.inc_by(n as u64);
    }
}

/// Decides what answers `req`: the session (local commands), a refusal, or the router.
fn dispatch(p: &Arc<Proxy>, s: &mut Session, req: Request) -> ReplyFut {
    let m = &p.metrics;
    let started = m.enabled.then(Instant::now);
    let spec = match p.table.lookup(&req.args) {
        Lookup::Found(spec) => spec.clone(),
        Lookup::Unknown(e) | Lookup::WrongArity(e) => {
            let reply = if s.authenticated { e } else { reply::error(NOAUTH) };
            if m.enabled {
                m.command("other").record(Outcome::Error);
            }
            return ReplyFut::Ready(Some(reply));
        }
    };
    let local = |reply: Bytes, class: &str| {
        if let Some(t) = started {
            m.command(&spec.name).record(if resp::is_error(&reply) { Outcome::Error } else { Outcome::Ok });
            m.latency(class).observe(t.elapsed().as_secs_f64());
        }
        ReplyFut::Ready(Some(reply))
    };
    if !s.authenticated && !matches!(spec.name.as_str(), "auth" | "hello" | "quit") {
        return local(reply::error(NOAUTH), "refused");
    }
    let class = match spec.class {
        Class::Local => return local(session::handle(p, s, &spec.name, &req.args), "local"),
        Class::Refused(why) => return local(reply::error(why), "refused"),
        _ if spec.blocking && command::asks_to_block(&spec, &req.args) => {
            return local(reply::error("ERR blocking commands are not supported by clusterless yet"), "refused")
        }
        Class::Keyed => "keyed",
        Class::MGet | Class::MSet | Class::SumKeys => "fanout",
        Class::AllMasters(_) | Class::RandomKey => "all_masters",
        Class::AnyMaster => "any_master",
        Class::Scan => "scan",
        Class::Info => "info",
    };
    let cx = Cx { proto: s.proto, lane: s.id as u32 };
    let p = p.clone();
    ReplyFut::Routed(Box::pin(async move {
        let trace = Trace::default();
        let reply = crate::router::route(p.clone(), spec.clone(), req, cx, &trace).await;
        if let Some(t) = started {
            let outcome = if resp::is_error(&reply) {
                Outcome::Error
            } else if trace.redirected() {
                Outcome::Redirect
            } else {
                Outcome::Ok
            };
            p.metrics.command(&spec.name).record(outcome);
            p.metrics.latency(class).observe(t.elapsed().as_secs_f64());
        }
        reply
    }))
}
