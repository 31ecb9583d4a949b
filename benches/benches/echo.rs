//! The echo benchmark of issue 4: ringloop's echo servers beside tokio
//! (current_thread), a bare io_uring loop and a bare epoll loop, all in
//! one run.
//!
//! ```sh
//! cargo bench -p ringloop-benches --bench echo                # full matrix, 3 runs (~13 min)
//! cargo bench -p ringloop-benches --bench echo -- --quick     # smoke test (< 30 s)
//! cargo bench -p ringloop-benches --bench echo -- --help      # all options
//! ```
//!
//! Each server runs in a process of its own (this binary, started again
//! with `--serve <server>`; see `ringloop_benches::child`), pinned to the
//! first allowed CPU, so that the process's CPU time (`utime + stime`) is
//! exactly the server's. The client (`ringloop_benches::client`: one
//! thread, non-blocking sockets on epoll) runs in this process, pinned to
//! the second CPU. The whole matrix runs `--runs` times (3). Per run, per
//! connection count, every server gets a set of connections, then per
//! message size each phase below runs on every server in turn (the order
//! rotates each time), so that two servers compared were measured seconds
//! apart. Every figure is the median over the runs; every ratio is the
//! median of the per-run ratios (`ringloop_benches::paired`), which
//! cancels most of a noisy machine's slow drift; the targets show the
//! ratios' range over the runs where they are missed. The phases:
//!
//! 1. **pipelined**: `depth` messages in flight per connection: round
//!    trips/s, and server CPU per round trip;
//! 2. **paced**: a fixed offered rate (`--rate`, 50,000 round trips/s
//!    over all connections), below what the servers saturate at 100
//!    connections (cells where a server fell behind are marked): server
//!    CPU per round trip, **the headline figure** (what a request costs
//!    the server);
//! 3. at 1 connection, **ping-pong**: one message in flight, p50/p99 of
//!    the request→response time.
//!
//! Then, with a fresh process per server, the memory figure: RSS growth
//! over `--idle` (10,000) idle connections, each having echoed one
//! 64-byte message. Results are printed as markdown tables, followed by
//! the issue's targets, met or not. See `docs/benchmarks.md`.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ringloop::Backend;
use ringloop_benches::child::{child_main, ServerProcess, SERVE_FLAG};
use ringloop_benches::client::{Client, Mode, Phase, PhaseResult};
use ringloop_benches::echo::{size_label, EchoArgs, USAGE};
use ringloop_benches::os::{
    allowed_cpus, clock_ticks_per_sec, pin_current_thread, raise_nofile_limit, set_timer_slack,
};
use ringloop_benches::paired::Paired;
use ringloop_benches::probe_backend;
use ringloop_benches::servers::ServerKind;

/// The three load phases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Fig {
    Pipelined,
    Paced,
    PingPong,
}

/// Key of one measurement.
type Key = (Fig, usize, usize, ServerKind);

/// A paced phase that did less than this share of the offered round
/// trips is marked: the server (or the client) fell behind.
const ACHIEVED_MIN: f64 = 0.97;

/// The issue's tolerance on CPU per round trip against the bare loops.
const CPU_TOLERANCE: f64 = 1.05;

struct Memory {
    before: u64,
    after: u64,
    conns: usize,
}

impl Memory {
    fn per_conn(&self) -> f64 {
        (self.after as f64 - self.before as f64) / self.conns.max(1) as f64
    }
}

/// The runs of one measurement.
#[derive(Default)]
struct Cell {
    runs: Vec<PhaseResult>,
    /// The run each of `runs` came from (a failed run leaves a gap).
    run_ids: Vec<usize>,
    failed: bool,
}

impl Cell {
    fn push(&mut self, run: usize, r: PhaseResult) {
        self.runs.push(r);
        self.run_ids.push(run);
    }

    /// `(run, f(result))` for every run, for [`Paired::of`].
    fn by_run(&self, f: impl Fn(&PhaseResult) -> f64) -> Vec<(usize, f64)> {
        self.run_ids
            .iter()
            .copied()
            .zip(self.runs.iter().map(f))
            .collect()
    }

