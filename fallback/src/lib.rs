//! `ringloop-fallback`: the epoll reactor that ringloop runs on where
//! io_uring is missing or forbidden (seccomp, `kernel.io_uring_disabled`,
//! old kernels, a tight `RLIMIT_MEMLOCK`).
//!
//! It knows nothing of io_uring and depends on no ringloop code, in the
//! way `polling` serves `async-io`:
//!
//! - [`Reactor`]: an `epoll` instance with registrations keyed by token
//!   (the descriptor), either armed one-shot ([`Reactor::arm`]) or added
//!   once edge-triggered ([`Reactor::add_edge`]), and a readiness wait
//!   with a timeout;
//! - [`eventfd`]: the counter other threads write to wake a waiting
//!   reactor;
//! - [`Engine`]: performs an operation's non-blocking system call, and
//!   when the call would block, parks the caller's waker until the
//!   descriptor is ready, then lets it try again.
//!
//! A descriptor is watched one of two ways (details in the `engine`
//! module's source docs and [`Engine::register`]):
//!
//! - **unregistered**, the default, for descriptors whose owner may close
//!   them without telling the engine (`sock_*` calls on a user's socket,
//!   `add_reader`): a one-shot interest armed with one `epoll_ctl` each
//!   time a waiter parks, nothing kept once nobody waits, every poll makes
//!   its system call;
//! - **registered** ([`Engine::register`] until [`Engine::deregister`],
//!   which the owner calls before closing the descriptor): added once,
//!   edge-triggered (`EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET`, as mio
//!   does), with the readiness of each direction kept by the engine: set
//!   by an event, cleared when an attempt would block (or, on a byte
//!   stream, when a receive got less than it asked for,
//!   [`Engine::note_drained`]). A poll whose direction is known not to be
//!   ready parks at once, with no system call at all; parking never calls
//!   `epoll_ctl`. Hang-ups and errors (`EPOLLRDHUP`, `EPOLLHUP`,
//!   `EPOLLERR`) set readiness and are remembered, so that an end of file
//!   or error is always seen; readiness is only cleared by evidence, so an
//!   attempt that leaves data unread (a level-triggered watcher's `poll`)
//!   is made again next time. Deregistering (or registering the number
//!   again) forgets everything, so a closed and reused number starts
//!   fresh. An owner that reads such a descriptor for its whole life parks
//!   a *watcher* ([`Engine::poll_io_watching`]): woken at every event and
//!   left parked, so it parks once rather than after every receive.
//!
//! ```
//! use std::os::fd::AsRawFd;
//! use std::os::unix::net::UnixStream;
//! use std::io::Write;
//! use std::task::{Poll, Waker};
//! use ringloop_fallback::{Engine, Interest};
//!
//! let mut engine: Engine = Engine::new()?;
//! let (mut a, b) = UnixStream::pair()?;
//! b.set_nonblocking(true)?;
//! let mut buf = [0u8; 16];
//! let mut attempt = || ringloop_fallback::retry_interrupted(|| {
//!     use std::io::Read;
//!     (&b).read(&mut buf)
//! });
//! // Nothing to read yet: the waker is parked on the descriptor.
//! let waker = Waker::noop();
//! assert!(engine.poll_io(1, b.as_raw_fd(), Interest::READ, waker, &mut attempt).is_pending());
//! a.write_all(b"hi")?;
//! let mut wakers = Vec::new();
//! engine.wait(None, &mut wakers)?;
//! assert_eq!(wakers.len(), 1);
//! assert!(matches!(engine.poll_io(1, b.as_raw_fd(), Interest::READ, waker, &mut attempt), Poll::Ready(Ok(2))));
//! # Ok::<(), std::io::Error>(())
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

mod engine;
pub mod eventfd;
mod reactor;
mod wakeup;

pub use engine::{retry_interrupted, Engine};
pub use reactor::{Event, Interest, Reactor};
pub use wakeup::Wakeup;
