//! Sends a file to every client (asyncio's "File Transferring",
//! `loop.sendfile`): each connecting client receives the whole file named
//! on the command line, then the server closes that connection.
//!
//! ```text
//! cargo run --release --example sendfile_server -- [--host HOST] [--port PORT] [--backend uring|epoll] FILE
//! nc 127.0.0.1 PORT > copy && cmp FILE copy
//! ```
//!
//! `--host` defaults to 127.0.0.1, `--port` to 0 (any free port); the first
//! line of stdout is `listening on HOST:PORT`. The transfer is zero-copy
//! where the kernel allows it (splice through io_uring, `sendfile(2)` on
//! epoll), with the buffered fallback otherwise. Each connection opens the
//! file anew, so transfers may overlap. SIGINT or SIGTERM stops the server
//! (exit status 0).

#[path = "common/cli.rs"]
mod cli;
// `serve::Conn` is for protocols that keep their transport; this one hands
// it to a task.
#[allow(dead_code)]
#[path = "common/serve.rs"]
mod serve;

use std::error::Error;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use ringloop::net::ServerOptions;
use ringloop::{BaseProtocol, Protocol, Transport};

const USAGE: &str =
    "usage: sendfile_server [--host HOST] [--port PORT] [--backend uring|epoll] FILE";

/// Sends the file to one client, then closes the connection.
struct Sender {
    path: Rc<PathBuf>,
}

/// Opens `path`, sends all of it on `transport`, closes the transport;
/// returns the bytes sent.
async fn send(transport: Transport, path: &Path) -> io::Result<usize> {
    let lp = ringloop::get_running_loop()?;
    let file = File::open(path)?;
    let result = lp.sendfile(&transport, &file, 0, None, true).await;
    // Flushes whatever is buffered, then closes.
    transport.close();
    result
}

impl BaseProtocol for Sender {
    type Transport = Transport;

    fn connection_made(&mut self, transport: Transport) {
        let path = self.path.clone();
        let peer = transport.peername().and_then(|a| a.as_socket());
        let task = async move {
            if let Err(e) = send(transport.clone(), &path).await {
                if !serve::is_disconnect(e.kind()) {
                    eprintln!("sending to {peer:?}: {e}");
                }
                transport.abort();
            }
        };
        match ringloop::get_running_loop().and_then(|lp| lp.create_task(task)) {
            Ok(_task) => {} // It runs whether or not anyone keeps it.
            Err(e) => eprintln!("cannot start a transfer: {e}"),
        }
    }
}

impl Protocol for Sender {
    /// Whatever the client sends is ignored.
    fn data_received(&mut self, _data: &[u8]) {}

    /// A client that half-closes still gets the whole file.
    fn eof_received(&mut self) -> bool {
        true
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let cli = cli::parse(USAGE, &[], &[]);
    let path = match cli.positional.as_slice() {
        [path] => PathBuf::from(path),
        [] => cli.fail("the file to send is missing"),
        _ => cli.fail("only one file can be sent"),
    };
    // Refuse a missing, unreadable or non-regular file before listening.
    let meta = File::open(&path)
        .and_then(|f| f.metadata())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{}: not a regular file", path.display()).into());
    }
    let lp = cli.build_loop()?;
    let path = Rc::new(path);
    let create = lp.create_server(
        move || Sender { path: path.clone() },
        &[cli.host.as_str()],
        Some(cli.port),
        ServerOptions::default(),
    );
    let server = lp.run_until_complete(create)??;
    serve::serve_until_signal(&lp, &server)
}
