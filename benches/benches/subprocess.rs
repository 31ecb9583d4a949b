//! Subprocess spawn + wait per second: ringloop (on each backend) beside
//! `tokio::process`, measured in the same process and run.
//!
//! ```sh
//! cargo bench -p ringloop-benches --bench subprocess               # ~1 min
//! cargo bench -p ringloop-benches --bench subprocess -- --quick    # a few seconds
//! cargo bench -p ringloop-benches --bench subprocess -- --backend uring
//! ```
//!
//! | name             | ringloop                                                  | tokio (current_thread, `enable_all`)        |
//! |------------------|-----------------------------------------------------------|---------------------------------------------|
//! | `spawn_wait`     | `subprocess_exec("/bin/true")`, stdio `Null`, then `wait` | `Command::new("/bin/true")`, null stdio, `status()` |
//! | `spawn_wait_fds` | the same with `close_fds(false)` (tokio's behaviour)      | the same                                    |
//! | `spawn_wait_x16` | as `spawn_wait`, 16 children in flight at a time          | the same, 16 spawned tasks                  |
//! | `spawn_wait_x16_fds` | as `spawn_wait_x16` with `close_fds(false)`           | the same                                    |
//!
//! Every spawn is a real `fork`/`exec` (or `posix_spawn`) of `/bin/true`:
//! the kernel's process creation dominates, so both sides are expected
//! close to each other. ringloop's default `close_fds(true)` (Python's
//! default) needs a `pre_exec` hook, which makes the standard library fork
//! instead of `posix_spawn`; `spawn_wait_fds` shows that cost apart.
//! ringloop reaps by pidfd (`IORING_OP_WAITID` on io_uring where the
//! kernel has it, pidfd readiness on epoll); tokio by SIGCHLD (or pidfd,
//! depending on its version).

use std::io;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ringloop::process::{Stdio, SubprocessOptions};
use ringloop::{Backend, BaseProtocol, EventLoop, SubprocessProtocol, SubprocessTransport};
use ringloop_benches::{measure, probe_backend, Args, Rate, Ratio, Samples, Side, USAGE};

const PROGRAM: &str = "/bin/true";

/// Children in flight at once in `spawn_wait_x16`.
const WIDTH: usize = 16;

/// A protocol that ignores everything.
struct Quiet;

impl BaseProtocol for Quiet {
    type Transport = SubprocessTransport;
}

impl SubprocessProtocol for Quiet {}

fn options(close_fds: bool) -> SubprocessOptions {
    SubprocessOptions::default()
        .stdin(Stdio::Null)
        .stdout(Stdio::Null)
        .stderr(Stdio::Null)
        .close_fds(close_fds)
}

/// One spawn + wait on ringloop; panics if `/bin/true` fails.
async fn rl_one(lp: EventLoop, close_fds: bool) {
    let (t, _) = lp
        .subprocess_exec(|| Quiet, PROGRAM, Vec::<&str>::new(), options(close_fds))
        .await
        .expect("spawn /bin/true");
    assert_eq!(t.wait().await, 0);
}

/// `n` spawns on ringloop, `width` at a time.
fn rl_run(backend: Backend, n: u64, width: usize, close_fds: bool) -> Duration {
    let lp = EventLoop::builder()
        .backend(backend)
        .build()
        .expect("build the loop");
    let l = lp.clone();
    let start = Instant::now();
    lp.run_until_complete(async move {
        let mut left = n;
        while left > 0 {
            let batch = (width as u64).min(left);
            let mut tasks = Vec::new();
            for _ in 0..batch {
                tasks.push(l.create_task(rl_one(l.clone(), close_fds)).expect("task"));
            }
            for t in tasks {
                t.await.expect("task");
            }
            left -= batch;
        }
    })
    .expect("run");
    let took = start.elapsed();
    lp.close().expect("close");
    took
}

async fn tk_one() {
    let status = tokio::process::Command::new(PROGRAM)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .expect("spawn /bin/true");
    assert!(status.success());
}

