//! Stream transports: asyncio's ordering, close/abort, half-close, flow
//! control and error rules, on both backends.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::rc::Rc;
use std::time::Duration;

use ringloop::net::ServerOptions;
use ringloop::{BaseProtocol, EventLoop, Protocol, Transport};
use ringloop_uring_tests::proto::{
    connect_to_std, connect_to_std_keeping_protocol, wait_until, Recorder, SeenRef,
};
use ringloop_uring_tests::{fd_lock, pattern, TestLoop};

/// The log without flow-control events (large writes pause and resume).
fn events(seen: &SeenRef) -> Vec<String> {
    seen.borrow()
        .log
        .iter()
        .filter(|e| *e != "pause" && *e != "resume")
        .fold(Vec::new(), |mut v: Vec<String>, e| {
            if !(e == "data" && v.last().is_some_and(|l| l == "data")) {
                v.push(e.clone());
            }
            v
        })
}

fn run_until(tl: &TestLoop, cond: impl FnMut() -> bool + 'static) {
    let lp = tl.lp();
    tl.block_on(async move { wait_until(&lp, cond).await });
}

#[test]
fn echo_through_server_in_order() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    let lp = tl.lp();
    let (factory, conns) = Recorder::factory(true);
    let server = tl
        .block_on(lp.create_server(factory, &["127.0.0.1"], Some(0), ServerOptions::default()))
        .unwrap();
    let port = server.addresses()[0].as_socket().unwrap().port();
    let (proto, seen) = Recorder::new(false);
    let made_before_return = seen.clone();
    let l = lp.clone();
    let t = tl.block_on(async move {
        let (t, _) = l
            .create_connection(
                move || proto,
                Some("localhost"),
                Some(port),
                Default::default(),
            )
            .await
            .unwrap();
        // connection_made ran before create_connection resolved.
        assert_eq!(made_before_return.borrow().log, vec!["made"]);
        t
    });
    let payload = pattern(300_000, 7);
    t.write(&payload).unwrap();
    let s = seen.clone();
    run_until(&tl, move || s.borrow().bytes.len() >= 300_000);
    assert_eq!(seen.borrow().bytes, payload);
    t.close();
    t.close(); // a second close does nothing
    let (s, c) = (seen.clone(), conns.clone());
    run_until(&tl, move || {
        s.borrow().lost() && c.borrow()[0].borrow().lost()
    });
    assert_eq!(events(&seen), vec!["made", "data", "lost None"]);
    // The server saw EOF, which closes by default.
    assert_eq!(
        events(&conns.borrow()[0]),
        vec!["made", "data", "eof", "lost None"]
    );
    assert!(t.is_closed());
    server.close();
    tl.block_on(server.wait_closed());
}

#[test]
fn close_flushes_the_buffer_first() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    let (t, seen, mut peer) = connect_to_std(&tl, false);
    let payload = pattern(2 << 20, 3);
    t.write(&payload).unwrap();
    t.close();
    assert!(t.is_closing());
    assert!(!t.is_reading());
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        peer.read_to_end(&mut got).unwrap();
        got
    });
    let s = seen.clone();
    run_until(&tl, move || s.borrow().lost());
    assert_eq!(reader.join().unwrap(), payload);
    assert_eq!(events(&seen), vec!["made", "lost None"]);
}

#[test]
fn abort_drops_the_buffer() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    let (t, seen, mut peer) = connect_to_std(&tl, false);
    t.write(&pattern(8 << 20, 1)).unwrap();
    t.abort();
    t.abort();
    let s = seen.clone();
    run_until(&tl, move || s.borrow().lost());
    assert_eq!(events(&seen), vec!["made", "lost None"]);
    let mut got = Vec::new();
    let _ = peer.read_to_end(&mut got);
    assert!(got.len() < 8 << 20, "abort sent everything");
}

