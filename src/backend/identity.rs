//! Which node an address must be. Every new node connection asks `CLUSTER MYID` in its handshake,
//! before it carries anything, and the answer is held against the slot map, whatever taught the
//! proxy the address (bootstrap, bus, shared observer, MOVED, ASK): an address is only a hint
//! where a node was; the node's id is what it is. A plain redis-server, a node of another cluster
//! or a different node at a known address never gets a request.

use bytes::Bytes;

use super::{BackendError, Reason};
use crate::resp;

/// The map's view of who is where, as the topology provides it.
pub trait Directory: Send + Sync {
    /// The id of the node the map places at `addr`, when it names one.
    fn id_at(&self, addr: &str) -> Option<String>;
    /// Whether `id` is a node of this cluster as far as the map knows.
    fn knows(&self, id: &str) -> bool;
    /// A node at `addr` answered `answered` (an id, or why it has none) where the map wanted
    /// `expected` (None: any node of the cluster): whoever taught the address is told.
    fn impostor(&self, addr: &str, expected: Option<&str>, answered: &str);
}

/// How strictly an address is checked.
#[derive(Clone, Copy)]
pub enum Verify<'a> {
    /// A connection that will carry clients' requests: the node must be the one the map names
    /// there, or, where the map names none (a MOVED to a node it does not know yet), one of the
    /// cluster's nodes.
    Node(&'a dyn Directory),
    /// A topology query: checked where the map names a node; a seed the map does not know yet
    /// is what teaches the map, and is asked as it is.
    Query(&'a dyn Directory),
}

/// The command the handshake adds.
pub(super) const MYID: [&str; 2] = ["CLUSTER", "MYID"];

impl Verify<'_> {
    /// Holds the node's answer to `CLUSTER MYID` against the map.
    pub(super) fn check(&self, addr: &str, reply: &Bytes) -> Result<(), BackendError> {
        let (dir, strict) = match *self {
            Verify::Node(d) => (d, true),
            Verify::Query(d) => (d, false),
        };
        if let Some(text) = resp::error_text(reply).filter(|t| t.starts_with(b"NOPERM")) {
            // Not a sign of the wrong node: the backend user may not ask. Still nothing is sent.
            let text = String::from_utf8_lossy(text);
            return Err(BackendError::not_sent(addr, Reason::NoIdentity(text.into_owned())));
        }
        let answered = match resp::as_bulk(reply) {
            Some(Some(id)) => String::from_utf8_lossy(&id).into_owned(),
            _ => {
                let why = resp::error_text(reply).map(|t| String::from_utf8_lossy(t).into_owned());
                format!("no node id ({})", why.as_deref().unwrap_or("not a bulk string"))
            }
        };
        let expected = dir.id_at(addr).filter(|id| !id.is_empty());
        let fine = match &expected {
            Some(e) => *e == answered,
            None => !strict || dir.knows(&answered),
        };
        if fine {
            return Ok(());
        }
        dir.impostor(addr, expected.as_deref(), &answered);
        Err(BackendError::not_sent(addr, Reason::WrongNode { expected, answered }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::Mutex;

    /// A map with one node `a` at `10.0.0.1:7000`, recording whom it was told about.
    #[derive(Default)]
    struct Map {
        told: Mutex<Vec<(String, Option<String>, String)>>,
    }

    impl Directory for Map {
        fn id_at(&self, addr: &str) -> Option<String> {
            (addr == "10.0.0.1:7000").then(|| "a".repeat(40))
        }
        fn knows(&self, id: &str) -> bool {
            id == "a".repeat(40) || id == "b".repeat(40)
        }
        fn impostor(&self, addr: &str, expected: Option<&str>, answered: &str) {
            self.told.lock().push((addr.into(), expected.map(Into::into), answered.into()));
        }
    }

    fn bulk(s: &str) -> Bytes {
        Bytes::from(format!("${}\r\n{s}\r\n", s.len()))
    }

    #[test]
    fn the_named_node_passes_and_no_other() {
        let m = Map::default();
        let (a, b) = ("a".repeat(40), "b".repeat(40));
        for v in [Verify::Node(&m), Verify::Query(&m)] {
            assert!(v.check("10.0.0.1:7000", &bulk(&a)).is_ok());
            let e = v.check("10.0.0.1:7000", &bulk(&b)).unwrap_err();
            assert_eq!(e.failure, crate::backend::Failure::NotSent);
            assert_eq!(e.reason, Reason::WrongNode { expected: Some(a.clone()), answered: b.clone() });
        }
        assert_eq!(m.told.lock().len(), 2);
        assert_eq!(m.told.lock()[0], ("10.0.0.1:7000".into(), Some(a), b));
    }

    #[test]
    fn an_address_the_map_does_not_name_needs_a_known_node_for_traffic_only() {
        let m = Map::default();
        // A MOVED to a node the map has no id for: any node of the cluster will do ...
        assert!(Verify::Node(&m).check("10.0.0.2:7000", &bulk(&"b".repeat(40))).is_ok());
        // ... a stranger will not ...
        let e = Verify::Node(&m).check("10.0.0.2:7000", &bulk(&"c".repeat(40))).unwrap_err();
        assert_eq!(e.reason, Reason::WrongNode { expected: None, answered: "c".repeat(40) });
        // ... but a seed being asked for the map is what teaches it.
        assert!(Verify::Query(&m).check("10.0.0.2:7000", &bulk(&"c".repeat(40))).is_ok());
        assert_eq!(m.told.lock().len(), 1);
    }

    #[test]
    fn a_server_without_cluster_mode_is_a_stranger_and_said_why() {
        let m = Map::default();
        let plain = Bytes::from_static(b"-ERR This instance has cluster support disabled\r\n");
        let e = Verify::Node(&m).check("10.0.0.1:7000", &plain).unwrap_err();
        let want = "no node id (ERR This instance has cluster support disabled)";
        assert_eq!(e.reason, Reason::WrongNode { expected: Some("a".repeat(40)), answered: want.into() });
        assert!(e.to_string().contains("is not the node the slot map names there"), "{e}");
    }

    #[test]
    fn a_user_without_the_right_to_ask_is_not_an_impostor() {
        let m = Map::default();
        let noperm = Bytes::from_static(b"-NOPERM User app has no permissions to run the 'cluster|myid' command\r\n");
        let e = Verify::Node(&m).check("10.0.0.1:7000", &noperm).unwrap_err();
        assert!(matches!(e.reason, Reason::NoIdentity(_)));
        assert!(e.to_string().ends_with("the backend user needs +cluster|myid"), "{e}");
        assert!(m.told.lock().is_empty());
    }
}
