//! The low-level socket operations: bytes intact, errors surfaced,
//! cancellation immediate and harmless to the next operation.

use std::cell::RefCell;
use std::io::{self, Read, Seek, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::rc::Rc;
use std::time::Duration;

use ringloop::{EventLoop, SendfileNotAvailable};
use ringloop_uring_tests::{pattern, tcp_pair, TestLoop};

fn listener() -> TcpListener {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    l
}

/// Reads from `sock` until EOF.
async fn read_to_end(lp: EventLoop, sock: &impl std::os::fd::AsFd) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let chunk = lp.sock_recv(sock, 64 * 1024).await?;
        if chunk.is_empty() {
            return Ok(out);
        }
        out.extend_from_slice(&chunk);
    }
}

#[test]
fn accept_connect_send_recv_over_tcp_keeps_bytes_intact() {
    let lp = TestLoop::new();
    let l = lp.lp();
    let payload = pattern(3 * 1024 * 1024 + 17, 1);
    let expect = payload.clone();
    let got = lp.block_on(async move {
        let listener = listener();
        let addr = listener.local_addr().unwrap();
        let server = {
            let l = l.clone();
            l.clone()
                .create_task(async move {
                    let (conn, peer) = l.sock_accept(&listener).await.unwrap();
                    assert_eq!(peer.ip(), Ipv4Addr::LOCALHOST);
                    let data = read_to_end(l.clone(), &conn).await.unwrap();
                    l.sock_sendall(&conn, data.clone()).await.unwrap();
                    data.len()
                })
                .unwrap()
        };
        let client =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        client.set_nonblocking(true).unwrap();
        l.sock_connect(&client, addr).await.unwrap();
        l.sock_sendall(&client, payload).await.unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let echoed = read_to_end(l.clone(), &client).await.unwrap();
        assert_eq!(server.await.unwrap(), echoed.len());
        echoed
    });
    assert!(got == expect, "echoed bytes differ");
}

#[test]
fn accepted_sockets_are_nonblocking_and_cloexec() {
    let lp = TestLoop::new();
    let l = lp.lp();
    let listener = listener();
    let addr = listener.local_addr().unwrap();
    let t = std::thread::spawn(move || TcpStream::connect(addr).unwrap());
    let (conn, _) = lp
        .block_on(async move { l.sock_accept(&listener).await })
        .unwrap();
    let _client = t.join().unwrap();
    let fd = conn.as_raw_fd();
    // SAFETY (test): fcntl on a descriptor we own.
    let fl = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    let fdfl = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    assert!(fl & libc::O_NONBLOCK != 0);
    assert!(fdfl & libc::FD_CLOEXEC != 0);
}

#[test]
fn unix_sockets_work_too() {
    let lp = TestLoop::new();
    let dir = std::env::temp_dir().join(format!("ringloop-unix-{}", std::process::id()));
    let _ = std::fs::create_dir(&dir);
    let path = dir.join("s.sock");
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    let l = lp.lp();
    let p = path.clone();
    let got = lp.block_on(async move {
        let client =
            socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).unwrap();
        let accept = l.sock_accept(&listener);
        let connect = l.sock_connect(&client, p.as_path());
        let (acc, con) = join2(accept, connect).await;
        let (conn, _peer) = acc.unwrap();
        con.unwrap();
        l.sock_sendall(&client, &b"over unix"[..]).await.unwrap();
        l.sock_recv(&conn, 100).await.unwrap()
    });
    assert_eq!(&got[..], b"over unix");
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_dir(&dir);
}

