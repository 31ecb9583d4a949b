//! `sock_sendfile`: send a file over a stream socket.
//!
//! Zero copy on io_uring: two SPLICE operations through a pipe pair, file
//! → pipe at an offset, then pipe → socket. Zero copy on epoll:
//! `sendfile(2)`, waiting for the socket to be writable when it is full.
//! Where zero copy is impossible (the kernel lacks SPLICE, the file is not
//! a regular file, or the file system refuses) the fallback reads chunks
//! and sends them (on epoll, regular-file reads run on the executor, so a
//! slow disk never blocks the loop thread), or, with `fallback = false`,
//! the call fails with [`SendfileNotAvailable`].
//! The file position ends at `offset + sent`, on success, error and
//! cancellation alike.

use std::cell::Cell;
use std::fs::File;
use std::future::Future;
use std::io::{self, Seek, SeekFrom};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use socket2::{SockRef, Type};

use crate::driver::op::poll::PollOnce;
use crate::driver::op::read::Read;
use crate::driver::op::splice::Splice;
use crate::driver::op::{DriverRef, Op};
use crate::driver::Backend;
use crate::error::SendfileNotAvailable;
use crate::event_loop::EventLoop;
use crate::net::sock::sendall;

/// Chunk size of the read+send fallback (asyncio uses 256 KiB at most).
pub(crate) const FALLBACK_CHUNK: usize = 256 * 1024;
/// Pipe size asked for the splice path.
const PIPE_SIZE: i32 = 1024 * 1024;

/// Leaves the file position at `offset + sent` however the call ends.
pub(crate) struct PositionGuard<'a> {
    file: &'a File,
    offset: u64,
    sent: Cell<u64>,
    seekable: bool,
}

impl<'a> PositionGuard<'a> {
    /// Checks `offset` and `count` against `file` (asyncio's argument
    /// rules) and starts counting from `offset`.
    pub(crate) fn new(file: &'a File, offset: u64, count: Option<usize>) -> io::Result<Self> {
        let regular = Self::check(file, offset, count)?;
        Ok(PositionGuard {
            file,
            offset,
            sent: Cell::new(0),
            seekable: regular,
        })
    }

    /// The argument rules alone; true for a regular file.
    pub(crate) fn check(file: &File, offset: u64, count: Option<usize>) -> io::Result<bool> {
        if count == Some(0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "count must be a positive integer (got 0)",
            ));
        }
        if offset > i64::MAX as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "offset must be at most i64::MAX",
            ));
        }
        let regular = file.metadata()?.is_file();
        if !regular && offset != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a non-seekable file can only be sent from offset 0",
            ));
        }
        Ok(regular)
    }

    /// True for a regular file (zero copy is possible, reads take an
    /// offset).
    pub(crate) fn is_regular(&self) -> bool {
        self.seekable
    }

    /// Bytes sent so far.
    pub(crate) fn sent(&self) -> usize {
        self.sent.get() as usize
    }

    /// Counts `n` more bytes sent.
    pub(crate) fn add(&self, n: usize) {
        self.sent.set(self.sent.get() + n as u64);
    }

    /// The size of the next chunk (at most `max`), or `None` once `count`
    /// bytes were sent.
    pub(crate) fn next_chunk(&self, count: Option<usize>, max: usize) -> Option<usize> {
        match count {
            Some(c) if self.sent() >= c => None,
            Some(c) => Some((c - self.sent()).min(max)),
            None => Some(max),
        }
    }

    /// The file offset of the next chunk.
    pub(crate) fn position(&self) -> u64 {
        self.offset + self.sent.get()
    }
}

/// Waits until the (full, non-blocking) socket has room again.
async fn wait_writable(driver: &DriverRef, fd: RawFd) -> io::Result<()> {
    let wait = PollOnce {
        fd,
        mask: libc::POLLOUT as u32,
    };
    Op::submit(driver, wait)?.await.map(|_| ())
}

impl Drop for PositionGuard<'_> {
    fn drop(&mut self) {
        if self.seekable {
            let mut f = self.file;
            let _ = f.seek(SeekFrom::Start(self.offset + self.sent.get()));
        }
    }
}

