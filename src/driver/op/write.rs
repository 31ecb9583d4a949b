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

use bytes::Bytes;
use io_uring::{opcode, squeue, types};
use ringloop_fallback::Interest;

use super::sys::check;
use super::OpKind;
use crate::driver::Completion;

/// One `writev(2)` of `chunks`; may write fewer bytes than given. The
/// chunks come back with the result.
pub(crate) struct WriteV {
    fd: RawFd,
    chunks: Vec<Bytes>,
    /// Points into `chunks`' heap memory (which does not move when the
    /// `Vec` does); itself on the heap, read by the kernel while the SQE
    /// is in flight.
    iovecs: Vec<libc::iovec>,
}

impl WriteV {
    /// At most `IOV_MAX` chunks (the write buffer hands out no more).
    pub(crate) fn new(fd: RawFd, chunks: Vec<Bytes>) -> WriteV {
        let iovecs = chunks
            .iter()
            .map(|c| libc::iovec {
                iov_base: c.as_ptr() as *mut libc::c_void,
                iov_len: c.len(),
            })
            .collect();
        WriteV { fd, chunks, iovecs }
    }

    /// The chunks back, for an operation that was never submitted.
    pub(crate) fn into_chunks(self) -> Vec<Bytes> {
        self.chunks
    }
}

impl OpKind for WriteV {
    type Output = (io::Result<usize>, Vec<Bytes>);

    fn sqe(&mut self) -> squeue::Entry {
        opcode::Writev::new(
            types::Fd(self.fd),
            self.iovecs.as_ptr(),
            self.iovecs.len() as u32,
        )
        .offset(u64::MAX)
        .build()
    }

    fn readiness(&self) -> (RawFd, Interest) {
        (self.fd, Interest::WRITE)
    }

    fn attempt(&mut self) -> io::Result<u32> {
        // SAFETY: the iovecs point into the chunks we own; the kernel only
        // reads them.
        check(unsafe { libc::writev(self.fd, self.iovecs.as_ptr(), self.iovecs.len() as i32) })
    }

    fn complete(self, c: Completion) -> (io::Result<usize>, Vec<Bytes>) {
        (c.result().map(|n| n as usize), self.chunks)
    }
}