#[test]
fn eof_closes_by_default_and_keep_open_allows_writes() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    // Default: EOF closes.
    let (_t, seen, peer) = connect_to_std(&tl, false);
    peer.shutdown(std::net::Shutdown::Write).unwrap();
    let s = seen.clone();
    run_until(&tl, move || s.borrow().lost());
    assert_eq!(seen.borrow().log, vec!["made", "eof", "lost None"]);

    // eof_received -> true: the transport stays open for writing.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (mut proto, seen) = Recorder::new(false);
    proto.keep_open_on_eof = true;
    let (t, _) = tl
        .block_on(tl.lp().create_connection(
            move || proto,
            Some("127.0.0.1"),
            Some(port),
            Default::default(),
        ))
        .unwrap();
    let (mut peer, _) = listener.accept().unwrap();
    peer.write_all(b"question").unwrap();
    peer.shutdown(std::net::Shutdown::Write).unwrap();
    let s = seen.clone();
    run_until(&tl, move || s.borrow().log.contains(&"eof".to_string()));
    assert!(!t.is_closing());
    t.write(b"answer").unwrap();
    t.close();
    let mut got = Vec::new();
    let s = seen.clone();
    run_until(&tl, move || s.borrow().lost());
    peer.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"answer");
    assert_eq!(seen.borrow().bytes, b"question");
    assert_eq!(seen.borrow().log, vec!["made", "data", "eof", "lost None"]);
}

#[test]
fn write_eof_half_closes_after_the_buffer() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    let (t, seen, mut peer) = connect_to_std(&tl, false);
    assert!(t.can_write_eof());
    let payload = pattern(1 << 20, 9);
    t.write(&payload).unwrap();
    t.write_eof();
    t.write_eof();
    assert!(matches!(
        t.write(b"x"),
        Err(ringloop::Error::InvalidState(_))
    ));
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        peer.read_to_end(&mut got).unwrap();
        // Reading still works on our side: answer after our EOF.
        peer.write_all(b"after eof").unwrap();
        (got, peer)
    });
    let s = seen.clone();
    run_until(&tl, move || s.borrow().bytes == b"after eof");
    let (got, _peer) = reader.join().unwrap();
    assert_eq!(got, payload);
    assert!(!t.is_closing());
    t.close();
    let s = seen.clone();
    run_until(&tl, move || s.borrow().lost());
}

#[test]
fn flow_control_pauses_above_high_and_resumes_at_low() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    let (t, seen, mut peer) = connect_to_std(&tl, false);
    assert_eq!(t.get_write_buffer_limits(), (16 * 1024, 64 * 1024));
    assert!(t.set_write_buffer_limits(Some(10), Some(11)).is_err());
    t.set_write_buffer_limits(None, Some(1000)).unwrap();
    assert_eq!(t.get_write_buffer_limits(), (1000, 4000));
    t.set_write_buffer_limits(Some(64 * 1024), None).unwrap();
    assert_eq!(t.get_write_buffer_limits(), (16 * 1024, 64 * 1024));
    // The peer does not read: the kernel buffers fill, then ours.
    let chunk = vec![7u8; 64 * 1024];
    let mut written = 0usize;
    let lp = tl.lp();
    while !seen.borrow().log.contains(&"pause".to_string()) {
        t.write(&chunk).unwrap();
        written += chunk.len();
        // Let the sends run.
        tl.block_on(lp.sleep(Duration::from_millis(1)).unwrap());
        assert!(written < 256 << 20, "never paused");
    }
    assert!(t.get_write_buffer_size() > 64 * 1024);
    assert_eq!(seen.borrow().log, vec!["made", "pause"]);
    // A slow reader drains it all.
    let reader = std::thread::spawn(move || {
        let mut got = 0usize;
        let mut buf = vec![0; 4096];
        while got < written {
            let n = peer.read(&mut buf).unwrap();
            assert!(n > 0);
            got += n;
            if got < (1 << 20) {
                std::thread::sleep(Duration::from_micros(50));
            }
        }
        (got, peer)
    });
    let s = seen.clone();
    run_until(&tl, move || s.borrow().log.contains(&"resume".to_string()));
    assert!(t.get_write_buffer_size() <= 16 * 1024);
    let (got, _peer) = reader.join().unwrap();
    assert_eq!(got, written);
    assert_eq!(t.get_write_buffer_size(), 0);
    assert_eq!(seen.borrow().log, vec!["made", "pause", "resume"]);
    t.close();
}

