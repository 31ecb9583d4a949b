//! RECVMSG: receive one datagram and its source address.
//!
//! io_uring: `IORING_OP_RECVMSG` with one iovec over an owned buffer and
//! an owned address storage; epoll: `recvmsg(2)` with `MSG_DONTWAIT` when
//! the socket is readable. The buffer comes back with the result, so a
//! datagram transport receives into the same memory every time.

use std::io;
use std::mem::size_of;
use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types};
use ringloop_fallback::Interest;
use socket2::{SockAddr, SockAddrStorage};

use super::sys::check;
use super::OpKind;
use crate::driver::Completion;

/// One `recvmsg(2)` into `buf` (its whole length), recording the
/// sender's address. A datagram longer than the buffer is truncated, as
/// `recvfrom(max_size)` truncates it in asyncio.
pub(crate) struct RecvMsg {
    fd: RawFd,
    /// The kernel writes the payload into this heap memory (which keeps
    /// its address when the `Vec` moves).
    buf: Vec<u8>,
    /// Boxed: the kernel writes the source address here.
    name: Box<SockAddrStorage>,
    /// Boxed: the header points at it. Points into `buf`.
    iov: Box<libc::iovec>,
    /// Boxed: the kernel reads it, and writes `msg_namelen` and
    /// `msg_flags` back, at its address while the SQE is in flight.
    msg: Box<libc::msghdr>,
}

fn storage_len() -> libc::socklen_t {
    size_of::<SockAddrStorage>() as libc::socklen_t
}

impl RecvMsg {
    /// A receive into `buf`, which must not be empty to receive payload
    /// bytes (an empty buffer still receives, and truncates, a datagram).
    pub(crate) fn new(fd: RawFd, mut buf: Vec<u8>) -> RecvMsg {
        let mut name = Box::new(SockAddrStorage::zeroed());
        let mut iov = Box::new(libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        });
        // SAFETY: msghdr is plain data; all-zero is a valid empty header.
        let mut msg: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        msg.msg_name = (&mut *name as *mut SockAddrStorage).cast();
        msg.msg_namelen = storage_len();
        msg.msg_iov = &mut *iov;
        msg.msg_iovlen = 1;
        RecvMsg {
            fd,
            buf,
            name,
            iov,
            msg,
        }
    }

    /// The buffer, when the operation could not be submitted.
    pub(crate) fn into_buf(self) -> Vec<u8> {
        self.buf
    }
}

impl OpKind for RecvMsg {
    /// `(bytes, sender)` or the error; the buffer comes back either way.
    type Output = (io::Result<(usize, SockAddr)>, Vec<u8>);

    fn sqe(&mut self) -> squeue::Entry {
        debug_assert_eq!(self.msg.msg_iov, &mut *self.iov as *mut libc::iovec);
        opcode::RecvMsg::new(types::Fd(self.fd), &mut *self.msg).build()
    }

    fn readiness(&self) -> (RawFd, Interest) {
        (self.fd, Interest::READ)
    }

    fn attempt(&mut self) -> io::Result<u32> {
        // A previous attempt may have shortened it.
        self.msg.msg_namelen = storage_len();
        // SAFETY: the header points at our iovec (over `buf`'s `len`
        // bytes) and our address storage (`msg_namelen` bytes); the kernel
        // writes only within those, and the header itself is ours.
        check(unsafe { libc::recvmsg(self.fd, &mut *self.msg, libc::MSG_DONTWAIT) })
    }

    fn complete(self, c: Completion) -> (io::Result<(usize, SockAddr)>, Vec<u8>) {
        let n = match c.result() {
            Ok(n) => (n as usize).min(self.buf.len()),
            Err(e) => return (Err(e), self.buf),
        };
        let len = self.msg.msg_namelen.min(storage_len());
        let storage: SockAddrStorage = *self.name;
        // SAFETY: the kernel wrote the sender's address into the storage
        // (zeroed before) and its length into `msg_namelen`, which we cap
        // at the storage size; the family field matches what it wrote.
        let addr = unsafe { SockAddr::new(storage, len) };
        (Ok((n, addr)), self.buf)
    }
}
