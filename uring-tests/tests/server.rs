//! Servers: asyncio's `Server` lifecycle (close, wait_closed,
//! serve_forever, start_serving), hosts, Unix paths, bind failures.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::Duration;

use ringloop::net::{Server, ServerOptions};
use ringloop_uring_tests::proto::{wait_until, Recorder, SeenRef};
use ringloop_uring_tests::{fd_lock, fd_snapshot, TestLoop};

fn echo_server(tl: &TestLoop, options: ServerOptions) -> (Server, Rc<RefCell<Vec<SeenRef>>>, u16) {
    let (factory, conns) = Recorder::factory(true);
    let server = tl
        .block_on(
            tl.lp()
                .create_server(factory, &["127.0.0.1"], Some(0), options),
        )
        .unwrap();
    let port = server.addresses()[0].as_socket().unwrap().port();
    (server, conns, port)
}

fn run_until(tl: &TestLoop, cond: impl FnMut() -> bool + 'static) {
    let lp = tl.lp();
    tl.block_on(async move { wait_until(&lp, cond).await });
}

fn roundtrip(tl: &TestLoop, sock: &mut TcpStream, msg: &[u8]) {
    sock.write_all(msg).unwrap();
    let (lp, n) = (tl.lp(), msg.len());
    // The loop must run for the echo to happen.
    let got = Rc::new(RefCell::new(Vec::new()));
    let g = got.clone();
    let s = sock.try_clone().unwrap();
    s.set_nonblocking(true).unwrap();
    tl.block_on(async move {
        let mut buf = vec![0; n];
        wait_until(&lp, move || {
            let mut s = &s;
            if let Ok(k) = s.read(&mut buf) {
                g.borrow_mut().extend_from_slice(&buf[..k]);
            }
            g.borrow().len() >= n
        })
        .await
    });
    assert_eq!(&got.borrow()[..], msg);
}

#[test]
fn close_keeps_connections_and_wait_closed_waits_for_them() {
    let _serial = fd_lock();
    let tl = TestLoop::new();
    let (server, conns, port) = echo_server(&tl, ServerOptions::default());
    assert!(server.is_serving());
    assert!(server.get_loop().is_some());
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    roundtrip(&tl, &mut c, b"before close");
    server.close();
    server.close();
    assert!(!server.is_serving());
    assert!(server.sockets().is_empty());
    // New connections are refused; the old one still echoes.
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    roundtrip(&tl, &mut c, b"after close");
    // wait_closed waits for the live connection.
    let done = Rc::new(RefCell::new(false));
    let d = done.clone();
    let wc = server.wait_closed();
    tl.lp()
        .create_task(async move {
            wc.await;
            *d.borrow_mut() = true;
        })
        .unwrap();
    tl.block_on(tl.lp().sleep(Duration::from_millis(30)).unwrap());
    assert!(
        !*done.borrow(),
        "wait_closed returned with a live connection"
    );
    drop(c);
    let d = done.clone();
    run_until(&tl, move || *d.borrow());
    assert!(conns.borrow()[0].borrow().lost());
}

#[test]
fn serve_forever_rules() {
    let _serial = fd_lock();
    let tl = TestLoop::new();
    let (server, _conns, port) = echo_server(&tl, ServerOptions::default().start_serving(false));
    assert!(!server.is_serving());
    // Not listening yet: the kernel refuses the connection.
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    let forever = server.serve_forever();
    assert!(server.is_serving());
    let second = tl.block_on(server.serve_forever());
    assert!(matches!(second, Err(ringloop::Error::InvalidState(_))));
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let task = tl.lp().create_task(forever).unwrap();
    roundtrip(&tl, &mut c, b"served");
    // Cancelling serve_forever closes the server.
    task.cancel();
    let s = server.clone();
    run_until(&tl, move || !s.is_serving());
    assert!(server.sockets().is_empty());
    assert!(matches!(
        tl.block_on(server.serve_forever()),
        Err(ringloop::Error::InvalidState(_))
    ));
    assert!(server.start_serving().is_err());
}

#[test]
fn serve_forever_returns_when_closed() {
    let _serial = fd_lock();
    let tl = TestLoop::new();
    let (server, _conns, _port) = echo_server(&tl, ServerOptions::default());
    let s = server.clone();
    tl.lp()
        .call_later(Duration::from_millis(10), move || s.close())
        .unwrap();
    tl.block_on(server.serve_forever()).unwrap();
    tl.block_on(server.wait_closed());
}

