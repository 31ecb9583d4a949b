//! SENDMSG: send many owned chunks in one system call.
//!
//! io_uring: `IORING_OP_SENDMSG` with one iovec per chunk and
//! `MSG_NOSIGNAL` (a vanished peer is `EPIPE`, never SIGPIPE); epoll:
//! `sendmsg(2)` with `MSG_DONTWAIT` when the socket is writable. A
//! transport's writes queued during one iteration leave this way, in an
//! [`IoBatch`] the transport reuses from one send to the next.
//!
//! A batch of one chunk goes as `IORING_OP_SEND` / `send(2)` instead,
//! with the same flags: the kernel then copies in no header and no
//! iovec array (about 1 % of a 64-byte echo's server CPU).

use std::io;
use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types};
use ringloop_fallback::Interest;

use super::batch::IoBatch;
use super::sys::{self, check};
use super::OpKind;
use crate::driver::Completion;

/// One `sendmsg(2)` of a batch's chunks; may send fewer bytes than
/// given. The batch comes back with the result, for reuse.
pub(crate) struct SendMsg {
    fd: RawFd,
    /// Boxed: the kernel reads its header and iovecs at their addresses
    /// while the SQE is in flight.
    batch: Box<IoBatch>,
}

impl SendMsg {
    pub(crate) fn new(fd: RawFd, mut batch: Box<IoBatch>) -> SendMsg {
        batch.prepare();
        SendMsg { fd, batch }
    }

    /// The batch back, for an operation that was never submitted.
    pub(crate) fn into_batch(self) -> Box<IoBatch> {
        self.batch
    }
}

impl OpKind for SendMsg {
    type Output = (io::Result<usize>, Box<IoBatch>);

    fn sqe(&mut self) -> squeue::Entry {
        if let Some(bytes) = self.batch.single() {
            // A longer chunk is sent in part, as any send may be.
            let len = bytes.len().min(u32::MAX as usize) as u32;
            return opcode::Send::new(types::Fd(self.fd), bytes.as_ptr(), len)
                .flags(libc::MSG_NOSIGNAL)
                .build();
        }
        opcode::SendMsg::new(types::Fd(self.fd), self.batch.msg())
            .flags(libc::MSG_NOSIGNAL as u32)
            .build()
    }

    fn readiness(&self) -> (RawFd, Interest) {
        (self.fd, Interest::WRITE)
    }

    fn attempt(&mut self) -> io::Result<u32> {
        if let Some(bytes) = self.batch.single() {
            // SAFETY: reads the chunk's bytes, which the batch owns.
            return check(unsafe {
                sys::send(
                    self.fd,
                    bytes.as_ptr().cast(),
                    bytes.len().min(u32::MAX as usize),
                    libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                )
            });
        }
        // SAFETY: the header points at the batch's iovecs, which point
        // into the chunks it owns; the kernel only reads them.
        check(unsafe {
            sys::sendmsg(
                self.fd,
                self.batch.msg(),
                libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
            )
        })
    }

    fn complete(self, c: Completion) -> (io::Result<usize>, Box<IoBatch>) {
        (c.result().map(|n| n as usize), self.batch)
    }
}
