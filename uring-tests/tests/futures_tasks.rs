//! Futures and tasks: results, invalid states, done callbacks (scheduled,
//! exactly once), cancellation that drops the future, panics contained
//! and reported, task factories, wakers from any thread.

use std::cell::{Cell, RefCell};
use std::future::{pending, poll_fn};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

use ringloop::{Error, EventLoop, LocalBoxFuture};
use ringloop_uring_tests::{DropFlag, TestLoop};

#[test]
fn future_result_is_awaitable_and_readable_many_times() {
    let lp = TestLoop::new();
    let fut = lp.create_future::<u32>();
    assert!(!fut.done());
    assert!(matches!(fut.result(), Err(Error::InvalidState(_))));
    let setter = fut.clone();
    lp.call_soon(move || setter.set_result(7).unwrap()).unwrap();
    let f2 = fut.clone();
    assert_eq!(lp.block_on(f2).unwrap(), 7);
    assert!(fut.done());
    assert_eq!(fut.result().unwrap(), 7);
    assert_eq!(fut.result().unwrap(), 7);
    assert!(fut.exception().unwrap().is_none());
}

#[test]
fn setting_a_done_future_is_an_invalid_state() {
    let lp = TestLoop::new();
    let fut = lp.create_future::<u32>();
    fut.set_result(1).unwrap();
    assert!(matches!(fut.set_result(2), Err(Error::InvalidState(_))));
    assert!(matches!(
        fut.set_exception(Error::Cancelled),
        Err(Error::InvalidState(_))
    ));
    assert!(!fut.cancel());
    assert_eq!(fut.result().unwrap(), 1);
}

#[test]
fn exception_and_cancel() {
    let lp = TestLoop::new();
    let fut = lp.create_future::<u32>();
    fut.set_exception(std::io::Error::other("boom")).unwrap();
    let e = fut.exception().unwrap().unwrap();
    assert!(e.to_string().contains("boom"));
    assert!(fut.result().is_err());

    let c = lp.create_future::<u32>();
    assert!(c.cancel());
    assert!(c.cancelled());
    assert!(matches!(c.exception(), Err(Error::Cancelled)));
    let c2 = c.clone();
    assert!(matches!(lp.block_on(c2), Err(Error::Cancelled)));
}

#[test]
fn take_result_moves_a_non_clone_value() {
    let lp = TestLoop::new();
    let fut = lp.create_future::<Box<String>>();
    fut.set_result(Box::new("owned".into())).unwrap();
    assert_eq!(*fut.take_result().unwrap(), "owned");
    assert!(matches!(fut.take_result(), Err(Error::InvalidState(_))));
    assert!(fut.done());
}

#[test]
fn done_callbacks_are_scheduled_not_inline_and_run_once() {
    let lp = TestLoop::new();
    let fut = lp.create_future::<u32>();
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    fut.add_done_callback(move |f| l.borrow_mut().push(format!("cb1 {}", f.result().unwrap())));
    let l = log.clone();
    let removed = fut.add_done_callback(move |_| l.borrow_mut().push("removed".into()));
    let l = log.clone();
    fut.add_done_callback(move |_| l.borrow_mut().push("cb3".into()));
    assert_eq!(fut.remove_done_callback(removed), 1);
    assert_eq!(fut.remove_done_callback(removed), 0);
    fut.set_result(5).unwrap();
    assert!(
        log.borrow().is_empty(),
        "done callbacks must not run inline"
    );
    // Added after completion: scheduled at once.
    let l = log.clone();
    fut.add_done_callback(move |_| l.borrow_mut().push("late".into()));
    lp.stop();
    lp.run_forever().unwrap();
    lp.stop();
    lp.run_forever().unwrap();
    assert_eq!(*log.borrow(), vec!["cb1 5", "cb3", "late"]);
}

#[test]
fn task_result_and_state() {
    let lp = TestLoop::new();
    let task = lp.create_task(async { 40 + 2 }).unwrap();
    assert!(!task.done());
    let v = lp.block_on(task).unwrap();
    assert_eq!(v, 42);
}

#[test]
fn tasks_and_callbacks_interleave_fifo() {
    let lp = TestLoop::new();
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    lp.call_soon(move || l.borrow_mut().push("cb1")).unwrap();
    let l = log.clone();
    let _t = lp
        .create_task(async move { l.borrow_mut().push("task") })
        .unwrap();
    let l = log.clone();
    lp.call_soon(move || l.borrow_mut().push("cb2")).unwrap();
    lp.stop();
    lp.run_forever().unwrap();
    assert_eq!(*log.borrow(), vec!["cb1", "task", "cb2"]);
}

