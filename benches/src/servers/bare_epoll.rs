//! A bare epoll echo server on libc: the reference point for ringloop's
//! epoll backend (and for tokio, which runs on epoll too).
//!
//! The straightforward best design:
//!
//! - one thread, one epoll set, `epoll_wait` for up to 1024 events;
//! - the listener is level-triggered; each readiness accepts with
//!   `accept4(SOCK_NONBLOCK | SOCK_CLOEXEC)` until `EAGAIN`;
//! - each connection is registered once, edge-triggered, for
//!   `EPOLLIN | EPOLLOUT | EPOLLRDHUP`, and never modified again (no
//!   `epoll_ctl` per wait, as in mio/tokio);
//! - on an event: flush any pending output; then `read` into one 64 KiB
//!   buffer shared by all connections and `write` it straight back,
//!   until the read returns less than the buffer (the socket is drained,
//!   so no extra read that fails with `EAGAIN` is needed — the same
//!   shortcut tokio takes) or `EAGAIN`. Bytes a full socket does not
//!   take are kept per connection, and reading that connection waits for
//!   them to go out (the next `EPOLLOUT` edge).
//!
//! So an idle connection costs no buffer. A read of 0 bytes or an error
//! closes the connection.

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::RECV_BUF;
use crate::os::set_nodelay;

const LISTENER: u64 = u64::MAX;
const MAX_EVENTS: usize = 1024;

struct Conn {
    fd: OwnedFd,
    /// Received bytes the socket did not take yet.
    pending: Vec<u8>,
    /// Of those, bytes already written.
    pending_off: usize,
}

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn cvt_size(rc: isize) -> io::Result<usize> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}

fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length.
    cvt_size(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
}

fn write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of its length.
    cvt_size(unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) })
}

fn epoll_add(ep: RawFd, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: token };
    // SAFETY: `ev` is a valid epoll_event.
    cvt(unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) }).map(drop)
}

/// What to do with a connection after serving an event.
enum After {
    Keep,
    Close,
}

/// Writes as much of `data` as the socket takes; returns the count.
fn write_some(fd: RawFd, data: &[u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < data.len() {
        match write(fd, &data[done..]) {
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

fn serve_conn(c: &mut Conn, events: u32, buf: &mut [u8]) -> io::Result<After> {
    let fd = c.fd.as_raw_fd();
    if c.pending_off < c.pending.len() {
        c.pending_off += write_some(fd, &c.pending[c.pending_off..])?;
        if c.pending_off < c.pending.len() {
            return Ok(After::Keep);
        }
        c.pending.clear();
        c.pending_off = 0;
    }
    // The peer closed (or failed): read to the end, whatever the sizes.
    let hangup = events & (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0;
    loop {
        let n = match read(fd, buf) {
            Ok(0) => return Ok(After::Close),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(After::Keep),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let written = write_some(fd, &buf[..n])?;
        if written < n {
            c.pending.extend_from_slice(&buf[written..n]);
            return Ok(After::Keep);
        }
        if n < buf.len() && !hangup {
            return Ok(After::Keep);
        }
    }
}

/// Runs the bare epoll echo server until the process ends.
pub fn serve(listener: TcpListener) -> io::Result<()> {
    // SAFETY: epoll_create1 returns a new descriptor we then own.
    let ep = unsafe { OwnedFd::from_raw_fd(cvt(libc::epoll_create1(libc::EPOLL_CLOEXEC))?) };
    let ep_fd = ep.as_raw_fd();
    let lfd = listener.as_raw_fd();
    epoll_add(ep_fd, lfd, libc::EPOLLIN as u32, LISTENER)?;
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut buf = vec![0u8; RECV_BUF];
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS];
    loop {
        // SAFETY: `events` is valid for MAX_EVENTS entries.
        let n = unsafe { libc::epoll_wait(ep_fd, events.as_mut_ptr(), MAX_EVENTS as i32, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in &events[..n as usize] {
            let (token, flags) = (ev.u64, ev.events);
            if token == LISTENER {
                loop {
                    // SAFETY: null address pointers are allowed.
                    let fd = unsafe {
                        libc::accept4(
                            lfd,
                            std::ptr::null_mut(),
                            std::ptr::null_mut(),
                            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                        )
                    };
                    if fd < 0 {
                        let e = io::Error::last_os_error();
                        match e.kind() {
                            io::ErrorKind::WouldBlock => {}
                            io::ErrorKind::Interrupted => continue,
                            _ => eprintln!("bare-epoll: accept: {e}"),
                        }
                        break;
                    }
                    // SAFETY: accept4 returned a new descriptor we own.
                    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                    let _ = set_nodelay(fd.as_raw_fd());
                    let slot = free.pop().unwrap_or_else(|| {
                        conns.push(None);
                        conns.len() - 1
                    });
                    let interest =
                        (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
                    if let Err(e) = epoll_add(ep_fd, fd.as_raw_fd(), interest, slot as u64) {
                        eprintln!("bare-epoll: epoll_ctl: {e}");
                        free.push(slot);
                        continue;
                    }
                    conns[slot] = Some(Conn {
                        fd,
                        pending: Vec::new(),
                        pending_off: 0,
                    });
                }
                continue;
            }
            let slot = token as usize;
            let Some(c) = conns.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            let close = match serve_conn(c, flags, &mut buf) {
                Ok(After::Keep) => false,
                Ok(After::Close) => true,
                Err(e) => {
                    if !matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                    ) {
                        eprintln!("bare-epoll: connection: {e}");
                    }
                    true
                }
            };
            if close {
                // Closing the only descriptor removes it from the set.
                conns[slot] = None;
                free.push(slot);
            }
        }
    }
}
