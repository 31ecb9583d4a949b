//! Opening stream connections: `create_connection`,
//! `create_unix_connection` and `connect_accepted_socket`.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};

use socket2::{Domain, SockAddr, Socket, Type};

use super::resolve::{AddrInfo, AddrInfoHints};
use super::sock::closed_error;
use crate::driver::op::connect::Connect;
use crate::driver::op::Op;
use crate::event_loop::{EventLoop, LoopInner};
use crate::protocol::Protocol;
use crate::transport::stream::StreamInner;
use crate::transport::unclaimed::Unclaimed;
use crate::transport::Transport;

/// Options of [`EventLoop::create_connection`] (asyncio's keyword
/// arguments). Build with `Default` and the setters.
#[derive(Default)]
pub struct ConnectOptions {
    pub(crate) family: i32,
    pub(crate) proto: i32,
    pub(crate) flags: i32,
    pub(crate) local_addr: Option<(String, u16)>,
    pub(crate) sock: Option<OwnedFd>,
}

impl ConnectOptions {
    /// Only addresses of this family (`AF_INET`, `AF_INET6`; 0 = any).
    pub fn family(mut self, family: i32) -> Self {
        self.family = family;
        self
    }

    /// The protocol number passed to `getaddrinfo` and `socket`.
    pub fn proto(mut self, proto: i32) -> Self {
        self.proto = proto;
        self
    }

    /// `getaddrinfo` flags (`AI_*`).
    pub fn flags(mut self, flags: i32) -> Self {
        self.flags = flags;
        self
    }

    /// Binds the socket to this local host (name or literal) and port
    /// before connecting.
    pub fn local_addr(mut self, host: impl Into<String>, port: u16) -> Self {
        self.local_addr = Some((host.into(), port));
        self
    }

    /// Uses an existing, already connected stream socket instead of
    /// connecting (`sock=`); host and port must then be `None`.
    pub fn sock(mut self, sock: impl Into<OwnedFd>) -> Self {
        self.sock = Some(sock.into());
        self
    }
}

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// asyncio's rule for several failed attempts: one error is raised as
/// is; several with the same text raise the first; otherwise one error
/// lists them all.
pub(crate) fn combine_errors(mut errors: Vec<io::Error>) -> io::Error {
    if errors.len() == 1 {
        return errors.remove(0);
    }
    let first = errors[0].to_string();
    if errors.iter().all(|e| e.to_string() == first) {
        return errors.remove(0);
    }
    let listed: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let kind = errors[0].kind();
    let kind = if errors.iter().all(|e| e.kind() == kind) {
        kind
    } else {
        io::ErrorKind::Other
    };
    io::Error::new(kind, format!("Multiple exceptions: {}", listed.join(", ")))
}

fn check_stream(sock: &OwnedFd) -> io::Result<()> {
    let ty = socket2::SockRef::from(sock).r#type()?;
    if ty != Type::STREAM {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("A Stream Socket was expected, got {ty:?}"),
        ));
    }
    Ok(())
}

fn upgrade(lp: &Weak<LoopInner>) -> io::Result<EventLoop> {
    lp.upgrade()
        .map(EventLoop::from_inner)
        .ok_or_else(closed_error)
}

/// Makes the transport and waits until `connection_made` has run
/// (asyncio's `_create_connection_transport`).
pub(crate) async fn attach<P: Protocol>(
    lp: &EventLoop,
    sock: OwnedFd,
    protocol: P,
) -> io::Result<(Transport, Rc<RefCell<P>>)> {
    let protocol = Rc::new(RefCell::new(protocol));
    let transport = StreamInner::start(lp, sock, protocol.clone(), None)?;
    // Closed if this future is dropped before it hands the transport over.
    let transport = Unclaimed::new(transport, Transport::close);
    // connection_made and the first read were scheduled before this
    // callback: when it runs, the protocol knows its transport.
    let waiter = lp.create_future::<()>();
    let w = waiter.clone();
    lp.call_soon(move || {
        let _ = w.set_result(());
    })?;
    waiter.await.map_err(io::Error::other)?;
    Ok((transport.claim(), protocol))
}

/// Resolves `host`/`port` with `getaddrinfo` on the executor.
pub(crate) async fn resolve(
    lp: &EventLoop,
    host: Option<&str>,
    port: Option<u16>,
    hints: AddrInfoHints,
) -> io::Result<Vec<AddrInfo>> {
    let infos = lp.getaddrinfo(host, port, hints).await?;
    if infos.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "getaddrinfo() returned empty list",
        ));
    }
    Ok(infos)
}

