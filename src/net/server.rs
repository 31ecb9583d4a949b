//! Servers: `create_server`, `create_unix_server` and [`Server`].
//!
//! Each listening socket has an accept loop (an internal task) that takes
//! each accepted connection and attaches a new protocol to it. On io_uring
//! the loop keeps one multishot accept armed (a completion per connection;
//! single-shot where the kernel lacks it); on epoll it calls `accept4`
//! while the listener is ready, up to a batch per step.
//! Accept errors from lack of resources (EMFILE, ENFILE, ENOBUFS, ENOMEM)
//! are reported and pause that socket's accepting for a second instead of
//! spinning.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use socket2::{Domain, SockAddr, Type};

use super::connection::{combine_errors, new_socket, resolve};
use super::resolve::{AddrInfo, AddrInfoHints};
use super::sock::closed_error;
use crate::driver::op::accept::{self, Accept};
use crate::driver::op::multi::MultiOp;
use crate::driver::op::Op;
use crate::driver::Backend;
use crate::error::Error;
use crate::event_loop::{EventLoop, LoopInner};
use crate::exception::ErrorContext;
use crate::protocol::Protocol;
use crate::sleep::Sleep;
use crate::task::TaskHandle;
use crate::transport::stream::StreamInner;

/// How long accepting pauses after running out of descriptors or memory
/// (asyncio's `ACCEPT_RETRY_DELAY`).
const ACCEPT_RETRY_DELAY: Duration = Duration::from_secs(1);
/// Accepts per accept-loop step before yielding to other work.
const ACCEPTS_PER_STEP: usize = 64;

/// Options of [`EventLoop::create_server`] (asyncio's keyword arguments).
pub struct ServerOptions {
    pub(crate) family: i32,
    pub(crate) flags: i32,
    pub(crate) sock: Vec<OwnedFd>,
    pub(crate) backlog: i32,
    pub(crate) reuse_address: bool,
    pub(crate) reuse_port: bool,
    pub(crate) start_serving: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            family: 0,
            flags: libc::AI_PASSIVE,
            sock: Vec::new(),
            backlog: 100,
            reuse_address: true,
            reuse_port: false,
            start_serving: true,
        }
    }
}

impl ServerOptions {
    /// Only this family (`AF_INET`, `AF_INET6`; 0 = any).
    pub fn family(mut self, family: i32) -> Self {
        self.family = family;
        self
    }
    /// `getaddrinfo` flags (default `AI_PASSIVE`).
    pub fn flags(mut self, flags: i32) -> Self {
        self.flags = flags;
        self
    }
    /// Serves on an existing bound socket instead of creating sockets
    /// (`sock=`); may be given several times.
    pub fn sock(mut self, sock: impl Into<OwnedFd>) -> Self {
        self.sock.push(sock.into());
        self
    }
    /// The `listen` backlog (default 100).
    pub fn backlog(mut self, backlog: i32) -> Self {
        self.backlog = backlog;
        self
    }
    /// `SO_REUSEADDR` (default on).
    pub fn reuse_address(mut self, on: bool) -> Self {
        self.reuse_address = on;
        self
    }
    /// `SO_REUSEPORT` (default off).
    pub fn reuse_port(mut self, on: bool) -> Self {
        self.reuse_port = on;
        self
    }
    /// Start accepting at once (default); otherwise call
    /// [`Server::start_serving`] or [`Server::serve_forever`].
    pub fn start_serving(mut self, on: bool) -> Self {
        self.start_serving = on;
        self
    }
}

/// The accept a listener has armed.
enum AcceptOp {
    /// One connection per submission (epoll; old kernels).
    Single(Op<Accept>),
    /// One submission, a completion per connection (io_uring 5.19+).
    Multi(MultiOp),
}

impl AcceptOp {
    fn arm(lp: &EventLoop, l: &Listener) -> io::Result<AcceptOp> {
        let driver = lp.driver_ref();
        if l.multishot.get() {
            MultiOp::submit(
                &driver,
                l.raw,
                accept::multishot(l.raw),
                Box::new(accept::multishot_release),
                None,
            )
            .map(AcceptOp::Multi)
        } else {
            Op::submit(&driver, Accept::nonblocking(l.raw)).map(AcceptOp::Single)
        }
    }

    /// The next accepted connection, and whether this accept is over (a
    /// new one must be armed).
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<(io::Result<OwnedFd>, bool)> {
        match self {
            AcceptOp::Single(op) => Pin::new(op).poll(cx).map(|r| (r.map(|(fd, _)| fd), true)),
            AcceptOp::Multi(op) => op
                .poll_next(cx)
                .map(|c| (accept::multishot_result(c), !c.more())),
        }
    }
}

