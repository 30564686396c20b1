//! A blocking pop over keys in several slots (Celery's queue and its priority sub-queues), with
//! one server's semantics and nothing lost or delivered twice: non-blocking pops in key order
//! first; if all keys are empty, one blocking pop per slot at once; the first element delivered,
//! the other pops cancelled with CLIENT UNBLOCK, and whatever they took meanwhile pushed back to
//! the end it came from.

use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;

use crate::backend::{BackendError, Cx, Dedicated, Reason};
use crate::errors;
use crate::resp::{self, reply};
use crate::route::{self, Budget, Redirect, Router, Trace};
use crate::slot;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Left,
    Right,
    Min,
    Max,
}

/// A multi-slot blocking pop, taken apart.
pub(super) struct Pop<'a> {
    /// Command name as the client sent it (BLPOP, BZMPOP...), reused for the per-slot pops.
    name: &'a Bytes,
    /// The command's lower-case name (blpop, bzmpop...).
    kind: &'a str,
    keys: Vec<&'a Bytes>,
    /// Seconds, as sent (0 = forever).
    timeout: f64,
    end: End,
    /// COUNT for BLMPOP/BZMPOP.
    count: Option<&'a Bytes>,
}

impl<'a> Pop<'a> {
    pub(super) fn parse(name: &'a str, args: &'a [Bytes], keys: &[usize]) -> Option<Pop<'a>> {
        let ks: Vec<&Bytes> = keys.iter().filter_map(|&i| args.get(i)).collect();
        match name {
            "blpop" | "brpop" | "bzpopmin" | "bzpopmax" => {
                let end = match name {
                    "blpop" => End::Left,
                    "brpop" => End::Right,
                    "bzpopmin" => End::Min,
                    _ => End::Max,
                };
                Some(Pop { name: &args[0], kind: name, keys: ks, timeout: seconds(args.last()?)?, end, count: None })
            }
            "blmpop" | "bzmpop" => {
                // BLMPOP timeout numkeys key... LEFT|RIGHT [COUNT n]
                let after = keys.last()? + 1;
                let dir = args.get(after)?;
                let end = if dir.eq_ignore_ascii_case(b"left") {
                    End::Left
                } else if dir.eq_ignore_ascii_case(b"right") {
                    End::Right
                } else if dir.eq_ignore_ascii_case(b"min") {
                    End::Min
                } else if dir.eq_ignore_ascii_case(b"max") {
                    End::Max
                } else {
                    return None;
                };
                let count = match args.get(after + 1) {
                    Some(c) if c.eq_ignore_ascii_case(b"count") && args.len() == after + 3 => Some(&args[after + 2]),
                    None => None,
                    _ => return None,
                };
                Some(Pop { name: &args[0], kind: name, keys: ks, timeout: seconds(args.get(1)?)?, end, count })
            }
            _ => None,
        }
    }

    fn end_word(&self) -> &'static str {
        match self.end {
            End::Left => "LEFT",
            End::Right => "RIGHT",
            End::Min => "MIN",
            End::Max => "MAX",
        }
    }

    /// The non-blocking form for one key, and whether its reply must be reshaped into the
    /// blocking command's (`LPOP` answers the element, `BLPOP` answers key and element).
    fn nonblocking(&self, key: &[u8]) -> Bytes {
        let mut a: Vec<&[u8]> = Vec::new();
        match self.kind {
            "blpop" => a.extend([b"LPOP".as_ref(), key]),
            "brpop" => a.extend([b"RPOP".as_ref(), key]),
            "bzpopmin" => a.extend([b"ZPOPMIN".as_ref(), key]),
            "bzpopmax" => a.extend([b"ZPOPMAX".as_ref(), key]),
            _ => {
                a.push(if self.kind == "blmpop" { b"LMPOP" } else { b"ZMPOP" });
                a.extend([b"1".as_ref(), key, self.end_word().as_bytes()]);
                if let Some(c) = self.count {
                    a.extend([b"COUNT".as_ref(), c]);
                }
            }
        }
        resp::encode_command(&a)
    }

    /// The non-blocking reply in the blocking command's shape, or `None` when the key was empty.
    fn reshape(&self, key: &[u8], r: &Bytes) -> Option<Bytes> {
        if resp::is_null(r) {
            return None;
        }
        match self.kind {
            "blpop" | "brpop" => Some(reply::array(&[reply::bulk(key), r.clone()])),
            "bzpopmin" | "bzpopmax" => {
                let el = resp::aggregate_elements(r)?;
                if el.len() < 2 {
                    return None;
                }
                Some(reply::array(&[reply::bulk(key), el[0].clone(), el[1].clone()]))
            }
            _ => Some(r.clone()),
        }
    }

    /// The per-slot blocking pop over `keys` with `secs` left.
    fn blocking(&self, keys: &[&Bytes], secs: f64) -> Bytes {
        let t = format_secs(secs);
        let n = keys.len().to_string();
        let mut a: Vec<&[u8]> = vec![self.name];
        match self.kind {
            "blmpop" | "bzmpop" => {
                a.extend([t.as_bytes(), n.as_bytes()]);
                a.extend(keys.iter().map(|k| k.as_ref()));
                a.push(self.end_word().as_bytes());
                if let Some(c) = self.count {
                    a.extend([b"COUNT".as_ref(), c]);
                }
            }
            _ => {
                a.extend(keys.iter().map(|k| k.as_ref()));
                a.push(t.as_bytes());
            }
        }
        resp::encode_command(&a)
    }

    /// Commands that put back what a cancelled pop took: to the end it came from, in order.
    fn push_back(&self, r: &Bytes) -> Option<(Bytes, Bytes)> {
        let el = resp::aggregate_elements(r)?;
        let key = resp::as_bulk(el.first()?)??;
        let mut a: Vec<Bytes> = Vec::new();
        match self.kind {
            "blpop" | "brpop" => {
                a.push(Bytes::from_static(if self.end == End::Left { b"LPUSH" } else { b"RPUSH" }));
                a.push(key.clone());
                a.push(resp::as_bulk(el.get(1)?)??);
            }
            "bzpopmin" | "bzpopmax" => {
                a.extend([Bytes::from_static(b"ZADD"), key.clone(), score(el.get(2)?)?, resp::as_bulk(el.get(1)?)??]);
            }
            "blmpop" => {
                a.push(Bytes::from_static(if self.end == End::Left { b"LPUSH" } else { b"RPUSH" }));
                a.push(key.clone());
                let items = resp::aggregate_elements(el.get(1)?)?;
                for it in items.iter().rev() {
                    a.push(resp::as_bulk(it)??);
                }
            }
            _ => {
                a.extend([Bytes::from_static(b"ZADD"), key.clone()]);
                for pair in resp::aggregate_elements(el.get(1)?)? {
                    let pe = resp::aggregate_elements(&pair)?;
                    a.push(score(pe.get(1)?)?);
                    a.push(resp::as_bulk(pe.first()?)??);
                }
            }
        }
        Some((key, resp::encode_command(&a)))
    }

    pub(super) async fn run(self, p: &Router, cx: Cx) -> Bytes {
        let deadline = (self.timeout > 0.0).then(|| Instant::now() + Duration::from_secs_f64(self.timeout));
        let trace = Trace::default();
        let mut budget = Budget::new(p);
        loop {
            // 1. The first non-empty key in argument order wins, as on one server.
            for k in &self.keys {
                let r = route::send_to_slot(p, slot::slot(k), self.nonblocking(k), false, cx, &trace).await;
                if resp::is_error(&r) {
                    return r;
                }
                if let Some(out) = self.reshape(k, &r) {
                    return out;
                }
            }
            let Some(secs) = seconds_left(deadline) else { return reply::null_array(cx.proto) };
            // 2. Everything empty: block on every slot at once.
            let blocked_at = Instant::now();
            match self.block_all(p, cx, secs).await {
                Some(r) => return r,
                None => {
                    // Pops that were blocked past the retry budget were waiting, not retrying:
                    // a move or failover after that gets a budget of its own.
                    if blocked_at.elapsed() >= p.backend.config().retry_budget {
                        budget = Budget::new(p);
                    }
                    // A slot moved or a node failed under us: look again with a fresh map.
                    p.topology.request_refresh();
                    if !budget.wait().await {
                        return errors::pop_slots_kept_moving();
                    }
                }
            }
        }
    }

    /// One blocking pop per slot, all at once. `Some(reply)`: deliver it (an element, nil after the
    /// timeout, or an error); `None`: a redirect or failure; try again from the start.
    async fn block_all(&self, p: &Router, cx: Cx, secs: f64) -> Option<Bytes> {
        let mut by_slot: Vec<(u16, Vec<&Bytes>)> = Vec::new();
        for k in &self.keys {
            let s = slot::slot(k);
            match by_slot.iter_mut().find(|(x, _)| *x == s) {
                Some((_, v)) => v.push(k),
                None => by_slot.push((s, vec![k])),
            }
        }
        let mut conns: Vec<(Dedicated, Bytes)> = Vec::new();
        for (s, keys) in &by_slot {
            let addr = p.topology.load().master_for(*s).map(str::to_string);
            let got = match addr {
                Some(a) => p.dedicated.get(&a, cx).await.map_err(Some),
                None => Err(None),
            };
            match got {
                Ok(c) => conns.push((c, self.blocking(keys, secs))),
                Err(e) => {
                    // Nothing was sent yet: the connections go back clean.
                    conns.into_iter().for_each(|(c, _)| p.dedicated.put(c));
                    return match e {
                        // The proxy's own bound, not a moving slot: looking again would only
                        // wait out the connect timeout again, and then the client's timeout.
                        Some(e) if e.busy() => Some(e.reply()),
                        _ => None,
                    };
                }
            }
        }
        // The node's own timeout ends each pop; past it plus the request timeout, a node that says
        // nothing (stopped) is given up on.
        let guard = (secs > 0.0).then(|| Duration::from_secs_f64(secs) + p.backend.config().request_timeout);
        let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
        let mut running: FuturesUnordered<_> = conns
            .into_iter()
            .map(|(mut c, cmd)| {
                let mut cancel = cancel_rx.clone();
                async move {
                    let r = pop_once(p, cx, &mut c, &cmd, guard, &mut cancel).await;
                    (c, r)
                }
            })
            .collect();
        let mut winner: Option<Bytes> = None;
        let mut retry = false;
        while let Some((c, r)) = running.next().await {
            match r {
                Ok(r) if resp::is_null(&r) => p.dedicated.put(c),
                Ok(r) if resp::is_error(&r) => {
                    // A master turning replica closes the connections of the pops it ends.
                    let unblocked = route::unblocked_by_failover(&r);
                    if !unblocked {
                        p.dedicated.put(c);
                    }
                    match route::classify(&r, "") {
                        Redirect::Moved { slot, addr } => {
                            p.topology.patch_slot(slot, &addr);
                            retry = true;
                        }
                        // The master turned replica (a failover): this pop did not run.
                        Redirect::None if unblocked => {
                            p.metrics.redirect("unblocked");
                            retry = true;
                        }
                        Redirect::None if winner.is_none() => winner = Some(r),
                        Redirect::None => {}
                        _ => retry = true,
                    }
                }
                Ok(r) => {
                    p.dedicated.put(c);
                    if winner.is_none() && !retry {
                        winner = Some(r);
                    } else {
                        // Taken by a pop we were cancelling: back where it came from.
                        self.restore(p, cx, &r).await;
                    }
                }
                // The connection is dropped (closed) with the failure.
                Err(_) => retry = true,
            }
            if winner.is_some() || retry {
                let _ = cancel_tx.send(true);
            }
        }
        match (winner, retry) {
            (Some(w), _) => Some(w),
            (None, true) => None,
            (None, false) => Some(reply::null_array(cx.proto)),
        }
    }

    /// Puts back what a cancelled pop took.
    async fn restore(&self, p: &Router, cx: Cx, r: &Bytes) {
        let Some((key, cmd)) = self.push_back(r) else {
            tracing::error!("could not read a cancelled pop's reply; an element may be lost");
            return;
        };
        let trace = Trace::default();
        let out = route::send_to_slot(p, slot::slot(&key), cmd, false, cx, &trace).await;
        if resp::is_error(&out) {
            tracing::error!(key = %String::from_utf8_lossy(&key), error = %String::from_utf8_lossy(&out).trim_end(),
                "could not push back an element taken by a cancelled pop");
        }
    }
}

