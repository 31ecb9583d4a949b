//! Transports: the connection objects protocols write to
//! (asyncio's `Transport`, `DatagramTransport`).
//!
//! A [`Transport`] is a cheap, clonable handle (`Rc`) to one connection.
//! Writing never blocks: bytes are queued and leave in the next send
//! operation, together with everything else written in the same loop
//! iteration (one `sendmsg` with many iovecs).

pub(crate) mod chunk;
pub(crate) mod chunk_list;
mod datagram;
pub(crate) mod errors;
pub(crate) mod lost;
pub(crate) mod protocol_slot;
mod read;
pub(crate) mod recv_pool;
mod sendfile;
pub(crate) mod stream;
pub(crate) mod unclaimed;
pub(crate) mod write_buf;
pub(crate) mod write_flow;

use std::fmt;
use std::os::fd::RawFd;
use std::rc::Rc;

use bytes::Bytes;
use socket2::SockAddr;

pub use datagram::DatagramTransport;
pub use write_buf::{DEFAULT_HIGH_WATER, DEFAULT_LOW_WATER};

use crate::error::Result;
use crate::event_loop::EventLoop;
use stream::StreamInner;
use write_buf::Limits;

/// A value of [`Transport::get_extra_info`] (asyncio's extra-info dict).
#[derive(Debug)]
#[non_exhaustive]
pub enum ExtraInfo {
    /// `"peername"` or `"sockname"`: a socket address (IP or Unix).
    Address(SockAddr),
    /// `"socket"`: the connection's descriptor. The transport owns it:
    /// do not close it.
    Socket(RawFd),
    /// `"pipe"`: a pipe transport's descriptor. The transport owns it: do
    /// not close it.
    Pipe(RawFd),
    /// `"subprocess"` of a subprocess transport: the child's pid (asyncio
    /// gives its `Popen` object).
    Pid(u32),
}

/// A stream connection (TCP or Unix socket): asyncio's `Transport`.
///
/// Created by `create_connection`, `create_server`,
/// `create_unix_connection`, `create_unix_server` and
/// `connect_accepted_socket`, and handed to the protocol's
/// `connection_made`. Cloning gives another handle to the same
/// connection.
#[derive(Clone)]
pub struct Transport {
    pub(crate) inner: Rc<StreamInner>,
}

impl Transport {
    /// Queues a copy of `data` for sending (`transport.write`). Never
    /// blocks. Writing an empty slice does nothing.
    ///
    /// Writing back (part of) the data `data_received` is handing you,
    /// from inside that call, skips the copy when it is large (2 KiB or
    /// more): the received buffer itself is queued, and goes back once
    /// sent. An echo or a relay needs nothing special for this.
    ///
    /// Errors: `InvalidState` after [`write_eof`](Self::write_eof) or
    /// while a `sendfile` runs. Writes after the connection is lost are
    /// dropped silently, with a warning logged from the fifth on, as in
    /// asyncio.
    pub fn write(&self, data: &[u8]) -> Result<()> {
        self.inner.write_slice(data)
    }

    /// Queues `data` without copying it (large payloads).
    pub fn write_bytes(&self, data: Bytes) -> Result<()> {
        let len = data.len();
        self.inner.write_with(len, |b| b.push_bytes(data))
    }

    /// Queues each buffer in order (`transport.writelines`).
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

    /// Closes the writing side once the buffer has drained
    /// (`shutdown(SHUT_WR)`); reading goes on. A second call does
    /// nothing; `write` afterwards is an error.
    pub fn write_eof(&self) {
        self.inner.write_eof()
    }

    /// Always true: stream sockets can half-close.
    pub fn can_write_eof(&self) -> bool {
        true
    }

    /// Closes the connection after the buffered data is sent
    /// (`transport.close`): reading stops now, then the protocol's
    /// `connection_lost(None)` runs once the buffer is empty. A second
    /// call does nothing.
    pub fn close(&self) {
        self.inner.close()
    }

