//! `[backend.tls]`: TLS toward the nodes. The files are read and the TLS client built here, at
//! load, so that a CA, certificate or key that cannot be used stops the start with one line
//! naming the key and the file, instead of every connection failing later.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use super::file::FileBackendTls;
use super::{ConfigError, ProxyArgs};

/// TLS toward the nodes: client ports, and the cluster bus when `bus` is set.
#[derive(Clone)]
pub struct NodeTls {
    /// The TLS client: trusts only `ca_file`, presents the client certificate if one is given.
    pub client: Arc<ClientConfig>,
    /// The name every node's certificate must carry; `None`: the host or IP the node is known by.
    pub server_name: Option<ServerName<'static>>,
    /// Whether a client certificate is configured (a TLS cluster bus requires one).
    pub client_cert: bool,
    /// Whether the cluster bus speaks TLS too (`tls-cluster yes`): the gossip observer then
    /// connects over TLS, or polls when it cannot.
    pub bus: bool,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeTls")
            .field("server_name", &self.server_name)
            .field("client_cert", &self.client_cert)
            .field("bus", &self.bus)
            .finish()
    }
}

/// What the file, the flags and the variables say of `[backend.tls]`, merged.
#[derive(Debug, Default)]
pub(super) struct TlsSettings {
    pub(super) ca_file: Option<PathBuf>,
    pub(super) cert_file: Option<PathBuf>,
    pub(super) key_file: Option<PathBuf>,
    pub(super) server_name: Option<String>,
    pub(super) bus: Option<String>,
}

fn bad(key: &str, why: impl std::fmt::Display) -> ConfigError {
    super::check::bad(&format!("backend.tls.{key}"), why)
}

impl TlsSettings {
    /// Flags (and their variables) over the file.
    pub(super) fn merge(args: &ProxyArgs, f: FileBackendTls) -> TlsSettings {
        TlsSettings {
            ca_file: args.backend_tls_ca.clone().or(f.ca_file),
            cert_file: args.backend_tls_cert.clone().or(f.cert_file),
            key_file: args.backend_tls_key.clone().or(f.key_file),
            server_name: args.backend_tls_server_name.clone().or(f.server_name),
            bus: args.backend_tls_bus.clone().or(f.bus.map(|b| if b { "yes" } else { "no" }.to_string())),
        }
    }

    /// The TLS client, or `None` when no key of `[backend.tls]` is set.
    pub(super) fn build(self) -> Result<Option<NodeTls>, ConfigError> {
        let empty = |p: &Option<PathBuf>| p.as_ref().is_none_or(|p| p.as_os_str().is_empty());
        if empty(&self.ca_file)
            && empty(&self.cert_file)
            && empty(&self.key_file)
            && self.server_name.as_deref().is_none_or(str::is_empty)
        {
            return Ok(None);
        }
        let ca = self
            .ca_file
            .filter(|p| !p.as_os_str().is_empty())
            .ok_or_else(|| bad("ca_file", "TLS toward the nodes needs the CA that signed their certificates"))?;
        let mut roots = RootCertStore::empty();
        for c in certs("ca_file", &ca)? {
            roots.add(c).map_err(|e| bad("ca_file", format!("{}: {e}", ca.display())))?;
        }
        let server_name = match self.server_name.filter(|s| !s.is_empty()) {
            Some(s) => Some(
                ServerName::try_from(s.clone())
                    .map_err(|e| bad("server_name", format!("`{s}` cannot name a TLS server: {e}")))?,
            ),
            None => None,
        };
        let bus = match self.bus.as_deref() {
            None | Some("yes") | Some("true") => true,
            Some("no") | Some("false") => false,
            Some(other) => return Err(bad("bus", format!("`{other}` is not yes or no"))),
        };
        // See topology/shared/link.rs for why ring, named rather than the process default.
        #[allow(deprecated)]
        let provider = rustls::crypto::ring::default_provider();
        let builder = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| bad("ca_file", format!("TLS: {e}")))?
            .with_root_certificates(roots);
        let cert = self.cert_file.filter(|p| !p.as_os_str().is_empty());
        let key = self.key_file.filter(|p| !p.as_os_str().is_empty());
        let (client, client_cert) = match (cert, key) {
            (None, None) => (builder.with_no_client_auth(), false),
            (Some(_), None) => return Err(bad("key_file", "set together with backend.tls.cert_file")),
            (None, Some(_)) => return Err(bad("cert_file", "set together with backend.tls.key_file")),
            (Some(cert), Some(key)) => {
                let chain = certs("cert_file", &cert)?;
                let pk = PrivateKeyDer::from_pem_file(&key)
                    .map_err(|e| bad("key_file", format!("{}: no usable PEM private key ({e})", key.display())))?;
                let client = builder
                    .with_client_auth_cert(chain, pk)
                    .map_err(|e| bad("key_file", format!("{} does not fit {}: {e}", key.display(), cert.display())))?;
                (client, true)
            }
        };
        Ok(Some(NodeTls { client: Arc::new(client), server_name, client_cert, bus }))
    }
}

