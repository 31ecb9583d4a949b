//! `EventLoop`: running and stopping, scheduling, the iteration itself.
//!
//! One iteration ([`EventLoop::run_once`]), exactly as asyncio's
//! `_run_once`:
//!
//! 1. take what other threads queued;
//! 2. the poll timeout is 0 if a callback is ready or the loop is stopping,
//!    else the time to the nearest live timer, else infinite;
//! 3. submit every queued operation and wait, in one `io_uring_enter`;
//!    completions wake their tasks (which queues their next step), and
//!    signals recorded since the last wait queue their handlers;
//! 4. move every timer with `when < now + clock resolution` to the ready
//!    queue (so no timer fires early, and none spins the loop);
//! 5. run exactly the callbacks that were ready when step 5 began; what
//!    they schedule runs next iteration.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use slab::Slab;

use crate::builder::EventLoopBuilder;
use crate::debug;
use crate::driver::{Backend, Driver, Wake};
use crate::error::{Error, Result};
use crate::exception::{default_exception_handler, ErrorContext, ExceptionHandler};
use crate::executor::Executor;
use crate::future::LoopFuture;
use crate::handle::{Callback, Handle, HandleCell, TimerHandle, TimerMeta};
use crate::task::{self, Task, TaskCore, TaskFactory};
use crate::threadsafe::{LoopHandle, Remote, Shared};
use crate::timers::TimerQueue;

/// The longest single wait (asyncio's `MAXIMUM_SELECT_TIMEOUT`, 24 h).
const MAX_WAIT: f64 = 24.0 * 3600.0;

thread_local! {
    /// The loop running on this thread, if any.
    static RUNNING: RefCell<Option<Rc<LoopInner>>> = const { RefCell::new(None) };
    /// Every loop made on this thread (by `Shared` id), running or not:
    /// a wake-up or `call_soon_threadsafe` made on a loop's own thread
    /// goes straight to its ready queue, in order with `call_soon`,
    /// rather than through the thread-safe queue.
    static LOCAL: RefCell<Vec<(usize, Weak<LoopInner>)>> = const { RefCell::new(Vec::new()) };
}

/// Records `inner` as made on this thread (see `LOCAL`).
fn register_local(inner: &Rc<LoopInner>) {
    let _ = LOCAL.try_with(|l| {
        let mut l = l.borrow_mut();
        l.retain(|(_, w)| w.strong_count() > 0);
        l.push((inner.shared.id, Rc::downgrade(inner)));
    });
}

/// Calls `f` with the loop whose `Shared` id is `id` if it lives on this
/// thread (and is not closed).
#[inline]
pub(crate) fn with_local<R>(id: usize, f: impl FnOnce(&Rc<LoopInner>) -> R) -> Option<R> {
    // The running loop, without touching its reference count: the path
    // of nearly every wake-up.
    let mut f = Some(f);
    let ran = RUNNING
        .try_with(|r| match r.borrow().as_ref() {
            Some(lp) if lp.shared.id == id && !lp.closed.get() => f.take().map(|f| f(lp)),
            _ => None,
        })
        .ok()
        .flatten();
    match (ran, f) {
        (Some(r), _) => Some(r),
        (None, Some(f)) => with_idle_local(id, f),
        (None, None) => None,
    }
}

/// [`with_local`] for a loop of this thread that is not running.
#[cold]
fn with_idle_local<R>(id: usize, f: impl FnOnce(&Rc<LoopInner>) -> R) -> Option<R> {
    let lp = LOCAL
        .try_with(|l| {
            l.borrow()
                .iter()
                .find(|(i, _)| *i == id)
                .and_then(|(_, w)| w.upgrade())
        })
        .ok()
        .flatten()?;
    if lp.closed.get() {
        return None;
    }
    Some(f(&lp))
}

/// Calls `f` with the loop running on this thread, if any.
pub(crate) fn with_running<R>(f: impl FnOnce(&Rc<LoopInner>) -> R) -> Option<R> {
    RUNNING
        .try_with(|r| r.borrow().as_ref().map(f))
        .ok()
        .flatten()
}

