//! Streams (asyncio's `StreamReader`/`StreamWriter`, `open_connection`,
//! `start_server`): reads, limits, flow control both ways, half close,
//! closing, errors, and the Unix variants, on both backends.

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::rc::Rc;
use std::time::Duration;

use ringloop::streams::{
    self, open_connection, open_unix_connection, start_server, start_unix_server, StreamError,
    StreamReader, StreamWriter, DEFAULT_LIMIT,
};
use ringloop::EventLoop;
use ringloop_uring_tests::proto::wait_until;
use ringloop_uring_tests::{pattern, TestLoop};

/// Opens a stream connection to a plain std listener; returns the pair
/// and the peer's blocking socket (with timeouts, so a broken test
/// fails instead of hanging).
fn connect_to_std(tl: &TestLoop, limit: usize) -> (StreamReader, StreamWriter, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (reader, writer) = tl
        .block_on(open_connection(
            &tl.lp(),
            Some("127.0.0.1"),
            Some(port),
            limit,
            Default::default(),
        ))
        .unwrap();
    let (peer, _) = listener.accept().unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    peer.set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    (reader, writer, peer)
}

/// Server-side pairs handed to the callback, kept for the test.
type Pairs = Rc<RefCell<Vec<(StreamReader, StreamWriter)>>>;

/// A server whose callback only stores each pair (the test drives it).
fn storing_server(tl: &TestLoop, limit: usize) -> (ringloop::net::Server, Pairs, u16) {
    let pairs: Pairs = Rc::default();
    let p = pairs.clone();
    let server = tl
        .block_on(start_server(
            &tl.lp(),
            move |r, w| {
                p.borrow_mut().push((r, w));
                async {}
            },
            &["127.0.0.1"],
            Some(0),
            limit,
            Default::default(),
        ))
        .unwrap();
    let port = server.addresses()[0].as_socket().unwrap().port();
    (server, pairs, port)
}

fn sleep(lp: &EventLoop, ms: u64) -> ringloop::Sleep {
    lp.sleep(Duration::from_millis(ms)).unwrap()
}

fn run_until(tl: &TestLoop, cond: impl FnMut() -> bool + 'static) {
    let lp = tl.lp();
    tl.block_on(async move { wait_until(&lp, cond).await });
}

/// A unique temporary directory, removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("ringloop-streams-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn echo_through_start_server_and_open_connection() {
    let tl = TestLoop::new();
    let lp = tl.lp();
    let served = Rc::new(Cell::new(0u32));
    let s = served.clone();
    let l = lp.clone();
    tl.block_on(async move {
        let server = start_server(
            &l,
            move |reader, writer| {
                let s = s.clone();
                async move {
                    s.set(s.get() + 1);
                    loop {
                        let line = reader.readline().await.unwrap();
                        if line.is_empty() {
                            break;
                        }
                        writer.write(&line).unwrap();
                        writer.drain().await.unwrap();
                    }
                    writer.close();
                }
            },
            &["127.0.0.1"],
            Some(0),
            DEFAULT_LIMIT,
            Default::default(),
        )
        .await
        .unwrap();
        let addr = server.addresses()[0].as_socket().unwrap();

        let (reader, writer) = open_connection(
            &l,
            Some("127.0.0.1"),
            Some(addr.port()),
            DEFAULT_LIMIT,
            Default::default(),
        )
        .await
        .unwrap();
        // get_extra_info names the server's address.
        match writer.get_extra_info("peername") {
            Some(ringloop::ExtraInfo::Address(a)) => assert_eq!(a.as_socket(), Some(addr)),
            other => panic!("peername: {other:?}"),
        }
        assert!(writer.transport().is_reading());

        writer.write(b"one\n").unwrap();
        writer.writelines([&b"two\n"[..], b"thr", b"ee\n"]).unwrap();
        writer.drain().await.unwrap();
        assert_eq!(&reader.readline().await.unwrap()[..], b"one\n");
        assert_eq!(&reader.readline().await.unwrap()[..], b"two\n");
        assert_eq!(&reader.readline().await.unwrap()[..], b"three\n");

        // A large payload, in pieces, comes back whole and in order.
        let big = pattern(1 << 20, 11);
        let mut lines = Vec::new();
        for chunk in big.chunks(1000) {
            let mut line: Vec<u8> = chunk.iter().map(|b| b'a' + b % 26).collect();
            line.push(b'\n');
            lines.extend_from_slice(&line);
        }
        let expected = lines.clone();
        let w = writer.clone();
        let send = l
            .create_task(async move {
                for piece in lines.chunks(7000) {
                    w.write(piece).unwrap();
                    w.drain().await.unwrap();
                }
                w.write_eof();
            })
            .unwrap();
        let echoed = reader.read(-1).await.unwrap();
        send.await.unwrap();
        assert_eq!(echoed.len(), expected.len());
        assert!(echoed == expected, "echo differs");
        assert!(reader.at_eof());

        writer.close();
        assert!(writer.is_closing());
        writer.wait_closed().await.unwrap();
        assert!(writer.transport().is_closed());
        server.close();
        server.wait_closed().await;
    });
    assert_eq!(served.get(), 1);
}