    /// The run whose `f` is the median of the runs (the lower middle one
    /// for an even count).
    fn median_run(&self, f: impl Fn(&PhaseResult) -> f64) -> Option<&PhaseResult> {
        let mut sorted: Vec<&PhaseResult> = self.runs.iter().collect();
        sorted.sort_by(|a, b| f(a).total_cmp(&f(b)));
        match sorted.len() {
            0 => None,
            n => Some(sorted[(n - 1) / 2]),
        }
    }

    /// The median of `f` over the runs.
    fn median(&self, f: impl Fn(&PhaseResult) -> f64) -> Option<f64> {
        self.median_run(&f).map(f)
    }
}

#[derive(Default)]
struct Results {
    load: HashMap<Key, Cell>,
    memory: HashMap<ServerKind, Result<Memory, String>>,
    failures: usize,
}

struct Placement {
    server: Option<usize>,
    note: String,
}

fn placement() -> Placement {
    match allowed_cpus() {
        Ok(cpus) if cpus.len() >= 2 => {
            let (s, c) = (cpus[0], cpus[1]);
            match pin_current_thread(c) {
                Ok(()) => Placement {
                    server: Some(s),
                    note: format!("servers pinned to CPU {s}, client to CPU {c}"),
                },
                Err(e) => Placement {
                    server: None,
                    note: format!("pinning failed ({e}): nothing pinned"),
                },
            }
        }
        Ok(cpus) => Placement {
            server: None,
            note: format!(
                "only {} CPU(s) allowed ({cpus:?}): server and client share it, unpinned",
                cpus.len()
            ),
        },
        Err(e) => Placement {
            server: None,
            note: format!("sched_getaffinity failed ({e}): nothing pinned"),
        },
    }
}

/// The phases of one message size at `conns` connections, in order.
fn phases(args: &EchoArgs, conns: usize, size: usize) -> Vec<(Fig, Phase)> {
    let phase = |mode, latency| Phase {
        mode,
        size,
        warmup: args.warmup,
        measure: args.measure,
        latency,
    };
    let mut out = vec![
        (
            Fig::Pipelined,
            phase(
                Mode::Pipelined {
                    depth: args.depth_for(conns, size),
                },
                false,
            ),
        ),
        (
            Fig::Paced,
            phase(
                Mode::Paced {
                    rate: args.rate,
                    tick: args.tick,
                },
                false,
            ),
        ),
    ];
    if conns == 1 {
        out.push((Fig::PingPong, phase(Mode::Pipelined { depth: 1 }, true)));
    }
    out
}

/// Replaces a server that misbehaved with a fresh process.
fn restart(procs: &mut [ServerProcess], i: usize, place: &Placement) {
    let kind = procs[i].kind();
    match ServerProcess::spawn(kind, place.server) {
        Ok(p) => procs[i] = p,
        Err(e) => eprintln!("echo: restarting {}: {e}", kind.name()),
    }
}

/// One run at one connection count: every server gets its own set of
/// `conns` connections, then each phase of each size runs on every
/// server in turn (in `order`), so that the figures two servers' ratio
/// divides were measured seconds apart, not minutes.
fn run_round(
    args: &EchoArgs,
    procs: &mut [ServerProcess],
    order: &[usize],
    place: &Placement,
    (run, conns): (usize, usize),
    results: &mut Results,
) {
    let mut clients: Vec<Option<Client>> = Vec::with_capacity(procs.len());
    for proc in procs.iter() {
        clients.push(match Client::connect(proc.port(), conns) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("echo: {} x {conns} connections: {e}", proc.kind().name());
                results.failures += 1;
                None
            }
        });
    }
    for &size in &args.sizes {
        for (fig, phase) in phases(args, conns, size) {
            for &i in order {
                let Some(client) = clients[i].as_mut() else {
                    continue;
                };
                let kind = procs[i].kind();
                let cell = results.load.entry((fig, size, conns, kind)).or_default();
                match client.run(&phase, &mut procs[i]) {
                    Ok(r) => cell.push(run, r),
                    Err(e) => {
                        eprintln!(
                            "echo: {} {fig:?} {} x {conns}: {e}",
                            kind.name(),
                            size_label(size)
                        );
                        cell.failed = true;
                        results.failures += 1;
                        // Its connections are in an unknown state: that
                        // server sits out the rest of this round, restarted.
                        clients[i] = None;
                        restart(procs, i, place);
                    }
                }
            }
        }
    }
    for (i, client) in clients.into_iter().enumerate() {
        if let Some(Err(e)) = client.map(Client::close) {
            eprintln!("echo: closing {} x {conns}: {e}", procs[i].kind().name());
        }
    }
}

