//! `Address`: what `sock_connect` accepts (asyncio's address tuples).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// A destination: an IP socket address, a host name and port to resolve
/// first, or a Unix socket path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// An IP address and port.
    Inet(SocketAddr),
    /// A host name (or IP literal) and port, resolved with `getaddrinfo`.
    Host(String, u16),
    /// A Unix socket path; a leading NUL byte names an abstract socket.
    Unix(PathBuf),
}

impl From<SocketAddr> for Address {
    fn from(a: SocketAddr) -> Self {
        Address::Inet(a)
    }
}

impl From<(IpAddr, u16)> for Address {
    fn from((ip, port): (IpAddr, u16)) -> Self {
        Address::Inet(SocketAddr::new(ip, port))
    }
}

impl From<(&str, u16)> for Address {
    fn from((host, port): (&str, u16)) -> Self {
        Address::Host(host.to_owned(), port)
    }
}

impl From<(String, u16)> for Address {
    fn from((host, port): (String, u16)) -> Self {
        Address::Host(host, port)
    }
}

impl From<&Path> for Address {
    fn from(p: &Path) -> Self {
        Address::Unix(p.to_owned())
    }
}

impl From<PathBuf> for Address {
    fn from(p: PathBuf) -> Self {
        Address::Unix(p)
    }
}
