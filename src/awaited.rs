//! What a task is waiting on.
//!
//! asyncio cancels, with a task, only the future the task is blocked on
//! at that moment (`Task._fut_waiter`). Here a task's cancellation drops
//! its whole future, and with it every [`LoopFuture`] or [`Task`] handle
//! the future holds, including ones it polled once and then stopped
//! waiting on (the losing branch of a `select`, a shutdown signal kept
//! for later). Only the handles that returned `Pending` in the task's
//! last step are what it is blocked on; those are cancelled with it, and
//! no others.
//!
//! So every task step runs under a step number unique on its thread
//! ([`step`]), a handle records the number of the step in which it last
//! returned `Pending` ([`current_step`]), and a cancelled task drops its
//! future under [`cancelling`] with the number of its last step: a handle
//! whose number matches is cancelled by its `Drop`
//! ([`dropped_by_cancel`]).
//!
//! A handle also keeps exactly one waker in its target's listener list,
//! under an id ([`Awaiting`]): polled again it replaces that waker in
//! place, dropped while pending it removes it, so pollers that move on
//! leave nothing behind.
//!
//! [`LoopFuture`]: crate::LoopFuture
//! [`Task`]: crate::Task

use std::cell::Cell;
use std::task::{Context, Waker};

thread_local! {
    /// The task step running now (0 outside any step), and the last step
    /// number handed out on this thread: one thread-local, so that a step
    /// costs one lookup.
    static STEP: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    /// While a cancelled task drops its future: the number of its last
    /// step; 0 otherwise.
    static CANCELLING: Cell<u64> = const { Cell::new(0) };
}

/// Puts the step running before back, on return or unwind.
struct EndStep(u64);

impl Drop for EndStep {
    fn drop(&mut self) {
        let _ = STEP.try_with(|s| s.set((self.0, s.get().1)));
    }
}

/// Puts the cancellation scope back as it was, on return or unwind.
struct EndCancelling(u64);

impl Drop for EndCancelling {
    fn drop(&mut self) {
        let _ = CANCELLING.try_with(|c| c.set(self.0));
    }
}

/// Runs `f` (a task's poll) as a new step; returns the step's number
/// with `f`'s result.
#[inline]
pub(crate) fn step<R>(f: impl FnOnce() -> R) -> (u64, R) {
    let (was, n) = STEP.with(|s| {
        let (was, last) = s.get();
        s.set((last + 1, last + 1));
        (was, last + 1)
    });
    let _end = EndStep(was);
    (n, f())
}

/// The step running now (0 outside a task step): what a handle records
/// when it returns `Pending`.
pub(crate) fn current_step() -> u64 {
    STEP.try_with(|s| s.get().0).unwrap_or(0)
}

/// Runs `f` (dropping a cancelled task's future) with the handles that
/// returned `Pending` in step `last` marked as the ones to cancel.
pub(crate) fn cancelling<R>(last: u64, f: impl FnOnce() -> R) -> R {
    let _end = EndCancelling(CANCELLING.with(|c| c.replace(last)));
    f()
}

/// True if a handle that last returned `Pending` in step `pending_step`
/// is being dropped by the cancellation of the task it was blocking.
pub(crate) fn dropped_by_cancel(pending_step: u64) -> bool {
    pending_step != 0 && CANCELLING.try_with(Cell::get).unwrap_or(0) == pending_step
}

/// Whoever waits for a `LoopFuture` or a `Task`, in registration order:
/// asyncio keeps one list, and a task awaiting the future is just one
/// more done callback in it, so wake-ups and callbacks are scheduled in
/// the order they came. `C` is the target's done callback.
pub(crate) enum Listener<C> {
    /// A handle's waker, under the id the handle keeps so that it can
    /// replace or remove it.
    Waker(u64, Waker),
    /// A done callback.
    Callback(C),
}

impl<C> Listener<C> {
    /// The waker, if this is handle `id`'s.
    fn waker_of(&mut self, id: u64) -> Option<&mut Waker> {
        match self {
            Listener::Waker(i, w) if *i == id => Some(w),
            _ => None,
        }
    }
}

/// What a `LoopFuture` or `Task` handle knows about its own waiting.
#[derive(Default)]
pub(crate) struct Awaiting {
    /// The step in which it last returned `Pending` (0: not waiting).
    pending_step: Cell<u64>,
    /// The id of its waker in the target's listeners (0: none).
    waker_id: Cell<u64>,
}

/// What a dropped handle must do.
pub(crate) enum OnDrop {
    /// Nothing: it was not waiting.
    Nothing,
    /// Cancel its target: the task it blocked was cancelled.
    Cancel,
    /// Remove its waker, `id`, from the target's listeners.
    RemoveWaker(u64),
}

impl Awaiting {
    /// The handle returns `Pending`: keeps `cx`'s waker in `listeners`
    /// (replacing its own, or added under a new id from `next_id`) and
    /// records the step.
    pub(crate) fn pending<C>(
        &self,
        listeners: &mut Vec<Listener<C>>,
        next_id: &mut u64,
        cx: &Context<'_>,
    ) {
        let id = self.waker_id.get();
        let mine = if id == 0 {
            None
        } else {
            listeners.iter_mut().find_map(|l| l.waker_of(id))
        };
        match mine {
            Some(w) => {
                if !w.will_wake(cx.waker()) {
                    *w = cx.waker().clone();
                }
            }
            None => {
                *next_id += 1;
                listeners.push(Listener::Waker(*next_id, cx.waker().clone()));
                self.waker_id.set(*next_id);
            }
        }
        self.pending_step.set(current_step());
    }

    /// The handle returns `Ready`: it waits no more (its waker was taken
    /// with the others when the target completed).
    pub(crate) fn ready(&self) {
        self.pending_step.set(0);
        self.waker_id.set(0);
    }

    /// The id of the handle's waker (0: none).
    pub(crate) fn waker_id(&self) -> u64 {
        self.waker_id.get()
    }

    /// What the handle's `Drop` must do.
    pub(crate) fn on_drop(&self) -> OnDrop {
        match self.waker_id.get() {
            0 => OnDrop::Nothing,
            _ if dropped_by_cancel(self.pending_step.get()) => OnDrop::Cancel,
            id => OnDrop::RemoveWaker(id),
        }
    }
}

/// Removes handle `id`'s waker from `listeners`.
pub(crate) fn remove_waker<C>(listeners: &mut Vec<Listener<C>>, id: u64) {
    listeners.retain_mut(|l| l.waker_of(id).is_none());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_numbered_and_restored_even_on_unwind() {
        assert_eq!(current_step(), 0);
        let (a, inner) = step(current_step);
        assert_eq!(a, inner);
        let (b, _) = step(|| ());
        assert!(b > a);
        let r = std::panic::catch_unwind(|| step(|| panic!("in a step")));
        assert!(r.is_err());
        assert_eq!(current_step(), 0);
    }

    #[test]
    fn only_the_last_step_s_handles_are_cancelled() {
        let (n, _) = step(|| ());
        assert!(!dropped_by_cancel(n));
        cancelling(n, || {
            assert!(dropped_by_cancel(n));
            assert!(!dropped_by_cancel(n - 1));
            assert!(!dropped_by_cancel(0));
        });
        let r = std::panic::catch_unwind(|| cancelling(n, || panic!("in a drop")));
        assert!(r.is_err());
        assert!(!dropped_by_cancel(n));
    }
}
