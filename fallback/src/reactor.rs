//! The epoll reactor: registrations keyed by descriptor, and the
//! readiness wait.
//!
//! Two kinds of registration:
//!
//! - **one-shot** ([`Reactor::arm`]): `EPOLLONESHOT`, re-armed by the
//!   caller while someone still waits. It keeps no state that could go
//!   stale: arming a descriptor the kernel no longer watches (closed,
//!   number reused) simply adds it again. For descriptors whose owner may
//!   close them at any time without telling anyone.
//! - **edge-triggered** ([`Reactor::add_edge`]): `EPOLLIN | EPOLLOUT |
//!   EPOLLRDHUP | EPOLLET`, added once and left alone until
//!   [`Reactor::remove`], as mio registers its sources. For descriptors
//!   whose owner removes the registration before closing them.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Which readiness to wait for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Interest {
    /// Readable (or peer hung up, or error).
    pub read: bool,
    /// Writable (or error).
    pub write: bool,
}

impl Interest {
    /// Readable.
    pub const READ: Interest = Interest {
        read: true,
        write: false,
    };
    /// Writable.
    pub const WRITE: Interest = Interest {
        read: false,
        write: true,
    };
    /// Either.
    pub const BOTH: Interest = Interest {
        read: true,
        write: true,
    };

    /// Neither: a waiter with this interest is woken only when the
    /// descriptor fails or hangs up (a write pipe watching for its reader
    /// to go away).
    pub fn is_empty(self) -> bool {
        !self.read && !self.write
    }

    /// The union of two interests.
    pub fn union(self, other: Interest) -> Interest {
        Interest {
            read: self.read || other.read,
            write: self.write || other.write,
        }
    }

    fn epoll_bits(self) -> u32 {
        let mut bits = libc::EPOLLONESHOT as u32;
        if self.read {
            // Not EPOLLPRI: one urgent (MSG_OOB) byte from the peer sets
            // only PRI, which no read clears, and a one-shot re-arm would
            // then fire forever (io_uring's POLLIN ignores it too).
            bits |= (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
        }
        if self.write {
            bits |= libc::EPOLLOUT as u32;
        }
        bits
    }
}

/// One readiness report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// The registration's token (the descriptor).
    pub token: u64,
    /// Readable, hung up, or failed: a read will not block.
    pub readable: bool,
    /// Writable or failed: a write will not block.
    pub writable: bool,
    /// Failed or hung up (`EPOLLERR`/`EPOLLHUP`), which epoll reports
    /// whatever the registration asked for.
    pub failed: bool,
    /// The peer shut down its sending side, or the descriptor hung up
    /// (`EPOLLRDHUP`/`EPOLLHUP`): reads will not block from now on.
    pub read_closed: bool,
}

/// An epoll instance.
pub struct Reactor {
    epfd: OwnedFd,
    buf: Vec<libc::epoll_event>,
    /// `epoll_ctl` calls made so far (tests and measurements).
    ctl_calls: AtomicU64,
}

/// Cleared once `epoll_pwait2` is refused (`ENOSYS`, or `EPERM`/`EINVAL`
/// from a seccomp profile).
static PWAIT2: AtomicBool = AtomicBool::new(true);

impl Reactor {
    /// One wait into the buffer's spare capacity; the raw return value.
    fn wait_raw(&mut self, timeout: Option<Duration>, cap: usize) -> i64 {
        let epfd = self.epfd.as_raw_fd();
        let events = self.buf.as_mut_ptr();
        if let Some(d) = timeout {
            if !d.is_zero() && PWAIT2.load(Ordering::Relaxed) {
                let ts = libc::timespec {
                    tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
                    tv_nsec: d.subsec_nanos() as libc::c_long,
                };
                // Raw epoll_pwait2(epfd, events, maxevents, timeout,
                // sigmask = NULL, sigsetsize).
                // SAFETY: the kernel writes at most `cap` events into the
                // buffer's capacity and only reads `ts`.
                let n = unsafe {
                    libc::syscall(
                        libc::SYS_epoll_pwait2,
                        epfd,
                        events,
                        cap as libc::c_int,
                        &ts as *const libc::timespec,
                        std::ptr::null::<libc::sigset_t>(),
                        0usize,
                    )
                };
                let refused = matches!(
                    io::Error::last_os_error().raw_os_error(),
                    // ENOSYS: an old kernel. EPERM/EINVAL: a seccomp
                    // profile older than the syscall refuses it, as it
                    // refuses io_uring in the very places epoll runs.
                    Some(libc::ENOSYS) | Some(libc::EPERM) | Some(libc::EINVAL)
                );
                if n >= 0 || !refused {
                    return n;
                }
                PWAIT2.store(false, Ordering::Relaxed);
            }
        }
        let ms: i32 = match timeout {
            None => -1,
            Some(d) => d.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32,
        };
        // SAFETY: the kernel writes at most `cap` events into the buffer's
        // capacity.
        i64::from(unsafe { libc::epoll_wait(epfd, events, cap as i32, ms) })
    }

