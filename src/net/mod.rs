//! Networking: the low-level `sock_*` operations, name resolution, and
//! (with later work) transports and servers.

mod address;
mod resolve;
mod sendfile;
mod sock;

pub use address::Address;
pub use resolve::{AddrInfo, AddrInfoHints};
pub use sock::AcceptSocket;
