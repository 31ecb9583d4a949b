//! The stream transport's state and setup; its machinery is split by
//! concept:
//!
//! - `pump.rs`: the pump, which delivers what arrived to the protocol;
//! - `send.rs`: starting and completing sends, and the flush;
//! - `write.rs`: `write` and `write_eof` (queueing bytes);
//! - `flow.rs`: flow control both ways (`pause_writing`/`resume_writing`,
//!   `pause_reading`/`resume_reading`, waiting for the buffer to drain);
//! - `close.rs`: asyncio's close, abort and error paths;
//! - `sendfile.rs`: what `loop.sendfile` asks of the transport;
//! - `deliver.rs`: the delivery callback the ready queue runs.
//!
//! One internal task (the *pump*) per connection drives the receive and
//! send operations. It runs when an operation completes or when `write`
//! queues bytes with no send in flight; one run delivers what arrived,
//! lets the protocol react, and starts the next send with everything the
//! protocol wrote, so an echo costs one task step per round trip and all
//! connections' operations leave in the loop's next `io_uring_enter`.
//!
//! Protocol methods are called with no borrow of the transport's state
//! held, so a protocol may call back into its transport from any of
//! them.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::panic::Location;
use std::rc::{Rc, Weak};
use std::task::Waker;

use bytes::Bytes;
use socket2::SockAddr;

use super::read::{ReadBuf, Reader};
use super::write_buf::{Limits, WriteBuffer};
use super::write_flow::WriteFlow;
use super::Transport;
use crate::deliver::Deliver;
use crate::driver::op::sendmsg::SendMsg;
use crate::driver::op::{DriverRef, Op};
use crate::event_loop::{EventLoop, LoopInner};
use crate::protocol::Protocol;
use crate::transport::protocol_slot::{Called, ProtocolSlot};

mod close;
mod deliver;
mod flow;
mod pump;
mod send;
mod sendfile;
mod write;

/// After this many writes to a lost connection, each further one logs a
/// warning (asyncio's `LOG_THRESHOLD_FOR_CONNLOST_WRITES`).
const CONNLOST_WARN_AFTER: u32 = 5;

/// Received data at least this large is handed to `data_received` in a
/// way that lets a `write` of it skip the copy (see
/// [`StreamInner::write_slice`]); below it, copying costs less than
/// sharing.
const SHARE_FROM: usize = 2048;

/// A received buffer being handed to `data_received`.
#[derive(Clone)]
enum Delivering {
    /// Shared within the loop (a `write` of it holds the buffer).
    Buf(Rc<ReadBuf>),
    /// Turned into `Bytes`, for a protocol that keeps what it receives.
    Bytes(Bytes),
}

impl std::ops::Deref for Delivering {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Delivering::Buf(b) => b,
            Delivering::Bytes(b) => b,
        }
    }
}

/// Called when a transport is gone, to let its server count it out.
pub(crate) type DetachHook = Box<dyn FnOnce()>;

/// The part of the state a `write` or `close` may touch.
pub(crate) struct State {
    pub(crate) buf: WriteBuffer,
    pub(crate) limits: Limits,
    /// `close()` or a fatal error started the end.
    pub(crate) closing: bool,
    /// asyncio's `_conn_lost`: nonzero once `connection_lost` is
    /// scheduled; counts writes made after.
    pub(crate) conn_lost: u32,
    /// `write_eof()` was called.
    pub(crate) eof_requested: bool,
    /// `shutdown(SHUT_WR)` done.
    pub(crate) eof_sent: bool,
    /// `pause_reading()` in effect.
    pub(crate) read_paused: bool,
    /// The peer's EOF arrived.
    pub(crate) eof_received: bool,
    /// Where the protocol stands in `pause_writing`/`resume_writing`.
    pub(crate) flow: WriteFlow,
    /// A `sendfile` owns the socket: `write` is an error.
    pub(crate) sendfile_active: bool,
}

/// A stream connection (TCP or Unix socket).
///
/// `repr(C)`, in this order: what every round trip reads or writes comes
/// first and together (the flags, the send, the pump's waker, the
/// protocol, then the write state and the reader), what only setup,
/// errors and `get_extra_info` use comes last. At a thousand connections
/// each transport is cold when its data arrives, and every cache line
/// touched is a miss.
#[repr(C)]
pub(crate) struct StreamInner {
    /// `connection_lost` ran (or the loop closed): the pump ends.
    finished: Cell<bool>,
    /// The pump is running: a `write` need not wake it.
    in_pump: Cell<bool>,
    /// Queued on the loop's flush queue (see `flush.rs`).
    flush_queued: Cell<bool>,
    /// Its delivery callback is queued on the ready queue (see
    /// `deliver.rs`).
    delivery_queued: Cell<bool>,
    /// `send` was submitted and not polled yet (on epoll, not even
    /// attempted): someone must poll it.
    send_unpolled: Cell<bool>,
    /// io_uring: a send is submitted with this transport registered for
    /// the flush that follows its completion, instead of polled once (see
    /// `drive_write`).
    wake_at_submit: bool,
    /// The protocol keeps what it receives (the streams reader): a large
    /// delivery becomes `Bytes` first, which it can keep without a copy
    /// (see [`StreamInner::shared_received`]).
    share_received: Cell<bool>,
    pub(crate) raw_fd: RawFd,
    /// The pump task's waker (set at its first run).
    pump_waker: RefCell<Option<Waker>>,
    /// This transport, for its delivery callback (`deliver.rs`), which
    /// the ready queue runs by reference.
    me: Weak<StreamInner>,
    send: RefCell<Option<Op<SendMsg>>>,
    pub(crate) driver: DriverRef,
    protocol: ProtocolSlot<dyn Protocol>,
    /// The received buffer `data_received` is being handed (a large one
    /// only): a `write` of a slice of it is queued without copying.
    delivering: RefCell<Option<Delivering>>,
    /// Woken when the write buffer shrinks to the low-water mark or
    /// drains (`sendfile`). Looked at each time the buffer drains, so
    /// with the hot fields.
    empty_waiters: RefCell<Vec<Waker>>,
    pub(crate) state: RefCell<State>,
    reader: RefCell<Reader>,
    pub(crate) lp: Weak<LoopInner>,
    /// The socket; taken (closed) after `connection_lost`.
    fd: RefCell<Option<OwnedFd>>,
    protocol_name: &'static str,
    detach: RefCell<Option<DetachHook>>,
    pub(crate) peername: std::cell::OnceCell<Option<SockAddr>>,
    pub(crate) sockname: std::cell::OnceCell<Option<SockAddr>>,
}

