//! Multishot operations: one submission, many completions.
//!
//! A [`MultiOp`] is armed once and then yields a completion each time the
//! kernel posts one (`IORING_CQE_F_MORE` set while more will follow). The
//! kernel ends it on its own (an error, a full completion ring, or a
//! cancel); the owner sees that terminal completion last and may arm a new
//! one. io_uring only: on epoll the callers use the single-shot operation,
//! whose non-blocking attempt already drains a ready descriptor.
//!
//! The entry of a multishot operation points at no memory of ours (the
//! accepted fd or the selected buffer is the result), so dropping the
//! owner early needs no parked resources: the driver cancels it and passes
//! each completion still to come to a `release` function (an accepted fd
//! is closed, a buffer goes back to its ring).

use std::io;
use std::os::fd::RawFd;
use std::task::{Context, Poll};

use io_uring::squeue;

use super::DriverRef;
use crate::driver::{Completion, SlotPoll, Wake};

/// An armed multishot operation.
pub(crate) struct MultiOp {
    driver: DriverRef,
    key: usize,
    /// The terminal completion was taken: the slot is gone.
    ended: bool,
    /// The last poll left nothing queued and the poller registered.
    armed: bool,
    /// Releases what an uncollected completion produced.
    release: Option<Box<dyn FnMut(Completion)>>,
}

impl MultiOp {
    /// Arms `entry` (which must point at no memory) on `fd`; `wake`, if
    /// given, is a [`Wake::Deliver`] to wake at every completion.
    pub(crate) fn submit(
        driver: &DriverRef,
        fd: RawFd,
        entry: squeue::Entry,
        release: Box<dyn FnMut(Completion)>,
        wake: Option<Wake>,
    ) -> io::Result<MultiOp> {
        let key = driver.borrow_mut().submit_multi(fd, entry, wake)?;
        Ok(MultiOp {
            driver: driver.clone(),
            key,
            ended: false,
            armed: false,
            release: Some(release),
        })
    }

    /// Asks the kernel to end the operation; what it already produced
    /// still comes through [`poll_next`](Self::poll_next), then a terminal
    /// `ECANCELED` (or another terminal result, if it ended first).
    pub(crate) fn cancel(&self) {
        if !self.ended {
            self.driver.borrow_mut().cancel_multi(self.key);
        }
    }

    /// Whether the last [`poll_next`](Self::poll_next) left nothing
    /// queued, with its caller registered for the next completion. Until
    /// the driver reaps again, polling would only find nothing.
    pub(crate) fn armed(&self) -> bool {
        self.armed
    }

    /// The next completion. After one with `!c.more()` the operation is
    /// over and must not be polled again.
    #[inline]
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Completion> {
        if self.ended {
            self.armed = false;
            return Poll::Ready(Completion::new(-libc::ECANCELED));
        }
        let by = crate::driver::wake::wake_by(&self.driver, cx.waker());
        let (polled, armed) = self.driver.borrow_mut().poll_multi(self.key, by);
        self.armed = armed;
        match polled {
            SlotPoll::Pending => Poll::Pending,
            SlotPoll::Ready(c) => {
                if !c.more() {
                    self.ended = true;
                }
                Poll::Ready(c)
            }
        }
    }
}

impl Drop for MultiOp {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        if let (Ok(mut d), Some(release)) = (self.driver.try_borrow_mut(), self.release.take()) {
            d.abandon_multi(self.key, release);
        }
    }
}
