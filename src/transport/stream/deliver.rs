//! A stream transport's delivery callback (see `src/deliver.rs`).

use std::panic::Location;
use std::rc::Rc;
use std::task::{Context, Waker};

use super::StreamInner;
use crate::deliver::Deliver;
use crate::event_loop::LoopInner;
use crate::handle::Callback;

impl Deliver for StreamInner {
    fn schedule_delivery(self: Rc<Self>, lp: &LoopInner) {
        if !self.delivery_queued.replace(true) {
            lp.ready.borrow_mut().push_back(self);
        }
    }
}

/// Gives the pump's waker back if the work run with it unwinds (a bug
/// outside the protocol's methods, which `call_protocol` catches), and
/// wakes the pump task so that it, not a stuck transport, handles what is
/// left.
struct Restore<'a> {
    inner: &'a StreamInner,
    waker: Option<Waker>,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        if let Some(w) = self.waker.take() {
            self.inner.in_pump.set(false);
            if let Ok(mut slot) = self.inner.pump_waker.try_borrow_mut() {
                *slot = Some(w.clone());
            }
            w.wake();
        }
    }
}

impl StreamInner {
    /// Runs `f` with the pump's waker, outside the pump task (the
    /// delivery callback, the flush). The waker is taken out of its cell
    /// for the time rather than cloned: a clone of a task's waker is an
    /// atomic increment and, dropped, a decrement. While it is out nothing
    /// can miss it: `f` runs with `in_pump` set, so `wake_pump` and
    /// `request_send` return early, and only `teardown` would take it, to
    /// wake the pump; if the transport finished meanwhile, the pump task
    /// is woken here instead, to end. Does nothing before the pump's first
    /// run (no waker yet: that run does the work).
    pub(super) fn with_pump_waker(self: &Rc<Self>, f: impl FnOnce(&mut Context<'_>)) {
        let Some(waker) = self.pump_waker.borrow_mut().take() else {
            return;
        };
        let mut restore = Restore {
            inner: self,
            waker: Some(waker),
        };
        if let Some(waker) = restore.waker.as_ref() {
            f(&mut Context::from_waker(waker));
        }
        let Some(waker) = restore.waker.take() else {
            return;
        };
        if self.finished.get() {
            waker.wake();
            return;
        }
        *self.pump_waker.borrow_mut() = Some(waker);
    }

    /// What the pump task would do when woken by a receive, run in place.
    fn deliver_now(self: &Rc<Self>) {
        if self.finished.get() || self.in_pump.get() {
            return;
        }
        self.with_pump_waker(|cx| {
            let _ = self.pump_step(cx);
        });
    }
}

impl Callback for StreamInner {
    fn run(&self) {
        self.delivery_queued.set(false);
        if let Some(me) = self.me.upgrade() {
            me.deliver_now();
        }
    }

    fn cancelled(&self) -> bool {
        false
    }

    fn cancel(&self) {}

    fn location(&self) -> &'static Location<'static> {
        Location::caller()
    }

    fn describe(&self) -> String {
        format!("<delivery of the transport on fd {}>", self.raw_fd)
    }
}
