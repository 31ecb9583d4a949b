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
use std::task::{Context, Poll, Waker};

use crate::error::{Error, Result};
use crate::event_loop::LoopInner;

/// Identifies a done callback, for [`LoopFuture::remove_done_callback`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallbackId(u64);

type DoneCallback<T> = Box<dyn FnOnce(&LoopFuture<T>)>;

enum State<T> {
    Pending,
    Done(Result<T>),
    /// Done, and the value was moved out with `take_result`.
    Taken,
}

struct Inner<T> {
    state: State<T>,
    waiters: Vec<Waker>,
    callbacks: Vec<(CallbackId, DoneCallback<T>)>,
    next_id: u64,
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
pub struct LoopFuture<T> {
    lp: Weak<LoopInner>,
    inner: Rc<RefCell<Inner<T>>>,
}

impl<T> Clone for LoopFuture<T> {
    fn clone(&self) -> Self {
        LoopFuture {
            lp: self.lp.clone(),
            inner: self.inner.clone(),
        }
    }
}

impl<T: 'static> LoopFuture<T> {
    pub(crate) fn new(lp: Weak<LoopInner>) -> Self {
        LoopFuture {
            lp,
            inner: Rc::new(RefCell::new(Inner {
                state: State::Pending,
                waiters: Vec::new(),
                callbacks: Vec::new(),
                next_id: 0,
            })),
        }
    }

    fn complete(&self, r: Result<T>) -> Result<()> {
        let (waiters, callbacks) = {
            let mut inner = self.inner.borrow_mut();
            if !matches!(inner.state, State::Pending) {
                return Err(Error::InvalidState("the future is already done"));
            }
            inner.state = State::Done(r);
            (
                std::mem::take(&mut inner.waiters),
                std::mem::take(&mut inner.callbacks),
            )
        };
        for w in waiters {
            w.wake();
        }
        self.schedule_callbacks(callbacks);
        Ok(())
    }

    fn schedule_callbacks(&self, callbacks: Vec<(CallbackId, DoneCallback<T>)>) {
        if callbacks.is_empty() {
            return;
        }
        let Some(lp) = self.lp.upgrade() else {
            return;
        };
        for (_, cb) in callbacks {
            let me = self.clone();
            // A closed loop cannot run callbacks any more; they are dropped.
            let _ = lp.call_soon_boxed(Box::new(move || cb(&me)), Location::caller());
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
        match &self.inner.borrow().state {
            State::Pending => Err(Error::InvalidState("the result is not set yet")),
            State::Done(Err(Error::Cancelled)) => Err(Error::Cancelled),
            State::Done(Err(e)) => Ok(Some(e.clone())),
            State::Done(Ok(_)) | State::Taken => Ok(None),
        }
    }

    /// Moves the result out (the future stays done).
    /// [`Error::InvalidState`] while pending or once taken.
    pub fn take_result(&self) -> Result<T> {
        let mut inner = self.inner.borrow_mut();
        match std::mem::replace(&mut inner.state, State::Taken) {
            State::Done(r) => r,
            State::Pending => {
                inner.state = State::Pending;
                Err(Error::InvalidState("the result is not set yet"))
            }
            State::Taken => Err(Error::InvalidState("the result was already taken")),
        }
    }

    /// Runs `f(&future)` through the loop's ready queue once the future is
    /// done (at once-scheduled if done already) (`add_done_callback`).
    pub fn add_done_callback(&self, f: impl FnOnce(&LoopFuture<T>) + 'static) -> CallbackId {
        let mut inner = self.inner.borrow_mut();
        inner.next_id += 1;
        let id = CallbackId(inner.next_id);
        if matches!(inner.state, State::Pending) {
            inner.callbacks.push((id, Box::new(f)));
        } else {
            drop(inner);
            self.schedule_callbacks(vec![(id, Box::new(f))]);
        }
        id
    }

    /// Removes a done callback that has not been scheduled yet; returns how
    /// many were removed (`remove_done_callback`).
    pub fn remove_done_callback(&self, id: CallbackId) -> usize {
        let mut inner = self.inner.borrow_mut();
        let before = inner.callbacks.len();
        inner.callbacks.retain(|(cid, _)| *cid != id);
        before - inner.callbacks.len()
    }
}

impl<T: Clone + 'static> LoopFuture<T> {
    /// A clone of the result (`Future.result`): the value, the error, or
    /// [`Error::InvalidState`] while pending.
    pub fn result(&self) -> Result<T> {
        match &self.inner.borrow().state {
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
        match &inner.state {
            State::Pending => {
                if !inner.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                    inner.waiters.push(cx.waker().clone());
                }
                Poll::Pending
            }
            State::Done(r) => Poll::Ready(r.clone()),
            State::Taken => Poll::Ready(Err(Error::InvalidState("the result was already taken"))),
        }
    }
}

impl<T> fmt::Debug for LoopFuture<T> {
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
