//! READ: read into an owned buffer at an offset (or the file position).
//!
//! io_uring: `IORING_OP_READ`. Used by the sendfile fallback and by read
//! pipe transports (offset `u64::MAX`: the file position).

use std::io;
use std::os::fd::RawFd;

use bytes::BytesMut;
use io_uring::{opcode, squeue, types};
use ringloop_fallback::Interest;

use super::sys::{check, ready_now, would_block};
use super::OpKind;
use crate::driver::Completion;

/// `pread(fd, n, offset)` into the spare capacity of `buf`;
/// `offset == u64::MAX` reads at the file position.
pub(crate) struct Read {
    pub(crate) fd: RawFd,
    pub(crate) buf: BytesMut,
    pub(crate) len: usize,
    pub(crate) offset: u64,
    /// The descriptor is known to be in non-blocking mode (pipe
    /// transports set it): the readiness path reads at once and lets
    /// `EAGAIN` say "not yet". Otherwise it polls first, so that a
    /// blocking descriptor cannot block the loop.
    pub(crate) nonblocking: bool,
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

    fn readiness(&self) -> (RawFd, Interest) {
        (self.fd, Interest::READ)
    }

    fn attempt(&mut self) -> io::Result<u32> {
        // A blocking pipe or tty that has nothing would block the loop
        // thread; a regular file always polls ready.
        if !self.nonblocking && ready_now(self.fd, libc::POLLIN)? == 0 {
            return Err(would_block());
        }
        self.buf.reserve(self.len);
        let spare = self.buf.spare_capacity_mut();
        let len = spare.len().min(self.len);
        let ptr = spare.as_mut_ptr().cast();
        // SAFETY: the kernel writes at most `len` bytes into our spare
        // capacity.
        check(unsafe {
            if self.offset == u64::MAX {
                libc::read(self.fd, ptr, len)
            } else {
                libc::pread(self.fd, ptr, len, self.offset as libc::off_t)
            }
        })
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
