//! Operations: one file per kind, each stating what it asks the kernel.
//!
//! An [`OpKind`] owns everything the kernel may touch while the operation
//! is in flight (buffers, socket addresses, descriptors it keeps alive) and
//! states, in one place, both ways of performing it:
//!
//! - **io_uring**: [`OpKind::sqe`], the submission entry built from that
//!   owned state; the kernel completes it;
//! - **epoll**: [`OpKind::readiness`] (the descriptor and direction to wait
//!   for) and [`OpKind::attempt`] (the non-blocking system call, tried
//!   again each time the descriptor is ready).
//!
//! Both end in the same [`OpKind::complete`], so the two backends give the
//! same results and the same errors. [`Op`] is the future that submits an
//! operation and turns its completion into the caller's result.
//!
//! Ownership rule: the kernel only ever sees memory inside the `OpKind`
//! value, and that value is either inside a live [`Op`] or, once the `Op`
//! is dropped early, inside the driver's slot as [`Abandoned`] until the
//! terminal completion arrives. Heap buffers keep their address when the
//! value moves, so moving it into the slot is safe.

pub(crate) mod accept;
pub(crate) mod batch;
pub(crate) mod connect;
pub(crate) mod multi;
pub(crate) mod poll;
pub(crate) mod read;
pub(crate) mod recv;
pub(crate) mod recvmsg;
pub(crate) mod send;
pub(crate) mod sendmsg;
pub(crate) mod sendto;
pub(crate) mod splice;
pub(crate) mod sys;
pub(crate) mod waitid;
pub(crate) mod write;

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use std::os::fd::RawFd;

use io_uring::squeue;
use ringloop_fallback::Interest;

use super::{Completion, Driver, SlotPoll};

/// The driver as operations hold it.
pub(crate) type DriverRef = Rc<RefCell<Driver>>;

/// One kind of kernel operation.
pub(crate) trait OpKind: 'static {
    /// What the caller gets back.
    type Output;

    /// The io_uring submission entry (user_data is set by the driver).
    /// Called once, after the value reached its final place; every pointer
    /// in the entry points into memory this value owns on the heap.
    fn sqe(&mut self) -> squeue::Entry;

    /// The readiness path: which descriptor to wait on, for what.
    fn readiness(&self) -> (RawFd, Interest);

    /// The readiness path: performs the operation's non-blocking system
    /// call once. `Err(WouldBlock)` means "wait for readiness and try
    /// again"; anything else is the terminal result (`Ok(n)` as the kernel
    /// would have reported `n`).
    fn attempt(&mut self) -> io::Result<u32>;

    /// The readiness path: `res`, a successful attempt's result, shows
    /// that the descriptor had nothing more to read (a receive that got
    /// less than it asked for). The engine uses it only on descriptors
    /// registered as byte streams, to skip the receive that would find
    /// the socket empty.
    fn drained(&mut self, _res: u32) -> bool {
        false
    }

    /// False for operations that only wait (POLL): they do not count as
    /// using the descriptor for `add_reader`'s ownership check.
    const USES_FD: bool = true;

    /// Turns the terminal completion into the output.
    fn complete(self, c: Completion) -> Self::Output;

    /// Called instead of `complete` when the caller dropped the operation
    /// before it finished: release what the kernel produced (the default
    /// releases nothing; accept closes the new descriptor).
    fn complete_abandoned(self, _c: Completion)
    where
        Self: Sized,
    {
    }
}

/// The resources of an operation whose future was dropped in flight.
pub(crate) trait Abandoned {
    /// The terminal completion arrived: release everything.
    fn finish(self: Box<Self>, c: Completion);
}

impl<T: OpKind> Abandoned for T {
    fn finish(self: Box<Self>, c: Completion) {
        (*self).complete_abandoned(c)
    }
}

/// The future of one submitted operation.
///
/// It holds the driver, not the loop: the driver owns no futures, so an
/// operation inside a task never forms a reference cycle with the loop,
/// and a loop dropped with operations in flight is really freed.
pub(crate) struct Op<T: OpKind> {
    driver: DriverRef,
    key: usize,
    data: Option<T>,
}

impl<T: OpKind> Op<T> {
    /// Submits `data` to the loop's driver.
    pub(crate) fn submit(driver: &DriverRef, data: T) -> io::Result<Op<T>> {
        Self::try_submit(driver, data).map_err(|(e, _)| e)
    }

    /// [`try_submit`](Self::try_submit), with `wake()` registered for the
    /// completion where the backend allows (io_uring). The flag says
    /// whether it was: if not (epoll), the operation still needs a first
    /// poll, which tries its system call.
    pub(crate) fn try_submit_waking(
        driver: &DriverRef,
        mut data: T,
        wake: impl FnOnce() -> crate::driver::Wake,
    ) -> Result<(Op<T>, bool), (io::Error, T)> {
        let submitted = driver.borrow_mut().submit_waking(&mut data, wake);
        match submitted {
            Ok((key, registered)) => Ok((Self::submitted(driver, key, data), registered)),
            Err(e) => Err((e, data)),
        }
    }

    /// Submits `data`; on failure (loop closed, ring error) the kernel
    /// never saw it and it comes back with the error.
    pub(crate) fn try_submit(driver: &DriverRef, mut data: T) -> Result<Op<T>, (io::Error, T)> {
        let submitted = driver.borrow_mut().submit(&mut data);
        match submitted {
            Ok(key) => Ok(Self::submitted(driver, key, data)),
            Err(e) => Err((e, data)),
        }
    }

    /// The future of `data`, submitted under `key`.
    fn submitted(driver: &DriverRef, key: usize, data: T) -> Op<T> {
        Op {
            driver: driver.clone(),
            key,
            data: Some(data),
        }
    }
}

impl<T: OpKind> Future for Op<T> {
    type Output = T::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T::Output> {
        let this = self.get_mut();
        let data = this.data.as_mut().expect("Op polled after completion");
        let by = crate::driver::wake::wake_by(&this.driver, cx.waker());
        let polled = this.driver.borrow_mut().poll_op(this.key, data, by);
        match polled {
            SlotPoll::Pending => Poll::Pending,
            SlotPoll::Ready(c) => {
                let data = this.data.take().expect("Op polled after completion");
                Poll::Ready(data.complete(c))
            }
        }
    }
}

impl<T: OpKind> Unpin for Op<T> {}

impl<T: OpKind> Drop for Op<T> {
    fn drop(&mut self) {
        if let Some(data) = self.data.take() {
            // `abandon` completes at once if the CQE already arrived, else
            // parks the resources and submits ASYNC_CANCEL.
            if let Ok(mut d) = self.driver.try_borrow_mut() {
                let fd = data.readiness().0;
                d.abandon(self.key, fd, Box::new(data));
            } else {
                // Unreachable in practice (no op is dropped while the
                // driver is borrowed); leaking beats a use-after-free.
                std::mem::forget(data);
            }
        }
    }
}