/// Opens a non-blocking, close-on-exec socket.
pub(crate) fn new_socket(family: i32, ty: Type, proto: i32) -> io::Result<Socket> {
    let proto = (proto != 0).then(|| socket2::Protocol::from(proto));
    let sock = Socket::new(Domain::from(family), ty.nonblocking().cloexec(), proto)?;
    Ok(sock)
}

async fn connect_one(lp: &EventLoop, info: &AddrInfo, local: &[AddrInfo]) -> io::Result<OwnedFd> {
    let sock = new_socket(info.family, Type::STREAM, info.protocol)?;
    if !local.is_empty() {
        let mut bound = false;
        let mut last = None;
        for l in local.iter().filter(|l| l.family == info.family) {
            match sock.bind(&SockAddr::from(l.addr)) {
                Ok(()) => {
                    bound = true;
                    break;
                }
                Err(e) => {
                    last = Some(io::Error::new(
                        e.kind(),
                        format!("error while attempting to bind on address {}: {e}", l.addr),
                    ))
                }
            }
        }
        if !bound {
            return Err(last.unwrap_or_else(|| {
                io::Error::new(
                    io::ErrorKind::AddrNotAvailable,
                    "no local address of the remote address's family",
                )
            }));
        }
    }
    let fd = OwnedFd::from(sock);
    let op = Connect::new(fd.as_raw_fd(), SockAddr::from(info.addr));
    Op::submit(&lp.driver_ref(), op)?.await?;
    Ok(fd)
}

impl EventLoop {
    /// Opens a TCP connection (`loop.create_connection`) and attaches a
    /// protocol made by `factory`.
    ///
    /// `host` is resolved with `getaddrinfo` (on the executor); every
    /// address is tried in order until one connects. One failure is
    /// returned as is; several are combined into one error that lists
    /// them. With [`ConnectOptions::sock`], the given connected socket is
    /// used and `host`/`port` must be `None`. When the future resolves,
    /// the protocol's `connection_made` has run and reading has started.
    ///
    /// # Example
    ///
    /// ```
    /// use ringloop::{BaseProtocol, Protocol, Transport};
    /// use std::net::TcpListener;
    ///
    /// struct Hello;
    /// impl BaseProtocol for Hello {
    ///     type Transport = Transport;
    ///     fn connection_made(&mut self, t: Transport) {
    ///         t.write(b"hello").unwrap();
    ///         t.close();
    ///     }
    /// }
    /// impl Protocol for Hello {
    ///     fn data_received(&mut self, _: &[u8]) {}
    /// }
    ///
    /// let listener = TcpListener::bind("127.0.0.1:0")?;
    /// let port = listener.local_addr()?.port();
    /// let lp = ringloop::EventLoop::new()?;
    /// let (transport, _protocol) = lp.run_until_complete(lp.create_connection(
    ///     || Hello,
    ///     Some("127.0.0.1"),
    ///     Some(port),
    ///     Default::default(),
    /// ))??;
    /// let (mut peer, _) = listener.accept()?;
    /// lp.run_until_complete(lp.sleep(std::time::Duration::from_millis(10))?)?;
    /// let mut got = String::new();
    /// std::io::Read::read_to_string(&mut peer, &mut got)?;
    /// assert_eq!(got, "hello");
    /// assert!(transport.is_closing());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_connection<P, F>(
        &self,
        factory: F,
        host: Option<&str>,
        port: Option<u16>,
        options: ConnectOptions,
    ) -> impl Future<Output = io::Result<(Transport, Rc<RefCell<P>>)>> + 'static
    where
        P: Protocol,
        F: FnOnce() -> P + 'static,
    {
        let lp = self.downgrade();
        let host = host.map(str::to_owned);
        async move {
            let ConnectOptions {
                family,
                proto,
                flags,
                local_addr,
                sock,
            } = options;
            if let Some(sock) = sock {
                if host.is_some() || port.is_some() {
                    return Err(invalid(
                        "host/port and sock can not be specified at the same time",
                    ));
                }
                check_stream(&sock)?;
                let lp = upgrade(&lp)?;
                return attach(&lp, sock, factory()).await;
            }
            if host.is_none() && port.is_none() {
                return Err(invalid(
                    "host and port was not specified and no sock specified",
                ));
            }
            let hints = AddrInfoHints {
                family,
                socktype: libc::SOCK_STREAM,
                protocol: proto,
                flags,
            };
            let infos = resolve(&upgrade(&lp)?, host.as_deref(), port, hints).await?;
            let local = match &local_addr {
                Some((h, p)) => resolve(&upgrade(&lp)?, Some(h), Some(*p), hints).await?,
                None => Vec::new(),
            };
            let mut errors = Vec::new();
            for info in &infos {
                let loop_ = upgrade(&lp)?;
                match connect_one(&loop_, info, &local).await {
                    Ok(fd) => return attach(&loop_, fd, factory()).await,
                    // With several addresses, each error says which one
                    // failed (asyncio's "Connect call failed (addr)"); a
                    // single error keeps its OS error code.
                    Err(e) if infos.len() > 1 => errors.push(io::Error::new(
                        e.kind(),
                        format!("connect to {} failed: {e}", info.addr),
                    )),
                    Err(e) => errors.push(e),
                }
            }
            Err(combine_errors(errors))
        }
    }

    /// Opens a Unix stream connection (`loop.create_unix_connection`) to
    /// `path` (a leading NUL byte names an abstract socket), or uses
    /// `sock` when `path` is `None`.
    pub fn create_unix_connection<P, F>(
        &self,
        factory: F,
        path: Option<&Path>,
        sock: Option<OwnedFd>,
    ) -> impl Future<Output = io::Result<(Transport, Rc<RefCell<P>>)>> + 'static
    where
        P: Protocol,
        F: FnOnce() -> P + 'static,
    {
        let lp = self.downgrade();
        let path: Option<PathBuf> = path.map(Path::to_owned);
        async move {
            let lp = upgrade(&lp)?;
            let fd = match (path, sock) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        "path and sock can not be specified at the same time",
                    ))
                }
                (None, None) => return Err(invalid("no path and sock were specified")),
                (None, Some(sock)) => {
                    check_stream(&sock)?;
                    let d = socket2::SockRef::from(&sock).domain()?;
                    if d != Domain::UNIX {
                        return Err(invalid("A UNIX Domain Stream Socket was expected"));
                    }
                    sock
                }
                (Some(path), None) => {
                    let addr = SockAddr::unix(&path)?;
                    let fd = OwnedFd::from(new_socket(libc::AF_UNIX, Type::STREAM, 0)?);
                    Op::submit(&lp.driver_ref(), Connect::new(fd.as_raw_fd(), addr))?.await?;
                    fd
                }
            };
            attach(&lp, fd, factory()).await
        }
    }

    /// Wraps a socket accepted elsewhere in a transport
    /// (`loop.connect_accepted_socket`).
    pub fn connect_accepted_socket<P, F>(
        &self,
        factory: F,
        sock: impl Into<OwnedFd>,
    ) -> impl Future<Output = io::Result<(Transport, Rc<RefCell<P>>)>> + 'static
    where
        P: Protocol,
        F: FnOnce() -> P + 'static,
    {
        let lp = self.downgrade();
        let sock: OwnedFd = sock.into();
        async move {
            check_stream(&sock)?;
            let lp = upgrade(&lp)?;
            attach(&lp, sock, factory()).await
        }
    }
}

