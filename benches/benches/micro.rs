//! Micro benchmarks of ringloop's core, on both of its backends
//! (io_uring and epoll), each beside its nearest tokio equivalent,
//! measured in the same process and run.
//!
//! ```sh
//! cargo bench -p ringloop-benches --bench micro                 # everything
//! cargo bench -p ringloop-benches --bench micro -- timers       # a subset
//! cargo bench -p ringloop-benches --bench micro -- --quick      # smoke test
//! cargo bench -p ringloop-benches --bench micro -- --backend epoll  # one backend
//! ```
//!
//! | name            | ringloop                                   | tokio (current_thread, time driver)           |
//! |-----------------|--------------------------------------------|-----------------------------------------------|
//! | `call_soon`     | `call_soon` callbacks, fed in batches      | `tokio::spawn` of trivial tasks, same batches |
//! | `timers`        | `call_later` over 0..10 ms, all fire       | spawned tasks each `sleep` over 0..10 ms      |
//! | `timers_cancel` | `call_later`, `cancel`, loop compacts heap | `sleep` polled once (registered), dropped     |
//! | `future`        | task awaits a `LoopFuture` a callback sets | task awaits a `oneshot` a spawned task sends  |
//! | `spawn`         | `create_task(async {})` x N, await all     | `tokio::spawn(async {})` x N, await all       |
//!
//! There are three sides: ringloop with its loop forced onto io_uring
//! (`EventLoop::builder().backend(Backend::Uring)`), ringloop forced onto
//! epoll, and tokio. Every run builds a fresh loop (or runtime), times only
//! the work, then closes the loop (drops the runtime). One warm-up run per
//! side, then `--runs` rounds of one timed run per side, in turn; the table
//! reports each side's best run (and the median) and the ratios io_uring ÷
//! tokio and epoll ÷ io_uring of ops/s. These benchmarks do almost no I/O
//! (the loop polls its backend once per iteration, with a zero timeout
//! when work is ready), so epoll ÷ io_uring is expected near 1. A backend
//! that cannot start here (io_uring blocked by seccomp, say) is skipped
//! and its columns read `n/a`. See `docs/benchmarks.md` for the discussion
//! and recorded results.

use std::cell::Cell;
use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use ringloop::{Backend, EventLoop, Task, TimerHandle};
use ringloop_benches::{
    backend_label, measure, ops_per_sec, probe_backend, spread_delays, Args, Rate, Ratio, Samples,
    Secs, Side, USAGE,
};
use tokio::runtime::Runtime;
use tokio::sync::{oneshot, Notify};

/// `call_soon` callbacks (tokio: tasks) queued per feeder step.
const BATCH: u64 = 10_000;

/// Timer delays are spread (pseudo-randomly, uniformly) over this span.
const TIMER_SPAN: Duration = Duration::from_millis(10);

/// Target for `call_soon` (callbacks per second).
const CALL_SOON_TARGET: f64 = 20e6;

/// Target for `timers`: 1 M timers scheduled and fired within this.
const TIMERS_TARGET: Duration = Duration::from_millis(500);

thread_local! {
    /// What every benchmark callback or task increments. A thread-local
    /// (both sides run on this thread) so neither side pays for an `Rc`
    /// or an `Arc` the other does not.
    static COUNTER: Cell<u64> = const { Cell::new(0) };
}

/// Increments the counter and returns its new value.
fn bump() -> u64 {
    COUNTER.with(|c| {
        let v = c.get() + 1;
        c.set(v);
        v
    })
}

/// [`bump`] as a plain callback.
fn bump_unit() {
    bump();
}

fn reset_counter() {
    COUNTER.with(|c| c.set(0));
}

/// Panics (ending the benchmark) if the work did not happen as often as
/// it should have: a benchmark that skipped work would report nonsense.
fn check_count(expected: u64, what: &str) {
    let got = COUNTER.with(Cell::get);
    assert_eq!(got, expected, "{what}: expected {expected} runs, saw {got}");
}

/// A fresh loop on `backend` (which was probed at startup).
fn new_loop(backend: Backend) -> EventLoop {
    EventLoop::builder()
        .backend(backend)
        .build()
        .expect("creating a ringloop EventLoop (this backend worked at startup)")
}

fn close_loop(lp: &EventLoop) {
    lp.close().expect("closing the loop after a run");
}

fn tokio_rt() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("building a tokio current_thread runtime")
}

// ----- 1. call_soon ---------------------------------------------------

