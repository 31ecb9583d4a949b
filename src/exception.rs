//! The exception-handler API: what the loop does with errors nobody
//! awaits (panicking callbacks and tasks, failed background work).
//!
//! asyncio passes a dict with well-known keys; ringloop passes an
//! [`ErrorContext`] with those keys as fields.

use std::fmt;
use std::os::fd::RawFd;
use std::panic::Location;
use std::rc::Rc;

use crate::error::Error;
use crate::event_loop::EventLoop;
use crate::task::TaskHandle;

/// The context of an error reported to the exception handler (asyncio's
/// context dict: `message`, `exception`, `handle`, `future`/`task`,
/// `socket`, `source_traceback`, ...).
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct ErrorContext {
    /// What happened (`message`).
    pub message: String,
    /// The error, if any (`exception`).
    pub error: Option<Error>,
    /// The callback that failed, described (`handle`).
    pub handle: Option<String>,
    /// The task that failed (`task` / `future`).
    pub task: Option<TaskHandle>,
    /// The socket involved (`socket`).
    pub socket: Option<RawFd>,
    /// The transport involved (`transport`).
    pub transport: Option<crate::Transport>,
    /// The protocol involved, by type name (`protocol`).
    pub protocol: Option<String>,
    /// Where the failing callback or task was created
    /// (`source_traceback`, always recorded).
    pub location: Option<&'static Location<'static>>,
}

impl ErrorContext {
    /// A context with just a message.
    pub fn new(message: impl Into<String>) -> Self {
        ErrorContext {
            message: message.into(),
            ..Default::default()
        }
    }

    /// Sets the error.
    pub fn with_error(mut self, error: Error) -> Self {
        self.error = Some(error);
        self
    }

    /// Sets the socket.
    pub fn with_socket(mut self, fd: RawFd) -> Self {
        self.socket = Some(fd);
        self
    }
}

impl fmt::Debug for ErrorContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorContext")
            .field("message", &self.message)
            .field("error", &self.error)
            .field("handle", &self.handle)
            .field("task", &self.task)
            .field("socket", &self.socket)
            .field("transport", &self.transport)
            .field("protocol", &self.protocol)
            .field("location", &self.location.map(|l| l.to_string()))
            .finish()
    }
}

impl fmt::Display for ErrorContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(e) = &self.error {
            write!(f, ": {e}")?;
        }
        if let Some(h) = &self.handle {
            write!(f, " (handle: {h})")?;
        }
        if let Some(t) = &self.task {
            write!(f, " (task: {t:?})")?;
        }
        if let Some(fd) = self.socket {
            write!(f, " (socket fd {fd})")?;
        }
        if let Some(p) = &self.protocol {
            write!(f, " (protocol: {p})")?;
        }
        if let Some(l) = self.location {
            write!(f, " (created at {l})")?;
        }
        Ok(())
    }
}

/// A custom exception handler (`loop.set_exception_handler`).
pub type ExceptionHandler = Rc<dyn Fn(&EventLoop, &ErrorContext)>;

/// The default exception handler: logs the context at `error` level with
/// `tracing` (`loop.default_exception_handler`).
pub fn default_exception_handler(context: &ErrorContext) {
    tracing::error!(target: "ringloop", "{context}");
}
