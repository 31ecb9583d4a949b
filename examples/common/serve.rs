//! The life of the example servers: print `listening on HOST:PORT`, serve
//! until SIGINT or SIGTERM, then shut down cleanly and exit with status 0.

use std::error::Error;
use std::io::Write;
use std::time::Duration;

use ringloop::net::Server;
use ringloop::EventLoop;

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