#[test]
fn readline_readuntil_readexactly_and_incomplete_read() {
    let tl = TestLoop::new();
    let (reader, writer, mut peer) = connect_to_std(&tl, DEFAULT_LIMIT);
    peer.write_all(b"line1\nline2\r\nABCDEFtail").unwrap();
    peer.shutdown(Shutdown::Write).unwrap();
    let r = reader.clone();
    tl.block_on(async move {
        assert_eq!(&r.readline().await.unwrap()[..], b"line1\n");
        assert_eq!(&r.readuntil(b"\r\n").await.unwrap()[..], b"line2\r\n");
        assert_eq!(&r.readexactly(3).await.unwrap()[..], b"ABC");
        assert_eq!(&r.readexactly(0).await.unwrap()[..], b"");
        assert!(!r.at_eof());
        match r.readexactly(10).await {
            Err(StreamError::IncompleteRead { partial, expected }) => {
                assert_eq!(&partial[..], b"DEFtail");
                assert_eq!(expected, Some(10));
            }
            other => panic!("expected IncompleteRead, got {other:?}"),
        }
        // The partial bytes were consumed.
        assert!(r.at_eof());
        assert_eq!(&r.readline().await.unwrap()[..], b"");
        assert_eq!(&r.read(100).await.unwrap()[..], b"");
        assert!(matches!(
            r.readuntil(b"").await,
            Err(StreamError::InvalidInput(_))
        ));
    });

    // readuntil at EOF without the separator: IncompleteRead, no count.
    let (reader, _writer2, mut peer2) = connect_to_std(&tl, DEFAULT_LIMIT);
    peer2.write_all(b"no separator here").unwrap();
    peer2.shutdown(Shutdown::Write).unwrap();
    let err = tl
        .block_on(async move { reader.readuntil(b"\r\n").await })
        .unwrap_err();
    assert_eq!(err.partial(), Some(&b"no separator here"[..]));
    assert!(matches!(
        err,
        StreamError::IncompleteRead { expected: None, .. }
    ));
    let io_err: io::Error = err.into();
    assert_eq!(io_err.kind(), io::ErrorKind::UnexpectedEof);
    writer.close();
}

#[test]
fn limit_overrun_keeps_data_for_readuntil_and_discards_for_readline() {
    let tl = TestLoop::new();
    let limit = 8;
    let (reader, writer, mut peer) = connect_to_std(&tl, limit);
    assert_eq!(reader.limit(), limit);
    let long_line = b"0123456789abcdef\n";
    let tail = b"0123456789abcdefghijklmnop"; // no newline
    let mut all = Vec::new();
    all.extend_from_slice(long_line);
    all.extend_from_slice(b"short\n");
    all.extend_from_slice(tail);
    peer.write_all(&all).unwrap();
    peer.shutdown(Shutdown::Write).unwrap();
    let total = all.len();
    let r = reader.clone();
    run_until(&tl, move || r.buffer_len() == total);
    // More than 2 * limit buffered: the transport's reading is paused.
    assert!(!writer.transport().is_reading());

    let r = reader.clone();
    let w = writer.clone();
    tl.block_on(async move {
        // Found beyond the limit: an error, and the data stays.
        match r.readuntil(b"\n").await {
            Err(StreamError::LimitOverrun { consumed, message }) => {
                assert_eq!(consumed, 16);
                assert!(message.contains("Separator is found"), "{message}");
            }
            other => panic!("expected LimitOverrun, got {other:?}"),
        }
        assert_eq!(r.buffer_len(), total);
        // readline drops the overlong line, separator included.
        let err = r.readline().await.unwrap_err();
        assert!(err.is_limit_overrun(), "{err}");
        assert_eq!(r.buffer_len(), total - long_line.len());
        assert_eq!(&r.readline().await.unwrap()[..], b"short\n");
        // Not found within the limit.
        match r.readuntil(b"\n").await {
            Err(StreamError::LimitOverrun { consumed, message }) => {
                assert_eq!(consumed, tail.len());
                assert!(message.contains("not found"), "{message}");
            }
            other => panic!("expected LimitOverrun, got {other:?}"),
        }
        assert_eq!(r.buffer_len(), tail.len());
        // readline discards all of it and resumes reading; then EOF.
        assert!(r.readline().await.unwrap_err().is_limit_overrun());
        assert_eq!(r.buffer_len(), 0);
        assert!(w.transport().is_reading() || w.transport().is_closing());
        assert_eq!(&r.readline().await.unwrap()[..], b"");
        assert!(r.at_eof());
    });
    let io_err: io::Error = StreamError::LimitOverrun {
        consumed: 1,
        message: "m",
    }
    .into();
    assert_eq!(io_err.kind(), io::ErrorKind::InvalidData);
    writer.close();
}

