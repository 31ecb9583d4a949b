//! Receives and accepts that take nothing from the socket until the
//! caller's task runs.
//!
//! asyncio's `sock_recv` and `sock_accept` (selector loop) try the
//! system call, and while it would block, wait for readiness and try
//! again: a call cancelled while it waits has taken nothing, so the next
//! call gets those bytes or that connection. An io_uring `RECV` or
//! `ACCEPT` takes them in the kernel as soon as they arrive, and a task
//! cancelled in the iteration in which its operation completed would
//! drop the bytes (or close the accepted connection). So on io_uring
//! these calls wait with a `POLL_ADD` that consumes nothing, and make the
//! system call themselves, from the task. On epoll the operation already
//! works this way (the engine waits, the attempt runs when polled).

use std::io;

use crate::driver::op::poll::PollOnce;
use crate::driver::op::{DriverRef, Op, OpKind};
use crate::driver::{Backend, Completion};

/// Runs `op` so that it takes from its socket only while the awaiting
/// task runs (see the module docs). `fd` is the socket `op` reads.
pub(crate) async fn take_when_ready<T: OpKind>(
    driver: &DriverRef,
    fd: i32,
    mut op: T,
) -> T::Output {
    if driver.borrow().backend() == Backend::Epoll {
        return match Op::try_submit(driver, op) {
            Ok(op) => op.await,
            Err((e, op)) => op.complete(Completion::from_io(Err(e))),
        };
    }
    loop {
        match ringloop_fallback::retry_interrupted(|| op.attempt()) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            r => return op.complete(Completion::from_io(r)),
        }
        let wait = PollOnce {
            fd,
            mask: libc::POLLIN as u32,
        };
        let ready = match Op::submit(driver, wait) {
            Ok(w) => w.await,
            Err(e) => Err(e),
        };
        if let Err(e) = ready {
            return op.complete(Completion::from_io(Err(e)));
        }
    }
}
