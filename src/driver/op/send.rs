//! SEND: send from an owned buffer.
//!
//! io_uring: `IORING_OP_SEND` with `MSG_NOSIGNAL` (a peer that went away is
//! an `EPIPE` error, never a SIGPIPE).

use std::io;
use std::os::fd::RawFd;

use bytes::Bytes;
use io_uring::{opcode, squeue, types};
use ringloop_fallback::Interest;

use super::sys::{self, check};
use super::OpKind;
use crate::driver::Completion;

/// One `send(2)` of `buf`; may send fewer bytes than given.
pub(crate) struct Send {
    pub(crate) fd: RawFd,
    pub(crate) buf: Bytes,
}

impl OpKind for Send {
    type Output = io::Result<usize>;

    fn sqe(&mut self) -> squeue::Entry {
        let len = self.buf.len().min(u32::MAX as usize) as u32;
        opcode::Send::new(types::Fd(self.fd), self.buf.as_ptr(), len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
    }

    fn readiness(&self) -> (RawFd, Interest) {
        (self.fd, Interest::WRITE)
    }

    fn attempt(&mut self) -> io::Result<u32> {
        let len = self.buf.len().min(u32::MAX as usize);
        // SAFETY: reads `len` bytes of our buffer.
        check(unsafe {
            sys::send(
                self.fd,
                self.buf.as_ptr().cast(),
                len,
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        })
    }

    fn complete(self, c: Completion) -> io::Result<usize> {
        c.result().map(|n| n as usize)
    }
}
