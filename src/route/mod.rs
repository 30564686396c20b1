//! Routing: turns one client request into node requests and their replies into one reply, as a
//! single Redis server would have answered. [`Router`] is the handle every client connection gets:
//! the slot map, the node connections, the scripts seen and the metrics, nothing else.
//!
//! - [`retry`]: one command to its slot's master, following redirects within a retry budget.
//! - [`redirect`]: what a reply asks for (MOVED, ASK, TRYAGAIN, a late answer), per batch.
//! - [`split`]: MGET/MSET/DEL-like commands split per slot and merged back.
//! - [`whole`], [`scan`], [`info`], [`pubsub_info`], [`logs`]: commands about the whole cluster.
//! - [`scripts`]: scripts seen, reloaded where a node answers NOSCRIPT.
//! - [`config`]: CONFIG SET on every node, and again on nodes that join later.
//! - [`reads`]: which node answers a read (`routing.read_from`): the master or a replica.

mod compute;
mod config;
pub mod databases;
mod info;
mod logs;
mod pubsub_info;
pub mod reads;
mod redirect;
mod retry;
mod scan;
mod scripts;
pub use scan::ScanCursor;
pub mod split;
mod whole;
mod zcompute;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use config::{keep_node_config, NodeConfig};
pub use redirect::{classify, deposed, deposed_error, settle, unblocked_by_failover, FirstTry, Redirect, Settled};
pub use retry::{continue_slot, send_to_any, send_to_slot, Budget, How};
pub use scripts::Scripts;
pub use split::{merge_fan_out, split, Parts};
pub use whole::all_masters;

use crate::backend::{Backend, Cx, DedicatedPool};
use crate::command::{Class, CommandSpec, Special};
use crate::errors;
use crate::metrics::Metrics;
use crate::resp::Request;
use crate::slot;
use crate::stats::ProxyStats;
use crate::topology::{Poller, TopologyStore};

/// What routing needs and may touch, shared by every client connection (as mini-redis hands each
/// connection its `Db`).
pub struct Router {
    pub topology: Arc<TopologyStore>,
    /// Asks the cluster itself, when an answer gives reason to doubt the map.
    pub poller: Arc<Poller>,
    pub backend: Arc<Backend>,
    /// Exclusive connections: blocking commands, WATCH, subscriptions.
    pub dedicated: DedicatedPool,
    pub scripts: Scripts,
    /// What CONFIG SET through the proxy set, for nodes that join later.
    pub node_config: NodeConfig,
    pub metrics: Arc<Metrics>,
    /// The proxy's own facts, for the sections of INFO it answers itself.
    pub stats: Arc<ProxyStats>,
    /// How long a request for a slot whose master is failing waits for the new owner.
    pub failover_hold: Duration,
    /// Set operations over several slots computed here, within this many bytes of members
    /// (`keyspace.cross_slot_reads = "compute"`); `None`: CROSSSLOT.
    pub compute_cross_slot: Option<usize>,
    /// Where reads go (`[routing]`), and the nodes that recently failed one.
    pub reads: reads::Reads,
    any_rr: AtomicUsize,
}

impl Router {
    pub fn new(
        topology: Arc<TopologyStore>,
        poller: Arc<Poller>,
        backend: Arc<Backend>,
        metrics: Arc<Metrics>,
        stats: Arc<ProxyStats>,
        failover_hold: Duration,
    ) -> Router {
        let b = backend.config();
        let dedicated = DedicatedPool::new(
            backend.logins().clone(),
            backend.directory().clone(),
            b.connect_timeout,
            b.dedicated_per_node,
        );
        Router {
            topology,
            poller,
            backend,
            dedicated,
            scripts: Scripts::default(),
            node_config: NodeConfig::default(),
            metrics,
            stats,
            failover_hold,
            compute_cross_slot: None,
            reads: reads::Reads::new(crate::config::ReadFrom::Master, Duration::ZERO),
            any_rr: AtomicUsize::new(0),
        }
    }

    /// Round-robin counter for commands any master can answer.
    pub fn next_any(&self) -> usize {
        self.any_rr.fetch_add(1, Ordering::Relaxed)
    }
}

