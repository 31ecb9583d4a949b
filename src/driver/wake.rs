//! Whom a finished operation wakes.
//!
//! Almost every operation is polled by one of the loop's own tasks (a
//! transport's pump, a `sock_*` call, a stream). Storing that task's
//! [`Waker`] in the operation's slot means an atomic reference-count
//! increment on the waker's own allocation, cold at hundreds of
//! connections (the hottest instruction of a 64-byte echo's user time),
//! and waking it goes through the thread-safe path. So while a task is
//! polled, the loop records it here ([`polling`]); an operation polled
//! with exactly that task's waker, on that loop's driver, stores the
//! task's slab key and id instead ([`Wake::Task`]), and the loop
//! schedules it by key when the operation finishes, as the waker itself
//! would have. Any other waker (another loop's task, a combinator's
//! waker, a foreign executor) is stored as it is.
//!
//! Both backends keep [`Wake`]: io_uring in the operation's slot, epoll
//! in the engine's waiter list (the engine is generic over its wake-up
//! handle, `ringloop_fallback::Wakeup`).

use std::cell::Cell;
use std::rc::{Rc, Weak};
use std::task::{RawWakerVTable, Waker};

use super::op::DriverRef;
use crate::deliver::Deliver;
use crate::flush::Flush;

/// One of the loop's tasks: its slab key and id (a reused key has a new
/// id, so a stale entry wakes nobody).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TaskRef {
    pub(crate) key: usize,
    pub(crate) id: u64,
}

/// Whom to wake when an operation finishes.
#[derive(Clone)]
pub(crate) enum Wake {
    /// A task of the loop that owns the driver.
    Task(TaskRef),
    /// Anyone else.
    Waker(Waker),
    /// A transport whose send completed: queued for the end-of-iteration
    /// flush (`flush.rs`) instead of waking its pump task, which would
    /// only find that send done (io_uring sends, `transport/stream/send.rs`).
    Flush(Weak<dyn Flush>),
    /// A transport whose receive completed (io_uring multishot) or
    /// whose socket became readable (epoll watcher): its delivery is
    /// queued as a callback instead of waking its pump task
    /// (`deliver.rs`). Registered when the receive is armed or the
    /// watcher parks, and kept for every completion.
    Deliver(Weak<dyn Deliver>),
}

