//! The shapes a request takes between parsing and its reply: a single-slot command or a split
//! one gathered into node batches, one command of such a batch, a request for the router, and a
//! reply with what its metrics need.

use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

use super::record::Rec;
use crate::command::CommandSpec;
use crate::metrics::Timed;
use crate::resp::Request;
use crate::route::Parts;

/// A reply and what to record about it once it is written.
pub(super) type Done = (Bytes, Option<Rec>);

/// A single-slot keyed command on its way to the slot's master, in its client's batch.
pub(super) struct Keyed {
    pub(super) spec: Arc<CommandSpec>,
    pub(super) req: Request,
    pub(super) slot: u16,
    pub(super) started: Option<Instant>,
    /// A read that must not go to a replica: the client is in WATCH, or wrote its slot lately.
    pub(super) master_only: bool,
}

/// A multi-key request split per slot (MGET, MSET, DEL...), on its way to the node batches.
pub(super) struct Split {
    pub(super) spec: Arc<CommandSpec>,
    pub(super) parts: Parts,
    pub(super) req: Request,
    pub(super) started: Option<Instant>,
    /// Reads that must not go to a replica (the client is in WATCH).
    pub(super) master_only: bool,
}

/// One command of a node's batch: a whole single-slot request, or one slot's part of a split one.
pub(super) enum Item {
    Whole(u64, Keyed),
    Part { seq: u64, idx: usize, slot: u16, cmd: Bytes, readonly: bool, master_only: bool },
}

impl Item {
    pub(super) fn payload(&self) -> &Bytes {
        match self {
            Item::Whole(_, k) => &k.req.raw,
            Item::Part { cmd, .. } => cmd,
        }
    }
}

/// A request for the router, with what its metrics need.
pub(super) struct Routed {
    pub(super) spec: Arc<CommandSpec>,
    pub(super) req: Request,
    pub(super) class: Timed,
    pub(super) started: Option<Instant>,
    /// A read that must not go to a replica: the client is in WATCH, or wrote its slots lately.
    pub(super) master_only: bool,
}