/// Seconds on `CLOCK_MONOTONIC`, as asyncio's `time.monotonic()`.
pub(crate) fn monotonic() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always
    // exists on Linux, so the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn clock_resolution() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: as in `monotonic`.
    unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC, &mut ts) };
    let res = ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9;
    if res > 0.0 {
        res
    } else {
        1e-9
    }
}

/// The loop's state, shared by every `EventLoop` clone.
pub(crate) struct LoopInner {
    pub(crate) ready: RefCell<VecDeque<Rc<dyn Callback>>>,
    pub(crate) timers: RefCell<TimerQueue>,
    pub(crate) driver: Rc<RefCell<Driver>>,
    pub(crate) tasks: RefCell<Slab<Rc<TaskCore>>>,
    task_ids: Cell<u64>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) task_factory: RefCell<Option<TaskFactory>>,
    pub(crate) exception_handler: RefCell<Option<ExceptionHandler>>,
    pub(crate) executor: RefCell<Option<Arc<dyn Executor>>>,
    pub(crate) debug: Cell<bool>,
    pub(crate) slow_callback: Cell<Duration>,
    running: Cell<bool>,
    stopping: Cell<bool>,
    closed: Cell<bool>,
    clock_resolution: f64,
    remote_buf: RefCell<Vec<Remote>>,
    waker_buf: RefCell<Vec<Wake>>,
    /// Buffers for transports' single-shot receives (transport/recv_pool.rs).
    pub(crate) recv_pool: Rc<crate::transport::recv_pool::RecvPool>,
    backend_reason: String,
    /// `add_reader`/`add_writer` registrations.
    pub(crate) watchers: RefCell<crate::watch::Watchers>,
    /// `add_signal_handler` registrations.
    pub(crate) signals: RefCell<crate::signal::Signals>,
    /// Transports written to outside their pump, sent at the end of the
    /// iteration (see `flush.rs`).
    pub(crate) flush: crate::flush::FlushQueue,
}

impl LoopInner {
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// `call_soon` for an already boxed callback.
    pub(crate) fn call_soon_boxed(
        &self,
        f: Box<dyn FnOnce()>,
        location: &'static Location<'static>,
    ) -> Result<Handle> {
        if self.closed.get() {
            return Err(Error::LoopClosed);
        }
        let cb: Rc<dyn Callback> = Rc::new(HandleCell::new(f, location, None));
        self.ready.borrow_mut().push_back(cb.clone());
        Ok(Handle { inner: cb })
    }

    /// Queues the next step of the task in slot `key`, if that slot still
    /// holds task `id` (a stale waker of a finished task is ignored).
    pub(crate) fn schedule_task(&self, key: usize, id: u64) {
        let task = self.tasks.borrow().get(key).cloned();
        if let Some(task) = task.filter(|t| t.id == id) {
            task.schedule(self);
        }
    }

    pub(crate) fn next_task_id(&self) -> u64 {
        let id = self.task_ids.get() + 1;
        self.task_ids.set(id);
        id
    }

    /// Releases everything: callbacks, timers, tasks, in-flight
    /// operations, the ring, the eventfd, the default executor.
    fn shutdown(&self) {
        self.closed.set(true);
        crate::signal::remove_all(self);
        let ready = std::mem::take(&mut *self.ready.borrow_mut());
        drop(ready);
        self.flush.clear();
        let timers = self.timers.borrow_mut().clear();
        drop(timers);
        // Tasks' futures may own operations; dropping them cancels those.
        let tasks: Vec<Rc<TaskCore>> = self.tasks.borrow_mut().drain().collect();
        for t in &tasks {
            t.abort_on_close();
        }
        drop(tasks);
        let mut wakers = Vec::new();
        self.driver.borrow_mut().shutdown(&mut wakers);
        drop(wakers);
        let leftovers = self.shared.close();
        drop(leftovers);
        let watchers = std::mem::take(&mut *self.watchers.borrow_mut());
        drop(watchers);
        let exec = self.executor.borrow_mut().take();
        if let Some(exec) = exec {
            exec.shutdown(false);
        }
        *self.task_factory.borrow_mut() = None;
        *self.exception_handler.borrow_mut() = None;
    }
}

