//! The driver: the one interface every backend implements.
//!
//! The loop talks to its backend only through [`Driver`]. The contract,
//! which every backend must honour (mio's `sys/mod.rs` habit):
//!
//! - **submit**: an operation (see [`op`]) is queued with
//!   [`Driver::submit`] and gets a slot key. Its buffers and descriptors are
//!   owned by the operation until the backend reports its *terminal*
//!   completion; the caller never touches them in between.
//! - **poll**: [`Driver::poll`] sends everything queued to the kernel and
//!   waits at most `timeout` (`None`: until something completes or a
//!   wake-up arrives) in **one** system call; completions mark their slots
//!   done and queue the waiting wakers, which the loop wakes after the
//!   driver borrow ends.
//! - **abandon**: an operation dropped before completion hands its
//!   resources to the driver ([`Driver::abandon`]), which asks the kernel to
//!   cancel it and frees the resources only when the terminal completion
//!   arrives. A produced resource (an accepted fd) is closed then.
//! - **wake-up**: a write to the loop's eventfd (from
//!   [`LoopHandle`](crate::LoopHandle), any thread) ends a wait at once.
//! - **shutdown**: [`Driver::shutdown`] cancels every operation still in
//!   flight, waits (bounded) for their terminal completions, and releases
//!   the backend's descriptors. Nothing hangs, nothing is freed early.
//!
//! The io_uring backend lives in [`uring`]; the epoll backend in [`epoll`]
//! (an adapter over crate `ringloop-fallback`). On epoll nothing is ever in
//! flight in the kernel: an operation is a non-blocking system call tried
//! when its descriptor is ready, so "abandon" just forgets the waiter.

pub(crate) mod epoll;
pub(crate) mod op;
pub(crate) mod uring;
pub(crate) mod wake;

use std::fmt;
use std::io;
use std::time::Duration;

pub(crate) use op::{Abandoned, OpKind};
pub(crate) use wake::{Wake, WakeBy};

/// The kernel interface a loop runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// io_uring: completion-based (proactor).
    Uring,
    /// epoll: readiness-based (reactor), for hosts where io_uring is
    /// unavailable.
    Epoll,
}

impl Backend {
    /// Reads `RINGLOOP_BACKEND` (`uring` or `epoll`); `None` when unset or
    /// empty, an error for any other value.
    pub fn from_env() -> io::Result<Option<Backend>> {
        match std::env::var("RINGLOOP_BACKEND") {
            Ok(v) if v.is_empty() => Ok(None),
            Ok(v) => v.parse().map(Some),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(e) => Err(io::Error::new(io::ErrorKind::InvalidInput, e)),
        }
    }
}

impl std::str::FromStr for Backend {
    type Err = io::Error;
    fn from_str(s: &str) -> io::Result<Backend> {
        match s.trim().to_ascii_lowercase().as_str() {
            "uring" | "io_uring" | "io-uring" => Ok(Backend::Uring),
            "epoll" => Ok(Backend::Epoll),
            other => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unknown backend {other:?}: expected \"uring\" or \"epoll\""),
            )),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Uring => "io_uring",
            Backend::Epoll => "epoll",
        })
    }
}

/// A completed operation's raw result: `res` as the kernel reports it
/// (negative errno on failure), and the CQE's flags (`IORING_CQE_F_MORE`
/// for multishot operations, the buffer id for buffer selection; always 0
/// on epoll).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Completion {
    pub(crate) res: i32,
    pub(crate) flags: u32,
}

impl Completion {
    /// A completion with no flags.
    pub(crate) fn new(res: i32) -> Completion {
        Completion { res, flags: 0 }
    }

    /// The completion a readiness-path system call's result stands for:
    /// the count (clamped), or the negated errno.
    pub(crate) fn from_io(r: io::Result<u32>) -> Completion {
        match r {
            Ok(n) => Completion::new(n.min(i32::MAX as u32) as i32),
            Err(e) => Completion::new(-e.raw_os_error().unwrap_or(libc::EIO)),
        }
    }

    /// A multishot operation's non-terminal completion: more follow.
    pub(crate) fn more(self) -> bool {
        io_uring::cqueue::more(self.flags)
    }

    /// The result as `io::Result`.
    pub(crate) fn result(self) -> io::Result<u32> {
        if self.res < 0 {
            Err(io::Error::from_raw_os_error(-self.res))
        } else {
            Ok(self.res as u32)
        }
    }
}

