//! SENDMSG: send many owned chunks in one system call.
//!
//! io_uring: `IORING_OP_SENDMSG` with one iovec per chunk and
//! `MSG_NOSIGNAL` (a vanished peer is `EPIPE`, never SIGPIPE); epoll:
//! `sendmsg(2)` with `MSG_DONTWAIT` when the socket is writable. A
//! transport's writes queued during one iteration leave this way.

use std::io;
use std::os::fd::RawFd;

use bytes::Bytes;
use io_uring::{opcode, squeue, types};
use ringloop_fallback::Interest;

use super::sys::check;
use super::OpKind;
use crate::driver::Completion;

/// One `sendmsg(2)` of `chunks`; may send fewer bytes than given. The
/// chunks come back with the result.
pub(crate) struct SendMsg {
    fd: RawFd,
    chunks: Vec<Bytes>,
    /// Points into `chunks`' heap memory (which does not move when the
    /// `Vec` does).
    iovecs: Vec<libc::iovec>,
    /// Boxed: the kernel reads it at its address while the SQE is in
    /// flight.
    msg: Box<libc::msghdr>,
}

impl SendMsg {
    pub(crate) fn new(fd: RawFd, chunks: Vec<Bytes>) -> SendMsg {
        let mut iovecs: Vec<libc::iovec> = chunks
            .iter()
            .map(|c| libc::iovec {
                iov_base: c.as_ptr() as *mut libc::c_void,
                iov_len: c.len(),
            })
            .collect();
        // SAFETY: msghdr is plain data; all-zero is a valid empty header.
        let mut msg: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        msg.msg_iov = iovecs.as_mut_ptr();
        msg.msg_iovlen = iovecs.len() as _;
        SendMsg {
            fd,
            chunks,
            iovecs,
            msg,
        }
    }
}

impl OpKind for SendMsg {
    type Output = (io::Result<usize>, Vec<Bytes>);

    fn sqe(&mut self) -> squeue::Entry {
        debug_assert_eq!(self.msg.msg_iov, self.iovecs.as_mut_ptr());
        opcode::SendMsg::new(types::Fd(self.fd), &*self.msg)
            .flags(libc::MSG_NOSIGNAL as u32)
            .build()
    }

    fn readiness(&self) -> (RawFd, Interest) {
        (self.fd, Interest::WRITE)
    }

    fn attempt(&mut self) -> io::Result<u32> {
        // SAFETY: the header points at our iovecs, which point into the
        // chunks we own; the kernel only reads them.
        check(unsafe {
            libc::sendmsg(self.fd, &*self.msg, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT)
        })
    }

    fn complete(self, c: Completion) -> (io::Result<usize>, Vec<Bytes>) {
        (c.result().map(|n| n as usize), self.chunks)
    }
}