#[test]
fn read_all_until_eof_and_read_sizes() {
    let tl = TestLoop::new();
    let (reader, writer, mut peer) = connect_to_std(&tl, DEFAULT_LIMIT);
    let payload = pattern(3 << 20, 21);
    let p = payload.clone();
    let sender = std::thread::spawn(move || {
        peer.write_all(&p).unwrap();
        peer.shutdown(Shutdown::Write).unwrap();
        peer
    });
    let r = reader.clone();
    let (first, rest) = tl.block_on(async move {
        assert_eq!(&r.read(0).await.unwrap()[..], b"");
        let first = r.read(10).await.unwrap();
        assert!(!first.is_empty() && first.len() <= 10);
        let rest = r.read(-1).await.unwrap();
        (first, rest)
    });
    let _peer = sender.join().unwrap();
    assert_eq!(first.len() + rest.len(), payload.len());
    assert!(first[..] == payload[..first.len()]);
    assert!(rest[..] == payload[first.len()..], "read(-1) data differs");
    assert!(reader.at_eof());
    let r = reader.clone();
    assert!(tl
        .block_on(async move { r.read(-1).await })
        .unwrap()
        .is_empty());
    writer.close();
}

#[test]
fn at_eof_feed_and_exception_semantics() {
    let tl = TestLoop::new();
    let lp = tl.lp();
    let reader = StreamReader::new();
    assert_eq!(reader.limit(), DEFAULT_LIMIT);
    assert!(!reader.at_eof());
    reader.feed_data(b"");
    assert_eq!(reader.buffer_len(), 0);
    reader.feed_data(b"abc");
    reader.feed_eof();
    // EOF fed but data buffered: not at EOF yet.
    assert!(!reader.at_eof());
    let r = reader.clone();
    assert_eq!(
        &tl.block_on(async move { r.read(2).await }).unwrap()[..],
        b"ab"
    );
    assert!(!reader.at_eof());
    let r = reader.clone();
    assert_eq!(
        &tl.block_on(async move { r.read(-1).await }).unwrap()[..],
        b"c"
    );
    assert!(reader.at_eof());
    reader.feed_eof(); // idempotent

    // A read waiting for data is woken by feed_data.
    let reader = StreamReader::new();
    let r = reader.clone();
    let waiting = lp.create_task(async move { r.read(100).await }).unwrap();
    let r = reader.clone();
    let l = lp.clone();
    let got = tl.block_on(async move {
        sleep(&l, 20).await;
        assert!(!waiting.done(), "read returned without data");
        r.feed_data(b"wake");
        waiting.await.unwrap()
    });
    assert_eq!(&got.unwrap()[..], b"wake");

    // set_exception fails the waiting read at once, then every read,
    // even with data buffered.
    let reader = StreamReader::new();
    let r = reader.clone();
    let waiting = lp.create_task(async move { r.readline().await }).unwrap();
    let r = reader.clone();
    let l = lp.clone();
    let res = tl.block_on(async move {
        sleep(&l, 10).await;
        assert!(!waiting.done());
        r.feed_data(b"partial");
        sleep(&l, 10).await;
        assert!(!waiting.done(), "readline returned without a newline");
        r.set_exception(io::Error::new(io::ErrorKind::BrokenPipe, "boom"));
        waiting.await.unwrap()
    });
    match res {
        Err(StreamError::Io(e)) => {
            assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
            assert_eq!(e.to_string(), "boom");
        }
        other => panic!("expected the exception, got {other:?}"),
    }
    assert_eq!(
        reader.exception().unwrap().kind(),
        io::ErrorKind::BrokenPipe
    );
    let r = reader.clone();
    let again = tl.block_on(async move { r.read(1).await });
    assert!(matches!(again, Err(StreamError::Io(ref e)) if e.kind() == io::ErrorKind::BrokenPipe));

    // Data wakes the waiting read, then the exception comes before it
    // runs: the read's next wait fails instead of waiting forever.
    let reader = StreamReader::new();
    let r = reader.clone();
    let waiting = lp
        .create_task(async move { r.readexactly(10).await })
        .unwrap();
    let r = reader.clone();
    let l = lp.clone();
    let res = tl.block_on_within(Duration::from_secs(5), async move {
        sleep(&l, 10).await;
        r.feed_data(b"12345");
        r.set_exception(io::Error::from_raw_os_error(libc::ECONNRESET));
        waiting.await.unwrap()
    });
    match res {
        Err(StreamError::Io(e)) => assert_eq!(e.raw_os_error(), Some(libc::ECONNRESET)),
        other => panic!("expected the exception, got {other:?}"),
    }
}