/// Attaches a new protocol to an accepted socket.
type Attach = Box<dyn Fn(&EventLoop, OwnedFd, Option<Box<dyn FnOnce()>>) -> crate::Result<()>>;

struct Listener {
    fd: RefCell<Option<OwnedFd>>,
    raw: RawFd,
    accept: RefCell<Option<AcceptOp>>,
    /// Arm multishot accepts (io_uring, until the kernel refuses one).
    multishot: Cell<bool>,
    backoff: RefCell<Option<Sleep>>,
    task: RefCell<Option<TaskHandle>>,
    /// Handed in by the caller (`sock`): others may hold the same
    /// socket (a duplicate, a forked worker), so closing only closes our
    /// descriptor, as asyncio's `sock.close()`.
    given: bool,
}

struct ServerInner {
    lp: Weak<LoopInner>,
    listeners: Vec<Listener>,
    attach: Attach,
    backlog: i32,
    serving: Cell<bool>,
    closed: Cell<bool>,
    active: Cell<usize>,
    waiters: RefCell<Vec<Waker>>,
    serve_forever: Cell<bool>,
    serve_forever_waker: RefCell<Option<Waker>>,
}

/// A listening server (asyncio's `Server`): a cheap, clonable handle.
///
/// Closing it stops accepting and closes the listening sockets; open
/// connections stay open. [`wait_closed`](Server::wait_closed) waits for
/// them too.
#[derive(Clone)]
pub struct Server {
    inner: Rc<ServerInner>,
}

impl ServerInner {
    fn wake_waiters(&self) {
        if self.closed.get() && self.active.get() == 0 {
            for w in self.waiters.borrow_mut().drain(..) {
                w.wake();
            }
        }
    }

    /// Counts a connection as active until the returned hook is called
    /// or dropped uncalled (a transport that failed to start, a protocol
    /// factory that panicked), so `wait_closed` never waits for a
    /// connection that does not exist.
    fn detach_hook(self: &Rc<Self>) -> Box<dyn FnOnce()> {
        self.active.set(self.active.get() + 1);
        let released = Released(self.clone());
        Box::new(move || drop(released))
    }

    fn report(&self, message: &str, e: io::Error, fd: RawFd) {
        if let Some(lp) = self.lp.upgrade().map(EventLoop::from_inner) {
            let ctx = ErrorContext::new(message)
                .with_error(Error::Io(e.into()))
                .with_socket(fd);
            lp.call_exception_handler(&ctx);
        }
    }

    fn poll_accept(self: &Rc<Self>, idx: usize, cx: &mut Context<'_>) -> Poll<()> {
        let Some(lp) = self.lp.upgrade().map(EventLoop::from_inner) else {
            return Poll::Ready(());
        };
        let l = &self.listeners[idx];
        for _ in 0..ACCEPTS_PER_STEP {
            if self.closed.get() || !self.serving.get() {
                return Poll::Ready(());
            }
            {
                let mut backoff = l.backoff.borrow_mut();
                if let Some(sleep) = backoff.as_mut() {
                    match Pin::new(sleep).poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(_) => *backoff = None,
                    }
                }
            }
            let polled = {
                let mut slot = l.accept.borrow_mut();
                if slot.is_none() {
                    match AcceptOp::arm(&lp, l) {
                        Ok(op) => *slot = Some(op),
                        Err(e) => {
                            drop(slot);
                            self.report("socket.accept() failed", e, l.raw);
                            return Poll::Ready(());
                        }
                    }
                }
                let Some(op) = slot.as_mut() else {
                    return Poll::Ready(());
                };
                match op.poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready((r, ended)) => {
                        if ended {
                            if matches!(op, AcceptOp::Multi(_))
                                && r.as_ref().err().and_then(io::Error::raw_os_error)
                                    == Some(libc::EINVAL)
                            {
                                // A kernel without multishot accept
                                // (before 5.19): single-shot from now on.
                                l.multishot.set(false);
                                *slot = None;
                                continue;
                            }
                            *slot = None;
                        }
                        r
                    }
                }
            };
            match polled {
                Ok(fd) => {
                    let hook = self.detach_hook();
                    if let Err(e) = (self.attach)(&lp, fd, Some(hook)) {
                        let ctx = ErrorContext::new(
                            "Error on transport creation for incoming connection",
                        )
                        .with_error(e);
                        lp.call_exception_handler(&ctx);
                    }
                }
                Err(e) => match e.raw_os_error() {
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
                        self.report("socket.accept() out of system resource", e, l.raw);
                        match lp.sleep(ACCEPT_RETRY_DELAY) {
                            Ok(s) => *l.backoff.borrow_mut() = Some(s),
                            Err(_) => return Poll::Ready(()),
                        }
                    }
                    Some(
                        libc::EAGAIN
                        | libc::EINTR
                        | libc::ECONNABORTED
                        | libc::EPROTO
                        | libc::ECANCELED,
                    ) => {}
                    _ => self.report("Error accepting a connection", e, l.raw),
                },
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn start_serving(self: &Rc<Self>) -> io::Result<()> {
        if self.closed.get() {
            return Err(io::Error::other(Error::InvalidState("server is closed")));
        }
        if self.serving.replace(true) {
            return Ok(());
        }
        let lp = self
            .lp
            .upgrade()
            .map(EventLoop::from_inner)
            .ok_or_else(closed_error)?;
        for (idx, l) in self.listeners.iter().enumerate() {
            if let Some(fd) = l.fd.borrow().as_ref() {
                socket2::SockRef::from(fd).listen(self.backlog)?;
            }
            let task = crate::task::spawn_internal(
                &lp,
                AcceptLoop {
                    server: self.clone(),
                    idx,
                },
            )
            .map_err(io::Error::other)?;
            *l.task.borrow_mut() = Some(task);
        }
        Ok(())
    }