#[test]
fn cancelling_a_task_drops_its_future_at_the_next_step() {
    let lp = TestLoop::new();
    let flag = DropFlag::new();
    let sentinel = flag.sentinel();
    let task = lp
        .create_task(async move {
            let _keep = sentinel;
            pending::<u32>().await
        })
        .unwrap();
    lp.stop();
    lp.run_forever().unwrap(); // first step: now pending
    assert_eq!(flag.drops(), 0);
    assert!(task.cancel());
    assert_eq!(flag.drops(), 0, "dropped at the next step, not inline");
    let h = task.handle();
    let r = lp.block_on(task);
    assert!(matches!(r, Err(Error::Cancelled)), "{r:?}");
    assert_eq!(flag.drops(), 1);
    assert!(h.done() && h.cancelled());
    assert!(!h.cancel(), "cancelling a done task returns false");
}

#[test]
fn cancelling_before_the_first_step_never_polls() {
    let lp = TestLoop::new();
    let polled = Rc::new(Cell::new(false));
    let p = polled.clone();
    let task = lp.create_task(async move { p.set(true) }).unwrap();
    task.cancel();
    assert!(matches!(lp.block_on(task), Err(Error::Cancelled)));
    assert!(!polled.get());
}

#[test]
fn a_panicking_callback_is_reported_and_the_loop_survives() {
    let mut lp = TestLoop::new();
    let errors = lp.expect_errors();
    let after = Rc::new(Cell::new(false));
    lp.call_soon(|| panic!("callback exploded")).unwrap();
    let a = after.clone();
    lp.call_soon(move || a.set(true)).unwrap();
    lp.stop();
    lp.run_forever().unwrap();
    assert!(after.get(), "the next callback still ran");
    let errs = errors.borrow();
    assert_eq!(errs.len(), 1);
    assert!(errs[0].contains("callback exploded"), "{}", errs[0]);
    assert!(
        errs[0].contains("futures_tasks.rs"),
        "names the scheduling site: {}",
        errs[0]
    );
}

#[test]
fn an_awaited_panicking_task_gives_its_awaiter_the_error_and_reports_nothing() {
    let lp = TestLoop::new(); // strict: any report fails the test
    let l = lp.lp();
    let r = lp.block_on(async move {
        let t = l.create_task(async { panic!("task exploded") }).unwrap();
        let r: Result<(), Error> = t.await;
        r
    });
    match r {
        Err(Error::Panicked(m)) => assert!(m.contains("task exploded")),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_detached_panicking_task_is_reported_once_as_never_retrieved() {
    let mut lp = TestLoop::new();
    let errors = lp.expect_errors();
    drop(
        lp.create_task(async { panic!("nobody awaits me") })
            .unwrap(),
    );
    lp.stop();
    lp.run_forever().unwrap();
    let errs = errors.borrow();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("never retrieved") && errs[0].contains("nobody awaits me"));
    assert!(
        errs[0].contains("futures_tasks.rs"),
        "names the creation site: {}",
        errs[0]
    );
}

#[test]
fn a_future_error_nobody_retrieved_is_reported_once_when_it_goes() {
    // asyncio's Future.__del__: "Future exception was never retrieved".
    let mut lp = TestLoop::new();
    let errors = lp.expect_errors();
    let unread = lp.create_future::<u8>();
    unread
        .set_exception(std::io::Error::other("nobody reads me"))
        .unwrap();
    let clone = unread.clone();
    drop(unread);
    assert!(errors.borrow().is_empty(), "a handle is still alive");
    drop(clone);
    // Looked at, or cancelled: nothing to report.
    let read = lp.create_future::<u8>();
    read.set_exception(std::io::Error::other("read")).unwrap();
    assert!(read.exception().unwrap().is_some());
    drop(read);
    let awaited = lp.create_future::<u8>();
    awaited
        .set_exception(std::io::Error::other("awaited"))
        .unwrap();
    assert!(lp.block_on(awaited.clone()).is_err());
    drop(awaited);
    let cancelled = lp.create_future::<u8>();
    cancelled.cancel();
    drop(cancelled);
    let errs = errors.borrow();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("Future exception was never retrieved"),
        "{}",
        errs[0]
    );
    assert!(errs[0].contains("nobody reads me"), "{}", errs[0]);
    assert!(
        errs[0].contains("futures_tasks.rs"),
        "names the creation site: {}",
        errs[0]
    );
}

