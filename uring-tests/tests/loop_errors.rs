//! Errors asyncio raises as RuntimeError, as typed errors: stopped before
//! completion, nested and concurrent runs, close while running, every
//! scheduling call after close; and what close releases.

use std::cell::RefCell;
use std::future::pending;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::Duration;

use ringloop::{Error, EventLoop};
use ringloop_uring_tests::{DropFlag, TestLoop};

#[test]
fn run_until_complete_reports_a_stop_before_completion() {
    let lp = TestLoop::new();
    let stop = lp.lp();
    lp.call_soon(move || stop.stop()).unwrap();
    let err = lp.run_until_complete(pending::<()>()).unwrap_err();
    assert!(matches!(err, Error::StoppedBeforeComplete), "{err:?}");
    // The loop is still usable.
    assert_eq!(lp.run_until_complete(async { 5 }).unwrap(), 5);
}

#[test]
fn run_until_complete_returns_the_output() {
    let lp = TestLoop::new();
    let l = lp.lp();
    let v = lp
        .run_until_complete(async move {
            let t = l.create_task(async { "inner" }).unwrap();
            t.await.unwrap()
        })
        .unwrap();
    assert_eq!(v, "inner");
}

#[test]
fn nested_run_is_an_error() {
    let lp = TestLoop::new();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let (s, inner) = (seen.clone(), lp.lp());
    lp.call_soon(move || {
        s.borrow_mut().push(inner.run_forever().unwrap_err());
        s.borrow_mut()
            .push(inner.run_until_complete(async {}).unwrap_err());
        inner.stop();
    })
    .unwrap();
    lp.run_forever().unwrap();
    let errs = seen.borrow();
    assert_eq!(errs.len(), 2);
    assert!(
        errs.iter().all(|e| matches!(e, Error::LoopRunning)),
        "{errs:?}"
    );
}

#[test]
fn two_loops_cannot_run_at_once_in_one_thread() {
    let a = TestLoop::new();
    let b = TestLoop::new();
    let seen = Rc::new(RefCell::new(None));
    let (s, bl, al) = (seen.clone(), b.lp(), a.lp());
    a.call_soon(move || {
        *s.borrow_mut() = Some(bl.run_forever().unwrap_err());
        al.stop();
    })
    .unwrap();
    a.run_forever().unwrap();
    assert!(matches!(seen.borrow_mut().take(), Some(Error::LoopRunning)));
    // Once a is done, b runs fine.
    assert_eq!(b.run_until_complete(async { 1 }).unwrap(), 1);
}

#[test]
fn close_while_running_is_an_error() {
    let lp = TestLoop::new();
    let seen = Rc::new(RefCell::new(None));
    let (s, inner) = (seen.clone(), lp.lp());
    lp.call_soon(move || {
        *s.borrow_mut() = Some(inner.close());
        inner.stop();
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert!(matches!(
        seen.borrow_mut().take(),
        Some(Err(Error::CloseWhileRunning))
    ));
    assert!(!lp.is_closed());
}

#[test]
fn every_scheduling_call_fails_after_close() {
    let lp = TestLoop::new();
    let handle = lp.handle();
    lp.close().unwrap();
    lp.close().unwrap(); // idempotent
    assert!(lp.is_closed());
    assert!(matches!(lp.call_soon(|| ()), Err(Error::LoopClosed)));
    assert!(matches!(
        lp.call_later(Duration::from_secs(1), || ()),
        Err(Error::LoopClosed)
    ));
    assert!(matches!(lp.call_at(0.0, || ()), Err(Error::LoopClosed)));
    assert!(matches!(lp.create_task(async {}), Err(Error::LoopClosed)));
    assert!(matches!(lp.run_forever(), Err(Error::LoopClosed)));
    assert!(matches!(
        lp.run_until_complete(async {}),
        Err(Error::LoopClosed)
    ));
    assert!(matches!(lp.run_once(), Err(Error::LoopClosed)));
    assert!(matches!(
        lp.run_in_executor(None, || ()),
        Err(Error::LoopClosed)
    ));
    assert!(matches!(
        handle.call_soon_threadsafe(|| ()),
        Err(Error::LoopClosed)
    ));
    assert!(handle.is_closed());
}

#[test]
fn io_after_close_is_an_error_not_a_panic() {
    let lp = TestLoop::new();
    let (a, _b) = UnixStream::pair().unwrap();
    let l = lp.lp();
    // Build the future before close, poll it after: it must fail cleanly.
    lp.close().unwrap();
    let fut = async move { l.sock_recv(&a, 10).await };
    let mut fut = Box::pin(fut);
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(Err(e)) => assert!(e.to_string().contains("closed"), "{e}"),
        other => panic!(
            "expected an error, got {:?}",
            other.map(|r| r.map(|b| b.len()))
        ),
    }
}

use std::future::Future;

#[test]
fn close_drops_pending_callbacks_timers_and_tasks() {
    let lp = TestLoop::new();
    let flag = DropFlag::new();
    let (s1, s2, s3) = (flag.sentinel(), flag.sentinel(), flag.sentinel());
    lp.call_soon(move || drop(s1)).unwrap();
    lp.call_later(Duration::from_secs(60), move || drop(s2))
        .unwrap();
    let task = lp
        .create_task(async move {
            let _keep = s3;
            pending::<()>().await
        })
        .unwrap();
    lp.close().unwrap();
    assert_eq!(flag.drops(), 3);
    assert!(task.done());
}

#[test]
fn builder_rejects_bad_ring_sizes() {
    let e = EventLoop::builder().ring_entries(0).build().unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    let e = EventLoop::builder()
        .ring_entries(1 << 20)
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
}