impl Drop for LoopInner {
    fn drop(&mut self) {
        if !self.closed.get() {
            self.shutdown();
        }
    }
}

/// The event loop (asyncio's `AbstractEventLoop`).
///
/// Single-threaded: `EventLoop` is `!Send`, and clones share one loop.
/// Other threads use a [`LoopHandle`]. Close the loop with
/// [`close`](Self::close) (or use [`crate::run`], which does): closing
/// drops pending callbacks and tasks, cancels in-flight I/O and releases
/// every descriptor; callbacks that capture the loop keep it alive until
/// then.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// let lp = ringloop::EventLoop::new()?;
/// let stopper = lp.clone();
/// lp.call_soon(|| println!("Hello World"))?;
/// lp.call_later(Duration::from_millis(10), move || stopper.stop())?;
/// lp.run_forever()?;
/// lp.close()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct EventLoop {
    inner: Rc<LoopInner>,
}

impl fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<EventLoop #{} backend={} running={} closed={} debug={}>",
            self.inner.shared.id,
            self.backend(),
            self.is_running(),
            self.is_closed(),
            self.get_debug()
        )
    }
}

impl PartialEq for EventLoop {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }
}

impl EventLoop {
    /// A new loop with default settings (backend chosen automatically,
    /// honouring `RINGLOOP_BACKEND`).
    pub fn new() -> std::io::Result<EventLoop> {
        EventLoopBuilder::new().build()
    }

    /// A builder for a loop with custom settings.
    pub fn builder() -> EventLoopBuilder {
        EventLoopBuilder::new()
    }

    pub(crate) fn from_parts(
        driver: Driver,
        shared: Arc<Shared>,
        debug: bool,
        backend_reason: String,
    ) -> EventLoop {
        let lp = EventLoop {
            inner: Rc::new(LoopInner {
                ready: RefCell::new(VecDeque::with_capacity(1024)),
                timers: RefCell::new(TimerQueue::new()),
                driver: Rc::new(RefCell::new(driver)),
                tasks: RefCell::new(Slab::new()),
                task_ids: Cell::new(0),
                shared,
                task_factory: RefCell::new(None),
                exception_handler: RefCell::new(None),
                executor: RefCell::new(None),
                debug: Cell::new(debug),
                slow_callback: Cell::new(debug::DEFAULT_SLOW_CALLBACK),
                running: Cell::new(false),
                stopping: Cell::new(false),
                closed: Cell::new(false),
                clock_resolution: clock_resolution(),
                remote_buf: RefCell::new(Vec::new()),
                waker_buf: RefCell::new(Vec::new()),
                recv_pool: Rc::default(),
                backend_reason,
                watchers: RefCell::new(std::collections::HashMap::new()),
                signals: RefCell::default(),
                flush: crate::flush::FlushQueue::default(),
            }),
        };
        register_local(&lp.inner);
        lp
    }

    pub(crate) fn from_inner(inner: Rc<LoopInner>) -> EventLoop {
        EventLoop { inner }
    }

    pub(crate) fn inner(&self) -> &Rc<LoopInner> {
        &self.inner
    }

    pub(crate) fn downgrade(&self) -> Weak<LoopInner> {
        Rc::downgrade(&self.inner)
    }

    /// The backend this loop runs on.
    pub fn backend(&self) -> Backend {
        self.inner.driver.borrow().backend()
    }

    /// Which backend runs and why, e.g. `"io_uring, chosen
    /// automatically"` or `"epoll, because io_uring is unavailable:
    /// io_uring_setup: EPERM (blocked by seccomp, ...)"`.
    pub fn backend_reason(&self) -> &str {
        &self.inner.backend_reason
    }

    /// What the kernel offered when this loop's ring was set up; `None` on
    /// a backend that is not io_uring. The same set is logged once per
    /// process with `tracing` at `info` level.
    pub fn kernel_features(&self) -> Option<crate::KernelFeatures> {
        self.inner.driver.borrow().kernel_features().cloned()
    }

    /// A thread-safe handle for scheduling from other threads.
    pub fn handle(&self) -> LoopHandle {
        LoopHandle {
            shared: self.inner.shared.clone(),
        }
    }

