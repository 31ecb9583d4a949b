//! `EventLoopBuilder`: ring size, backend choice, debug mode.

use std::io;
use std::sync::Once;

use crate::debug;
use crate::driver::epoll::EpollDriver;
use crate::driver::uring::UringDriver;
use crate::driver::{Backend, Driver};
use crate::event_loop::EventLoop;
use crate::threadsafe::Shared;

/// The backend choice is logged once per process (the first loop's).
static LOGGED_CHOICE: Once = Once::new();

/// Default submission-ring size.
pub const DEFAULT_RING_ENTRIES: u32 = 1024;
/// Default number of receive buffers in the io_uring buffer ring.
pub const DEFAULT_RECV_BUFFERS: u16 = 256;
/// Default size of one receive buffer in the io_uring buffer ring.
pub const DEFAULT_RECV_BUFFER_SIZE: usize = 64 * 1024;

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
    recv_buffers: (u16, usize),
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
            recv_buffers: (DEFAULT_RECV_BUFFERS, DEFAULT_RECV_BUFFER_SIZE),
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

    /// The io_uring backend's shared receive buffers: `count` buffers
    /// (a power of two up to 32,768; 0 turns multishot receive off) of
    /// `size` bytes (1 byte to 1 MiB). Default 256 × 64 KiB (64 KiB is what
    /// a single-shot receive asks for; measured against 1,024 × 16 KiB, it
    /// costs fewer callbacks per bulk transfer).
    ///
    /// Stream transports receive with one multishot receive each, into
    /// buffers the kernel takes from this ring only when data arrives, so
    /// an idle connection holds none. A completion carries at most `size`
    /// bytes; when every buffer is in use a transport receives once into
    /// a pooled buffer instead, so a small ring costs speed, never data.
    /// Ignored on epoll.
    ///
    /// ```
    /// let lp = ringloop::EventLoop::builder().recv_buffers(256, 4096).build()?;
    /// # drop(lp);
    /// let err = ringloop::EventLoop::builder().recv_buffers(3, 4096).build().unwrap_err();
    /// assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn recv_buffers(mut self, count: u16, size: usize) -> Self {
        self.recv_buffers = (count, size);
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

    /// Creates the loop. Automatic choice: io_uring when its setup succeeds
    /// and the kernel has the operations ringloop needs, else epoll (the
    /// reason is logged once with `tracing` and kept in
    /// [`EventLoop::backend_reason`]). A forced backend that cannot start
    /// is an error naming the cause, never a silent switch.
    pub fn build(self) -> io::Result<EventLoop> {
        if self.entries == 0 || self.entries > 32768 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("ring_entries must be 1..=32768, got {}", self.entries),
            ));
        }
        let (count, size) = self.recv_buffers;
        if (count != 0 && !count.is_power_of_two()) || count > 32768 || size == 0 || size > 1 << 20
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "recv_buffers: count must be 0 or a power of two up to 32768 and size 1..=1048576, got {count} x {size}"
                ),
            ));
        }
        let (backend, forced_by) = match self.backend {
            Some(b) => (Some(b), "the builder"),
            None => (Backend::from_env()?, "RINGLOOP_BACKEND"),
        };
        let shared = Shared::new()?;
        let wake_fd = shared.wake_fd();
        let (driver, reason) = match backend {
            Some(Backend::Epoll) => (
                Driver::Epoll(EpollDriver::new(wake_fd)?),
                format!("epoll, forced by {forced_by}"),
            ),
            Some(Backend::Uring) => {
                let d =
                    UringDriver::new(self.entries, self.recv_buffers, wake_fd).map_err(|e| {
                        io::Error::new(e.kind(), format!("io_uring forced by {forced_by}: {e}"))
                    })?;
                (Driver::Uring(d), format!("io_uring, forced by {forced_by}"))
            }
            None => match UringDriver::new(self.entries, self.recv_buffers, wake_fd) {
                Ok(d) => (
                    Driver::Uring(d),
                    "io_uring, chosen automatically".to_string(),
                ),
                Err(e) => {
                    let reason = format!("epoll, because io_uring is unavailable: {e}");
                    (Driver::Epoll(EpollDriver::new(wake_fd)?), reason)
                }
            },
        };
        LOGGED_CHOICE.call_once(|| {
            if reason.contains("unavailable") {
                tracing::warn!("ringloop backend: {reason}");
            } else {
                tracing::info!("ringloop backend: {reason}");
            }
        });
        let debug = self.debug.unwrap_or_else(debug::env_debug);
        Ok(EventLoop::from_parts(driver, shared, debug, reason))
    }
}