    fn close(&self) {
        if self.closed.replace(true) {
            return;
        }
        self.serving.set(false);
        for l in &self.listeners {
            // Cancel the accept before closing its socket.
            let op = l.accept.borrow_mut().take();
            drop(op);
            l.backoff.borrow_mut().take();
            if let Some(t) = l.task.borrow_mut().take() {
                t.cancel();
            }
            if let Some(fd) = l.fd.borrow_mut().take() {
                // An io_uring accept keeps the file open until its
                // cancellation completes (with DEFER_TASKRUN, at the next
                // enter): shutting a socket we made down stops it
                // listening now, so new connections are refused at once.
                // A given socket is not shut down: that would stop it
                // listening for every other holder too.
                if !l.given {
                    // SAFETY: `fd` is our open listening socket, which
                    // nothing outside this server holds.
                    unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) };
                }
                drop(fd);
            }
        }
        if let Some(w) = self.serve_forever_waker.borrow_mut().take() {
            w.wake();
        }
        self.wake_waiters();
    }
}

struct AcceptLoop {
    server: Rc<ServerInner>,
    idx: usize,
}

impl Future for AcceptLoop {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.server.poll_accept(self.idx, cx)
    }
}

impl Server {
    /// Stops accepting and closes the listening sockets
    /// (`Server.close`). Connections already accepted stay open. A
    /// running `serve_forever` returns.
    pub fn close(&self) {
        self.inner.close()
    }

    /// The loop the server runs on, while it is open.
    pub fn get_loop(&self) -> Option<EventLoop> {
        self.inner.lp.upgrade().map(EventLoop::from_inner)
    }

    /// Starts accepting, if not already (`Server.start_serving`).
    /// Errors: the server is closed.
    pub fn start_serving(&self) -> io::Result<()> {
        self.inner.start_serving()
    }

    /// True while accepting connections.
    pub fn is_serving(&self) -> bool {
        self.inner.serving.get()
    }

    /// The listening sockets' descriptors (empty once closed). The server
    /// owns them.
    pub fn sockets(&self) -> Vec<RawFd> {
        self.inner
            .listeners
            .iter()
            .filter_map(|l| l.fd.borrow().as_ref().map(AsRawFd::as_raw_fd))
            .collect()
    }

    /// The listening sockets' local addresses (empty once closed).
    pub fn addresses(&self) -> Vec<SockAddr> {
        self.inner
            .listeners
            .iter()
            .filter_map(|l| {
                l.fd.borrow()
                    .as_ref()
                    .and_then(|fd| socket2::SockRef::from(fd).local_addr().ok())
            })
            .collect()
    }

