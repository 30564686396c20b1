//! SCAN with one cursor over the whole cluster: the low bits pick the master (in slot order), the
//! rest is that master's own cursor; each master is walked to its end before the next begins.

use bytes::Bytes;

use super::Router;
use crate::backend::Cx;
use crate::errors;
use crate::resp::{self, reply, Request};

/// Bits of the client cursor that say which master the scan is on (up to 1024 masters).
const SCAN_NODE_BITS: u32 = 10;

/// SCAN with one cursor over the whole cluster: the low bits pick the master (in slot order), the
/// rest is that master's own cursor; each master is walked to its end before the next begins.
pub(super) async fn scan(p: &Router, req: Request, cx: Cx) -> Bytes {
    let invalid = || errors::invalid_cursor();
    let Some(cursor) = req.args.get(1).and_then(|c| std::str::from_utf8(c).ok()?.parse::<u64>().ok()) else {
        return invalid();
    };
    let owners: Vec<String> = p.topology.load().slot_owners().into_iter().map(str::to_string).collect();
    let idx = (cursor & ((1 << SCAN_NODE_BITS) - 1)) as usize;
    let node_cursor = cursor >> SCAN_NODE_BITS;
    let Some(addr) = owners.get(idx) else {
        return if owners.is_empty() { errors::slot_not_served() } else { invalid() };
    };
    let mut args: Vec<&[u8]> = req.args.iter().map(|a| a.as_ref()).collect();
    let nc = node_cursor.to_string();
    args[1] = nc.as_bytes();
    let cmd = resp::encode_command(&args);
    let r = match p.backend.send_one(addr, cx, cmd).await {
        Ok(r) => r,
        Err(e) => return e.reply(),
    };
    if resp::is_error(&r) {
        return r;
    }
    let Some(parts) = resp::aggregate_elements(&r) else {
        return errors::unexpected_reply("SCAN reply");
    };
    let (Some(c), Some(keys)) = (parts.first(), parts.get(1)) else {
        return errors::unexpected_reply("SCAN reply");
    };
    let next: u64 = match resp::as_bulk(c).flatten().and_then(|b| std::str::from_utf8(&b).ok()?.parse().ok()) {
        Some(n) => n,
        None => return errors::unexpected_reply("SCAN cursor"),
    };
    let client_next = if next == 0 {
        if idx + 1 >= owners.len() {
            0
        } else {
            (idx + 1) as u64
        }
    } else if next >> (64 - SCAN_NODE_BITS) != 0 {
        return errors::scan_cursor_too_large();
    } else {
        (next << SCAN_NODE_BITS) | idx as u64
    };
    reply::array(&[reply::bulk(client_next.to_string().as_bytes()), keys.clone()])
}
