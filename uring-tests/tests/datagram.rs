//! Datagram endpoints (`create_datagram_endpoint`, `DatagramTransport`):
//! asyncio's ordering, address rules, error and close paths, on the
//! backend `RINGLOOP_BACKEND` selects. Only loopback and Unix sockets.
//!
//! Every test holds the fd lock for its whole run: the descriptor counts
//! of the leak test must not see other tests' sockets.

use std::cell::RefCell;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ringloop::net::{Address, DatagramOptions};
use ringloop::{BaseProtocol, DatagramProtocol, DatagramTransport, EventLoop, ExtraInfo};
use ringloop_uring_tests::{assert_no_fd_leak, fd_lock, pattern, TestLoop};
use socket2::SockAddr;

/// What a [`Rec`] saw.
#[derive(Default)]
struct Seen {
    /// `made`, `dgram`, `error <errno>`, `pause`, `resume`,
    /// `lost None` / `lost Some`, in order.
    log: Vec<String>,
    datagrams: Vec<(Vec<u8>, SockAddr)>,
    errors: Vec<io::Error>,
    /// `get_write_buffer_size()` when `connection_lost` ran.
    buffer_at_lost: Option<usize>,
}

type SeenRef = Rc<RefCell<Seen>>;

/// A recording datagram protocol.
#[derive(Default)]
struct Rec {
    seen: SeenRef,
    transport: Option<DatagramTransport>,
    /// Send every datagram back to its sender.
    echo: bool,
    /// Call `close()` from inside the n-th `datagram_received`.
    close_after: Option<usize>,
    /// Panic inside `datagram_received`.
    panic_on_datagram: bool,
}

impl Rec {
    fn new() -> (Rec, SeenRef) {
        let r = Rec::default();
        let s = r.seen.clone();
        (r, s)
    }
    fn echo() -> (Rec, SeenRef) {
        let (mut r, s) = Rec::new();
        r.echo = true;
        (r, s)
    }
}

impl Seen {
    fn count(&self, prefix: &str) -> usize {
        self.log.iter().filter(|l| l.starts_with(prefix)).count()
    }
    fn payloads(&self) -> Vec<Vec<u8>> {
        self.datagrams.iter().map(|(d, _)| d.clone()).collect()
    }
}

impl BaseProtocol for Rec {
    type Transport = DatagramTransport;
    fn connection_made(&mut self, t: DatagramTransport) {
        self.seen.borrow_mut().log.push("made".into());
        self.transport = Some(t);
    }
    fn connection_lost(&mut self, e: Option<io::Error>) {
        let mut s = self.seen.borrow_mut();
        s.log.push(
            if e.is_some() {
                "lost Some"
            } else {
                "lost None"
            }
            .into(),
        );
        s.buffer_at_lost = self.transport.as_ref().map(|t| t.get_write_buffer_size());
        drop(s);
        self.transport = None;
    }
    fn pause_writing(&mut self) {
        self.seen.borrow_mut().log.push("pause".into());
    }
    fn resume_writing(&mut self) {
        self.seen.borrow_mut().log.push("resume".into());
    }
}

impl DatagramProtocol for Rec {
    fn datagram_received(&mut self, data: &[u8], addr: SockAddr) {
        if self.panic_on_datagram {
            panic!("boom in datagram_received");
        }
        let n = {
            let mut s = self.seen.borrow_mut();
            s.log.push("dgram".into());
            s.datagrams.push((data.to_vec(), addr.clone()));
            s.datagrams.len()
        };
        let t = self.transport.as_ref().expect("connection_made ran first");
        if self.echo {
            t.sendto(data, Some(addr)).unwrap();
        }
        if self.close_after == Some(n) {
            t.close();
        }
    }
    fn error_received(&mut self, e: io::Error) {
        let mut s = self.seen.borrow_mut();
        s.log
            .push(format!("error {}", e.raw_os_error().unwrap_or(-1)));
        s.errors.push(e);
    }
}

fn local(host: &str, port: u16) -> Option<Address> {
    Some((host, port).into())
}

fn ip_of(a: &SockAddr) -> SocketAddr {
    a.as_socket().expect("an IP address")
}

fn sockname(t: &DatagramTransport) -> SocketAddr {
    ip_of(&t.sockname().expect("sockname"))
}