fn run_load(args: &EchoArgs, servers: &[ServerKind], place: &Placement, results: &mut Results) {
    let mut procs: Vec<ServerProcess> = Vec::new();
    for &k in servers {
        match ServerProcess::spawn(k, place.server) {
            Ok(p) => procs.push(p),
            Err(e) => {
                eprintln!("echo: {e}");
                results.failures += 1;
            }
        }
    }
    let n = procs.len();
    let mut round = 0;
    for run in 0..args.runs {
        for &conns in &args.conns {
            round += 1;
            // Rotate the order, so no server always follows the same one
            // or always goes first.
            let order: Vec<usize> = (0..n).map(|j| (j + round) % n).collect();
            let started = Instant::now();
            run_round(args, &mut procs, &order, place, (run, conns), results);
            eprintln!(
                "echo: run {}/{}: {conns} connections done in {:.1} s",
                run + 1,
                args.runs,
                started.elapsed().as_secs_f64()
            );
        }
    }
    // Dropping the processes kills and reaps them.
}

fn run_memory(args: &EchoArgs, servers: &[ServerKind], place: &Placement, results: &mut Results) {
    for &k in servers {
        let r = (|| -> Result<Memory, String> {
            let proc = ServerProcess::spawn(k, place.server)?;
            std::thread::sleep(Duration::from_millis(50));
            let before = proc.rss()?;
            let client = Client::connect(proc.port(), args.idle)?;
            std::thread::sleep(Duration::from_millis(200));
            let after = proc.rss()?;
            client.close()?;
            Ok(Memory {
                before,
                after,
                conns: args.idle,
            })
        })();
        if let Err(e) = &r {
            eprintln!("echo: memory of {}: {e}", k.name());
            results.failures += 1;
        }
        results.memory.insert(k, r);
    }
}

// ----- tables --------------------------------------------------------------

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

fn fmt_us(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 100.0 {
        format!("{us:.0}")
    } else {
        format!("{us:.1}")
    }
}

fn row(cells: &[String]) -> String {
    format!("| {} |", cells.join(" | "))
}

/// Prints a table header; the columns from `numeric_from` up to (not
/// including) `text_from` are right-aligned.
fn header_cols(cells: &[String], numeric_from: usize, text_from: usize) {
    println!("{}", row(cells));
    let rule: Vec<String> = (0..cells.len())
        .map(|i| {
            if (numeric_from..text_from).contains(&i) {
                "---:"
            } else {
                "---"
            }
        })
        .map(str::to_string)
        .collect();
    println!("{}", row(&rule));
}

/// Prints a table header; the columns from `numeric_from` on are
/// right-aligned.
fn header(cells: &[String], numeric_from: usize) {
    header_cols(cells, numeric_from, cells.len());
}

/// The ratio columns `a / b` of a table.
struct RatioCol {
    a: ServerKind,
    b: ServerKind,
}

impl RatioCol {
    fn title(&self) -> String {
        format!("{}/{}", self.a.short(), self.b.short())
    }
}

fn ratio_cols(servers: &[ServerKind], pairs: &[(ServerKind, ServerKind)]) -> Vec<RatioCol> {
    pairs
        .iter()
        .filter(|(a, b)| servers.contains(a) && servers.contains(b))
        .map(|&(a, b)| RatioCol { a, b })
        .collect()
}

/// The per-run ratios of `f` between servers `a` and `b` in one cell.
fn paired(
    results: &Results,
    (fig, size, conns): (Fig, usize, usize),
    a: ServerKind,
    b: ServerKind,
    f: impl Fn(&PhaseResult) -> f64 + Copy,
) -> Option<Paired> {
    let a = results.load.get(&(fig, size, conns, a))?.by_run(f);
    let b = results.load.get(&(fig, size, conns, b))?.by_run(f);
    Paired::of(&a, &b)
}

