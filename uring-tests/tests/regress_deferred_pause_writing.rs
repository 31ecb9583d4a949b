//! Regression: a write inside `data_received` (or a `sendto` inside
//! `datagram_received`, or a pipe write inside `connection_made`) that
//! rises above the high-water mark defers `pause_writing` until the
//! protocol method returns. If the buffer drained below the low-water
//! mark before that deferred call ran, the protocol used to hear
//! `resume_writing` and *then* `pause_writing`, and stayed paused for
//! good: an echo protocol that pauses reading while paused (the usual
//! pattern) stalled its connection forever. Found with
//! `examples/echo_server` echoing 65,537-byte messages; the write pipe
//! kept the same fault until the three shared one flow-control state.
//!
//! The tests check asyncio's rule: `pause_writing` and `resume_writing`
//! alternate, starting with pause, and the protocol is not left paused
//! once everything is sent.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ringloop::net::{Address, ServerOptions};
use ringloop::{
    BaseProtocol, DatagramProtocol, DatagramTransport, Protocol, Transport, WritePipeProtocol,
    WritePipeTransport,
};
use ringloop_uring_tests::pipes::os_pipe;
use ringloop_uring_tests::proto::wait_until;
use ringloop_uring_tests::{fd_lock, pattern, TestLoop};

type Log = Rc<RefCell<Vec<&'static str>>>;

/// Asserts `log` alternates pause/resume, starting with pause and ending
/// resumed.
fn assert_alternates(log: &[&str]) {
    for (i, e) in log.iter().enumerate() {
        let want = if i % 2 == 0 { "pause" } else { "resume" };
        assert_eq!(*e, want, "event {i} of {log:?}");
    }
    assert!(log.len() % 2 == 0, "left paused: {log:?}");
}

/// An echo protocol that stops reading while its writes are paused.
struct PausingEcho {
    transport: Option<Transport>,
    log: Log,
}

impl BaseProtocol for PausingEcho {
    type Transport = Transport;
    fn connection_made(&mut self, t: Transport) {
        self.transport = Some(t);
    }
    fn connection_lost(&mut self, _: Option<std::io::Error>) {
        self.transport = None;
    }
    fn pause_writing(&mut self) {
        self.log.borrow_mut().push("pause");
        if let Some(t) = &self.transport {
            t.pause_reading();
        }
    }
    fn resume_writing(&mut self) {
        self.log.borrow_mut().push("resume");
        if let Some(t) = &self.transport {
            t.resume_reading();
        }
    }
}

impl Protocol for PausingEcho {
    fn data_received(&mut self, data: &[u8]) {
        self.transport.as_ref().unwrap().write(data).unwrap();
    }
}

#[test]
fn a_stream_echo_that_pauses_reading_never_stalls() {
    let tl = TestLoop::new();
    let lp = tl.lp();
    let log = Log::default();
    let l = log.clone();
    let factory = move || PausingEcho {
        transport: None,
        log: l.clone(),
    };
    let server = tl
        .block_on(lp.create_server(factory, &["127.0.0.1"], Some(0), ServerOptions::default()))
        .unwrap();
    let addr = server.addresses()[0].as_socket().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let client = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let result = (|| -> std::io::Result<()> {
            for (round, size) in [65_537, 70_000, 65_537, 200_000, 131_072]
                .iter()
                .enumerate()
            {
                let sent = pattern(*size, round as u64 + 1);
                s.write_all(&sent)?;
                let mut got = vec![0; *size];
                s.read_exact(&mut got)?;
                assert!(got == sent, "round {round}: echo differs");
            }
            Ok(())
        })();
        d.store(true, Ordering::Release);
        result
    });
    tl.block_on(async move { wait_until(&lp, move || done.load(Ordering::Acquire)).await });
    client
        .join()
        .unwrap()
        .expect("every echo came back (a stalled connection times out)");
    assert_alternates(&log.borrow());
    server.close();
}

/// Answers each datagram with two large ones (more than the high-water
/// mark together).
struct LoudReply {
    transport: Option<DatagramTransport>,
    log: Log,
}

