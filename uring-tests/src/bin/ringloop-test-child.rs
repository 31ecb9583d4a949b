//! A small child program for the subprocess tests (found by the tests
//! through `CARGO_BIN_EXE_ringloop-test-child`), so they depend on no
//! shell tool. Usage: `ringloop-test-child MODE ARGS...`:
//!
//! - `exit N`: exits with status N.
//! - `sleep SECS`: sleeps, then exits 0.
//! - `signal N`: kills itself with signal N.
//! - `cat`: copies stdin to stdout.
//! - `big N SEED_IN SEED_OUT SEED_ERR`: writes `pattern(N, SEED_OUT)` to
//!   stdout and `pattern(N, SEED_ERR)` to stderr from two threads while
//!   reading stdin; exits 0 if stdin was exactly `pattern(N, SEED_IN)`,
//!   3 if it differed.
//! - `out-err`: writes `out\n` to stdout, then `err\n` to stderr.
//! - `fds`: prints its open descriptors, space-separated.
//! - `pwd`: prints its working directory.
//! - `env NAME`: prints the variable's value, or `<unset>`.
//! - `ids`: prints `pid pgid sid`.
//! - `write-fd FD TEXT`: writes TEXT to descriptor FD (exit 5 if it is
//!   not open).
//! - `stat`: prints `dev:ino` of descriptors 0, 1 and 2 to stderr.

use std::io::{Read, Write};
use std::os::fd::FromRawFd;

use ringloop_uring_tests::pattern;

fn arg(args: &[String], i: usize) -> &str {
    args.get(i).map(String::as_str).unwrap_or_else(|| {
        eprintln!("missing argument {i}");
        std::process::exit(2)
    })
}

fn num(args: &[String], i: usize) -> u64 {
    arg(args, i).parse().unwrap_or_else(|_| {
        eprintln!("argument {i} is not a number");
        std::process::exit(2)
    })
}

fn big(args: &[String]) -> i32 {
    let n = num(args, 2) as usize;
    let (seed_in, seed_out, seed_err) = (num(args, 3), num(args, 4), num(args, 5));
    let out = std::thread::spawn(move || {
        let _ = std::io::stdout().lock().write_all(&pattern(n, seed_out));
    });
    let err = std::thread::spawn(move || {
        let _ = std::io::stderr().lock().write_all(&pattern(n, seed_err));
    });
    let mut got = Vec::with_capacity(n);
    let _ = std::io::stdin().lock().read_to_end(&mut got);
    let _ = out.join();
    let _ = err.join();
    if got == pattern(n, seed_in) {
        0
    } else {
        3
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let code = match arg(&args, 1) {
        "exit" => num(&args, 2) as i32,
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(num(&args, 2)));
            0
        }
        "signal" => {
            // SAFETY: raising a signal on ourselves.
            unsafe { libc::raise(num(&args, 2) as i32) };
            1
        }
        "cat" => {
            let mut data = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut data);
            let _ = std::io::stdout().write_all(&data);
            0
        }
        "big" => big(&args),
        "out-err" => {
            println!("out");
            let _ = std::io::stdout().flush();
            eprintln!("err");
            0
        }
        "fds" => {
            let listed: Vec<i32> = std::fs::read_dir("/proc/self/fd")
                .map(|d| {
                    d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                        .collect()
                })
                .unwrap_or_default();
            // read_dir's own descriptor is closed by now: drop it.
            let mut fds: Vec<String> = listed
                .into_iter()
                // SAFETY: F_GETFD only checks that the descriptor is open.
                .filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0)
                .map(|fd| fd.to_string())
                .collect();
            fds.sort_by_key(|f| f.parse::<i32>().unwrap_or(0));
            print!("{}", fds.join(" "));
            0
        }
        "pwd" => {
            let dir = std::env::current_dir().map(|d| d.display().to_string());
            print!("{}", dir.unwrap_or_default());
            0
        }
        "env" => {
            let name = arg(&args, 2);
            print!(
                "{}",
                std::env::var(name).unwrap_or_else(|_| "<unset>".into())
            );
            0
        }
        "ids" => {
            // SAFETY: these only read our own ids.
            let ids = unsafe { (libc::getpid(), libc::getpgid(0), libc::getsid(0)) };
            print!("{} {} {}", ids.0, ids.1, ids.2);
            0
        }
        "write-fd" => {
            let fd = num(&args, 2) as i32;
            // SAFETY: F_GETFD only checks that `fd` is open.
            if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
                5
            } else {
                // SAFETY: `fd` is open (checked above) and was given to us.
                let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
                let _ = f.write_all(arg(&args, 3).as_bytes());
                0
            }
        }
        "stat" => {
            let ids: Vec<String> = (0..3)
                .map(|fd| {
                    // SAFETY: plain data the kernel fills.
                    let mut st: libc::stat = unsafe { std::mem::zeroed() };
                    // SAFETY: a valid out-pointer.
                    if unsafe { libc::fstat(fd, &mut st) } < 0 {
                        return "closed".to_string();
                    }
                    format!("{}:{}", st.st_dev, st.st_ino)
                })
                .collect();
            eprint!("{}", ids.join(" "));
            0
        }
        other => {
            eprintln!("unknown mode {other:?}");
            2
        }
    };
    std::process::exit(code);
}
