//! The protocol behind [`Process`](super::Process): feeds the child's
//! stdout and stderr into [`StreamReader`]s and carries stdin's flow
//! control (asyncio's `SubprocessStreamProtocol`).

use std::io;
use std::rc::Rc;

use super::pipes::PipeTransport;
use super::protocol::SubprocessProtocol;
use super::stdin::ProcessStdin;
use super::transport::SubprocessTransport;
use crate::pipe::ReadPipeTransport;
use crate::protocol::BaseProtocol;
use crate::streams::{copy_io_error, FlowState, ReadFlow, StreamReader};

impl ReadFlow for ReadPipeTransport {
    fn pause_reading(&self) {
        ReadPipeTransport::pause_reading(self)
    }
    fn resume_reading(&self) {
        ReadPipeTransport::resume_reading(self)
    }
}

/// asyncio's `SubprocessStreamProtocol`.
pub(crate) struct SubprocessStreamProtocol {
    limit: usize,
    flow: Rc<FlowState>,
    pub(crate) stdin: Option<ProcessStdin>,
    pub(crate) stdout: Option<StreamReader>,
    pub(crate) stderr: Option<StreamReader>,
    transport: Option<SubprocessTransport>,
    process_exited: bool,
    /// The read pipes not yet closed.
    pipe_fds: Vec<i32>,
    /// stdin's pipe reported its end (with its error, kept for
    /// `wait_closed`).
    stdin_lost: bool,
}

impl SubprocessStreamProtocol {
    pub(crate) fn new(limit: usize) -> SubprocessStreamProtocol {
        SubprocessStreamProtocol {
            limit,
            flow: FlowState::new(),
            stdin: None,
            stdout: None,
            stderr: None,
            transport: None,
            process_exited: false,
            pipe_fds: Vec::new(),
            stdin_lost: false,
        }
    }

    fn reader(&self, fd: i32) -> Option<&StreamReader> {
        match fd {
            1 => self.stdout.as_ref(),
            2 => self.stderr.as_ref(),
            _ => None,
        }
    }

    /// asyncio's `_maybe_close_transport`.
    fn maybe_close_transport(&mut self) {
        if self.pipe_fds.is_empty() && self.process_exited {
            if let Some(t) = self.transport.take() {
                t.close();
            }
        }
    }
}

impl BaseProtocol for SubprocessStreamProtocol {
    type Transport = SubprocessTransport;

    fn connection_made(&mut self, transport: SubprocessTransport) {
        for fd in [1, 2] {
            let Some(PipeTransport::Read(pipe)) = transport.get_pipe_transport(fd) else {
                continue;
            };
            let reader = StreamReader::with_limit(self.limit);
            let _ = reader.inner.set_read_flow(Rc::new(pipe));
            if fd == 1 {
                self.stdout = Some(reader);
            } else {
                self.stderr = Some(reader);
            }
            self.pipe_fds.push(fd);
        }
        if let Some(PipeTransport::Write(pipe)) = transport.get_pipe_transport(0) {
            self.stdin = Some(ProcessStdin::new(pipe, self.flow.clone()));
        }
        self.transport = Some(transport);
    }

    fn connection_lost(&mut self, error: Option<io::Error>) {
        if !self.stdin_lost {
            self.flow.connection_lost(error.as_ref());
        }
        self.transport = None;
    }

    fn pause_writing(&mut self) {
        self.flow.pause_writing();
    }

    fn resume_writing(&mut self) {
        self.flow.resume_writing();
    }
}

impl SubprocessProtocol for SubprocessStreamProtocol {
    fn pipe_data_received(&mut self, fd: i32, data: &[u8]) {
        if let Some(reader) = self.reader(fd) {
            reader.feed_data(data);
        }
    }

    fn pipe_connection_lost(&mut self, fd: i32, error: Option<io::Error>) {
        if fd == 0 {
            if let Some(stdin) = &self.stdin {
                stdin.close();
            }
            self.stdin_lost = true;
            self.flow.connection_lost(error.as_ref());
            return;
        }
        if let Some(reader) = self.reader(fd) {
            match &error {
                None => reader.feed_eof(),
                Some(e) => reader.set_exception(copy_io_error(e)),
            }
        }
        self.pipe_fds.retain(|&f| f != fd);
        self.maybe_close_transport();
    }

    fn process_exited(&mut self) {
        self.process_exited = true;
        self.maybe_close_transport();
    }
}
