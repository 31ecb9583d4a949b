//! `sock_sendfile`: send a file over a stream socket.
//!
//! Zero copy on io_uring: two SPLICE operations through a pipe pair, file
//! → pipe at an offset, then pipe → socket. Where that is impossible (the
//! kernel lacks SPLICE, the file is not a regular file, or the file
//! system refuses to splice) the fallback reads chunks and sends them, or,
//! with `fallback = false`, the call fails with [`SendfileNotAvailable`].
//! The file position ends at `offset + sent`, on success, error and
//! cancellation alike.

use std::cell::Cell;
use std::fs::File;
use std::future::Future;
use std::io::{self, Seek, SeekFrom};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;

use bytes::BytesMut;
use socket2::{SockRef, Type};

use crate::driver::op::poll::PollOnce;
use crate::driver::op::read::Read;
use crate::driver::op::splice::Splice;
use crate::driver::op::{DriverRef, Op};
use crate::error::SendfileNotAvailable;
use crate::event_loop::EventLoop;
use crate::net::sock::sendall;

/// Chunk size of the read+send fallback (asyncio uses 256 KiB at most).
const FALLBACK_CHUNK: usize = 256 * 1024;
/// Pipe size asked for the splice path.
const PIPE_SIZE: i32 = 1024 * 1024;

/// Leaves the file position at `offset + sent` however the call ends.
struct PositionGuard<'a> {
    file: &'a File,
    offset: u64,
    sent: Cell<u64>,
    seekable: bool,
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
        let splice_ok = driver.borrow().kernel_features().is_some_and(|f| f.splice);
        let sock_type = SockRef::from(sock).r#type();
        let sock = sock.as_fd().as_raw_fd();
        async move {
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
            if sock_type? != Type::STREAM {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "only SOCK_STREAM sockets are supported",
                ));
            }
            let regular = file.metadata()?.is_file();
            if !regular && offset != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a non-seekable file can only be sent from offset 0",
                ));
            }
            let guard = PositionGuard {
                file,
                offset,
                sent: Cell::new(0),
                seekable: regular,
            };
            if regular && splice_ok {
                match send_spliced(&driver, sock, file, count, &guard).await {
                    Err(e) if guard.sent.get() == 0 && is_not_splicable(&e) => {}
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
            send_buffered(&driver, sock, file, count, &guard).await
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
    loop {
        let sent = guard.sent.get() as usize;
        let want = match count {
            Some(c) if sent >= c => break,
            Some(c) => (c - sent).min(chunk_max),
            None => chunk_max,
        };
        let fill = Splice {
            fd_in: file.as_raw_fd(),
            off_in: (guard.offset + sent as u64) as i64,
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
                    guard.sent.set(guard.sent.get() + n as u64);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // A non-blocking socket is full: wait for room.
                    let wait = PollOnce {
                        fd: sock_fd,
                        mask: libc::POLLOUT as u32,
                    };
                    Op::submit(driver, wait)?.await?;
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(guard.sent.get() as usize)
}

/// The fallback: read a chunk, send it, repeat.
async fn send_buffered(
    driver: &DriverRef,
    sock_fd: RawFd,
    file: &File,
    count: Option<usize>,
    guard: &PositionGuard<'_>,
) -> io::Result<usize> {
    loop {
        let sent = guard.sent.get() as usize;
        let want = match count {
            Some(c) if sent >= c => break,
            Some(c) => (c - sent).min(FALLBACK_CHUNK),
            None => FALLBACK_CHUNK,
        };
        let read = Read {
            fd: file.as_raw_fd(),
            buf: BytesMut::with_capacity(want),
            len: want,
            offset: if guard.seekable {
                guard.offset + sent as u64
            } else {
                u64::MAX
            },
        };
        let (res, filled) = Op::submit(driver, read)?.await;
        let n = res?;
        if n == 0 {
            break;
        }
        sendall(driver.clone(), sock_fd, filled.freeze()).await?;
        guard.sent.set(guard.sent.get() + n as u64);
    }
    Ok(guard.sent.get() as usize)
}