#[test]
fn concurrent_waiting_reads_are_an_error_and_cancelled_reads_consume_nothing() {
    let tl = TestLoop::new();
    let lp = tl.lp();
    let reader = StreamReader::new();
    let r = reader.clone();
    let first = lp
        .create_task(async move { r.readexactly(10).await })
        .unwrap();
    let r = reader.clone();
    let l = lp.clone();
    tl.block_on(async move {
        sleep(&l, 5).await;
        // A second read that must wait: asyncio's RuntimeError.
        match r.read(5).await {
            Err(StreamError::ConcurrentRead(m)) => assert_eq!(m, "read"),
            other => panic!("expected ConcurrentRead, got {other:?}"),
        }
        r.feed_data(b"12345");
        sleep(&l, 5).await;
        assert!(!first.done());
        // Cancelling the waiting read consumes nothing and frees the
        // waiter slot.
        assert!(first.cancel());
        assert!(matches!(first.await, Err(ringloop::Error::Cancelled)));
        assert_eq!(r.buffer_len(), 5);
        r.feed_data(b"67890");
        assert_eq!(&r.readexactly(10).await.unwrap()[..], b"1234567890");
        // A read served from the buffer never conflicts.
        r.feed_data(b"xy");
        assert_eq!(&r.read(1).await.unwrap()[..], b"x");
    });
}

#[test]
fn a_cancelled_waiting_read_frees_the_waiter_and_consumes_nothing() {
    let tl = TestLoop::new();
    let lp = tl.lp();
    let reader = StreamReader::new();
    let r = reader.clone();
    let waiting = lp.create_task(async move { r.read(5).await }).unwrap();
    let r = reader.clone();
    let l = lp.clone();
    tl.block_on(async move {
        sleep(&l, 5).await;
        assert!(!waiting.done());
        assert!(waiting.cancel());
        assert!(matches!(waiting.await, Err(ringloop::Error::Cancelled)));
        // The slot is free: this read waits instead of failing with
        // ConcurrentRead, and gets the bytes fed after the cancel.
        let r2 = r.clone();
        let second = l.create_task(async move { r2.read(5).await }).unwrap();
        sleep(&l, 5).await;
        assert!(!second.done());
        r.feed_data(b"abcdefg");
        assert_eq!(&second.await.unwrap().unwrap()[..], b"abcde");
        assert_eq!(r.buffer_len(), 2);
        // read(0) is empty at once, whatever is buffered; read(-1) joins
        // the rest up to EOF.
        assert!(r.read(0).await.unwrap().is_empty());
        r.feed_eof();
        assert_eq!(&r.read(-1).await.unwrap()[..], b"fg");
        assert!(r.read(5).await.unwrap().is_empty(), "EOF");
    });
}

