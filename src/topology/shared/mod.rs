//! The shared observer and its subscribers. `clusterless observe` runs one observer for many
//! proxies and serves its snapshot over HTTP ([`serve`]): `GET /v1/topology` (the current map as
//! JSON) and `GET /v1/topology/watch` (newline-delimited JSON, one snapshot now and one per
//! change). A proxy started with `--observer http://ADDR` follows that stream ([`follow`]) instead
//! of pinging the nodes itself, so N sidecars cost the nodes one observer's PINGs; while the
//! observer is unreachable it polls `CLUSTER SHARDS` on its own and reconnects with backoff.
//! The observer may require a bearer token; a proxy may reach it over TLS (`https://`) ([`link`])
//! and trusts it only as far as the cluster agrees ([`trust`]).

mod follow;
mod link;
mod serve;
mod trust;

pub use follow::subscribe;
pub use link::Link;
pub use serve::serve;
