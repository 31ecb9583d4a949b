//! The load client of the echo benchmark: one thread, non-blocking
//! sockets, one edge-triggered epoll set, and a `timerfd` for deadlines.
//! Plain system calls and no runtime, so one client core drives as much
//! load as it can.
//!
//! Every connection's byte stream follows a fixed pattern (period 251,
//! shifted per connection), so every echoed byte is checked with one
//! `memcmp` against what was sent at that offset: lost, duplicated,
//! reordered or misrouted bytes fail the run.
//!
//! A [`Client`] holds a set of connections to one server and runs
//! [`Phase`]s on them:
//!
//! - [`Mode::Pipelined`]: each connection keeps `depth` messages in
//!   flight, sending a new one as soon as one comes back (closed loop);
//!   with `depth` 1 and one connection this is a ping-pong, and the
//!   request→response times are recorded for percentiles;
//! - [`Mode::Paced`]: open loop at a fixed total rate: message `k` is due
//!   at `t0 + k / rate` on connection `k mod n`, sent when due whatever is
//!   still in flight.
//!
//! A phase warms up, then measures: round trips completed (messages
//! echoed in full), wall time, the server process's CPU time and the
//! client thread's CPU time, read at the two edges of the measured
//! interval. Then it stops sending and waits for every message in flight
//! to come back, so the next phase starts clean.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use crate::child::ServerProcess;
use crate::os::{monotonic_ns, rusage_cpu, set_nodelay};

/// The pattern's period (a prime, so shifted streams differ).
const PERIOD: usize = 251;
/// Largest single write.
const MAX_WRITE: usize = 256 * 1024;
/// The client's read buffer.
const READ_BUF: usize = 64 * 1024;
/// Connections connecting at once (then each echoes a hello message
/// before the next batch starts, so the server has accepted them).
const CONNECT_BATCH: usize = 256;
/// Bytes of the hello message each new connection echoes.
const HELLO: u64 = 64;
/// Bound on connecting, on draining a phase and on closing.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
const TIMER_TOKEN: u64 = u64::MAX;
const MAX_EVENTS: usize = 1024;

/// How a phase offers load.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    /// Closed loop: `depth` messages in flight per connection.
    Pipelined {
        /// Messages in flight per connection.
        depth: usize,
    },
    /// Open loop: `rate` messages per second in total, round-robin over
    /// the connections.
    Paced {
        /// Messages per second, all connections together.
        rate: f64,
        /// Due messages are sent together at multiples of this interval
        /// (zero: each exactly when due).
        tick: Duration,
    },
}

/// One phase of load on a [`Client`]'s connections.
#[derive(Clone, Copy, Debug)]
pub struct Phase {
    /// How load is offered.
    pub mode: Mode,
    /// Message size in bytes.
    pub size: usize,
    /// Load before the measured interval.
    pub warmup: Duration,
    /// The measured interval.
    pub measure: Duration,
    /// Record each message's request→response time.
    pub latency: bool,
}

/// Request→response time percentiles.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Samples.
    pub count: usize,
}

/// What a phase measured.
#[derive(Clone, Debug)]
pub struct PhaseResult {
    /// Round trips (messages echoed in full) in the measured interval.
    pub trips: u64,
    /// Length of the measured interval.
    pub wall: Duration,
    /// Server process CPU time (`getrusage`, µs resolution) in it.
    pub server_cpu: Duration,
    /// The same from `/proc/<pid>/stat`, in clock ticks.
    pub server_ticks: u64,
    /// The client thread's CPU time in it.
    pub client_cpu: Duration,
    /// Percentiles, if recorded.
    pub latency: Option<Latency>,
    /// Round trips the offered rate asked for in the interval (paced
    /// phases only).
    pub offered: Option<f64>,
}

