//! The HTTP endpoints as a scraper or a probe sees them: one request per connection, written by
//! hand (so that what is checked is the bytes on the wire), and the Prometheus text format read
//! into `name{labels}` -> value.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The admin endpoint on a free loopback port: the shipped default is on (127.0.0.1:9736), the
/// harness turns it off because parallel tests would fight over that port.
pub fn admin_on(c: &mut clusterless::config::Config) {
    c.admin_listen = Some("127.0.0.1:0".parse().unwrap());
}

/// One HTTP/1.1 answer: status, header block (lines as sent) and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Answer {
    /// The value of header `name` (case-insensitive), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// A minimal HTTP/1.1 request read to the end of the connection. Async, so that it also runs on
/// a current-thread runtime, where the endpoint's own task needs the thread while we wait.
pub async fn request(addr: SocketAddr, method: &str, path: &str) -> Answer {
    request_with(addr, method, path, "").await
}

/// [`request`] with more header lines (each ending in CRLF).
pub async fn request_with(addr: SocketAddr, method: &str, path: &str, headers: &str) -> Answer {
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect to the HTTP endpoint");
        let req =
            format!("{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.expect("send the request");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        String::from_utf8_lossy(&out).into_owned()
    };
    let out = tokio::time::timeout(Duration::from_secs(10), exchange).await.expect("an HTTP answer within 10 s");
    let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((out.as_str(), ""));
    Answer { status, head: head.to_string(), body: body.to_string() }
}

/// Status and body.
pub async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let a = request(addr, method, path).await;
    (a.status, a.body)
}

/// Parses the Prometheus text format into `name{labels}` -> value.
pub fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// `GET /metrics`, which must answer 200, as samples.
pub async fn scrape(addr: SocketAddr) -> HashMap<String, f64> {
    let (status, text) = http(addr, "GET", "/metrics").await;
    assert_eq!(status, 200, "{text}");
    samples(&text)
}

/// One sample (0 when absent).
pub fn get(s: &HashMap<String, f64>, key: &str) -> f64 {
    s.get(key).copied().unwrap_or(0.0)
}
