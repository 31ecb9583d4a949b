//! [`ProcessStdin`]: writing to a child's stdin pipe with `drain` (the
//! `StreamWriter` asyncio puts in `Process.stdin`).

use std::fmt;
use std::future::{poll_fn, Future};
use std::rc::Rc;
use std::task::Poll;

use bytes::Bytes;

use crate::pipe::WritePipeTransport;
use crate::streams::{yield_now, FlowState, StreamError};
use crate::transport::ExtraInfo;

/// A child's standard input ([`Process::stdin`](super::Process::stdin)):
/// asyncio's `StreamWriter` over the stdin pipe.
///
/// `write` never blocks; await [`drain`](Self::drain) after writing to
/// respect flow control (it waits while the pipe's buffer is above its
/// high-water mark). Cloning gives another handle to the same pipe.
#[derive(Clone)]
pub struct ProcessStdin {
    transport: WritePipeTransport,
    flow: Rc<FlowState>,
}

impl ProcessStdin {
    pub(crate) fn new(transport: WritePipeTransport, flow: Rc<FlowState>) -> ProcessStdin {
        ProcessStdin { transport, flow }
    }

    /// The pipe's transport (asyncio's `writer.transport`).
    pub fn transport(&self) -> &WritePipeTransport {
        &self.transport
    }

    /// Queues `data` (`write`). Never blocks; follow with
    /// [`drain`](Self::drain). [`StreamError::InvalidState`] after
    /// [`write_eof`](Self::write_eof) or [`close`](Self::close).
    pub fn write(&self, data: &[u8]) -> Result<(), StreamError> {
        Ok(self.transport.write(data)?)
    }

    /// Queues `data` without copying it.
    pub fn write_bytes(&self, data: Bytes) -> Result<(), StreamError> {
        Ok(self.transport.write_bytes(data)?)
    }

    /// Queues each buffer in order (`writelines`).
    pub fn writelines<I, B>(&self, lines: I) -> Result<(), StreamError>
    where
        I: IntoIterator<Item = B>,
        B: AsRef<[u8]>,
    {
        Ok(self.transport.writelines(lines)?)
    }

    /// Closes the pipe once the buffer is written: the child reads EOF
    /// (`write_eof`).
    pub fn write_eof(&self) {
        self.transport.write_eof()
    }

    /// True: a pipe can be closed for EOF (`can_write_eof`).
    pub fn can_write_eof(&self) -> bool {
        self.transport.can_write_eof()
    }

    /// Closes the pipe after the buffered data is written (`close`).
    pub fn close(&self) {
        self.transport.close()
    }

    /// True once the pipe is closing or closed (`is_closing`).
    pub fn is_closing(&self) -> bool {
        self.transport.is_closing()
    }

    /// Waits until the pipe is closed (`wait_closed`); fails with the
    /// error that closed it (a broken pipe when the child stopped
    /// reading).
    pub fn wait_closed(&self) -> impl Future<Output = Result<(), StreamError>> + 'static {
        let flow = self.flow.clone();
        poll_fn(move |cx| match flow.poll_closed(cx) {
            Poll::Ready(Some(e)) => Poll::Ready(Err(StreamError::Io(e))),
            Poll::Ready(None) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        })
    }

    /// The pipe's extra information (`get_extra_info`): `"pipe"`.
    pub fn get_extra_info(&self, name: &str) -> Option<ExtraInfo> {
        self.transport.get_extra_info(name)
    }

    /// Waits until it is appropriate to write more (`drain`): at once
    /// below the high-water mark, else once the buffer drained to the
    /// low-water mark. After the pipe is lost: its error (a broken pipe),
    /// or [`StreamError::Io`] of kind `ConnectionReset`.
    pub fn drain(&self) -> impl Future<Output = Result<(), StreamError>> + 'static {
        let transport = self.transport.clone();
        let flow = self.flow.clone();
        async move {
            if transport.is_closing() {
                // Let a scheduled connection_lost run first, as asyncio.
                yield_now().await;
            }
            flow.drain_helper().await.map_err(StreamError::Io)
        }
    }
}

impl fmt::Debug for ProcessStdin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessStdin")
            .field("transport", &self.transport)
            .finish()
    }
}
