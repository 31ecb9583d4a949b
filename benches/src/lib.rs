//! Shared helpers for the benchmarks: command-line parsing, a tiny
//! measurement harness, a deterministic random source and number
//! formatting (this file), plus thread pinning and CPU-time accounting
//! ([`os`]), and the echo benchmark's parts: its settings ([`echo`]), the
//! echo servers it compares ([`servers`]), the processes they run in
//! ([`child`]), the load client ([`client`]) and its per-run ratios
//! ([`paired`]).
//!
//! The benchmarks use no benchmarking framework. A micro benchmark is one
//! closure that runs the work on a given [`Side`]: ringloop on one of its
//! backends, or the nearest tokio equivalent. [`measure`] warms every side
//! up once, then times them in turn, round after round (so slow drifts of
//! a noisy machine hit all sides alike), and keeps every sample. Results
//! are reported from the best sample, with the median beside it.

pub mod child;
pub mod client;
pub mod echo;
pub mod os;
pub mod paired;
pub mod servers;

use std::fmt;
use std::time::Duration;

use ringloop::Backend;

/// Samples taken per side when `--runs` is not given.
pub const DEFAULT_RUNS: usize = 5;

/// Samples taken per side in `--quick` mode when `--runs` is not given.
pub const QUICK_RUNS: usize = 2;

/// In `--quick` mode every benchmark's size is divided by this.
pub const QUICK_DIVISOR: u64 = 100;

/// What the command line asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Args {
    /// Smaller sizes and fewer runs: a smoke test, not a measurement.
    pub quick: bool,
    /// Print the benchmark names and exit.
    pub list: bool,
    /// Print the usage and exit.
    pub help: bool,
    /// Timed samples per side (after one warm-up run).
    pub runs: usize,
    /// Substrings; a benchmark runs if its name contains any of them (all
    /// run when empty).
    pub filters: Vec<String>,
    /// Flags that were not understood and are ignored (reported on
    /// stderr so typos do not go unnoticed).
    pub ignored: Vec<String>,
    /// `--backend`: measure ringloop on this backend only (default: on
    /// both, [`Backend::Uring`] and [`Backend::Epoll`]).
    pub backend: Option<Backend>,
}

/// The usage text printed for `--help` and for invalid arguments.
pub const USAGE: &str = "\
usage: cargo bench -p ringloop-benches --bench micro -- [OPTIONS] [FILTER...]

Runs each benchmark on ringloop (io_uring backend, then epoll backend) and
on its nearest tokio (current_thread) equivalent, and prints ops/s for all
three and the ratios io_uring / tokio and epoll / io_uring.

  FILTER        run only benchmarks whose name contains FILTER
  --quick       sizes divided by 100 and 2 runs: a smoke test
  --runs N      timed runs per side (default 5; 2 with --quick)
  --backend B   only this ringloop backend (uring or epoll; default both)
  --list        list the benchmarks and exit
  --help        this text

`--bench` (passed by `cargo bench`) and other unknown flags are ignored.";

