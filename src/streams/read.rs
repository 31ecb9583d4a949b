//! The future of [`StreamReader::read`](super::StreamReader::read).
//!
//! Written by hand rather than as nested `async fn`s: an echo or a
//! relay awaits `read` once per message, and each layer of generated
//! state machine (the public `read`, the block read, the wait for data)
//! cost a dispatch and a drop on every poll. One struct does the same
//! steps in the same order: the reader's exception first, then what is
//! buffered, else the one waiting read (asyncio's `_wait_for_data`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;

use super::error::StreamError;
use super::reader::ReaderInner;

/// `read(n)` for `n >= 0`: up to `n` bytes once at least one is buffered
/// (empty at EOF, or at once for `n == 0`).
pub(super) struct ReadSome<'a> {
    reader: &'a ReaderInner,
    n: usize,
    /// Registered as the reader's waiting read: unregister when done or
    /// dropped.
    waiting: bool,
}

impl<'a> ReadSome<'a> {
    pub(super) fn new(reader: &'a ReaderInner, n: usize) -> ReadSome<'a> {
        ReadSome {
            reader,
            n,
            waiting: false,
        }
    }
}

impl Future for ReadSome<'_> {
    type Output = Result<Bytes, StreamError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if !this.waiting {
            if this.n == 0 {
                return Poll::Ready(this.reader.check_exception().map(|()| Bytes::new()));
            }
            match this.reader.read_now(this.n) {
                Ok(Some(data)) => return Poll::Ready(Ok(data)),
                Ok(None) => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            if let Err(e) = this.reader.register_waiter("read") {
                return Poll::Ready(Err(e));
            }
            this.waiting = true;
        }
        match this.reader.poll_waiter(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(woken) => {
                this.waiting = false;
                this.reader.unregister_waiter();
                Poll::Ready(woken.map(|()| this.reader.take(this.n)))
            }
        }
    }
}

impl Drop for ReadSome<'_> {
    fn drop(&mut self) {
        // Cancelled while waiting: consumes nothing.
        if self.waiting {
            self.reader.unregister_waiter();
        }
    }
}

/// What [`StreamReader::read`](super::StreamReader::read) returns.
pub(super) enum Read<'a> {
    /// `n >= 0`.
    Some(ReadSome<'a>),
    /// `n < 0`: blocks until EOF, joined (rare: boxed).
    All(Pin<Box<dyn Future<Output = Result<Bytes, StreamError>> + 'a>>),
}

impl Future for Read<'_> {
    type Output = Result<Bytes, StreamError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Read::Some(r) => Pin::new(r).poll(cx),
            Read::All(f) => f.as_mut().poll(cx),
        }
    }
}
