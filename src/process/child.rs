//! One spawned child: its pid, its pidfd, signalling it and reaping it.
//!
//! The loop is the only reaper of its children, and it reaps exactly one
//! child at a time by its pidfd (or, without pidfds, by its pid): never
//! `waitpid(-1)`, so other children of the program are left alone. Until
//! the child is reaped its pid cannot be reused, so signalling it is safe;
//! after, signalling is refused (`ESRCH`), never sent to a recycled pid.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::Mutex;

use crate::driver::op::waitid::{reap_pidfd, returncode};

/// A child process of the loop.
pub(crate) struct Child {
    pid: libc::pid_t,
    /// `None` where the kernel has no `pidfd_open` (or seccomp forbids
    /// it): the child is then watched by polling `waitpid(pid, WNOHANG)`.
    /// Closed once the child is reaped.
    pidfd: RefCell<Option<Rc<OwnedFd>>>,
    /// Set once reaped: the pid may belong to someone else from then on.
    reaped: Cell<bool>,
}

/// `ESRCH`: the process is gone (asyncio's `ProcessLookupError`).
pub(crate) fn no_such_process() -> io::Error {
    io::Error::from_raw_os_error(libc::ESRCH)
}

/// Errors meaning "this kernel (or its seccomp profile) has no pidfds".
fn pidfd_unavailable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOSYS | libc::EPERM | libc::EACCES)
    )
}

