//! The stream transport's machinery: state, the pump that moves bytes,
//! and asyncio's close, abort and error paths.
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
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use socket2::SockAddr;

use super::chunk::offset_within;
use super::read::{ReadBuf, ReadEvent, Reader};
use super::write_buf::{Limits, WriteBuffer};
use super::Transport;
use crate::deliver::Deliver;
use crate::driver::op::sendmsg::SendMsg;
use crate::driver::op::sys;
use crate::driver::op::{DriverRef, Op, OpKind};
use crate::driver::{Completion, Wake};
use crate::error::Error;
use crate::event_loop::{EventLoop, LoopInner};
use crate::exception::ErrorContext;
use crate::flush::Flush;
use crate::protocol::Protocol;

mod deliver;

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
    /// `pause_writing()` was called and not yet matched by resume.
    pub(crate) protocol_paused: bool,
    /// `pause_writing()` is scheduled (the protocol was busy when the
    /// buffer rose) and has not reached the protocol yet.
    pub(crate) pause_deferred: bool,
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
    protocol: RefCell<Option<Rc<RefCell<dyn Protocol>>>>,
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

fn is_ignored_error(e: &io::Error) -> bool {
    // asyncio's _FATAL_ERROR_IGNORE: BrokenPipeError, ConnectionResetError,
    // ConnectionAbortedError end the connection without a report.
    matches!(
        e.raw_os_error(),
        Some(libc::EPIPE | libc::ESHUTDOWN | libc::ECONNRESET | libc::ECONNABORTED)
    ) || matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}

