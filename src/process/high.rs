//! The high-level API: [`create_subprocess_exec`],
//! [`create_subprocess_shell`] and [`Process`] (asyncio's
//! `asyncio.create_subprocess_exec/shell` and `asyncio.subprocess.Process`).

use std::cell::RefCell;
use std::ffi::OsStr;
use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;

use bytes::Bytes;

use super::exec::{start, upgrade};
use super::options::{Stdio, SubprocessOptions};
use super::spawn::Argv;
use super::stdin::ProcessStdin;
use super::stream_protocol::SubprocessStreamProtocol;
use super::transport::SubprocessTransport;
use crate::event_loop::EventLoop;
use crate::streams::{StreamError, StreamReader};

/// A running (or finished) child with stream access to its pipes
/// (asyncio's `asyncio.subprocess.Process`).
///
/// Made by [`create_subprocess_exec`] and [`create_subprocess_shell`].
/// `stdin`, `stdout` and `stderr` are `Some` for the descriptors given
/// [`Stdio::Pipe`]; take them out (`take()`) or use them in place.
/// Dropping the `Process` neither kills nor forgets the child: the loop
/// still reaps it.
///
/// # Example
///
/// ```
/// use ringloop::process::{self, Stdio, SubprocessOptions};
/// use ringloop::streams::DEFAULT_LIMIT;
///
/// let lp = ringloop::EventLoop::new()?;
/// let l = lp.clone();
/// let (out, code) = lp.run_until_complete(async move {
///     let options = SubprocessOptions::default()
///         .stdin(Stdio::Pipe)
///         .stdout(Stdio::Pipe);
///     let p = process::create_subprocess_exec(&l, "tr", ["a-z", "A-Z"], DEFAULT_LIMIT, options)
///         .await?;
///     let (out, _err) = p.communicate(Some(b"hello")).await?;
///     Ok::<_, std::io::Error>((out, p.returncode()))
/// })??;
/// assert_eq!(out.as_deref(), Some(&b"HELLO"[..]));
/// assert_eq!(code, Some(0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Process {
    transport: SubprocessTransport,
    /// The child's stdin, if it is a pipe.
    pub stdin: Option<ProcessStdin>,
    /// The child's stdout, if it is a pipe.
    pub stdout: Option<StreamReader>,
    /// The child's stderr, if it is a pipe.
    pub stderr: Option<StreamReader>,
}

/// Unset standard descriptors are inherited, as in asyncio's
/// `create_subprocess_*`.
fn inherit_by_default() -> Stdio {
    Stdio::Inherit
}

/// Runs `program` with `args` and returns a [`Process`]
/// (`asyncio.create_subprocess_exec(program, *args, limit=..., **kwds)`).
///
/// As [`EventLoop::subprocess_exec`], except that unset standard
/// descriptors are **inherited** (asyncio's default here), and that
/// `limit` is the [`StreamReader`] limit of stdout and stderr
/// ([`DEFAULT_LIMIT`](crate::streams::DEFAULT_LIMIT) is asyncio's).
pub fn create_subprocess_exec(
    lp: &EventLoop,
    program: impl AsRef<OsStr>,
    args: impl IntoIterator<Item = impl AsRef<OsStr>>,
    limit: usize,
    options: SubprocessOptions,
) -> impl Future<Output = io::Result<Process>> + 'static {
    create(lp, Argv::exec(program.as_ref(), args), limit, options)
}

/// Runs `cmd` with `/bin/sh -c` and returns a [`Process`]
/// (`asyncio.create_subprocess_shell(cmd, limit=..., **kwds)`); see
/// [`create_subprocess_exec`].
pub fn create_subprocess_shell(
    lp: &EventLoop,
    cmd: impl AsRef<OsStr>,
    limit: usize,
    options: SubprocessOptions,
) -> impl Future<Output = io::Result<Process>> + 'static {
    create(lp, Argv::shell(cmd.as_ref()), limit, options)
}

fn create(
    lp: &EventLoop,
    argv: io::Result<Argv>,
    limit: usize,
    options: SubprocessOptions,
) -> impl Future<Output = io::Result<Process>> + 'static {
    let lp = lp.downgrade();
    async move {
        let argv = argv?;
        let lp = upgrade(&lp)?;
        if limit == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "Limit cannot be <= 0",
            ));
        }
        let protocol = Rc::new(RefCell::new(SubprocessStreamProtocol::new(limit)));
        let name = std::any::type_name::<SubprocessStreamProtocol>();
        let transport = start(
            &lp,
            &argv,
            options,
            inherit_by_default,
            protocol.clone(),
            name,
        )
        .await?;
        let p = protocol.borrow();
        Ok(Process {
            transport,
            stdin: p.stdin.clone(),
            stdout: p.stdout.clone(),
            stderr: p.stderr.clone(),
        })
    }
}

impl Process {
    /// The child's process id (`pid`).
    pub fn pid(&self) -> u32 {
        self.transport.get_pid()
    }

    /// The return code once the child has exited (`returncode`): the exit
    /// status, or `-signum`; `None` while it runs.
    pub fn returncode(&self) -> Option<i32> {
        self.transport.get_returncode()
    }

