//! Tasks: futures driven by the loop (`asyncio.Task`).
//!
//! A task's step is a ready-queue entry like any callback, so tasks and
//! `call_soon` callbacks interleave in FIFO order as in asyncio. Its waker
//! is `Send + Sync`: woken on the loop's thread (running or not), it
//! queues the step directly; woken anywhere else, it goes through the
//! loop's thread-safe queue and wakes the loop.
//!
//! Cancelling a task drops its future at its next step. Dropping a future
//! drops the I/O operations it was awaiting, which cancels them in the
//! kernel, so cancellation reaches all the way down.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use crate::awaited::{remove_waker, Awaiting, Listener, OnDrop};
use crate::driver::wake::{self, TaskRef};
use crate::error::{Error, Result};
use crate::event_loop::{with_local, EventLoop, LoopInner};
use crate::exception::ErrorContext;
use crate::handle::Callback;
use crate::threadsafe::{Remote, Shared};

/// A boxed, type-erased, single-threaded future, as task factories see
/// it.
pub type LocalBoxFuture = Pin<Box<dyn Future<Output = ()>>>;

/// A task factory (`loop.set_task_factory`): receives each new task's
/// future and returns the future the task will run, e.g. wrapped for
/// instrumentation. It must poll the future it was given to completion
/// for the task to produce its result.
pub type TaskFactory = Rc<dyn Fn(&EventLoop, LocalBoxFuture) -> LocalBoxFuture>;

/// Completion side of a task, without its output type.
trait Complete {
    fn fail(&self, e: Error);
    fn is_done(&self) -> bool;
    fn is_cancelled(&self) -> bool;
}

/// A task's done callback, with where it was added.
type DoneCallback = (Box<dyn FnOnce()>, &'static Location<'static>);

struct JoinInner<T> {
    result: Option<Result<T>>,
    done: bool,
    cancelled: bool,
    /// The result (or error) was looked at: awaited or taken.
    retrieved: bool,
    listeners: Vec<Listener<DoneCallback>>,
    /// The last id given to a handle's waker.
    next_waker_id: u64,
}

/// Where a task's output waits for whoever awaits the task.
struct JoinState<T> {
    lp: Weak<LoopInner>,
    location: &'static Location<'static>,
    inner: RefCell<JoinInner<T>>,
}

impl<T> JoinState<T> {
    fn finish(&self, r: Result<T>) {
        let listeners = {
            let mut j = self.inner.borrow_mut();
            if j.done {
                return;
            }
            j.cancelled = matches!(r, Err(Error::Cancelled));
            j.result = Some(r);
            j.done = true;
            std::mem::take(&mut j.listeners)
        };
        let lp = self.lp.upgrade();
        for l in listeners {
            match l {
                Listener::Waker(_, w) => w.wake(),
                // Scheduled like asyncio's done callbacks; a closed loop
                // drops them.
                Listener::Callback((cb, location)) => {
                    if let Some(lp) = &lp {
                        let _ = lp.call_soon_boxed(cb, location);
                    }
                }
            }
        }
    }
}

impl<T> Drop for JoinState<T> {
    /// asyncio's "Task exception was never retrieved": a task that failed
    /// (panicked) and whose result nobody awaited or took is reported to
    /// the exception handler when the last reference to it goes.
    fn drop(&mut self) {
        let j = self.inner.get_mut();
        let error = match &j.result {
            Some(Err(e)) if !j.retrieved && !matches!(e, Error::Cancelled) => e.clone(),
            _ => return,
        };
        let mut ctx = ErrorContext::new("Task exception was never retrieved").with_error(error);
        ctx.location = Some(self.location);
        match self.lp.upgrade() {
            Some(lp) if !lp.is_closed() => EventLoop::from_inner(lp).call_exception_handler(&ctx),
            _ => crate::exception::default_exception_handler(&ctx),
        }
    }
}

impl<T> Complete for JoinState<T> {
    fn fail(&self, e: Error) {
        self.finish(Err(e));
    }
    fn is_done(&self) -> bool {
        self.inner.borrow().done
    }
    fn is_cancelled(&self) -> bool {
        self.inner.borrow().cancelled
    }
}