/// Polls two futures concurrently (tiny join, to avoid a dependency).
async fn join2<A: std::future::Future, B: std::future::Future>(
    a: A,
    b: B,
) -> (A::Output, B::Output) {
    let mut a = Box::pin(a);
    let mut b = Box::pin(b);
    let mut ra = None;
    let mut rb = None;
    std::future::poll_fn(|cx| {
        if ra.is_none() {
            if let std::task::Poll::Ready(v) = a.as_mut().poll(cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() {
            if let std::task::Poll::Ready(v) = b.as_mut().poll(cx) {
                rb = Some(v);
            }
        }
        if ra.is_some() && rb.is_some() {
            std::task::Poll::Ready((ra.take().unwrap(), rb.take().unwrap()))
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}

#[test]
fn recv_into_fills_the_owned_buffer_and_returns_it() {
    let lp = TestLoop::new();
    let (a, b) = UnixStream::pair().unwrap();
    (&a).write_all(b"hello").unwrap();
    let l = lp.lp();
    let (res, buf) = lp.block_on(async move { l.sock_recv_into(&b, vec![0u8; 16]).await });
    assert_eq!(res.unwrap(), 5);
    assert_eq!(&buf[..5], b"hello");
    assert_eq!(buf.len(), 16);
}

#[test]
fn recv_returns_empty_at_eof() {
    let lp = TestLoop::new();
    let (a, b) = UnixStream::pair().unwrap();
    drop(a);
    let l = lp.lp();
    let got = lp
        .block_on(async move { l.sock_recv(&b, 10).await })
        .unwrap();
    assert!(got.is_empty());
}

#[test]
fn connecting_to_a_closed_port_is_connection_refused() {
    let lp = TestLoop::new();
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let l = lp.lp();
    let err = lp
        .block_on(async move {
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            l.sock_connect(&s, SocketAddr::from(([127, 0, 0, 1], port)))
                .await
        })
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
}

#[test]
fn sock_connect_resolves_host_names() {
    let lp = TestLoop::new();
    let listener = listener();
    let port = listener.local_addr().unwrap().port();
    let l = lp.lp();
    lp.block_on(async move {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let (acc, con) = join2(
            l.sock_accept(&listener),
            l.sock_connect(&s, ("localhost", port)),
        )
        .await;
        con.unwrap();
        acc.unwrap();
    });
}

#[test]
fn operations_on_a_non_socket_fail_cleanly() {
    let lp = TestLoop::new();
    let file = tempfile_with(b"abc");
    let l = lp.lp();
    let err = lp
        .block_on(async move { l.sock_recv(&file, 10).await })
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTSOCK));
}

#[test]
fn cancelled_recv_takes_effect_at_once_and_the_next_recv_works() {
    let lp = TestLoop::new();
    let (a, b) = UnixStream::pair().unwrap();
    let b = Rc::new(b);
    let l = lp.lp();
    let b1 = b.clone();
    let first = lp
        .create_task(async move { l.sock_recv(&*b1, 100).await })
        .unwrap();
    lp.stop();
    lp.run_forever().unwrap();
    assert_eq!(lp.in_flight_ops(), 1);
    first.cancel();
    lp.stop();
    lp.run_forever().unwrap();
    // The cancel reached the kernel: nothing of ours is in flight.
    for _ in 0..10 {
        if lp.in_flight_ops() == 0 {
            break;
        }
        lp.stop();
        lp.run_forever().unwrap();
    }
    assert_eq!(lp.in_flight_ops(), 0);
    assert!(first.cancelled());
    (&a).write_all(b"for the second").unwrap();
    let l = lp.lp();
    let got = lp
        .block_on(async move { l.sock_recv(&*b, 100).await })
        .unwrap();
    assert_eq!(
        &got[..],
        b"for the second",
        "no byte went to the cancelled recv"
    );
}

#[test]
fn cancelled_sendall_then_another_delivers_the_second_last_and_intact() {
    let lp = TestLoop::new();
    let (client, server) = tcp_pair();
    let client = Rc::new(client);
    let big = pattern(16 * 1024 * 1024, 7);
    let l = lp.lp();
    let c = client.clone();
    let big2 = big.clone();
    let first = lp
        .create_task(async move { l.sock_sendall(&*c, big2).await })
        .unwrap();
    // Let it fill the socket buffers (nobody reads yet), then cancel.
    let stop = lp.lp();
    lp.call_later(Duration::from_millis(50), move || stop.stop())
        .unwrap();
    lp.run_forever().unwrap();
    assert!(!first.done(), "16 MiB cannot fit in loopback buffers");
    first.cancel();
    let marker = b"--SECOND-SENDALL-MARKER--".repeat(1000);
    let l = lp.lp();
    let m = marker.clone();
    let reader = read_to_end_in_thread(server);
    lp.block_on(async move {
        l.sock_sendall(&*client, m).await.unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let all = reader.join().unwrap();
    assert!(all.len() >= marker.len());
    let (prefix, tail) = all.split_at(all.len() - marker.len());
    assert!(
        tail == &marker[..],
        "the second sendall's bytes come last, intact"
    );
    assert!(
        prefix == &big[..prefix.len()],
        "what the first sent is an intact prefix"
    );
    assert!(prefix.len() < big.len());
}

#[test]
fn sock_sendfile_zero_copy_sends_the_range_and_moves_the_position() {
    let lp = TestLoop::new();
    if let Some(f) = lp.kernel_features() {
        if !f.splice {
            eprintln!("SKIP: this kernel's io_uring has no IORING_OP_SPLICE");
            return;
        }
    }
    let data = pattern(3 * 1024 * 1024 + 5, 3);
    let file = Rc::new(tempfile_with(&data));
    let (client, server) = tcp_pair();
    let reader = read_to_end_in_thread(server);
    let l = lp.lp();
    let f = file.clone();
    let sent = lp.block_on(async move {
        let a = l
            .sock_sendfile(&client, &f, 100, Some(2 * 1024 * 1024), false)
            .await
            .unwrap();
        let b = l
            .sock_sendfile(&client, &f, 100 + a as u64, None, false)
            .await
            .unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        (a, b)
    });
    assert_eq!(sent.0, 2 * 1024 * 1024);
    assert_eq!(sent.1, data.len() - 100 - sent.0);
    let got = reader.join().unwrap();
    assert!(got == data[100..], "file bytes arrive intact");
    let pos = (&*file).stream_position().unwrap();
    assert_eq!(pos, data.len() as u64, "position = offset + sent");
}

#[test]
fn sock_sendfile_from_a_pipe_uses_the_fallback_or_says_not_available() {
    let lp = TestLoop::new();
    let (client, server) = tcp_pair();
    let (rd, mut wr) = pipe();
    wr.write_all(b"through the fallback").unwrap();
    drop(wr);
    let l = lp.lp();
    let rd = Rc::new(rd);
    let r2 = rd.clone();
    let err = lp
        .block_on(async move {
            l.sock_sendfile(&client, &r2, 0, None, false)
                .await
                .map(|_| client)
        })
        .unwrap_err();
    assert!(SendfileNotAvailable::is(&err), "{err}");
    assert_eq!(err.kind(), io::ErrorKind::Unsupported);

    let (client, server2) = tcp_pair();
    drop(server);
    let l = lp.lp();
    let n = lp
        .block_on(async move {
            let n = l.sock_sendfile(&client, &rd, 0, None, true).await;
            drop(client);
            n
        })
        .unwrap();
    assert_eq!(n, 20);
    let mut server2 = server2;
    server2.set_nonblocking(false).unwrap();
    let mut got = Vec::new();
    server2.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"through the fallback");
}

#[test]
fn sock_sendfile_rejects_bad_arguments() {
    let lp = TestLoop::new();
    let file = Rc::new(tempfile_with(b"x"));
    let (client, _server) = tcp_pair();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let l = lp.lp();
    let f = file.clone();
    let (zero, dgram) = lp.block_on(async move {
        let zero = l.sock_sendfile(&client, &f, 0, Some(0), true).await;
        let dgram = l.sock_sendfile(&udp, &f, 0, None, true).await;
        (zero, dgram)
    });
    assert_eq!(zero.unwrap_err().kind(), io::ErrorKind::InvalidInput);
    assert_eq!(dgram.unwrap_err().kind(), io::ErrorKind::InvalidInput);
}

#[test]
fn a_small_ring_runs_a_thousand_concurrent_operations() {
    // 8 submission entries, 16 completion entries, 1000 operations in
    // flight at once: the ring fills and the CQ overflows, nothing is lost.
    let lp = TestLoop::from_loop(EventLoop::builder().ring_entries(8).build().unwrap());
    let pairs: Vec<(UnixStream, UnixStream)> =
        (0..500).map(|_| UnixStream::pair().unwrap()).collect();
    type Received = Rc<RefCell<Vec<(usize, Vec<u8>)>>>;
    let results: Received = Rc::default();
    let mut tasks = Vec::new();
    let mut writers = Vec::new();
    for (i, (a, b)) in pairs.into_iter().enumerate() {
        let l = lp.lp();
        let r = results.clone();
        tasks.push(
            lp.create_task(async move {
                let got = l.sock_recv(&b, 64).await.unwrap();
                r.borrow_mut().push((i, got.to_vec()));
            })
            .unwrap(),
        );
        writers.push((i, a));
    }
    // First: 500 receives pending in the kernel.
    lp.stop();
    lp.run_forever().unwrap();
    assert_eq!(lp.in_flight_ops(), 500);
    // Then 500 sends through the loop as well: 1000 operations.
    for (i, a) in writers {
        let l = lp.lp();
        lp.create_task(async move {
            l.sock_sendall(&a, format!("message {i}").into_bytes())
                .await
                .unwrap();
        })
        .unwrap();
    }
    let l = lp.lp();
    lp.block_on(async move {
        for t in tasks {
            t.await.unwrap();
        }
        drop(l);
    });
    let mut r = results.borrow_mut();
    assert_eq!(r.len(), 500);
    r.sort();
    for (i, got) in r.iter() {
        assert_eq!(got, format!("message {i}").as_bytes());
    }
}

/// Reads `stream` to EOF on another (blocking) thread.
fn read_to_end_in_thread(stream: TcpStream) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut stream = stream;
        stream.set_nonblocking(false).unwrap();
        let mut all = Vec::new();
        stream.read_to_end(&mut all).unwrap();
        all
    })
}

fn tempfile_with(data: &[u8]) -> std::fs::File {
    let path = std::env::temp_dir().join(format!(
        "ringloop-test-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    f.write_all(data).unwrap();
    f.rewind().unwrap();
    f
}

fn pipe() -> (std::fs::File, std::fs::File) {
    let mut fds = [0; 2];
    // SAFETY (test): pipe2 into a valid array; the fds become Files below.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    use std::os::fd::FromRawFd;
    // SAFETY (test): fresh descriptors owned by nobody else.
    unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    }
}

#[test]
fn blocking_sockets_never_block_the_loop() {
    // The specification asks for non-blocking sockets; given blocking ones
    // anyway, no backend may block the loop thread: a timer keeps firing
    // while an accept waits, and connect and recv still work.
    let lp = TestLoop::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap(); // blocking
    let addr = listener.local_addr().unwrap();
    let ticks = ringloop_uring_tests::start_ticker(&lp, Duration::from_millis(5));
    let l = lp.lp();
    let t = ticks.clone();
    let got = lp.block_on(async move {
        let accepting = l.create_task({
            let l = l.clone();
            async move { l.sock_accept(&listener).await.map(|(s, _)| s) }
        });
        let accepting = accepting.unwrap();
        l.sleep(Duration::from_millis(50)).unwrap().await;
        assert!(t.get() >= 3, "the loop kept running while accept waited");
        let client =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        l.sock_connect(&client, addr).await.unwrap(); // blocking socket
        let server = accepting.await.unwrap().unwrap();
        l.sock_sendall(&client, &b"blocking ok"[..]).await.unwrap();
        l.sock_recv(&server, 64).await.unwrap()
    });
    assert_eq!(&got[..], b"blocking ok");
}

#[test]
fn debug_mode_rejects_blocking_sockets() {
    let lp = TestLoop::from_loop(EventLoop::builder().debug(true).build().unwrap());
    let (a, _b) = UnixStream::pair().unwrap(); // blocking
    let l = lp.lp();
    let err = lp
        .block_on(async move { l.sock_recv(&a, 1).await })
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("non-blocking"));
    // sock_sendfile too (asyncio checks it like the others).
    let (a, _b) = UnixStream::pair().unwrap();
    let file = tempfile_with(b"not sent");
    let l = lp.lp();
    let err = lp
        .block_on(async move { l.sock_sendfile(&a, &file, 0, None, true).await })
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("non-blocking"));
}