    // ----- running and stopping -------------------------------------

    fn check_closed(&self) -> Result<()> {
        if self.inner.closed.get() {
            Err(Error::LoopClosed)
        } else {
            Ok(())
        }
    }

    fn check_not_running(&self) -> Result<()> {
        if self.inner.running.get() {
            return Err(Error::LoopRunning);
        }
        if with_running(|_| ()).is_some() {
            // Another loop runs in this thread.
            return Err(Error::LoopRunning);
        }
        Ok(())
    }

    /// Runs until [`stop`](Self::stop) is called (`loop.run_forever`).
    ///
    /// If `stop` was called before, polls once with a zero timeout, runs
    /// what is ready, and returns. Errors: [`Error::LoopClosed`],
    /// [`Error::LoopRunning`] (this or another loop already runs in this
    /// thread), or an I/O error from the backend.
    pub fn run_forever(&self) -> Result<()> {
        self.check_closed()?;
        self.check_not_running()?;
        let _guard = RunningGuard::enter(&self.inner, true);
        loop {
            self.iterate()?;
            if self.inner.stopping.get() {
                break;
            }
        }
        Ok(())
    }

    /// Runs until `future` completes and returns its output
    /// (`loop.run_until_complete`). The future is wrapped in a task.
    ///
    /// Returns [`Error::StoppedBeforeComplete`] if the loop is stopped
    /// first (the task stays scheduled), [`Error::Cancelled`] or
    /// [`Error::Panicked`] if the task ended that way.
    #[track_caller]
    pub fn run_until_complete<F>(&self, future: F) -> Result<F::Output>
    where
        F: Future + 'static,
    {
        self.check_closed()?;
        self.check_not_running()?;
        let task = self.create_task(future)?;
        // asyncio removes this callback when run_until_complete returns;
        // disarming it does the same: a task that finishes during a later
        // run must not stop that run.
        let armed = Rc::new(Cell::new(true));
        let (weak, flag) = (self.downgrade(), armed.clone());
        task.add_done_callback(move || {
            if let (true, Some(inner)) = (flag.get(), weak.upgrade()) {
                inner.stopping.set(true);
            }
        });
        let ran = self.run_forever();
        armed.set(false);
        ran?;
        if !task.done() {
            return Err(Error::StoppedBeforeComplete);
        }
        task.take_result().unwrap_or(Err(Error::InvalidState(
            "the task's result was already taken",
        )))
    }

    /// Runs one iteration of the loop (see the module docs), as the running
    /// loop of this thread for its duration. Public for embedding the loop
    /// in another event system; most code wants
    /// [`run_forever`](Self::run_forever). It does not reset a pending
    /// `stop()`, which only makes its wait zero.
    pub fn run_once(&self) -> Result<()> {
        self.check_closed()?;
        self.check_not_running()?;
        let _guard = RunningGuard::enter(&self.inner, false);
        self.iterate()
    }

