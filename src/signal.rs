//! `add_signal_handler` / `remove_signal_handler`: UNIX signals delivered
//! to callbacks on the loop thread (asyncio's "UNIX signals").
//!
//! The OS-level handler is installed with `signal-hook-registry`, which
//! lets several independent parties (several loops, other libraries) hook
//! the same signal. What runs inside the handler is only
//! async-signal-safe work ([`Pending::record`]): two atomic updates and a
//! `write(2)` of 8 bytes to a duplicate of the loop's wake-up eventfd. The
//! eventfd ends the loop's wait in the kernel at once (an io_uring read or
//! an epoll registration on that eventfd, the same path
//! `call_soon_threadsafe` uses; if the handler runs on the loop thread
//! itself, the interrupted `io_uring_enter`/`epoll_wait` returns `EINTR`,
//! which both backends treat as an ordinary wake-up). After the wait, the
//! loop turns each recorded arrival into one call of the user's callback
//! through the ready queue, so callbacks run on the loop thread, in order
//! with other callbacks, as often as the signal arrived (arrivals the
//! kernel itself merges while a signal is pending count once, as in every
//! signal API).
//!
//! Several loops: each loop registers its own action per signal, so a
//! signal wakes every loop (on any thread) that has a handler for it, and
//! each runs its own callback. asyncio allows handlers only on the main
//! thread's loop; ringloop allows them on any loop, because the
//! registration is per loop. The disposition itself is process-wide: the
//! default (`SIG_DFL`) is restored when the *last* loop removes its
//! handler for that signal.
//!
//! Restoring the default: `signal-hook-registry` never uninstalls its
//! OS-level handler (with no action left, a signal would be silently
//! ignored), so the process-wide table below counts the loops that hold a
//! registration per signal, sets `SIG_DFL` when the count drops to zero,
//! and puts the registry's handler back when a loop registers again.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use signal_hook_registry::SigId;

use crate::error::{Error, Result};
use crate::event_loop::{EventLoop, LoopInner};
use crate::exception::ErrorContext;

/// One past the highest signal number on Linux (Python's `signal.NSIG`):
/// valid signal numbers are 1 to 64.
const NSIG: i32 = 65;

/// What the OS-level handler touches: atomics and a descriptor. Shared
/// (through `Arc`) between the loop and its registry actions; the registry
/// drops an action only after every handler still running it returned, so
/// the descriptor outlives every write to it.
struct Pending {
    /// Bit `signum - 1` is set while arrivals of `signum` wait.
    mask: AtomicU64,
    /// Arrivals per signal not yet turned into callbacks.
    counts: [AtomicU32; NSIG as usize],
    /// A duplicate of the loop's wake-up eventfd, owned here so it stays
    /// valid whatever the loop does with its own descriptor.
    wake: OwnedFd,
}

