//! [`SubprocessOptions`] and [`Stdio`]: how a child is started (asyncio's
//! keyword arguments of `subprocess_exec`, which are `subprocess.Popen`'s).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

/// Where one of the child's standard descriptors goes (asyncio's
/// `subprocess.PIPE`, `None`, `DEVNULL`, a file object or descriptor,
/// `STDOUT`).
#[non_exhaustive]
pub enum Stdio {
    /// A new pipe to the loop (`subprocess.PIPE`): the transport's pipe
    /// transport for that descriptor, and the protocol's
    /// `pipe_data_received` / `pipe_connection_lost`.
    Pipe,
    /// The loop's own descriptor is inherited (`None`).
    Inherit,
    /// `/dev/null` (`subprocess.DEVNULL`).
    Null,
    /// This descriptor (a file, socket, pipe end...). The options own it;
    /// the parent's copy is closed once the child is started.
    Fd(OwnedFd),
    /// For stderr only: wherever the child's stdout goes
    /// (`subprocess.STDOUT`). Anywhere else it is an invalid-input error.
    Stdout,
}

impl From<OwnedFd> for Stdio {
    fn from(fd: OwnedFd) -> Stdio {
        Stdio::Fd(fd)
    }
}

impl From<std::fs::File> for Stdio {
    fn from(f: std::fs::File) -> Stdio {
        Stdio::Fd(f.into())
    }
}

impl fmt::Debug for Stdio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stdio::Pipe => f.write_str("Pipe"),
            Stdio::Inherit => f.write_str("Inherit"),
            Stdio::Null => f.write_str("Null"),
            Stdio::Fd(fd) => write!(f, "Fd({})", fd.as_raw_fd()),
            Stdio::Stdout => f.write_str("Stdout"),
        }
    }
}

/// One change to the child's environment, applied in order.
#[derive(Debug)]
pub(crate) enum EnvOp {
    /// Start from an empty environment.
    Clear,
    Set(OsString, OsString),
    Remove(OsString),
}

/// How to start a child: [`EventLoop::subprocess_exec`],
/// [`EventLoop::subprocess_shell`] and
/// [`create_subprocess_exec`](super::create_subprocess_exec) take one.
/// Build with `Default` and the setters.
///
/// Unset standard descriptors take the default of the function called:
/// [`Stdio::Pipe`] for the loop's `subprocess_*` methods,
/// [`Stdio::Inherit`] for `create_subprocess_*` (as in asyncio).
///
/// By default the child inherits the loop's environment and working
/// directory, stays in the loop's process group and session, and
/// inherits **no descriptor but its standard three**
/// ([`close_fds`](Self::close_fds) is true, as in Python).
///
/// # Example
///
/// ```
/// use ringloop::process::{Stdio, SubprocessOptions};
///
/// let options = SubprocessOptions::default()
///     .stdin(Stdio::Null)
///     .stderr(Stdio::Stdout)
///     .cwd("/")
///     .env("LC_ALL", "C")
///     .start_new_session(true);
/// # let _ = options;
/// ```
///
/// [`EventLoop::subprocess_exec`]: crate::EventLoop::subprocess_exec
/// [`EventLoop::subprocess_shell`]: crate::EventLoop::subprocess_shell
#[derive(Debug)]
pub struct SubprocessOptions {
    pub(crate) stdin: Option<Stdio>,
    pub(crate) stdout: Option<Stdio>,
    pub(crate) stderr: Option<Stdio>,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) env: Vec<EnvOp>,
    pub(crate) process_group: Option<i32>,
    pub(crate) new_session: bool,
    pub(crate) close_fds: bool,
    pub(crate) pass_fds: Vec<OwnedFd>,
}

impl Default for SubprocessOptions {
    fn default() -> Self {
        SubprocessOptions {
            stdin: None,
            stdout: None,
            stderr: None,
            cwd: None,
            env: Vec::new(),
            process_group: None,
            new_session: false,
            close_fds: true,
            pass_fds: Vec::new(),
        }
    }
}

impl SubprocessOptions {
    /// The child's standard input (`stdin=`).
    pub fn stdin(mut self, stdio: Stdio) -> Self {
        self.stdin = Some(stdio);
        self
    }

    /// The child's standard output (`stdout=`).
    pub fn stdout(mut self, stdio: Stdio) -> Self {
        self.stdout = Some(stdio);
        self
    }

    /// The child's standard error (`stderr=`); [`Stdio::Stdout`] sends it
    /// wherever stdout goes.
    pub fn stderr(mut self, stdio: Stdio) -> Self {
        self.stderr = Some(stdio);
        self
    }

    /// The child's working directory (`cwd=`). As in Python, a relative
    /// program path (`./tool`) is then taken relative to this directory;
    /// a bare name is looked up in `PATH`. A directory that does not
    /// exist is an error from the spawn call.
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Sets one variable on top of the inherited environment (extends it).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env.push(EnvOp::Set(
            key.as_ref().to_owned(),
            value.as_ref().to_owned(),
        ));
        self
    }

    /// Sets several variables on top of the inherited environment.
    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (k, v) in vars {
            self = self.env(k, v);
        }
        self
    }

    /// Removes one variable from the child's environment.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.env.push(EnvOp::Remove(key.as_ref().to_owned()));
        self
    }

    /// Starts the child's environment empty; later
    /// [`env`](Self::env) calls add to it.
    pub fn env_clear(mut self) -> Self {
        self.env.push(EnvOp::Clear);
        self
    }

    /// The child's environment is exactly `vars` (asyncio's `env=`
    /// mapping, which replaces the environment).
    pub fn env_replace<I, K, V>(self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        self.env_clear().envs(vars)
    }

    /// Puts the child in process group `pgid` (`setpgid(0, pgid)` in the
    /// child, Python's `process_group=`); `0` makes a new group led by
    /// the child, whose id is then its pid.
    pub fn process_group(mut self, pgid: i32) -> Self {
        self.process_group = Some(pgid);
        self
    }

    /// Runs the child in a new session (`setsid()`,
    /// `start_new_session=True`): it leads a new session and process
    /// group, detached from the loop's controlling terminal. Cannot be
    /// combined with [`process_group`](Self::process_group).
    pub fn start_new_session(mut self, yes: bool) -> Self {
        self.new_session = yes;
        self
    }

    /// When true (the default, as Python's `close_fds=True`), the child
    /// inherits no descriptor beyond its standard three and those given
    /// to [`pass_fd`](Self::pass_fd), even ones the program opened
    /// without close-on-exec. When false, descriptors without
    /// close-on-exec are inherited (everything ringloop and Rust's
    /// standard library open is close-on-exec anyway), and starting the
    /// child is a little cheaper.
    pub fn close_fds(mut self, yes: bool) -> Self {
        self.close_fds = yes;
        self
    }

    /// Passes `fd` to the child under the same number (Python's
    /// `pass_fds=`). The options own it; the parent's copy is closed once
    /// the child is started (pass a `try_clone()` to keep one, and tell
    /// the child its number).
    pub fn pass_fd(mut self, fd: impl Into<OwnedFd>) -> Self {
        self.pass_fds.push(fd.into());
        self
    }
}