/// The type-erased, schedulable part of a task.
pub(crate) struct TaskCore {
    lp: Weak<LoopInner>,
    key: usize,
    /// Unique per loop: a waker naming a reused slot is ignored.
    pub(crate) id: u64,
    scheduled: Cell<bool>,
    cancel_requested: Cell<bool>,
    /// The number of its last step (see `awaited.rs`).
    last_step: Cell<u64>,
    future: RefCell<Option<LocalBoxFuture>>,
    waker: Waker,
    location: &'static Location<'static>,
    completer: Rc<dyn Complete>,
}

impl TaskCore {
    /// Queues the next step unless one is queued already.
    pub(crate) fn schedule(self: &Rc<Self>, lp: &LoopInner) {
        if !self.scheduled.replace(true) {
            lp.ready.borrow_mut().push_back(self.clone());
        }
    }

    /// Drops the future and takes the task out of the loop's table. A
    /// panic from the drop (a destructor's) is caught and returned: the
    /// task is gone from the table either way.
    fn finish_future(&self, lp: &LoopInner) -> Option<Box<dyn std::any::Any + Send>> {
        let fut = self.future.borrow_mut().take();
        let panicked = catch_unwind(AssertUnwindSafe(|| drop(fut))).err();
        let removed = {
            let mut tasks = lp.tasks.borrow_mut();
            // The slot may already hold another task (close() cleared the
            // slab and the key was reused): remove only ourselves.
            match tasks.get(self.key) {
                Some(t) if std::ptr::eq(Rc::as_ptr(t), self) => tasks.try_remove(self.key),
                _ => None,
            }
        };
        drop(removed);
        panicked
    }

    /// Loop close: drops the future (cancelling its I/O) and completes the
    /// task as cancelled (or with the panic of a destructor in it).
    pub(crate) fn abort_on_close(&self) {
        let fut = self.future.borrow_mut().take();
        match catch_unwind(AssertUnwindSafe(|| drop(fut))) {
            Ok(()) => self.completer.fail(Error::Cancelled),
            Err(payload) => self.completer.fail(Error::from_panic(&*payload)),
        }
    }
}

impl Callback for TaskCore {
    fn run(&self) {
        self.scheduled.set(false);
        let Some(lp) = self.lp.upgrade() else {
            return;
        };
        // The future first: it is in this struct (in cache), the
        // completer is another allocation, only looked at once it is gone.
        if self.future.borrow().is_none() && self.completer.is_done() {
            return;
        }
        if self.cancel_requested.get() {
            // What the future awaits is cancelled with it. A destructor
            // that panics makes that panic the task's error, as an
            // exception raised while handling the cancellation does in
            // asyncio.
            let panicked =
                crate::awaited::cancelling(self.last_step.get(), || self.finish_future(&lp));
            match panicked {
                None => self.completer.fail(Error::Cancelled),
                Some(payload) => self.completer.fail(Error::from_panic(&*payload)),
            }
            return;
        }
        let mut cx = Context::from_waker(&self.waker);
        let polled = {
            let mut slot = self.future.borrow_mut();
            let Some(fut) = slot.as_mut() else {
                return;
            };
            // Recorded as the polling task: operations it polls store its
            // key, not a clone of its waker (see driver::wake).
            let me = TaskRef {
                key: self.key,
                id: self.id,
            };
            let (step, polled) = crate::awaited::step(|| {
                wake::polling(&lp.driver, me, &self.waker, || {
                    catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx)))
                })
            });
            self.last_step.set(step);
            polled
        };
        match polled {
            Ok(Poll::Pending) => {}
            Ok(Poll::Ready(())) => {
                // The future finished: what its drop might raise has
                // nowhere to go but the task's error, which is set.
                let _ = self.finish_future(&lp);
                // A task factory that dropped the inner future leaves no
                // result behind.
                self.completer.fail(Error::InvalidState(
                    "the task factory's future finished without the task's result",
                ));
            }
            Err(payload) => {
                // Stored as the task's error; reported to the exception
                // handler only if nobody retrieves it (see JoinState).
                let _ = self.finish_future(&lp);
                self.completer.fail(Error::from_panic(&*payload));
            }
        }
    }

    fn cancelled(&self) -> bool {
        false
    }

    fn cancel(&self) {}

    fn location(&self) -> &'static Location<'static> {
        self.location
    }

    fn describe(&self) -> String {
        format!("<Task created at {}>", self.location)
    }
}

