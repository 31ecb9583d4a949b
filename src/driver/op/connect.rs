//! CONNECT: connect a socket to an address.
//!
//! io_uring: `IORING_OP_CONNECT`; the kernel waits for the handshake, so
//! there is no `EINPROGRESS` to handle.

use std::io;
use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types};
use ringloop_fallback::Interest;
use socket2::SockAddr;

use super::sys::{check, ready_now, would_block};
use super::OpKind;
use crate::driver::Completion;

/// `connect(fd, addr)`.
pub(crate) struct Connect {
    pub(crate) fd: RawFd,
    /// On the heap: the kernel reads it after submission.
    pub(crate) addr: Box<SockAddr>,
    /// Readiness path: `connect` returned `EINPROGRESS`; the outcome is
    /// read from `SO_ERROR` once the socket is writable.
    pub(crate) in_progress: bool,
}

impl Connect {
    pub(crate) fn new(fd: RawFd, addr: SockAddr) -> Connect {
        Connect {
            fd,
            addr: Box::new(addr),
            in_progress: false,
        }
    }
}

impl OpKind for Connect {
    type Output = io::Result<()>;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::Connect::new(
            types::Fd(self.fd),
            self.addr.as_ptr().cast::<libc::sockaddr>(),
            self.addr.len(),
        )
        .build()
    }

    fn readiness(&self) -> (RawFd, Interest) {
        (self.fd, Interest::WRITE)
    }

    fn attempt(&mut self) -> io::Result<u32> {
        if self.in_progress {
            // Woken spuriously before the handshake ended: keep waiting.
            if ready_now(self.fd, libc::POLLOUT)? == 0 {
                return Err(would_block());
            }
            let mut err: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: SO_ERROR writes one int into `err`, `len` says so.
            check(unsafe {
                libc::getsockopt(
                    self.fd,
                    libc::SOL_SOCKET,
                    libc::SO_ERROR,
                    (&mut err as *mut libc::c_int).cast(),
                    &mut len,
                ) as isize
            })?;
            return if err == 0 {
                Ok(0)
            } else {
                Err(io::Error::from_raw_os_error(err))
            };
        }
        // SAFETY: the address is valid for `len()` bytes.
        let rc = unsafe {
            libc::connect(
                self.fd,
                self.addr.as_ptr().cast::<libc::sockaddr>(),
                self.addr.len(),
            )
        };
        match check(rc as isize) {
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
                self.in_progress = true;
                Err(would_block())
            }
            // A Unix socket's full backlog: wait for room, then try again.
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Err(would_block()),
            other => other,
        }
    }

    fn complete(self, c: Completion) -> io::Result<()> {
        c.result().map(|_| ())
    }
}
