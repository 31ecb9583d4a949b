//! The datagram transport (UDP and Unix datagram sockets).

/// A datagram endpoint: asyncio's `DatagramTransport`.
#[derive(Clone)]
pub struct DatagramTransport {
    _private: (),
}
