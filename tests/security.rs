//! Authentication of the HTTP endpoints and the handling of secrets, on real clusters and the
//! real binary: the admin endpoint's bearer token (401 and its challenge, the open probe paths),
//! the shared observer's token (`clusterless observe --token-file`, a proxy refused falls back
//! to polling and says so once, a proxy with the token follows), an `https://` observer (a test
//! TLS server with a throw-away certificate), passwords and tokens read from files or flags that
//! never show in the log, `/topology`, `/metrics`, INFO or CLIENT LIST, and the start-up errors
//! for a secret given twice or a file that cannot be used.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clusterless::config::Secret;
use clusterless::localcluster::{ClusterSpec, LocalCluster};
use common::bin::{free_port, local, run_env, Bin, Dir};
use common::http::{admin_on, get, request, request_with, samples, Answer};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const UNAUTHORIZED_ADMIN: &str = "unauthorized: send Authorization: Bearer <admin token>\n";
const UNAUTHORIZED_OBSERVER: &str = "unauthorized: send Authorization: Bearer <observer token>\n";

/// One HTTP/1.1 request with an `Authorization` header (or none), read to the end.
async fn request_auth(addr: SocketAddr, method: &str, path: &str, auth: Option<&str>) -> Answer {
    let header = auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    request_with(addr, method, path, &header).await
}

/// The answer is the 401 with its challenge and the given body.
fn is_401(a: &Answer, body: &str, what: &str) {
    assert_eq!((a.status, a.header("www-authenticate"), a.body.as_str()), (401, Some("Bearer"), body), "{what}");
}

/// The bytes of a streamed answer up to and including the first line of its body (the watch
/// stream never ends by itself).
async fn first_line(addr: SocketAddr, path: &str, auth: &str) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("send");
    let mut out = Vec::new();
    let read = async {
        loop {
            let mut chunk = [0u8; 16 * 1024];
            let n = s.read(&mut chunk).await.expect("read");
            assert!(n > 0, "the stream ended: {}", String::from_utf8_lossy(&out));
            out.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&out).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                // Chunked: a size line, then the snapshot line.
                if let Some((_, rest)) = body.split_once("\r\n") {
                    if let Some((line, _)) = rest.split_once('\n') {
                        return (head.to_string(), line.to_string());
                    }
                }
            }
        }
    };
    tokio::time::timeout(PATIENCE, read).await.expect("the first snapshot in time")
}

