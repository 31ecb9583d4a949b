//! Watchers (`Engine::poll_io_watching`): a waiter that stays parked when
//! it is woken and when its attempt succeeds, woken at every event for its
//! direction until cancelled; an attempt known to find the descriptor
//! empty is not made; an end of file that arrives with data is not missed.

use std::cell::Cell;
use std::io::{self, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::task::{Poll, Waker};
use std::time::Duration;

mod common;
use common::{counting, pair};

use ringloop_fallback::{Engine, Interest};

/// A non-blocking read of `fd` into a 16-byte buffer, counted in `calls`.
fn counted_read(fd: RawFd, calls: &Cell<usize>) -> impl FnMut() -> io::Result<usize> + '_ {
    move || {
        calls.set(calls.get() + 1);
        let mut buf = [0u8; 16];
        // SAFETY: reads at most 16 bytes into a local buffer.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

fn wait(e: &mut Engine, timeout: Duration) -> Vec<Waker> {
    let mut wakers = Vec::new();
    e.wait(Some(timeout), &mut wakers).unwrap();
    wakers
}

#[test]
fn a_watcher_stays_parked_across_wake_ups_and_receives() {
    let mut e: Engine = Engine::new().unwrap();
    let (a, b) = pair();
    let fd = b.as_raw_fd();
    e.register(fd, true);
    let (count, waker) = counting();
    let attempts = Cell::new(0);
    let mut attempt = counted_read(fd, &attempts);

    // Empty: tried once, parked.
    assert!(e
        .poll_io_watching(1, fd, Interest::READ, &waker, &mut attempt)
        .is_pending());
    assert_eq!((attempts.get(), e.waiting()), (1, 1));
    // The registration's first report (writable) wakes no reader.
    assert!(wait(&mut e, Duration::ZERO).is_empty());

    for round in 0..3 {
        (&a).write_all(b"abc").unwrap();
        let woken = wait(&mut e, Duration::from_secs(5));
        assert_eq!(woken.len(), 1, "round {round}: the watcher is woken");
        woken.into_iter().for_each(Waker::wake);
        assert_eq!(e.waiting(), 1, "round {round}: and stays parked");
        assert!(matches!(
            e.poll_io_watching(1, fd, Interest::READ, &waker, &mut attempt),
            Poll::Ready(Ok(3))
        ));
        assert_eq!(e.waiting(), 1, "a receive does not end the watch");
        assert!(e.note_drained(fd), "a short read empties a stream");
        // Known empty: no system call, nothing new parked.
        let before = attempts.get();
        assert!(e
            .poll_io_watching(1, fd, Interest::READ, &waker, &mut attempt)
            .is_pending());
        assert_eq!(attempts.get(), before, "round {round}: not tried");
        assert_eq!(e.waiting(), 1);
    }
    assert_eq!(count.0.load(Ordering::SeqCst), 3, "one wake-up per arrival");
    assert_eq!(e.reactor().ctl_calls(), 1, "added once, never re-armed");

    // Cancelled: the next arrival wakes nobody.
    e.cancel(1, fd);
    assert_eq!(e.waiting(), 0);
    (&a).write_all(b"late").unwrap();
    assert!(wait(&mut e, Duration::from_millis(50)).is_empty());
}

#[test]
fn a_watcher_is_not_woken_for_the_other_direction_and_keeps_its_latest_waker() {
    let mut e: Engine = Engine::new().unwrap();
    let (a, b) = pair();
    let fd = b.as_raw_fd();
    e.register(fd, true);
    let (first, waker1) = counting();
    let (second, waker2) = counting();
    let attempts = Cell::new(0);
    let mut attempt = counted_read(fd, &attempts);
    assert!(e
        .poll_io_watching(7, fd, Interest::READ, &waker1, &mut attempt)
        .is_pending());
    // Polled again with another waker: the same waiter, the new waker.
    assert!(e
        .poll_io_watching(7, fd, Interest::READ, &waker2, &mut attempt)
        .is_pending());
    assert_eq!(e.waiting(), 1);
    // The registration's first (writable) report wakes no reader.
    assert!(wait(&mut e, Duration::ZERO).is_empty());
    (&a).write_all(b"x").unwrap();
    wait(&mut e, Duration::from_secs(5))
        .into_iter()
        .for_each(Waker::wake);
    assert_eq!(first.0.load(Ordering::SeqCst), 0);
    assert_eq!(second.0.load(Ordering::SeqCst), 1);
    e.cancel(7, fd);
}

#[test]
fn an_end_of_file_that_arrives_with_data_is_read_after_the_data() {
    let mut e: Engine = Engine::new().unwrap();
    let (a, b) = pair();
    let fd = b.as_raw_fd();
    e.register(fd, true);
    let (_, waker) = counting();
    let attempts = Cell::new(0);
    let mut attempt = counted_read(fd, &attempts);
    assert!(e
        .poll_io_watching(1, fd, Interest::READ, &waker, &mut attempt)
        .is_pending());
    assert!(wait(&mut e, Duration::ZERO).is_empty());
    (&a).write_all(b"xy").unwrap();
    a.shutdown(Shutdown::Write).unwrap();
    assert_eq!(wait(&mut e, Duration::from_secs(5)).len(), 1);
    assert!(matches!(
        e.poll_io_watching(1, fd, Interest::READ, &waker, &mut attempt),
        Poll::Ready(Ok(2))
    ));
    assert!(
        !e.note_drained(fd),
        "after the peer's shutdown a short read does not mean empty"
    );
    assert!(matches!(
        e.poll_io_watching(1, fd, Interest::READ, &waker, &mut attempt),
        Poll::Ready(Ok(0))
    ));
    e.cancel(1, fd);
}
