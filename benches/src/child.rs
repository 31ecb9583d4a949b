//! Server processes: each echo server runs in a process of its own, so
//! that the process's CPU time is exactly the server's.
//!
//! The benchmark binary starts itself again with
//! `--serve <server> --cpu <n> --parent <pid>` ([`ServerProcess::spawn`]);
//! that child ([`child_main`]) dies with its parent
//! (`PR_SET_PDEATHSIG`), raises its descriptor limit, pins itself to the
//! CPU, listens on `127.0.0.1:0`, prints `ready <port>` on stdout and
//! serves. A control thread (created after pinning, so on the same CPU,
//! and asleep except when asked) reads commands from stdin:
//!
//! - `cpu` → `cpu <µs>`: the process's `utime + stime` so far, from
//!   `getrusage(RUSAGE_SELF)` (the `/proc/<pid>/stat` figure, in µs
//!   instead of 10 ms clock ticks);
//! - end of input (the parent closed the pipe or died) → the process
//!   exits.
//!
//! The parent's [`ServerProcess`] kills the child by pid (`SIGKILL`) and
//! reaps it when dropped, on every path, panics included.

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use crate::os::{
    die_with_parent, pin_current_thread, proc_process_ticks, proc_rss_bytes, raise_nofile_limit,
    rusage_cpu,
};
use crate::servers::{listen_local, serve, ServerKind};

/// The first argument that makes the benchmark binary a server process.
pub const SERVE_FLAG: &str = "--serve";

/// How long a server process may take to start listening or to answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// The server process's side: parses `--serve <server> [--cpu N]
/// [--parent PID]`, then serves until its stdin closes. Never returns.
pub fn child_main(args: &[String]) -> ! {
    match child_run(args) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("echo server process: {e}");
            std::process::exit(1);
        }
    }
}