impl Args {
    /// Parses the arguments that follow the program name.
    ///
    /// Errors (a message meant for the user) only for a malformed
    /// `--runs` or `--backend`; unknown flags are collected in
    /// [`Args::ignored`].
    pub fn parse<I, S>(args: I) -> Result<Args, String>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut out = Args {
            quick: false,
            list: false,
            help: false,
            runs: 0,
            filters: Vec::new(),
            ignored: Vec::new(),
            backend: None,
        };
        let mut runs: Option<usize> = None;
        let mut it = args.into_iter().map(Into::into);
        while let Some(arg) = it.next() {
            match arg.as_str() {
                // cargo bench passes this to every harness = false target.
                "--bench" => {}
                "--quick" => out.quick = true,
                "--list" => out.list = true,
                "-h" | "--help" => out.help = true,
                "--runs" => {
                    let value = it
                        .next()
                        .ok_or_else(|| "--runs needs a value".to_string())?;
                    runs = Some(parse_runs(&value)?);
                }
                "--backend" => {
                    let value = it
                        .next()
                        .ok_or_else(|| "--backend needs a value".to_string())?;
                    out.backend = Some(parse_backend(&value)?);
                }
                other => {
                    if let Some(value) = other.strip_prefix("--runs=") {
                        runs = Some(parse_runs(value)?);
                    } else if let Some(value) = other.strip_prefix("--backend=") {
                        out.backend = Some(parse_backend(value)?);
                    } else if other.starts_with('-') {
                        out.ignored.push(other.to_string());
                    } else {
                        out.filters.push(other.to_string());
                    }
                }
            }
        }
        out.runs = runs.unwrap_or(if out.quick { QUICK_RUNS } else { DEFAULT_RUNS });
        Ok(out)
    }

    /// True if the benchmark called `name` should run.
    pub fn selects(&self, name: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|f| name.contains(f.as_str()))
    }

    /// The ringloop backends to measure: the one `--backend` named, or
    /// both.
    pub fn backends(&self) -> Vec<Backend> {
        match self.backend {
            Some(b) => vec![b],
            None => BACKENDS.to_vec(),
        }
    }

    /// `full` in a normal run, `full / QUICK_DIVISOR` (at least 1) in
    /// `--quick` mode.
    pub fn size(&self, full: u64) -> u64 {
        if self.quick {
            (full / QUICK_DIVISOR).max(1)
        } else {
            full
        }
    }
}

/// The ringloop backends, in the order the benchmarks run and print them.
pub const BACKENDS: [Backend; 2] = [Backend::Uring, Backend::Epoll];

/// A short column label for a backend: `uring` or `epoll`.
pub fn backend_label(b: Backend) -> &'static str {
    match b {
        Backend::Uring => "uring",
        Backend::Epoll => "epoll",
        _ => "other",
    }
}

/// Parses `uring` / `io_uring` / `epoll` (a message meant for the user
/// otherwise).
pub fn parse_backend(value: &str) -> Result<Backend, String> {
    value
        .parse::<Backend>()
        .map_err(|e| format!("--backend: {e}"))
}

/// Probes whether a ringloop loop can be built on `backend` here (io_uring
/// may be blocked by seccomp or missing from an old kernel): the loop is
/// built and closed at once. The error is a message naming the cause.
pub fn probe_backend(backend: Backend) -> Result<(), String> {
    let lp = ringloop::EventLoop::builder()
        .backend(backend)
        .build()
        .map_err(|e| e.to_string())?;
    lp.close()
        .map_err(|e| format!("closing the probe loop: {e}"))
}

pub(crate) fn parse_runs(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "--runs expects a whole number of at least 1, got {value:?}"
        )),
    }
}

/// The timed samples of one side of a benchmark.
#[derive(Clone, Debug, Default)]
pub struct Samples {
    times: Vec<Duration>,
}

impl Samples {
    /// Adds one sample.
    pub fn push(&mut self, d: Duration) {
        self.times.push(d);
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.times.len()
    }

    /// True when there is no sample.
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// The fastest sample (zero when there is none).
    pub fn best(&self) -> Duration {
        self.times.iter().copied().min().unwrap_or_default()
    }

    /// The median sample (the lower middle one for an even count; zero
    /// when there is none).
    pub fn median(&self) -> Duration {
        let mut sorted = self.times.clone();
        sorted.sort_unstable();
        match sorted.len() {
            0 => Duration::ZERO,
            n => sorted[(n - 1) / 2],
        }
    }
}

/// One side of a micro benchmark: ringloop on a backend, or tokio.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// ringloop, with its loop built on this backend.
    Ringloop(Backend),
    /// The nearest tokio (current_thread) equivalent.
    Tokio,
}

