//! WAITID: wait until a child (named by its pidfd) exits, and reap it.
//!
//! io_uring: `IORING_OP_WAITID` with `P_PIDFD` where the kernel has it
//! (6.7+), which waits and reaps in one operation; otherwise a single-shot
//! `IORING_OP_POLL_ADD` on the pidfd (readable once the child has
//! exited), after which `waitid(P_PIDFD, WNOHANG)` reaps it. epoll: the
//! pidfd's readiness, then the same `waitid`.
//!
//! Only the one child behind the pidfd is ever reaped: never
//! `waitpid(-1)`.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::rc::Rc;

use io_uring::{opcode, squeue, types};
use ringloop_fallback::Interest;

use super::sys::would_block;
use super::OpKind;
use crate::driver::Completion;

/// Waits for the child behind `pidfd` and reaps it; the output is its
/// return code as asyncio reports it (the exit status, or `-signum`).
/// `WouldBlock` means "not exited yet" (a poll that woke early): submit
/// again.
pub(crate) struct WaitChild {
    /// Kept open while the kernel may still look it up.
    pidfd: Rc<OwnedFd>,
    /// `IORING_OP_WAITID` rather than `POLL_ADD` + `waitid`.
    uring_waitid: bool,
    /// Where the kernel writes the child's status.
    info: Box<libc::siginfo_t>,
    /// `info` holds the reaped child's status (the readiness path's
    /// `waitid` succeeded).
    reaped: bool,
}

impl WaitChild {
    pub(crate) fn new(pidfd: Rc<OwnedFd>, uring_waitid: bool) -> WaitChild {
        WaitChild {
            pidfd,
            uring_waitid,
            // SAFETY: siginfo_t is plain data; all zeroes is a valid value
            // (and `si_pid == 0` is how WNOHANG says "nothing yet").
            info: Box::new(unsafe { std::mem::zeroed() }),
            reaped: false,
        }
    }

    /// `waitid(P_PIDFD, pidfd, WEXITED | WNOHANG)` into `info`.
    fn reap_now(&mut self) -> io::Result<u32> {
        reap_pidfd(self.pidfd.as_raw_fd(), &mut self.info)?;
        self.reaped = true;
        Ok(0)
    }
}

/// `waitid(P_PIDFD, pidfd, WEXITED | WNOHANG)`: `Err(WouldBlock)` while
/// the child runs.
pub(crate) fn reap_pidfd(pidfd: RawFd, info: &mut libc::siginfo_t) -> io::Result<()> {
    // SAFETY: `info` is a valid, writable siginfo_t; waitid only writes it.
    let rc = unsafe {
        libc::waitid(
            libc::P_PIDFD,
            pidfd as libc::id_t,
            info,
            libc::WEXITED | libc::WNOHANG,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: waitid filled `info` (or left it zeroed with WNOHANG); the
    // pid field is valid for SIGCHLD information.
    if unsafe { info.si_pid() } == 0 {
        return Err(would_block());
    }
    Ok(())
}

/// The return code in a reaped child's `siginfo_t`: the exit status, or
/// `-signum` when a signal ended it (asyncio's convention).
pub(crate) fn returncode(info: &libc::siginfo_t) -> i32 {
    // SAFETY: `info` was filled by waitid for an exited child, so the
    // status field is valid.
    let status = unsafe { info.si_status() };
    match info.si_code {
        libc::CLD_EXITED => status,
        _ => -status,
    }
}

impl OpKind for WaitChild {
    type Output = io::Result<i32>;

    fn sqe(&mut self) -> squeue::Entry {
        let fd = self.pidfd.as_raw_fd();
        if self.uring_waitid {
            let info: *mut libc::siginfo_t = &mut *self.info;
            opcode::WaitId::new(libc::P_PIDFD, fd as libc::id_t, libc::WEXITED)
                .infop(info.cast_const())
                .build()
        } else {
            opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32).build()
        }
    }

    const USES_FD: bool = false;

    fn readiness(&self) -> (RawFd, Interest) {
        (self.pidfd.as_raw_fd(), Interest::READ)
    }

    fn attempt(&mut self) -> io::Result<u32> {
        self.reap_now()
    }

    fn complete(mut self, c: Completion) -> io::Result<i32> {
        c.result()?;
        if !self.uring_waitid && !self.reaped {
            // io_uring's poll said "exited": reap it now (WouldBlock if
            // the wake-up was early).
            self.reap_now()?;
        }
        Ok(returncode(&self.info))
    }
}