/// What polling a slot found.
pub(crate) enum SlotPoll {
    Ready(Completion),
    Pending,
}

/// The loop's backend.
// One per loop, created once and never moved: the variants' size
// difference costs nothing, and boxing would add an indirection to every
// operation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Driver {
    Uring(uring::UringDriver),
    Epoll(epoll::EpollDriver),
}

impl Driver {
    /// The kernel features the backend found (io_uring only).
    pub(crate) fn kernel_features(&self) -> Option<&uring::KernelFeatures> {
        match self {
            Driver::Uring(d) => Some(d.features()),
            Driver::Epoll(_) => None,
        }
    }

    pub(crate) fn backend(&self) -> Backend {
        match self {
            Driver::Uring(_) => Backend::Uring,
            Driver::Epoll(_) => Backend::Epoll,
        }
    }

    /// Queues an operation; returns its key.
    pub(crate) fn submit<T: OpKind>(&mut self, op: &mut T) -> io::Result<usize> {
        match self {
            Driver::Uring(d) => d.submit(op),
            Driver::Epoll(d) => d.submit(op),
        }
    }

    /// Queues an operation and, on io_uring, registers `by()` to be woken
    /// when it completes, as a first poll would. Returns its key and
    /// whether that was done: on epoll the operation still needs its first
    /// poll (which tries the system call).
    pub(crate) fn submit_waking<T: OpKind>(
        &mut self,
        op: &mut T,
        by: impl FnOnce() -> Wake,
    ) -> io::Result<(usize, bool)> {
        match self {
            Driver::Uring(d) => d.submit_waking(op, Some(by())).map(|k| (k, true)),
            Driver::Epoll(d) => d.submit(op).map(|k| (k, false)),
        }
    }

    /// Drives an operation: io_uring checks its slot, epoll tries its
    /// system call. Registers whom to wake (`by`) when still pending.
    pub(crate) fn poll_op<T: OpKind>(
        &mut self,
        key: usize,
        op: &mut T,
        by: WakeBy<'_>,
    ) -> SlotPoll {
        match self {
            Driver::Uring(d) => d.poll_slot(key, by),
            Driver::Epoll(d) => d.poll_op(key, op, by),
        }
    }