impl Child {
    /// Takes charge of the just-spawned child `pid`: opens its pidfd.
    ///
    /// On failure (other than "no pidfds here") the child is killed and
    /// reaped before the error is returned, so nothing is left behind.
    pub(crate) fn adopt(pid: libc::pid_t) -> io::Result<Child> {
        // SAFETY: pidfd_open takes a pid and flags, no memory.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        let pidfd = if fd >= 0 {
            // SAFETY: the kernel just returned this new descriptor
            // (close-on-exec by definition); nothing else owns it.
            Some(Rc::new(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
        } else {
            let e = io::Error::last_os_error();
            if !pidfd_unavailable(&e) {
                // SAFETY: `pid` is our unreaped child: the pid is ours.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                reap_blocking(pid);
                return Err(e);
            }
            None
        };
        reap_orphans();
        Ok(Child {
            pid,
            pidfd: RefCell::new(pidfd),
            reaped: Cell::new(false),
        })
    }

    pub(crate) fn pid(&self) -> libc::pid_t {
        self.pid
    }

    pub(crate) fn pidfd(&self) -> Option<Rc<OwnedFd>> {
        self.pidfd.borrow().clone()
    }

    pub(crate) fn is_reaped(&self) -> bool {
        self.reaped.get()
    }

    /// Records that the child was reaped (by the watcher's operation);
    /// its pidfd is closed.
    pub(crate) fn set_reaped(&self) {
        self.reaped.set(true);
        self.pidfd.borrow_mut().take();
    }

    /// Sends `signum` (`pidfd_send_signal`, or `kill` where pidfds are
    /// missing, which is safe while the child is unreaped). `ESRCH` once
    /// reaped; `EINVAL` for an invalid signal number.
    pub(crate) fn send_signal(&self, signum: i32) -> io::Result<()> {
        if self.reaped.get() {
            return Err(no_such_process());
        }
        let rc = match self.pidfd() {
            Some(fd) => {
                // SAFETY: a valid pidfd, a signal number, no siginfo (the
                // kernel fills it as for kill), no flags.
                unsafe {
                    libc::syscall(
                        libc::SYS_pidfd_send_signal,
                        fd.as_raw_fd(),
                        signum,
                        std::ptr::null::<libc::siginfo_t>(),
                        0,
                    )
                }
            }
            None => {
                // SAFETY: `pid` is our unreaped child, so it is still ours.
                let rc = unsafe { libc::kill(self.pid, signum) };
                libc::c_long::from(rc)
            }
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reaps the child if it has exited: `Ok(Some(returncode))`,
    /// `Ok(None)` while it runs.
    pub(crate) fn try_reap(&self) -> io::Result<Option<i32>> {
        if self.reaped.get() {
            return Err(no_such_process());
        }
        let code = match self.pidfd() {
            Some(fd) => {
                // SAFETY: siginfo_t is plain data; zeroes are valid.
                let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
                match reap_pidfd(fd.as_raw_fd(), &mut info) {
                    Ok(()) => returncode(&info),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                    Err(e) => return Err(e),
                }
            }
            None => match waitpid_nohang(self.pid)? {
                Some(code) => code,
                None => return Ok(None),
            },
        };
        self.set_reaped();
        Ok(Some(code))
    }

    /// The loop is going away with the child still unreaped: kill it and
    /// reap it now if it is already gone, else leave it to
    /// [`reap_orphans`] (run at every later spawn), so it does not stay a
    /// zombie for long and nothing blocks here.
    pub(crate) fn abandon(&self) {
        if self.reaped.get() {
            return;
        }
        let _ = self.send_signal(libc::SIGKILL);
        if let Ok(Some(_)) = self.try_reap() {
            return;
        }
        let orphan = Orphan {
            pid: self.pid,
            // A dup: the watcher's operation may still hold the original.
            // Without one, the pid (still ours: unreaped) does.
            pidfd: self
                .pidfd
                .borrow_mut()
                .take()
                .and_then(|fd| fd.try_clone().ok()),
        };
        self.reaped.set(true);
        ORPHANS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(orphan);
    }
}

/// `waitpid(pid, WNOHANG)` as a return code.
fn waitpid_nohang(pid: libc::pid_t) -> io::Result<Option<i32>> {
    let mut status = 0;
    // SAFETY: `status` is a valid out-pointer; only this pid is waited for.
    let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if rc == 0 {
        return Ok(None);
    }
    Ok(Some(status_to_returncode(status)))
}

/// A `waitpid` status as asyncio's return code.
fn status_to_returncode(status: i32) -> i32 {
    if libc::WIFSIGNALED(status) {
        -libc::WTERMSIG(status)
    } else {
        libc::WEXITSTATUS(status)
    }
}

/// Blocking `waitpid(pid)`, for a child just killed with SIGKILL.
fn reap_blocking(pid: libc::pid_t) {
    let mut status = 0;
    loop {
        // SAFETY: as in `waitpid_nohang`, without WNOHANG.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return;
        }
    }
}

/// A killed child whose loop closed before it could be reaped.
struct Orphan {
    pid: libc::pid_t,
    /// Kept so that the pid cannot be mistaken for a newer process.
    pidfd: Option<OwnedFd>,
}

/// Killed children of closed loops, reaped later (tokio's orphan queue).
static ORPHANS: Mutex<Vec<Orphan>> = Mutex::new(Vec::new());

/// Reaps whatever orphans have finished dying (`waitpid(pid, WNOHANG)`
/// for each of them, never `-1`).
pub(crate) fn reap_orphans() {
    let Ok(mut orphans) = ORPHANS.try_lock() else {
        return;
    };
    orphans.retain(|o| {
        let reaped = match &o.pidfd {
            Some(fd) => {
                // SAFETY: siginfo_t is plain data; zeroes are valid.
                let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
                match reap_pidfd(fd.as_raw_fd(), &mut info) {
                    Err(e) => e.kind() != io::ErrorKind::WouldBlock,
                    Ok(()) => true,
                }
            }
            None => !matches!(waitpid_nohang(o.pid), Ok(None)),
        };
        !reaped
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_conversion() {
        // exit(3) and death by SIGKILL, as waitpid encodes them.
        assert_eq!(status_to_returncode(3 << 8), 3);
        assert_eq!(status_to_returncode(libc::SIGKILL), -libc::SIGKILL);
    }
}
