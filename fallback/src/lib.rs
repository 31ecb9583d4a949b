//! `ringloop-fallback`: the epoll reactor that ringloop runs on where
//! io_uring is missing or forbidden.
//!
//! It knows nothing of io_uring and depends on no ringloop code, in the
//! way `polling` serves `async-io`. The reactor itself (registrations keyed
//! by token, readiness wait with a timeout, an eventfd waker, and the
//! engine that retries a non-blocking syscall until it completes) lands
//! with the fallback-backend issue; until then this crate only reserves its
//! place in the workspace.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks)]