    /// Waits until the server is closed and every connection it accepted
    /// has ended (`Server.wait_closed`, with Python 3.12's semantics: the
    /// 3.7 version returned at once after `close()`).
    pub fn wait_closed(&self) -> impl Future<Output = ()> + 'static {
        WaitClosed {
            server: self.inner.clone(),
        }
    }

    /// Starts serving and waits until the server is closed
    /// (`Server.serve_forever`). Dropping (cancelling) the future closes
    /// the server. A second concurrent call fails with `InvalidState`, as
    /// does calling it on a closed server.
    pub fn serve_forever(&self) -> impl Future<Output = crate::Result<()>> + 'static {
        let inner = self.inner.clone();
        let started = if inner.serve_forever.get() {
            Err(Error::InvalidState(
                "server is already being awaited on serve_forever()",
            ))
        } else if inner.closed.get() {
            Err(Error::InvalidState("server is closed"))
        } else {
            inner
                .start_serving()
                .map_err(Error::from)
                .map(|()| inner.serve_forever.set(true))
        };
        ServeForever {
            server: started.as_ref().ok().map(|_| inner),
            error: started.err(),
        }
    }
}

struct WaitClosed {
    server: Rc<ServerInner>,
}

impl Future for WaitClosed {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.server.closed.get() && self.server.active.get() == 0 {
            return Poll::Ready(());
        }
        self.server.waiters.borrow_mut().push(cx.waker().clone());
        Poll::Pending
    }
}

struct ServeForever {
    server: Option<Rc<ServerInner>>,
    error: Option<Error>,
}

