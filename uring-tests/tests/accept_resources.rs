//! A server that runs out of descriptors (EMFILE on accept) reports it to
//! the exception handler and pauses accepting for a second instead of
//! spinning, then accepts the waiting connections once descriptors are
//! free again (asyncio's `ACCEPT_RETRY_DELAY`); both backends.
//!
//! Its own test binary: it lowers the process's `RLIMIT_NOFILE` and fills
//! the descriptor table, which would break any test running beside it.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use ringloop::net::ServerOptions;
use ringloop_uring_tests::proto::{wait_until, Recorder};
use ringloop_uring_tests::{fd_count, TestLoop};
use socket2::{Domain, SockAddr, Socket, Type};

/// Restores the descriptor limit however the test ends.
struct Limit(libc::rlimit);

impl Limit {
    fn lower_to(soft: u64) -> Limit {
        let mut old = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one rlimit into `old`.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut old) }, 0);
        let new = libc::rlimit {
            rlim_cur: soft,
            rlim_max: old.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit; lowering the soft limit is
        // always allowed.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) }, 0);
        Limit(old)
    }
}

impl Drop for Limit {
    fn drop(&mut self) {
        // SAFETY: restores the limit read in `lower_to`.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &self.0) };
    }
}

/// Duplicates stdin until the table is full (below the soft limit), so
/// that no free number is left for accept.
fn fill_table() -> Vec<OwnedFd> {
    let mut held = Vec::new();
    loop {
        match std::io::stdin().as_fd().try_clone_to_owned() {
            Ok(fd) => held.push(fd),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}");
                return held;
            }
        }
        assert!(held.len() < 100_000, "the descriptor limit did not hold");
    }
}

#[test]
fn emfile_on_accept_is_reported_and_pauses_accepting() {
    let mut tl = TestLoop::new();
    let errors = tl.expect_errors();
    let lp = tl.lp();
    let (factory, conns) = Recorder::factory(true);
    let server = tl
        .block_on(lp.create_server(factory, &["127.0.0.1"], Some(0), ServerOptions::default()))
        .unwrap();
    let addr: SockAddr = server.addresses()[0].clone();

    // Client sockets exist before the table fills; connecting needs no new
    // descriptor, accepting does.
    let clients: Vec<Socket> = (0..3)
        .map(|_| Socket::new(Domain::IPV4, Type::STREAM, None).unwrap())
        .collect();
    let highest = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .unwrap();
    let limit = Limit::lower_to(highest + 8);
    let filler = fill_table();
    let full_at = fd_count();
    for c in &clients {
        c.connect(&addr).unwrap();
    }

    // 1.5 s out of descriptors: one report, maybe two (the retry after a
    // second), never a spin.
    let started = Instant::now();
    let l = lp.clone();
    tl.block_on(async move { l.sleep(Duration::from_millis(1500)).unwrap().await });
    let reports = errors.borrow().clone();
    assert!(
        !reports.is_empty(),
        "EMFILE on accept was not reported (table full at {full_at} descriptors)"
    );
    assert!(
        reports.len() <= 2,
        "accepting did not pause: {} reports in {:?}",
        reports.len(),
        started.elapsed()
    );
    assert!(
        reports[0].contains("out of system resource") && reports[0].contains("Too many open files"),
        "{}",
        reports[0]
    );
    assert!(conns.borrow().is_empty(), "accepted without a descriptor?");

    // Descriptors free again: the waiting connections are accepted (after
    // the pause) and served.
    drop(filler);
    drop(limit);
    let c2 = conns.clone();
    let l = lp.clone();
    tl.block_on(async move { wait_until(&l, move || c2.borrow().len() == 3).await });
    for c in clients {
        let mut s: std::net::TcpStream = c.into();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"ping").unwrap();
        s.set_nonblocking(true).unwrap();
        let mut got = Vec::new();
        let l = lp.clone();
        let fd = s.as_raw_fd();
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.len() < 4 {
            let mut buf = [0u8; 16];
            match s.read(&mut buf) {
                Ok(0) => panic!("closed before the echo"),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "no echo on fd {fd}");
                    let l2 = l.clone();
                    tl.block_on(async move { l2.sleep(Duration::from_millis(1)).unwrap().await });
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got, b"ping");
    }
    server.close();
    tl.block_on(async move { lp.sleep(Duration::ZERO).unwrap().await });
}
