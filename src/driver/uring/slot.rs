//! The lifecycle of one in-flight operation, as stored in the driver's
//! slab (the slab key is the SQE's `user_data`).

use std::collections::VecDeque;
use std::task::Waker;

use crate::driver::{Abandoned, Completion};

/// One operation's state.
pub(crate) enum Slot {
    /// Submitted; the waker of whoever polled it last.
    InFlight(Option<Waker>),
    /// The terminal CQE arrived; waiting for the future to collect it.
    Completed(Completion),
    /// The future was dropped in flight; its resources wait here for the
    /// terminal CQE.
    Abandoned(Box<dyn Abandoned>),
    /// Shutdown gave up waiting for this operation. Its resources must
    /// never be freed: the owner leaks them.
    Orphaned,
    /// A multishot operation: completions queue up until its owner takes
    /// them; `ended` once the terminal one (without `IORING_CQE_F_MORE`)
    /// arrived.
    Multi {
        ready: VecDeque<Completion>,
        waker: Option<Waker>,
        ended: bool,
    },
    /// A multishot operation whose owner went away while the kernel still
    /// runs it: every further completion is released (an accepted fd
    /// closed, a buffer given back); the terminal one frees the slot.
    MultiAbandoned(Box<dyn FnMut(Completion)>),
}

impl Slot {
    /// True while the kernel may still touch the operation's memory.
    pub(crate) fn kernel_owned(&self) -> bool {
        matches!(
            self,
            Slot::InFlight(_)
                | Slot::Abandoned(_)
                | Slot::Multi { ended: false, .. }
                | Slot::MultiAbandoned(_)
        )
    }
}