#[test]
fn pause_reading_holds_data_without_losing_it() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    let (t, seen, mut peer) = connect_to_std(&tl, false);
    assert!(t.is_reading());
    t.pause_reading();
    t.pause_reading();
    assert!(!t.is_reading());
    peer.write_all(b"held back").unwrap();
    // Many iterations: nothing is delivered while paused.
    tl.block_on(tl.lp().sleep(Duration::from_millis(50)).unwrap());
    assert!(seen.borrow().bytes.is_empty());
    peer.write_all(b", then more").unwrap();
    t.resume_reading();
    assert!(t.is_reading());
    let s = seen.clone();
    run_until(&tl, move || s.borrow().bytes.len() >= 20);
    assert_eq!(seen.borrow().bytes, b"held back, then more");
    t.close();
}

/// Reading paused and resumed again and again, with data (and at last
/// the peer's end of file) arriving only while paused and after the
/// transport saw the pause with nothing left to read: every byte arrives
/// in order, then `eof_received`, then `connection_lost`. (On epoll the
/// pause ends the reader's watcher, so those arrivals come in events
/// nobody watches; the resume must still find them.)
#[test]
fn data_and_eof_arriving_while_paused_are_delivered_on_resume() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    let (t, seen, mut peer) = connect_to_std(&tl, false);
    let data = pattern(16 * 4096, 3);
    // Paused, and the pump has run since (a resume wakes it, the pause
    // that follows at once is what it sees), with the socket empty.
    let pause_seen = |t: &Transport| {
        t.pause_reading();
        t.resume_reading();
        t.pause_reading();
        tl.block_on(tl.lp().sleep(Duration::from_millis(2)).unwrap());
    };
    for (i, chunk) in data.chunks(4096).enumerate() {
        pause_seen(&t);
        peer.write_all(chunk).unwrap();
        tl.block_on(tl.lp().sleep(Duration::from_millis(2)).unwrap());
        assert_eq!(
            seen.borrow().bytes.len(),
            i * 4096,
            "delivered while paused"
        );
        t.resume_reading();
        let (s, want) = (seen.clone(), (i + 1) * 4096);
        run_until(&tl, move || s.borrow().bytes.len() >= want);
    }
    pause_seen(&t);
    peer.shutdown(std::net::Shutdown::Write).unwrap();
    tl.block_on(tl.lp().sleep(Duration::from_millis(20)).unwrap());
    assert!(
        !seen.borrow().log.contains(&"eof".to_string()),
        "while paused"
    );
    t.resume_reading();
    let s = seen.clone();
    run_until(&tl, move || s.borrow().lost());
    assert!(seen.borrow().bytes == data, "bytes lost or reordered");
    assert_eq!(events(&seen), vec!["made", "data", "eof", "lost None"]);
}

/// With a receive ring of two buffers (io_uring), a paused connection
/// flooded with data holds what arrived without losing it while another
/// connection keeps flowing; on resume it delivers everything, in order.
/// (Pausing cancels the multishot receive; what it already took stays
/// queued and is delivered first.)
#[test]
fn a_paused_flooded_transport_on_a_tiny_ring_loses_nothing_and_others_flow() {
    let _g = fd_lock();
    let lp = EventLoop::builder().recv_buffers(2, 1024).build().unwrap();
    let tl = TestLoop::from_loop(lp);
    let (paused, paused_seen, mut flood) = connect_to_std(&tl, false);
    let (_other, other_seen, mut talker) = connect_to_std(&tl, false);
    paused.pause_reading();
    let data = pattern(256 * 1024, 7);
    let sent = data.clone();
    let writer = std::thread::spawn(move || {
        // Blocks once the socket buffers are full: the paused side reads
        // nothing until resumed.
        flood.write_all(&sent).unwrap();
        flood
    });
    tl.block_on(tl.lp().sleep(Duration::from_millis(50)).unwrap());
    for i in 0..20u8 {
        talker.write_all(&[i; 100]).unwrap();
        let s = other_seen.clone();
        let want = (usize::from(i) + 1) * 100;
        run_until(&tl, move || s.borrow().bytes.len() >= want);
    }
    assert!(paused_seen.borrow().bytes.len() < data.len());
    paused.resume_reading();
    let s = paused_seen.clone();
    let want = data.len();
    run_until(&tl, move || s.borrow().bytes.len() >= want);
    let _flood = writer.join().unwrap();
    assert!(
        paused_seen.borrow().bytes == data,
        "bytes lost or reordered"
    );
    paused.close();
}

