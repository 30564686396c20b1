//! The slot map, published to all and read by all: one immutable, versioned [`Topology`]
//! snapshot ([`snapshot`]) behind a store ([`store`]) that every source feeds: polling the nodes'
//! client ports ([`poll`]), the gossip observer on their cluster bus ([`gossip`]), or a shared
//! observer's stream ([`shared`]); [`json`] is the snapshot's one JSON schema.

pub mod gossip;
mod identity;
mod json;
mod poll;
pub mod shared;
mod snapshot;
mod store;

pub use json::{from_json, to_json};
pub use poll::{run_refresher, FetchError, Poller};
pub(crate) use snapshot::{format_addr, split_addr};
pub use snapshot::{stable_hash, Node, Role, Shard, Topology};
pub use store::{Impostor, Learned, TopologyStore};
