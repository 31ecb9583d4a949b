//! `Handle` and `TimerHandle`: scheduled callbacks that can be cancelled.
//!
//! A scheduled callback is one allocation: the closure lives inline in an
//! `Rc<HandleCell<F>>`, type-erased to `Rc<dyn Callback>` for the ready
//! queue and the timer heap. Cancelling drops the closure at once (like
//! asyncio, which drops its reference to the callback), so whatever it
//! captured is released even though the entry stays in the queue until
//! the loop skips it.

use std::cell::Cell;
use std::fmt;
use std::panic::Location;
use std::rc::Rc;

/// Something the loop's ready queue can run: a scheduled callback or a
/// task step.
pub(crate) trait Callback {
    /// Runs the callback (at most once for a plain callback; a task runs
    /// one step each time it is scheduled).
    fn run(&self);
    /// True once cancelled.
    fn cancelled(&self) -> bool;
    /// Cancels; a no-op when already cancelled or run.
    fn cancel(&self);
    /// Where the callback was scheduled (for debug reports).
    fn location(&self) -> &'static Location<'static>;
    /// Timer data, for timer handles.
    fn timer(&self) -> Option<&TimerMeta> {
        None
    }
    /// A short description for error contexts and debug reports.
    fn describe(&self) -> String {
        format!("<Handle scheduled at {}>", self.location())
    }
}

/// Timer-specific state of a handle scheduled with `call_later`/`call_at`.
pub(crate) struct TimerMeta {
    pub(crate) when: f64,
    /// True while the handle is in the loop's timer heap.
    pub(crate) scheduled: Cell<bool>,
    /// The heap's count of cancelled-but-still-queued timers.
    pub(crate) cancelled_in_heap: Rc<Cell<usize>>,
}

/// The one allocation behind a scheduled callback.
pub(crate) struct HandleCell<F> {
    cancelled: Cell<bool>,
    callback: Cell<Option<F>>,
    location: &'static Location<'static>,
    timer: Option<TimerMeta>,
}

impl<F: FnOnce() + 'static> HandleCell<F> {
    pub(crate) fn new(
        f: F,
        location: &'static Location<'static>,
        timer: Option<TimerMeta>,
    ) -> Self {
        HandleCell {
            cancelled: Cell::new(false),
            callback: Cell::new(Some(f)),
            location,
            timer,
        }
    }
}

impl<F: FnOnce() + 'static> Callback for HandleCell<F> {
    fn run(&self) {
        if let Some(f) = self.callback.take() {
            f();
        }
    }

    fn cancelled(&self) -> bool {
        self.cancelled.get()
    }

    fn cancel(&self) {
        if self.cancelled.replace(true) {
            return;
        }
        if let Some(t) = &self.timer {
            if t.scheduled.get() {
                t.cancelled_in_heap.set(t.cancelled_in_heap.get() + 1);
            }
        }
        // Release what the closure captured now, as asyncio drops its
        // reference to the callback on cancel.
        drop(self.callback.take());
    }

    fn location(&self) -> &'static Location<'static> {
        self.location
    }

    fn timer(&self) -> Option<&TimerMeta> {
        self.timer.as_ref()
    }

    fn describe(&self) -> String {
        match &self.timer {
            Some(t) => format!(
                "<TimerHandle when={} scheduled at {}>",
                t.when, self.location
            ),
            None => format!("<Handle scheduled at {}>", self.location),
        }
    }
}

/// A callback scheduled with `call_soon` or `call_soon_threadsafe`
/// (`asyncio.Handle`).
///
/// Dropping the handle does not cancel the callback.
#[derive(Clone)]
pub struct Handle {
    pub(crate) inner: Rc<dyn Callback>,
}

impl Handle {
    /// Cancels the callback: it will not run. Cancelling a callback that
    /// already ran, or cancelling twice, does nothing.
    pub fn cancel(&self) {
        self.inner.cancel();
    }

    /// True if [`cancel`](Self::cancel) was called.
    pub fn cancelled(&self) -> bool {
        self.inner.cancelled()
    }

    /// The source location that scheduled the callback.
    pub fn location(&self) -> &'static Location<'static> {
        self.inner.location()
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.describe())
    }
}

/// A callback scheduled with `call_later` or `call_at`
/// (`asyncio.TimerHandle`).
#[derive(Clone)]
pub struct TimerHandle {
    pub(crate) inner: Rc<dyn Callback>,
}

impl TimerHandle {
    /// Cancels the timer. Cancelled timers are removed from the loop's
    /// queue lazily; the queue is compacted once more than half of it is
    /// cancelled.
    pub fn cancel(&self) {
        self.inner.cancel();
    }

    /// True if [`cancel`](Self::cancel) was called.
    pub fn cancelled(&self) -> bool {
        self.inner.cancelled()
    }

    /// The scheduled time, on the loop's clock ([`EventLoop::time`]).
    ///
    /// [`EventLoop::time`]: crate::EventLoop::time
    pub fn when(&self) -> f64 {
        self.inner.timer().map_or(f64::NAN, |t| t.when)
    }

    /// The source location that scheduled the timer.
    pub fn location(&self) -> &'static Location<'static> {
        self.inner.location()
    }
}

impl fmt::Debug for TimerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.describe())
    }
}