#[test]
fn peer_reset_is_connection_lost_with_error_not_a_report() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    let (t, seen, peer) = connect_to_std(&tl, false);
    socket2::SockRef::from(&peer)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    t.write(&pattern(1 << 20, 5)).unwrap();
    drop(peer); // RST
    let lp = tl.lp();
    let t2 = t.clone();
    tl.block_on(async move {
        // Keep writing into the reset connection: no panic, no report.
        for _ in 0..20 {
            t2.write(&[1; 1000]).unwrap();
            lp.sleep(Duration::from_millis(1)).unwrap().await;
        }
    });
    let s = seen.clone();
    run_until(&tl, move || s.borrow().lost());
    let kind = seen.borrow().lost_error.as_ref().map(|e| e.kind());
    assert!(
        matches!(
            kind,
            Some(std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe)
        ),
        "{:?}",
        seen.borrow().log
    );
    // Writes after the loss are dropped silently.
    t.write(b"into the void").unwrap();
    assert_eq!(events(&seen).len(), 2);
}

struct Panicky;
impl BaseProtocol for Panicky {
    type Transport = Transport;
}
impl Protocol for Panicky {
    fn data_received(&mut self, _: &[u8]) {
        panic!("protocol bug");
    }
}

#[test]
fn panicking_protocol_is_reported_and_closed() {
    let _g = fd_lock();
    let mut tl = TestLoop::new();
    let errors = tl.expect_errors();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (t, _) = tl
        .block_on(tl.lp().create_connection(
            || Panicky,
            Some("127.0.0.1"),
            Some(port),
            Default::default(),
        ))
        .unwrap();
    let (mut peer, _) = listener.accept().unwrap();
    peer.write_all(b"boom").unwrap();
    let t2 = t.clone();
    run_until(&tl, move || t2.is_closed());
    let errs = errors.borrow();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("data_received"), "{}", errs[0]);
    assert!(errs[0].contains("Panicky"), "{}", errs[0]);
    // The loop survives.
    let lp = tl.lp();
    assert!(tl.block_on(async move { lp.time() > 0.0 }));
}

/// Writes from inside callbacks, closes from inside eof_received.
struct Reentrant {
    t: Option<Transport>,
    log: SeenRef,
}
impl BaseProtocol for Reentrant {
    type Transport = Transport;
    fn connection_made(&mut self, t: Transport) {
        t.write(b"hello ").unwrap();
        t.set_write_buffer_limits(Some(0), Some(0)).unwrap();
        self.t = Some(t);
    }
    fn connection_lost(&mut self, _: Option<std::io::Error>) {
        self.log.borrow_mut().log.push("lost".into());
        self.t = None;
    }
    fn pause_writing(&mut self) {
        self.log.borrow_mut().log.push("pause".into());
    }
    fn resume_writing(&mut self) {
        self.log.borrow_mut().log.push("resume".into());
    }
}
impl Protocol for Reentrant {
    fn data_received(&mut self, data: &[u8]) {
        // Crosses the (zero) high-water mark from inside a callback.
        let t = self.t.as_ref().unwrap();
        t.write(data).unwrap();
        t.pause_reading();
        t.resume_reading();
    }
    fn eof_received(&mut self) -> bool {
        let t = self.t.as_ref().unwrap();
        t.write(b" bye").unwrap();
        t.close();
        true
    }
}

