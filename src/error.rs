//! The crate's error type: what asyncio raises, as values.
//!
//! asyncio reports misuse of the loop (`RuntimeError`), of futures
//! (`InvalidStateError`, `CancelledError`) and I/O failures (`OSError`) as
//! exceptions. ringloop returns them as [`Error`]. I/O operations return
//! [`std::io::Error`] directly; [`Error`] converts both ways so `?` works
//! across the boundary.

use std::fmt;
use std::io;
use std::sync::Arc;

/// Result alias used by the loop-level API.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors reported by the event loop, futures and tasks.
///
/// `Error` is `Clone` (the payloads are shared) because a future's
/// exception can be read any number of times, as in asyncio.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Error {
    /// The future or task was cancelled (`asyncio.CancelledError`).
    Cancelled,
    /// The operation does not fit the object's state
    /// (`asyncio.InvalidStateError`), e.g. setting a result twice.
    InvalidState(&'static str),
    /// The loop is closed (`RuntimeError: Event loop is closed`).
    LoopClosed,
    /// The loop is already running, or another loop runs in this thread
    /// (`RuntimeError: This event loop is already running`).
    LoopRunning,
    /// `close()` was called on a running loop
    /// (`RuntimeError: Cannot close a running event loop`).
    CloseWhileRunning,
    /// `run_until_complete` returned because the loop was stopped before
    /// the future completed (`RuntimeError: Event loop stopped before
    /// Future completed.`).
    StoppedBeforeComplete,
    /// An argument is out of range or malformed.
    InvalidInput(&'static str),
    /// There is no current event loop (`RuntimeError: There is no current
    /// event loop in thread ...`).
    NoCurrentLoop,
    /// A callback or task panicked; the payload's message.
    Panicked(Arc<str>),
    /// An I/O error.
    Io(Arc<io::Error>),
    /// Any other error, set by user code with `set_exception`.
    Other(Arc<dyn std::error::Error + Send + Sync>),
}

impl Error {
    /// Wraps any error as [`Error::Other`].
    pub fn other<E: std::error::Error + Send + Sync + 'static>(err: E) -> Self {
        Error::Other(Arc::new(err))
    }

    /// True for [`Error::Cancelled`].
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Error::Cancelled)
    }

    /// The I/O error kind, for [`Error::Io`].
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Error::Io(e) => Some(e.kind()),
            _ => None,
        }
    }

    /// Builds the error for a panic payload caught by the loop.
    pub(crate) fn from_panic(payload: &(dyn std::any::Any + Send)) -> Self {
        let msg: &str = if let Some(s) = payload.downcast_ref::<&str>() {
            s
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s
        } else {
            "panic with a non-string payload"
        };
        Error::Panicked(Arc::from(msg))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Cancelled => f.write_str("operation cancelled"),
            Error::InvalidState(m) => write!(f, "invalid state: {m}"),
            Error::LoopClosed => f.write_str("Event loop is closed"),
            Error::LoopRunning => f.write_str("This event loop is already running"),
            Error::CloseWhileRunning => f.write_str("Cannot close a running event loop"),
            Error::StoppedBeforeComplete => {
                f.write_str("Event loop stopped before Future completed.")
            }
            Error::InvalidInput(m) => write!(f, "invalid input: {m}"),
            Error::NoCurrentLoop => f.write_str("There is no current event loop in this thread"),
            Error::Panicked(m) => write!(f, "panicked: {m}"),
            Error::Io(e) => e.fmt(f),
            Error::Other(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(&**e),
            Error::Other(e) => Some(&**e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(Arc::new(e))
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Io(inner) => match Arc::try_unwrap(inner) {
                Ok(err) => err,
                Err(shared) => io::Error::new(shared.kind(), shared.to_string()),
            },
            Error::Cancelled => io::Error::new(io::ErrorKind::Interrupted, "operation cancelled"),
            Error::InvalidInput(m) => io::Error::new(io::ErrorKind::InvalidInput, m),
            other => io::Error::other(other),
        }
    }
}

/// Raised by `sock_sendfile` (and later `sendfile`) when `fallback` is
/// false and zero-copy transmission is impossible
/// (`asyncio.SendfileNotAvailableError`).
///
/// It travels inside an [`io::Error`] of kind
/// [`io::ErrorKind::Unsupported`]; test for it with
/// [`SendfileNotAvailable::is`].
#[derive(Debug, Clone)]
pub struct SendfileNotAvailable {
    reason: String,
}

impl SendfileNotAvailable {
    /// An `io::Error` carrying this error with a reason.
    pub fn error(reason: impl Into<String>) -> io::Error {
        io::Error::new(
            io::ErrorKind::Unsupported,
            SendfileNotAvailable {
                reason: reason.into(),
            },
        )
    }

    /// True if `err` carries a `SendfileNotAvailable`.
    pub fn is(err: &io::Error) -> bool {
        err.get_ref()
            .is_some_and(|e| e.downcast_ref::<SendfileNotAvailable>().is_some())
    }
}

impl fmt::Display for SendfileNotAvailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sendfile is not available: {}", self.reason)
    }
}

impl std::error::Error for SendfileNotAvailable {}
