//! Which cluster events reach clients.
//!
//! A client's REGISTER goes to both clusters on its own connections (`Session::register`), so
//! Cassandra itself filters by the event types the client asked for. Of what arrives, the proxy
//! relays SCHEMA_CHANGE from origin only: the target sees the same DDL (the proxy sends it to
//! both), and relaying both would deliver each change twice. STATUS_CHANGE and TOPOLOGY_CHANGE
//! name the real nodes, while the clients' topology is the proxy fleet: they are dropped. Each
//! client connection has one origin connection, registered once, so it gets each event once.
//!
//! The proxy emits no event of its own: when a proxy of the fleet goes away its clients see
//! their connections close and reconnect by their reconnection policy, as the reference proxy's
//! clients do; the fleet in `system.peers` is the configured one and does not change.

use crate::protocol::frame::{Frame, RESPONSE};
use crate::protocol::wire::Reader;

/// The event type that is relayed.
pub const SCHEMA_CHANGE: &str = "SCHEMA_CHANGE";

/// `event` (an EVENT frame from origin) as the client gets it, or `None` when it is not relayed.
/// The body is passed on unchanged; only the header is the client's (`version`, stream -1).
pub fn relayed(mut event: Frame, version: u8) -> Option<Frame> {
    let kind = Reader::new(&event.body).string().ok()?;
    if kind != SCHEMA_CHANGE {
        return None;
    }
    event.version = version | RESPONSE;
    event.stream = -1;
    Some(event)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::opcode;
    use bytes::{Bytes, BytesMut};

    fn event(kind: &str, rest: &[&str]) -> Frame {
        let mut b = BytesMut::new();
        crate::protocol::wire::put_string(&mut b, kind);
        for s in rest {
            crate::protocol::wire::put_string(&mut b, s);
        }
        Frame::response(-1, opcode::EVENT, b.freeze())
    }

    #[test]
    fn only_schema_changes_are_relayed_unchanged() {
        let e = event("SCHEMA_CHANGE", &["UPDATED", "TABLE", "ks", "t"]);
        let body: Bytes = e.body.clone();
        let out = relayed(e, 4).expect("relayed");
        assert_eq!(
            (out.version, out.stream, out.opcode),
            (0x84, -1, opcode::EVENT)
        );
        assert_eq!(out.body, body);
        assert!(relayed(event("STATUS_CHANGE", &["UP"]), 4).is_none());
        assert!(relayed(event("TOPOLOGY_CHANGE", &["NEW_NODE"]), 4).is_none());
        let garbage = Frame::response(-1, opcode::EVENT, Bytes::from_static(&[0, 9, b'x']));
        assert!(relayed(garbage, 4).is_none());
    }
}
