//! How a request to a node failed: one error type for every node connection, carrying the node,
//! what went wrong, the I/O error under it, and the fact that decides whether the request may be
//! sent again (pingora-error's idea: the retry decision travels with the error).

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

/// Where a request was when its connection failed: this alone decides whether it may be retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The request never left the proxy: always safe to send again, elsewhere too.
    NotSent,
    /// The connection broke after the request was written: it may or may not have run.
    Lost,
    /// The node did not answer within the request timeout (the connection was then closed).
    Timeout,
}

/// What went wrong, in words an operator can act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    Connect,
    ConnectTimeout(Duration),
    HandshakeTimeout(Duration),
    /// The TLS handshake failed (an untrusted or misnamed certificate, a refused client
    /// certificate, a node that does not speak TLS).
    Tls(String),
    /// The node refused AUTH/HELLO with this text.
    AuthRefused(String),
    /// The node at the address is not the one the map names there (or not a node of this
    /// cluster): it answered `CLUSTER MYID` with `answered`.
    WrongNode {
        expected: Option<String>,
        answered: String,
    },
    /// The node refused to say its id (the backend user lacks `+cluster|myid`).
    NoIdentity(String),
    /// The connection task ended before it wrote the request.
    ClosedBeforeSend,
    /// The connection's queue is closed (the node left the map).
    Closed,
    /// Every exclusive connection allowed to the node is in use.
    DedicatedBusy(usize),
    NoClientId,
    WriteFailed,
    ClosedByNode,
    ReadFailed,
    /// A reply nobody asked for: the stream can no longer be matched to requests.
    Unsolicited,
    /// The node's bytes are not RESP.
    Malformed(&'static str),
    WriteTimeout(Duration),
    ReplyTimeout(Duration),
    /// No answer to this command within its own deadline (EXEC, WAIT, a blocking pop, WATCH).
    NoAnswerTo(&'static str),
}

/// A failed request to `node`.
#[derive(Clone, Debug)]
pub struct BackendError {
    pub failure: Failure,
    pub node: Arc<str>,
    pub reason: Reason,
    source: Option<Arc<io::Error>>,
}

impl BackendError {
    pub fn new(failure: Failure, node: &str, reason: Reason) -> BackendError {
        BackendError { failure, node: Arc::from(node), reason, source: None }
    }

    pub fn not_sent(node: &str, reason: Reason) -> BackendError {
        BackendError::new(Failure::NotSent, node, reason)
    }

    pub fn lost(node: &str, reason: Reason) -> BackendError {
        BackendError::new(Failure::Lost, node, reason)
    }

    pub fn timeout(node: &str, reason: Reason) -> BackendError {
        BackendError::new(Failure::Timeout, node, reason)
    }

    /// The same error, for a request that is known not to have been sent (a handshake failed).
    pub fn not_sent_after_all(mut self) -> BackendError {
        self.failure = Failure::NotSent;
        self
    }

    /// The same error, caused by `e`.
    pub fn caused_by(mut self, e: io::Error) -> BackendError {
        self.source = Some(Arc::new(e));
        self
    }

    /// Whether the request may be sent again: one never sent always may; one that was sent only
    /// when it changes nothing, so that nothing ever runs twice.
    pub fn may_retry(&self, readonly: bool) -> bool {
        self.failure == Failure::NotSent || readonly
    }

    /// Whether the proxy's own bound on exclusive connections refused the request. That says
    /// nothing about the node (it is not failing over), and the pool already waited the connect
    /// timeout for a free connection: the error goes to the client as it is.
    pub fn busy(&self) -> bool {
        matches!(self.reason, Reason::DedicatedBusy(_))
    }

    /// What the client is told: for a request that was sent, that it may or may not have run.
    pub fn reply(&self) -> Bytes {
        match self.failure {
            Failure::Timeout => crate::errors::may_have_run(self),
            Failure::Lost => crate::errors::lost_after_send(self),
            Failure::NotSent => crate::errors::proxy(self),
        }
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = &self.node;
        let ms = |d: &Duration| d.as_millis();
        match &self.reason {
            Reason::Connect => write!(f, "cannot connect to {n}")?,
            Reason::ConnectTimeout(d) => write!(f, "cannot connect to {n}: timed out after {} ms", ms(d))?,
            Reason::HandshakeTimeout(d) => write!(f, "{n}: no answer to AUTH/HELLO within {} ms", ms(d))?,
            Reason::Tls(why) => write!(f, "TLS handshake with {n} failed: {why}")?,
            Reason::AuthRefused(text) => write!(f, "{n} refused authentication: {text}")?,
            Reason::WrongNode { expected: Some(e), answered } => {
                write!(f, "{n} is not the node the slot map names there (expected {e}, it answered {answered})")?
            }
            Reason::WrongNode { expected: None, answered } => {
                write!(f, "{n} is not a node of this cluster (it answered {answered})")?
            }
            Reason::NoIdentity(text) => {
                write!(f, "{n} refused CLUSTER MYID ({text}); the backend user needs +cluster|myid")?
            }
            Reason::ClosedBeforeSend => write!(f, "connection to {n} closed before sending")?,
            Reason::Closed => write!(f, "connection to {n} is closed")?,
            Reason::DedicatedBusy(k) => {
                write!(f, "all {k} dedicated connections to {n} are busy (backend.dedicated_per_node)")?
            }
            Reason::NoClientId => write!(f, "{n}: no answer to CLIENT ID")?,
            Reason::WriteFailed => write!(f, "connection to {n} lost while sending")?,
            Reason::ClosedByNode => write!(f, "connection to {n} closed by the node")?,
            Reason::ReadFailed => write!(f, "connection to {n} lost")?,
            Reason::Unsolicited => write!(f, "unexpected reply from {n}")?,
            Reason::Malformed(what) => write!(f, "{n}: malformed reply: {what}")?,
            Reason::WriteTimeout(d) => write!(f, "{n} did not accept data within {} ms", ms(d))?,
            Reason::ReplyTimeout(d) => write!(f, "{n} did not answer within {} ms", ms(d))?,
            Reason::NoAnswerTo(what) => write!(f, "{n} did not answer {what} in time")?,
        }
        match &self.source {
            Some(e) => write!(f, ": {e}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_node_reason_and_cause() {
        let e = BackendError::lost("10.0.0.1:7000", Reason::WriteFailed)
            .caused_by(io::Error::new(io::ErrorKind::BrokenPipe, "broken pipe"));
        assert_eq!(e.to_string(), "connection to 10.0.0.1:7000 lost while sending: broken pipe");
        assert!(std::error::Error::source(&e).is_some());
        assert!(!e.may_retry(false) && e.may_retry(true));
        assert_eq!(
            &e.reply()[..],
            &b"-ERR clusterless: connection to 10.0.0.1:7000 lost while sending: broken pipe after the command was sent; it may or may not have been executed\r\n"[..]
        );
        let n = BackendError::not_sent("a:1", Reason::DedicatedBusy(4));
        assert!(n.may_retry(false) && n.busy() && !e.busy());
        assert_eq!(
            &n.reply()[..],
            &b"-ERR clusterless: all 4 dedicated connections to a:1 are busy (backend.dedicated_per_node)\r\n"[..]
        );
    }
}
