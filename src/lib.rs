//! clusterless: one plain Redis endpoint in front of a Redis Cluster.
//!
//! # Layout
//! The folders draw the flow. A request goes down, its reply comes back up:
//!
//! ```text
//! server ── accepts ──> conn ──> session ──> route ──> backend ──> nodes
//!   │                    (client   (MULTI,     (slots,    (pipelined and
//!   │                    socket,   pub/sub,    redirects, exclusive node
//!   │                    order)    blocking)   split/merge) connections)
//!   └── starts ──> topology (snapshot + store; polling, bus observer, shared observer)
//!                  published to all, read by all
//! ```
//!
//! - [`server`]: start-up, accept loops (plain and TLS), worker threads, drain, admin HTTP,
//!   `clusterless observe`; the only module that knows everything. It hands the layers below
//!   narrow handles:
//!   [`conn::Shared`] to each client connection, [`route::Router`] for routing.
//! - [`conn`]: one client connection: parsing, dispatch, node batches, in-order replies.
//! - [`session`]: per-client state and local commands; transactions, pub/sub, blocking commands.
//! - [`route`]: retry and redirect policy, split/merge, whole-cluster commands, SCAN, INFO.
//! - [`backend`]: node connections (shared pipelined, exclusive), one error type with its retry
//!   decision.
//! - [`topology`]: the slot map snapshot and its sources.
//! - Leaves, used by all: [`command`] (the command table), [`resp`] (protocol), [`slot`],
//!   [`config`], [`metrics`], [`stats`], [`errors`] (every client-visible error text), [`sync`],
//!   [`memory`] (what is buffered for clients, against its limits); [`keyspace`] (SELECT's
//!   databases as prefixes of the stored key names, added to requests, taken off replies).
//! - [`localcluster`]: throw-away local clusters for `clusterless dev` and the tests.
//!
//! A module imports only from its own layer or the ones below it (server > conn > session >
//! route > backend... see `LAYERS` in tests/layers.rs, which checks every `use crate::` line).

// Unsafe code is denied everywhere; the test-cluster harness allows the two libc calls it needs
// (PDEATHSIG before exec, kill(2) of its own children), and the proxy two in server/memory.rs:
// mallopt (a fixed mmap threshold) and malloc_trim after a burst.
#![deny(unsafe_code)]
// Data from sockets, config files and nodes never meets an unwrap: failures become errors (tests
// may unwrap: clippy.toml). One lock helper, `sync::Mutex` (clippy.toml bans std's beside it).
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_types)]
#![deny(rust_2018_idioms)]

mod backend;
mod command;
pub mod config;
mod conn;
mod errors;
mod keyspace;
pub mod localcluster;
mod memory;
mod metrics;
pub mod resp;
mod route;
mod server;
mod session;
pub mod slot;
mod stats;
pub mod sync;
mod topology;

pub use metrics::exported_names as metric_names;
pub use route::ScanCursor;
pub use server::observe::{start as start_observer, start_with_token as start_observer_with_token, ObserverService};
pub use server::{start, Running, StartError};
pub use topology::gossip::codec as bus_codec;
pub use topology::{Node, Role, Shard, Topology};

/// The hot path's pieces, for the microbenchmarks in bench/micro.rs.
pub mod hot {
    pub use crate::command::Class;
    pub use crate::route::split::{merge_fan_out, split};
}
