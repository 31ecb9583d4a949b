//! Calling `connection_lost`, one copy for every transport (stream,
//! datagram, read and write pipes).
//!
//! asyncio's `_close`/`_force_close` end with
//! `loop.call_soon(self._call_connection_lost, exc)`: the protocol hears
//! `connection_lost` from a callback of its own, never from inside the
//! call that ended the transport ([`schedule`]). Where the loop is gone
//! or closed, nothing would run that callback, so the transport is
//! released at once instead (no protocol method is called then). A close
//! that waited for the write buffer to drain calls it directly once the
//! buffer is empty ([`now`]).
//!
//! asyncio's protocol cannot be busy; ours is a `RefCell` the user may
//! hold borrowed across an await. A `connection_lost` that finds it so
//! waits for it on a short timer (not a callback per iteration, so the
//! loop can still sleep) rather than being skipped: it comes exactly
//! once, whenever the protocol is free.

use std::io;
use std::panic::Location;
use std::rc::{Rc, Weak};
use std::time::Duration;

use crate::event_loop::{EventLoop, LoopInner};

/// How long a `connection_lost` waits, and waits again, for a protocol
/// the user holds borrowed.
const BUSY_RETRY: Duration = Duration::from_millis(1);

/// A transport as `connection_lost` needs it.
pub(crate) trait LostTarget: 'static {
    /// Its loop.
    fn lost_loop(&self) -> &Weak<LoopInner>;
    /// Tells the protocol (asyncio's `_call_connection_lost`), then
    /// releases everything.
    fn call_lost(self: &Rc<Self>, error: Option<io::Error>);
    /// The protocol is borrowed elsewhere: the call must wait.
    fn protocol_busy(&self) -> bool;
    /// Releases everything without calling the protocol.
    fn teardown_now(&self);
}

/// Schedules `connection_lost(error)` for the next callback round; if
/// the loop cannot run it, tears `me` down now.
#[track_caller]
pub(crate) fn schedule<T: LostTarget>(me: &Rc<T>, error: Option<io::Error>) {
    // Outside the closure, which would report its own line.
    let at = Location::caller();
    let scheduled = me.lost_loop().upgrade().is_some_and(|l| {
        let me = me.clone();
        l.call_soon_boxed(Box::new(move || deliver(me, error, at)), at)
            .is_ok()
    });
    if !scheduled {
        me.teardown_now();
    }
}

/// Calls `connection_lost(error)` now, or once the protocol is free.
#[track_caller]
pub(crate) fn now<T: LostTarget>(me: &Rc<T>, error: Option<io::Error>) {
    deliver(me.clone(), error, Location::caller());
}

fn deliver<T: LostTarget>(me: Rc<T>, error: Option<io::Error>, at: &'static Location<'static>) {
    if !me.protocol_busy() {
        me.call_lost(error);
        return;
    }
    let Some(lp) = me.lost_loop().upgrade().map(EventLoop::from_inner) else {
        me.teardown_now();
        return;
    };
    let when = lp.time() + BUSY_RETRY.as_secs_f64();
    let again = me.clone();
    if lp
        .call_at_inner(when, move || deliver(again, error, at), at)
        .is_err()
    {
        me.teardown_now();
    }
}