/// One table over the (size, conns) cells of `fig`: `cell` renders a
/// server's runs (at least one); the ratio columns are the medians of the
/// per-run ratios of each of `values` (several are shown as `r1 / r2`).
fn print_cell_table(
    results: &Results,
    args: &EchoArgs,
    servers: &[ServerKind],
    fig: Fig,
    ratios: &[RatioCol],
    cell: impl Fn(&Cell) -> String,
    values: &[&dyn Fn(&PhaseResult) -> f64],
) {
    let mut head = vec!["size".to_string(), "conns".to_string()];
    head.extend(servers.iter().map(|k| k.short().to_string()));
    head.extend(ratios.iter().map(RatioCol::title));
    header(&head, 2);
    for &size in &args.sizes {
        for &conns in &args.conns {
            if fig == Fig::PingPong && conns != 1 {
                continue;
            }
            let get = |k: ServerKind| results.load.get(&(fig, size, conns, k));
            let mut cells = vec![size_label(size), conns.to_string()];
            for &k in servers {
                cells.push(match get(k) {
                    Some(c) if !c.runs.is_empty() => {
                        let failed = if c.failed { " (1 run failed)" } else { "" };
                        format!("{}{failed}", cell(c))
                    }
                    Some(_) => "failed".to_string(),
                    None => "n/a".to_string(),
                });
            }
            for rc in ratios {
                let parts: Vec<String> = values
                    .iter()
                    .map(|f| {
                        paired(results, (fig, size, conns), rc.a, rc.b, f)
                            .map_or("n/a".to_string(), |p| format!("{:.2}", p.median))
                    })
                    .collect();
                cells.push(parts.join(" / "));
            }
            println!("{}", row(&cells));
        }
    }
    println!();
}

/// p50 latency in seconds (0 when not recorded).
fn lat_p50(r: &PhaseResult) -> f64 {
    r.latency.map_or(0.0, |l| l.p50.as_secs_f64())
}

/// p99 latency in seconds (0 when not recorded).
fn lat_p99(r: &PhaseResult) -> f64 {
    r.latency.map_or(0.0, |l| l.p99.as_secs_f64())
}