/// Runs the loop until `cond` holds (bounded by the test loop's timeout).
fn run_until(tl: &TestLoop, cond: impl Fn() -> bool + 'static) {
    let l = tl.lp();
    tl.block_on(async move {
        while !cond() {
            l.sleep(Duration::from_millis(1)).unwrap().await;
        }
    });
}

/// Runs the loop for `d`.
fn run_for(tl: &TestLoop, d: Duration) {
    let l = tl.lp();
    tl.block_on(async move { l.sleep(d).unwrap().await });
}

fn endpoint(
    tl: &TestLoop,
    proto: Rec,
    local_addr: Option<Address>,
    remote_addr: Option<Address>,
    options: DatagramOptions,
) -> io::Result<DatagramTransport> {
    tl.block_on(
        tl.lp()
            .create_datagram_endpoint(move || proto, local_addr, remote_addr, options),
    )
    .map(|(t, _)| t)
}

fn udp_receiver() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// A fresh directory for Unix socket paths, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "ringloop-dgram-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn echo_between_two_endpoints(host: &str) {
    let tl = TestLoop::new();
    let (server_proto, server_seen) = Rec::echo();
    let server = endpoint(&tl, server_proto, local(host, 0), None, Default::default()).unwrap();
    let server_addr = sockname(&server);
    assert!(
        server.peername().is_none(),
        "an unbound endpoint has no peer"
    );

    let (client_proto, client_seen) = Rec::new();
    let client = endpoint(
        &tl,
        client_proto,
        None,
        Some(server_addr.into()),
        Default::default(),
    )
    .unwrap();
    match client.get_extra_info("peername") {
        Some(ExtraInfo::Address(a)) => assert_eq!(ip_of(&a), server_addr),
        other => panic!("peername: {other:?}"),
    }
    assert!(matches!(
        client.get_extra_info("socket"),
        Some(ExtraInfo::Socket(_))
    ));
    let client_addr = sockname(&client);

    let payloads = vec![
        Vec::new(),
        vec![0x5a],
        pattern(1000, 3),
        pattern(60 * 1024, 4),
        Vec::new(),
    ];
    for p in &payloads {
        client.sendto(p, None).unwrap();
    }
    let n = payloads.len();
    let cs = client_seen.clone();
    run_until(&tl, move || cs.borrow().datagrams.len() >= n);

    assert_eq!(server_seen.borrow().payloads(), payloads, "server got");
    assert_eq!(client_seen.borrow().payloads(), payloads, "client got back");
    for (_, from) in &server_seen.borrow().datagrams {
        assert_eq!(ip_of(from), client_addr);
    }
    for (_, from) in &client_seen.borrow().datagrams {
        assert_eq!(ip_of(from), server_addr);
    }
    client.close();
    server.close();
    let (c, s) = (client.clone(), server.clone());
    run_until(&tl, move || c.is_closed() && s.is_closed());
    assert!(client.get_extra_info("socket").is_none());
    let mut expect = vec!["made".to_string()];
    expect.extend(std::iter::repeat_n("dgram".to_string(), n));
    expect.push("lost None".into());
    assert_eq!(client_seen.borrow().log, expect);
    assert_eq!(server_seen.borrow().log, expect);
}

#[test]
fn echo_keeps_exact_payloads_over_ipv4() {
    let _g = fd_lock();
    echo_between_two_endpoints("127.0.0.1");
}

#[test]
fn echo_keeps_exact_payloads_over_ipv6() {
    let _g = fd_lock();
    if UdpSocket::bind("[::1]:0").is_err() {
        println!("skipped: no IPv6 loopback on this machine");
        return;
    }
    echo_between_two_endpoints("::1");
}

