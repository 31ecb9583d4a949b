//! READ: read into an owned buffer at an offset (or the file position).
//!
//! io_uring: `IORING_OP_READ`. Used by the sendfile fallback and, later,
//! by read pipe transports.

use std::io;
use std::os::fd::RawFd;

use bytes::BytesMut;
use io_uring::{opcode, squeue, types};

use super::OpKind;
use crate::driver::Completion;

/// `pread(fd, n, offset)` into the spare capacity of `buf`;
/// `offset == u64::MAX` reads at the file position.
pub(crate) struct Read {
    pub(crate) fd: RawFd,
    pub(crate) buf: BytesMut,
    pub(crate) len: usize,
    pub(crate) offset: u64,
}

impl OpKind for Read {
    type Output = (io::Result<usize>, BytesMut);

    fn sqe(&mut self) -> squeue::Entry {
        self.buf.reserve(self.len);
        let spare = self.buf.spare_capacity_mut();
        let len = spare.len().min(self.len).min(u32::MAX as usize) as u32;
        opcode::Read::new(types::Fd(self.fd), spare.as_mut_ptr().cast(), len)
            .offset(self.offset)
            .build()
    }

    fn complete(mut self, c: Completion) -> Self::Output {
        match c.result() {
            Ok(n) => {
                let n = n as usize;
                let new_len = self.buf.len() + n;
                // SAFETY: the kernel wrote `n` bytes (at most the spare
                // length we passed) right after the buffer's initialised
                // part.
                unsafe { self.buf.set_len(new_len.min(self.buf.capacity())) };
                (Ok(n), self.buf)
            }
            Err(e) => (Err(e), self.buf),
        }
    }
}
