//! LoopHandle: call_soon_threadsafe from many threads, exactly once and
//! in per-thread order; a sleeping loop wakes promptly; remote handles
//! cancel.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use ringloop_uring_tests::TestLoop;

#[test]
fn callbacks_from_many_threads_run_once_each_in_order() {
    const THREADS: usize = 4;
    const PER: usize = 2000;
    let lp = TestLoop::new();
    let seen: Rc<RefCell<Vec<Vec<usize>>>> = Rc::new(RefCell::new(vec![Vec::new(); THREADS]));
    let total = Arc::new(AtomicUsize::new(0));
    let handle = lp.handle();
    let barrier = Arc::new(Barrier::new(THREADS));
    // Results travel back as (thread, i) through the loop thread only.
    let (tx, rx) = std::sync::mpsc::channel::<(usize, usize)>();
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let h = handle.clone();
            let b = barrier.clone();
            let tx = tx.clone();
            let total = total.clone();
            std::thread::spawn(move || {
                b.wait();
                for i in 0..PER {
                    let tx = tx.clone();
                    let total = total.clone();
                    h.call_soon_threadsafe(move || {
                        tx.send((t, i)).unwrap();
                        total.fetch_add(1, Ordering::Relaxed);
                    })
                    .unwrap();
                }
            })
        })
        .collect();
    let stopper = lp.lp();
    let tot = total.clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    fn poll_done(lp: ringloop::EventLoop, tot: Arc<AtomicUsize>, deadline: Instant) {
        if tot.load(Ordering::Relaxed) == THREADS * PER || Instant::now() > deadline {
            lp.stop();
        } else {
            let l = lp.clone();
            lp.call_later(Duration::from_millis(1), move || {
                poll_done(l, tot, deadline)
            })
            .unwrap();
        }
    }
    lp.call_soon(move || poll_done(stopper, tot, deadline))
        .unwrap();
    lp.run_forever().unwrap();
    for t in threads {
        t.join().unwrap();
    }
    drop(tx);
    for (t, i) in rx.try_iter() {
        seen.borrow_mut()[t].push(i);
    }
    assert_eq!(total.load(Ordering::Relaxed), THREADS * PER);
    for (t, v) in seen.borrow().iter().enumerate() {
        let expected: Vec<usize> = (0..PER).collect();
        assert_eq!(*v, expected, "thread {t}: every callback once, in order");
    }
}

#[test]
fn a_sleeping_loop_wakes_promptly() {
    let lp = TestLoop::new();
    // Nothing ready, no timer: the loop waits with no timeout at all.
    let handle = lp.handle();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        handle
            .call_soon_threadsafe(|| {
                ringloop::get_running_loop().unwrap().stop();
            })
            .unwrap();
    });
    // A far watchdog keeps a missed wake-up from hanging the suite; it is
    // far enough that only a missed wake-up can reach it.
    let watchdog = lp.lp();
    lp.call_later(Duration::from_secs(10), move || watchdog.stop())
        .unwrap();
    let started = Instant::now();
    lp.run_forever().unwrap();
    let took = started.elapsed();
    t.join().unwrap();
    assert!(
        took < Duration::from_secs(5),
        "woke after {took:?}: the wake-up was missed"
    );
}

#[test]
fn remote_handles_cancel() {
    let lp = TestLoop::new();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let h = lp
        .handle()
        .call_soon_threadsafe(move || {
            r.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
    assert!(!h.cancelled());
    h.cancel();
    assert!(h.cancelled());
    let r = ran.clone();
    lp.handle()
        .call_soon_threadsafe(move || {
            r.fetch_add(10, Ordering::Relaxed);
        })
        .unwrap();
    lp.stop();
    lp.run_forever().unwrap();
    assert_eq!(ran.load(Ordering::Relaxed), 10);
}

#[test]
fn stop_from_another_thread() {
    let lp = TestLoop::new();
    let handle = lp.handle();
    let watchdog = lp.lp();
    lp.call_later(Duration::from_secs(10), move || watchdog.stop())
        .unwrap();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        handle.stop().unwrap();
    });
    let started = Instant::now();
    lp.run_forever().unwrap();
    t.join().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    lp.close().unwrap();
    assert!(lp.handle().stop().is_err(), "a closed loop refuses");
}

#[test]
fn kernel_features_are_reported() {
    let lp = TestLoop::new();
    if lp.backend() == ringloop::Backend::Uring {
        let f = lp.kernel_features().expect("io_uring reports its features");
        assert!(f.ext_arg && f.nodrop && f.recv_send);
    }
}

#[test]
fn the_handle_is_send_sync_clone() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<ringloop::LoopHandle>();
    assert_send_sync::<ringloop::RemoteHandle>();
}