/// Runs every side once to warm up (caches, allocator, page faults), then
/// `runs` rounds in which each side runs once, in the order given, and
/// returns the timed samples of each side (same order as `sides`). `run`
/// times its own work, so setup and teardown (building and closing the
/// loop or runtime) stay outside.
pub fn measure(runs: usize, sides: &[Side], mut run: impl FnMut(Side) -> Duration) -> Vec<Samples> {
    for &side in sides {
        let _ = run(side);
    }
    let mut samples = vec![Samples::default(); sides.len()];
    for _ in 0..runs {
        for (i, &side) in sides.iter().enumerate() {
            samples[i].push(run(side));
        }
    }
    samples
}

/// Operations per second for `n` operations taking `d` (infinite for a
/// zero duration, which only a broken clock produces).
pub fn ops_per_sec(n: u64, d: Duration) -> f64 {
    let secs = d.as_secs_f64();
    if secs > 0.0 {
        n as f64 / secs
    } else {
        f64::INFINITY
    }
}

/// A rate with an SI suffix, e.g. `23.41 M/s`.
pub struct Rate(pub f64);

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        let s = if !r.is_finite() {
            "inf".to_string()
        } else if r >= 1e9 {
            format!("{:.2} G/s", r / 1e9)
        } else if r >= 1e6 {
            format!("{:.2} M/s", r / 1e6)
        } else if r >= 1e3 {
            format!("{:.2} k/s", r / 1e3)
        } else {
            format!("{r:.2} /s")
        };
        f.pad(&s)
    }
}

/// A duration in the most readable unit, e.g. `412.3 ms`.
pub struct Secs(pub Duration);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_secs_f64();
        let text = if s >= 1.0 {
            format!("{s:.3} s")
        } else if s >= 1e-3 {
            format!("{:.1} ms", s * 1e3)
        } else {
            format!("{:.1} us", s * 1e6)
        };
        f.pad(&text)
    }
}

/// A ratio `a / b` printed with two decimals, or `n/a` when either side is
/// missing (a backend that could not start) or `b` is zero.
pub struct Ratio(pub Option<f64>, pub Option<f64>);

impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0, self.1) {
            (Some(a), Some(b)) if b != 0.0 && a.is_finite() && b.is_finite() => {
                f.pad(&format!("{:.2}", a / b))
            }
            _ => f.pad("n/a"),
        }
    }
}

