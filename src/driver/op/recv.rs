//! RECV: receive into an owned buffer.
//!
//! io_uring: `IORING_OP_RECV` into the buffer's memory; the buffer moves
//! into the operation and comes back with the result.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;

use bytes::{Bytes, BytesMut};
use io_uring::{opcode, squeue, types};
use ringloop_fallback::Interest;

use super::sys::check;
use super::OpKind;
use crate::buf::IoBufMut;
use crate::driver::Completion;

/// The RECV entry for an owned buffer's spare capacity (the op owns the
/// buffer, so the memory outlives the operation).
fn spare_sqe(fd: RawFd, spare: &mut [MaybeUninit<u8>]) -> squeue::Entry {
    let len = spare.len().min(u32::MAX as usize) as u32;
    opcode::Recv::new(types::Fd(fd), spare.as_mut_ptr().cast(), len).build()
}

/// `recv(MSG_DONTWAIT)` into an owned buffer's spare capacity.
fn spare_recv(fd: RawFd, spare: &mut [MaybeUninit<u8>]) -> io::Result<u32> {
    // SAFETY: the kernel writes at most `spare.len()` bytes into `spare`,
    // memory the caller's operation owns.
    check(unsafe {
        libc::recv(
            fd,
            spare.as_mut_ptr().cast(),
            spare.len(),
            libc::MSG_DONTWAIT,
        )
    })
}

/// `recv(fd, n)` into a fresh buffer of capacity `n`.
pub(crate) struct Recv {
    pub(crate) fd: RawFd,
    pub(crate) buf: BytesMut,
}

impl OpKind for Recv {
    type Output = io::Result<Bytes>;

    fn sqe(&mut self) -> squeue::Entry {
        spare_sqe(self.fd, self.buf.spare_capacity_mut())
    }

    fn readiness(&self) -> (RawFd, Interest) {
        (self.fd, Interest::READ)
    }

    fn attempt(&mut self) -> io::Result<u32> {
        spare_recv(self.fd, self.buf.spare_capacity_mut())
    }

    fn drained(&mut self, res: u32) -> bool {
        res > 0 && (res as usize) < self.buf.spare_capacity_mut().len()
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

    fn readiness(&self) -> (RawFd, Interest) {
        (self.fd, Interest::READ)
    }

    fn attempt(&mut self) -> io::Result<u32> {
        let slice = self.buf.as_mut_bytes();
        // SAFETY: the kernel writes at most `slice.len()` bytes into our
        // buffer.
        check(unsafe {
            libc::recv(
                self.fd,
                slice.as_mut_ptr().cast(),
                slice.len(),
                libc::MSG_DONTWAIT,
            )
        })
    }

    fn drained(&mut self, res: u32) -> bool {
        res > 0 && (res as usize) < self.buf.as_mut_bytes().len()
    }

    fn complete(self, c: Completion) -> (io::Result<usize>, B) {
        (c.result().map(|n| n as usize), self.buf)
    }
}

/// `recv` into the spare capacity of an owned `Vec` (its length is set to
/// what arrived). The memory is not zeroed first, so pages the kernel
/// never writes are never made resident: a waiting receive on an idle
/// connection costs address space, not memory.
pub(crate) struct RecvSpare {
    pub(crate) fd: RawFd,
    pub(crate) buf: Vec<u8>,
}

impl OpKind for RecvSpare {
    type Output = (io::Result<usize>, Vec<u8>);

    fn sqe(&mut self) -> squeue::Entry {
        self.buf.clear();
        spare_sqe(self.fd, self.buf.spare_capacity_mut())
    }

    fn readiness(&self) -> (RawFd, Interest) {
        (self.fd, Interest::READ)
    }

    fn attempt(&mut self) -> io::Result<u32> {
        self.buf.clear();
        spare_recv(self.fd, self.buf.spare_capacity_mut())
    }

    fn drained(&mut self, res: u32) -> bool {
        // The attempt received into the spare capacity of an empty vector.
        res > 0 && (res as usize) < self.buf.capacity()
    }

    fn complete(mut self, c: Completion) -> (io::Result<usize>, Vec<u8>) {
        let r = c.result().map(|n| n as usize);
        if let Ok(n) = r {
            // SAFETY: the kernel initialised `n` bytes from the start of
            // the spare capacity (the length was 0), and `n` is at most
            // the length we passed, which is at most the capacity.
            unsafe { self.buf.set_len(n.min(self.buf.capacity())) };
        }
        (r, self.buf)
    }
}