#[test]
fn protocol_may_call_back_into_its_transport() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = SeenRef::default();
    let l2 = log.clone();
    let (t, _) = tl
        .block_on(tl.lp().create_connection(
            move || Reentrant { t: None, log: l2 },
            Some("127.0.0.1"),
            Some(port),
            Default::default(),
        ))
        .unwrap();
    let (mut peer, _) = listener.accept().unwrap();
    peer.write_all(b"world").unwrap();
    peer.shutdown(std::net::Shutdown::Write).unwrap();
    let t2 = t.clone();
    run_until(&tl, move || t2.is_closed());
    let mut got = Vec::new();
    peer.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"hello world bye");
    let log = log.borrow().log.clone();
    assert_eq!(log.last().map(String::as_str), Some("lost"));
    // Flow control from inside callbacks stays paired: pause, resume,
    // pause... (a resume may cancel a pause not yet delivered, so none at
    // all is fine too).
    let flow: Vec<&str> = log
        .iter()
        .map(String::as_str)
        .filter(|e| *e == "pause" || *e == "resume")
        .collect();
    for (i, e) in flow.iter().enumerate() {
        let want = if i % 2 == 0 { "pause" } else { "resume" };
        assert_eq!(*e, want, "flow control out of order: {log:?}");
    }
}

#[test]
fn extra_info_names_both_ends() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    let (t, _seen, peer) = connect_to_std(&tl, false);
    let peername = t.peername().unwrap().as_socket().unwrap();
    assert_eq!(peername, peer.local_addr().unwrap());
    let sockname = t.sockname().unwrap().as_socket().unwrap();
    assert_eq!(sockname, peer.peer_addr().unwrap());
    assert!(matches!(
        t.get_extra_info("socket"),
        Some(ringloop::ExtraInfo::Socket(fd)) if fd >= 0
    ));
    assert!(t.get_extra_info("nonsense").is_none());
    t.close();
    let t2 = t.clone();
    run_until(&tl, move || t2.is_closed());
    assert!(t.get_extra_info("socket").is_none());
}

#[test]
fn create_connection_argument_and_connect_errors() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    let lp = tl.lp();
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    let r = tl.block_on(lp.create_connection(
        || Recorder::new(false).0,
        Some("127.0.0.1"),
        Some(1),
        ringloop::net::ConnectOptions::default().sock(a),
    ));
    assert_eq!(r.err().unwrap().kind(), std::io::ErrorKind::InvalidInput);
    let r = tl.block_on(lp.create_connection(
        || Recorder::new(false).0,
        None,
        None,
        Default::default(),
    ));
    assert_eq!(r.err().unwrap().kind(), std::io::ErrorKind::InvalidInput);
    // A datagram socket is not a stream.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let r = tl.block_on(lp.create_connection(
        || Recorder::new(false).0,
        None,
        None,
        ringloop::net::ConnectOptions::default().sock(udp),
    ));
    assert_eq!(r.err().unwrap().kind(), std::io::ErrorKind::InvalidInput);
    // Nothing listens on a freshly released port.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let r = tl.block_on(lp.create_connection(
        || Recorder::new(false).0,
        Some("127.0.0.1"),
        Some(port),
        Default::default(),
    ));
    assert_eq!(
        r.err().unwrap().kind(),
        std::io::ErrorKind::ConnectionRefused
    );
    let r = tl.block_on(lp.create_connection(
        || Recorder::new(false).0,
        Some("no-such-host.invalid"),
        Some(80),
        Default::default(),
    ));
    assert!(r.is_err());
}

#[test]
fn local_addr_binds_before_connecting() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let free = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (t, _) = tl
        .block_on(tl.lp().create_connection(
            || Recorder::new(false).0,
            Some("127.0.0.1"),
            Some(port),
            ringloop::net::ConnectOptions::default().local_addr("127.0.0.1", free),
        ))
        .unwrap();
    let (_peer, from) = listener.accept().unwrap();
    assert_eq!(from.port(), free);
    t.abort();
}

#[test]
fn connect_accepted_socket_wraps_a_std_socket() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    let (client, server) = ringloop_uring_tests::tcp_pair();
    let (proto, seen) = Recorder::new(true);
    let (t, _) = tl
        .block_on(tl.lp().connect_accepted_socket(move || proto, server))
        .unwrap();
    let mut client = client;
    client.set_nonblocking(false).unwrap();
    client.write_all(b"ping").unwrap();
    let mut buf = [0; 4];
    let lp = tl.lp();
    let s = seen.clone();
    tl.block_on(async move { wait_until(&lp, move || s.borrow().bytes.len() == 4).await });
    tl.block_on(tl.lp().sleep(Duration::from_millis(5)).unwrap());
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    t.close();
}

