//! The client's socket, plain TCP or TLS over TCP, as the connection reads and writes it: the
//! rest of `conn` sees a read half and a write half and never which kind it holds. A plain
//! socket splits without a lock (the hot path stays as it was); a TLS one shares its session
//! between the halves through tokio's split.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use futures_util::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWrite};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// An accepted client connection, its handshake (if any) done.
pub enum ClientStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl ClientStream {
    /// The TCP socket underneath.
    fn tcp(&self) -> &TcpStream {
        match self {
            ClientStream::Plain(s) => s,
            ClientStream::Tls(s) => s.get_ref().0,
        }
    }

    pub(super) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().local_addr()
    }

    pub(super) fn fd(&self) -> i64 {
        self.tcp().as_raw_fd() as i64
    }

    /// A second handle on the TCP socket (a `dup`), through which CLIENT KILL shuts its reads
    /// down: a TLS session then meets the end of its input too.
    pub(super) fn dup(&self) -> Option<std::net::TcpStream> {
        self.tcp().as_fd().try_clone_to_owned().ok().map(std::net::TcpStream::from)
    }

    pub(super) fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            ClientStream::Plain(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Plain(r), WriteHalf::Plain(w))
            }
            ClientStream::Tls(s) => {
                let (r, w) = tokio::io::split(*s);
                (ReadHalf::Tls(r), WriteHalf::Tls(w))
            }
        }
    }
}

type TlsRead = tokio::io::ReadHalf<TlsStream<TcpStream>>;
type TlsWrite = tokio::io::WriteHalf<TlsStream<TcpStream>>;

pub(super) enum ReadHalf {
    Plain(OwnedReadHalf),
    Tls(TlsRead),
}

impl ReadHalf {
    /// Reads what is there without waiting; `WouldBlock` when nothing is.
    pub(super) fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            ReadHalf::Plain(r) => r.try_read_buf(buf),
            // Bytes may sit in the TLS session already decrypted, or need a record to complete:
            // only a read polled once can tell.
            ReadHalf::Tls(r) => r.read_buf(buf).now_or_never().unwrap_or(Err(io::ErrorKind::WouldBlock.into())),
        }
    }
}

impl ReadHalf {
    /// Waits for bytes and reads them into `buf`, making room for `size` only once they are
    /// there: a client waiting on a plain socket holds no read buffer ([`super::pool`]). A TLS
    /// session reads into the room at once: its decrypted bytes may be waiting in the session
    /// with the socket itself quiet.
    pub(super) async fn read_into(&mut self, buf: &mut BytesMut, size: usize) -> io::Result<usize> {
        match self {
            // Readiness as `poll_read` waits on it (the socket's one reader waker), not
            // `readable()`'s queued waiter, which every waiting client would carry.
            ReadHalf::Plain(r) => {
                std::future::poll_fn(|cx| loop {
                    std::task::ready!(r.as_ref().poll_read_ready(cx))?;
                    make_room(buf, size);
                    match r.try_read_buf(buf) {
                        // Readiness was stale: cleared by the failed read, waited on again.
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        read => return Poll::Ready(read),
                    }
                })
                .await
            }
            ReadHalf::Tls(r) => {
                make_room(buf, size);
                r.read_buf(buf).await
            }
        }
    }
}

/// A buffer from the worker's pool if the client holds none, with room for at least half a read:
/// `size` grows with the client's requests, so that a request of 1 KB does not arrive in two
/// reads of a buffer with 1 KB left.
fn make_room(buf: &mut BytesMut, size: usize) {
    super::pool::lend(buf, size);
    if buf.capacity() - buf.len() < size / 2 {
        buf.reserve(size);
    }
}

pub(super) enum WriteHalf {
    Plain(OwnedWriteHalf),
    Tls(TlsWrite),
}

impl AsyncWrite for WriteHalf {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Plain(w) => Pin::new(w).poll_write(cx, buf),
            WriteHalf::Tls(w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Plain(w) => Pin::new(w).poll_flush(cx),
            WriteHalf::Tls(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Plain(w) => Pin::new(w).poll_shutdown(cx),
            WriteHalf::Tls(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}
