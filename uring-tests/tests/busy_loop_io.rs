//! I/O keeps arriving while callbacks keep the loop busy.
//!
//! When callbacks are ready the loop's wait has a zero timeout. On epoll
//! that check is an `epoll_wait` system call, and the driver puts every
//! other one off to the next iteration (see `EpollDriver::poll`); on
//! io_uring it is free. Either way a loop whose ready queue never
//! empties must still see readiness within a couple of iterations, and
//! a stopping loop's last iteration must still check.

use std::cell::Cell;
use std::io::Write;
use std::rc::Rc;

use ringloop::EventLoop;
use ringloop_uring_tests::proto::connect_to_std;
use ringloop_uring_tests::{tcp_pair, TestLoop};

/// Iterations a spinner may run before the test gives up.
const LIMIT: u32 = 1_000;
/// The iteration at which the peer sends.
const SEND_AT: u32 = 5;
/// Readiness seen in the next two iterations, one more to run what it
/// woke, one of slack.
const WITHIN: u32 = 4;

/// Reschedules itself once per iteration until `done` is set or `LIMIT`
/// iterations passed, counting them in `count`, then stops the loop.
/// `at(n)` runs in iteration `n`.
fn spin(lp: &EventLoop, count: Rc<Cell<u32>>, done: Rc<Cell<bool>>, at: Rc<dyn Fn(u32)>) {
    let l = lp.clone();
    lp.call_soon(move || {
        let n = count.get() + 1;
        count.set(n);
        at(n);
        if done.get() || n >= LIMIT {
            l.stop();
        } else {
            spin(&l, count, done, at);
        }
    })
    .unwrap();
}

/// `what`, sent in iteration `SEND_AT`, arrived in iteration `got` (0:
/// never, in `spun` iterations): within `WITHIN` iterations.
fn assert_in_time(got: u32, spun: u32, what: &str) {
    assert!(got > 0, "{what}: nothing arrived in {spun} busy iterations");
    assert!(
        got <= SEND_AT + WITHIN,
        "{what}: sent in iteration {SEND_AT}, arrived in iteration {got}"
    );
}

#[test]
fn a_stream_transport_receives_while_callbacks_keep_the_loop_busy() {
    let tl = TestLoop::new();
    let lp = tl.lp();
    let (t, seen, peer) = connect_to_std(&tl, false);
    let count = Rc::new(Cell::new(0u32));
    let done = Rc::new(Cell::new(false));
    let arrived = Rc::new(Cell::new(0u32));
    let (s, d, c, a) = (seen.clone(), done.clone(), count.clone(), arrived.clone());
    let peer = std::cell::RefCell::new(peer);
    let at = Rc::new(move |n: u32| {
        if n == SEND_AT {
            peer.borrow_mut().write_all(b"ping").unwrap();
        }
        if a.get() == 0 && s.borrow().bytes == b"ping" {
            a.set(c.get());
            d.set(true);
        }
    });
    spin(&lp, count.clone(), done, at);
    lp.run_forever().unwrap();
    assert_in_time(arrived.get(), count.get(), "the transport's data");
    t.abort();
}

#[test]
fn a_sock_recv_completes_while_callbacks_keep_the_loop_busy() {
    let tl = TestLoop::new();
    let lp = tl.lp();
    let (ours, peer) = tcp_pair();
    ours.set_nonblocking(true).unwrap();
    let count = Rc::new(Cell::new(0u32));
    let done = Rc::new(Cell::new(false));
    let arrived = Rc::new(Cell::new(0u32));
    let (l, d, c, a) = (lp.clone(), done.clone(), count.clone(), arrived.clone());
    let task = lp
        .create_task(async move {
            let got = l.sock_recv(&ours, 16).await;
            a.set(c.get());
            d.set(true);
            got
        })
        .unwrap();
    let peer = std::cell::RefCell::new(peer);
    let at = Rc::new(move |n: u32| {
        if n == SEND_AT {
            peer.borrow_mut().write_all(b"ping").unwrap();
        }
    });
    spin(&lp, count.clone(), done, at);
    lp.run_forever().unwrap();
    assert_in_time(arrived.get(), count.get(), "sock_recv");
    assert_eq!(&tl.block_on(task).unwrap().unwrap()[..], b"ping");
}

#[test]
fn a_stopping_loop_still_checks_for_io_in_its_last_iteration() {
    // asyncio: `stop()` then `run_forever()` runs one iteration, which
    // polls with a zero timeout: data already there is delivered. The
    // ready queue is not empty then (a callback is scheduled), which is
    // exactly when epoll may put the check off; it must not here.
    let tl = TestLoop::new();
    let lp = tl.lp();
    let (t, seen, mut peer) = connect_to_std(&tl, false);
    // Settle: the transport's receive is parked, nothing else is ready.
    for _ in 0..3 {
        lp.call_soon(|| ()).unwrap();
        lp.run_once().unwrap();
    }
    // An iteration that waits (for a timer), so the driver has put no
    // check off: the next zero-timeout one would be put off if it could.
    lp.call_later(std::time::Duration::from_millis(1), || ())
        .unwrap();
    lp.run_once().unwrap();
    peer.write_all(b"ping").unwrap();
    // Let the bytes reach our socket before the loop looks.
    std::thread::sleep(std::time::Duration::from_millis(50));
    // One callback ready, then stop: the last iteration's check sees the
    // data, and the pump it wakes runs in that same iteration.
    lp.call_soon(|| ()).unwrap();
    lp.stop();
    lp.run_forever().unwrap();
    assert_eq!(
        seen.borrow().bytes,
        b"ping",
        "the stopping loop's iteration did not deliver the data"
    );
    t.abort();
}