/// `n` spawns on tokio, `width` at a time.
fn tk_run(n: u64, width: usize) -> Duration {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let start = Instant::now();
    rt.block_on(async move {
        let mut left = n;
        while left > 0 {
            let batch = (width as u64).min(left);
            let tasks: Vec<_> = (0..batch).map(|_| tokio::spawn(tk_one())).collect();
            for t in tasks {
                t.await.expect("task");
            }
            left -= batch;
        }
    });
    start.elapsed()
}

struct Bench {
    name: &'static str,
    width: usize,
    close_fds: bool,
}

const BENCHES: &[Bench] = &[
    Bench {
        name: "spawn_wait",
        width: 1,
        close_fds: true,
    },
    Bench {
        name: "spawn_wait_fds",
        width: 1,
        close_fds: false,
    },
    Bench {
        name: "spawn_wait_x16",
        width: WIDTH,
        close_fds: true,
    },
    Bench {
        name: "spawn_wait_x16_fds",
        width: WIDTH,
        close_fds: false,
    },
];

/// Spawns per run: 1,000 (100 with `--quick`).
const FULL_N: u64 = 1000;

fn run_bench(b: &Bench, n: u64, runs: usize, sides: &[Side]) -> Vec<Samples> {
    measure(runs, sides, |side| match side {
        Side::Ringloop(backend) => rl_run(backend, n, b.width, b.close_fds),
        Side::Tokio => tk_run(n, b.width),
    })
}

fn cell(s: Option<&Samples>, n: u64) -> String {
    match s {
        Some(s) => format!("{}", Rate(ringloop_benches::ops_per_sec(n, s.best()))),
        None => "n/a".into(),
    }
}

fn rate(s: Option<&Samples>, n: u64) -> Option<f64> {
    s.map(|s| ringloop_benches::ops_per_sec(n, s.best()))
}

fn main() -> ExitCode {
    let raw = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned());
    let args = match Args::parse(raw) {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "subprocess: {e}\n\n{}",
                USAGE.replace("micro", "subprocess")
            );
            return ExitCode::from(2);
        }
    };
    if args.help {
        println!("{}", USAGE.replace("micro", "subprocess"));
        return ExitCode::SUCCESS;
    }
    if args.list {
        for b in BENCHES {
            println!("{}: bench", b.name);
        }
        return ExitCode::SUCCESS;
    }
    if !std::path::Path::new(PROGRAM).exists() {
        eprintln!("subprocess: {PROGRAM} is missing");
        return ExitCode::FAILURE;
    }
    let mut backends = Vec::new();
    for b in args.backends() {
        match probe_backend(b) {
            Ok(()) => backends.push(b),
            Err(e) => eprintln!("subprocess: skipping the {b} backend: {e}"),
        }
    }
    let mut sides: Vec<Side> = backends.iter().map(|&b| Side::Ringloop(b)).collect();
    sides.push(Side::Tokio);
    let n = if args.quick { FULL_N / 10 } else { FULL_N };
    let cpus = std::thread::available_parallelism().map_or(0, |c| c.get());
    println!(
        "ringloop subprocess benchmark{}: {n} spawns of {PROGRAM} per run, 1 warm-up + {} \
         timed runs per side, best run; {cpus} CPUs",
        if args.quick { " (--quick)" } else { "" },
        args.runs
    );
    println!();
    println!(
        "{:<16} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "name", "uring", "epoll", "tokio", "uring/tokio", "epoll/tokio"
    );
    for b in BENCHES.iter().filter(|b| args.selects(b.name)) {
        let samples = run_bench(b, n, args.runs, &sides);
        let find = |backend| {
            sides
                .iter()
                .position(|s| *s == Side::Ringloop(backend))
                .map(|i| &samples[i])
        };
        let (uring, epoll) = (find(Backend::Uring), find(Backend::Epoll));
        let tokio = samples.last();
        println!(
            "{:<16} {:>12} {:>12} {:>12} {:>12} {:>12}",
            b.name,
            cell(uring, n),
            cell(epoll, n),
            cell(tokio, n),
            Ratio(rate(uring, n), rate(tokio, n)).to_string(),
            Ratio(rate(epoll, n), rate(tokio, n)).to_string(),
        );
    }
    let _ = io::Write::flush(&mut io::stdout());
    ExitCode::SUCCESS
}
