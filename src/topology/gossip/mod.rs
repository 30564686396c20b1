//! The cluster-bus side of topology: the wire codec, and the observer that PINGs every node's bus
//! port and settles slot ownership from their PONGs.

pub mod codec;
pub mod observer;
pub mod shared;
