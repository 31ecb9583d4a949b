//! add_signal_handler / remove_signal_handler: the callback runs on the
//! loop thread once per arrival, a signal wakes a loop blocked in the
//! kernel at once, removal and close restore the default disposition,
//! several loops each run their own handler, and bad numbers are refused.
//!
//! Signal dispositions are process-wide and cargo runs the tests of one
//! binary on threads, so every test here holds [`serial`] for its whole
//! run. A test only sends a signal while a handler for it is installed
//! (checked with a `sigaction` query first): a mistake shows up as a failed
//! assertion, not as the test process killed by its own signal.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ringloop::{Error, EventLoop, LoopHandle};
use ringloop_uring_tests::{assert_no_fd_leak, TestLoop};

static SERIAL: Mutex<()> = Mutex::new(());

/// Serialises the tests of this binary (signals are process-wide).
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// The installed handler of `signum`, as `sigaction` reports it
/// (`SIG_DFL` is 0, `SIG_IGN` 1).
fn disposition(signum: i32) -> libc::sighandler_t {
    // SAFETY: an all-zero sigaction is a valid value of the C struct.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action only queries; `act` is writable.
    let rc = unsafe { libc::sigaction(signum, std::ptr::null(), &mut act) };
    assert_eq!(rc, 0, "sigaction query of {signum}");
    act.sa_sigaction
}

fn is_handled(signum: i32) -> bool {
    let d = disposition(signum);
    d != libc::SIG_DFL && d != libc::SIG_IGN
}

/// `kill(getpid(), signum)`, only while a handler is installed.
fn kill_self(signum: i32) {
    assert!(is_handled(signum), "refusing to send {signum} unhandled");
    // SAFETY: kill(2) on our own process with a handled signal.
    let rc = unsafe { libc::kill(libc::getpid(), signum) };
    assert_eq!(rc, 0, "kill");
}

/// `tgkill(getpid(), tid, signum)`: directed at one thread of this
/// process, which runs the handler.
fn kill_thread(tid: libc::pid_t, signum: i32) {
    assert!(is_handled(signum), "refusing to send {signum} unhandled");
    // SAFETY: tgkill(2) to a thread of our own process, with a handled
    // signal.
    let rc = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, signum) };
    assert_eq!(rc, 0, "tgkill");
}

/// Directed at the calling thread, so the handler has run when this
/// returns. (A process-directed `kill` may be handled by another thread,
/// such as the test harness's main thread, a moment later.)
fn raise_here(signum: i32) {
    kill_thread(gettid(), signum);
}

fn gettid() -> libc::pid_t {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::gettid() }
}

/// Stops the loop from another thread after `limit`, unless the returned
/// sender is dropped first. A thread, not a timer: tests of the kernel
/// wait must leave the loop with no timer at all.
fn thread_watchdog(handle: LoopHandle, limit: Duration) -> mpsc::Sender<()> {
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            let _ = handle.stop();
        }
    });
    tx
}

/// Runs `lp` until a callback calls `stop`, bounded by a thread watchdog.
fn run_bounded(lp: &EventLoop) {
    let _wd = thread_watchdog(lp.handle(), Duration::from_secs(10));
    lp.run_forever().unwrap();
}

/// Adds a handler for `signum` that counts its calls.
fn add_counter(lp: &EventLoop, signum: i32) -> Rc<Cell<u32>> {
    let calls = Rc::new(Cell::new(0u32));
    let c = calls.clone();
    lp.add_signal_handler(signum, move || c.set(c.get() + 1))
        .unwrap();
    calls
}

/// Adds a handler for `signum` that counts its calls and stops the loop.
fn add_counting_stopper(lp: &EventLoop, signum: i32) -> Rc<Cell<u32>> {
    let calls = Rc::new(Cell::new(0u32));
    let (c, l) = (calls.clone(), lp.clone());
    lp.add_signal_handler(signum, move || {
        c.set(c.get() + 1);
        l.stop();
    })
    .unwrap();
    calls
}

/// With a counting, stopping handler for `signum` on `lp` (which must have
/// no timer), runs `lp` while another thread calls `send` after 100 ms;
/// asserts the handler ran once and the loop woke within a second of the
/// send, then removes the handler.
fn assert_wakes_promptly(lp: &EventLoop, signum: i32, send: impl FnOnce() + Send + 'static) {
    let calls = add_counting_stopper(lp, signum);
    assert_eq!(lp.scheduled_timers().0, 0, "no timer may end the wait");
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        let sent = Instant::now();
        send();
        sent
    });
    run_bounded(lp);
    let woke = Instant::now();
    let sent = sender.join().unwrap();
    assert_eq!(calls.get(), 1, "the handler ran once");
    let latency = woke.duration_since(sent);
    assert!(
        latency < Duration::from_secs(1),
        "woke {latency:?} after the signal"
    );
    assert!(lp.remove_signal_handler(signum));
}

