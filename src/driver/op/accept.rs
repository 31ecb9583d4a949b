//! ACCEPT: take one connection from a listening socket.
//!
//! io_uring: `IORING_OP_ACCEPT` with `SOCK_NONBLOCK | SOCK_CLOEXEC`, so the
//! new socket is non-blocking and not inherited by children. If the caller
//! drops the operation and the kernel completes it anyway, the new
//! descriptor is closed (the leak tokio #7979 shipped).
//!
//! Servers on io_uring arm a *multishot* accept instead ([`multishot`],
//! kernel 5.19+): one submission that posts a completion per connection,
//! so a full accept queue drains in one loop iteration rather than one
//! connection per iteration. The kernel ends it on an error (EMFILE, say)
//! or a full completion ring; the server then re-arms.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use io_uring::{opcode, squeue, types};
use ringloop_fallback::Interest;
use socket2::{SockAddr, SockAddrStorage};

use super::sys::{check, is_nonblocking, ready_now, would_block};
use super::OpKind;
use crate::driver::Completion;

/// The multishot accept entry for listener `fd` (no peer address: the
/// transport asks for it when needed).
pub(crate) fn multishot(fd: RawFd) -> squeue::Entry {
    opcode::AcceptMulti::new(types::Fd(fd))
        .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
        .build()
}

/// A multishot accept completion as the new connection.
pub(crate) fn multishot_result(c: Completion) -> io::Result<OwnedFd> {
    c.result().map(owned)
}

/// Closes the connection of a multishot accept completion nobody took.
pub(crate) fn multishot_release(c: Completion) {
    if let Ok(fd) = c.result() {
        drop(owned(fd));
    }
}

/// `accept4(fd, ..., SOCK_NONBLOCK | SOCK_CLOEXEC)`.
pub(crate) struct Accept {
    pub(crate) fd: RawFd,
    /// Peer address storage and its length, on the heap so the kernel's
    /// pointers survive moves of this value.
    addr: Box<(SockAddrStorage, libc::socklen_t)>,
    /// Readiness path: whether the listener is in blocking mode (looked up
    /// at the first attempt). A blocking listener is polled before
    /// `accept4`, which would otherwise block the loop thread.
    blocking: Option<bool>,
}

impl Accept {
    pub(crate) fn new(fd: RawFd) -> Accept {
        let storage = SockAddrStorage::zeroed();
        let len = storage.size_of();
        Accept {
            fd,
            addr: Box::new((storage, len)),
            blocking: None,
        }
    }

    /// For a listener known to be non-blocking (our servers' own):
    /// skips the mode lookup on the readiness path.
    pub(crate) fn nonblocking(fd: RawFd) -> Accept {
        Accept {
            blocking: Some(false),
            ..Accept::new(fd)
        }
    }
}

/// Takes ownership of a descriptor the kernel just created for us.
fn owned(res: u32) -> OwnedFd {
    // SAFETY: a successful accept returns a new descriptor that nothing
    // else in the process knows of; we are its only owner.
    unsafe { OwnedFd::from_raw_fd(res as RawFd) }
}

impl OpKind for Accept {
    type Output = io::Result<(OwnedFd, SockAddr)>;

    fn sqe(&mut self) -> squeue::Entry {
        let (storage, len) = &mut *self.addr;
        let addr = (storage as *mut SockAddrStorage).cast::<libc::sockaddr>();
        opcode::Accept::new(types::Fd(self.fd), addr, len)
            .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            .build()
    }

    fn readiness(&self) -> (RawFd, Interest) {
        (self.fd, Interest::READ)
    }

    fn attempt(&mut self) -> io::Result<u32> {
        let blocking = match self.blocking {
            Some(b) => b,
            None => {
                let b = !is_nonblocking(self.fd)?;
                self.blocking = Some(b);
                b
            }
        };
        if blocking && ready_now(self.fd, libc::POLLIN)? == 0 {
            return Err(would_block());
        }
        let (storage, len) = &mut *self.addr;
        *len = storage.size_of();
        let addr = (storage as *mut SockAddrStorage).cast::<libc::sockaddr>();
        // SAFETY: `addr`/`len` describe our storage; the kernel writes at
        // most `len` bytes and updates `len`.
        check(unsafe {
            libc::accept4(self.fd, addr, len, libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) as isize
        })
    }

    fn complete(self, c: Completion) -> Self::Output {
        let fd = owned(c.result()?);
        let (storage, len) = *self.addr;
        // SAFETY: the kernel wrote a valid socket address of `len` bytes
        // (at most the storage size we gave) into `storage`.
        let addr = unsafe { SockAddr::new(storage, len) };
        Ok((fd, addr))
    }

    fn complete_abandoned(self, c: Completion) {
        if let Ok(fd) = c.result() {
            drop(owned(fd));
        }
    }
}
