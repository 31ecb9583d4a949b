//! What a cancelled task takes down with it (only what it was blocked
//! on, as asyncio's `Task._fut_waiter`: the handles that returned
//! `Pending` in its last step), what happens when a destructor panics
//! during the cancellation, and the wakers that `LoopFuture` and `Task`
//! handles leave behind when their pollers go.

use std::future::{pending, poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use std::time::Duration;

use ringloop::Error;
use ringloop_uring_tests::TestLoop;

/// Polls `f` once, whatever it returns: what the losing branch of a
/// `select` does.
async fn poll_once<F: Future + Unpin>(f: &mut F) {
    poll_fn(|cx| {
        let _ = Pin::new(&mut *f).poll(cx);
        Poll::Ready(())
    })
    .await
}

/// Runs the loop for one iteration.
fn iterate(lp: &TestLoop) {
    lp.stop();
    lp.run_forever().unwrap();
}

#[test]
fn cancelling_a_task_leaves_alone_a_future_it_stopped_waiting_on() {
    let lp = TestLoop::new();
    let shared = lp.create_future::<()>();
    let other = lp.create_future::<()>();
    let (s, o, l) = (shared.clone(), other.clone(), lp.lp());
    let task = lp
        .create_task(async move {
            let mut s = s;
            poll_once(&mut s).await; // pending: a select's losing branch
            l.sleep(Duration::ZERO).unwrap().await; // a later step
            let _ = o.await; // what the task is blocked on
            drop(s);
        })
        .unwrap();
    iterate(&lp);
    iterate(&lp);
    task.cancel();
    assert!(matches!(lp.block_on(task), Err(Error::Cancelled)));
    assert!(other.cancelled(), "the future the task was blocked on");
    assert!(!shared.done(), "a future it only polled once stays pending");
    // And the shared future still works for everyone else.
    let waiter = lp.create_task(shared.clone()).unwrap();
    iterate(&lp);
    shared.set_result(()).unwrap();
    assert!(lp.block_on(waiter).is_ok());
}

#[test]
fn cancelling_a_task_leaves_alone_a_task_it_stopped_waiting_on() {
    let lp = TestLoop::new();
    let l = lp.lp();
    let worker = lp.create_task(pending::<()>()).unwrap();
    let worker_handle = worker.handle();
    let blocker = lp.create_future::<()>();
    let b = blocker.clone();
    let task = lp
        .create_task(async move {
            let mut w = worker;
            poll_once(&mut w).await;
            l.sleep(Duration::ZERO).unwrap().await;
            let _ = b.await;
            drop(w);
        })
        .unwrap();
    iterate(&lp);
    iterate(&lp);
    task.cancel();
    assert!(matches!(lp.block_on(task), Err(Error::Cancelled)));
    assert!(blocker.cancelled());
    iterate(&lp);
    assert!(!worker_handle.done(), "the worker task keeps running");
    worker_handle.cancel();
    iterate(&lp);
}

#[test]
fn the_futures_a_task_is_blocked_on_in_a_select_are_cancelled_with_it() {
    // Both branches of a select pending in the task's last step: the
    // task is blocked on both, and both are cancelled with it. (So is a
    // handle polled in that step and then left for another await in the
    // same step: within one step the two cannot be told apart.)
    let lp = TestLoop::new();
    let a = lp.create_future::<()>();
    let b = lp.create_future::<()>();
    let (fa, fb) = (a.clone(), b.clone());
    let task = lp
        .create_task(async move {
            let (mut fa, mut fb) = (fa, fb);
            poll_fn(|cx| {
                if Pin::new(&mut fa).poll(cx).is_ready() || Pin::new(&mut fb).poll(cx).is_ready() {
                    return Poll::Ready(());
                }
                Poll::Pending
            })
            .await
        })
        .unwrap();
    iterate(&lp);
    task.cancel();
    assert!(matches!(lp.block_on(task), Err(Error::Cancelled)));
    assert!(a.cancelled() && b.cancelled());
}

struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("bomb in a destructor");
    }
}

#[test]
fn a_destructor_that_panics_during_cancellation_ends_the_task_with_the_panic() {
    let lp = TestLoop::new();
    let blocker = lp.create_future::<()>();
    let b = blocker.clone();
    let task = lp
        .create_task(async move {
            let _bomb = Bomb;
            let _ = b.await;
        })
        .unwrap();
    iterate(&lp);
    assert_eq!(lp.pending_tasks(), 1);
    task.cancel();
    iterate(&lp);
    assert!(task.done(), "the task finished");
    assert!(!task.cancelled(), "with the panic, not as cancelled");
    assert!(matches!(lp.block_on(task), Err(Error::Panicked(m)) if m.contains("bomb")));
    assert_eq!(lp.pending_tasks(), 0);
    // The cancellation scope ended with the panic: a future merely
    // dropped by a later task is not cancelled.
    let fut = lp.create_future::<u8>();
    let f = fut.clone();
    lp.block_on(async move {
        let mut f = f;
        poll_once(&mut f).await;
    });
    assert!(!fut.done());
}

/// A waker that counts nothing: its strong count says who holds it.
struct Counted;

impl Wake for Counted {
    fn wake(self: Arc<Self>) {}
}

/// Polls `f` once with a waker of its own; returns that waker's `Arc`.
fn poll_with_own_waker<F: Future + Unpin>(f: &mut F) -> Arc<Counted> {
    let arc = Arc::new(Counted);
    let waker = Waker::from(arc.clone());
    assert!(Pin::new(f)
        .poll(&mut Context::from_waker(&waker))
        .is_pending());
    arc
}

#[test]
fn a_pending_future_keeps_no_waker_of_a_poller_that_went_away() {
    let lp = TestLoop::new();
    let fut = lp.create_future::<u8>();
    let wakers: Vec<Arc<Counted>> = (0..1000)
        .map(|_| poll_with_own_waker(&mut fut.clone()))
        .collect();
    assert!(
        wakers.iter().all(|w| Arc::strong_count(w) == 1),
        "every handle took its waker with it"
    );
    // A handle still alive keeps exactly one waker, however often it is
    // polled, and replaces it when another poller polls it.
    let mut kept = fut.clone();
    let first = poll_with_own_waker(&mut kept);
    let second = poll_with_own_waker(&mut kept);
    assert_eq!(Arc::strong_count(&first), 1, "replaced");
    assert_eq!(Arc::strong_count(&second), 2, "held once");
    fut.set_result(1).unwrap();
    assert_eq!(Arc::strong_count(&second), 1, "woken and released");
    drop(kept);
}

#[test]
fn a_pending_task_keeps_no_waker_of_a_poller_that_went_away() {
    let lp = TestLoop::new();
    let blocker = lp.create_future::<()>();
    let mut task = lp.create_task(blocker.clone()).unwrap();
    let first = poll_with_own_waker(&mut task);
    let second = poll_with_own_waker(&mut task);
    assert_eq!(Arc::strong_count(&first), 1, "replaced");
    assert_eq!(Arc::strong_count(&second), 2, "held once");
    let handle = task.handle();
    drop(task);
    assert_eq!(Arc::strong_count(&second), 1, "gone with the handle");
    handle.cancel();
    iterate(&lp);
    assert!(handle.done());
}
