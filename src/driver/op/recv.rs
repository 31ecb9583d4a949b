//! RECV: receive into an owned buffer.
//!
//! io_uring: `IORING_OP_RECV` into the buffer's memory; the buffer moves
//! into the operation and comes back with the result.

use std::io;
use std::os::fd::RawFd;

use bytes::{Bytes, BytesMut};
use io_uring::{opcode, squeue, types};

use super::OpKind;
use crate::buf::IoBufMut;
use crate::driver::Completion;

/// `recv(fd, n)` into a fresh buffer of capacity `n`.
pub(crate) struct Recv {
    pub(crate) fd: RawFd,
    pub(crate) buf: BytesMut,
}

impl OpKind for Recv {
    type Output = io::Result<Bytes>;

    fn sqe(&mut self) -> squeue::Entry {
        let spare = self.buf.spare_capacity_mut();
        let len = spare.len().min(u32::MAX as usize) as u32;
        opcode::Recv::new(types::Fd(self.fd), spare.as_mut_ptr().cast(), len).build()
    }

    fn complete(mut self, c: Completion) -> io::Result<Bytes> {
        let n = c.result()? as usize;
        // SAFETY: the kernel reports `n` bytes written into the spare
        // capacity starting at the buffer's current length (0), and `n` is
        // at most the length we passed, which is at most the capacity.
        unsafe { self.buf.set_len(n.min(self.buf.capacity())) };
        Ok(self.buf.freeze())
    }
}

/// `recv_into(fd, buf)`: receives into the whole initialised length of an
/// owned buffer and gives the buffer back.
pub(crate) struct RecvInto<B: IoBufMut> {
    pub(crate) fd: RawFd,
    pub(crate) buf: B,
}

impl<B: IoBufMut> OpKind for RecvInto<B> {
    type Output = (io::Result<usize>, B);

    fn sqe(&mut self) -> squeue::Entry {
        let slice = self.buf.as_mut_bytes();
        let len = slice.len().min(u32::MAX as usize) as u32;
        opcode::Recv::new(types::Fd(self.fd), slice.as_mut_ptr(), len).build()
    }

    fn complete(self, c: Completion) -> (io::Result<usize>, B) {
        (c.result().map(|n| n as usize), self.buf)
    }
}