/// Wakes a task from any thread.
struct TaskWaker {
    key: usize,
    id: u64,
    shared: Arc<Shared>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let (key, id) = (self.key, self.id);
        let loop_id = self.shared.id;
        // On the loop's own thread (running or not), straight to its
        // ready queue: in order with the callbacks scheduled around it.
        let local = with_local(loop_id, |lp| lp.schedule_task(key, id)).is_some();
        if !local {
            // A closed loop has nothing left to wake.
            let _ = self.shared.push(Remote::WakeTask(key, id));
        }
    }
}

/// Spawns `fut` on the loop (the body of `EventLoop::create_task`).
#[track_caller]
pub(crate) fn spawn<F>(lp: &EventLoop, fut: F) -> Result<Task<F::Output>>
where
    F: Future + 'static,
{
    spawn_with(lp, fut, true)
}

/// Spawns one of the loop's own tasks (watchers): the task factory, which
/// is for the user's tasks, does not see it.
#[track_caller]
pub(crate) fn spawn_internal<F>(lp: &EventLoop, fut: F) -> Result<TaskHandle>
where
    F: Future<Output = ()> + 'static,
{
    spawn_with(lp, fut, false).map(|t| t.handle())
}

#[track_caller]
fn spawn_with<F>(lp: &EventLoop, fut: F, use_factory: bool) -> Result<Task<F::Output>>
where
    F: Future + 'static,
{
    let inner = lp.inner();
    if inner.is_closed() {
        return Err(Error::LoopClosed);
    }
    let location = Location::caller();
    let join = Rc::new(JoinState {
        lp: Rc::downgrade(inner),
        location,
        inner: RefCell::new(JoinInner {
            result: None,
            done: false,
            cancelled: false,
            retrieved: false,
            listeners: Vec::new(),
            next_waker_id: 0,
        }),
    });
    let out = join.clone();
    let mut future: LocalBoxFuture = Box::pin(async move {
        let v = fut.await;
        out.finish(Ok(v));
    });
    let factory = if use_factory {
        inner.task_factory.borrow().clone()
    } else {
        None
    };
    if let Some(factory) = factory {
        future = factory(lp, future);
    }
    let core = {
        let mut tasks = inner.tasks.borrow_mut();
        let entry = tasks.vacant_entry();
        let key = entry.key();
        let id = inner.next_task_id();
        let core = Rc::new(TaskCore {
            lp: Rc::downgrade(inner),
            key,
            id,
            scheduled: Cell::new(false),
            cancel_requested: Cell::new(false),
            last_step: Cell::new(0),
            future: RefCell::new(Some(future)),
            waker: Waker::from(Arc::new(TaskWaker {
                key,
                id,
                shared: inner.shared.clone(),
            })),
            location,
            completer: join.clone(),
        });
        entry.insert(core.clone());
        core
    };
    core.schedule(inner);
    Ok(Task {
        core,
        join,
        awaiting: Awaiting::default(),
    })
}