    /// Closes the connection now, dropping buffered data
    /// (`transport.abort`); `connection_lost(None)` follows.
    pub fn abort(&self) {
        self.inner.force_close(None)
    }

    /// True once `close`, `abort` or an error began ending the
    /// connection.
    pub fn is_closing(&self) -> bool {
        self.inner.state.borrow().closing
    }

    /// Stops delivering data until [`resume_reading`](Self::resume_reading).
    /// Does nothing if closing or already paused. Data already received
    /// by the kernel waits; none is lost.
    pub fn pause_reading(&self) {
        self.inner.pause_reading()
    }

    /// Resumes delivering data.
    pub fn resume_reading(&self) {
        self.inner.resume_reading()
    }

    /// True while data is being delivered (not paused, not closing).
    pub fn is_reading(&self) -> bool {
        let st = self.inner.state.borrow();
        !st.read_paused && !st.closing
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

    /// Bytes written and not yet accepted by the kernel.
    pub fn get_write_buffer_size(&self) -> usize {
        self.inner.state.borrow().buf.size()
    }

    /// asyncio's `get_extra_info(name)`: `"peername"`, `"sockname"` or
    /// `"socket"`; `None` for other names or once the socket is closed.
    pub fn get_extra_info(&self, name: &str) -> Option<ExtraInfo> {
        match name {
            "peername" => self.peername().map(ExtraInfo::Address),
            "sockname" => self.sockname().map(ExtraInfo::Address),
            "socket" => self.inner.fd().map(ExtraInfo::Socket),
            _ => None,
        }
    }

    /// The peer's address (looked up once, then cached).
    pub fn peername(&self) -> Option<SockAddr> {
        let fd = self.inner.fd();
        self.inner
            .peername
            .get_or_init(|| fd.and_then(|fd| socket2::SockRef::from(&Fd(fd)).peer_addr().ok()))
            .clone()
    }

    /// The local address (looked up once, then cached).
    pub fn sockname(&self) -> Option<SockAddr> {
        let fd = self.inner.fd();
        self.inner
            .sockname
            .get_or_init(|| fd.and_then(|fd| socket2::SockRef::from(&Fd(fd)).local_addr().ok()))
            .clone()
    }

    /// The loop this transport runs on, while it is open.
    pub fn get_loop(&self) -> Option<EventLoop> {
        self.inner.loop_()
    }

    /// True once `connection_lost` has run and the socket is closed.
    pub fn is_closed(&self) -> bool {
        self.inner.is_finished()
    }

    /// Waits until the write buffer holds at most `threshold` bytes (0:
    /// everything written so far went to the kernel) or the connection is
    /// gone. Used by `sendfile`.
    pub(crate) fn wait_write_below(&self, threshold: usize) -> WriteBelow {
        WriteBelow {
            inner: self.inner.clone(),
            threshold,
        }
    }
}

/// The future of [`Transport::wait_write_below`].
pub(crate) struct WriteBelow {
    inner: Rc<StreamInner>,
    threshold: usize,
}

impl std::future::Future for WriteBelow {
    type Output = ();
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.inner.poll_write_below(self.threshold, cx.waker()) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    }
}

/// A borrowed raw descriptor, for socket2's `SockRef`.
struct Fd(RawFd);

impl std::os::fd::AsFd for Fd {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        // SAFETY: only built from the transport's own open socket, for
        // the duration of one getsockname/getpeername call.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(self.0) }
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.inner.state.borrow();
        let mut d = f.debug_struct("Transport");
        d.field("fd", &self.inner.raw_fd);
        d.field("protocol", &self.inner.protocol_name());
        if self.inner.is_finished() {
            d.field("state", &"closed");
        } else if st.closing {
            d.field("state", &"closing");
        }
        d.field("write_buffer", &st.buf.size());
        d.finish()
    }
}
