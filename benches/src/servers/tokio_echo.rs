//! The tokio echo server: a `current_thread` runtime with only the I/O
//! driver, an accept loop on `tokio::net::TcpListener`, and one spawned
//! task per connection looping `read` (into a 64 KiB buffer) →
//! `write_all`. The textbook tokio echo, with `TCP_NODELAY` like the
//! others.

use std::io;
use std::net::TcpListener;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::RECV_BUF;

/// Runs the tokio echo server on `listener` until the process ends.
pub fn serve(listener: TcpListener) -> io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        loop {
            match listener.accept().await {
                Ok((mut stream, _peer)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; RECV_BUF];
                        loop {
                            match stream.read(&mut buf).await {
                                Ok(0) => break,
                                Ok(n) => {
                                    if let Err(e) = stream.write_all(&buf[..n]).await {
                                        eprintln!("tokio echo: write: {e}");
                                        break;
                                    }
                                }
                                Err(e) => {
                                    eprintln!("tokio echo: read: {e}");
                                    break;
                                }
                            }
                        }
                    });
                }
                Err(e) => {
                    // Out of descriptors, say: let other tasks run first.
                    eprintln!("tokio echo: accept: {e}");
                    tokio::task::yield_now().await;
                }
            }
        }
    })
}
