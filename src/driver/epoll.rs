//! The epoll backend: an adapter over `ringloop-fallback`'s engine.
//!
//! An operation is attempted (its non-blocking system call,
//! [`OpKind::attempt`]) when first polled; if it would block, its waker is
//! parked on the descriptor ([`OpKind::readiness`]) and the attempt is
//! repeated when the descriptor is ready. Nothing is ever in flight in the
//! kernel, so dropping an operation just forgets its waiter, and shutdown
//! has nothing to wait for. Cross-thread wake-ups arrive on the loop's
//! eventfd, which the engine watches and drains.
//!
//! Descriptors owned by a transport are registered with the engine
//! ([`EpollDriver::register_fd`], released by
//! [`EpollDriver::deregister_fd`] before the transport closes them): one
//! edge-triggered epoll registration for their lifetime, readiness kept
//! by the engine, so that a receive known to find the socket empty is not
//! made and parking costs no `epoll_ctl`. Every other descriptor (the
//! `sock_*` methods, `add_reader`, servers, pipes, pidfds) may be closed
//! by its owner without telling the loop, and is watched one-shot while
//! an operation waits on it.

use std::io;
use std::os::fd::RawFd;
use std::task::Poll;
use std::time::Duration;

use ringloop_fallback::Engine;

use super::{Abandoned, Completion, OpKind, SlotPoll, Wake, WakeBy};

/// The epoll driver.
pub(crate) struct EpollDriver {
    /// `None` once shut down.
    engine: Option<Engine<Wake>>,
    /// Keys are even for operations that use their descriptor, odd for
    /// readiness waits (`OpKind::USES_FD == false`).
    next_key: u64,
    /// The last [`poll`](Self::poll) put off its zero-timeout check: the
    /// next one makes it.
    deferred: bool,
}

fn closed() -> io::Error {
    io::Error::other(crate::Error::LoopClosed)
}

impl EpollDriver {
    /// An epoll instance that also watches the loop's eventfd.
    pub(crate) fn new(wake_fd: RawFd) -> io::Result<EpollDriver> {
        let mut engine = Engine::new()?;
        engine.set_wake_fd(wake_fd)?;
        Ok(EpollDriver {
            engine: Some(engine),
            next_key: 0,
            deferred: false,
        })
    }

    pub(crate) fn submit<T: OpKind>(&mut self, _op: &mut T) -> io::Result<usize> {
        if self.engine.is_none() {
            return Err(closed());
        }
        self.next_key += 2;
        Ok((self.next_key + u64::from(!T::USES_FD)) as usize)
    }

    pub(crate) fn poll_op<T: OpKind>(
        &mut self,
        key: usize,
        op: &mut T,
        by: WakeBy<'_>,
    ) -> SlotPoll {
        self.poll_as(key, op, by, false).0
    }

    /// Attempts `op` (if its descriptor may be ready), parking `by` under
    /// `key` if it would block; `watching`: as a watcher (see
    /// [`poll_watching`](Self::poll_watching)). The flag: `op` emptied
    /// the descriptor (`Engine::note_drained` took effect).
    fn poll_as<T: OpKind>(
        &mut self,
        key: usize,
        op: &mut T,
        by: WakeBy<'_>,
        watching: bool,
    ) -> (SlotPoll, bool) {
        let Some(engine) = self.engine.as_mut() else {
            return (SlotPoll::Ready(Completion::new(-libc::ECANCELED)), false);
        };
        let (fd, interest) = op.readiness();
        // A task of this loop is stored by key; another waker is cloned
        // (the engine keeps an owned handle while the operation waits).
        let wake = by.to_wake();
        let mut attempt = || op.attempt();
        let polled = if watching {
            engine.poll_io_watching(key as u64, fd, interest, &wake, &mut attempt)
        } else {
            engine.poll_io(key as u64, fd, interest, &wake, &mut attempt)
        };
        match polled {
            Poll::Pending => (SlotPoll::Pending, false),
            Poll::Ready(r) => {
                let emptied = r.as_ref().is_ok_and(|&n| op.drained(n)) && engine.note_drained(fd);
                (SlotPoll::Ready(Completion::from_io(r)), emptied)
            }
        }
    }