/// A small deterministic pseudo-random source (xorshift64*), so both
/// sides of a benchmark get the same "random" timer delays without a
/// dependency.
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator from `seed` (zero is replaced, as xorshift needs a
    /// non-zero state).
    pub fn new(seed: u64) -> Self {
        XorShift(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next 64 pseudo-random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..bound` (`0` when `bound` is zero); the modulo bias
    /// is irrelevant for spreading timers.
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            0
        } else {
            self.next_u64() % bound
        }
    }
}

/// `n` delays spread uniformly (pseudo-randomly, always the same sequence)
/// over `0..span`.
pub fn spread_delays(n: u64, span: Duration) -> Vec<Duration> {
    let span_ns = u64::try_from(span.as_nanos()).unwrap_or(u64::MAX);
    let mut rng = XorShift::new(0x5EED);
    (0..n)
        .map(|_| Duration::from_nanos(rng.below(span_ns)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_bench_flag_is_ignored_silently() {
        let a = Args::parse(["--bench"]).expect("valid");
        assert!(a.filters.is_empty());
        assert!(a.ignored.is_empty());
        assert_eq!(a.runs, DEFAULT_RUNS);
        assert!(a.selects("call_soon"));
    }

    #[test]
    fn filters_quick_and_runs() {
        let a = Args::parse(["timers", "--quick", "--bench", "--runs", "3"]).expect("valid");
        assert!(a.quick);
        assert_eq!(a.runs, 3);
        assert_eq!(a.filters, vec!["timers".to_string()]);
        assert!(a.selects("timers"));
        assert!(a.selects("timers_cancel"));
        assert!(!a.selects("call_soon"));
        assert_eq!(a.size(1_000_000), 10_000);
        assert_eq!(a.size(5), 1);
    }

    #[test]
    fn quick_defaults_to_fewer_runs() {
        let a = Args::parse(["--quick"]).expect("valid");
        assert_eq!(a.runs, QUICK_RUNS);
        let a = Args::parse(["--runs=4", "--quick"]).expect("valid");
        assert_eq!(a.runs, 4);
    }

    #[test]
    fn unknown_flags_are_collected_not_fatal() {
        let a = Args::parse(["--nocapture", "spawn"]).expect("valid");
        assert_eq!(a.ignored, vec!["--nocapture".to_string()]);
        assert_eq!(a.filters, vec!["spawn".to_string()]);
    }

    #[test]
    fn bad_runs_is_an_error() {
        assert!(Args::parse(["--runs"]).is_err());
        assert!(Args::parse(["--runs", "0"]).is_err());
        assert!(Args::parse(["--runs=x"]).is_err());
    }

    #[test]
    fn backend_flag() {
        let a = Args::parse(["--backend", "epoll"]).expect("valid");
        assert_eq!(a.backends(), vec![Backend::Epoll]);
        let a = Args::parse(["--backend=io_uring"]).expect("valid");
        assert_eq!(a.backends(), vec![Backend::Uring]);
        let a = Args::parse(["--quick"]).expect("valid");
        assert_eq!(a.backends(), vec![Backend::Uring, Backend::Epoll]);
        assert!(Args::parse(["--backend", "kqueue"]).is_err());
        assert!(Args::parse(["--backend"]).is_err());
    }

    #[test]
    fn measure_warms_up_then_alternates() {
        let sides = [
            Side::Ringloop(Backend::Uring),
            Side::Ringloop(Backend::Epoll),
            Side::Tokio,
        ];
        let mut order = Vec::new();
        let samples = measure(2, &sides, |side| {
            order.push(side);
            Duration::from_millis(order.len() as u64)
        });
        // One warm-up round, then two timed rounds, each in side order.
        assert_eq!(order.len(), 9);
        assert_eq!(&order[..3], &sides);
        assert_eq!(&order[3..6], &sides);
        assert_eq!(&order[6..], &sides);
        assert_eq!(samples.len(), 3);
        assert!(samples.iter().all(|s| s.len() == 2));
        // The warm-up (calls 1..=3) is not kept.
        assert_eq!(samples[0].best(), Duration::from_millis(4));
        assert_eq!(samples[2].best(), Duration::from_millis(6));
    }

    #[test]
    fn samples_best_and_median() {
        let mut s = Samples::default();
        assert_eq!(s.best(), Duration::ZERO);
        assert_eq!(s.median(), Duration::ZERO);
        for ms in [5, 1, 4, 2] {
            s.push(Duration::from_millis(ms));
        }
        assert_eq!(s.len(), 4);
        assert_eq!(s.best(), Duration::from_millis(1));
        assert_eq!(s.median(), Duration::from_millis(2));
    }

    #[test]
    fn formatting() {
        assert_eq!(Rate(23_410_000.0).to_string(), "23.41 M/s");
        assert_eq!(Rate(950.0).to_string(), "950.00 /s");
        assert_eq!(Secs(Duration::from_millis(412)).to_string(), "412.0 ms");
        assert_eq!(Secs(Duration::from_secs(2)).to_string(), "2.000 s");
        assert_eq!(format!("{:>10}", Rate(1_500.0)), "  1.50 k/s");
        assert_eq!(Ratio(Some(3.0), Some(2.0)).to_string(), "1.50");
        assert_eq!(format!("{:>5}", Ratio(None, Some(2.0))), "  n/a");
        assert_eq!(Ratio(Some(1.0), Some(0.0)).to_string(), "n/a");
    }

    #[test]
    fn delays_are_deterministic_and_in_range() {
        let span = Duration::from_millis(10);
        let a = spread_delays(1000, span);
        let b = spread_delays(1000, span);
        assert_eq!(a, b);
        assert!(a.iter().all(|d| *d < span));
        // Spread, not constant.
        assert!(a.iter().any(|d| *d < span / 4));
        assert!(a.iter().any(|d| *d > span * 3 / 4));
    }
}