#[test]
fn ordering_is_made_then_datagrams_then_lost_exactly_once() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    let (proto, seen) = Rec::new();
    let t = endpoint(&tl, proto, local("127.0.0.1", 0), None, Default::default()).unwrap();
    // connection_made ran before the future resolved; nothing else yet.
    assert_eq!(seen.borrow().log, vec!["made"]);
    let addr = sockname(&t);
    let peer = udp_receiver();
    for i in 0..3u8 {
        peer.send_to(&[i], addr).unwrap();
    }
    let s = seen.clone();
    run_until(&tl, move || s.borrow().datagrams.len() == 3);
    t.close();
    assert!(t.is_closing());
    t.close();
    t.abort();
    // Closing stops receiving at once, and sends after the loss are
    // dropped without an error.
    peer.send_to(b"late", addr).unwrap();
    t.sendto(b"after close", Some(peer.local_addr().unwrap().into()))
        .unwrap();
    let t2 = t.clone();
    run_until(&tl, move || t2.is_closed());
    run_for(&tl, Duration::from_millis(30));
    for _ in 0..6 {
        t.sendto(b"after lost", Some(peer.local_addr().unwrap().into()))
            .unwrap();
    }
    assert_eq!(
        seen.borrow().log,
        vec!["made", "dgram", "dgram", "dgram", "lost None"]
    );
    assert_eq!(seen.borrow().payloads(), vec![vec![0], vec![1], vec![2]]);
    peer.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(
        peer.recv_from(&mut buf).is_err(),
        "nothing is sent after close"
    );
}

#[test]
fn connected_endpoint_accepts_only_its_remote_address() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    let receiver = udp_receiver();
    let raddr = receiver.local_addr().unwrap();
    let other = udp_receiver();
    // A host name, resolved with getaddrinfo on the executor.
    let (proto, seen) = Rec::new();
    let t = endpoint(
        &tl,
        proto,
        None,
        Some(("localhost", raddr.port()).into()),
        DatagramOptions::default().family(libc::AF_INET),
    )
    .unwrap();
    assert_eq!(t.peername().map(|a| ip_of(&a)), Some(raddr));
    match t.sendto(b"x", Some(other.local_addr().unwrap().into())) {
        Err(ringloop::Error::InvalidInput(_)) => {}
        r => panic!("a different address must be refused: {r:?}"),
    }
    t.sendto(b"same", Some(raddr.into())).unwrap();
    t.sendto(b"none", None).unwrap();
    let t2 = t.clone();
    run_until(&tl, move || t2.get_write_buffer_size() == 0);
    run_for(&tl, Duration::from_millis(5));
    let mut buf = [0u8; 64];
    let (n, _) = receiver.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"same");
    let (n, _) = receiver.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"none");
    other
        .set_read_timeout(Some(Duration::from_millis(30)))
        .unwrap();
    assert!(other.recv_from(&mut buf).is_err(), "refused datagram left");

    // An unconnected endpoint needs an address.
    let (proto, _) = Rec::new();
    let u = endpoint(&tl, proto, local("127.0.0.1", 0), None, Default::default()).unwrap();
    match u.sendto(b"x", None) {
        Err(ringloop::Error::InvalidInput(_)) => {}
        r => panic!("sendto without address must be refused: {r:?}"),
    }
    t.close();
    u.close();
    let (a, b) = (t.clone(), u.clone());
    run_until(&tl, move || a.is_closed() && b.is_closed());
    assert_eq!(seen.borrow().log, vec!["made", "lost None"]);
}

#[test]
fn refused_send_goes_to_error_received_and_endpoint_keeps_working() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    // A port with nobody on it.
    let port = {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let (proto, seen) = Rec::new();
    let t = endpoint(
        &tl,
        proto,
        None,
        local("127.0.0.1", port),
        Default::default(),
    )
    .unwrap();
    t.sendto(b"anyone?", None).unwrap();
    let s = seen.clone();
    run_until(&tl, move || !s.borrow().errors.is_empty());
    {
        let s = seen.borrow();
        assert_eq!(
            s.errors[0].raw_os_error(),
            Some(libc::ECONNREFUSED),
            "{:?}",
            s.errors
        );
    }
    assert!(!t.is_closing(), "an error_received does not close");

    // Someone listens there now: both directions still work.
    let peer = UdpSocket::bind(("127.0.0.1", port)).unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    peer.send_to(b"hello", sockname(&t)).unwrap();
    let s = seen.clone();
    run_until(&tl, move || !s.borrow().datagrams.is_empty());
    assert_eq!(seen.borrow().datagrams[0].0, b"hello");
    t.sendto(b"after", None).unwrap();
    let t2 = t.clone();
    run_until(&tl, move || t2.get_write_buffer_size() == 0);
    let mut buf = [0u8; 16];
    let (n, _) = peer.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"after");
    t.close();
    let t2 = t.clone();
    run_until(&tl, move || t2.is_closed());
    let s = seen.borrow();
    assert_eq!(s.log.first().map(String::as_str), Some("made"));
    assert_eq!(s.log.last().map(String::as_str), Some("lost None"));
    assert_eq!(s.count("lost"), 1);
}

