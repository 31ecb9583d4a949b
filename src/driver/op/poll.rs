//! POLL: wait once until a descriptor is ready.
//!
//! io_uring: single-shot `IORING_OP_POLL_ADD`. Used where an operation
//! reports `EAGAIN` (a splice into a full non-blocking socket) and must
//! wait for room before retrying.

use std::io;
use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types};
use ringloop_fallback::Interest;

use super::sys::{ready_now, would_block};
use super::OpKind;
use crate::driver::Completion;

/// Waits until `fd` reports any event in `mask` (`POLLIN`, `POLLOUT`);
/// returns the events.
pub(crate) struct PollOnce {
    pub(crate) fd: RawFd,
    pub(crate) mask: u32,
}

impl OpKind for PollOnce {
    type Output = io::Result<u32>;

    fn sqe(&mut self) -> squeue::Entry {
        opcode::PollAdd::new(types::Fd(self.fd), self.mask).build()
    }

    const USES_FD: bool = false;

    fn readiness(&self) -> (RawFd, Interest) {
        let read = self.mask & libc::POLLIN as u32 != 0;
        let write = self.mask & libc::POLLOUT as u32 != 0;
        (self.fd, Interest { read, write })
    }

    fn attempt(&mut self) -> io::Result<u32> {
        let mask = self.mask as i16 | libc::POLLERR | libc::POLLHUP;
        match ready_now(self.fd, mask)? {
            0 => Err(would_block()),
            events => Ok(events as u16 as u32),
        }
    }

    fn complete(self, c: Completion) -> io::Result<u32> {
        c.result()
    }
}

/// A [`PollOnce`] for readability on behalf of a system call that will
/// then use the descriptor (`net/take_when_ready.rs`): it counts as the
/// descriptor's user, so `add_reader` refuses the descriptor meanwhile
/// (`ResourceBusy`), as it would the receive or accept operation itself.
pub(crate) struct PollToUse(pub(crate) PollOnce);

impl OpKind for PollToUse {
    type Output = io::Result<u32>;

    fn sqe(&mut self) -> squeue::Entry {
        self.0.sqe()
    }

    fn readiness(&self) -> (RawFd, Interest) {
        self.0.readiness()
    }

    fn attempt(&mut self) -> io::Result<u32> {
        self.0.attempt()
    }

    fn complete(self, c: Completion) -> io::Result<u32> {
        self.0.complete(c)
    }
}