#[test]
fn drain_blocks_while_the_peer_does_not_read() {
    let tl = TestLoop::new();
    let lp = tl.lp();
    let (server, pairs, port) = storing_server(&tl, DEFAULT_LIMIT);
    let (reader, writer) = tl
        .block_on(open_connection(
            &lp,
            Some("127.0.0.1"),
            Some(port),
            DEFAULT_LIMIT,
            Default::default(),
        ))
        .unwrap();
    let p = pairs.clone();
    run_until(&tl, move || p.borrow().len() == 1);
    let (peer_reader, peer_writer) = pairs.borrow()[0].clone();

    // Far more than the kernel's socket buffers hold.
    let payload = pattern(32 << 20, 5);
    writer.write(&payload).unwrap();
    let (_low, high) = writer.transport().get_write_buffer_limits();
    assert!(writer.transport().get_write_buffer_size() > high);
    let drained = Rc::new(Cell::new(false));
    let d = drained.clone();
    let w = writer.clone();
    let drain = lp
        .create_task(async move {
            w.drain().await.unwrap();
            d.set(true);
        })
        .unwrap();

    // The peer does not read: drain stays blocked.
    let l = lp.clone();
    tl.block_on(async move { sleep(&l, 300).await });
    assert!(
        !drained.get(),
        "drain returned while the peer was not reading"
    );
    assert!(!drain.done());
    assert!(writer.transport().get_write_buffer_size() > high);
    // ... and the peer's reader paused its transport at 2 * limit.
    assert!(!peer_writer.transport().is_reading());
    assert!(peer_reader.buffer_len() <= 2 * DEFAULT_LIMIT + 64 * 1024);

    // The peer reads everything: drain returns.
    let n = payload.len();
    let pr = peer_reader.clone();
    let got = tl.block_on(async move { pr.readexactly(n).await.unwrap() });
    assert!(got[..] == payload[..], "payload differs");
    let d = drained.clone();
    run_until(&tl, move || d.get());
    tl.block_on(drain).unwrap();
    // Not paused: drain returns at once.
    let w = writer.clone();
    tl.block_on(async move { w.drain().await }).unwrap();

    writer.close();
    tl.block_on(writer.wait_closed()).unwrap();
    // The peer sees EOF; it closes too.
    let pr = peer_reader.clone();
    assert!(tl
        .block_on(async move { pr.read(-1).await })
        .unwrap()
        .is_empty());
    drop((peer_reader, peer_writer, reader));
    pairs.borrow_mut().clear();
    server.close();
    tl.block_on(server.wait_closed());
}

#[test]
fn reader_limit_pauses_transport_reading() {
    let tl = TestLoop::new();
    let lp = tl.lp();
    let (reader, writer, mut peer) = connect_to_std(&tl, DEFAULT_LIMIT);
    let payload = pattern(4 << 20, 8);
    let p = payload.clone();
    let sender = std::thread::spawn(move || {
        peer.write_all(&p).unwrap();
        peer.shutdown(Shutdown::Write).unwrap();
        peer
    });
    // Nobody reads for a while: the buffer must stay bounded.
    let max = Rc::new(Cell::new(0usize));
    let (m, r, l) = (max.clone(), reader.clone(), lp.clone());
    tl.block_on(async move {
        for _ in 0..300 {
            m.set(m.get().max(r.buffer_len()));
            sleep(&l, 1).await;
        }
    });
    let bound = 2 * DEFAULT_LIMIT + 64 * 1024;
    assert!(
        max.get() > 2 * DEFAULT_LIMIT,
        "the reader never filled past 2 * limit ({})",
        max.get()
    );
    assert!(
        max.get() <= bound,
        "buffer grew to {} with limit {DEFAULT_LIMIT}",
        max.get()
    );
    assert!(!writer.transport().is_reading(), "reading not paused");

    // Reading drains the buffer, resumes the transport, and nothing is
    // lost.
    let r = reader.clone();
    let (m, r2) = (max.clone(), reader.clone());
    let got = tl.block_on(async move {
        let mut got = Vec::new();
        loop {
            let chunk = r.read(10_000).await.unwrap();
            if chunk.is_empty() {
                break;
            }
            m.set(m.get().max(r2.buffer_len()));
            got.extend_from_slice(&chunk);
        }
        got
    });
    let _peer = sender.join().unwrap();
    assert!(got == payload, "data lost or reordered");
    assert!(max.get() <= bound, "buffer grew to {}", max.get());
    assert!(reader.at_eof());
    writer.close();
}

#[test]
fn write_eof_half_closes_and_the_server_answers() {
    let tl = TestLoop::new();
    let lp = tl.lp();
    let l = lp.clone();
    tl.block_on(async move {
        let server = start_server(
            &l,
            |reader, writer| async move {
                // Read the whole request (until the client's EOF)...
                let request = reader.read(-1).await.unwrap();
                assert!(reader.at_eof());
                // ... the connection is still open for writing.
                assert!(!writer.is_closing());
                writer.write(b"got ").unwrap();
                writer.write(&request).unwrap();
                writer.drain().await.unwrap();
                writer.close();
            },
            &["127.0.0.1"],
            Some(0),
            DEFAULT_LIMIT,
            Default::default(),
        )
        .await
        .unwrap();
        let port = server.addresses()[0].as_socket().unwrap().port();
        let (reader, writer) = open_connection(
            &l,
            Some("127.0.0.1"),
            Some(port),
            DEFAULT_LIMIT,
            Default::default(),
        )
        .await
        .unwrap();
        assert!(writer.can_write_eof());
        writer.write(b"request").unwrap();
        writer.write_eof();
        assert!(matches!(
            writer.write(b"more"),
            Err(StreamError::InvalidState(_))
        ));
        assert!(!writer.is_closing());
        assert_eq!(&reader.read(-1).await.unwrap()[..], b"got request");
        writer.close();
        writer.wait_closed().await.unwrap();
        server.close();
        server.wait_closed().await;
    });
}