fn clone_io_error(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
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
                protocol_paused: false,
                pause_deferred: false,
                sendfile_active: false,
            }),
            protocol: RefCell::new(Some(protocol)),
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
        if let Err(e) = crate::task::spawn_internal(lp, Pump(inner.clone())) {
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

    /// The protocol is borrowed elsewhere (by the user across an await):
    /// true means "try again later".
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

    /// `write(data)`: a copy of `data`, or, when `data` is (part of)
    /// what `data_received` is being handed right now, the received
    /// buffer itself (an echo or a relay then sends without copying; the
    /// buffer goes back once sent).
    pub(crate) fn write_slice(self: &Rc<Self>, data: &[u8]) -> crate::Result<()> {
        if data.len() >= SHARE_FROM {
            let delivering = self.delivering.borrow().clone();
            if let Some(rx) = delivering {
                if let Some(start) = offset_within(&rx, data) {
                    let end = start + data.len();
                    return self.write_with(data.len(), |b| match &rx {
                        Delivering::Buf(buf) => {
                            if !b.push_received(buf, start, end) {
                                b.push_slice(data);
                            }
                        }
                        Delivering::Bytes(bytes) => b.push_bytes(bytes.slice(start..end)),
                    });
                }
            }
        }
        self.write_with(data.len(), |b| b.push_slice(data))
    }

    /// Asks that large deliveries be handed as `Bytes` the protocol can
    /// keep (the streams reader sets it in `connection_made`).
    pub(crate) fn set_share_received(&self) {
        self.share_received.set(true);
    }

    /// `data` as `Bytes` without copying, when it is (part of) what
    /// `data_received` is being handed and that was turned into `Bytes`
    /// (see [`set_share_received`](Self::set_share_received)).
    pub(crate) fn shared_received(&self, data: &[u8]) -> Option<Bytes> {
        match self.delivering.borrow().as_ref()? {
            Delivering::Bytes(bytes) => {
                let start = offset_within(bytes, data)?;
                Some(bytes.slice(start..start + data.len()))
            }
            Delivering::Buf(_) => None,
        }
    }

    /// `write`: queue, wake the pump, maybe pause the protocol.
    pub(crate) fn write_with(
        self: &Rc<Self>,
        len: usize,
        push: impl FnOnce(&mut WriteBuffer),
    ) -> crate::Result<()> {
        {
            let mut st = self.state.borrow_mut();
            if st.eof_requested {
                return Err(Error::InvalidState("cannot call write() after write_eof()"));
            }
            if st.sendfile_active {
                return Err(Error::InvalidState(
                    "cannot call write() while sendfile is in progress",
                ));
            }
            if len == 0 {
                return Ok(());
            }
            if st.conn_lost > 0 {
                if st.conn_lost >= CONNLOST_WARN_AFTER {
                    tracing::warn!(target: "ringloop", "socket.send() raised exception.");
                }
                st.conn_lost += 1;
                return Ok(());
            }
            push(&mut st.buf);
        }
        self.request_send();
        self.maybe_pause_protocol();
        Ok(())
    }

    /// Bytes were queued: a pump run sends them before it returns; from
    /// anywhere else the transport goes on the loop's flush queue, so
    /// that they leave at the end of this iteration rather than the next.
    fn request_send(self: &Rc<Self>) {
        if self.in_pump.get() || self.flush_queued.get() || self.send.borrow().is_some() {
            return;
        }
        let has_waker = self.pump_waker.borrow().is_some();
        match self.lp.upgrade() {
            // Before its first run the pump is scheduled anyway.
            Some(lp) if has_waker => {
                self.flush_queued.set(true);
                lp.flush.push(self.clone());
            }
            _ => self.wake_pump(),
        }
    }

    pub(crate) fn maybe_pause_protocol(self: &Rc<Self>) {
        {
            let mut st = self.state.borrow_mut();
            // A sendfile's fallback paces itself; the protocol does not
            // hear about the bytes it queues.
            if st.buf.size() <= st.limits.high || st.protocol_paused || st.sendfile_active {
                return;
            }
            st.protocol_paused = true;
        }
        if self.protocol_busy() {
            // Called from inside a protocol method (a write in
            // data_received): call pause_writing as soon as it returns.
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

    #[inline(always)]
    fn maybe_resume_protocol(self: &Rc<Self>) {
        let deferred = {
            let mut st = self.state.borrow_mut();
            if !st.protocol_paused || st.buf.size() > st.limits.low {
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

    /// `close()`: stop reading; flush, then `connection_lost(None)`.
    pub(crate) fn close(self: &Rc<Self>) {
        let empty = {
            let mut st = self.state.borrow_mut();
            if st.closing {
                return;
            }
            st.closing = true;
            // A running sendfile finishes first; its end completes the
            // close.
            let empty = st.buf.size() == 0 && !st.sendfile_active;
            if empty {
                st.conn_lost += 1;
            }
            empty
        };
        self.reader.borrow_mut().stop();
        if empty {
            self.schedule_connection_lost(None);
        } else {
            self.wake_pump();
        }
    }

    /// `abort()` and fatal errors (asyncio's `_force_close`).
    pub(crate) fn force_close(self: &Rc<Self>, error: Option<io::Error>) {
        let send = {
            let mut st = self.state.borrow_mut();
            if st.conn_lost > 0 {
                return;
            }
            st.buf.clear();
            st.closing = true;
            st.conn_lost += 1;
            self.send.borrow_mut().take()
        };
        drop(send);
        self.reader.borrow_mut().stop();
        self.schedule_connection_lost(error);
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
    /// the socket closes and the server counts the connection out.
    fn call_connection_lost(self: &Rc<Self>, error: Option<io::Error>) {
        if self.finished.get() {
            return;
        }
        self.stop_io();
        // Taken before the call, so nothing re-enters the protocol.
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

    /// Drops the in-flight operations (cancelling them in the kernel).
    fn stop_io(&self) {
        let send = self.send.borrow_mut().take();
        drop(send);
        self.reader.borrow_mut().stop();
    }

    /// Releases everything: operations, protocol, socket, server slot.
    /// Idempotent; no protocol method is called.
    pub(crate) fn teardown(&self) {
        if self.finished.replace(true) {
            return;
        }
        self.stop_io();
        let protocol = self.protocol.borrow_mut().take();
        drop(protocol);
        let mut fd = self.fd.borrow_mut().take();
        if let Some(sock) = fd.take() {
            // Before the close: once closed, the number may be reused,
            // and the epoll backend's readiness of this socket must not
            // be inherited by the next one.
            if let Ok(mut d) = self.driver.try_borrow_mut() {
                d.release_fd(self.raw_fd);
                fd = Some(sock);
            } else {
                // Unreachable in practice (nothing tears a transport down
                // inside a driver call). Keeping the number open beats
                // handing its registration to another file: shut the
                // connection down and leak the descriptor.
                // SAFETY: `sock` is our open socket; shutdown takes no
                // memory.
                unsafe { libc::shutdown(sock.as_raw_fd(), libc::SHUT_RDWR) };
                std::mem::forget(sock);
            }
        }
        if let Some(fd) = &fd {
            if self.state.borrow().sendfile_active {
                // The sendfile works on a duplicate of the socket: shut
                // the connection down so that it stops at once.
                // SAFETY: `fd` is our open socket; shutdown takes no
                // memory.
                unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) };
            }
        }
        drop(fd);
        let detach = self.detach.borrow_mut().take();
        if let Some(detach) = detach {
            detach();
        }
        for w in self.empty_waiters.borrow_mut().drain(..) {
            w.wake();
        }
        if let Some(w) = self.pump_waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// asyncio's `_fatal_error`: report unless it is a reset or broken
    /// pipe, then force-close with the error.
    pub(crate) fn fatal_error(
        self: &Rc<Self>,
        err: io::Error,
        message: &str,
        report_as: Option<Error>,
    ) {
        if !is_ignored_error(&err) || report_as.is_some() {
            if let Some(lp) = self.loop_() {
                let error = report_as.unwrap_or_else(|| Error::Io(clone_io_error(&err).into()));
                let mut ctx = ErrorContext::new(message).with_error(error);
                ctx.socket = Some(self.raw_fd);
                ctx.transport = Some(Transport {
                    inner: self.clone(),
                });
                ctx.protocol = Some(self.protocol_name.to_string());
                lp.call_exception_handler(&ctx);
            }
        } else {
            tracing::debug!(target: "ringloop", error = %err, "{message}");
        }
        self.force_close(Some(err));
    }

    pub(crate) fn protocol_name(&self) -> &'static str {
        self.protocol_name
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.finished.get()
    }

    /// Registers `waker` to be woken when the write buffer holds at most
    /// `threshold` bytes (or the transport is gone); true if it does now.
    pub(crate) fn poll_write_below(&self, threshold: usize, waker: &Waker) -> bool {
        if self.finished.get() || self.state.borrow().buf.size() <= threshold {
            return true;
        }
        self.empty_waiters.borrow_mut().push(waker.clone());
        false
    }

    /// After a send: wakes the waiters of `poll_write_below` once the
    /// buffer is at the low-water mark (each re-checks its own bound).
    #[inline(always)]
    fn wake_space_waiters(&self) {
        if self.empty_waiters.borrow().is_empty() {
            return;
        }
        let low = {
            let st = self.state.borrow();
            st.buf.size() <= st.limits.low
        };
        if low {
            for w in self.empty_waiters.borrow_mut().drain(..) {
                w.wake();
            }
        }
    }

    /// The socket, if still open.
    pub(crate) fn fd(&self) -> Option<RawFd> {
        self.fd.borrow().as_ref().map(AsRawFd::as_raw_fd)
    }

    /// Starts a `sendfile`: user writes become errors and reading pauses
    /// (asyncio pauses it too). Returns whether reading was on, for
    /// [`StreamInner::end_sendfile`].
    pub(crate) fn begin_sendfile(&self) -> io::Result<bool> {
        let mut st = self.state.borrow_mut();
        if st.closing || self.finished.get() {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "transport is closing",
            ));
        }
        if st.sendfile_active {
            return Err(io::Error::other("a sendfile is already in progress"));
        }
        if st.eof_requested {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "cannot sendfile after write_eof()",
            ));
        }
        st.sendfile_active = true;
        let was_reading = !st.read_paused;
        st.read_paused = true;
        Ok(was_reading)
    }

    /// Ends a `sendfile` (however it ended): writes are allowed again,
    /// reading resumes if it was on, and a `close()` or `write_eof()` made
    /// meanwhile completes once the buffer drains.
    pub(crate) fn end_sendfile(&self, was_reading: bool) {
        {
            let mut st = self.state.borrow_mut();
            st.sendfile_active = false;
            if was_reading && !st.closing {
                st.read_paused = false;
            }
        }
        // The pump finds the buffer empty and completes a pending close
        // or EOF (with no protocol borrow held).
        self.wake_pump();
    }

    /// Queues a chunk of a sendfile's buffered fallback (no flow-control
    /// report to the protocol; the caller paces itself).
    pub(crate) fn push_sendfile_chunk(&self, chunk: bytes::Bytes) {
        self.state.borrow_mut().buf.push_bytes(chunk);
        if self.send.borrow().is_none() {
            self.wake_pump();
        }
    }

    /// A duplicate of the socket for a sendfile, so that the descriptor
    /// it works on stays valid even if the transport closes meanwhile.
    pub(crate) fn dup_fd(&self) -> io::Result<OwnedFd> {
        match self.fd.borrow().as_ref() {
            Some(fd) => fd.try_clone(),
            None => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "transport is closed",
            )),
        }
    }

    /// One run of the pump: deliver, react, send, until nothing moves.
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
        self.pump_step(cx)
    }

    /// One run of the pump, with its waker in `cx`: from the pump task,
    /// or from the delivery callback (`deliver.rs`).
    fn pump_step(self: &Rc<Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.in_pump.set(true);
        // One delivery per run, as asyncio's transports deliver one
        // receive per iteration; the rest waits for the next iteration.
        // What the protocol wrote leaves before the next delivery, so a
        // multishot receive that pulled several buffers at once does not
        // turn into one burst of a send (the peer starts on the first
        // part sooner), and a streams reader's task takes each delivery
        // before the next arrives, so that one finds the buffer empty
        // and is kept without a copy (see `streams/buffer.rs`).
        let mut delivered = false;
        loop {
            // Sends first: a finished send lets its received buffers go
            // before new data arrives to be written.
            let wrote = self.drive_write(cx);
            if self.finished.get() {
                break;
            }
            // Another write round only if this one left work it can do
            // now; a send in flight is taken up when it completes (by
            // the pump, or on io_uring by the flush).
            let write_more = wrote && self.write_unsettled();
            if delivered {
                if write_more {
                    continue;
                }
                break;
            }
            delivered = self.drive_read(cx);
            if self.finished.get() || !(delivered || write_more) {
                break;
            }
        }
        if delivered && !self.finished.get() && self.more_to_deliver(cx) {
            // The rest in the next iteration: by the delivery callback
            // where there is one, so that a completion arriving
            // meanwhile does not make it two runs in that iteration.
            match self.lp.upgrade() {
                Some(lp) => self.clone().schedule_delivery(&lp),
                None => cx.waker().wake_by_ref(),
            }
        }
        self.in_pump.set(false);
        if self.finished.get() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// After a delivery: whether another is waiting (received, and the
    /// protocol may hear it). If not, a receive is in flight and the
    /// pump's waker registered for it.
    fn more_to_deliver(&self, cx: &mut Context<'_>) -> bool {
        self.may_deliver() && self.reader.borrow_mut().has_pending(cx)
    }

    /// Reading is on and the protocol may still hear data.
    fn may_deliver(&self) -> bool {
        let st = self.state.borrow();
        !st.read_paused && !st.closing && !st.eof_received
    }

    /// Delivers what arrived; true if anything happened.
    fn drive_read(self: &Rc<Self>, cx: &mut Context<'_>) -> bool {
        let deliver = self.may_deliver();
        if !deliver || self.protocol_busy() {
            if deliver {
                // The user holds the protocol across an await: retry.
                cx.waker().wake_by_ref();
            }
            // Keep a receive in flight (its data is held, not lost).
            self.reader.borrow_mut().poll_hold(cx);
            return false;
        }
        let event = self.reader.borrow_mut().poll(cx);
        match event {
            ReadEvent::Pending => false,
            ReadEvent::Data => {
                let data = self.reader.borrow_mut().take_data();
                match data {
                    Some(data) if data.len() >= SHARE_FROM => {
                        let data = if self.share_received.get() {
                            match data.into_bytes() {
                                Ok(bytes) => Delivering::Bytes(bytes),
                                Err(data) => Delivering::Buf(Rc::new(data)),
                            }
                        } else {
                            Delivering::Buf(Rc::new(data))
                        };
                        *self.delivering.borrow_mut() = Some(data.clone());
                        self.call_protocol("data_received", |p| p.data_received(&data));
                        self.delivering.borrow_mut().take();
                        // Dropping it gives the buffer back (to the ring
                        // or the pool); if a write queued it, its send
                        // does.
                        drop(data);
                    }
                    Some(data) => {
                        self.call_protocol("data_received", |p| p.data_received(&data));
                        drop(data);
                    }
                    None => {}
                }
                true
            }
            ReadEvent::Eof => {
                self.state.borrow_mut().eof_received = true;
                let keep_open = self.call_protocol("eof_received", |p| p.eof_received());
                if keep_open != Some(true) {
                    self.close();
                }
                true
            }
            ReadEvent::Error(e) => {
                self.fatal_error(e, "Fatal read error on socket transport", None);
                true
            }
        }
    }

    /// Completes and starts sends; true if anything happened.
    #[inline(always)]
    fn drive_write(self: &Rc<Self>, cx: &mut Context<'_>) -> bool {
        // Checked here, inlined: the pump's first write round of a
        // delivery nearly always finds nothing to do, and should not pay
        // the big function's entry and exit for it.
        !self.write_idle() && self.drive_write_busy(cx)
    }

    /// [`drive_write`](Self::drive_write) with something to do.
    fn drive_write_busy(self: &Rc<Self>, cx: &mut Context<'_>) -> bool {
        let mut progressed = false;
        // On epoll a send is first tried as a plain system call (the
        // result is handled in the next round, so the round trip needs
        // no further pump run); only one that would block becomes an
        // operation, parked until the socket is writable. On io_uring a
        // send is submitted with this transport registered for the flush
        // after its completion, and not polled.
        let mut sent_now = None;
        for round in 0..2 {
            let polled = match sent_now.take() {
                Some(done) => Some(done),
                None => {
                    let mut send = self.send.borrow_mut();
                    self.send_unpolled.set(false);
                    match send.as_mut() {
                        Some(op) => match Pin::new(op).poll(cx) {
                            Poll::Ready(r) => {
                                *send = None;
                                Some(r)
                            }
                            Poll::Pending => return progressed,
                        },
                        None => None,
                    }
                }
            };
            if let Some((result, batch)) = polled {
                progressed = true;
                let sent = *result.as_ref().unwrap_or(&0);
                self.state.borrow_mut().buf.complete_batch(batch, sent);
                match result {
                    Ok(_) => self.wake_space_waiters(),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => {
                        self.fatal_error(e, "Fatal write error on socket transport", None);
                        return true;
                    }
                }
                self.maybe_resume_protocol();
                if self.finished.get() {
                    return true;
                }
            }
            // epoll, and only copies queued (the usual reply): straight
            // from the buffer, one system call, no batch and no
            // operation. A socket that is full falls through to the
            // operation, which waits for it to be writable.
            let mut would_block = false;
            if !self.wake_at_submit && round == 0 {
                match self.send_tail_now() {
                    TailSend::Sent => {
                        if self.finished.get() {
                            return true;
                        }
                        progressed = true;
                        continue;
                    }
                    TailSend::Failed => return true,
                    TailSend::WouldBlock => would_block = true,
                    TailSend::NotAlone => {}
                }
            }
            let batch = self.state.borrow_mut().buf.take_batch();
            let Some(batch) = batch else {
                if self.state.borrow().buf.size() == 0 {
                    self.buffer_drained();
                }
                return progressed;
            };
            progressed = true;
            let mut op = SendMsg::new(self.raw_fd, batch);
            // Only where a round follows to take the result.
            if !self.wake_at_submit && round == 0 && !would_block {
                if let Some(res) = try_send_now(&mut op) {
                    sent_now = Some(op.complete(res));
                    continue;
                }
            }
            let submitted = if self.wake_at_submit {
                // Its completion queues this transport for the flush at
                // the end of that iteration, which takes the result (and
                // wakes the pump only if there is more to do).
                let me: Weak<dyn Flush> = Rc::downgrade(self) as Weak<StreamInner>;
                Op::try_submit_waking(&self.driver, op, || Wake::Flush(me))
            } else {
                Op::try_submit(&self.driver, op).map(|op| (op, false))
            };
            match submitted {
                Ok((op, registered)) => {
                    *self.send.borrow_mut() = Some(op);
                    if registered {
                        // io_uring: polling it now would find it in
                        // flight.
                        return true;
                    }
                    self.send_unpolled.set(true);
                }
                Err((e, op)) => {
                    self.state
                        .borrow_mut()
                        .buf
                        .complete_batch(op.into_batch(), 0);
                    self.fatal_error(e, "Fatal write error on socket transport", None);
                    return true;
                }
            }
        }
        progressed
    }

    /// epoll: sends what is queued straight from the write buffer's tail,
    /// if that is all of it and nothing is in flight (see
    /// `WriteBuffer::tail_only`), and does what a completed send does.
    /// Kept out of `drive_write`, which io_uring runs too: inlined, it
    /// made that function's every call dearer there.
    #[inline(never)]
    fn send_tail_now(self: &Rc<Self>) -> TailSend {
        let sent = {
            let st = self.state.borrow();
            match st.buf.tail_only() {
                Some(t) => sys::send_now(self.raw_fd, t),
                None => return TailSend::NotAlone,
            }
        };
        match sent {
            Ok(n) => {
                self.state.borrow_mut().buf.consume_tail(n as usize);
                self.wake_space_waiters();
                self.maybe_resume_protocol();
                TailSend::Sent
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => TailSend::WouldBlock,
            Err(e) => {
                self.fatal_error(e, "Fatal write error on socket transport", None);
                TailSend::Failed
            }
        }
    }

    /// Nothing for `drive_write` to do: no send, nothing queued, and
    /// nothing waiting for the buffer to drain (a close or `write_eof` to
    /// finish, a `drain`/`sendfile` waiter to wake), so
    /// [`buffer_drained`](Self::buffer_drained) would do nothing. The
    /// pump's first write round of a delivery nearly always finds this
    /// (the flush took the last send's completion).
    fn write_idle(&self) -> bool {
        if self.send.borrow().is_some() || !self.empty_waiters.borrow().is_empty() {
            return false;
        }
        let st = self.state.borrow();
        st.buf.is_empty() && !st.closing && (st.eof_sent || !st.eof_requested)
    }

    /// `drive_write` stopped with work it could do at once: a send it
    /// started but has not polled (epoll: not yet attempted), or bytes
    /// queued and no send in flight. Otherwise a send is in flight (its
    /// completion brings the pump, or on io_uring the flush, back) or
    /// nothing is queued.
    fn write_unsettled(&self) -> bool {
        self.send_unpolled.get()
            || (self.send.borrow().is_none() && !self.state.borrow().buf.is_empty())
    }

    /// Nothing left to send: finish a close, send a pending EOF, wake
    /// drain waiters.
    fn buffer_drained(self: &Rc<Self>) {
        for w in self.empty_waiters.borrow_mut().drain(..) {
            w.wake();
        }
        let (finish_close, send_eof) = {
            let mut st = self.state.borrow_mut();
            if st.sendfile_active {
                (false, false)
            } else if st.closing && st.conn_lost == 0 {
                st.conn_lost += 1;
                (true, false)
            } else if st.eof_requested && !st.eof_sent && !st.closing {
                st.eof_sent = true;
                (false, true)
            } else {
                (false, false)
            }
        };
        if finish_close {
            self.call_connection_lost(None);
        } else if send_eof {
            self.shutdown_write();
        }
    }

    /// `shutdown(SHUT_WR)` now.
    pub(crate) fn shutdown_write(self: &Rc<Self>) {
        if let Some(fd) = self.fd() {
            // SAFETY: `fd` is our open socket; shutdown takes no memory.
            let rc = unsafe { libc::shutdown(fd, libc::SHUT_WR) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::ENOTCONN) {
                    self.fatal_error(e, "Fatal error on write_eof", None);
                }
            }
        }
    }

    /// `write_eof()`.
    pub(crate) fn write_eof(self: &Rc<Self>) {
        let now = {
            let mut st = self.state.borrow_mut();
            if st.closing || st.eof_requested {
                return;
            }
            st.eof_requested = true;
            if st.buf.size() == 0 && !st.sendfile_active {
                st.eof_sent = true;
                true
            } else {
                false
            }
        };
        if now {
            self.shutdown_write();
        }
    }

    pub(crate) fn pause_reading(&self) {
        let mut st = self.state.borrow_mut();
        if st.closing || st.read_paused {
            return;
        }
        st.read_paused = true;
    }

    pub(crate) fn resume_reading(&self) {
        {
            let mut st = self.state.borrow_mut();
            if st.closing || !st.read_paused {
                return;
            }
            st.read_paused = false;
        }
        self.wake_pump();
    }
}

