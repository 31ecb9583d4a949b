//! Small helpers for the readiness path of operations: turning a raw
//! system-call return into `io::Result`, and a zero-timeout readiness
//! check.

use std::io;
use std::os::fd::RawFd;

/// `ret` as the kernel reports it: `-1` means `errno`.
pub(crate) fn check(ret: isize) -> io::Result<u32> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as u32)
    }
}

/// The events of `fd` among `mask` right now (`poll` with a zero
/// timeout); `POLLNVAL` is `EBADF`.
pub(crate) fn ready_now(fd: RawFd, mask: i16) -> io::Result<i16> {
    let mut pfd = libc::pollfd {
        fd,
        events: mask,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if pfd.revents & libc::POLLNVAL != 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    Ok(pfd.revents)
}

/// `WouldBlock`, for "not yet".
pub(crate) fn would_block() -> io::Error {
    io::Error::from(io::ErrorKind::WouldBlock)
}

/// True if `fd` is in non-blocking mode (`O_NONBLOCK`).
pub(crate) fn is_nonblocking(fd: RawFd) -> io::Result<bool> {
    // SAFETY: F_GETFL only reads the descriptor's status flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(flags & libc::O_NONBLOCK != 0)
}