/// A future scheduled on the loop (`asyncio.Task`), awaitable for its
/// output.
///
/// Awaiting a task yields `Ok(output)`, `Err(Error::Cancelled)` if it was
/// cancelled, or `Err(Error::Panicked(..))` if it panicked. Dropping the
/// `Task` does not cancel it: like asyncio, the loop keeps running it.
///
/// # Example
///
/// ```
/// let lp = ringloop::EventLoop::new()?;
/// let task = lp.create_task(async { 6 * 7 })?;
/// assert_eq!(lp.run_until_complete(task)??, 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Task<T> {
    core: Rc<TaskCore>,
    join: Rc<JoinState<T>>,
    /// Its waiting: if the task it blocks is cancelled, this task is
    /// cancelled too; its waker goes when it goes (see `awaited.rs`).
    awaiting: Awaiting,
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        let id = match self.awaiting.on_drop() {
            OnDrop::Nothing => return,
            OnDrop::Cancel => {
                self.cancel();
                self.awaiting.waker_id()
            }
            OnDrop::RemoveWaker(id) => id,
        };
        if let Ok(mut j) = self.join.inner.try_borrow_mut() {
            remove_waker(&mut j.listeners, id);
        }
    }
}

impl<T> Task<T> {
    /// Requests cancellation: the task's future is dropped at its next
    /// step, and the task completes with [`Error::Cancelled`]. Returns
    /// false if the task is already done (`Task.cancel`).
    pub fn cancel(&self) -> bool {
        self.handle().cancel()
    }

    /// True once the task has a result, an error, or was cancelled.
    pub fn done(&self) -> bool {
        self.join.is_done()
    }

    /// True if the task completed by cancellation.
    pub fn cancelled(&self) -> bool {
        self.join.is_cancelled()
    }

    /// An untyped, cloneable handle to the task.
    pub fn handle(&self) -> TaskHandle {
        TaskHandle {
            core: self.core.clone(),
        }
    }

    /// Takes the result if the task is done (`Task.result`, which moves
    /// the output out). `None` while pending or once taken.
    pub fn take_result(&self) -> Option<Result<T>> {
        let mut j = self.join.inner.borrow_mut();
        j.retrieved |= j.done;
        j.result.take()
    }

    /// Runs `f` on the loop (via `call_soon`) once the task is done; at
    /// once-scheduled if it is done already (`Task.add_done_callback`).
    #[track_caller]
    pub fn add_done_callback(&self, f: impl FnOnce() + 'static) {
        let location = Location::caller();
        let mut j = self.join.inner.borrow_mut();
        if j.done {
            drop(j);
            if let Some(lp) = self.join.lp.upgrade() {
                let _ = lp.call_soon_boxed(Box::new(f), location);
            }
        } else {
            j.listeners
                .push(Listener::Callback((Box::new(f), location)));
        }
    }
}

impl<T> Future for Task<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let mut j = self.join.inner.borrow_mut();
        if j.done {
            j.retrieved = true;
            self.awaiting.ready();
            return Poll::Ready(j.result.take().unwrap_or(Err(Error::InvalidState(
                "the task's result was already taken",
            ))));
        }
        let j = &mut *j;
        self.awaiting
            .pending(&mut j.listeners, &mut j.next_waker_id, cx);
        Poll::Pending
    }
}

impl<T> fmt::Debug for Task<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.handle().fmt(f)
    }
}

/// An untyped handle to a task: cancel it, ask whether it is done.
#[derive(Clone)]
pub struct TaskHandle {
    core: Rc<TaskCore>,
}

impl TaskHandle {
    pub(crate) fn from_core(core: Rc<TaskCore>) -> Self {
        TaskHandle { core }
    }

    /// See [`Task::cancel`].
    pub fn cancel(&self) -> bool {
        if self.core.completer.is_done() {
            return false;
        }
        self.core.cancel_requested.set(true);
        if let Some(lp) = self.core.lp.upgrade() {
            self.core.schedule(&lp);
        }
        true
    }

    /// See [`Task::done`].
    pub fn done(&self) -> bool {
        self.core.completer.is_done()
    }

    /// See [`Task::cancelled`].
    pub fn cancelled(&self) -> bool {
        self.core.completer.is_cancelled()
    }

    /// Where the task was created.
    pub fn location(&self) -> &'static Location<'static> {
        self.core.location
    }
}

impl fmt::Debug for TaskHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.cancelled() {
            "cancelled"
        } else if self.done() {
            "finished"
        } else {
            "pending"
        };
        write!(f, "<Task {state} created at {}>", self.core.location)
    }
}
