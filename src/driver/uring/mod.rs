//! The io_uring backend: one ring, a slab of operation slots, and an
//! eventfd read that lets other threads end a wait.
//!
//! One loop iteration costs one `io_uring_enter`: everything queued in the
//! submission ring goes to the kernel in the same call that waits for
//! completions, with the timeout passed as `IORING_ENTER_EXT_ARG` (no
//! timeout SQE). When nothing is queued and the wait is zero, no system
//! call is made at all: completions are read straight off the shared ring.

pub(crate) mod buf_ring;
mod probe;
mod slot;

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use slab::Slab;

use buf_ring::BufRing;
pub(crate) use probe::Features;
pub use probe::KernelFeatures;
use slot::{Backlog, Entry, Slot};
use std::rc::Rc;

use super::{Abandoned, Completion, OpKind, SlotPoll, Wake, WakeBy};

/// `user_data` of the eventfd read that carries cross-thread wake-ups.
const WAKE_TOKEN: u64 = u64::MAX;
/// `user_data` of ASYNC_CANCEL requests (their own CQEs are ignored).
const CANCEL_TOKEN: u64 = u64::MAX - 1;
/// `user_data` is the slot key in the low 32 bits and the slot's
/// generation in the high 32: a completion or cancel that names a reused
/// slot is recognised as stale. Generations stay below `u32::MAX`, so no
/// `user_data` collides with the two tokens above.
fn user_data(key: usize, generation: u32) -> u64 {
    (u64::from(generation) << 32) | key as u64
}

/// How long shutdown waits for cancelled operations to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The io_uring driver.
pub(crate) struct UringDriver {
    /// `None` once shut down.
    ring: Option<IoUring>,
    features: Features,
    /// Each slot with the generation it was filled at and the descriptor
    /// its operation uses (-1 for readiness waits).
    slots: Slab<Entry>,
    generation: u32,
    /// Operations the kernel still owns (InFlight or Abandoned slots).
    kernel_owned: usize,
    /// The loop's eventfd (owned by the loop's shared state, which
    /// outlives the ring).
    wake_fd: RawFd,
    /// Target of the eventfd read; freed only after its terminal CQE.
    wake_buf: Box<[u8; 8]>,
    wake_armed: bool,
    /// Wakers of completions reaped outside `poll` (SQ-full path).
    deferred: Vec<Wake>,
    /// The provided buffer ring of multishot receives, registered on
    /// first use.
    buf_ring: Option<Rc<BufRing>>,
    /// Multishot receive is out of reach: the ring could not be
    /// registered, the kernel refused a multishot receive, or the builder
    /// asked for no receive buffers.
    no_multishot_recv: bool,
    /// The buffer ring's shape: buffers (0: none) and bytes per buffer.
    recv_buffers: (u16, usize),
    /// What completions reaped since the last poll asked of the buffer
    /// ring (see `BufRing::top_up`).
    ring_demand: RingDemand,
}

/// Completions that took a buffer from the ring, and receives refused
/// for lack of one (`ENOBUFS`), since the ring was last topped up.
#[derive(Clone, Copy, Default)]
struct RingDemand {
    took: u32,
    refused: u32,
}

fn closed() -> io::Error {
    io::Error::other(crate::Error::LoopClosed)
}

impl UringDriver {
    /// Sets up a ring with `entries` submission entries.
    pub(crate) fn new(
        entries: u32,
        recv_buffers: (u16, usize),
        wake_fd: RawFd,
    ) -> io::Result<UringDriver> {
        let (ring, features) = probe::setup(entries)?;
        Ok(UringDriver {
            ring: Some(ring),
            features,
            slots: Slab::with_capacity(64),
            generation: 0,
            kernel_owned: 0,
            wake_fd,
            wake_buf: Box::new([0; 8]),
            wake_armed: false,
            deferred: Vec::new(),
            buf_ring: None,
            no_multishot_recv: recv_buffers.0 == 0,
            recv_buffers,
            ring_demand: RingDemand::default(),
        })
    }

