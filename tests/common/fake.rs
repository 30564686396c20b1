//! A scripted fake cluster node, for the few retry and topology paths a real Redis Cluster cannot
//! be made to take on demand: a node answering `-LOADING` for a chosen number of requests (a real
//! node says LOADING only while it loads a dataset at start-up, for a time nobody controls), two
//! nodes sending a request back and forth with MOVED forever (real nodes agree on an owner within a
//! gossip round), and seeds that disagree about the slot map at the moment the proxy bootstraps
//! (real nodes converge too fast to catch). Everything else is tested against real clusters; each
//! test using this module names the real-cluster test covering the same code path.
//!
//! What it is: a tokio `TcpListener` on `127.0.0.1:0` that speaks enough RESP2 (and RESP3 for
//! `HELLO 3`) for the proxy's connections: the handshake (`HELLO`, `AUTH`, `CLIENT SETNAME` /
//! `SETINFO` / `ID`, `CLUSTER MYID` with the id it announces), the topology questions
//! (`CLUSTER SHARDS`, `CLUSTER SLOTS`, `CLUSTER NODES`, from a [`Member`] list given to it), `INFO`,
//! `PING`, `COMMAND` (refused, so the proxy keeps its built-in table); every other command is
//! answered by the test's script, or `-ERR fake: unscripted command` when the script declines. It
//! counts each command it receives (by name, `CLUSTER SHARDS` style for containers). Its cluster
//! bus port is a listener that never accepts, so the proxy's bus observer gets no PONG and polls.
//! A request it cannot parse, or one bigger than 1 MiB, closes the connection. It stops on drop.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use clusterless::sync::Mutex;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A master as a fake node describes it in its topology answers.
#[derive(Clone, Debug)]
pub struct Member {
    pub id: String,
    pub port: u16,
    /// Cluster bus port (announced in CLUSTER NODES).
    pub cport: u16,
    pub slots: Vec<(u16, u16)>,
}

/// A test's answers: the request's arguments and how many times this node has now seen a command
/// of that name (1 for the first); `None` declines (the fake then answers an error).
pub type Script = Arc<dyn Fn(&[Vec<u8>], u64) -> Option<Vec<u8>> + Send + Sync>;

pub struct Fake {
    pub id: String,
    pub port: u16,
    /// Bound, never accepting: the announced cluster bus port.
    bus: std::net::TcpListener,
    listener: Option<TcpListener>,
    view: Arc<Mutex<Vec<Member>>>,
    counts: Arc<Mutex<HashMap<String, u64>>>,
    task: Option<JoinHandle<()>>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

impl Fake {
    /// Binds the node's port (its topology and script come with [`Fake::serve`], once every fake's
    /// port is known). `id` is its 40-character node id.
    pub async fn bind(id: &str) -> Fake {
        assert_eq!(id.len(), 40, "node ids are 40 characters");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake node");
        let port = listener.local_addr().expect("addr").port();
        let bus = std::net::TcpListener::bind("127.0.0.1:0").expect("bind fake bus");
        Fake {
            id: id.to_string(),
            port,
            bus,
            listener: Some(listener),
            view: Arc::new(Mutex::new(Vec::new())),
            counts: Arc::new(Mutex::new(HashMap::new())),
            task: None,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// This node as a master owning `slots`.
    pub fn member(&self, slots: &[(u16, u16)]) -> Member {
        Member {
            id: self.id.clone(),
            port: self.port,
            cport: self.bus.local_addr().expect("bus addr").port(),
            slots: slots.to_vec(),
        }
    }

    /// Starts answering: `view` is the cluster as this node reports it, `script` the answers to
    /// everything else.
    pub fn serve(&mut self, view: Vec<Member>, script: Script) {
        let listener = self.listener.take().expect("serve once");
        self.set_view(view);
        let node = Arc::new(Node {
            id: self.id.clone(),
            port: self.port,
            view: self.view.clone(),
            script,
            counts: self.counts.clone(),
        });
        self.task = Some(tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(node.clone().conn(s));
            }
        }));
    }

    /// From now on, reports the cluster as `view` (a node whose view of the cluster changed).
    pub fn set_view(&self, view: Vec<Member>) {
        *self.view.lock() = view;
    }

    /// How many commands named `name` (`GET`, `CLUSTER SHARDS`, ...) it received.
    pub fn count(&self, name: &str) -> u64 {
        self.counts.lock().get(name).copied().unwrap_or(0)
    }
}

struct Node {
    id: String,
    port: u16,
    view: Arc<Mutex<Vec<Member>>>,
    script: Script,
    counts: Arc<Mutex<HashMap<String, u64>>>,
}

const MAX_REQUEST: usize = 1 << 20;