/// Queues `min(remaining, BATCH)` counter callbacks, then either itself
/// for the rest or `stop`. FIFO order means each feeder step runs after
/// the batch it queued, so at most one batch is ever queued.
fn rl_feed(lp: &EventLoop, remaining: u64) {
    let batch = remaining.min(BATCH);
    for _ in 0..batch {
        lp.call_soon(bump_unit).expect("call_soon on an open loop");
    }
    let rest = remaining - batch;
    let next = lp.clone();
    let queued = if rest > 0 {
        lp.call_soon(move || rl_feed(&next, rest))
    } else {
        lp.call_soon(move || next.stop())
    };
    queued.expect("call_soon on an open loop");
}

fn rl_call_soon(backend: Backend, n: u64) -> Duration {
    let lp = new_loop(backend);
    reset_counter();
    let start = Instant::now();
    rl_feed(&lp, n);
    lp.run_forever().expect("run_forever");
    let elapsed = start.elapsed();
    check_count(n, "call_soon");
    close_loop(&lp);
    elapsed
}

/// tokio's counterpart of [`rl_feed`]: trivial tasks instead of
/// callbacks (their `JoinHandle`s dropped, fire-and-forget), the feeder
/// a task, the end a oneshot.
fn tk_feed(remaining: u64, done: oneshot::Sender<()>) {
    let batch = remaining.min(BATCH);
    for _ in 0..batch {
        drop(tokio::spawn(async {
            bump();
        }));
    }
    let rest = remaining - batch;
    if rest > 0 {
        drop(tokio::spawn(async move { tk_feed(rest, done) }));
    } else {
        drop(tokio::spawn(async move {
            // The receiver waits in block_on; it cannot be gone.
            let _ = done.send(());
        }));
    }
}

fn tk_call_soon(n: u64) -> Duration {
    let rt = tokio_rt();
    reset_counter();
    let start = Instant::now();
    rt.block_on(async move {
        let (tx, rx) = oneshot::channel();
        tk_feed(n, tx);
        rx.await.expect("the feeder chain signals its end");
    });
    let elapsed = start.elapsed();
    check_count(n, "tokio spawn (call_soon equivalent)");
    drop(rt);
    elapsed
}

fn bench_call_soon(n: u64, runs: usize, sides: &[Side]) -> Vec<Samples> {
    measure(runs, sides, |side| match side {
        Side::Ringloop(b) => rl_call_soon(b, n),
        Side::Tokio => tk_call_soon(n),
    })
}

// ----- 2. timers: schedule and fire -------------------------------------

fn rl_timers(backend: Backend, delays: &[Duration]) -> Duration {
    let lp = new_loop(backend);
    reset_counter();
    let n = delays.len() as u64;
    let start = Instant::now();
    for &d in delays {
        let stopper = lp.clone();
        lp.call_later(d, move || {
            if bump() == n {
                stopper.stop();
            }
        })
        .expect("call_later on an open loop");
    }
    lp.run_forever().expect("run_forever");
    let elapsed = start.elapsed();
    check_count(n, "call_later timers");
    close_loop(&lp);
    elapsed
}

fn tk_timers(delays: &[Duration]) -> Duration {
    let rt = tokio_rt();
    reset_counter();
    let n = delays.len() as u64;
    let start = Instant::now();
    rt.block_on(async {
        let done = Arc::new(Notify::new());
        for &d in delays {
            let done = done.clone();
            drop(tokio::spawn(async move {
                tokio::time::sleep(d).await;
                if bump() == n {
                    done.notify_one();
                }
            }));
        }
        done.notified().await;
    });
    let elapsed = start.elapsed();
    check_count(n, "tokio sleeps");
    drop(rt);
    elapsed
}

fn bench_timers(n: u64, runs: usize, sides: &[Side]) -> Vec<Samples> {
    let delays = spread_delays(n, TIMER_SPAN);
    measure(runs, sides, |side| match side {
        Side::Ringloop(b) => rl_timers(b, &delays),
        Side::Tokio => tk_timers(&delays),
    })
}

// ----- 3. timers: schedule and cancel -----------------------------------

