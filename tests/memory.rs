//! Bounded memory under slow and greedy clients, measured on the real binary (its resident set,
//! not the test process's): Redis's output buffer limits, the query buffer limit,
//! `limits.max_memory`, and memory given back after big values and bursts.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clusterless::localcluster::LocalCluster;
use common::bin::{free_port, local, Bin, Dir};
use common::http::{http, scrape};
use common::{eventually_async, small, Raw};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MB: u64 = 1 << 20;

/// The proxy as its own process in front of a fresh cluster; stopped (by PID) on drop.
struct Proxy {
    bin: Bin,
    addr: SocketAddr,
    admin: SocketAddr,
    _cluster: LocalCluster,
}

impl Proxy {
    async fn start(args: &[&str]) -> Proxy {
        common::init_logs();
        let cluster = tokio::task::block_in_place(|| LocalCluster::start(&small())).expect("start cluster");
        let (addr, admin) = (local(free_port()), local(free_port()));
        let (listen, metrics) = (addr.to_string(), admin.to_string());
        let base = ["--seed", &cluster.seed(), "--listen", &listen, "--metrics", &metrics, "--log-level", "warn"];
        let mut bin = Bin::spawn(&[&base[..], args].concat());
        bin.client(addr).await;
        eventually_async("the proxy serves every slot", || async { http(admin, "GET", "/readyz").await.0 == 200 })
            .await;
        Proxy { bin, addr, admin, _cluster: cluster }
    }

    /// Resident set size in bytes.
    fn rss(&self) -> u64 {
        rss_of(self.bin.child.id())
    }

    async fn metric(&self, key: &str) -> f64 {
        let m = scrape(self.admin).await;
        *m.get(key).unwrap_or_else(|| panic!("no {key}"))
    }

