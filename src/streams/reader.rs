//! [`StreamReader`]: a byte buffer fed by a protocol and read by tasks
//! (asyncio's `StreamReader`).

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};

use super::buffer::RxBuffer;
use super::error::{copy_io_error, StreamError};
use super::read::{Read, ReadSome};
use super::writer::ConnGuard;
use super::DEFAULT_LIMIT;
use crate::transport::Transport;

/// Why a waiting read was woken.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Data or EOF arrived (asyncio's `waiter.set_result(None)`).
    Data,
    /// `set_exception` ran (asyncio's `waiter.set_exception(exc)`).
    Error,
}

/// The one read that waits for data (asyncio's `_waiter`).
struct Waiter {
    /// It was polled: [`State::waker`] is its task's.
    polled: bool,
    outcome: Option<Outcome>,
}

struct State {
    buffer: RxBuffer,
    eof: bool,
    waiter: Option<Waiter>,
    /// The waker of the last read that waited, kept (and woken by
    /// reference) so that the next wait of the same task, nearly always
    /// the case, neither clones nor drops one.
    waker: Option<Waker>,
    exception: Option<io::Error>,
    transport: Option<Rc<dyn ReadFlow>>,
    /// We paused the transport's reading.
    paused: bool,
}

/// What a reader pauses and resumes: a stream [`Transport`], or a
/// subprocess's read pipe (`crate::process`).
pub(crate) trait ReadFlow {
    fn pause_reading(&self);
    fn resume_reading(&self);
}

impl ReadFlow for Transport {
    fn pause_reading(&self) {
        Transport::pause_reading(self)
    }
    fn resume_reading(&self) {
        Transport::resume_reading(self)
    }
}

/// The reader's shared state. The protocol holds it directly (never a
/// [`StreamReader`] handle), so only user handles keep a connection
/// alive (see [`ConnGuard`]).
pub(crate) struct ReaderInner {
    limit: usize,
    state: RefCell<State>,
}

/// Reads from a stream connection (asyncio's `StreamReader`).
///
/// A cheap, clonable handle: clones share one buffer. Bytes arrive
/// through [`feed_data`](Self::feed_data) (called by the
/// [`StreamReaderProtocol`](super::StreamReaderProtocol)); the async
/// methods take them out. Every read that returns data consumes it from
/// the buffer; a read future dropped before it completes (cancelled)
/// consumes nothing, except [`read(-1)`](Self::read) which loses the
/// blocks it had collected, as in asyncio.
///
/// **Flow control**: when the buffer grows above twice the
/// [`limit`](Self::limit), the reader pauses the transport's reading;
/// when reads bring it down to the limit or below, reading resumes. A
/// read that must wait for data resumes reading first (so
/// `readexactly(n)` with `n` above the limit cannot deadlock).
///
/// **One waiting read at a time**: a read that finds what it needs in the
/// buffer completes at once; a read that must wait while another read of
/// the same reader waits fails with [`StreamError::ConcurrentRead`].
///
/// A reader returned by [`open_connection`](super::open_connection) or
/// handed to a [`start_server`](super::start_server) callback shares the
/// connection with its [`StreamWriter`](super::StreamWriter): when the
/// last clone of both is dropped, the connection is closed.
///
/// # Example
///
/// ```
/// use ringloop::streams::StreamReader;
///
/// let reader = StreamReader::new();
/// reader.feed_data(b"GET / HTTP/1.0\r\nHost: x\r\n\r\nbody");
/// reader.feed_eof();
/// let lp = ringloop::EventLoop::new()?;
/// let r = reader.clone();
/// let (line, rest) = lp.run_until_complete(async move {
///     let line = r.readuntil(b"\r\n").await?;
///     r.readuntil(b"\r\n\r\n").await?;
///     let rest = r.read(-1).await?;
///     Ok::<_, ringloop::streams::StreamError>((line, rest))
/// })??;
/// assert_eq!(&line[..], b"GET / HTTP/1.0\r\n");
/// assert_eq!(&rest[..], b"body");
/// assert!(reader.at_eof());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct StreamReader {
    pub(crate) inner: Rc<ReaderInner>,
    /// Closes the connection when the last reader and writer handle is
    /// gone (only for pairs made by `open_connection`/`start_server`).
    pub(crate) _guard: Option<Rc<ConnGuard>>,
}