impl PhaseResult {
    /// Round trips per second.
    pub fn rate(&self) -> f64 {
        self.trips as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// Server CPU µs per round trip (`getrusage`).
    pub fn cpu_us_per_trip(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / self.trips.max(1) as f64
    }

    /// Server CPU µs per round trip from the `/proc` ticks.
    pub fn ticks_us_per_trip(&self, ticks_per_sec: u64) -> f64 {
        self.server_ticks as f64 * 1e6 / ticks_per_sec.max(1) as f64 / self.trips.max(1) as f64
    }

    /// Server CPU time ÷ wall time.
    pub fn server_load(&self) -> f64 {
        self.server_cpu.as_secs_f64() / self.wall.as_secs_f64().max(1e-9)
    }

    /// Client CPU time ÷ wall time.
    pub fn client_load(&self) -> f64 {
        self.client_cpu.as_secs_f64() / self.wall.as_secs_f64().max(1e-9)
    }

    /// Round trips done ÷ asked for (paced phases; 1 otherwise).
    pub fn achieved(&self) -> f64 {
        match self.offered {
            Some(o) if o > 0.0 => self.trips as f64 / o,
            _ => 1.0,
        }
    }
}

/// The `p`-th percentile (0 < p ≤ 1) of sorted samples (nearest rank).
pub fn percentile(sorted: &[u32], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    Duration::from_nanos(u64::from(sorted[rank.clamp(1, sorted.len()) - 1]))
}

struct Conn {
    fd: OwnedFd,
    shift: usize,
    /// Bytes written.
    sent: u64,
    /// Bytes echoed back (and checked).
    recvd: u64,
    /// Bytes that may be written so far (whole messages).
    allowed: u64,
    /// The last write did not stop on `EAGAIN`.
    writable: bool,
    connected: bool,
    /// `shutdown(SHUT_WR)` done.
    closing: bool,
    /// End of stream read.
    eof: bool,
    /// `recvd` when the phase began.
    base: u64,
    /// Messages completed in this phase.
    done: u64,
    /// When each message in flight was started (ns), for latency.
    started: VecDeque<u64>,
}

/// A set of connections to one server, and the loop that drives them.
pub struct Client {
    ep: OwnedFd,
    /// The server's port.
    port: u16,
    timer: OwnedFd,
    armed: u64,
    conns: Vec<Conn>,
    pat: Vec<u8>,
    buf: Vec<u8>,
    events: Vec<libc::epoll_event>,
    /// Σ (allowed − recvd): bytes owed by the server, or not yet sent.
    owed: u64,
    /// Connections not at end of stream.
    open: usize,
    // The running phase.
    size: u64,
    depth: Option<u64>,
    running: bool,
    recording: bool,
    done_total: u64,
    latencies: Vec<u32>,
}

fn os_err(what: &str) -> String {
    format!("{what}: {}", io::Error::last_os_error())
}

/// Bytes in a socket's queue (`TIOCOUTQ`: sent but unacknowledged;
/// `FIONREAD`: received but unread); -1 if the query failed.
fn sock_queue(fd: RawFd, request: libc::Ioctl) -> i64 {
    let mut n: libc::c_int = 0;
    // SAFETY: both requests write one int through the pointer.
    if unsafe { libc::ioctl(fd, request, &mut n) } != 0 {
        return -1;
    }
    i64::from(n)
}

/// The TCP state and total retransmissions of a socket (`TCP_INFO`'s
/// first byte and `tcpi_total_retrans`); (255, 0) if the query failed.
fn tcp_state(fd: RawFd) -> (u8, u32) {
    // SAFETY: tcp_info is plain integers; all zeroes is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` and `len` are valid out pointers of the sizes given.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return (255, 0);
    }
    (info.tcpi_state, info.tcpi_total_retrans)
}

/// The server's sockets on `port` by TCP state (from `/proc/net/tcp`),
/// and how many hold received bytes the server has not read.
fn server_sockets(port: u16) -> String {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return "/proc/net/tcp unreadable".to_string();
    };
    let mut states = std::collections::BTreeMap::new();
    let (mut unread, mut unread_bytes) = (0u64, 0u64);
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        // local_address rem_address st tx_queue:rx_queue ...
        let (Some(local), Some(st), Some(queues)) = (f.get(1), f.get(3), f.get(4)) else {
            continue;
        };
        let lport = local
            .rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok());
        if lport != Some(port) {
            continue;
        }
        *states.entry(st.to_string()).or_insert(0u64) += 1;
        let rx = queues
            .split(':')
            .nth(1)
            .and_then(|q| u64::from_str_radix(q, 16).ok())
            .unwrap_or(0);
        // A listener's rx_queue is its accept queue's length.
        if rx > 0 && *st != "0A" {
            unread += 1;
            unread_bytes += rx;
        }
    }
    format!(
        "states (hex, 01 established, 03 syn-recv, 0A listen) {states:?}, \
         {unread} sockets with {unread_bytes} bytes unread"
    )
}

