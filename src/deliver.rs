//! Receive completions that run their transport's delivery as a plain
//! ready-queue callback instead of a step of its pump task.
//!
//! A stream transport's multishot receive (io_uring) is armed with its
//! transport registered ([`Wake::Deliver`](crate::driver::Wake::Deliver)),
//! as a send is registered for the flush (`flush.rs`); on epoll its
//! reader's watcher parks with the same registration. When a receive
//! completes (or the socket becomes readable), the loop queues the
//! transport's delivery on the ready queue (once, however many
//! completions arrived), where it runs in FIFO order with the other
//! callbacks, exactly where the pump task's step would have: the same
//! code (`StreamInner::pump_step`), with the pump's waker, so that what
//! it polls wakes the pump as before. It skips what a task
//! step costs on every round trip: finding the task by key, its
//! scheduling state, the polling record and the task's poll. The pump
//! task stays for everything else (its first run, writes before it ran,
//! resuming, closing) and ends with the connection.

use std::rc::Rc;

use crate::event_loop::LoopInner;

/// A transport whose receive completions are delivered by a callback.
pub(crate) trait Deliver {
    /// Queues the delivery on `lp`'s ready queue, unless it is queued.
    fn schedule_delivery(self: Rc<Self>, lp: &LoopInner);
}