#[test]
fn all_interfaces_and_several_hosts() {
    let _serial = fd_lock();
    let tl = TestLoop::new();
    let lp = tl.lp();
    let (factory, _) = Recorder::factory(true);
    let server = tl
        .block_on(lp.create_server(factory, &[], Some(0), ServerOptions::default()))
        .unwrap();
    let addrs = server.addresses();
    assert!(!addrs.is_empty());
    for (fd, addr) in server.sockets().into_iter().zip(&addrs) {
        let a = addr.as_socket().unwrap();
        assert!(a.ip().is_unspecified(), "{a}");
        if a.is_ipv6() {
            let sock = unsafe_borrow(fd);
            assert!(socket2::SockRef::from(&sock).only_v6().unwrap());
        }
    }
    server.close();
    let (factory, _) = Recorder::factory(true);
    let server = tl
        .block_on(lp.create_server(
            factory,
            &["127.0.0.1", "localhost"],
            Some(0),
            ServerOptions::default(),
        ))
        .unwrap();
    assert!(server
        .addresses()
        .iter()
        .all(|a| a.as_socket().unwrap().ip().is_loopback()));
    server.close();
}

/// Borrows a server-owned descriptor for a sockopt query.
fn unsafe_borrow(fd: i32) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: the server keeps the socket open for the whole check.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

#[test]
fn failed_bind_closes_every_socket() {
    let _serial = fd_lock();
    let tl = TestLoop::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let before = fd_snapshot();
    let (factory, _) = Recorder::factory(true);
    let r = tl.block_on(tl.lp().create_server(
        factory,
        &["127.0.0.2", "127.0.0.1"],
        Some(port),
        ServerOptions::default().reuse_address(false),
    ));
    let e = r.err().unwrap();
    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse, "{e}");
    assert!(e.to_string().contains("127.0.0.1"), "{e}");
    before.assert_nothing_new("a socket of the failed server leaked");
}