#[test]
fn existing_sockets_are_used_as_given() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    // Bound, unconnected.
    let std_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let bound = std_sock.local_addr().unwrap();
    let (proto, seen) = Rec::echo();
    let t = endpoint(
        &tl,
        proto,
        None,
        None,
        DatagramOptions::default().sock(std_sock),
    )
    .unwrap();
    assert_eq!(sockname(&t), bound);
    assert!(t.get_extra_info("peername").is_none());
    let peer = udp_receiver();
    peer.send_to(b"ping", bound).unwrap();
    let mut buf = [0u8; 16];
    let s = seen.clone();
    run_until(&tl, move || !s.borrow().datagrams.is_empty());
    let t2 = t.clone();
    run_until(&tl, move || t2.get_write_buffer_size() == 0);
    let (n, from) = peer.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"ping"[..], bound));

    // Connected: its peer is the endpoint's remote address.
    let std_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    std_sock.connect(peer.local_addr().unwrap()).unwrap();
    let (proto, _) = Rec::new();
    let c = endpoint(
        &tl,
        proto,
        None,
        None,
        DatagramOptions::default().sock(std_sock),
    )
    .unwrap();
    assert_eq!(
        c.peername().map(|a| ip_of(&a)),
        Some(peer.local_addr().unwrap())
    );
    assert!(matches!(
        c.sendto(b"x", Some(bound.into())),
        Err(ringloop::Error::InvalidInput(_))
    ));
    c.sendto(b"via sock", None).unwrap();
    let c2 = c.clone();
    run_until(&tl, move || c2.get_write_buffer_size() == 0);
    let (n, _) = peer.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"via sock");
    t.close();
    c.close();
    let (a, b) = (t.clone(), c.clone());
    run_until(&tl, move || a.is_closed() && b.is_closed());
}

#[test]
fn contradictory_arguments_are_invalid_input_and_leak_nothing() {
    assert_no_fd_leak(|| {
        let tl = TestLoop::new();
        let made = Rc::new(std::cell::Cell::new(0u32));
        let attempt = |local_addr: Option<Address>,
                       remote_addr: Option<Address>,
                       options: DatagramOptions|
         -> io::Error {
            let m = made.clone();
            let r = tl.block_on(tl.lp().create_datagram_endpoint(
                move || {
                    m.set(m.get() + 1);
                    Rec::default()
                },
                local_addr,
                remote_addr,
                options,
            ));
            match r {
                Ok(_) => panic!("must fail"),
                Err(e) => e,
            }
        };
        let sock = || DatagramOptions::default().sock(UdpSocket::bind("127.0.0.1:0").unwrap());
        let kinds = [
            attempt(local("127.0.0.1", 0), None, sock()),
            attempt(None, local("127.0.0.1", 9), sock()),
            attempt(None, None, sock().family(libc::AF_INET)),
            attempt(None, None, sock().proto(libc::IPPROTO_UDP)),
            attempt(None, None, sock().reuse_port(true)),
            attempt(None, None, sock().allow_broadcast(true)),
            // A stream socket is not a datagram socket.
            attempt(
                None,
                None,
                DatagramOptions::default()
                    .sock(std::net::TcpListener::bind("127.0.0.1:0").unwrap()),
            ),
            attempt(
                None,
                None,
                DatagramOptions::default().sock(std::os::unix::net::UnixStream::pair().unwrap().0),
            ),
            // No address and no family.
            attempt(None, None, DatagramOptions::default()),
            // Unix family with an IP address; a Unix path with an IP one.
            attempt(
                local("127.0.0.1", 0),
                None,
                DatagramOptions::default().family(libc::AF_UNIX),
            ),
            attempt(
                Some(PathBuf::from("/nonexistent/x.sock").into()),
                local("127.0.0.1", 9),
                DatagramOptions::default(),
            ),
            // A literal of the wrong family.
            attempt(
                Some("127.0.0.1:0".parse::<SocketAddr>().unwrap().into()),
                None,
                DatagramOptions::default().family(libc::AF_INET6),
            ),
        ]
        .map(|e| e.kind());
        for (i, k) in kinds.iter().enumerate() {
            assert_eq!(*k, io::ErrorKind::InvalidInput, "case {i}");
        }
        assert_eq!(made.get(), 0, "the factory never ran");
        // A real failure is the OS error: binding a port in use.
        let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let e = attempt(local("127.0.0.1", port), None, DatagramOptions::default());
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        assert_eq!(made.get(), 0);
    });
}

