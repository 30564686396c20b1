//! Opening a node connection (TCP_NODELAY, TLS when configured, AUTH or HELLO 3), and the plain
//! request/reply exchange used for handshakes and for out-of-band queries (topology, COMMAND,
//! INFO at start-up).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::timeout;

use super::identity::MYID;
use super::{BackendError, NodeStream, Reason, Verify};
use crate::config::{BackendConfig, Credentials, NodeTls, Secret};
use crate::resp::{self, ReplyScanner};

/// Credentials sent to every node when connecting.
#[derive(Clone, Debug, Default)]
pub struct Auth {
    pub user: Option<String>,
    pub password: Option<Secret>,
    /// READONLY after authenticating: replicas then answer reads of their master's slots
    /// (`routing.read_from` other than "master") instead of redirecting them. Masters ignore it,
    /// so one pool per node serves both roles, and a node keeps its connections across a failover.
    pub readonly: bool,
    /// TLS toward the nodes (`[backend.tls]`): every connection of every login uses it.
    pub tls: Option<NodeTls>,
}

impl Auth {
    pub fn from_config(c: &BackendConfig) -> Auth {
        Auth { user: c.user.clone(), password: c.password.clone(), readonly: false, tls: c.tls.clone() }
    }

    /// The logins of the node connections: 0 is `backend`'s, then each proxy user's own node
    /// credentials (`[[auth.users]] backend_user`), so that the nodes' ACLs decide what each
    /// proxy user may do. `readonly`: every one sends READONLY.
    pub fn logins(c: &BackendConfig, users: &[&Credentials], readonly: bool) -> Vec<Auth> {
        let own = users.iter().map(|u| Auth {
            user: Some(u.user.clone()),
            password: Some(u.password.clone()),
            readonly,
            tls: c.tls.clone(),
        });
        std::iter::once(Auth { readonly, ..Auth::from_config(c) }).chain(own).collect()
    }
}

/// Opens a connection, sets TCP_NODELAY, speaks TLS when configured, authenticates (HELLO 3 for
/// RESP3 connections) and asks the node who it is (`verify`), all in one pipelined write. Nothing but the handshake has been
/// sent when it fails, so every failure is `NotSent`.
pub async fn connect(
    addr: &str,
    proto: u8,
    auth: &Auth,
    limit: Duration,
    verify: Verify<'_>,
) -> Result<NodeStream, BackendError> {
    let tcp = match timeout(limit, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(BackendError::not_sent(addr, Reason::Connect).caused_by(e)),
        Err(_) => return Err(BackendError::not_sent(addr, Reason::ConnectTimeout(limit))),
    };
    let _ = tcp.set_nodelay(true);
    let mut stream = match &auth.tls {
        None => NodeStream::Plain(tcp),
        Some(tls) => match timeout(limit, NodeStream::tls(tcp, addr, tls)).await {
            Ok(Ok(s)) => s,
            Ok(Err(why)) => return Err(BackendError::not_sent(addr, Reason::Tls(why))),
            Err(_) => {
                return Err(BackendError::not_sent(
                    addr,
                    Reason::Tls(format!("no handshake within {} ms", limit.as_millis())),
                ))
            }
        },
    };
    let mut handshake: Vec<Vec<Bytes>> = Vec::new();
    let pass = auth.password.as_ref().map(|p| Bytes::copy_from_slice(p.expose().as_bytes()));
    let user = Bytes::copy_from_slice(auth.user.as_deref().unwrap_or("default").as_bytes());
    if proto >= 3 {
        let mut h = vec![Bytes::from_static(b"HELLO"), Bytes::from_static(b"3")];
        if let Some(p) = pass {
            h.extend([Bytes::from_static(b"AUTH"), user, p]);
        }
        handshake.push(h);
    } else if let Some(p) = pass {
        handshake.push(vec![Bytes::from_static(b"AUTH"), user, p]);
    }
    if auth.readonly {
        handshake.push(vec![Bytes::from_static(b"READONLY")]);
    }
    let credentials = handshake.len();
    handshake.push(MYID.iter().map(|w| Bytes::from_static(w.as_bytes())).collect());
    {
        let mut out = BytesMut::new();
        for h in &handshake {
            out.extend_from_slice(&resp::encode_command(h));
        }
        let replies = match timeout(limit, exchange(&mut stream, addr, &out, handshake.len())).await {
            Ok(r) => r.map_err(BackendError::not_sent_after_all)?,
            Err(_) => return Err(BackendError::not_sent(addr, Reason::HandshakeTimeout(limit))),
        };
        for r in &replies[..credentials] {
            if resp::is_error(r) {
                let text = String::from_utf8_lossy(resp::error_text(r).unwrap_or(r)).into_owned();
                return Err(BackendError::not_sent(addr, Reason::AuthRefused(text)));
            }
        }
        if let Some(id) = replies.get(credentials) {
            verify.check(addr, id)?;
        }
    }
    Ok(stream)
}

/// Writes `out` to `addr`'s connection and reads `n` replies.
pub async fn exchange(stream: &mut NodeStream, addr: &str, out: &[u8], n: usize) -> Result<Vec<Bytes>, BackendError> {
    stream.send(out).await.map_err(|e| BackendError::not_sent(addr, Reason::WriteFailed).caused_by(e))?;
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut scanner = ReplyScanner::default();
    let mut replies = Vec::with_capacity(n);
    while replies.len() < n {
        match scanner.scan(&buf) {
            Ok(Some(len)) => replies.push(buf.split_to(len).freeze()),
            Ok(None) => match stream.read_buf(&mut buf).await {
                Ok(0) => return Err(BackendError::lost(addr, Reason::ClosedByNode)),
                Ok(_) => {}
                Err(e) => return Err(BackendError::lost(addr, Reason::ReadFailed).caused_by(e)),
            },
            Err(e) => return Err(BackendError::lost(addr, Reason::Malformed(e.0))),
        }
    }
    Ok(replies)
}

/// One-shot query on a fresh connection (for topology refreshes and start-up), bounded by `limit`
/// to connect and twice that in all.
pub async fn query(
    addr: &str,
    auth: &Auth,
    cmds: &[&[&str]],
    limit: Duration,
    verify: Verify<'_>,
) -> Result<Vec<Bytes>, BackendError> {
    let work = async {
        let mut stream = connect(addr, 2, auth, limit, verify).await?;
        let mut out = BytesMut::new();
        for c in cmds {
            out.extend_from_slice(&resp::encode_command(c));
        }
        exchange(&mut stream, addr, &out, cmds.len()).await
    };
    match timeout(limit * 2, work).await {
        Ok(r) => r,
        Err(_) => Err(BackendError::timeout(addr, Reason::ReplyTimeout(limit * 2))),
    }
}
