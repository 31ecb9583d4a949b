//! The echo benchmark: ringloop's `sock_*` echo server on each backend
//! (io_uring and epoll), under load from a tokio client on another CPU.
//!
//! ```sh
//! cargo bench -p ringloop-benches --bench echo                # 3 sizes x 2 backends, best of 3
//! cargo bench -p ringloop-benches --bench echo -- --quick     # smoke test (a few seconds)
//! cargo bench -p ringloop-benches --bench echo -- --help      # all options
//! ```
//!
//! **Server** (the thing measured): a thread of its own, pinned to the
//! first allowed CPU, creates an [`EventLoop`] on the backend under test
//! (the loop is `!Send`, so it is built inside that thread), listens on
//! `127.0.0.1:0` and runs one task per connection, as
//! `examples/sock_echo.rs` does: a `sock_accept` loop; each connection
//! loops `sock_recv(64 KiB)` → `sock_sendall` and ends on an empty
//! receive. Accepted sockets get `TCP_NODELAY` (as asyncio's transports
//! do), so Nagle's algorithm cannot hold back echoed data waiting for
//! delayed ACKs.
//!
//! **Client** (the load): a tokio `current_thread` runtime in a second
//! thread, pinned to the second allowed CPU, opens `--conns` connections
//! (default 100). Each connection repeatedly writes `--depth` messages
//! (default 4) of `--size` bytes in one write while reading the echo of
//! all of them back, and checks every byte (the content changes from
//! round to round and between connections, so stale, lost or misrouted
//! bytes are caught). With that many requests in flight the server is
//! the bottleneck. One *round trip* is one message echoed.
//!
//! **A run**: start the server, connect, warm up (0.5 s), then measure
//! for `--secs` (default 2 s): round trips completed, wall time, and the
//! server thread's CPU time (`utime + stime` from
//! `/proc/self/task/<tid>/stat`, in clock ticks of 10 ms, cross-checked
//! with the thread's CPU-time clock, in ns). Then the client shuts down
//! the sending side of each connection and waits for the server to close
//! it, the main thread stops the loop with `LoopHandle::stop`, the server
//! thread closes the loop and ends, and the main thread joins it. Every
//! step is bounded by a timeout; descriptors and threads are counted
//! before and after each run to catch leaks.
//!
//! **The table**: per message size, `--runs` runs per backend (default 3;
//! `--quick`: 1 run of 0.3 s), alternating backends (and which goes
//! first); each backend's row comes from its run with the most round
//! trips per second. Ratios are epoll ÷ io_uring: above 1 for round
//! trips/s, epoll is faster; above 1 for CPU per round trip, epoll costs
//! more. See `docs/benchmarks.md` for results and discussion.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::thread::JoinHandleExt;
use std::pin::pin;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::task::Poll;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ringloop::{Backend, EventLoop, LoopHandle};
use ringloop_benches::echo::{EchoArgs, USAGE};
use ringloop_benches::os::{
    allowed_cpus, clock_ticks_per_sec, count_proc_entries, current_tid, pin_current_thread,
    proc_thread_ticks, ThreadClock,
};
use ringloop_benches::{backend_label, probe_backend, Rate, Ratio};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What each server connection asks `sock_recv` for.
const RECV_SIZE: usize = 64 * 1024;

/// Bound on every wait that depends on the other side: the server
/// starting, connecting, the connections closing, the server stopping.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// The client's byte pattern repeats with this period (a prime, so that
/// consecutive rounds, which start one byte further into it, and
/// different connections all send different bytes).
const PATTERN_PERIOD: usize = 251;

/// Server-side error messages kept (the rest are only counted).
const MAX_KEPT_ERRORS: usize = 10;

// ----- the server ----------------------------------------------------------

/// What the server thread sends back once it listens.
struct Listening {
    addr: SocketAddr,
    tid: libc::pid_t,
    backend: Backend,
    handle: LoopHandle,
    /// The CPU it pinned itself to, or why it could not.
    pinned: Result<usize, String>,
}

