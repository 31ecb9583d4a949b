//! The read pipe transport (asyncio's `_UnixReadPipeTransport`).
//!
//! One internal task (the *pump*) keeps one READ in flight (io_uring
//! `IORING_OP_READ` at the file position; on epoll a `read(2)` tried when
//! the descriptor is readable) and hands each result to the protocol. A
//! descriptor that answers a READ with `EAGAIN` on io_uring (a tty: its
//! driver cannot wait without blocking) is waited for with a POLL_ADD and
//! read again.
//!
//! While reading is paused (or the protocol is borrowed elsewhere) the
//! pump does not touch the read in flight: on io_uring its result stays
//! in the driver's slot, on epoll the `read(2)` is simply not tried, so
//! nothing is lost and nothing more is taken from the pipe.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::io;
use std::os::fd::RawFd;
use std::panic::Location;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::BytesMut;

use super::core::{Core, LostHook};
use super::fd::{PipeFd, PipeKind};
use super::ReadPipeProtocol;
use crate::driver::op::poll::PollOnce;
use crate::driver::op::read::Read;
use crate::driver::op::{DriverRef, Op};
use crate::error::Error;
use crate::event_loop::EventLoop;
use crate::transport::errors::clone_io_error;
use crate::transport::lost;
use crate::transport::protocol_slot::Called;
use crate::transport::ExtraInfo;

/// The most one read takes (a pipe holds 64 KiB unless resized).
const READ_SIZE: usize = 64 * 1024;

/// Results delivered per pump run before it yields to the loop (on epoll
/// a fast writer could otherwise keep one pump running).
const BUDGET: u32 = 16;

/// The reading end of a pipe (or a socket, tty or pty used as one):
/// asyncio's read pipe transport.
///
/// Made by [`EventLoop::connect_read_pipe`] and handed to the protocol's
/// `connection_made`. Cloning gives another handle to the same
/// transport.
#[derive(Clone)]
pub struct ReadPipeTransport {
    pub(crate) inner: Rc<ReadInner>,
}

pub(crate) struct ReadInner {
    core: Core<dyn ReadPipeProtocol>,
    kind: PipeKind,
    state: RefCell<ReadState>,
    io: RefCell<ReadIo>,
}

#[derive(Default)]
struct ReadState {
    /// `close()`, EOF or an error began the end.
    closing: bool,
    /// `pause_reading()` in effect.
    paused: bool,
    /// `connection_lost` is scheduled.
    lost_scheduled: bool,
}

/// What a read produced.
enum Held {
    Data(BytesMut),
    Eof,
    Error(io::Error),
}

/// The read in flight and its result.
#[derive(Default)]
struct ReadIo {
    read: Option<Op<Read>>,
    /// Waiting for readability after an `EAGAIN` (io_uring only).
    wait: Option<Op<PollOnce>>,
    spare: Option<BytesMut>,
    held: Option<Held>,
    stopped: bool,
}

impl ReadIo {
    /// Moves the read along until it has a result or must wait.
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        driver: &DriverRef,
        fd: RawFd,
        tty: bool,
    ) -> Option<Held> {
        loop {
            if let Some(held) = self.held.take() {
                return Some(held);
            }
            if self.stopped {
                return None;
            }
            if let Some(wait) = self.wait.as_mut() {
                if Pin::new(wait).poll(cx).is_pending() {
                    return None;
                }
                // Readable, or the poll failed: the next read tells.
                self.wait = None;
            }
            let Some(op) = self.read.as_mut() else {
                let buf = self
                    .spare
                    .take()
                    .unwrap_or_else(|| BytesMut::with_capacity(READ_SIZE));
                let op = Read {
                    fd,
                    buf,
                    len: READ_SIZE,
                    offset: u64::MAX,
                    // PipeFd set O_NONBLOCK.
                    nonblocking: true,
                };
                match Op::try_submit(driver, op) {
                    Ok(op) => self.read = Some(op),
                    Err((e, op)) => {
                        self.spare = Some(op.buf);
                        return Some(Held::Error(e));
                    }
                }
                continue;
            };
            let Poll::Ready((res, mut buf)) = Pin::new(op).poll(cx) else {
                return None;
            };
            self.read = None;
            match res {
                Ok(n) if n > 0 => self.held = Some(Held::Data(buf)),
                Ok(_) => {
                    self.spare = Some(buf);
                    self.held = Some(Held::Eof);
                }
                Err(e) => {
                    buf.clear();
                    self.spare = Some(buf);
                    match e.kind() {
                        io::ErrorKind::Interrupted => {}
                        io::ErrorKind::WouldBlock => {
                            let wait = PollOnce {
                                fd,
                                mask: libc::POLLIN as u32,
                            };
                            match Op::submit(driver, wait) {
                                Ok(op) => self.wait = Some(op),
                                Err(e) => self.held = Some(Held::Error(e)),
                            }
                        }
                        // A pty master reads EIO once the slave side is
                        // closed: that is its end of file.
                        _ if tty && e.raw_os_error() == Some(libc::EIO) => {
                            self.held = Some(Held::Eof)
                        }
                        _ => self.held = Some(Held::Error(e)),
                    }
                }
            }
        }
    }

    /// Never read again: cancels the read in flight, drops any result.
    fn stop(&mut self) {
        self.stopped = true;
        self.read = None;
        self.wait = None;
        self.held = None;
        self.spare = None;
    }
}

