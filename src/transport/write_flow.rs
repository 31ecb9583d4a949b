//! Write flow control as the protocol hears it, one copy for every
//! transport that writes (stream, datagram, write pipe).
//!
//! asyncio's rule: `pause_writing` when the write buffer rises above the
//! high-water mark, `resume_writing` when it falls to the low-water mark,
//! strictly alternating and starting with pause. A write made from inside
//! a protocol method (a `write` in `data_received`) cannot call back into
//! the protocol, so its `pause_writing` is deferred until the method
//! returns; if the buffer drains to the low-water mark first, the resume
//! cancels the deferred pause instead of following it (the protocol
//! would otherwise hear resume, then pause, and stay paused for good).

use std::cell::RefMut;
use std::rc::Rc;

use super::write_buf::Limits;
use crate::event_loop::EventLoop;

/// Where a protocol stands in the pause/resume exchange.
#[derive(Debug, Default)]
pub(crate) struct WriteFlow {
    /// `pause_writing` was called, or is due, and not yet matched by
    /// `resume_writing`.
    paused: bool,
    /// `pause_writing` is due once the protocol method that wrote
    /// returns, and has not reached the protocol yet.
    deferred: bool,
}

impl WriteFlow {
    /// The buffer holds `size` bytes after a write: true if the protocol
    /// is now to hear `pause_writing` (see [`pause`]).
    #[inline(always)]
    pub(crate) fn rise(&mut self, size: usize, limits: &Limits) -> bool {
        if size <= limits.high || self.paused {
            return false;
        }
        self.paused = true;
        true
    }

    /// The buffer holds `size` bytes after a send: true if the protocol
    /// is now to hear `resume_writing`. A pause still deferred is
    /// cancelled instead: the protocol never heard it.
    #[inline(always)]
    pub(crate) fn fall(&mut self, size: usize, limits: &Limits) -> bool {
        if !self.paused || size > limits.low {
            return false;
        }
        self.paused = false;
        !std::mem::take(&mut self.deferred)
    }
}

/// A transport whose protocol hears `pause_writing`/`resume_writing`.
pub(crate) trait FlowControlled: 'static {
    /// The transport's flow state (borrowing the transport's state).
    fn write_flow(&self) -> RefMut<'_, WriteFlow>;
    /// The protocol is inside one of its methods (or borrowed by the
    /// user): it cannot be called now.
    fn in_protocol_call(&self) -> bool;
    /// The loop, for the deferred call; `None` once it is gone.
    fn flow_loop(&self) -> Option<EventLoop>;
    /// Calls the protocol's `pause_writing` (reporting a panic).
    fn call_pause_writing(self: &Rc<Self>);
}

/// Tells the protocol to pause, after [`WriteFlow::rise`] said so: now,
/// or, from inside a protocol method, as soon as the loop runs its next
/// callback, unless a resume cancels it first.
pub(crate) fn pause<T: FlowControlled>(me: &Rc<T>) {
    if !me.in_protocol_call() {
        me.call_pause_writing();
        return;
    }
    me.write_flow().deferred = true;
    let Some(lp) = me.flow_loop() else {
        return;
    };
    let me = me.clone();
    let _ = lp.call_soon(move || {
        let due = std::mem::take(&mut me.write_flow().deferred);
        if due {
            me.call_pause_writing();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits { high: 100, low: 10 }
    }

    #[test]
    fn pauses_once_above_high_and_resumes_at_low() {
        let mut f = WriteFlow::default();
        let l = limits();
        assert!(!f.rise(100, &l), "at high is not above it");
        assert!(f.rise(101, &l));
        assert!(!f.rise(500, &l), "already paused");
        assert!(!f.fall(11, &l), "above low");
        assert!(f.fall(10, &l));
        assert!(!f.fall(0, &l), "already resumed");
        assert!(f.rise(101, &l), "a second round");
    }

    #[test]
    fn a_resume_cancels_a_deferred_pause() {
        let mut f = WriteFlow::default();
        let l = limits();
        assert!(f.rise(101, &l));
        f.deferred = true;
        assert!(!f.fall(0, &l), "the protocol never heard the pause");
        assert!(!std::mem::take(&mut f.deferred), "nothing left to call");
        assert!(f.rise(101, &l), "pausing again works");
    }
}