#[test]
fn sock_sendfile_on_a_blocking_socket_does_not_block_the_loop() {
    let lp = TestLoop::new();
    let data = pattern(16 * 1024 * 1024, 9);
    let file = Rc::new(tempfile_with(&data));
    let (client, server) = tcp_pair();
    client.set_nonblocking(false).unwrap(); // against the spec, on purpose
                                            // The peer reads only after 150 ms: until then the socket is full.
    let reader = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        let mut server = server;
        server.set_nonblocking(false).unwrap();
        let mut all = Vec::new();
        server.read_to_end(&mut all).unwrap();
        all
    });
    let ticks = ringloop_uring_tests::start_ticker(&lp, Duration::from_millis(10));
    let (l, f, t) = (lp.lp(), file.clone(), ticks.clone());
    let (sent, ticks_during) = lp.block_on(async move {
        let n = l.sock_sendfile(&client, &f, 0, None, true).await.unwrap();
        let during = t.get();
        drop(client);
        (n, during)
    });
    assert_eq!(sent, data.len());
    assert!(
        ticks_during >= 5,
        "the loop kept running: {ticks_during} ticks"
    );
    // The socket is closed, but the kernel may hold it until the loop
    // next enters it (io_uring frees a finished request, and with it its
    // reference to the socket, in batches): keep the loop turning until
    // the peer has seen EOF, instead of blocking this thread in `join`.
    for _ in 0..2000 {
        if reader.is_finished() {
            break;
        }
        lp.block_on(lp.lp().sleep(Duration::from_millis(10)).unwrap());
    }
    assert!(reader.is_finished(), "the peer never saw EOF");
    assert!(reader.join().unwrap() == data);
}

