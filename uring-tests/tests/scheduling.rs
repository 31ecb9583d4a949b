//! call_soon / call_later / call_at, handles, and asyncio's iteration
//! rules (the ntodo batch, stop semantics, timer ordering, no early timer,
//! no spinning around a deadline).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use ringloop_uring_tests::{DropFlag, TestLoop};

type Log = Rc<RefCell<Vec<String>>>;

fn log() -> Log {
    Rc::default()
}

fn push(l: &Log, s: impl Into<String>) -> impl FnOnce() + 'static {
    let l = l.clone();
    let s = s.into();
    move || l.borrow_mut().push(s)
}

#[test]
fn call_soon_runs_in_fifo_order() {
    let lp = TestLoop::new();
    let l = log();
    for i in 0..100 {
        lp.call_soon(push(&l, i.to_string())).unwrap();
    }
    let stop = lp.lp();
    lp.call_soon(move || stop.stop()).unwrap();
    lp.run_forever().unwrap();
    let expected: Vec<String> = (0..100).map(|i| i.to_string()).collect();
    assert_eq!(*l.borrow(), expected);
}

#[test]
fn cancelled_handle_is_skipped_and_releases_its_closure() {
    let lp = TestLoop::new();
    let l = log();
    let flag = DropFlag::new();
    let sentinel = flag.sentinel();
    lp.call_soon(push(&l, "a")).unwrap();
    let h = lp
        .call_soon({
            let l = l.clone();
            move || {
                let _keep = &sentinel;
                l.borrow_mut().push("b".into());
            }
        })
        .unwrap();
    lp.call_soon(push(&l, "c")).unwrap();
    assert!(!h.cancelled());
    h.cancel();
    h.cancel(); // twice is a no-op
    assert!(h.cancelled());
    assert_eq!(flag.drops(), 1, "cancel must drop the callback at once");
    lp.stop();
    lp.run_forever().unwrap();
    assert_eq!(*l.borrow(), vec!["a", "c"]);
}

#[test]
fn callbacks_scheduled_by_a_batch_run_next_iteration() {
    // asyncio's ntodo rule: one iteration runs exactly the callbacks that
    // were ready when it started.
    let lp = TestLoop::new();
    let l = log();
    let inner_lp = lp.lp();
    let l2 = l.clone();
    lp.call_soon(move || {
        l2.borrow_mut().push("first".into());
        inner_lp.call_soon(push(&l2, "second")).unwrap();
    })
    .unwrap();
    lp.run_once().unwrap();
    assert_eq!(*l.borrow(), vec!["first"]);
    lp.run_once().unwrap();
    assert_eq!(*l.borrow(), vec!["first", "second"]);
}

#[test]
fn stop_before_run_forever_polls_once_and_returns() {
    let lp = TestLoop::new();
    let l = log();
    let inner_lp = lp.lp();
    let l2 = l.clone();
    lp.call_soon(move || {
        l2.borrow_mut().push("ready".into());
        inner_lp.call_soon(push(&l2, "next")).unwrap();
    })
    .unwrap();
    // A far timer must not make the loop wait.
    lp.call_later(Duration::from_secs(3600), push(&l, "never"))
        .unwrap();
    lp.stop();
    lp.run_forever().unwrap();
    assert_eq!(*l.borrow(), vec!["ready"]);
    assert!(!lp.is_running());
    // The callback scheduled by that batch runs on the next run.
    lp.stop();
    lp.run_forever().unwrap();
    assert_eq!(*l.borrow(), vec!["ready", "next"]);
}

#[test]
fn stop_while_running_finishes_the_current_batch() {
    let lp = TestLoop::new();
    let l = log();
    let inner_lp = lp.lp();
    let l2 = l.clone();
    lp.call_soon(move || {
        l2.borrow_mut().push("a".into());
        inner_lp.stop();
        inner_lp.call_soon(push(&l2, "c")).unwrap();
    })
    .unwrap();
    lp.call_soon(push(&l, "b")).unwrap();
    lp.run_forever().unwrap();
    assert_eq!(*l.borrow(), vec!["a", "b"], "b is in the same batch");
    let stop = lp.lp();
    lp.call_soon(move || stop.stop()).unwrap();
    lp.run_forever().unwrap();
    assert_eq!(*l.borrow(), vec!["a", "b", "c"]);
}

#[test]
fn is_running_reflects_the_run() {
    let lp = TestLoop::new();
    let seen = Rc::new(Cell::new(false));
    let (s, inner) = (seen.clone(), lp.lp());
    lp.call_soon(move || {
        s.set(inner.is_running());
        inner.stop();
    })
    .unwrap();
    assert!(!lp.is_running());
    lp.run_forever().unwrap();
    assert!(seen.get());
    assert!(!lp.is_running());
}

