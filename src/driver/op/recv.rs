//! RECV: receive into an owned buffer.
//!
//! io_uring: `IORING_OP_RECV` into the buffer's memory; the buffer moves
//! into the operation and comes back with the result.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use io_uring::{opcode, squeue, types};
use ringloop_fallback::Interest;

use super::sys::{self, check};
use super::OpKind;
use crate::buf::IoBufMut;
use crate::driver::Completion;
use crate::transport::recv_pool::{PooledBuf, RecvPool};

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
        sys::recv(
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
            sys::recv(
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

/// A stream transport's single-shot receive into a buffer of the loop's
/// pool (see `transport::recv_pool`).
///
/// On io_uring the buffer is taken when the entry is built and owned
/// while the kernel may write to it. On epoll it is taken for the
/// system call only: a receive that would block gives it straight back,
/// so a waiting receive holds no buffer.
pub(crate) struct RecvPooled {
    pub(crate) fd: RawFd,
    pub(crate) pool: Rc<RecvPool>,
    buf: Option<Vec<u8>>,
}

impl RecvPooled {
    pub(crate) fn new(fd: RawFd, pool: Rc<RecvPool>) -> RecvPooled {
        RecvPooled {
            fd,
            pool,
            buf: None,
        }
    }
}

impl OpKind for RecvPooled {
    /// The result, and the bytes when there were some.
    type Output = (io::Result<usize>, Option<PooledBuf>);

    fn sqe(&mut self) -> squeue::Entry {
        let pool = &self.pool;
        let buf = self.buf.get_or_insert_with(|| pool.take());
        buf.clear();
        spare_sqe(self.fd, buf.spare_capacity_mut())
    }

    fn readiness(&self) -> (RawFd, Interest) {
        (self.fd, Interest::READ)
    }

    fn attempt(&mut self) -> io::Result<u32> {
        let mut buf = self.buf.take().unwrap_or_else(|| self.pool.take());
        buf.clear();
        let r = spare_recv(self.fd, buf.spare_capacity_mut());
        match r {
            Ok(n) if n > 0 => self.buf = Some(buf),
            _ => self.pool.give(buf),
        }
        r
    }

    fn drained(&mut self, res: u32) -> bool {
        // The attempt received into the spare capacity of an empty vector.
        self.buf
            .as_ref()
            .is_some_and(|b| res > 0 && (res as usize) < b.capacity())
    }

    fn complete(mut self, c: Completion) -> (io::Result<usize>, Option<PooledBuf>) {
        let r = c.result().map(|n| n as usize);
        let buf = self.buf.take();
        match (&r, buf) {
            (Ok(n), Some(mut buf)) if *n > 0 => {
                let len = (*n).min(buf.capacity());
                // SAFETY: the kernel initialised `n` bytes at the start of
                // the spare capacity (length 0); `len` <= `n` and capacity.
                unsafe { buf.set_len(len) };
                (r, Some(PooledBuf::new(buf, self.pool.clone())))
            }
            (_, buf) => {
                if let Some(buf) = buf {
                    self.pool.give(buf);
                }
                (r, None)
            }
        }
    }
}

#[cfg(test)]
mod pooled_tests {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    use super::*;

    #[test]
    fn a_receive_that_would_block_holds_no_buffer() {
        let (mut a, b) = UnixStream::pair().expect("socketpair");
        let pool = Rc::new(RecvPool::default());
        let mut op = RecvPooled::new(b.as_raw_fd(), pool.clone());
        let e = op.attempt().expect_err("nothing to read");
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(op.buf.is_none(), "the buffer went back");
        assert_eq!(pool.kept(), 1);

        a.write_all(b"ping").expect("write");
        let n = op.attempt().expect("data");
        assert_eq!(n, 4);
        assert!(op.drained(n), "less than asked for: the socket is empty");
        assert_eq!(pool.kept(), 0, "the buffer is in use");
        let (r, buf) = op.complete(Completion::new(4));
        assert_eq!(r.expect("ok"), 4);
        let buf = buf.expect("bytes");
        assert_eq!(&*buf, b"ping");
        drop(buf);
        assert_eq!(pool.kept(), 1, "delivered bytes go back on drop");
    }
}