/// The address family of an IP socket address.
pub(crate) fn family_of(addr: &SocketAddr) -> i32 {
    match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    }
}

#[cfg(test)]
mod tests {
    use super::combine_errors;
    use std::io::{Error, ErrorKind};

    #[test]
    fn one_error_is_returned_as_is() {
        let e = combine_errors(vec![Error::from_raw_os_error(libc::ECONNREFUSED)]);
        assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED));
    }

    #[test]
    fn identical_errors_give_the_first() {
        let e = combine_errors(vec![
            Error::from_raw_os_error(libc::ECONNREFUSED),
            Error::from_raw_os_error(libc::ECONNREFUSED),
        ]);
        assert_eq!(e.raw_os_error(), Some(libc::ECONNREFUSED));
    }

    #[test]
    fn different_errors_are_listed_in_order() {
        let e = combine_errors(vec![
            Error::new(
                ErrorKind::ConnectionRefused,
                "connect to 127.0.0.1:1 failed",
            ),
            Error::new(ErrorKind::ConnectionRefused, "connect to [::1]:1 failed"),
        ]);
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
        assert_eq!(
            e.to_string(),
            "Multiple exceptions: connect to 127.0.0.1:1 failed, connect to [::1]:1 failed"
        );
        let mixed = combine_errors(vec![
            Error::new(ErrorKind::ConnectionRefused, "a"),
            Error::new(ErrorKind::TimedOut, "b"),
        ]);
        assert_eq!(mixed.kind(), ErrorKind::Other);
        assert_eq!(mixed.to_string(), "Multiple exceptions: a, b");
    }
}
