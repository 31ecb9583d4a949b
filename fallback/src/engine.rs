//! The engine: try an operation's non-blocking system call; when it would
//! block, park the caller's waker on the descriptor until it is ready.
//!
//! Each waiting operation is identified by a caller-chosen key, unique
//! among the waiters of its descriptor (an operation waits on one
//! descriptor, given again to [`Engine::cancel`]). A waiter
//! is removed when its descriptor reports the readiness it waited for (its
//! waker is handed back to be woken); the operation then tries again and,
//! if it would still block, parks again. Cancelling is removing the
//! waiter: nothing is in flight in the kernel on this backend.
//!
//! # Two ways of watching a descriptor
//!
//! - **Unregistered** (the default): the engine knows a descriptor only
//!   while someone waits on it, and arms a one-shot interest
//!   ([`Reactor::arm`], one `epoll_ctl`) each time a waiter parks or
//!   stays parked after an event. Nothing outlives the wait, so the
//!   descriptor's owner may close it whenever no operation uses it, and a
//!   reused number starts afresh. Every attempt makes its system call.
//! - **Registered** ([`Engine::register`] … [`Engine::deregister`]): for
//!   descriptors whose owner promises to deregister before closing (a
//!   stream transport's socket). The descriptor is added to epoll once,
//!   edge-triggered for both directions ([`Reactor::add_edge`]), when it is
//!   first waited on, and the engine keeps its readiness: each direction
//!   is set by an event and cleared when an attempt for it would block.
//!   An operation whose direction is known not to be ready parks without
//!   trying its system call, and parking makes no `epoll_ctl` either; the
//!   next edge wakes it. A hang-up or error (`EPOLLHUP`, `EPOLLRDHUP`,
//!   `EPOLLERR`) is remembered for good: from then on attempts are always
//!   made, so an end of file or error is never missed. Readiness is
//!   therefore only ever cleared by evidence that the direction is not
//!   ready, and an attempt that does not drain the descriptor (a
//!   level-triggered watcher's poll, a read of part of the data) leaves it
//!   set: the next operation tries again, as level-triggered polling
//!   would.
//!
//! # Watchers
//!
//! An owner that reads a registered descriptor for its whole life (a
//! stream transport) uses [`Engine::poll_io_watching`] instead: its waiter
//! is a *watcher*, woken at every event for its direction and left parked
//! when woken and when an attempt succeeds, until [`Engine::cancel`]. It
//! parks once, not after every receive.
//!
//! [`Engine::deregister`] removes the epoll registration and forgets the
//! readiness, so that a descriptor number closed and reused starts with
//! fresh state. [`Engine::register`] on a number that is registered
//! already (its previous owner closed it without deregistering) also
//! starts afresh.

use std::io;
use std::os::fd::RawFd;
use std::task::{Poll, Waker};

use crate::wakeup::Wakeup;
use std::time::Duration;

use crate::reactor::{Event, Interest, Reactor};

/// Token of the wake-up eventfd's registration.
const WAKE_TOKEN: u64 = u64::MAX;

struct Waiter<W> {
    key: u64,
    interest: Interest,
    waker: W,
    /// A watcher ([`Engine::poll_io_watching`]): woken at every event for
    /// `interest` and left parked, until cancelled.
    persistent: bool,
}

/// What the engine knows of a registered descriptor's readiness.
#[derive(Clone, Copy, Debug)]
struct Readiness {
    /// Added to the epoll set (done when first waited on).
    added: bool,
    /// A byte stream: a receive that returned less than it asked for
    /// emptied the receive queue ([`Engine::note_drained`]).
    stream: bool,
    /// A read may not block: no attempt since the last event said
    /// otherwise.
    readable: bool,
    /// A write may not block.
    writable: bool,
    /// The peer shut down its side or the descriptor hung up or failed:
    /// reads never block again. Sticky.
    read_closed: bool,
    /// `EPOLLERR`/`EPOLLHUP` seen: every attempt is made from now on.
    /// Sticky.
    failed: bool,
}

impl Readiness {
    /// Fresh state: nothing known, so everything is tried.
    fn new(stream: bool) -> Readiness {
        Readiness {
            added: false,
            stream,
            readable: true,
            writable: true,
            read_closed: false,
            failed: false,
        }
    }

    /// True if an attempt for `interest` may succeed (or fail with
    /// something other than "would block").
    fn may_proceed(&self, interest: Interest) -> bool {
        self.failed
            || interest.is_empty()
            || (interest.read && (self.readable || self.read_closed))
            || (interest.write && self.writable)
    }

