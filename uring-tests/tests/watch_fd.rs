//! add_reader / add_writer: level-triggered callbacks through the ready
//! queue, replacement, removal, refusal of bad descriptors, and the
//! descriptor closed while watched.

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::Duration;

use ringloop::{Error, EventLoop};
use ringloop_uring_tests::TestLoop;

/// Runs the loop for `n` iterations. Each gets a no-op callback, so no
/// iteration waits (a loop with nothing to do would rightly wait forever).
fn iterations(lp: &EventLoop, n: usize) {
    for _ in 0..n {
        lp.call_soon(|| ()).unwrap();
        lp.run_once().unwrap();
    }
}

#[test]
fn the_seed_example_receives_abc() {
    let lp = TestLoop::new();
    let (mut rsock, wsock) = UnixStream::pair().unwrap();
    rsock.set_nonblocking(true).unwrap();
    let got = Rc::new(RefCell::new(String::new()));
    let (g, l) = (got.clone(), lp.lp());
    let fd = rsock.as_raw_fd();
    lp.add_reader(&fd, move || {
        let mut buf = [0u8; 100];
        let n = rsock.read(&mut buf).unwrap();
        *g.borrow_mut() = format!("Received: {}", String::from_utf8_lossy(&buf[..n]));
        assert!(l.remove_reader(&fd));
        l.stop();
    })
    .unwrap();
    let l = lp.lp();
    lp.call_soon(move || {
        let _keep = &l;
        (&wsock).write_all(b"abc").unwrap();
    })
    .unwrap();
    let watchdog = lp.lp();
    lp.call_later(Duration::from_secs(10), move || watchdog.stop())
        .unwrap();
    lp.run_forever().unwrap();
    assert_eq!(*got.borrow(), "Received: abc");
}

#[test]
fn a_reader_runs_every_iteration_while_data_stays_unread() {
    let lp = TestLoop::new();
    let (a, b) = UnixStream::pair().unwrap();
    (&a).write_all(b"x").unwrap();
    let calls = Rc::new(Cell::new(0u32));
    let c = calls.clone();
    lp.add_reader(&b, move || c.set(c.get() + 1)).unwrap();
    iterations(&lp, 12);
    // Level-triggered: the byte stays unread, so the callback keeps
    // coming (once per iteration, after the first poll is set up).
    assert!(
        calls.get() >= 9,
        "called {} times in 12 iterations",
        calls.get()
    );
    assert!(lp.remove_reader(&b));
    let before = calls.get();
    iterations(&lp, 5);
    assert_eq!(calls.get(), before, "nothing after remove_reader");
    assert!(!lp.remove_reader(&b), "removing twice returns false");
}

#[test]
fn no_callback_while_nothing_is_readable() {
    let lp = TestLoop::new();
    let (a, b) = UnixStream::pair().unwrap();
    let calls = Rc::new(Cell::new(0u32));
    let c = calls.clone();
    lp.add_reader(&b, move || c.set(c.get() + 1)).unwrap();
    let stop = lp.lp();
    lp.call_later(Duration::from_millis(30), move || stop.stop())
        .unwrap();
    lp.run_forever().unwrap();
    assert_eq!(calls.get(), 0);
    (&a).write_all(b"now").unwrap();
    iterations(&lp, 3);
    assert!(calls.get() >= 1);
    lp.remove_reader(&b);
}

#[test]
fn a_second_reader_replaces_the_first() {
    let lp = TestLoop::new();
    let (a, b) = UnixStream::pair().unwrap();
    (&a).write_all(b"x").unwrap();
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    lp.add_reader(&b, move || l.borrow_mut().push("first"))
        .unwrap();
    let l = log.clone();
    lp.add_reader(&b, move || l.borrow_mut().push("second"))
        .unwrap();
    iterations(&lp, 4);
    assert!(!log.borrow().is_empty());
    assert!(
        log.borrow().iter().all(|s| *s == "second"),
        "{:?}",
        log.borrow()
    );
    lp.remove_reader(&b);
}

#[test]
fn writers_fire_while_there_is_room() {
    let lp = TestLoop::new();
    let (a, _b) = UnixStream::pair().unwrap();
    let calls = Rc::new(Cell::new(0u32));
    let c = calls.clone();
    lp.add_writer(&a, move || c.set(c.get() + 1)).unwrap();
    iterations(&lp, 4);
    assert!(calls.get() >= 2);
    assert!(lp.remove_writer(&a));
    assert!(!lp.remove_writer(&a));
    assert!(!lp.remove_reader(&a), "no reader was added");
}

#[test]
fn reader_and_writer_on_one_fd_are_independent() {
    let lp = TestLoop::new();
    let (a, b) = UnixStream::pair().unwrap();
    (&b).write_all(b"for a").unwrap();
    let (r, w) = (Rc::new(Cell::new(0u32)), Rc::new(Cell::new(0u32)));
    let (r2, w2) = (r.clone(), w.clone());
    lp.add_reader(&a, move || r2.set(r2.get() + 1)).unwrap();
    lp.add_writer(&a, move || w2.set(w2.get() + 1)).unwrap();
    iterations(&lp, 4);
    assert!(r.get() >= 2 && w.get() >= 2);
    assert!(lp.remove_writer(&a));
    let before = r.get();
    iterations(&lp, 3);
    assert!(r.get() > before, "the reader survives removing the writer");
    assert!(lp.remove_reader(&a));
}

