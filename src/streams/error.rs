//! [`StreamError`]: what asyncio's stream methods raise, as a value.

use std::fmt;
use std::io;

use bytes::Bytes;

use crate::error::Error;

/// The error of a [`StreamReader`](super::StreamReader) or
/// [`StreamWriter`](super::StreamWriter) operation.
///
/// | asyncio | `StreamError` |
/// |---|---|
/// | `IncompleteReadError(partial, expected)` | [`IncompleteRead`](Self::IncompleteRead) |
/// | `LimitOverrunError(message, consumed)` | [`LimitOverrun`](Self::LimitOverrun) |
/// | `RuntimeError('... already waiting for incoming data')` | [`ConcurrentRead`](Self::ConcurrentRead) |
/// | `ValueError` (empty separator) | [`InvalidInput`](Self::InvalidInput) |
/// | `RuntimeError('Cannot call write() after write_eof()')` | [`InvalidState`](Self::InvalidState) |
/// | `OSError`, `ConnectionResetError('Connection lost')` | [`Io`](Self::Io) |
///
/// It converts into [`io::Error`] (so `?` works in functions returning
/// `io::Result`) and into [`crate::Error`]; see the `From` impls for the
/// kinds. The original `StreamError` travels inside the `io::Error` and
/// can be recovered with [`StreamError::from_io`].
///
/// # Example
///
/// ```
/// use ringloop::streams::{StreamError, StreamReader};
///
/// let reader = StreamReader::new();
/// reader.feed_data(b"abc");
/// reader.feed_eof();
/// let lp = ringloop::EventLoop::new()?;
/// let err = lp
///     .run_until_complete(async move { reader.readexactly(5).await })?
///     .unwrap_err();
/// match &err {
///     StreamError::IncompleteRead { partial, expected } => {
///         assert_eq!(&partial[..], b"abc");
///         assert_eq!(*expected, Some(5));
///     }
///     other => panic!("unexpected {other}"),
/// }
/// let io: std::io::Error = err.into();
/// assert_eq!(io.kind(), std::io::ErrorKind::UnexpectedEof);
/// assert!(StreamError::from_io(&io).is_some_and(|e| e.partial() == Some(&b"abc"[..])));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum StreamError {
    /// EOF came before the read was complete
    /// (`asyncio.IncompleteReadError`). The bytes read so far have been
    /// consumed from the buffer and are handed back here.
    IncompleteRead {
        /// What was read before EOF.
        partial: Bytes,
        /// How many bytes were asked for (`readexactly`), or `None` when
        /// a separator was expected (`readuntil`).
        expected: Option<usize>,
    },
    /// The separator was not found within the reader's limit
    /// (`asyncio.LimitOverrunError`).
    LimitOverrun {
        /// How many bytes must be consumed to get past the data examined
        /// (asyncio's `consumed`).
        consumed: usize,
        /// asyncio's message.
        message: &'static str,
    },
    /// A read had to wait while another read of the same reader was
    /// already waiting (asyncio's `RuntimeError`). Holds the method's
    /// name.
    ConcurrentRead(&'static str),
    /// A bad argument (asyncio's `ValueError`), e.g. an empty separator.
    InvalidInput(&'static str),
    /// The operation does not fit the stream's state, e.g. `write` after
    /// `write_eof`.
    InvalidState(&'static str),
    /// An I/O error: the connection's error, or `ConnectionReset`
    /// ("Connection lost") from `drain` once the connection is gone.
    Io(io::Error),
}

impl StreamError {
    /// The partial bytes of an [`IncompleteRead`](Self::IncompleteRead).
    pub fn partial(&self) -> Option<&[u8]> {
        match self {
            StreamError::IncompleteRead { partial, .. } => Some(partial),
            _ => None,
        }
    }

    /// True for [`IncompleteRead`](Self::IncompleteRead).
    pub fn is_incomplete_read(&self) -> bool {
        matches!(self, StreamError::IncompleteRead { .. })
    }

    /// True for [`LimitOverrun`](Self::LimitOverrun).
    pub fn is_limit_overrun(&self) -> bool {
        matches!(self, StreamError::LimitOverrun { .. })
    }

    /// The I/O error kind this error converts to (see
    /// `From<StreamError> for io::Error`).
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            StreamError::IncompleteRead { .. } => io::ErrorKind::UnexpectedEof,
            StreamError::LimitOverrun { .. } => io::ErrorKind::InvalidData,
            StreamError::ConcurrentRead(_) | StreamError::InvalidState(_) => io::ErrorKind::Other,
            StreamError::InvalidInput(_) => io::ErrorKind::InvalidInput,
            StreamError::Io(e) => e.kind(),
        }
    }

    /// The `StreamError` carried by an `io::Error` made from one, if
    /// any (not for [`Io`](Self::Io), which converts to its inner error).
    pub fn from_io(err: &io::Error) -> Option<&StreamError> {
        err.get_ref().and_then(|e| e.downcast_ref::<StreamError>())
    }
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::IncompleteRead {
                partial,
                expected: Some(n),
            } => write!(
                f,
                "{} bytes read on a total of {n} expected bytes",
                partial.len()
            ),
            StreamError::IncompleteRead {
                partial,
                expected: None,
            } => write!(
                f,
                "{} bytes read before EOF, separator not found",
                partial.len()
            ),
            StreamError::LimitOverrun { consumed, message } => {
                write!(f, "{message} (consumed {consumed} bytes)")
            }
            StreamError::ConcurrentRead(m) => write!(
                f,
                "{m}() called while another task is already waiting for incoming data"
            ),
            StreamError::InvalidInput(m) => write!(f, "invalid input: {m}"),
            StreamError::InvalidState(m) => write!(f, "invalid state: {m}"),
            StreamError::Io(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for StreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StreamError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for StreamError {
    fn from(e: io::Error) -> Self {
        StreamError::Io(e)
    }
}

/// `InvalidState` and `InvalidInput` keep their meaning; other loop
/// errors become [`StreamError::Io`].
impl From<Error> for StreamError {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidState(m) => StreamError::InvalidState(m),
            Error::InvalidInput(m) => StreamError::InvalidInput(m),
            other => StreamError::Io(io::Error::from(other)),
        }
    }
}

/// [`Io`](StreamError::Io) gives its inner error back. The others become
/// an `io::Error` of kind [`StreamError::kind`] (`UnexpectedEof` for
/// `IncompleteRead`, `InvalidData` for `LimitOverrun`, `InvalidInput`
/// for `InvalidInput`, `Other` otherwise) carrying the `StreamError`
/// (see [`StreamError::from_io`]).
impl From<StreamError> for io::Error {
    fn from(e: StreamError) -> Self {
        match e {
            StreamError::Io(e) => e,
            other => io::Error::new(other.kind(), other),
        }
    }
}

/// [`Io`](StreamError::Io) becomes [`Error::Io`], `InvalidState` and
/// `InvalidInput` keep their variants, the rest is [`Error::Other`]
/// (downcast the source to `StreamError` to see it).
impl From<StreamError> for Error {
    fn from(e: StreamError) -> Self {
        match e {
            StreamError::Io(e) => Error::from(e),
            StreamError::InvalidState(m) => Error::InvalidState(m),
            StreamError::InvalidInput(m) => Error::InvalidInput(m),
            other => Error::other(other),
        }
    }
}

/// A copy of an I/O error, for handing one connection error to several
/// waiters (asyncio raises the same exception object in each).
pub(crate) fn copy_io_error(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}
