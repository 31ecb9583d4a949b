//! The reactor and engine on their own: parking, waking, re-arming for a
//! second waiter, cancelling, descriptors closed and reused, the eventfd.

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::task::{Poll, Waker};
use std::time::Duration;

mod common;
use common::{counting, pair};

use ringloop_fallback::{eventfd, Engine, Interest};

fn would_block<T>() -> io::Result<T> {
    Err(io::Error::from(io::ErrorKind::WouldBlock))
}

#[test]
fn a_parked_waiter_is_woken_once_ready_and_then_removed() {
    let mut e: Engine = Engine::new().unwrap();
    let (a, b) = pair();
    let (count, waker) = counting();
    assert!(e
        .poll_io(
            1,
            b.as_raw_fd(),
            Interest::READ,
            &waker,
            &mut would_block::<()>
        )
        .is_pending());
    assert_eq!(e.waiting(), 1);
    assert!(e.has_waiters(b.as_raw_fd()));
    (&a).write_all(b"x").unwrap();
    let mut wakers = Vec::new();
    e.wait(Some(Duration::from_secs(5)), &mut wakers).unwrap();
    assert_eq!(wakers.len(), 1);
    wakers.drain(..).for_each(Waker::wake);
    assert_eq!(count.0.load(Ordering::SeqCst), 1);
    assert_eq!(e.waiting(), 0, "a woken waiter is removed");
}

#[test]
fn a_ready_attempt_never_parks() {
    let mut e: Engine = Engine::new().unwrap();
    let (a, b) = pair();
    (&a).write_all(b"hi").unwrap();
    let (_c, waker) = counting();
    let mut buf = [0u8; 8];
    let r = e.poll_io(1, b.as_raw_fd(), Interest::READ, &waker, &mut || {
        (&b).read(&mut buf)
    });
    assert!(matches!(r, Poll::Ready(Ok(2))));
    assert_eq!(e.waiting(), 0);
}

#[test]
fn errors_other_than_would_block_are_returned() {
    let mut e: Engine = Engine::new().unwrap();
    let (_a, b) = pair();
    let (_c, waker) = counting();
    let r = e.poll_io(1, b.as_raw_fd(), Interest::READ, &waker, &mut || {
        Err::<(), _>(io::Error::from_raw_os_error(libc::ECONNRESET))
    });
    match r {
        Poll::Ready(Err(err)) => assert_eq!(err.raw_os_error(), Some(libc::ECONNRESET)),
        _ => panic!("expected the error"),
    }
}

#[test]
fn interrupted_attempts_are_retried() {
    let mut e: Engine = Engine::new().unwrap();
    let (_a, b) = pair();
    let (_c, waker) = counting();
    let mut tries = 0;
    let r = e.poll_io(1, b.as_raw_fd(), Interest::READ, &waker, &mut || {
        tries += 1;
        if tries < 3 {
            Err(io::Error::from(io::ErrorKind::Interrupted))
        } else {
            Ok(tries)
        }
    });
    assert!(matches!(r, Poll::Ready(Ok(3))));
}

#[test]
fn a_reader_and_a_writer_on_one_fd_are_woken_separately() {
    let mut e: Engine = Engine::new().unwrap();
    let (a, b) = pair();
    let (reads, rw) = counting();
    let (writes, ww) = counting();
    // A writer that waits (pretend the buffer is full) and a reader.
    assert!(e
        .poll_io(
            1,
            b.as_raw_fd(),
            Interest::READ,
            &rw,
            &mut would_block::<()>
        )
        .is_pending());
    assert!(e
        .poll_io(
            2,
            b.as_raw_fd(),
            Interest::WRITE,
            &ww,
            &mut would_block::<()>
        )
        .is_pending());
    let mut wakers = Vec::new();
    // Writable at once: only the writer wakes; the reader stays armed.
    e.wait(Some(Duration::from_secs(5)), &mut wakers).unwrap();
    wakers.drain(..).for_each(Waker::wake);
    assert_eq!(writes.0.load(Ordering::SeqCst), 1);
    assert_eq!(reads.0.load(Ordering::SeqCst), 0);
    assert_eq!(e.waiting(), 1);
    (&a).write_all(b"x").unwrap();
    e.wait(Some(Duration::from_secs(5)), &mut wakers).unwrap();
    wakers.drain(..).for_each(Waker::wake);
    assert_eq!(reads.0.load(Ordering::SeqCst), 1, "re-armed for the reader");
}