/// Waits until a client can connect to `addr` and AUTH with `pass`; the connection, authenticated.
async fn authed(bin: &mut Bin, addr: SocketAddr, pass: &str) -> Raw {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        if let Ok(s) = tokio::net::TcpStream::connect(addr).await {
            let mut raw = Raw::new(s);
            assert_eq!(raw.text(&["AUTH", pass]).await, "+OK\r\n", "log: {}", bin.log());
            return raw;
        }
        assert!(bin.running() && std::time::Instant::now() < deadline, "not serving on {addr}; log: {}", bin.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Without the token every admin path answers 401 with `WWW-Authenticate: Bearer` (unknown paths
/// too: nothing is said about a path before the token is checked); a wrong token, a token with a
/// byte more or less, or another scheme are refused alike; with the token the endpoint answers as
/// before; the probe paths stay open, and `admin.open_paths` decides which those are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoint_requires_the_bearer_token_but_on_open_paths() {
    let token = "adm1n-T0ken-7f3a";
    let env = start_with(small(), |c| {
        admin_on(c);
        c.admin.token = Some(Secret::new(token));
    })
    .await;
    let admin = env.proxy.admin_addr().expect("admin on");
    let good = format!("Bearer {token}");
    for path in ["/metrics", "/topology", "/nope"] {
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("Bearer adm1n-T0ken-7f3"),
            Some("Bearer adm1n-T0ken-7f3ab"),
            Some("Basic adm1n-T0ken-7f3a"),
            Some(token),
        ] {
            for method in ["GET", "HEAD", "POST"] {
                let a = request_auth(admin, method, path, auth).await;
                let body = if method == "HEAD" { "" } else { UNAUTHORIZED_ADMIN };
                is_401(&a, body, &format!("{method} {path} with {auth:?}"));
            }
        }
    }
    let metrics = request_auth(admin, "GET", "/metrics", Some(&good)).await;
    assert_eq!(metrics.status, 200, "{metrics:?}");
    assert_eq!(get(&samples(&metrics.body), "clusterless_topology_source{source=\"bus\"}"), 1.0);
    let topo = request_auth(admin, "GET", "/topology", Some(&format!("bearer {token}"))).await;
    let v: serde_json::Value = serde_json::from_str(&topo.body).expect("JSON");
    assert_eq!((topo.status, v["nodes"].as_array().map(Vec::len)), (200, Some(3)), "{topo:?}");
    assert_eq!(request_auth(admin, "GET", "/nope", Some(&good)).await.status, 404);
    assert_eq!(request_auth(admin, "POST", "/metrics", Some(&good)).await.status, 405);
    for (path, body) in [("/healthz", "ok\n"), ("/readyz", "ready\n")] {
        let a = request(admin, "GET", path).await;
        assert_eq!((a.status, a.body.as_str(), a.header("www-authenticate")), (200, body, None), "{path}");
    }

    // Only /healthz open: /readyz needs the token too.
    let mut cfg = shipped_config(env.cluster.seed());
    admin_on(&mut cfg);
    cfg.admin.token = Some(Secret::new(token));
    cfg.admin.open_paths = vec!["/healthz".into()];
    let proxy = clusterless::start(cfg).await.expect("second proxy");
    let admin = proxy.admin_addr().expect("admin on");
    assert_eq!(request(admin, "GET", "/healthz").await.status, 200);
    is_401(&request(admin, "GET", "/readyz").await, UNAUTHORIZED_ADMIN, "/readyz not open");
    eventually_async("/readyz with the token", || async {
        request_auth(admin, "GET", "/readyz", Some(&good)).await.status == 200
    })
    .await;
}

/// `clusterless observe --token-file`: /healthz stays open, everything else needs the token. A
/// proxy with the token follows the observer; one with a wrong token, and one with none, are
/// refused: each logs one error for the whole run of refusals (naming neither token) and polls
/// the cluster itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observer_token_lets_in_only_the_proxies_that_send_it() {
    init_logs();
    let cluster = tokio::task::block_in_place(|| LocalCluster::start(&small())).expect("cluster");
    let seed = cluster.seed();
    let dir = Dir::new();
    let token = "0bserver-T0ken-91c2";
    let wrong = "wr0ng-T0ken-5d0e";
    let token_file = dir.file("observer-token", &format!("{token}\n"));
    let wrong_file = dir.file("wrong-token", &format!("{wrong}\n"));
    let obs = local(free_port());
    let mut observer =
        Bin::spawn(&["observe", "--seed", &seed, "--http", &obs.to_string(), "--token-file", &token_file]);
    eventually_async("the observer answers /healthz without a token", || async {
        tokio::net::TcpStream::connect(obs).await.is_ok() && request(obs, "GET", "/healthz").await.status == 200
    })
    .await;
    assert!(observer.running(), "{}", observer.log());
    let good = format!("Bearer {token}");
    for path in ["/v1/topology", "/v1/topology/watch", "/metrics", "/nope"] {
        for auth in [None, Some(format!("Bearer {wrong}")), Some(token.to_string())] {
            let a = request_auth(obs, "GET", path, auth.as_deref()).await;
            is_401(&a, UNAUTHORIZED_OBSERVER, &format!("GET {path} with {auth:?}"));
        }
    }
    is_401(&request(obs, "HEAD", "/v1/topology/watch").await, "", "HEAD watch");
    let snapshot = request_auth(obs, "GET", "/v1/topology", Some(&good)).await;
    let v: serde_json::Value = serde_json::from_str(&snapshot.body).expect("JSON");
    assert_eq!((snapshot.status, v["nodes"].as_array().map(Vec::len)), (200, Some(3)));
    assert_eq!(request_auth(obs, "GET", "/metrics", Some(&good)).await.status, 200);
    let (head, line) = first_line(obs, "/v1/topology/watch", &good).await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let first: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(first["nodes"].as_array().map(Vec::len), Some(3));

    // Refused proxies, as processes, for their logs and metrics.
    let url = format!("http://{obs}");
    let spawn = |token_file: Option<&str>| {
        let (listen, metrics) = (local(free_port()), local(free_port()));
        let mut args = vec!["--seed", &seed, "--observer", &url].into_iter().map(String::from).collect::<Vec<_>>();
        args.extend(["--listen".into(), listen.to_string(), "--metrics".into(), metrics.to_string()]);
        if let Some(f) = token_file {
            args.extend(["--observer-token-file".into(), f.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        (Bin::spawn(&args), metrics)
    };
    let (wrong_proxy, wrong_admin) = spawn(Some(&wrong_file));
    let (bare_proxy, bare_admin) = spawn(None);
    let refused = "the shared observer refused this proxy";
    for (p, why) in [
        (&wrong_proxy, "401 Unauthorized: the token was refused"),
        (&bare_proxy, "401 Unauthorized: the observer requires a token"),
    ] {
        eventually("the refusal is logged", || p.log().contains(refused)).await;
        let log = p.log();
        assert!(log.contains(why), "{log}");
    }
    // In-process, with the token: it follows the observer.
    let mut cfg = shipped_config(seed.clone());
    cfg.topology.observer = Some(url.clone());
    cfg.topology.observer_token = Some(Secret::new(token));
    let follower = clusterless::start(cfg).await.expect("proxy with the token");
    eventually("the proxy with the token follows the observer", || follower.topology_source() == "observer").await;
    assert_eq!(follower.topology().uncovered(), 0);

    // Time passes on purpose: the refused proxies retry with backoff (200 ms, doubling), so in 4 s
    // each has been refused at least four times; still one error line each.
    tokio::time::sleep(Duration::from_secs(4)).await;
    for (p, admin) in [(&wrong_proxy, wrong_admin), (&bare_proxy, bare_admin)] {
        let log = p.log();
        assert_eq!(log.matches(refused).count(), 1, "{log}");
        assert!(!log.contains("shared observer unreachable"), "a refusal is not reported as unreachable: {log}");
        assert!(!log.contains(token) && !log.contains(wrong), "a token in the log: {log}");
        let s = samples(&request(admin, "GET", "/metrics").await.body);
        assert_eq!(get(&s, "clusterless_topology_source{source=\"poll\"}"), 1.0, "{log}");
        assert_eq!(get(&s, "clusterless_topology_source{source=\"observer\"}"), 0.0, "{log}");
    }
    assert!(!observer.log().contains(token), "{}", observer.log());
}

/// A stand-in for an observer served over TLS (serving TLS from `observe` is another issue): one
/// connection at a time, the request head recorded, then one recorded snapshot line and the
/// stream held open.
async fn tls_observer(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    line: String,
    heads: Arc<clusterless::sync::Mutex<Vec<String>>>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let (acceptor, line, heads) = (acceptor.clone(), line.clone(), heads.clone());
        tokio::spawn(async move {
            let Ok(mut tls) = acceptor.accept(tcp).await else { return };
            let mut head = Vec::new();
            let mut b = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut b).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&b[..n]),
                }
            }
            heads.lock().push(String::from_utf8_lossy(&head).into_owned());
            let body = format!("{line}\n");
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n",
                body.len()
            );
            if tls.write_all(resp.as_bytes()).await.is_err() {
                return;
            }
            // Held open as a watch stream is.
            let _ = tls.read(&mut b).await;
        });
    }
}

