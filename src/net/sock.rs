//! The low-level socket operations (`loop.sock_*`).
//!
//! Each call submits one kernel operation (or a short chain) and awaits
//! its completion. Dropping the returned future cancels the operation in
//! the kernel at once; the socket stays usable for the next call.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};

use bytes::{Buf, Bytes, BytesMut};
use socket2::{Domain, SockAddr, SockRef, Socket};

use super::address::Address;
use super::resolve::AddrInfoHints;
use crate::buf::IoBufMut;
use crate::driver::op::accept::Accept;
use crate::driver::op::connect::Connect;
use crate::driver::op::recv::{Recv, RecvInto};
use crate::driver::op::send::Send;
use crate::driver::op::Op;
use crate::error::Error;
use crate::event_loop::EventLoop;

mod sealed {
    pub trait Sealed {}
}

/// A listening socket [`EventLoop::sock_accept`] can take connections
/// from: `TcpListener`, `UnixListener`, or a `socket2::Socket`.
pub trait AcceptSocket: AsFd + sealed::Sealed {
    /// The connected socket type.
    type Stream;
    /// The peer address type.
    type Addr;
    #[doc(hidden)]
    fn wrap(fd: OwnedFd, addr: SockAddr) -> io::Result<(Self::Stream, Self::Addr)>;
}

impl sealed::Sealed for TcpListener {}
impl AcceptSocket for TcpListener {
    type Stream = TcpStream;
    type Addr = SocketAddr;
    fn wrap(fd: OwnedFd, addr: SockAddr) -> io::Result<(TcpStream, SocketAddr)> {
        let stream = TcpStream::from(fd);
        let peer = match addr.as_socket() {
            Some(a) => a,
            None => stream.peer_addr()?,
        };
        Ok((stream, peer))
    }
}

impl sealed::Sealed for UnixListener {}
impl AcceptSocket for UnixListener {
    type Stream = UnixStream;
    type Addr = std::os::unix::net::SocketAddr;
    fn wrap(fd: OwnedFd, _addr: SockAddr) -> io::Result<(UnixStream, Self::Addr)> {
        let stream = UnixStream::from(fd);
        let peer = stream.peer_addr()?;
        Ok((stream, peer))
    }
}

impl sealed::Sealed for Socket {}
impl AcceptSocket for Socket {
    type Stream = Socket;
    type Addr = SockAddr;
    fn wrap(fd: OwnedFd, addr: SockAddr) -> io::Result<(Socket, SockAddr)> {
        Ok((Socket::from(fd), addr))
    }
}

pub(crate) fn closed_error() -> io::Error {
    io::Error::other(Error::LoopClosed)
}

impl EventLoop {
    pub(crate) fn check_open_io(&self) -> io::Result<()> {
        if self.is_closed() {
            Err(closed_error())
        } else {
            Ok(())
        }
    }

    /// Receives up to `n` bytes (`loop.sock_recv`). An empty result means
    /// the peer closed its side.
    ///
    /// # Example
    ///
    /// ```
    /// use std::os::unix::net::UnixStream;
    /// let lp = ringloop::EventLoop::new()?;
    /// let (a, b) = UnixStream::pair()?;
    /// let l = lp.clone();
    /// let got = lp.run_until_complete(async move {
    ///     l.sock_sendall(&a, &b"ping"[..]).await?;
    ///     l.sock_recv(&b, 1024).await
    /// })??;
    /// assert_eq!(&got[..], b"ping");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub async fn sock_recv(&self, sock: &impl AsFd, n: usize) -> io::Result<Bytes> {
        self.check_open_io()?;
        let op = Recv {
            fd: sock.as_fd().as_raw_fd(),
            buf: BytesMut::with_capacity(n),
        };
        Op::submit(self.inner(), op)?.await
    }

    /// Receives into the whole initialised length of `buf` and gives the
    /// buffer back with the byte count (`loop.sock_recv_into`). The buffer
    /// comes back on error too.
    pub async fn sock_recv_into<B: IoBufMut>(
        &self,
        sock: &impl AsFd,
        buf: B,
    ) -> (io::Result<usize>, B) {
        if let Err(e) = self.check_open_io() {
            return (Err(e), buf);
        }
        let op = RecvInto {
            fd: sock.as_fd().as_raw_fd(),
            buf,
        };
        match Op::try_submit(self.inner(), op) {
            Ok(op) => op.await,
            Err((e, op)) => (Err(e), op.buf),
        }
    }

    /// Sends all of `data` (`loop.sock_sendall`), in as many sends as the
    /// socket needs. If the future is dropped midway, a prefix of `data`
    /// may have been sent; a later `sock_sendall` on the same socket sends
    /// its bytes after that prefix.
    pub async fn sock_sendall(&self, sock: &impl AsFd, data: impl Into<Bytes>) -> io::Result<()> {
        self.check_open_io()?;
        let fd = sock.as_fd().as_raw_fd();
        let mut data: Bytes = data.into();
        while !data.is_empty() {
            let op = Send {
                fd,
                buf: data.clone(),
            };
            let n = Op::submit(self.inner(), op)?.await?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::WriteZero, "send returned 0"));
            }
            data.advance(n);
        }
        Ok(())
    }

    /// Connects `sock` to `addr` (`loop.sock_connect`). A host name is
    /// resolved first (on the executor) for the socket's family; the first
    /// address is used, as asyncio does.
    pub async fn sock_connect(&self, sock: &impl AsFd, addr: impl Into<Address>) -> io::Result<()> {
        self.check_open_io()?;
        let sock_ref = SockRef::from(sock);
        let target = match addr.into() {
            Address::Inet(a) => SockAddr::from(a),
            Address::Unix(p) => SockAddr::unix(p)?,
            Address::Host(host, port) => {
                let domain = sock_ref.domain()?;
                let family = if domain == Domain::IPV6 {
                    libc::AF_INET6
                } else if domain == Domain::IPV4 {
                    libc::AF_INET
                } else {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "a host name needs an AF_INET or AF_INET6 socket",
                    ));
                };
                let hints = AddrInfoHints {
                    family,
                    socktype: libc::SOCK_STREAM,
                    ..Default::default()
                };
                let found = self.getaddrinfo(Some(&host), Some(port), hints).await?;
                let first = found.first().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, format!("no address for {host:?}"))
                })?;
                SockAddr::from(first.addr)
            }
        };
        let op = Connect {
            fd: sock.as_fd().as_raw_fd(),
            addr: Box::new(target),
        };
        Op::submit(self.inner(), op)?.await
    }

    /// Accepts one connection (`loop.sock_accept`). The new socket is
    /// non-blocking and close-on-exec.
    pub async fn sock_accept<L: AcceptSocket>(
        &self,
        listener: &L,
    ) -> io::Result<(L::Stream, L::Addr)> {
        self.check_open_io()?;
        let op = Accept::new(listener.as_fd().as_raw_fd());
        let (fd, addr) = Op::submit(self.inner(), op)?.await?;
        L::wrap(fd, addr)
    }
}