#[test]
fn cancelled_waiters_are_not_woken() {
    let mut e: Engine = Engine::new().unwrap();
    let (a, b) = pair();
    let (count, waker) = counting();
    assert!(e
        .poll_io(
            7,
            b.as_raw_fd(),
            Interest::READ,
            &waker,
            &mut would_block::<()>
        )
        .is_pending());
    e.cancel(7, b.as_raw_fd());
    assert_eq!(e.waiting(), 0);
    (&a).write_all(b"x").unwrap();
    let mut wakers = Vec::new();
    e.wait(Some(Duration::from_millis(50)), &mut wakers)
        .unwrap();
    assert!(wakers.is_empty());
    assert_eq!(count.0.load(Ordering::SeqCst), 0);
}

#[test]
fn a_descriptor_number_reused_after_close_is_armed_again() {
    // The old socket is closed while registered (the kernel drops it from
    // the epoll set); a new socket gets the same number: arming must add
    // it again rather than assume it is still registered.
    let mut e: Engine = Engine::new().unwrap();
    let (a, b) = pair();
    let fd = b.as_raw_fd();
    let (_c, waker) = counting();
    assert!(e
        .poll_io(1, fd, Interest::READ, &waker, &mut would_block::<()>)
        .is_pending());
    e.cancel(1, fd);
    drop((a, b));
    let (c, d) = pair();
    let (count, waker) = counting();
    // Most likely the same number; either way the wait must work.
    assert!(e
        .poll_io(
            2,
            d.as_raw_fd(),
            Interest::READ,
            &waker,
            &mut would_block::<()>
        )
        .is_pending());
    (&c).write_all(b"x").unwrap();
    let mut wakers = Vec::new();
    e.wait(Some(Duration::from_secs(5)), &mut wakers).unwrap();
    wakers.drain(..).for_each(Waker::wake);
    assert_eq!(count.0.load(Ordering::SeqCst), 1);
}

#[test]
fn the_eventfd_ends_a_wait_from_another_thread() {
    let mut e: Engine = Engine::new().unwrap();
    let efd = eventfd::new().unwrap();
    e.set_wake_fd(efd.as_raw_fd()).unwrap();
    let raw = efd.as_raw_fd();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        eventfd::notify(raw);
    });
    let mut wakers = Vec::new();
    let started = std::time::Instant::now();
    e.wait(Some(Duration::from_secs(10)), &mut wakers).unwrap();
    t.join().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "woken by the eventfd"
    );
    assert_eq!(eventfd::drain(raw), 0, "the engine drained it");
}

#[test]
fn a_zero_timeout_wait_returns_at_once() {
    let mut e: Engine = Engine::new().unwrap();
    let mut wakers = Vec::new();
    let started = std::time::Instant::now();
    e.wait(Some(Duration::ZERO), &mut wakers).unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(wakers.is_empty());
}

#[test]
fn an_empty_interest_waits_only_for_hangup() {
    let mut e: Engine = Engine::new().unwrap();
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors we then own.
    assert_eq!(
        unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK) },
        0
    );
    // SAFETY: fresh descriptors nothing else owns.
    let (r, w) = unsafe {
        use std::os::fd::{FromRawFd, OwnedFd};
        (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1]))
    };
    let (count, waker) = counting();
    let none = Interest::default();
    assert!(e
        .poll_io(7, w.as_raw_fd(), none, &waker, &mut would_block::<()>)
        .is_pending());
    // The write end is writable, but nobody asked for that: no wake-up.
    let mut wakers = Vec::new();
    e.wait(Some(Duration::from_millis(20)), &mut wakers)
        .unwrap();
    assert!(wakers.is_empty(), "woken without a hang-up");
    drop(r);
    e.wait(Some(Duration::from_secs(5)), &mut wakers).unwrap();
    assert_eq!(wakers.len(), 1, "the reader's close must wake the watcher");
    wakers.drain(..).for_each(Waker::wake);
    assert_eq!(count.0.load(Ordering::SeqCst), 1);
    assert_eq!(e.waiting(), 0);
}
