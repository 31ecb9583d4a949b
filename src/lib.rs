//! # ringloop
//!
//! The asyncio event loop (Python 3.4–3.7's `AbstractEventLoop`), rebuilt
//! in Rust as an io_uring completion runtime for Linux, with an epoll
//! fallback.
//!
//! The loop is single-threaded, like asyncio: [`EventLoop`] is `!Send`,
//! and other threads talk to it through a [`LoopHandle`]. Callbacks
//! ([`EventLoop::call_soon`], [`EventLoop::call_later`],
//! [`EventLoop::call_at`]), futures ([`LoopFuture`]) and tasks ([`Task`])
//! follow asyncio's ordering rules exactly; I/O is submitted to the
//! kernel's submission ring and completes through the completion ring, one
//! `io_uring_enter` per loop iteration.
//!
//! ```
//! use std::os::unix::net::UnixStream;
//!
//! let echoed = ringloop::run(async {
//!     let lp = ringloop::get_running_loop()?;
//!     let (a, b) = UnixStream::pair()?;
//!     lp.sock_sendall(&a, &b"hello"[..]).await?;
//!     let got = lp.sock_recv(&b, 64).await?;
//!     Ok::<_, ringloop::Error>(got)
//! })??;
//! assert_eq!(&echoed[..], b"hello");
//! # Ok::<(), ringloop::Error>(())
//! ```
//!
//! See `docs/asyncio-mapping.md` for every asyncio method and its
//! ringloop form, and `docs/architecture.md` for how the loop works.
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

mod awaited;
mod buf;
mod builder;
mod debug;
mod deliver;
mod driver;
mod error;
mod event_loop;
mod exception;
mod executor;
mod flush;
mod future;
mod handle;
pub mod net;
mod pipe;
mod policy;
pub mod process;
mod protocol;
mod returns;
mod signal;
mod sleep;
pub mod streams;
mod task;
mod threadsafe;
mod timers;
mod transport;
mod watch;

pub use buf::IoBufMut;
pub use builder::{
    EventLoopBuilder, DEFAULT_RECV_BUFFERS, DEFAULT_RECV_BUFFER_SIZE, DEFAULT_RING_ENTRIES,
};
pub use debug::env_debug;
pub use driver::uring::KernelFeatures;
pub use driver::Backend;
pub use error::{Error, Result, SendfileNotAvailable};
pub use event_loop::{get_running_loop, EventLoop};
pub use exception::{default_exception_handler, ErrorContext, ExceptionHandler};
pub use executor::{Executor, ExecutorFuture, Job, ThreadPool};
pub use future::{CallbackId, LoopFuture};
pub use handle::{Handle, TimerHandle};
pub use pipe::{ReadPipeProtocol, ReadPipeTransport, WritePipeProtocol, WritePipeTransport};
pub use policy::{
    get_event_loop, get_event_loop_policy, new_event_loop, run, set_event_loop,
    set_event_loop_policy, DefaultEventLoopPolicy, EventLoopPolicy,
};
pub use process::{SubprocessProtocol, SubprocessTransport};
pub use protocol::{BaseProtocol, DatagramProtocol, Protocol};
pub use sleep::Sleep;
pub use task::{LocalBoxFuture, Task, TaskFactory, TaskHandle};
pub use threadsafe::{LoopHandle, RemoteHandle};
pub use transport::{
    DatagramTransport, ExtraInfo, Transport, DEFAULT_HIGH_WATER, DEFAULT_LOW_WATER,
};

/// The README's example, compiled and run as a doctest so it cannot rot.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