#[test]
fn past_deadlines_fire_in_deadline_order() {
    let lp = TestLoop::new();
    let l = log();
    let now = lp.time();
    lp.call_at(now - 1.0, push(&l, "-1")).unwrap();
    lp.call_at(now - 2.0, push(&l, "-2")).unwrap();
    lp.call_at(now - 3.0, push(&l, "-3")).unwrap();
    lp.call_later(Duration::ZERO, push(&l, "0")).unwrap();
    let stop = lp.lp();
    lp.call_later(Duration::from_millis(5), move || stop.stop())
        .unwrap();
    lp.run_forever().unwrap();
    assert_eq!(*l.borrow(), vec!["-3", "-2", "-1", "0"]);
}

#[test]
fn equal_deadlines_fire_in_scheduling_order() {
    let lp = TestLoop::new();
    let l = log();
    let when = lp.time() + 0.01;
    for i in 0..50 {
        lp.call_at(when, push(&l, i.to_string())).unwrap();
    }
    let stop = lp.lp();
    lp.call_at(when + 0.01, move || stop.stop()).unwrap();
    lp.run_forever().unwrap();
    let expected: Vec<String> = (0..50).map(|i| i.to_string()).collect();
    assert_eq!(*l.borrow(), expected);
}

#[test]
fn timers_interleave_by_deadline_not_by_scheduling() {
    let lp = TestLoop::new();
    let l = log();
    lp.call_later(Duration::from_millis(30), push(&l, "30"))
        .unwrap();
    lp.call_later(Duration::from_millis(10), push(&l, "10"))
        .unwrap();
    lp.call_later(Duration::from_millis(20), push(&l, "20"))
        .unwrap();
    let stop = lp.lp();
    lp.call_later(Duration::from_millis(40), move || stop.stop())
        .unwrap();
    lp.run_forever().unwrap();
    assert_eq!(*l.borrow(), vec!["10", "20", "30"]);
}

#[test]
fn no_timer_fires_early() {
    // Deadlines 0.5 ms apart: when the loop wakes for one, the next ones
    // are close, and a loop that treated "almost due" as due would run
    // them early.
    let lp = TestLoop::new();
    let late_by: Rc<RefCell<Vec<f64>>> = Rc::default();
    for i in 0..40u64 {
        let l = late_by.clone();
        let clock = lp.lp();
        let when = Rc::new(Cell::new(0.0));
        let w = when.clone();
        let h = lp
            .call_later(Duration::from_micros(5_000 + 500 * i), move || {
                l.borrow_mut().push(clock.time() - w.get())
            })
            .unwrap();
        when.set(h.when());
    }
    let stop = lp.lp();
    lp.call_later(Duration::from_millis(40), move || stop.stop())
        .unwrap();
    lp.run_forever().unwrap();
    let v = late_by.borrow();
    assert_eq!(v.len(), 40);
    for (i, late) in v.iter().enumerate() {
        // `when < now + resolution` counts as due: allow the resolution.
        assert!(*late >= -1e-9, "timer {i} ran {:.6} s early", -late);
    }
}

#[test]
fn waiting_for_a_timer_takes_few_iterations() {
    // No busy spinning: reaching a 30 ms deadline must take a handful of
    // iterations (one wait), not thousands of zero-timeout polls.
    let lp = TestLoop::new();
    let iterations = ringloop_uring_tests::iterations_until(&lp, Duration::from_millis(30), 20);
    assert!(iterations <= 3, "took {iterations} iterations");
}

#[test]
fn timer_handle_reports_when_and_cancel() {
    let lp = TestLoop::new();
    let l = log();
    let t0 = lp.time();
    let h = lp
        .call_later(Duration::from_millis(10), push(&l, "cancelled"))
        .unwrap();
    assert!(h.when() >= t0 + 0.010 && h.when() < t0 + 1.0);
    let at = lp.call_at(t0 + 123.0, || ()).unwrap();
    assert_eq!(at.when(), t0 + 123.0);
    at.cancel();
    h.cancel();
    assert!(h.cancelled());
    let stop = lp.lp();
    lp.call_later(Duration::from_millis(20), move || stop.stop())
        .unwrap();
    lp.run_forever().unwrap();
    assert!(l.borrow().is_empty());
}

#[test]
fn nan_deadline_is_invalid_input() {
    let lp = TestLoop::new();
    let err = lp.call_at(f64::NAN, || ()).unwrap_err();
    assert!(matches!(err, ringloop::Error::InvalidInput(_)), "{err:?}");
}

#[test]
fn a_million_cancelled_timers_are_compacted_away() {
    let lp = TestLoop::new();
    let handles: Vec<_> = (0..1_000_000)
        .map(|i| {
            lp.call_later(Duration::from_secs(3600 + i % 1000), || ())
                .unwrap()
        })
        .collect();
    assert_eq!(lp.scheduled_timers(), (1_000_000, 0));
    for h in &handles {
        h.cancel();
    }
    assert_eq!(lp.scheduled_timers(), (1_000_000, 1_000_000));
    lp.stop();
    lp.run_forever().unwrap();
    assert_eq!(lp.scheduled_timers(), (0, 0), "heap compacted");
}