/// `--observer https://...`: the proxy verifies the server's certificate against
/// `topology.observer_ca_file`, sends the token over TLS and follows the stream; without the CA
/// the handshake fails and it polls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_observer_is_verified_and_followed() {
    init_logs();
    let cluster = tokio::task::block_in_place(|| LocalCluster::start(&small())).expect("cluster");
    let seed = cluster.seed();
    // A real snapshot line, from a plain observer on the same cluster.
    let plain = clusterless::start_observer(&shipped_config(seed.clone()), "127.0.0.1:0".parse().unwrap())
        .await
        .expect("observer");
    let snapshot = request(plain.addr(), "GET", "/v1/topology").await;
    assert_eq!(snapshot.status, 200);
    drop(plain);

    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
    let dir = Dir::new();
    let ca = dir.file("ca.pem", &cert.cert.pem());
    let key = tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    #[allow(deprecated)]
    let provider = tokio_rustls::rustls::crypto::ring::default_provider();
    let server = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .expect("server config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(clusterless::sync::Mutex::new(Vec::new()));
    let server = tokio::spawn(tls_observer(
        listener,
        tokio_rustls::TlsAcceptor::from(Arc::new(server)),
        snapshot.body.trim_end().to_string(),
        heads.clone(),
    ));

    let url = format!("https://localhost:{port}");
    let mut cfg = shipped_config(seed.clone());
    cfg.topology.observer = Some(url.clone());
    cfg.topology.observer_token = Some(Secret::new("tls-T0ken"));
    cfg.topology.observer_ca_file = Some(std::path::PathBuf::from(&ca));
    let follower = clusterless::start(cfg).await.expect("proxy trusting the CA");
    eventually("the proxy follows the https observer", || follower.topology_source() == "observer").await;
    assert_eq!(follower.topology().uncovered(), 0);
    let seen = heads.lock().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].starts_with("GET /v1/topology/watch HTTP/1.1\r\n"), "{}", seen[0]);
    assert!(
        seen[0].to_ascii_lowercase().contains("\r\nauthorization: bearer tls-T0ken\r\n".to_ascii_lowercase().as_str()),
        "{}",
        seen[0]
    );

    // Without the CA the certificate is not trusted: no request is ever sent, the proxy polls.
    let mut cfg = shipped_config(seed);
    cfg.topology.observer = Some(url);
    let untrusting = clusterless::start(cfg).await.expect("proxy without the CA");
    eventually("the proxy without the CA polls", || untrusting.topology_source() == "poll").await;
    assert_eq!(heads.lock().len(), 1, "a request went over an unverified connection");
    server.abort();
}

