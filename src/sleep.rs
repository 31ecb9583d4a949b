//! `EventLoop::sleep`: asyncio's `asyncio.sleep(delay)`.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::error::Result;
use crate::event_loop::EventLoop;
use crate::handle::TimerHandle;

#[derive(Default)]
struct State {
    fired: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

/// The future returned by [`EventLoop::sleep`]. Dropping it cancels its
/// timer.
pub struct Sleep {
    state: Rc<State>,
    /// `None` for a zero delay, which needs no timer: like asyncio's
    /// `sleep(0)`, the task yields once and is back in the ready queue at
    /// once, to run in the next iteration.
    timer: Option<TimerHandle>,
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.state.fired.get() {
            return Poll::Ready(());
        }
        if self.timer.is_none() {
            self.state.fired.set(true);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let mut w = self.state.waker.borrow_mut();
        if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *w = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(t) = self.timer.as_ref().filter(|_| !self.state.fired.get()) {
            t.cancel();
        }
    }
}

impl EventLoop {
    /// A future that completes after `delay` (`asyncio.sleep`). The timer
    /// starts now; the future holds no reference to the loop. A zero
    /// `delay` starts no timer: the task yields once, and resumes in the
    /// next iteration, after the callbacks already scheduled (asyncio's
    /// `sleep(0)`).
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// let lp = ringloop::EventLoop::new()?;
    /// let t0 = lp.time();
    /// lp.run_until_complete(lp.sleep(Duration::from_millis(20))?)?;
    /// assert!(lp.time() - t0 >= 0.020);
    /// # Ok::<(), ringloop::Error>(())
    /// ```
    #[track_caller]
    pub fn sleep(&self, delay: Duration) -> Result<Sleep> {
        let state = Rc::new(State::default());
        if delay.is_zero() {
            if self.is_closed() {
                return Err(crate::Error::LoopClosed);
            }
            return Ok(Sleep { state, timer: None });
        }
        let s = state.clone();
        let timer = self.call_later(delay, move || {
            s.fired.set(true);
            if let Some(w) = s.waker.borrow_mut().take() {
                w.wake();
            }
        })?;
        Ok(Sleep {
            state,
            timer: Some(timer),
        })
    }
}
