//! The TLS listener's server side: its certificate and key, and for mutual TLS the client CAs,
//! read from the `[tls]` files into a rustls configuration that every new handshake takes; and
//! the reload of those files (SIGHUP through [`crate::Running::reload_tls`], or a change seen
//! on disk) that swaps it without touching connected clients. A reload that fails keeps the
//! configuration in use.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::config::pem::CertsError;
use crate::config::TlsConfig;
use crate::metrics::Metrics;
use crate::sync::Mutex;

/// How often the files are looked at for a change.
const POLL_FILES: Duration = Duration::from_secs(2);

/// A problem with one of the files: the key naming it, and what is wrong (the path included).
pub(super) type FileError = (&'static str, String);

/// The TLS configuration in use, and what is needed to build the next one.
pub(super) struct Tls {
    cfg: TlsConfig,
    current: ArcSwap<ServerConfig>,
    /// When and how large each file was at the last load, to see it change.
    stamps: Mutex<Vec<Option<(SystemTime, u64)>>>,
}

impl Tls {
    /// Reads the files; errors name the key and the file.
    pub(super) fn load(cfg: &TlsConfig) -> Result<Tls, FileError> {
        let stamps = stamps(cfg);
        let config = server_config(cfg)?;
        Ok(Tls { cfg: cfg.clone(), current: ArcSwap::from_pointee(config), stamps: Mutex::new(stamps) })
    }

    /// What a new connection's handshake uses: the configuration in use now.
    pub(super) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }

    pub(super) fn handshake_timeout(&self) -> Duration {
        self.cfg.handshake_timeout
    }

    /// Reads the files again; on success new handshakes use them, on failure the configuration
    /// in use stays. Either way the outcome is logged on one line and counted.
    pub(super) fn reload(&self, why: &str, m: &Metrics) -> Result<(), String> {
        *self.stamps.lock() = stamps(&self.cfg);
        match server_config(&self.cfg) {
            Ok(c) => {
                self.current.store(Arc::new(c));
                m.tls_reloads.with_label_values(&["ok"]).inc();
                tracing::info!(reason = why, cert = %self.cfg.cert_file.display(), "TLS certificate reloaded");
                Ok(())
            }
            Err((key, e)) => {
                m.tls_reloads.with_label_values(&["error"]).inc();
                let line = format!("`{key}`: {e}");
                tracing::error!(reason = why, error = %line, "TLS reload failed; keeping the certificate in use");
                Err(line)
            }
        }
    }

    /// Whether a file changed (or appeared, or went) since the last load.
    fn changed(&self) -> bool {
        *self.stamps.lock() != stamps(&self.cfg)
    }
}

/// Reloads whenever a file changes, looking every [`POLL_FILES`].
pub(super) async fn watch_files(tls: Arc<Tls>, m: Arc<Metrics>) {
    let mut tick = tokio::time::interval(POLL_FILES);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if tls.changed() {
            let _ = tls.reload("files changed", &m);
        }
    }
}

fn stamps(cfg: &TlsConfig) -> Vec<Option<(SystemTime, u64)>> {
    let files = [Some(&cfg.cert_file), Some(&cfg.key_file), cfg.client_ca_file.as_ref()];
    files
        .into_iter()
        .flatten()
        .map(|p| std::fs::metadata(p).ok().and_then(|m| Some((m.modified().ok()?, m.len()))))
        .collect()
}

/// The rustls server for the files as they are now.
fn server_config(cfg: &TlsConfig) -> Result<ServerConfig, FileError> {
    let chain = certs(&cfg.cert_file).map_err(|e| ("tls.cert_file", e))?;
    let key = PrivateKeyDer::from_pem_file(&cfg.key_file).map_err(|e| {
        let why = match e {
            pem::Error::NoItemsFound => format!("{} holds no PEM private key", cfg.key_file.display()),
            e => unreadable(&cfg.key_file, e),
        };
        ("tls.key_file", why)
    })?;
    // See topology/shared/link.rs for why ring, named rather than the process default.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ("tls.listen", format!("TLS: {e}")))?;
    let builder = match &cfg.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for c in certs(path).map_err(|e| ("tls.client_ca_file", e))? {
                roots.add(c).map_err(|e| ("tls.client_ca_file", format!("{}: {e}", path.display())))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| ("tls.client_ca_file", format!("{}: {e}", path.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    builder.with_single_cert(chain, key).map_err(|e| match e {
        rustls::Error::InvalidCertificate(e) => ("tls.cert_file", format!("{}: {e}", cfg.cert_file.display())),
        rustls::Error::InconsistentKeys(_) => (
            "tls.key_file",
            format!("{} does not match the certificate in {}", cfg.key_file.display(), cfg.cert_file.display()),
        ),
        e => ("tls.key_file", format!("{}: {e}", cfg.key_file.display())),
    })
}

/// The PEM certificates in `path`, at least one ([`crate::config::pem`]); a file that cannot be
/// used says whether it could not be read or is not PEM.
fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    crate::config::pem::certs(path).map_err(|e| match e {
        CertsError::Open(e) | CertsError::Read(e) => unreadable(path, e),
        empty => empty.describe(path),
    })
}

/// Why a PEM file could not be used, with its path.
fn unreadable(path: &Path, e: pem::Error) -> String {
    match e {
        pem::Error::Io(e) => format!("cannot read {}: {e}", path.display()),
        e => format!("{}: not valid PEM: {e}", path.display()),
    }
}