fn rl_timers_cancel(backend: Backend, delays: &[Duration]) -> Duration {
    let lp = new_loop(backend);
    reset_counter();
    let start = Instant::now();
    let handles: Vec<TimerHandle> = delays
        .iter()
        .map(|&d| {
            lp.call_later(d, bump_unit)
                .expect("call_later on an open loop")
        })
        .collect();
    for h in &handles {
        h.cancel();
    }
    drop(handles);
    // One iteration: it compacts the heap (more than half is cancelled),
    // then runs `stop`.
    let stopper = lp.clone();
    lp.call_soon(move || stopper.stop())
        .expect("call_soon on an open loop");
    lp.run_forever().expect("run_forever");
    let elapsed = start.elapsed();
    assert_eq!(
        lp.scheduled_timers(),
        (0, 0),
        "the timer heap should be empty after one iteration"
    );
    check_count(0, "cancelled call_later timers");
    close_loop(&lp);
    elapsed
}

fn tk_timers_cancel(delays: &[Duration]) -> Duration {
    let rt = tokio_rt();
    reset_counter();
    let start = Instant::now();
    // `unconstrained`: a `Sleep` polled with no coop budget left returns
    // Pending without registering, which would skip the work measured.
    rt.block_on(tokio::task::unconstrained(async {
        let mut sleeps = Vec::with_capacity(delays.len());
        std::future::poll_fn(|cx| {
            for &d in delays {
                let mut sleep = Box::pin(tokio::time::sleep(d));
                // A tokio sleep joins the timer wheel on its first poll.
                let _ = sleep.as_mut().poll(cx);
                sleeps.push(sleep);
            }
            Poll::Ready(())
        })
        .await;
        // Dropping a registered sleep removes it from the wheel.
        drop(sleeps);
    }));
    let elapsed = start.elapsed();
    check_count(0, "dropped tokio sleeps");
    drop(rt);
    elapsed
}

fn bench_timers_cancel(n: u64, runs: usize, sides: &[Side]) -> Vec<Samples> {
    let delays = spread_delays(n, TIMER_SPAN);
    measure(runs, sides, |side| match side {
        Side::Ringloop(b) => rl_timers_cancel(b, &delays),
        Side::Tokio => tk_timers_cancel(&delays),
    })
}

// ----- 4. future set/await -----------------------------------------------

fn rl_future(backend: Backend, n: u64) -> Duration {
    let lp = new_loop(backend);
    let task_lp = lp.clone();
    let start = Instant::now();
    let sum = lp
        .run_until_complete(async move {
            let mut sum = 0u64;
            for i in 0..n {
                let fut = task_lp.create_future::<u64>();
                let setter = fut.clone();
                task_lp
                    .call_soon(move || {
                        setter
                            .set_result(i)
                            .expect("a fresh future accepts its result");
                    })
                    .expect("call_soon on an open loop");
                sum += fut.await.expect("the callback sets a result");
            }
            sum
        })
        .expect("run_until_complete");
    let elapsed = start.elapsed();
    assert_eq!(sum, n * n.saturating_sub(1) / 2, "future results lost");
    close_loop(&lp);
    elapsed
}

fn tk_future(n: u64) -> Duration {
    let rt = tokio_rt();
    let start = Instant::now();
    let sum = rt.block_on(async move {
        tokio::spawn(async move {
            let mut sum = 0u64;
            for i in 0..n {
                let (tx, rx) = oneshot::channel::<u64>();
                drop(tokio::spawn(async move {
                    // The receiver is awaited right below; it cannot be gone.
                    let _ = tx.send(i);
                }));
                sum += rx.await.expect("the setter task sends");
            }
            sum
        })
        .await
        .expect("the awaiting task completes")
    });
    let elapsed = start.elapsed();
    assert_eq!(sum, n * n.saturating_sub(1) / 2, "oneshot results lost");
    drop(rt);
    elapsed
}

fn bench_future(n: u64, runs: usize, sides: &[Side]) -> Vec<Samples> {
    measure(runs, sides, |side| match side {
        Side::Ringloop(b) => rl_future(b, n),
        Side::Tokio => tk_future(n),
    })
}

// ----- 5. task spawn -------------------------------------------------------

fn rl_spawn(backend: Backend, n: u64) -> Duration {
    let lp = new_loop(backend);
    let task_lp = lp.clone();
    let start = Instant::now();
    let finished = lp
        .run_until_complete(async move {
            let tasks: Vec<Task<()>> = (0..n)
                .map(|_| {
                    task_lp
                        .create_task(async {})
                        .expect("create_task on an open loop")
                })
                .collect();
            let mut finished = 0u64;
            for t in tasks {
                t.await.expect("a trivial task completes");
                finished += 1;
            }
            finished
        })
        .expect("run_until_complete");
    let elapsed = start.elapsed();
    assert_eq!(finished, n, "tasks lost");
    close_loop(&lp);
    elapsed
}