    /// A new, close-on-exec epoll instance.
    pub fn new() -> io::Result<Reactor> {
        // SAFETY: plain system call; the result is checked.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Reactor {
            // SAFETY: a new descriptor nothing else owns.
            epfd: unsafe { OwnedFd::from_raw_fd(fd) },
            buf: Vec::with_capacity(256),
            ctl_calls: AtomicU64::new(0),
        })
    }

    /// The epoll descriptor itself.
    pub fn as_raw_fd(&self) -> RawFd {
        self.epfd.as_raw_fd()
    }

    /// Number of `epoll_ctl` calls this reactor made.
    pub fn ctl_calls(&self) -> u64 {
        self.ctl_calls.load(Ordering::Relaxed)
    }

    fn ctl(&self, op: i32, fd: RawFd, bits: u32, token: u64) -> io::Result<()> {
        self.ctl_calls.fetch_add(1, Ordering::Relaxed);
        let mut ev = libc::epoll_event {
            events: bits,
            u64: token,
        };
        // SAFETY: `ev` is a valid epoll_event for the call's duration.
        if unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), op, fd, &mut ev) } < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Arms a one-shot wait for `interest` on `fd`, reported with `token`.
    /// Works whether or not `fd` is registered already.
    pub fn arm(&self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        let bits = interest.epoll_bits();
        match self.ctl(libc::EPOLL_CTL_MOD, fd, bits, token) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                match self.ctl(libc::EPOLL_CTL_ADD, fd, bits, token) {
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                        self.ctl(libc::EPOLL_CTL_MOD, fd, bits, token)
                    }
                    other => other,
                }
            }
            other => other,
        }
    }

    /// Adds a persistent, edge-triggered registration of `fd` for both
    /// directions and hang-ups (`EPOLLIN | EPOLLOUT | EPOLLRDHUP |
    /// EPOLLET`), reported with `token`. If `fd` is registered already
    /// (one-shot, or edge-triggered), the registration is changed to this
    /// one. Readiness present at the time is reported by the next wait.
    ///
    /// Not `EPOLLPRI`, for the reason given for one-shot arms: one urgent
    /// byte would be reported without a read ever clearing it.
    pub fn add_edge(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let bits = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
        match self.ctl(libc::EPOLL_CTL_ADD, fd, bits, token) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                self.ctl(libc::EPOLL_CTL_MOD, fd, bits, token)
            }
            other => other,
        }
    }

    /// Stops watching `fd` (a descriptor already closed or never added is
    /// not an error). The caller must call it before closing `fd`, never
    /// after: once closed, the number may name another file.
    pub fn remove(&self, fd: RawFd) {
        let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0);
    }

    /// Waits at most `timeout` (`None`: until something is ready) and
    /// appends what became ready to `out`. The wait has nanosecond
    /// precision where the kernel has `epoll_pwait2` (5.11+); elsewhere it
    /// is rounded up to whole milliseconds, so it never ends before the
    /// timeout. An interrupted wait returns with no events.
    pub fn wait(&mut self, timeout: Option<Duration>, out: &mut Vec<Event>) -> io::Result<()> {
        let cap = self.buf.capacity().max(1);
        let n = self.wait_raw(timeout, cap);
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.raw_os_error() == Some(libc::EINTR) {
                Ok(())
            } else {
                Err(e)
            };
        }
        // SAFETY: `n` entries were initialised by the wait (n <= cap).
        unsafe { self.buf.set_len(n as usize) };
        for ev in &self.buf {
            let bits = ev.events;
            let failed = bits & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0;
            let read_closed = bits & (libc::EPOLLRDHUP | libc::EPOLLHUP) as u32 != 0;
            out.push(Event {
                token: ev.u64,
                readable: failed || bits & (libc::EPOLLIN | libc::EPOLLRDHUP) as u32 != 0,
                writable: failed || bits & libc::EPOLLOUT as u32 != 0,
                failed,
                read_closed,
            });
        }
        let full = self.buf.len() == cap;
        self.buf.clear();
        if full {
            // Busy: let the next wait report more at once.
            self.buf.reserve(cap);
        }
        Ok(())
    }
}
