//! Runs a command and streams its output, line by line, with a prefix
//! saying where each line came from; then prints its exit code.
//!
//! Built on `ringloop::process::create_subprocess_exec` (asyncio's
//! `create_subprocess_exec`): stdout and stderr are pipes read by two
//! tasks at once, so neither can fill up and block the child; stdin is
//! inherited. The Python equivalent:
//!
//! ```python
//! async def stream(prefix, reader):
//!     while line := await reader.readline():
//!         print(prefix + line.decode(errors="replace"), end="")
//!
//! async def main(argv):
//!     p = await asyncio.create_subprocess_exec(
//!         *argv, stdout=PIPE, stderr=PIPE)
//!     await asyncio.gather(stream("stdout: ", p.stdout),
//!                          stream("stderr: ", p.stderr))
//!     print("exit code:", await p.wait())
//! ```
//!
//! Run it with, for example:
//!
//! ```text
//! cargo run --example subprocess -- sh -c 'echo out; echo err >&2; exit 3'
//! ```
//!
//! A return code from a signal is negative (`-9` after `kill -9`). The
//! example exits with status 0 when the command ran (whatever its code),
//! 2 on a usage error, 1 if the command could not be started.

use std::io::Write;

use ringloop::process::{self, Stdio, SubprocessOptions};
use ringloop::streams::{StreamReader, DEFAULT_LIMIT};
use ringloop::EventLoop;

/// Prints every line of `reader` with `prefix` until EOF.
async fn stream(prefix: &'static str, reader: StreamReader) -> std::io::Result<()> {
    loop {
        let line = reader.readline().await?;
        if line.is_empty() {
            return Ok(());
        }
        let mut out = std::io::stdout().lock();
        out.write_all(prefix.as_bytes())?;
        out.write_all(&line)?;
        if !line.ends_with(b"\n") {
            out.write_all(b"\n")?;
        }
        out.flush()?;
    }
}

async fn run(lp: EventLoop, argv: Vec<String>) -> Result<i32, Box<dyn std::error::Error>> {
    let options = SubprocessOptions::default()
        .stdout(Stdio::Pipe)
        .stderr(Stdio::Pipe);
    let p =
        process::create_subprocess_exec(&lp, &argv[0], &argv[1..], DEFAULT_LIMIT, options).await?;
    let (Some(stdout), Some(stderr)) = (p.stdout.clone(), p.stderr.clone()) else {
        return Err("stdout and stderr should be pipes".into());
    };
    // Both streams at once, each in its own task.
    let out = lp.create_task(stream("stdout: ", stdout))?;
    let err = lp.create_task(stream("stderr: ", stderr))?;
    out.await??;
    err.await??;
    Ok(p.wait().await)
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.is_empty() {
        eprintln!("usage: subprocess COMMAND [ARG...]");
        std::process::exit(2);
    }
    let result = EventLoop::new().map_err(Into::into).and_then(|lp| {
        let l = lp.clone();
        let code = lp.run_until_complete(run(l, argv));
        let _ = lp.close();
        code.map_err(Into::into).and_then(|r| r)
    });
    match result {
        Ok(code) => println!("exit code: {code}"),
        Err(e) => {
            eprintln!("subprocess: {e}");
            std::process::exit(1);
        }
    }
}
