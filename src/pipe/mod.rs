//! Pipe transports: asyncio's `connect_read_pipe` / `connect_write_pipe`
//! and the transports they make ([`ReadPipeTransport`],
//! [`WritePipeTransport`]) with their protocols ([`ReadPipeProtocol`],
//! [`WritePipeProtocol`]).
//!
//! Accepted descriptors: pipes and FIFOs, sockets, character devices
//! (ttys, ptys). A regular file or a directory is `InvalidInput` (the
//! descriptor is closed). The descriptor is set to `O_NONBLOCK` on both
//! backends, as asyncio does (epoll's readiness path needs it; on
//! io_uring it keeps READ/WRITE off the kernel's worker threads, and a
//! descriptor that answers `EAGAIN`, like a tty, is waited for with a
//! POLL_ADD); the mode is restored when the transport closes the
//! descriptor, so a terminal shared through a dup of stdin is left as it
//! was found.
//!
//! Reads go through the READ operation, writes through WRITEV (one
//! `writev` with everything queued per iteration), each with its
//! io_uring and readiness paths in `crate::driver::op`. See
//! `docs/pipes.md` for the semantics and where they differ from asyncio.
//!
//! # Crate-internal hooks (for subprocess transports)
//!
//! Subprocess transports build pipe transports around their own pipes
//! and protocol adapters, without the public factories:
//!
//! - [`fd::PipeFd::new`]`(OwnedFd) -> io::Result<PipeFd>`: checks the
//!   kind, sets `O_NONBLOCK` (restored on drop), closes the descriptor on
//!   error.
//! - [`ReadPipeTransport::start`]`(lp, pipe, Rc<RefCell<dyn
//!   ReadPipeProtocol>>, protocol_name, Option<LostHook>)` and
//!   [`WritePipeTransport::start`] (same shape, `dyn WritePipeProtocol`):
//!   synchronous; schedule `connection_made`, then start the pump. The
//!   protocol may be any adapter (e.g. one forwarding `data_received` to
//!   `pipe_data_received(fd, data)`).
//! - [`connect::scheduled_callbacks_ran`]`(lp).await`: resolves once
//!   the `connection_made` calls scheduled before it have run.
//! - [`LostHook`] = `Box<dyn FnOnce(Option<io::Error>)>`: runs right
//!   after the protocol's `connection_lost` (with a copy of its error),
//!   once the descriptor is closed; it does not run if the loop closes
//!   first. `is_closed()` on either transport tells the same afterwards.
//! - [`sigpipe::ignore_sigpipe`]: write pipes call it; a spawned child
//!   must reset SIGPIPE to the default before `exec` (an ignored signal
//!   stays ignored across `execve`).

mod connect;
mod core;
pub(crate) mod fd;
mod protocol;
mod read;
pub(crate) mod sigpipe;
mod write;

// The hooks subprocess transports use (see above).
#[allow(unused_imports)]
pub(crate) use self::core::LostHook;
#[allow(unused_imports)]
pub(crate) use connect::scheduled_callbacks_ran;
pub use protocol::{ReadPipeProtocol, WritePipeProtocol};
pub use read::ReadPipeTransport;
pub use write::WritePipeTransport;

#[cfg(test)]
mod tests;
