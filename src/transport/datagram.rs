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
//!
//! Here: the public [`DatagramTransport`], the state and setup. The pump
//! is in `datagram/pump.rs`, sending and flow control in
//! `datagram/send.rs`, the close, abort and error paths in
//! `datagram/close.rs`.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::panic::Location;
use std::rc::{Rc, Weak};
use std::task::Waker;

use bytes::Bytes;
use socket2::SockAddr;

use super::write_buf::Limits;
use super::write_flow::WriteFlow;
use super::{ExtraInfo, Fd};
use crate::driver::op::poll::PollOnce;
use crate::driver::op::recvmsg::RecvMsg;
use crate::driver::op::sendto::SendTo;
use crate::driver::op::{DriverRef, Op};
use crate::error::{Error, Result};
use crate::event_loop::{EventLoop, LoopInner};
use crate::protocol::DatagramProtocol;
use crate::transport::protocol_slot::{Called, ProtocolSlot};

mod close;
mod pump;
mod send;

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
    /// Where the protocol stands in `pause_writing`/`resume_writing`.
    flow: WriteFlow,
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
    protocol: ProtocolSlot<dyn DatagramProtocol>,
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
                flow: WriteFlow::default(),
            }),
            protocol: ProtocolSlot::new(protocol),
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
        if let Err(e) = crate::task::spawn_internal(lp, pump::Pump(inner.clone())) {
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
        match self.protocol.call(f) {
            Called::Done(r) => Some(r),
            Called::Skipped => None,
            Called::Panicked(err) => {
                let msg = format!("Fatal error: protocol.{what}() call failed.");
                self.fatal_error(io::Error::other(err.clone()), &msg, Some(err));
                None
            }
        }
    }

    /// The protocol is borrowed elsewhere (by the user across an await,
    /// or we are inside one of its methods).
    fn protocol_busy(&self) -> bool {
        self.protocol.busy()
    }

    fn wake_pump(&self) {
        if self.in_pump.get() {
            return;
        }
        if let Some(w) = self.pump_waker.borrow().as_ref() {
            w.wake_by_ref();
        }
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
