//! `add_reader` / `add_writer`: callbacks run while a descriptor is ready
//! (asyncio's "Watch file descriptors").
//!
//! Each watcher is an internal task looping on a one-shot POLL operation:
//! `IORING_OP_POLL_ADD` on io_uring, readiness on epoll. Once per
//! iteration in which the descriptor is ready, the callback runs (inside
//! the task's step, so through the ready queue like any callback); the
//! next poll is queued before the task yields, so on both backends the
//! callback runs every iteration while the descriptor stays ready, the
//! level-triggered behaviour of asyncio's selector loops. (A multishot
//! poll would be edge-triggered: a callback that leaves data unread would
//! not be called again.)

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Weak;
use std::task::{Context, Poll};

use crate::driver::op::poll::PollOnce;
use crate::driver::op::{DriverRef, Op};
use crate::error::{Error, Result};
use crate::event_loop::{EventLoop, LoopInner};
use crate::exception::ErrorContext;
use crate::task::{self, TaskHandle};

/// The watchers of one descriptor.
#[derive(Default)]
pub(crate) struct Watch {
    reader: Option<TaskHandle>,
    writer: Option<TaskHandle>,
}

/// All of a loop's watchers, by descriptor.
pub(crate) type Watchers = HashMap<RawFd, Watch>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Read,
    Write,
}

impl Direction {
    fn mask(self) -> u32 {
        match self {
            Direction::Read => libc::POLLIN as u32,
            Direction::Write => libc::POLLOUT as u32,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Direction::Read => "add_reader",
            Direction::Write => "add_writer",
        }
    }

    fn slot(self, w: &mut Watch) -> &mut Option<TaskHandle> {
        match self {
            Direction::Read => &mut w.reader,
            Direction::Write => &mut w.writer,
        }
    }
}

/// Returns `Pending` once, after asking to be polled again: the rest of
/// the task runs next iteration.
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the descriptor's flags.
    fd >= 0 && unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0
}

/// A regular file or a directory: always "ready", so watching it would
/// run the callback every iteration. epoll refuses them with `EPERM`,
/// and so asyncio's `add_reader` on Linux raises `PermissionError`.
fn always_ready(fd: RawFd) -> bool {
    // SAFETY: an all-zero `stat` is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid, writable stat buffer.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return false;
    }
    matches!(st.st_mode & libc::S_IFMT, libc::S_IFREG | libc::S_IFDIR)
}

async fn watch(
    driver: DriverRef,
    lp: Weak<LoopInner>,
    fd: RawFd,
    dir: Direction,
    mut callback: Box<dyn FnMut()>,
) {
    let mut first = true;
    loop {
        // Queued before yielding: io_uring submits it at the next enter.
        let submitted = Op::submit(
            &driver,
            PollOnce {
                fd,
                mask: dir.mask(),
            },
        );
        if !first {
            YieldNow(false).await;
        }
        first = false;
        let ready = match submitted {
            Ok(op) => op.await,
            Err(e) => Err(e),
        };
        let Some(inner) = lp.upgrade() else {
            return;
        };
        let lp = EventLoop::from_inner(inner);
        match ready {
            Ok(_) => {
                if let Err(payload) = catch_unwind(AssertUnwindSafe(&mut callback)) {
                    let mut ctx =
                        ErrorContext::new(format!("Exception in {} callback", dir.name()))
                            .with_error(Error::from_panic(&*payload))
                            .with_socket(fd);
                    ctx.handle = Some(format!("<{} fd={fd}>", dir.name()));
                    lp.call_exception_handler(&ctx);
                }
            }
            Err(e) => {
                // The descriptor was closed (or failed) while watched.
                let ctx = ErrorContext::new(format!("{}: watching fd {fd} failed", dir.name()))
                    .with_error(e.into())
                    .with_socket(fd);
                lp.call_exception_handler(&ctx);
                let mut watchers = lp.inner().watchers.borrow_mut();
                if let Some(w) = watchers.get_mut(&fd) {
                    dir.slot(w).take();
                }
                return;
            }
        }
    }
}

