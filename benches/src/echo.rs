//! Settings of the echo benchmark (`benches/benches/echo.rs`): the
//! command line, the defaults, and the size of each phase.

use std::time::Duration;

use ringloop::Backend;

use crate::parse_backend;
use crate::servers::ServerKind;

/// Message sizes when `--sizes` is not given.
pub const DEFAULT_SIZES: [usize; 3] = [64, 1024, 16 * 1024];
/// Connection counts when `--conns` is not given.
pub const DEFAULT_CONNS: [usize; 3] = [1, 100, 1000];
/// Messages in flight per connection in the pipelined phase.
pub const DEFAULT_DEPTH: usize = 16;
/// Bound on the bytes in flight over all connections in the pipelined
/// phase: the depth is lowered (to at least 1) so that
/// `conns × depth × size` stays under it (1,000 connections × 16 KiB run
/// at depth 1).
pub const MAX_INFLIGHT_BYTES: usize = 16 << 20;
/// Offered rate of the paced phase, round trips per second over all
/// connections: well below what any server here saturates at.
pub const DEFAULT_RATE: f64 = 50_000.0;
/// Release interval of the paced phase: messages due are sent together
/// at multiples of it (zero: each exactly when due).
pub const DEFAULT_TICK: Duration = Duration::ZERO;
/// Idle connections of the memory figure.
pub const DEFAULT_IDLE: usize = 10_000;
/// Idle connections of the memory figure with `--quick`.
pub const QUICK_IDLE: usize = 1_000;
/// Measured interval of each phase.
pub const DEFAULT_MEASURE: Duration = Duration::from_secs(1);
/// Load before each measured interval.
pub const DEFAULT_WARMUP: Duration = Duration::from_millis(300);
/// Runs of the whole load matrix; each figure is the median over them.
pub const DEFAULT_RUNS: usize = 3;
/// Measured interval of each phase with `--quick`.
pub const QUICK_MEASURE: Duration = Duration::from_millis(40);
/// Load before each measured interval with `--quick`.
pub const QUICK_WARMUP: Duration = Duration::from_millis(15);

/// The usage text.
pub const USAGE: &str = "\
usage: cargo bench -p ringloop-benches --bench echo -- [OPTIONS]

Echo servers side by side, each in its own process pinned to the first
CPU, loaded by one client thread pinned to the second: ringloop
(protocol, streams and sock_* styles, on io_uring and on epoll), tokio
(current_thread), a bare io_uring loop and a bare epoll loop. Per message
size and connection count: pipelined round trips/s, the server's CPU time
per round trip at a fixed offered rate (the headline), p50/p99 latency of a
ping-pong at 1 connection; then memory per idle connection. Prints
markdown tables and the issue-4 targets.

  --quick          whole matrix, tiny phases (40 ms), 1,000 idle conns: a smoke test
  --servers LIST   servers to run, comma-separated names or parts of names
                   (e.g. proto,tokio,bare); default all
  --backend B      only the servers on uring or epoll (tokio counts as epoll)
  --sizes LIST     message sizes in bytes (default 64,1024,16384); --size N adds one
  --conns LIST     connection counts (default 1,100,1000)
  --depth N        messages in flight per connection, pipelined (default 16;
                   lowered so that conns x depth x size <= 16 MiB)
  --rate R         offered round trips/s of the paced phase (default 50000)
  --tick S         paced sends are released together every S seconds
                   (default 0: each message exactly when due)
  --runs N         runs of the whole load matrix, median kept (default 3;
                   1 with --quick)
  --secs S         measured seconds per phase (default 1; 0.04 with --quick)
  --warmup S       seconds of load before each measurement (default 0.3)
  --idle N         idle connections for the memory figure (default 10000;
                   1000 with --quick; 0 skips it)
  --no-load        skip the load phases (memory figure only)
  --help           this text

Server names: ringloop-proto-uring, ringloop-proto-epoll,
ringloop-streams-uring, ringloop-streams-epoll, ringloop-sock-uring,
ringloop-sock-epoll, tokio, bare-uring, bare-epoll.
`--bench` (passed by `cargo bench`) is ignored; unknown flags are errors.";