/// epoll: `op`'s system call, made now. `None` if it would block (the
/// caller makes it an operation, which waits for the socket to be
/// writable); else its result as a completion. The engine's readiness
/// needs no update: only a send that would block clears it, and that one
/// is retried as an operation.
fn try_send_now(op: &mut SendMsg) -> Option<Completion> {
    match ringloop_fallback::retry_interrupted(|| op.attempt()) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
        r => Some(Completion::from_io(r)),
    }
}

impl Flush for StreamInner {
    fn enqueue(self: Rc<Self>, queue: &crate::flush::FlushQueue) {
        if !self.flush_queued.replace(true) {
            queue.push(self);
        }
    }

    /// The write half of a pump run, with the pump's waker: after writes
    /// from outside the pump, and on io_uring after a send completed
    /// (which queued this flush; see `Wake::Flush`).
    fn flush(self: Rc<Self>) {
        self.flush_queued.set(false);
        if self.finished.get() || self.in_pump.get() {
            return;
        }
        self.with_pump_waker(|cx| {
            self.in_pump.set(true);
            self.drive_write(cx);
            self.in_pump.set(false);
            // Not done in the rounds one call makes (epoll: sends that
            // finished at once, a last one not yet attempted): the pump
            // carries on.
            if !self.finished.get() && self.write_unsettled() {
                cx.waker().wake_by_ref();
            }
        });
    }
}

/// What [`StreamInner::send_tail_now`] did.
enum TailSend {
    /// Sent (all or part): the rest, if any, is still queued.
    Sent,
    /// The socket is full: the send must wait for it.
    WouldBlock,
    /// A write error, reported; the transport is closing.
    Failed,
    /// Not only copies in the tail, or a send in flight: the batch path.
    NotAlone,
}

/// The pump task's future.
struct Pump(Rc<StreamInner>);

impl Future for Pump {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.pump(cx)
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        // The loop closed (or the task was cancelled) before the
        // connection ended: release the socket and break the
        // transport/protocol cycle. No protocol method runs.
        self.0.teardown();
    }
}
