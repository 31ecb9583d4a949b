//! Flow control: `pause_writing`/`resume_writing` around the write
//! buffer's limits, `pause_reading`/`resume_reading`, and waiting for the
//! buffer to shrink (`drain`, `sendfile`).

use std::cell::RefMut;
use std::rc::Rc;
use std::task::Waker;

use super::StreamInner;
use crate::event_loop::EventLoop;
use crate::transport::write_flow::{self, FlowControlled, WriteFlow};

impl FlowControlled for StreamInner {
    fn write_flow(&self) -> RefMut<'_, WriteFlow> {
        RefMut::map(self.state.borrow_mut(), |st| &mut st.flow)
    }
    fn in_protocol_call(&self) -> bool {
        self.protocol_busy()
    }
    fn flow_loop(&self) -> Option<EventLoop> {
        self.loop_()
    }
    fn call_pause_writing(self: &Rc<Self>) {
        self.call_protocol("pause_writing", |p| p.pause_writing());
    }
}

impl StreamInner {
    pub(crate) fn maybe_pause_protocol(self: &Rc<Self>) {
        let rose = {
            let st = &mut *self.state.borrow_mut();
            // A sendfile's fallback paces itself; the protocol does not
            // hear about the bytes it queues.
            !st.sendfile_active && st.flow.rise(st.buf.size(), &st.limits)
        };
        if rose {
            write_flow::pause(self);
        }
    }

    #[inline(always)]
    pub(super) fn maybe_resume_protocol(self: &Rc<Self>) {
        let fell = {
            let st = &mut *self.state.borrow_mut();
            st.flow.fall(st.buf.size(), &st.limits)
        };
        if fell {
            self.call_protocol("resume_writing", |p| p.resume_writing());
        }
    }

    /// Registers `waker` to be woken when the write buffer holds at most
    /// `threshold` bytes (or the transport is gone); true if it does now.
    pub(crate) fn poll_write_below(&self, threshold: usize, waker: &Waker) -> bool {
        if self.finished.get() || self.state.borrow().buf.size() <= threshold {
            return true;
        }
        self.empty_waiters.borrow_mut().push(waker.clone());
        false
    }

    /// After a send: wakes the waiters of `poll_write_below` once the
    /// buffer is at the low-water mark (each re-checks its own bound).
    #[inline(always)]
    pub(super) fn wake_space_waiters(&self) {
        if self.empty_waiters.borrow().is_empty() {
            return;
        }
        let low = {
            let st = self.state.borrow();
            st.buf.size() <= st.limits.low
        };
        if low {
            for w in self.empty_waiters.borrow_mut().drain(..) {
                w.wake();
            }
        }
    }

    pub(crate) fn pause_reading(&self) {
        let mut st = self.state.borrow_mut();
        if st.closing || st.read_paused {
            return;
        }
        st.read_paused = true;
    }

    pub(crate) fn resume_reading(&self) {
        {
            let mut st = self.state.borrow_mut();
            if st.closing || !st.read_paused {
                return;
            }
            st.read_paused = false;
        }
        self.wake_pump();
    }
}