#[test]
fn close_flushes_queued_datagrams_before_connection_lost() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    let receiver = udp_receiver();
    let (proto, seen) = Rec::new();
    let t = endpoint(
        &tl,
        proto,
        None,
        Some(receiver.local_addr().unwrap().into()),
        Default::default(),
    )
    .unwrap();
    let n = 20u32;
    for i in 0..n {
        let mut d = i.to_be_bytes().to_vec();
        d.extend_from_slice(&pattern(100, u64::from(i) + 1));
        t.sendto(&d, None).unwrap();
    }
    assert_eq!(t.get_write_buffer_size(), 20 * 104);
    t.close();
    assert!(t.is_closing());
    // Queued, not dropped: sending goes on until the queue is empty.
    assert_eq!(t.get_write_buffer_size(), 20 * 104);
    assert_eq!(seen.borrow().log, vec!["made"]);
    let t2 = t.clone();
    run_until(&tl, move || t2.is_closed());
    assert_eq!(seen.borrow().log, vec!["made", "lost None"]);
    assert_eq!(seen.borrow().buffer_at_lost, Some(0));
    let mut buf = [0u8; 256];
    for i in 0..n {
        let (len, _) = receiver.recv_from(&mut buf).unwrap();
        assert_eq!(len, 104);
        assert_eq!(&buf[..4], &i.to_be_bytes(), "in order");
        assert_eq!(&buf[4..len], &pattern(100, u64::from(i) + 1)[..]);
    }
}

#[test]
fn abort_drops_queued_datagrams() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    let receiver = udp_receiver();
    let (proto, seen) = Rec::new();
    let t = endpoint(
        &tl,
        proto,
        None,
        Some(receiver.local_addr().unwrap().into()),
        Default::default(),
    )
    .unwrap();
    for _ in 0..10 {
        t.sendto(b"dropped", None).unwrap();
    }
    t.abort();
    assert!(t.is_closing());
    assert_eq!(t.get_write_buffer_size(), 0);
    t.close();
    let t2 = t.clone();
    run_until(&tl, move || t2.is_closed());
    run_for(&tl, Duration::from_millis(20));
    assert_eq!(seen.borrow().log, vec!["made", "lost None"]);
    receiver
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = [0u8; 16];
    assert!(receiver.recv_from(&mut buf).is_err(), "abort sends nothing");
}

#[test]
fn close_inside_datagram_received_flushes_the_echoes() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    let (mut proto, seen) = Rec::echo();
    proto.close_after = Some(3);
    let t = endpoint(&tl, proto, local("127.0.0.1", 0), None, Default::default()).unwrap();
    let peer = udp_receiver();
    for i in 0..5u8 {
        peer.send_to(&[i; 10], sockname(&t)).unwrap();
    }
    let t2 = t.clone();
    run_until(&tl, move || t2.is_closed());
    assert_eq!(
        seen.borrow().log,
        vec!["made", "dgram", "dgram", "dgram", "lost None"]
    );
    let mut buf = [0u8; 16];
    for i in 0..3u8 {
        let (n, _) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], &[i; 10]);
    }
}

#[test]
fn panicking_protocol_is_reported_and_the_endpoint_closed() {
    let _g = fd_lock();
    let mut tl = TestLoop::new();
    let errors = tl.expect_errors();
    let (mut proto, seen) = Rec::new();
    proto.panic_on_datagram = true;
    let t = endpoint(&tl, proto, local("127.0.0.1", 0), None, Default::default()).unwrap();
    let peer = udp_receiver();
    peer.send_to(b"x", sockname(&t)).unwrap();
    let t2 = t.clone();
    run_until(&tl, move || t2.is_closed());
    assert_eq!(seen.borrow().log, vec!["made", "lost Some"]);
    let errs = errors.borrow();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("protocol.datagram_received() call failed") && errs[0].contains("boom"),
        "{errs:?}"
    );
    drop(errs);
    // The loop lives on.
    let (proto, _) = Rec::new();
    let u = endpoint(&tl, proto, local("127.0.0.1", 0), None, Default::default()).unwrap();
    u.close();
}

