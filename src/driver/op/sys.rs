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

// The data path's calls, made as plain system calls. glibc's `recv`,
// `send` and `sendmsg` are thread-cancellation points: in a process with
// more than one thread each brackets its system call with
// `__pthread_enable_asynccancel`/`__pthread_disable_asynccancel`, about 30
// instructions each way, some 60 per call (an epoll echo round trip made
// two such calls: a twentieth of the loop's user-space work). Nothing here
// uses `pthread_cancel`, so `syscall(2)` performs the same operation
// without that cost; it sets `errno` the same way.

/// `recv(fd, buf, len, flags)` (as `recvfrom` without an address).
///
/// # Safety
///
/// `buf` must be valid for writes of `len` bytes.
pub(crate) unsafe fn recv(fd: RawFd, buf: *mut libc::c_void, len: usize, flags: i32) -> isize {
    // SAFETY: the caller guarantees `buf`; the address arguments are null,
    // which `recvfrom` accepts.
    unsafe {
        libc::syscall(
            libc::SYS_recvfrom,
            libc::c_long::from(fd),
            buf,
            len,
            libc::c_long::from(flags),
            std::ptr::null_mut::<libc::sockaddr>(),
            std::ptr::null_mut::<libc::socklen_t>(),
        ) as isize
    }
}

/// `send(fd, buf, len, flags)` (as `sendto` without an address).
///
/// # Safety
///
/// `buf` must be valid for reads of `len` bytes.
pub(crate) unsafe fn send(fd: RawFd, buf: *const libc::c_void, len: usize, flags: i32) -> isize {
    // SAFETY: the caller guarantees `buf`; a null address with length 0 is
    // `send`.
    unsafe {
        libc::syscall(
            libc::SYS_sendto,
            libc::c_long::from(fd),
            buf,
            len,
            libc::c_long::from(flags),
            std::ptr::null::<libc::sockaddr>(),
            0 as libc::socklen_t,
        ) as isize
    }
}

/// Sends from `buf` on the stream socket `fd` now, without blocking
/// and without `SIGPIPE`; `EINTR` is retried.
pub(crate) fn send_now(fd: RawFd, buf: &[u8]) -> io::Result<u32> {
    let len = buf.len().min(u32::MAX as usize);
    ringloop_fallback::retry_interrupted(|| {
        // SAFETY: the kernel reads at most `len` bytes of `buf`.
        check(unsafe {
            send(
                fd,
                buf.as_ptr().cast(),
                len,
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        })
    })
}

/// `sendmsg(fd, msg, flags)`.
///
/// # Safety
///
/// `msg` must point to a valid header whose iovecs are valid for reads.
pub(crate) unsafe fn sendmsg(fd: RawFd, msg: *const libc::msghdr, flags: i32) -> isize {
    // SAFETY: the caller guarantees `msg`.
    unsafe {
        libc::syscall(
            libc::SYS_sendmsg,
            libc::c_long::from(fd),
            msg,
            libc::c_long::from(flags),
        ) as isize
    }
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