/// What the server thread returns when it ends.
#[derive(Default, Debug)]
struct ServerReport {
    /// Connections accepted.
    accepted: u64,
    /// Connections whose echo loop ended on an empty receive (the client
    /// closed its side), without error.
    completed: u64,
    /// Errors seen (accept, receive, send, loop); the first few messages.
    errors: Vec<String>,
    /// All errors seen, kept or not.
    error_count: u64,
}

impl ServerReport {
    fn error(&mut self, msg: String) {
        self.error_count += 1;
        if self.errors.len() < MAX_KEPT_ERRORS {
            self.errors.push(msg);
        }
    }
}

/// A running server thread.
struct Server {
    thread: JoinHandle<ServerReport>,
    listening: Listening,
    /// The server thread's CPU-time clock (`None` if unavailable).
    clock: Option<ThreadClock>,
}

impl Server {
    /// Starts the server thread on `backend`, pinned to `cpu`, and waits
    /// until it listens.
    fn start(backend: Backend, cpu: Option<usize>) -> Result<Server, String> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("echo-server-{}", backend_label(backend)))
            .spawn(move || server_main(backend, cpu, tx))
            .map_err(|e| format!("spawning the server thread: {e}"))?;
        match rx.recv_timeout(STEP_TIMEOUT) {
            Ok(Ok(listening)) => {
                let clock = ThreadClock::of(thread.as_pthread_t()).ok();
                Ok(Server {
                    thread,
                    listening,
                    clock,
                })
            }
            Ok(Err(e)) => {
                // The thread ends right after reporting its failure.
                let _ = thread.join();
                Err(e)
            }
            Err(_) => Err(format!(
                "the {backend} server thread did not report within {STEP_TIMEOUT:?}"
            )),
        }
    }

    /// Stops the loop from this thread, and joins the server thread
    /// (waiting at most [`STEP_TIMEOUT`]).
    fn stop(self) -> Result<ServerReport, String> {
        self.listening
            .handle
            .stop()
            .map_err(|e| format!("LoopHandle::stop: {e}"))?;
        let deadline = Instant::now() + STEP_TIMEOUT;
        while !self.thread.is_finished() {
            if Instant::now() >= deadline {
                return Err(format!(
                    "the server thread did not stop within {STEP_TIMEOUT:?} of LoopHandle::stop"
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.thread
            .join()
            .map_err(|_| "the server thread panicked".to_string())
    }
}

/// The server thread: pin, build the loop, listen, report, serve until
/// stopped, close the loop.
fn server_main(
    backend: Backend,
    cpu: Option<usize>,
    tx: mpsc::Sender<Result<Listening, String>>,
) -> ServerReport {
    let pinned = match cpu {
        Some(c) => pin_current_thread(c)
            .map(|()| c)
            .map_err(|e| format!("pinning to CPU {c}: {e}")),
        None => Err("no CPU to pin to".to_string()),
    };
    let setup = || -> io::Result<(EventLoop, TcpListener, SocketAddr)> {
        let lp = EventLoop::builder().backend(backend).build()?;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        Ok((lp, listener, addr))
    };
    let (lp, listener, addr) = match setup() {
        Ok(s) => s,
        Err(e) => {
            let _ = tx.send(Err(format!("starting the {backend} server: {e}")));
            return ServerReport::default();
        }
    };
    let report = Rc::new(RefCell::new(ServerReport::default()));
    if let Err(e) = lp.create_task(accept_loop(lp.clone(), listener, report.clone())) {
        let _ = tx.send(Err(format!("create_task(accept loop): {e}")));
        let _ = lp.close();
        return ServerReport::default();
    }
    let listening = Listening {
        addr,
        tid: current_tid(),
        backend: lp.backend(),
        handle: lp.handle(),
        pinned,
    };
    if tx.send(Ok(listening)).is_err() {
        // The main thread gave up waiting: nobody will stop us.
        let _ = lp.close();
        return ServerReport::default();
    }
    if let Err(e) = lp.run_forever() {
        report.borrow_mut().error(format!("run_forever: {e}"));
    }
    // Drops the accept task (and its listener) and any connection task
    // still running (the client should have closed them all).
    if let Err(e) = lp.close() {
        report.borrow_mut().error(format!("close: {e}"));
    }
    drop(lp);
    report.take()
}

/// Accepts connections and starts one echo task per connection, until
/// the loop is stopped and closed.
async fn accept_loop(lp: EventLoop, listener: TcpListener, report: Rc<RefCell<ServerReport>>) {
    loop {
        match lp.sock_accept(&listener).await {
            Ok((stream, peer)) => {
                report.borrow_mut().accepted += 1;
                let conn = serve_conn(lp.clone(), stream, peer, report.clone());
                if let Err(e) = lp.create_task(conn) {
                    report
                        .borrow_mut()
                        .error(format!("create_task(connection): {e}"));
                    return;
                }
            }
            Err(e) => {
                // E.g. out of descriptors: back off as asyncio's servers
                // do instead of spinning on the error.
                report.borrow_mut().error(format!("sock_accept: {e}"));
                match lp.sleep(Duration::from_millis(100)) {
                    Ok(pause) => pause.await,
                    Err(_) => return,
                }
            }
        }
    }
}

/// One connection: echo until the client closes its side.
async fn serve_conn(
    lp: EventLoop,
    stream: std::net::TcpStream,
    peer: SocketAddr,
    report: Rc<RefCell<ServerReport>>,
) {
    if let Err(e) = stream.set_nodelay(true) {
        report
            .borrow_mut()
            .error(format!("{peer}: setting TCP_NODELAY: {e}"));
    }
    let echoed = async {
        loop {
            let data = lp.sock_recv(&stream, RECV_SIZE).await?;
            if data.is_empty() {
                return Ok::<(), io::Error>(());
            }
            lp.sock_sendall(&stream, data).await?;
        }
    }
    .await;
    match echoed {
        Ok(()) => report.borrow_mut().completed += 1,
        Err(e) => report.borrow_mut().error(format!("{peer}: {e}")),
    }
}

// ----- the client ----------------------------------------------------------

/// One cell's load: how many connections, messages in flight, bytes.
#[derive(Clone, Copy, Debug)]
struct Load {
    conns: usize,
    depth: usize,
    size: usize,
    warmup: Duration,
    duration: Duration,
}

/// How the client reads the server's CPU time.
#[derive(Clone, Copy)]
struct ServerProbe {
    tid: libc::pid_t,
    clock: Option<ThreadClock>,
}

/// Counters at one instant of a run.
#[derive(Clone, Copy)]
struct Snapshot {
    at: Instant,
    trips: u64,
    server_ticks: u64,
    server_cpu: Option<Duration>,
    client_cpu: Option<Duration>,
}

impl Snapshot {
    fn take(trips: &AtomicU64, server: ServerProbe) -> Result<Snapshot, String> {
        let server_ticks = proc_thread_ticks(server.tid)
            .map_err(|e| format!("reading the server thread's CPU time: {e}"))?;
        Ok(Snapshot {
            at: Instant::now(),
            trips: trips.load(Ordering::Relaxed),
            server_ticks,
            server_cpu: server.clock.and_then(|c| c.now().ok()),
            client_cpu: ThreadClock::current().now().ok(),
        })
    }
}

/// What one measured interval produced.
#[derive(Clone, Copy, Debug)]
struct Measured {
    trips: u64,
    wall: Duration,
    /// Server `utime + stime` over the interval, in clock ticks.
    server_ticks: u64,
    /// Server CPU time over the interval from its CPU-time clock.
    server_cpu: Option<Duration>,
    /// Client thread CPU time over the interval.
    client_cpu: Option<Duration>,
}

fn diff(after: Snapshot, before: Snapshot) -> Measured {
    let sub = |a: Option<Duration>, b: Option<Duration>| Some(a?.saturating_sub(b?));
    Measured {
        trips: after.trips - before.trips,
        wall: after.at - before.at,
        server_ticks: after.server_ticks.saturating_sub(before.server_ticks),
        server_cpu: sub(after.server_cpu, before.server_cpu),
        client_cpu: sub(after.client_cpu, before.client_cpu),
    }
}

/// The client thread: pin, build a tokio runtime, drive the load.
fn client_main(
    cpu: Option<usize>,
    addr: SocketAddr,
    load: Load,
    server: ServerProbe,
) -> Result<Measured, String> {
    if let Some(c) = cpu {
        // Reported once at startup; a failure here only costs precision.
        let _ = pin_current_thread(c);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| format!("building the tokio runtime: {e}"))?;
    rt.block_on(drive(addr, load, server))
}

/// Connects, runs the connections through warm-up and the measured
/// interval, then closes them all and checks they closed cleanly.
async fn drive(addr: SocketAddr, load: Load, server: ServerProbe) -> Result<Measured, String> {
    let mut streams = Vec::with_capacity(load.conns);
    for i in 0..load.conns {
        let stream = tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connection {i}: connect timed out"))?
            .map_err(|e| format!("connection {i}: connect: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("connection {i}: TCP_NODELAY: {e}"))?;
        streams.push(stream);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let trips = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(id, s)| tokio::spawn(client_conn(s, id, load, stop.clone(), trips.clone())))
        .collect();

    tokio::time::sleep(load.warmup).await;
    let before = Snapshot::take(&trips, server);
    tokio::time::sleep(load.duration).await;
    let after = Snapshot::take(&trips, server);
    stop.store(true, Ordering::Relaxed);

    // Every connection finishes its round, closes its side and waits for
    // the server to close; all of that within STEP_TIMEOUT.
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    let mut errors = Vec::new();
    for (id, task) in tasks.into_iter().enumerate() {
        match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => errors.push(e),
            Ok(Err(e)) => errors.push(format!("connection {id}: task failed: {e}")),
            Err(_) => errors.push(format!(
                "connection {id}: did not finish within {STEP_TIMEOUT:?} of the end"
            )),
        }
    }
    if !errors.is_empty() {
        let n = errors.len();
        errors.truncate(MAX_KEPT_ERRORS);
        return Err(format!(
            "{n} client connection(s) failed: {}",
            errors.join("; ")
        ));
    }
    Ok(diff(after?, before?))
}

/// One client connection: rounds of `depth` pipelined messages until told
/// to stop, each echo checked byte for byte; then a clean close.
async fn client_conn(
    mut stream: TcpStream,
    id: usize,
    load: Load,
    stop: Arc<AtomicBool>,
    trips: Arc<AtomicU64>,
) -> Result<(), String> {
    let batch = load.size * load.depth;
    let pattern: Vec<u8> = (0..batch + PATTERN_PERIOD)
        .map(|i| ((i * 131 + id * 7) % PATTERN_PERIOD) as u8)
        .collect();
    let mut echoed = vec![0u8; batch];
    let mut round = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let offset = round % PATTERN_PERIOD;
        let sent = &pattern[offset..offset + batch];
        exchange(&mut stream, sent, &mut echoed)
            .await
            .map_err(|e| format!("connection {id}, round {round}: {e}"))?;
        if echoed != sent {
            let at = echoed.iter().zip(sent).position(|(a, b)| a != b);
            return Err(format!(
                "connection {id}, round {round}: the echo differs from what was sent \
                 (first difference at byte {at:?} of {batch})"
            ));
        }
        trips.fetch_add(load.depth as u64, Ordering::Relaxed);
        round += 1;
    }
    stream
        .shutdown()
        .await
        .map_err(|e| format!("connection {id}: shutdown: {e}"))?;
    let mut rest = [0u8; 64];
    match stream.read(&mut rest).await {
        Ok(0) => Ok(()),
        Ok(n) => Err(format!(
            "connection {id}: {n} unexpected byte(s) after the last round"
        )),
        Err(e) => Err(format!(
            "connection {id}: waiting for the server to close: {e}"
        )),
    }
}

/// Writes `out` and reads exactly `into.len()` bytes, concurrently (so
/// neither side can stall on full socket buffers, whatever the sizes).
async fn exchange(stream: &mut TcpStream, out: &[u8], into: &mut [u8]) -> io::Result<()> {
    let (mut rd, mut wr) = stream.split();
    let mut write = pin!(wr.write_all(out));
    let mut read = pin!(rd.read_exact(into));
    let (mut written, mut read_done) = (false, false);
    poll_fn(|cx| {
        if !written {
            if let Poll::Ready(r) = write.as_mut().poll(cx) {
                r?;
                written = true;
            }
        }
        if !read_done {
            if let Poll::Ready(r) = read.as_mut().poll(cx) {
                r?;
                read_done = true;
            }
        }
        if written && read_done {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    })
    .await
}

// ----- one run, one cell ---------------------------------------------------

/// The CPUs the server and the client are pinned to.
#[derive(Clone, Copy, Debug)]
struct Placement {
    server: Option<usize>,
    client: Option<usize>,
}

/// One run: server up, client load, everything down; checks for errors
/// and leaks.
fn run_once(backend: Backend, load: Load, place: Placement) -> Result<Measured, String> {
    let fds_before = count_proc_entries("fd").ok();
    let threads_before = count_proc_entries("task").ok();

    let server = Server::start(backend, place.server)?;
    if server.listening.backend != backend {
        let got = server.listening.backend;
        let _ = server.stop();
        return Err(format!("asked for a {backend} loop, got {got}"));
    }
    if let Err(e) = &server.listening.pinned {
        if place.server.is_some() {
            eprintln!("echo: server thread: {e} (continuing unpinned)");
        }
    }
    let probe = ServerProbe {
        tid: server.listening.tid,
        clock: server.clock,
    };
    let addr = server.listening.addr;
    let client = std::thread::Builder::new()
        .name("echo-client".to_string())
        .spawn(move || client_main(place.client, addr, load, probe))
        .map_err(|e| format!("spawning the client thread: {e}"));
    let measured = match client {
        Ok(t) => t
            .join()
            .unwrap_or_else(|_| Err("the client thread panicked".to_string())),
        Err(e) => Err(e),
    };
    // Stop the server whatever happened to the client, and report both
    // sides' errors together (a server error often explains a client's).
    let report = server.stop();
    let measured = match (measured, &report) {
        (Ok(m), _) => m,
        (Err(e), Ok(r)) if r.error_count > 0 => {
            return Err(format!(
                "{e}; the server saw {} error(s): {}",
                r.error_count,
                r.errors.join("; ")
            ))
        }
        (Err(e), _) => return Err(e),
    };
    let report = report?;

    if report.error_count > 0 {
        return Err(format!(
            "the server saw {} error(s): {}",
            report.error_count,
            report.errors.join("; ")
        ));
    }
    let conns = load.conns as u64;
    if report.accepted != conns || report.completed != conns {
        return Err(format!(
            "the server accepted {} and completed {} connection(s), expected {conns} each",
            report.accepted, report.completed
        ));
    }
    if let (Some(before), Ok(after)) = (fds_before, count_proc_entries("fd")) {
        if after != before {
            return Err(format!(
                "open descriptors: {before} before the run, {after} after (a leak?)"
            ));
        }
    }
    if let (Some(before), Ok(after)) = (threads_before, count_proc_entries("task")) {
        if after != before {
            return Err(format!(
                "threads: {before} before the run, {after} after (a leak?)"
            ));
        }
    }
    if measured.trips == 0 {
        return Err("no round trip completed in the measured interval".to_string());
    }
    Ok(measured)
}

/// The runs of one backend at one size (one table row).
struct Series {
    size: usize,
    backend: Backend,
    runs: Vec<Measured>,
    failed: Option<String>,
}

impl Series {
    /// The run with the most round trips per second.
    fn best(&self) -> Option<&Measured> {
        self.runs
            .iter()
            .max_by(|a, b| trips_per_sec(a).total_cmp(&trips_per_sec(b)))
    }

    /// The median round trips per second (lower middle for even counts).
    fn median_rate(&self) -> Option<f64> {
        let mut rates: Vec<f64> = self.runs.iter().map(trips_per_sec).collect();
        rates.sort_by(f64::total_cmp);
        match rates.len() {
            0 => None,
            n => Some(rates[(n - 1) / 2]),
        }
    }
}

fn trips_per_sec(m: &Measured) -> f64 {
    m.trips as f64 / m.wall.as_secs_f64().max(1e-9)
}

/// Server CPU µs per round trip from the `/proc` tick counts.
fn proc_us_per_trip(m: &Measured, ticks_per_sec: u64) -> f64 {
    m.server_ticks as f64 * 1e6 / ticks_per_sec as f64 / m.trips.max(1) as f64
}

/// Server CPU µs per round trip from the thread's CPU-time clock.
fn clock_us_per_trip(m: &Measured) -> Option<f64> {
    Some(m.server_cpu?.as_secs_f64() * 1e6 / m.trips.max(1) as f64)
}

fn percent(cpu: Option<Duration>, wall: Duration) -> String {
    match cpu {
        Some(c) => format!(
            "{:.0} %",
            100.0 * c.as_secs_f64() / wall.as_secs_f64().max(1e-9)
        ),
        None => "n/a".to_string(),
    }
}

fn size_label(size: usize) -> String {
    if size >= 1024 && size % 1024 == 0 {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

// ----- the table -----------------------------------------------------------

fn print_header() {
    println!(
        "{:>7} {:>6} {:>6} {:<6} {:>14} {:>14} {:>12} {:>12} {:>9} {:>9} {:>12} {:>12}",
        "size",
        "conns",
        "depth",
        "backend",
        "round trips/s",
        "(median)",
        "srv us/rt",
        "(clock)",
        "srv CPU",
        "cli CPU",
        "epoll/uring",
        "epoll/uring"
    );
    println!(
        "{:>7} {:>6} {:>6} {:<6} {:>14} {:>14} {:>12} {:>12} {:>9} {:>9} {:>12} {:>12}",
        "", "", "", "", "(best run)", "", "(/proc)", "", "", "", "rt/s", "CPU/rt"
    );
    println!("{}", "-".repeat(130));
}

fn print_series(cell: &Series, load: &Load, uring: Option<&Series>, ticks_per_sec: u64) {
    let prefix = format!(
        "{:>7} {:>6} {:>6} {:<6}",
        size_label(cell.size),
        load.conns,
        load.depth,
        backend_label(cell.backend)
    );
    let Some(best) = cell.best() else {
        println!(
            "{prefix} failed: {}",
            cell.failed.as_deref().unwrap_or("no run")
        );
        return;
    };
    let (rate_ratio, cpu_ratio) = match (cell.backend, uring.and_then(Series::best)) {
        (Backend::Epoll, Some(u)) => (
            Ratio(Some(trips_per_sec(best)), Some(trips_per_sec(u))).to_string(),
            Ratio(
                Some(proc_us_per_trip(best, ticks_per_sec)),
                Some(proc_us_per_trip(u, ticks_per_sec)),
            )
            .to_string(),
        ),
        (Backend::Epoll, None) => ("n/a".to_string(), "n/a".to_string()),
        _ => (String::new(), String::new()),
    };
    println!(
        "{prefix} {:>14} {:>14} {:>12.2} {:>12} {:>9} {:>9} {:>12} {:>12}",
        Rate(trips_per_sec(best)),
        cell.median_rate()
            .map_or("n/a".to_string(), |r| Rate(r).to_string()),
        proc_us_per_trip(best, ticks_per_sec),
        clock_us_per_trip(best).map_or("n/a".to_string(), |v| format!("{v:.2}")),
        percent(best.server_cpu, best.wall),
        percent(best.client_cpu, best.wall),
        rate_ratio,
        cpu_ratio,
    );
}

fn main() -> ExitCode {
    let raw = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned());
    let args = match EchoArgs::parse(raw) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("echo: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if args.help {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    for flag in &args.ignored {
        eprintln!("echo: ignoring unknown flag {flag}");
    }
    let ticks_per_sec = match clock_ticks_per_sec() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("echo: {e}");
            return ExitCode::FAILURE;
        }
    };

    // Backends that cannot start here (io_uring blocked, say) are skipped.
    let mut backends = Vec::new();
    for b in args.backends() {
        match probe_backend(b) {
            Ok(()) => backends.push(b),
            Err(e) => eprintln!("echo: skipping the {b} backend: {e}"),
        }
    }
    if backends.is_empty() {
        eprintln!("echo: no ringloop backend can start here");
        return ExitCode::FAILURE;
    }

    let place = match allowed_cpus() {
        Ok(cpus) if cpus.len() >= 2 => Placement {
            server: Some(cpus[0]),
            client: Some(cpus[1]),
        },
        Ok(cpus) => {
            eprintln!(
                "echo: only {} CPU(s) allowed ({cpus:?}): server and client are not pinned \
                 and share the CPU",
                cpus.len()
            );
            Placement {
                server: None,
                client: None,
            }
        }
        Err(e) => {
            eprintln!("echo: sched_getaffinity failed ({e}): not pinning");
            Placement {
                server: None,
                client: None,
            }
        }
    };
    // Check once, on a scratch thread, that pinning works, to say so
    // plainly (the threads of each run pin themselves again).
    let pin_note = match place.client {
        Some(c) => match std::thread::spawn(move || pin_current_thread(c)).join() {
            Ok(Ok(())) => format!(
                "server pinned to CPU {}, client to CPU {c}",
                place.server.unwrap_or(0)
            ),
            Ok(Err(e)) => format!("pinning failed ({e}): threads not pinned"),
            Err(_) => "pinning check panicked: threads not pinned".to_string(),
        },
        None => "threads not pinned".to_string(),
    };

    println!(
        "ringloop echo benchmark{}: sock_accept / sock_recv({} KiB) / sock_sendall server, \
         one task per connection; tokio current_thread client",
        if args.quick { " (--quick)" } else { "" },
        RECV_SIZE / 1024
    );
    println!(
        "backends: {}; {pin_note}; {} run(s) of {:.1} s (+{:.2} s warm-up) per cell, \
         best kept; CLK_TCK {ticks_per_sec}",
        backends
            .iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        args.runs,
        args.duration.as_secs_f64(),
        args.warmup.as_secs_f64(),
    );
    println!(
        "round trip = one message echoed; srv us/rt = server thread CPU (utime+stime from \
         /proc) per round trip, (clock) = the same from its CPU-time clock; srv/cli CPU = \
         thread CPU / wall time"
    );
    println!();
    print_header();

    let mut failed = false;
    for &size in &args.sizes {
        let load = Load {
            conns: args.conns,
            depth: args.depth,
            size,
            warmup: args.warmup,
            duration: args.duration,
        };
        let mut cells: Vec<Series> = backends
            .iter()
            .map(|&backend| Series {
                size,
                backend,
                runs: Vec::new(),
                failed: None,
            })
            .collect();
        for run in 0..args.runs {
            // Alternate which backend goes first, so a drift of the
            // machine does not always favour the same one.
            let mut order: Vec<usize> = (0..cells.len()).collect();
            if run % 2 == 1 {
                order.reverse();
            }
            for i in order {
                let cell = &mut cells[i];
                match run_once(cell.backend, load, place) {
                    Ok(m) => cell.runs.push(m),
                    Err(e) => {
                        eprintln!(
                            "echo: {} run {} at {}: {e}",
                            cell.backend,
                            run + 1,
                            size_label(size)
                        );
                        cell.failed = Some(e);
                        failed = true;
                    }
                }
            }
        }
        let uring = cells.iter().find(|c| c.backend == Backend::Uring);
        for cell in &cells {
            print_series(cell, &load, uring, ticks_per_sec);
        }
    }
    if failed {
        eprintln!("echo: some runs failed (see above)");
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
