//! [`StreamWriter`]: writes to a stream connection and waits for its
//! buffer to drain (asyncio's `StreamWriter`).

use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::rc::Rc;
use std::task::Poll;

use bytes::Bytes;

use super::error::StreamError;
use super::protocol::{FlowState, StreamReaderProtocol};
use super::reader::StreamReader;
use crate::transport::{ExtraInfo, Transport};

/// Closes a connection when the last user handle of its reader/writer
/// pair goes: nothing can read or write it any more, and `close` still
/// flushes what was written.
pub(crate) struct ConnGuard {
    transport: Transport,
}

impl ConnGuard {
    pub(crate) fn new(transport: Transport) -> Rc<ConnGuard> {
        Rc::new(ConnGuard { transport })
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if !self.transport.is_closing() {
            self.transport.close();
        }
    }
}

/// Writes to a stream connection (asyncio's `StreamWriter`).
///
/// A cheap, clonable handle around the [`Transport`]. `write` never
/// blocks: bytes are queued and sent by the loop. Await
/// [`drain`](Self::drain) after writing to respect flow control: it
/// returns at once while the transport's buffer is below its high-water
/// mark, and otherwise waits until the buffer has drained to the
/// low-water mark.
///
/// A writer returned by [`open_connection`](super::open_connection) or
/// handed to a [`start_server`](super::start_server) callback closes the
/// connection (flushing first) when the last clone of it and of its
/// reader is dropped. Call [`close`](Self::close) to close it earlier; a
/// writer made with [`StreamWriter::new`] never closes by itself, as in
/// asyncio.
///
/// # Example
///
/// ```
/// use ringloop::streams::{self, DEFAULT_LIMIT};
///
/// let lp = ringloop::EventLoop::new()?;
/// let l = lp.clone();
/// let reply = lp.run_until_complete(async move {
///     // An echo server: each connection is served by a task.
///     let server = streams::start_server(
///         &l,
///         |reader, writer| async move {
///             while let Ok(line) = reader.readline().await {
///                 if line.is_empty() {
///                     break;
///                 }
///                 let _ = writer.write(&line);
///                 if writer.drain().await.is_err() {
///                     break;
///                 }
///             }
///             writer.close();
///         },
///         &["127.0.0.1"],
///         Some(0),
///         DEFAULT_LIMIT,
///         Default::default(),
///     )
///     .await?;
///     let port = server.addresses()[0].as_socket().unwrap().port();
///
///     let (reader, writer) = streams::open_connection(
///         &l, Some("127.0.0.1"), Some(port), DEFAULT_LIMIT, Default::default(),
///     )
///     .await?;
///     writer.write(b"hello\n")?;
///     writer.drain().await?;
///     let reply = reader.readline().await?;
///     writer.close();
///     writer.wait_closed().await?;
///     server.close();
///     Ok::<_, Box<dyn std::error::Error>>(reply)
/// })??;
/// assert_eq!(&reply[..], b"hello\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct StreamWriter {
    transport: Transport,
    flow: Rc<FlowState>,
    reader: Option<StreamReader>,
    /// Shared with the reader: closes the connection when both go.
    _guard: Option<Rc<ConnGuard>>,
}

impl StreamWriter {
    /// Wraps a transport whose protocol is `protocol` (asyncio's
    /// `StreamWriter(transport, protocol, reader, loop)`); `drain` waits
    /// on the protocol's flow control, and fails with `reader`'s
    /// exception once it has one.
    ///
    /// For a connection opened with
    /// [`EventLoop::create_connection`](crate::EventLoop::create_connection)
    /// and a [`StreamReaderProtocol`]; the functions
    /// [`open_connection`](super::open_connection) and
    /// [`start_server`](super::start_server) do this for you. Such a
    /// writer does not close the connection when dropped.
    pub fn new(
        transport: Transport,
        protocol: &StreamReaderProtocol,
        reader: Option<StreamReader>,
    ) -> StreamWriter {
        StreamWriter {
            transport,
            flow: protocol.flow(),
            reader,
            _guard: None,
        }
    }