fn tk_spawn(n: u64) -> Duration {
    let rt = tokio_rt();
    let start = Instant::now();
    let finished = rt.block_on(async move {
        tokio::spawn(async move {
            let handles: Vec<_> = (0..n).map(|_| tokio::spawn(async {})).collect();
            let mut finished = 0u64;
            for h in handles {
                h.await.expect("a trivial task completes");
                finished += 1;
            }
            finished
        })
        .await
        .expect("the spawning task completes")
    });
    let elapsed = start.elapsed();
    assert_eq!(finished, n, "tasks lost");
    drop(rt);
    elapsed
}

fn bench_spawn(n: u64, runs: usize, sides: &[Side]) -> Vec<Samples> {
    measure(runs, sides, |side| match side {
        Side::Ringloop(b) => rl_spawn(b, n),
        Side::Tokio => tk_spawn(n),
    })
}

// ----- the table ------------------------------------------------------------

/// One benchmark: its name (what filters match), full size, what one
/// operation is on each side, and the function running the given sides
/// (returning their samples in the same order).
struct Bench {
    name: &'static str,
    full_n: u64,
    ringloop: &'static str,
    tokio: &'static str,
    run: fn(u64, usize, &[Side]) -> Vec<Samples>,
}

const BENCHES: &[Bench] = &[
    Bench {
        name: "call_soon",
        full_n: 10_000_000,
        ringloop: "call_soon(counter += 1) in batches of 10k, run_forever",
        tokio: "tokio::spawn(async { counter += 1 }) in batches of 10k (JoinHandle dropped)",
        run: bench_call_soon,
    },
    Bench {
        name: "timers",
        full_n: 1_000_000,
        ringloop: "call_later over 0..10 ms, run until all fired (schedule + fire)",
        tokio: "spawned tasks each sleep(0..10 ms), until all woke (schedule + fire)",
        run: bench_timers,
    },
    Bench {
        name: "timers_cancel",
        full_n: 1_000_000,
        ringloop: "call_later, cancel all, one iteration compacts the heap",
        tokio: "sleep polled once (joins the wheel), then dropped (leaves it)",
        run: bench_timers_cancel,
    },
    Bench {
        name: "future",
        full_n: 1_000_000,
        ringloop: "task: create_future, call_soon(set_result), await; N times",
        tokio: "task: oneshot::channel, spawn(send), await; N times",
        run: bench_future,
    },
    Bench {
        name: "spawn",
        full_n: 1_000_000,
        ringloop: "task: create_task(async {}) x N, then await each",
        tokio: "task: tokio::spawn(async {}) x N, then await each JoinHandle",
        run: bench_spawn,
    },
];

/// A benchmark's result, kept for the summary below the table. A
/// ringloop backend that could not start has no samples (`None`).
struct Row {
    name: &'static str,
    n: u64,
    full: bool,
    uring: Option<Samples>,
    epoll: Option<Samples>,
    tokio: Samples,
}

impl Row {
    /// The samples of ringloop on `backend`, if it ran.
    fn ringloop(&self, backend: Backend) -> Option<&Samples> {
        match backend {
            Backend::Uring => self.uring.as_ref(),
            Backend::Epoll => self.epoll.as_ref(),
            _ => None,
        }
    }
}

/// `best / median` of a side, or `n/a`.
fn best_median(samples: Option<&Samples>) -> String {
    match samples {
        Some(s) => format!("{} / {}", Secs(s.best()), Secs(s.median())),
        None => "n/a".to_string(),
    }
}

fn print_header() {
    println!(
        "{:<14} {:>10} {:>12} {:>12} {:>12} {:>11} {:>11} {:>19} {:>19} {:>19}",
        "benchmark",
        "n",
        "uring ops/s",
        "epoll ops/s",
        "tokio ops/s",
        "uring/tokio",
        "epoll/uring",
        "uring best / median",
        "epoll best / median",
        "tokio best / median"
    );
    println!("{}", "-".repeat(168));
}

fn print_row(row: &Row) {
    let rate = |s: Option<&Samples>| s.map(|s| ops_per_sec(row.n, s.best()));
    let uring = rate(row.uring.as_ref());
    let epoll = rate(row.epoll.as_ref());
    let tokio = Some(ops_per_sec(row.n, row.tokio.best()));
    let show = |r: Option<f64>| r.map_or("n/a".to_string(), |r| Rate(r).to_string());
    println!(
        "{:<14} {:>10} {:>12} {:>12} {:>12} {:>11} {:>11} {:>19} {:>19} {:>19}",
        row.name,
        row.n,
        show(uring),
        show(epoll),
        show(tokio),
        Ratio(uring, tokio),
        Ratio(epoll, uring),
        best_median(row.uring.as_ref()),
        best_median(row.epoll.as_ref()),
        best_median(Some(&row.tokio)),
    );
}

