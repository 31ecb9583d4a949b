//! WRITE: write many owned chunks to a descriptor at its file position
//! (a pipe, a tty, a socket used as a pipe) in one system call.
//!
//! io_uring: `IORING_OP_WRITEV` with one iovec per chunk and offset `-1`
//! (the file position, which is what `writev(2)` uses; pipes and ttys
//! have none). epoll: `writev(2)` when the descriptor is writable; the
//! descriptor must be in non-blocking mode (pipe transports set
//! `O_NONBLOCK`), or a large write could block the loop.
//!
//! Unlike SENDMSG there is no `MSG_NOSIGNAL` for `write(2)`: writing to a
//! pipe whose reader is gone raises SIGPIPE as well as failing with
//! `EPIPE`. Pipe transports make sure SIGPIPE is ignored before they
//! write (see `crate::pipe`).

use std::io;
use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types};
use ringloop_fallback::Interest;

use super::batch::IoBatch;
use super::sys::check;
use super::OpKind;
use crate::driver::Completion;

/// One `writev(2)` of a batch's chunks; may write fewer bytes than
/// given. The batch comes back with the result, for reuse.
pub(crate) struct WriteV {
    fd: RawFd,
    /// Boxed: the kernel reads its iovecs while the SQE is in flight.
    batch: Box<IoBatch>,
}

impl WriteV {
    /// At most `IOV_MAX` chunks (the write buffer hands out no more).
    pub(crate) fn new(fd: RawFd, mut batch: Box<IoBatch>) -> WriteV {
        batch.prepare();
        WriteV { fd, batch }
    }

    /// The batch back, for an operation that was never submitted.
    pub(crate) fn into_batch(self) -> Box<IoBatch> {
        self.batch
    }
}

impl OpKind for WriteV {
    type Output = (io::Result<usize>, Box<IoBatch>);

    fn sqe(&mut self) -> squeue::Entry {
        let iovecs = self.batch.iovecs();
        opcode::Writev::new(types::Fd(self.fd), iovecs.as_ptr(), iovecs.len() as u32)
            .offset(u64::MAX)
            .build()
    }

    fn readiness(&self) -> (RawFd, Interest) {
        (self.fd, Interest::WRITE)
    }

    fn attempt(&mut self) -> io::Result<u32> {
        let iovecs = self.batch.iovecs();
        // SAFETY: the iovecs point into the chunks the batch owns; the
        // kernel only reads them.
        check(unsafe { libc::writev(self.fd, iovecs.as_ptr(), iovecs.len() as i32) })
    }

    fn complete(self, c: Completion) -> (io::Result<usize>, Box<IoBatch>) {
        (c.result().map(|n| n as usize), self.batch)
    }
}
