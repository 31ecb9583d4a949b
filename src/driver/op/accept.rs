//! ACCEPT: take one connection from a listening socket.
//!
//! io_uring: `IORING_OP_ACCEPT` with `SOCK_NONBLOCK | SOCK_CLOEXEC`, so the
//! new socket is non-blocking and not inherited by children. If the caller
//! drops the operation and the kernel completes it anyway, the new
//! descriptor is closed (the leak tokio #7979 shipped).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use io_uring::{opcode, squeue, types};
use socket2::{SockAddr, SockAddrStorage};

use super::OpKind;
use crate::driver::Completion;

/// `accept4(fd, ..., SOCK_NONBLOCK | SOCK_CLOEXEC)`.
pub(crate) struct Accept {
    pub(crate) fd: RawFd,
    /// Peer address storage and its length, on the heap so the kernel's
    /// pointers survive moves of this value.
    addr: Box<(SockAddrStorage, libc::socklen_t)>,
}

impl Accept {
    pub(crate) fn new(fd: RawFd) -> Accept {
        let storage = SockAddrStorage::zeroed();
        let len = storage.size_of();
        Accept {
            fd,
            addr: Box::new((storage, len)),
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
