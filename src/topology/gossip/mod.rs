//! The cluster-bus side of topology: the wire codec ([`codec`]), the per-node PING links
//! ([`link`]), `CLUSTER NODES` for the node set and bus ports ([`nodes`]), and the observer that
//! settles slot ownership from the PONGs ([`observer`]).

pub mod codec;
mod link;
mod nodes;
mod observer;

pub use observer::{run, ObserverConfig};
