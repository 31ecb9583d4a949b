//! The datagram transport (UDP and Unix datagram sockets): asyncio's
//! `_SelectorDatagramTransport`, on completions.
//!
//! One internal task (the *pump*) per endpoint keeps one receive
//! (`RECVMSG`) in flight and delivers each datagram to the protocol, and
//! sends what `sendto` queued: up to [`SEND_WINDOW`] datagrams at once,
//! one `SENDMSG` each, linked on io_uring so that they leave in order.
//!
//! Errors follow asyncio: a failed receive or send goes to the
//! protocol's `error_received` and the endpoint stays open (a failed send
//! drops that datagram only); a panicking protocol method is reported to
//! the exception handler and closes the endpoint.
//!
//! Protocol methods are called with no borrow of the transport's state
//! held, so a protocol may call `sendto` or `close` from any of them.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use socket2::SockAddr;

use super::write_buf::Limits;
use super::{ExtraInfo, Fd};
use crate::driver::op::poll::PollOnce;
use crate::driver::op::recvmsg::RecvMsg;
use crate::driver::op::sendto::SendTo;
use crate::driver::op::{DriverRef, Op};
use crate::error::{Error, Result};
use crate::event_loop::{EventLoop, LoopInner};
use crate::exception::ErrorContext;
use crate::protocol::DatagramProtocol;

/// The largest datagram delivered whole (asyncio's `max_size`, 256 KiB);
/// longer ones are truncated, as `recvfrom(max_size)` truncates them.
const MAX_DATAGRAM: usize = 256 * 1024;

/// Sends in flight at once, per endpoint.
const SEND_WINDOW: usize = 32;

/// Datagrams delivered plus sends completed in one run of the pump
/// before it yields to the loop (on epoll a busy socket would otherwise
/// keep the pump going).
const PUMP_BUDGET: usize = 64;

/// After this many sends to a lost endpoint, each further one logs a
/// warning (asyncio's `LOG_THRESHOLD_FOR_CONNLOST_WRITES`).
const CONNLOST_WARN_AFTER: u32 = 5;

/// A datagram endpoint: asyncio's `DatagramTransport`.
///
/// Created by [`EventLoop::create_datagram_endpoint`] and handed to the
/// protocol's `connection_made`. It is a cheap handle: cloning gives
/// another handle to the same endpoint.
///
/// Sending never blocks: [`sendto`](Self::sendto) queues the datagram and
/// the loop sends it. Each received datagram goes to the protocol's
/// `datagram_received` with its sender's address.
#[derive(Clone)]
pub struct DatagramTransport {
    inner: Rc<DatagramInner>,
}

/// Unsent datagrams and the endpoint's life cycle.
struct State {
    /// Datagrams not yet handed to a send, oldest first, with their
    /// destination (`None`: the connected peer).
    queue: VecDeque<(Bytes, Option<SockAddr>)>,
    /// Payload bytes queued or in flight (asyncio's `_buffer_size`).
    size: usize,
    limits: Limits,
    /// `close()` or a fatal error started the end.
    closing: bool,
    /// asyncio's `_conn_lost`: nonzero once `connection_lost` is
    /// scheduled; counts sends made after.
    conn_lost: u32,
    /// `pause_writing()` was called and not yet matched by resume.
    protocol_paused: bool,
    /// `pause_writing()` is scheduled (the protocol was busy when the
    /// buffer rose) and has not reached the protocol yet.
    pause_deferred: bool,
}

/// A received result the protocol could not hear yet (it was borrowed
/// elsewhere).
enum Held {
    Datagram(Vec<u8>, usize, SockAddr),
    Error(io::Error),
}

/// One send in flight and its payload length.
struct InFlight {
    op: Op<SendTo>,
    len: usize,
    dest: Option<SockAddr>,
}

