//! How a proxy reaches its shared observer: the address, the bearer token (kept out of logs), and
//! for `https://` the TLS client that checks the observer's certificate.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::config::Secret;

/// How to reach a shared observer: where, with which token, over TLS or not.
pub struct Link {
    /// `host:port`, also the Host header.
    pub(super) addr: String,
    /// The `Authorization` header's value, marked sensitive; `None` without a token.
    pub(super) auth: Option<hyper::header::HeaderValue>,
    /// For `https://`: the TLS client and the name the certificate must carry.
    pub(super) tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl Link {
    /// The link for `url` (`http://HOST:PORT` or `https://HOST:PORT`, checked by the config).
    /// An https link trusts the web's roots (webpki-roots) and the PEM certificates in
    /// `ca_file`. Errors name the configuration key and say what is wrong without showing the
    /// token.
    pub fn new(url: &str, token: Option<&Secret>, ca_file: Option<&Path>) -> Result<Link, (&'static str, String)> {
        let (https, rest) = match url.strip_prefix("https://") {
            Some(rest) => (true, rest),
            None => (false, url.trim_start_matches("http://")),
        };
        let addr = rest.trim_end_matches('/').to_string();
        let auth = match token {
            Some(t) => {
                let mut v = hyper::header::HeaderValue::from_str(&format!("Bearer {}", t.expose())).map_err(|_| {
                    ("topology.observer_token_file", "the token has characters an HTTP header cannot carry".into())
                })?;
                // Kept out of hyper's own debug output.
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        let tls = match https {
            false => None,
            true => {
                let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let name = ServerName::try_from(host.to_string())
                    .map_err(|e| ("topology.observer", format!("`{host}` cannot name a TLS server: {e}")))?;
                let config = client_config(ca_file).map_err(|e| ("topology.observer_ca_file", e))?;
                Some((TlsConnector::from(Arc::new(config)), name))
            }
        };
        Ok(Link { addr, auth, tls })
    }
}

/// A TLS client trusting the web's roots and the certificates in `ca_file`.
fn client_config(ca_file: Option<&Path>) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = ca_file {
        for c in crate::config::pem::certs(path).map_err(|e| e.describe(path))? {
            roots.add(c).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    // The provider is named rather than taken from the process default, which would be a panic
    // if none were installed. ring, which rustls 0.23.48 marks deprecated for lacking
    // post-quantum key exchange, because it builds with a C compiler alone (aws-lc needs cmake
    // and minutes of build); the TLS issue, which serves TLS too, may move both sides to aws-lc.
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .map_err(|e| format!("TLS: {e}"))
}
