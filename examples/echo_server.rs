//! A TCP echo server, in asyncio's two styles: protocol and transport
//! callbacks (`create_server`, the default), or streams with one task per
//! connection (`--streams`, `ringloop::streams::start_server`).
//!
//! ```text
//! cargo run --release --example echo_server -- [--host HOST] [--port PORT] [--backend uring|epoll] [--streams]
//! ```
//!
//! `--host` defaults to 127.0.0.1, `--port` to 0 (any free port). The first
//! line of stdout is `listening on HOST:PORT` with the port actually bound.
//! Every byte a client sends comes back; when the client shuts down its
//! sending side, the server closes the connection once everything is
//! echoed. SIGINT (Ctrl+C) or SIGTERM stops the server: it stops
//! accepting, gives open connections 2 s to end, and exits with status 0.
//! Drive it with `examples/echo_client`:
//!
//! ```text
//! cargo run --release --example echo_client -- --port PORT --size 1024 --count 1000 --connections 10
//! ```

#[path = "common/cli.rs"]
mod cli;
#[path = "common/serve.rs"]
mod serve;

use std::error::Error;
use std::io;

use ringloop::net::{Server, ServerOptions};
use ringloop::streams::{self, StreamError, StreamReader, StreamWriter, DEFAULT_LIMIT};
use ringloop::{BaseProtocol, EventLoop, Protocol, Transport};
use serve::{is_disconnect, Conn};

const USAGE: &str =
    "usage: echo_server [--host HOST] [--port PORT] [--backend uring|epoll] [--streams]";

/// The largest read the streams style asks for at once.
const CHUNK: isize = 64 * 1024;

// ----- protocol style ------------------------------------------------------

/// asyncio's `EchoServerProtocol`: writes back whatever it receives.
#[derive(Default)]
struct Echo {
    conn: Conn,
}

impl BaseProtocol for Echo {
    type Transport = Transport;

    fn connection_made(&mut self, transport: Transport) {
        self.conn.made(transport);
    }

    fn connection_lost(&mut self, error: Option<io::Error>) {
        self.conn.lost(error);
    }

    fn pause_writing(&mut self) {
        self.conn.pause();
    }

    fn resume_writing(&mut self) {
        self.conn.resume();
    }
}

impl Protocol for Echo {
    fn data_received(&mut self, data: &[u8]) {
        if let Some(t) = self.conn.transport() {
            if let Err(e) = t.write(data) {
                eprintln!("write: {e}");
                t.abort();
            }
        }
    }

    /// The client finished sending: close once the echoes are flushed
    /// (returning false asks the transport to close).
    fn eof_received(&mut self) -> bool {
        false
    }
}

// ----- streams style ---------------------------------------------------------

/// Echoes until the client's EOF, then closes the connection.
async fn echo_stream(reader: StreamReader, writer: StreamWriter) {
    if let Err(e) = pump(&reader, &writer).await {
        if !is_disconnect(e.kind()) {
            eprintln!("connection: {e}");
        }
    }
    writer.close();
    let _ = writer.wait_closed().await;
}

async fn pump(reader: &StreamReader, writer: &StreamWriter) -> Result<(), StreamError> {
    loop {
        let data = reader.read(CHUNK).await?;
        if data.is_empty() {
            return Ok(());
        }
        writer.write_bytes(data)?;
        writer.drain().await?;
    }
}

fn start(lp: &EventLoop, cli: &cli::Cli) -> io::Result<Server> {
    let hosts = [cli.host.as_str()];
    let port = Some(cli.port);
    if cli.has("--streams") {
        let start = streams::start_server(
            lp,
            echo_stream,
            &hosts,
            port,
            DEFAULT_LIMIT,
            ServerOptions::default(),
        );
        lp.run_until_complete(start)?
    } else {
        let create = lp.create_server(Echo::default, &hosts, port, ServerOptions::default());
        lp.run_until_complete(create)?
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let cli = cli::parse(USAGE, &[], &["--streams"]);
    if let Some(extra) = cli.positional.first() {
        cli.fail(&format!("unexpected argument {extra:?}"));
    }
    let lp = cli.build_loop()?;
    let server = start(&lp, &cli)?;
    serve::serve_until_signal(&lp, &server)
}