#[test]
fn wait_closed_and_drain_after_the_connection_is_lost() {
    let tl = TestLoop::new();
    let lp = tl.lp();
    let (reader, writer, mut peer) = connect_to_std(&tl, DEFAULT_LIMIT);
    let closed = Rc::new(Cell::new(false));
    let c = closed.clone();
    let w = writer.clone();
    let waiter = lp
        .create_task(async move {
            w.wait_closed().await.unwrap();
            c.set(true);
        })
        .unwrap();
    let l = lp.clone();
    tl.block_on(async move { sleep(&l, 20).await });
    assert!(!closed.get(), "wait_closed returned on an open connection");
    writer.write(b"bye").unwrap();
    writer.close();
    assert!(writer.is_closing());
    tl.block_on(waiter).unwrap();
    assert!(closed.get());
    assert!(writer.transport().is_closed());
    // connection_lost(None) fed EOF to the reader.
    assert!(reader.at_eof());
    // A later wait_closed returns at once; drain reports the loss.
    tl.block_on(writer.wait_closed()).unwrap();
    match tl.block_on(writer.drain()) {
        Err(StreamError::Io(e)) => {
            assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
            assert_eq!(e.to_string(), "Connection lost");
        }
        other => panic!("expected ConnectionReset, got {other:?}"),
    }
    let mut got = Vec::new();
    peer.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"bye");
}

#[test]
fn peer_reset_reaches_reader_drain_and_wait_closed() {
    let tl = TestLoop::new();
    let (reader, writer, peer) = connect_to_std(&tl, DEFAULT_LIMIT);
    socket2::SockRef::from(&peer)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(peer); // RST
    let r = reader.clone();
    let err = tl.block_on(async move { r.read(100).await }).unwrap_err();
    let is_reset = |e: &StreamError| {
        matches!(e, StreamError::Io(e) if matches!(
            e.kind(),
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
        ))
    };
    assert!(is_reset(&err), "{err:?}");
    assert!(reader.exception().is_some());
    let err = tl.block_on(writer.drain()).unwrap_err();
    assert!(is_reset(&err), "{err:?}");
    let err = tl.block_on(writer.wait_closed()).unwrap_err();
    assert!(is_reset(&err), "{err:?}");
    assert!(writer.is_closing());
}

#[test]
fn dropping_the_pair_closes_the_connection() {
    let tl = TestLoop::new();
    let (reader, writer, mut peer) = connect_to_std(&tl, DEFAULT_LIMIT);
    let transport = writer.transport().clone();
    writer.write(b"last words").unwrap();
    let w2 = writer.clone();
    drop(writer);
    drop(reader);
    // A clone still holds it: open.
    let l = tl.lp();
    tl.block_on(async move { sleep(&l, 10).await });
    assert!(!transport.is_closing());
    drop(w2);
    assert!(transport.is_closing());
    let t = transport.clone();
    run_until(&tl, move || t.is_closed());
    let mut got = Vec::new();
    peer.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"last words");

    // A server handler that returns without closing: the client sees EOF.
    let l = tl.lp();
    let got = tl.block_on(async move {
        let server = start_server(
            &l,
            |_reader, writer| async move {
                writer.write(b"hello and goodbye").unwrap();
            },
            &["127.0.0.1"],
            Some(0),
            DEFAULT_LIMIT,
            Default::default(),
        )
        .await
        .unwrap();
        let port = server.addresses()[0].as_socket().unwrap().port();
        let (reader, _writer) = open_connection(
            &l,
            Some("127.0.0.1"),
            Some(port),
            DEFAULT_LIMIT,
            Default::default(),
        )
        .await
        .unwrap();
        let got = reader.read(-1).await.unwrap();
        server.close();
        server.wait_closed().await;
        got
    });
    assert_eq!(&got[..], b"hello and goodbye");
}

