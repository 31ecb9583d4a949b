//! `LoopFuture<T>`: asyncio's `Future`, a result cell bound to a loop.
//!
//! Any number of holders (it is `Clone`) can read the result, await it, or
//! attach done callbacks; done callbacks run through the loop's ready
//! queue, never inline, exactly as asyncio schedules them. Awaiting yields
//! a clone of the result, so awaiting needs `T: Clone`; use
//! [`LoopFuture::take_result`] to move a non-`Clone` value out.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};

use crate::awaited::{remove_waker, Awaiting, Listener, OnDrop};
use crate::error::{Error, Result};
use crate::event_loop::{EventLoop, LoopInner};
use crate::exception::ErrorContext;

/// Identifies a done callback, for [`LoopFuture::remove_done_callback`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallbackId(u64);

type DoneCallback<T> = Box<dyn FnOnce(&LoopFuture<T>)>;

/// A future's done callback, with its id and where it was added.
type Callback<T> = (CallbackId, DoneCallback<T>, &'static Location<'static>);

enum State<T: 'static> {
    Pending,
    Done(Result<T>),
    /// Done, and the value was moved out with `take_result`.
    Taken,
}

struct Inner<T: 'static> {
    state: State<T>,
    listeners: Vec<Listener<Callback<T>>>,
    next_id: u64,
    /// For the "never retrieved" report.
    lp: Weak<LoopInner>,
    /// Where the future was made.
    location: &'static Location<'static>,
    /// Its error was looked at (`result`, `exception`, `take_result`,
    /// awaiting it): asyncio's `__log_traceback = False`.
    retrieved: bool,
}

impl<T: 'static> Drop for Inner<T> {
    /// asyncio's `Future.__del__`: a future done with an error (not a
    /// cancellation) that nobody looked at is reported when it goes.
    fn drop(&mut self) {
        let error = match &self.state {
            State::Done(Err(e)) if !self.retrieved && !matches!(e, Error::Cancelled) => e.clone(),
            _ => return,
        };
        let mut ctx = ErrorContext::new("Future exception was never retrieved").with_error(error);
        ctx.location = Some(self.location);
        match self.lp.upgrade() {
            Some(lp) if !lp.is_closed() => EventLoop::from_inner(lp).call_exception_handler(&ctx),
            _ => crate::exception::default_exception_handler(&ctx),
        }
    }
}

/// A future whose result is set by code, not computed
/// (`asyncio.Future`). Create one with
/// [`EventLoop::create_future`](crate::EventLoop::create_future).
///
/// # Example
///
/// ```
/// let lp = ringloop::EventLoop::new()?;
/// let fut = lp.create_future::<u32>();
/// let setter = fut.clone();
/// lp.call_soon(move || { setter.set_result(7).unwrap(); })?;
/// assert_eq!(lp.run_until_complete(fut)??, 7);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct LoopFuture<T: 'static> {
    lp: Weak<LoopInner>,
    inner: Rc<RefCell<Inner<T>>>,
    /// Its waiting: if the task it blocks is cancelled, the future is
    /// cancelled too, as asyncio cancels the future a cancelled task
    /// waits on; its waker goes when it goes (see `awaited.rs`).
    awaiting: Awaiting,
}

impl<T: 'static> Clone for LoopFuture<T> {
    fn clone(&self) -> Self {
        LoopFuture {
            lp: self.lp.clone(),
            inner: self.inner.clone(),
            awaiting: Awaiting::default(),
        }
    }
}

impl<T: 'static> Drop for LoopFuture<T> {
    fn drop(&mut self) {
        match self.awaiting.on_drop() {
            OnDrop::Nothing => {}
            // Done already: this does nothing.
            OnDrop::Cancel => {
                self.complete_with(Err(Error::Cancelled));
            }
            OnDrop::RemoveWaker(id) => {
                if let Ok(mut inner) = self.inner.try_borrow_mut() {
                    remove_waker(&mut inner.listeners, id);
                }
            }
        }
    }
}

impl<T: 'static> LoopFuture<T> {
    fn complete_with(&self, r: Result<T>) -> bool {
        let listeners = {
            let mut inner = self.inner.borrow_mut();
            if !matches!(inner.state, State::Pending) {
                return false;
            }
            inner.state = State::Done(r);
            std::mem::take(&mut inner.listeners)
        };
        let lp = self.lp.upgrade();
        for l in listeners {
            match l {
                Listener::Waker(_, w) => w.wake(),
                Listener::Callback((_, cb, location)) => {
                    if let Some(lp) = &lp {
                        let me = self.clone();
                        // A closed loop cannot run callbacks; they are dropped.
                        let _ = lp.call_soon_boxed(Box::new(move || cb(&me)), location);
                    }
                }
            }
        }
        true
    }
}