/// Every secret given in a file (client password, node password, a user's password and node
/// password, the admin token), and then as flags, with the log at debug: none of them appears
/// in the log, `/topology`, `/metrics`, INFO or CLIENT LIST, while each of them works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_show() {
    init_logs();
    let node_pw = "n0de-S3cret-b41c";
    let spec = ClusterSpec { password: Some(node_pw.into()), ..small() };
    let cluster = tokio::task::block_in_place(|| LocalCluster::start(&spec)).expect("cluster");
    let seed = cluster.seed();
    let (client_pw, user_pw, user_node_pw, admin_token) =
        ("cli3nt-S3cret-a81f", "us3r-S3cret-c2d9", "us3r-n0de-S3cret-e7aa", "adm1n-T0ken-0b5e");
    let secrets = [node_pw, client_pw, user_pw, user_node_pw, admin_token];
    let dir = Dir::new();
    let config = dir.file(
        "clusterless.toml",
        &format!(
            "[auth]\nrequirepass_file = \"{}\"\n[backend]\npassword_file = \"{}\"\n\
             [[auth.users]]\nname = \"app\"\npassword_file = \"{}\"\nbackend_user = \"app\"\nbackend_password = \"{user_node_pw}\"\n\
             [admin]\ntoken_file = \"{}\"\n",
            dir.file("client", &format!("{client_pw}\n")),
            dir.file("node", &format!("{node_pw}\n")),
            dir.file("user", user_pw),
            dir.file("admin", &format!("{admin_token}\n")),
        ),
    );
    let token_file = dir.file("admin-flag", admin_token);
    let by_file = vec!["--config".to_string(), config];
    let by_flag = ["--requirepass", client_pw, "--backend-password", node_pw, "--admin-token-file", &token_file]
        .map(String::from)
        .to_vec();
    for (how, extra) in [("files", by_file), ("flags", by_flag)] {
        let (listen, admin) = (local(free_port()), local(free_port()));
        let mut args = ["--seed", &seed, "--listen", &listen.to_string(), "--metrics", &admin.to_string()]
            .map(String::from)
            .to_vec();
        args.extend(["--log-level".into(), "debug".into()]);
        args.extend(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut bin = Bin::spawn(&args);
        let mut c = authed(&mut bin, listen, client_pw).await;
        assert_eq!(c.text(&["SET", "k", "v"]).await, "+OK\r\n", "{how}: the node password works");
        assert_eq!(c.text(&["CLIENT", "SETNAME", "probe"]).await, "+OK\r\n");
        let mut seen = vec![("INFO", c.text(&["INFO"]).await), ("INFO all", c.text(&["INFO", "all"]).await)];
        seen.push(("INFO everything", c.text(&["INFO", "everything"]).await));
        let list = c.text(&["CLIENT", "LIST"]).await;
        assert!(list.contains("name=probe"), "{how}: {list}");
        seen.push(("CLIENT LIST", list));
        if how == "files" {
            let mut u = Raw::connect(listen).await;
            assert_eq!(u.text(&["AUTH", "app", user_pw]).await, "+OK\r\n", "the user's password from its file");
            assert_eq!(
                u.text(&["AUTH", "app", client_pw]).await,
                "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
            );
        }
        let bearer = format!("Bearer {admin_token}");
        let metrics = request_auth(admin, "GET", "/metrics", Some(&bearer)).await;
        assert_eq!(metrics.status, 200, "{how}: the admin token works");
        let topology = request_auth(admin, "GET", "/topology", Some(&bearer)).await;
        assert_eq!(topology.status, 200);
        is_401(&request(admin, "GET", "/metrics").await, UNAUTHORIZED_ADMIN, how);
        seen.extend([
            ("/metrics", metrics.body),
            ("/topology", topology.body),
            ("/readyz", request(admin, "GET", "/readyz").await.body),
        ]);
        assert_eq!(bin.stop().await, Some(0));
        seen.push(("log", bin.log()));
        assert!(seen.last().unwrap().1.contains("clusterless is serving"), "{how}: the log was read");
        for (what, text) in &seen {
            for s in secrets {
                assert!(!text.contains(s), "{how}: {s} in {what}:\n{text}");
            }
        }
    }
}

