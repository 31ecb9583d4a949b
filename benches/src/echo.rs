//! Settings of the echo benchmark (`benches/benches/echo.rs`) and their
//! command line.

use std::time::Duration;

use ringloop::Backend;

use crate::{parse_backend, parse_runs, BACKENDS};

/// Runs per backend and size when `--runs` is not given.
pub const DEFAULT_RUNS: usize = 3;
/// Connections when `--conns` is not given.
pub const DEFAULT_CONNS: usize = 100;
/// Messages in flight per connection when `--depth` is not given.
pub const DEFAULT_DEPTH: usize = 4;
/// Message sizes (bytes) when no `--size` is given, one table row each.
pub const DEFAULT_SIZES: [usize; 3] = [64, 1024, 16 * 1024];
/// Measured interval of one run when `--secs` is not given.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(2);
/// Measured interval of one run with `--quick`.
pub const QUICK_DURATION: Duration = Duration::from_millis(300);
/// Traffic before the measured interval starts (connections established,
/// buffers and caches warm).
pub const DEFAULT_WARMUP: Duration = Duration::from_millis(500);
/// The warm-up with `--quick`.
pub const QUICK_WARMUP: Duration = Duration::from_millis(50);

/// The usage text printed for `--help` and for invalid arguments.
pub const USAGE: &str = "\
usage: cargo bench -p ringloop-benches --bench echo -- [OPTIONS]

Measures a ringloop echo server (sock_accept / sock_recv / sock_sendall,
one task per connection) on each backend, driven by a tokio client on
another CPU: round trips per second and the server thread's CPU time per
round trip, with the ratios epoll / io_uring.

  --quick       one short run per cell (0.3 s): a smoke test
  --runs N      runs per backend and size, best kept (default 3; 1 with --quick)
  --conns N     client connections (default 100)
  --depth N     messages in flight per connection (default 4)
  --size BYTES  message size; repeat for several rows (default 64, 1024, 16384)
  --secs S      measured seconds per run (default 2; 0.3 with --quick)
  --backend B   only this backend (uring or epoll; default both)
  --help        this text

`--bench` (passed by `cargo bench`) and other unknown flags are ignored.";

/// What the echo benchmark's command line asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct EchoArgs {
    /// One short run per cell: a smoke test, not a measurement.
    pub quick: bool,
    /// Print the usage and exit.
    pub help: bool,
    /// Runs per backend and size; the best is reported.
    pub runs: usize,
    /// Client connections, each served by its own server task.
    pub conns: usize,
    /// Messages in flight per connection (pipelining depth).
    pub depth: usize,
    /// Message sizes in bytes, one table row (per backend) each.
    pub sizes: Vec<usize>,
    /// Measured interval of one run.
    pub duration: Duration,
    /// Traffic before the measured interval.
    pub warmup: Duration,
    /// `--backend`: only this backend (default: both).
    pub backend: Option<Backend>,
    /// Flags that were not understood and are ignored.
    pub ignored: Vec<String>,
}

