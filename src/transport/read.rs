//! The receive side of a stream transport.
//!
//! A [`Reader`] hands what arrived to the pump as a [`ReadBuf`], which the
//! protocol borrows and which goes back when the callback returns. Two
//! ways of receiving:
//!
//! - **multishot** (io_uring with a provided buffer ring, kernel 6.0+):
//!   one `IORING_OP_RECV` with `IORING_RECV_MULTISHOT` stays armed and
//!   posts a completion per arrival, each in a buffer the kernel took from
//!   the loop's ring ([`BufRing`]). An idle connection holds no buffer and
//!   no re-submission is needed between arrivals. When the ring runs dry
//!   (`ENOBUFS`) one single-shot receive with a pool buffer bridges the
//!   gap, then multishot is armed again.
//! - **single-shot** (older kernels, a dry ring): at most one receive in
//!   flight, into a 64 KiB buffer of the loop's pool (`recv_pool.rs`),
//!   never zeroed (pages the kernel does not write stay unmapped); the
//!   most recently returned buffer is handed out first, so buffers stay
//!   warm in cache.
//! - **watched** (epoll): the same `recv` into a pool buffer, taken for
//!   the system call only (a receive that would block holds none), but
//!   not as an operation: the reader keeps one key for its life and a
//!   watcher parked under it, which the engine wakes at every arrival and
//!   leaves parked ([`Watch`]). A delivery costs one receive attempt, and
//!   after one that emptied the socket, no second look.
//!
//! When the protocol may not hear data (reading paused, the protocol
//! busy), what already arrived is held, never dropped; a multishot receive
//! is cancelled meanwhile, so a paused connection does not drain the
//! shared ring, and armed again on resume.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};

use bytes::Bytes;
use io_uring::{cqueue, opcode, types};

use super::recv_pool::{PooledBuf, RecvPool};
use crate::deliver::Deliver;
use crate::driver::op::multi::MultiOp;
use crate::driver::op::recv::RecvPooled;
use crate::driver::op::{DriverRef, Op, OpKind};
use crate::driver::uring::buf_ring::{self, BufRing, RingBuf};
use crate::driver::{Completion, SlotPoll, Wake, WakeBy};
use crate::event_loop::EventLoop;

/// Size of a single-shot receive buffer (asyncio reads up to
/// 256 KiB; 64 KiB keeps per-connection address space down and is plenty
/// per step).
pub(crate) const READ_BUF_SIZE: usize = 64 * 1024;

/// Bytes received, borrowed by the protocol.
pub(crate) enum ReadBuf {
    /// A buffer of the loop's receive pool (single-shot receives); it
    /// goes back to the pool on drop.
    Heap(PooledBuf),
    /// A buffer of the loop's ring; it goes back to the ring on drop.
    Ring(RingBuf),
}

impl std::ops::Deref for ReadBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            ReadBuf::Heap(v) => v,
            ReadBuf::Ring(r) => r,
        }
    }
}

impl ReadBuf {
    /// The bytes as `Bytes` without copying, when that is cheap and
    /// bounded: a pool buffer always (it leaves the pool), a ring buffer
    /// while less than half the ring is lent (see `buf_ring.rs`). Else
    /// `self` back.
    pub(crate) fn into_bytes(self) -> Result<Bytes, ReadBuf> {
        match self {
            ReadBuf::Heap(v) => Ok(v.into_bytes()),
            ReadBuf::Ring(r) => r.lend().map_err(ReadBuf::Ring),
        }
    }
}

#[cfg(test)]
impl ReadBuf {
    /// `v` as received bytes, in a pool of its own.
    pub(crate) fn heap(v: Vec<u8>) -> ReadBuf {
        ReadBuf::Heap(PooledBuf::new(v, Rc::default()))
    }
}

/// What a receive produced.
enum Held {
    Data(ReadBuf),
    Eof,
    Error(io::Error),
}

/// What [`Reader::poll`] found.
pub(crate) enum ReadEvent {
    Pending,
    /// Data is ready: take it with [`Reader::take_data`].
    Data,
    Eof,
    Error(io::Error),
}