/// A secret given both as a value and as a file, an empty or missing secret file: exit code 2 and
/// one line naming the keys (and the path), never the secret.
#[test]
fn secret_twice_or_unusable_files_stop_the_start() {
    let dir = Dir::new();
    let pw = dir.file("pw", "f1le-S3cret-88aa\n");
    let empty = dir.file("empty", "\n");
    let missing = format!("{}/missing", dir.0.display());
    let seed = format!("127.0.0.1:{}", free_port());
    let both =
        |key: &str| format!("clusterless: invalid config: `{key}` and `{key}_file` are both set; set one of them\n");
    // (flags, variables, the whole of stderr)
    type Case<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, String);
    let cases: Vec<Case<'_>> = vec![
        (vec!["--requirepass", "fl4g-S3cret", "--requirepass-file", &pw], vec![], both("auth.requirepass")),
        (
            vec!["--backend-password-file", &pw],
            vec![("CLUSTERLESS_BACKEND_PASSWORD", "fl4g-S3cret")],
            both("backend.password"),
        ),
        (
            vec!["--requirepass-file", &empty],
            vec![],
            format!("clusterless: invalid config: `auth.requirepass_file`: {empty} is empty\n"),
        ),
        (
            vec![],
            vec![("CLUSTERLESS_ADMIN_TOKEN_FILE", &missing)],
            format!("clusterless: invalid config: `admin.token_file`: cannot read {missing}: No such file or directory (os error 2)\n"),
        ),
        (
            vec!["--observer", "http://127.0.0.1:1", "--observer-token-file", &empty],
            vec![],
            format!("clusterless: invalid config: `topology.observer_token_file`: {empty} is empty\n"),
        ),
        (
            vec!["observe", "--token-file", &missing],
            vec![],
            format!("clusterless: invalid config: `--token-file`: cannot read {missing}: No such file or directory (os error 2)\n"),
        ),
        (
            vec!["--observer", "https://localhost:1", "--observer-ca-file", &pw],
            vec![],
            format!("clusterless: invalid config: `topology.observer_ca_file`: {pw} holds no PEM certificate\n"),
        ),
    ];
    // --help names the variables but not the passwords they hold.
    let secret_env = [("CLUSTERLESS_REQUIREPASS", "h3lp-S3cret"), ("CLUSTERLESS_BACKEND_PASSWORD", "h3lp-S3cret")];
    let out = common::bin::command(&["--help"], &secret_env).output().expect("run clusterless --help");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("[env: CLUSTERLESS_REQUIREPASS]"), "{help}");
    assert!(help.contains("[env: CLUSTERLESS_BACKEND_PASSWORD]"), "{help}");
    assert!(!help.contains("h3lp-S3cret"), "{help}");
    for (args, env, want) in cases {
        let all: Vec<&str> = args.iter().copied().chain(["--seed", &seed]).collect();
        let (code, stderr) = run_env(&all, &env);
        assert_eq!((code, stderr.as_str()), (2, want.as_str()), "{args:?} {env:?}");
        assert!(!stderr.contains("S3cret"), "{stderr}");
    }
}