impl EchoArgs {
    /// Parses the arguments that follow the program name. Errors are
    /// messages meant for the user.
    pub fn parse<I, S>(args: I) -> Result<EchoArgs, String>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut quick = false;
        let mut help = false;
        let mut runs = None;
        let mut conns = DEFAULT_CONNS;
        let mut depth = DEFAULT_DEPTH;
        let mut sizes = Vec::new();
        let mut duration = None;
        let mut backend = None;
        let mut ignored = Vec::new();
        let mut it = args.into_iter().map(Into::into);
        while let Some(arg) = it.next() {
            // `--flag=value` and `--flag value` are both accepted.
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
                _ => (arg.clone(), None),
            };
            let takes_value = matches!(
                flag.as_str(),
                "--runs" | "--conns" | "--depth" | "--size" | "--secs" | "--backend"
            );
            let value = if takes_value {
                match inline {
                    Some(v) => v,
                    None => it.next().ok_or_else(|| format!("{flag} needs a value"))?,
                }
            } else {
                String::new()
            };
            match flag.as_str() {
                "--bench" => {}
                "--quick" => quick = true,
                "-h" | "--help" => help = true,
                "--runs" => runs = Some(parse_runs(&value)?),
                "--conns" => conns = parse_count(&flag, &value, 1, 10_000)?,
                "--depth" => depth = parse_count(&flag, &value, 1, 1024)?,
                "--size" => sizes.push(parse_count(&flag, &value, 1, 16 << 20)?),
                "--secs" => duration = Some(parse_secs(&value)?),
                "--backend" => backend = Some(parse_backend(&value)?),
                _ => ignored.push(arg),
            }
        }
        if sizes.is_empty() {
            sizes = DEFAULT_SIZES.to_vec();
        }
        Ok(EchoArgs {
            quick,
            help,
            runs: runs.unwrap_or(if quick { 1 } else { DEFAULT_RUNS }),
            conns,
            depth,
            sizes,
            duration: duration.unwrap_or(if quick {
                QUICK_DURATION
            } else {
                DEFAULT_DURATION
            }),
            warmup: if quick { QUICK_WARMUP } else { DEFAULT_WARMUP },
            backend,
            ignored,
        })
    }

    /// The backends to measure: the one `--backend` named, or both.
    pub fn backends(&self) -> Vec<Backend> {
        match self.backend {
            Some(b) => vec![b],
            None => BACKENDS.to_vec(),
        }
    }
}

fn parse_count(flag: &str, value: &str, min: usize, max: usize) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "{flag} expects a whole number in {min}..={max}, got {value:?}"
        )),
    }
}

fn parse_secs(value: &str) -> Result<Duration, String> {
    match value.parse::<f64>() {
        Ok(s) if s.is_finite() && (0.01..=3600.0).contains(&s) => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!(
            "--secs expects seconds between 0.01 and 3600, got {value:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let a = EchoArgs::parse(["--bench"]).expect("valid");
        assert!(!a.quick);
        assert_eq!(a.runs, DEFAULT_RUNS);
        assert_eq!(a.conns, 100);
        assert_eq!(a.depth, 4);
        assert_eq!(a.sizes, vec![64, 1024, 16384]);
        assert_eq!(a.duration, Duration::from_secs(2));
        assert_eq!(a.backends(), vec![Backend::Uring, Backend::Epoll]);
        assert!(a.ignored.is_empty());
    }

    #[test]
    fn quick_is_one_short_run() {
        let a = EchoArgs::parse(["--quick"]).expect("valid");
        assert_eq!(a.runs, 1);
        assert_eq!(a.duration, QUICK_DURATION);
        assert_eq!(a.warmup, QUICK_WARMUP);
    }

    #[test]
    fn options() {
        let a = EchoArgs::parse([
            "--size",
            "512",
            "--size=4096",
            "--conns",
            "8",
            "--depth=2",
            "--secs",
            "0.5",
            "--runs",
            "5",
            "--backend",
            "epoll",
            "--frobnicate",
        ])
        .expect("valid");
        assert_eq!(a.sizes, vec![512, 4096]);
        assert_eq!(a.conns, 8);
        assert_eq!(a.depth, 2);
        assert_eq!(a.duration, Duration::from_millis(500));
        assert_eq!(a.runs, 5);
        assert_eq!(a.backends(), vec![Backend::Epoll]);
        assert_eq!(a.ignored, vec!["--frobnicate".to_string()]);
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(EchoArgs::parse(["--conns", "0"]).is_err());
        assert!(EchoArgs::parse(["--size"]).is_err());
        assert!(EchoArgs::parse(["--secs", "nan"]).is_err());
        assert!(EchoArgs::parse(["--secs", "-1"]).is_err());
        assert!(EchoArgs::parse(["--backend", "poll"]).is_err());
        assert!(EchoArgs::parse(["--runs=0"]).is_err());
    }
}