    /// Waits for the child to exit and returns its return code (`wait`).
    ///
    /// With stdout or stderr piped, read them while waiting (or use
    /// [`communicate`](Self::communicate)): a child that fills a pipe
    /// nobody reads blocks forever, as in asyncio.
    pub fn wait(&self) -> impl Future<Output = i32> + 'static {
        self.transport.wait()
    }

    /// Sends signal `signum` (`send_signal`); see
    /// [`SubprocessTransport::send_signal`].
    pub fn send_signal(&self, signum: i32) -> io::Result<()> {
        self.transport.send_signal(signum)
    }

    /// Sends `SIGTERM` (`terminate`).
    pub fn terminate(&self) -> io::Result<()> {
        self.transport.terminate()
    }

    /// Sends `SIGKILL` (`kill`).
    pub fn kill(&self) -> io::Result<()> {
        self.transport.kill()
    }

    /// The underlying transport.
    pub fn transport(&self) -> &SubprocessTransport {
        &self.transport
    }

    /// Sends `input` to stdin, reads stdout and stderr to their end, all
    /// at once (so no pipe can fill up and deadlock), then waits for the
    /// child to exit (`communicate`). Returns what stdout and stderr
    /// delivered, `None` for those that are not pipes.
    ///
    /// stdin, if it is a pipe, is closed after `input` (even when
    /// `input` is `None`, as `subprocess.Popen.communicate` does; asyncio
    /// leaves it open then, which hangs a child that reads it). A child
    /// that stops reading early is not an error (a broken pipe is
    /// ignored, as in asyncio), nor is `input` for a stdin the caller
    /// already closed (the input is dropped, the output still comes
    /// back). `input` without a stdin pipe is `InvalidInput`. The read
    /// pipes are closed once read.
    pub fn communicate(
        &self,
        input: Option<&[u8]>,
    ) -> impl Future<Output = io::Result<(Option<Bytes>, Option<Bytes>)>> + 'static {
        let input = input.map(Bytes::copy_from_slice);
        let stdin = self.stdin.clone();
        let readers = [self.stdout.clone(), self.stderr.clone()];
        let transport = self.transport.clone();
        async move {
            if input.is_some() && stdin.is_none() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "communicate() got input but stdin is not a pipe",
                ));
            }
            let [out, err] = readers;
            let (fed, out, err) = join3(
                feed_stdin(stdin, input),
                read_stream(&transport, 1, out),
                read_stream(&transport, 2, err),
            )
            .await;
            fed?;
            let (out, err) = (out?, err?);
            transport.wait().await;
            Ok((out, err))
        }
    }
}

/// asyncio's `_feed_stdin`: write, drain (a broken pipe or reset is not
/// an error), close.
async fn feed_stdin(stdin: Option<ProcessStdin>, input: Option<Bytes>) -> io::Result<()> {
    let Some(stdin) = stdin else {
        return Ok(());
    };
    let fed = async {
        // Already closed (the caller closed stdin): asyncio's write drops
        // the input and its drain's ConnectionResetError is forgiven, so
        // the output still comes back.
        if let Some(data) = input.filter(|_| !stdin.is_closing()) {
            stdin.write_bytes(data)?;
            stdin.drain().await?;
        }
        Ok::<(), StreamError>(())
    }
    .await;
    stdin.close();
    match fed {
        Err(StreamError::Io(e))
            if matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ) =>
        {
            Ok(())
        }
        other => other.map_err(io::Error::from),
    }
}

/// asyncio's `_read_stream`: everything until EOF, then close the pipe.
async fn read_stream(
    transport: &SubprocessTransport,
    fd: i32,
    reader: Option<StreamReader>,
) -> io::Result<Option<Bytes>> {
    let Some(reader) = reader else {
        return Ok(None);
    };
    let data = reader.read(-1).await?;
    if let Some(pipe) = transport.get_pipe_transport(fd) {
        pipe.close();
    }
    Ok(Some(data))
}

/// Polls three futures together until all are done.
async fn join3<A: Future, B: Future, C: Future>(
    a: A,
    b: B,
    c: C,
) -> (A::Output, B::Output, C::Output) {
    let (mut a, mut b, mut c) = (pin!(a), pin!(b), pin!(c));
    let (mut ra, mut rb, mut rc) = (None, None, None);
    poll_fn(move |cx| {
        if ra.is_none() {
            if let Poll::Ready(v) = a.as_mut().poll(cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() {
            if let Poll::Ready(v) = b.as_mut().poll(cx) {
                rb = Some(v);
            }
        }
        if rc.is_none() {
            if let Poll::Ready(v) = c.as_mut().poll(cx) {
                rc = Some(v);
            }
        }
        match (ra.take(), rb.take(), rc.take()) {
            (Some(a), Some(b), Some(c)) => Poll::Ready((a, b, c)),
            (a, b, c) => {
                (ra, rb, rc) = (a, b, c);
                Poll::Pending
            }
        }
    })
    .await
}

impl fmt::Debug for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<Process {}>", self.pid())
    }
}
