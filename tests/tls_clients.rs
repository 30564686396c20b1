//! The TLS listener for clients, against a real cluster of plain nodes: redis-cli, redis-py and a
//! rustls client through it; the plain listener beside it; mutual TLS; the limits and the drain
//! that apply to every client; reloading the certificate on SIGHUP or when its files change; and
//! unusable files refused at start on one line. Certificates are made here with rcgen.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use clusterless::config::{Config, TlsConfig};
use common::bin::{free_port, run_env, Bin, Dir};
use common::http::{admin_on, get, scrape};
use common::{eventually, eventually_async, expect_ok_at, Raw, PATIENCE};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SerialNumber};
use redis::AsyncCommands;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// A certificate authority, made fresh.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, as PEM, and the certificate as DER (what a client sees).
struct Leaf {
    cert: String,
    key: String,
    der: Vec<u8>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Ca { issuer: CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap() }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for 127.0.0.1 and localhost (a server's; clients' are accepted by name too).
    fn leaf(&self, name: &str, serial: u64) -> Leaf {
        let mut p = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.serial_number = Some(SerialNumber::from(serial));
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        Leaf { cert: cert.pem(), key: key.serialize_pem(), der: cert.der().to_vec() }
    }
}

/// The files of one setup: server certificate and key, the CA that signed it, a client CA.
struct Files {
    dir: Dir,
    cert: String,
    key: String,
}

impl Files {
    fn new(server: &Leaf) -> Files {
        let dir = Dir::new();
        let cert = dir.file("server.pem", &server.cert);
        let key = dir.file("server.key", &server.key);
        Files { dir, cert, key }
    }

    fn file(&self, name: &str, text: &str) -> String {
        self.dir.file(name, text)
    }

    fn tls(&self, client_ca: Option<&str>) -> TlsConfig {
        TlsConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            cert_file: PathBuf::from(&self.cert),
            key_file: PathBuf::from(&self.key),
            client_ca_file: client_ca.map(PathBuf::from),
            handshake_timeout: Duration::from_millis(500),
        }
    }

    /// Replaces the server's certificate and key, each file in one rename, key first.
    fn replace(&self, server: &Leaf) {
        for (path, text) in [(&self.key, &server.key), (&self.cert, &server.cert)] {
            let tmp = format!("{path}.new");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, path).unwrap();
        }
    }
}

/// A rustls client trusting `ca`, with `client` as its own certificate when given.
fn connector(ca: &Ca, client: Option<&Leaf>) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(ca.issuer.der().to_vec())).unwrap();
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().unwrap();
    let b = b.with_root_certificates(roots);
    let cfg = match client {
        None => b.with_no_client_auth(),
        Some(l) => {
            let cert = CertificateDer::from(l.der.clone());
            let key = PrivateKeyDer::from_pem_slice(l.key.as_bytes()).unwrap();
            b.with_client_auth_cert(vec![cert], key).unwrap()
        }
    };
    TlsConnector::from(Arc::new(cfg))
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// A TLS session to `addr` for 127.0.0.1; the handshake's error when it fails.
async fn tls_connect(addr: SocketAddr, c: &TlsConnector) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut s = c.connect(name, tcp).await?;
    // Under TLS 1.3 the server judges a client's certificate after the client's side is done:
    // a refusal shows on the first exchange.
    s.write_all(b"PING\r\n").await?;
    let mut pong = [0u8; 7];
    s.read_exact(&mut pong).await?;
    assert_eq!(&pong, b"+PONG\r\n");
    Ok(s)
}

