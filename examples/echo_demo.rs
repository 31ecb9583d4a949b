//! The demonstration: one ringloop serves real TCP traffic on loopback.
//!
//! An echo server (one task per connection, `sock_accept` / `sock_recv` /
//! `sock_sendall`) and `--clients` client tasks share one loop; each client
//! makes `--rounds` round trips of `--size` bytes and checks every byte it
//! gets back. It prints the backend, the round trips per second, and exits
//! non-zero if any byte came back wrong.
//!
//! ```text
//! cargo run --release --example echo_demo -- --clients 100 --rounds 200 --size 1024 [--backend epoll]
//! ```

use std::error::Error;
use std::io::Write;
use std::net::TcpListener;
use std::time::Instant;

use ringloop::EventLoop;
use socket2::{Domain, Socket, Type};

const USAGE: &str =
    "usage: echo_demo [--clients N] [--rounds N] [--size BYTES] [--backend uring|epoll]";

struct Args {
    clients: usize,
    rounds: usize,
    size: usize,
    backend: Option<ringloop::Backend>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        clients: 100,
        rounds: 200,
        size: 1024,
        backend: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        if flag == "--backend" {
            args.backend = Some(value.parse().map_err(|e| format!("{e}"))?);
            continue;
        }
        let n: usize = value
            .parse()
            .map_err(|_| format!("{flag}: {value:?} is not a number"))?;
        match flag.as_str() {
            "--clients" => args.clients = n.max(1),
            "--rounds" => args.rounds = n.max(1),
            "--size" => args.size = n.max(1),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(args)
}

/// Echoes one connection until the peer closes its side.
async fn serve(lp: EventLoop, conn: std::net::TcpStream) -> std::io::Result<()> {
    loop {
        let data = lp.sock_recv(&conn, 64 * 1024).await?;
        if data.is_empty() {
            return Ok(());
        }
        lp.sock_sendall(&conn, data).await?;
    }
}

/// One client: `rounds` round trips of `size` bytes, each checked.
async fn client(
    lp: EventLoop,
    addr: std::net::SocketAddr,
    id: usize,
    args: (usize, usize),
) -> Result<(), String> {
    let (rounds, size) = args;
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).map_err(|e| e.to_string())?;
    sock.set_nonblocking(true).map_err(|e| e.to_string())?;
    lp.sock_connect(&sock, addr)
        .await
        .map_err(|e| e.to_string())?;
    for round in 0..rounds {
        let payload: Vec<u8> = (0..size).map(|i| (i ^ id ^ round) as u8).collect();
        lp.sock_sendall(&sock, payload.clone())
            .await
            .map_err(|e| e.to_string())?;
        let mut got = Vec::with_capacity(size);
        while got.len() < size {
            let chunk = lp
                .sock_recv(&sock, size - got.len())
                .await
                .map_err(|e| e.to_string())?;
            if chunk.is_empty() {
                return Err(format!("client {id}: server closed early"));
            }
            got.extend_from_slice(&chunk);
        }
        if got != payload {
            return Err(format!("client {id}: round {round} came back altered"));
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = parse_args().map_err(|e| format!("{e}\n{USAGE}"))?;
    let lp = match args.backend {
        Some(backend) => EventLoop::builder().backend(backend).build()?,
        None => EventLoop::new()?,
    };
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let mut out = std::io::stdout().lock();
    // An error writing stdout (a closed pipe) is returned, not a panic.
    writeln!(
        out,
        "ringloop {} backend, echo server on {addr}",
        lp.backend()
    )?;

    let server_loop = lp.clone();
    lp.create_task(async move {
        loop {
            match server_loop.sock_accept(&listener).await {
                Ok((conn, _peer)) => {
                    let l = server_loop.clone();
                    let _ = server_loop.create_task(async move {
                        if let Err(e) = serve(l, conn).await {
                            eprintln!("connection error: {e}");
                        }
                    });
                }
                Err(e) => eprintln!("accept error: {e}"),
            }
        }
    })?;

    let started = Instant::now();
    let l = lp.clone();
    let (clients, rounds, size) = (args.clients, args.rounds, args.size);
    let failures = lp.run_until_complete(async move {
        let tasks: Vec<_> = (0..clients)
            .map(|id| l.create_task(client(l.clone(), addr, id, (rounds, size))))
            .collect::<Result<_, _>>()?;
        let mut failures = Vec::new();
        for t in tasks {
            match t.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push(e),
                Err(e) => failures.push(e.to_string()),
            }
        }
        Ok::<_, ringloop::Error>(failures)
    })??;
    let secs = started.elapsed().as_secs_f64();
    lp.close()?;

    let trips = clients * rounds;
    writeln!(
        out,
        "{trips} round trips of {size} B on {clients} connections in {secs:.3} s: {:.0} round trips/s, {:.1} MB/s each way",
        trips as f64 / secs,
        (trips * size) as f64 / secs / 1e6
    )?;
    if failures.is_empty() {
        writeln!(out, "every byte verified")?;
        Ok(())
    } else {
        for f in &failures {
            eprintln!("FAILED: {f}");
        }
        Err(format!("{} of {clients} clients failed", failures.len()).into())
    }
}
