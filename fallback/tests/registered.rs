//! Registered descriptors: one edge-triggered registration, readiness kept
//! by the engine. An attempt that would block clears its direction and the
//! next poll parks without a system call; edges set readiness again;
//! hang-ups and errors wake both directions and are never forgotten;
//! deregistering (or registering again) gives a reused number fresh state.

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

mod common;
use common::{counting, pair};

use ringloop_fallback::{Engine, Interest};

/// A read attempt on `fd` that counts its calls in `calls`.
fn counted_read(fd: RawFd, calls: &Cell<usize>) -> impl FnMut() -> io::Result<usize> + '_ {
    move || {
        calls.set(calls.get() + 1);
        read_fd(fd)
    }
}

/// A non-blocking read of `fd` into a 16-byte buffer.
fn read_fd(fd: RawFd) -> io::Result<usize> {
    let mut buf = [0u8; 16];
    // SAFETY: reads at most 16 bytes into a local buffer.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `poll` with a zero timeout, as the loop's `add_reader` watchers do.
fn poll_now(fd: RawFd, events: i16) -> io::Result<u32> {
    let mut pfd = libc::pollfd {
        fd,
        events: events | libc::POLLERR | libc::POLLHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    match n {
        n if n < 0 => Err(io::Error::last_os_error()),
        0 => Err(io::ErrorKind::WouldBlock.into()),
        _ => Ok(pfd.revents as u16 as u32),
    }
}

fn wait(e: &mut Engine, timeout: Duration) -> Vec<Waker> {
    let mut wakers = Vec::new();
    e.wait(Some(timeout), &mut wakers).unwrap();
    wakers
}

#[test]
fn an_attempt_that_would_block_parks_the_next_poll_without_a_system_call() {
    let mut e: Engine = Engine::new().unwrap();
    let (a, b) = pair();
    let fd = b.as_raw_fd();
    e.register(fd, true);
    assert_eq!(e.reactor().ctl_calls(), 0, "registering makes no call");
    let (_, waker) = counting();
    let attempts = Cell::new(0);
    let mut attempt = counted_read(fd, &attempts);

    // Fresh: tried; would block; parked with one EPOLL_CTL_ADD.
    assert!(e
        .poll_io(1, fd, Interest::READ, &waker, &mut attempt)
        .is_pending());
    assert_eq!(attempts.get(), 1);
    assert_eq!(e.reactor().ctl_calls(), 1);

    // Known empty: parked again without trying and without epoll_ctl.
    for _ in 0..3 {
        assert!(e
            .poll_io(1, fd, Interest::READ, &waker, &mut attempt)
            .is_pending());
    }
    assert_eq!(attempts.get(), 1, "the known-empty receive was skipped");
    assert_eq!(e.reactor().ctl_calls(), 1);

    // The registration's first report (writable) does not wake a reader.
    assert!(wait(&mut e, Duration::ZERO).is_empty());
    assert!(e.has_waiters(fd));

    // An edge: woken, tried, data.
    (&a).write_all(b"abc").unwrap();
    assert_eq!(wait(&mut e, Duration::from_secs(5)).len(), 1);
    assert!(matches!(
        e.poll_io(1, fd, Interest::READ, &waker, &mut attempt),
        Poll::Ready(Ok(3))
    ));
    assert_eq!(attempts.get(), 2);

    // Readable until an attempt says otherwise: tried once more, then
    // parked without trying.
    assert!(e
        .poll_io(2, fd, Interest::READ, &waker, &mut attempt)
        .is_pending());
    assert!(e
        .poll_io(2, fd, Interest::READ, &waker, &mut attempt)
        .is_pending());
    assert_eq!(attempts.get(), 3);
    assert_eq!(e.reactor().ctl_calls(), 1, "never re-armed");

    // A write attempt is not affected by the read side's state.
    let mut wrote = || (&b).write(b"x");
    assert!(matches!(
        e.poll_io(3, fd, Interest::WRITE, &waker, &mut wrote),
        Poll::Ready(Ok(1))
    ));
}

#[test]
fn a_short_read_of_a_stream_drains_it() {
    let mut e: Engine = Engine::new().unwrap();
    let (a, b) = pair();
    let fd = b.as_raw_fd();
    e.register(fd, true);
    let (_, waker) = counting();
    let attempts = Cell::new(0);
    let mut attempt = counted_read(fd, &attempts);
    (&a).write_all(b"abc").unwrap();
    assert!(matches!(
        e.poll_io(1, fd, Interest::READ, &waker, &mut attempt),
        Poll::Ready(Ok(3))
    ));
    e.note_drained(fd);
    assert!(e
        .poll_io(2, fd, Interest::READ, &waker, &mut attempt)
        .is_pending());
    assert_eq!(attempts.get(), 1, "no receive after a short one");
    assert_eq!(e.reactor().ctl_calls(), 1, "the first park adds it");

    // Data and the peer's shutdown arrive together: one event. After the
    // (short) read of the data, the end of file must still be read.
    (&a).write_all(b"xy").unwrap();
    a.shutdown(Shutdown::Write).unwrap();
    assert_eq!(wait(&mut e, Duration::from_secs(5)).len(), 1);
    assert!(matches!(
        e.poll_io(2, fd, Interest::READ, &waker, &mut attempt),
        Poll::Ready(Ok(2))
    ));
    e.note_drained(fd);
    assert!(
        matches!(
            e.poll_io(3, fd, Interest::READ, &waker, &mut attempt),
            Poll::Ready(Ok(0))
        ),
        "end of file seen after a short read"
    );
}

#[test]
fn note_drained_is_ignored_unless_the_descriptor_is_a_registered_stream() {
    let mut e: Engine = Engine::new().unwrap();
    let (a, b) = pair();
    let fd = b.as_raw_fd();
    let (_, waker) = counting();
    let attempts = Cell::new(0);
    let mut attempt = counted_read(fd, &attempts);
    for registered in [false, true] {
        if registered {
            e.register(fd, false); // registered, but not a stream
        }
        (&a).write_all(b"abcd").unwrap();
        let before = attempts.get();
        assert!(matches!(
            e.poll_io(1, fd, Interest::READ, &waker, &mut attempt),
            Poll::Ready(Ok(4))
        ));
        e.note_drained(fd);
        (&a).write_all(b"ef").unwrap();
        assert!(matches!(
            e.poll_io(1, fd, Interest::READ, &waker, &mut attempt),
            Poll::Ready(Ok(2))
        ));
        assert_eq!(attempts.get(), before + 2);
    }
}

#[test]
fn a_closed_and_reused_number_starts_afresh_after_deregister() {
    let mut e: Engine = Engine::new().unwrap();
    let (a, b) = pair();
    let n = b.into_raw_fd();
    e.register(n, true);
    let (_, waker) = counting();
    let attempts = Cell::new(0);
    let mut attempt = counted_read(n, &attempts);
    // Known empty and added.
    assert!(e
        .poll_io(1, n, Interest::READ, &waker, &mut attempt)
        .is_pending());
    e.cancel(1, n);
    assert_eq!(e.reactor().ctl_calls(), 1);
    e.deregister(n);
    assert_eq!(e.reactor().ctl_calls(), 2, "EPOLL_CTL_DEL");
    assert!(!e.is_registered(n));

    // Close `n` and reuse the number for another socket that has data
    // (dup2 closes the old file and reuses the number atomically, so no
    // other test thread can take it in between).
    let (c, d) = pair();
    (&c).write_all(b"new").unwrap();
    // SAFETY: `n` is ours (taken from `b`); dup2 replaces it.
    assert_eq!(unsafe { libc::dup2(d.as_raw_fd(), n) }, n);
    drop(a);
    e.register(n, true);
    assert!(
        matches!(
            e.poll_io(2, n, Interest::READ, &waker, &mut attempt),
            Poll::Ready(Ok(3))
        ),
        "the reused number is tried: nothing of the old state is left"
    );
    // And it is added to epoll again: an edge wakes a waiter.
    assert!(e
        .poll_io(3, n, Interest::READ, &waker, &mut attempt)
        .is_pending());
    assert_eq!(e.reactor().ctl_calls(), 3, "EPOLL_CTL_ADD for the new file");
    (&c).write_all(b"more").unwrap();
    assert_eq!(wait(&mut e, Duration::from_secs(5)).len(), 1);
    e.deregister(n);
    // SAFETY: `n` is ours.
    drop(unsafe { OwnedFd::from_raw_fd(n) });
}

#[test]
fn a_deregistered_number_behaves_as_unregistered() {
    let mut e: Engine = Engine::new().unwrap();
    let (_a, b) = pair();
    let fd = b.as_raw_fd();
    e.register(fd, true);
    let (_, waker) = counting();
    let attempts = Cell::new(0);
    let mut attempt = counted_read(fd, &attempts);
    assert!(e
        .poll_io(1, fd, Interest::READ, &waker, &mut attempt)
        .is_pending());
    e.cancel(1, fd);
    e.deregister(fd);
    assert!(e
        .poll_io(2, fd, Interest::READ, &waker, &mut attempt)
        .is_pending());
    assert!(e
        .poll_io(2, fd, Interest::READ, &waker, &mut attempt)
        .is_pending());
    assert_eq!(attempts.get(), 3, "every poll tries when unregistered");
}

#[test]
fn registering_a_number_again_starts_afresh() {
    let mut e: Engine = Engine::new().unwrap();
    let (a, b) = pair();
    let n = b.into_raw_fd();
    e.register(n, true);
    let (_, waker) = counting();
    let mut attempt = || read_fd(n);
    assert!(e
        .poll_io(1, n, Interest::READ, &waker, &mut attempt)
        .is_pending());
    e.cancel(1, n);
    // The owner closed it without deregistering (a bug elsewhere); the
    // next owner of the number registers it.
    let (c, d) = pair();
    (&c).write_all(b"hi").unwrap();
    // SAFETY: `n` is ours; dup2 replaces it.
    assert_eq!(unsafe { libc::dup2(d.as_raw_fd(), n) }, n);
    drop(a);
    e.register(n, true);
    assert!(matches!(
        e.poll_io(2, n, Interest::READ, &waker, &mut attempt),
        Poll::Ready(Ok(2))
    ));
    assert!(e
        .poll_io(3, n, Interest::READ, &waker, &mut attempt)
        .is_pending());
    (&c).write_all(b"again").unwrap();
    assert_eq!(wait(&mut e, Duration::from_secs(5)).len(), 1);
    e.deregister(n);
    // SAFETY: `n` is ours.
    drop(unsafe { OwnedFd::from_raw_fd(n) });
}

/// Writes until the socket's send buffer is full.
fn fill(fd: RawFd) {
    let chunk = [0u8; 65536];
    loop {
        // SAFETY: writes from a local buffer.
        let n = unsafe { libc::write(fd, chunk.as_ptr().cast(), chunk.len()) };
        if n < 0 {
            assert_eq!(io::Error::last_os_error().kind(), io::ErrorKind::WouldBlock);
            return;
        }
    }
}

fn write_fd(fd: RawFd) -> io::Result<usize> {
    // SAFETY: writes one byte from a static buffer.
    let n = unsafe { libc::send(fd, b"z".as_ptr().cast(), 1, libc::MSG_NOSIGNAL) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Parks a reader, a writer and a hang-up watcher on `fd` (whose send
/// buffer must be full and receive queue empty).
fn park_all(e: &mut Engine, fd: RawFd, waker: &Waker) {
    assert!(e
        .poll_io(1, fd, Interest::READ, waker, &mut || read_fd(fd))
        .is_pending());
    assert!(e
        .poll_io(2, fd, Interest::WRITE, waker, &mut || write_fd(fd))
        .is_pending());
    assert!(e
        .poll_io(3, fd, Interest::default(), waker, &mut || poll_now(fd, 0))
        .is_pending());
    assert_eq!(e.waiting(), 3);
}

#[test]
fn a_hangup_wakes_both_directions_and_is_not_forgotten() {
    let mut e: Engine = Engine::new().unwrap();
    let (a, b) = pair();
    let fd = b.as_raw_fd();
    e.register(fd, true);
    fill(fd);
    let (count, waker) = counting();
    park_all(&mut e, fd, &waker);
    assert!(wait(&mut e, Duration::ZERO).is_empty());
    drop(a);
    let mut wakers = Vec::new();
    while wakers.len() < 3 {
        let got = wait(&mut e, Duration::from_secs(5));
        assert!(!got.is_empty(), "every waiter is woken by the hang-up");
        wakers.extend(got);
    }
    wakers.into_iter().for_each(Waker::wake);
    assert_eq!(count.0.load(Ordering::SeqCst), 3);
    assert_eq!(e.waiting(), 0);
    // Known failed: attempts are always made. (The peer closed with
    // unread data, so a read reports a reset rather than end of file.)
    assert!(matches!(
        e.poll_io(4, fd, Interest::READ, &waker, &mut || read_fd(fd)),
        Poll::Ready(Ok(0)) | Poll::Ready(Err(_))
    ));
    assert!(matches!(
        e.poll_io(5, fd, Interest::WRITE, &waker, &mut || write_fd(fd)),
        Poll::Ready(Err(ref err)) if err.raw_os_error() == Some(libc::EPIPE)
    ));
    // Even an attempt that would block after a hang-up is retried at the
    // next wait rather than left waiting for an edge that will not come.
    let start = Instant::now();
    assert!(e
        .poll_io(6, fd, Interest::READ, &waker, &mut || {
            Err::<(), _>(io::ErrorKind::WouldBlock.into())
        })
        .is_pending());
    assert_eq!(wait(&mut e, Duration::from_secs(5)).len(), 1);
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn an_error_wakes_both_directions() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    server.set_nonblocking(true).unwrap();
    let fd = server.as_raw_fd();
    let mut e: Engine = Engine::new().unwrap();
    e.register(fd, true);
    fill(fd);
    let (count, waker) = counting();
    park_all(&mut e, fd, &waker);
    assert!(wait(&mut e, Duration::ZERO).is_empty());
    // A reset: linger 0, then close (the client also has unread data).
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: SO_LINGER reads one `linger` from a valid pointer.
    let rc = unsafe {
        libc::setsockopt(
            client.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    drop(client);
    let mut wakers = Vec::new();
    while wakers.len() < 3 {
        let got = wait(&mut e, Duration::from_secs(5));
        assert!(!got.is_empty(), "every waiter is woken by the reset");
        wakers.extend(got);
    }
    wakers.into_iter().for_each(Waker::wake);
    assert_eq!(count.0.load(Ordering::SeqCst), 3);
    let mut buf = [0u8; 4];
    assert!(matches!(
        e.poll_io(4, fd, Interest::READ, &waker, &mut || (&server).read(&mut buf)),
        Poll::Ready(Err(ref err)) if err.kind() == io::ErrorKind::ConnectionReset
    ));
}

#[test]
fn data_a_level_triggered_watcher_leaves_unread_is_reported_again() {
    let mut e: Engine = Engine::new().unwrap();
    let (a, b) = pair();
    let fd = b.as_raw_fd();
    e.register(fd, true);
    let (_, waker) = counting();
    let mut watch = || poll_now(fd, libc::POLLIN);
    assert!(e
        .poll_io(1, fd, Interest::READ, &waker, &mut watch)
        .is_pending());
    (&a).write_all(b"abc").unwrap();
    assert_eq!(wait(&mut e, Duration::from_secs(5)).len(), 1);
    // The callback does not read: ready again and again, with no new edge.
    for key in 2..5 {
        assert!(
            e.poll_io(key, fd, Interest::READ, &waker, &mut watch)
                .is_ready(),
            "undrained data is reported every time"
        );
        assert!(wait(&mut e, Duration::ZERO).is_empty(), "no new edge");
    }
    assert_eq!(read_fd(fd).unwrap(), 3);
    assert!(e
        .poll_io(5, fd, Interest::READ, &waker, &mut watch)
        .is_pending());
    (&a).write_all(b"d").unwrap();
    assert_eq!(wait(&mut e, Duration::from_secs(5)).len(), 1);
    assert!(e
        .poll_io(5, fd, Interest::READ, &waker, &mut watch)
        .is_ready());
}

#[test]
fn parking_a_registered_descriptor_that_may_be_ready_does_not_hang() {
    let mut e: Engine = Engine::new().unwrap();
    let (a, b) = pair();
    let fd = b.as_raw_fd();
    e.register(fd, true);
    (&a).write_all(b"abc").unwrap();
    // Readiness is unknown (fresh), so it may be ready: an edge-triggered
    // registration might never report it again. The next wait hands the
    // waker out at once.
    let (_, waker) = counting();
    e.park(1, fd, Interest::READ, &waker).unwrap();
    let start = Instant::now();
    let mut wakers = Vec::new();
    e.wait(None, &mut wakers).unwrap();
    assert_eq!(wakers.len(), 1);
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(e.waiting(), 0);
}

#[test]
fn waiters_left_at_deregister_stay_parked_one_shot() {
    let mut e: Engine = Engine::new().unwrap();
    let (a, b) = pair();
    let fd = b.as_raw_fd();
    e.register(fd, true);
    let (_, waker) = counting();
    assert!(e
        .poll_io(1, fd, Interest::READ, &waker, &mut || read_fd(fd))
        .is_pending());
    e.deregister(fd);
    assert!(e.has_waiters(fd));
    assert!(wait(&mut e, Duration::ZERO).is_empty());
    (&a).write_all(b"x").unwrap();
    assert_eq!(wait(&mut e, Duration::from_secs(5)).len(), 1);
    assert_eq!(e.waiting(), 0);
}

#[test]
fn the_reactor_and_engine_stay_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<ringloop_fallback::Reactor>();
    check::<Engine>();
}