#[test]
fn kill_self_runs_the_handler_on_the_loop_thread_with_its_arguments() {
    let _s = serial();
    let lp = TestLoop::new();
    let seen: Rc<RefCell<Vec<(std::thread::ThreadId, &str)>>> = Rc::default();
    let (s, l, arg) = (seen.clone(), lp.lp(), "argument");
    lp.add_signal_handler(libc::SIGUSR1, move || {
        s.borrow_mut().push((std::thread::current().id(), arg));
        l.stop();
    })
    .unwrap();
    lp.call_soon(|| kill_self(libc::SIGUSR1)).unwrap();
    run_bounded(&lp);
    assert_eq!(
        *seen.borrow(),
        vec![(std::thread::current().id(), "argument")]
    );
    assert!(lp.remove_signal_handler(libc::SIGUSR1));
}

#[test]
fn a_signal_from_another_thread_wakes_a_loop_blocked_with_no_timers() {
    let _s = serial();
    let lp = TestLoop::new();
    assert_wakes_promptly(&lp, libc::SIGUSR2, || kill_self(libc::SIGUSR2));
}

#[test]
fn a_signal_delivered_to_the_blocked_loop_thread_itself_wakes_it() {
    let _s = serial();
    let lp = TestLoop::new();
    // The handler runs on the loop thread, blocked in its wait, and
    // interrupts it (EINTR).
    let loop_thread = gettid();
    assert_wakes_promptly(&lp, libc::SIGUSR1, move || {
        kill_thread(loop_thread, libc::SIGUSR1)
    });
}

#[test]
fn every_arrival_runs_the_callback_once() {
    let _s = serial();
    let lp = TestLoop::new();
    let calls = add_counter(&lp, libc::SIGUSR1);
    // One arrival per round, each seen before the next is sent.
    for round in 1..=5u32 {
        let l = lp.lp();
        let c = calls.clone();
        lp.call_soon(move || {
            kill_self(libc::SIGUSR1);
            // Stop once the handler of this arrival has run.
            fn wait(l: EventLoop, c: Rc<Cell<u32>>, want: u32) {
                if c.get() >= want {
                    l.stop();
                } else {
                    let l2 = l.clone();
                    l.call_soon(move || wait(l2, c, want)).unwrap();
                }
            }
            wait(l, c, round);
        })
        .unwrap();
        run_bounded(&lp);
        assert_eq!(calls.get(), round);
    }
    // A burst: each signal directed at this thread is handled before the
    // next is sent, so three sends are three arrivals, not one merged one.
    lp.call_soon(|| {
        for _ in 0..3 {
            raise_here(libc::SIGUSR1);
        }
    })
    .unwrap();
    for _ in 0..4 {
        lp.call_soon(|| ()).unwrap();
        lp.run_once().unwrap();
    }
    assert_eq!(calls.get(), 5 + 3, "one callback per arrival");
    assert!(lp.remove_signal_handler(libc::SIGUSR1));
}

#[test]
fn remove_restores_the_default_disposition_and_returns_false_when_absent() {
    let _s = serial();
    let lp = TestLoop::new();
    assert!(
        !lp.remove_signal_handler(libc::SIGUSR2),
        "nothing to remove"
    );
    // Whatever was there before (here: ignored), removal restores the
    // default action, as asyncio does.
    // SAFETY: setting SIG_IGN for SIGUSR2, which no one else uses here.
    unsafe { libc::signal(libc::SIGUSR2, libc::SIG_IGN) };
    lp.add_signal_handler(libc::SIGUSR2, || ()).unwrap();
    assert!(is_handled(libc::SIGUSR2));
    assert!(lp.remove_signal_handler(libc::SIGUSR2));
    assert_eq!(disposition(libc::SIGUSR2), libc::SIG_DFL);
    assert!(!lp.remove_signal_handler(libc::SIGUSR2), "already removed");
}

#[test]
fn a_handler_added_again_after_removal_handles_the_signal() {
    let _s = serial();
    let lp = TestLoop::new();
    for round in 1..=3u32 {
        let calls = add_counting_stopper(&lp, libc::SIGHUP);
        assert!(is_handled(libc::SIGHUP), "round {round}: handler installed");
        lp.call_soon(|| kill_self(libc::SIGHUP)).unwrap();
        run_bounded(&lp);
        assert_eq!(calls.get(), 1, "round {round}");
        assert!(lp.remove_signal_handler(libc::SIGHUP));
        assert_eq!(disposition(libc::SIGHUP), libc::SIG_DFL);
    }
}