    /// An attempt for `interest` would block.
    fn clear(&mut self, interest: Interest) {
        if interest.read {
            self.readable = false;
        }
        if interest.write {
            self.writable = false;
        }
    }

    fn record(&mut self, ev: &Event) {
        self.readable |= ev.readable;
        self.writable |= ev.writable;
        self.read_closed |= ev.read_closed;
        self.failed |= ev.failed;
    }
}

/// The waiters of one descriptor: usually one (a receive), sometimes
/// two (and a send). The first is kept in the descriptor's entry itself,
/// so waking it touches no other memory: a heap buffer per descriptor
/// was a cold cache line per event at a thousand connections (the
/// hottest load of the wait in a profile).
///
/// Invariant: `rest` is empty unless `first` is `Some`.
struct Waiters<W> {
    first: Option<Waiter<W>>,
    rest: Vec<Waiter<W>>,
}

impl<W> Default for Waiters<W> {
    fn default() -> Self {
        Waiters {
            first: None,
            rest: Vec::new(),
        }
    }
}

impl<W> Waiters<W> {
    fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    fn push(&mut self, w: Waiter<W>) {
        if self.first.is_none() {
            self.first = Some(w);
        } else {
            self.rest.push(w);
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Waiter<W>> {
        self.first.iter().chain(self.rest.iter())
    }

    fn find_mut(&mut self, key: u64) -> Option<&mut Waiter<W>> {
        self.first
            .iter_mut()
            .chain(self.rest.iter_mut())
            .find(|w| w.key == key)
    }

    /// Wakes the waiters `fires` picks, handing their handles to `out`: a
    /// watcher's is cloned and the watcher stays, any other waiter is
    /// removed. Returns how many were removed. The usual case, one waiter,
    /// touches nothing but the descriptor's entry.
    fn fire(&mut self, fires: impl Fn(&Waiter<W>) -> bool, mut out: impl FnMut(W)) -> usize
    where
        W: Clone,
    {
        if self.rest.is_empty() {
            match self.first.as_ref() {
                Some(w) if fires(w) && w.persistent => {
                    out(w.waker.clone());
                    0
                }
                Some(w) if fires(w) => {
                    let removed = self.first.take().map(|w| out(w.waker));
                    usize::from(removed.is_some())
                }
                _ => 0,
            }
        } else {
            for w in self.iter() {
                if w.persistent && fires(w) {
                    out(w.waker.clone());
                }
            }
            self.remove_if(|w| !w.persistent && fires(w), |w| out(w.waker))
        }
    }

    /// Removes the waiters `take` picks, handing each to `out`; returns
    /// how many.
    fn remove_if(
        &mut self,
        mut take: impl FnMut(&Waiter<W>) -> bool,
        mut out: impl FnMut(Waiter<W>),
    ) -> usize {
        let mut n = 0;
        let mut i = 0;
        while i < self.rest.len() {
            if take(&self.rest[i]) {
                out(self.rest.swap_remove(i));
                n += 1;
            } else {
                i += 1;
            }
        }
        if let Some(w) = self.first.take_if(|w| take(w)) {
            out(w);
            n += 1;
            self.first = self.rest.pop();
        }
        n
    }
}

/// Everything the engine holds for one descriptor (all empty for a
/// descriptor it does not know).
struct FdState<W> {
    /// Who waits on it.
    waiters: Waiters<W>,
    /// `Some` while registered (see the module docs).
    reg: Option<Readiness>,
}

impl<W> Default for FdState<W> {
    fn default() -> Self {
        FdState {
            waiters: Waiters::default(),
            reg: None,
        }
    }
}

impl<W> FdState<W> {
    /// Neither waited on nor registered.
    fn is_unknown(&self) -> bool {
        self.waiters.is_empty() && self.reg.is_none()
    }

    fn union(&self) -> Interest {
        self.waiters
            .iter()
            .fold(Interest::default(), |acc, w| acc.union(w.interest))
    }
}

/// The entry of `fd` in `fds`, if it has one.
fn slot_mut<W>(fds: &mut [FdState<W>], fd: RawFd) -> Option<&mut FdState<W>> {
    usize::try_from(fd).ok().and_then(|i| fds.get_mut(i))
}

/// The entry of `fd` in `fds`, created if needed; `EBADF` for a negative
/// number.
fn entry<W>(fds: &mut Vec<FdState<W>>, fd: RawFd) -> io::Result<&mut FdState<W>> {
    let i = usize::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    if i >= fds.len() {
        fds.resize_with(i + 1, FdState::default);
    }
    Ok(&mut fds[i])
}

/// Readiness engine over a [`Reactor`].
///
/// `W` is what a parked operation is woken through: a [`Waker`] by
/// default, or any cheaper handle the caller has (see [`Wakeup`]).
pub struct Engine<W: Wakeup = Waker> {
    reactor: Reactor,
    /// Waiters and registration per descriptor, indexed by its number
    /// (descriptors are small integers: a lookup is an index, not a
    /// hash).
    fds: Vec<FdState<W>>,
    /// Waiters parked on descriptors.
    parked: usize,
    /// Wakers of waiters parked on readiness already known: handed out by
    /// the next [`wait`](Self::wait), which then does not block.
    ready: Vec<W>,
    events: Vec<Event>,
    wake_fd: Option<RawFd>,
}

/// Runs `f` again while it fails with `EINTR`.
#[inline]
pub fn retry_interrupted<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

impl<W: Wakeup> Engine<W> {
    /// A new engine with its own epoll instance.
    pub fn new() -> io::Result<Engine<W>> {
        Ok(Engine {
            reactor: Reactor::new()?,
            fds: Vec::new(),
            parked: 0,
            ready: Vec::new(),
            events: Vec::new(),
            wake_fd: None,
        })
    }

    /// The reactor underneath.
    pub fn reactor(&self) -> &Reactor {
        &self.reactor
    }

    fn state(&self, fd: RawFd) -> Option<&FdState<W>> {
        usize::try_from(fd).ok().and_then(|i| self.fds.get(i))
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

    /// Registers `fd` (see the module docs): from its first wait on, it
    /// stays in the epoll set, edge-triggered, and the engine tracks its
    /// readiness. `stream`: `fd` is a byte stream, so a receive that got
    /// less than it asked for drained it ([`note_drained`](Self::note_drained)).
    ///
    /// The caller promises to call [`deregister`](Self::deregister) before
    /// closing `fd`. Registering a number registered already starts it
    /// afresh. No system call is made here.
    pub fn register(&mut self, fd: RawFd, stream: bool) {
        let Ok(state) = entry(&mut self.fds, fd) else {
            return; // a negative number: nothing can wait on it
        };
        state.reg = Some(Readiness::new(stream));
        if !state.waiters.is_empty() {
            // Waiters armed one-shot before: switch to the edge-triggered
            // registration now (it reports what is ready at once).
            if self.reactor.add_edge(fd, fd as u64).is_ok() {
                if let Some(reg) = state.reg.as_mut() {
                    reg.added = true;
                }
            }
        }
    }

    /// Ends the registration of `fd`: removes it from the epoll set and
    /// forgets its readiness. Call it before closing `fd` (after, the
    /// number may belong to another file). Operations still waiting on
    /// `fd` stay parked, watched one-shot like an unregistered descriptor.
    pub fn deregister(&mut self, fd: RawFd) {
        let Some(state) = slot_mut(&mut self.fds, fd) else {
            return;
        };
        let Some(reg) = state.reg.take() else {
            return;
        };
        if reg.added {
            self.reactor.remove(fd);
        }
        if !state.waiters.is_empty() {
            let union = state.union();
            if self.reactor.arm(fd, fd as u64, union).is_err() {
                self.wake_all(fd);
            }
        }
    }

    /// True if `fd` is registered.
    pub fn is_registered(&self, fd: RawFd) -> bool {
        self.state(fd).is_some_and(|s| s.reg.is_some())
    }

    /// A receive on `fd` returned less than it asked for. On a registered
    /// byte stream that means its receive queue is now empty: the next read
    /// parks without a system call until the next edge. Ignored otherwise,
    /// and once the peer has shut down or the descriptor failed (no edge
    /// would come to report the end of file again).
    ///
    /// Returns true if it took effect: until the next
    /// [`wait`](Self::wait) records an event, a read of `fd` parks without
    /// a system call.
    pub fn note_drained(&mut self, fd: RawFd) -> bool {
        if let Some(reg) = slot_mut(&mut self.fds, fd).and_then(|s| s.reg.as_mut()) {
            if reg.stream && !reg.read_closed && !reg.failed {
                reg.readable = false;
                return true;
            }
        }
        false
    }

    /// Tries `attempt`; on `WouldBlock`, parks `waker` under `key` until
    /// `fd` is ready for `interest` (for an empty interest: until `fd`
    /// fails or hangs up) and returns `Pending`. Any other
    /// outcome is returned as is (and ends the wait of `key`). `EINTR` is
    /// retried.
    ///
    /// On a registered descriptor known not to be ready for `interest`,
    /// `attempt` is not called: the waker is parked at once.
    pub fn poll_io<T>(
        &mut self,
        key: u64,
        fd: RawFd,
        interest: Interest,
        waker: &W,
        attempt: &mut impl FnMut() -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        self.poll_io_as(key, fd, interest, waker, attempt, false)
    }

    /// [`poll_io`](Self::poll_io) for an owner that keeps watching `fd`
    /// (a stream transport's reader): the waiter parked under `key` is a
    /// *watcher*. It is woken at every event for `interest` and stays
    /// parked when woken and when `attempt` succeeds, until
    /// [`cancel`](Self::cancel). So the owner does not park again after
    /// each receive; a poll that finds `fd` known not to be ready only
    /// checks that the watcher is there, with this waker.
    ///
    /// The owner may be woken by an event it has no use for (one that
    /// arrives while it still has data to take): it tries again and finds
    /// nothing, as after any spurious wake-up.
    pub fn poll_io_watching<T>(
        &mut self,
        key: u64,
        fd: RawFd,
        interest: Interest,
        waker: &W,
        attempt: &mut impl FnMut() -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        self.poll_io_as(key, fd, interest, waker, attempt, true)
    }

    /// [`poll_io`](Self::poll_io); `persistent`: as
    /// [`poll_io_watching`](Self::poll_io_watching), whose waiter a
    /// finished attempt leaves parked.
    fn poll_io_as<T>(
        &mut self,
        key: u64,
        fd: RawFd,
        interest: Interest,
        waker: &W,
        attempt: &mut impl FnMut() -> io::Result<T>,
        persistent: bool,
    ) -> Poll<io::Result<T>> {
        let known = self.state(fd).and_then(|s| s.reg);
        if known.is_some_and(|r| !r.may_proceed(interest)) {
            return match self.park_as(key, fd, interest, waker, persistent) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            };
        }
        match retry_interrupted(&mut *attempt) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if let Some(reg) = slot_mut(&mut self.fds, fd).and_then(|s| s.reg.as_mut()) {
                    reg.clear(interest);
                }
                match self.park_as(key, fd, interest, waker, persistent) {
                    Ok(()) => Poll::Pending,
                    Err(e) => Poll::Ready(Err(e)),
                }
            }
            other => {
                if !persistent {
                    self.cancel(key, fd);
                }
                Poll::Ready(other)
            }
        }
    }