fn pipe_pair() -> io::Result<Rc<(OwnedFd, OwnedFd)>> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a writable array of two ints, as pipe2 requires.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded: both are new descriptors we alone own.
    let pair = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // A bigger pipe means fewer round trips; refusal is harmless.
    // SAFETY: fcntl on a descriptor we own, integer argument.
    unsafe { libc::fcntl(pair.1.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
    Ok(Rc::new(pair))
}

fn is_not_splicable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP)
    )
}

impl EventLoop {
    /// Sends `count` bytes of `file` from `offset` (to the end of the file
    /// when `None`) over the stream socket `sock`; returns the number of
    /// bytes sent (`loop.sock_sendfile`).
    ///
    /// Zero-copy where possible; otherwise a read+send fallback when
    /// `fallback` is true, or an error [`SendfileNotAvailable::is`]
    /// recognises. `Some(0)` and non-stream sockets are invalid input.
    pub fn sock_sendfile<'a>(
        &self,
        sock: &'a impl AsFd,
        file: &'a File,
        offset: u64,
        count: Option<usize>,
        fallback: bool,
    ) -> impl Future<Output = io::Result<usize>> + 'a {
        let driver = self.driver_ref();
        let lp = self.downgrade();
        let backend = driver.borrow().backend();
        let zero_copy_ok = match backend {
            Backend::Uring => driver.borrow().kernel_features().is_some_and(|f| f.splice),
            _ => true,
        };
        let sock_type = SockRef::from(sock).r#type();
        let checked = self.check_nonblocking_in_debug(sock);
        // sendfile(2) has no MSG_DONTWAIT: on epoll a blocking socket takes
        // the buffered path (its sends never block) rather than block the
        // loop thread.
        let blocking_on_epoll = backend != Backend::Uring
            && !crate::driver::op::sys::is_nonblocking(sock.as_fd().as_raw_fd()).unwrap_or(false);
        let sock = sock.as_fd().as_raw_fd();
        async move {
            checked?;
            if sock_type? != Type::STREAM {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "only SOCK_STREAM sockets are supported",
                ));
            }
            let guard = PositionGuard::new(file, offset, count)?;
            let regular = guard.is_regular();
            if blocking_on_epoll {
                let reader = ChunkReader {
                    driver: driver.clone(),
                    lp,
                    on_executor: regular,
                };
                return send_buffered(&driver, &reader, sock, file, count, &guard).await;
            }
            if regular && zero_copy_ok {
                let sent = if backend == Backend::Uring {
                    send_spliced(&driver, sock, file, count, &guard).await
                } else {
                    send_sendfile(&driver, sock, file, count, &guard).await
                };
                match sent {
                    Err(e) if guard.sent() == 0 && is_not_splicable(&e) => {}
                    other => return other,
                }
            }
            if !fallback {
                return Err(SendfileNotAvailable::error(if regular {
                    "zero-copy splice is not possible for this file"
                } else {
                    "the file is not a regular file"
                }));
            }
            let reader = ChunkReader::new(&driver, lp, regular);
            send_buffered(&driver, &reader, sock, file, count, &guard).await
        }
    }
}

/// The zero-copy path: file → pipe → socket, with SPLICE.
async fn send_spliced(
    driver: &DriverRef,
    sock_fd: RawFd,
    file: &File,
    count: Option<usize>,
    guard: &PositionGuard<'_>,
) -> io::Result<usize> {
    let pipe = pipe_pair()?;
    let chunk_max = PIPE_SIZE as usize;
    while let Some(want) = guard.next_chunk(count, chunk_max) {
        let fill = Splice {
            fd_in: file.as_raw_fd(),
            off_in: guard.position() as i64,
            fd_out: pipe.1.as_raw_fd(),
            len: want as u32,
            _keep: Some(pipe.clone()),
        };
        let filled = Op::submit(driver, fill)?.await?;
        if filled == 0 {
            break; // end of file
        }
        let mut left = filled;
        while left > 0 {
            let drain = Splice {
                fd_in: pipe.0.as_raw_fd(),
                off_in: -1,
                fd_out: sock_fd,
                len: left as u32,
                _keep: Some(pipe.clone()),
            };
            match Op::submit(driver, drain)?.await {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "the socket accepted no bytes",
                    ))
                }
                Ok(n) => {
                    left -= n;
                    guard.add(n);
                }
                // A non-blocking socket is full: wait for room.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait_writable(driver, sock_fd).await?
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(guard.sent())
}

