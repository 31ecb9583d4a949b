//! `EventLoop::subprocess_exec` and `EventLoop::subprocess_shell`: spawn,
//! watch, connect the pipes, then `connection_made` (asyncio's
//! `_make_subprocess_transport` and `_connect_pipes`).

use std::cell::RefCell;
use std::ffi::OsStr;
use std::future::Future;
use std::io;
use std::rc::{Rc, Weak};

use super::calls::{Calls, ProtocolRef};
use super::options::{Stdio, SubprocessOptions};
use super::protocol::SubprocessProtocol;
use super::spawn::{spawn, Argv, Spawned};
use super::transport::{ProcInner, SubprocessTransport};
use super::{pipes, watch};
use crate::event_loop::{EventLoop, LoopInner};

impl EventLoop {
    /// Runs `program` with `args` as a child process
    /// (`loop.subprocess_exec(protocol_factory, program, *args, ...)`);
    /// resolves to its transport and protocol once the protocol's
    /// `connection_made` has run.
    ///
    /// `program` is `argv[0]` and is looked up in `PATH` unless it
    /// contains a `/`; `args` follow it. Standard descriptors default to
    /// [`Stdio::Pipe`].
    ///
    /// Errors, all from this call (no transport is made, no descriptor
    /// leaks): an empty program, or a NUL byte in the program, an
    /// argument, the environment or the directory, is `InvalidInput`; a
    /// program that does not exist is `NotFound` (and `PermissionDenied`
    /// if it is not executable), with the program named in the message.
    ///
    /// # Example
    ///
    /// ```
    /// use ringloop::{BaseProtocol, SubprocessProtocol, SubprocessTransport};
    ///
    /// struct Quiet;
    /// impl BaseProtocol for Quiet {
    ///     type Transport = SubprocessTransport;
    /// }
    /// impl SubprocessProtocol for Quiet {}
    ///
    /// let lp = ringloop::EventLoop::new()?;
    /// let l = lp.clone();
    /// let code = lp.run_until_complete(async move {
    ///     let (transport, _) = l
    ///         .subprocess_exec(|| Quiet, "sh", ["-c", "exit 3"], Default::default())
    ///         .await?;
    ///     Ok::<_, std::io::Error>(transport.wait().await)
    /// })??;
    /// assert_eq!(code, 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn subprocess_exec<P, F>(
        &self,
        factory: F,
        program: impl AsRef<OsStr>,
        args: impl IntoIterator<Item = impl AsRef<OsStr>>,
        options: SubprocessOptions,
    ) -> impl Future<Output = io::Result<(SubprocessTransport, Rc<RefCell<P>>)>> + 'static
    where
        P: SubprocessProtocol,
        F: FnOnce() -> P + 'static,
    {
        let argv = Argv::exec(program.as_ref(), args);
        self.subprocess(factory, argv, options)
    }

    /// Runs `cmd` with the shell, `/bin/sh -c cmd`
    /// (`loop.subprocess_shell(protocol_factory, cmd, ...)`); otherwise as
    /// [`subprocess_exec`](Self::subprocess_exec). Quoting is the
    /// caller's business; a NUL byte is `InvalidInput`.
    pub fn subprocess_shell<P, F>(
        &self,
        factory: F,
        cmd: impl AsRef<OsStr>,
        options: SubprocessOptions,
    ) -> impl Future<Output = io::Result<(SubprocessTransport, Rc<RefCell<P>>)>> + 'static
    where
        P: SubprocessProtocol,
        F: FnOnce() -> P + 'static,
    {
        let argv = Argv::shell(cmd.as_ref());
        self.subprocess(factory, argv, options)
    }

    fn subprocess<P, F>(
        &self,
        factory: F,
        argv: io::Result<Argv>,
        options: SubprocessOptions,
    ) -> impl Future<Output = io::Result<(SubprocessTransport, Rc<RefCell<P>>)>> + 'static
    where
        P: SubprocessProtocol,
        F: FnOnce() -> P + 'static,
    {
        let lp = self.downgrade();
        async move {
            let argv = argv?;
            let lp = upgrade(&lp)?;
            let protocol = Rc::new(RefCell::new(factory()));
            let erased: ProtocolRef = protocol.clone();
            let name = std::any::type_name::<P>();
            let transport = start(&lp, &argv, options, pipe_by_default, erased, name).await?;
            Ok((transport, protocol))
        }
    }
}

/// The loop, unless it was dropped.
pub(crate) fn upgrade(lp: &Weak<LoopInner>) -> io::Result<EventLoop> {
    lp.upgrade()
        .map(EventLoop::from_inner)
        .ok_or_else(|| io::Error::other(crate::Error::LoopClosed))
}

/// The default of an unset standard descriptor for the loop's methods.
fn pipe_by_default() -> Stdio {
    Stdio::Pipe
}

/// Spawns and connects; an unset standard descriptor is
/// `default_stdio()`. On any failure after the spawn, the child is
/// killed and reaped and the protocol hears nothing.
pub(crate) async fn start(
    lp: &EventLoop,
    argv: &Argv,
    options: SubprocessOptions,
    default_stdio: fn() -> Stdio,
    protocol: ProtocolRef,
    protocol_name: &'static str,
) -> io::Result<SubprocessTransport> {
    let Spawned { child, pipes } = spawn(argv, options, default_stdio)?;
    let program = argv.program().to_string_lossy().into_owned();
    if lp.get_debug() {
        tracing::debug!(target: "ringloop", "process {program:?} created: pid {}", child.pid());
    }
    let piped = [0, 1, 2].map(|i| pipes[i].is_some());
    let calls = Calls::new(lp, protocol, protocol_name);
    let inner = ProcInner::new(lp, child, program, calls, piped);
    let guard = StartGuard(Some(inner.clone()));
    watch::start(lp, &inner)?;
    pipes::connect(lp, &inner, pipes)?;
    let transport = SubprocessTransport {
        inner: inner.clone(),
    };
    inner.calls.start(transport.clone());
    // connection_made (and the pipes' own) were scheduled before: when
    // this resolves, the protocol knows its transport.
    crate::pipe::scheduled_callbacks_ran(lp).await?;
    guard.disarm();
    Ok(transport)
}

/// Undoes a half-made transport: the pipes close and the child is killed
/// (the watcher reaps it). A protocol that has not heard
/// `connection_made` is dropped uncalled; one that has gets the rest of
/// its events, `connection_lost` last, as usual.
struct StartGuard(Option<Rc<ProcInner>>);

impl StartGuard {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for StartGuard {
    fn drop(&mut self) {
        if let Some(inner) = self.0.take() {
            if !inner.calls.made_delivered() {
                inner.calls.shutdown();
            }
            inner.close();
        }
    }
}