    /// Samples the resident set every 10 ms until the returned guard is dropped; its peak then.
    fn watch_rss(&self) -> Peak {
        let (peak, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
        let (p, s, pid) = (peak.clone(), stop.clone(), self.bin.child.id());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss_of(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Peak { peak, stop }
    }
}

struct Peak {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Peak {
    fn get(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for Peak {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next());
    kb.and_then(|k| k.parse::<u64>().ok()).unwrap_or(0) * 1024
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / MB as f64)
}

/// 1 KB messages, each numbered.
fn message(i: usize) -> Vec<u8> {
    let mut m = format!("{i:08}:").into_bytes();
    m.resize(1024, b'x');
    m
}

/// Redis's default `pubsub 32mb 8mb 60`: a subscriber that never reads is closed once 32 MB wait
/// for it, and what was held for it is freed; a subscriber of the same channel that reads gets
/// every message, in order, meanwhile. Before the limit, the proxy held all 100 MB for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscriber_that_never_reads_is_closed_at_its_limit_and_others_get_everything() {
    let p = Proxy::start(&[]).await;
    let total = 100_000;
    let base = p.rss();

    let mut slow = Raw::connect(p.addr).await;
    slow.send(b"*2\r\n$9\r\nSUBSCRIBE\r\n$2\r\nch\r\n").await;
    assert_eq!(slow.read_replies(1).await[0], b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n");
    let mut reader = Raw::connect(p.addr).await;
    reader.send(b"*2\r\n$9\r\nSUBSCRIBE\r\n$2\r\nch\r\n").await;
    assert_eq!(reader.read_replies(1).await[0], b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n");
    let got = tokio::spawn(async move {
        // Every message, checked in order as it comes (all frames have one length).
        let frame = |i| [&b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1024\r\n"[..], &message(i), b"\r\n"].concat();
        let len = frame(0).len();
        let (mut buf, mut chunk, mut next) = (Vec::new(), vec![0u8; 256 * 1024], 0);
        while next < total {
            let n = tokio::time::timeout(common::PATIENCE, reader.stream.read(&mut chunk)).await.unwrap().unwrap();
            assert!(n > 0, "the reading subscriber was closed after {next} messages");
            buf.extend_from_slice(&chunk[..n]);
            let mut at = 0;
            while buf.len() - at >= len {
                assert!(buf[at..at + len] == frame(next), "message {next} of {total}");
                (at, next) = (at + len, next + 1);
            }
            buf.drain(..at);
        }
        next
    });

    let peak = p.watch_rss();
    let mut publisher = TcpStream::connect(p.addr).await.unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    for batch in (0..total).collect::<Vec<_>>().chunks(500) {
        let mut out = Vec::new();
        for &i in batch {
            out.extend(clusterless::resp::encode_command(&[&b"PUBLISH"[..], b"ch", &message(i)]));
        }
        publisher.write_all(&out).await.unwrap();
        // The replies (receiver counts, 2 or 1) are read so that the publisher itself is no slow
        // reader; each is 4 bytes.
        let mut want = batch.len() * 4;
        while want > 0 {
            let n = publisher.read(&mut buf).await.unwrap();
            assert!(n > 0, "the publisher was closed");
            want = want.saturating_sub(n);
        }
    }
    assert_eq!(got.await.unwrap(), total, "the reading subscriber got every message");
    let peak = peak.get();

    assert!(slow.closed().await, "the subscriber that never reads is closed");
    assert_eq!(p.metric("clusterless_client_output_limit_closed_total{class=\"pubsub\"}").await, 1.0);
    // 100 MB were published; the limit is 32 MB. The margin covers the proxy's own growth under
    // load (the reader's buffers, allocator slack): without the limit the peak was base + 100 MB.
    assert!(peak < base + 32 * MB + 24 * MB, "peak {} with base {}", mb(peak), mb(base));
    eventually_async("what was held for it is given back", || async {
        p.metric("clusterless_buffered_bytes").await == 0.0 && p.rss() < base + 16 * MB
    })
    .await;
}

/// A client that pipelines GETs of 1 MB values and never reads, under `limits.max_memory 64mb`:
/// past three quarters of it other requests that bring replies in get -OOM, past it the client
/// holding the most is closed (as Redis's maxmemory-clients), and the proxy's resident set stays
/// within the cap plus its own base. Other clients are served again once it is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_pipelines_big_gets_without_reading_is_closed_at_max_memory() {
    let p = Proxy::start(&["--max-memory", "64mb"]).await;
    let mut c = Raw::connect(p.addr).await;
    let value = vec![b'v'; MB as usize];
    for i in 0..8 {
        assert_eq!(c.cmd(&[&b"SET"[..], format!("big:{i}").as_bytes(), &value]).await, b"+OK\r\n");
    }
    let base = p.rss();
    let peak = p.watch_rss();

    let mut greedy = TcpStream::connect(p.addr).await.unwrap();
    let mut gets = Vec::new();
    for i in 0..2000 {
        gets.extend(clusterless::resp::encode_command(&[&b"GET"[..], format!("big:{}", i % 8).as_bytes()]));
    }
    // Written from its own task: once the proxy stops reading, the write waits, and it fails
    // when the proxy closes the connection.
    let writer = tokio::spawn(async move {
        let _ = greedy.write_all(&gets).await;
        greedy
    });
    eventually_async("the greedy client is evicted", || async {
        p.metric("clusterless_clients_evicted_total").await == 1.0
    })
    .await;
    let mut greedy = writer.await.unwrap();
    // It is closed: what it can still read ends.
    let mut sink = vec![0u8; 1 << 20];
    loop {
        match tokio::time::timeout(common::PATIENCE, greedy.read(&mut sink)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(_)) => {}
            Err(_) => panic!("the greedy client was not closed"),
        }
    }
    let peak = peak.get();
    assert!(peak < base + 64 * MB + 16 * MB, "peak {} with base {}", mb(peak), mb(base));

    assert_eq!(c.cmd(&[&b"STRLEN"[..], b"big:3"]).await, b":1048576\r\n");
    eventually_async("nothing buffered, not refusing, memory given back", || async {
        let m = scrape(p.admin).await;
        m["clusterless_buffered_bytes"] == 0.0 && m["clusterless_memory_refusing"] == 0.0 && p.rss() < base + 16 * MB
    })
    .await;
}

/// Past three quarters of `limits.max_memory` (here held by a subscriber that does not read, its
/// class's own limit turned off), requests that bring replies in are refused with Redis's -OOM
/// error, SPUBLISH too, while PING is still answered; the admin endpoint says why it is not ready;
/// once the subscriber reads what waits for it, all of it intact, requests are served again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn near_max_memory_new_requests_are_refused_while_buffered_replies_drain() {
    let dir = Dir::new();
    let conf = dir.file("refuse.toml", "[limits]\nclient_output_buffer_limit = [\"pubsub 0 0 0\"]\n");
    let p = Proxy::start(&["--max-memory", "64mb", "--config", &conf]).await;
    let mut other = Raw::connect(p.addr).await;
    assert_eq!(other.cmd(&[&b"SET"[..], b"k", b"v"]).await, b"+OK\r\n");

    // A shard channel: subscription and SPUBLISH on the channel's master, so that each message is
    // counted for the subscriber before its SPUBLISH is answered (`:1`).
    let mut slow = Raw::connect(p.addr).await;
    slow.send(b"*2\r\n$10\r\nSSUBSCRIBE\r\n$2\r\nch\r\n").await;
    assert_eq!(slow.read_replies(1).await[0], b"*3\r\n$10\r\nssubscribe\r\n$2\r\nch\r\n:1\r\n");
    // 1 MB messages until SPUBLISH itself is refused: the proxy then holds just past 48 MB, far
    // from the 64 MB at which a client is closed.
    let oom = b"-OOM command not allowed when used memory > 'maxmemory'.\r\n".to_vec();
    let big = |i: usize| {
        let mut m = format!("{i:06}").into_bytes();
        m.resize(MB as usize, b'm');
        m
    };
    let mut published = 0;
    loop {
        let r = other.cmd(&[&b"SPUBLISH"[..], b"ch", &big(published)]).await;
        if r == oom {
            break;
        }
        assert_eq!(r, b":1\r\n", "message {published}");
        published += 1;
        assert!(published < 200, "200 MB published and never refused");
    }
    assert!(published > 48, "refused after {published} MB");
    assert_eq!(p.metric("clusterless_memory_refusing").await, 1.0);
    assert_eq!(other.cmd(&[&b"GET"[..], b"k"]).await, oom);
    assert_eq!(other.cmd(&[&b"SET"[..], b"k", b"w"]).await, oom);
    assert_eq!(other.cmd(&[&b"PING"[..]]).await, b"+PONG\r\n", "answered by the proxy itself");
    let (status, why) = http(p.admin, "GET", "/readyz").await;
    assert_eq!(status, 503);
    assert!(why.contains("past 3/4 of limits.max_memory (67108864)"), "{why}");

    // The subscriber reads: every message, intact and in order.
    let msgs = slow.read_replies(published).await;
    assert_eq!(msgs.len(), published);
    for (i, m) in msgs.iter().enumerate() {
        let want = [&b"*3\r\n$8\r\nsmessage\r\n$2\r\nch\r\n$1048576\r\n"[..], &big(i), b"\r\n"].concat();
        assert!(m == &want, "message {i} of {published}");
    }
    eventually_async("requests are served again", || async { p.metric("clusterless_memory_refusing").await == 0.0 })
        .await;
    assert_eq!(other.cmd(&[&b"GET"[..], b"k"]).await, b"$1\r\nv\r\n", "the refused SET changed nothing");
    assert_eq!(http(p.admin, "GET", "/readyz").await.0, 200);
    assert_eq!(p.metric("clusterless_clients_evicted_total").await, 0.0, "nobody had to be closed");
}

/// Input: a request larger than `limits.client_query_buffer_limit` is refused on its header, as
/// Redis closes a client past its query buffer limit, without the proxy buffering it; the proxy
/// keeps serving everyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_past_the_query_buffer_limit_is_refused_before_it_is_buffered() {
    let dir = Dir::new();
    let conf = dir.file("query.toml", "[limits]\nclient_query_buffer_limit = \"1mb\"\n");
    let p = Proxy::start(&["--config", &conf]).await;
    let base = p.rss();
    let mut c = Raw::connect(p.addr).await;
    // Announces 500 MB and sends the first bytes of it.
    c.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$524288000\r\nxxxx").await;
    assert_eq!(c.read_replies(1).await[0], b"-ERR Protocol error: client reached max query buffer length\r\n".to_vec());
    assert!(c.closed().await);
    assert!(p.rss() < base + 8 * MB, "nothing was reserved for it");
    let mut ok = Raw::connect(p.addr).await;
    let under = vec![b'u'; 1000 * 1000];
    assert_eq!(ok.cmd(&[&b"SET"[..], b"k", &under]).await, b"+OK\r\n", "a request under the limit");
    assert_eq!(ok.cmd(&[&b"STRLEN"[..], b"k"]).await, b":1000000\r\n");
}

/// One 64 MB value written and read (it left 136 MB resident), then a burst of 512 KB values to
/// 20 clients at once (it left 104 MB): the memory goes back to the system within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_goes_back_after_a_big_value_and_a_burst() {
    let p = Proxy::start(&[]).await;
    let base = p.rss();
    let mut c = Raw::connect(p.addr).await;
    let big = vec![b'b'; 64 * MB as usize];
    assert_eq!(c.cmd(&[&b"SET"[..], b"huge", &big]).await, b"+OK\r\n");
    let got = c.cmd(&[&b"GET"[..], b"huge"]).await;
    assert!(got.len() == big.len() + 13 && got[11..11 + big.len()] == big[..], "the value comes back intact");
    drop((got, big));
    eventually_async("the 64 MB value's memory is given back", || async { p.rss() < base + 16 * MB }).await;

    let value = vec![b'c'; 512 * 1024];
    for i in 0..16 {
        assert_eq!(c.cmd(&[&b"SET"[..], format!("mid:{i}").as_bytes(), &value]).await, b"+OK\r\n");
    }
    let peak = p.watch_rss();
    let mut clients = Vec::new();
    for _ in 0..20 {
        let addr = p.addr;
        clients.push(tokio::spawn(async move {
            let mut c = Raw::connect(addr).await;
            for _ in 0..3 {
                let mut out = Vec::new();
                for i in 0..16 {
                    out.extend(clusterless::resp::encode_command(&[&b"GET"[..], format!("mid:{i}").as_bytes()]));
                }
                c.send(&out).await;
                let replies = c.read_replies(16).await;
                assert!(replies.iter().all(|r| r.len() == 512 * 1024 + 11), "16 intact values");
            }
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    let peak = peak.get();
    assert!(peak > base + 16 * MB, "the burst did take memory (peak {}), or this test shows nothing", mb(peak));
    eventually_async("the burst's memory is given back", || async { p.rss() < base + 16 * MB }).await;
}
