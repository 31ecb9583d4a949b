//! asyncio's "Watch a file descriptor for read events" example, on
//! ringloop: a socket pair, `add_reader` on one end, "abc" written to the
//! other; the reader prints `Received: abc`, unregisters itself and stops
//! the loop.
//!
//! ```text
//! cargo run --example watch_fd -- [--backend uring|epoll]
//! ```

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

use ringloop::{Backend, EventLoop};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut builder = EventLoop::builder();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--backend", Some(name)) => builder = builder.backend(name.parse::<Backend>()?),
            _ => {
                return Err(format!("usage: watch_fd [--backend uring|epoll] (got {arg:?})").into())
            }
        }
    }
    let lp = builder.build()?;

    // Create a pair of connected sockets.
    let (mut rsock, mut wsock) = UnixStream::pair()?;
    let fd = rsock.as_raw_fd();

    // Register the read end for read events.
    let l = lp.clone();
    lp.add_reader(&fd, move || {
        let mut buf = [0u8; 100];
        match rsock.read(&mut buf) {
            Ok(n) => println!("Received: {}", String::from_utf8_lossy(&buf[..n])),
            Err(e) => eprintln!("read failed: {e}"),
        }
        // We are done: unregister the descriptor, stop the loop.
        l.remove_reader(&fd);
        l.stop();
    })?;

    // Simulate the reception of data from the network.
    let l = lp.clone();
    lp.call_soon(move || {
        if let Err(e) = wsock.write_all(b"abc") {
            eprintln!("write failed: {e}");
            l.stop();
        }
    })?;

    let ran = lp.run_forever();
    lp.close()?;
    ran?;
    Ok(())
}
