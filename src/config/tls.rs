//! The `[tls]` section: the TLS listener for clients, its certificate files and, for mutual TLS,
//! the CAs a client's certificate must chain to. Only the keys are checked here; the files are
//! read and parsed where the TLS server is built (at start, and again on every reload).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::check::{bad, millis};
use super::file::FileTls;
use super::{ConfigError, ProxyArgs};

/// The TLS listener for clients (`[tls]`): its certificate, and for mutual TLS the CAs a
/// client's certificate must chain to. The files are read at start and again on SIGHUP or when
/// they change.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    pub listen: SocketAddr,
    /// PEM: the server's certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM: its private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM: CA certificates; when set, every client must present a certificate they issued.
    pub client_ca_file: Option<PathBuf>,
    /// How long a new connection has to finish the TLS handshake.
    pub handshake_timeout: Duration,
}

/// The `[tls]` section: all of listen, cert_file and key_file, or none of them (client_ca_file
/// only with them). The files are read and parsed at start, where the TLS server is built.
pub(super) fn load(args: &ProxyArgs, f: FileTls) -> Result<Option<TlsConfig>, ConfigError> {
    let listen = args.tls_listen.clone().or(f.listen).filter(|l| !l.is_empty());
    let cert = args.tls_cert.clone().or(f.cert_file);
    let key = args.tls_key.clone().or(f.key_file);
    let client_ca = args.tls_client_ca.clone().or(f.client_ca_file);
    let handshake_timeout = millis("tls.handshake_timeout_ms", f.handshake_timeout_ms, Duration::from_millis(10_000))?;
    let Some(l) = listen else {
        for (k, set) in [
            ("tls.cert_file", cert.is_some()),
            ("tls.key_file", key.is_some()),
            ("tls.client_ca_file", client_ca.is_some()),
        ] {
            if set {
                return Err(bad(k, "set together with tls.listen"));
            }
        }
        return Ok(None);
    };
    let listen = l.parse().map_err(|_| bad("tls.listen", format!("`{l}` is not an IP:PORT address")))?;
    let cert_file = cert.ok_or_else(|| bad("tls.cert_file", "needed with tls.listen"))?;
    let key_file = key.ok_or_else(|| bad("tls.key_file", "needed with tls.listen"))?;
    Ok(Some(TlsConfig { listen, cert_file, key_file, client_ca_file: client_ca, handshake_timeout }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(listen: Option<&str>, cert: Option<&str>, key: Option<&str>) -> FileTls {
        FileTls {
            listen: listen.map(str::to_string),
            cert_file: cert.map(PathBuf::from),
            key_file: key.map(PathBuf::from),
            client_ca_file: None,
            handshake_timeout_ms: Some(250),
        }
    }

    #[test]
    fn all_three_or_none_and_flags_beat_the_file() {
        let none = ProxyArgs::default();
        let t = load(&none, file(Some("127.0.0.1:6380"), Some("c.pem"), Some("k.pem"))).unwrap().unwrap();
        assert_eq!((t.listen.port(), t.handshake_timeout), (6380, Duration::from_millis(250)));
        assert_eq!((t.cert_file, t.key_file, t.client_ca_file), ("c.pem".into(), "k.pem".into(), None));
        let flags = ProxyArgs {
            tls_listen: Some("127.0.0.1:6390".into()),
            tls_cert: Some("flag.pem".into()),
            tls_client_ca: Some("ca.pem".into()),
            ..Default::default()
        };
        let t = load(&flags, file(Some("127.0.0.1:6380"), Some("c.pem"), Some("k.pem"))).unwrap().unwrap();
        assert_eq!((t.listen.port(), t.cert_file, t.client_ca_file), (6390, "flag.pem".into(), Some("ca.pem".into())));
        // An empty listen turns it off, even when the file sets one.
        let off = ProxyArgs { tls_listen: Some(String::new()), ..Default::default() };
        assert!(load(&off, file(Some("127.0.0.1:6380"), None, None)).unwrap().is_none());
        let e = load(&off, file(None, Some("c.pem"), Some("k.pem"))).unwrap_err().0;
        assert_eq!(e, "invalid config: `tls.cert_file`: set together with tls.listen");
        let e = load(&none, file(Some("127.0.0.1:6380"), Some("c.pem"), None)).unwrap_err().0;
        assert_eq!(e, "invalid config: `tls.key_file`: needed with tls.listen");
        let e = load(&none, file(Some("nope"), Some("c.pem"), Some("k.pem"))).unwrap_err().0;
        assert_eq!(e, "invalid config: `tls.listen`: `nope` is not an IP:PORT address");
        let mut f = file(Some("127.0.0.1:6380"), Some("c.pem"), Some("k.pem"));
        f.handshake_timeout_ms = Some(0);
        assert_eq!(load(&none, f).unwrap_err().0, "invalid config: `tls.handshake_timeout_ms`: must be greater than 0");
    }
}