/// Runs one loop iteration.
fn iterate(lp: &TestLoop) {
    lp.stop();
    lp.run_forever().unwrap();
}

#[test]
fn a_recv_cancelled_as_its_bytes_arrive_leaves_them_for_the_next() {
    // asyncio: a cancelled sock_recv has taken nothing. The bytes arrive
    // while the receive waits, and the task is cancelled before it runs
    // again: on io_uring a RECV would have taken them in the kernel.
    let lp = TestLoop::new();
    let (a, b) = UnixStream::pair().unwrap();
    b.set_nonblocking(true).unwrap();
    let b = Rc::new(b);
    let (l, b1) = (lp.lp(), b.clone());
    let first = lp
        .create_task(async move { l.sock_recv(&*b1, 100).await })
        .unwrap();
    iterate(&lp);
    (&a).write_all(b"keep me").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    first.cancel();
    iterate(&lp);
    assert!(first.cancelled());
    let mut buf = [0u8; 100];
    assert_eq!(
        (&*b).read(&mut buf).unwrap(),
        7,
        "the bytes are still there"
    );
    assert_eq!(&buf[..7], b"keep me");
}

#[test]
fn an_accept_cancelled_as_its_connection_arrives_leaves_it_queued() {
    let lp = TestLoop::new();
    let server = Rc::new(listener());
    let port = server.local_addr().unwrap().port();
    let (l, s1) = (lp.lp(), server.clone());
    let first = lp
        .create_task(async move { l.sock_accept(&*s1).await.map(|_| ()) })
        .unwrap();
    iterate(&lp);
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    first.cancel();
    iterate(&lp);
    assert!(first.cancelled());
    let (mut accepted, _) = server.accept().expect("the connection is still queued");
    client.write_all(b"hello").unwrap();
    accepted.set_nonblocking(false).unwrap();
    let mut buf = [0u8; 5];
    accepted.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");
}
