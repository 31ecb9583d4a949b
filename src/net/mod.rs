//! Networking: the low-level `sock_*` operations, name resolution, and
//! (with later work) transports and servers.

mod address;
mod connection;
mod datagram;
mod resolve;
pub(crate) mod sendfile;
mod server;
mod sock;
mod take_when_ready;

pub use address::Address;
pub use connection::ConnectOptions;
pub use datagram::DatagramOptions;
pub use resolve::{AddrInfo, AddrInfoHints};
pub use server::{Server, ServerOptions};
pub use sock::AcceptSocket;