    /// The loop's provided buffer ring, registered on first call; `None`
    /// where the kernel has none (before 5.19) or multishot receive was
    /// found missing.
    pub(crate) fn buf_ring(&mut self) -> Option<Rc<BufRing>> {
        if self.no_multishot_recv {
            return None;
        }
        if let Some(br) = &self.buf_ring {
            return Some(br.clone());
        }
        let ring = self.ring.as_ref()?;
        match BufRing::register(ring, self.recv_buffers.0, self.recv_buffers.1) {
            Ok(br) => {
                self.buf_ring = Some(br.clone());
                Some(br)
            }
            Err(e) => {
                tracing::info!(error = %e, "ringloop: no provided buffer ring; single-shot receives");
                self.no_multishot_recv = true;
                None
            }
        }
    }

    /// The kernel refused a multishot receive (before 6.0): transports
    /// created from now on use single-shot receives.
    pub(crate) fn disable_multishot_recv(&mut self) {
        self.no_multishot_recv = true;
    }

    /// Asks the kernel to end a multishot operation; its remaining
    /// completions (the last one `ECANCELED`) still arrive in its slot.
    pub(crate) fn cancel_multi(&mut self, key: usize) {
        let Some(&mut Entry {
            generation,
            slot: Slot::Multi { ended: false, .. },
            ..
        }) = self.slots.get_mut(key)
        else {
            return;
        };
        if self.push_cancel(key, generation).is_err() {
            tracing::warn!(key, "ringloop: could not queue ASYNC_CANCEL");
        }
    }

    /// The features found at setup.
    pub(crate) fn features(&self) -> &Features {
        &self.features
    }

    pub(crate) fn submit<T: OpKind>(&mut self, op: &mut T) -> io::Result<usize> {
        self.submit_waking(op, None)
    }

    /// [`submit`](Self::submit), with whom to wake on completion already
    /// registered (what polling it right away would do: its completion
    /// cannot arrive before the next reap).
    pub(crate) fn submit_waking<T: OpKind>(
        &mut self,
        op: &mut T,
        wake: Option<Wake>,
    ) -> io::Result<usize> {
        if self.ring.is_none() {
            return Err(closed());
        }
        self.generation = (self.generation + 1) % u32::MAX;
        let generation = self.generation;
        let fd = if T::USES_FD { op.readiness().0 } else { -1 };
        let key = self.slots.insert(Entry {
            generation,
            fd,
            slot: Slot::InFlight(wake),
        });
        if key > u32::MAX as usize {
            self.slots.remove(key);
            return Err(io::Error::other("too many operations in flight"));
        }
        let entry = op.sqe().user_data(user_data(key, generation));
        if let Err(e) = self.push(&entry) {
            self.slots.remove(key);
            return Err(e);
        }
        self.kernel_owned += 1;
        Ok(key)
    }