#[test]
fn flow_control_pauses_and_resumes_the_protocol() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    let receiver = udp_receiver();
    let (proto, seen) = Rec::new();
    let t = endpoint(
        &tl,
        proto,
        None,
        Some(receiver.local_addr().unwrap().into()),
        Default::default(),
    )
    .unwrap();
    assert_eq!(
        t.get_write_buffer_limits(),
        (ringloop::DEFAULT_LOW_WATER, ringloop::DEFAULT_HIGH_WATER)
    );
    assert!(t.set_write_buffer_limits(Some(10), Some(11)).is_err());
    t.set_write_buffer_limits(Some(1000), None).unwrap();
    assert_eq!(t.get_write_buffer_limits(), (250, 1000));
    for i in 0..10u8 {
        t.sendto(&[i; 500], None).unwrap();
        let paused = seen.borrow().log.contains(&"pause".to_string());
        assert_eq!(paused, i >= 2, "pause_writing once above high (i = {i})");
    }
    let s = seen.clone();
    run_until(&tl, move || s.borrow().log.len() >= 3);
    assert_eq!(seen.borrow().log, vec!["made", "pause", "resume"]);
    assert_eq!(t.get_write_buffer_size(), 0);
    let mut buf = [0u8; 600];
    for i in 0..10u8 {
        let (n, _) = receiver.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], &[i; 500][..]);
    }
    t.close();
    let t2 = t.clone();
    run_until(&tl, move || t2.is_closed());
}

#[test]
fn unix_datagram_paths_echo_and_keep_order_under_backpressure() {
    let _g = fd_lock();
    let dir = TempDir::new("unix");
    let tl = TestLoop::new();
    let server_path = dir.path("server.sock");
    // A stale socket file at the path is replaced, as in asyncio 3.8+.
    drop(UnixDatagram::bind(&server_path).unwrap());
    let (proto, seen) = Rec::echo();
    let server = endpoint(
        &tl,
        proto,
        Some(server_path.clone().into()),
        None,
        Default::default(),
    )
    .unwrap();
    let client_path = dir.path("client.sock");
    let client = UnixDatagram::bind(&client_path).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client.send_to(b"over unix", &server_path).unwrap();
    let s = seen.clone();
    run_until(&tl, move || !s.borrow().datagrams.is_empty());
    assert_eq!(
        seen.borrow().datagrams[0].1.as_pathname(),
        Some(client_path.as_path())
    );
    let s2 = server.clone();
    run_until(&tl, move || s2.get_write_buffer_size() == 0);
    let mut buf = [0u8; 4096];
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"over unix");

    // A connected Unix endpoint sending far more than the socket buffers
    // hold while the receiver is slow: sends wait (EAGAIN), and every
    // datagram arrives, in order.
    let sink_path = dir.path("sink.sock");
    let sink = UnixDatagram::bind(&sink_path).unwrap();
    sink.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (proto, sender_seen) = Rec::new();
    let sender = endpoint(
        &tl,
        proto,
        None,
        Some(sink_path.clone().into()),
        DatagramOptions::default().family(libc::AF_UNIX),
    )
    .unwrap();
    let count = 400u32;
    let reader = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        let mut got = Vec::new();
        let mut buf = vec![0u8; 4096];
        while got.len() < count as usize {
            let n = sink.recv(&mut buf).expect("sink recv");
            assert_eq!(n, 2000);
            got.push(u32::from_be_bytes(buf[..4].try_into().unwrap()));
        }
        got
    });
    for i in 0..count {
        let mut d = i.to_be_bytes().to_vec();
        d.resize(2000, i as u8);
        sender.sendto(&d, None).unwrap();
    }
    sender.close();
    let started = Instant::now();
    let s2 = sender.clone();
    run_until(&tl, move || s2.is_closed());
    let got = reader.join().unwrap();
    assert_eq!(got, (0..count).collect::<Vec<_>>());
    // 800 kB queued at once: above the high-water mark, then drained.
    assert_eq!(
        sender_seen.borrow().log,
        vec!["made", "pause", "resume", "lost None"]
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    server.close();
    let s2 = server.clone();
    run_until(&tl, move || s2.is_closed());
}

