//! Watching for the child's exit without a SIGCHLD handler.
//!
//! One internal task per child waits on the child's pidfd through the
//! loop's driver ([`WaitChild`]: `IORING_OP_WAITID`, or a ring poll then
//! `waitid`; epoll readiness then `waitid` on the fallback), reaps exactly
//! that child, and reports its return code to the transport. Without
//! pidfds (a kernel before 5.3, or a seccomp profile that forbids them)
//! the task polls `waitpid(pid, WNOHANG)` on a timer instead, backing off
//! from 1 ms to 50 ms.
//!
//! If the loop closes while the child runs, the task is dropped: its
//! guard kills the child and reaps it (now, or at a later spawn), and the
//! protocol hears nothing more.

use std::io;
use std::rc::Rc;
use std::time::Duration;

use super::transport::ProcInner;
use crate::driver::op::waitid::WaitChild;
use crate::driver::op::Op;
use crate::event_loop::EventLoop;

/// asyncio's return code for a child someone else reaped (its child
/// watchers log "Unknown child process pid %d, will report returncode
/// 255").
const UNKNOWN_RETURNCODE: i32 = 255;

const POLL_FIRST: Duration = Duration::from_millis(1);
const POLL_MAX: Duration = Duration::from_millis(50);

/// Starts the watcher task of `inner`'s child.
pub(crate) fn start(lp: &EventLoop, inner: &Rc<ProcInner>) -> crate::Result<()> {
    let guard = Guard(Some(inner.clone()));
    let lp2 = lp.clone();
    crate::task::spawn_internal(lp, async move {
        let code = match wait_exit(&lp2, &guard).await {
            Ok(code) => code,
            Err(e) => {
                let pid = guard.inner().child.pid();
                tracing::warn!(
                    target: "ringloop",
                    "Unknown child process pid {pid} ({e}), will report returncode 255"
                );
                UNKNOWN_RETURNCODE
            }
        };
        guard.finish(code);
    })?;
    Ok(())
}

/// Waits for the child's exit and reaps it.
async fn wait_exit(lp: &EventLoop, guard: &Guard) -> io::Result<i32> {
    let inner = guard.inner();
    let Some(pidfd) = inner.child.pidfd() else {
        return poll_exit(lp, inner).await;
    };
    let mut uring_waitid = lp.kernel_features().is_some_and(|f| f.waitid);
    loop {
        let op = Op::submit(
            &lp.driver_ref(),
            WaitChild::new(pidfd.clone(), uring_waitid),
        )?;
        match op.await {
            Ok(code) => return Ok(code),
            // An early wake-up: the child still runs.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            // A kernel whose WAITID op refuses P_PIDFD: poll instead.
            Err(e) if uring_waitid && e.raw_os_error() == Some(libc::EINVAL) => {
                uring_waitid = false;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The fallback without pidfds: `waitpid(pid, WNOHANG)` on a timer.
async fn poll_exit(lp: &EventLoop, inner: &ProcInner) -> io::Result<i32> {
    let mut delay = POLL_FIRST;
    loop {
        if let Some(code) = inner.child.try_reap()? {
            return Ok(code);
        }
        lp.sleep(delay)?.await;
        delay = (delay * 2).min(POLL_MAX);
    }
}

/// Owns the transport for the watcher; if the watcher is dropped before
/// the child exits (the loop closed), tears the transport down.
struct Guard(Option<Rc<ProcInner>>);

impl Guard {
    fn inner(&self) -> &ProcInner {
        self.0
            .as_deref()
            .expect("the guard holds the transport until finish")
    }

    fn finish(mut self, code: i32) {
        if let Some(inner) = self.0.take() {
            inner.process_exited(code);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(inner) = self.0.take() {
            inner.teardown();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::Backend;
    use crate::process::child::Child;

    /// Both io_uring paths (WAITID, and POLL_ADD then waitid) and the
    /// epoll path reap the child and decode its status.
    #[test]
    fn every_wait_path_reaps() {
        for (backend, uring_waitid) in [
            (Backend::Uring, true),
            (Backend::Uring, false),
            (Backend::Epoll, false),
        ] {
            let Ok(lp) = EventLoop::builder().backend(backend).build() else {
                eprintln!("skipped: {backend} unavailable");
                continue;
            };
            if uring_waitid && !lp.kernel_features().is_some_and(|f| f.waitid) {
                eprintln!("skipped: no IORING_OP_WAITID on this kernel");
                continue;
            }
            // Reaped below by the operation under test, not by std.
            #[allow(clippy::zombie_processes)]
            let std_child = std::process::Command::new("sh")
                .args(["-c", "sleep 0.05; exit 9"])
                .spawn()
                .unwrap();
            let child = Child::adopt(std_child.id() as libc::pid_t).unwrap();
            let pidfd = child.pidfd().unwrap();
            let l = lp.clone();
            let code = lp
                .run_until_complete(async move {
                    loop {
                        let op = WaitChild::new(pidfd.clone(), uring_waitid);
                        match Op::submit(&l.driver_ref(), op).unwrap().await {
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                            other => break other,
                        }
                    }
                })
                .unwrap()
                .unwrap();
            assert_eq!(code, 9, "{backend} waitid={uring_waitid}");
            // Reaped: nothing left to wait for.
            child.set_reaped();
            assert!(child.try_reap().is_err());
            lp.close().unwrap();
        }
    }
}
