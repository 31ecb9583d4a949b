//! [`SubprocessTransport`]: one child process, its pipes, and the end
//! rule (asyncio's `BaseSubprocessTransport`).
//!
//! `connection_lost` is scheduled only when the child has exited (and
//! was reaped) **and** every pipe has reported `connection_lost`
//! (asyncio's `_try_finish`).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::rc::{Rc, Weak};
use std::task::{Poll, Waker};

use super::calls::{Call, Calls};
use super::child::Child;
use super::pipes::PipeTransport;
use crate::event_loop::{EventLoop, LoopInner};
use crate::transport::ExtraInfo;

/// One of the child's pipes, as the transport tracks it.
struct PipeSlot {
    /// Set once the pipe transport exists.
    transport: Option<PipeTransport>,
    /// Its `connection_lost` ran.
    disconnected: bool,
}

/// The transport's shared state.
pub(crate) struct ProcInner {
    lp: Weak<LoopInner>,
    pub(crate) child: Child,
    /// The program, for `Debug` and debug-mode logs.
    program: String,
    returncode: Cell<Option<i32>>,
    /// `close()` was called.
    closed: Cell<bool>,
    /// `connection_lost` is scheduled (asyncio's `_finished`).
    finished: Cell<bool>,
    /// The loop went away under a running child: everything released.
    torn_down: Cell<bool>,
    /// Index = the child's descriptor; `None` when it is not a pipe.
    pipes: RefCell<[Option<PipeSlot>; 3]>,
    pub(crate) calls: Rc<Calls>,
    exit_waiters: RefCell<Vec<Waker>>,
}

impl ProcInner {
    pub(crate) fn new(
        lp: &EventLoop,
        child: Child,
        program: String,
        calls: Rc<Calls>,
        piped: [bool; 3],
    ) -> Rc<ProcInner> {
        let slot = |yes: bool| {
            yes.then_some(PipeSlot {
                transport: None,
                disconnected: false,
            })
        };
        Rc::new(ProcInner {
            lp: lp.downgrade(),
            child,
            program,
            returncode: Cell::new(None),
            closed: Cell::new(false),
            finished: Cell::new(false),
            torn_down: Cell::new(false),
            pipes: RefCell::new(piped.map(slot)),
            calls,
            exit_waiters: RefCell::new(Vec::new()),
        })
    }

    pub(crate) fn loop_(&self) -> Option<EventLoop> {
        self.lp.upgrade().map(EventLoop::from_inner)
    }

    /// Records the pipe transport of descriptor `fd`.
    pub(crate) fn set_pipe(&self, fd: usize, transport: PipeTransport) {
        if let Some(slot) = self.pipes.borrow_mut()[fd].as_mut() {
            slot.transport = Some(transport);
        }
    }

    /// A pipe delivered data (asyncio's `_pipe_data_received`).
    pub(crate) fn pipe_data_received(self: &Rc<Self>, fd: i32, data: &[u8]) {
        self.calls.data(fd, data);
    }

    /// A pipe closed (asyncio's `_pipe_connection_lost`).
    pub(crate) fn pipe_connection_lost(self: &Rc<Self>, fd: i32, error: Option<io::Error>) {
        if let Some(slot) = self.pipes.borrow_mut()[fd as usize].as_mut() {
            slot.disconnected = true;
        }
        self.calls.call(Call::PipeLost(fd, error));
        self.try_finish();
    }

    /// The child was reaped (asyncio's `_process_exited`): `wait()`
    /// returns from now on.
    pub(crate) fn process_exited(self: &Rc<Self>, returncode: i32) {
        self.child.set_reaped();
        if self.returncode.replace(Some(returncode)).is_some() {
            return;
        }
        if self.loop_().is_some_and(|lp| lp.get_debug()) {
            tracing::info!(target: "ringloop", "{self:?} exited with return code {returncode}");
        }
        for w in self.exit_waiters.borrow_mut().drain(..) {
            w.wake();
        }
        self.calls.call(Call::Exited);
        self.try_finish();
    }

    /// asyncio's `_try_finish`: the end once the child exited and every
    /// pipe is closed.
    fn try_finish(self: &Rc<Self>) {
        if self.finished.get() || self.returncode.get().is_none() {
            return;
        }
        let all_closed = self
            .pipes
            .borrow()
            .iter()
            .flatten()
            .all(|slot| slot.disconnected);
        if all_closed {
            self.finished.set(true);
            self.calls.call(Call::Lost);
        }
    }

    /// `close()`: closes the pipes, kills a child still running.
    pub(crate) fn close(&self) {
        if self.closed.replace(true) {
            return;
        }
        let pipes: Vec<PipeTransport> = self
            .pipes
            .borrow()
            .iter()
            .flatten()
            .filter_map(|s| s.transport.clone())
            .collect();
        for p in pipes {
            p.close();
        }
        if self.returncode.get().is_none() && !self.child.is_reaped() {
            if self.loop_().is_some_and(|lp| lp.get_debug()) {
                tracing::warn!(target: "ringloop", "Close running child process: kill {self:?}");
            }
            // ESRCH: it died meanwhile; the watcher reaps it.
            let _ = self.child.send_signal(libc::SIGKILL);
        }
    }

