//! The life of the example servers: print `listening on HOST:PORT`, serve
//! until SIGINT or SIGTERM, then shut down cleanly and exit with status 0.

use std::error::Error;
use std::io::{self, Write};
use std::time::Duration;

use ringloop::net::Server;
use ringloop::{EventLoop, Transport};

/// How long open connections get to finish after a shutdown signal.
pub const GRACE: Duration = Duration::from_secs(2);

/// Serves `server` on `lp` until SIGINT or SIGTERM.
///
/// The signal handlers are installed before `listening on HOST:PORT` (the
/// real bound address) is printed and flushed as the first line of stdout,
/// so a script that reads that line may signal the server at once. On a
/// signal: the server stops accepting (`Server::close`), open connections
/// get up to [`GRACE`] to end (`Server::wait_closed`; a second signal cuts
/// that short), then the loop is closed, which closes whatever is left.
pub fn serve_until_signal(lp: &EventLoop, server: &Server) -> Result<(), Box<dyn Error>> {
    for (signum, name) in [(libc::SIGINT, "SIGINT"), (libc::SIGTERM, "SIGTERM")] {
        let l = lp.clone();
        lp.add_signal_handler(signum, move || {
            eprintln!("got {name}: shutting down");
            l.stop();
        })?;
    }
    let addr = server
        .addresses()
        .first()
        .and_then(|a| a.as_socket())
        .ok_or("the server has no listening address")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {addr}")?;
    out.flush()?;
    drop(out);

    let ran = lp.run_forever();
    server.close();
    if ran.is_ok() {
        let l = lp.clone();
        let grace = lp.call_later(GRACE, move || l.stop())?;
        match lp.run_until_complete(server.wait_closed()) {
            Ok(()) => grace.cancel(),
            Err(ringloop::Error::StoppedBeforeComplete) => {
                eprintln!("closing the connections still open")
            }
            Err(e) => eprintln!("waiting for the connections: {e}"),
        }
    }
    // Closing removes the signal handlers and releases every descriptor.
    lp.close()?;
    ran?;
    Ok(())
}

/// A peer that went away (reset, broken pipe): normal for a server, not
/// worth a message.
pub fn is_disconnect(kind: io::ErrorKind) -> bool {
    matches!(
        kind,
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
    )
}

/// A server protocol's transport, and what every example protocol does
/// with it in the `BaseProtocol` callbacks.
#[derive(Default)]
pub struct Conn(Option<Transport>);

impl Conn {
    /// `connection_made`: keep the transport.
    pub fn made(&mut self, transport: Transport) {
        self.0 = Some(transport);
    }

    /// `connection_lost`: report an unexpected error and drop the
    /// transport (which breaks the transport-protocol cycle).
    pub fn lost(&mut self, error: Option<io::Error>) {
        if let Some(e) = error.filter(|e| !is_disconnect(e.kind())) {
            eprintln!("connection lost: {e}");
        }
        self.0 = None;
    }

    /// `pause_writing`: stop reading until the peer catches up, so a
    /// client that sends without reading cannot make the server buffer
    /// without bound.
    pub fn pause(&self) {
        if let Some(t) = &self.0 {
            t.pause_reading();
        }
    }

    /// `resume_writing`: read again.
    pub fn resume(&self) {
        if let Some(t) = &self.0 {
            t.resume_reading();
        }
    }

    /// The transport, while connected.
    pub fn transport(&self) -> Option<&Transport> {
        self.0.as_ref()
    }
}
