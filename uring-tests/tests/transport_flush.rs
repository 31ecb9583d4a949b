//! A write made outside the transport's pump (a callback, a task: the
//! streams API) leaves at the end of the same loop iteration, together
//! with the other writes of that iteration, instead of one iteration
//! later.

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::time::Duration;

use ringloop::Backend;
use ringloop_uring_tests::proto::connect_to_std;
use ringloop_uring_tests::TestLoop;

/// Reads what the peer has without blocking.
fn available(peer: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match peer.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return got,
            Err(e) => panic!("read: {e}"),
        }
    }
}

#[test]
fn writes_from_a_callback_leave_in_the_same_iteration() {
    let tl = TestLoop::new();
    let lp = tl.lp();
    let (t, _seen, mut peer) = connect_to_std(&tl, false);
    peer.set_nonblocking(true).unwrap();
    // Let the transport settle (its pump has run).
    tl.block_on(lp.sleep(Duration::from_millis(20)).unwrap());
    assert!(available(&mut peer).is_empty());
    let t2 = t.clone();
    lp.call_soon(move || {
        t2.write(b"one ").unwrap();
        t2.write(b"two").unwrap();
    })
    .unwrap();
    // The iteration that runs the callback starts the send at its end:
    // on epoll that is the sendmsg itself; io_uring submits it at the
    // start of the next iteration (whose wait the send's completion
    // ends).
    let iterations = match lp.backend() {
        Backend::Epoll => 1,
        _ => 2,
    };
    for _ in 0..iterations {
        lp.run_once().unwrap();
    }
    assert_eq!(
        available(&mut peer),
        b"one two",
        "not sent within {iterations} iteration(s)"
    );
    t.close();
}
