//! `connection_lost` is never skipped because the user holds the
//! protocol borrowed (across an await) when it is due: it waits for the
//! borrow to end, then comes exactly once. For a stream transport closed
//! with an empty buffer (a scheduled call), one whose close waited for
//! its buffer to drain (a direct call), and a write pipe.

use std::cell::RefCell;
use std::net::TcpListener;
use std::rc::Rc;
use std::time::Duration;

use ringloop::EventLoop;
use ringloop_uring_tests::pipes::{os_pipe, PipeSeenRef, WriteRecorder};
use ringloop_uring_tests::proto::{Recorder, SeenRef};
use ringloop_uring_tests::TestLoop;

/// Holds `protocol` borrowed while `end` runs and for 20 ms after,
/// then lets go and waits 20 ms more.
#[allow(clippy::await_holding_refcell_ref)] // the point of the test
async fn hold_while<P>(lp: EventLoop, protocol: Rc<RefCell<P>>, end: impl FnOnce()) {
    let held = protocol.borrow();
    end();
    lp.sleep(Duration::from_millis(20)).unwrap().await;
    drop(held);
    lp.sleep(Duration::from_millis(20)).unwrap().await;
}

fn connect(
    tl: &TestLoop,
) -> (
    ringloop::Transport,
    Rc<RefCell<Recorder>>,
    SeenRef,
    TcpListener,
) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (proto, seen) = Recorder::new(false);
    let (t, p) = tl
        .block_on(tl.lp().create_connection(
            move || proto,
            Some("127.0.0.1"),
            Some(port),
            Default::default(),
        ))
        .unwrap();
    (t, p, seen, listener)
}

fn lost_once(log: &[String]) -> bool {
    log.iter().filter(|e| e.starts_with("lost")).count() == 1
        && log.last().is_some_and(|e| e.starts_with("lost"))
}

#[test]
fn a_stream_closed_while_its_protocol_is_borrowed_still_hears_connection_lost() {
    let tl = TestLoop::new();
    let (t, p, seen, _listener) = connect(&tl);
    tl.block_on(hold_while(tl.lp(), p, move || t.close()));
    assert!(lost_once(&seen.borrow().log), "{:?}", seen.borrow().log);
}

#[test]
fn a_stream_whose_close_drains_its_buffer_while_borrowed_still_hears_it() {
    let tl = TestLoop::new();
    let (t, p, seen, listener) = connect(&tl);
    let (_peer, _) = listener.accept().unwrap();
    tl.block_on(hold_while(tl.lp(), p, move || {
        t.write(&[7u8; 1024]).unwrap();
        t.close(); // connection_lost comes once the buffer is sent
    }));
    assert!(lost_once(&seen.borrow().log), "{:?}", seen.borrow().log);
}

#[test]
fn a_write_pipe_closed_while_its_protocol_is_borrowed_still_hears_it() {
    let tl = TestLoop::new();
    let (_r, w) = os_pipe();
    let (proto, seen): (WriteRecorder, PipeSeenRef) = WriteRecorder::new();
    let (t, p) = tl
        .block_on(tl.lp().connect_write_pipe(move || proto, w))
        .unwrap();
    tl.block_on(hold_while(tl.lp(), p, move || {
        t.write(b"x").unwrap();
        t.close();
    }));
    assert!(seen.borrow().lost(), "{:?}", seen.borrow().log);
}
