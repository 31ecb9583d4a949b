//! `LoopHandle`: the part of a loop other threads may touch.
//!
//! Everything that crosses threads goes through one mutex-guarded queue
//! plus an eventfd: `call_soon_threadsafe` callbacks, task wake-ups from
//! foreign threads, executor results. A push writes the eventfd only when
//! no wake-up is already pending, so a burst of pushes costs one write and
//! one completion.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, Result};

/// Work handed to the loop from another thread.
pub(crate) enum Remote {
    /// A `call_soon_threadsafe` callback.
    Callback {
        f: Box<dyn FnOnce() + Send>,
        cancelled: Arc<AtomicBool>,
        location: &'static Location<'static>,
    },
    /// Wake the task in this slot, if it is still the task with this id.
    WakeTask(usize, u64),
}

struct Queue {
    items: Vec<Remote>,
    /// `None` once the loop is closed.
    wake_fd: Option<OwnedFd>,
}

/// State shared between the loop thread and its `LoopHandle`s.
pub(crate) struct Shared {
    pub(crate) id: usize,
    queue: Mutex<Queue>,
    /// True while a wake-up is pending (eventfd written, not yet drained).
    notified: AtomicBool,
    /// Mirrors "wake_fd is None", readable without the lock.
    closed: AtomicBool,
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

impl Shared {
    pub(crate) fn new() -> io::Result<Arc<Shared>> {
        // SAFETY: plain syscall, no pointers; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: eventfd returned a new descriptor we alone own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Arc::new(Shared {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            queue: Mutex::new(Queue {
                items: Vec::new(),
                wake_fd: Some(fd),
            }),
            notified: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding this lock cannot leave the queue
        // inconsistent (pushes and takes only), so poisoning is ignored.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The eventfd the driver reads (valid until `close`).
    pub(crate) fn wake_fd(&self) -> RawFd {
        self.lock().wake_fd.as_ref().map_or(-1, |f| f.as_raw_fd())
    }

    /// Queues work for the loop and wakes it. Fails once the loop is
    /// closed.
    pub(crate) fn push(&self, item: Remote) -> Result<()> {
        let mut q = self.lock();
        let Some(fd) = q.wake_fd.as_ref().map(|f| f.as_raw_fd()) else {
            return Err(Error::LoopClosed);
        };
        q.items.push(item);
        if !self.notified.swap(true, Ordering::AcqRel) {
            wake(fd);
        }
        Ok(())
    }

    /// Wakes the loop without queuing anything (`LoopHandle::wake`).
    pub(crate) fn wake(&self) {
        let q = self.lock();
        if let Some(fd) = q.wake_fd.as_ref() {
            if !self.notified.swap(true, Ordering::AcqRel) {
                wake(fd.as_raw_fd());
            }
        }
    }

    /// Takes everything queued. Clears the pending-wake flag first, so a
    /// push racing with the drain always writes the eventfd again.
    pub(crate) fn drain(&self, out: &mut Vec<Remote>) {
        self.notified.store(false, Ordering::Release);
        let mut q = self.lock();
        out.append(&mut q.items);
    }

    /// True if anything is queued (cheap check for the poll timeout).
    pub(crate) fn has_pending(&self) -> bool {
        self.notified.load(Ordering::Acquire)
    }

    /// Closes the eventfd and refuses further pushes; returns what was
    /// still queued so the caller can drop it outside the lock.
    pub(crate) fn close(&self) -> Vec<Remote> {
        let mut q = self.lock();
        self.closed.store(true, Ordering::Release);
        q.wake_fd = None;
        std::mem::take(&mut q.items)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

fn wake(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: `fd` is the live eventfd (the caller holds the queue lock,
    // which `close` takes before dropping it); we pass a pointer to 8
    // valid bytes. EAGAIN (counter saturated) still leaves it readable.
    let _ = unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
}

/// A `Send + Sync + Clone` handle to an event loop, for other threads.
///
/// # Example
///
/// ```
/// let lp = ringloop::EventLoop::new()?;
/// let handle = lp.handle();
/// let t = std::thread::spawn(move || {
///     handle.call_soon_threadsafe(|| println!("on the loop thread")).unwrap();
/// });
/// t.join().unwrap();
/// lp.run_until_complete(async {})?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct LoopHandle {
    pub(crate) shared: Arc<Shared>,
}

impl LoopHandle {
    /// Schedules `f` to run on the loop thread, from any thread, and wakes
    /// the loop if it is waiting (`loop.call_soon_threadsafe`).
    ///
    /// Fails with [`Error::LoopClosed`] once the loop is closed.
    #[track_caller]
    pub fn call_soon_threadsafe<F>(&self, f: F) -> Result<RemoteHandle>
    where
        F: FnOnce() + Send + 'static,
    {
        let cancelled = Arc::new(AtomicBool::new(false));
        let location = Location::caller();
        // On the loop's own thread, straight to the ready queue, as
        // asyncio's `call_soon_threadsafe` is `call_soon` plus a wake-up:
        // in order with the `call_soon`s around it.
        let mut f = Some(f);
        let c = cancelled.clone();
        let local = crate::event_loop::with_local(self.shared.id, |lp| {
            let f = f.take();
            lp.call_soon_boxed(
                Box::new(move || {
                    if let Some(f) = f.filter(|_| !c.load(Ordering::Acquire)) {
                        f();
                    }
                }),
                location,
            )
        });
        match (local, f) {
            (Some(scheduled), _) => scheduled.map(|_| ())?,
            (None, Some(f)) => self.shared.push(Remote::Callback {
                f: Box::new(f),
                cancelled: cancelled.clone(),
                location,
            })?,
            (None, None) => {}
        }
        Ok(RemoteHandle { cancelled })
    }

    /// Stops the loop from another thread: schedules
    /// [`EventLoop::stop`](crate::EventLoop::stop) on the loop thread.
    pub fn stop(&self) -> Result<()> {
        self.call_soon_threadsafe(|| {
            if let Ok(lp) = crate::get_running_loop() {
                lp.stop();
            }
        })
        .map(|_| ())
    }

    /// Wakes the loop if it is waiting in the kernel.
    pub fn wake(&self) {
        self.shared.wake();
    }

    /// True once the loop is closed.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }
}

impl fmt::Debug for LoopHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LoopHandle(loop #{})", self.shared.id)
    }
}

/// The handle of a callback scheduled from another thread
/// (`asyncio.Handle` returned by `call_soon_threadsafe`); `Send + Sync`.
#[derive(Clone, Debug)]
pub struct RemoteHandle {
    cancelled: Arc<AtomicBool>,
}

impl RemoteHandle {
    /// Cancels the callback if it has not run yet.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
    }

    /// True if [`cancel`](Self::cancel) was called.
    pub fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }
}