#[test]
fn unix_echo_with_a_temporary_path() {
    let tl = TestLoop::new();
    let dir = TempDir::new("unix");
    let path = dir.0.join("echo.sock");
    let (l, p) = (tl.lp(), path.clone());
    tl.block_on(async move {
        let server = start_unix_server(
            &l,
            |reader, writer| async move {
                while let Ok(chunk) = reader.read(4096).await {
                    if chunk.is_empty() {
                        break;
                    }
                    writer.write(&chunk).unwrap();
                    if writer.drain().await.is_err() {
                        break;
                    }
                }
                writer.close();
            },
            Some(&p),
            DEFAULT_LIMIT,
            Default::default(),
        )
        .await
        .unwrap();
        assert!(p.exists());
        let (reader, writer) = open_unix_connection(&l, Some(&p), DEFAULT_LIMIT, None)
            .await
            .unwrap();
        assert!(matches!(
            writer.get_extra_info("peername"),
            Some(ringloop::ExtraInfo::Address(a)) if a.as_pathname() == Some(p.as_path())
        ));
        // Write and read concurrently: with both sides' flow control,
        // writing it all before reading would deadlock (as in asyncio).
        let payload = pattern(600_000, 2);
        let (w, data) = (writer.clone(), payload.clone());
        let send = l
            .create_task(async move {
                w.write(&data).unwrap();
                w.drain().await.unwrap();
            })
            .unwrap();
        let echoed = reader.readexactly(payload.len()).await.unwrap();
        send.await.unwrap();
        assert!(echoed[..] == payload[..], "unix echo differs");
        writer.write(b"end\n").unwrap();
        assert_eq!(&reader.readline().await.unwrap()[..], b"end\n");
        writer.write_eof();
        assert!(reader.read(-1).await.unwrap().is_empty());
        writer.close();
        writer.wait_closed().await.unwrap();
        server.close();
        server.wait_closed().await;
    });
    std::fs::remove_file(&path).unwrap();
    assert!(!path.exists());
    drop(dir);
}

#[test]
fn unix_connection_from_a_socket_and_limit_checks() {
    let tl = TestLoop::new();
    let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
    b.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (reader, writer) = tl
        .block_on(open_unix_connection(
            &tl.lp(),
            None,
            DEFAULT_LIMIT,
            Some(a.into()),
        ))
        .unwrap();
    b.write_all(b"ping\n").unwrap();
    let r = reader.clone();
    assert_eq!(
        &tl.block_on(async move { r.readline().await }).unwrap()[..],
        b"ping\n"
    );
    writer.write(b"pong").unwrap();
    writer.close();
    tl.block_on(writer.wait_closed()).unwrap();
    let mut got = Vec::new();
    b.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"pong");

    // A zero limit is asyncio's ValueError.
    let err = tl
        .block_on(open_connection(
            &tl.lp(),
            Some("127.0.0.1"),
            Some(1),
            0,
            Default::default(),
        ))
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    let err = tl
        .block_on(streams::start_server(
            &tl.lp(),
            |_r, _w| async {},
            &["127.0.0.1"],
            Some(0),
            0,
            Default::default(),
        ))
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    // A refused connection is the connect error.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = tl
        .block_on(open_connection(
            &tl.lp(),
            Some("127.0.0.1"),
            Some(port),
            DEFAULT_LIMIT,
            Default::default(),
        ))
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
}

#[test]
fn stream_error_conversions() {
    let e: ringloop::Error = StreamError::Io(io::Error::from(io::ErrorKind::TimedOut)).into();
    assert_eq!(e.io_kind(), Some(io::ErrorKind::TimedOut));
    let e: ringloop::Error = StreamError::IncompleteRead {
        partial: bytes::Bytes::from_static(b"ab"),
        expected: Some(4),
    }
    .into();
    let inner = std::error::Error::source(&e)
        .and_then(|s| s.downcast_ref::<StreamError>())
        .expect("StreamError inside");
    assert_eq!(inner.partial(), Some(&b"ab"[..]));
    assert_eq!(
        inner.to_string(),
        "2 bytes read on a total of 4 expected bytes"
    );
    let e: io::Error = StreamError::ConcurrentRead("read").into();
    assert!(matches!(
        StreamError::from_io(&e),
        Some(StreamError::ConcurrentRead("read"))
    ));
    let e: StreamError = ringloop::Error::InvalidState("x").into();
    assert!(matches!(e, StreamError::InvalidState("x")));
}