struct DatagramInner {
    lp: Weak<LoopInner>,
    driver: DriverRef,
    /// The socket; taken (closed) after `connection_lost`.
    fd: RefCell<Option<OwnedFd>>,
    raw_fd: RawFd,
    /// asyncio's `_address`: the remote address (`remote_addr`, or the
    /// peer of a connected `sock`); `sendto` accepts no other.
    address: Option<SockAddr>,
    /// The socket is connected: datagrams go without a destination.
    connected: bool,
    /// The connected peer (`getpeername`), looked up at creation.
    peername: Option<SockAddr>,
    sockname: OnceCell<Option<SockAddr>>,
    state: RefCell<State>,
    protocol: RefCell<Option<Rc<RefCell<dyn DatagramProtocol>>>>,
    protocol_name: &'static str,
    recv: RefCell<Option<Op<RecvMsg>>>,
    /// The receive buffer, between receives.
    spare: RefCell<Option<Vec<u8>>>,
    held: RefCell<Option<Held>>,
    sends: RefCell<VecDeque<InFlight>>,
    /// io_uring: a send found no room (`EAGAIN`); no new send starts
    /// before this wait for `POLLOUT` ends.
    writable: RefCell<Option<Op<PollOnce>>>,
    /// How many datagrams at the queue's head came back from the batch
    /// in flight (cancelled or refused for room), in send order.
    requeued: Cell<usize>,
    /// The pump task's waker (set at its first run).
    pump_waker: RefCell<Option<Waker>>,
    /// The pump is running: a `sendto` need not wake it.
    in_pump: Cell<bool>,
    /// `connection_lost` ran (or the loop closed): the pump ends.
    finished: Cell<bool>,
}

/// True for errors a transport ends on without a report (asyncio's
/// `_FATAL_ERROR_IGNORE`).
fn is_ignored_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EPIPE | libc::ESHUTDOWN | libc::ECONNRESET | libc::ECONNABORTED)
    )
}

