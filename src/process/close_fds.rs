//! Marking every descriptor above the standard three close-on-exec, in
//! the forked child just before `exec` (Python's `close_fds=True`).
//!
//! Runs between `fork` and `exec`, where only async-signal-safe system
//! calls are allowed: no allocation, no locks. Descriptors are marked
//! close-on-exec rather than closed, so the standard library's own
//! error-reporting pipe survives until `exec` and a failed `exec` is
//! still reported to the parent.
//!
//! `close_range(3, ~0, CLOSE_RANGE_CLOEXEC)` (Linux 5.11+) does it in one
//! call; older kernels walk `/proc/self/fd` with raw `getdents64` into a
//! stack buffer; without `/proc`, every number below the descriptor
//! limit is tried.

use std::io;
use std::os::fd::RawFd;

/// Marks every descriptor `>= 3` close-on-exec. Async-signal-safe.
pub(crate) fn cloexec_from_3() -> io::Result<()> {
    // SAFETY: close_range takes numbers and flags, no memory.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let mut failed = None;
    let walked = for_each_open_fd(|fd| {
        if fd >= 3 {
            if let Err(e) = set_cloexec(fd) {
                failed = Some(e);
            }
        }
    });
    if walked.is_err() {
        brute_force()?;
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Clears close-on-exec on `fd`, so that the child inherits it.
pub(crate) fn clear_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_SETFD only changes the descriptor's flags.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_SETFD only changes the descriptor's flags; a descriptor
    // closed meanwhile is EBADF, which we ignore below.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EBADF) {
            return Err(e);
        }
    }
    Ok(())
}

/// Every number below the descriptor limit (capped at 2^20, the kernel's
/// default `nr_open`).
fn brute_force() -> io::Result<()> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid out-pointer.
    let max = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur.min(1 << 20) as RawFd
    } else {
        1 << 20
    };
    for fd in 3..max {
        set_cloexec(fd)?;
    }
    Ok(())
}

/// Calls `f` with each open descriptor of this process, read from
/// `/proc/self/fd` with raw system calls (no allocation). The directory's
/// own descriptor is skipped.
pub(crate) fn for_each_open_fd(mut f: impl FnMut(RawFd)) -> io::Result<()> {
    const PATH: &[u8] = b"/proc/self/fd\0";
    // SAFETY: PATH is NUL-terminated; open allocates nothing of ours.
    let dir = unsafe {
        libc::open(
            PATH.as_ptr().cast(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if dir < 0 {
        return Err(io::Error::last_os_error());
    }
    // u64 elements: linux_dirent64 records are 8-byte aligned.
    let mut buf = [0u64; 256];
    let result = loop {
        // SAFETY: `buf` is writable for its whole size in bytes.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                dir,
                buf.as_mut_ptr(),
                std::mem::size_of_val(&buf),
            )
        };
        if n < 0 {
            break Err(io::Error::last_os_error());
        }
        if n == 0 {
            break Ok(());
        }
        // SAFETY: the kernel wrote `n` bytes of records into `buf`.
        let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n as usize) };
        let mut off = 0;
        while off + 19 < bytes.len() {
            // linux_dirent64: d_ino u64, d_off i64, d_reclen u16,
            // d_type u8, then the NUL-terminated name at offset 19.
            let reclen = u16::from_ne_bytes([bytes[off + 16], bytes[off + 17]]) as usize;
            if reclen == 0 {
                break;
            }
            let end = (off + reclen).min(bytes.len());
            if let Some(fd) = parse_fd(&bytes[off + 19..end]) {
                if fd != dir {
                    f(fd);
                }
            }
            off += reclen;
        }
    };
    // SAFETY: `dir` is the descriptor opened above.
    unsafe { libc::close(dir) };
    result
}

/// The decimal number at the start of a NUL-terminated name (`.` and
/// `..` are not numbers).
fn parse_fd(name: &[u8]) -> Option<RawFd> {
    let mut n: RawFd = 0;
    let mut digits = 0;
    for &b in name {
        match b {
            b'0'..=b'9' => {
                n = n.checked_mul(10)?.checked_add(RawFd::from(b - b'0'))?;
                digits += 1;
            }
            0 => break,
            _ => return None,
        }
    }
    (digits > 0).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_lists_what_proc_lists() {
        let (_a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut walked = Vec::new();
        for_each_open_fd(|fd| walked.push(fd)).unwrap();
        // Other test threads may open and close descriptors meanwhile:
        // compare on the ones that exist throughout.
        for fd in [0, 1, 2, std::os::fd::AsRawFd::as_raw_fd(&_a)] {
            assert!(walked.contains(&fd), "{fd} missing from {walked:?}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(parse_fd(b"17\0"), Some(17));
        assert_eq!(parse_fd(b".\0"), None);
        assert_eq!(parse_fd(b"..\0"), None);
        assert_eq!(parse_fd(b"\0"), None);
    }
}
