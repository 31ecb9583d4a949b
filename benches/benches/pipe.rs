//! The pipe benchmark of issue 5: throughput of `examples/pipe_cat`
//! (stdin to stdout through `connect_read_pipe`/`connect_write_pipe`) on
//! each backend, beside `cat`, in the same run.
//!
//! ```sh
//! cargo bench -p ringloop-benches --bench pipe               # 1 GiB per sample, 5 runs (~20 s)
//! cargo bench -p ringloop-benches --bench pipe -- --quick    # ~10 MiB per sample: a smoke test (~1 s)
//! cargo bench -p ringloop-benches --bench pipe -- --runs 3 --backend uring
//! cargo bench -p ringloop-benches --bench pipe -- --pin      # child on a CPU of its own
//! ```
//!
//! Each contender runs as a child process with a pipe as stdin and a pipe
//! as stdout: `cat`, or this binary started again with
//! `--pipe-cat-child <backend>`, which runs the example's own code (the
//! file `examples/pipe_cat.rs` is compiled into this benchmark). This
//! process writes the payload into the child's stdin from one thread and
//! reads the child's stdout in another, checking every byte against the
//! pattern. A sample is the time from the child's start to the end of its
//! output; the child's CPU time (user + system, from `wait4`) is reported
//! beside it. Every contender runs once to warm up, then `--runs` rounds
//! run each contender once, in rotating order; the tables show the best
//! and the median.
//!
//! By default nothing is pinned: the writer, the child and the reader
//! are scheduled as in a shell pipeline, which shows the best throughput
//! but varies from run to run on a shared 2-core machine. With `--pin`
//! the child gets the second allowed CPU to itself and this process's
//! two threads share the first; they are then the bottleneck (both
//! contenders reach about the same MB/s), and the child's CPU time per
//! GiB is the figure that separates them, as in the echo benchmark.

use std::io::{self, Read, Write};
use std::process::{Command, ExitCode, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt;

use ringloop::Backend;
use ringloop_benches::os::{allowed_cpus, pin_current_thread};
use ringloop_benches::{backend_label, probe_backend, Args, Samples};

#[allow(dead_code)]
#[path = "../../examples/pipe_cat.rs"]
mod pipe_cat;

/// Starts this binary as a pipe_cat child on the given backend.
const CHILD_FLAG: &str = "--pipe-cat-child";

/// Bytes per sample in a full run.
const FULL_BYTES: u64 = 1 << 30;

/// The payload repeats this block (a prime length, so chunk boundaries
/// and block boundaries do not line up).
const BLOCK: usize = 131_071;

/// What runs between the two pipes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Contender {
    Cat,
    PipeCat(Backend),
}

impl Contender {
    fn label(self) -> String {
        match self {
            Contender::Cat => "cat".to_string(),
            Contender::PipeCat(b) => format!("pipe_cat ({})", backend_label(b)),
        }
    }

    fn command(self) -> io::Result<Command> {
        Ok(match self {
            Contender::Cat => Command::new("cat"),
            Contender::PipeCat(b) => {
                let mut c = Command::new(std::env::current_exe()?);
                c.arg(CHILD_FLAG).arg(backend_label(b));
                c
            }
        })
    }
}

/// One sample: wall time and the child's CPU time.
struct Sample {
    wall: Duration,
    cpu: Duration,
}

fn pattern() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..BLOCK)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Waits for `pid` and returns its CPU time; an error if it did not exit
/// with status 0.
fn wait_cpu(pid: u32) -> io::Result<Duration> {
    let mut status = 0;
    // SAFETY: rusage is plain data the kernel fills.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; both pointers are valid.
    let rc = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut ru) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(io::Error::other(format!(
            "child exited with wait status {status:#x}"
        )));
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok(tv(ru.ru_utime) + tv(ru.ru_stime))
}

/// Where the processes run: this process's threads on `parent`, the
/// child on `child` (no pinning with a single CPU).
#[derive(Clone, Copy)]
struct Cpus {
    parent: Option<usize>,
    child: Option<usize>,
}

impl Cpus {
    fn choose(pin: bool) -> Cpus {
        match allowed_cpus() {
            Ok(c) if pin && c.len() >= 2 => Cpus {
                parent: Some(c[0]),
                child: Some(c[1]),
            },
            _ => Cpus {
                parent: None,
                child: None,
            },
        }
    }

    fn pin_parent_thread(self) {
        if let Some(c) = self.parent {
            if let Err(e) = pin_current_thread(c) {
                eprintln!("pipe bench: pinning to CPU {c}: {e}");
            }
        }
    }

