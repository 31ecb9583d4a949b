//! Operations: one file per kind, each stating what it asks the kernel.
//!
//! An [`OpKind`] owns everything the kernel may touch while the operation
//! is in flight (buffers, socket addresses, descriptors it keeps alive) and
//! builds its submission entry from that owned state. [`Op`] is the future
//! that submits it and turns the completion into the caller's result.
//!
//! Ownership rule: the kernel only ever sees memory inside the `OpKind`
//! value, and that value is either inside a live [`Op`] or, once the `Op`
//! is dropped early, inside the driver's slot as [`Abandoned`] until the
//! terminal completion arrives. Heap buffers keep their address when the
//! value moves, so moving it into the slot is safe.

pub(crate) mod accept;
pub(crate) mod connect;
pub(crate) mod poll;
pub(crate) mod read;
pub(crate) mod recv;
pub(crate) mod send;
pub(crate) mod splice;

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use io_uring::squeue;

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

    /// Submits `data`; on failure (loop closed, ring error) the kernel
    /// never saw it and it comes back with the error.
    pub(crate) fn try_submit(driver: &DriverRef, mut data: T) -> Result<Op<T>, (io::Error, T)> {
        let submitted = driver.borrow_mut().submit(&mut data);
        match submitted {
            Ok(key) => Ok(Op {
                driver: driver.clone(),
                key,
                data: Some(data),
            }),
            Err(e) => Err((e, data)),
        }
    }
}

impl<T: OpKind> Future for Op<T> {
    type Output = T::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T::Output> {
        let this = self.get_mut();
        let polled = this.driver.borrow_mut().poll_slot(this.key, cx.waker());
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
                d.abandon(self.key, Box::new(data));
            } else {
                // Unreachable in practice (no op is dropped while the
                // driver is borrowed); leaking beats a use-after-free.
                std::mem::forget(data);
            }
        }
    }
}