/// What happened to one request on its way, for the metrics.
#[derive(Default)]
pub struct Trace {
    redirected: AtomicBool,
    /// Told where an exclusive command waits (the node's address and connection id), while it
    /// waits: CLIENT UNBLOCK of the proxy's client is passed on there.
    pub blocked_on: Option<crate::stats::clients::NodeConn>,
    /// The client wrote this request's slot within `routing.read_your_writes_ms`: a read goes to
    /// the master, not to a replica that may not have the write yet.
    pub master_only: bool,
}

impl Trace {
    pub fn redirected(&self) -> bool {
        self.redirected.load(Ordering::Relaxed)
    }

    fn set_redirected(&self) {
        self.redirected.store(true, Ordering::Relaxed);
    }
}

/// Routes a request whose class is not answered locally.
pub async fn route(p: Arc<Router>, spec: Arc<CommandSpec>, req: Request, cx: Cx, trace: &Trace) -> Bytes {
    match spec.special {
        Special::None => {}
        Special::RememberScript(at) => {
            if let Some(b) = req.args.get(at) {
                p.scripts.remember(b);
            }
        }
        Special::EvalSha => return scripts::evalsha(&p, &spec, req, cx, trace).await,
        Special::ScriptFlush => p.scripts.forget_all(),
        Special::ScriptExists => return scripts::exists(&p, req, cx).await,
        // Every node hears every PUBLISH over the cluster bus, but messages sent to different
        // nodes can overtake each other: one node per channel keeps a publisher's order.
        Special::Publish if req.args.len() == 3 => {
            let s = slot::slot(&req.args[1]);
            return send_to_slot(&p, s, req.raw, false, cx, trace).await;
        }
        Special::Publish => {}
    }
    route_class(&p, &spec, req, cx, trace).await
}

/// Routes by the command's class.
pub(super) async fn route_class(p: &Router, spec: &CommandSpec, req: Request, cx: Cx, trace: &Trace) -> Bytes {
    let readonly = spec.readonly;
    match spec.class {
        Class::Keyed => match spec.key_positions(&req.args) {
            Some(k) if !k.is_empty() => match common_slot(&req.args, &k) {
                Some(s) => send_to_slot(p, s, req.raw, readonly, cx, trace).await,
                None => match p.compute_cross_slot {
                    Some(limit) if compute::computes(&spec.name) => {
                        compute::set_op(p, &spec.name, &req.args, limit, cx, trace).await
                    }
                    Some(limit) if zcompute::computes(&spec.name) => {
                        zcompute::zset_op(p, &spec.name, &req.args, limit, cx, trace).await
                    }
                    _ => errors::crossslot(),
                },
            },
            // No keys, or arguments that do not say where they are: any master answers, and
            // produces Redis's own error for a bad numkeys.
            _ => send_to_any(p, req.raw, readonly, cx).await,
        },
        Class::MGet | Class::MSet | Class::SumKeys => split::fan_out(p, spec, req, cx, trace).await,
        Class::AllMasters(m) => all_masters(p, req.raw, m, cx).await,
        Class::AnyMaster => send_to_any(p, req.raw, readonly, cx).await,
        Class::RandomKey => whole::random_key(p, cx).await,
        Class::Scan => scan::scan(p, req, cx).await,
        Class::Info => info::info(p, &req.args, cx).await,
        Class::PubSubInfo => pubsub_info::pubsub(p, &req.args, cx).await,
        Class::ServerLog => logs::server_log(p, &req.args, cx).await,
        Class::AllNodes => config::all_nodes(p, &req.args, cx).await,
        Class::Local | Class::Refused(_) | Class::Stateful => errors::internal_routing(),
    }
}

/// Routes a request by its class, for a caller without the router's `Arc` (a barrier whose reply
/// the database layer rewrites); scripts' specials do not apply to the commands it is used for.
pub async fn route_plain(p: &Router, spec: &CommandSpec, req: Request, cx: Cx) -> Bytes {
    route_class(p, spec, req, cx, &Trace::default()).await
}

/// The slot all `keys` share, or `None` when they span several.
pub fn common_slot(args: &[Bytes], keys: &[usize]) -> Option<u16> {
    let mut it = keys.iter().filter_map(|&i| args.get(i));
    let first = slot::slot(it.next()?);
    for k in it {
        if slot::slot(k) != first {
            return None;
        }
    }
    Some(first)
}
