//! The protocols of pipe transports (asyncio uses plain `Protocol`s for
//! both directions; here each direction has its own trait, so a protocol
//! gets the transport type it can actually use).

use crate::protocol::BaseProtocol;

use super::{ReadPipeTransport, WritePipeTransport};

/// The protocol of a read pipe ([`EventLoop::connect_read_pipe`](crate::EventLoop::connect_read_pipe)).
///
/// Order: `connection_made`, `data_received` any number of times,
/// `eof_received` at most once (when the writer closed its end), then
/// `connection_lost` exactly once.
///
/// # Example
///
/// ```
/// use ringloop::{BaseProtocol, ReadPipeProtocol, ReadPipeTransport};
///
/// #[derive(Default)]
/// struct Collect(Vec<u8>);
///
/// impl BaseProtocol for Collect {
///     type Transport = ReadPipeTransport;
/// }
///
/// impl ReadPipeProtocol for Collect {
///     fn data_received(&mut self, data: &[u8]) {
///         self.0.extend_from_slice(data);
///     }
/// }
/// ```
pub trait ReadPipeProtocol: BaseProtocol<Transport = ReadPipeTransport> {
    /// Bytes arrived, in order. `data` borrows the read buffer and is
    /// valid only during the call; copy what you keep.
    fn data_received(&mut self, data: &[u8]);

    /// The writing end was closed (read returned 0; for a pty master, the
    /// slave side hung up). The transport closes afterwards whatever this
    /// returns (a read pipe has no writing side to keep open), and
    /// `connection_lost(None)` follows.
    fn eof_received(&mut self) -> bool {
        false
    }
}

/// The protocol of a write pipe ([`EventLoop::connect_write_pipe`](crate::EventLoop::connect_write_pipe)).
///
/// Besides `connection_made` and `connection_lost`, it hears
/// `pause_writing` when the transport's buffer rises above its high-water
/// mark and `resume_writing` when it falls to the low-water mark.
pub trait WritePipeProtocol: BaseProtocol<Transport = WritePipeTransport> {}
