//! CONNECT: connect a socket to an address.
//!
//! io_uring: `IORING_OP_CONNECT`; the kernel waits for the handshake, so
//! there is no `EINPROGRESS` to handle.

use std::io;
use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types};
use socket2::SockAddr;

use super::OpKind;
use crate::driver::Completion;

/// `connect(fd, addr)`.
pub(crate) struct Connect {
    pub(crate) fd: RawFd,
    /// On the heap: the kernel reads it after submission.
    pub(crate) addr: Box<SockAddr>,
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

    fn complete(self, c: Completion) -> io::Result<()> {
        c.result().map(|_| ())
    }
}