    /// One iteration; the caller marked the loop running.
    fn iterate(&self) -> Result<()> {
        let inner = &*self.inner;
        self.drain_remote();
        // Always: compacts the timer heap and drops cancelled heads, as
        // asyncio does at the start of every iteration.
        let next_deadline = inner.timers.borrow_mut().next_deadline();
        let has_ready = !inner.ready.borrow().is_empty();
        let stopping = inner.stopping.get();
        let timeout = if has_ready || stopping {
            Some(Duration::ZERO)
        } else {
            match next_deadline {
                Some(when) => {
                    let secs = (when - self.time()).clamp(0.0, MAX_WAIT);
                    // Round up so the wait never ends before the deadline.
                    Some(Duration::from_nanos((secs * 1e9).ceil() as u64))
                }
                None => None,
            }
        };
        let mut wakers = std::mem::take(&mut *inner.waker_buf.borrow_mut());
        // A stopping loop's last iteration always checks for I/O (asyncio's
        // `run_forever` after `stop`).
        let deferrable = has_ready && !stopping;
        let polled = inner
            .driver
            .borrow_mut()
            .poll(timeout, deferrable, &mut wakers);
        for w in wakers.drain(..) {
            match w {
                Wake::Task(t) => inner.schedule_task(t.key, t.id),
                Wake::Waker(w) => w.wake(),
                Wake::Flush(f) => {
                    if let Some(f) = f.upgrade() {
                        f.enqueue(&inner.flush);
                    }
                }
                Wake::Deliver(d) => {
                    if let Some(d) = d.upgrade() {
                        d.schedule_delivery(inner);
                    }
                }
            }
        }
        *inner.waker_buf.borrow_mut() = wakers;
        polled?;
        self.drain_remote();
        crate::signal::dispatch(&self.inner);

        // No timer, no clock read (most iterations of a busy server).
        if inner.timers.borrow().len() > 0 {
            let end_time = self.time() + inner.clock_resolution;
            let mut timers = inner.timers.borrow_mut();
            let mut ready = inner.ready.borrow_mut();
            timers.pop_due(end_time, &mut ready);
        }

        let ntodo = inner.ready.borrow().len();
        for _ in 0..ntodo {
            let Some(cb) = inner.ready.borrow_mut().pop_front() else {
                break;
            };
            if cb.cancelled() {
                continue;
            }
            self.run_callback(&*cb);
        }
        // What the callbacks wrote leaves in the next submission, not an
        // iteration later.
        inner.flush.run();
        Ok(())
    }

    /// Takes what other threads queued (callbacks, task wake-ups).
    #[inline]
    fn drain_remote(&self) {
        // One atomic load when nothing came (most iterations).
        if self.inner.shared.has_pending() {
            self.drain_remote_queue();
        }
    }

    fn drain_remote_queue(&self) {
        let inner = &*self.inner;
        let mut buf = std::mem::take(&mut *inner.remote_buf.borrow_mut());
        inner.shared.drain(&mut buf);
        for item in buf.drain(..) {
            match item {
                Remote::Callback {
                    f,
                    cancelled,
                    location,
                } => {
                    let run = move || {
                        if !cancelled.load(std::sync::atomic::Ordering::Acquire) {
                            f();
                        }
                    };
                    let cb: Rc<dyn Callback> = Rc::new(HandleCell::new(run, location, None));
                    inner.ready.borrow_mut().push_back(cb);
                }
                Remote::WakeTask(key, id) => inner.schedule_task(key, id),
            }
        }
        *inner.remote_buf.borrow_mut() = buf;
    }

