//! Writing back slices of the data `data_received` is handing over: the
//! transport queues the received buffer itself instead of a copy (an
//! echo or a relay). Whatever the slices, their order, repeats, short
//! sends to a slow peer, or a receive ring that keeps running dry, the
//! peer must get exactly the bytes written, in order.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::os::fd::BorrowedFd;
use std::rc::Rc;
use std::time::Duration;

use ringloop::{BaseProtocol, EventLoop, ExtraInfo, Protocol, Transport};
use ringloop_uring_tests::proto::wait_until;
use ringloop_uring_tests::{pattern, TestLoop};
use socket2::{Domain, SockRef, Socket, Type};

/// What the scrambler was handed, one entry per `data_received`.
type Deliveries = Rc<RefCell<Vec<Vec<u8>>>>;

/// Writes back, per delivery `d` of `n` bytes: `d[n/2..]`, `"|"`,
/// `d[..n/2]`, `d[..n/2]` again, then `d[n/4..n/2]` (slices out of
/// order, repeated, overlapping, beyond the two received buffers a
/// connection may hold), mixed with a small copied write.
struct Scrambler {
    t: Option<Transport>,
    seen: Deliveries,
    lost: Rc<RefCell<Option<Option<String>>>>,
}

fn scramble(d: &[u8], out: &mut Vec<u8>) {
    let n = d.len();
    out.extend_from_slice(&d[n / 2..]);
    out.extend_from_slice(b"|");
    out.extend_from_slice(&d[..n / 2]);
    out.extend_from_slice(&d[..n / 2]);
    out.extend_from_slice(&d[n / 4..n / 2]);
}

impl BaseProtocol for Scrambler {
    type Transport = Transport;
    fn connection_made(&mut self, t: Transport) {
        self.t = Some(t);
    }
    fn connection_lost(&mut self, e: Option<std::io::Error>) {
        *self.lost.borrow_mut() = Some(e.map(|e| e.to_string()));
        self.t = None;
    }
}

impl Protocol for Scrambler {
    fn data_received(&mut self, d: &[u8]) {
        self.seen.borrow_mut().push(d.to_vec());
        let t = self.t.as_ref().unwrap();
        let n = d.len();
        t.write(&d[n / 2..]).unwrap();
        t.write(b"|").unwrap();
        t.write(&d[..n / 2]).unwrap();
        t.write(&d[..n / 2]).unwrap();
        t.writelines([&d[n / 4..n / 2]]).unwrap();
    }
    fn eof_received(&mut self) -> bool {
        false
    }
}

/// A listener whose connections get a small receive buffer when
/// `small` (so that a peer that stops reading fills up quickly).
fn listener(small: bool) -> TcpListener {
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    if small {
        sock.set_recv_buffer_size(4096).unwrap();
    }
    sock.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    sock.listen(16).unwrap();
    sock.into()
}

/// Sends `input` from a peer that starts reading only after `stall`,
/// then checks that what came back is the scramble of every delivery.
/// With a stall, both ends' socket buffers are small, so the
/// transport's sends come up short and its buffer grows.
fn scramble_through(lp: EventLoop, input: Vec<u8>, stall: Duration) {
    let tl = TestLoop::from_loop(lp);
    let listener = listener(!stall.is_zero());
    let port = listener.local_addr().unwrap().port();
    let seen = Deliveries::default();
    let lost = Rc::new(RefCell::new(None));
    let (s, l) = (seen.clone(), lost.clone());
    let (t, _) = tl
        .block_on(tl.lp().create_connection(
            move || Scrambler {
                t: None,
                seen: s,
                lost: l,
            },
            Some("127.0.0.1"),
            Some(port),
            Default::default(),
        ))
        .unwrap();
    if !stall.is_zero() {
        let Some(ExtraInfo::Socket(fd)) = t.get_extra_info("socket") else {
            panic!("no socket");
        };
        // SAFETY: the transport's socket stays open for the borrow.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        SockRef::from(&fd).set_send_buffer_size(4096).unwrap();
    }
    let (mut peer, _) = listener.accept().unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut writer = peer.try_clone().unwrap();
    let sent = input.clone();
    let writing = std::thread::spawn(move || {
        // Uneven pieces, so deliveries vary in size.
        let mut rest = &sent[..];
        let mut k = 0usize;
        while !rest.is_empty() {
            let n = rest.len().min(1 + (k * 7_919) % 40_000);
            writer.write_all(&rest[..n]).unwrap();
            rest = &rest[n..];
            k += 1;
        }
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let reading = std::thread::spawn(move || {
        std::thread::sleep(stall);
        let mut got = Vec::new();
        peer.read_to_end(&mut got).unwrap();
        got
    });
    let l = lost.clone();
    let lp = tl.lp();
    tl.block_on_within(Duration::from_secs(60), async move {
        wait_until(&lp, move || l.borrow().is_some()).await
    });
    writing.join().unwrap();
    let got = reading.join().unwrap();
    assert_eq!(*lost.borrow(), Some(None), "closed cleanly");
    assert!(t.is_closing());
    let deliveries = seen.borrow();
    let delivered: Vec<u8> = deliveries.concat();
    assert!(delivered == input, "the input arrived intact");
    let mut want = Vec::new();
    for d in deliveries.iter() {
        scramble(d, &mut want);
    }
    assert_eq!(got.len(), want.len(), "length of what came back");
    let first_bad = got.iter().zip(&want).position(|(a, b)| a != b);
    assert_eq!(first_bad, None, "bytes changed or reordered");
}

#[test]
fn written_back_slices_arrive_intact_on_the_default_loop() {
    scramble_through(
        EventLoop::new().unwrap(),
        pattern(4 << 20, 11),
        Duration::ZERO,
    );
}

#[test]
fn written_back_slices_arrive_intact_at_a_slow_peer() {
    // The peer reads nothing for a while: sends come up short, and the
    // unsent parts of received buffers must become copies.
    scramble_through(
        EventLoop::new().unwrap(),
        pattern(4 << 20, 12),
        Duration::from_millis(300),
    );
}

#[test]
fn written_back_slices_arrive_intact_while_the_ring_runs_dry() {
    // Four 4 KiB ring buffers (io_uring): held ones leave the ring short
    // all the time, and receives fall back to private buffers.
    let lp = EventLoop::builder().recv_buffers(4, 4096).build().unwrap();
    scramble_through(lp, pattern(2 << 20, 13), Duration::from_millis(100));
}
