//! The event loop policy: which loop `get_event_loop` returns
//! (`asyncio.get_event_loop`, `set_event_loop`, `new_event_loop`,
//! `AbstractEventLoopPolicy`).
//!
//! The default policy keeps one current loop per thread. In the main
//! thread, `get_event_loop` creates one on first use unless
//! `set_event_loop` was called; in any other thread it is an error until a
//! loop is set, as in asyncio. Inside a running loop, the running loop is
//! always returned.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::sync::{Arc, RwLock};

use crate::error::{Error, Result};
use crate::event_loop::{get_running_loop, EventLoop};

/// A policy decides what the current loop of a thread is
/// (`asyncio.AbstractEventLoopPolicy`).
pub trait EventLoopPolicy: Send + Sync {
    /// The current thread's loop.
    fn get_event_loop(&self) -> Result<EventLoop>;
    /// Sets (or clears) the current thread's loop.
    fn set_event_loop(&self, lp: Option<EventLoop>);
    /// Creates a new loop (not made current).
    fn new_event_loop(&self) -> io::Result<EventLoop>;
}

thread_local! {
    static CURRENT: RefCell<Option<EventLoop>> = const { RefCell::new(None) };
    static SET_CALLED: Cell<bool> = const { Cell::new(false) };
}

/// asyncio's default policy: one loop per thread, created on demand in
/// the main thread only.
#[derive(Debug, Default, Clone, Copy)]
pub struct DefaultEventLoopPolicy;

/// True on the process's initial thread (its thread id is the pid), as
/// asyncio compares with `threading.main_thread()`; a thread merely named
/// "main" does not count.
fn is_main_thread() -> bool {
    // SAFETY: gettid and getpid take no arguments and cannot fail.
    unsafe { libc::gettid() == libc::getpid() }
}

impl EventLoopPolicy for DefaultEventLoopPolicy {
    fn get_event_loop(&self) -> Result<EventLoop> {
        if let Some(lp) = CURRENT.with(|c| c.borrow().clone()) {
            return Ok(lp);
        }
        if !SET_CALLED.with(|s| s.get()) && is_main_thread() {
            let lp = self.new_event_loop()?;
            self.set_event_loop(Some(lp.clone()));
            return Ok(lp);
        }
        Err(Error::NoCurrentLoop)
    }

    fn set_event_loop(&self, lp: Option<EventLoop>) {
        SET_CALLED.with(|s| s.set(true));
        let old = CURRENT.with(|c| std::mem::replace(&mut *c.borrow_mut(), lp));
        drop(old);
    }

    fn new_event_loop(&self) -> io::Result<EventLoop> {
        EventLoop::new()
    }
}

static POLICY: RwLock<Option<Arc<dyn EventLoopPolicy>>> = RwLock::new(None);

/// The process-wide policy (`asyncio.get_event_loop_policy`).
pub fn get_event_loop_policy() -> Arc<dyn EventLoopPolicy> {
    let current = POLICY.read().unwrap_or_else(|p| p.into_inner()).clone();
    current.unwrap_or_else(|| Arc::new(DefaultEventLoopPolicy))
}

/// Sets the process-wide policy; `None` restores the default
/// (`asyncio.set_event_loop_policy`).
pub fn set_event_loop_policy(policy: Option<Arc<dyn EventLoopPolicy>>) {
    *POLICY.write().unwrap_or_else(|p| p.into_inner()) = policy;
}

/// The running loop if there is one, else the policy's current loop
/// (`asyncio.get_event_loop`).
pub fn get_event_loop() -> Result<EventLoop> {
    match get_running_loop() {
        Ok(lp) => Ok(lp),
        Err(_) => get_event_loop_policy().get_event_loop(),
    }
}

/// Sets the current thread's loop through the policy
/// (`asyncio.set_event_loop`).
pub fn set_event_loop(lp: Option<EventLoop>) {
    get_event_loop_policy().set_event_loop(lp)
}

/// A new loop from the policy (`asyncio.new_event_loop`).
pub fn new_event_loop() -> io::Result<EventLoop> {
    get_event_loop_policy().new_event_loop()
}

/// Runs `future` on a new loop and closes it (`asyncio.run`): the loop is
/// made current for the duration; tasks still pending at the end are
/// cancelled and given one iteration to unwind; the default executor is
/// shut down. An error if a loop is already running in this thread.
///
/// # Example
///
/// ```
/// let answer = ringloop::run(async { 42 })?;
/// assert_eq!(answer, 42);
/// # Ok::<(), ringloop::Error>(())
/// ```
#[track_caller]
pub fn run<F>(future: F) -> Result<F::Output>
where
    F: Future + 'static,
{
    if get_running_loop().is_ok() {
        return Err(Error::LoopRunning);
    }
    let lp = new_event_loop()?;
    set_event_loop(Some(lp.clone()));
    let result = lp.run_until_complete(future);
    if lp.cancel_all_tasks() > 0 {
        let _ = lp.run_until_complete(async {});
    }
    set_event_loop(None);
    lp.close()?;
    result
}
