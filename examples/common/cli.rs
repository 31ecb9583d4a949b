//! Command-line handling shared by the network examples (parsed by hand,
//! to keep the dependencies few): `--host`, `--port`, `--backend`, the
//! example's own options, and the loop built for the chosen backend.
//!
//! Options take their value as the next argument or after `=`
//! (`--port 8080`, `--port=8080`); `-h`/`--help` prints the usage.

// Each example uses the part it needs.
#![allow(dead_code)]

use std::str::FromStr;

use ringloop::{Backend, EventLoop};

/// The parsed command line.
pub struct Cli {
    usage: &'static str,
    /// `--host`, default `127.0.0.1`.
    pub host: String,
    /// `--port`, default 0 (any free port, for servers).
    pub port: u16,
    /// `--backend uring|epoll`; `None`: automatic (or `RINGLOOP_BACKEND`).
    pub backend: Option<Backend>,
    values: Vec<(&'static str, String)>,
    switches: Vec<&'static str>,
    /// Arguments that are not options, in order.
    pub positional: Vec<String>,
}

/// Prints `message` and the usage to stderr and exits with status 2.
pub fn fail(usage: &str, message: &str) -> ! {
    eprintln!("{message}\n{usage}");
    std::process::exit(2)
}

/// Parses the process's arguments. `options` take a value, `switches` do
/// not; `--host`, `--port` and `--backend` are always known. Exits with
/// status 2 and the usage on a mistake, 0 after `--help`.
pub fn parse(usage: &'static str, options: &[&'static str], switches: &[&'static str]) -> Cli {
    let mut cli = Cli {
        usage,
        host: "127.0.0.1".to_string(),
        port: 0,
        backend: None,
        values: Vec::new(),
        switches: Vec::new(),
        positional: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            println!("{usage}");
            std::process::exit(0);
        }
        if !arg.starts_with("--") {
            cli.positional.push(arg);
            continue;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg, None),
        };
        if let Some(&s) = switches.iter().find(|s| **s == flag) {
            if inline.is_some() {
                fail(usage, &format!("{flag} takes no value"));
            }
            cli.switches.push(s);
            continue;
        }
        let Some(value) = inline.or_else(|| args.next()) else {
            fail(usage, &format!("{flag} needs a value"));
        };
        match flag.as_str() {
            "--host" => cli.host = value,
            "--port" => cli.port = cli.number("--port", &value),
            "--backend" => {
                cli.backend = Some(
                    value
                        .parse()
                        .unwrap_or_else(|e| fail(usage, &format!("{e}"))),
                )
            }
            _ => match options.iter().find(|o| **o == flag) {
                Some(&o) => cli.values.push((o, value)),
                None => fail(usage, &format!("unknown option {flag}")),
            },
        }
    }
    cli
}

impl Cli {
    fn number<T: FromStr>(&self, flag: &str, value: &str) -> T {
        value.parse().unwrap_or_else(|_| {
            fail(
                self.usage,
                &format!("{flag}: {value:?} is not a valid number"),
            )
        })
    }

    /// The value of `option` parsed as a number, or `default`.
    pub fn get<T: FromStr>(&self, option: &str, default: T) -> T {
        match self.values.iter().rev().find(|(o, _)| *o == option) {
            Some((_, v)) => self.number(option, v),
            None => default,
        }
    }

    /// True if `switch` was given.
    pub fn has(&self, switch: &str) -> bool {
        self.switches.contains(&switch)
    }

    /// Exits with the usage after `message`.
    pub fn fail(&self, message: &str) -> ! {
        fail(self.usage, message)
    }

    /// A loop on the chosen backend (automatic when none was given).
    pub fn build_loop(&self) -> std::io::Result<EventLoop> {
        let builder = EventLoop::builder();
        match self.backend {
            Some(b) => builder.backend(b),
            None => builder,
        }
        .build()
    }
}
