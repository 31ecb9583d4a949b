//! Regressions: places where ringloop once differed from asyncio (found
//! in review), each named after the rule it protects.

use std::cell::{Cell, RefCell};
use std::future::{pending, poll_fn};
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use ringloop::{Error, EventLoop};
use ringloop_uring_tests::TestLoop;

#[test]
fn a_stopped_run_until_complete_does_not_stop_a_later_run() {
    let lp = TestLoop::new();
    let fut = lp.create_future::<()>();
    let stop = lp.lp();
    lp.call_soon(move || stop.stop()).unwrap();
    let f = fut.clone();
    assert!(matches!(
        lp.run_until_complete(f),
        Err(Error::StoppedBeforeComplete)
    ));
    // Completing that future during a later run must not end the run.
    let setter = fut.clone();
    lp.call_soon(move || setter.set_result(()).unwrap())
        .unwrap();
    let ran_to = Rc::new(Cell::new(false));
    let (r, stop) = (ran_to.clone(), lp.lp());
    lp.call_later(Duration::from_millis(50), move || {
        r.set(true);
        stop.stop();
    })
    .unwrap();
    let started = Instant::now();
    lp.run_forever().unwrap();
    assert!(ran_to.get(), "stopped early after {:?}", started.elapsed());
}

#[test]
fn executor_jobs_that_wait_for_each_other_do_not_deadlock() {
    let lp = TestLoop::new();
    let l = lp.lp();
    let got = lp.block_on(async move {
        // Warm the pool: one worker, now idle.
        l.run_in_executor(None, || ()).unwrap().await.unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<u32>();
        let first = l
            .run_in_executor(None, move || rx.recv_timeout(Duration::from_secs(5)))
            .unwrap();
        let second = l.run_in_executor(None, move || tx.send(7)).unwrap();
        second.await.unwrap().unwrap();
        first.await.unwrap()
    });
    assert_eq!(got, Ok(7), "the first job had to wait for the second");
}

#[test]
fn done_callbacks_and_awaiting_tasks_resume_in_registration_order() {
    let lp = TestLoop::new();
    let order = Rc::new(RefCell::new(Vec::new()));
    let fut = lp.create_future::<u8>();
    let o = order.clone();
    fut.add_done_callback(move |_| o.borrow_mut().push("callback registered first"));
    let (o, f) = (order.clone(), fut.clone());
    let waiter = lp
        .create_task(async move {
            f.await.unwrap();
            o.borrow_mut().push("task registered second");
        })
        .unwrap();
    lp.stop();
    lp.run_forever().unwrap(); // the task now awaits the future
                               // Completed from inside the loop, where wake-ups take the fast path.
    let f = fut.clone();
    lp.call_soon(move || f.set_result(1).unwrap()).unwrap();
    lp.block_on(waiter).unwrap();
    assert_eq!(
        *order.borrow(),
        vec!["callback registered first", "task registered second"]
    );
}

#[test]
fn cancelling_a_task_cancels_the_future_it_awaits() {
    let lp = TestLoop::new();
    let fut = lp.create_future::<u8>();
    let f = fut.clone();
    let task = lp.create_task(f).unwrap();
    lp.stop();
    lp.run_forever().unwrap();
    task.cancel();
    assert!(matches!(lp.block_on(task), Err(Error::Cancelled)));
    assert!(fut.cancelled(), "the awaited future is cancelled too");
}

#[test]
fn cancelling_a_task_cancels_the_task_it_awaits() {
    let lp = TestLoop::new();
    let l = lp.lp();
    let inner_handle = Rc::new(RefCell::new(None));
    let ih = inner_handle.clone();
    let outer = lp
        .create_task(async move {
            let inner = l.create_task(pending::<()>()).unwrap();
            *ih.borrow_mut() = Some(inner.handle());
            inner.await
        })
        .unwrap();
    lp.stop();
    lp.run_forever().unwrap();
    lp.stop();
    lp.run_forever().unwrap();
    outer.cancel();
    let _ = lp.block_on(outer);
    lp.stop();
    lp.run_forever().unwrap();
    let inner = inner_handle
        .borrow_mut()
        .take()
        .expect("inner task started");
    assert!(inner.cancelled(), "the awaited task is cancelled too");
}

#[test]
fn dropping_an_awaited_future_outside_cancellation_does_not_cancel_it() {
    // Rust-side rule: only task cancellation propagates; a future merely
    // dropped (e.g. a select that picked another branch) is left alone.
    let lp = TestLoop::new();
    let fut = lp.create_future::<u8>();
    let f = fut.clone();
    lp.block_on(async move {
        let mut f = Box::pin(f);
        poll_fn(|cx| {
            assert!(f.as_mut().poll(cx).is_pending());
            Poll::Ready(())
        })
        .await;
    });
    assert!(!fut.done());
}

use std::future::Future;

#[test]
fn take_result_keeps_error_state_readable() {
    let lp = TestLoop::new();
    let c = lp.create_future::<u8>();
    c.cancel();
    assert!(matches!(c.take_result(), Err(Error::Cancelled)));
    assert!(c.cancelled(), "still cancelled after take_result");
    let e = lp.create_future::<u8>();
    e.set_exception(std::io::Error::other("kept")).unwrap();
    assert!(e.take_result().is_err());
    assert!(
        e.exception().unwrap().is_some(),
        "still failed after take_result"
    );
}