/// The multishot receive state.
struct Multishot {
    ring: Rc<BufRing>,
    /// The armed receive, `None` between a terminal completion and the
    /// next arming.
    op: Option<MultiOp>,
    /// We asked the kernel to stop it (reading paused).
    cancelling: bool,
    /// The ring ran dry: the next receive is single-shot.
    dry: bool,
}

/// The epoll receive state: no operation per receive, but one watcher
/// under a key kept for the reader's life (`Driver::poll_watching`). The
/// socket is registered (edge-triggered, readiness tracked by the engine),
/// so a receive known to find it empty is not made, and the watcher,
/// once parked, stays parked across receives and wake-ups: a delivery
/// does not park the pump again to hear about the next one.
struct Watch {
    key: usize,
    /// A receive was asked for ([`Reader::start`]) and not yet made.
    wanted: bool,
    /// The watcher is parked in the engine (ended by
    /// [`Reader::end_watch`]).
    parked: bool,
    /// The last receive emptied the socket, in the current
    /// [`Reader::poll`]: until the loop next waits for events, a receive
    /// would only find the watcher parked, so
    /// [`Reader::has_pending`] need not try. False (after a receive
    /// that filled its buffer, or a delivery of held data): the socket
    /// may hold more, which the next delivery receives.
    emptied: bool,
}

/// `repr(C)`, in this order: the fields a delivery touches first and
/// together (see `StreamInner`'s layout).
#[repr(C)]
pub(crate) struct Reader {
    /// stop() was called: never receive again.
    stopped: bool,
    /// Since the current [`poll`](Self::poll) began, the multishot
    /// receive was found with nothing more queued and the waker
    /// registered: [`has_pending`](Self::has_pending) need not look.
    settled: bool,
    fd: RawFd,
    /// Results taken from the kernel, oldest first, not yet delivered.
    held: VecDeque<Held>,
    /// `None`: single-shot receives only.
    multi: Option<Multishot>,
    /// The single-shot receive in flight.
    op: Option<Op<RecvPooled>>,
    /// `Some` on epoll: receives are made through the watcher, never as
    /// `op`.
    watch: Option<Watch>,
    /// Where single-shot receives take their buffers.
    pool: Rc<RecvPool>,
    driver: DriverRef,
    /// The delivery callback, registered on every multishot receive
    /// armed (io_uring) and on the watcher (epoll); see `deliver.rs`.
    deliver: Option<Weak<dyn Deliver>>,
}

impl Reader {
    pub(crate) fn new(lp: &EventLoop, fd: RawFd) -> Reader {
        let driver = lp.driver_ref();
        let ring = driver.borrow_mut().buf_ring();
        let watch = driver.borrow_mut().watch_key().map(|key| Watch {
            key,
            wanted: false,
            parked: false,
            emptied: false,
        });
        Reader {
            watch,
            driver,
            fd,
            multi: ring.map(|ring| Multishot {
                ring,
                op: None,
                cancelling: false,
                dry: false,
            }),
            op: None,
            pool: lp.recv_pool(),
            held: VecDeque::new(),
            stopped: false,
            settled: false,
            deliver: None,
        }
    }

    /// Has every multishot receive's completions (io_uring), or the
    /// watcher's events (epoll), delivered by `to`'s callback (see
    /// `deliver.rs`) rather than by waking the poller.
    pub(crate) fn deliver_to(&mut self, to: Weak<dyn Deliver>) {
        self.deliver = Some(to);
    }

