//! Transports under load: many concurrent connections with checked
//! payloads, and thousands of connect/close cycles without a leak.

use std::cell::{Cell, RefCell};
use std::io;
use std::rc::Rc;

use ringloop::net::ServerOptions;
use ringloop::{BaseProtocol, Protocol, Transport};
use ringloop_uring_tests::proto::{wait_until, Recorder};
use ringloop_uring_tests::{fd_lock, fd_snapshot, pattern, TestLoop};

/// Raises the soft descriptor limit to the hard one.
fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out-pointer.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: valid in-pointer.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    lim.rlim_cur
}

fn fnv(data: &[u8], mut h: u64) -> u64 {
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// Sends one payload, then checks the echo byte for byte via a running
/// checksum.
struct Client {
    payload: Rc<Vec<u8>>,
    received: usize,
    hash: u64,
    transport: Option<Transport>,
    done: Rc<Cell<usize>>,
    bad: Rc<Cell<usize>>,
}

impl BaseProtocol for Client {
    type Transport = Transport;
    fn connection_made(&mut self, t: Transport) {
        t.write(&self.payload).unwrap();
        self.transport = Some(t);
    }
    fn connection_lost(&mut self, e: Option<io::Error>) {
        if e.is_some() || self.received != self.payload.len() {
            self.bad.set(self.bad.get() + 1);
        }
        self.transport = None;
    }
}

impl Protocol for Client {
    fn data_received(&mut self, data: &[u8]) {
        self.hash = fnv(data, self.hash);
        self.received += data.len();
        if self.received == self.payload.len() {
            if self.hash != fnv(&self.payload, 0xcbf2_9ce4_8422_2325) {
                self.bad.set(self.bad.get() + 1);
            }
            self.done.set(self.done.get() + 1);
            self.transport.as_ref().unwrap().close();
        }
    }
}

#[test]
fn thousand_concurrent_connections_echo_intact() {
    let _g = fd_lock();
    let limit = raise_nofile();
    let conns = if limit >= 2200 {
        1000
    } else {
        (limit as usize - 200) / 2
    };
    let total = echo_concurrently(TestLoop::new(), conns, 1 << 20);
    assert!(total > 100 << 20, "too little traffic: {total}");
}

/// A receive ring of two 512-byte buffers runs dry all the time on
/// io_uring: every transport must fall back to a private buffer and arm
/// its multishot receive again, without losing or reordering a byte.
#[test]
fn a_tiny_receive_ring_runs_dry_without_losing_data() {
    let _g = fd_lock();
    raise_nofile();
    let lp = ringloop::EventLoop::builder()
        .recv_buffers(2, 512)
        .build()
        .unwrap();
    let total = echo_concurrently(TestLoop::from_loop(lp), 200, 256 << 10);
    assert!(total > 7 << 20, "too little traffic: {total}");
}

/// Echoes `conns` concurrent connections with payloads from 1 byte to
/// `big` bytes through a server on `tl`, checking every byte; returns
/// the bytes sent.
fn echo_concurrently(tl: TestLoop, conns: usize, big: usize) -> usize {
    let lp = tl.lp();
    let (factory, _) = Recorder::factory(true);
    let server = tl
        .block_on(lp.create_server(
            factory,
            &["127.0.0.1"],
            Some(0),
            ServerOptions::default().backlog(1024),
        ))
        .unwrap();
    let port = server.addresses()[0].as_socket().unwrap().port();
    let done = Rc::new(Cell::new(0));
    let bad = Rc::new(Cell::new(0));
    let mut total = 0usize;
    for i in 0..conns {
        // Sizes spread from 1 byte to 1 MiB, most of them small.
        let size = match i % 10 {
            0 => big,
            1..=3 => 1 + (i * 7919) % (big / 4),
            _ => 1 + (i * 104_729) % 16_384,
        };
        total += size;
        let payload = Rc::new(pattern(size, i as u64 + 1));
        let (d, b) = (done.clone(), bad.clone());
        let l = lp.clone();
        lp.create_task(async move {
            let r = l
                .create_connection(
                    move || Client {
                        payload,
                        received: 0,
                        hash: 0xcbf2_9ce4_8422_2325,
                        transport: None,
                        done: d,
                        bad: b.clone(),
                    },
                    Some("127.0.0.1"),
                    Some(port),
                    Default::default(),
                )
                .await;
            r.expect("connect");
        })
        .unwrap();
    }
    let d = done.clone();
    let l = lp.clone();
    tl.block_on_within(std::time::Duration::from_secs(120), async move {
        wait_until(&l, move || d.get() == conns).await
    });
    assert_eq!(bad.get(), 0, "corrupted or failed connections");
    server.close();
    tl.block_on(server.wait_closed());
    total
}

#[test]
fn ten_thousand_connect_close_cycles_leak_nothing() {
    let _g = fd_lock();
    raise_nofile();
    let tl = TestLoop::new();
    let lp = tl.lp();
    let (factory, conns) = Recorder::factory(false);
    let server = tl
        .block_on(lp.create_server(
            factory,
            &["127.0.0.1"],
            Some(0),
            ServerOptions::default().backlog(1024),
        ))
        .unwrap();
    let port = server.addresses()[0].as_socket().unwrap().port();
    // Settle lazily created descriptors (executor threads do not hold
    // any, but the resolver and the loop may open some on first use).
    let l = lp.clone();
    tl.block_on(async move {
        let (t, _) = l
            .create_connection(
                || Recorder::new(false).0,
                Some("127.0.0.1"),
                Some(port),
                Default::default(),
            )
            .await
            .unwrap();
        t.close();
    });
    let c = conns.clone();
    let l = lp.clone();
    tl.block_on(async move {
        wait_until(&l, move || c.borrow().iter().all(|s| s.borrow().lost())).await
    });
    let before = fd_snapshot();
    const CYCLES: usize = 10_000;
    const PARALLEL: usize = 50;
    let finished = Rc::new(Cell::new(0usize));
    for w in 0..PARALLEL {
        let l = lp.clone();
        let f = finished.clone();
        lp.create_task(async move {
            for _ in 0..CYCLES / PARALLEL {
                // Alternate who closes first.
                let (proto, seen) = Recorder::new(false);
                let (t, _) = l
                    .create_connection(
                        move || proto,
                        None,
                        None,
                        ringloop::net::ConnectOptions::default()
                            .sock(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap()),
                    )
                    .await
                    .unwrap();
                if w % 2 == 0 {
                    t.close();
                } else {
                    t.abort();
                }
                let s = seen.clone();
                wait_until(&l, move || s.borrow().lost()).await;
                f.set(f.get() + 1);
            }
        })
        .unwrap();
    }
    let f = finished.clone();
    let l = lp.clone();
    tl.block_on_within(std::time::Duration::from_secs(120), async move {
        wait_until(&l, move || f.get() == CYCLES).await
    });
    let c = conns.clone();
    let l = lp.clone();
    tl.block_on(async move {
        wait_until(&l, move || {
            let c = c.borrow();
            c.len() == CYCLES + 1 && c.iter().all(|s| s.borrow().lost())
        })
        .await
    });
    let accepted: RefCell<usize> = RefCell::new(conns.borrow().len());
    assert_eq!(*accepted.borrow(), CYCLES + 1);
    before.assert_nothing_new("descriptors left open by the cycles");
    server.close();
    tl.block_on(server.wait_closed());
}