impl Pending {
    fn new(wake_fd: RawFd) -> io::Result<Pending> {
        if wake_fd < 0 {
            return Err(io::Error::other(Error::LoopClosed));
        }
        // SAFETY: F_DUPFD_CLOEXEC only duplicates `wake_fd` (the loop's
        // live eventfd: the loop is not closed); the result is checked.
        let fd = unsafe { libc::fcntl(wake_fd, libc::F_DUPFD_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Pending {
            mask: AtomicU64::new(0),
            counts: std::array::from_fn(|_| AtomicU32::new(0)),
            // SAFETY: fcntl returned a new descriptor that we alone own.
            wake: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Runs inside the signal handler: async-signal-safe work only
    /// (lock-free atomics and `write(2)`; no allocation, no lock).
    fn record(&self, signum: i32) {
        self.counts[signum as usize].fetch_add(1, Ordering::Relaxed);
        self.mask.fetch_or(1 << (signum - 1), Ordering::AcqRel);
        let one: u64 = 1;
        // SAFETY: write(2) is async-signal-safe; `wake` is open for as
        // long as `self` lives (see the type's docs); we pass 8 valid
        // bytes. EAGAIN (counter saturated) still leaves it readable.
        let _ = unsafe { libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Takes the recorded arrivals: `(signum, count)` pairs.
    fn take(&self, out: &mut Vec<(i32, u32)>) {
        if self.mask.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut mask = self.mask.swap(0, Ordering::AcqRel);
        while mask != 0 {
            let signum = mask.trailing_zeros() as i32 + 1;
            mask &= mask - 1;
            let n = self.counts[signum as usize].swap(0, Ordering::AcqRel);
            if n > 0 {
                out.push((signum, n));
            }
        }
    }
}

/// One loop's handler for one signal.
struct Handler {
    id: SigId,
    callback: Rc<RefCell<Box<dyn FnMut()>>>,
    location: &'static Location<'static>,
}

/// A loop's signal handlers (a field of the loop).
#[derive(Default)]
pub(crate) struct Signals {
    /// Present while the loop has at least one handler.
    pending: Option<Arc<Pending>>,
    handlers: HashMap<i32, Handler>,
}

// ----- the process-wide disposition table ---------------------------------

#[derive(Clone, Copy)]
struct Disposition {
    /// Loops holding a registration for this signal.
    loops: usize,
    /// The registry's OS-level action, saved when first seen, to put back
    /// after we restored `SIG_DFL`.
    registry_action: Option<libc::sigaction>,
}

const NO_DISPOSITION: Disposition = Disposition {
    loops: 0,
    registry_action: None,
};

static PROCESS: Mutex<[Disposition; NSIG as usize]> = Mutex::new([NO_DISPOSITION; NSIG as usize]);

fn process() -> MutexGuard<'static, [Disposition; NSIG as usize]> {
    // Only counters and saved actions live here, each updated in one
    // step: a poisoned lock still holds a consistent table.
    PROCESS.lock().unwrap_or_else(|p| p.into_inner())
}

fn get_action(signum: i32) -> io::Result<libc::sigaction> {
    // SAFETY: an all-zero sigaction is a valid value of the C struct.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: a null new action only queries; `act` is valid and writable.
    if unsafe { libc::sigaction(signum, std::ptr::null(), &mut act) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(act)
}

fn set_action(signum: i32, act: &libc::sigaction) -> io::Result<()> {
    // SAFETY: `act` is a valid sigaction (one the kernel returned, or
    // SIG_DFL built by `set_default`); the old action is not asked for.
    if unsafe { libc::sigaction(signum, act, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_default(signum: i32) -> io::Result<()> {
    // SAFETY: an all-zero sigaction is SIG_DFL with no flags and an empty
    // mask.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = libc::SIG_DFL;
    set_action(signum, &act)
}

/// Registers `pending.record(signum)` for `signum` and makes sure the
/// registry's handler is the installed disposition.
fn install(signum: i32, pending: Arc<Pending>) -> io::Result<SigId> {
    let mut table = process();
    let action = move || pending.record(signum);
    // SAFETY: the action is async-signal-safe (see `Pending::record`), and
    // `check_signum` refused the registry's FORBIDDEN signals, for which
    // `register` would panic.
    let id = unsafe { signal_hook_registry::register(signum, action) }?;
    let d = &mut table[signum as usize];
    if d.loops == 0 {
        let installed = match d.registry_action {
            // We restored SIG_DFL earlier; the registry still believes its
            // handler is installed and did not install it again.
            Some(act) => set_action(signum, &act).map(|()| act),
            None => get_action(signum),
        };
        match installed {
            Ok(act) => d.registry_action = Some(act),
            Err(e) => {
                signal_hook_registry::unregister(id);
                return Err(e);
            }
        }
    }
    d.loops += 1;
    Ok(id)
}

/// Unregisters `id`; the last loop to leave restores `SIG_DFL`.
fn uninstall(signum: i32, id: SigId) {
    let mut table = process();
    // Returns after every handler still running the action finished.
    signal_hook_registry::unregister(id);
    let d = &mut table[signum as usize];
    d.loops = d.loops.saturating_sub(1);
    if d.loops == 0 {
        if let Err(e) = set_default(signum) {
            // Cannot happen for a signal we could hook; never silent.
            tracing::error!(target: "ringloop", "restoring SIG_DFL for {}: {e}", name(signum));
        }
    }
}

// ----- validation and names --------------------------------------------------

fn check_signum(signum: i32) -> Result<()> {
    if !(1..NSIG).contains(&signum) {
        return Err(Error::InvalidInput("signal number out of range (1 to 64)"));
    }
    let refused = if signum == libc::SIGKILL || signum == libc::SIGSTOP {
        "cannot be caught"
    } else if signal_hook_registry::FORBIDDEN.contains(&signum) {
        // A synchronous fault: returning from its handler re-runs the
        // faulting instruction, so a deferred callback would never run.
        "is a synchronous fault and cannot be deferred to the loop"
    } else {
        return Ok(());
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("signal {} {refused}", name(signum)),
    )
    .into())
}

/// `SIGINT`, `SIGRTMIN+3`, ... for messages.
fn name(signum: i32) -> String {
    #[rustfmt::skip]
    const NAMES: [&str; 32] = [
        "", "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE",
        "SIGKILL", "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT",
        "SIGCHLD", "SIGCONT", "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU",
        "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGPWR", "SIGSYS",
    ];
    match usize::try_from(signum) {
        Ok(i) if (1..NAMES.len()).contains(&i) => NAMES[i].to_string(),
        _ if signum >= libc::SIGRTMIN() && signum <= libc::SIGRTMAX() => {
            format!("SIGRTMIN+{}", signum - libc::SIGRTMIN())
        }
        _ => format!("signal {signum}"),
    }
}

// ----- the loop side ---------------------------------------------------------

/// Turns recorded arrivals into callbacks on the ready queue; called by the
/// loop once per iteration, after its wait.
#[inline]
pub(crate) fn dispatch(inner: &Rc<LoopInner>) {
    // Most loops have no handler: one check, no call.
    if inner.signals.borrow().pending.is_some() {
        dispatch_pending(inner);
    }
}

fn dispatch_pending(inner: &Rc<LoopInner>) {
    let mut fired = Vec::new();
    let signals = inner.signals.borrow();
    let Some(pending) = &signals.pending else {
        return;
    };
    pending.take(&mut fired);
    let scheduled: Vec<(i32, u32, &'static Location<'static>)> = fired
        .into_iter()
        .filter_map(|(signum, n)| {
            signals
                .handlers
                .get(&signum)
                .map(|h| (signum, n, h.location))
        })
        .collect();
    drop(signals);
    for (signum, n, location) in scheduled {
        for _ in 0..n {
            let weak = Rc::downgrade(inner);
            // Only fails once the loop is closed, when nothing runs any more.
            let _ = inner.call_soon_boxed(Box::new(move || run_handler(&weak, signum)), location);
        }
    }
}

/// Runs the loop's current handler for `signum`, if it still has one (a
/// handler removed after the signal arrived does not run; a replaced one
/// runs in its new form). A panic goes to the exception handler.
fn run_handler(weak: &Weak<LoopInner>, signum: i32) {
    let Some(inner) = weak.upgrade() else {
        return;
    };
    let current = inner
        .signals
        .borrow()
        .handlers
        .get(&signum)
        .map(|h| (h.callback.clone(), h.location));
    let Some((callback, location)) = current else {
        return;
    };
    let ran = catch_unwind(AssertUnwindSafe(|| {
        // A callback cannot re-enter itself (it runs only from the ready
        // queue), so this borrow is never contended.
        if let Ok(mut f) = callback.try_borrow_mut() {
            f();
        }
    }));
    if let Err(payload) = ran {
        let mut ctx =
            ErrorContext::new(format!("Exception in signal handler for {}", name(signum)))
                .with_error(Error::from_panic(&*payload));
        ctx.handle = Some(format!(
            "<signal handler {} added at {location}>",
            name(signum)
        ));
        ctx.location = Some(location);
        EventLoop::from_inner(inner).call_exception_handler(&ctx);
    }
}

/// Removes every handler of the loop (on close and on drop).
pub(crate) fn remove_all(inner: &LoopInner) {
    let handlers = {
        let mut signals = inner.signals.borrow_mut();
        signals.pending = None;
        std::mem::take(&mut signals.handlers)
    };
    for (signum, h) in &handlers {
        uninstall(*signum, h.id);
    }
    // The callbacks drop here, outside every borrow.
    drop(handlers);
}

impl EventLoop {
    /// Calls `callback` on the loop thread each time signal `signum`
    /// arrives (`loop.add_signal_handler`). Arguments are captured by the
    /// closure. A second call for the same signal replaces the callback.
    ///
    /// The OS-level handler only records the arrival and wakes the loop
    /// (at once, even while it waits in the kernel); the callback then runs
    /// through the ready queue like a [`call_soon`](Self::call_soon)
    /// callback, once per arrival. A panic in it goes to the exception
    /// handler and the loop goes on.
    ///
    /// Any loop, on any thread, may add handlers: each loop that has a
    /// handler for a signal is woken and runs its own callback. The
    /// disposition is process-wide: while any loop has a handler, the
    /// signal no longer has its default action (so `SIGINT` no longer ends
    /// the process).
    ///
    /// Errors: a number outside 1 to 64 is [`Error::InvalidInput`];
    /// `SIGKILL` and `SIGSTOP` (which cannot be caught), and the
    /// synchronous faults `SIGILL`, `SIGFPE`, `SIGSEGV` are refused with an
    /// [`Error::Io`] of kind `InvalidInput`, as is a number the C library
    /// reserves for itself (32, 33); [`Error::LoopClosed`] after
    /// [`close`](Self::close).
    ///
    /// # Example
    ///
    /// ```
    /// let lp = ringloop::EventLoop::new()?;
    /// let l = lp.clone();
    /// lp.add_signal_handler(libc::SIGUSR1, move || {
    ///     println!("got SIGUSR1");
    ///     l.stop();
    /// })?;
    /// // SAFETY: kill(2) on our own process, with a handled signal.
    /// unsafe { libc::kill(libc::getpid(), libc::SIGUSR1) };
    /// lp.run_forever()?;
    /// assert!(lp.remove_signal_handler(libc::SIGUSR1));
    /// lp.close()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn add_signal_handler<F>(&self, signum: i32, callback: F) -> Result<()>
    where
        F: FnMut() + 'static,
    {
        let location = Location::caller();
        check_signum(signum)?;
        if self.is_closed() {
            return Err(Error::LoopClosed);
        }
        let callback: Rc<RefCell<Box<dyn FnMut()>>> = Rc::new(RefCell::new(Box::new(callback)));
        let inner = self.inner();
        let mut signals = inner.signals.borrow_mut();
        if let Some(h) = signals.handlers.get_mut(&signum) {
            h.location = location;
            let old = std::mem::replace(&mut h.callback, callback);
            drop(signals);
            // The old callback drops outside the borrow.
            drop(old);
            return Ok(());
        }
        let pending = match &signals.pending {
            Some(p) => p.clone(),
            None => Arc::new(Pending::new(inner.shared.wake_fd())?),
        };
        let id = install(signum, pending.clone())?;
        signals.pending = Some(pending);
        signals.handlers.insert(
            signum,
            Handler {
                id,
                callback,
                location,
            },
        );
        Ok(())
    }

    /// Removes the handler for `signum` and restores the signal's default
    /// action (`SIG_DFL`) unless another loop still handles it
    /// (`loop.remove_signal_handler`). Returns false if this loop had no
    /// handler for `signum` (an invalid number included). An arrival
    /// recorded but not yet run is dropped with the handler.
    pub fn remove_signal_handler(&self, signum: i32) -> bool {
        let (removed, pending) = {
            let mut signals = self.inner().signals.borrow_mut();
            let removed = signals.handlers.remove(&signum);
            if signals.handlers.is_empty() {
                signals.pending = None;
            }
            (removed, signals.pending.clone())
        };
        let Some(h) = removed else {
            return false;
        };
        uninstall(signum, h.id);
        if let Some(p) = pending {
            // No handler runs the removed action any more: forget what it
            // recorded, so a later handler does not see stale arrivals.
            p.counts[signum as usize].store(0, Ordering::Release);
        }
        true
    }
}