#[test]
fn sock_option_and_argument_errors() {
    let _serial = fd_lock();
    let tl = TestLoop::new();
    let lp = tl.lp();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (factory, conns) = Recorder::factory(true);
    let server = tl
        .block_on(lp.create_server(factory, &[], None, ServerOptions::default().sock(listener)))
        .unwrap();
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    roundtrip(&tl, &mut c, b"via sock");
    assert_eq!(conns.borrow().len(), 1);
    server.close();
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (factory, _) = Recorder::factory(true);
    let r = tl.block_on(lp.create_server(
        factory,
        &["127.0.0.1"],
        Some(0),
        ServerOptions::default().sock(other),
    ));
    assert_eq!(r.err().unwrap().kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn unix_server_paths() {
    let _serial = fd_lock();
    let tl = TestLoop::new();
    let lp = tl.lp();
    let dir = std::env::temp_dir().join(format!("ringloop-unix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("server.sock");
    // A stale socket file from an earlier run is removed before bind.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let (factory, _) = Recorder::factory(true);
    let server = tl
        .block_on(lp.create_unix_server(factory, Some(&path), ServerOptions::default()))
        .unwrap();
    let (proto, seen) = Recorder::new(false);
    let (t, _) = tl
        .block_on(lp.create_unix_connection(move || proto, Some(&path), None))
        .unwrap();
    t.write(b"over unix").unwrap();
    let s = seen.clone();
    run_until(&tl, move || s.borrow().bytes == b"over unix");
    t.close();
    server.close();
    tl.block_on(server.wait_closed());
    // A regular file at the path is not removed: bind fails.
    std::fs::remove_file(&path).ok();
    std::fs::write(&path, b"not a socket").unwrap();
    let (factory, _) = Recorder::factory(true);
    let r = tl.block_on(lp.create_unix_server(factory, Some(&path), ServerOptions::default()));
    assert_eq!(r.err().unwrap().kind(), std::io::ErrorKind::AddrInUse);
    std::fs::remove_dir_all(&dir).unwrap();

    // Abstract names (leading NUL).
    let name = format!("\0ringloop-abstract-{}", std::process::id());
    let apath = std::path::Path::new(&name);
    let (factory, _) = Recorder::factory(true);
    let server = tl
        .block_on(lp.create_unix_server(factory, Some(apath), ServerOptions::default()))
        .unwrap();
    let (proto, seen) = Recorder::new(false);
    let (t, _) = tl
        .block_on(lp.create_unix_connection(move || proto, Some(apath), None))
        .unwrap();
    t.write(b"abstract").unwrap();
    let s = seen.clone();
    run_until(&tl, move || s.borrow().bytes == b"abstract");
    t.close();
    server.close();

    // sock= for a connection; contradictory arguments.
    let (a, mut b) = UnixStream::pair().unwrap();
    let (proto, _seen) = Recorder::new(false);
    let (t, _) = tl
        .block_on(lp.create_unix_connection(move || proto, None, Some(a.into())))
        .unwrap();
    t.write(b"pair").unwrap();
    t.close();
    let t2 = t.clone();
    run_until(&tl, move || t2.is_closed());
    let mut got = Vec::new();
    b.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"pair");
    let r = tl.block_on(lp.create_unix_connection(|| Recorder::new(false).0, None, None));
    assert_eq!(r.err().unwrap().kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn a_panicking_protocol_factory_is_reported_and_the_server_serves_on() {
    // asyncio: an exception from protocol_factory() in
    // _accept_connection2 is reported, that connection is closed, and
    // the server goes on accepting; wait_closed does not wait for it.
    let _serial = fd_lock();
    let mut tl = TestLoop::new();
    let errors = tl.expect_errors();
    let (recorder, conns) = Recorder::factory(true);
    let calls = Rc::new(std::cell::Cell::new(0));
    let c = calls.clone();
    let factory = move || {
        c.set(c.get() + 1);
        if c.get() == 1 {
            panic!("no protocol for the first one");
        }
        recorder()
    };
    let server = tl
        .block_on(
            tl.lp()
                .create_server(factory, &["127.0.0.1"], Some(0), ServerOptions::default()),
        )
        .unwrap();
    let port = server.addresses()[0].as_socket().unwrap().port();
    let mut first = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let e = errors.clone();
    run_until(&tl, move || !e.borrow().is_empty());
    assert!(
        errors.borrow()[0].contains("Error on transport creation for incoming connection"),
        "{:?}",
        errors.borrow()
    );
    first
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(first.read(&mut [0; 8]).unwrap_or(0), 0, "closed");
    let mut second = TcpStream::connect(("127.0.0.1", port)).unwrap();
    roundtrip(&tl, &mut second, b"still serving");
    assert!(server.is_serving());
    assert_eq!(calls.get(), 2);
    drop(second);
    let c = conns.clone();
    run_until(&tl, move || c.borrow()[0].borrow().lost());
    server.close();
    tl.block_on(server.wait_closed());
}

#[test]
fn closing_a_server_on_a_given_socket_leaves_other_holders_listening() {
    // asyncio closes its own descriptor only (`sock.close()`): a duplicate
    // held elsewhere (a forked worker, another loop) keeps listening.
    let _serial = fd_lock();
    let tl = TestLoop::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let keep = listener.try_clone().unwrap();
    let (factory, _) = Recorder::factory(true);
    let server = tl
        .block_on(tl.lp().create_server(
            factory,
            &[],
            None,
            ServerOptions::default().sock(listener),
        ))
        .unwrap();
    server.close();
    tl.block_on(server.wait_closed());
    let mut client = TcpStream::connect(("127.0.0.1", port)).expect("still listening");
    keep.set_nonblocking(false).unwrap();
    let (mut accepted, _) = keep.accept().expect("the other holder accepts");
    client.write_all(b"x").unwrap();
    let mut b = [0u8; 1];
    accepted.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"x");
}

#[test]
fn neither_hosts_nor_port_nor_sock_is_invalid_input() {
    let tl = TestLoop::new();
    let (factory, _) = Recorder::factory(true);
    let r = tl.block_on(
        tl.lp()
            .create_server(factory, &[], None, ServerOptions::default()),
    );
    let e = r.expect_err("an error");
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(e.to_string().contains("Neither host/port nor sock"), "{e}");
}

#[test]
fn an_empty_unix_server_path_is_invalid_input() {
    // Binding "" would autobind a random abstract address and succeed.
    let tl = TestLoop::new();
    let (factory, _) = Recorder::factory(true);
    let r = tl.block_on(tl.lp().create_unix_server(
        factory,
        Some(std::path::Path::new("")),
        ServerOptions::default(),
    ));
    assert_eq!(r.err().unwrap().kind(), std::io::ErrorKind::InvalidInput);
}