    /// Queues a multishot operation (io_uring only; `Unsupported` on
    /// epoll, whose callers use the single-shot operation instead). `fd`
    /// is the descriptor it uses; `entry` must point at no memory. A
    /// [`Wake::Deliver`] given as `wake` is woken at every completion
    /// (see `deliver.rs`); without one, the poller registers.
    pub(crate) fn submit_multi(
        &mut self,
        fd: std::os::fd::RawFd,
        entry: io_uring::squeue::Entry,
        wake: Option<Wake>,
    ) -> io::Result<usize> {
        match self {
            Driver::Uring(d) => d.submit_multi(fd, entry, wake),
            Driver::Epoll(_) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "multishot operations need io_uring",
            )),
        }
    }

    /// Takes a multishot operation's next completion; registers `waker`
    /// when none is queued. The flag: nothing else is queued and `waker`
    /// is registered (see `UringDriver::poll_multi`).
    pub(crate) fn poll_multi(&mut self, key: usize, by: WakeBy<'_>) -> (SlotPoll, bool) {
        match self {
            Driver::Uring(d) => d.poll_multi(key, by),
            Driver::Epoll(_) => (SlotPoll::Ready(Completion::new(-libc::EBADF)), false),
        }
    }

    /// The owner of a multishot operation went away: cancel it and pass
    /// every completion still to come (and those queued) to `release`.
    pub(crate) fn abandon_multi(&mut self, key: usize, release: Box<dyn FnMut(Completion)>) {
        if let Driver::Uring(d) = self {
            d.abandon_multi(key, release);
        }
    }

    /// Asks the kernel to end a multishot operation early (its queued
    /// completions still come, the last one `ECANCELED`).
    pub(crate) fn cancel_multi(&mut self, key: usize) {
        if let Driver::Uring(d) = self {
            d.cancel_multi(key);
        }
    }

    /// The loop's provided buffer ring for multishot receives (io_uring
    /// with kernel support only).
    pub(crate) fn buf_ring(&mut self) -> Option<std::rc::Rc<uring::buf_ring::BufRing>> {
        match self {
            Driver::Uring(d) => d.buf_ring(),
            Driver::Epoll(_) => None,
        }
    }

    /// Multishot receive turned out to be missing: stop offering it.
    pub(crate) fn disable_multishot_recv(&mut self) {
        if let Driver::Uring(d) = self {
            d.disable_multishot_recv();
        }
    }

    /// Hands an unfinished operation's resources to the driver; `fd` is
    /// the descriptor it waits on (its `OpKind::readiness`).
    pub(crate) fn abandon(
        &mut self,
        key: usize,
        fd: std::os::fd::RawFd,
        resources: Box<dyn Abandoned>,
    ) {
        match self {
            Driver::Uring(d) => d.abandon(key, resources),
            Driver::Epoll(d) => d.abandon(key, fd, resources),
        }
    }

    /// epoll: a key under which a stream transport's reader keeps
    /// watching its (registered) socket, with
    /// [`poll_watching`](Self::poll_watching) instead of an operation per
    /// receive. `None` on io_uring, where receives are operations.
    pub(crate) fn watch_key(&mut self) -> Option<usize> {
        match self {
            Driver::Uring(_) => None,
            Driver::Epoll(d) => d.watch_key(),
        }
    }

    /// epoll: attempts `op` now, the waiter under `key` (from
    /// [`watch_key`](Self::watch_key)) staying parked whatever the outcome
    /// (see `EpollDriver::poll_watching`, which also says what the flag
    /// means). On io_uring there are no watchers: `ECANCELED`.
    pub(crate) fn poll_watching<T: OpKind>(
        &mut self,
        key: usize,
        op: &mut T,
        by: WakeBy<'_>,
    ) -> (SlotPoll, bool) {
        match self {
            Driver::Uring(_) => (SlotPoll::Ready(Completion::new(-libc::ECANCELED)), false),
            Driver::Epoll(d) => d.poll_watching(key, op, by),
        }
    }

    /// Ends the watch under `key` on `fd` (before `fd` is released).
    pub(crate) fn end_watch(&mut self, key: usize, fd: std::os::fd::RawFd) {
        if let Driver::Epoll(d) = self {
            d.end_watch(key, fd);
        }
    }

    /// `fd`, a byte-stream socket, is owned by a transport that calls
    /// [`release_fd`](Self::release_fd) before closing it: the epoll
    /// backend keeps one edge-triggered registration and its readiness
    /// until then. Nothing on io_uring.
    pub(crate) fn own_fd(&mut self, fd: std::os::fd::RawFd) {
        if let Driver::Epoll(d) = self {
            d.register_fd(fd);
        }
    }

    /// The owner of `fd` is about to close it (see [`own_fd`](Self::own_fd)).
    /// Must come before the close: afterwards the number may name another
    /// file.
    pub(crate) fn release_fd(&mut self, fd: std::os::fd::RawFd) {
        if let Driver::Epoll(d) = self {
            d.deregister_fd(fd);
        }
    }

    /// True if an operation that uses `fd` (not a mere readiness wait) is
    /// in progress.
    pub(crate) fn fd_busy(&self, fd: std::os::fd::RawFd) -> bool {
        match self {
            Driver::Uring(d) => d.fd_busy(fd),
            Driver::Epoll(d) => d.fd_busy(fd),
        }
    }

    /// Submits and waits in one system call; completions are recorded and
    /// their wakers appended to `wakers`.
    ///
    /// `deferrable`: the timeout is zero only because callbacks are
    /// ready (the loop is not stopping), so the readiness check may be
    /// put off by one iteration where it costs a system call (epoll; see
    /// [`EpollDriver::poll`](epoll::EpollDriver::poll)).
    pub(crate) fn poll(
        &mut self,
        timeout: Option<Duration>,
        deferrable: bool,
        wakers: &mut Vec<Wake>,
    ) -> io::Result<()> {
        match self {
            Driver::Uring(d) => d.poll(timeout, wakers),
            Driver::Epoll(d) => d.poll(timeout, deferrable, wakers),
        }
    }

    /// Operations still owned by the kernel (io_uring) or waiting for
    /// readiness (epoll).
    pub(crate) fn in_flight(&self) -> usize {
        match self {
            Driver::Uring(d) => d.in_flight(),
            Driver::Epoll(d) => d.in_flight(),
        }
    }

    /// Cancels everything, waits for terminal completions, releases the
    /// backend's descriptors.
    pub(crate) fn shutdown(&mut self, wakers: &mut Vec<Wake>) {
        match self {
            Driver::Uring(d) => d.shutdown(wakers),
            Driver::Epoll(d) => d.shutdown(),
        }
    }
}
