//! The write pipe transport (asyncio's `_UnixWritePipeTransport`).
//!
//! `write` queues bytes in a [`WriteBuffer`] and wakes the pump task,
//! which sends everything queued in one WRITEV (io_uring
//! `IORING_OP_WRITEV`; on epoll `writev(2)` when the descriptor is
//! writable), puts back what the pipe did not take, and starts the next
//! one when it completes. Flow control is asyncio's: `pause_writing` when
//! the buffer rises above the high-water mark, `resume_writing` when it
//! falls to the low-water mark.
//!
//! The reader going away is noticed two ways: a write fails with `EPIPE`,
//! and, while idle, a watch for `POLLERR`/`POLLHUP` on the descriptor
//! (an io_uring POLL_ADD, or an epoll registration with no interest,
//! which epoll wakes only for errors and hang-ups) completes. Either ends
//! the transport with `connection_lost(Some(BrokenPipe))`. SIGPIPE is
//! ignored first (see [`super::sigpipe`]).

use std::cell::{RefCell, RefMut};
use std::fmt;
use std::future::Future;
use std::io;
use std::os::fd::RawFd;
use std::panic::Location;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::Bytes;

use super::core::{Core, LostHook};
use super::fd::PipeFd;
use super::WritePipeProtocol;
use crate::driver::op::poll::PollOnce;
use crate::driver::op::write::WriteV;
use crate::driver::op::Op;
use crate::error::{Error, Result};
use crate::event_loop::EventLoop;
use crate::transport::lost;
use crate::transport::protocol_slot::Called;
use crate::transport::write_buf::{Limits, WriteBuffer};
use crate::transport::write_flow::{self, FlowControlled, WriteFlow};
use crate::transport::ExtraInfo;

/// After this many writes to a lost pipe, each further one logs a warning
/// (asyncio's `LOG_THRESHOLD_FOR_CONNLOST_WRITES`).
const CONNLOST_WARN_AFTER: u32 = 5;

/// Writes completed per pump run before it yields to the loop.
const BUDGET: u32 = 64;

/// The writing end of a pipe (or a socket, tty or pty used as one):
/// asyncio's write pipe transport.
///
/// Made by [`EventLoop::connect_write_pipe`] and handed to the protocol's
/// `connection_made`. Cloning gives another handle to the same
/// transport.
#[derive(Clone)]
pub struct WritePipeTransport {
    pub(crate) inner: Rc<WriteInner>,
}

pub(crate) struct WriteInner {
    core: Core<dyn WritePipeProtocol>,
    state: RefCell<WriteState>,
    io: RefCell<WriteIo>,
}

#[derive(Default)]
struct WriteState {
    buf: WriteBuffer,
    limits: Limits,
    /// `close()`/`write_eof()` (or an error, or `abort()`) began the end.
    closing: bool,
    /// asyncio's `_conn_lost`: nonzero once the pipe is lost (abort,
    /// error, reader gone); counts the writes made after.
    conn_lost: u32,
    /// `connection_lost` is scheduled or running.
    lost_scheduled: bool,
    /// Where the protocol stands in `pause_writing`/`resume_writing`.
    flow: WriteFlow,
}

#[derive(Default)]
struct WriteIo {
    write: Option<Op<WriteV>>,
    /// Waiting for room after an `EAGAIN` (io_uring only).
    writable: Option<Op<PollOnce>>,
    /// Waiting for the reader to go away (`POLLERR`/`POLLHUP`).
    watch: Option<Op<PollOnce>>,
    /// The watch was started (it is never restarted).
    watching: bool,
}

impl WriteIo {
    fn stop(&mut self) {
        self.write = None;
        self.writable = None;
        self.watch = None;
        self.watching = true;
    }
}

/// What one step of the pump found.
enum Step {
    Idle,
    Progress,
    /// The reader went away, or a write failed.
    Lost(io::Error),
}

fn broken_pipe() -> io::Error {
    io::Error::from_raw_os_error(libc::EPIPE)
}

impl FlowControlled for WriteInner {
    fn write_flow(&self) -> RefMut<'_, WriteFlow> {
        RefMut::map(self.state.borrow_mut(), |st| &mut st.flow)
    }
    fn in_protocol_call(&self) -> bool {
        self.core.protocol_busy()
    }
    fn flow_loop(&self) -> Option<EventLoop> {
        self.core.loop_()
    }
    fn call_pause_writing(self: &Rc<Self>) {
        self.call_protocol("pause_writing", |p| p.pause_writing());
    }
}