impl ReadInner {
    fn call_protocol<R>(
        self: &Rc<Self>,
        what: &'static str,
        f: impl FnOnce(&mut dyn ReadPipeProtocol) -> R,
    ) -> Option<R> {
        match self.core.call(f) {
            Called::Done(r) => Some(r),
            Called::Skipped => None,
            Called::Panicked(err) => {
                let msg = format!("Fatal error: protocol.{what}() call failed.");
                self.core.report(&msg, err.clone());
                self.close_with(Some(io::Error::other(err)));
                None
            }
        }
    }

    /// One run of the pump: deliver what arrived, until nothing moves.
    fn pump(self: &Rc<Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.core.is_finished() {
            return Poll::Ready(());
        }
        self.core.set_waker(cx);
        self.core.in_pump.set(true);
        let tty = self.kind == PipeKind::CharDevice;
        let mut budget = BUDGET;
        while !self.core.is_finished() {
            {
                let st = self.state.borrow();
                if st.closing || st.paused {
                    break;
                }
            }
            if self.core.protocol_busy() || budget == 0 {
                // The user holds the protocol across an await, or this
                // run has delivered enough: try again next iteration.
                cx.waker().wake_by_ref();
                break;
            }
            let held = self
                .io
                .borrow_mut()
                .poll(cx, &self.core.driver, self.core.raw_fd, tty);
            let Some(held) = held else {
                break;
            };
            budget -= 1;
            match held {
                Held::Data(mut buf) => {
                    self.call_protocol("data_received", |p| p.data_received(&buf));
                    buf.clear();
                    let mut io = self.io.borrow_mut();
                    if !io.stopped {
                        io.spare = Some(buf);
                    }
                }
                Held::Eof => self.eof(),
                Held::Error(e) => self.fatal_error(e),
            }
        }
        self.core.in_pump.set(false);
        if self.core.is_finished() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// End of file: `eof_received`, then `connection_lost(None)`.
    fn eof(self: &Rc<Self>) {
        {
            let mut st = self.state.borrow_mut();
            st.closing = true;
        }
        self.io.borrow_mut().stop();
        tracing::debug!(target: "ringloop", fd = self.core.raw_fd, "read pipe closed by peer");
        // The return value does not matter: a read pipe has no writing
        // side to keep open.
        self.call_protocol("eof_received", |p| p.eof_received());
        self.close_with(None);
    }

    /// asyncio's `_fatal_error`: EIO ends the transport quietly, anything
    /// else is reported first.
    fn fatal_error(self: &Rc<Self>, e: io::Error) {
        let message = "Fatal read error on pipe transport";
        if e.raw_os_error() == Some(libc::EIO) {
            tracing::debug!(target: "ringloop", error = %e, "{message}");
        } else {
            self.core
                .report(message, Error::Io(clone_io_error(&e).into()));
        }
        self.close_with(Some(e));
    }

    /// asyncio's `_close`: stop reading, schedule `connection_lost`.
    fn close_with(self: &Rc<Self>, error: Option<io::Error>) {
        {
            let mut st = self.state.borrow_mut();
            if st.lost_scheduled {
                return;
            }
            st.closing = true;
            st.lost_scheduled = true;
        }
        self.io.borrow_mut().stop();
        lost::schedule(self, error);
    }

    fn call_connection_lost(self: &Rc<Self>, error: Option<io::Error>) {
        self.io.borrow_mut().stop();
        if let Called::Panicked(err) = self.core.finish(error, |p, e| p.connection_lost(e)) {
            self.core
                .report("Fatal error: protocol.connection_lost() call failed.", err);
        }
    }

    /// Releases everything without calling the protocol.
    fn teardown(&self) {
        self.io.borrow_mut().stop();
        self.core.teardown();
    }
}

impl ReadPipeTransport {
    /// Builds the transport around a checked descriptor, schedules the
    /// protocol's `connection_made`, then starts reading (asyncio's
    /// order). Crate-internal: subprocess transports call it with their
    /// own protocol adapters and an `on_lost` hook; the public way is
    /// [`EventLoop::connect_read_pipe`].
    #[track_caller]
    pub(crate) fn start(
        lp: &EventLoop,
        pipe: PipeFd,
        protocol: Rc<RefCell<dyn ReadPipeProtocol>>,
        protocol_name: &'static str,
        on_lost: Option<LostHook>,
    ) -> crate::Result<ReadPipeTransport> {
        let kind = pipe.kind();
        let inner = Rc::new(ReadInner {
            core: Core::new(lp, pipe, protocol, protocol_name, on_lost),
            kind,
            state: RefCell::new(ReadState::default()),
            io: RefCell::new(ReadIo::default()),
        });
        let transport = ReadPipeTransport {
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
        if let Err(e) = crate::task::spawn_internal(lp, ReadPump(inner.clone())) {
            inner.teardown();
            return Err(e);
        }
        Ok(transport)
    }

    /// Stops delivering data until [`resume_reading`](Self::resume_reading)
    /// (`transport.pause_reading`). Data stays in the pipe (or in the read
    /// already completed), none is lost. Does nothing if closing or
    /// already paused.
    pub fn pause_reading(&self) {
        let mut st = self.inner.state.borrow_mut();
        if st.closing || st.paused {
            return;
        }
        st.paused = true;
    }

    /// Resumes delivering data (`transport.resume_reading`). Does nothing
    /// if closing or not paused.
    pub fn resume_reading(&self) {
        {
            let mut st = self.inner.state.borrow_mut();
            if st.closing || !st.paused {
                return;
            }
            st.paused = false;
        }
        self.inner.core.wake();
    }

    /// True while data is being delivered (not paused, not closing).
    pub fn is_reading(&self) -> bool {
        let st = self.inner.state.borrow();
        !st.paused && !st.closing
    }

    /// Stops reading and closes the pipe (`transport.close`);
    /// `connection_lost(None)` follows. A second call does nothing.
    pub fn close(&self) {
        if self.inner.state.borrow().closing {
            return;
        }
        self.inner.close_with(None);
    }

    /// True once `close`, end of file or an error began ending the
    /// transport.
    pub fn is_closing(&self) -> bool {
        self.inner.state.borrow().closing
    }

    /// True once `connection_lost` has run and the descriptor is closed.
    pub fn is_closed(&self) -> bool {
        self.inner.core.is_finished()
    }

    /// asyncio's `get_extra_info(name)`: `"pipe"` gives the descriptor
    /// ([`ExtraInfo::Pipe`]); `None` for other names or once it is
    /// closed.
    pub fn get_extra_info(&self, name: &str) -> Option<ExtraInfo> {
        match name {
            "pipe" => self.fileno().map(ExtraInfo::Pipe),
            _ => None,
        }
    }

    /// The pipe's descriptor while it is open. The transport owns it: do
    /// not close it.
    pub fn fileno(&self) -> Option<RawFd> {
        self.inner.core.fd()
    }

    /// The loop this transport runs on, while it exists.
    pub fn get_loop(&self) -> Option<EventLoop> {
        self.inner.core.loop_()
    }
}

impl fmt::Debug for ReadPipeTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.inner.state.borrow();
        let mut d = f.debug_struct("ReadPipeTransport");
        d.field("fd", &self.inner.core.raw_fd);
        d.field("protocol", &self.inner.core.protocol_name());
        if self.inner.core.is_finished() {
            d.field("state", &"closed");
        } else if st.closing {
            d.field("state", &"closing");
        } else if st.paused {
            d.field("state", &"paused");
        }
        d.finish()
    }
}

/// The pump task's future.
struct ReadPump(Rc<ReadInner>);

impl Future for ReadPump {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.pump(cx)
    }
}

impl Drop for ReadPump {
    fn drop(&mut self) {
        // The loop closed before the transport ended: release the
        // descriptor and break the transport/protocol cycle.
        self.0.teardown();
    }
}

impl lost::LostTarget for ReadInner {
    fn lost_loop(&self) -> &std::rc::Weak<crate::event_loop::LoopInner> {
        &self.core.lp
    }
    fn call_lost(self: &Rc<Self>, error: Option<io::Error>) {
        self.call_connection_lost(error);
    }
    fn protocol_busy(&self) -> bool {
        self.core.protocol_busy()
    }
    fn teardown_now(&self) {
        self.teardown();
    }
}
