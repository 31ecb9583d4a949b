//! What the stream and datagram transports share about errors.

use std::io;

/// True for errors a transport ends on without a report (asyncio's
/// `_FATAL_ERROR_IGNORE`: `BrokenPipeError`, `ConnectionResetError`,
/// `ConnectionAbortedError`).
pub(crate) fn is_ignored_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EPIPE | libc::ESHUTDOWN | libc::ECONNRESET | libc::ECONNABORTED)
    ) || matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}

/// A copy of `e` (`io::Error` is not `Clone`): the same OS error, or the
/// same kind and message.
pub(crate) fn clone_io_error(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}