impl Future for ServeForever {
    type Output = crate::Result<()>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<crate::Result<()>> {
        if let Some(e) = self.error.take() {
            return Poll::Ready(Err(e));
        }
        let Some(server) = self.server.as_ref() else {
            return Poll::Ready(Ok(()));
        };
        if server.closed.get() {
            server.serve_forever.set(false);
            self.server = None;
            return Poll::Ready(Ok(()));
        }
        *server.serve_forever_waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for ServeForever {
    fn drop(&mut self) {
        // Cancelled while serving: asyncio closes the server.
        if let Some(server) = self.server.take() {
            server.serve_forever.set(false);
            server.close();
        }
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("sockets", &self.sockets())
            .field("serving", &self.is_serving())
            .field("active", &self.inner.active.get())
            .finish()
    }
}

/// One accepted connection's active count: released when dropped.
struct Released(Rc<ServerInner>);

impl Drop for Released {
    fn drop(&mut self) {
        let me = &self.0;
        me.active.set(me.active.get().saturating_sub(1));
        me.wake_waiters();
    }
}

/// What the accept loop does with a connection: the factory's protocol
/// and a transport for it. A factory that panics is an error like a
/// transport that fails to start (reported, the connection closed, the
/// server serving on), as an exception from asyncio's
/// `protocol_factory()` in `_accept_connection2`.
fn make_attach<P, F>(factory: F) -> Attach
where
    P: Protocol,
    F: Fn() -> P + 'static,
{
    Box::new(move |lp, fd, hook| {
        let made = std::panic::catch_unwind(std::panic::AssertUnwindSafe(&factory));
        let protocol = Rc::new(RefCell::new(made.map_err(|p| Error::from_panic(&*p))?));
        StreamInner::start(lp, fd, protocol, hook).map(|_| ())
    })
}

fn bind_error(addr: &SockAddr, e: io::Error) -> io::Error {
    let shown = addr
        .as_socket()
        .map(|a| a.to_string())
        .or_else(|| addr.as_pathname().map(|p| p.display().to_string()))
        .unwrap_or_else(|| "?".into());
    io::Error::new(
        e.kind(),
        format!("error while attempting to bind on address {shown:?}: {e}"),
    )
}

/// A bound socket for `info`; `None` if the system cannot make a socket
/// of that family, type and protocol at all (logged, as asyncio does).
fn listening_socket(info: &AddrInfo, options: &ServerOptions) -> io::Result<Option<OwnedFd>> {
    let sock = match new_socket(info.family, Type::STREAM, info.protocol) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT | libc::ESOCKTNOSUPPORT)
            ) =>
        {
            tracing::warn!(target: "ringloop", family = info.family, error = %e,
                "create_server() failed to create socket.socket");
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    if options.reuse_address {
        sock.set_reuse_address(true)?;
    }
    if options.reuse_port {
        sock.set_reuse_port(true)?;
    }
    if info.family == libc::AF_INET6 {
        // Dual-stack listening is done with separate v4 and v6 sockets.
        sock.set_only_v6(true)?;
    }
    let addr = SockAddr::from(info.addr);
    sock.bind(&addr).map_err(|e| bind_error(&addr, e))?;
    Ok(Some(sock.into()))
}

/// A server on `socks`; `given`: the caller handed them in (`sock`).
fn build(
    lp: &EventLoop,
    socks: Vec<OwnedFd>,
    given: bool,
    attach: Attach,
    backlog: i32,
    start: bool,
) -> io::Result<Server> {
    let listeners = socks
        .into_iter()
        .map(|fd| {
            socket2::SockRef::from(&fd).set_nonblocking(true)?;
            Ok(Listener {
                raw: fd.as_raw_fd(),
                fd: RefCell::new(Some(fd)),
                accept: RefCell::new(None),
                multishot: Cell::new(lp.backend() == Backend::Uring),
                backoff: RefCell::new(None),
                task: RefCell::new(None),
                given,
            })
        })
        .collect::<io::Result<Vec<_>>>()?;
    let server = Server {
        inner: Rc::new(ServerInner {
            lp: lp.downgrade(),
            listeners,
            attach,
            backlog,
            serving: Cell::new(false),
            closed: Cell::new(false),
            active: Cell::new(0),
            waiters: RefCell::new(Vec::new()),
            serve_forever: Cell::new(false),
            serve_forever_waker: RefCell::new(None),
        }),
    };
    if start {
        if let Err(e) = server.inner.start_serving() {
            server.close();
            return Err(e);
        }
    }
    Ok(server)
}

impl EventLoop {
    /// Creates a TCP server (`loop.create_server`) listening on every
    /// address of `hosts` at `port`; a new protocol from `factory` is
    /// attached to each accepted connection.
    ///
    /// `hosts` empty (or `[""]`) means all interfaces, IPv4 and IPv6
    /// (`IPV6_V6ONLY` is set on IPv6 sockets). A failed bind closes every
    /// socket already created. With [`ServerOptions::sock`], those
    /// sockets are served instead and `hosts`/`port` must be empty/`None`.
    ///
    /// # Example
    ///
    /// ```
    /// use ringloop::{BaseProtocol, Protocol, Transport};
    ///
    /// #[derive(Default)]
    /// struct Echo(Option<Transport>);
    /// impl BaseProtocol for Echo {
    ///     type Transport = Transport;
    ///     fn connection_made(&mut self, t: Transport) {
    ///         self.0 = Some(t);
    ///     }
    /// }
    /// impl Protocol for Echo {
    ///     fn data_received(&mut self, data: &[u8]) {
    ///         self.0.as_ref().unwrap().write(data).unwrap();
    ///     }
    /// }
    ///
    /// let lp = ringloop::EventLoop::new()?;
    /// let server = lp.run_until_complete(lp.create_server(
    ///     Echo::default,
    ///     &["127.0.0.1"],
    ///     Some(0),
    ///     Default::default(),
    /// ))??;
    /// let addr = server.addresses()[0].as_socket().unwrap();
    /// let l = lp.clone();
    /// let echoed = lp.run_until_complete(async move {
    ///     let sock = std::net::TcpStream::connect(addr)?;
    ///     sock.set_nonblocking(true)?;
    ///     l.sock_sendall(&sock, &b"ping"[..]).await?;
    ///     l.sock_recv(&sock, 16).await
    /// })??;
    /// assert_eq!(&echoed[..], b"ping");
    /// server.close();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_server<P, F>(
        &self,
        factory: F,
        hosts: &[&str],
        port: Option<u16>,
        options: ServerOptions,
    ) -> impl Future<Output = io::Result<Server>> + 'static
    where
        P: Protocol,
        F: Fn() -> P + 'static,
    {
        let lp = self.downgrade();
        let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
        let attach = make_attach(factory);
        async move {
            let lp = lp
                .upgrade()
                .map(EventLoop::from_inner)
                .ok_or_else(closed_error)?;
            let mut options = options;
            if !options.sock.is_empty() {
                if !hosts.is_empty() || port.is_some() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "host/port and sock can not be specified at the same time",
                    ));
                }
                for s in &options.sock {
                    let ty = socket2::SockRef::from(s).r#type()?;
                    if ty != Type::STREAM {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            "A Stream Socket was expected",
                        ));
                    }
                }
                let socks = std::mem::take(&mut options.sock);
                return build(
                    &lp,
                    socks,
                    true,
                    attach,
                    options.backlog,
                    options.start_serving,
                );
            }
            if hosts.is_empty() && port.is_none() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "Neither host/port nor sock were specified",
                ));
            }
            let hints = AddrInfoHints {
                family: options.family,
                socktype: libc::SOCK_STREAM,
                protocol: 0,
                flags: options.flags,
            };
            let all = hosts.is_empty() || hosts.iter().all(|h| h.is_empty());
            let mut infos: Vec<AddrInfo> = Vec::new();
            if all {
                infos = resolve(&lp, None, port, hints).await?;
            } else {
                for h in hosts.iter().filter(|h| !h.is_empty()) {
                    for info in resolve(&lp, Some(h), port, hints).await? {
                        if !infos.contains(&info) {
                            infos.push(info);
                        }
                    }
                }
            }
            infos.dedup_by(|a, b| a.addr == b.addr);
            let mut socks = Vec::new();
            let mut refused = None;
            for info in &infos {
                match listening_socket(info, &options) {
                    Ok(Some(s)) => socks.push(s),
                    // No socket of that family here (IPv6 disabled):
                    // asyncio skips the address.
                    Ok(None) => refused = Some(info.family),
                    Err(e) => {
                        // `socks` drops here: every socket made so far
                        // is closed.
                        return Err(e);
                    }
                }
            }
            if socks.is_empty() {
                let why = match refused {
                    Some(family) => format!("no socket of family {family} can be made here"),
                    None => "no address to listen on".to_owned(),
                };
                return Err(combine_errors(vec![io::Error::new(
                    io::ErrorKind::NotFound,
                    why,
                )]));
            }
            build(
                &lp,
                socks,
                false,
                attach,
                options.backlog,
                options.start_serving,
            )
        }
    }

    /// Creates a Unix stream server (`loop.create_unix_server`) at `path`
    /// (a leading NUL byte names an abstract socket) or on `options.sock`.
    /// A stale socket file at `path` is removed before binding; any other
    /// kind of file there is an error.
    pub fn create_unix_server<P, F>(
        &self,
        factory: F,
        path: Option<&Path>,
        options: ServerOptions,
    ) -> impl Future<Output = io::Result<Server>> + 'static
    where
        P: Protocol,
        F: Fn() -> P + 'static,
    {
        let lp = self.downgrade();
        let path = path.map(Path::to_owned);
        let attach = make_attach(factory);
        async move {
            let lp = lp
                .upgrade()
                .map(EventLoop::from_inner)
                .ok_or_else(closed_error)?;
            let mut options = options;
            let given = !options.sock.is_empty();
            let sock = match (path, options.sock.pop()) {
                (Some(_), Some(_)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "path and sock can not be specified at the same time",
                    ))
                }
                (None, None) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "path was not specified, and no sock specified",
                    ))
                }
                (None, Some(sock)) => {
                    let r = socket2::SockRef::from(&sock);
                    if r.domain()? != Domain::UNIX || r.r#type()? != Type::STREAM {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            "A UNIX Domain Stream Socket was expected",
                        ));
                    }
                    sock
                }
                (Some(path), None) => {
                    if path.as_os_str().is_empty() {
                        // Binding "" would autobind a random abstract name.
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            "the path of a Unix server is empty",
                        ));
                    }
                    let abstract_name = path.as_os_str().as_encoded_bytes().first() == Some(&0);
                    if !abstract_name {
                        if let Ok(meta) = std::fs::metadata(&path) {
                            if meta.file_type().is_socket() {
                                // As asyncio: reported, and the bind
                                // then says what is wrong.
                                if let Err(e) = std::fs::remove_file(&path) {
                                    tracing::error!(
                                        target: "ringloop",
                                        path = %path.display(),
                                        error = %e,
                                        "Unable to check or remove stale UNIX socket"
                                    );
                                }
                            }
                        }
                    }
                    let sock = new_socket(libc::AF_UNIX, Type::STREAM, 0)?;
                    let addr = SockAddr::unix(&path)?;
                    sock.bind(&addr).map_err(|e| bind_error(&addr, e))?;
                    sock.into()
                }
            };
            build(
                &lp,
                vec![sock],
                given,
                attach,
                options.backlog,
                options.start_serving,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{listening_socket, AddrInfo, ServerOptions};

    #[test]
    fn an_address_of_a_family_the_system_lacks_is_skipped_not_fatal() {
        // As when IPv6 is disabled: getaddrinfo still offers `::`, and
        // asyncio skips the address whose socket() fails.
        let info = AddrInfo {
            family: 4000, // no such address family
            socktype: libc::SOCK_STREAM,
            protocol: 0,
            canonname: None,
            addr: "127.0.0.1:0".parse().unwrap(),
        };
        assert!(matches!(
            listening_socket(&info, &ServerOptions::default()),
            Ok(None)
        ));
    }
}