fn print_tables(args: &EchoArgs, servers: &[ServerKind], results: &Results, ticks: u64) {
    use ServerKind::*;
    let cpu_pairs = [
        (ProtoUring, BareUring),
        (ProtoUring, Tokio),
        (ProtoEpoll, BareEpoll),
        (StreamsUring, BareUring),
        (StreamsUring, Tokio),
        (StreamsEpoll, BareEpoll),
    ];
    let tokio_pairs = [
        (ProtoUring, Tokio),
        (ProtoEpoll, Tokio),
        (StreamsUring, Tokio),
        (StreamsEpoll, Tokio),
        (BareUring, Tokio),
    ];
    if args.load {
        println!(
            "### Server CPU µs per round trip at a fixed offered rate of {} round trips/s (headline)\n",
            args.rate
        );
        println!(
            "(`*`: fewer than {:.0} % of the offered round trips were done: that server, or \
             the client, fell behind)\n",
            ACHIEVED_MIN * 100.0
        );
        print_cell_table(
            results,
            args,
            servers,
            Fig::Paced,
            &ratio_cols(servers, &cpu_pairs),
            |c| {
                let behind = c.runs.iter().any(|r| r.achieved() < ACHIEVED_MIN);
                let mark = if behind { "*" } else { "" };
                let v = c.median(PhaseResult::cpu_us_per_trip).unwrap_or(0.0);
                format!("{v:.2}{mark}")
            },
            &[&PhaseResult::cpu_us_per_trip],
        );

        println!("### Pipelined round trips/s (server CPU load, client CPU load)\n");
        print_cell_table(
            results,
            args,
            servers,
            Fig::Pipelined,
            &ratio_cols(servers, &tokio_pairs),
            |c| match c.median_run(PhaseResult::rate) {
                Some(r) => format!(
                    "{} ({:.0}%, {:.0}%)",
                    fmt_rate(r.rate()),
                    r.server_load() * 100.0,
                    r.client_load() * 100.0
                ),
                None => "n/a".to_string(),
            },
            &[&PhaseResult::rate],
        );

        println!("### Pipelined: server CPU µs per round trip\n");
        print_cell_table(
            results,
            args,
            servers,
            Fig::Pipelined,
            &ratio_cols(servers, &cpu_pairs),
            |c| {
                let v = c.median(PhaseResult::cpu_us_per_trip).unwrap_or(0.0);
                format!("{v:.2}")
            },
            &[&PhaseResult::cpu_us_per_trip],
        );

        if args.conns.contains(&1) {
            let lat_pairs = ratio_cols(servers, &tokio_pairs);
            println!(
                "### Ping-pong at 1 connection: latency p50 / p99 in µs (ratios: p50 / p99)\n"
            );
            print_cell_table(
                results,
                args,
                servers,
                Fig::PingPong,
                &lat_pairs,
                |c| {
                    let p50 = c.median(lat_p50).unwrap_or(0.0);
                    let p99 = c.median(lat_p99).unwrap_or(0.0);
                    format!(
                        "{} / {}",
                        fmt_us(Duration::from_secs_f64(p50)),
                        fmt_us(Duration::from_secs_f64(p99))
                    )
                },
                &[&lat_p50, &lat_p99],
            );
            println!(
                "### Ping-pong at 1 connection: round trips/s, server CPU µs per round trip\n"
            );
            print_cell_table(
                results,
                args,
                servers,
                Fig::PingPong,
                &[],
                |c| {
                    let rate = c.median(PhaseResult::rate).unwrap_or(0.0);
                    let cpu = c.median(PhaseResult::cpu_us_per_trip).unwrap_or(0.0);
                    format!("{} / {cpu:.1}", fmt_rate(rate))
                },
                &[],
            );
        }
        cross_check(results, ticks);
    }

    if args.idle > 0 {
        println!(
            "### Memory per idle connection (server RSS growth over {} idle connections)\n",
            args.idle
        );
        header(
            &[
                "server".to_string(),
                "RSS before".to_string(),
                "RSS after".to_string(),
                "bytes per connection".to_string(),
            ],
            1,
        );
        for &k in servers {
            match results.memory.get(&k) {
                Some(Ok(m)) => println!(
                    "{}",
                    row(&[
                        k.short().to_string(),
                        format!("{:.1} MiB", m.before as f64 / 1048576.0),
                        format!("{:.1} MiB", m.after as f64 / 1048576.0),
                        format!("{:.0}", m.per_conn()),
                    ])
                ),
                Some(Err(_)) => println!("{}", row(&[k.short().to_string(), "failed".into()])),
                None => {}
            }
        }
        println!();
    }
}

/// Warns where the `/proc` tick count and `getrusage` disagree by more
/// than the ticks' resolution allows.
fn cross_check(results: &Results, ticks: u64) {
    let mut worst: Option<(f64, String)> = None;
    let all = results
        .load
        .iter()
        .flat_map(|(key, cell)| cell.runs.iter().map(move |r| (key, r)));
    for ((fig, size, conns, k), r) in all {
        let a = r.server_cpu.as_secs_f64();
        let b = r.server_ticks as f64 / ticks.max(1) as f64;
        let slack = 2.0 / ticks.max(1) as f64 + 0.05 * a;
        if (a - b).abs() > slack {
            let what = format!(
                "{} {fig:?} {} x {conns}: getrusage {:.3} s, /proc {:.3} s",
                k.name(),
                size_label(*size),
                a,
                b
            );
            let d = (a - b).abs();
            if worst.as_ref().is_none_or(|(w, _)| d > *w) {
                worst = Some((d, what));
            }
        }
    }
    match worst {
        Some((_, what)) => println!(
            "Cross-check: the `/proc/<pid>/stat` ticks and `getrusage` disagree beyond the \
             tick resolution somewhere, worst: {what}.\n"
        ),
        None => println!(
            "Cross-check: the server CPU time from `/proc/<pid>/stat` (clock ticks) agrees with \
             `getrusage` (µs) within the tick resolution (±2 ticks + 5 %) in every phase.\n"
        ),
    }
}

// ----- targets -------------------------------------------------------------

