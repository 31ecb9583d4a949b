//! Protocol traits: what a transport calls as bytes and events arrive
//! (asyncio's `BaseProtocol`, `Protocol` and `DatagramProtocol`).
//!
//! A transport owns its protocol (as `Rc<RefCell<P>>`, shared with the
//! caller of `create_connection`) and calls these methods on the loop
//! thread, never while it holds a borrow of its own state: a protocol may
//! call back into its transport from any of them (write inside
//! `data_received`, close inside `eof_received`).
//!
//! The order is asyncio's: `connection_made` first, then
//! `data_received` any number of times, then `eof_received` at most once,
//! then `connection_lost` exactly once. `pause_writing` and
//! `resume_writing` alternate, starting with `pause_writing`.
//!
//! A panicking protocol method is caught: the loop reports it to the
//! exception handler with the transport in the context and closes the
//! connection (asyncio's "Fatal error: protocol.data_received() call
//! failed"). The loop itself survives.

use std::io;

use socket2::SockAddr;

use crate::transport::{DatagramTransport, Transport};

/// The callbacks every protocol has (`asyncio.BaseProtocol`).
///
/// Every method has a default that does nothing, as in asyncio.
pub trait BaseProtocol: 'static {
    /// The transport type this protocol is attached to.
    type Transport;

    /// Called once, first, with the connection's transport. Keep the
    /// transport (it is a cheap handle) to write and close later.
    fn connection_made(&mut self, transport: Self::Transport) {
        let _ = transport;
    }

    /// Called exactly once, last: `None` for a normal close (EOF or
    /// `close()`), `Some(err)` when an error ended the connection (a reset
    /// by the peer, a broken pipe, a failed read or write).
    fn connection_lost(&mut self, error: Option<io::Error>) {
        let _ = error;
    }

    /// The transport's write buffer rose above its high-water mark: stop
    /// producing data until [`resume_writing`](Self::resume_writing).
    fn pause_writing(&mut self) {}

    /// The transport's write buffer drained to its low-water mark or
    /// below.
    fn resume_writing(&mut self) {}
}

/// A stream protocol (`asyncio.Protocol`), for TCP and Unix connections.
///
/// # Example
///
/// An echo protocol:
///
/// ```
/// use ringloop::{BaseProtocol, Protocol, Transport};
///
/// #[derive(Default)]
/// struct Echo {
///     transport: Option<Transport>,
/// }
///
/// impl BaseProtocol for Echo {
///     type Transport = Transport;
///     fn connection_made(&mut self, transport: Transport) {
///         self.transport = Some(transport);
///     }
/// }
///
/// impl Protocol for Echo {
///     fn data_received(&mut self, data: &[u8]) {
///         if let Some(t) = &self.transport {
///             // Fails only after write_eof(); an echo never calls it.
///             let _ = t.write(data);
///         }
///     }
/// }
/// ```
pub trait Protocol: BaseProtocol<Transport = Transport> {
    /// Bytes arrived. `data` borrows the receive buffer and is valid only
    /// during the call; copy what you keep.
    fn data_received(&mut self, data: &[u8]);

    /// The peer closed its writing side. Return `false` (the default) to
    /// close the transport; `true` to keep it open for writing (half
    /// close), in which case closing it later is up to the protocol.
    fn eof_received(&mut self) -> bool {
        false
    }
}

/// A datagram protocol (`asyncio.DatagramProtocol`), for UDP and Unix
/// datagram endpoints.
pub trait DatagramProtocol: BaseProtocol<Transport = DatagramTransport> {
    /// A datagram arrived from `addr`. `data` borrows the receive buffer.
    fn datagram_received(&mut self, data: &[u8], addr: SockAddr);

    /// A send or receive failed (for example `ECONNREFUSED` after sending
    /// to a closed port on a connected endpoint). The endpoint stays open;
    /// later datagrams are still delivered.
    fn error_received(&mut self, error: io::Error) {
        let _ = error;
    }
}
