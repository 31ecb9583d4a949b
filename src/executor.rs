//! Executors: where blocking work runs (`loop.run_in_executor`).
//!
//! The default executor is a thread pool on a crossbeam-deque injector,
//! sized like Python 3.8+'s `ThreadPoolExecutor` (`min(32, cpus + 4)`
//! workers; 3.7's `cpus * 5` starts far more threads than name lookups
//! need). It starts no thread until the first job arrives. Each job
//! claims an idle worker at submit time, or starts a new worker while
//! below the maximum, so a job never queues behind a busy worker while
//! the pool could still grow (two jobs where one waits for the other
//! cannot deadlock). Results come back to the loop through its
//! thread-safe queue (the awaiting task's waker).

use std::future::Future;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::thread;

use crossbeam_deque::{Injector, Steal};

use crate::error::{Error, Result};
use crate::event_loop::EventLoop;

/// A unit of work for an executor.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// Runs jobs off the loop thread (`concurrent.futures.Executor`).
pub trait Executor: Send + Sync + 'static {
    /// Queues `job`. An error if the executor is shut down.
    fn execute(&self, job: Job) -> io::Result<()>;

    /// Stops accepting jobs; with `wait`, blocks until running and queued
    /// jobs finish. The default does nothing.
    fn shutdown(&self, wait: bool) {
        let _ = wait;
    }
}

struct PoolState {
    workers: usize,
    /// Workers waiting for work and not yet claimed by a submitter.
    idle: usize,
    /// Wake-ups handed out by submitters and not yet taken by a worker
    /// (a worker woken spuriously finds none and keeps waiting).
    claims: usize,
    shutdown: bool,
    handles: Vec<thread::JoinHandle<()>>,
}

struct PoolShared {
    queue: Injector<Job>,
    state: Mutex<PoolState>,
    work: Condvar,
}

impl PoolShared {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The default executor: a lazily started thread pool.
pub struct ThreadPool {
    shared: Arc<PoolShared>,
    max_workers: usize,
    name: String,
}

impl ThreadPool {
    /// A pool of at most `max_workers` threads (at least 1).
    pub fn new(max_workers: usize) -> ThreadPool {
        ThreadPool {
            shared: Arc::new(PoolShared {
                queue: Injector::new(),
                state: Mutex::new(PoolState {
                    workers: 0,
                    idle: 0,
                    claims: 0,
                    shutdown: false,
                    handles: Vec::new(),
                }),
                work: Condvar::new(),
            }),
            max_workers: max_workers.max(1),
            name: "ringloop-executor".into(),
        }
    }

    /// Python 3.8+'s default size: `min(32, available CPUs + 4)`.
    pub fn with_default_size() -> ThreadPool {
        let cpus = thread::available_parallelism().map_or(1, |n| n.get());
        ThreadPool::new((cpus + 4).min(32))
    }

    /// Number of worker threads started so far.
    pub fn workers(&self) -> usize {
        self.shared.lock().workers
    }

    fn worker(shared: Arc<PoolShared>) {
        loop {
            match shared.queue.steal() {
                Steal::Success(job) => {
                    // A panicking job must not take the worker down; the
                    // job's own wrapper reports the panic to its caller.
                    let _ = catch_unwind(AssertUnwindSafe(job));
                }
                Steal::Retry => {}
                Steal::Empty => {
                    let mut st = shared.lock();
                    if !shared.queue.is_empty() {
                        continue;
                    }
                    if st.shutdown {
                        st.workers -= 1;
                        return;
                    }
                    st.idle += 1;
                    loop {
                        st = shared.work.wait(st).unwrap_or_else(|p| p.into_inner());
                        if st.claims > 0 {
                            // A submitter claimed us (and took us off idle).
                            st.claims -= 1;
                            break;
                        }
                        if st.shutdown {
                            st.idle = st.idle.saturating_sub(1);
                            break;
                        }
                    }
                }
            }
        }
    }
}

impl Executor for ThreadPool {
    fn execute(&self, job: Job) -> io::Result<()> {
        let mut st = self.shared.lock();
        if st.shutdown {
            return Err(io::Error::other("cannot schedule new jobs after shutdown"));
        }
        if st.idle > 0 {
            st.idle -= 1;
            st.claims += 1;
            self.shared.queue.push(job);
            self.shared.work.notify_one();
        } else if st.workers < self.max_workers {
            let shared = self.shared.clone();
            match thread::Builder::new()
                .name(self.name.clone())
                .spawn(move || ThreadPool::worker(shared))
            {
                Ok(handle) => {
                    st.workers += 1;
                    st.handles.push(handle);
                    self.shared.queue.push(job);
                }
                // No new thread: queue it for the busy workers if there
                // are any, else refuse it (nothing would ever run it).
                Err(e) if st.workers == 0 => return Err(e),
                Err(_) => self.shared.queue.push(job),
            }
        } else {
            // At the maximum: the job waits for a worker to finish.
            self.shared.queue.push(job);
        }
        Ok(())
    }

