//! The receive side of a stream transport.
//!
//! A [`Reader`] keeps at most one receive in flight and hands what it got
//! to the pump as a [`ReadBuf`], which the protocol borrows and the reader
//! takes back for the next receive. When the protocol may not hear data
//! (reading paused, the protocol busy), a receive already in flight is
//! still collected and its result held, never dropped.

use std::io;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::task::{Context, Poll};

use std::future::Future;

use crate::driver::op::recv::RecvInto;
use crate::driver::op::{DriverRef, Op};
use crate::event_loop::EventLoop;

/// Size of a transport's receive buffer (asyncio reads up to 256 KiB;
/// 64 KiB keeps per-connection memory down and is plenty per step).
pub(crate) const READ_BUF_SIZE: usize = 64 * 1024;

/// Bytes received, borrowed by the protocol.
pub(crate) struct ReadBuf {
    buf: Vec<u8>,
    len: usize,
}

impl std::ops::Deref for ReadBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[..self.len]
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

pub(crate) struct Reader {
    driver: DriverRef,
    fd: RawFd,
    op: Option<Op<RecvInto<Vec<u8>>>>,
    /// A buffer to reuse for the next receive.
    spare: Option<Vec<u8>>,
    held: Option<Held>,
    /// stop() was called: never receive again.
    stopped: bool,
}

impl Reader {
    pub(crate) fn new(lp: &EventLoop, fd: RawFd) -> Reader {
        Reader {
            driver: lp.driver_ref(),
            fd,
            op: None,
            spare: None,
            held: None,
            stopped: false,
        }
    }

    /// Polls the receive in flight, if any; true if it finished (its
    /// result is now held).
    fn collect(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(op) = self.op.as_mut() else {
            return false;
        };
        let (res, buf) = match Pin::new(op).poll(cx) {
            Poll::Pending => return false,
            Poll::Ready(r) => r,
        };
        self.op = None;
        self.held = Some(match res {
            Ok(0) => {
                self.spare = Some(buf);
                Held::Eof
            }
            Ok(n) => Held::Data(ReadBuf { buf, len: n }),
            Err(e) => {
                self.spare = Some(buf);
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) {
                    // Spurious: receive again.
                    return true;
                }
                Held::Error(e)
            }
        });
        true
    }

    /// Starts a receive unless one is in flight or a result is held.
    fn start(&mut self) -> io::Result<()> {
        if self.op.is_some() || self.held.is_some() || self.stopped {
            return Ok(());
        }
        let buf = self.spare.take().unwrap_or_else(|| vec![0; READ_BUF_SIZE]);
        let op = RecvInto { fd: self.fd, buf };
        match Op::try_submit(&self.driver, op) {
            Ok(op) => {
                self.op = Some(op);
                Ok(())
            }
            Err((e, op)) => {
                self.spare = Some(op.buf);
                Err(e)
            }
        }
    }

    /// Receives, for delivery.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> ReadEvent {
        loop {
            match self.held.take() {
                Some(Held::Data(d)) => {
                    self.held = Some(Held::Data(d));
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

    /// Keeps a receive already in flight going without delivering: its
    /// result is held for later. Starts nothing new.
    pub(crate) fn poll_hold(&mut self, cx: &mut Context<'_>) {
        if self.held.is_none() {
            self.collect(cx);
        }
    }

    /// The data [`poll`](Self::poll) announced.
    pub(crate) fn take_data(&mut self) -> Option<ReadBuf> {
        match self.held.take() {
            Some(Held::Data(d)) => Some(d),
            other => {
                self.held = other;
                None
            }
        }
    }

    /// Gives a delivered buffer back for the next receive.
    pub(crate) fn recycle(&mut self, buf: ReadBuf) {
        self.spare = Some(buf.buf);
    }

    /// Never receive again (close, abort): cancels the receive in flight
    /// and drops anything held.
    pub(crate) fn stop(&mut self) {
        self.stopped = true;
        self.op = None;
        self.held = None;
    }

    /// Releases everything (the transport is gone).
    pub(crate) fn shutdown(&mut self) {
        self.stop();
        self.spare = None;
    }
}
