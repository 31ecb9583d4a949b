//! Scheduling `connection_lost`, one copy for every transport (stream,
//! datagram, read and write pipes).
//!
//! asyncio's `_close`/`_force_close` end with
//! `loop.call_soon(self._call_connection_lost, exc)`: the protocol hears
//! `connection_lost` from a callback of its own, never from inside the
//! call that ended the transport. Where the loop is gone or closed,
//! nothing would run that callback, so the transport is released at once
//! instead (no protocol method is called then).

use std::io;
use std::panic::Location;
use std::rc::{Rc, Weak};

use crate::event_loop::LoopInner;

/// Schedules `call_lost(me, error)` on the loop `lp`; if it cannot run,
/// calls `teardown(me)` now.
#[track_caller]
pub(crate) fn schedule<T: 'static>(
    lp: &Weak<LoopInner>,
    me: &Rc<T>,
    error: Option<io::Error>,
    call_lost: fn(&Rc<T>, Option<io::Error>),
    teardown: fn(&T),
) {
    // Outside the closure, which would report its own line.
    let at = Location::caller();
    let scheduled = lp.upgrade().is_some_and(|lp| {
        let me = me.clone();
        lp.call_soon_boxed(Box::new(move || call_lost(&me, error)), at)
            .is_ok()
    });
    if !scheduled {
        teardown(me);
    }
}