/// The certificate the server showed this session.
fn server_cert(s: &Tls) -> Vec<u8> {
    s.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// Sends one request and reads its whole reply.
async fn ask(s: &mut Tls, req: &[u8]) -> Vec<u8> {
    s.write_all(req).await.unwrap();
    let mut buf = Vec::new();
    let read = async {
        loop {
            if let Some(n) = clusterless::resp::reply_len(&buf).unwrap() {
                assert_eq!(n, buf.len(), "one reply");
                return;
            }
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed while waiting for a reply");
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(PATIENCE, read).await.expect("a reply");
    buf
}

/// redis-cli's output (stdout then stderr) and success.
fn redis_cli(port: u16, tls: &[&str], cmd: &[&str]) -> (bool, String) {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(tls)
        .args(cmd)
        .output()
        .expect("redis-cli runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // redis-cli exits 0 after some connection errors: they show on stderr or as "Could not".
    (out.status.success() && !text.contains("Could not connect") && out.stderr.is_empty(), text.trim().to_string())
}

fn start_cfg(files: &Files, client_ca: Option<&str>) -> impl FnOnce(&mut Config) {
    let tls = files.tls(client_ca);
    move |c: &mut Config| {
        c.tls = Some(tls);
        admin_on(c);
    }
}

/// redis-cli and redis-py through the TLS listener, the plain listener serving the same keys
/// beside it, a client trusting another CA and a plain client at the TLS port refused; a
/// client that says nothing is dropped after the handshake timeout; CLIENT KILL ends a TLS
/// client; the files changing on disk are picked up for new sessions, a session open before
/// keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_through_tls_beside_plain() {
    let (ca, other) = (Ca::new("clusterless test CA"), Ca::new("another CA"));
    let server = ca.leaf("proxy-1", 1001);
    let files = Files::new(&server);
    let ca_file = files.file("ca.pem", &ca.pem());
    let other_file = files.file("other.pem", &other.pem());
    let env = common::start_with(common::small(), start_cfg(&files, None)).await;
    let tls = env.proxy.tls_addr().expect("TLS listener");
    assert_ne!(tls, env.addr());
    let cli = ["--tls", "--cacert", ca_file.as_str()];

    let (ok, out) = tokio::task::block_in_place(|| redis_cli(tls.port(), &cli, &["SET", "greeting", "hello"]));
    assert!(ok && out == "OK", "{out}");
    let (ok, out) = tokio::task::block_in_place(|| redis_cli(tls.port(), &cli, &["GET", "greeting"]));
    assert!(ok && out == "hello", "{out}");
    // The plain listener serves beside it, the same cluster.
    let mut plain = env.conn().await;
    let v: String = plain.get("greeting").await.unwrap();
    assert_eq!(v, "hello");
    expect_ok_at(tls.port(), "redis_py_tls.py", &[&ca_file], "done");
    let n: i64 = plain.get("tls:counter").await.unwrap();
    assert_eq!(n, 200, "redis-py's pipeline went through to the cluster");

    // A client that trusts another CA refuses the proxy's certificate.
    let (ok, out) =
        tokio::task::block_in_place(|| redis_cli(tls.port(), &["--tls", "--cacert", other_file.as_str()], &["PING"]));
    assert!(!ok && out.contains("certificate verify failed"), "{out}");
    let e = tls_connect(tls, &connector(&other, None)).await.unwrap_err();
    assert!(e.to_string().contains("invalid peer certificate: UnknownIssuer"), "{e}");
    // Plain RESP at the TLS port is not a handshake: closed without a reply.
    let mut raw = Raw::connect(tls).await;
    raw.send(b"PING\r\n").await;
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, raw.stream.read_to_end(&mut rest)).await.expect("closed");
    assert!(!rest.windows(4).any(|w| w == b"PONG"), "{rest:?}");
    // Connected and silent: dropped once the handshake timeout (500 ms here) has passed.
    let mut silent = TcpStream::connect(tls).await.unwrap();
    let mut b = [0u8; 1];
    let n = tokio::time::timeout(PATIENCE, silent.read(&mut b)).await.expect("closed by the proxy").unwrap_or(0);
    assert_eq!(n, 0);
    // Counted once the socket is closed: the client may see the close first.
    let admin = env.proxy.admin_addr().unwrap();
    eventually_async("the failed handshakes are counted", || async {
        let m = scrape(admin).await;
        get(&m, "clusterless_tls_handshake_failures_total{reason=\"timeout\"}") >= 1.0
            && get(&m, "clusterless_tls_handshake_failures_total{reason=\"error\"}") >= 3.0
    })
    .await;

    // CLIENT KILL reaches a TLS client: it is listed, and its session ends.
    let mut first = tls_connect(tls, &connector(&ca, None)).await.unwrap();
    assert_eq!(server_cert(&first), server.der);
    let id = String::from_utf8(ask(&mut first, b"CLIENT ID\r\n").await).unwrap();
    let id = id.trim_start_matches(':').trim().to_string();
    let mut victim = tls_connect(tls, &connector(&ca, None)).await.unwrap();
    let vid = String::from_utf8(ask(&mut victim, b"CLIENT ID\r\n").await).unwrap();
    let vid = vid.trim_start_matches(':').trim().to_string();
    let reply = ask(&mut first, format!("CLIENT KILL ID {vid}\r\n").as_bytes()).await;
    assert_eq!(reply, b":1\r\n");
    let mut b = [0u8; 16];
    let gone = tokio::time::timeout(PATIENCE, victim.read(&mut b)).await.expect("closed");
    assert!(matches!(gone, Ok(0) | Err(_)), "{gone:?}");

    // New files on disk: new sessions get the new certificate without a signal (the proxy looks
    // every 2 s); the session opened before keeps working.
    let ca2 = Ca::new("next CA");
    let next = ca2.leaf("proxy-2", 2002);
    files.replace(&next);
    let c2 = connector(&ca2, None);
    eventually_async("a new session shows the new certificate", || async {
        matches!(tls_connect(tls, &c2).await, Ok(s) if server_cert(&s) == next.der)
    })
    .await;
    assert_eq!(ask(&mut first, b"GET greeting\r\n").await, b"$5\r\nhello\r\n");
    assert_eq!(ask(&mut first, b"CLIENT ID\r\n").await, format!(":{id}\r\n").as_bytes());
    let e = tls_connect(tls, &connector(&ca, None)).await.unwrap_err();
    assert!(e.to_string().contains("UnknownIssuer"), "the old CA no longer fits: {e}");
    // (A check between the two renames may have failed and been retried: errors are not 0.)
    assert!(get(&scrape(admin).await, "clusterless_tls_reloads_total{result=\"ok\"}") >= 1.0);
}

/// With `tls.client_ca_file`, a client without a certificate, or with one another CA issued,
/// fails the handshake; one with a certificate the client CA issued is served (redis-cli,
/// redis-py, rustls).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_needs_a_client_certificate() {
    let (ca, clients, stranger) = (Ca::new("server CA"), Ca::new("client CA"), Ca::new("stranger CA"));
    let files = Files::new(&ca.leaf("proxy", 1));
    let ca_file = files.file("ca.pem", &ca.pem());
    let client_ca = files.file("clients.pem", &clients.pem());
    let good = clients.leaf("app", 7);
    let (good_cert, good_key) = (files.file("app.pem", &good.cert), files.file("app.key", &good.key));
    let bad = stranger.leaf("intruder", 8);
    let (bad_cert, bad_key) = (files.file("bad.pem", &bad.cert), files.file("bad.key", &bad.key));
    let env = common::start_with(common::small(), start_cfg(&files, Some(&client_ca))).await;
    let port = env.proxy.tls_addr().unwrap().port();

    let none = ["--tls", "--cacert", ca_file.as_str()];
    let (ok, out) = tokio::task::block_in_place(|| redis_cli(port, &none, &["PING"]));
    // TLS 1.3: redis-cli's handshake ends before the proxy judges it; the refusal closes the
    // connection under its first command.
    assert!(!ok && out == "Error: Server closed the connection", "{out}");
    let wrong = ["--tls", "--cacert", &ca_file, "--cert", &bad_cert, "--key", &bad_key];
    let (ok, out) = tokio::task::block_in_place(|| redis_cli(port, &wrong, &["PING"]));
    // TLS 1.3: redis-cli's handshake ends before the proxy judges it; the refusal closes the
    // connection under its first command.
    assert!(!ok && out == "Error: Server closed the connection", "{out}");
    let with = ["--tls", "--cacert", &ca_file, "--cert", &good_cert, "--key", &good_key];
    let (ok, out) = tokio::task::block_in_place(|| redis_cli(port, &with, &["SET", "m", "tls"]));
    assert!(ok && out == "OK", "{out}");
    let (ok, out) = tokio::task::block_in_place(|| redis_cli(port, &with, &["GET", "m"]));
    assert!(ok && out == "tls", "{out}");
    expect_ok_at(port, "redis_py_tls.py", &[&ca_file, &good_cert, &good_key], "done");

    let addr = env.proxy.tls_addr().unwrap();
    let e = tls_connect(addr, &connector(&ca, None)).await.unwrap_err();
    assert!(e.to_string().contains("CertificateRequired"), "{e}");
    let e = tls_connect(addr, &connector(&ca, Some(&bad))).await.unwrap_err();
    assert!(e.to_string().contains("UnknownCA"), "{e}");
    tls_connect(addr, &connector(&ca, Some(&good))).await.expect("a client the client CA issued");
}

/// `limits.max_clients` counts TLS and plain clients together, and a TLS client past it reads
/// Redis's error inside its session; a drain closes idle TLS clients and stops the listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_clients_and_drain_apply_to_tls_clients() {
    let ca = Ca::new("ca");
    let files = Files::new(&ca.leaf("proxy", 1));
    let tweak = start_cfg(&files, None);
    let env = common::start_with(common::small(), |c| {
        tweak(c);
        c.limits.max_clients = 2;
    })
    .await;
    let tls = env.proxy.tls_addr().unwrap();
    let c = connector(&ca, None);
    let mut one = tls_connect(tls, &c).await.unwrap();
    let mut two = Raw::connect(env.addr()).await;
    two.send(b"PING\r\n").await;
    assert_eq!(two.read_replies(1).await, vec![b"+PONG\r\n".to_vec()]);
    // Both listeners are full now.
    let tcp = TcpStream::connect(tls).await.unwrap();
    let mut third = c.connect(ServerName::try_from("127.0.0.1").unwrap(), tcp).await.unwrap();
    let mut said = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, third.read_to_end(&mut said)).await.expect("closed");
    assert_eq!(said, b"-ERR max number of clients reached\r\n");
    let mut plain = Raw::connect(env.addr()).await;
    assert_eq!(plain.read_replies(1).await, vec![b"-ERR max number of clients reached\r\n".to_vec()]);

    drop(two);
    assert_eq!(ask(&mut one, b"PING\r\n").await, b"+PONG\r\n");
    assert!(env.proxy.drain(PATIENCE).await, "the idle TLS client is closed by the drain");
    let mut b = [0u8; 8];
    let end = tokio::time::timeout(PATIENCE, one.read(&mut b)).await.expect("closed");
    assert!(matches!(end, Ok(0)), "a clean TLS close: {end:?}");
    eventually("the TLS listener is closed", || std::net::TcpStream::connect(tls).is_err()).await;
}