/// Whom a poll asks to wake: [`Wake`] before it is stored (no clone
/// yet).
#[derive(Clone, Copy)]
pub(crate) enum WakeBy<'a> {
    Task(TaskRef),
    Waker(&'a Waker),
    /// A transport's delivery callback (`deliver.rs`): an epoll reader's
    /// watcher registers it, as an io_uring receive does when armed.
    Deliver(&'a Weak<dyn Deliver>),
}

impl ringloop_fallback::Wakeup for Wake {
    fn same_as(&self, other: &Wake) -> bool {
        match (self, other) {
            (Wake::Task(a), Wake::Task(b)) => a == b,
            (Wake::Waker(a), Wake::Waker(b)) => a.will_wake(b),
            (Wake::Flush(a), Wake::Flush(b)) => Weak::ptr_eq(a, b),
            (Wake::Deliver(a), Wake::Deliver(b)) => Weak::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl<'a> WakeBy<'a> {
    /// The target, owned (a clone of a waker that is not a task's).
    pub(crate) fn to_wake(self) -> Wake {
        match self {
            WakeBy::Task(t) => Wake::Task(t),
            WakeBy::Waker(w) => Wake::Waker(w.clone()),
            WakeBy::Deliver(d) => Wake::Deliver(d.clone()),
        }
    }

    /// Stores this target in `slot`, unless it holds it already or holds
    /// a [`Wake::Flush`] or [`Wake::Deliver`]: an operation registered at
    /// submission for its transport's flush or delivery keeps that
    /// registration (the flush or delivery takes the result and wakes the
    /// pump if there is more to do), whoever polls it meanwhile.
    pub(crate) fn store(self, slot: &mut Option<Wake>) {
        let same = match (self, &*slot) {
            (_, Some(Wake::Flush(_) | Wake::Deliver(_))) => true,
            (WakeBy::Task(t), Some(Wake::Task(old))) => t == *old,
            (WakeBy::Waker(w), Some(Wake::Waker(old))) => old.will_wake(w),
            _ => false,
        };
        if !same {
            *slot = Some(self.to_wake());
        }
    }
}

/// The task being polled on this thread.
#[derive(Clone, Copy)]
struct Polling {
    /// The driver of the task's loop (`Rc::as_ptr`).
    driver: *const (),
    task: TaskRef,
    /// The task's own waker, as its data and vtable pointers.
    data: *const (),
    vtable: *const RawWakerVTable,
}

thread_local! {
    static POLLING: Cell<Option<Polling>> = const { Cell::new(None) };
}

/// Runs `f` (the poll of `task`, whose own waker is `waker`, on the loop
/// whose driver is `driver`) with the task recorded as the one polling.
pub(crate) fn polling<R>(
    driver: &DriverRef,
    task: TaskRef,
    waker: &Waker,
    f: impl FnOnce() -> R,
) -> R {
    let now = Polling {
        driver: Rc::as_ptr(driver).cast(),
        task,
        data: waker.data(),
        vtable: waker.vtable(),
    };
    /// Puts the previous record back, even if `f` unwinds.
    struct Restore(Option<Polling>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let before = self.0;
            POLLING.with(|p| p.set(before));
        }
    }
    let _restore = Restore(POLLING.with(|p| p.replace(Some(now))));
    f()
}

/// Whom an operation of `driver` polled with `waker` should wake.
pub(crate) fn wake_by<'a>(driver: &DriverRef, waker: &'a Waker) -> WakeBy<'a> {
    let polling = POLLING.with(Cell::get);
    match polling {
        Some(p)
            if std::ptr::eq(p.driver, Rc::as_ptr(driver).cast())
                && std::ptr::eq(p.data, waker.data())
                && std::ptr::eq(p.vtable, waker.vtable()) =>
        {
            WakeBy::Task(p.task)
        }
        _ => WakeBy::Waker(waker),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::sync::Arc;

    use super::*;
    use crate::driver::Driver;

    struct Nop;
    impl std::task::Wake for Nop {
        fn wake(self: Arc<Self>) {}
    }

    fn driver() -> DriverRef {
        let shared = crate::threadsafe::Shared::new().expect("eventfd");
        let d = crate::driver::epoll::EpollDriver::new(shared.wake_fd()).expect("epoll");
        Rc::new(RefCell::new(Driver::Epoll(d)))
    }

    #[test]
    fn only_the_polling_task_s_own_waker_on_its_own_driver_is_a_task() {
        let (ours, other_driver) = (driver(), driver());
        let own = Waker::from(Arc::new(Nop));
        let foreign = Waker::from(Arc::new(Nop));
        let task = TaskRef { key: 3, id: 9 };
        assert!(
            matches!(wake_by(&ours, &own), WakeBy::Waker(_)),
            "nothing polled"
        );
        polling(&ours, task, &own, || {
            assert!(matches!(wake_by(&ours, &own), WakeBy::Task(t) if t == task));
            assert!(matches!(wake_by(&ours, &own.clone()), WakeBy::Task(_)));
            assert!(matches!(wake_by(&ours, &foreign), WakeBy::Waker(_)));
            assert!(matches!(wake_by(&other_driver, &own), WakeBy::Waker(_)));
            // Nested: the inner task is the one polling, then the outer
            // one again.
            let inner = TaskRef { key: 4, id: 10 };
            polling(&ours, inner, &foreign, || {
                assert!(matches!(wake_by(&ours, &foreign), WakeBy::Task(t) if t == inner));
                assert!(matches!(wake_by(&ours, &own), WakeBy::Waker(_)));
            });
            assert!(matches!(wake_by(&ours, &own), WakeBy::Task(t) if t == task));
        });
        assert!(matches!(wake_by(&ours, &own), WakeBy::Waker(_)), "cleared");
    }

    #[test]
    fn the_record_is_restored_when_a_poll_unwinds() {
        let d = driver();
        let w = Waker::from(Arc::new(Nop));
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            polling(&d, TaskRef { key: 0, id: 1 }, &w, || panic!("boom"))
        }));
        assert!(r.is_err());
        assert!(matches!(wake_by(&d, &w), WakeBy::Waker(_)));
    }

    #[test]
    fn storing_the_same_target_keeps_it() {
        let w = Waker::from(Arc::new(Nop));
        let mut slot = None;
        WakeBy::Waker(&w).store(&mut slot);
        assert!(matches!(&slot, Some(Wake::Waker(s)) if s.will_wake(&w)));
        let t = TaskRef { key: 1, id: 2 };
        WakeBy::Task(t).store(&mut slot);
        assert!(matches!(&slot, Some(Wake::Task(s)) if *s == t));
        WakeBy::Task(TaskRef { key: 1, id: 3 }).store(&mut slot);
        assert!(matches!(&slot, Some(Wake::Task(s)) if s.id == 3));
    }

    struct NoFlush;
    impl Flush for NoFlush {
        fn flush(self: Rc<Self>) {}
        fn enqueue(self: Rc<Self>, _: &crate::flush::FlushQueue) {}
    }

    #[test]
    fn a_flush_registration_survives_later_polls() {
        let target: Rc<dyn Flush> = Rc::new(NoFlush);
        let mut slot = Some(Wake::Flush(Rc::downgrade(&target)));
        let w = Waker::from(Arc::new(Nop));
        WakeBy::Waker(&w).store(&mut slot);
        WakeBy::Task(TaskRef { key: 1, id: 2 }).store(&mut slot);
        match &slot {
            Some(Wake::Flush(f)) => assert!(Rc::ptr_eq(&f.upgrade().expect("alive"), &target)),
            _ => panic!("a poll replaced the flush registration"),
        }
    }
}