#[test]
fn family_alone_makes_an_unbound_endpoint_and_reuse_port_shares_a_port() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    let receiver = udp_receiver();
    let (proto, _) = Rec::new();
    let t = endpoint(
        &tl,
        proto,
        None,
        None,
        DatagramOptions::default().family(libc::AF_INET),
    )
    .unwrap();
    t.sendto(b"autobound", Some(receiver.local_addr().unwrap().into()))
        .unwrap();
    let t2 = t.clone();
    run_until(&tl, move || t2.get_write_buffer_size() == 0);
    let mut buf = [0u8; 16];
    let (n, from) = receiver.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"autobound");
    // Bound on first send (to the wildcard address).
    assert_eq!(from.port(), sockname(&t).port());

    let opts = || DatagramOptions::default().reuse_port(true);
    let (p1, _) = Rec::new();
    let a = endpoint(&tl, p1, local("127.0.0.1", 0), None, opts()).unwrap();
    let port = sockname(&a).port();
    let (p2, _) = Rec::new();
    let b = endpoint(&tl, p2, local("127.0.0.1", port), None, opts()).unwrap();
    assert_eq!(sockname(&b).port(), port);
    let (p3, _) = Rec::new();
    let e = endpoint(&tl, p3, local("127.0.0.1", port), None, Default::default()).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::AddrInUse);

    // allow_broadcast with a remote address: not connected, but sendto
    // defaults to the remote address.
    let (p4, _) = Rec::new();
    let bc = endpoint(
        &tl,
        p4,
        None,
        Some(receiver.local_addr().unwrap().into()),
        DatagramOptions::default().allow_broadcast(true),
    )
    .unwrap();
    assert!(bc.peername().is_none());
    bc.sendto(b"to remote", None).unwrap();
    let b2 = bc.clone();
    run_until(&tl, move || b2.get_write_buffer_size() == 0);
    let (n, _) = receiver.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"to remote");
    for x in [&t, &a, &b, &bc] {
        x.close();
    }
    let all = [t.clone(), a.clone(), b.clone(), bc.clone()];
    run_until(&tl, move || all.iter().all(DatagramTransport::is_closed));
}

#[test]
fn endpoints_leak_no_descriptor() {
    let dir = TempDir::new("leak");
    assert_no_fd_leak(|| {
        let tl = TestLoop::new();
        let (proto, _) = Rec::echo();
        let server = endpoint(&tl, proto, local("127.0.0.1", 0), None, Default::default()).unwrap();
        let (proto, seen) = Rec::new();
        let client = endpoint(
            &tl,
            proto,
            None,
            Some(sockname(&server).into()),
            Default::default(),
        )
        .unwrap();
        client.sendto(b"x", None).unwrap();
        let s = seen.clone();
        run_until(&tl, move || !s.borrow().datagrams.is_empty());
        client.close();
        server.abort();
        let (a, b) = (client.clone(), server.clone());
        run_until(&tl, move || a.is_closed() && b.is_closed());

        // The same Unix path twice: the stale file left by the first is
        // replaced.
        for _ in 0..2 {
            let (proto, _) = Rec::new();
            let u = endpoint(
                &tl,
                proto,
                Some(dir.path("u.sock").into()),
                None,
                Default::default(),
            )
            .unwrap();
            u.close();
            let u2 = u.clone();
            run_until(&tl, move || u2.is_closed());
        }

        // Open endpoints (with a receive in flight) when the loop closes.
        let (proto, _) = Rec::new();
        let open = endpoint(&tl, proto, local("127.0.0.1", 0), None, Default::default()).unwrap();
        open.sendto(b"unsent", Some(sockname(&open).into()))
            .unwrap();
        drop(tl);
        assert!(open.is_closed());
    });
    // A loop dropped without ever running its endpoint's pump.
    assert_no_fd_leak(|| {
        let lp = EventLoop::new().unwrap();
        let fut = lp.create_datagram_endpoint(
            Rec::default,
            local("127.0.0.1", 0),
            None,
            Default::default(),
        );
        drop(fut);
        lp.close().unwrap();
    });
}