/// What the echo benchmark's command line asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct EchoArgs {
    /// Tiny phases: a smoke test, not a measurement.
    pub quick: bool,
    /// Print the usage and exit.
    pub help: bool,
    /// The servers to run, in table order.
    pub servers: Vec<ServerKind>,
    /// Message sizes in bytes.
    pub sizes: Vec<usize>,
    /// Connection counts.
    pub conns: Vec<usize>,
    /// Pipelining depth (before the in-flight cap).
    pub depth: usize,
    /// Offered rate of the paced phase.
    pub rate: f64,
    /// Release interval of the paced phase (zero: each message when due).
    pub tick: Duration,
    /// Runs of the load matrix.
    pub runs: usize,
    /// Measured interval of each phase.
    pub measure: Duration,
    /// Load before each measured interval.
    pub warmup: Duration,
    /// Idle connections for the memory figure (0: skip).
    pub idle: usize,
    /// Run the load phases (pipelined, paced, latency).
    pub load: bool,
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
        let mut server_filters: Vec<String> = Vec::new();
        let mut backend: Option<Backend> = None;
        let mut sizes: Vec<usize> = Vec::new();
        let mut conns: Option<Vec<usize>> = None;
        let mut depth = DEFAULT_DEPTH;
        let mut rate = DEFAULT_RATE;
        let mut tick = DEFAULT_TICK;
        let mut runs = None;
        let mut measure = None;
        let mut warmup = None;
        let mut idle = None;
        let mut load = true;
        let mut it = args.into_iter().map(Into::into);
        while let Some(arg) = it.next() {
            // `--flag=value` and `--flag value` are both accepted.
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
                _ => (arg.clone(), None),
            };
            let takes_value = matches!(
                flag.as_str(),
                "--servers"
                    | "--backend"
                    | "--sizes"
                    | "--size"
                    | "--conns"
                    | "--depth"
                    | "--rate"
                    | "--tick"
                    | "--runs"
                    | "--secs"
                    | "--warmup"
                    | "--idle"
            );
            let value = if takes_value {
                match inline {
                    Some(v) => v,
                    None => it.next().ok_or_else(|| format!("{flag} needs a value"))?,
                }
            } else if inline.is_some() {
                return Err(format!("{flag} takes no value"));
            } else {
                String::new()
            };
            match flag.as_str() {
                "--bench" => {}
                "--quick" => quick = true,
                "-h" | "--help" => help = true,
                "--no-load" => load = false,
                "--servers" => server_filters.extend(split_list(&value)),
                "--backend" => backend = Some(parse_backend(&value)?),
                "--sizes" => {
                    for v in split_list(&value) {
                        sizes.push(parse_count("--sizes", &v, 1, 1 << 20)?);
                    }
                }
                "--size" => sizes.push(parse_count(&flag, &value, 1, 1 << 20)?),
                "--conns" => {
                    let mut list = Vec::new();
                    for v in split_list(&value) {
                        list.push(parse_count("--conns", &v, 1, 10_000)?);
                    }
                    conns = Some(list);
                }
                "--depth" => depth = parse_count(&flag, &value, 1, 1024)?,
                "--rate" => rate = parse_f64(&flag, &value, 1.0, 10_000_000.0)?,
                "--runs" => runs = Some(parse_count(&flag, &value, 1, 100)?),
                "--tick" => tick = Duration::from_secs_f64(parse_f64(&flag, &value, 0.0, 1.0)?),
                "--secs" => {
                    measure = Some(Duration::from_secs_f64(parse_f64(
                        &flag, &value, 0.01, 3600.0,
                    )?))
                }
                "--warmup" => {
                    warmup = Some(Duration::from_secs_f64(parse_f64(
                        &flag, &value, 0.0, 3600.0,
                    )?))
                }
                "--idle" => idle = Some(parse_count(&flag, &value, 0, 100_000)?),
                _ => return Err(format!("unknown argument {arg:?}")),
            }
        }
        let servers = select_servers(&server_filters, backend)?;
        if sizes.is_empty() {
            sizes = DEFAULT_SIZES.to_vec();
        }
        Ok(EchoArgs {
            quick,
            help,
            servers,
            sizes,
            conns: conns.unwrap_or_else(|| DEFAULT_CONNS.to_vec()),
            depth,
            rate,
            tick,
            runs: runs.unwrap_or(if quick { 1 } else { DEFAULT_RUNS }),
            measure: measure.unwrap_or(if quick {
                QUICK_MEASURE
            } else {
                DEFAULT_MEASURE
            }),
            warmup: warmup.unwrap_or(if quick { QUICK_WARMUP } else { DEFAULT_WARMUP }),
            idle: idle.unwrap_or(if quick { QUICK_IDLE } else { DEFAULT_IDLE }),
            load,
        })
    }

    /// The pipelining depth for `conns` connections of `size`-byte
    /// messages: `--depth`, lowered to keep the bytes in flight under
    /// [`MAX_INFLIGHT_BYTES`], at least 1.
    pub fn depth_for(&self, conns: usize, size: usize) -> usize {
        let cap = MAX_INFLIGHT_BYTES / (conns.max(1) * size.max(1));
        self.depth.min(cap).max(1)
    }
}

/// The servers whose names contain one of `filters` (all when empty),
/// on `backend` if given, in [`ServerKind::ALL`] order.
pub fn select_servers(
    filters: &[String],
    backend: Option<Backend>,
) -> Result<Vec<ServerKind>, String> {
    for f in filters {
        if !ServerKind::ALL
            .iter()
            .any(|k| k.name().contains(f.as_str()))
        {
            return Err(format!("--servers: no server name contains {f:?}"));
        }
    }
    let picked: Vec<ServerKind> = ServerKind::ALL
        .into_iter()
        .filter(|k| filters.is_empty() || filters.iter().any(|f| k.name().contains(f.as_str())))
        .filter(|k| backend.is_none_or(|b| k.backend() == b))
        .collect();
    if picked.is_empty() {
        return Err("no server left to run (check --servers and --backend)".to_string());
    }
    Ok(picked)
}

fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn parse_count(flag: &str, value: &str, min: usize, max: usize) -> Result<usize, String> {
    match value.replace('_', "").parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "{flag} expects whole numbers in {min}..={max}, got {value:?}"
        )),
    }
}

fn parse_f64(flag: &str, value: &str, min: f64, max: f64) -> Result<f64, String> {
    match value.replace('_', "").parse::<f64>() {
        Ok(v) if v.is_finite() && (min..=max).contains(&v) => Ok(v),
        _ => Err(format!(
            "{flag} expects a number between {min} and {max}, got {value:?}"
        )),
    }
}

/// `64 B`, `1 KiB`, `16 KiB`.
pub fn size_label(size: usize) -> String {
    if size >= 1024 && size % 1024 == 0 {
        format!("{} KiB", size / 1024)
    } else {
        format!("{size} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let a = EchoArgs::parse(["--bench"]).expect("valid");
        assert!(!a.quick);
        assert_eq!(a.servers, ServerKind::ALL.to_vec());
        assert_eq!(a.sizes, vec![64, 1024, 16384]);
        assert_eq!(a.conns, vec![1, 100, 1000]);
        assert_eq!(a.depth, 16);
        assert_eq!(a.rate, 50_000.0);
        assert_eq!(a.runs, 3);
        assert_eq!(a.tick, Duration::ZERO);
        assert_eq!(a.measure, Duration::from_secs(1));
        assert_eq!(a.idle, 10_000);
        assert!(a.load);
    }

    #[test]
    fn quick_is_small() {
        let a = EchoArgs::parse(["--quick"]).expect("valid");
        assert_eq!(a.measure, QUICK_MEASURE);
        assert_eq!(a.warmup, QUICK_WARMUP);
        assert_eq!(a.idle, QUICK_IDLE);
        assert_eq!(a.runs, 1);
        assert_eq!(a.conns, vec![1, 100, 1000]);
    }

    #[test]
    fn filters_and_lists() {
        let a = EchoArgs::parse([
            "--servers",
            "proto,tokio",
            "--sizes=64,4096",
            "--size",
            "512",
            "--conns",
            "10, 100",
            "--rate",
            "30_000",
            "--secs=0.5",
            "--idle",
            "0",
        ])
        .expect("valid");
        assert_eq!(
            a.servers,
            vec![
                ServerKind::ProtoUring,
                ServerKind::ProtoEpoll,
                ServerKind::Tokio
            ]
        );
        assert_eq!(a.sizes, vec![64, 4096, 512]);
        assert_eq!(a.conns, vec![10, 100]);
        assert_eq!(a.rate, 30_000.0);
        assert_eq!(a.measure, Duration::from_millis(500));
        assert_eq!(a.idle, 0);
        let a = EchoArgs::parse(["--backend", "uring"]).expect("valid");
        assert!(a.servers.iter().all(|k| k.backend() == Backend::Uring));
        assert!(a.servers.contains(&ServerKind::BareUring));
        let a = EchoArgs::parse(["--servers", "bare", "--backend=epoll"]).expect("valid");
        assert_eq!(a.servers, vec![ServerKind::BareEpoll]);
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(EchoArgs::parse(["--conns", "0"]).is_err());
        assert!(EchoArgs::parse(["--sizes"]).is_err());
        assert!(EchoArgs::parse(["--secs", "nan"]).is_err());
        assert!(EchoArgs::parse(["--servers", "nginx"]).is_err());
        assert!(EchoArgs::parse(["--backend", "kqueue"]).is_err());
        assert!(EchoArgs::parse(["--frobnicate"]).is_err());
        assert!(EchoArgs::parse(["--quick=1"]).is_err());
        assert!(EchoArgs::parse(["--servers", "bare-uring", "--backend", "epoll"]).is_err());
    }

    #[test]
    fn depth_is_capped_by_bytes_in_flight() {
        let a = EchoArgs::parse(["--bench"]).expect("valid");
        assert_eq!(a.depth_for(100, 64), 16);
        assert_eq!(a.depth_for(100, 16384), 10);
        assert_eq!(a.depth_for(1000, 16384), 1);
        assert_eq!(a.depth_for(1000, 1024), 16);
        assert_eq!(a.depth_for(10_000, 1 << 20), 1);
    }

    #[test]
    fn labels() {
        assert_eq!(size_label(64), "64 B");
        assert_eq!(size_label(1024), "1 KiB");
        assert_eq!(size_label(16384), "16 KiB");
        assert_eq!(size_label(1500), "1500 B");
    }
}
