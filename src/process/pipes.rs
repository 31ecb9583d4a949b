//! The child's pipes: pipe transports whose protocols forward to the
//! subprocess transport (asyncio's `ReadSubprocessPipeProto` and
//! `WriteSubprocessPipeProto`), and [`PipeTransport`], what
//! `get_pipe_transport` returns.

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::rc::Rc;

use super::calls::Call;
use super::transport::ProcInner;
use crate::event_loop::EventLoop;
use crate::pipe::fd::PipeFd;
use crate::pipe::{ReadPipeProtocol, ReadPipeTransport, WritePipeProtocol, WritePipeTransport};
use crate::protocol::BaseProtocol;

/// The transport of one of the child's pipes
/// ([`SubprocessTransport::get_pipe_transport`](super::SubprocessTransport::get_pipe_transport)):
/// a write pipe for stdin (0), a read pipe for stdout (1) and stderr (2).
#[derive(Clone)]
pub enum PipeTransport {
    /// The child's stdout or stderr.
    Read(ReadPipeTransport),
    /// The child's stdin.
    Write(WritePipeTransport),
}

impl PipeTransport {
    /// The read pipe (stdout, stderr), if it is one.
    pub fn as_read(&self) -> Option<&ReadPipeTransport> {
        match self {
            PipeTransport::Read(t) => Some(t),
            PipeTransport::Write(_) => None,
        }
    }

    /// The write pipe (stdin), if it is one.
    pub fn as_write(&self) -> Option<&WritePipeTransport> {
        match self {
            PipeTransport::Write(t) => Some(t),
            PipeTransport::Read(_) => None,
        }
    }

    /// Closes the pipe (a write pipe after its buffer is written).
    pub fn close(&self) {
        match self {
            PipeTransport::Read(t) => t.close(),
            PipeTransport::Write(t) => t.close(),
        }
    }

    /// True once the pipe is closing or closed.
    pub fn is_closing(&self) -> bool {
        match self {
            PipeTransport::Read(t) => t.is_closing(),
            PipeTransport::Write(t) => t.is_closing(),
        }
    }
}

impl fmt::Debug for PipeTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PipeTransport::Read(t) => t.fmt(f),
            PipeTransport::Write(t) => t.fmt(f),
        }
    }
}

/// The protocol of one of the child's pipes: forwards to the subprocess
/// transport. `pipe_connection_lost` is reported by the pipe's lost hook,
/// which runs once the descriptor is closed.
struct Adapter {
    inner: Rc<ProcInner>,
    fd: i32,
    /// The pipe's `connection_lost` ran: it ended normally.
    ended: bool,
}

impl Drop for Adapter {
    fn drop(&mut self) {
        let loop_gone = self.inner.loop_().is_none_or(|lp| lp.is_closed());
        if !self.ended && loop_gone {
            // The loop closed before the pipe ended: release the
            // transport (and its protocol) now, nothing else will.
            self.inner.teardown();
        }
    }
}

/// The read pipes' adapter type (a newtype, so each trait has one
/// `Transport`).
struct ReadAdapter(Adapter);

/// The write pipe's adapter type.
struct WriteAdapter(Adapter);

impl BaseProtocol for ReadAdapter {
    type Transport = ReadPipeTransport;
    fn connection_lost(&mut self, _error: Option<io::Error>) {
        self.0.ended = true;
    }
}

impl ReadPipeProtocol for ReadAdapter {
    fn data_received(&mut self, data: &[u8]) {
        self.0.inner.pipe_data_received(self.0.fd, data);
    }
}

impl BaseProtocol for WriteAdapter {
    type Transport = WritePipeTransport;
    fn connection_lost(&mut self, _error: Option<io::Error>) {
        self.0.ended = true;
    }
    fn pause_writing(&mut self) {
        self.0.inner.calls.call(Call::PauseWriting);
    }
    fn resume_writing(&mut self) {
        self.0.inner.calls.call(Call::ResumeWriting);
    }
}

impl WritePipeProtocol for WriteAdapter {}

/// Wraps the loop's ends of the child's pipes in pipe transports, in
/// asyncio's order (stdin, stdout, stderr). On error the descriptors not
/// yet wrapped are closed; the caller closes the transports made.
pub(crate) fn connect(
    lp: &EventLoop,
    inner: &Rc<ProcInner>,
    pipes: [Option<OwnedFd>; 3],
) -> io::Result<()> {
    for (fd, pipe) in (0i32..).zip(pipes) {
        let Some(pipe) = pipe else {
            continue;
        };
        let pipe = PipeFd::new(pipe)?;
        let adapter = Adapter {
            inner: inner.clone(),
            fd,
            ended: false,
        };
        let hooked = inner.clone();
        let on_lost = Box::new(move |e| hooked.pipe_connection_lost(fd, e));
        let name = inner.calls.protocol_name();
        let transport = if fd == 0 {
            let protocol = Rc::new(RefCell::new(WriteAdapter(adapter)));
            let t = WritePipeTransport::start(lp, pipe, protocol, name, Some(on_lost))?;
            PipeTransport::Write(t)
        } else {
            let protocol = Rc::new(RefCell::new(ReadAdapter(adapter)));
            let t = ReadPipeTransport::start(lp, pipe, protocol, name, Some(on_lost))?;
            PipeTransport::Read(t)
        };
        inner.set_pipe(fd as usize, transport);
    }
    Ok(())
}
