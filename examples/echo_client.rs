//! An echo client (streams style): opens `--connections` connections to an
//! echo server; on each, sends `--count` messages of `--size` bytes one
//! at a time, reads each echo back and checks it byte for byte; then
//! shuts down its sending side and expects the server to close.
//!
//! ```text
//! cargo run --release --example echo_client -- --port PORT [--host HOST] [--size BYTES] [--count N] [--connections N] [--backend uring|epoll]
//! ```
//!
//! Defaults: host 127.0.0.1, 64-byte messages, 1000 per connection, one
//! connection. Every message has different contents, so an echo that comes
//! back late, twice or from another connection is caught. Prints the
//! round trips, the time and the rate; exits with status 1 if any byte
//! came back wrong or a connection failed.

#[path = "common/cli.rs"]
mod cli;

use std::error::Error;
use std::time::Instant;

use ringloop::streams::{self, DEFAULT_LIMIT};
use ringloop::EventLoop;

const USAGE: &str = "usage: echo_client --port PORT [--host HOST] [--size BYTES] [--count N] \
                     [--connections N] [--backend uring|epoll]";

/// The contents of message `i` on connection `conn` (xorshift bytes).
fn message(conn: usize, i: usize, size: usize) -> Vec<u8> {
    let mut x = ((conn as u64) << 32 | i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// One connection's whole conversation.
async fn converse(
    lp: EventLoop,
    host: String,
    port: u16,
    conn: usize,
    size: usize,
    count: usize,
) -> Result<(), Box<dyn Error>> {
    let limit = DEFAULT_LIMIT.max(size);
    let (reader, writer) =
        streams::open_connection(&lp, Some(&host), Some(port), limit, Default::default()).await?;
    for i in 0..count {
        let sent = message(conn, i, size);
        writer.write(&sent)?;
        writer.drain().await?;
        let got = reader.readexactly(size).await?;
        if got[..] != sent[..] {
            let at = got.iter().zip(&sent).position(|(a, b)| a != b).unwrap_or(0);
            return Err(format!("connection {conn}, message {i}: byte {at} differs").into());
        }
    }
    // Half-close: the server must echo nothing more and close its side.
    writer.write_eof();
    let rest = reader.read(-1).await?;
    if !rest.is_empty() {
        return Err(format!("connection {conn}: {} unexpected bytes", rest.len()).into());
    }
    writer.close();
    writer.wait_closed().await?;
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let cli = cli::parse(USAGE, &["--size", "--count", "--connections"], &[]);
    if cli.port == 0 {
        cli.fail("--port is required");
    }
    let size: usize = cli.get("--size", 64);
    let count: usize = cli.get("--count", 1000);
    let connections: usize = cli.get("--connections", 1);
    if size == 0 || connections == 0 {
        cli.fail("--size and --connections must be at least 1");
    }
    let lp = cli.build_loop()?;
    let backend = lp.backend();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for conn in 0..connections {
        let fut = converse(lp.clone(), cli.host.clone(), cli.port, conn, size, count);
        tasks.push(lp.create_task(fut)?);
    }
    let failures = lp.run_until_complete(async move {
        let mut failures = 0;
        for task in tasks {
            let outcome = match task.await {
                Ok(result) => result,
                Err(e) => Err(e.into()),
            };
            if let Err(e) = outcome {
                eprintln!("echo_client: {e}");
                failures += 1;
            }
        }
        failures
    });
    let elapsed = started.elapsed().as_secs_f64();
    lp.close()?;
    let failures = failures?;
    let trips = connections * count;
    println!(
        "{trips} round trips of {size} bytes on {connections} connection(s) in {elapsed:.3} s \
         ({:.0} round trips/s, backend {}), {}",
        trips as f64 / elapsed.max(1e-9),
        backend,
        if failures == 0 {
            "every byte verified".to_string()
        } else {
            format!("{failures} connection(s) FAILED")
        }
    );
    if failures > 0 {
        std::process::exit(1);
    }
    Ok(())
}
