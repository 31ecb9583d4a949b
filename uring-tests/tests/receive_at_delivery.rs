//! On epoll a stream transport receives a buffer when it delivers it, as
//! asyncio's `_read_ready` does: nothing is received ahead and held for
//! the next iteration. A buffer received ahead went cold while the
//! iteration served every other connection, and sending it back (an echo)
//! then cost a fifth of the server's time at 16 KiB x 100 pipelined (see
//! docs/benchmarks.md, "Where ringloop loses"). io_uring's multishot
//! receive fills ring buffers as data arrives, by design: there only the
//! bytes are checked.

use std::cell::RefCell;
use std::io::{ErrorKind, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::rc::Rc;

use ringloop::{BaseProtocol, Protocol, Transport};
use ringloop_uring_tests::proto::wait_until;
use ringloop_uring_tests::{pattern, TestLoop};

/// Bytes still queued in the socket `fd` (`FIONREAD`).
fn queued(fd: RawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which points
    // at `n`; `fd` is the test's open socket.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    assert_eq!(rc, 0, "FIONREAD: {}", std::io::Error::last_os_error());
    n as usize
}

#[derive(Default)]
struct Seen {
    got: Vec<u8>,
    /// Per delivery: what the socket still held at the start of the
    /// next iteration (before the next delivery).
    queued_after: Vec<usize>,
    /// Per delivery: bytes delivered so far, that one included.
    delivered: Vec<usize>,
}

struct Probe {
    fd: RawFd,
    seen: Rc<RefCell<Seen>>,
}

impl BaseProtocol for Probe {
    type Transport = Transport;
}

impl Protocol for Probe {
    fn data_received(&mut self, data: &[u8]) {
        let mut s = self.seen.borrow_mut();
        s.got.extend_from_slice(data);
        let total = s.got.len();
        s.delivered.push(total);
        let (fd, seen) = (self.fd, self.seen.clone());
        // Queued now, so it runs in the next iteration before the next
        // delivery (scheduled when this one returns).
        ringloop::get_running_loop()
            .unwrap()
            .call_soon(move || seen.borrow_mut().queued_after.push(queued(fd)))
            .unwrap();
    }
}

#[test]
fn epoll_receives_each_buffer_when_it_delivers_it() {
    let tl = TestLoop::new();
    let lp = tl.lp();
    let (ours, mut peer) = UnixStream::pair().unwrap();
    let fd = ours.as_raw_fd();
    // Everything the socket takes, before the transport starts.
    peer.set_nonblocking(true).unwrap();
    let payload = pattern(1 << 20, 3);
    let mut total = 0;
    loop {
        match peer.write(&payload[total..]) {
            Ok(n) => total += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) => panic!("write: {e}"),
        }
    }
    assert!(total > 3 * 64 * 1024, "the socket took only {total} bytes");
    let seen = Rc::new(RefCell::new(Seen::default()));
    let s = seen.clone();
    let (t, _p) = tl
        .block_on(lp.connect_accepted_socket(move || Probe { fd, seen: s }, ours))
        .unwrap();
    let s = seen.clone();
    tl.block_on(async move {
        wait_until(&lp, move || {
            let s = s.borrow();
            s.got.len() == total && s.queued_after.len() == s.delivered.len()
        })
        .await
    });
    let s = seen.borrow();
    assert!(s.got == payload[..total], "bytes differ");
    assert!(s.delivered.len() >= 3, "{} deliveries", s.delivered.len());
    if tl.lp().backend() == ringloop::Backend::Epoll {
        for (i, (&after, &delivered)) in s.queued_after.iter().zip(&s.delivered).enumerate() {
            assert_eq!(
                after,
                total - delivered,
                "after delivery {i}, the socket should hold what was not delivered"
            );
        }
    }
    drop(s);
    t.close();
}

/// Records bytes and the order of EOF and `connection_lost`.
#[derive(Default)]
struct Ends {
    got: Vec<u8>,
    log: Vec<&'static str>,
}

struct EofProbe(Rc<RefCell<Ends>>);

impl BaseProtocol for EofProbe {
    type Transport = Transport;
    fn connection_lost(&mut self, e: Option<std::io::Error>) {
        assert!(e.is_none(), "lost with {e:?}");
        self.0.borrow_mut().log.push("lost");
    }
}

impl Protocol for EofProbe {
    fn data_received(&mut self, data: &[u8]) {
        let mut s = self.0.borrow_mut();
        s.got.extend_from_slice(data);
        if s.log.last() != Some(&"data") {
            s.log.push("data");
        }
    }
    fn eof_received(&mut self) -> bool {
        self.0.borrow_mut().log.push("eof");
        false
    }
}

/// A receive that fills its buffer exactly leaves the reader unsure
/// whether more is queued: the next delivery's receive finds the EOF,
/// which is then delivered after every byte, once.
#[test]
fn eof_after_whole_buffers_comes_after_every_byte() {
    for size in [64 * 1024, 128 * 1024, 64 * 1024 + 1] {
        let tl = TestLoop::new();
        let lp = tl.lp();
        let (ours, mut peer) = UnixStream::pair().unwrap();
        peer.set_nonblocking(true).unwrap();
        let payload = pattern(size, 7);
        let mut sent = 0;
        while sent < size {
            match peer.write(&payload[sent..]) {
                Ok(n) => sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("write: {e}"),
            }
        }
        assert_eq!(sent, size, "the socket took only {sent} of {size} bytes");
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        let ends = Rc::new(RefCell::new(Ends::default()));
        let e = ends.clone();
        let (_t, _p) = tl
            .block_on(lp.connect_accepted_socket(move || EofProbe(e), ours))
            .unwrap();
        let e = ends.clone();
        tl.block_on(async move {
            wait_until(&lp, move || e.borrow().log.last() == Some(&"lost")).await
        });
        let e = ends.borrow();
        assert!(e.got == payload, "{size} bytes: the bytes differ");
        assert_eq!(e.log, ["data", "eof", "lost"], "{size} bytes");
    }
}