/// The binary: with the plain listener off, SIGHUP loads the new files for new sessions while a
/// session opened before keeps working; a reload with a broken file keeps the certificate in
/// use, says why on one log line and counts the error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_a_bad_reload_keeps_the_old_certificate() {
    let cluster = tokio::task::block_in_place(|| {
        clusterless::localcluster::LocalCluster::start(&common::small()).expect("start cluster")
    });
    let ca = Ca::new("ca one");
    let first = ca.leaf("proxy-1", 1);
    let files = Files::new(&first);
    let (port, admin) = (free_port(), free_port());
    let (tls_listen, metrics) = (format!("127.0.0.1:{port}"), format!("127.0.0.1:{admin}"));
    let seed = cluster.seed();
    let args = ["--seed", &seed, "--listen", "none", "--tls-listen", &tls_listen, "--metrics", &metrics];
    let args = [&args[..], &["--tls-cert", &files.cert, "--tls-key", &files.key]].concat();
    let mut bin = Bin::spawn(&args);
    let addr: SocketAddr = tls_listen.parse().unwrap();
    let c1 = connector(&ca, None);
    eventually_async("the TLS listener serves", || async { tls_connect(addr, &c1).await.is_ok() }).await;
    let mut before = tls_connect(addr, &c1).await.unwrap();
    assert_eq!(server_cert(&before), first.der);

    let ca2 = Ca::new("ca two");
    let second = ca2.leaf("proxy-2", 2);
    files.replace(&second);
    bin.signal("HUP");
    let c2 = connector(&ca2, None);
    eventually_async("a new session shows the new certificate", || async {
        matches!(tls_connect(addr, &c2).await, Ok(s) if server_cert(&s) == second.der)
    })
    .await;
    // The files are also looked at every 2 s: the SIGHUP's own reload is the one logged so.
    eventually("the SIGHUP reload is logged", || {
        bin.log().lines().any(|l| l.contains("TLS certificate reloaded") && l.contains("SIGHUP"))
    })
    .await;
    assert_eq!(ask(&mut before, b"SET k v\r\n").await, b"+OK\r\n");

    // A broken certificate: the one in use stays.
    std::fs::write(&files.cert, "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n").unwrap();
    bin.signal("HUP");
    eventually("the failed reload is logged", || bin.log().contains("TLS reload failed")).await;
    let line = bin.log().lines().find(|l| l.contains("TLS reload failed")).unwrap().to_string();
    assert!(line.contains("`tls.cert_file`") && line.contains(&files.cert), "{line}");
    let s = tls_connect(addr, &c2).await.expect("the certificate in use stays");
    assert_eq!(server_cert(&s), second.der);
    let m = scrape(common::bin::local(admin)).await;
    assert!(get(&m, "clusterless_tls_reloads_total{result=\"error\"}") >= 1.0, "{m:?}");
    assert!(get(&m, "clusterless_tls_reloads_total{result=\"ok\"}") >= 1.0, "{m:?}");
    assert_eq!(ask(&mut before, b"GET k\r\n").await, b"$1\r\nv\r\n");
    bin.signal("TERM");
    assert_eq!(bin.exit_code(PATIENCE).await, Some(0));
}

