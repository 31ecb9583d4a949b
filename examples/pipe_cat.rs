//! `cat` through pipe transports: copies stdin to stdout with
//! `connect_read_pipe` and `connect_write_pipe`.
//!
//! ```text
//! cargo run --example pipe_cat -- [--backend uring|epoll] < some_pipe > other_pipe
//! printf 'hello\n' | cargo run --example pipe_cat
//! ```
//!
//! stdin and stdout must be pipes, FIFOs, sockets or terminals (a
//! regular file is refused, as by asyncio's `connect_read_pipe`; use
//! `cat file | pipe_cat`). Both are duplicated first, so the transports
//! own descriptors of their own.
//!
//! Backpressure: when stdout's transport buffers more than its high-water
//! mark, its protocol pauses reading stdin; when the buffer drains, it
//! resumes. At end of input the write transport is closed, which flushes
//! what is buffered; the program exits 0 once that is done. A failed
//! write (stdout closed early: `pipe_cat | head -1`) ends it with exit
//! code 1 and a message on stderr.

use std::cell::RefCell;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::process::ExitCode;
use std::rc::Rc;

use ringloop::{
    Backend, BaseProtocol, EventLoop, LoopFuture, ReadPipeProtocol, ReadPipeTransport,
    WritePipeProtocol, WritePipeTransport,
};

const USAGE: &str = "usage: pipe_cat [--backend uring|epoll] < INPUT > OUTPUT";

/// Shared between the two protocols: the reading side, and whether the
/// writing side asked to pause.
#[derive(Default)]
struct Flow {
    reader: Option<ReadPipeTransport>,
    paused: bool,
}

/// Reads stdin, writes everything to stdout's transport.
struct Source {
    writer: WritePipeTransport,
    flow: Rc<RefCell<Flow>>,
}

impl BaseProtocol for Source {
    type Transport = ReadPipeTransport;

    fn connection_made(&mut self, reader: ReadPipeTransport) {
        let mut flow = self.flow.borrow_mut();
        if flow.paused {
            reader.pause_reading();
        }
        flow.reader = Some(reader);
    }

    fn connection_lost(&mut self, error: Option<io::Error>) {
        if let Some(e) = error {
            eprintln!("pipe_cat: read error: {e}");
        }
        // Flushes what is buffered, then closes stdout.
        self.writer.close();
        self.flow.borrow_mut().reader = None;
    }
}

impl ReadPipeProtocol for Source {
    fn data_received(&mut self, data: &[u8]) {
        // Fails only after close(), which comes after the last read.
        let _ = self.writer.write(data);
    }
}

/// Watches stdout's transport: pauses and resumes stdin, reports the end.
struct Sink {
    flow: Rc<RefCell<Flow>>,
    done: LoopFuture<Option<String>>,
}

impl BaseProtocol for Sink {
    type Transport = WritePipeTransport;

    fn pause_writing(&mut self) {
        let mut flow = self.flow.borrow_mut();
        flow.paused = true;
        if let Some(r) = &flow.reader {
            r.pause_reading();
        }
    }

    fn resume_writing(&mut self) {
        let mut flow = self.flow.borrow_mut();
        flow.paused = false;
        if let Some(r) = &flow.reader {
            r.resume_reading();
        }
    }

    fn connection_lost(&mut self, error: Option<io::Error>) {
        // Nobody to write to: stop reading too.
        let reader = self.flow.borrow_mut().reader.take();
        if let Some(r) = reader {
            r.close();
        }
        let _ = self
            .done
            .set_result(error.map(|e| format!("write error: {e}")));
    }
}

impl WritePipeProtocol for Sink {}

/// A close-on-exec duplicate of `fd`.
fn dup(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC creates a new descriptor; `fd` is only
    // read.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Copies stdin to stdout until end of input; `Ok(None)` on success,
/// `Ok(Some(message))` when writing failed.
async fn copy(lp: EventLoop) -> io::Result<Option<String>> {
    let flow = Rc::new(RefCell::new(Flow::default()));
    let done = lp.create_future::<Option<String>>();
    let sink = Sink {
        flow: flow.clone(),
        done: done.clone(),
    };
    let (writer, _) = lp.connect_write_pipe(move || sink, dup(1)?).await?;
    let source = Source { writer, flow };
    let stdin = dup(0)?;
    let (_reader, _) = lp.connect_read_pipe(move || source, stdin).await?;
    done.await.map_err(io::Error::from)
}

/// Copies stdin to stdout on a loop built for `backend` (automatic when
/// `None`); returns the exit code.
pub fn pipe_cat(backend: Option<Backend>) -> ExitCode {
    let mut builder = EventLoop::builder();
    if let Some(b) = backend {
        builder = builder.backend(b);
    }
    let lp = match builder.build() {
        Ok(lp) => lp,
        Err(e) => {
            eprintln!("pipe_cat: cannot create the event loop: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = lp.run_until_complete(copy(lp.clone()));
    let _ = lp.close();
    match result {
        Ok(Ok(None)) => ExitCode::SUCCESS,
        Ok(Ok(Some(message))) => {
            eprintln!("pipe_cat: {message}");
            ExitCode::FAILURE
        }
        Ok(Err(e)) if e.kind() == io::ErrorKind::InvalidInput => {
            eprintln!("pipe_cat: {e} (stdin and stdout must be pipes, sockets or terminals)");
            ExitCode::FAILURE
        }
        Ok(Err(e)) => {
            eprintln!("pipe_cat: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("pipe_cat: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let mut backend = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "--backend" => match args.next().map(|v| v.parse::<Backend>()) {
                Some(Ok(b)) => backend = Some(b),
                Some(Err(e)) => {
                    eprintln!("pipe_cat: --backend: {e}\n{USAGE}");
                    return ExitCode::from(2);
                }
                None => {
                    eprintln!("pipe_cat: --backend needs a value\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            other => {
                eprintln!("pipe_cat: unknown option {other}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    pipe_cat(backend)
}