/// Sends one blocking pop and waits for its reply. Once `cancel` fires, the node is asked to end
/// the pop (CLIENT UNBLOCK, from a shared connection), again every 20 ms in case the pop had not
/// reached the node yet; a pop that already took something still answers with it.
async fn pop_once(
    p: &Router,
    cx: Cx,
    c: &mut Dedicated,
    cmd: &[u8],
    guard: Option<Duration>,
    cancel: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<Bytes, BackendError> {
    c.send(cmd).await?;
    let give_up = guard.map(|g| Instant::now() + g);
    let mut cancelled = *cancel.borrow();
    loop {
        if cancelled {
            let id = c.node_client_id.to_string();
            let unblock = resp::encode_command(&["CLIENT", "UNBLOCK", id.as_str()]);
            // The proxy's own login: the client's user may not be allowed CLIENT UNBLOCK, and a pop
            // left running would take an element nobody receives.
            let _ = p.backend.send(&c.addr, Cx { login: 0, ..cx }, unblock, 1).await;
        }
        let tick = if cancelled { Some(Instant::now() + Duration::from_millis(20)) } else { give_up };
        tokio::select! {
            r = c.read() => return r,
            _ = cancel.changed(), if !cancelled => cancelled = true,
            _ = sleep_until_opt(tick) => {
                if !cancelled {
                    return Err(BackendError::timeout(&c.addr, Reason::NoAnswerTo("a cancelled blocking pop")));
                }
            }
        }
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// A timeout in seconds as sent, when it is one Redis accepts.
pub(super) fn seconds(b: &Bytes) -> Option<f64> {
    std::str::from_utf8(b).ok()?.parse::<f64>().ok().filter(|t| *t >= 0.0 && t.is_finite())
}

/// A score as text from a RESP2 bulk or a RESP3 double.
fn score(f: &Bytes) -> Option<Bytes> {
    match f.first()? {
        b',' => {
            let end = f.iter().position(|&b| b == b'\r')?;
            Some(f.slice(1..end))
        }
        _ => resp::as_bulk(f)?,
    }
}

/// The seconds a pop with `deadline` may still block (0: no deadline, block for ever), or `None`
/// once the deadline has passed (the pop then answers its timeout's nil).
pub(super) fn seconds_left(deadline: Option<Instant>) -> Option<f64> {
    match deadline {
        None => Some(0.0),
        Some(d) => Some(d.saturating_duration_since(Instant::now()).as_secs_f64()).filter(|&left| left >= 0.001),
    }
}

pub(super) fn format_secs(s: f64) -> String {
    if s == 0.0 {
        "0".into()
    } else {
        format!("{:.3}", s.max(0.001))
    }
}
