//! A TCP echo server built on the low-level socket operations only:
//! `sock_accept`, `sock_recv` and `sock_sendall` (asyncio's `loop.sock_*`).
//!
//! The main task accepts connections and starts one task per client; each
//! client task sends back whatever it receives until the client closes its
//! side, then closes the connection. An error on one connection is printed
//! to stderr and does not affect the others.
//!
//! ```text
//! cargo run --example sock_echo -- [--host HOST] [--port PORT] [--max-clients N] [--backend uring|epoll]
//! ```
//!
//! `--host` defaults to 127.0.0.1, `--port` to 0 (any free port). The
//! server first prints `listening on HOST:PORT` with the address it got,
//! then runs until killed (Ctrl+C), or with `--max-clients N` until `N`
//! connections have been served. Try it with `nc 127.0.0.1 PORT`, or check
//! it with many concurrent clients:
//!
//! ```text
//! python3 examples/echo_check.py 127.0.0.1 PORT --clients 50
//! ```

use std::error::Error;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use ringloop::EventLoop;

const USAGE: &str =
    "usage: sock_echo [--host HOST] [--port PORT] [--max-clients N] [--backend uring|epoll]";

struct Args {
    host: String,
    port: u16,
    /// Stop after this many connections were served; `None`: run forever.
    max_clients: Option<usize>,
    /// Forced backend; `None`: automatic (or `RINGLOOP_BACKEND`).
    backend: Option<ringloop::Backend>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        host: "127.0.0.1".to_string(),
        port: 0,
        max_clients: None,
        backend: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |e| format!("{flag}: invalid value {value:?} ({e})");
        match flag.as_str() {
            "--host" => args.host = value.clone(),
            "--port" => args.port = value.parse().map_err(bad)?,
            "--max-clients" => args.max_clients = Some(value.parse().map_err(bad)?),
            "--backend" => args.backend = Some(value.parse().map_err(|e| format!("{flag}: {e}"))?),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(args)
}

/// Echoes one connection until the client half-closes it.
async fn echo(lp: &EventLoop, stream: &TcpStream) -> io::Result<()> {
    loop {
        let data = lp.sock_recv(stream, 64 * 1024).await?;
        if data.is_empty() {
            // The client shut down its sending side, and everything it
            // sent has been echoed.
            return Ok(());
        }
        lp.sock_sendall(stream, data).await?;
    }
}

/// Serves one client; the connection is closed when `stream` is dropped.
async fn serve_client(lp: EventLoop, stream: TcpStream, peer: SocketAddr) {
    if let Err(e) = echo(&lp, &stream).await {
        eprintln!("{peer}: {e}");
    }
}

/// Accepts connections and starts one task per client, until
/// `max_clients` were accepted (then waits for them to finish), or forever.
async fn serve(listener: TcpListener, max_clients: Option<usize>) -> ringloop::Result<()> {
    let lp = ringloop::get_running_loop()?;
    let mut clients = Vec::new();
    let mut accepted = 0;
    while max_clients != Some(accepted) {
        match lp.sock_accept(&listener).await {
            Ok((stream, peer)) => {
                accepted += 1;
                let client = lp.create_task(serve_client(lp.clone(), stream, peer))?;
                // Tasks run whether or not anyone keeps them; keep them
                // only to wait for the last ones before exiting.
                if max_clients.is_some() {
                    clients.push(client);
                }
            }
            Err(e) => {
                // E.g. out of file descriptors: wait a little, as asyncio's
                // servers do, instead of spinning on the error.
                eprintln!("accept failed: {e}");
                lp.sleep(Duration::from_millis(100))?.await;
            }
        }
    }
    for client in clients {
        client.await?;
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("sock_echo: {e}\n{USAGE}");
        std::process::exit(2);
    });

    let listener = TcpListener::bind((args.host.as_str(), args.port))?;
    listener.set_nonblocking(true)?;
    println!("listening on {}", listener.local_addr()?);
    io::stdout().flush()?;

    let mut builder = EventLoop::builder();
    if let Some(b) = args.backend {
        builder = builder.backend(b);
    }
    let lp = builder.build()?;
    let served = lp.run_until_complete(serve(listener, args.max_clients));
    lp.close()?;
    served??;
    Ok(())
}
