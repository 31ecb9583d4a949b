//! Starting a child: checking argv, environment and directory, building
//! the pipes, and spawning with `std::process::Command`.
//!
//! `Command` does the delicate part well: it reports a failed `exec`
//! (a missing program, no permission) through a close-on-exec pipe, so
//! the error comes back from the spawn call itself, and it handles the
//! standard descriptors, `cwd`, the environment and `setpgid`. What it
//! cannot do is done in one `pre_exec` hook: `setsid`, stderr to stdout
//! (`dup2(1, 2)` after stdout is in place), `close_fds` and `pass_fds`.
//! `Command`'s `Child` is only used for its pid: the loop reaps the child
//! itself, by pidfd (see [`Child`]).
//!
//! Our pipes are made here with `pipe2(O_CLOEXEC)`; the child's ends
//! are handed to `Command` (which closes its copies when it is dropped,
//! on success and on failure), ours are returned. Nothing leaks on any
//! error path.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::Command;

use super::child::Child;
use super::close_fds::{clear_cloexec, cloexec_from_3};
use super::options::{EnvOp, Stdio, SubprocessOptions};

/// What a spawn produced: the child, and the loop's ends of its pipes
/// (index 0, 1, 2 for stdin, stdout, stderr).
pub(crate) struct Spawned {
    pub(crate) child: Child,
    pub(crate) pipes: [Option<OwnedFd>; 3],
}

/// The checked program and its arguments (`argv[0]` is the program).
pub(crate) struct Argv {
    program: OsString,
    args: Vec<OsString>,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn check_nul(what: &str, s: &OsStr) -> io::Result<()> {
    if s.as_bytes().contains(&0) {
        return Err(invalid(format!("{what} contains a NUL byte: {s:?}")));
    }
    Ok(())
}

impl Argv {
    /// `program args...`, as `subprocess_exec` takes them. An empty
    /// program or a NUL byte anywhere is `InvalidInput`.
    pub(crate) fn exec<I, S>(program: &OsStr, args: I) -> io::Result<Argv>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        if program.is_empty() {
            return Err(invalid("the program name is empty".into()));
        }
        check_nul("the program name", program)?;
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        for a in &args {
            check_nul("an argument", a)?;
        }
        Ok(Argv {
            program: program.to_owned(),
            args,
        })
    }

    /// `/bin/sh -c cmd`, as `subprocess_shell` (and Python's `shell=True`)
    /// runs it. A NUL byte is `InvalidInput`.
    pub(crate) fn shell(cmd: &OsStr) -> io::Result<Argv> {
        check_nul("the shell command", cmd)?;
        Ok(Argv {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), cmd.to_owned()],
        })
    }

    /// The program, for messages.
    pub(crate) fn program(&self) -> &OsStr {
        &self.program
    }
}

/// Checks what `Command` would only reject at spawn time, with a clearer
/// message.
fn check_options(o: &SubprocessOptions) -> io::Result<()> {
    for op in &o.env {
        match op {
            EnvOp::Set(k, v) => {
                check_env_key(k)?;
                check_nul("an environment value", v)?;
            }
            EnvOp::Remove(k) => check_env_key(k)?,
            EnvOp::Clear => {}
        }
    }
    if let Some(dir) = &o.cwd {
        check_nul("the working directory", dir.as_os_str())?;
    }
    if matches!(o.stdin, Some(Stdio::Stdout)) || matches!(o.stdout, Some(Stdio::Stdout)) {
        return Err(invalid("Stdio::Stdout is only valid for stderr".into()));
    }
    if o.new_session && o.process_group.is_some() {
        return Err(invalid(
            "start_new_session and process_group cannot be combined".into(),
        ));
    }
    if let Some(pgid) = o.process_group {
        if pgid < 0 {
            return Err(invalid(format!("invalid process group {pgid}")));
        }
    }
    Ok(())
}

fn check_env_key(k: &OsStr) -> io::Result<()> {
    if k.is_empty() || k.as_bytes().contains(&b'=') {
        return Err(invalid(format!("invalid environment variable name {k:?}")));
    }
    check_nul("an environment variable name", k)
}

/// A close-on-exec pipe: (read end, write end).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 just returned these two new descriptors; we own them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The child's side of one standard descriptor, and the loop's end of
/// its pipe if it is one. `reads` is true for stdin (the child reads).
fn stdio(spec: Stdio, reads: bool) -> io::Result<(std::process::Stdio, Option<OwnedFd>)> {
    Ok(match spec {
        Stdio::Pipe => {
            let (r, w) = pipe()?;
            if reads {
                (r.into(), Some(w))
            } else {
                (w.into(), Some(r))
            }
        }
        Stdio::Inherit | Stdio::Stdout => (std::process::Stdio::inherit(), None),
        Stdio::Null => (std::process::Stdio::null(), None),
        Stdio::Fd(fd) => (fd.into(), None),
    })
}

