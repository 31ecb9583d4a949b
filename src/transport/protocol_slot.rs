//! A transport's protocol, as every transport (stream, datagram, pipe)
//! holds and calls it.
//!
//! The protocol is shared with the caller that created it
//! (`Rc<RefCell<P>>`), so a method call may find it borrowed (by the user
//! across an await, or because the transport is already inside one of its
//! methods): the call is then skipped, and the transport retries later.
//! A panicking method is caught and handed back as an error, for the
//! transport to report and close on (asyncio's "Fatal error:
//! protocol.data_received() call failed"). The transport holds no borrow
//! of its own state during a call, so a protocol may call back into it.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

use crate::error::Error;

/// The outcome of calling a protocol method.
pub(crate) enum Called<R> {
    Done(R),
    /// The protocol is gone, or borrowed elsewhere: nothing was called.
    Skipped,
    /// The method panicked: the panic as an error.
    Panicked(Error),
}

/// A transport's protocol until the transport lets it go.
pub(crate) struct ProtocolSlot<P: ?Sized> {
    protocol: RefCell<Option<Rc<RefCell<P>>>>,
}

impl<P: ?Sized> ProtocolSlot<P> {
    pub(crate) fn new(protocol: Rc<RefCell<P>>) -> Self {
        ProtocolSlot {
            protocol: RefCell::new(Some(protocol)),
        }
    }

    /// Calls a protocol method, catching a panic. The caller holds no
    /// borrow of its transport's state.
    #[inline]
    pub(crate) fn call<R>(&self, f: impl FnOnce(&mut P) -> R) -> Called<R> {
        let Some(protocol) = self.protocol.borrow().clone() else {
            return Called::Skipped;
        };
        let Ok(mut p) = protocol.try_borrow_mut() else {
            return Called::Skipped;
        };
        match catch_unwind(AssertUnwindSafe(|| f(&mut *p))) {
            Ok(r) => Called::Done(r),
            Err(payload) => Called::Panicked(Error::from_panic(&*payload)),
        }
    }

    /// The protocol is borrowed elsewhere: true means "try again later".
    pub(crate) fn busy(&self) -> bool {
        self.protocol
            .borrow()
            .as_ref()
            .is_some_and(|p| p.try_borrow_mut().is_err())
    }

    /// Lets the protocol go (after `connection_lost`, or at teardown):
    /// later calls are skipped. The caller drops it with no borrow held.
    pub(crate) fn take(&self) -> Option<Rc<RefCell<P>>> {
        self.protocol.borrow_mut().take()
    }
}