fn epoll_add(ep: RawFd, fd: RawFd, events: u32, token: u64) -> Result<(), String> {
    let mut ev = libc::epoll_event { events, u64: token };
    // SAFETY: `ev` is a valid epoll_event.
    if unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) } != 0 {
        return Err(os_err("epoll_ctl"));
    }
    Ok(())
}

impl Client {
    /// Opens `n` connections to `127.0.0.1:port`, each echoing a
    /// 64-byte hello (so the server has accepted all of them when this
    /// returns).
    pub fn connect(port: u16, n: usize) -> Result<Client, String> {
        // SAFETY: plain syscalls returning new descriptors we then own.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(os_err("epoll_create1"));
        }
        // SAFETY: a new descriptor we own.
        let ep = unsafe { OwnedFd::from_raw_fd(ep) };
        // SAFETY: as above.
        let timer = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if timer < 0 {
            return Err(os_err("timerfd_create"));
        }
        // SAFETY: a new descriptor we own.
        let timer = unsafe { OwnedFd::from_raw_fd(timer) };
        // Edge-triggered: each expiry is a new edge, no read needed.
        epoll_add(
            ep.as_raw_fd(),
            timer.as_raw_fd(),
            (libc::EPOLLIN | libc::EPOLLET) as u32,
            TIMER_TOKEN,
        )?;
        let pat = (0..PERIOD + MAX_WRITE)
            .map(|i| ((i % PERIOD) * 131 % PERIOD) as u8)
            .collect();
        let mut c = Client {
            ep,
            port,
            timer,
            armed: 0,
            conns: Vec::with_capacity(n),
            pat,
            buf: vec![0u8; READ_BUF],
            events: vec![libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS],
            owed: 0,
            open: 0,
            size: HELLO,
            depth: None,
            running: false,
            recording: false,
            done_total: 0,
            latencies: Vec::new(),
        };
        let deadline = monotonic_ns() + STEP_TIMEOUT.as_nanos() as u64;
        while c.conns.len() < n {
            let batch = CONNECT_BATCH.min(n - c.conns.len());
            let first = c.conns.len();
            for _ in 0..batch {
                c.open_one(port)?;
            }
            c.wait_until(deadline, "connecting", |c| {
                c.conns[first..].iter().all(|k| k.connected)
            })?;
            for i in first..c.conns.len() {
                c.conns[i].base = c.conns[i].recvd;
                c.allow(i, HELLO, 0);
                c.flush(i)?;
            }
            c.wait_until(deadline, "echoing the hello messages", |c| c.owed == 0)?;
        }
        Ok(c)
    }

    /// Connections in the set.
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// True if the set has no connection.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    fn open_one(&mut self, port: u16) -> Result<(), String> {
        let id = self.conns.len();
        // SAFETY: plain syscall returning a new descriptor.
        let fd = unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if fd < 0 {
            return Err(os_err("socket"));
        }
        // SAFETY: a new descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        set_nodelay(fd.as_raw_fd()).map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: `addr` is a valid sockaddr_in of the size passed.
        let rc = unsafe {
            libc::connect(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        let connected = if rc == 0 {
            true
        } else {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(format!("connect to 127.0.0.1:{port}: {e}"));
            }
            false
        };
        let interest = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
        epoll_add(self.ep.as_raw_fd(), fd.as_raw_fd(), interest, id as u64)?;
        self.conns.push(Conn {
            fd,
            shift: (id * 7 + 3) % PERIOD,
            sent: 0,
            recvd: 0,
            allowed: 0,
            writable: true,
            connected,
            closing: false,
            eof: false,
            base: 0,
            done: 0,
            started: VecDeque::new(),
        });
        self.open += 1;
        Ok(())
    }

    /// Lets connection `i` send `bytes` more (whole messages started at
    /// `now`, for latency).
    fn allow(&mut self, i: usize, bytes: u64, now: u64) {
        let c = &mut self.conns[i];
        c.allowed += bytes;
        self.owed += bytes;
        if self.recording || self.running {
            for _ in 0..bytes / self.size.max(1) {
                c.started.push_back(now);
            }
        }
    }

    /// Writes what connection `i` may send, until done or `EAGAIN`.
    fn flush(&mut self, i: usize) -> Result<(), String> {
        let c = &mut self.conns[i];
        while c.writable && c.connected && c.sent < c.allowed {
            let len = ((c.allowed - c.sent) as usize).min(MAX_WRITE);
            let start = (c.sent as usize + c.shift) % PERIOD;
            let data = &self.pat[start..start + len];
            // SAFETY: `data` is valid for reads of its length.
            let n = unsafe { libc::write(c.fd.as_raw_fd(), data.as_ptr().cast(), len) };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock => c.writable = false,
                    io::ErrorKind::Interrupted => {}
                    _ => return Err(format!("connection {i}: write: {e}")),
                }
            } else {
                c.sent += n as u64;
            }
        }
        Ok(())
    }

    /// Reads what connection `i` has, checks it, accounts completed
    /// messages, and sends the next ones (pipelined mode).
    fn on_readable(&mut self, i: usize, hangup: bool, now: u64) -> Result<(), String> {
        loop {
            let fd = self.conns[i].fd.as_raw_fd();
            // SAFETY: `buf` is valid for writes of its length.
            let n = unsafe { libc::read(fd, self.buf.as_mut_ptr().cast(), self.buf.len()) };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock => break,
                    io::ErrorKind::Interrupted => continue,
                    _ => return Err(format!("connection {i}: read: {e}")),
                }
            }
            let c = &mut self.conns[i];
            if n == 0 {
                if !c.closing {
                    return Err(format!(
                        "connection {i}: the server closed it ({} of {} bytes echoed)",
                        c.recvd, c.sent
                    ));
                }
                if !c.eof {
                    c.eof = true;
                    self.open -= 1;
                }
                break;
            }
            let n = n as usize;
            if c.recvd + n as u64 > c.sent {
                return Err(format!(
                    "connection {i}: {} bytes echoed, only {} sent",
                    c.recvd + n as u64,
                    c.sent
                ));
            }
            let start = (c.recvd as usize + c.shift) % PERIOD;
            if self.buf[..n] != self.pat[start..start + n] {
                let at = self.buf[..n]
                    .iter()
                    .zip(&self.pat[start..start + n])
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                return Err(format!(
                    "connection {i}: wrong byte echoed at stream offset {}",
                    c.recvd + at as u64
                ));
            }
            c.recvd += n as u64;
            self.owed -= n as u64;
            let done = (c.recvd - c.base) / self.size;
            let new = done - c.done;
            c.done = done;
            for _ in 0..new {
                if let Some(t) = c.started.pop_front() {
                    if self.recording {
                        let ns = now.saturating_sub(t).min(u64::from(u32::MAX));
                        self.latencies.push(ns as u32);
                    }
                }
            }
            self.done_total += new;
            if let (true, Some(depth)) = (self.running, self.depth) {
                let target = c.base + (done + depth) * self.size;
                let more = target.saturating_sub(c.allowed);
                if more > 0 {
                    self.allow(i, more, now);
                }
            }
            if n < self.buf.len() && !hangup {
                break;
            }
        }
        self.flush(i)
    }

    fn check_connected(&mut self, i: usize) -> Result<(), String> {
        let c = &mut self.conns[i];
        let mut err: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `err` and `len` are valid out pointers of the sizes given.
        let rc = unsafe {
            libc::getsockopt(
                c.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                (&mut err as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(os_err("getsockopt(SO_ERROR)"));
        }
        if err != 0 {
            return Err(format!(
                "connection {i}: connect: {}",
                io::Error::from_raw_os_error(err)
            ));
        }
        c.connected = true;
        Ok(())
    }

    /// Arms the timer for `deadline` (ns, monotonic) if it is not armed
    /// for it already.
    fn arm(&mut self, deadline: u64) -> Result<(), String> {
        if deadline == self.armed {
            return Ok(());
        }
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (deadline / 1_000_000_000) as libc::time_t,
                tv_nsec: (deadline % 1_000_000_000) as libc::c_long,
            },
        };
        // SAFETY: `spec` is a valid itimerspec; the old value is not wanted.
        let rc = unsafe {
            libc::timerfd_settime(
                self.timer.as_raw_fd(),
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        };
        if rc != 0 {
            return Err(os_err("timerfd_settime"));
        }
        self.armed = deadline;
        Ok(())
    }

    /// Waits for events (at most until `deadline`, ns) and handles them.
    fn poll(&mut self, deadline: u64) -> Result<(), String> {
        if deadline <= monotonic_ns() {
            return Ok(());
        }
        self.arm(deadline)?;
        // SAFETY: `events` is valid for MAX_EVENTS entries.
        let n = unsafe {
            libc::epoll_wait(
                self.ep.as_raw_fd(),
                self.events.as_mut_ptr(),
                MAX_EVENTS as i32,
                -1,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(format!("epoll_wait: {e}"));
        }
        let now = monotonic_ns();
        for k in 0..n as usize {
            let (token, flags) = (self.events[k].u64, self.events[k].events);
            if token == TIMER_TOKEN {
                // The timer has fired: nothing is armed any more.
                if now >= self.armed {
                    self.armed = 0;
                }
                continue;
            }
            let i = token as usize;
            if flags & libc::EPOLLERR as u32 != 0 && !self.conns[i].connected {
                self.check_connected(i)?;
            }
            if flags & libc::EPOLLOUT as u32 != 0 {
                if !self.conns[i].connected {
                    self.check_connected(i)?;
                }
                self.conns[i].writable = true;
            }
            let hangup = flags & (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0;
            if flags & libc::EPOLLIN as u32 != 0 || hangup {
                self.on_readable(i, hangup, now)?;
            } else {
                self.flush(i)?;
            }
        }
        Ok(())
    }

    /// Handles events until `done` holds, or fails at `deadline`.
    fn wait_until(
        &mut self,
        deadline: u64,
        what: &str,
        done: impl Fn(&Client) -> bool,
    ) -> Result<(), String> {
        while !done(self) {
            if monotonic_ns() >= deadline {
                return Err(format!(
                    "{what}: timed out ({} bytes still owed by the server; {})",
                    self.owed,
                    self.diagnose_owed()
                ));
            }
            self.poll(deadline)?;
        }
        Ok(())
    }

    /// Where the bytes still owed are, for a timeout's report: per
    /// connection that owes, whether the server's kernel has not yet
    /// acknowledged what was sent (still in this side's send queue: the
    /// server side never took it from the network, e.g. a connection it
    /// never completed), whether the echo sits unread in this side's
    /// receive queue (a client bug), or neither (the server's kernel
    /// has the bytes and the server program has not echoed them), with
    /// the TCP state and retransmissions of the first few.
    fn diagnose_owed(&self) -> String {
        let (mut owing, mut unacked, mut unread, mut server_holds) = (0, 0, 0, 0);
        let mut first = Vec::new();
        for (i, c) in self.conns.iter().enumerate() {
            if c.recvd >= c.allowed {
                continue;
            }
            owing += 1;
            let fd = c.fd.as_raw_fd();
            let outq = sock_queue(fd, libc::TIOCOUTQ);
            let inq = sock_queue(fd, libc::FIONREAD);
            let (state, retrans) = tcp_state(fd);
            if outq > 0 {
                unacked += 1;
            } else if inq > 0 {
                unread += 1;
            } else {
                server_holds += 1;
            }
            if first.len() < 4 {
                first.push(format!(
                    "conn {i}: sent {} recvd {} allowed {} outq {outq} inq {inq} state {state} retransmits {retrans}",
                    c.sent, c.recvd, c.allowed
                ));
            }
        }
        format!(
            "{owing} connections owe: {unacked} with sent bytes the server's kernel has not \
             acknowledged, {unread} with the echo unread on this side, {server_holds} with the \
             bytes acknowledged but not echoed; {}; server side: {}",
            first.join("; "),
            server_sockets(self.port)
        )
    }

    /// Runs one phase against `server` (whose CPU time is read at the
    /// edges of the measured interval).
    pub fn run(
        &mut self,
        phase: &Phase,
        server: &mut ServerProcess,
    ) -> Result<PhaseResult, String> {
        if self.owed != 0 {
            return Err("a phase started with messages still in flight".to_string());
        }
        self.size = phase.size.max(1) as u64;
        self.done_total = 0;
        self.latencies.clear();
        self.recording = false;
        self.running = true;
        self.depth = match phase.mode {
            Mode::Pipelined { depth } => Some(depth.max(1) as u64),
            Mode::Paced { .. } => None,
        };
        let n = self.conns.len();
        for c in &mut self.conns {
            c.base = c.recvd;
            c.done = 0;
            c.started.clear();
        }
        let t0 = monotonic_ns();
        let warm_end = t0 + phase.warmup.as_nanos() as u64;
        let end = warm_end + phase.measure.as_nanos() as u64;
        if let Some(depth) = self.depth {
            for i in 0..n {
                self.allow(i, depth * self.size, t0);
                self.flush(i)?;
            }
        }
        let mut next_k: u64 = 0;
        let mut start: Option<Snapshot> = None;
        let result = loop {
            let now = monotonic_ns();
            if start.is_none() && now >= warm_end {
                self.recording = phase.latency;
                start = Some(self.snapshot(server, now)?);
            }
            if now >= end {
                let stop = self.snapshot(server, now)?;
                let from = start.take().unwrap_or(stop);
                break self.result(phase, &from, &stop, server)?;
            }
            let mut deadline = if start.is_none() { warm_end } else { end };
            if let Mode::Paced { rate, tick } = phase.mode {
                let tick = tick.as_nanos() as u64;
                // Messages are released at tick boundaries (tick 0: each
                // at its own time).
                let elapsed = now - t0;
                let released = if tick > 0 {
                    elapsed - elapsed % tick
                } else {
                    elapsed
                };
                let due = (released as f64 * rate / 1e9) as u64 + 1;
                while next_k < due {
                    let i = (next_k % n as u64) as usize;
                    self.allow(i, self.size, now);
                    self.flush(i)?;
                    next_k += 1;
                }
                let next_at = if tick > 0 {
                    t0 + released + tick
                } else {
                    t0 + (next_k as f64 * 1e9 / rate).ceil() as u64
                };
                deadline = deadline.min(next_at);
            }
            self.poll(deadline)?;
        };
        self.recording = false;
        self.running = false;
        let drain_by = monotonic_ns() + STEP_TIMEOUT.as_nanos() as u64;
        self.wait_until(drain_by, "draining the phase", |c| c.owed == 0)?;
        Ok(result)
    }

    fn snapshot(&mut self, server: &mut ServerProcess, now: u64) -> Result<Snapshot, String> {
        Ok(Snapshot {
            at: now,
            trips: self.done_total,
            server_cpu: server.cpu()?,
            server_ticks: server.proc_ticks()?,
            client_cpu: rusage_cpu(libc::RUSAGE_THREAD).map_err(|e| format!("getrusage: {e}"))?,
        })
    }

    fn result(
        &mut self,
        phase: &Phase,
        a: &Snapshot,
        b: &Snapshot,
        server: &mut ServerProcess,
    ) -> Result<PhaseResult, String> {
        server.check_alive()?;
        let wall = Duration::from_nanos(b.at - a.at);
        let latency = if phase.latency {
            self.latencies.sort_unstable();
            Some(Latency {
                p50: percentile(&self.latencies, 0.50),
                p99: percentile(&self.latencies, 0.99),
                count: self.latencies.len(),
            })
        } else {
            None
        };
        Ok(PhaseResult {
            trips: b.trips - a.trips,
            wall,
            server_cpu: b.server_cpu.saturating_sub(a.server_cpu),
            server_ticks: b.server_ticks.saturating_sub(a.server_ticks),
            client_cpu: b.client_cpu.saturating_sub(a.client_cpu),
            latency,
            offered: match phase.mode {
                Mode::Paced { rate, .. } => Some(rate * wall.as_secs_f64()),
                Mode::Pipelined { .. } => None,
            },
        })
    }

    /// Closes every connection cleanly: shuts down the sending side, waits
    /// for the server to close its side (no byte may arrive any more),
    /// then closes the descriptors.
    pub fn close(mut self) -> Result<(), String> {
        for c in &mut self.conns {
            // SAFETY: plain syscall on a descriptor we own.
            if unsafe { libc::shutdown(c.fd.as_raw_fd(), libc::SHUT_WR) } != 0 {
                return Err(os_err("shutdown"));
            }
            c.closing = true;
        }
        let deadline = monotonic_ns() + STEP_TIMEOUT.as_nanos() as u64;
        self.wait_until(deadline, "waiting for the server to close", |c| c.open == 0)
    }
}

#[derive(Clone, Copy)]
struct Snapshot {
    at: u64,
    trips: u64,
    server_cpu: Duration,
    server_ticks: u64,
    client_cpu: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), Duration::from_nanos(50));
        assert_eq!(percentile(&v, 0.99), Duration::from_nanos(99));
        assert_eq!(percentile(&v, 1.0), Duration::from_nanos(100));
        assert_eq!(percentile(&[7], 0.99), Duration::from_nanos(7));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }
}