    /// A writer sharing `guard` with its reader.
    pub(crate) fn with_guard(
        transport: Transport,
        flow: Rc<FlowState>,
        reader: StreamReader,
        guard: Rc<ConnGuard>,
    ) -> StreamWriter {
        StreamWriter {
            transport,
            flow,
            reader: Some(reader),
            _guard: Some(guard),
        }
    }

    /// The underlying transport (asyncio's `writer.transport`).
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Queues `data` for sending (`write`). Never blocks; follow with
    /// [`drain`](Self::drain).
    ///
    /// Errors: [`StreamError::InvalidState`] after
    /// [`write_eof`](Self::write_eof). Writes after the connection is
    /// lost are dropped silently (as in asyncio); `drain` reports the
    /// loss.
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

    /// Closes the writing side once the buffer is sent (`write_eof`,
    /// `shutdown(SHUT_WR)`); reading goes on.
    pub fn write_eof(&self) {
        self.transport.write_eof()
    }

    /// True: stream sockets can half-close (`can_write_eof`).
    pub fn can_write_eof(&self) -> bool {
        self.transport.can_write_eof()
    }

    /// Closes the connection after the buffered data is sent (`close`).
    /// Await [`wait_closed`](Self::wait_closed) to know when it is done.
    pub fn close(&self) {
        self.transport.close()
    }

    /// True once the connection is closing or closed (`is_closing`).
    pub fn is_closing(&self) -> bool {
        self.transport.is_closing()
    }

    /// Waits until the connection is closed: the protocol's
    /// `connection_lost` has run (`wait_closed`, Python 3.7). Fails with
    /// the error that ended the connection, if any.
    pub fn wait_closed(&self) -> impl Future<Output = Result<(), StreamError>> + 'static {
        let flow = self.flow.clone();
        poll_fn(move |cx| match flow.poll_closed(cx) {
            Poll::Ready(Some(e)) => Poll::Ready(Err(StreamError::Io(e))),
            Poll::Ready(None) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        })
    }

    /// The transport's extra information (`get_extra_info`):
    /// `"peername"`, `"sockname"` or `"socket"`.
    pub fn get_extra_info(&self, name: &str) -> Option<ExtraInfo> {
        self.transport.get_extra_info(name)
    }

    /// Waits until it is appropriate to write more (`drain`).
    ///
    /// * The reader has an exception (the connection failed): returns
    ///   it.
    /// * The connection was lost: [`StreamError::Io`] of kind
    ///   `ConnectionReset` ("Connection lost"). When the transport is
    ///   closing, `drain` first yields once to the loop so that
    ///   `connection_lost` can run, as asyncio does.
    /// * Writing is paused (the buffer went above the high-water mark):
    ///   waits for `resume_writing`, or for the connection to be lost
    ///   (then returns its error, or `Ok` after a clean close, as in
    ///   asyncio).
    /// * Otherwise returns at once.
    pub fn drain(&self) -> impl Future<Output = Result<(), StreamError>> + 'static {
        let reader = self.reader.as_ref().map(|r| r.inner.clone());
        let transport = self.transport.clone();
        let flow = self.flow.clone();
        async move {
            if let Some(reader) = reader {
                if let Some(e) = reader.exception() {
                    return Err(StreamError::Io(e));
                }
            }
            if transport.is_closing() {
                yield_now().await;
            }
            flow.drain_helper().await.map_err(StreamError::Io)
        }
    }
}

/// Returns `Pending` once after waking itself: lets every callback
/// already scheduled run first (asyncio's `sleep(0)`).
pub(crate) async fn yield_now() {
    let mut yielded = false;
    poll_fn(move |cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

impl fmt::Debug for StreamWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("StreamWriter");
        d.field("transport", &self.transport);
        if let Some(r) = &self.reader {
            d.field("reader", r);
        }
        d.finish()
    }
}

/// What `drain` returns once the connection is gone (asyncio's
/// `ConnectionResetError('Connection lost')`).
pub(crate) fn connection_lost_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "Connection lost")
}