    /// A key for a watcher ([`poll_watching`](Self::poll_watching)), kept
    /// by its owner for its life; `None` once shut down.
    pub(crate) fn watch_key(&mut self) -> Option<usize> {
        self.engine.as_ref()?;
        self.next_key += 2;
        Some(self.next_key as usize)
    }

    /// [`poll_op`](Self::poll_op) for an owner that keeps watching the
    /// descriptor (a stream transport's reader): `op` is attempted now,
    /// and whatever the outcome the waiter under `key` stays parked
    /// until [`end_watch`](Self::end_watch), woken at every event
    /// (`Engine::poll_io_watching`). `op` lives only for this call: a
    /// receive that would block keeps nothing.
    ///
    /// The flag: `op` emptied the descriptor (`Engine::note_drained` took
    /// effect), so until the next [`poll`](Self::poll) another attempt
    /// would only park.
    pub(crate) fn poll_watching<T: OpKind>(
        &mut self,
        key: usize,
        op: &mut T,
        by: WakeBy<'_>,
    ) -> (SlotPoll, bool) {
        self.poll_as(key, op, by, true)
    }

    /// Ends the watch under `key` on `fd`.
    pub(crate) fn end_watch(&mut self, key: usize, fd: RawFd) {
        if let Some(engine) = self.engine.as_mut() {
            engine.cancel(key as u64, fd);
        }
    }

    pub(crate) fn abandon(&mut self, key: usize, fd: RawFd, resources: Box<dyn Abandoned>) {
        if let Some(engine) = self.engine.as_mut() {
            engine.cancel(key as u64, fd);
        }
        // Nothing of it is in the kernel: free it now.
        drop(resources);
    }

    /// `fd`, a byte-stream socket, gets one edge-triggered registration
    /// until [`deregister_fd`](Self::deregister_fd), which the caller
    /// promises to call before closing it.
    pub(crate) fn register_fd(&mut self, fd: RawFd) {
        if let Some(engine) = self.engine.as_mut() {
            engine.register(fd, true);
        }
    }

    /// Ends `fd`'s registration (before it is closed).
    pub(crate) fn deregister_fd(&mut self, fd: RawFd) {
        if let Some(engine) = self.engine.as_mut() {
            engine.deregister(fd);
        }
    }

    pub(crate) fn fd_busy(&self, fd: RawFd) -> bool {
        self.engine
            .as_ref()
            .is_some_and(|e| e.waiter_keys(fd).any(|k| k % 2 == 0))
    }

    /// Waits at most `timeout` for readiness, appending the wakers of
    /// what may proceed to `wakers`.
    ///
    /// A zero timeout makes no system call while nothing waits for
    /// readiness (as io_uring skips an empty zero-timeout enter). When
    /// the timeout is zero only because callbacks are ready
    /// (`deferrable`), every other such check is put off to the next
    /// iteration, unless readiness is already known: on io_uring the
    /// check is free (completions are in shared memory), here it is an
    /// `epoll_wait`. The common case is a task woken by a receive (a
    /// streams reader): without this, the iteration that runs it made an
    /// `epoll_wait(…, 0)` that found nothing, one more system call per
    /// request. Readiness is still checked at least every second
    /// iteration, however busy the loop stays.
    pub(crate) fn poll(
        &mut self,
        timeout: Option<Duration>,
        deferrable: bool,
        wakers: &mut Vec<Wake>,
    ) -> io::Result<()> {
        let engine = self.engine.as_mut().ok_or_else(closed)?;
        if timeout == Some(Duration::ZERO) {
            if engine.waiting() == 0 {
                // Nothing waits for readiness and nothing may block. Work
                // from other threads is seen through the remote queue's
                // flag, and the eventfd is drained at the next real wait.
                return Ok(());
            }
            if deferrable && !self.deferred && !engine.has_known_ready() {
                self.deferred = true;
                return Ok(());
            }
        }
        self.deferred = false;
        engine.wait(timeout, wakers)
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.engine.as_ref().map_or(0, |e| e.waiting())
    }

    pub(crate) fn shutdown(&mut self) {
        self.engine = None;
    }
}