/// The epoll zero-copy path: `sendfile(2)` from the file at an offset.
async fn send_sendfile(
    driver: &DriverRef,
    sock_fd: RawFd,
    file: &File,
    count: Option<usize>,
    guard: &PositionGuard<'_>,
) -> io::Result<usize> {
    const CHUNK: usize = 1 << 30;
    while let Some(want) = guard.next_chunk(count, CHUNK) {
        let mut off = guard.position() as libc::off_t;
        // SAFETY: both descriptors are borrowed for this call; `off` is a
        // valid off_t the kernel updates.
        let n = unsafe { libc::sendfile(sock_fd, file.as_raw_fd(), &mut off, want) };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => {
                    wait_writable(driver, sock_fd).await?;
                    continue;
                }
                _ => return Err(e),
            }
        }
        if n == 0 {
            break; // end of file
        }
        guard.add(n as usize);
    }
    Ok(guard.sent())
}

/// Reads the fallback's chunks: a READ operation, or on epoll for a
/// regular file (whose reads cannot be made non-blocking) a `pread` on the
/// executor.
pub(crate) struct ChunkReader {
    driver: DriverRef,
    lp: std::rc::Weak<crate::event_loop::LoopInner>,
    on_executor: bool,
}

impl ChunkReader {
    /// A reader for `file` (`regular`: a regular file) on this loop's
    /// backend.
    pub(crate) fn new(
        driver: &DriverRef,
        lp: std::rc::Weak<crate::event_loop::LoopInner>,
        regular: bool,
    ) -> ChunkReader {
        let on_executor = driver.borrow().backend() != Backend::Uring && regular;
        ChunkReader {
            driver: driver.clone(),
            lp,
            on_executor,
        }
    }

    /// Reads up to `len` bytes at `offset` (`u64::MAX`: the current
    /// position of a non-seekable file); empty at end of file.
    pub(crate) async fn read(&self, file: &File, offset: u64, len: usize) -> io::Result<Bytes> {
        if self.on_executor {
            use std::os::unix::fs::FileExt;
            let f = file.try_clone()?;
            let inner = self
                .lp
                .upgrade()
                .ok_or_else(crate::net::sock::closed_error)?;
            let job = EventLoop::from_inner(inner).run_in_executor(None, move || {
                let mut buf = vec![0u8; len];
                let n = f.read_at(&mut buf, offset)?;
                buf.truncate(n);
                Ok::<_, io::Error>(buf)
            })?;
            return job.await?.map(Bytes::from);
        }
        let read = Read {
            fd: file.as_raw_fd(),
            buf: BytesMut::with_capacity(len),
            len,
            offset,
            nonblocking: false,
        };
        let (res, filled) = Op::submit(&self.driver, read)?.await;
        res.map(|_| filled.freeze())
    }
}

/// The fallback: read a chunk, send it, repeat.
async fn send_buffered(
    driver: &DriverRef,
    reader: &ChunkReader,
    sock_fd: RawFd,
    file: &File,
    count: Option<usize>,
    guard: &PositionGuard<'_>,
) -> io::Result<usize> {
    while let Some(want) = guard.next_chunk(count, FALLBACK_CHUNK) {
        let offset = if guard.seekable {
            guard.position()
        } else {
            u64::MAX
        };
        let chunk = reader.read(file, offset, want).await?;
        let n = chunk.len();
        if n == 0 {
            break;
        }
        sendall(driver.clone(), sock_fd, chunk).await?;
        guard.add(n);
    }
    Ok(guard.sent())
}