impl WriteInner {
    fn call_protocol<R>(
        self: &Rc<Self>,
        what: &'static str,
        f: impl FnOnce(&mut dyn WritePipeProtocol) -> R,
    ) -> Option<R> {
        match self.core.call(f) {
            Called::Done(r) => Some(r),
            Called::Skipped => None,
            Called::Panicked(err) => {
                let msg = format!("Fatal error: protocol.{what}() call failed.");
                self.core.report(&msg, err.clone());
                self.force_close(Some(io::Error::other(err)));
                None
            }
        }
    }

    /// `write`: queue, wake the pump, maybe pause the protocol.
    fn write_with(self: &Rc<Self>, len: usize, push: impl FnOnce(&mut WriteBuffer)) -> Result<()> {
        {
            let mut st = self.state.borrow_mut();
            if len == 0 {
                return Ok(());
            }
            if st.conn_lost > 0 {
                if st.conn_lost >= CONNLOST_WARN_AFTER {
                    tracing::warn!(
                        target: "ringloop",
                        "pipe closed by peer or os.write(pipe, data) raised exception."
                    );
                }
                st.conn_lost += 1;
                return Ok(());
            }
            if st.closing {
                return Err(Error::InvalidState(
                    "cannot call write() after write_eof() or close()",
                ));
            }
            push(&mut st.buf);
        }
        if self.io.borrow().write.is_none() {
            self.core.wake();
        }
        self.maybe_pause_protocol();
        Ok(())
    }

    fn maybe_pause_protocol(self: &Rc<Self>) {
        let rose = {
            let st = &mut *self.state.borrow_mut();
            st.flow.rise(st.buf.size(), &st.limits)
        };
        if rose {
            write_flow::pause(self);
        }
    }

    fn maybe_resume_protocol(self: &Rc<Self>) {
        let fell = {
            let st = &mut *self.state.borrow_mut();
            st.flow.fall(st.buf.size(), &st.limits)
        };
        if fell {
            self.call_protocol("resume_writing", |p| p.resume_writing());
        }
    }

