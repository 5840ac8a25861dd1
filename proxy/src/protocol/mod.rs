//! The CQL native protocol as bytes on a socket: frames (v4) and segments (v5), the protocol's
//! notations and the few messages the proxy writes itself, stream-id bookkeeping and the socket
//! buffer sizes. Nothing here knows what a statement means or which cluster it goes to.

pub mod buffers;
pub mod frame;
pub mod segment;
pub mod stream_ids;
pub mod wire;