    /// The loop closed (or the transport could not be started): no
    /// protocol call any more, the child is killed if it runs, and it is
    /// reaped now or later (never left a zombie for good).
    pub(crate) fn teardown(&self) {
        if self.torn_down.replace(true) {
            return;
        }
        self.closed.set(true);
        self.calls.shutdown();
        self.child.abandon();
        let pipes = std::mem::take(&mut *self.pipes.borrow_mut());
        drop(pipes);
        for w in self.exit_waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }
}

/// A running (or finished) child process with its pipes: asyncio's
/// `SubprocessTransport`.
///
/// Made by [`EventLoop::subprocess_exec`] and
/// [`EventLoop::subprocess_shell`] and handed to the protocol's
/// `connection_made`. Cloning gives another handle to the same child.
///
/// The loop reaps the child itself (by pidfd, see `docs/subprocess.md`):
/// no zombie is left and no other child of the program is reaped.
/// Dropping every handle does not kill the child; [`close`](Self::close)
/// does, if it still runs. When the loop is closed with the child still
/// running, the child is killed.
#[derive(Clone)]
pub struct SubprocessTransport {
    pub(crate) inner: Rc<ProcInner>,
}

impl SubprocessTransport {
    /// The child's process id (`get_pid`).
    pub fn get_pid(&self) -> u32 {
        self.inner.child.pid() as u32
    }

    /// The return code once the child has exited (`get_returncode`): its
    /// exit status, or `-signum` if a signal ended it; `None` while it
    /// runs.
    pub fn get_returncode(&self) -> Option<i32> {
        self.inner.returncode.get()
    }

    /// The transport of the child's pipe `fd` (0, 1 or 2), if that
    /// descriptor is a pipe (`get_pipe_transport`).
    pub fn get_pipe_transport(&self, fd: i32) -> Option<PipeTransport> {
        let pipes = self.inner.pipes.borrow();
        let slot = pipes.get(usize::try_from(fd).ok()?)?.as_ref()?;
        slot.transport.clone()
    }

    /// Sends signal `signum` to the child (`send_signal`), through its
    /// pidfd: never to another process that reused the pid.
    ///
    /// Errors: `ESRCH` (`raw_os_error() == Some(libc::ESRCH)`, asyncio's
    /// `ProcessLookupError`) once the child has been reaped;
    /// `InvalidInput` (`EINVAL`) for an invalid signal number.
    pub fn send_signal(&self, signum: i32) -> io::Result<()> {
        self.inner.child.send_signal(signum)
    }

    /// Sends `SIGTERM` (`terminate`).
    pub fn terminate(&self) -> io::Result<()> {
        self.send_signal(libc::SIGTERM)
    }

    /// Sends `SIGKILL` (`kill`).
    pub fn kill(&self) -> io::Result<()> {
        self.send_signal(libc::SIGKILL)
    }

    /// Closes the pipes (stdin after its buffer is written) and kills the
    /// child if it still runs (`close`). The protocol's
    /// `connection_lost` follows once the child is reaped and the pipes
    /// are closed. A second call does nothing.
    pub fn close(&self) {
        self.inner.close()
    }

    /// True once [`close`](Self::close) was called (`is_closing`).
    pub fn is_closing(&self) -> bool {
        self.inner.closed.get()
    }

    /// asyncio's `get_extra_info(name)`: `"subprocess"` gives the child's
    /// pid ([`ExtraInfo::Pid`]; asyncio gives its `Popen` object); other
    /// names give `None`.
    pub fn get_extra_info(&self, name: &str) -> Option<ExtraInfo> {
        match name {
            "subprocess" => Some(ExtraInfo::Pid(self.get_pid())),
            _ => None,
        }
    }

    /// Waits until the child has exited and returns its return code
    /// (asyncio's private `_wait`, behind `Process.wait()`). Pipe data
    /// may still be on its way; wait for the protocol's
    /// `connection_lost` to have everything.
    pub fn wait(&self) -> impl Future<Output = i32> + 'static {
        let inner = self.inner.clone();
        poll_fn(move |cx| {
            if let Some(code) = inner.returncode.get() {
                return Poll::Ready(code);
            }
            if !inner.torn_down.get() {
                let mut w = inner.exit_waiters.borrow_mut();
                if !w.iter().any(|x| x.will_wake(cx.waker())) {
                    w.push(cx.waker().clone());
                }
            }
            Poll::Pending
        })
    }

    /// The loop this transport runs on, while it exists.
    pub fn get_loop(&self) -> Option<EventLoop> {
        self.inner.loop_()
    }
}

impl fmt::Debug for ProcInner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<SubprocessTransport {:?}", self.program)?;
        if self.closed.get() {
            f.write_str(" closed")?;
        }
        write!(f, " pid={}", self.child.pid())?;
        match self.returncode.get() {
            Some(code) => write!(f, " returncode={code}")?,
            None => f.write_str(" running")?,
        }
        if let Ok(pipes) = self.pipes.try_borrow() {
            for (name, slot) in ["stdin", "stdout", "stderr"].iter().zip(pipes.iter()) {
                if let Some(slot) = slot {
                    let state = if slot.disconnected { "closed" } else { "open" };
                    write!(f, " {name}={state}")?;
                }
            }
        }
        write!(f, " protocol={}>", self.calls.protocol_name())
    }
}

impl fmt::Debug for SubprocessTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}