impl Default for StreamReader {
    fn default() -> Self {
        StreamReader::new()
    }
}

/// Finds `sep` in `hay` at or after `from`.
fn find(hay: &[u8], sep: &[u8], from: usize) -> Option<usize> {
    if from >= hay.len() || hay.len() - from < sep.len() {
        return None;
    }
    let hay = &hay[from..];
    let pos = if let [b] = sep {
        hay.iter().position(|x| x == b)
    } else {
        hay.windows(sep.len()).position(|w| w == sep)
    };
    pos.map(|p| p + from)
}

impl ReaderInner {
    /// asyncio's `_maybe_resume_transport`.
    fn maybe_resume_transport(&self) {
        let transport = {
            let mut st = self.state.borrow_mut();
            if st.paused && st.buffer.len() <= self.limit {
                st.paused = false;
                st.transport.clone()
            } else {
                None
            }
        };
        if let Some(t) = transport {
            t.resume_reading();
        }
    }

    fn wakeup_waiter(st: &mut State, outcome: Outcome) {
        if let Some(w) = st.waiter.as_mut() {
            if w.outcome.is_none() {
                w.outcome = Some(outcome);
                if w.polled {
                    if let Some(waker) = &st.waker {
                        waker.wake_by_ref();
                    }
                }
            }
        }
    }

    pub(crate) fn feed_data(&self, data: &[u8]) {
        self.feed(data.len(), |b| b.push_slice(data));
    }

    /// `feed_data` of received `Bytes`: kept without copying when the
    /// buffer is empty.
    pub(crate) fn feed_bytes(&self, data: Bytes) {
        self.feed(data.len(), |b| b.push_bytes(data));
    }

    fn feed(&self, len: usize, push: impl FnOnce(&mut RxBuffer)) {
        let pause = {
            let mut st = self.state.borrow_mut();
            assert!(!st.eof, "feed_data after feed_eof");
            if len == 0 {
                return;
            }
            push(&mut st.buffer);
            Self::wakeup_waiter(&mut st, Outcome::Data);
            if !st.paused && st.buffer.len() > 2 * self.limit {
                match st.transport.clone() {
                    Some(t) => {
                        st.paused = true;
                        Some(t)
                    }
                    None => None,
                }
            } else {
                None
            }
        };
        if let Some(t) = pause {
            t.pause_reading();
        }
    }

    pub(crate) fn feed_eof(&self) {
        let mut st = self.state.borrow_mut();
        st.eof = true;
        Self::wakeup_waiter(&mut st, Outcome::Data);
    }

    pub(crate) fn set_exception(&self, error: io::Error) {
        let mut st = self.state.borrow_mut();
        st.exception = Some(error);
        Self::wakeup_waiter(&mut st, Outcome::Error);
    }

    pub(crate) fn set_transport(&self, transport: Transport) -> Result<(), StreamError> {
        self.set_read_flow(Rc::new(transport))
    }

    /// Attaches what this reader pauses and resumes.
    pub(crate) fn set_read_flow(&self, transport: Rc<dyn ReadFlow>) -> Result<(), StreamError> {
        let mut st = self.state.borrow_mut();
        if st.transport.is_some() {
            return Err(StreamError::InvalidState("Transport already set"));
        }
        st.transport = Some(transport);
        Ok(())
    }

    pub(crate) fn exception(&self) -> Option<io::Error> {
        self.state.borrow().exception.as_ref().map(copy_io_error)
    }

    pub(super) fn check_exception(&self) -> Result<(), StreamError> {
        match &self.state.borrow().exception {
            Some(e) => Err(StreamError::Io(copy_io_error(e))),
            None => Ok(()),
        }
    }

