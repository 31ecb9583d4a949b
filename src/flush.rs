//! Sends requested outside a transport's pump leave in the same loop
//! iteration.
//!
//! A transport's writes are sent by its pump task. When the protocol
//! writes from inside a pump run (`data_received`), the pump sends before
//! it returns. A write from anywhere else (a task, a `call_soon`
//! callback: the streams API, a user coroutine) used to wake the pump,
//! which runs in the *next* iteration, after one more pass through the
//! kernel: one extra `io_uring_enter` (or `epoll_wait`) per reply, and
//! that much latency. Instead, such a transport is queued here, and the
//! loop flushes the queue once the iteration's callbacks have run, so
//! that everything they wrote leaves together (still one send per
//! transport per iteration) in the next submission.
//!
//! On io_uring a send's completion queues its transport here too
//! (`Wake::Flush`) rather than waking the pump task: the flush takes the
//! result, releases what was sent, starts the next send if more was
//! written, and wakes the pump only if something is left for it. With
//! the receive side's delivery callback (`deliver.rs`), an echo or
//! request/response server then runs no task step per request.

use std::cell::RefCell;
use std::rc::Rc;

/// Something with writes to start: a stream transport.
pub(crate) trait Flush {
    /// Starts sending what was written (called once per queueing).
    fn flush(self: Rc<Self>);

    /// Queues `self` on `queue` unless it is queued already.
    fn enqueue(self: Rc<Self>, queue: &FlushQueue);
}

/// The transports to flush at the end of the current iteration.
#[derive(Default)]
pub(crate) struct FlushQueue {
    items: RefCell<Vec<Rc<dyn Flush>>>,
    /// Reused between iterations.
    spare: RefCell<Vec<Rc<dyn Flush>>>,
}

/// Rounds of flushing per iteration: a flush may make a protocol write
/// again (`resume_writing`); what is queued after this many rounds waits
/// for the next iteration.
const ROUNDS: usize = 4;

impl FlushQueue {
    /// Queues `item` (the caller queues each transport at most once per
    /// flush).
    pub(crate) fn push(&self, item: Rc<dyn Flush>) {
        self.items.borrow_mut().push(item);
    }

    /// Flushes everything queued.
    pub(crate) fn run(&self) {
        if self.items.borrow().is_empty() {
            return;
        }
        for _ in 0..ROUNDS {
            let mut batch = std::mem::take(&mut *self.spare.borrow_mut());
            std::mem::swap(&mut batch, &mut *self.items.borrow_mut());
            if batch.is_empty() {
                *self.spare.borrow_mut() = batch;
                return;
            }
            for item in batch.drain(..) {
                item.flush();
            }
            *self.spare.borrow_mut() = batch;
        }
    }

    /// Drops everything queued (the loop is closing).
    pub(crate) fn clear(&self) {
        let items = std::mem::take(&mut *self.items.borrow_mut());
        drop(items);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    struct Counter {
        queue: Rc<FlushQueue>,
        runs: Cell<u32>,
        again: Cell<u32>,
    }

    impl Flush for Counter {
        fn flush(self: Rc<Self>) {
            self.runs.set(self.runs.get() + 1);
            if self.again.get() > 0 {
                self.again.set(self.again.get() - 1);
                let queue = self.queue.clone();
                queue.push(self);
            }
        }

        fn enqueue(self: Rc<Self>, queue: &FlushQueue) {
            queue.push(self);
        }
    }

    #[test]
    fn flushes_what_a_flush_queues_within_a_bound() {
        let queue = Rc::new(FlushQueue::default());
        let c = Rc::new(Counter {
            queue: queue.clone(),
            runs: Cell::new(0),
            again: Cell::new(10),
        });
        queue.push(c.clone());
        queue.run();
        assert_eq!(c.runs.get(), ROUNDS as u32, "bounded per iteration");
        queue.run();
        assert_eq!(c.runs.get(), 2 * ROUNDS as u32, "the rest goes next time");
        queue.clear();
        queue.run();
        assert_eq!(c.runs.get(), 2 * ROUNDS as u32);
    }
}
