//! Shared helpers for ringloop's conformance suite.
//!
//! Every test builds its loop with [`TestLoop::new`], which honours
//! `RINGLOOP_BACKEND` (the suite runs once per backend) and installs a
//! strict exception handler: any call to it that the test did not ask for
//! with [`TestLoop::expect_errors`] fails the test when the loop is
//! dropped, because silent errors are the ones users find first (uvloop's
//! test base does the same).

use std::cell::RefCell;
use std::future::Future;
use std::ops::Deref;
use std::rc::Rc;
use std::time::Duration;

use ringloop::{ErrorContext, EventLoop};

pub mod pipes;
pub mod proto;
pub mod subproc;

/// Default bound on any single test scenario.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// A loop for one test, closed (and checked) on drop.
pub struct TestLoop {
    lp: EventLoop,
    errors: Rc<RefCell<Vec<String>>>,
    expect_errors: bool,
}

impl TestLoop {
    /// A loop on the backend `RINGLOOP_BACKEND` selects.
    pub fn new() -> TestLoop {
        Self::from_loop(EventLoop::new().expect("cannot create the event loop"))
    }

    /// Wraps a loop built by the test (custom ring size, debug, ...).
    pub fn from_loop(lp: EventLoop) -> TestLoop {
        let errors: Rc<RefCell<Vec<String>>> = Rc::default();
        let sink = errors.clone();
        lp.set_exception_handler(Some(Rc::new(move |_lp: &EventLoop, ctx: &ErrorContext| {
            sink.borrow_mut().push(ctx.to_string());
        })));
        TestLoop {
            lp,
            errors,
            expect_errors: false,
        }
    }

    /// The loop itself (a clone shares it).
    pub fn lp(&self) -> EventLoop {
        self.lp.clone()
    }

    /// Declares that the test provokes exception-handler calls; returns
    /// the list they are recorded in.
    pub fn expect_errors(&mut self) -> Rc<RefCell<Vec<String>>> {
        self.expect_errors = true;
        self.errors.clone()
    }

    /// `run_until_complete` bounded by [`TIMEOUT`]; panics on timeout or
    /// on a loop error.
    #[track_caller]
    pub fn block_on<F: Future + 'static>(&self, fut: F) -> F::Output {
        self.block_on_within(TIMEOUT, fut)
    }

    /// `run_until_complete` bounded by `limit`.
    #[track_caller]
    pub fn block_on_within<F: Future + 'static>(&self, limit: Duration, fut: F) -> F::Output {
        let stopper = self.lp.clone();
        let watchdog = self
            .lp
            .call_later(limit, move || stopper.stop())
            .expect("schedule watchdog");
        let out = self.lp.run_until_complete(fut);
        watchdog.cancel();
        match out {
            Ok(v) => v,
            Err(ringloop::Error::StoppedBeforeComplete) => {
                panic!("scenario did not finish within {limit:?}")
            }
            Err(e) => panic!("run_until_complete failed: {e}"),
        }
    }
}

impl Default for TestLoop {
    fn default() -> Self {
        Self::new()
    }
}

impl Deref for TestLoop {
    type Target = EventLoop;
    fn deref(&self) -> &EventLoop {
        &self.lp
    }
}

impl Drop for TestLoop {
    fn drop(&mut self) {
        if !self.lp.is_running() {
            let _ = self.lp.close();
        }
        if !self.expect_errors && !std::thread::panicking() {
            let errs = self.errors.borrow();
            assert!(
                errs.is_empty(),
                "unexpected calls to the exception handler: {errs:#?}"
            );
        }
    }
}

/// Number of open descriptors of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// This process's open descriptors: number → what it refers to
/// (`readlink` of `/proc/self/fd/N`: a path, `socket:[inode]`,
/// `anon_inode:[io_uring]`, ...).
pub fn fd_table() -> std::collections::BTreeMap<i32, String> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return Default::default();
    };
    // The listing's own descriptor is in it.
    let own = format!("/proc/{}/fd", std::process::id());
    dir.filter_map(|e| {
        let e = e.ok()?;
        let n = e.file_name().to_str()?.parse().ok()?;
        let target = std::fs::read_link(e.path()).ok()?.display().to_string();
        (target != own).then_some((n, target))
    })
    .collect()
}

/// The descriptor table at one moment, to check later that nothing was
/// left open since ([`assert_nothing_new`](Self::assert_nothing_new)).
///
/// A count of descriptors is not enough in a test binary: its other
/// threads open descriptors for a moment even while this test holds
/// [`fd_lock`] (glibc reads `/proc/sys/vm/overcommit_memory` as a thread
/// exits; a test that released the lock removes its temporary
/// directory), so a count taken at the wrong instant is one too high
/// (seen once in about twenty runs of the datagram suite). A descriptor
/// a test leaks stays open; one another thread opened for a moment is
/// gone a few milliseconds later.
#[derive(Clone)]
pub struct FdSnapshot(std::collections::BTreeMap<i32, String>);