    /// Pushes one SQE; when the submission ring is full, hands it to the
    /// kernel first. Never drops an entry.
    fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        loop {
            let ring = self.ring.as_mut().ok_or_else(closed)?;
            // Every pointer in `entry` points into heap memory owned by an
            // `OpKind` value (the driver's own wake buffer for the eventfd
            // read; cancels carry no pointer). The value lives in its `Op`
            // or, if dropped early, in `Slot::Abandoned`, and shutdown
            // leaks it (`Slot::Orphaned`) rather than free it early.
            // SAFETY: so that memory stays valid until the terminal CQE.
            let pushed = unsafe { ring.submission().push(entry) };
            if pushed.is_ok() {
                return Ok(());
            }
            self.submit_now()?;
        }
    }

    /// Runs the kernel's task work now if some is pending (with
    /// `DEFER_TASKRUN` it otherwise waits for the next wait): a cancelled
    /// operation then completes and drops its file reference at once, so
    /// closing the descriptor right after really closes the file (the
    /// peer of a closed pipe or socket sees EOF even if the loop is not
    /// run again).
    fn run_task_work(&mut self) {
        let Some(ring) = self.ring.as_mut() else {
            return;
        };
        if ring.submission().taskrun() {
            // `submit` carries GETEVENTS when the TASKRUN flag is set.
            if let Err(e) = ring.submit() {
                tracing::debug!(error = %e, "ringloop: running task work failed");
            }
        }
    }

    /// Submits what is queued without waiting. On `EBUSY` (the kernel's
    /// CQ overflow backlog is full) reaps completions and retries.
    fn submit_now(&mut self) -> io::Result<()> {
        loop {
            let ring = self.ring.as_mut().ok_or_else(closed)?;
            match ring.submit() {
                Ok(_) => return Ok(()),
                Err(e) => match e.raw_os_error() {
                    Some(libc::EINTR) => {}
                    Some(libc::EBUSY) | Some(libc::EAGAIN) => {
                        let mut wakers = std::mem::take(&mut self.deferred);
                        self.reap(&mut wakers);
                        self.deferred = wakers;
                    }
                    _ => return Err(e),
                },
            }
        }
    }

    pub(crate) fn poll_slot(&mut self, key: usize, by: WakeBy<'_>) -> SlotPoll {
        let Some(Entry { slot, .. }) = self.slots.get_mut(key) else {
            // Not ours (the slot was already collected): report a clear
            // error instead of panicking.
            return SlotPoll::Ready(Completion::new(-libc::EBADF));
        };
        match slot {
            Slot::Completed(c) => {
                let c = *c;
                self.slots.remove(key);
                SlotPoll::Ready(c)
            }
            Slot::InFlight(w) => {
                by.store(w);
                SlotPoll::Pending
            }
            Slot::Abandoned(_) | Slot::Orphaned => SlotPoll::Pending,
            // A multishot slot is polled through `poll_multi`.
            Slot::Multi { .. } | Slot::MultiAbandoned(_) => {
                SlotPoll::Ready(Completion::new(-libc::EBADF))
            }
        }
    }

    /// Queues a multishot operation whose entry points at no memory
    /// (multishot accept, buffer-select recv).
    pub(crate) fn submit_multi(
        &mut self,
        fd: RawFd,
        entry: squeue::Entry,
        wake: Option<Wake>,
    ) -> io::Result<usize> {
        if self.ring.is_none() {
            return Err(closed());
        }
        self.generation = (self.generation + 1) % u32::MAX;
        let generation = self.generation;
        let key = self.slots.insert(Entry {
            generation,
            fd,
            slot: Slot::Multi {
                ready: Backlog::default(),
                waker: wake,
                ended: false,
            },
        });
        if key > u32::MAX as usize {
            self.slots.remove(key);
            return Err(io::Error::other("too many operations in flight"));
        }
        let entry = entry.user_data(user_data(key, generation));
        if let Err(e) = self.push(&entry) {
            self.slots.remove(key);
            return Err(e);
        }
        self.kernel_owned += 1;
        Ok(key)
    }

    /// The next completion of a multishot operation, oldest first. The
    /// terminal one (`!c.more()`) frees the slot. The flag is true when
    /// nothing else is queued and `by` is registered for the next one
    /// (when pending, and when the last queued one was taken).
    pub(crate) fn poll_multi(&mut self, key: usize, by: WakeBy<'_>) -> (SlotPoll, bool) {
        let shut_down = self.ring.is_none();
        let Some(Entry {
            slot:
                Slot::Multi {
                    ready,
                    waker: w,
                    ended,
                },
            ..
        }) = self.slots.get_mut(key)
        else {
            return (SlotPoll::Ready(Completion::new(-libc::EBADF)), false);
        };
        match ready.pop_front() {
            Some(c) => {
                if !c.more() {
                    self.slots.remove(key);
                    return (SlotPoll::Ready(c), false);
                }
                // The owner would poll again only to register: do it now.
                let armed = ready.is_empty() && !shut_down;
                if armed {
                    by.store(w);
                }
                (SlotPoll::Ready(c), armed)
            }
            None if shut_down && !*ended => {
                // Shutdown gave up on it: nothing more will arrive.
                self.slots.remove(key);
                self.kernel_owned = self.kernel_owned.saturating_sub(1);
                (SlotPoll::Ready(Completion::new(-libc::ECANCELED)), false)
            }
            None => {
                by.store(w);
                (SlotPoll::Pending, true)
            }
        }
    }

    /// The owner of a multishot operation went away: queued completions
    /// are released now; if the kernel still runs it, it is cancelled and
    /// later completions are released as they arrive.
    pub(crate) fn abandon_multi(&mut self, key: usize, mut release: Box<dyn FnMut(Completion)>) {
        let Some(&mut Entry {
            generation,
            ref mut slot,
            ..
        }) = self.slots.get_mut(key)
        else {
            return;
        };
        let Slot::Multi { ready, ended, .. } = slot else {
            return;
        };
        while let Some(c) = ready.pop_front() {
            release(c);
        }
        if *ended || self.ring.is_none() {
            if !*ended {
                // Shutdown gave up on it; the ring is gone.
                self.kernel_owned = self.kernel_owned.saturating_sub(1);
            }
            self.slots.remove(key);
            return;
        }
        *slot = Slot::MultiAbandoned(release);
        self.cancel_now(key, generation);
    }

    /// Queues an `ASYNC_CANCEL` of the operation in slot `key` of
    /// `generation` (its own CQE is ignored).
    fn push_cancel(&mut self, key: usize, generation: u32) -> io::Result<()> {
        let cancel = opcode::AsyncCancel::new(user_data(key, generation))
            .build()
            .user_data(CANCEL_TOKEN);
        self.push(&cancel)
    }

    /// Cancels an operation whose owner went away, submitting at once: the
    /// kernel has taken both the operation (and its file reference) and
    /// the cancel before the caller can close the descriptor.
    fn cancel_now(&mut self, key: usize, generation: u32) {
        if self.push_cancel(key, generation).is_err() || self.submit_now().is_err() {
            tracing::warn!(key, "ringloop: could not submit ASYNC_CANCEL");
        }
        self.run_task_work();
    }

    pub(crate) fn abandon(&mut self, key: usize, resources: Box<dyn Abandoned>) {
        let Some(&mut Entry {
            generation,
            ref mut slot,
            ..
        }) = self.slots.get_mut(key)
        else {
            return;
        };
        match slot {
            Slot::Completed(c) => {
                let c = *c;
                self.slots.remove(key);
                resources.finish(c);
            }
            Slot::InFlight(_) => {
                *slot = Slot::Abandoned(resources);
                self.cancel_now(key, generation);
            }
            Slot::Abandoned(_) => {
                // Cannot happen (one Op per slot); keep the first resources.
                std::mem::forget(resources);
            }
            Slot::Orphaned => std::mem::forget(resources),
            // Multishot slots are abandoned through `abandon_multi`.
            Slot::Multi { .. } | Slot::MultiAbandoned(_) => drop(resources),
        }
    }

    fn arm_wake(&mut self) -> io::Result<()> {
        if self.wake_armed {
            return Ok(());
        }
        let entry = opcode::Read::new(types::Fd(self.wake_fd), self.wake_buf.as_mut_ptr(), 8)
            .build()
            .user_data(WAKE_TOKEN);
        self.push(&entry)?;
        self.wake_armed = true;
        Ok(())
    }

    pub(crate) fn poll(
        &mut self,
        timeout: Option<Duration>,
        wakers: &mut Vec<Wake>,
    ) -> io::Result<()> {
        // Completions reaped early, while a full submission ring was
        // handed to the kernel (`submit_now`), are work already: the wait
        // must not block for another one that may never come.
        let timeout = if self.deferred.is_empty() {
            timeout
        } else {
            Some(Duration::ZERO)
        };
        wakers.append(&mut self.deferred);
        // Taken even without a ring, so the counts never grow unbounded.
        let demand = std::mem::take(&mut self.ring_demand);
        if let Some(br) = &self.buf_ring {
            // Lent buffers dropped since the last iteration (on this
            // thread or another) come back; then the ring is refilled to
            // what the last iterations took, warmest buffers first.
            br.reclaim();
            br.top_up(demand.took, demand.refused);
        }
        self.arm_wake()?;
        let ring = self.ring.as_mut().ok_or_else(closed)?;
        let res = match timeout {
            Some(d) if d.is_zero() => {
                let sq = ring.submission();
                let needed = !sq.is_empty() || sq.taskrun() || sq.cq_overflow();
                drop(sq);
                if needed {
                    ring.submit()
                } else {
                    Ok(0)
                }
            }
            Some(d) => {
                let ts = types::Timespec::new()
                    .sec(d.as_secs())
                    .nsec(d.subsec_nanos());
                let args = types::SubmitArgs::new().timespec(&ts);
                ring.submitter().submit_with_args(1, &args)
            }
            None => ring.submit_and_wait(1),
        };
        if let Err(e) = res {
            match e.raw_os_error() {
                Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::EAGAIN) => {}
                _ => return Err(e),
            }
        }
        self.reap(wakers);
        Ok(())
    }

    /// Drains the completion ring, flushing the kernel's overflow backlog
    /// (`IORING_FEAT_NODROP`) until it is empty.
    fn reap(&mut self, wakers: &mut Vec<Wake>) {
        loop {
            let Some(ring) = self.ring.as_mut() else {
                return;
            };
            for cqe in ring.completion() {
                Self::dispatch(
                    &mut self.slots,
                    &mut self.kernel_owned,
                    &mut self.wake_armed,
                    &mut self.ring_demand,
                    cqe,
                    wakers,
                );
            }
            let overflowed = ring.submission().cq_overflow();
            if !overflowed {
                return;
            }
            // Ask the kernel to move its backlog into the ring we emptied.
            if let Err(e) = ring.submit() {
                if e.raw_os_error() != Some(libc::EBUSY) && e.raw_os_error() != Some(libc::EINTR) {
                    tracing::error!(error = %e, "ringloop: flushing CQ overflow failed");
                    return;
                }
            }
        }
    }

    fn dispatch(
        slots: &mut Slab<Entry>,
        kernel_owned: &mut usize,
        wake_armed: &mut bool,
        ring_demand: &mut RingDemand,
        cqe: cqueue::Entry,
        wakers: &mut Vec<Wake>,
    ) {
        let c = Completion {
            res: cqe.result(),
            flags: cqe.flags(),
        };
        // (An `ENOBUFS` of another operation, a send, counts too: it only
        // makes the next top-up a little more generous.)
        if cqueue::buffer_select(c.flags).is_some() {
            ring_demand.took = ring_demand.took.saturating_add(1);
        } else if c.res == -libc::ENOBUFS {
            ring_demand.refused = ring_demand.refused.saturating_add(1);
        }
        match cqe.user_data() {
            WAKE_TOKEN => *wake_armed = false,
            CANCEL_TOKEN => {}
            data => {
                let key = (data & u64::from(u32::MAX)) as usize;
                let generation = (data >> 32) as u32;
                let Some(Entry {
                    generation: slot_generation,
                    slot,
                    ..
                }) = slots.get_mut(key)
                else {
                    return;
                };
                if *slot_generation != generation {
                    return; // stale: the slot was reused
                }
                match slot {
                    Slot::Multi {
                        ready,
                        waker,
                        ended,
                    } => {
                        ready.push_back(c);
                        if !c.more() {
                            *ended = true;
                            *kernel_owned -= 1;
                        }
                        match waker {
                            // Kept: woken at every completion.
                            Some(Wake::Deliver(d)) => wakers.push(Wake::Deliver(d.clone())),
                            _ => {
                                if let Some(w) = waker.take() {
                                    wakers.push(w);
                                }
                            }
                        }
                        return;
                    }
                    Slot::MultiAbandoned(release) => {
                        release(c);
                        if !c.more() {
                            *kernel_owned -= 1;
                            slots.remove(key);
                        }
                        return;
                    }
                    _ => {}
                }
                match std::mem::replace(slot, Slot::Completed(c)) {
                    Slot::InFlight(w) => {
                        *kernel_owned -= 1;
                        if let Some(w) = w {
                            wakers.push(w);
                        }
                    }
                    Slot::Abandoned(res) => {
                        *kernel_owned -= 1;
                        slots.remove(key);
                        res.finish(c);
                    }
                    old @ (Slot::Completed(_)
                    | Slot::Orphaned
                    | Slot::Multi { .. }
                    | Slot::MultiAbandoned(_)) => *slot = old,
                }
            }
        }
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.kernel_owned
    }

    pub(crate) fn fd_busy(&self, fd: RawFd) -> bool {
        self.slots
            .iter()
            .any(|(_, e)| e.fd == fd && matches!(e.slot, Slot::InFlight(_) | Slot::Multi { .. }))
    }

    pub(crate) fn shutdown(&mut self, wakers: &mut Vec<Wake>) {
        if self.ring.is_none() {
            return;
        }
        let targets: Vec<u64> = self
            .slots
            .iter()
            .filter(|(_, e)| e.slot.kernel_owned())
            .map(|(k, e)| user_data(k, e.generation))
            .collect();
        for target in targets {
            let cancel = opcode::AsyncCancel::new(target)
                .build()
                .user_data(CANCEL_TOKEN);
            let _ = self.push(&cancel);
        }
        if self.wake_armed {
            let cancel = opcode::AsyncCancel::new(WAKE_TOKEN)
                .build()
                .user_data(CANCEL_TOKEN);
            let _ = self.push(&cancel);
        }
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        while self.kernel_owned > 0 || self.wake_armed {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let step = (deadline - now).min(Duration::from_millis(100));
            let Some(ring) = self.ring.as_mut() else {
                break;
            };
            let ts = types::Timespec::new()
                .sec(step.as_secs())
                .nsec(step.subsec_nanos());
            let args = types::SubmitArgs::new().timespec(&ts);
            if let Err(e) = ring.submitter().submit_with_args(1, &args) {
                if !matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)
                ) {
                    break;
                }
            }
            self.reap(wakers);
        }
        if self.kernel_owned > 0 || self.wake_armed {
            tracing::error!(
                outstanding = self.kernel_owned,
                "ringloop: operations did not finish after cancel; leaking their buffers"
            );
            for (_, Entry { slot, .. }) in self.slots.iter_mut() {
                if slot.kernel_owned() {
                    match std::mem::replace(slot, Slot::Orphaned) {
                        Slot::Abandoned(res) => std::mem::forget(res),
                        // Points at no memory: safe to keep and drop.
                        multi @ Slot::Multi { .. } => *slot = multi,
                        _ => {}
                    }
                }
            }
            if self.wake_armed {
                std::mem::forget(std::mem::replace(&mut self.wake_buf, Box::new([0; 8])));
            }
        }
        wakers.append(&mut self.deferred);
        if let Some(br) = self.buf_ring.take() {
            if self.kernel_owned == 0 {
                if let Some(ring) = self.ring.as_ref() {
                    let _ = ring.submitter().unregister_buf_ring(buf_ring::GROUP);
                }
            } else {
                // An operation may still pick a buffer: never unmap them.
                std::mem::forget(br);
            }
        }
        self.ring = None;
    }
}