    /// asyncio's `_wait_for_data`: registers the one waiting read.
    fn wait_for_data(&self, method: &'static str) -> Result<WaitForData<'_>, StreamError> {
        self.register_waiter(method)?;
        Ok(WaitForData { reader: self })
    }

    /// The first half of `_wait_for_data`: makes the caller the one
    /// waiting read (resuming a paused transport), or fails. Whoever
    /// registers must call [`unregister_waiter`](Self::unregister_waiter)
    /// once done waiting, or when dropped while waiting.
    pub(super) fn register_waiter(&self, method: &'static str) -> Result<(), StreamError> {
        let transport = {
            let mut st = self.state.borrow_mut();
            if st.waiter.is_some() {
                return Err(StreamError::ConcurrentRead(method));
            }
            // The exception came while no read was waiting (after data
            // woke the last one): asyncio would wait forever here.
            if let Some(e) = &st.exception {
                return Err(StreamError::Io(copy_io_error(e)));
            }
            debug_assert!(!st.eof, "_wait_for_data after EOF");
            st.waiter = Some(Waiter {
                polled: false,
                outcome: None,
            });
            // Waiting for data while paused would deadlock (readexactly
            // of more than 2 * limit bytes): resume.
            if st.paused {
                st.paused = false;
                st.transport.clone()
            } else {
                None
            }
        };
        if let Some(t) = transport {
            t.resume_reading();
        }
        Ok(())
    }

    /// Polls the registered wait: ready once data, EOF or an exception
    /// arrived (the exception as the error).
    pub(super) fn poll_waiter(&self, cx: &mut Context<'_>) -> Poll<Result<(), StreamError>> {
        let mut st = self.state.borrow_mut();
        let State {
            waiter,
            exception,
            waker,
            ..
        } = &mut *st;
        let Some(w) = waiter.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        match w.outcome {
            Some(Outcome::Data) => Poll::Ready(Ok(())),
            Some(Outcome::Error) => Poll::Ready(match exception.as_ref() {
                Some(e) => Err(StreamError::Io(copy_io_error(e))),
                None => Ok(()),
            }),
            None => {
                match waker {
                    Some(old) if old.will_wake(cx.waker()) => {}
                    _ => *waker = Some(cx.waker().clone()),
                }
                w.polled = true;
                Poll::Pending
            }
        }
    }

    /// asyncio's `finally: self._waiter = None`.
    pub(super) fn unregister_waiter(&self) {
        if let Ok(mut st) = self.state.try_borrow_mut() {
            st.waiter = None;
        }
    }

    /// The start of `read(n)`: the reader's exception if set, else up to
    /// `n` bytes if any are buffered or EOF was fed (empty: EOF), else
    /// `None`: the caller must wait.
    pub(super) fn read_now(&self, n: usize) -> Result<Option<Bytes>, StreamError> {
        {
            let st = self.state.borrow();
            if let Some(e) = &st.exception {
                return Err(StreamError::Io(copy_io_error(e)));
            }
            if st.buffer.is_empty() && !st.eof {
                return Ok(None);
            }
        }
        Ok(Some(self.take(n)))
    }

    /// Takes the first `n` bytes, then maybe resumes the transport.
    pub(super) fn take(&self, n: usize) -> Bytes {
        let data = {
            let mut st = self.state.borrow_mut();
            let n = n.min(st.buffer.len());
            st.buffer.split_to(n)
        };
        self.maybe_resume_transport();
        data
    }
}

/// The future of one wait for data; unregisters itself when dropped.
struct WaitForData<'a> {
    reader: &'a ReaderInner,
}

impl Future for WaitForData<'_> {
    type Output = Result<(), StreamError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.reader.poll_waiter(cx)
    }
}

impl Drop for WaitForData<'_> {
    fn drop(&mut self) {
        self.reader.unregister_waiter();
    }
}

impl StreamReader {
    /// A reader with the default limit, [`DEFAULT_LIMIT`] (64 KiB).
    pub fn new() -> StreamReader {
        StreamReader::with_limit(DEFAULT_LIMIT)
    }