fn child_run(args: &[String]) -> Result<(), String> {
    let mut kind = None;
    let mut cpu = None;
    let mut parent = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            SERVE_FLAG => {
                let v = value()?;
                kind = Some(ServerKind::from_name(&v).ok_or(format!("unknown server {v:?}"))?);
            }
            "--cpu" => cpu = Some(value()?.parse::<usize>().map_err(|e| e.to_string())?),
            "--parent" => parent = Some(value()?.parse::<u32>().map_err(|e| e.to_string())?),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    let kind = kind.ok_or("--serve needs a server name")?;
    if let Some(p) = parent {
        die_with_parent(p).map_err(|e| format!("PR_SET_PDEATHSIG: {e}"))?;
    }
    raise_nofile_limit().map_err(|e| format!("RLIMIT_NOFILE: {e}"))?;
    if let Some(c) = cpu {
        pin_current_thread(c).map_err(|e| format!("pinning to CPU {c}: {e}"))?;
    }
    let listener = listen_local().map_err(|e| format!("listen: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    std::thread::Builder::new()
        .name("control".to_string())
        .spawn(control_thread)
        .map_err(|e| format!("spawning the control thread: {e}"))?;
    {
        let mut out = io::stdout().lock();
        writeln!(out, "ready {port}")
            .and_then(|()| out.flush())
            .map_err(|e| e.to_string())?;
    }
    serve(kind, listener).map_err(|e| format!("{}: {e}", kind.name()))
}

/// Answers `cpu` requests on stdin; exits the process at end of input.
fn control_thread() {
    let stdin = io::stdin();
    let mut line = String::new();
    loop {
        line.clear();
        match stdin.read_line(&mut line) {
            Ok(0) | Err(_) => std::process::exit(0),
            Ok(_) => {}
        }
        let reply = match line.trim() {
            "cpu" => match rusage_cpu(libc::RUSAGE_SELF) {
                Ok(d) => format!("cpu {}", d.as_micros()),
                Err(e) => format!("error {e}"),
            },
            other => format!("error unknown command {other:?}"),
        };
        let mut out = io::stdout().lock();
        if writeln!(out, "{reply}").and_then(|()| out.flush()).is_err() {
            std::process::exit(0);
        }
    }
}

/// A server process, seen from the benchmark. Dropping it kills the
/// process (`SIGKILL` by pid) and reaps it.
pub struct ServerProcess {
    kind: ServerKind,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    /// Bytes read from stdout past the last line.
    pending: Vec<u8>,
    port: u16,
}

impl ServerProcess {
    /// Starts `kind` in a new process pinned to `cpu`, and waits until it
    /// listens.
    pub fn spawn(kind: ServerKind, cpu: Option<usize>) -> Result<ServerProcess, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut cmd = Command::new(exe);
        cmd.arg(SERVE_FLAG)
            .arg(kind.name())
            .arg("--parent")
            .arg(std::process::id().to_string());
        if let Some(c) = cpu {
            cmd.arg("--cpu").arg(c.to_string());
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("starting the {} process: {e}", kind.name()))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("no pipes to the server process".to_string());
        };
        let mut me = ServerProcess {
            kind,
            child,
            stdin: Some(stdin),
            stdout,
            pending: Vec::new(),
            port: 0,
        };
        // On error `me` is dropped, which kills and reaps the child.
        let line = me.read_line()?;
        me.port = line
            .strip_prefix("ready ")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("{}: unexpected first line {line:?}", kind.name()))?;
        Ok(me)
    }

    /// The server.
    pub fn kind(&self) -> ServerKind {
        self.kind
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The port it listens on, on `127.0.0.1`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process's CPU time (`utime + stime`) so far, at µs resolution
    /// (asked from the process itself, `getrusage(RUSAGE_SELF)`).
    pub fn cpu(&mut self) -> Result<Duration, String> {
        let name = self.kind.name();
        let stdin = self.stdin.as_mut().ok_or("stdin closed")?;
        stdin
            .write_all(b"cpu\n")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("{name}: asking for CPU time: {e}"))?;
        let line = self.read_line()?;
        line.strip_prefix("cpu ")
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_micros)
            .ok_or_else(|| format!("{name}: unexpected reply {line:?}"))
    }

    /// The process's CPU time (`utime + stime`) so far in clock ticks, read
    /// from `/proc/<pid>/stat` (a cross-check of [`cpu`](Self::cpu)).
    pub fn proc_ticks(&self) -> Result<u64, String> {
        proc_process_ticks(self.pid()).map_err(|e| format!("{}: {e}", self.kind.name()))
    }

    /// The process's resident set size (`VmRSS`), in bytes.
    pub fn rss(&self) -> Result<u64, String> {
        proc_rss_bytes(self.pid()).map_err(|e| format!("{}: {e}", self.kind.name()))
    }

    /// Fails if the process has exited.
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("{} exited: {status}", self.kind.name())),
            Err(e) => Err(format!("{}: waitpid: {e}", self.kind.name())),
        }
    }

    /// Reads one line from the process's stdout, waiting at most
    /// [`REPLY_TIMEOUT`].
    fn read_line(&mut self) -> Result<String, String> {
        let name = self.kind.name();
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            if let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=i).collect();
                return Ok(String::from_utf8_lossy(&line[..i]).into_owned());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("{name}: no reply within {REPLY_TIMEOUT:?}"));
            }
            let mut pfd = libc::pollfd {
                fd: self.stdout.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().clamp(1, 60_000) as libc::c_int;
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(format!("{name}: poll: {e}"));
            }
            if rc == 0 {
                continue;
            }
            let mut chunk = [0u8; 256];
            match io::Read::read(&mut self.stdout, &mut chunk) {
                Ok(0) => {
                    let status = self.child.wait().map(|s| s.to_string());
                    return Err(format!(
                        "{name}: the process ended ({})",
                        status.unwrap_or_else(|e| e.to_string())
                    ));
                }
                Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("{name}: reading its stdout: {e}")),
            }
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Closing stdin alone would end it too; SIGKILL does not wait for
        // it to notice.
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