/// The PEM certificates in `path`, at least one ([`super::pem`]), refused in `key`'s name.
fn certs(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    super::pem::certs(path).map_err(|e| bad(key, e.describe(path)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// A scratch directory with a CA certificate, removed on drop.
    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn load(dir: &Dir, text: &str) -> Result<Config, ConfigError> {
        let path = dir.0.join("clusterless.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&ProxyArgs { config: Some(path), ..Default::default() })
    }

    #[test]
    fn the_file_keys_build_the_client_and_bad_values_name_their_key() {
        let dir =
            Dir(std::env::temp_dir().join(format!("clusterless-tls-{}-{}", std::process::id(), rand::random::<u32>())));
        std::fs::create_dir_all(&dir.0).unwrap();
        let ca = dir.0.join("ca.crt");
        std::fs::write(&ca, rcgen::generate_simple_self_signed(vec!["ca".to_string()]).unwrap().cert.pem()).unwrap();
        let ca = ca.display();

        assert!(load(&dir, "").unwrap().backend.tls.is_none());
        let c =
            load(&dir, &format!("[backend.tls]\nca_file = \"{ca}\"\nserver_name = \"redis.internal\"\nbus = false\n"))
                .unwrap();
        let tls = c.backend.tls.expect("TLS on");
        assert_eq!(tls.server_name, Some(ServerName::try_from("redis.internal").unwrap()));
        assert!(!tls.bus && !tls.client_cert);
        let tls = load(&dir, &format!("[backend.tls]\nca_file = \"{ca}\"\n")).unwrap().backend.tls.expect("TLS on");
        assert!(tls.bus && tls.server_name.is_none(), "a TLS cluster's bus is TLS unless told otherwise");

        let e =
            load(&dir, &format!("[backend.tls]\nca_file = \"{ca}\"\nserver_name = \"not a name\"\n")).unwrap_err().0;
        assert!(
            e.starts_with("invalid config: `backend.tls.server_name`: `not a name` cannot name a TLS server"),
            "{e}"
        );
        let e = load(&dir, "[backend.tls]\nserver_name = \"redis.internal\"\n").unwrap_err().0;
        assert!(e.starts_with("invalid config: `backend.tls.ca_file`: "), "{e}");
        let e = load(&dir, "[backend.tls]\nbogus = 1\n").unwrap_err().0;
        assert!(e.contains("`backend.tls.bogus`: unknown field `bogus`"), "{e}");
        let args = ProxyArgs {
            backend_tls_ca: Some(PathBuf::from(ca.to_string())),
            backend_tls_bus: Some("maybe".into()),
            ..Default::default()
        };
        assert_eq!(Config::load(&args).unwrap_err().0, "invalid config: `backend.tls.bus`: `maybe` is not yes or no");
    }
}
