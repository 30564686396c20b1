//! Every error text a client can see, in one place: Redis's own wording where Redis has one (so
//! that client libraries that match on it keep working), and the proxy's own, `ERR clusterless:
//! ...`, where only a proxy can fail that way. A refusal names its command, as Redis's errors do.
//! Everything here is a ready RESP error frame; fixed texts cost no allocation.

use std::fmt::Display;

use bytes::Bytes;

/// What a master says to the clients blocked on it when it turns replica (a failover): the pop
/// did not run. Matched in nodes' replies (the proxy blocks again on the new master), not sent.
pub const UNBLOCKED_ROLE_CHANGE: &[u8] = b"UNBLOCKED force unblock from blocking operation, instance state changed";

/// An error frame for `text` (which starts with its code: `ERR ...`, `CROSSSLOT ...`). CR and LF
/// in it are replaced, since they would break the framing.
pub fn frame(text: &str) -> Bytes {
    let clean: String = text.chars().map(|c| if c == '\r' || c == '\n' { ' ' } else { c }).collect();
    Bytes::from(format!("-{clean}\r\n"))
}

/// Fixed texts, each a function returning its frame without allocating.
macro_rules! fixed {
    ($($(#[$m:meta])* $name:ident = $text:literal;)*) => {
        $( $(#[$m])* pub fn $name() -> Bytes { Bytes::from_static(concat!("-", $text, "\r\n").as_bytes()) } )*
        /// Every fixed text, for the test that checks their framing.
        #[cfg(test)]
        const ALL_FIXED: &[&str] = &[$($text),*];
    };
}

fixed! {
    // === Redis's own wording ===
    crossslot = "CROSSSLOT Keys in request don't hash to the same slot";
    slot_not_served = "CLUSTERDOWN Hash slot not served";
    noauth = "NOAUTH Authentication required.";
    noauth_hello = "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time";
    wrongpass = "WRONGPASS invalid username-password pair or user is disabled.";
    no_password = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?";
    not_cluster = "ERR This instance has cluster support disabled";
    bad_client_name = "ERR Client names cannot contain spaces, newlines or special characters.";
    execabort = "EXECABORT Transaction discarded because of previous errors.";
    multi_nested = "ERR MULTI calls can not be nested";
    watch_in_multi = "ERR WATCH inside MULTI is not allowed";
    exec_without_multi = "ERR EXEC without MULTI";
    discard_without_multi = "ERR DISCARD without MULTI";
    db_out_of_range = "ERR DB index is out of range";
    same_object = "ERR source and destination objects are the same";
    swapdb = "ERR 'SWAPDB' is not available through clusterless: its databases are key-name prefixes in one cluster, and swapping two would rename every key of both";
    not_an_integer = "ERR value is not an integer or out of range";
    timeout_not_an_integer = "ERR timeout is not an integer or out of range";
    syntax = "ERR syntax error";
    numkeys_positive = "ERR numkeys should be greater than 0";
    numkeys_too_many = "ERR Number of keys can't be greater than number of args";
    limit_negative = "ERR LIMIT can't be negative";
    weight_not_float = "ERR weight value is not a float";
    invalid_cursor = "ERR invalid cursor";
    noproto = "NOPROTO unsupported protocol version";
    proto_not_an_integer = "ERR Protocol version is not an integer or out of range";
    max_clients = "ERR max number of clients reached";
    oom = "OOM command not allowed when used memory > 'maxmemory'.";
    no_such_client = "ERR No such client";
    client_id_positive = "ERR client-id should be greater than 0";
    invalid_client_id = "ERR Invalid client ID";
    tracking_one_redirect = "ERR A client can only redirect to a single other client";
    tracking_no_redirect_target = "ERR The client ID you want redirect to does not exist";
    tracking_prefix_needs_bcast = "ERR PREFIX option requires BCAST mode to be enabled";
    tracking_switch_bcast = "ERR You can't switch BCAST mode on/off before disabling tracking for this client, and then re-enabling it with a different mode.";
    tracking_optin_bcast = "ERR OPTIN and OPTOUT are not compatible with BCAST";
    tracking_optin_and_optout = "ERR You can't specify both OPTIN mode and OPTOUT mode";
    tracking_switch_optin = "ERR You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, and then re-enabling it with a different mode.";
    caching_not_tracking = "ERR CLIENT CACHING can be called only when the client is in tracking mode with OPTIN or OPTOUT mode enabled";
    caching_yes_needs_optin = "ERR CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.";
    caching_no_needs_optout = "ERR CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.";
    timeout_negative = "ERR timeout is negative";
    pause_mode = "ERR CLIENT PAUSE mode must be WRITE or ALL";
    unblock_reason = "ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR";

    // === the proxy's own ===
    empty_reply = "ERR clusterless: empty reply";
    missing_reply = "ERR clusterless: missing reply";
    reply_count_mismatch = "ERR clusterless: reply count mismatch from node";
    no_node_answered = "ERR clusterless: no node answered";
    scan_cursor_too_large = "ERR clusterless: node cursor too large to encode";
    tx_slots_kept_moving = "ERR clusterless: the transaction's slots kept moving; it did not run";
    tx_too_many_redirects = "ERR clusterless: too many redirects for a transaction";
    tx_part_aborted = "EXECABORT clusterless: a WATCHed key changed on this command's node; its part did not run";
    pop_slots_kept_moving = "ERR clusterless: the keys' slots kept moving while blocked";
    internal_routing = "ERR clusterless: internal routing error";
}

/// `ERR Protocol error: ...`, the text Redis sends before it closes a connection it cannot frame.
pub fn protocol(what: impl Display) -> String {
    format!("ERR Protocol error: {what}")
}

/// Redis's text: `unknown command 'foo', with args beginning with: 'a' 'b' ` (each shown up to 128
/// bytes in all, control characters as spaces).
pub fn unknown_command(name: &[u8], args: &[Bytes]) -> Bytes {
    let mut msg = format!("ERR unknown command '{}', with args beginning with: ", shorten(name, 128));
    let mut budget = 128usize;
    for a in args {
        if budget == 0 {
            break;
        }
        let s = shorten(a, budget);
        budget = budget.saturating_sub(s.len());
        msg.push_str(&format!("'{s}' "));
    }
    frame(&msg)
}

fn shorten(b: &[u8], max: usize) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(max)]);
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// `ERR wrong number of arguments for 'get' command` (`name` in lower case, `container|sub`).
pub fn wrong_arity(name: &str) -> Bytes {
    frame(&format!("ERR wrong number of arguments for '{name}' command"))
}

/// `ERR unknown subcommand 'x'. Try CLIENT HELP.`
pub fn unknown_subcommand(sub: &[u8], container: &str) -> Bytes {
    frame(&format!("ERR unknown subcommand '{}'. Try {} HELP.", String::from_utf8_lossy(sub), container.to_uppercase()))
}

/// A HELLO option Redis does not know.
pub fn hello_option(opt: &[u8]) -> Bytes {
    frame(&format!("ERR Syntax error in HELLO option '{}'", String::from_utf8_lossy(opt)))
}

/// CLIENT SETINFO with a value Redis refuses.
pub fn setinfo_value(opt: &[u8]) -> Bytes {
    frame(&format!("ERR {} cannot contain spaces, newlines or special characters.", String::from_utf8_lossy(opt)))
}

/// CLIENT SETINFO with an attribute Redis does not know.
pub fn unrecognized_option(opt: &[u8]) -> Bytes {
    frame(&format!("ERR Unrecognized option '{}'", String::from_utf8_lossy(opt)))
}

/// A subcommand Redis 7.0 finds but whose argument count its own code refuses (CLIENT PAUSE with
/// five arguments): `sub` as the client wrote it.
pub fn subcommand_syntax(sub: &[u8], container: &str) -> Bytes {
    frame(&format!(
        "ERR unknown subcommand or wrong number of arguments for '{}'. Try {} HELP.",
        String::from_utf8_lossy(sub),
        container.to_uppercase()
    ))
}

/// CLIENT LIST / KILL TYPE with a type Redis does not know.
pub fn unknown_client_type(t: &[u8]) -> Bytes {
    frame(&format!("ERR Unknown client type '{}'", String::from_utf8_lossy(t)))
}

/// CLIENT KILL USER naming a user that does not exist.
pub fn no_such_user(u: &[u8]) -> Bytes {
    frame(&format!("ERR No such user '{}'", String::from_utf8_lossy(u)))
}

/// A RESP2 client in subscribed mode sent something else.
pub fn subscribed_only(name: &str) -> Bytes {
    frame(&format!(
        "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
    ))
}

/// CLIENT TRACKING on while the proxy cannot hear every master's changes.
pub fn tracking_links_down() -> Bytes {
    proxy("client-side caching is unavailable: the invalidation link to a master is not up; try again")
}

/// CLIENT TRACKING BCAST with prefixes that overlap: one of those given, or (`existing`) one the
/// client has already.
pub fn tracking_prefix_overlap(prefix: &[u8], other: &[u8], existing: bool) -> Bytes {
    let (p, o) = (String::from_utf8_lossy(prefix), String::from_utf8_lossy(other));
    let which = if existing { "an existing" } else { "another provided" };
    frame(&format!(
        "ERR Prefix '{p}' overlaps with {which} prefix '{o}'. Prefixes for a single client must not overlap."
    ))
}

/// Why the proxy refuses a command; the reply names the command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Administration of one server (DEBUG, SHUTDOWN, CONFIG SET, ACL, ...).
    NodeAdmin,
    /// WAITAOF: it refers to one connection's writes on one node.
    WaitAof,
    /// MIGRATE: it moves keys behind the proxy's back.
    Migrate,
    /// MOVE and SWAPDB: a cluster has one database (Redis Cluster's own answer).
    OneDatabase,
    /// A command inside MULTI that would act on the connection to the node the transaction's
    /// block runs on, not on the client's (CLIENT, HELLO, AUTH, SUBSCRIBE, ...).
    InMulti,
    /// A command for every node (CONFIG SET) inside MULTI: the transaction runs on one.
    AllNodesInMulti,
}

impl Refusal {
    /// The refusal of `name` (lower case, `container|sub` for subcommands), e.g.
    /// `ERR 'CONFIG SET' is not available through clusterless: ...`.
    pub fn frame(self, name: &str) -> Bytes {
        let shown = name.replace('|', " ").to_uppercase();
        let why = match self {
            Refusal::OneDatabase => return frame(&format!("ERR {shown} is not allowed in cluster mode")),
            Refusal::NodeAdmin => "it acts on one server; run it on the cluster's nodes",
            Refusal::WaitAof => "it refers to one connection's writes on one node",
            Refusal::Migrate => "it moves keys behind the proxy's back",
            Refusal::AllNodesInMulti => {
                return frame(&format!(
                    "ERR '{shown}' is not available through clusterless inside MULTI: it goes to every node, and a transaction runs on one"
                ))
            }
            Refusal::InMulti => {
                return frame(&format!(
                    "ERR '{shown}' is not available through clusterless inside MULTI: a transaction runs on a node's connection, and this command acts on the client's"
                ))
            }
        };
        frame(&format!("ERR '{shown}' is not available through clusterless: {why}"))
    }
}

// === failures on the way to a node ===

/// `ERR clusterless: {what}`: a request that was never sent.
pub fn proxy(what: impl Display) -> Bytes {
    frame(&format!("ERR clusterless: {what}"))
}

/// A node sent something the proxy cannot read as the reply it expected.
pub fn unexpected_reply(what: &str) -> Bytes {
    frame(&format!("ERR clusterless: unexpected {what} from a node"))
}

/// The owner of a slot could not be reached within the retry budget; nothing was sent.
pub fn unreachable(slot: u16, why: impl Display) -> Bytes {
    frame(&format!("ERR clusterless: master of slot {slot} is unreachable: {why}"))
}

/// `routing.read_from = "replica"` and no healthy replica of the slot's master within the retry
/// budget: the read is not sent to the master, which that setting excludes.
pub fn no_replica(name: &str, slot: u16) -> Bytes {
    frame(&format!(
        "ERR clusterless: no healthy replica serves slot {slot} for '{name}' (routing.read_from is \"replica\")"
    ))
}

/// A set operation over several slots whose members passed `keyspace.max_compute_bytes`.
pub fn compute_too_large(name: &str, limit: usize) -> Bytes {
    frame(&format!(
        "ERR clusterless: {} over several slots reads more than keyspace.max_compute_bytes ({limit} bytes of members); put its keys in one slot (a hash tag) or raise the limit",
        name.to_uppercase()
    ))
}

/// A node's error for a command sent to every node, naming the node (`-ERR ... (node HOST:PORT)`).
pub fn on_node(reply: &[u8], addr: &str) -> Bytes {
    let text = String::from_utf8_lossy(reply);
    let text = text.trim_start_matches(['-', '!']).trim_end();
    frame(&format!("{text} (node {addr})"))
}

/// A node went silent after the command was written.
pub fn may_have_run(what: impl Display) -> Bytes {
    frame(&format!("ERR clusterless: {what}; the command may or may not have been executed"))
}

/// The connection broke after the command was written.
pub fn lost_after_send(what: impl Display) -> Bytes {
    frame(&format!("ERR clusterless: {what} after the command was sent; it may or may not have been executed"))
}

/// A write acknowledged late by a master deposed meanwhile: its effect may be discarded with the
/// old master's data when it rejoins as a replica.
pub fn deposed(addr: &str, late_ms: u128, slot: u16, owner: &str) -> Bytes {
    frame(&format!(
        "ERR clusterless: {addr} answered after {late_ms} ms, when slot {slot} was failing over (owner now {owner}); \
         the command may or may not have been executed"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_texts_are_single_line_errors() {
        for t in ALL_FIXED {
            assert!(!t.contains('\r') && !t.contains('\n'), "{t}");
            let code = t.split(' ').next().unwrap_or_default();
            assert!(code.chars().all(|c| c.is_ascii_uppercase()), "{t}");
        }
        assert_eq!(&crossslot()[..], b"-CROSSSLOT Keys in request don't hash to the same slot\r\n");
    }

    #[test]
    fn refusals_name_their_command() {
        assert_eq!(
            &Refusal::NodeAdmin.frame("config|set")[..],
            &b"-ERR 'CONFIG SET' is not available through clusterless: it acts on one server; run it on the cluster's nodes\r\n"[..]
        );
        assert_eq!(&Refusal::OneDatabase.frame("move")[..], b"-ERR MOVE is not allowed in cluster mode\r\n");
        assert_eq!(&frame("ERR a\r\nb")[..], b"-ERR a  b\r\n");
    }
}