    /// Parks `waker` under `key` until `fd` is ready for `interest`.
    ///
    /// On a registered descriptor whose readiness for `interest` is not
    /// known to be gone, the waker is handed out by the next
    /// [`wait`](Self::wait) without blocking (an edge-triggered
    /// registration would report nothing new).
    pub fn park(&mut self, key: u64, fd: RawFd, interest: Interest, waker: &W) -> io::Result<()> {
        self.park_as(key, fd, interest, waker, false)
    }

    /// [`park`](Self::park); `persistent`: as a watcher (see
    /// [`poll_io_watching`](Self::poll_io_watching)), which known
    /// readiness does not remove.
    fn park_as(
        &mut self,
        key: u64,
        fd: RawFd,
        interest: Interest,
        waker: &W,
        persistent: bool,
    ) -> io::Result<()> {
        if fd < 0 {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        let state = entry(&mut self.fds, fd)?;
        if let Some(reg) = state.reg.as_mut() {
            if !reg.added {
                if let Err(e) = self.reactor.add_edge(fd, fd as u64) {
                    self.cancel(key, fd);
                    return Err(e);
                }
                reg.added = true;
            }
            if reg.may_proceed(interest) && !interest.is_empty() && !persistent {
                self.cancel(key, fd);
                self.ready.push(waker.clone());
                return Ok(());
            }
        }
        let known_ready = state
            .reg
            .is_some_and(|r| r.may_proceed(interest) && !interest.is_empty());
        match state.waiters.find_mut(key) {
            Some(w) => {
                w.interest = interest;
                w.persistent = persistent;
                if !w.waker.same_as(waker) {
                    w.waker = waker.clone();
                }
            }
            None => {
                state.waiters.push(Waiter {
                    key,
                    interest,
                    waker: waker.clone(),
                    persistent,
                });
                self.parked += 1;
            }
        }
        if known_ready {
            // A watcher on readiness already known: woken by the next
            // wait, and left parked.
            self.ready.push(waker.clone());
            return Ok(());
        }
        if state.reg.is_some() {
            // Edge-triggered and already added: the next edge wakes it.
            return Ok(());
        }
        let union = state.union();
        if let Err(e) = self.reactor.arm(fd, fd as u64, union) {
            self.cancel(key, fd);
            return Err(e);
        }
        Ok(())
    }

    /// Hands every waiter of `fd` to the next wait.
    fn wake_all(&mut self, fd: RawFd) {
        if let Some(state) = slot_mut(&mut self.fds, fd) {
            let ready = &mut self.ready;
            self.parked -= state.waiters.remove_if(|_| true, |w| ready.push(w.waker));
        }
    }

    /// Ends the wait of `key` on `fd` (its operation completed or was
    /// dropped). Nothing happens if it does not wait.
    pub fn cancel(&mut self, key: u64, fd: RawFd) {
        if let Some(state) = slot_mut(&mut self.fds, fd) {
            self.parked -= state.waiters.remove_if(|w| w.key == key, drop);
        }
    }

    /// True if some operation waits on `fd`.
    pub fn has_waiters(&self, fd: RawFd) -> bool {
        self.state(fd).is_some_and(|s| !s.waiters.is_empty())
    }

    /// The keys of the operations waiting on `fd`.
    pub fn waiter_keys(&self, fd: RawFd) -> impl Iterator<Item = u64> + '_ {
        self.state(fd)
            .into_iter()
            .flat_map(|s| s.waiters.iter())
            .map(|w| w.key)
    }

