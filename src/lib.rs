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
//! - [`server`]: start-up, accept loop, worker threads, drain, admin HTTP, `clusterless observe`;
//!   the only module that knows everything. It hands the layers below narrow handles:
//!   [`conn::Shared`] to each client connection, [`route::Router`] for routing.
//! - [`conn`]: one client connection: parsing, dispatch, node batches, in-order replies.
//! - [`session`]: per-client state and local commands; transactions, pub/sub, blocking commands.
//! - [`route`]: retry and redirect policy, split/merge, whole-cluster commands, SCAN, INFO.
//! - [`backend`]: node connections (shared pipelined, exclusive), one error type with its retry
//!   decision.
//! - [`topology`]: the slot map snapshot and its sources.
//! - Leaves, used by all: [`command`] (the command table), [`resp`] (protocol), [`slot`],
//!   [`config`], [`metrics`], [`stats`], [`errors`] (every client-visible error text), [`sync`].
//! - [`localcluster`]: throw-away local clusters for `clusterless dev` and the tests.
//!
//! A module imports only from its own layer or the ones below it (server > conn > session >
//! route > backend... see `LAYERS` in tests/layers.rs, which checks every `use crate::` line).

// Unsafe code is denied everywhere; the test-cluster harness allows the two libc calls it needs
// (PDEATHSIG before exec, kill(2) of its own children), and the proxy one: malloc_trim after a
// burst of clients.
#![deny(unsafe_code)]
// Data from sockets, config files and nodes never meets an unwrap: failures become errors.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod backend;
pub mod command;
pub mod config;
pub mod conn;
pub mod errors;
pub mod localcluster;
pub mod metrics;
pub mod resp;
pub mod route;
pub mod server;
pub mod session;
pub mod slot;
pub mod stats;
pub mod sync;
pub mod topology;
