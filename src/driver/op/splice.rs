//! SPLICE: move bytes between a descriptor and a pipe without copying
//! them through user space.
//!
//! io_uring: `IORING_OP_SPLICE`. `sock_sendfile` chains two of them through
//! a pipe pair: file → pipe at an offset, then pipe → socket.

use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::rc::Rc;

use io_uring::{opcode, squeue, types};
use ringloop_fallback::Interest;

use super::sys::check;
use super::OpKind;
use crate::driver::Completion;

/// `splice(fd_in, off_in, fd_out, -1, len)`; `off_in == -1` reads at the
/// current position (pipes).
pub(crate) struct Splice {
    pub(crate) fd_in: RawFd,
    pub(crate) off_in: i64,
    pub(crate) fd_out: RawFd,
    pub(crate) len: u32,
    /// Keeps the pipe alive while the kernel may use it.
    pub(crate) _keep: Option<Rc<(OwnedFd, OwnedFd)>>,
}

impl OpKind for Splice {
    type Output = io::Result<usize>;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::Splice::new(
            types::Fd(self.fd_in),
            self.off_in,
            types::Fd(self.fd_out),
            -1,
            self.len,
        )
        .flags(libc::SPLICE_F_MOVE)
        .build()
    }

    fn readiness(&self) -> (RawFd, Interest) {
        (self.fd_out, Interest::WRITE)
    }

    fn attempt(&mut self) -> io::Result<u32> {
        let mut off = self.off_in;
        let off_ptr = if off < 0 {
            std::ptr::null_mut()
        } else {
            &mut off as *mut i64
        };
        // SAFETY: `off_ptr` is null or points to our local offset.
        check(unsafe {
            libc::splice(
                self.fd_in,
                off_ptr,
                self.fd_out,
                std::ptr::null_mut(),
                self.len as usize,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
            )
        })
    }

    fn complete(self, c: Completion) -> io::Result<usize> {
        c.result().map(|n| n as usize)
    }
}