impl EventLoop {
    fn add_watch(&self, fd: RawFd, dir: Direction, callback: Box<dyn FnMut()>) -> Result<()> {
        if self.is_closed() {
            return Err(Error::LoopClosed);
        }
        if !fd_is_open(fd) {
            return Err(io::Error::from_raw_os_error(libc::EBADF).into());
        }
        if always_ready(fd) {
            return Err(io::Error::from_raw_os_error(libc::EPERM).into());
        }
        if self.inner().driver.borrow().fd_busy(fd) {
            return Err(io::Error::new(
                io::ErrorKind::ResourceBusy,
                format!("fd {fd} is in use by a running ringloop operation"),
            )
            .into());
        }
        let fut = watch(self.driver_ref(), self.downgrade(), fd, dir, callback);
        let handle = task::spawn_internal(self, fut)?;
        let old = {
            let mut watchers = self.inner().watchers.borrow_mut();
            dir.slot(watchers.entry(fd).or_default()).replace(handle)
        };
        if let Some(old) = old {
            old.cancel();
        }
        Ok(())
    }

    fn remove_watch(&self, fd: RawFd, dir: Direction) -> bool {
        let old = {
            let mut watchers = self.inner().watchers.borrow_mut();
            let Some(w) = watchers.get_mut(&fd) else {
                return false;
            };
            let old = dir.slot(w).take();
            if w.reader.is_none() && w.writer.is_none() {
                watchers.remove(&fd);
            }
            old
        };
        match old {
            Some(task) => {
                task.cancel();
                true
            }
            None => false,
        }
    }

    /// Calls `callback` on the loop, once per iteration, while `fd` is
    /// readable (`loop.add_reader`). A second reader for the same
    /// descriptor replaces the first.
    ///
    /// Errors: [`Error::LoopClosed`]; an invalid descriptor (`EBADF`); a
    /// regular file or directory (`EPERM`, as epoll and so asyncio refuse
    /// them: they are always ready); a descriptor in use by a running
    /// ringloop operation (`ResourceBusy`). If the descriptor is closed
    /// by the callback itself, the next poll fails: the exception handler
    /// is told and the watch ends. Close a watched descriptor only after
    /// `remove_reader`, as asyncio requires: closed while the watcher
    /// waits, it is not noticed (on io_uring the pending poll even keeps
    /// the file open until it fires).
    ///
    /// # Example
    ///
    /// ```
    /// use std::io::{Read, Write};
    /// use std::os::fd::AsRawFd;
    /// use std::os::unix::net::UnixStream;
    ///
    /// let lp = ringloop::EventLoop::new()?;
    /// let (mut rsock, mut wsock) = UnixStream::pair()?;
    /// let fd = rsock.as_raw_fd();
    /// let l = lp.clone();
    /// lp.add_reader(&fd, move || {
    ///     let mut buf = [0u8; 100];
    ///     let n = rsock.read(&mut buf).unwrap();
    ///     println!("Received: {}", String::from_utf8_lossy(&buf[..n]));
    ///     l.remove_reader(&fd);
    ///     l.stop();
    /// })?;
    /// wsock.write_all(b"abc")?;
    /// lp.run_forever()?;
    /// lp.close()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn add_reader(&self, fd: &impl AsRawFd, callback: impl FnMut() + 'static) -> Result<()> {
        self.add_watch(fd.as_raw_fd(), Direction::Read, Box::new(callback))
    }

    /// Stops watching `fd` for reading; false if it was not watched
    /// (`loop.remove_reader`).
    pub fn remove_reader(&self, fd: &impl AsRawFd) -> bool {
        self.remove_watch(fd.as_raw_fd(), Direction::Read)
    }

    /// Calls `callback` on the loop, once per iteration, while `fd` is
    /// writable (`loop.add_writer`). Same rules as
    /// [`add_reader`](Self::add_reader).
    pub fn add_writer(&self, fd: &impl AsRawFd, callback: impl FnMut() + 'static) -> Result<()> {
        self.add_watch(fd.as_raw_fd(), Direction::Write, Box::new(callback))
    }

    /// Stops watching `fd` for writing; false if it was not watched
    /// (`loop.remove_writer`).
    pub fn remove_writer(&self, fd: &impl AsRawFd) -> bool {
        self.remove_watch(fd.as_raw_fd(), Direction::Write)
    }
}
