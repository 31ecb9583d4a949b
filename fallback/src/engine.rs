//! The engine: try an operation's non-blocking system call; when it would
//! block, park the caller's waker on the descriptor until it is ready.
//!
//! Each waiting operation is identified by a caller-chosen key. A waiter
//! is removed when its descriptor reports the readiness it waited for (its
//! waker is handed back to be woken); the operation then tries again and,
//! if it would still block, parks again. Cancelling is removing the
//! waiter: nothing is in flight in the kernel on this backend.

use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;
use std::task::{Poll, Waker};
use std::time::Duration;

use crate::reactor::{Event, Interest, Reactor};

/// Token of the wake-up eventfd's registration.
const WAKE_TOKEN: u64 = u64::MAX;

struct Waiter {
    key: u64,
    interest: Interest,
    waker: Waker,
}

/// Readiness engine over a [`Reactor`].
pub struct Engine {
    reactor: Reactor,
    /// Who waits on each descriptor (usually one or two operations).
    fds: HashMap<RawFd, Vec<Waiter>>,
    /// Waiting key → its descriptor.
    keys: HashMap<u64, RawFd>,
    events: Vec<Event>,
    wake_fd: Option<RawFd>,
}

/// Runs `f` again while it fails with `EINTR`.
pub fn retry_interrupted<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

impl Engine {
    /// A new engine with its own epoll instance.
    pub fn new() -> io::Result<Engine> {
        Ok(Engine {
            reactor: Reactor::new()?,
            fds: HashMap::new(),
            keys: HashMap::new(),
            events: Vec::new(),
            wake_fd: None,
        })
    }

    /// The reactor underneath.
    pub fn reactor(&self) -> &Reactor {
        &self.reactor
    }

    /// Watches `fd`, an eventfd (see [`crate::eventfd`]), so that writing
    /// to it ends a [`wait`](Self::wait); the engine drains it. The caller
    /// keeps it open while the engine lives.
    pub fn set_wake_fd(&mut self, fd: RawFd) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: WAKE_TOKEN,
        };
        // SAFETY: `ev` is valid for the call; level-triggered, not one-shot.
        let rc =
            unsafe { libc::epoll_ctl(self.reactor.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        self.wake_fd = Some(fd);
        Ok(())
    }

    /// Tries `attempt`; on `WouldBlock`, parks `waker` under `key` until
    /// `fd` is ready for `interest` (for an empty interest: until `fd`
    /// fails or hangs up) and returns `Pending`. Any other
    /// outcome is returned as is (and ends the wait of `key`). `EINTR` is
    /// retried.
    pub fn poll_io<T>(
        &mut self,
        key: u64,
        fd: RawFd,
        interest: Interest,
        waker: &Waker,
        attempt: &mut impl FnMut() -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        match retry_interrupted(&mut *attempt) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                match self.park(key, fd, interest, waker) {
                    Ok(()) => Poll::Pending,
                    Err(e) => Poll::Ready(Err(e)),
                }
            }
            other => {
                self.cancel(key);
                Poll::Ready(other)
            }
        }
    }

    /// Parks `waker` under `key` until `fd` is ready for `interest`.
    pub fn park(
        &mut self,
        key: u64,
        fd: RawFd,
        interest: Interest,
        waker: &Waker,
    ) -> io::Result<()> {
        if let Some(old_fd) = self.keys.insert(key, fd) {
            if old_fd != fd {
                self.remove_waiter(old_fd, key);
            }
        }
        let waiters = self.fds.entry(fd).or_default();
        match waiters.iter_mut().find(|w| w.key == key) {
            Some(w) => {
                w.interest = interest;
                if !w.waker.will_wake(waker) {
                    w.waker = waker.clone();
                }
            }
            None => waiters.push(Waiter {
                key,
                interest,
                waker: waker.clone(),
            }),
        }
        let union = waiters
            .iter()
            .fold(Interest::default(), |acc, w| acc.union(w.interest));
        if let Err(e) = self.reactor.arm(fd, fd as u64, union) {
            self.cancel(key);
            return Err(e);
        }
        Ok(())
    }

    fn remove_waiter(&mut self, fd: RawFd, key: u64) {
        if let Some(waiters) = self.fds.get_mut(&fd) {
            waiters.retain(|w| w.key != key);
            if waiters.is_empty() {
                self.fds.remove(&fd);
            }
        }
    }

    /// Ends the wait of `key` (its operation completed or was dropped).
    pub fn cancel(&mut self, key: u64) {
        if let Some(fd) = self.keys.remove(&key) {
            self.remove_waiter(fd, key);
        }
    }

    /// True if some operation waits on `fd`.
    pub fn has_waiters(&self, fd: RawFd) -> bool {
        self.fds.contains_key(&fd)
    }

    /// The keys of the operations waiting on `fd`.
    pub fn waiter_keys(&self, fd: RawFd) -> impl Iterator<Item = u64> + '_ {
        self.fds.get(&fd).into_iter().flatten().map(|w| w.key)
    }

    /// Number of operations waiting for readiness.
    pub fn waiting(&self) -> usize {
        self.keys.len()
    }

    /// Waits at most `timeout` for readiness and appends the wakers of the
    /// operations that may now proceed to `wakers`. Descriptors still
    /// awaited for another direction are re-armed.
    pub fn wait(&mut self, timeout: Option<Duration>, wakers: &mut Vec<Waker>) -> io::Result<()> {
        let mut events = std::mem::take(&mut self.events);
        let waited = self.reactor.wait(timeout, &mut events);
        for ev in events.drain(..) {
            if ev.token == WAKE_TOKEN {
                if let Some(fd) = self.wake_fd {
                    crate::eventfd::drain(fd);
                }
                continue;
            }
            let fd = ev.token as RawFd;
            let Some(waiters) = self.fds.get_mut(&fd) else {
                continue; // nobody waits any more
            };
            let mut i = 0;
            while i < waiters.len() {
                let w = &waiters[i];
                let wanted = (w.interest.read && ev.readable)
                    || (w.interest.write && ev.writable)
                    || (w.interest.is_empty() && ev.failed);
                if wanted {
                    let w = waiters.swap_remove(i);
                    self.keys.remove(&w.key);
                    wakers.push(w.waker);
                } else {
                    i += 1;
                }
            }
            if waiters.is_empty() {
                self.fds.remove(&fd);
            } else {
                let union = waiters
                    .iter()
                    .fold(Interest::default(), |acc, w| acc.union(w.interest));
                if let Err(e) = self.reactor.arm(fd, fd as u64, union) {
                    // The descriptor went away: wake everyone; each will
                    // see the error when it tries again.
                    let _ = e;
                    for w in self.fds.remove(&fd).unwrap_or_default() {
                        self.keys.remove(&w.key);
                        wakers.push(w.waker);
                    }
                }
            }
        }
        self.events = events;
        waited
    }
}
