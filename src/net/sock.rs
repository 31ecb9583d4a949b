//! The low-level socket operations (`loop.sock_*`).
//!
//! Each call submits one kernel operation (or a short chain) and awaits
//! its completion. Dropping the returned future cancels the operation in
//! the kernel at once; the socket stays usable for the next call. A
//! receive or accept dropped before it returns has taken nothing from the
//! socket (see `take_when_ready.rs`).

use std::future::Future;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::rc::Weak;

use bytes::{Buf, Bytes, BytesMut};
use socket2::{Domain, SockAddr, SockRef, Socket};

use super::address::Address;
use super::resolve::AddrInfoHints;
use super::take_when_ready::take_when_ready;
use crate::buf::IoBufMut;
use crate::driver::op::accept::Accept;
use crate::driver::op::connect::Connect;
use crate::driver::op::recv::{Recv, RecvInto};
use crate::driver::op::send::Send;
use crate::driver::op::sys::is_nonblocking;
use crate::driver::op::{DriverRef, Op};
use crate::error::Error;
use crate::event_loop::{EventLoop, LoopInner};

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

/// Connects `fd` to `addr`, resolving a host name through `lp`'s executor
/// for the socket's family.
/// What `sock_connect` learned about its socket before going async.
struct ConnectPlan {
    fd: RawFd,
    addr: Address,
    /// The socket's family, looked up only for host names.
    domain: Option<io::Result<Domain>>,
    /// On epoll, a blocking socket cannot connect without blocking: a dup
    /// of it connects on the executor instead.
    on_executor: Option<io::Result<OwnedFd>>,
}

async fn connect(driver: DriverRef, lp: Weak<LoopInner>, plan: ConnectPlan) -> io::Result<()> {
    let ConnectPlan {
        fd,
        addr,
        domain,
        on_executor,
    } = plan;
    let target = match addr {
        Address::Inet(a) => SockAddr::from(a),
        Address::Unix(p) => SockAddr::unix(p)?,
        Address::Host(host, port) => {
            let domain = domain.unwrap_or(Ok(Domain::IPV4))?;
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
            // The resolution future holds no loop reference; neither do we.
            let resolving = EventLoop::from_inner(lp.upgrade().ok_or_else(closed_error)?)
                .getaddrinfo(Some(&host), Some(port), hints);
            let found = resolving.await?;
            let first = found.first().ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("no address for {host:?}"))
            })?;
            SockAddr::from(first.addr)
        }
    };
    if let Some(dup) = on_executor {
        let dup = dup?;
        let inner = lp.upgrade().ok_or_else(closed_error)?;
        let job = EventLoop::from_inner(inner)
            .run_in_executor(None, move || SockRef::from(&dup).connect(&target))?;
        return job.await?;
    }
    let op = Connect::new(fd, target);
    Op::submit(&driver, op)?.await
}