    /// Turns a multishot completion into a held result. Returns false
    /// when it carried nothing to deliver.
    fn take_multishot(&mut self, c: Completion) -> bool {
        let Some(m) = self.multi.as_mut() else {
            return false;
        };
        if !c.more() {
            m.op = None;
        }
        let buffer = cqueue::buffer_select(c.flags);
        match c.result() {
            Ok(0) => {
                if let Some(bid) = buffer {
                    m.ring.release(bid);
                }
                self.held.push_back(Held::Eof);
                true
            }
            Ok(n) => {
                let Some(buf) = buffer.and_then(|bid| m.ring.take(bid, n as usize)) else {
                    self.held.push_back(Held::Error(io::Error::other(
                        "io_uring reported a receive without a valid buffer",
                    )));
                    return true;
                };
                self.held.push_back(Held::Data(ReadBuf::Ring(buf)));
                true
            }
            Err(e) => {
                if let Some(bid) = buffer {
                    m.ring.release(bid);
                }
                match e.raw_os_error() {
                    // The ring is empty: bridge with one pool buffer.
                    Some(libc::ENOBUFS) => m.dry = true,
                    // We cancelled it (paused): armed again on resume.
                    Some(libc::ECANCELED) if m.cancelling => {}
                    Some(libc::EAGAIN | libc::EINTR) => {}
                    // No multishot receive in this kernel (before 6.0).
                    Some(libc::EINVAL) if !c.more() && !m.cancelling => {
                        self.multi = None;
                        self.driver.borrow_mut().disable_multishot_recv();
                    }
                    _ => {
                        self.held.push_back(Held::Error(e));
                        return true;
                    }
                }
                if !c.more() {
                    if let Some(m) = self.multi.as_mut() {
                        m.cancelling = false;
                    }
                }
                false
            }
        }
    }

    /// Collects what the kernel finished; true if something is now held
    /// or a receive ended (so the caller should look again).
    fn collect(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progressed = false;
        if let Some(op) = self.multi.as_mut().and_then(|m| m.op.as_mut()) {
            let polled = op.poll_next(cx);
            self.settled = op.armed() && self.op.is_none();
            if let Poll::Ready(c) = polled {
                self.take_multishot(c);
                progressed = true;
            }
        }
        if let Some(w) = self.watch.as_mut().filter(|w| w.wanted) {
            let mut op = RecvPooled::new(self.fd, self.pool.clone());
            let polled = {
                // The delivery callback if there is one (kept parked
                // across deliveries, it wakes that, not the poller).
                let by = match &self.deliver {
                    Some(d) => WakeBy::Deliver(d),
                    None => crate::driver::wake::wake_by(&self.driver, cx.waker()),
                };
                self.driver.borrow_mut().poll_watching(w.key, &mut op, by)
            };
            match polled {
                (SlotPoll::Pending, _) => w.parked = true,
                (SlotPoll::Ready(c), emptied) => {
                    w.emptied = emptied;
                    w.wanted = false;
                    progressed = true;
                    let (res, buf) = op.complete(c);
                    self.hold_single(res, buf);
                }
            }
        }
        if let Some(op) = self.op.as_mut() {
            if let Poll::Ready((res, buf)) = Pin::new(op).poll(cx) {
                self.op = None;
                progressed = true;
                if let Some(m) = self.multi.as_mut() {
                    m.dry = false;
                }
                self.hold_single(res, buf);
            }
        }
        progressed
    }

