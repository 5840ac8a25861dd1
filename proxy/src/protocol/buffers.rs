//! Socket buffer sizes of the proxy's connections, in one place because they set the memory an
//! idle connection holds: every client connection has one client socket and two cluster sockets
//! (origin and target), each with a read and a write buffer.
//!
//! Buffers start small and grow only when a frame needs it; a read buffer that grew for a large
//! frame goes back to the initial size once the frame is taken off (see `FrameCodec::decode`).
//! Write batching is bounded separately (`WRITE_BATCH`): a small initial write buffer must not
//! make the proxy flush after every frame under load.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{Framed, FramedRead, FramedWrite};

use crate::protocol::frame::FrameCodec;

/// Initial read buffer: room for the usual request or answer in one read.
pub const READ_INITIAL: usize = 8 * 1024;
/// Initial write buffer: grows (and stays) as large as the batches written under load.
pub const WRITE_INITIAL: usize = 8 * 1024;
/// A read buffer larger than this grew for a large frame and is swapped for a fresh one of
/// `READ_INITIAL` bytes once that frame is decoded.
pub const READ_KEEP: usize = 64 * 1024;
/// Encoded frames waiting in a write buffer before a write to the socket is forced (answers
/// that are ready together go out in one write up to this size).
pub const WRITE_BATCH: usize = 8 * 1024;

/// The client side: one socket read and written by the connection's task.
pub fn client_framed<T: AsyncRead + AsyncWrite>(io: T, codec: FrameCodec) -> Framed<T, FrameCodec> {
    // `with_capacity` sizes both buffers; the write side's own size comes with its first frame.
    let mut framed = Framed::with_capacity(io, codec, READ_INITIAL);
    framed.set_backpressure_boundary(WRITE_BATCH);
    framed
}

/// The read half of a cluster connection.
pub fn cluster_reader<R: AsyncRead>(rd: R, codec: FrameCodec) -> FramedRead<R, FrameCodec> {
    FramedRead::with_capacity(rd, codec, READ_INITIAL)
}

/// The write half of a cluster connection.
pub fn cluster_writer<W: AsyncWrite>(wr: W, codec: FrameCodec) -> FramedWrite<W, FrameCodec> {
    let mut sink = FramedWrite::with_capacity(wr, codec, WRITE_INITIAL);
    sink.set_backpressure_boundary(WRITE_BATCH);
    sink
}

/// Moves what is left in `src` (less than a frame) to a buffer of the initial size, letting the
/// large allocation go.
pub fn shrink_read_buffer(src: &mut BytesMut) {
    let mut fresh = BytesMut::with_capacity(READ_INITIAL.max(src.len()));
    fresh.extend_from_slice(src);
    *src = fresh;
}
