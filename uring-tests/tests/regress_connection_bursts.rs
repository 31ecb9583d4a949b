//! Regression guard: bursts of new connections, each sending one small
//! message at once, must all be echoed, on a loop whose resources are far
//! too small for the burst.
//!
//! Protects the paths a benchmark run stalled on once (21 of 1,000 new
//! streams-style connections never echoed their 64-byte hello): on
//! io_uring a 4-entry submission ring fills on every few operations (the
//! driver hands it to the kernel mid-iteration) and an 8-buffer provided
//! ring runs dry at once (multishot receives end with `ENOBUFS`, a
//! single-shot receive bridges, multishot is armed again). The burst lands
//! while the loop is busy in a callback, so every connection's accept and
//! data are waiting together at the next wait. On epoll the same
//! scenario checks that a burst of accepts and reads loses nobody.
//!
//! Checked by mutation: a reader that forgets a multishot receive ended
//! with `ENOBUFS` fails this test (hundreds of connections reset).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::Duration;

use ringloop::net::ServerOptions;
use ringloop::streams::{self, StreamReader, StreamWriter};
use ringloop::{EventLoop, LoopHandle};
use ringloop_uring_tests::proto::Recorder;
use ringloop_uring_tests::{pattern, TestLoop};

/// New connections per burst.
const BURST: usize = 256;
/// Bursts per test; earlier connections stay open.
const ROUNDS: usize = 4;

/// A loop with a 4-entry submission ring and 8 receive buffers.
fn tiny_loop() -> TestLoop {
    TestLoop::from_loop(
        EventLoop::builder()
            .ring_entries(4)
            .recv_buffers(8, 4096)
            .build()
            .expect("loop"),
    )
}

/// Runs the server `serve` starts on a thread of its own (its port and
/// loop handle are sent back), fires the bursts at it, and checks that
/// every connection's message came back intact.
fn bursts_all_echo(serve: fn(&TestLoop) -> ringloop::net::Server) {
    let (tx, rx) = mpsc::channel::<(u16, LoopHandle)>();
    let server = std::thread::spawn(move || {
        let lp = tiny_loop();
        let srv = serve(&lp);
        let port = srv.addresses()[0].as_socket().expect("inet").port();
        tx.send((port, lp.handle())).expect("send port");
        lp.run_forever().expect("run_forever");
        srv.close();
    });
    let (port, handle) = rx.recv().expect("server started");
    let mut held = Vec::new();
    let mut failures = Vec::new();
    for round in 0..ROUNDS {
        // The loop is busy while the burst arrives.
        handle
            .call_soon_threadsafe(|| std::thread::sleep(Duration::from_millis(300)))
            .expect("call_soon_threadsafe");
        let mut conns = Vec::new();
        for _ in 0..BURST {
            let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            s.set_nodelay(true).expect("nodelay");
            s.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            conns.push(s);
        }
        for (i, s) in conns.iter_mut().enumerate() {
            let seed = (round * BURST + i) as u64;
            s.write_all(&pattern(64, seed)).expect("write");
        }
        for (i, s) in conns.iter_mut().enumerate() {
            let seed = (round * BURST + i) as u64;
            let mut got = [0u8; 64];
            match s.read_exact(&mut got) {
                Ok(()) if got[..] == pattern(64, seed)[..] => {}
                Ok(()) => failures.push(format!("round {round} conn {i}: bytes differ")),
                Err(e) => failures.push(format!("round {round} conn {i}: {e}")),
            }
        }
        held.extend(conns);
    }
    drop(held);
    handle.stop().expect("stop");
    server.join().expect("server thread");
    assert!(
        failures.is_empty(),
        "{} of {} connections not echoed: {:?}",
        failures.len(),
        ROUNDS * BURST,
        &failures[..failures.len().min(5)]
    );
}

fn options() -> ServerOptions {
    // Room for a whole burst in the accept queue.
    ServerOptions::default().backlog(4096)
}

#[test]
fn bursts_of_new_stream_connections_all_echo() {
    bursts_all_echo(|lp| {
        lp.block_on(streams::start_server(
            &lp.lp(),
            |reader: StreamReader, writer: StreamWriter| async move {
                while let Ok(data) = reader.read(65536).await {
                    if data.is_empty()
                        || writer.write_bytes(data).is_err()
                        || writer.drain().await.is_err()
                    {
                        return;
                    }
                }
            },
            &["127.0.0.1"],
            Some(0),
            streams::DEFAULT_LIMIT,
            options(),
        ))
        .expect("start_server")
    });
}

#[test]
fn bursts_of_new_protocol_connections_all_echo() {
    bursts_all_echo(|lp| {
        lp.block_on(lp.create_server(|| Recorder::new(true).0, &["127.0.0.1"], Some(0), options()))
            .expect("create_server")
    });
}
