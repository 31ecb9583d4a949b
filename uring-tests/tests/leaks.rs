//! Nothing leaks: descriptors are counted around each scenario. All
//! tests of this binary count descriptors, so each holds the fd lock for
//! its whole run (tests in one binary share the descriptor table).

use std::os::unix::net::UnixStream;
use std::time::Duration;

use ringloop::EventLoop;
use ringloop_uring_tests::{assert_no_fd_leak, fd_lock, fd_snapshot};

#[test]
fn close_releases_every_descriptor_even_with_io_in_flight() {
    assert_no_fd_leak(|| {
        let lp = EventLoop::new().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let l = lp.clone();
        let task = lp
            .create_task(async move { l.sock_recv(&a, 100).await })
            .unwrap();
        let l = lp.clone();
        lp.call_later(Duration::from_millis(20), move || l.stop())
            .unwrap();
        lp.run_forever().unwrap();
        assert!(!task.done());
        assert_eq!(lp.in_flight_ops(), 1);
        lp.close().unwrap();
        assert_eq!(lp.in_flight_ops(), 0);
        drop((task, b));
    });
}

#[test]
fn dropping_a_loop_with_io_in_flight_neither_hangs_nor_leaks() {
    assert_no_fd_leak(|| {
        let lp = EventLoop::new().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        // The tasks hold the loop only through get_running_loop inside
        // each poll, so the loop has no other owner than `lp`.
        lp.create_task(async move {
            let l = ringloop::get_running_loop().unwrap();
            let recv = l.sock_recv(&a, 100);
            drop(l);
            recv.await
        })
        .unwrap();
        lp.create_task(async move {
            let l = ringloop::get_running_loop().unwrap();
            let acc = l.sock_accept(&listener);
            drop(l);
            acc.await.map(|_| ())
        })
        .unwrap();
        lp.stop();
        lp.run_forever().unwrap();
        drop(lp);
        drop(b);
    });
}

#[test]
fn many_loops_created_and_closed_leak_nothing() {
    assert_no_fd_leak(|| {
        for _ in 0..50 {
            let lp = EventLoop::new().unwrap();
            lp.run_until_complete(async {}).unwrap();
            lp.close().unwrap();
        }
    });
}

#[test]
fn a_cancelled_accept_leaves_no_descriptor_and_the_connection_queued() {
    // The accept waits (nothing in the backlog), a client arrives, and
    // the future is dropped before the task runs again. On io_uring an
    // ACCEPT would have taken the connection in the kernel, and its fd
    // had to be closed (tokio #7979); sock_accept now waits for
    // readiness and accepts from the task, so nothing was taken: no new
    // descriptor, and the connection is still queued.
    use std::future::Future;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::task::{Context, Poll, Waker};

    let _serial = fd_lock();
    let lp = EventLoop::new().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let mut accept = Box::pin(lp.sock_accept(&listener));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(accept.as_mut().poll(&mut cx), Poll::Pending));
    lp.stop();
    lp.run_forever().unwrap(); // the wait reaches the kernel
    let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let before = fd_snapshot();
    std::thread::sleep(Duration::from_millis(20));
    lp.stop();
    lp.run_forever().unwrap(); // its readiness arrives; nobody polls
    drop(accept);
    for _ in 0..10 {
        lp.stop();
        lp.run_forever().unwrap();
        if lp.in_flight_ops() == 0 {
            break;
        }
    }
    assert_eq!(lp.in_flight_ops(), 0);
    before.assert_nothing_new("a cancelled accept took a connection");
    listener.set_nonblocking(false).unwrap();
    let (mut server_side, _) = listener.accept().expect("still queued");
    client.write_all(b"z").unwrap();
    let mut buf = [0u8; 1];
    server_side.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"z");
    lp.close().unwrap();
}