#[test]
fn invalid_and_busy_descriptors_are_refused() {
    let lp = TestLoop::new();
    let err = lp.add_reader(&987_654, || ()).unwrap_err();
    match &err {
        Error::Io(e) => assert_eq!(e.raw_os_error(), Some(libc::EBADF)),
        other => panic!("{other:?}"),
    }
    // An fd with a running sock_recv belongs to that operation.
    let (_a, b) = UnixStream::pair().unwrap();
    let b = Rc::new(b);
    let l = lp.lp();
    let b2 = b.clone();
    let recv = lp
        .create_task(async move { l.sock_recv(&*b2, 10).await })
        .unwrap();
    iterations(&lp, 1);
    let busy = lp.add_reader(&b.as_raw_fd(), || ()).unwrap_err();
    assert_eq!(
        busy.io_kind(),
        Some(std::io::ErrorKind::ResourceBusy),
        "{busy}"
    );
    recv.cancel();
    iterations(&lp, 2);
    lp.add_reader(&b.as_raw_fd(), || ()).unwrap();
    assert!(lp.remove_reader(&b.as_raw_fd()));
}

#[test]
fn closing_the_fd_while_watched_is_reported_not_a_crash() {
    let mut lp = TestLoop::new();
    let errors = lp.expect_errors();
    let (a, b) = UnixStream::pair().unwrap();
    (&a).write_all(b"x").unwrap();
    let fd = b.as_raw_fd();
    let holder = Rc::new(RefCell::new(Some(b)));
    let h = holder.clone();
    // The callback closes the descriptor but forgets remove_reader.
    lp.add_reader(&fd, move || drop(h.borrow_mut().take()))
        .unwrap();
    iterations(&lp, 5);
    let errs = errors.borrow();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("watching fd"), "{}", errs[0]);
    assert!(!lp.remove_reader(&fd), "the failed watch removed itself");
}

#[test]
fn a_panicking_callback_is_reported_and_the_watch_goes_on() {
    let mut lp = TestLoop::new();
    let errors = lp.expect_errors();
    let (a, b) = UnixStream::pair().unwrap();
    (&a).write_all(b"x").unwrap();
    let calls = Rc::new(Cell::new(0u32));
    let c = calls.clone();
    lp.add_reader(&b, move || {
        c.set(c.get() + 1);
        if c.get() == 1 {
            panic!("reader exploded");
        }
    })
    .unwrap();
    iterations(&lp, 5);
    assert!(calls.get() >= 2, "called again after the panic");
    assert_eq!(errors.borrow().len(), 1);
    assert!(errors.borrow()[0].contains("reader exploded"));
    lp.remove_reader(&b);
}

#[test]
fn after_close_add_is_an_error_and_remove_is_false() {
    let lp = TestLoop::new();
    let (_a, b) = UnixStream::pair().unwrap();
    lp.add_reader(&b, || ()).unwrap();
    lp.close().unwrap();
    assert!(matches!(lp.add_reader(&b, || ()), Err(Error::LoopClosed)));
    assert!(matches!(lp.add_writer(&b, || ()), Err(Error::LoopClosed)));
    assert!(!lp.remove_reader(&b));
    assert!(!lp.remove_writer(&b));
}

#[test]
fn an_urgent_byte_from_the_peer_does_not_spin_the_loop() {
    // TCP urgent data (MSG_OOB) sets only "priority" readiness, which no
    // read clears; a reader waiting for normal data must not be woken
    // over and over by it (a remote peer could otherwise burn a core).
    let lp = TestLoop::new();
    let (client, server) = ringloop_uring_tests::tcp_pair();
    let sent = unsafe {
        // SAFETY (test): send one byte from a valid buffer on our socket.
        libc::send(client.as_raw_fd(), b"!".as_ptr().cast(), 1, libc::MSG_OOB)
    };
    assert_eq!(sent, 1);
    std::thread::sleep(Duration::from_millis(20));
    let calls = Rc::new(Cell::new(0u32));
    let c = calls.clone();
    lp.add_reader(&server, move || c.set(c.get() + 1)).unwrap();
    let iterations = ringloop_uring_tests::iterations_until(&lp, Duration::from_millis(30), 50);
    assert!(iterations <= 4, "took {iterations} iterations");
    assert_eq!(calls.get(), 0, "no normal data arrived");
    lp.remove_reader(&server);
}

#[test]
fn a_regular_file_or_directory_is_refused_with_eperm() {
    // Always "ready": watched, its callback would run every iteration.
    // epoll refuses them, so asyncio's add_reader raises PermissionError.
    let lp = TestLoop::new();
    let file = std::fs::File::open("/proc/self/exe").unwrap();
    let dir = std::fs::File::open("/").unwrap();
    for fd in [file.as_raw_fd(), dir.as_raw_fd()] {
        for err in [
            lp.add_reader(&fd, || ()).unwrap_err(),
            lp.add_writer(&fd, || ()).unwrap_err(),
        ] {
            match &err {
                Error::Io(e) => assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}"),
                other => panic!("{other:?}"),
            }
        }
    }
    assert!(!lp.remove_reader(&file.as_raw_fd()));
}