#[test]
fn a_panicking_exception_handler_does_not_kill_the_loop() {
    let lp = EventLoop::new().unwrap();
    lp.set_exception_handler(Some(Rc::new(
        |_lp: &EventLoop, _ctx: &ringloop::ErrorContext| panic!("handler exploded"),
    )));
    lp.call_soon(|| panic!("first")).unwrap();
    let ok = Rc::new(Cell::new(false));
    let o = ok.clone();
    lp.call_soon(move || o.set(true)).unwrap();
    lp.stop();
    lp.run_forever().unwrap();
    assert!(ok.get());
    assert!(lp.get_exception_handler().is_some());
    lp.set_exception_handler(None);
    assert!(lp.get_exception_handler().is_none());
    lp.close().unwrap();
}

#[test]
fn call_exception_handler_reaches_the_custom_handler() {
    let mut lp = TestLoop::new();
    let errors = lp.expect_errors();
    lp.call_exception_handler(&ringloop::ErrorContext::new("custom report").with_socket(3));
    assert_eq!(errors.borrow().len(), 1);
    assert!(errors.borrow()[0].contains("custom report"));
    assert!(errors.borrow()[0].contains("socket fd 3"));
}

#[test]
fn task_factory_wraps_every_new_task() {
    let lp = TestLoop::new();
    let created = Rc::new(Cell::new(0));
    let c = created.clone();
    lp.set_task_factory(Some(Rc::new(
        move |_lp: &EventLoop, fut: LocalBoxFuture| {
            c.set(c.get() + 1);
            fut
        },
    )));
    assert!(lp.get_task_factory().is_some());
    let l = lp.lp();
    let v = lp
        .block_on(async move { l.create_task(async { 3 }).unwrap().await })
        .unwrap();
    assert_eq!(v, 3);
    assert_eq!(created.get(), 2, "the outer and the inner task");
    lp.set_task_factory(None);
    assert!(lp.get_task_factory().is_none());
}

#[test]
fn task_done_callback_runs_once_after_completion() {
    let lp = TestLoop::new();
    let hits = Rc::new(Cell::new(0));
    let task = lp.create_task(async { 1 }).unwrap();
    let h = hits.clone();
    task.add_done_callback(move || h.set(h.get() + 1));
    let _ = lp.block_on(task);
    lp.stop();
    lp.run_forever().unwrap();
    assert_eq!(hits.get(), 1);
}

#[test]
fn wakers_work_from_other_threads() {
    let lp = TestLoop::new();
    let slot: Arc<Mutex<(bool, Option<Waker>)>> = Arc::default();
    let s = slot.clone();
    let waiter = async move {
        poll_fn(|cx| {
            let mut g = s.lock().unwrap();
            if g.0 {
                Poll::Ready(())
            } else {
                g.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    };
    let s = slot.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        let w = {
            let mut g = s.lock().unwrap();
            g.0 = true;
            g.1.take()
        };
        w.expect("the task registered a waker").wake();
    });
    lp.block_on(waiter);
    t.join().unwrap();
}

#[test]
fn run_returns_the_output_and_refuses_nesting() {
    let v = ringloop::run(async { 9 }).unwrap();
    assert_eq!(v, 9);
    let inner = ringloop::run(async { ringloop::run(async { 1 }) }).unwrap();
    assert!(matches!(inner, Err(Error::LoopRunning)));
}

#[test]
fn run_cancels_leftover_tasks() {
    let flag = DropFlag::new();
    let sentinel = flag.sentinel();
    ringloop::run(async move {
        let lp = ringloop::get_running_loop().unwrap();
        lp.create_task(async move {
            let _k = sentinel;
            pending::<()>().await
        })
        .unwrap();
    })
    .unwrap();
    assert_eq!(flag.drops(), 1);
}

#[test]
fn get_running_loop_inside_and_outside() {
    assert!(matches!(
        ringloop::get_running_loop(),
        Err(Error::NoCurrentLoop)
    ));
    let lp = TestLoop::new();
    let me = lp.lp();
    let same = lp.block_on(async move { ringloop::get_running_loop().unwrap() == me });
    assert!(same);
}