impl BaseProtocol for LoudReply {
    type Transport = DatagramTransport;
    fn connection_made(&mut self, t: DatagramTransport) {
        self.transport = Some(t);
    }
    fn connection_lost(&mut self, _: Option<std::io::Error>) {
        self.transport = None;
    }
    fn pause_writing(&mut self) {
        self.log.borrow_mut().push("pause");
    }
    fn resume_writing(&mut self) {
        self.log.borrow_mut().push("resume");
    }
}

impl DatagramProtocol for LoudReply {
    fn datagram_received(&mut self, _data: &[u8], addr: socket2::SockAddr) {
        let t = self.transport.as_ref().unwrap();
        for _ in 0..2 {
            t.sendto(&[9u8; 40_000], Some(addr.clone())).unwrap();
        }
    }
}

#[test]
fn a_datagram_protocol_is_not_left_paused() {
    let tl = TestLoop::new();
    let lp = tl.lp();
    let log = Log::default();
    let l = log.clone();
    let factory = move || LoudReply {
        transport: None,
        log: l.clone(),
    };
    let local: Address = "127.0.0.1:0"
        .parse::<std::net::SocketAddr>()
        .unwrap()
        .into();
    let (t, _p) = tl
        .block_on(lp.create_datagram_endpoint(factory, Some(local), None, Default::default()))
        .unwrap();
    let server = t.sockname().unwrap().as_socket().unwrap();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let client = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65_536];
        let mut replies = 0;
        for _ in 0..3 {
            peer.send_to(b"go", server).unwrap();
            for _ in 0..2 {
                if peer.recv_from(&mut buf).is_ok() {
                    replies += 1;
                }
            }
        }
        d.store(true, Ordering::Release);
        replies
    });
    tl.block_on(async move { wait_until(&lp, move || done.load(Ordering::Acquire)).await });
    // Loopback UDP may drop under pressure; what matters is the order.
    assert!(client.join().unwrap() > 0, "no reply at all");
    let l2 = tl.lp();
    let t2 = t.clone();
    tl.block_on(async move { wait_until(&l2, move || t2.get_write_buffer_size() == 0).await });
    assert_alternates(&log.borrow());
    t.close();
}

/// Writes more than the high-water mark from `connection_made`, where the
/// transport must defer `pause_writing`.
struct BigFirstWrite {
    log: Log,
    size: usize,
}

impl BaseProtocol for BigFirstWrite {
    type Transport = WritePipeTransport;
    fn connection_made(&mut self, t: WritePipeTransport) {
        t.write(&pattern(self.size, 5)).unwrap();
    }
    fn pause_writing(&mut self) {
        self.log.borrow_mut().push("pause");
    }
    fn resume_writing(&mut self) {
        self.log.borrow_mut().push("resume");
    }
}

impl WritePipeProtocol for BigFirstWrite {}

/// The write pipe deferred `pause_writing` with no way to cancel it: a
/// pipe roomy enough to take the whole write at once drained the buffer
/// before the deferred call ran, so the protocol heard `resume_writing`,
/// then `pause_writing`, and stayed paused.
#[test]
fn a_write_pipe_protocol_is_not_left_paused() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    let (r, w) = os_pipe();
    // Room for the whole write: it leaves in the pump's first writev.
    // SAFETY: F_SETPIPE_SZ on a pipe descriptor this test owns.
    let rc = unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20) };
    assert!(
        rc >= 1 << 20,
        "F_SETPIPE_SZ: {}",
        std::io::Error::last_os_error()
    );
    let log = Log::default();
    let l = log.clone();
    const SIZE: usize = 70_000;
    let (t, _p) = tl
        .block_on(
            tl.lp()
                .connect_write_pipe(move || BigFirstWrite { log: l, size: SIZE }, w),
        )
        .unwrap();
    let lp = tl.lp();
    let t2 = t.clone();
    tl.block_on(async move { wait_until(&lp, move || t2.get_write_buffer_size() == 0).await });
    // Long enough for a deferred call to have run.
    let lp = tl.lp();
    tl.block_on(async move { lp.sleep(Duration::from_millis(20)).unwrap().await });
    assert_alternates(&log.borrow());
    let mut got = vec![0; SIZE];
    std::fs::File::from(r).read_exact(&mut got).unwrap();
    assert!(got == pattern(SIZE, 5), "bytes differ");
    t.close();
}
