//! What a parked operation is woken through.

use std::task::Waker;

/// A handle the engine stores for a parked operation and hands back, in
/// [`Engine::wait`](crate::Engine::wait), when the operation may proceed.
///
/// [`Waker`] is the usual one. A caller with a cheaper handle of its own
/// (ringloop wakes its own tasks by slab key, without touching the
/// waker's reference count) implements this for it.
pub trait Wakeup: Clone {
    /// True if `self` and `other` wake the same party: a waiter polled
    /// again keeps the handle it stored.
    fn same_as(&self, other: &Self) -> bool;
}

impl Wakeup for Waker {
    fn same_as(&self, other: &Self) -> bool {
        self.will_wake(other)
    }
}