#[test]
fn loop_close_with_pending_stream_tasks_releases_everything() {
    let tl = TestLoop::new();
    let lp = tl.lp();
    let handler_dropped = ringloop_uring_tests::DropFlag::new();
    let server_side: Rc<RefCell<Vec<ringloop::Transport>>> = Rc::default();
    let (flag, seen, accepted) = (
        handler_dropped.clone(),
        server_side.clone(),
        server_side.clone(),
    );
    let l = lp.clone();
    let (server, reader, writer) = lp
        .run_until_complete(async move {
            let server = start_server(
                &l,
                move |reader, writer| {
                    seen.borrow_mut().push(writer.transport().clone());
                    let sentinel = flag.sentinel();
                    async move {
                        let _sentinel = sentinel;
                        // Waits forever: the client never writes.
                        let _ = reader.readline().await;
                        drop(writer);
                    }
                },
                &["127.0.0.1"],
                Some(0),
                DEFAULT_LIMIT,
                Default::default(),
            )
            .await
            .unwrap();
            let port = server.addresses()[0].as_socket().unwrap().port();
            let (reader, writer) = open_connection(
                &l,
                Some("127.0.0.1"),
                Some(port),
                DEFAULT_LIMIT,
                Default::default(),
            )
            .await
            .unwrap();
            wait_until(&l, || !accepted.borrow().is_empty()).await;
            (server, reader, writer)
        })
        .unwrap();
    // A task of the client waits for data too.
    let r = reader.clone();
    let _pending = lp.create_task(async move { r.read(1).await }).unwrap();
    let client_side = writer.transport().clone();
    assert!(!client_side.is_closed());
    lp.close().unwrap();
    // Pending tasks were dropped, and with them the server's pair.
    assert_eq!(handler_dropped.drops(), 1, "handler future not dropped");
    let server_side = server_side.borrow()[0].clone();
    assert!(server_side.is_closed(), "server-side socket not released");
    // Our pair outlives the loop: dropping it must not panic, and its
    // socket is released.
    drop((reader, writer, server));
    assert!(client_side.is_closed(), "client socket not released");
    drop(lp);
    drop(tl); // no error was reported
}

/// Received data reaches the reader without a copy where it can (a
/// lent receive buffer, see `buf_ring.rs`, or a pool buffer on epoll).
/// Whatever a read returned must stay intact however long it is kept,
/// while more data flows through the same receive buffers, and dropping
/// it on another thread must give the buffer back without harm. A tiny
/// ring (8 buffers of 4 KiB, at most 4 lent) makes the connection reuse
/// every buffer many times and run out of lendable ones.
#[test]
fn kept_reads_stay_intact_while_more_data_arrives() {
    let lp = EventLoop::builder().recv_buffers(8, 4096).build().unwrap();
    let tl = TestLoop::from_loop(lp);
    let (reader, writer, mut peer) = connect_to_std(&tl, DEFAULT_LIMIT);
    const TOTAL: usize = 2 << 20;
    let data = pattern(TOTAL, 29);
    let sent = data.clone();
    let feeder = std::thread::spawn(move || {
        // Pieces of various sizes, so deliveries are small and large.
        let mut at = 0;
        let mut n = 0;
        while at < sent.len() {
            let len = [100, 3000, 4096, 9000, 20000][n % 5].min(sent.len() - at);
            peer.write_all(&sent[at..at + len]).unwrap();
            at += len;
            n += 1;
            if n % 16 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        peer
    });
    let (tx, rx) = std::sync::mpsc::channel::<bytes::Bytes>();
    let dropper = std::thread::spawn(move || rx.iter().map(|b| b.len()).sum::<usize>());
    let kept = tl.block_on(async move {
        let mut kept = Vec::new();
        let mut got = 0;
        let mut i = 0;
        while got < TOTAL {
            let piece = reader.read(64 * 1024).await.unwrap();
            assert!(!piece.is_empty(), "early EOF after {got} bytes");
            got += piece.len();
            i += 1;
            // Every third read is dropped on another thread; the rest
            // are kept to the end.
            if i % 3 == 0 {
                tx.send(piece).unwrap();
            } else {
                kept.push((got - piece.len(), piece));
            }
        }
        drop(tx);
        drop(writer);
        kept
    });
    let mut peer = feeder.join().unwrap();
    let dropped = dropper.join().unwrap();
    let mut checked = 0;
    for (at, piece) in &kept {
        assert!(
            piece[..] == data[*at..*at + piece.len()],
            "bytes kept from offset {at} ({} bytes) changed",
            piece.len()
        );
        checked += piece.len();
    }
    assert_eq!(checked + dropped, TOTAL);
    // The writer's drop closed the connection.
    let mut rest = Vec::new();
    peer.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}