    /// One run of the pump.
    fn pump(self: &Rc<Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.core.is_finished() {
            return Poll::Ready(());
        }
        self.core.set_waker(cx);
        self.core.in_pump.set(true);
        let mut budget = BUDGET;
        while !self.core.is_finished() && !self.state.borrow().lost_scheduled {
            if budget == 0 {
                cx.waker().wake_by_ref();
                break;
            }
            budget -= 1;
            match self.step(cx) {
                Step::Idle => break,
                Step::Progress => {}
                Step::Lost(e) => {
                    tracing::debug!(target: "ringloop", error = %e, fd = self.core.raw_fd,
                        "Fatal write error on pipe transport");
                    self.force_close(Some(e));
                }
            }
        }
        self.core.in_pump.set(false);
        if self.core.is_finished() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Completes and starts writes, then checks the hang-up watch (after
    /// the writes: a write to a vanished reader fails with `EPIPE` just
    /// the same, and the watch must be polled on every run to be woken).
    fn step(self: &Rc<Self>, cx: &mut Context<'_>) -> Step {
        let wrote = self.step_write(cx);
        if matches!(wrote, Step::Lost(_)) || self.core.is_finished() {
            return wrote;
        }
        match self.poll_watch(cx) {
            Some(e) => Step::Lost(e),
            None => wrote,
        }
    }

    /// Polls the watch for the reader going away (started on the first
    /// call); the error once it went away.
    fn poll_watch(&self, cx: &mut Context<'_>) -> Option<io::Error> {
        let mut io = self.io.borrow_mut();
        if !io.watching {
            io.watching = true;
            let watch = PollOnce {
                fd: self.core.raw_fd,
                mask: (libc::POLLERR | libc::POLLHUP) as u32,
            };
            // Without the watch, a vanished reader is still noticed at the
            // next write; a failure to start it is no reason to fail.
            io.watch = Op::submit(&self.core.driver, watch).ok();
        }
        let watch = io.watch.as_mut()?;
        let Poll::Ready(r) = Pin::new(watch).poll(cx) else {
            return None;
        };
        io.watch = None;
        let hangup = (libc::POLLERR | libc::POLLHUP) as u32;
        // Anything else: the descriptor cannot be polled (`/dev/null`),
        // so there is no watch.
        matches!(r, Ok(events) if events & hangup != 0).then(broken_pipe)
    }

    /// Completes the write in flight and starts the next, until one is
    /// pending or the buffer is empty (on epoll each start tries its
    /// `writev` at once).
    fn step_write(self: &Rc<Self>, cx: &mut Context<'_>) -> Step {
        let fd = self.core.raw_fd;
        let driver = &self.core.driver;
        let mut io = self.io.borrow_mut();
        if let Some(w) = io.writable.as_mut() {
            if Pin::new(w).poll(cx).is_pending() {
                return Step::Idle;
            }
            io.writable = None;
        }
        if io.write.is_none() {
            let batch = self.state.borrow_mut().buf.take_batch();
            let Some(batch) = batch else {
                drop(io);
                self.drained();
                return Step::Idle;
            };
            match Op::try_submit(driver, WriteV::new(fd, batch)) {
                Ok(op) => io.write = Some(op),
                Err((e, op)) => {
                    self.state
                        .borrow_mut()
                        .buf
                        .complete_batch(op.into_batch(), 0);
                    return Step::Lost(e);
                }
            }
        }
        let Some(op) = io.write.as_mut() else {
            return Step::Idle;
        };
        let Poll::Ready((res, batch)) = Pin::new(op).poll(cx) else {
            return Step::Idle;
        };
        io.write = None;
        let mut st = self.state.borrow_mut();
        let sent = *res.as_ref().unwrap_or(&0);
        st.buf.complete_batch(batch, sent);
        if let Err(e) = res {
            match e.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock => {
                    let wait = PollOnce {
                        fd,
                        mask: libc::POLLOUT as u32,
                    };
                    match Op::submit(driver, wait) {
                        Ok(op) => io.writable = Some(op),
                        Err(e) => return Step::Lost(e),
                    }
                }
                _ => return Step::Lost(e),
            }
        }
        drop(st);
        drop(io);
        self.maybe_resume_protocol();
        Step::Progress
    }

    /// Nothing left to write: finish a close or `write_eof`.
    fn drained(self: &Rc<Self>) {
        let finish = {
            let mut st = self.state.borrow_mut();
            if st.closing && !st.lost_scheduled && st.buf.size() == 0 {
                st.lost_scheduled = true;
                true
            } else {
                false
            }
        };
        if finish {
            lost::now(self, None);
        }
    }

    /// `close()` / `write_eof()`: no more writes; `connection_lost(None)`
    /// once the buffer has drained.
    fn close(self: &Rc<Self>) {
        let now = {
            let mut st = self.state.borrow_mut();
            if st.closing {
                return;
            }
            st.closing = true;
            st.buf.size() == 0
        };
        if now {
            self.schedule_connection_lost(None);
        }
    }

    /// `abort()` and errors (asyncio's `_close`): drop the buffer, stop
    /// writing, schedule `connection_lost(error)`.
    fn force_close(self: &Rc<Self>, error: Option<io::Error>) {
        {
            let mut st = self.state.borrow_mut();
            if st.lost_scheduled {
                return;
            }
            st.closing = true;
            st.conn_lost += 1;
            // The write in flight is cancelled below: nothing of the
            // buffer will be written any more.
            st.buf = WriteBuffer::default();
        }
        self.io.borrow_mut().stop();
        self.schedule_connection_lost(error);
    }

    fn schedule_connection_lost(self: &Rc<Self>, error: Option<io::Error>) {
        {
            let mut st = self.state.borrow_mut();
            if st.lost_scheduled {
                return;
            }
            st.lost_scheduled = true;
        }
        lost::schedule(self, error);
    }

    fn call_connection_lost(self: &Rc<Self>, error: Option<io::Error>) {
        self.io.borrow_mut().stop();
        if let Called::Panicked(err) = self.core.finish(error, |p, e| p.connection_lost(e)) {
            self.core
                .report("Fatal error: protocol.connection_lost() call failed.", err);
        }
    }

    fn teardown(&self) {
        self.io.borrow_mut().stop();
        self.core.teardown();
    }
}

impl WritePipeTransport {
    /// Builds the transport around a checked descriptor and schedules the
    /// protocol's `connection_made`; the pump (writes and the hang-up
    /// watch) starts after it. Crate-internal: subprocess transports call
    /// it with their own protocol adapters and an `on_lost` hook; the
    /// public way is [`EventLoop::connect_write_pipe`].
    #[track_caller]
    pub(crate) fn start(
        lp: &EventLoop,
        pipe: PipeFd,
        protocol: Rc<RefCell<dyn WritePipeProtocol>>,
        protocol_name: &'static str,
        on_lost: Option<LostHook>,
    ) -> Result<WritePipeTransport> {
        super::sigpipe::ignore_sigpipe();
        let inner = Rc::new(WriteInner {
            core: Core::new(lp, pipe, protocol, protocol_name, on_lost),
            state: RefCell::new(WriteState::default()),
            io: RefCell::new(WriteIo::default()),
        });
        let transport = WritePipeTransport {
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
        if let Err(e) = crate::task::spawn_internal(lp, WritePump(inner.clone())) {
            inner.teardown();
            return Err(e);
        }
        Ok(transport)
    }

    /// Queues a copy of `data` (`transport.write`). Never blocks; an
    /// empty slice does nothing.
    ///
    /// Errors: `InvalidState` after [`close`](Self::close) or
    /// [`write_eof`](Self::write_eof). Writes after the pipe is lost
    /// (reader gone, `abort`, a write error) are dropped silently, with a
    /// warning logged from the fifth on, as in asyncio.
    pub fn write(&self, data: &[u8]) -> Result<()> {
        self.inner.write_with(data.len(), |b| b.push_slice(data))
    }

    /// Queues `data` without copying it (large payloads).
    pub fn write_bytes(&self, data: Bytes) -> Result<()> {
        let len = data.len();
        self.inner.write_with(len, |b| b.push_bytes(data))
    }

    /// Queues each buffer in order (`transport.writelines`); they leave
    /// together in one `writev`.
    pub fn writelines<I, B>(&self, lines: I) -> Result<()>
    where
        I: IntoIterator<Item = B>,
        B: AsRef<[u8]>,
    {
        for line in lines {
            self.write(line.as_ref())?;
        }
        Ok(())
    }

    /// Closes the pipe once the buffer has drained, which is what end of
    /// file means for a pipe (`transport.write_eof`); the reader then
    /// reads EOF and the protocol hears `connection_lost(None)`. The same
    /// as [`close`](Self::close). A second call does nothing.
    pub fn write_eof(&self) {
        self.inner.close()
    }

    /// Always true: closing the pipe is its end of file.
    pub fn can_write_eof(&self) -> bool {
        true
    }

    /// Closes the pipe after the buffered data is written
    /// (`transport.close`); `connection_lost(None)` follows. A second
    /// call does nothing.
    pub fn close(&self) {
        self.inner.close()
    }

    /// Closes the pipe now, dropping buffered data (`transport.abort`);
    /// `connection_lost(None)` follows.
    pub fn abort(&self) {
        self.inner.force_close(None)
    }

    /// True once `close`, `write_eof`, `abort` or an error began ending
    /// the transport.
    pub fn is_closing(&self) -> bool {
        self.inner.state.borrow().closing
    }

    /// True once `connection_lost` has run and the descriptor is closed.
    pub fn is_closed(&self) -> bool {
        self.inner.core.is_finished()
    }

    /// Sets the flow-control limits (`set_write_buffer_limits`): the
    /// protocol's `pause_writing` runs when the buffer rises above `high`,
    /// `resume_writing` when it falls to `low` or below. No `high` means
    /// 64 KiB, or four times `low` if only `low` is given; no `low` means
    /// `high / 4`. `high < low` is `InvalidInput`.
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

    /// Bytes written and not yet accepted by the pipe.
    pub fn get_write_buffer_size(&self) -> usize {
        self.inner.state.borrow().buf.size()
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

impl fmt::Debug for WritePipeTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.inner.state.borrow();
        let mut d = f.debug_struct("WritePipeTransport");
        d.field("fd", &self.inner.core.raw_fd);
        d.field("protocol", &self.inner.core.protocol_name());
        if self.inner.core.is_finished() {
            d.field("state", &"closed");
        } else if st.closing {
            d.field("state", &"closing");
        }
        d.field("write_buffer", &st.buf.size());
        d.finish()
    }
}

/// The pump task's future.
struct WritePump(Rc<WriteInner>);

impl Future for WritePump {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.pump(cx)
    }
}

impl Drop for WritePump {
    fn drop(&mut self) {
        // The loop closed before the transport ended: release the
        // descriptor and break the transport/protocol cycle.
        self.0.teardown();
    }
}

impl lost::LostTarget for WriteInner {
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
