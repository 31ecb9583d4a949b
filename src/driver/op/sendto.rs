//! SENDTO: send one datagram, to an address or to the connected peer.
//!
//! io_uring: `IORING_OP_SENDMSG` with one iovec, `msg_name` set to the
//! destination (or null on a connected socket) and
//! `MSG_NOSIGNAL | MSG_DONTWAIT`; epoll: `sendmsg(2)` with the same flags
//! when the socket is writable. A datagram transport keeps several in
//! flight and links them (`IOSQE_IO_LINK`) so that they leave in order.
//!
//! Why `MSG_DONTWAIT` on io_uring: without it, a send that finds no room
//! is retried by the kernel once the socket is writable, but a datagram
//! socket may already have consumed the payload iterator before failing
//! with `EAGAIN` (an `AF_UNIX` peer's full queue), and the retry then
//! sends an empty datagram (seen on Linux 6.18). With it the kernel
//! completes the operation with `EAGAIN` instead; the transport waits
//! for `POLLOUT` and submits a fresh operation.

use std::io;
use std::os::fd::RawFd;

use bytes::Bytes;
use io_uring::{opcode, squeue, types};
use ringloop_fallback::Interest;
use socket2::SockAddr;

use super::sys::check;
use super::OpKind;
use crate::driver::Completion;

/// One `sendmsg(2)` of one datagram. The payload comes back with the
/// result (to be sent again if a broken link cancelled it).
pub(crate) struct SendTo {
    fd: RawFd,
    /// The payload; the kernel reads its heap memory (or static memory
    /// for an empty or static `Bytes`).
    data: Bytes,
    /// Boxed: the kernel reads the destination at its address.
    addr: Option<Box<SockAddr>>,
    /// Boxed: the header points at it. Points into `data`.
    iov: Box<libc::iovec>,
    /// Boxed: the kernel reads it at its address while the SQE is in
    /// flight.
    msg: Box<libc::msghdr>,
    /// io_uring: the next submitted SQE starts only after this one
    /// completes (`IOSQE_IO_LINK`).
    link: bool,
}

impl SendTo {
    /// Sends `data` to `addr`, or to the connected peer when `None`.
    pub(crate) fn new(fd: RawFd, data: Bytes, addr: Option<SockAddr>) -> SendTo {
        let addr = addr.map(Box::new);
        let mut iov = Box::new(libc::iovec {
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        });
        // SAFETY: msghdr is plain data; all-zero is a valid empty header.
        let mut msg: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        if let Some(a) = &addr {
            msg.msg_name = a.as_ptr() as *mut libc::c_void;
            msg.msg_namelen = a.len();
        }
        msg.msg_iov = &mut *iov;
        msg.msg_iovlen = 1;
        SendTo {
            fd,
            data,
            addr,
            iov,
            msg,
            link: false,
        }
    }

    /// io_uring: makes the next SQE submitted wait for this one. Only for
    /// a batch submitted back to back; the last of a batch must not be
    /// linked, or it would hold back an unrelated operation.
    pub(crate) fn link_next(&mut self) {
        self.link = true;
    }
}

impl OpKind for SendTo {
    /// Bytes sent (all of them: datagrams are never sent in part) or the
    /// error (`EAGAIN` included, on io_uring), and the payload.
    type Output = (io::Result<usize>, Bytes);

    fn sqe(&mut self) -> squeue::Entry {
        debug_assert_eq!(self.msg.msg_iov, &mut *self.iov as *mut libc::iovec);
        debug_assert_eq!(
            self.msg.msg_name as *const u8,
            self.addr
                .as_ref()
                .map_or(std::ptr::null(), |a| a.as_ptr() as *const u8)
        );
        let entry = opcode::SendMsg::new(types::Fd(self.fd), &*self.msg)
            .flags((libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) as u32)
            .build();
        if self.link {
            entry.flags(squeue::Flags::IO_LINK)
        } else {
            entry
        }
    }

    fn readiness(&self) -> (RawFd, Interest) {
        (self.fd, Interest::WRITE)
    }

    fn attempt(&mut self) -> io::Result<u32> {
        // SAFETY: the header points at our iovec (over the payload we
        // own) and, if set, at our boxed destination of `msg_namelen`
        // bytes; the kernel only reads them.
        check(unsafe {
            libc::sendmsg(self.fd, &*self.msg, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT)
        })
    }

    fn complete(self, c: Completion) -> (io::Result<usize>, Bytes) {
        (c.result().map(|n| n as usize), self.data)
    }
}