#[test]
fn partial_cancellation_keeps_live_timers() {
    let lp = TestLoop::new();
    let count = Rc::new(Cell::new(0));
    let mut handles = Vec::new();
    for i in 0..1000u64 {
        let c = count.clone();
        handles.push(
            lp.call_later(Duration::from_micros(100 + i), move || c.set(c.get() + 1))
                .unwrap(),
        );
    }
    // Cancel 3 of every 4: compaction happens (> half cancelled) and must
    // keep the other quarter.
    for (i, h) in handles.iter().enumerate() {
        if i % 4 != 0 {
            h.cancel();
        }
    }
    let stop = lp.lp();
    lp.call_later(Duration::from_millis(30), move || stop.stop())
        .unwrap();
    lp.run_forever().unwrap();
    assert_eq!(count.get(), 250);
    assert_eq!(lp.scheduled_timers(), (0, 0));
}

#[test]
fn time_is_monotonic_seconds() {
    let lp = TestLoop::new();
    let a = lp.time();
    std::thread::sleep(Duration::from_millis(5));
    let b = lp.time();
    assert!(b - a >= 0.005 && b - a < 5.0, "{a} {b}");
}

#[test]
fn handles_record_where_they_were_scheduled() {
    let lp = TestLoop::new();
    let h = lp.call_soon(|| ()).unwrap();
    assert!(h.location().file().ends_with("scheduling.rs"));
    let t = lp.call_later(Duration::from_secs(1), || ()).unwrap();
    assert!(t.location().file().ends_with("scheduling.rs"));
    t.cancel();
}

#[test]
fn thousands_of_due_timers_fire_in_deadline_then_scheduling_order() {
    // More than the one-by-one limit are due at once, so the bulk path
    // runs; it must give exactly the order the heap would.
    let lp = TestLoop::new();
    let fired = Rc::new(RefCell::new(Vec::new()));
    let now = lp.time();
    let mut expected = Vec::new();
    for i in 0..5000u64 {
        // Deadlines in a scrambled order with many ties.
        let slot = (i * 7919) % 97;
        let when = now - 1.0 + slot as f64 * 1e-3;
        expected.push((slot, i));
        let f = fired.clone();
        lp.call_at(when, move || f.borrow_mut().push((slot, i)))
            .unwrap();
    }
    // One live timer far away stays queued.
    let far = lp.call_later(Duration::from_secs(3600), || ()).unwrap();
    expected.sort();
    lp.stop();
    lp.run_forever().unwrap();
    assert_eq!(*fired.borrow(), expected);
    assert_eq!(lp.scheduled_timers(), (1, 0));
    far.cancel();
}

#[test]
fn sleep_waits_at_least_its_delay_and_dropping_it_cancels_the_timer() {
    let lp = TestLoop::new();
    let l = lp.lp();
    let slept = lp.block_on(async move {
        let t0 = l.time();
        l.sleep(Duration::from_millis(15)).unwrap().await;
        l.time() - t0
    });
    assert!(slept >= 0.015, "{slept}");
    let (queued, cancelled) = lp.scheduled_timers();
    let s = lp.sleep(Duration::from_secs(60)).unwrap();
    assert_eq!(lp.scheduled_timers(), (queued + 1, cancelled));
    drop(s);
    assert_eq!(
        lp.scheduled_timers(),
        (queued + 1, cancelled + 1),
        "cancelled, removed lazily"
    );
}

#[test]
fn sleep_zero_yields_for_exactly_one_iteration() {
    // asyncio's `sleep(0)`: the task goes to the back of the ready queue
    // and resumes in the next iteration, before anything scheduled in
    // that iteration, after everything scheduled before it.
    let lp = TestLoop::new();
    let l = log();
    let (task_log, sleeper) = (l.clone(), lp.lp());
    let task = lp
        .create_task(async move {
            task_log.borrow_mut().push("task before".into());
            let timers = sleeper.scheduled_timers().0;
            let zero = sleeper.sleep(Duration::ZERO).unwrap();
            assert_eq!(sleeper.scheduled_timers().0, timers, "no timer");
            zero.await;
            task_log.borrow_mut().push("task after".into());
        })
        .unwrap();
    let (l2, lp2) = (l.clone(), lp.lp());
    lp.call_soon(move || {
        l2.borrow_mut().push("cb1".into());
        lp2.call_soon(push(&l2, "cb2")).unwrap();
    })
    .unwrap();
    lp.block_on(task).unwrap();
    assert_eq!(*l.borrow(), ["task before", "cb1", "task after", "cb2"]);
}
