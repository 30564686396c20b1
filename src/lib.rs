//! clusterless: one plain Redis endpoint in front of a Redis Cluster.
//!
//! # Layout
//! Data flows one way, client -> command -> router -> backend -> router -> client; topology flows
//! from the refresher into one published snapshot that everything else only reads.
//!
//! - [`config`]: defaults < TOML file < `CLUSTERLESS_*` env < flags, validated once.
//! - [`resp`]: request scanning (RESP2 multibulk + inline), reply delimiting, reply encoding.
//! - [`slot`]: CRC16/XMODEM key hashing with hash tags.
//! - [`command`]: the command table (arity, flags, key positions) and each command's routing class.
//! - [`session`]: per-client state and the commands the proxy answers itself.
//! - [`client`]: one task per client connection; in-order, batched replies.
//! - [`router`]: split, route, merge; redirects and retries.
//! - [`info`]: INFO merged over the masters.
//! - [`backend`]: multiplexed, pipelined node connections.
//! - [`dedicated`]: exclusive node connections (blocking, WATCH, subscriptions), bounded per node.
//! - [`transaction`]: MULTI/EXEC/WATCH, same-slot and per-shard.
//! - [`blocking`]: blocking commands, including pops over keys in several slots.
//! - [`pubsub`]: subscriptions that survive failovers and slot moves.
//! - [`scripts`]: the scripts the proxy has seen, to reload them on NOSCRIPT.
//! - [`gossip`]: the cluster-bus codec and observer.
//! - [`topology`]: the slot map snapshot (arc-swap), its subscription and its refresher.
//! - [`proxy`]: start-up, shared state, the accept loop and graceful drain.
//! - [`metrics`]: the Prometheus registry and hot-path handles.
//! - [`admin`]: HTTP /metrics, /healthz, /readyz, /topology.
//! - [`cluster`]: throw-away local clusters for `clusterless dev` and the tests.
// Unsafe code is denied everywhere; the test-cluster harness allows the two libc calls it needs
// (PDEATHSIG before exec, kill(2) of its own children), and the proxy one: malloc_trim after a
// burst of clients.
#![deny(unsafe_code)]

pub mod backend;
pub mod command;
pub mod config;
pub mod conn;
pub mod localcluster;
pub mod metrics;
pub mod resp;
pub mod route;
pub mod server;
pub mod session;
pub mod slot;
pub mod topology;