    fn run_callback(&self, cb: &dyn Callback) {
        let started = self.inner.debug.get().then(Instant::now);
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| cb.run())) {
            let mut ctx = ErrorContext::new(format!("Exception in callback {}", cb.describe()))
                .with_error(Error::from_panic(&*payload));
            ctx.handle = Some(cb.describe());
            ctx.location = Some(cb.location());
            self.call_exception_handler(&ctx);
        }
        if let Some(started) = started {
            let took = started.elapsed();
            if took >= self.inner.slow_callback.get() {
                debug::report_slow_callback(&cb.describe(), cb.location(), took);
            }
        }
    }

    /// Stops the loop (`loop.stop`): a running loop finishes the current
    /// batch of callbacks and returns from `run_forever`; callbacks that
    /// batch scheduled run on the next `run_forever`. Called before
    /// `run_forever`, the next run polls once and returns.
    pub fn stop(&self) {
        self.inner.stopping.set(true);
    }

    /// True while `run_forever` or `run_until_complete` runs.
    pub fn is_running(&self) -> bool {
        self.inner.running.get()
    }

    /// True once [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.get()
    }

    /// Closes the loop (`loop.close`): pending callbacks are dropped,
    /// pending tasks are dropped (their in-flight I/O is cancelled), the
    /// default executor is shut down without waiting, every descriptor
    /// the loop owns is released, and the loop's signal handlers are
    /// removed. Idempotent; an error while the loop runs.
    pub fn close(&self) -> Result<()> {
        if self.inner.running.get() {
            return Err(Error::CloseWhileRunning);
        }
        if self.inner.closed.get() {
            return Ok(());
        }
        self.inner.shutdown();
        Ok(())
    }

    // ----- scheduling ------------------------------------------------

    /// Schedules `f` to run on the next iteration, after every callback
    /// scheduled before it (`loop.call_soon`).
    #[track_caller]
    pub fn call_soon<F>(&self, f: F) -> Result<Handle>
    where
        F: FnOnce() + 'static,
    {
        self.check_closed()?;
        let cb: Rc<dyn Callback> = Rc::new(HandleCell::new(f, Location::caller(), None));
        self.inner.ready.borrow_mut().push_back(cb.clone());
        Ok(Handle { inner: cb })
    }

    /// Schedules `f` to run after `delay` (`loop.call_later`).
    ///
    /// A zero delay still goes through the timer queue. For a deadline in
    /// the past, use [`call_at`](Self::call_at).
    #[track_caller]
    pub fn call_later<F>(&self, delay: Duration, f: F) -> Result<TimerHandle>
    where
        F: FnOnce() + 'static,
    {
        let when = self.time() + delay.as_secs_f64();
        self.call_at_inner(when, f, Location::caller())
    }

    /// Schedules `f` to run at `when` on the loop's clock
    /// ([`time`](Self::time)) (`loop.call_at`). A deadline in the past
    /// fires on the next iteration; timers fire in deadline order, equal
    /// deadlines in scheduling order. NaN is an invalid-input error.
    #[track_caller]
    pub fn call_at<F>(&self, when: f64, f: F) -> Result<TimerHandle>
    where
        F: FnOnce() + 'static,
    {
        self.call_at_inner(when, f, Location::caller())
    }

    pub(crate) fn call_at_inner<F>(
        &self,
        when: f64,
        f: F,
        location: &'static Location<'static>,
    ) -> Result<TimerHandle>
    where
        F: FnOnce() + 'static,
    {
        self.check_closed()?;
        if when.is_nan() {
            return Err(Error::InvalidInput("the deadline is NaN"));
        }
        let mut timers = self.inner.timers.borrow_mut();
        let meta = TimerMeta {
            when,
            scheduled: std::cell::Cell::new(false),
            cancelled_in_heap: timers.cancel_counter(),
        };
        let cb: Rc<dyn Callback> = Rc::new(HandleCell::new(f, location, Some(meta)));
        timers.push(cb.clone());
        Ok(TimerHandle { inner: cb })
    }

    /// The loop's clock: seconds on `CLOCK_MONOTONIC` (`loop.time`).
    pub fn time(&self) -> f64 {
        monotonic()
    }

    /// Number of timers queued, cancelled ones included (for diagnostics
    /// and tests of lazy cancellation).
    pub fn scheduled_timers(&self) -> (usize, usize) {
        let t = self.inner.timers.borrow();
        (t.len(), t.cancelled_len())
    }

    // ----- futures and tasks ------------------------------------------

    /// A new future bound to this loop (`loop.create_future`). Done with
    /// an error nobody looks at (`result`, `exception`, `take_result`,
    /// awaiting), it is reported to the exception handler when its last
    /// handle goes ("Future exception was never retrieved").
    #[track_caller]
    pub fn create_future<T: 'static>(&self) -> LoopFuture<T> {
        LoopFuture::new(self.downgrade())
    }

    /// Wraps `future` in a task and schedules its first step
    /// (`loop.create_task`). The task factory, if set, sees the future
    /// first. [`Error::LoopClosed`] after `close`.
    #[track_caller]
    pub fn create_task<F>(&self, future: F) -> Result<Task<F::Output>>
    where
        F: Future + 'static,
    {
        task::spawn(self, future)
    }

    /// Sets (or with `None` removes) the task factory
    /// (`loop.set_task_factory`).
    pub fn set_task_factory(&self, factory: Option<TaskFactory>) {
        *self.inner.task_factory.borrow_mut() = factory;
    }

    /// The task factory, if any (`loop.get_task_factory`).
    pub fn get_task_factory(&self) -> Option<TaskFactory> {
        self.inner.task_factory.borrow().clone()
    }

    /// Number of I/O operations the kernel still owns (in flight, or
    /// cancelled and awaiting their final completion).
    pub fn in_flight_ops(&self) -> usize {
        self.inner.driver.borrow().in_flight()
    }

    /// Number of tasks not yet finished.
    pub fn pending_tasks(&self) -> usize {
        self.inner.tasks.borrow().len()
    }

    /// Requests cancellation of every unfinished task; returns how many.
    pub fn cancel_all_tasks(&self) -> usize {
        let tasks: Vec<Rc<TaskCore>> = self
            .inner
            .tasks
            .borrow()
            .iter()
            .map(|(_, t)| t.clone())
            .collect();
        let mut n = 0;
        for t in tasks {
            if crate::task::TaskHandle::from_core(t).cancel() {
                n += 1;
            }
        }
        n
    }

    // ----- errors ------------------------------------------------------

    /// Sets the handler for errors nobody awaits
    /// (`loop.set_exception_handler`); `None` restores the default.
    pub fn set_exception_handler(&self, handler: Option<ExceptionHandler>) {
        *self.inner.exception_handler.borrow_mut() = handler;
    }

    /// The custom exception handler, if one is set
    /// (`loop.get_exception_handler`).
    pub fn get_exception_handler(&self) -> Option<ExceptionHandler> {
        self.inner.exception_handler.borrow().clone()
    }

    /// The default handler: logs the context with `tracing`
    /// (`loop.default_exception_handler`).
    pub fn default_exception_handler(&self, context: &ErrorContext) {
        default_exception_handler(context);
    }

    /// Reports `context` to the exception handler
    /// (`loop.call_exception_handler`). A panic in a custom handler is
    /// caught and logged by the default handler, with the original
    /// context.
    pub fn call_exception_handler(&self, context: &ErrorContext) {
        let handler = self.inner.exception_handler.borrow().clone();
        match handler {
            None => default_exception_handler(context),
            Some(h) => {
                if let Err(payload) = catch_unwind(AssertUnwindSafe(|| h(self, context))) {
                    default_exception_handler(
                        &ErrorContext::new("Unhandled error in exception handler")
                            .with_error(Error::from_panic(&*payload)),
                    );
                    default_exception_handler(context);
                }
            }
        }
    }

    // ----- debug mode ----------------------------------------------------

    /// True in debug mode (`loop.get_debug`); on by default when
    /// `RINGLOOP_DEBUG` is set to a non-empty value.
    pub fn get_debug(&self) -> bool {
        self.inner.debug.get()
    }

    /// Turns debug mode on or off (`loop.set_debug`). In debug mode every
    /// callback is timed and those taking at least
    /// [`slow_callback_duration`](Self::slow_callback_duration) are
    /// reported (a `tracing` warning naming where they were scheduled).
    pub fn set_debug(&self, enabled: bool) {
        self.inner.debug.set(enabled);
    }

    /// The slow-callback threshold (default 100 ms).
    pub fn slow_callback_duration(&self) -> Duration {
        self.inner.slow_callback.get()
    }

    /// Sets the slow-callback threshold.
    pub fn set_slow_callback_duration(&self, d: Duration) {
        self.inner.slow_callback.set(d);
    }
}

/// Marks a loop as running on this thread for the guard's lifetime, even
/// if a callback unwinds through `run_forever`.
struct RunningGuard {
    inner: Rc<LoopInner>,
    /// `run_forever` consumes the stop request when it returns; a single
    /// `run_once` leaves it pending.
    reset_stopping: bool,
}

impl RunningGuard {
    fn enter(inner: &Rc<LoopInner>, reset_stopping: bool) -> RunningGuard {
        inner.running.set(true);
        let _ = RUNNING.try_with(|r| *r.borrow_mut() = Some(inner.clone()));
        RunningGuard {
            inner: inner.clone(),
            reset_stopping,
        }
    }
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        if self.reset_stopping {
            self.inner.stopping.set(false);
        }
        self.inner.running.set(false);
        let _ = RUNNING.try_with(|r| r.borrow_mut().take());
    }
}

/// The loop running on this thread (`asyncio.get_running_loop`);
/// [`Error::NoCurrentLoop`] outside a running loop.
pub fn get_running_loop() -> Result<EventLoop> {
    with_running(|inner| EventLoop::from_inner(inner.clone())).ok_or(Error::NoCurrentLoop)
}