fn clone_io_error(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

/// Address equality as asyncio compares address tuples: IP addresses by
/// value, Unix addresses by path or abstract name.
fn same_address(a: &SockAddr, b: &SockAddr) -> bool {
    match (a.as_socket(), b.as_socket()) {
        (Some(x), Some(y)) => return x == y,
        (None, None) => {}
        _ => return false,
    }
    if a.is_unix() && b.is_unix() {
        if let (Some(x), Some(y)) = (a.as_pathname(), b.as_pathname()) {
            return x == y;
        }
        if let (Some(x), Some(y)) = (a.as_abstract_namespace(), b.as_abstract_namespace()) {
            return x == y;
        }
        return a.is_unnamed() && b.is_unnamed();
    }
    a == b
}

impl DatagramTransport {
    /// Builds the endpoint on `sock` (made non-blocking), schedules
    /// `connection_made`, then starts the pump, which starts receiving:
    /// asyncio's order. `address` is the remote address `sendto`
    /// defaults to (`remote_addr`); a connected socket's peer is used
    /// when it is `None`.
    #[track_caller]
    pub(crate) fn start<P: DatagramProtocol>(
        lp: &EventLoop,
        sock: OwnedFd,
        protocol: Rc<RefCell<P>>,
        address: Option<SockAddr>,
    ) -> Result<DatagramTransport> {
        let raw_fd = sock.as_raw_fd();
        let sref = socket2::SockRef::from(&sock);
        sref.set_nonblocking(true)?;
        let peername = sref.peer_addr().ok();
        let connected = peername.is_some();
        let address = address.or_else(|| peername.clone());
        let protocol: Rc<RefCell<dyn DatagramProtocol>> = protocol;
        let inner = Rc::new(DatagramInner {
            lp: lp.downgrade(),
            driver: lp.driver_ref(),
            fd: RefCell::new(Some(sock)),
            raw_fd,
            address,
            connected,
            peername,
            sockname: OnceCell::new(),
            state: RefCell::new(State {
                queue: VecDeque::new(),
                size: 0,
                limits: Limits::default(),
                closing: false,
                conn_lost: 0,
                protocol_paused: false,
                pause_deferred: false,
            }),
            protocol: RefCell::new(Some(protocol)),
            protocol_name: std::any::type_name::<P>(),
            recv: RefCell::new(None),
            spare: RefCell::new(None),
            held: RefCell::new(None),
            sends: RefCell::new(VecDeque::new()),
            writable: RefCell::new(None),
            requeued: Cell::new(0),
            pump_waker: RefCell::new(None),
            in_pump: Cell::new(false),
            finished: Cell::new(false),
        });
        let transport = DatagramTransport {
            inner: inner.clone(),
        };
        let made = transport.clone();
        let starting = inner.clone();
        let scheduled = lp.inner().call_soon_boxed(
            Box::new(move || {
                starting.call_protocol("connection_made", |p| p.connection_made(made));
            }),
            Location::caller(),
        );
        if let Err(e) = scheduled {
            inner.teardown();
            return Err(e);
        }
        if let Err(e) = crate::task::spawn_internal(lp, Pump(inner.clone())) {
            inner.teardown();
            return Err(e);
        }
        Ok(transport)
    }

    /// Queues a copy of `data` as one datagram to `addr`
    /// (`transport.sendto`). Never blocks. An empty `data` sends an empty
    /// datagram (as asyncio does since 3.13; 3.7 ignored it).
    ///
    /// `addr` is the destination: required on an endpoint made without
    /// `remote_addr`; on one made with it (or on a connected `sock`),
    /// `None` or that same address.
    ///
    /// Errors: `InvalidInput` for an address other than the remote
    /// address, or no address on an endpoint that has none. A send the
    /// kernel refuses is not an error here: it goes to the protocol's
    /// `error_received`, and that datagram is dropped. Datagrams sent
    /// after the endpoint is lost are dropped silently, with a warning
    /// logged from the fifth on, as in asyncio.
    pub fn sendto(&self, data: &[u8], addr: Option<SockAddr>) -> Result<()> {
        let dest = self.inner.destination(addr)?;
        self.inner.enqueue(Bytes::copy_from_slice(data), dest);
        Ok(())
    }

    /// [`sendto`](Self::sendto) without copying the payload.
    pub fn sendto_bytes(&self, data: Bytes, addr: Option<SockAddr>) -> Result<()> {
        let dest = self.inner.destination(addr)?;
        self.inner.enqueue(data, dest);
        Ok(())
    }

    /// Closes the endpoint after the queued datagrams are sent
    /// (`transport.close`): receiving stops now, then the protocol's
    /// `connection_lost(None)` runs once the queue is empty. A second
    /// call does nothing.
    pub fn close(&self) {
        self.inner.close()
    }

    /// Closes the endpoint now, dropping queued datagrams
    /// (`transport.abort`); `connection_lost(None)` follows.
    pub fn abort(&self) {
        self.inner.force_close(None)
    }

    /// True once `close`, `abort` or an error began ending the endpoint.
    pub fn is_closing(&self) -> bool {
        self.inner.state.borrow().closing
    }

    /// True once `connection_lost` has run and the socket is closed.
    pub fn is_closed(&self) -> bool {
        self.inner.finished.get()
    }

    /// Payload bytes queued and not yet accepted by the kernel
    /// (`get_write_buffer_size`).
    pub fn get_write_buffer_size(&self) -> usize {
        self.inner.state.borrow().size
    }

    /// Sets the flow-control limits (`set_write_buffer_limits`): the
    /// protocol's `pause_writing` runs when the queued bytes rise above
    /// `high`, `resume_writing` when they fall to `low` or below. No
    /// `high` means 64 KiB, or four times `low` if only `low` is given; no
    /// `low` means `high / 4`. `high < low` is `InvalidInput`.
    pub fn set_write_buffer_limits(&self, high: Option<usize>, low: Option<usize>) -> Result<()> {
        let limits = Limits::new(high, low)?;
        self.inner.state.borrow_mut().limits = limits;
        self.inner.maybe_pause_protocol();
        Ok(())
    }

    /// `(low, high)`, as asyncio returns them.
    pub fn get_write_buffer_limits(&self) -> (usize, usize) {
        let l = self.inner.state.borrow().limits;
        (l.low, l.high)
    }

    /// asyncio's `get_extra_info(name)`: `"peername"` (the connected
    /// peer; `None` for an unconnected endpoint), `"sockname"` or
    /// `"socket"`; `None` for other names or once the socket is closed.
    pub fn get_extra_info(&self, name: &str) -> Option<ExtraInfo> {
        match name {
            "peername" => self.peername().map(ExtraInfo::Address),
            "sockname" => self.sockname().map(ExtraInfo::Address),
            "socket" => self.inner.fd().map(ExtraInfo::Socket),
            _ => None,
        }
    }

    /// The connected peer's address, if the socket is connected.
    pub fn peername(&self) -> Option<SockAddr> {
        self.inner.peername.clone()
    }

    /// The local address (looked up once, then cached).
    pub fn sockname(&self) -> Option<SockAddr> {
        let fd = self.inner.fd();
        self.inner
            .sockname
            .get_or_init(|| fd.and_then(|fd| socket2::SockRef::from(&Fd(fd)).local_addr().ok()))
            .clone()
    }

    /// The loop this endpoint runs on, while it is open.
    pub fn get_loop(&self) -> Option<EventLoop> {
        self.inner.lp.upgrade().map(EventLoop::from_inner)
    }
}

impl DatagramInner {
    fn loop_(&self) -> Option<EventLoop> {
        self.lp.upgrade().map(EventLoop::from_inner)
    }

    fn fd(&self) -> Option<RawFd> {
        self.fd.borrow().as_ref().map(AsRawFd::as_raw_fd)
    }

    /// asyncio's address rule for `sendto`; the destination to send to
    /// (`None`: the connected peer).
    fn destination(&self, addr: Option<SockAddr>) -> Result<Option<SockAddr>> {
        match &self.address {
            Some(remote) => {
                if let Some(a) = &addr {
                    if !same_address(a, remote) {
                        return Err(Error::InvalidInput(
                            "Invalid address: must be None or the endpoint's remote address",
                        ));
                    }
                }
                Ok((!self.connected).then(|| remote.clone()))
            }
            None => match addr {
                Some(a) => Ok(Some(a)),
                None => Err(Error::InvalidInput(
                    "sendto() needs an address on an endpoint without remote_addr",
                )),
            },
        }
    }

    /// Calls a protocol method with no transport borrow held, catching a
    /// panic (reported, then the endpoint is closed). `None` when the
    /// protocol is gone, borrowed elsewhere, or panicked.
    fn call_protocol<R>(
        self: &Rc<Self>,
        what: &'static str,
        f: impl FnOnce(&mut dyn DatagramProtocol) -> R,
    ) -> Option<R> {
        let protocol = self.protocol.borrow().clone()?;
        let Ok(mut p) = protocol.try_borrow_mut() else {
            return None;
        };
        match catch_unwind(AssertUnwindSafe(|| f(&mut *p))) {
            Ok(r) => Some(r),
            Err(payload) => {
                drop(p);
                let err = Error::from_panic(&*payload);
                let msg = format!("Fatal error: protocol.{what}() call failed.");
                self.fatal_error(io::Error::other(err.clone()), &msg, Some(err));
                None
            }
        }
    }

    /// The protocol is borrowed elsewhere (by the user across an await,
    /// or we are inside one of its methods).
    fn protocol_busy(&self) -> bool {
        self.protocol
            .borrow()
            .as_ref()
            .is_some_and(|p| p.try_borrow_mut().is_err())
    }

    fn wake_pump(&self) {
        if self.in_pump.get() {
            return;
        }
        if let Some(w) = self.pump_waker.borrow().as_ref() {
            w.wake_by_ref();
        }
    }

    /// `sendto` after validation: queue, wake the pump, maybe pause the
    /// protocol.
    fn enqueue(self: &Rc<Self>, data: Bytes, dest: Option<SockAddr>) {
        {
            let mut st = self.state.borrow_mut();
            if st.conn_lost > 0 {
                if st.conn_lost >= CONNLOST_WARN_AFTER {
                    tracing::warn!(target: "ringloop", "socket.send() raised exception.");
                }
                st.conn_lost += 1;
                return;
            }
            st.size += data.len();
            st.queue.push_back((data, dest));
        }
        self.wake_pump();
        self.maybe_pause_protocol();
    }

    fn maybe_pause_protocol(self: &Rc<Self>) {
        {
            let mut st = self.state.borrow_mut();
            if st.size <= st.limits.high || st.protocol_paused {
                return;
            }
            st.protocol_paused = true;
        }
        if self.protocol_busy() {
            // Called from inside a protocol method (a sendto in
            // datagram_received): call pause_writing once it returns.
            // A resume before then cancels it (see maybe_resume_protocol),
            // so the protocol never hears pause after its resume.
            self.state.borrow_mut().pause_deferred = true;
            let me = self.clone();
            if let Some(lp) = self.loop_() {
                let _ = lp.call_soon(move || {
                    let due = std::mem::take(&mut me.state.borrow_mut().pause_deferred);
                    if due {
                        me.call_protocol("pause_writing", |p| p.pause_writing());
                    }
                });
            }
            return;
        }
        self.call_protocol("pause_writing", |p| p.pause_writing());
    }

    fn maybe_resume_protocol(self: &Rc<Self>) {
        let deferred = {
            let mut st = self.state.borrow_mut();
            if !st.protocol_paused || st.size > st.limits.low {
                return;
            }
            st.protocol_paused = false;
            std::mem::take(&mut st.pause_deferred)
        };
        if deferred {
            // The protocol was never told to pause: cancel that instead.
            return;
        }
        self.call_protocol("resume_writing", |p| p.resume_writing());
    }

    /// `close()`: stop receiving; flush, then `connection_lost(None)`.
    fn close(self: &Rc<Self>) {
        let empty = {
            let mut st = self.state.borrow_mut();
            if st.closing {
                return;
            }
            st.closing = true;
            let empty = st.size == 0;
            if empty {
                st.conn_lost += 1;
            }
            empty
        };
        self.stop_receiving();
        if empty {
            self.schedule_connection_lost(None);
        } else {
            self.wake_pump();
        }
    }

    /// `abort()` and fatal errors (asyncio's `_force_close`): drop the
    /// queue and the sends in flight, then `connection_lost`.
    fn force_close(self: &Rc<Self>, error: Option<io::Error>) {
        let (queue, sends) = {
            let mut st = self.state.borrow_mut();
            if st.conn_lost > 0 {
                return;
            }
            st.closing = true;
            st.conn_lost += 1;
            st.size = 0;
            let queue = std::mem::take(&mut st.queue);
            (queue, std::mem::take(&mut *self.sends.borrow_mut()))
        };
        let writable = self.writable.borrow_mut().take();
        // Dropped outside the borrows: dropping an op talks to the driver.
        drop((queue, sends, writable));
        self.stop_receiving();
        self.schedule_connection_lost(error);
    }

    /// Cancels the receive in flight and drops anything held.
    fn stop_receiving(&self) {
        let recv = self.recv.borrow_mut().take();
        drop(recv);
        let held = self.held.borrow_mut().take();
        drop(held);
    }

    fn schedule_connection_lost(self: &Rc<Self>, error: Option<io::Error>) {
        let me = self.clone();
        let scheduled = match self.lp.upgrade() {
            Some(lp) => lp
                .call_soon_boxed(
                    Box::new(move || me.call_connection_lost(error)),
                    Location::caller(),
                )
                .is_ok(),
            None => false,
        };
        if !scheduled {
            self.teardown();
        }
    }

    /// asyncio's `_call_connection_lost`: the protocol hears it once, then
    /// the socket closes.
    fn call_connection_lost(self: &Rc<Self>, error: Option<io::Error>) {
        if self.finished.get() {
            return;
        }
        self.stop_io();
        let protocol = self.protocol.borrow_mut().take();
        if let Some(protocol) = protocol {
            // Re-installed only for the duration of the call, so that a
            // panic is reported with the usual path.
            *self.protocol.borrow_mut() = Some(protocol);
            self.call_protocol("connection_lost", |p| p.connection_lost(error));
            self.protocol.borrow_mut().take();
        }
        self.teardown();
    }

    /// Drops the operations in flight (cancelling them in the kernel).
    fn stop_io(&self) {
        self.stop_receiving();
        let sends = std::mem::take(&mut *self.sends.borrow_mut());
        drop(sends);
        let writable = self.writable.borrow_mut().take();
        drop(writable);
    }

    /// Releases everything: operations, protocol, buffers, socket.
    /// Idempotent; no protocol method is called.
    fn teardown(&self) {
        if self.finished.replace(true) {
            return;
        }
        {
            // Sends from now on are dropped (and counted), as after a
            // connection_lost.
            let mut st = self.state.borrow_mut();
            st.closing = true;
            st.conn_lost = st.conn_lost.max(1);
        }
        self.stop_io();
        let protocol = self.protocol.borrow_mut().take();
        drop(protocol);
        let queue = std::mem::take(&mut self.state.borrow_mut().queue);
        drop(queue);
        let spare = self.spare.borrow_mut().take();
        drop(spare);
        let fd = self.fd.borrow_mut().take();
        drop(fd);
        if let Some(w) = self.pump_waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// asyncio's `_fatal_error`: report (unless it is a reset or broken
    /// pipe), then force-close with the error.
    fn fatal_error(self: &Rc<Self>, err: io::Error, message: &str, report_as: Option<Error>) {
        if !is_ignored_error(&err) || report_as.is_some() {
            if let Some(lp) = self.loop_() {
                let error = report_as.unwrap_or_else(|| Error::Io(clone_io_error(&err).into()));
                let mut ctx = ErrorContext::new(message).with_error(error);
                ctx.socket = Some(self.raw_fd);
                ctx.protocol = Some(self.protocol_name.to_string());
                lp.call_exception_handler(&ctx);
            }
        } else {
            tracing::debug!(target: "ringloop", error = %err, "{message}");
        }
        self.force_close(Some(err));
    }

    /// One run of the pump: deliver, react, send, until nothing moves or
    /// the budget is spent.
    fn pump(self: &Rc<Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.finished.get() {
            return Poll::Ready(());
        }
        {
            let mut w = self.pump_waker.borrow_mut();
            match &*w {
                Some(old) if old.will_wake(cx.waker()) => {}
                _ => *w = Some(cx.waker().clone()),
            }
        }
        self.in_pump.set(true);
        let mut budget = PUMP_BUDGET;
        loop {
            let read = self.drive_read(cx, &mut budget);
            if self.finished.get() {
                break;
            }
            let wrote = self.drive_write(cx, &mut budget);
            if self.finished.get() || !(read || wrote) {
                break;
            }
            if budget == 0 {
                // Let the rest of the loop run; come back next iteration.
                cx.waker().wake_by_ref();
                break;
            }
        }
        self.in_pump.set(false);
        if self.finished.get() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Polls the receive in flight (starting one if needed) into `held`;
    /// true if a result is held.
    fn collect(self: &Rc<Self>, cx: &mut Context<'_>, start: bool) -> bool {
        if self.held.borrow().is_some() {
            return true;
        }
        if self.recv.borrow().is_none() {
            if !start {
                return false;
            }
            let buf = self
                .spare
                .borrow_mut()
                .take()
                .unwrap_or_else(|| vec![0; MAX_DATAGRAM]);
            match Op::try_submit(&self.driver, RecvMsg::new(self.raw_fd, buf)) {
                Ok(op) => *self.recv.borrow_mut() = Some(op),
                Err((e, op)) => {
                    *self.spare.borrow_mut() = Some(op.into_buf());
                    self.fatal_error(e, "Fatal read error on datagram transport", None);
                    return false;
                }
            }
        }
        let polled = {
            let mut recv = self.recv.borrow_mut();
            let Some(op) = recv.as_mut() else {
                return false;
            };
            match Pin::new(op).poll(cx) {
                Poll::Pending => return false,
                Poll::Ready(r) => {
                    *recv = None;
                    r
                }
            }
        };
        let held = match polled {
            (Ok((n, addr)), buf) => Held::Datagram(buf, n, addr),
            (Err(e), buf) => {
                *self.spare.borrow_mut() = Some(buf);
                Held::Error(e)
            }
        };
        *self.held.borrow_mut() = Some(held);
        true
    }

    /// Delivers one received datagram (or receive error); true if
    /// anything happened.
    fn drive_read(self: &Rc<Self>, cx: &mut Context<'_>, budget: &mut usize) -> bool {
        if self.state.borrow().closing {
            return false;
        }
        if self.protocol_busy() {
            // The user holds the protocol across an await: keep the
            // receive going, hold its result, and retry.
            self.collect(cx, false);
            cx.waker().wake_by_ref();
            return false;
        }
        if !self.collect(cx, true) {
            return false;
        }
        let held = self.held.borrow_mut().take();
        match held {
            None => false,
            Some(Held::Datagram(buf, n, addr)) => {
                *budget = budget.saturating_sub(1);
                self.call_protocol("datagram_received", |p| {
                    p.datagram_received(&buf[..n], addr)
                });
                if !self.finished.get() {
                    *self.spare.borrow_mut() = Some(buf);
                }
                true
            }
            Some(Held::Error(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                // Spurious: receive again.
                true
            }
            Some(Held::Error(e)) => {
                *budget = budget.saturating_sub(1);
                self.call_protocol("error_received", |p| p.error_received(e));
                true
            }
        }
    }

    /// Completes sends in order and starts new ones; true if anything
    /// happened.
    fn drive_write(self: &Rc<Self>, cx: &mut Context<'_>, budget: &mut usize) -> bool {
        let mut progressed = false;
        loop {
            let mut moved = false;
            // Sends cancelled before they went (an earlier send in their
            // link failed), in order: they go back to the queue's head.
            let mut requeue: Vec<(Bytes, Option<SockAddr>)> = Vec::new();
            // Completions, oldest first. Only the oldest is polled: on
            // epoll a later send is not even attempted before the earlier
            // one went, so order is kept; on io_uring the link does it.
            while *budget > 0 {
                let done = {
                    let mut sends = self.sends.borrow_mut();
                    let Some(front) = sends.front_mut() else {
                        break;
                    };
                    match Pin::new(&mut front.op).poll(cx) {
                        Poll::Pending => break,
                        Poll::Ready(r) => {
                            let f = sends.pop_front().expect("front exists");
                            (r, f.len, f.dest)
                        }
                    }
                };
                moved = true;
                *budget -= 1;
                let ((result, data), len, dest) = done;
                match result {
                    Ok(_) => self.state.borrow_mut().size -= len,
                    Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                        // io_uring, no room: send it again, in order, once
                        // the socket is writable.
                        requeue.push((data, dest));
                        if !self.await_writable() {
                            return true;
                        }
                    }
                    Err(e) if matches!(e.raw_os_error(), Some(libc::ECANCELED | libc::EINTR)) => {
                        // Cancelled by an earlier send's failure (broken
                        // link) or interrupted: send it again, in order.
                        requeue.push((data, dest));
                    }
                    Err(e) => {
                        // asyncio: the datagram is dropped, the protocol
                        // hears the error, the endpoint goes on.
                        self.state.borrow_mut().size -= len;
                        self.call_protocol("error_received", |p| p.error_received(e));
                        if self.finished.get() {
                            return true;
                        }
                    }
                }
            }
            if !requeue.is_empty() {
                // After those of the same batch requeued by an earlier
                // run, before every datagram never taken.
                let mut st = self.state.borrow_mut();
                let mut at = self.requeued.get().min(st.queue.len());
                for item in requeue {
                    st.queue.insert(at, item);
                    at += 1;
                }
                self.requeued.set(at);
            }
            if moved {
                self.maybe_resume_protocol();
                if self.finished.get() {
                    return true;
                }
            }
            let started = self.start_sends(cx);
            if self.finished.get() {
                return true;
            }
            progressed |= moved || started;
            if !(moved || started) || *budget == 0 {
                break;
            }
        }
        let drained = self.sends.borrow().is_empty() && self.state.borrow().size == 0;
        if drained {
            self.buffer_drained();
        }
        progressed
    }

    /// Hands up to [`SEND_WINDOW`] queued datagrams to new sends, linked
    /// one to the next, once the previous batch has completed (a new
    /// chain is not ordered after one still in flight); true if any
    /// started.
    fn start_sends(self: &Rc<Self>, cx: &mut Context<'_>) -> bool {
        if !self.sends.borrow().is_empty() || !self.writable_now(cx) {
            return false;
        }
        let batch: Vec<(Bytes, Option<SockAddr>)> = {
            let mut st = self.state.borrow_mut();
            let n = SEND_WINDOW.min(st.queue.len());
            // A new batch: nothing of it has come back yet.
            self.requeued.set(0);
            st.queue.drain(..n).collect()
        };
        if batch.is_empty() {
            return false;
        }
        let last = batch.len() - 1;
        let mut failed = None;
        for (i, (data, dest)) in batch.into_iter().enumerate() {
            let len = data.len();
            let mut op = SendTo::new(self.raw_fd, data, dest.clone());
            if i < last {
                op.link_next();
            }
            match Op::try_submit(&self.driver, op) {
                Ok(op) => self
                    .sends
                    .borrow_mut()
                    .push_back(InFlight { op, len, dest }),
                Err((e, _op)) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            self.fatal_error(e, "Fatal write error on datagram transport", None);
        }
        true
    }

    /// Starts waiting for `POLLOUT` (after an `EAGAIN`), unless a wait is
    /// already on; false if the endpoint failed instead.
    fn await_writable(self: &Rc<Self>) -> bool {
        if self.writable.borrow().is_some() {
            return true;
        }
        let op = PollOnce {
            fd: self.raw_fd,
            mask: libc::POLLOUT as u32,
        };
        match Op::try_submit(&self.driver, op) {
            Ok(op) => {
                *self.writable.borrow_mut() = Some(op);
                true
            }
            Err((e, _)) => {
                self.fatal_error(e, "Fatal write error on datagram transport", None);
                false
            }
        }
    }

    /// True unless a wait for `POLLOUT` is still on (polling it).
    fn writable_now(&self, cx: &mut Context<'_>) -> bool {
        let mut w = self.writable.borrow_mut();
        let Some(op) = w.as_mut() else {
            return true;
        };
        match Pin::new(op).poll(cx) {
            Poll::Pending => false,
            Poll::Ready(_) => {
                // Ready, or an error the next send will report.
                *w = None;
                true
            }
        }
    }

    /// Nothing left to send: finish a close.
    fn buffer_drained(self: &Rc<Self>) {
        let finish_close = {
            let mut st = self.state.borrow_mut();
            if st.closing && st.conn_lost == 0 {
                st.conn_lost += 1;
                true
            } else {
                false
            }
        };
        if finish_close {
            self.call_connection_lost(None);
        }
    }
}

/// The pump task's future.
struct Pump(Rc<DatagramInner>);

impl Future for Pump {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.pump(cx)
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        // The loop closed (or the task was cancelled) before the endpoint
        // ended: release the socket and break the transport/protocol
        // cycle. No protocol method runs.
        self.0.teardown();
    }
}

impl fmt::Debug for DatagramTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.inner.state.borrow();
        let mut d = f.debug_struct("DatagramTransport");
        d.field("fd", &self.inner.raw_fd);
        d.field("protocol", &self.inner.protocol_name);
        if self.inner.finished.get() {
            d.field("state", &"closed");
        } else if st.closing {
            d.field("state", &"closing");
        }
        if let Some(a) = &self.inner.address {
            d.field("remote", a);
        }
        d.field("write_buffer", &st.size);
        d.finish()
    }
}