#[test]
fn invalid_numbers_are_invalid_input() {
    let _s = serial();
    let lp = TestLoop::new();
    for signum in [0, -1, -15, 65, 1000, i32::MIN, i32::MAX] {
        let err = lp.add_signal_handler(signum, || ()).unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{signum}: {err:?}");
        assert!(!lp.remove_signal_handler(signum));
    }
    // 32 and 33 are valid numbers the C library keeps for itself: the
    // kernel's EINVAL comes back, nothing is left registered.
    for signum in [32, 33] {
        let err = lp.add_signal_handler(signum, || ()).unwrap_err();
        assert_eq!(
            err.io_kind(),
            Some(std::io::ErrorKind::InvalidInput),
            "{signum}: {err}"
        );
        assert!(!lp.remove_signal_handler(signum));
    }
}

#[test]
fn sigkill_sigstop_and_synchronous_faults_are_refused() {
    let _s = serial();
    let lp = TestLoop::new();
    for signum in [libc::SIGKILL, libc::SIGSTOP] {
        let err = lp.add_signal_handler(signum, || ()).unwrap_err();
        assert_eq!(err.io_kind(), Some(std::io::ErrorKind::InvalidInput));
        assert!(err.to_string().contains("cannot be caught"), "{err}");
        assert!(!lp.remove_signal_handler(signum));
    }
    for signum in [libc::SIGSEGV, libc::SIGILL, libc::SIGFPE] {
        let before = disposition(signum);
        let err = lp.add_signal_handler(signum, || ()).unwrap_err();
        assert_eq!(
            err.io_kind(),
            Some(std::io::ErrorKind::InvalidInput),
            "{err}"
        );
        assert_eq!(disposition(signum), before, "{signum}: left untouched");
    }
}

#[test]
fn close_removes_every_handler_and_adding_after_close_fails() {
    let _s = serial();
    let sigs = [libc::SIGUSR1, libc::SIGUSR2, libc::SIGHUP, libc::SIGWINCH];
    assert_no_fd_leak(|| {
        let lp = TestLoop::new();
        for s in sigs {
            lp.add_signal_handler(s, || ()).unwrap();
            assert!(is_handled(s));
        }
        lp.close().unwrap();
        for s in sigs {
            assert_eq!(disposition(s), libc::SIG_DFL, "{s} restored by close");
            assert!(!lp.remove_signal_handler(s));
        }
        let err = lp.add_signal_handler(libc::SIGUSR1, || ()).unwrap_err();
        assert!(matches!(err, Error::LoopClosed), "{err:?}");
        assert_eq!(disposition(libc::SIGUSR1), libc::SIG_DFL);
    });
    // Dropping an unclosed loop removes its handlers too.
    {
        let lp = EventLoop::new().unwrap();
        lp.add_signal_handler(libc::SIGUSR1, || ()).unwrap();
        assert!(is_handled(libc::SIGUSR1));
    }
    assert_eq!(disposition(libc::SIGUSR1), libc::SIG_DFL);
}

#[test]
fn add_remove_cycles_leak_no_descriptor() {
    let _s = serial();
    let lp = TestLoop::new();
    assert_no_fd_leak(|| {
        for _ in 0..50 {
            lp.add_signal_handler(libc::SIGUSR1, || ()).unwrap();
            lp.add_signal_handler(libc::SIGUSR2, || ()).unwrap();
            assert!(lp.remove_signal_handler(libc::SIGUSR1));
            assert!(lp.remove_signal_handler(libc::SIGUSR2));
        }
    });
}

#[test]
fn a_panicking_handler_goes_to_the_exception_handler_and_the_loop_goes_on() {
    let _s = serial();
    let mut lp = TestLoop::new();
    let errors = lp.expect_errors();
    let calls = Rc::new(Cell::new(0u32));
    let (c, l) = (calls.clone(), lp.lp());
    lp.add_signal_handler(libc::SIGUSR1, move || {
        c.set(c.get() + 1);
        if c.get() == 1 {
            panic!("handler boom");
        }
        l.stop();
    })
    .unwrap();
    lp.call_soon(|| kill_self(libc::SIGUSR1)).unwrap();
    let l = lp.lp();
    lp.call_later(Duration::from_millis(20), move || {
        let _keep = &l;
        kill_self(libc::SIGUSR1)
    })
    .unwrap();
    run_bounded(&lp);
    assert_eq!(calls.get(), 2, "the handler runs again after its panic");
    let errs = errors.borrow();
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].contains("SIGUSR1") && errs[0].contains("handler boom"),
        "{}",
        errs[0]
    );
    assert!(lp.remove_signal_handler(libc::SIGUSR1));
}

