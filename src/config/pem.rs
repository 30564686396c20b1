//! The PEM certificate files of every TLS setting (the client listener's certificate and client
//! CA, the nodes' CA and client certificate, the shared observer's CA), read one way: a file
//! that cannot be opened, does not decode, or holds no certificate is refused, and each setting
//! words the refusal in its own line.

use std::path::Path;

use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::CertificateDer;

/// Why a PEM file gave no certificates.
#[derive(Debug)]
pub enum CertsError {
    /// It could not be opened.
    Open(pem::Error),
    /// Reading or decoding it failed part way.
    Read(pem::Error),
    /// It holds no certificate.
    Empty,
}

impl CertsError {
    /// `cannot read PATH: why`, `PATH: why`, or `PATH holds no PEM certificate`.
    pub fn describe(&self, path: &Path) -> String {
        match self {
            CertsError::Open(e) => format!("cannot read {}: {e}", path.display()),
            CertsError::Read(e) => format!("{}: {e}", path.display()),
            CertsError::Empty => format!("{} holds no PEM certificate", path.display()),
        }
    }
}

/// The PEM certificates in `path`, at least one.
pub fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(CertsError::Open)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(CertsError::Read)?;
    if certs.is_empty() {
        return Err(CertsError::Empty);
    }
    Ok(certs)
}
