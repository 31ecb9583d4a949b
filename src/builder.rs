//! `EventLoopBuilder`: ring size, backend choice, debug mode.

use std::io;

use crate::debug;
use crate::driver::uring::UringDriver;
use crate::driver::{Backend, Driver};
use crate::event_loop::EventLoop;
use crate::threadsafe::Shared;

/// Default submission-ring size.
pub const DEFAULT_RING_ENTRIES: u32 = 1024;

/// Builds an [`EventLoop`] with custom settings.
///
/// # Example
///
/// ```
/// let lp = ringloop::EventLoop::builder().ring_entries(64).debug(true).build()?;
/// assert!(lp.get_debug());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct EventLoopBuilder {
    entries: u32,
    backend: Option<Backend>,
    debug: Option<bool>,
}

impl Default for EventLoopBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl EventLoopBuilder {
    /// Defaults: 1024 ring entries, backend from `RINGLOOP_BACKEND` or
    /// automatic, debug from `RINGLOOP_DEBUG`.
    pub fn new() -> Self {
        EventLoopBuilder {
            entries: DEFAULT_RING_ENTRIES,
            backend: None,
            debug: None,
        }
    }

    /// Submission-ring size (1 to 32768; the kernel rounds up to a power
    /// of two). A full ring is flushed to the kernel, never an error, so
    /// a small ring only costs extra system calls.
    pub fn ring_entries(mut self, entries: u32) -> Self {
        self.entries = entries;
        self
    }

    /// Forces a backend instead of choosing automatically.
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Sets debug mode (default: `RINGLOOP_DEBUG`).
    pub fn debug(mut self, enabled: bool) -> Self {
        self.debug = Some(enabled);
        self
    }

    /// Creates the loop. A forced backend that cannot start is an error
    /// naming the cause, never a silent switch.
    pub fn build(self) -> io::Result<EventLoop> {
        if self.entries == 0 || self.entries > 32768 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("ring_entries must be 1..=32768, got {}", self.entries),
            ));
        }
        let backend = match self.backend {
            Some(b) => Some(b),
            None => Backend::from_env()?,
        };
        let shared = Shared::new()?;
        let driver = match backend {
            Some(Backend::Epoll) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "the epoll backend is not available yet",
                ))
            }
            Some(Backend::Uring) | None => {
                Driver::Uring(UringDriver::new(self.entries, shared.wake_fd())?)
            }
        };
        let debug = self.debug.unwrap_or_else(debug::env_debug);
        Ok(EventLoop::from_parts(driver, shared, debug))
    }
}