/// The descriptor table now.
pub fn fd_snapshot() -> FdSnapshot {
    FdSnapshot(fd_table())
}

impl FdSnapshot {
    /// The descriptors open now that were not open (as the same file)
    /// at the snapshot, after letting other threads' momentary ones
    /// close (up to 200 ms).
    pub fn new_since(&self) -> Vec<(i32, String)> {
        let mut new = Vec::new();
        for _ in 0..20 {
            new = fd_table()
                .into_iter()
                .filter(|(n, t)| self.0.get(n) != Some(t))
                .collect();
            if new.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        new
    }

    /// Panics, naming them, if descriptors opened since the snapshot
    /// are still open.
    #[track_caller]
    pub fn assert_nothing_new(&self, what: &str) {
        let new = self.new_since();
        assert!(
            new.is_empty(),
            "{what}: {} descriptor(s) left open: {new:?} ({} open at the snapshot)",
            new.len(),
            self.0.len()
        );
    }
}

/// Runs `f` and asserts that it left no descriptor open (see
/// [`FdSnapshot`]). Tests in one binary run in parallel threads and share
/// the descriptor table, so this holds [`fd_lock`] meanwhile.
#[track_caller]
pub fn assert_no_fd_leak<R>(f: impl FnOnce() -> R) -> R {
    let _g = fd_lock();
    let before = fd_snapshot();
    let r = f();
    before.assert_nothing_new("descriptor leak");
    r
}

static FD_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Serialises tests that count descriptors.
pub fn fd_lock() -> std::sync::MutexGuard<'static, ()> {
    FD_LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// A value whose drop is observable: proves a closure or future was
/// dropped (and exactly once).
#[derive(Clone, Default)]
pub struct DropFlag(Rc<std::cell::Cell<u32>>);

/// The sentinel half of a [`DropFlag`]; move it into what must be dropped.
pub struct DropSentinel(Rc<std::cell::Cell<u32>>);

impl DropFlag {
    /// A new flag, not yet dropped.
    pub fn new() -> Self {
        Self::default()
    }
    /// A sentinel that counts its drop on this flag.
    pub fn sentinel(&self) -> DropSentinel {
        DropSentinel(self.0.clone())
    }
    /// How many sentinels were dropped.
    pub fn drops(&self) -> u32 {
        self.0.get()
    }
}

impl Drop for DropSentinel {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

/// Names the backend under test, for messages.
pub fn backend_name() -> String {
    std::env::var("RINGLOOP_BACKEND").unwrap_or_else(|_| "auto".into())
}

/// A connected loopback TCP pair: (client, server side), both
/// non-blocking.
pub fn tcp_pair() -> (std::net::TcpStream, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local_addr");
    let client = std::net::TcpStream::connect(addr).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    client.set_nonblocking(true).expect("nonblocking");
    server.set_nonblocking(true).expect("nonblocking");
    (client, server)
}

/// Deterministic pseudo-random bytes (xorshift), for payload checks.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Runs `lp` one iteration at a time until a timer `after` from now has
/// fired; returns how many iterations that took (a loop that spins shows
/// up as many). Panics past `limit` iterations.
pub fn iterations_until(lp: &EventLoop, after: Duration, limit: usize) -> usize {
    let done = Rc::new(std::cell::Cell::new(false));
    let d = done.clone();
    lp.call_later(after, move || d.set(true)).expect("schedule");
    let mut iterations = 0;
    while !done.get() {
        lp.run_once().expect("run_once");
        iterations += 1;
        assert!(iterations < limit, "spinning: {iterations} iterations");
    }
    iterations
}

/// Starts a callback that counts its runs every `period`, for as long as
/// the loop runs: proof that the loop thread is not blocked.
pub fn start_ticker(lp: &EventLoop, period: Duration) -> Rc<std::cell::Cell<u32>> {
    fn tick(lp: EventLoop, n: Rc<std::cell::Cell<u32>>, period: Duration) {
        n.set(n.get() + 1);
        let l = lp.clone();
        let _ = lp.call_later(period, move || tick(l, n, period));
    }
    let ticks = Rc::new(std::cell::Cell::new(0u32));
    let (l, t) = (lp.clone(), ticks.clone());
    lp.call_soon(move || tick(l, t, period)).expect("schedule");
    ticks
}