impl<T: 'static> LoopFuture<T> {
    #[track_caller]
    pub(crate) fn new(lp: Weak<LoopInner>) -> Self {
        LoopFuture {
            inner: Rc::new(RefCell::new(Inner {
                state: State::Pending,
                listeners: Vec::new(),
                next_id: 0,
                lp: lp.clone(),
                location: Location::caller(),
                retrieved: false,
            })),
            lp,
            awaiting: Awaiting::default(),
        }
    }

    fn complete(&self, r: Result<T>) -> Result<()> {
        if self.complete_with(r) {
            Ok(())
        } else {
            Err(Error::InvalidState("the future is already done"))
        }
    }

    /// Marks the future done with `value` (`Future.set_result`). An
    /// [`Error::InvalidState`] if it is already done.
    pub fn set_result(&self, value: T) -> Result<()> {
        self.complete(Ok(value))
    }

    /// Marks the future done with an error (`Future.set_exception`).
    pub fn set_exception(&self, error: impl Into<Error>) -> Result<()> {
        self.complete(Err(error.into()))
    }

    /// Cancels the future: done with [`Error::Cancelled`]. Returns false if
    /// it was already done (`Future.cancel`).
    pub fn cancel(&self) -> bool {
        self.complete(Err(Error::Cancelled)).is_ok()
    }

    /// True once a result, an error or a cancellation is set.
    pub fn done(&self) -> bool {
        !matches!(self.inner.borrow().state, State::Pending)
    }

    /// True if the future was cancelled.
    pub fn cancelled(&self) -> bool {
        matches!(
            self.inner.borrow().state,
            State::Done(Err(Error::Cancelled))
        )
    }

    /// The error, if the future is done with one (`Future.exception`);
    /// [`Error::InvalidState`] while pending, [`Error::Cancelled`] if
    /// cancelled.
    pub fn exception(&self) -> Result<Option<Error>> {
        let mut inner = self.inner.borrow_mut();
        inner.retrieved = true;
        match &inner.state {
            State::Pending => Err(Error::InvalidState("the result is not set yet")),
            State::Done(Err(Error::Cancelled)) => Err(Error::Cancelled),
            State::Done(Err(e)) => Ok(Some(e.clone())),
            State::Done(Ok(_)) | State::Taken => Ok(None),
        }
    }

    /// Moves a successful result out (the future stays done); an error
    /// result is returned as a clone and stays readable, so `cancelled()`
    /// and `exception()` keep telling the truth. [`Error::InvalidState`]
    /// while pending or once the value was taken.
    pub fn take_result(&self) -> Result<T> {
        let mut inner = self.inner.borrow_mut();
        inner.retrieved = true;
        match &inner.state {
            State::Pending => return Err(Error::InvalidState("the result is not set yet")),
            State::Taken => return Err(Error::InvalidState("the result was already taken")),
            State::Done(Err(e)) => return Err(e.clone()),
            State::Done(Ok(_)) => {}
        }
        match std::mem::replace(&mut inner.state, State::Taken) {
            State::Done(r) => r,
            _ => Err(Error::InvalidState("the result was already taken")),
        }
    }

    /// Runs `f(&future)` through the loop's ready queue once the future is
    /// done (at once-scheduled if done already) (`add_done_callback`).
    /// Callbacks and awaiting tasks resume in the order they registered.
    #[track_caller]
    pub fn add_done_callback(&self, f: impl FnOnce(&LoopFuture<T>) + 'static) -> CallbackId {
        let location = Location::caller();
        let mut inner = self.inner.borrow_mut();
        inner.next_id += 1;
        let id = CallbackId(inner.next_id);
        if matches!(inner.state, State::Pending) {
            inner
                .listeners
                .push(Listener::Callback((id, Box::new(f), location)));
        } else {
            drop(inner);
            if let Some(lp) = self.lp.upgrade() {
                let me = self.clone();
                let _ = lp.call_soon_boxed(Box::new(move || f(&me)), location);
            }
        }
        id
    }

    /// Removes a done callback that has not been scheduled yet; returns how
    /// many were removed (`remove_done_callback`).
    pub fn remove_done_callback(&self, id: CallbackId) -> usize {
        let mut inner = self.inner.borrow_mut();
        let before = inner.listeners.len();
        inner
            .listeners
            .retain(|l| !matches!(l, Listener::Callback((cid, ..)) if *cid == id));
        before - inner.listeners.len()
    }
}

impl<T: Clone + 'static> LoopFuture<T> {
    /// A clone of the result (`Future.result`): the value, the error, or
    /// [`Error::InvalidState`] while pending.
    pub fn result(&self) -> Result<T> {
        let mut inner = self.inner.borrow_mut();
        inner.retrieved = true;
        match &inner.state {
            State::Pending => Err(Error::InvalidState("the result is not set yet")),
            State::Done(r) => r.clone(),
            State::Taken => Err(Error::InvalidState("the result was already taken")),
        }
    }
}

impl<T: Clone + 'static> Future for LoopFuture<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let mut inner = self.inner.borrow_mut();
        let ready = match &inner.state {
            State::Pending => {
                let inner = &mut *inner;
                self.awaiting
                    .pending(&mut inner.listeners, &mut inner.next_id, cx);
                return Poll::Pending;
            }
            State::Done(r) => r.clone(),
            State::Taken => Err(Error::InvalidState("the result was already taken")),
        };
        inner.retrieved = true;
        self.awaiting.ready();
        Poll::Ready(ready)
    }
}

impl<T: 'static> fmt::Debug for LoopFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.inner.borrow().state {
            State::Pending => "pending",
            State::Done(Ok(_)) | State::Taken => "finished",
            State::Done(Err(Error::Cancelled)) => "cancelled",
            State::Done(Err(_)) => "failed",
        };
        write!(f, "<LoopFuture {state}>")
    }
}
