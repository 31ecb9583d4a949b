//! Flow control: `pause_writing`/`resume_writing` around the write
//! buffer's limits, `pause_reading`/`resume_reading`, and waiting for the
//! buffer to shrink (`drain`, `sendfile`).

use std::rc::Rc;
use std::task::Waker;

use super::StreamInner;

impl StreamInner {
    pub(crate) fn maybe_pause_protocol(self: &Rc<Self>) {
        {
            let mut st = self.state.borrow_mut();
            // A sendfile's fallback paces itself; the protocol does not
            // hear about the bytes it queues.
            if st.buf.size() <= st.limits.high || st.protocol_paused || st.sendfile_active {
                return;
            }
            st.protocol_paused = true;
        }
        if self.protocol_busy() {
            // Called from inside a protocol method (a write in
            // data_received): call pause_writing as soon as it returns.
            // A resume before then cancels it (see maybe_resume_protocol),
            // so the protocol never hears pause after its resume.
            self.state.borrow_mut().pause_deferred = true;
            let me = self.clone();
            if let Some(lp) = self.loop_() {
                let _ = lp.call_soon(move || {
                    let due = std::mem::take(&mut me.state.borrow_mut().pause_deferred);
                    if due {
                        me.call_protocol("pause_writing", |p| p.pause_writing());
                    }
                });
            }
            return;
        }
        self.call_protocol("pause_writing", |p| p.pause_writing());
    }

    #[inline(always)]
    pub(super) fn maybe_resume_protocol(self: &Rc<Self>) {
        let deferred = {
            let mut st = self.state.borrow_mut();
            if !st.protocol_paused || st.buf.size() > st.limits.low {
                return;
            }
            st.protocol_paused = false;
            std::mem::take(&mut st.pause_deferred)
        };
        if deferred {
            // The protocol was never told to pause: cancel that instead.
            return;
        }
        self.call_protocol("resume_writing", |p| p.resume_writing());
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
