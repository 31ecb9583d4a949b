//! The descriptor of a pipe transport: checked (pipes, sockets and
//! character devices only), switched to non-blocking mode, and switched
//! back when the transport closes it.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use crate::driver::op::sys::is_nonblocking;

/// What kind of file a pipe transport was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PipeKind {
    /// A pipe or FIFO (`S_ISFIFO`).
    Fifo,
    /// A socket (`S_ISSOCK`), used as a one-way pipe.
    Socket,
    /// A character device (`S_ISCHR`): a tty, a pty, `/dev/null`.
    CharDevice,
}

/// A descriptor a pipe transport owns.
///
/// Made by [`PipeFd::new`], which refuses regular files and directories
/// and sets `O_NONBLOCK` (as asyncio's `os.set_blocking(fd, False)`).
/// Dropping it clears `O_NONBLOCK` again if it was not set before (the
/// open file description may be shared with other processes, like a
/// terminal behind a dup of stdin), then closes the descriptor.
pub(crate) struct PipeFd {
    fd: OwnedFd,
    kind: PipeKind,
    /// `O_NONBLOCK` was clear when the transport got the descriptor.
    was_blocking: bool,
}

impl PipeFd {
    /// Checks `fd` and makes it non-blocking. A regular file, a directory
    /// (or anything else that is not a pipe, socket or character device)
    /// is `InvalidInput`; on any error `fd` is closed, never leaked.
    pub(crate) fn new(fd: OwnedFd) -> io::Result<PipeFd> {
        let raw = fd.as_raw_fd();
        // SAFETY: `st` is plain data the kernel fills; `raw` is open (we
        // own it).
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::fstat(raw, &mut st) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let kind = match st.st_mode & libc::S_IFMT {
            libc::S_IFIFO => PipeKind::Fifo,
            libc::S_IFSOCK => PipeKind::Socket,
            libc::S_IFCHR => PipeKind::CharDevice,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "Pipe transport is only for pipes, sockets and character devices",
                ))
            }
        };
        let was_blocking = !is_nonblocking(raw)?;
        if was_blocking {
            set_nonblocking(raw, true)?;
        }
        Ok(PipeFd {
            fd,
            kind,
            was_blocking,
        })
    }

    /// The kind of file.
    pub(crate) fn kind(&self) -> PipeKind {
        self.kind
    }
}

impl AsRawFd for PipeFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Drop for PipeFd {
    fn drop(&mut self) {
        if self.was_blocking {
            // Best effort: the descriptor closes right after either way.
            let _ = set_nonblocking(self.fd.as_raw_fd(), false);
        }
    }
}

/// Sets or clears `O_NONBLOCK` on `fd`'s open file description.
fn set_nonblocking(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFL only reads the descriptor's status flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    // SAFETY: F_SETFL changes only the status flags of a descriptor we
    // own.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