impl StreamInner {
    /// Builds the transport, schedules `connection_made`, then starts the
    /// pump (which starts reading): asyncio's order.
    #[track_caller]
    pub(crate) fn start<P: Protocol>(
        lp: &EventLoop,
        sock: OwnedFd,
        protocol: Rc<RefCell<P>>,
        detach: Option<DetachHook>,
    ) -> crate::Result<Transport> {
        let raw_fd = sock.as_raw_fd();
        let sref = socket2::SockRef::from(&sock);
        sref.set_nonblocking(true)?;
        let is_tcp = matches!(
            sref.domain(),
            Ok(d) if d == socket2::Domain::IPV4 || d == socket2::Domain::IPV6
        );
        if is_tcp {
            // asyncio sets TCP_NODELAY on every TCP transport (3.6+). A
            // failure (not a TCP socket after all) is harmless.
            let _ = sref.set_tcp_nodelay(true);
        }
        let driver = lp.driver_ref();
        // One epoll registration for the socket's life (epoll backend);
        // released in `teardown`, before the socket closes.
        driver.borrow_mut().own_fd(raw_fd);
        let reader = Reader::new(lp, raw_fd);
        let protocol: Rc<RefCell<dyn Protocol>> = protocol;
        let wake_at_submit = driver.borrow().backend() == crate::Backend::Uring;
        let inner = Rc::new_cyclic(|me| StreamInner {
            me: me.clone(),
            lp: lp.downgrade(),
            driver,
            fd: RefCell::new(Some(sock)),
            raw_fd,
            state: RefCell::new(State {
                buf: WriteBuffer::default(),
                limits: Limits::default(),
                closing: false,
                conn_lost: 0,
                eof_requested: false,
                eof_sent: false,
                read_paused: false,
                eof_received: false,
                flow: WriteFlow::default(),
                sendfile_active: false,
            }),
            protocol: ProtocolSlot::new(protocol),
            protocol_name: std::any::type_name::<P>(),
            reader: RefCell::new(reader),
            send: RefCell::new(None),
            delivering: RefCell::new(None),
            pump_waker: RefCell::new(None),
            in_pump: Cell::new(false),
            flush_queued: Cell::new(false),
            delivery_queued: Cell::new(false),
            send_unpolled: Cell::new(false),
            wake_at_submit,
            share_received: Cell::new(false),
            finished: Cell::new(false),
            empty_waiters: RefCell::new(Vec::new()),
            detach: RefCell::new(detach),
            peername: std::cell::OnceCell::new(),
            sockname: std::cell::OnceCell::new(),
        });
        // Receive completions (io_uring) and readiness (epoll) run the
        // delivery as a callback.
        let me: Weak<dyn Deliver> = Rc::downgrade(&inner) as Weak<StreamInner>;
        inner.reader.borrow_mut().deliver_to(me);
        let transport = Transport {
            inner: inner.clone(),
        };
        let made = transport.clone();
        let location = Location::caller();
        let starting = inner.clone();
        let scheduled = lp.inner().call_soon_boxed(
            Box::new(move || {
                starting.call_protocol("connection_made", |p| p.connection_made(made));
            }),
            location,
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

    pub(crate) fn loop_(&self) -> Option<EventLoop> {
        self.lp.upgrade().map(EventLoop::from_inner)
    }

    /// Calls a protocol method with no transport borrow held, catching a
    /// panic (reported, then the connection is closed). `None` when the
    /// protocol is gone, borrowed elsewhere, or panicked.
    pub(crate) fn call_protocol<R>(
        self: &Rc<Self>,
        what: &'static str,
        f: impl FnOnce(&mut dyn Protocol) -> R,
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

    /// The protocol is borrowed elsewhere (by the user across an await):
    /// true means "try again later".
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

    pub(crate) fn protocol_name(&self) -> &'static str {
        self.protocol_name
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.finished.get()
    }

    /// The socket, if still open.
    pub(crate) fn fd(&self) -> Option<RawFd> {
        self.fd.borrow().as_ref().map(AsRawFd::as_raw_fd)
    }
}
