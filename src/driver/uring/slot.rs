//! The lifecycle of one in-flight operation, as stored in the driver's
//! slab (the slab key is the SQE's `user_data`).

use std::collections::VecDeque;
use std::os::fd::RawFd;

use crate::driver::{Abandoned, Completion, Wake};

/// One operation's state.
pub(crate) enum Slot {
    /// Submitted; whom to wake: whoever polled it last.
    InFlight(Option<Wake>),
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
        ready: Backlog,
        waker: Option<Wake>,
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

/// A multishot operation's completions not yet taken, oldest first.
///
/// The first is kept in the slot itself: a receive that is taken before
/// the next one arrives (every paced connection) then never touches a
/// heap buffer, one cold cache line less per completion at a thousand
/// connections. A burst spills into the queue, whose allocation stays.
///
/// Invariant: `more` is empty unless `first` is `Some`.
/// The queue is boxed, and only made when a second completion waits, so
/// that a whole slot fits one cache line ([`Entry`]).
#[derive(Default)]
pub(crate) struct Backlog {
    first: Option<Completion>,
    #[expect(
        clippy::box_collection,
        reason = "a box is 8 bytes, a VecDeque 32: the slot must fit a cache line"
    )]
    more: Option<Box<VecDeque<Completion>>>,
}

impl Backlog {
    pub(crate) fn push_back(&mut self, c: Completion) {
        if self.first.is_none() {
            self.first = Some(c);
        } else {
            self.more.get_or_insert_default().push_back(c);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    pub(crate) fn pop_front(&mut self) -> Option<Completion> {
        let c = self.first.take()?;
        self.first = self.more.as_mut().and_then(|m| m.pop_front());
        Some(c)
    }
}

/// One slab entry of the driver: an operation's slot, the generation
/// stamped into its SQE's `user_data`, and its descriptor. Aligned to a
/// cache line and no larger, so that taking a slot for a send (every
/// round trip) writes one line, not two or three.
#[repr(align(64))]
pub(crate) struct Entry {
    pub(crate) generation: u32,
    pub(crate) fd: RawFd,
    pub(crate) slot: Slot,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Entry>(), 64);
        // The slab's own entries (occupied or vacant) add nothing.
        let mut slab = slab::Slab::new();
        let keys: Vec<usize> = (0..3)
            .map(|_| {
                slab.insert(Entry {
                    generation: 0,
                    fd: -1,
                    slot: Slot::InFlight(None),
                })
            })
            .collect();
        let at = |k: usize| std::ptr::from_ref(&slab[k]) as usize;
        assert_eq!(at(keys[1]) - at(keys[0]), 64);
        assert_eq!(at(keys[0]) % 64, 0, "line-aligned");
    }

    #[test]
    fn a_backlog_is_first_in_first_out() {
        let mut b = Backlog::default();
        assert!(b.pop_front().is_none());
        for res in 0..5 {
            b.push_back(Completion::new(res));
        }
        assert_eq!(b.pop_front().map(|c| c.res), Some(0));
        b.push_back(Completion::new(5));
        let rest: Vec<i32> = std::iter::from_fn(|| b.pop_front())
            .map(|c| c.res)
            .collect();
        assert_eq!(rest, [1, 2, 3, 4, 5]);
        b.push_back(Completion::new(6));
        assert_eq!(b.pop_front().map(|c| c.res), Some(6));
        assert!(b.pop_front().is_none());
    }
}