    /// A reader with the given limit: the longest line or
    /// separator-terminated chunk it accepts, and half the buffer size
    /// at which it pauses the transport.
    ///
    /// # Panics
    ///
    /// If `limit` is 0 (asyncio's `ValueError('Limit cannot be <= 0')`).
    pub fn with_limit(limit: usize) -> StreamReader {
        assert!(limit > 0, "Limit cannot be <= 0");
        StreamReader {
            inner: Rc::new(ReaderInner {
                limit,
                state: RefCell::new(State {
                    buffer: RxBuffer::default(),
                    eof: false,
                    waiter: None,
                    waker: None,
                    exception: None,
                    transport: None,
                    paused: false,
                }),
            }),
            _guard: None,
        }
    }

    /// The reader's limit.
    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// The error set by [`set_exception`](Self::set_exception) (a copy:
    /// the same kind and message, or the same OS error code), if any.
    pub fn exception(&self) -> Option<io::Error> {
        self.inner.exception()
    }

    /// Makes every later read fail with `error`; a read waiting now
    /// fails with it at once. Data still buffered is not returned any
    /// more (asyncio checks the exception first).
    pub fn set_exception(&self, error: io::Error) {
        self.inner.set_exception(error)
    }

    /// Attaches the transport whose reading this reader pauses and
    /// resumes. Done by the protocol's `connection_made`.
    /// [`StreamError::InvalidState`] if one is already set.
    pub fn set_transport(&self, transport: Transport) -> Result<(), StreamError> {
        self.inner.set_transport(transport)
    }

    /// Appends bytes to the buffer and wakes a waiting read. Pauses the
    /// transport once the buffer holds more than twice the limit. Empty
    /// data does nothing.
    ///
    /// # Panics
    ///
    /// After [`feed_eof`](Self::feed_eof) (asyncio's assertion).
    pub fn feed_data(&self, data: &[u8]) {
        self.inner.feed_data(data)
    }

    /// Marks the end of the stream and wakes a waiting read. Idempotent.
    pub fn feed_eof(&self) {
        self.inner.feed_eof()
    }

    /// True when EOF was fed and the buffer is empty.
    pub fn at_eof(&self) -> bool {
        let st = self.inner.state.borrow();
        st.eof && st.buffer.is_empty()
    }

    /// Bytes buffered and not yet read (not in asyncio, where it is the
    /// private `len(reader._buffer)`).
    pub fn buffer_len(&self) -> usize {
        self.inner.state.borrow().buffer.len()
    }