    fn shutdown(&self, wait: bool) {
        let handles = {
            let mut st = self.shared.lock();
            st.shutdown = true;
            self.shared.work.notify_all();
            std::mem::take(&mut st.handles)
        };
        if wait {
            for h in handles {
                let _ = h.join();
            }
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shutdown(false);
    }
}

struct Slot<T> {
    result: Option<thread::Result<T>>,
    /// The job was dropped without running (executor shut down).
    lost: bool,
    cancelled: bool,
    waker: Option<Waker>,
}

type SharedSlot<T> = Arc<Mutex<Slot<T>>>;

fn lock<T>(s: &SharedSlot<T>) -> MutexGuard<'_, Slot<T>> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// Completes the slot even if the job is dropped unrun.
struct JobGuard<T> {
    slot: SharedSlot<T>,
    finished: bool,
}

impl<T> JobGuard<T> {
    fn finish(&mut self, r: Option<thread::Result<T>>) {
        self.finished = true;
        let waker = {
            let mut s = lock(&self.slot);
            match r {
                Some(r) => s.result = Some(r),
                None => s.lost = true,
            }
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Drop for JobGuard<T> {
    fn drop(&mut self) {
        if !self.finished {
            self.finish(None);
        }
    }
}

/// The future returned by [`EventLoop::run_in_executor`]. Dropping it
/// before the job starts skips the job.
pub struct ExecutorFuture<T> {
    slot: SharedSlot<T>,
}

impl<T> Future for ExecutorFuture<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let mut s = lock(&self.slot);
        if let Some(r) = s.result.take() {
            return Poll::Ready(r.map_err(|p| Error::from_panic(&*p)));
        }
        if s.lost {
            return Poll::Ready(Err(Error::Cancelled));
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl<T> Drop for ExecutorFuture<T> {
    fn drop(&mut self) {
        lock(&self.slot).cancelled = true;
    }
}

impl EventLoop {
    /// Runs `f` on `executor` (the default pool when `None`) and returns a
    /// future of its result (`loop.run_in_executor`). A panic in `f`
    /// becomes [`Error::Panicked`].
    ///
    /// # Example
    ///
    /// ```
    /// let lp = ringloop::EventLoop::new()?;
    /// let fut = lp.run_in_executor(None, || 2 + 2)?;
    /// assert_eq!(lp.run_until_complete(fut)??, 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn run_in_executor<T, F>(
        &self,
        executor: Option<Arc<dyn Executor>>,
        f: F,
    ) -> Result<ExecutorFuture<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        if self.is_closed() {
            return Err(Error::LoopClosed);
        }
        let executor = match executor {
            Some(e) => e,
            None => self.default_executor(),
        };
        let slot: SharedSlot<T> = Arc::new(Mutex::new(Slot {
            result: None,
            lost: false,
            cancelled: false,
            waker: None,
        }));
        let mut guard = JobGuard {
            slot: slot.clone(),
            finished: false,
        };
        executor.execute(Box::new(move || {
            if lock(&guard.slot).cancelled {
                return guard.finish(None);
            }
            let r = catch_unwind(AssertUnwindSafe(f));
            guard.finish(Some(r));
        }))?;
        Ok(ExecutorFuture { slot })
    }

    /// Replaces the default executor (`loop.set_default_executor`). The
    /// old one is shut down without waiting.
    pub fn set_default_executor(&self, executor: Arc<dyn Executor>) {
        let old = self.inner().executor.borrow_mut().replace(executor);
        if let Some(old) = old {
            old.shutdown(false);
        }
    }

    /// The default executor, created (threadless) on first use.
    pub(crate) fn default_executor(&self) -> Arc<dyn Executor> {
        self.inner()
            .executor
            .borrow_mut()
            .get_or_insert_with(|| Arc::new(ThreadPool::with_default_size()))
            .clone()
    }
}
