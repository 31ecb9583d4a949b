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

use crate::driver::op::poll::{PollOnce, PollToUse};
use crate::driver::op::{DriverRef, Op, OpKind};
use crate::driver::{Backend, Completion};

/// Runs `op` so that it takes from its socket only while the awaiting
/// task runs (see the module docs). `fd` is the socket `op` reads;
/// `fail` makes `op`'s output for an error that is not the system
/// call's (the loop is closed), keeping its message.
pub(crate) async fn take_when_ready<T: OpKind>(
    driver: &DriverRef,
    fd: i32,
    mut op: T,
    fail: impl FnOnce(T, io::Error) -> T::Output,
) -> T::Output {
    if driver.borrow().backend() == Backend::Epoll {
        return match Op::try_submit(driver, op) {
            Ok(op) => op.await,
            Err((e, op)) => fail(op, e),
        };
    }
    loop {
        match ringloop_fallback::retry_interrupted(|| op.attempt()) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            r => return op.complete(Completion::from_io(r)),
        }
        let wait = PollToUse(PollOnce {
            fd,
            mask: libc::POLLIN as u32,
        });
        let ready = match Op::submit(driver, wait) {
            Ok(w) => w.await,
            Err(e) => return fail(op, e),
        };
        if let Err(e) = ready {
            return fail(op, e);
        }
    }
}