    /// Reads up to `n` bytes (`read(n)`).
    ///
    /// * `n > 0`: waits until at least one byte is buffered (or EOF),
    ///   then returns up to `n` bytes; empty means EOF.
    /// * `n == 0`: returns empty at once.
    /// * `n < 0`: reads until EOF and returns everything.
    ///
    /// Fails with the reader's exception, if set. As with an `async fn`,
    /// nothing happens until the future is polled.
    pub fn read(&self, n: isize) -> impl Future<Output = Result<Bytes, StreamError>> + '_ {
        if n >= 0 {
            return Read::Some(ReadSome::new(&self.inner, n as usize));
        }
        // asyncio reads limit-sized blocks so that the transport keeps
        // flowing, then joins them.
        Read::All(Box::pin(async move {
            let mut all = BytesMut::new();
            loop {
                let block = ReadSome::new(&self.inner, self.inner.limit).await?;
                if block.is_empty() {
                    break;
                }
                all.extend_from_slice(&block);
            }
            Ok(all.freeze())
        }))
    }

    /// Reads one line, up to and including `\n` (`readline`).
    ///
    /// At EOF, returns the partial line (empty once the stream is
    /// exhausted). If no `\n` appears within the limit, the data
    /// examined is discarded (up to and including the separator if it
    /// was found) and [`StreamError::LimitOverrun`] is returned (asyncio
    /// raises `ValueError` with the same message here).
    pub async fn readline(&self) -> Result<Bytes, StreamError> {
        const SEP: &[u8] = b"\n";
        match self.readuntil(SEP).await {
            Ok(line) => Ok(line),
            Err(StreamError::IncompleteRead { partial, .. }) => Ok(partial),
            Err(StreamError::LimitOverrun { consumed, message }) => {
                {
                    let mut st = self.inner.state.borrow_mut();
                    if st.buffer[consumed.min(st.buffer.len())..].starts_with(SEP) {
                        st.buffer.split_to(consumed + SEP.len());
                    } else {
                        st.buffer.clear();
                    }
                }
                self.inner.maybe_resume_transport();
                Err(StreamError::LimitOverrun { consumed, message })
            }
            Err(e) => Err(e),
        }
    }

    /// Reads up to and including `separator` (`readuntil`).
    ///
    /// * EOF first: the whole buffer is consumed and returned as
    ///   [`StreamError::IncompleteRead`] with `expected: None`.
    /// * The separator is not found within the limit, or is found beyond
    ///   it: [`StreamError::LimitOverrun`]; the data stays in the buffer,
    ///   `consumed` says how much to skip.
    /// * An empty separator: [`StreamError::InvalidInput`].
    pub async fn readuntil(&self, separator: &[u8]) -> Result<Bytes, StreamError> {
        let seplen = separator.len();
        if seplen == 0 {
            return Err(StreamError::InvalidInput(
                "Separator should be at least one-byte string",
            ));
        }
        self.inner.check_exception()?;
        let limit = self.inner.limit;
        // Where the next search starts: the separator cannot begin
        // before it (asyncio's `offset`).
        let mut offset = 0;
        let isep = loop {
            {
                let mut st = self.inner.state.borrow_mut();
                let buflen = st.buffer.len();
                if buflen >= offset + seplen {
                    if let Some(i) = find(&st.buffer, separator, offset) {
                        break i;
                    }
                    offset = buflen + 1 - seplen;
                    if offset > limit {
                        return Err(StreamError::LimitOverrun {
                            consumed: offset,
                            message: "Separator is not found, and chunk exceed the limit",
                        });
                    }
                }
                if st.eof {
                    let partial = st.buffer.take_all();
                    drop(st);
                    self.inner.maybe_resume_transport();
                    return Err(StreamError::IncompleteRead {
                        partial,
                        expected: None,
                    });
                }
            }
            self.inner.wait_for_data("readuntil")?.await?;
        };
        if isep > limit {
            return Err(StreamError::LimitOverrun {
                consumed: isep,
                message: "Separator is found, but chunk is longer than limit",
            });
        }
        Ok(self.inner.take(isep + seplen))
    }

    /// Reads exactly `n` bytes (`readexactly`).
    ///
    /// If EOF comes first, the buffered bytes are consumed and returned
    /// as [`StreamError::IncompleteRead`] with `expected: Some(n)`.
    pub async fn readexactly(&self, n: usize) -> Result<Bytes, StreamError> {
        self.inner.check_exception()?;
        if n == 0 {
            return Ok(Bytes::new());
        }
        loop {
            {
                let mut st = self.inner.state.borrow_mut();
                if st.buffer.len() >= n {
                    break;
                }
                if st.eof {
                    let partial = st.buffer.take_all();
                    drop(st);
                    self.inner.maybe_resume_transport();
                    return Err(StreamError::IncompleteRead {
                        partial,
                        expected: Some(n),
                    });
                }
            }
            self.inner.wait_for_data("readexactly")?.await?;
        }
        Ok(self.inner.take(n))
    }
}

impl fmt::Debug for StreamReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.inner.state.borrow();
        let mut d = f.debug_struct("StreamReader");
        d.field("buffered", &st.buffer.len());
        if st.eof {
            d.field("eof", &true);
        }
        if self.inner.limit != DEFAULT_LIMIT {
            d.field("limit", &self.inner.limit);
        }
        if let Some(e) = &st.exception {
            d.field("exception", e);
        }
        if st.waiter.is_some() {
            d.field("waiting", &true);
        }
        if st.paused {
            d.field("paused", &true);
        }
        d.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::find;

    #[test]
    fn find_separator() {
        assert_eq!(find(b"abc\n", b"\n", 0), Some(3));
        assert_eq!(find(b"abc\n", b"\n", 4), None);
        assert_eq!(find(b"a\r\nb\r\n", b"\r\n", 2), Some(4));
        assert_eq!(find(b"a\r", b"\r\n", 0), None);
        assert_eq!(find(b"", b"x", 0), None);
    }
}
