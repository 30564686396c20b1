//! Certificates for TLS clusters, made with rcgen into a scratch directory removed on drop: a CA,
//! a node certificate for 127.0.0.1 and localhost (the nodes' server and bus client certificate),
//! a client certificate for the proxy, and a second CA that signed none of them.

use std::path::PathBuf;

use clusterless::config::{Config, ProxyArgs};
use clusterless::localcluster::TlsSpec;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

pub struct Certs {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub node_cert: PathBuf,
    pub node_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A CA that signed nothing here: trusting it instead of `ca` must fail.
    pub other_ca: PathBuf,
    /// A client certificate signed by `other_ca`: a TLS bus refuses it.
    pub stranger_cert: PathBuf,
    pub stranger_key: PathBuf,
}

fn ca(name: &str) -> (CertificateParams, KeyPair) {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    p.distinguished_name.push(DnType::CommonName, name);
    (p, KeyPair::generate().expect("CA key"))
}

impl Certs {
    pub fn new() -> Certs {
        let dir =
            std::env::temp_dir().join(format!("clusterless-tls-{}-{:08x}", std::process::id(), rand::random::<u32>()));
        std::fs::create_dir_all(&dir).expect("cert dir");
        let write = |name: &str, text: String| {
            let p = dir.join(name);
            std::fs::write(&p, text).expect("write cert");
            p
        };
        let (ca_params, ca_key) = ca("clusterless test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
        let issuer = Issuer::from_params(&ca_params, &ca_key);

        let mut node = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("params");
        node.distinguished_name.push(DnType::CommonName, "redis node");
        node.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let node_key = KeyPair::generate().expect("key");
        let node_cert = node.signed_by(&node_key, &issuer).expect("node cert");

        let mut client = CertificateParams::new(Vec::<String>::new()).expect("params");
        client.distinguished_name.push(DnType::CommonName, "clusterless");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_key = KeyPair::generate().expect("key");
        let client_cert = client.signed_by(&client_key, &issuer).expect("client cert");

        let (other_params, other_key) = ca("some other CA");
        let other = other_params.self_signed(&other_key).expect("other CA");
        let other_issuer = Issuer::from_params(&other_params, &other_key);
        let stranger_key = KeyPair::generate().expect("key");
        let stranger_cert = client.signed_by(&stranger_key, &other_issuer).expect("stranger cert");
        Certs {
            ca: write("ca.crt", ca_cert.pem()),
            node_cert: write("node.crt", node_cert.pem()),
            node_key: write("node.key", node_key.serialize_pem()),
            client_cert: write("client.crt", client_cert.pem()),
            client_key: write("client.key", client_key.serialize_pem()),
            other_ca: write("other-ca.crt", other.pem()),
            stranger_cert: write("stranger.crt", stranger_cert.pem()),
            stranger_key: write("stranger.key", stranger_key.serialize_pem()),
            dir,
        }
    }

    /// The cluster's side: every node serves `node.crt`; `auth_clients` is `tls-auth-clients`.
    pub fn spec(&self, auth_clients: &str) -> TlsSpec {
        TlsSpec {
            ca: self.ca.clone(),
            cert: self.node_cert.clone(),
            key: self.node_key.clone(),
            auth_clients: auth_clients.into(),
        }
    }

    /// The proxy's `[backend.tls]` as the flags give it, loaded as `clusterless` loads it: `ca`
    /// trusted, and the client certificate when `client_cert`.
    pub fn apply(&self, cfg: &mut Config, ca: &std::path::Path, client_cert: bool) {
        let pair = client_cert.then(|| (self.client_cert.clone(), self.client_key.clone()));
        self.apply_pair(cfg, ca, pair);
    }

    /// [`Certs::apply`] with this client certificate and key, or none.
    pub fn apply_pair(&self, cfg: &mut Config, ca: &std::path::Path, pair: Option<(PathBuf, PathBuf)>) {
        let (cert, key) = pair.unzip();
        let args = ProxyArgs {
            backend_tls_ca: Some(ca.to_path_buf()),
            backend_tls_cert: cert,
            backend_tls_key: key,
            ..Default::default()
        };
        cfg.backend.tls = Config::load(&args).expect("backend.tls").backend.tls;
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
