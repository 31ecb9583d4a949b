//! The eventfd other threads write to wake a waiting reactor.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// A new non-blocking, close-on-exec eventfd with a zero counter.
pub fn new() -> io::Result<OwnedFd> {
    // SAFETY: plain system call, no pointers; the result is checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: eventfd returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds one to the counter, making the eventfd readable. The caller
/// guarantees `fd` is a live eventfd. A saturated counter (`EAGAIN`) is
/// still readable, so errors are ignored.
pub fn notify(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a valid u64 to the caller's eventfd.
    let _ = unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
}

/// Resets the counter to zero (a non-blocking read); returns the count.
pub fn drain(fd: RawFd) -> u64 {
    let mut count: u64 = 0;
    // SAFETY: reads at most 8 bytes into a valid, writable u64.
    let n = unsafe { libc::read(fd, (&mut count as *mut u64).cast(), 8) };
    if n == 8 {
        count
    } else {
        0
    }
}