    /// True if some parked waker's readiness is known already: the next
    /// [`wait`](Self::wait) hands it out without blocking.
    pub fn has_known_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Number of operations waiting for readiness (or whose readiness is
    /// known and will be handed out by the next wait).
    pub fn waiting(&self) -> usize {
        self.parked + self.ready.len()
    }

    /// Waits at most `timeout` for readiness and appends the wakers of the
    /// operations that may now proceed to `wakers`. Unregistered
    /// descriptors still awaited for another direction are re-armed. If
    /// some waker is ready already, the wait does not block.
    pub fn wait(&mut self, timeout: Option<Duration>, wakers: &mut Vec<W>) -> io::Result<()> {
        let timeout = if self.ready.is_empty() {
            timeout
        } else {
            wakers.append(&mut self.ready);
            Some(Duration::ZERO)
        };
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
            let Some(state) = slot_mut(&mut self.fds, fd) else {
                continue; // nobody waits any more
            };
            if state.is_unknown() {
                continue;
            }
            if let Some(reg) = state.reg.as_mut() {
                reg.record(&ev);
            }
            self.parked -= state.waiters.fire(
                |w| {
                    (w.interest.read && ev.readable)
                        || (w.interest.write && ev.writable)
                        || (w.interest.is_empty() && ev.failed)
                },
                |waker| wakers.push(waker),
            );
            if state.reg.is_some() {
                // Edge-triggered: stays registered, nothing to re-arm.
                continue;
            }
            if !state.waiters.is_empty() {
                let union = state.union();
                if self.reactor.arm(fd, fd as u64, union).is_err() {
                    // The descriptor went away: wake everyone; each will
                    // see the error when it tries again.
                    self.parked -= state.waiters.remove_if(|_| true, |w| wakers.push(w.waker));
                }
            }
        }
        self.events = events;
        waited
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::task::Wake;

    use super::*;

    struct Nop;
    impl Wake for Nop {
        fn wake(self: Arc<Self>) {}
    }

    fn waiter(key: u64) -> Waiter<Waker> {
        Waiter {
            key,
            interest: Interest::READ,
            waker: Waker::from(Arc::new(Nop)),
            persistent: false,
        }
    }

    fn keys(w: &Waiters<Waker>) -> Vec<u64> {
        w.iter().map(|w| w.key).collect()
    }

    #[test]
    fn waiters_removed_from_the_front_are_replaced_from_the_rest() {
        let mut w = Waiters::default();
        for k in 1..=4 {
            w.push(waiter(k));
        }
        let mut out = Vec::new();
        assert_eq!(w.remove_if(|x| x.key == 1, |x| out.push(x.key)), 1);
        assert_eq!(out, [1]);
        assert!(w.first.is_some(), "the first place is refilled");
        let mut left = keys(&w);
        left.sort_unstable();
        assert_eq!(left, [2, 3, 4]);
        assert!(w.find_mut(3).is_some() && w.find_mut(1).is_none());
        assert_eq!(w.remove_if(|_| true, drop), 3);
        assert!(w.is_empty() && w.rest.is_empty());
        assert_eq!(w.remove_if(|_| true, drop), 0, "nothing to remove");
        w.push(waiter(9));
        assert_eq!(keys(&w), [9]);
        assert!(w.rest.is_empty(), "a single waiter stays inline");
    }
}