impl EventLoop {
    /// asyncio's debug-mode check: `sock_*` operations need non-blocking
    /// sockets (the specification says so; in debug mode asyncio raises
    /// `ValueError`). Outside debug mode nothing is checked: no operation
    /// blocks the loop thread either way.
    pub(super) fn check_nonblocking_in_debug(&self, sock: &impl AsFd) -> io::Result<()> {
        if self.get_debug() && !is_nonblocking(sock.as_fd().as_raw_fd())? {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the socket must be non-blocking",
            ));
        }
        Ok(())
    }

    /// The driver, for operation futures (which hold it instead of the
    /// loop, so a task awaiting I/O never keeps its loop alive).
    pub(crate) fn driver_ref(&self) -> DriverRef {
        self.inner().driver.clone()
    }

    /// The loop's pool of single-shot receive buffers.
    pub(crate) fn recv_pool(&self) -> std::rc::Rc<crate::transport::recv_pool::RecvPool> {
        self.inner().recv_pool.clone()
    }

    /// Receives up to `n` bytes (`loop.sock_recv`). An empty result means
    /// the peer closed its side. The future borrows only the socket.
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
    pub fn sock_recv<'a>(
        &self,
        sock: &'a impl AsFd,
        n: usize,
    ) -> impl Future<Output = io::Result<Bytes>> + 'a {
        let driver = self.driver_ref();
        let fd = sock.as_fd().as_raw_fd();
        let checked = self.check_nonblocking_in_debug(sock);
        async move {
            checked?;
            let op = Recv {
                fd,
                buf: BytesMut::with_capacity(n),
            };
            take_when_ready(&driver, fd, op, |_, e| Err(e)).await
        }
    }

    /// Receives into the whole initialised length of `buf` and gives the
    /// buffer back with the byte count (`loop.sock_recv_into`). The buffer
    /// comes back on error too.
    pub fn sock_recv_into<'a, B: IoBufMut>(
        &self,
        sock: &'a impl AsFd,
        buf: B,
    ) -> impl Future<Output = (io::Result<usize>, B)> + 'a {
        let driver = self.driver_ref();
        let fd = sock.as_fd().as_raw_fd();
        let checked = self.check_nonblocking_in_debug(sock);
        async move {
            if let Err(e) = checked {
                return (Err(e), buf);
            }
            take_when_ready(&driver, fd, RecvInto { fd, buf }, |op, e| (Err(e), op.buf)).await
        }
    }

    /// Sends all of `data` (`loop.sock_sendall`), in as many sends as the
    /// socket needs. If the future is dropped midway, a prefix of `data`
    /// may have been sent; a later `sock_sendall` on the same socket sends
    /// its bytes after that prefix.
    pub fn sock_sendall<'a>(
        &self,
        sock: &'a impl AsFd,
        data: impl Into<Bytes>,
    ) -> impl Future<Output = io::Result<()>> + 'a {
        let driver = self.driver_ref();
        let fd = sock.as_fd().as_raw_fd();
        let data: Bytes = data.into();
        let checked = self.check_nonblocking_in_debug(sock);
        async move {
            checked?;
            sendall(driver, fd, data).await
        }
    }

    /// Connects `sock` to `addr` (`loop.sock_connect`). A host name is
    /// resolved first (on the executor) for the socket's family; the first
    /// address is used, as asyncio does.
    pub fn sock_connect<'a>(
        &self,
        sock: &'a impl AsFd,
        addr: impl Into<Address>,
    ) -> impl Future<Output = io::Result<()>> + 'a {
        let addr = addr.into();
        let checked = self.check_nonblocking_in_debug(sock);
        let domain = matches!(addr, Address::Host(..)).then(|| SockRef::from(sock).domain());
        let on_executor = (self.backend() == crate::Backend::Epoll)
            .then(|| is_nonblocking(sock.as_fd().as_raw_fd()))
            .and_then(|nb| match nb {
                Ok(true) => None,
                Ok(false) => Some(sock.as_fd().try_clone_to_owned()),
                Err(e) => Some(Err(e)),
            });
        let plan = ConnectPlan {
            fd: sock.as_fd().as_raw_fd(),
            addr,
            domain,
            on_executor,
        };
        let driver = self.driver_ref();
        let lp = self.downgrade();
        async move {
            checked?;
            connect(driver, lp, plan).await
        }
    }

    /// Accepts one connection (`loop.sock_accept`). The new socket is
    /// non-blocking and close-on-exec.
    pub fn sock_accept<'a, L: AcceptSocket>(
        &self,
        listener: &'a L,
    ) -> impl Future<Output = io::Result<(L::Stream, L::Addr)>> + 'a {
        let driver = self.driver_ref();
        let fd = listener.as_fd().as_raw_fd();
        let checked = self.check_nonblocking_in_debug(listener);
        async move {
            checked?;
            let (fd, addr) = take_when_ready(&driver, fd, Accept::new(fd), |_, e| Err(e)).await?;
            L::wrap(fd, addr)
        }
    }
}

/// `sock_sendall`'s body: send until everything is out.
pub(crate) async fn sendall(driver: DriverRef, fd: RawFd, mut data: Bytes) -> io::Result<()> {
    while !data.is_empty() {
        let op = Send {
            fd,
            buf: data.clone(),
        };
        let n = Op::submit(&driver, op)?.await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "send returned 0"));
        }
        data.advance(n);
    }
    Ok(())
}