/// Unusable TLS settings stop the start with one line naming the key (and the file), before the
/// cluster is asked anything.
#[test]
fn unusable_tls_settings_are_one_line_at_start() {
    const DEAD: &str = "127.0.0.1:1";
    let ca = Ca::new("ca");
    let leaf = ca.leaf("proxy", 1);
    let other = ca.leaf("other", 2);
    let files = Files::new(&leaf);
    let garbage = files.file("garbage.pem", "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n");
    let empty = files.file("empty.pem", "nothing here\n");
    let other_key = files.file("other.key", &other.key);
    let missing = files.dir.file("x", "");
    let missing = Path::new(&missing).with_file_name("missing.pem").display().to_string();
    let base = ["--seed", DEAD, "--metrics", "", "--tls-listen", "127.0.0.1:0"];
    let one_line = |extra: &[&str], want: &str| {
        let args = [&base[..], extra].concat();
        let (code, err) = run_env(&args, &[]);
        assert_eq!(code, 2, "{args:?}: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines, vec![want], "{args:?}");
    };
    let cert = files.cert.as_str();
    let key = files.key.as_str();
    one_line(
        &["--tls-cert", &garbage, "--tls-key", key],
        &format!(
            "clusterless: invalid config: `tls.cert_file`: {garbage}: not valid PEM: base64 decode error: InvalidCharacter(33)"
        ),
    );
    one_line(
        &["--tls-cert", &empty, "--tls-key", key],
        &format!("clusterless: invalid config: `tls.cert_file`: {empty} holds no PEM certificate"),
    );
    one_line(
        &["--tls-cert", &missing, "--tls-key", key],
        &format!("clusterless: invalid config: `tls.cert_file`: cannot read {missing}: No such file or directory (os error 2)"),
    );
    one_line(
        &["--tls-cert", cert, "--tls-key", &empty],
        &format!("clusterless: invalid config: `tls.key_file`: {empty} holds no PEM private key"),
    );
    one_line(
        &["--tls-cert", cert, "--tls-key", &other_key],
        &format!("clusterless: invalid config: `tls.key_file`: {other_key} does not match the certificate in {cert}"),
    );
    one_line(
        &["--tls-cert", cert, "--tls-key", key, "--tls-client-ca", &empty],
        &format!("clusterless: invalid config: `tls.client_ca_file`: {empty} holds no PEM certificate"),
    );
    one_line(&["--tls-key", key], "clusterless: invalid config: `tls.cert_file`: needed with tls.listen");
    // The keys from the environment and the file too; no listener at all is refused.
    let (code, err) =
        run_env(&["--seed", DEAD, "--metrics", "", "--listen", "none"], &[("CLUSTERLESS_TLS_CERT", cert)]);
    assert_eq!((code, err.trim()), (2, "clusterless: invalid config: `tls.cert_file`: set together with tls.listen"));
    let (code, err) = run_env(&["--seed", DEAD, "--metrics", "", "--listen", ""], &[]);
    assert_eq!(
        (code, err.trim()),
        (
            2,
            "clusterless: invalid config: `listen`: the plain listener is off and `tls.listen` is not set: no client \
             could connect"
        )
    );
    let toml = files.file(
        "c.toml",
        &format!("listen = \"\"\n[tls]\nlisten = \"127.0.0.1:0\"\ncert_file = \"{garbage}\"\nkey_file = \"{key}\"\n"),
    );
    let (code, err) = run_env(&["--seed", DEAD, "--metrics", "", "--config", &toml], &[]);
    assert_eq!(code, 2);
    assert!(err.trim().starts_with("clusterless: invalid config: `tls.cert_file`: "), "{err}");
    // Good files get past the configuration to the unreachable seed.
    let (code, err) = run_env(&base, &[("CLUSTERLESS_TLS_CERT", cert), ("CLUSTERLESS_TLS_KEY", key)]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot reach the cluster"), "{err}");
}
