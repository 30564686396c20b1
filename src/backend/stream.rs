//! The byte stream to a node: plain TCP, or TLS over it when `[backend.tls]` is configured. One
//! type, so that the connections above it (pooled, dedicated, subscriptions, topology queries)
//! do not care which.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use crate::config::NodeTls;

/// A connection to a node.
pub enum NodeStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// The read half of a node connection split for a subscription's reader task.
pub type NodeReader = tokio::io::ReadHalf<NodeStream>;

/// The write half of a node connection split for a subscription's client task.
pub struct NodeWriter(tokio::io::WriteHalf<NodeStream>);

impl NodeWriter {
    /// Writes all of `buf` and flushes: TLS may keep written bytes in its own buffer otherwise.
    pub async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf).await?;
        self.0.flush().await
    }
}

impl NodeStream {
    /// Writes all of `buf` and flushes it to the socket (a no-op for TCP; TLS may keep written
    /// records in its own buffer until flushed).
    pub async fn send(&mut self, buf: &[u8]) -> io::Result<()> {
        self.write_all(buf).await?;
        self.flush().await
    }

    /// Opens TLS over `tcp` to the node at `addr`: its certificate must name `tls.server_name`,
    /// or else the host or IP of `addr`. The error says why in an operator's words.
    pub async fn tls(tcp: TcpStream, addr: &str, tls: &NodeTls) -> Result<NodeStream, String> {
        let name = match &tls.server_name {
            Some(n) => n.clone(),
            None => host_name(addr)?,
        };
        let connector = TlsConnector::from(tls.client.clone());
        match connector.connect(name, tcp).await {
            Ok(s) => Ok(NodeStream::Tls(Box::new(s))),
            Err(e) => Err(e.to_string()),
        }
    }

    fn tcp(&self) -> &TcpStream {
        match self {
            NodeStream::Plain(s) => s,
            NodeStream::Tls(s) => s.get_ref().0,
        }
    }

    /// Whether an idle connection is still fit to carry a request: the node sent nothing and
    /// did not close it (a node that restarted or failed over closes or says something). Looks
    /// without consuming, so a TLS record stays where TLS expects it.
    pub fn idle_ok(&self) -> bool {
        let mut probe = [0u8; 1];
        // Ready at once: bytes or EOF are waiting; pending: nothing was said.
        self.tcp().peek(&mut probe).now_or_never().is_none()
    }

    /// Splits into halves for a subscription: the reader task owns one, the client task the other.
    pub fn split(self) -> (NodeReader, NodeWriter) {
        let (r, w) = tokio::io::split(self);
        (r, NodeWriter(w))
    }
}

/// The name a node's certificate must carry when none is configured: the host or IP it is known
/// by (an IPv6 address without its brackets).
pub fn host_name(addr: &str) -> Result<ServerName<'static>, String> {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|e| format!("`{host}` cannot name a TLS server: {e}"))
}

impl AsyncRead for NodeStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NodeStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            NodeStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for NodeStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            NodeStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            NodeStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            NodeStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            NodeStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            NodeStream::Plain(s) => s.is_write_vectored(),
            NodeStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NodeStream::Plain(s) => Pin::new(s).poll_flush(cx),
            NodeStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NodeStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            NodeStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