#[test]
fn a_second_add_replaces_the_callback() {
    let _s = serial();
    let lp = TestLoop::new();
    let log: Rc<RefCell<Vec<&str>>> = Rc::default();
    let g = log.clone();
    lp.add_signal_handler(libc::SIGUSR2, move || g.borrow_mut().push("first"))
        .unwrap();
    let (g, l) = (log.clone(), lp.lp());
    lp.add_signal_handler(libc::SIGUSR2, move || {
        g.borrow_mut().push("second");
        l.stop();
    })
    .unwrap();
    lp.call_soon(|| kill_self(libc::SIGUSR2)).unwrap();
    run_bounded(&lp);
    assert_eq!(*log.borrow(), vec!["second"]);
    assert!(lp.remove_signal_handler(libc::SIGUSR2));
    assert_eq!(
        disposition(libc::SIGUSR2),
        libc::SIG_DFL,
        "one registration"
    );
}

#[test]
fn an_arrival_recorded_before_removal_does_not_run_the_removed_handler() {
    let _s = serial();
    let lp = TestLoop::new();
    let calls = add_counter(&lp, libc::SIGUSR1);
    // Recorded now (the loop is not running), turned into a callback only
    // at the next iteration, by which time the handler is gone.
    raise_here(libc::SIGUSR1);
    assert!(lp.remove_signal_handler(libc::SIGUSR1));
    for _ in 0..3 {
        lp.call_soon(|| ()).unwrap();
        lp.run_once().unwrap();
    }
    assert_eq!(calls.get(), 0);
}

#[test]
fn an_arrival_while_the_loop_is_not_running_runs_at_the_next_run() {
    let _s = serial();
    let lp = TestLoop::new();
    let calls = add_counting_stopper(&lp, libc::SIGUSR1);
    kill_self(libc::SIGUSR1);
    assert_eq!(calls.get(), 0, "callbacks run only on the loop");
    run_bounded(&lp);
    assert_eq!(calls.get(), 1);
    assert!(lp.remove_signal_handler(libc::SIGUSR1));
}

#[test]
fn several_loops_each_run_their_own_handler() {
    let _s = serial();
    let lp = TestLoop::new();
    let calls = add_counting_stopper(&lp, libc::SIGUSR2);

    // A second loop on its own thread: it reports each step on `events`
    // and removes its handler when told on `remove`.
    let (events_tx, events) = mpsc::channel::<String>();
    let (remove_tx, remove) = mpsc::channel::<()>();
    let other = std::thread::spawn(move || {
        let lp = EventLoop::new().unwrap();
        let me = std::thread::current().id();
        let (tx, l) = (events_tx.clone(), lp.clone());
        lp.add_signal_handler(libc::SIGUSR2, move || {
            assert_eq!(std::thread::current().id(), me);
            tx.send("ran".into()).unwrap();
            l.stop();
        })
        .unwrap();
        events_tx.send("ready".into()).unwrap();
        run_bounded(&lp);
        remove.recv_timeout(Duration::from_secs(10)).unwrap();
        let removed = lp.remove_signal_handler(libc::SIGUSR2);
        lp.close().unwrap();
        events_tx.send(format!("removed {removed}")).unwrap();
    });
    let next = || events.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(next(), "ready");
    lp.call_soon(|| kill_self(libc::SIGUSR2)).unwrap();
    run_bounded(&lp);
    assert_eq!(calls.get(), 1, "this loop's handler ran");
    assert_eq!(next(), "ran", "the other loop's handler ran too");
    remove_tx.send(()).unwrap();
    assert_eq!(next(), "removed true");
    other.join().unwrap();
    // This loop still handles it: the disposition stays.
    assert!(
        is_handled(libc::SIGUSR2),
        "another loop still has a handler"
    );
    lp.call_soon(|| kill_self(libc::SIGUSR2)).unwrap();
    run_bounded(&lp);
    assert_eq!(calls.get(), 2);
    assert!(lp.remove_signal_handler(libc::SIGUSR2));
    assert_eq!(
        disposition(libc::SIGUSR2),
        libc::SIG_DFL,
        "the last one restores it"
    );
}