    /// Holds a single-shot receive's result.
    fn hold_single(&mut self, res: io::Result<usize>, buf: Option<PooledBuf>) {
        match (res, buf) {
            (Ok(_), Some(buf)) => self.held.push_back(Held::Data(ReadBuf::Heap(buf))),
            (Ok(_), None) => self.held.push_back(Held::Eof),
            (Err(e), _) => {
                // WouldBlock/Interrupted are spurious: receive again.
                if !matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) {
                    self.held.push_back(Held::Error(e));
                }
            }
        }
    }

    /// Ends the epoll watcher, if parked: nobody is to be woken for this
    /// socket's data any more (reading paused, or stopped).
    fn end_watch(&mut self) {
        if let Some(w) = self.watch.as_mut() {
            w.wanted = false;
            if w.parked {
                w.parked = false;
                if let Ok(mut d) = self.driver.try_borrow_mut() {
                    d.end_watch(w.key, self.fd);
                }
            }
        }
    }

    /// Starts a receive unless one is in flight, a result is held, or
    /// receiving stopped.
    fn start(&mut self) -> io::Result<()> {
        if self.op.is_some() || !self.held.is_empty() || self.stopped {
            return Ok(());
        }
        if let Some(w) = self.watch.as_mut() {
            w.wanted = true;
            return Ok(());
        }
        if let Some(m) = self.multi.as_mut() {
            if m.op.is_some() {
                return Ok(());
            }
            if !m.dry {
                let entry = opcode::RecvMulti::new(types::Fd(self.fd), buf_ring::GROUP).build();
                let ring = m.ring.clone();
                let release = Box::new(move |c: Completion| {
                    if let Some(bid) = cqueue::buffer_select(c.flags) {
                        ring.release(bid);
                    }
                });
                let wake = self.deliver.clone().map(Wake::Deliver);
                m.op = Some(MultiOp::submit(
                    &self.driver,
                    self.fd,
                    entry,
                    release,
                    wake,
                )?);
                m.cancelling = false;
                return Ok(());
            }
        }
        let op = RecvPooled::new(self.fd, self.pool.clone());
        self.op = Some(Op::submit(&self.driver, op)?);
        Ok(())
    }

    /// Receives, for delivery.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> ReadEvent {
        self.settled = false;
        if let Some(w) = self.watch.as_mut() {
            w.emptied = false;
        }
        loop {
            // Data stays held until `take_data`: look, do not take.
            if let Some(Held::Data(_)) = self.held.front() {
                return ReadEvent::Data;
            }
            match self.held.pop_front() {
                Some(Held::Data(d)) => {
                    self.held.push_front(Held::Data(d));
                    return ReadEvent::Data;
                }
                Some(Held::Eof) => return ReadEvent::Eof,
                Some(Held::Error(e)) => return ReadEvent::Error(e),
                None => {}
            }
            if self.stopped {
                return ReadEvent::Pending;
            }
            if let Err(e) = self.start() {
                return ReadEvent::Error(e);
            }
            if !self.collect(cx) {
                return ReadEvent::Pending;
            }
        }
    }

    /// Keeps receives already in flight going without delivering: their
    /// results are held for later. Starts nothing new, and asks the
    /// kernel to end a multishot receive. On epoll nothing is in flight:
    /// the watcher ends (it would wake the pump for data it may not
    /// deliver), and the socket is left alone until reading resumes.
    pub(crate) fn poll_hold(&mut self, cx: &mut Context<'_>) {
        self.end_watch();
        if let Some(m) = self.multi.as_mut() {
            if let Some(op) = m.op.as_ref() {
                if !m.cancelling {
                    m.cancelling = true;
                    op.cancel();
                }
            }
        }
        while self.collect(cx) {}
    }

    /// Receives without delivering: true if a result is waiting (on
    /// epoll: may be waiting, unreceived; the next [`poll`](Self::poll)
    /// receives it). Otherwise a receive is in flight (unless receiving
    /// stopped) and the waker is registered for its completion.
    pub(crate) fn has_pending(&mut self, cx: &mut Context<'_>) -> bool {
        if self.held.is_empty() && self.settled && !self.stopped {
            // This run's poll left the multishot receive armed.
            return false;
        }
        if let Some(w) = self.watch.as_ref().filter(|_| self.held.is_empty()) {
            if !w.emptied {
                // epoll: the socket may hold more. Say so without
                // receiving it: the next delivery receives and hands it
                // over at once, while it is in cache, as asyncio's
                // `_read_ready` does. Received now and held, it went
                // cold while the iteration served every other
                // connection: pipelined 16 KiB x 100, the send's copy of
                // such a buffer took a fifth of the server's time.
                return true;
            }
            if w.parked {
                // This run's poll emptied the socket, and the watcher
                // (parked by an earlier run, for this pump) hears the
                // next arrival.
                return false;
            }
        }
        loop {
            if !self.held.is_empty() {
                return true;
            }
            if self.stopped {
                return false;
            }
            if let Err(e) = self.start() {
                self.held.push_back(Held::Error(e));
                return true;
            }
            if !self.collect(cx) {
                return false;
            }
        }
    }

    /// The data [`poll`](Self::poll) announced.
    pub(crate) fn take_data(&mut self) -> Option<ReadBuf> {
        match self.held.pop_front() {
            Some(Held::Data(d)) => Some(d),
            Some(other) => {
                self.held.push_front(other);
                None
            }
            None => None,
        }
    }

    /// Never receive again (close, abort): cancels the receives in flight
    /// and drops anything held.
    pub(crate) fn stop(&mut self) {
        self.stopped = true;
        self.end_watch();
        self.op = None;
        if let Some(m) = self.multi.as_mut() {
            m.op = None;
        }
        self.held.clear();
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        // A watcher must not outlive its reader (the socket's number may
        // be reused); the transport's teardown has normally stopped it.
        self.end_watch();
    }
}