fn print_targets(rows: &[Row], backends: &[Backend]) {
    let mut lines = Vec::new();
    for row in rows.iter().filter(|r| r.full) {
        for &backend in backends {
            let Some(samples) = row.ringloop(backend) else {
                continue;
            };
            let label = backend_label(backend);
            match row.name {
                "call_soon" => {
                    let rate = ops_per_sec(row.n, samples.best());
                    lines.push(format!(
                        "call_soon >= {} ({label}): {} -> {}",
                        Rate(CALL_SOON_TARGET),
                        Rate(rate),
                        verdict(rate >= CALL_SOON_TARGET)
                    ));
                }
                "timers" => {
                    let best = samples.best();
                    lines.push(format!(
                        "timers (1 M schedule + fire) <= {} ({label}): {} -> {}",
                        Secs(TIMERS_TARGET),
                        Secs(best),
                        verdict(best <= TIMERS_TARGET)
                    ));
                }
                _ => {}
            }
        }
    }
    if !lines.is_empty() {
        println!();
        println!("targets (ringloop, best run):");
        for l in lines {
            println!("  {l}");
        }
    }
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "NOT met"
    }
}

fn print_legend(rows: &[Row]) {
    println!();
    println!("what is compared (one op = one callback / timer / future / task):");
    for row in rows {
        if let Some(b) = BENCHES.iter().find(|b| b.name == row.name) {
            println!("  {:<14} ringloop: {}", b.name, b.ringloop);
            println!("  {:<14} tokio:    {}", "", b.tokio);
        }
    }
}

fn main() -> ExitCode {
    let raw = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned());
    let args = match Args::parse(raw) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("micro: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if args.help {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    for flag in &args.ignored {
        eprintln!("micro: ignoring unknown flag {flag}");
    }
    if args.list {
        for b in BENCHES {
            println!("{}: bench", b.name);
        }
        return ExitCode::SUCCESS;
    }

    // io_uring may be unavailable (old kernel, seccomp): say so plainly
    // and measure the backends that do start.
    let mut backends = Vec::new();
    for b in args.backends() {
        match probe_backend(b) {
            Ok(()) => backends.push(b),
            Err(e) => eprintln!("micro: skipping the {b} backend (its columns read n/a): {e}"),
        }
    }
    if backends.is_empty() {
        eprintln!("micro: no ringloop backend can start here");
        return ExitCode::FAILURE;
    }
    let mut sides: Vec<Side> = backends.iter().map(|&b| Side::Ringloop(b)).collect();
    sides.push(Side::Tokio);

    let selected: Vec<&Bench> = BENCHES.iter().filter(|b| args.selects(b.name)).collect();
    if selected.is_empty() {
        println!("no benchmark matches {:?} (try --list)", args.filters);
        return ExitCode::SUCCESS;
    }

    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "ringloop micro benchmarks{}: ringloop on {}, tokio current_thread runtime \
         (time driver), {cpus} CPUs",
        if args.quick { " (--quick)" } else { "" },
        backends
            .iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(" and "),
    );
    println!(
        "1 warm-up + {} timed run{} per side, in turn; ops/s from the best run; \
         uring/tokio > 1: ringloop (io_uring) faster than tokio; epoll/uring ~ 1 expected \
         (almost no I/O here)",
        args.runs,
        if args.runs == 1 { "" } else { "s" },
    );
    println!();
    print_header();

    let mut rows = Vec::new();
    for b in selected {
        let n = args.size(b.full_n);
        let mut samples = (b.run)(n, args.runs, &sides).into_iter();
        let mut take = |present: bool| if present { samples.next() } else { None };
        let uring = take(backends.contains(&Backend::Uring));
        let epoll = take(backends.contains(&Backend::Epoll));
        let tokio = take(true).unwrap_or_default();
        let row = Row {
            name: b.name,
            n,
            full: n == b.full_n,
            uring,
            epoll,
            tokio,
        };
        print_row(&row);
        rows.push(row);
    }
    print_targets(&rows, &backends);
    print_legend(&rows);
    ExitCode::SUCCESS
}