    /// Makes `cmd`'s process start pinned to the child CPU.
    fn pin_child(self, cmd: &mut Command) {
        let Some(c) = self.child else {
            return;
        };
        // SAFETY: cpu_set_t is plain data and all zeroes is the empty
        // set; CPU_SET sets one bit (`c` comes from sched_getaffinity, so
        // it is within the set).
        let set = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(c, &mut set);
            set
        };
        // SAFETY: the closure runs between fork and exec; it only makes
        // one system call on a value it owns, and allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

/// Pipes `total` bytes through `who` and checks them.
fn run_once(who: Contender, total: u64, block: &'static [u8], cpus: Cpus) -> io::Result<Sample> {
    let mut cmd = who.command()?;
    cpus.pin_child(&mut cmd);
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let pid = child.id();
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let writer = thread::spawn(move || -> io::Result<()> {
        cpus.pin_parent_thread();
        let mut left = total;
        while left > 0 {
            let n = left.min(block.len() as u64) as usize;
            stdin.write_all(&block[..n])?;
            left -= n as u64;
        }
        Ok(())
        // Dropping stdin: the child reads EOF.
    });
    let mut buf = vec![0u8; 256 * 1024];
    let mut seen: u64 = 0;
    let mut bad = false;
    loop {
        let n = match stdout.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        // Compare against the pattern, block by block.
        let mut off = 0;
        while off < n {
            let pos = ((seen + off as u64) % block.len() as u64) as usize;
            let len = (block.len() - pos).min(n - off);
            bad |= buf[off..off + len] != block[pos..pos + len];
            off += len;
        }
        seen += n as u64;
    }
    let wall = start.elapsed();
    let wrote = writer.join().expect("writer thread panicked");
    let cpu = wait_cpu(pid)?;
    drop(child); // already reaped by wait4
    wrote?;
    if seen != total || bad {
        return Err(io::Error::other(format!(
            "{}: got {seen} of {total} bytes{}",
            who.label(),
            if bad { ", corrupted" } else { "" }
        )));
    }
    Ok(Sample { wall, cpu })
}

fn mb_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64().max(1e-9)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some(CHILD_FLAG) {
        let backend = argv.get(2).and_then(|b| b.parse::<Backend>().ok());
        return pipe_cat::pipe_cat(backend);
    }
    let mut args = match Args::parse(argv.into_iter().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("pipe bench: {e}");
            return ExitCode::from(2);
        }
    };
    if args.help {
        println!(
            "usage: cargo bench -p ringloop-benches --bench pipe -- [--quick] [--runs N] [--backend uring|epoll] [--pin]"
        );
        return ExitCode::SUCCESS;
    }
    let pin = args.ignored.iter().any(|f| f == "--pin");
    args.ignored.retain(|f| f != "--pin");
    for flag in &args.ignored {
        eprintln!("pipe bench: ignoring unknown option {flag}");
    }
    let total = args.size(FULL_BYTES);
    let cpus = Cpus::choose(pin);
    cpus.pin_parent_thread();
    let block: &'static [u8] = Box::leak(pattern().into_boxed_slice());
    let mut contenders = vec![Contender::Cat];
    for b in args.backends() {
        match probe_backend(b) {
            Ok(()) => contenders.push(Contender::PipeCat(b)),
            Err(e) => println!("skipping pipe_cat on {}: {e}", backend_label(b)),
        }
    }
    println!(
        "# pipe throughput: {} MiB per sample, {} run(s) after a warm-up, {}{}\n",
        total >> 20,
        args.runs,
        match cpus.child {
            Some(c) => format!("child pinned to CPU {c}"),
            None => "unpinned".to_string(),
        },
        if args.quick {
            " (--quick: a smoke test)"
        } else {
            ""
        }
    );
    let mut samples: Vec<(Samples, Samples)> = vec![Default::default(); contenders.len()];
    for round in 0..=args.runs {
        for k in 0..contenders.len() {
            let i = (k + round) % contenders.len();
            match run_once(contenders[i], total, block, cpus) {
                Ok(s) if round > 0 => {
                    samples[i].0.push(s.wall);
                    samples[i].1.push(s.cpu);
                }
                Ok(_) => {}
                Err(e) => {
                    eprintln!("pipe bench: {}: {e}", contenders[i].label());
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    let cat_best = samples[0].0.best();
    println!("| contender | MB/s best | MB/s median | child CPU s/GiB (median) | best vs cat |");
    println!("|---|---:|---:|---:|---:|");
    for (who, (wall, cpu)) in contenders.iter().zip(&samples) {
        let cpu_per_gib = cpu.median().as_secs_f64() * (1u64 << 30) as f64 / total as f64;
        println!(
            "| {} | {:.0} | {:.0} | {:.3} | {:.2}× |",
            who.label(),
            mb_per_s(total, wall.best()),
            mb_per_s(total, wall.median()),
            cpu_per_gib,
            cat_best.as_secs_f64() / wall.best().as_secs_f64().max(1e-9),
        );
    }
    ExitCode::SUCCESS
}