/// What the `pre_exec` hook does, prepared in the parent (the hook may
/// not allocate).
struct ChildSetup {
    new_session: bool,
    stderr_to_stdout: bool,
    close_fds: bool,
    pass_fds: Vec<RawFd>,
}

impl ChildSetup {
    fn needed(&self) -> bool {
        self.new_session || self.stderr_to_stdout || self.close_fds || !self.pass_fds.is_empty()
    }

    /// Runs in the forked child after its standard descriptors are in
    /// place, before `exec`. Async-signal-safe system calls only.
    fn run(&self) -> io::Result<()> {
        if self.new_session {
            // SAFETY: setsid takes nothing and only changes our session.
            if unsafe { libc::setsid() } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        if self.stderr_to_stdout {
            // SAFETY: dup2 onto 2 of our (already placed) stdout.
            if unsafe { libc::dup2(1, 2) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        if self.close_fds {
            cloexec_from_3()?;
        }
        for &fd in &self.pass_fds {
            clear_cloexec(fd)?;
        }
        Ok(())
    }
}

/// Starts `argv` with `options`; the default for an unset standard
/// descriptor is `default_stdio()`.
pub(crate) fn spawn(
    argv: &Argv,
    mut options: SubprocessOptions,
    default_stdio: fn() -> Stdio,
) -> io::Result<Spawned> {
    check_options(&options)?;
    let mut cmd = Command::new(&argv.program);
    cmd.args(&argv.args);
    let stdin = options.stdin.take().unwrap_or_else(default_stdio);
    let stdout = options.stdout.take().unwrap_or_else(default_stdio);
    let stderr = options.stderr.take().unwrap_or_else(default_stdio);
    let stderr_to_stdout = matches!(stderr, Stdio::Stdout);
    let (child_in, our_in) = stdio(stdin, true)?;
    let (child_out, our_out) = stdio(stdout, false)?;
    let (child_err, our_err) = stdio(stderr, false)?;
    cmd.stdin(child_in).stdout(child_out).stderr(child_err);
    if let Some(dir) = &options.cwd {
        cmd.current_dir(dir);
    }
    for op in &options.env {
        match op {
            EnvOp::Clear => {
                cmd.env_clear();
            }
            EnvOp::Set(k, v) => {
                cmd.env(k, v);
            }
            EnvOp::Remove(k) => {
                cmd.env_remove(k);
            }
        }
    }
    if let Some(pgid) = options.process_group {
        cmd.process_group(pgid);
    }
    let setup = ChildSetup {
        new_session: options.new_session,
        stderr_to_stdout,
        close_fds: options.close_fds,
        pass_fds: options.pass_fds.iter().map(AsRawFd::as_raw_fd).collect(),
    };
    if setup.needed() {
        // SAFETY: in the forked child the hook makes only async-signal-safe
        // calls (setsid, dup2, close_range, open/getdents64/fcntl/close,
        // getrlimit) on data prepared here; no allocation, no lock.
        unsafe {
            cmd.pre_exec(move || setup.run());
        }
    }
    let cwd = options.cwd.clone();
    let spawned = cmd.spawn();
    // The child's ends of the pipes, /dev/null and passed descriptors
    // are closed here, whatever happened.
    drop(cmd);
    drop(options);
    let child = spawned.map_err(|e| spawn_error(argv, cwd.as_deref(), e))?;
    let child = Child::adopt(child.id() as libc::pid_t)?;
    Ok(Spawned {
        child,
        pipes: [our_in, our_out, our_err],
    })
}

/// Names the program in a spawn error, keeping its kind (`NotFound`,
/// `PermissionDenied`, ...). The child's `chdir` fails with the same
/// errors as its `exec`: when the working directory is not a directory
/// (missing, or a file), it is named too (as Python's `_execute_child` does), so
/// that a missing directory does not read as a missing program.
fn spawn_error(argv: &Argv, cwd: Option<&std::path::Path>, e: io::Error) -> io::Error {
    let program = argv.program.to_string_lossy();
    match cwd.filter(|d| !d.is_dir()) {
        Some(dir) => io::Error::new(
            e.kind(),
            format!(
                "cannot run {program:?} in {:?}: {e}",
                dir.display().to_string()
            ),
        ),
        None => io::Error::new(e.kind(), format!("cannot run {program:?}: {e}")),
    }
}