impl Node {
    async fn conn(self: Arc<Node>, mut s: TcpStream) {
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; 16 * 1024];
        let mut proto = 2;
        loop {
            let mut out = Vec::new();
            loop {
                let len = match clusterless::resp::reply_len(&buf) {
                    Ok(Some(len)) => len,
                    Ok(None) => break,
                    Err(_) => return,
                };
                let frame: Vec<u8> = buf.drain(..len).collect();
                let Some(args) = parse_request(&frame) else { return };
                out.extend(self.answer(&args, &mut proto));
            }
            if !out.is_empty() && s.write_all(&out).await.is_err() {
                return;
            }
            if buf.len() > MAX_REQUEST {
                return;
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn answer(&self, args: &[Vec<u8>], proto: &mut u8) -> Vec<u8> {
        let upper = |i: usize| args.get(i).map(|a| String::from_utf8_lossy(a).to_uppercase()).unwrap_or_default();
        let (cmd, sub) = (upper(0), upper(1));
        let name = if matches!(cmd.as_str(), "CLUSTER" | "CLIENT") { format!("{cmd} {sub}") } else { cmd.clone() };
        let nth = {
            let mut c = self.counts.lock();
            let n = c.entry(name.clone()).or_insert(0);
            *n += 1;
            *n
        };
        match name.as_str() {
            "HELLO" => {
                *proto = if sub == "3" { 3 } else { 2 };
                let fields = [("server", "redis"), ("version", "7.0.15"), ("mode", "cluster")];
                let mut o = if *proto == 3 {
                    format!("%{}\r\n", fields.len() + 1)
                } else {
                    format!("*{}\r\n", 2 * fields.len() + 2)
                };
                for (k, v) in fields {
                    o.push_str(&bulk(k));
                    o.push_str(&bulk(v));
                }
                o.push_str(&bulk("proto"));
                o.push_str(&format!(":{proto}\r\n"));
                o.into_bytes()
            }
            "AUTH" | "CLIENT SETNAME" | "CLIENT SETINFO" | "READWRITE" | "ASKING" => b"+OK\r\n".to_vec(),
            "CLIENT ID" => b":1\r\n".to_vec(),
            "PING" => b"+PONG\r\n".to_vec(),
            "CLUSTER MYID" => bulk(&self.id).into_bytes(),
            "CLUSTER SHARDS" => self.shards().into_bytes(),
            "CLUSTER SLOTS" => self.slots().into_bytes(),
            "CLUSTER NODES" => bulk(&self.nodes()).into_bytes(),
            "INFO" => bulk("# Server\r\nredis_version:7.0.15\r\nredis_mode:cluster\r\n").into_bytes(),
            "COMMAND" => b"-ERR fake: no COMMAND table\r\n".to_vec(),
            _ => (self.script)(args, nth)
                .unwrap_or_else(|| format!("-ERR fake: unscripted command '{name}'\r\n").into_bytes()),
        }
    }

    fn shards(&self) -> String {
        let view = self.view.lock().clone();
        let mut o = format!("*{}\r\n", view.len());
        for m in &view {
            o.push_str("*4\r\n");
            o.push_str(&bulk("slots"));
            o.push_str(&format!("*{}\r\n", m.slots.len() * 2));
            for (a, b) in &m.slots {
                o.push_str(&format!(":{a}\r\n:{b}\r\n"));
            }
            o.push_str(&bulk("nodes"));
            o.push_str("*1\r\n*14\r\n");
            for (k, v) in [("id", m.id.as_str()), ("ip", "127.0.0.1"), ("endpoint", "127.0.0.1")] {
                o.push_str(&bulk(k));
                o.push_str(&bulk(v));
            }
            o.push_str(&bulk("port"));
            o.push_str(&format!(":{}\r\n", m.port));
            for (k, v) in [("role", "master"), ("replication-offset", "0"), ("health", "online")] {
                o.push_str(&bulk(k));
                o.push_str(&bulk(v));
            }
        }
        o
    }

    fn slots(&self) -> String {
        let view = self.view.lock().clone();
        let mut o = format!("*{}\r\n", view.iter().map(|m| m.slots.len()).sum::<usize>());
        for m in &view {
            for (a, b) in &m.slots {
                o.push_str(&format!("*3\r\n:{a}\r\n:{b}\r\n*3\r\n{}:{}\r\n{}", bulk("127.0.0.1"), m.port, bulk(&m.id)));
            }
        }
        o
    }

    fn nodes(&self) -> String {
        let mut o = String::new();
        for m in self.view.lock().iter() {
            let me = if m.port == self.port { "myself,master" } else { "master" };
            let ranges: Vec<String> =
                m.slots.iter().map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect();
            o.push_str(&format!(
                "{} 127.0.0.1:{}@{} {me} - 0 0 1 connected {}\n",
                m.id,
                m.port,
                m.cport,
                ranges.join(" ")
            ));
        }
        o
    }
}

pub fn bulk(s: &str) -> String {
    format!("${}\r\n{s}\r\n", s.len())
}

/// A request frame (an array of bulk strings) to its arguments; `None` for anything else.
fn parse_request(frame: &[u8]) -> Option<Vec<Vec<u8>>> {
    let line = |at: usize| -> Option<(&[u8], usize)> {
        let end = frame[at..].windows(2).position(|w| w == b"\r\n")? + at;
        Some((&frame[at..end], end + 2))
    };
    let (head, mut at) = line(0)?;
    let n: usize = std::str::from_utf8(head.strip_prefix(b"*")?).ok()?.parse().ok()?;
    let mut args = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let (h, next) = line(at)?;
        let len: usize = std::str::from_utf8(h.strip_prefix(b"$")?).ok()?.parse().ok()?;
        args.push(frame.get(next..next + len)?.to_vec());
        at = next + len + 2;
    }
    Some(args)
}

/// A fake node id: `c` repeated 40 times.
pub fn id_of(c: char) -> String {
    std::iter::repeat_n(c, 40).collect()
}

/// The address a fake listens on, as a socket address.
pub fn sock(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}
