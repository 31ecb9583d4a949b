//! Subprocesses: child processes with pipes to the loop (asyncio's
//! `loop.subprocess_exec` / `loop.subprocess_shell`, `SubprocessTransport`,
//! `SubprocessProtocol`).
//!
//! [`EventLoop::subprocess_exec`](crate::EventLoop::subprocess_exec)
//! starts a program with [`SubprocessOptions`] and gives a
//! [`SubprocessTransport`] and the protocol. The loop watches the child's
//! exit through its pidfd (no SIGCHLD handler) and reaps exactly that
//! child.
//!
//! `docs/subprocess.md` has the design and the mapping from asyncio.

mod calls;
mod child;
mod close_fds;
mod exec;
mod high;
mod options;
mod pipes;
mod protocol;
mod spawn;
mod stdin;
mod stream_protocol;
mod transport;
mod watch;

pub use high::{create_subprocess_exec, create_subprocess_shell, Process};
pub use options::{Stdio, SubprocessOptions};
pub use pipes::PipeTransport;
pub use protocol::SubprocessProtocol;
pub use stdin::ProcessStdin;
pub use transport::SubprocessTransport;