#[test]
fn done_callbacks_report_where_they_were_added() {
    let mut lp = TestLoop::new();
    let errors = lp.expect_errors();
    let fut = lp.create_future::<u8>();
    fut.add_done_callback(|_| panic!("in a done callback"));
    fut.set_result(1).unwrap();
    lp.stop();
    lp.run_forever().unwrap();
    let errs = errors.borrow();
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].contains("regress_asyncio_semantics.rs"),
        "the site of add_done_callback, not future.rs: {}",
        errs[0]
    );
}

#[test]
fn run_once_is_the_running_loop_for_its_callbacks() {
    let lp = TestLoop::new();
    let seen = Rc::new(Cell::new(false));
    let (s, me) = (seen.clone(), lp.lp());
    lp.call_soon(move || {
        s.set(
            ringloop::get_running_loop()
                .map(|l| l == me)
                .unwrap_or(false)
                && me.is_running(),
        )
    })
    .unwrap();
    lp.run_once().unwrap();
    assert!(seen.get());
    assert!(!lp.is_running());
    // And LoopHandle::stop reaches a loop driven by run_once.
    lp.handle().stop().unwrap();
    lp.run_once().unwrap();
    let (s2, me2) = (Rc::new(Cell::new(false)), lp.lp());
    let s3 = s2.clone();
    lp.call_soon(move || s3.set(true)).unwrap();
    drop(me2);
    lp.run_forever().unwrap(); // the pending stop makes this one pass
    assert!(s2.get());
}

#[test]
fn a_stale_waker_does_not_poll_the_task_that_reused_its_slot() {
    let lp = TestLoop::new();
    let stale = Rc::new(RefCell::new(None));
    let s = stale.clone();
    let first = lp
        .create_task(poll_fn(move |cx| {
            *s.borrow_mut() = Some(cx.waker().clone());
            Poll::Ready(())
        }))
        .unwrap();
    // Run it directly (block_on would add a wrapper task, whose slot the
    // next task would reuse instead).
    lp.stop();
    lp.run_forever().unwrap();
    assert!(first.done());
    let polls = Rc::new(Cell::new(0));
    let p = polls.clone();
    let _second = lp
        .create_task(poll_fn(move |_| {
            p.set(p.get() + 1);
            Poll::<()>::Pending
        }))
        .unwrap();
    lp.stop();
    lp.run_forever().unwrap();
    assert_eq!(polls.get(), 1);
    stale.borrow_mut().take().unwrap().wake();
    lp.stop();
    lp.run_forever().unwrap();
    assert_eq!(polls.get(), 1, "the stale wake-up was ignored");
}

#[test]
fn the_main_thread_rule_uses_the_real_main_thread() {
    // Covered on the real main thread by policy_main_thread.rs; here, a
    // non-main thread never gets an implicit loop.
    let t = std::thread::spawn(|| ringloop::get_event_loop().is_err());
    assert!(t.join().unwrap());
    let _ = EventLoop::new().unwrap().close();
}

#[test]
fn a_future_completed_while_the_loop_is_not_running_resumes_in_registration_order() {
    // asyncio schedules an awaiting task's wake-up with call_soon like any
    // done callback, running loop or not.
    let lp = TestLoop::new();
    let order = Rc::new(RefCell::new(Vec::new()));
    let fut = lp.create_future::<u8>();
    let (o, f) = (order.clone(), fut.clone());
    let waiter = lp
        .create_task(async move {
            f.await.unwrap();
            o.borrow_mut().push("task registered first");
        })
        .unwrap();
    lp.stop();
    lp.run_forever().unwrap(); // the task now awaits the future
    let o = order.clone();
    fut.add_done_callback(move |_| o.borrow_mut().push("callback registered second"));
    fut.set_result(1).unwrap(); // the loop is not running
    let o = order.clone();
    lp.call_soon(move || o.borrow_mut().push("call_soon after"))
        .unwrap();
    lp.block_on(waiter).unwrap();
    assert_eq!(
        *order.borrow(),
        vec![
            "task registered first",
            "callback registered second",
            "call_soon after"
        ]
    );
}

#[test]
fn call_soon_threadsafe_on_the_loop_thread_keeps_fifo_with_call_soon() {
    let lp = TestLoop::new();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let l = log.clone();
    lp.call_soon(move || l.lock().unwrap().push(1)).unwrap();
    let l = log.clone();
    lp.handle()
        .call_soon_threadsafe(move || l.lock().unwrap().push(2))
        .unwrap();
    let l = log.clone();
    let cancelled = lp
        .handle()
        .call_soon_threadsafe(move || l.lock().unwrap().push(99))
        .unwrap();
    cancelled.cancel();
    let l = log.clone();
    lp.call_soon(move || l.lock().unwrap().push(3)).unwrap();
    lp.stop();
    lp.run_forever().unwrap();
    assert_eq!(*log.lock().unwrap(), [1, 2, 3]);
}