/// Checks `a / b ≤ limit` (or `≥ limit` with `at_least`) over the cells,
/// on the median of the per-run ratios; prints one line with the worst
/// ratio and the failing cells, each with its range over the runs.
#[allow(clippy::too_many_arguments)]
fn check(
    title: &str,
    results: &Results,
    cells: &[(usize, usize)],
    fig: Fig,
    a: ServerKind,
    b: ServerKind,
    limit: f64,
    at_least: bool,
    f: &dyn Fn(&PhaseResult) -> f64,
) {
    let mut worst: Option<f64> = None;
    let mut missed = Vec::new();
    let mut measured = 0;
    for &(size, conns) in cells {
        let Some(p) = paired(results, (fig, size, conns), a, b, f) else {
            continue;
        };
        measured += 1;
        let r = p.median;
        let bad = if at_least { r < limit } else { r > limit };
        if bad {
            missed.push(format!("{} x {conns}: {}", size_label(size), p.describe()));
        }
        worst = Some(match worst {
            None => r,
            Some(w) if at_least => w.min(r),
            Some(w) => w.max(r),
        });
    }
    let verdict = match (measured, missed.is_empty()) {
        (0, _) => "not measured".to_string(),
        (_, true) => "**met**".to_string(),
        (_, false) => format!("**missed** at {}", missed.join(", ")),
    };
    println!(
        "| {title} | {} | {verdict} |",
        worst.map_or("n/a".to_string(), |w| format!("{w:.2}"))
    );
}

fn print_targets(args: &EchoArgs, servers: &[ServerKind], results: &Results) {
    use ServerKind::*;
    if !args.load {
        return;
    }
    let many: Vec<(usize, usize)> = args
        .sizes
        .iter()
        .flat_map(|&s| {
            args.conns
                .iter()
                .filter(|&&c| (10..=1000).contains(&c))
                .map(move |&c| (s, c))
        })
        .collect();
    let all: Vec<(usize, usize)> = args
        .sizes
        .iter()
        .flat_map(|&s| args.conns.iter().map(move |&c| (s, c)))
        .collect();
    let one: Vec<(usize, usize)> = args.sizes.iter().map(|&s| (s, 1)).collect();
    println!("### Targets (issue 4)\n");
    println!(
        "(ratios: the median of the per-run ratios; a missed cell shows their range over the \
         runs in brackets)\n"
    );
    header_cols(
        &[
            "target".to_string(),
            "worst ratio".to_string(),
            "verdict".to_string(),
        ],
        1,
        2,
    );
    let cpu = &PhaseResult::cpu_us_per_trip as &dyn Fn(&PhaseResult) -> f64;
    let rate = &PhaseResult::rate as &dyn Fn(&PhaseResult) -> f64;
    let p50 = &lat_p50 as &dyn Fn(&PhaseResult) -> f64;
    let p99 = &lat_p99 as &dyn Fn(&PhaseResult) -> f64;
    for (uring, epoll, style) in [
        (ProtoUring, ProtoEpoll, "proto"),
        (StreamsUring, StreamsEpoll, "streams"),
    ] {
        let has = |k| servers.contains(&k);
        if has(uring) && has(BareUring) {
            check(
                &format!("{style}-uring CPU/rt ≤ 1.05 × bare-uring (paced, 10–1000 conns)"),
                results,
                &many,
                Fig::Paced,
                uring,
                BareUring,
                CPU_TOLERANCE,
                false,
                cpu,
            );
        }
        if has(uring) && has(Tokio) {
            check(
                &format!("{style}-uring CPU/rt ≤ tokio (paced, 10–1000 conns)"),
                results,
                &many,
                Fig::Paced,
                uring,
                Tokio,
                1.0,
                false,
                cpu,
            );
        }
        if has(epoll) && has(BareEpoll) {
            check(
                &format!("{style}-epoll CPU/rt ≤ 1.05 × bare-epoll (paced, 10–1000 conns)"),
                results,
                &many,
                Fig::Paced,
                epoll,
                BareEpoll,
                CPU_TOLERANCE,
                false,
                cpu,
            );
        }
        for k in [uring, epoll] {
            if !has(k) || !has(Tokio) {
                continue;
            }
            check(
                &format!("{} pipelined rt/s ≥ tokio (all cells)", k.short()),
                results,
                &all,
                Fig::Pipelined,
                k,
                Tokio,
                1.0,
                true,
                rate,
            );
            if args.conns.contains(&1) {
                check(
                    &format!("{} p50 latency ≤ tokio (1 conn)", k.short()),
                    results,
                    &one,
                    Fig::PingPong,
                    k,
                    Tokio,
                    1.0,
                    false,
                    p50,
                );
                check(
                    &format!("{} p99 latency ≤ tokio (1 conn)", k.short()),
                    results,
                    &one,
                    Fig::PingPong,
                    k,
                    Tokio,
                    1.0,
                    false,
                    p99,
                );
            }
        }
    }
    println!();
}

fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if raw.first().map(String::as_str) == Some(SERVE_FLAG) {
        child_main(&raw);
    }
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
    let ticks = match clock_ticks_per_sec() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("echo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    let place = placement();
    let mut args = args;
    match raise_nofile_limit() {
        Ok(limit) => {
            let need = args.idle as u64 + 64;
            if limit < need {
                let idle = limit.saturating_sub(64) as usize;
                eprintln!(
                    "echo: RLIMIT_NOFILE is {limit}: the memory figure uses {idle} idle \
                     connections instead of {}",
                    args.idle
                );
                args.idle = idle;
            }
        }
        Err(e) => eprintln!("echo: raising RLIMIT_NOFILE: {e}"),
    }
    if let Err(e) = set_timer_slack(1) {
        eprintln!("echo: PR_SET_TIMERSLACK: {e} (paced sends may bunch up)");
    }

    let uring = probe_backend(Backend::Uring);
    let mut servers = Vec::new();
    let mut skipped = Vec::new();
    for &k in &args.servers {
        if k.backend() == Backend::Uring && uring.is_err() {
            let why = uring.as_ref().err().cloned().unwrap_or_default();
            skipped.push(format!("{}: io_uring unavailable: {why}", k.name()));
        } else {
            servers.push(k);
        }
    }
    for s in &skipped {
        eprintln!("echo: skipping {s}");
    }
    if servers.is_empty() {
        eprintln!("echo: no server can run here");
        return ExitCode::FAILURE;
    }

    println!(
        "## ringloop echo benchmark{}\n",
        if args.quick {
            " (--quick: smoke test, the numbers mean nothing)"
        } else {
            ""
        }
    );
    println!(
        "- servers: {}{}",
        servers
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", "),
        if skipped.is_empty() {
            String::new()
        } else {
            format!(" (skipped: {})", skipped.join("; "))
        }
    );
    println!(
        "- {}; each server in its own process; client: one thread, epoll",
        place.note
    );
    println!(
        "- sizes {}; connections {}; pipelined depth {} (at most {} MiB in flight); paced \
         rate {} rt/s{}; {:.2} s measured after {:.2} s warm-up per phase; {} run(s): figures are \
         medians over the runs, ratios are medians of the per-run ratios (each phase runs on \
         every server in turn); {} idle connections",
        args.sizes
            .iter()
            .map(|&s| size_label(s))
            .collect::<Vec<_>>()
            .join(", "),
        args.conns
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        args.depth,
        ringloop_benches::echo::MAX_INFLIGHT_BYTES >> 20,
        args.rate,
        if args.tick.is_zero() {
            " (each message sent when due)".to_string()
        } else {
            format!(" (released every {:?})", args.tick)
        },
        args.measure.as_secs_f64(),
        args.warmup.as_secs_f64(),
        args.runs,
        args.idle
    );
    println!(
        "- CPU time: server process utime+stime (getrusage in the server, cross-checked with \
         /proc/<pid>/stat at CLK_TCK {ticks})\n"
    );

    let mut results = Results::default();
    if args.load {
        run_load(&args, &servers, &place, &mut results);
    }
    if args.idle > 0 {
        run_memory(&args, &servers, &place, &mut results);
    }
    print_tables(&args, &servers, &results, ticks);
    print_targets(&args, &servers, &results);
    println!("(whole run: {:.1} s)", started.elapsed().as_secs_f64());
    if results.failures > 0 {
        eprintln!("echo: {} failure(s), see above", results.failures);
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