#[test]
fn cancelled_operations_free_everything_by_the_final_completion() {
    assert_no_fd_leak(|| {
        let lp = EventLoop::new().unwrap();
        let pairs: Vec<_> = (0..200).map(|_| UnixStream::pair().unwrap()).collect();
        let mut tasks = Vec::new();
        for (a, _b) in &pairs {
            let l = lp.clone();
            let a = a.try_clone().unwrap();
            tasks.push(
                lp.create_task(async move { l.sock_recv(&a, 4096).await })
                    .unwrap(),
            );
        }
        lp.stop();
        lp.run_forever().unwrap();
        assert_eq!(lp.in_flight_ops(), 200);
        for t in &tasks {
            t.cancel();
        }
        for _ in 0..20 {
            lp.stop();
            lp.run_forever().unwrap();
            if lp.in_flight_ops() == 0 {
                break;
            }
        }
        assert_eq!(lp.in_flight_ops(), 0);
        assert!(tasks.iter().all(|t| t.cancelled()));
        lp.close().unwrap();
        drop(tasks);
        drop(pairs);
    });
}

#[test]
fn connections_accepted_but_not_taken_are_closed_when_the_server_closes() {
    // io_uring: the server's multishot accept posts a completion (a new
    // descriptor) per waiting client; the server closes in the same
    // iteration, before its accept loop took them. Each of those
    // descriptors must be closed by the driver, and each client must see
    // its connection end. On epoll the clients wait in the backlog and are
    // refused when the listening socket closes: the same outcome.
    use std::io::Read;
    use std::net::TcpStream;

    let _serial = fd_lock();
    let base = fd_snapshot();
    let lp = EventLoop::new().unwrap();
    let server = lp
        .run_until_complete(lp.create_server(
            ringloop_uring_tests::proto::Recorder::factory(true).0,
            &["127.0.0.1"],
            Some(0),
            ringloop::net::ServerOptions::default(),
        ))
        .unwrap()
        .unwrap();
    let port = server.addresses()[0].as_socket().unwrap().port();
    // Let the accept loop arm its accept.
    lp.run_until_complete(lp.sleep(Duration::from_millis(20)).unwrap())
        .unwrap();
    let mut clients: Vec<TcpStream> = (0..16)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    // The loop is not running: nothing was accepted yet.
    let with_clients = fd_snapshot();
    let s = server.clone();
    lp.call_soon(move || s.close()).unwrap();
    // One iteration: the accept completions are reaped (waking the accept
    // loop behind the close callback), then the close runs first.
    lp.run_once().unwrap();
    for _ in 0..10 {
        if lp.in_flight_ops() == 0 {
            break;
        }
        lp.run_until_complete(lp.sleep(Duration::from_millis(5)).unwrap())
            .unwrap();
    }
    with_clients.assert_nothing_new("accepted descriptors left open");
    for c in &mut clients {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 1];
        match c.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => panic!("unexpected {n} bytes"),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        }
    }
    drop(clients);
    lp.run_until_complete(server.wait_closed()).unwrap();
    lp.close().unwrap();
    base.assert_nothing_new("after the loop closed");
}

/// The leak check itself: a descriptor left open fails it, named; one
/// opened and closed inside passes.
#[test]
fn the_leak_check_catches_and_names_a_leaked_descriptor() {
    use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};

    let leaked = std::cell::Cell::new(-1);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert_no_fd_leak(|| {
            leaked.set(std::fs::File::open("/dev/null").unwrap().into_raw_fd());
        })
    }));
    // SAFETY: the descriptor opened above, which nothing else owns.
    drop(unsafe { OwnedFd::from_raw_fd(leaked.get()) });
    let msg = match outcome {
        Ok(()) => panic!("a leaked descriptor passed the check"),
        Err(p) => p.downcast_ref::<String>().cloned().unwrap_or_default(),
    };
    assert!(msg.contains("/dev/null"), "the message names it: {msg}");
    assert_no_fd_leak(|| drop(std::fs::File::open("/dev/null").unwrap()));
}
