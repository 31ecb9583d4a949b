//! asyncio's "Set signal handlers for SIGINT and SIGTERM" example, on
//! ringloop.
//!
//! The loop runs forever; SIGINT (Ctrl+C) or SIGTERM runs `ask_exit` on the
//! loop thread, which prints the signal's name and stops the loop; the
//! program then closes the loop and exits with status 0. The Python
//! original:
//!
//! ```python
//! def ask_exit(signame):
//!     print("got signal %s: exit" % signame)
//!     loop.stop()
//!
//! loop = asyncio.get_event_loop()
//! for signame in ('SIGINT', 'SIGTERM'):
//!     loop.add_signal_handler(getattr(signal, signame),
//!                             functools.partial(ask_exit, signame))
//!
//! print("Event loop running forever, press Ctrl+C to interrupt.")
//! print("pid %s: send SIGINT or SIGTERM to exit." % os.getpid())
//! try:
//!     loop.run_forever()
//! finally:
//!     loop.close()
//! ```
//!
//! Run it with, then press Ctrl+C or `kill <pid>` from another terminal:
//!
//! ```text
//! cargo run --example signals
//! ```

use std::io::Write;

use ringloop::EventLoop;

fn ask_exit(signame: &str, lp: &EventLoop) {
    println!("got signal {signame}: exit");
    lp.stop();
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let lp = EventLoop::new()?;
    for (signum, signame) in [(libc::SIGINT, "SIGINT"), (libc::SIGTERM, "SIGTERM")] {
        // The closure carries the handler's arguments, as
        // functools.partial does in Python.
        let l = lp.clone();
        lp.add_signal_handler(signum, move || ask_exit(signame, &l))?;
    }

    println!("Event loop running forever, press Ctrl+C to interrupt.");
    println!(
        "pid {}: send SIGINT or SIGTERM to exit.",
        std::process::id()
    );
    // Whoever reads a pipe sees the lines before sending the signal.
    std::io::stdout().flush()?;

    // Close the loop whether or not it ran cleanly (Python's `finally`);
    // closing removes the handlers and restores the default actions.
    let ran = lp.run_forever();
    lp.close()?;
    ran?;
    Ok(())
}