// Every test of this binary holds `fd_lock`: this one counts the
// process's descriptors, which the others open and close.
#[test]
fn loop_close_with_open_transports_leaks_nothing() {
    ringloop_uring_tests::assert_no_fd_leak(|| {
        let lp = EventLoop::new().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (proto, seen) = Recorder::new(false);
        let weak = Rc::downgrade(&seen);
        lp.run_until_complete(lp.create_connection(
            move || proto,
            Some("127.0.0.1"),
            Some(port),
            Default::default(),
        ))
        .unwrap()
        .unwrap();
        drop(seen);
        let _peer = listener.accept().unwrap();
        lp.close().unwrap();
        drop(lp);
        // The protocol (and with it the transport) was freed.
        assert!(weak.upgrade().is_none(), "protocol leaked");
    });
}

/// On epoll a transport's socket has one edge-triggered registration and
/// the engine remembers its readiness ("drained" after a short receive).
/// Closing the transport must forget both: a socket that gets the same
/// number next must be watched afresh, by a `sock_*` call or by another
/// transport, or it would wait for an edge of the closed socket forever.
#[test]
fn a_socket_reusing_a_closed_transports_number_is_watched_afresh() {
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    let _g = fd_lock();
    let tl = TestLoop::new();
    let lp = tl.lp();
    let (ours, mut peer) = UnixStream::pair().unwrap();
    let n = ours.as_raw_fd();
    let (proto, seen) = Recorder::new(true);
    let (t, _p) = tl
        .block_on(lp.connect_accepted_socket(move || proto, ours))
        .unwrap();
    peer.write_all(b"ping").unwrap();
    let s = seen.clone();
    run_until(&tl, move || s.borrow().bytes.len() >= 4);
    t.close();
    let s = seen.clone();
    run_until(&tl, move || s.borrow().lost());

    // Descriptor tests are serialised: the next socket takes number `n`.
    let (a, b) = UnixStream::pair().unwrap();
    let (reused, other) = match (a.as_raw_fd() == n, b.as_raw_fd() == n) {
        (true, _) => (a, b),
        (_, true) => (b, a),
        _ => {
            eprintln!("fd {n} was taken by another thread: reuse not tested");
            return;
        }
    };
    reused.set_nonblocking(true).unwrap();

    // A receive that finds it empty, then data 50 ms later.
    let other = Rc::new(other);
    let w = other.clone();
    lp.call_later(Duration::from_millis(50), move || {
        (&*w).write_all(b"fresh").unwrap();
    })
    .unwrap();
    let l = lp.clone();
    let (got, reused) = tl.block_on(async move {
        let got = l.sock_recv(&reused, 64).await;
        (got, reused)
    });
    assert_eq!(&got.unwrap()[..], b"fresh");

    // And as a transport again: it echoes.
    let (proto, seen) = Recorder::new(true);
    let (t, _p) = tl
        .block_on(lp.connect_accepted_socket(move || proto, reused))
        .unwrap();
    let w = other.clone();
    lp.call_later(Duration::from_millis(50), move || {
        (&*w).write_all(b"again").unwrap();
    })
    .unwrap();
    let s = seen.clone();
    run_until(&tl, move || s.borrow().bytes.len() >= 5);
    assert_eq!(seen.borrow().bytes, b"again");
    t.close();
    let s = seen.clone();
    run_until(&tl, move || s.borrow().lost());
}

/// Counts, for [`one_delivery_per_iteration_like_asyncio`], whether a
/// callback scheduled in `data_received` ran before the next call.
struct Interleave {
    lp: EventLoop,
    /// Callbacks scheduled by `data_received` that have not run yet.
    outstanding: Rc<std::cell::Cell<u32>>,
    /// `data_received` calls that found one still waiting.
    early: Rc<std::cell::Cell<u32>>,
    calls: Rc<std::cell::Cell<u32>>,
    bytes: Rc<std::cell::RefCell<Vec<u8>>>,
}

