//! The ringloop echo servers, in three styles, each on a loop forced onto
//! one backend with `EventLoop::builder().backend(...)`:
//!
//! - **protocol** ([`serve_proto`]): `create_server` with [`Echo`], which
//!   writes what `data_received` gets back to its transport;
//! - **streams** ([`serve_streams`]): `start_server`, one callback per
//!   connection with a `StreamReader` and a `StreamWriter`;
//! - **sock** ([`serve_sock`]): a `sock_accept` loop and one task per
//!   connection looping `sock_recv(64 KiB)` → `sock_sendall` (the server
//!   of `examples/sock_echo.rs`).

use std::io;
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::time::Duration;

use ringloop::net::ServerOptions;
use ringloop::streams::{self, StreamError, StreamReader, StreamWriter};
use ringloop::{Backend, BaseProtocol, EventLoop, Protocol, Transport};

use super::{BACKLOG, RECV_BUF};

fn new_loop(backend: Backend) -> io::Result<EventLoop> {
    let lp = EventLoop::builder().backend(backend).build()?;
    if lp.backend() != backend {
        return Err(io::Error::other(format!(
            "asked for a {backend} loop, got {}",
            lp.backend()
        )));
    }
    Ok(lp)
}

/// The echo protocol: every byte received is written back.
#[derive(Default)]
pub struct Echo {
    transport: Option<Transport>,
}

impl BaseProtocol for Echo {
    type Transport = Transport;

    fn connection_made(&mut self, transport: Transport) {
        self.transport = Some(transport);
    }

    fn connection_lost(&mut self, _error: Option<io::Error>) {
        self.transport = None;
    }
}

impl Protocol for Echo {
    fn data_received(&mut self, data: &[u8]) {
        if let Some(t) = &self.transport {
            // Fails only after write_eof(), which an echo never calls.
            let _ = t.write(data);
        }
    }
}

/// The protocol-style server: `create_server(Echo::default, sock=listener)`
/// then `run_forever`.
pub fn serve_proto(backend: Backend, listener: TcpListener) -> io::Result<()> {
    let lp = new_loop(backend)?;
    let options = ServerOptions::default()
        .sock(OwnedFd::from(listener))
        .backlog(BACKLOG);
    let server = lp.run_until_complete(lp.create_server(Echo::default, &[], None, options))??;
    lp.run_forever()?;
    server.close();
    Ok(())
}

/// The streams-style server: `streams::start_server(sock=listener)` with
/// a callback looping `reader.read(64 KiB)` → `writer.write` →
/// `writer.drain()` until end of stream, then `run_forever`.
pub fn serve_streams(backend: Backend, listener: TcpListener) -> io::Result<()> {
    let lp = new_loop(backend)?;
    let options = ServerOptions::default()
        .sock(OwnedFd::from(listener))
        .backlog(BACKLOG);
    let server = lp.run_until_complete(streams::start_server(
        &lp,
        |reader: StreamReader, writer: StreamWriter| async move {
            let echoed = async {
                loop {
                    let data = reader.read(RECV_BUF as isize).await?;
                    if data.is_empty() {
                        return Ok::<(), StreamError>(());
                    }
                    // `read` hands out `Bytes`: queue them without a copy
                    // (what a user holding `Bytes` writes).
                    writer.write_bytes(data)?;
                    writer.drain().await?;
                }
            }
            .await;
            if let Err(e) = echoed {
                if !matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                ) {
                    eprintln!("streams echo: connection: {e}");
                }
            }
        },
        &[],
        None,
        streams::DEFAULT_LIMIT,
        options,
    ))??;
    lp.run_forever()?;
    server.close();
    Ok(())
}

/// The `sock_*` server: a `sock_accept` loop, one task per connection.
pub fn serve_sock(backend: Backend, listener: TcpListener) -> io::Result<()> {
    let lp = new_loop(backend)?;
    lp.create_task(accept_loop(lp.clone(), listener))?;
    lp.run_forever()?;
    Ok(())
}

async fn accept_loop(lp: EventLoop, listener: TcpListener) {
    loop {
        match lp.sock_accept(&listener).await {
            Ok((stream, _peer)) => {
                let _ = stream.set_nodelay(true);
                if let Err(e) = lp.create_task(sock_conn(lp.clone(), stream)) {
                    eprintln!("sock echo: create_task: {e}");
                    return;
                }
            }
            Err(e) => {
                // Out of descriptors, say: back off instead of spinning.
                eprintln!("sock echo: sock_accept: {e}");
                match lp.sleep(Duration::from_millis(100)) {
                    Ok(pause) => pause.await,
                    Err(_) => return,
                }
            }
        }
    }
}

async fn sock_conn(lp: EventLoop, stream: std::net::TcpStream) {
    let echoed = async {
        loop {
            let data = lp.sock_recv(&stream, RECV_BUF).await?;
            if data.is_empty() {
                return Ok::<(), io::Error>(());
            }
            lp.sock_sendall(&stream, data).await?;
        }
    }
    .await;
    if let Err(e) = echoed {
        eprintln!("sock echo: connection: {e}");
    }
}