impl BaseProtocol for Interleave {
    type Transport = Transport;
}

impl Protocol for Interleave {
    fn data_received(&mut self, data: &[u8]) {
        if self.outstanding.get() > 0 {
            self.early.set(self.early.get() + 1);
        }
        self.calls.set(self.calls.get() + 1);
        self.bytes.borrow_mut().extend_from_slice(data);
        self.outstanding.set(self.outstanding.get() + 1);
        let o = self.outstanding.clone();
        self.lp.call_soon(move || o.set(o.get() - 1)).unwrap();
    }
}

/// While the user holds the protocol borrowed across an await, the
/// transport delivers nothing (it cannot call the protocol); what arrives
/// meanwhile is held and delivered once the borrow ends, in order and
/// exactly once, however the delivery is woken.
#[test]
// Holding the borrow across awaits is the point of the test.
#[allow(clippy::await_holding_refcell_ref)]
fn data_arriving_while_the_user_holds_the_protocol_is_delivered_after() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    let lp = tl.lp();
    let (t, seen, mut peer, p) = connect_to_std_keeping_protocol(&tl, false);
    let first = pattern(1000, 1);
    peer.write_all(&first).unwrap();
    let s = seen.clone();
    run_until(&tl, move || s.borrow().bytes.len() >= first.len());
    let second = pattern(50_000, 2);
    let (l, s, sent) = (lp.clone(), seen.clone(), second.clone());
    let peer = tl.block_on(async move {
        let held = p.borrow_mut();
        peer.write_all(&sent).unwrap();
        for _ in 0..5 {
            l.sleep(Duration::from_millis(10)).unwrap().await;
        }
        assert_eq!(s.borrow().bytes.len(), 1000, "delivered while held");
        drop(held);
        peer
    });
    let s = seen.clone();
    run_until(&tl, move || s.borrow().bytes.len() >= 51_000);
    let mut want = pattern(1000, 1);
    want.extend_from_slice(&second);
    assert_eq!(seen.borrow().bytes, want);
    drop(peer);
    let s = seen.clone();
    run_until(&tl, move || s.borrow().lost());
    assert_eq!(events(&seen), vec!["made", "data", "eof", "lost None"]);
    assert!(t.is_closing());
}

/// asyncio's transports deliver one receive per loop iteration, so a
/// callback `data_received` schedules with `call_soon` runs before the
/// transport's next `data_received`, however much data is waiting. With
/// a ring of 4 KiB buffers (io_uring) or 64 KiB single-shot receives
/// (epoll), 1 MiB sent at once arrives as many deliveries.
#[test]
fn one_delivery_per_iteration_like_asyncio() {
    let _g = fd_lock();
    let lp = EventLoop::builder().recv_buffers(8, 4096).build().unwrap();
    let tl = TestLoop::from_loop(lp);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let outstanding = Rc::new(std::cell::Cell::new(0));
    let early = Rc::new(std::cell::Cell::new(0));
    let calls = Rc::new(std::cell::Cell::new(0));
    let bytes = Rc::new(std::cell::RefCell::new(Vec::new()));
    let protocol = Interleave {
        lp: tl.lp(),
        outstanding: outstanding.clone(),
        early: early.clone(),
        calls: calls.clone(),
        bytes: bytes.clone(),
    };
    let (t, _p) = tl
        .block_on(tl.lp().create_connection(
            move || protocol,
            Some("127.0.0.1"),
            Some(port),
            Default::default(),
        ))
        .unwrap();
    let (mut peer, _) = listener.accept().unwrap();
    let data = pattern(1 << 20, 5);
    let sent = data.clone();
    let writer = std::thread::spawn(move || {
        peer.write_all(&sent).unwrap();
        peer
    });
    let b = bytes.clone();
    run_until(&tl, move || b.borrow().len() >= 1 << 20);
    let _peer = writer.join().unwrap();
    assert!(*bytes.borrow() == data, "bytes lost or reordered");
    assert!(calls.get() > 4, "only {} deliveries", calls.get());
    assert_eq!(
        early.get(),
        0,
        "of {} data_received calls, some came before the callback the previous one scheduled",
        calls.get()
    );
    t.close();
}
