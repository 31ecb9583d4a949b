//! Subprocesses: spawning, exit codes, signals, close, options, errors and
//! asyncio's event order, on both backends.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::rc::Rc;

use ringloop::process::{Stdio, SubprocessOptions};
use ringloop::{BaseProtocol, ExtraInfo, SubprocessProtocol, SubprocessTransport};
use ringloop_uring_tests::subproc::{exec, until_lost, ProcSeenRef};
use ringloop_uring_tests::{test_child, TestLoop};

const CHILD: &str = test_child!();

/// All three standard descriptors on /dev/null.
fn quiet() -> SubprocessOptions {
    SubprocessOptions::default()
        .stdin(Stdio::Null)
        .stdout(Stdio::Null)
        .stderr(Stdio::Null)
}

/// A file the child's output goes to, removed on drop.
struct OutFile(PathBuf);

impl OutFile {
    fn new(tag: &str) -> (OutFile, File) {
        let path = std::env::temp_dir().join(format!(
            "ringloop-subprocess-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let f = File::create(&path).unwrap();
        (OutFile(path), f)
    }

    fn read(&self) -> String {
        std::fs::read_to_string(&self.0).unwrap()
    }
}

impl Drop for OutFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs the test child with `args` and `options` to the end; returns
/// the return code and the observations.
fn run_to_end(
    tl: &TestLoop,
    args: &[&'static str],
    options: SubprocessOptions,
) -> (i32, ProcSeenRef) {
    let lp = tl.lp();
    let args = args.to_vec();
    tl.block_on(async move {
        let (t, seen) = exec(&lp, CHILD, &args, options).await.unwrap();
        let code = t.wait().await;
        until_lost(&lp, &seen).await;
        assert_eq!(t.get_returncode(), Some(code));
        (code, seen)
    })
}

/// The child's stdout, through a file.
fn output_of(tl: &TestLoop, args: &[&'static str], options: SubprocessOptions) -> String {
    let (file, f) = OutFile::new("out");
    let (code, _) = run_to_end(tl, args, options.stdout(Stdio::Fd(f.into())));
    assert_eq!(code, 0);
    file.read()
}

#[test]
fn exit_status_and_event_order_without_pipes() {
    let tl = TestLoop::new();
    let (code, seen) = run_to_end(&tl, &["exit", "7"], quiet());
    assert_eq!(code, 7);
    let s = seen.borrow();
    assert_eq!(s.log, vec!["made", "exited", "lost"]);
    assert_eq!(s.code_at_exit, Some(7));
}

#[test]
fn death_by_signal_is_negative() {
    let tl = TestLoop::new();
    let (code, _) = run_to_end(&tl, &["signal", "15"], quiet());
    assert_eq!(code, -libc::SIGTERM);
}

#[test]
fn kill_terminate_and_send_signal() {
    let tl = TestLoop::new();
    let lp = tl.lp();
    tl.block_on(async move {
        type Send = fn(&SubprocessTransport) -> io::Result<()>;
        let cases: [(&str, Send, i32); 3] = [
            ("kill", |t| t.kill(), -libc::SIGKILL),
            ("terminate", |t| t.terminate(), -libc::SIGTERM),
            (
                "send_signal",
                |t| t.send_signal(libc::SIGUSR1),
                -libc::SIGUSR1,
            ),
        ];
        for (what, send, expected) in cases {
            let (t, seen) = exec(&lp, CHILD, &["sleep", "60"], quiet()).await.unwrap();
            assert_eq!(t.get_returncode(), None);
            send(&t).unwrap();
            assert_eq!(t.wait().await, expected, "{what}");
            until_lost(&lp, &seen).await;
            assert_eq!(seen.borrow().log, vec!["made", "exited", "lost"]);
            // Reaped: the pid may belong to someone else now.
            let e = t.send_signal(libc::SIGKILL).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::ESRCH), "{what}");
            assert_eq!(t.kill().unwrap_err().raw_os_error(), Some(libc::ESRCH));
        }
    });
}

#[test]
fn invalid_signal_number_is_invalid_input() {
    let tl = TestLoop::new();
    let lp = tl.lp();
    tl.block_on(async move {
        let (t, seen) = exec(&lp, CHILD, &["sleep", "60"], quiet()).await.unwrap();
        for bad in [-1, 1000] {
            let e = t.send_signal(bad).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "signal {bad}");
        }
        assert_eq!(t.get_returncode(), None);
        t.close();
        assert_eq!(t.wait().await, -libc::SIGKILL);
        until_lost(&lp, &seen).await;
    });
}

#[test]
fn close_kills_a_running_child_then_connection_lost() {
    let tl = TestLoop::new();
    let lp = tl.lp();
    tl.block_on(async move {
        let (t, seen) = exec(&lp, CHILD, &["sleep", "60"], quiet()).await.unwrap();
        assert!(!t.is_closing());
        t.close();
        assert!(t.is_closing());
        t.close();
        assert_eq!(t.wait().await, -libc::SIGKILL);
        until_lost(&lp, &seen).await;
        assert_eq!(seen.borrow().log, vec!["made", "exited", "lost"]);
    });
}

#[test]
fn close_after_exit_kills_nothing() {
    let tl = TestLoop::new();
    let (code, _) = run_to_end(&tl, &["exit", "0"], quiet());
    assert_eq!(code, 0);
}

#[test]
fn missing_program_is_not_found_from_the_call() {
    let tl = TestLoop::new();
    let lp = tl.lp();
    let made = Rc::new(std::cell::Cell::new(false));
    let m = made.clone();
    let e = tl.block_on(async move {
        let (proto, seen) = ringloop_uring_tests::subproc::ProcRecorder::new();
        let r = lp
            .subprocess_exec(
                move || proto,
                "/nonexistent/ringloop-no-such-program",
                ["x"],
                SubprocessOptions::default(),
            )
            .await;
        m.set(!seen.borrow().log.is_empty());
        r.unwrap_err()
    });
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    assert!(e.to_string().contains("ringloop-no-such-program"), "{e}");
    assert!(!made.get(), "the protocol heard of a child that never ran");
    // Through PATH too.
    let lp = tl.lp();
    let e = tl
        .block_on(async move { exec(&lp, "ringloop-no-such-program-in-path", &[], quiet()).await })
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
}

#[test]
fn not_executable_is_permission_denied() {
    let tl = TestLoop::new();
    let (file, _f) = OutFile::new("noexec");
    let lp = tl.lp();
    let path = file.0.to_str().unwrap().to_owned();
    let e = tl
        .block_on(async move { exec(&lp, &path, &[], quiet()).await })
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
}

#[test]
fn invalid_arguments_are_invalid_input() {
    let tl = TestLoop::new();
    let lp = tl.lp();
    tl.block_on(async move {
        let cases: Vec<(&str, &str, Vec<&str>, SubprocessOptions)> = vec![
            ("empty program", "", vec![], quiet()),
            ("NUL in program", "a\0b", vec![], quiet()),
            ("NUL in argument", CHILD, vec!["exit", "0\0"], quiet()),
            (
                "NUL in env value",
                CHILD,
                vec!["exit", "0"],
                quiet().env("A", "x\0y"),
            ),
            (
                "= in env name",
                CHILD,
                vec!["exit", "0"],
                quiet().env("A=B", "x"),
            ),
            (
                "empty env name",
                CHILD,
                vec!["exit", "0"],
                quiet().env("", "x"),
            ),
            (
                "NUL in cwd",
                CHILD,
                vec!["exit", "0"],
                quiet().cwd("/tmp\0x"),
            ),
            (
                "Stdout for stdin",
                CHILD,
                vec!["exit", "0"],
                quiet().stdin(Stdio::Stdout),
            ),
            (
                "Stdout for stdout",
                CHILD,
                vec!["exit", "0"],
                quiet().stdout(Stdio::Stdout),
            ),
            (
                "group and session",
                CHILD,
                vec!["exit", "0"],
                quiet().process_group(0).start_new_session(true),
            ),
        ];
        for (what, program, args, options) in cases {
            let e = exec(&lp, program, &args, options).await.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{what}: {e}");
        }
        let (proto, _) = ringloop_uring_tests::subproc::ProcRecorder::new();
        let e = lp
            .subprocess_shell(move || proto, "exit 0\0", quiet())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    });
}

#[test]
fn shell_runs_the_command() {
    let tl = TestLoop::new();
    let lp = tl.lp();
    let (file, f) = OutFile::new("shell");
    let code = tl.block_on(async move {
        let (proto, seen) = ringloop_uring_tests::subproc::ProcRecorder::new();
        let options = quiet().stdout(Stdio::Fd(f.into()));
        let (t, _) = lp
            .subprocess_shell(move || proto, "echo \"$((6 * 7))\"; exit 5", options)
            .await
            .unwrap();
        let code = t.wait().await;
        until_lost(&lp, &seen).await;
        code
    });
    assert_eq!(code, 5);
    assert_eq!(file.read(), "42\n");
}

#[test]
fn pid_and_extra_info() {
    let tl = TestLoop::new();
    let lp = tl.lp();
    let (file, f) = OutFile::new("ids");
    let pid = tl.block_on(async move {
        let (t, seen) = exec(&lp, CHILD, &["ids"], quiet().stdout(Stdio::Fd(f.into())))
            .await
            .unwrap();
        let pid = t.get_pid();
        assert!(matches!(t.get_extra_info("subprocess"), Some(ExtraInfo::Pid(p)) if p == pid));
        assert!(t.get_extra_info("peername").is_none());
        assert!(t.get_pipe_transport(0).is_none(), "stdin is /dev/null");
        assert!(t.get_pipe_transport(7).is_none());
        assert!(t.get_pipe_transport(-1).is_none());
        assert!(format!("{t:?}").contains(&format!("pid={pid}")));
        t.wait().await;
        until_lost(&lp, &seen).await;
        pid
    });
    let ids: Vec<u32> = file.read().split(' ').map(|s| s.parse().unwrap()).collect();
    assert_eq!(ids[0], pid);
    // Default: the loop's group and session, not the child's own.
    assert_ne!(ids[1], pid);
    assert_ne!(ids[2], pid);
}

#[test]
fn process_group_and_new_session() {
    let tl = TestLoop::new();
    let ids = |tl: &TestLoop, options: SubprocessOptions| -> Vec<i64> {
        output_of(tl, &["ids"], options)
            .split(' ')
            .map(|s| s.parse().unwrap())
            .collect()
    };
    let g = ids(&tl, quiet().process_group(0));
    assert_eq!(g[1], g[0], "process_group(0): the child leads a new group");
    assert_ne!(g[2], g[0]);
    let s = ids(&tl, quiet().start_new_session(true));
    assert_eq!(s[1], s[0]);
    assert_eq!(
        s[2], s[0],
        "start_new_session: the child leads a new session"
    );
}

#[test]
fn cwd_and_environment() {
    let tl = TestLoop::new();
    let dir = std::fs::canonicalize(std::env::temp_dir()).unwrap();
    let out = output_of(&tl, &["pwd"], quiet().cwd(&dir));
    assert_eq!(out, dir.display().to_string());

    let home = std::env::var("HOME").unwrap_or_else(|_| "<unset>".into());
    // Extend: the inherited variables stay.
    assert_eq!(
        output_of(
            &tl,
            &["env", "RINGLOOP_T"],
            quiet().env("RINGLOOP_T", "x y")
        ),
        "x y"
    );
    assert_eq!(
        output_of(&tl, &["env", "HOME"], quiet().env("RINGLOOP_T", "1")),
        home
    );
    // Replace: only these.
    let replaced = || quiet().env_replace([("RINGLOOP_T", "only")]);
    assert_eq!(output_of(&tl, &["env", "RINGLOOP_T"], replaced()), "only");
    assert_eq!(output_of(&tl, &["env", "HOME"], replaced()), "<unset>");
    // Remove one.
    assert_eq!(
        output_of(&tl, &["env", "HOME"], quiet().env_remove("HOME")),
        "<unset>"
    );
    // A missing directory is an error from the call.
    let lp = tl.lp();
    let e = tl
        .block_on(async move {
            exec(
                &lp,
                CHILD,
                &["pwd"],
                quiet().cwd("/nonexistent/ringloop-dir"),
            )
            .await
        })
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
    // Named in the message: it is not the program that is missing.
    assert!(e.to_string().contains("/nonexistent/ringloop-dir"), "{e}");
}

#[test]
fn stderr_to_stdout_and_fd_stdio() {
    let tl = TestLoop::new();
    let out = output_of(&tl, &["out-err"], quiet().stderr(Stdio::Stdout));
    assert_eq!(out, "out\nerr\n");
    // stdin from a file.
    let (file, mut f) = OutFile::new("stdin");
    io::Write::write_all(&mut f, b"from a file").unwrap();
    drop(f);
    let input = File::open(&file.0).unwrap();
    let out = output_of(&tl, &["cat"], quiet().stdin(Stdio::from(input)));
    assert_eq!(out, "from a file");
    // /dev/null stdin: EOF at once.
    assert_eq!(output_of(&tl, &["cat"], quiet()), "");
}

#[test]
fn pass_fd_keeps_its_number() {
    let tl = TestLoop::new();
    let (file, f) = OutFile::new("passfd");
    let fd: std::os::fd::OwnedFd = f.into();
    let n = std::os::fd::AsRawFd::as_raw_fd(&fd).to_string();
    let n: &'static str = Box::leak(n.into_boxed_str());
    let (code, _) = run_to_end(&tl, &["write-fd", n, "passed"], quiet().pass_fd(fd));
    assert_eq!(code, 0);
    assert_eq!(file.read(), "passed");
}

#[test]
fn hundred_children_at_once() {
    let tl = TestLoop::new();
    let lp = tl.lp();
    tl.block_on(async move {
        let mut started = Vec::new();
        for i in 0..100u32 {
            let code: &'static str = Box::leak((i % 7).to_string().into_boxed_str());
            started.push(exec(&lp, CHILD, &["exit", code], quiet()).await.unwrap());
        }
        for (i, (t, seen)) in started.into_iter().enumerate() {
            assert_eq!(t.wait().await, (i % 7) as i32, "child {i}");
            until_lost(&lp, &seen).await;
            assert_eq!(seen.borrow().log, vec!["made", "exited", "lost"]);
        }
    });
}

/// A protocol whose `process_exited` panics.
struct Panicky(ProcSeenRef);

impl BaseProtocol for Panicky {
    type Transport = SubprocessTransport;
    fn connection_lost(&mut self, _: Option<io::Error>) {
        self.0.borrow_mut().lost = true;
    }
}

impl SubprocessProtocol for Panicky {
    fn process_exited(&mut self) {
        panic!("boom in process_exited");
    }
}

#[test]
fn panicking_protocol_is_reported_and_the_end_still_comes() {
    let mut tl = TestLoop::new();
    let errors = tl.expect_errors();
    let lp = tl.lp();
    tl.block_on(async move {
        let seen = ProcSeenRef::default();
        let s = seen.clone();
        let (t, _) = lp
            .subprocess_exec(move || Panicky(s), CHILD, ["exit", "1"], quiet())
            .await
            .unwrap();
        assert_eq!(t.wait().await, 1);
        until_lost(&lp, &seen).await;
    });
    let errors = errors.borrow();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("process_exited"), "{}", errors[0]);
    assert!(errors[0].contains("boom"), "{}", errors[0]);
}

// ----- pipes -------------------------------------------------------------

use ringloop::process::PipeTransport;
use ringloop_uring_tests::pattern;

/// The stdin pipe's transport.
fn stdin_of(t: &SubprocessTransport) -> ringloop::WritePipeTransport {
    match t.get_pipe_transport(0) {
        Some(PipeTransport::Write(w)) => w,
        other => panic!("stdin is not a write pipe: {other:?}"),
    }
}

/// The log without flow-control events.
fn events(seen: &ProcSeenRef) -> Vec<String> {
    seen.borrow()
        .log
        .iter()
        .filter(|e| *e != "pause" && *e != "resume")
        .cloned()
        .collect()
}

/// asyncio's rule: `connection_lost` last, after `process_exited` and
/// after every `pipe_connection_lost`.
fn assert_end_order(log: &[String], pipes: &[i32]) {
    assert_eq!(log.first().map(String::as_str), Some("made"), "{log:?}");
    assert_eq!(log.last().map(String::as_str), Some("lost"), "{log:?}");
    assert_eq!(log.iter().filter(|e| *e == "lost").count(), 1, "{log:?}");
    assert_eq!(log.iter().filter(|e| *e == "exited").count(), 1, "{log:?}");
    for fd in pipes {
        let n = log
            .iter()
            .filter(|e| e.starts_with(&format!("pipe_lost {fd} ")))
            .count();
        assert_eq!(n, 1, "pipe {fd}: {log:?}");
    }
    // No data for a pipe after its pipe_connection_lost.
    for fd in [1, 2] {
        if let Some(lost_at) = log
            .iter()
            .position(|e| e.starts_with(&format!("pipe_lost {fd} ")))
        {
            let data = format!("data {fd}");
            assert!(
                !log[lost_at..].contains(&data),
                "data after pipe_lost {fd}: {log:?}"
            );
        }
    }
}

#[test]
fn four_mib_each_way_at_once_without_deadlock() {
    const N: usize = 4 << 20;
    let tl = TestLoop::new();
    let lp = tl.lp();
    let (code, seen) = tl.block_on(async move {
        let (t, seen) = exec(
            &lp,
            CHILD,
            &["big", "4194304", "11", "12", "13"],
            Default::default(),
        )
        .await
        .unwrap();
        let stdin = stdin_of(&t);
        stdin.write(&pattern(N, 11)).unwrap();
        stdin.close();
        let code = t.wait().await;
        until_lost(&lp, &seen).await;
        (code, seen)
    });
    assert_eq!(code, 0, "the child saw different stdin bytes");
    let s = seen.borrow();
    assert!(
        s.out == pattern(N, 12),
        "stdout differs ({} bytes)",
        s.out.len()
    );
    assert!(
        s.err == pattern(N, 13),
        "stderr differs ({} bytes)",
        s.err.len()
    );
    assert_end_order(&events(&seen), &[0, 1, 2]);
    // 4 MiB into a pipe the child drains slowly: flow control ran.
    assert!(s.log.iter().any(|e| e == "pause"), "{:?}", s.log);
}

#[test]
fn cat_round_trip_and_event_order() {
    let tl = TestLoop::new();
    let lp = tl.lp();
    let seen = tl.block_on(async move {
        let (t, seen) = exec(&lp, CHILD, &["cat"], Default::default())
            .await
            .unwrap();
        assert!(matches!(
            t.get_pipe_transport(1),
            Some(PipeTransport::Read(_))
        ));
        assert!(matches!(
            t.get_pipe_transport(2),
            Some(PipeTransport::Read(_))
        ));
        let stdin = stdin_of(&t);
        stdin.writelines([&b"hello "[..], b"world"]).unwrap();
        stdin.write_eof();
        assert_eq!(t.wait().await, 0);
        until_lost(&lp, &seen).await;
        seen
    });
    assert_eq!(seen.borrow().out, b"hello world");
    assert!(seen.borrow().err.is_empty());
    assert_end_order(&events(&seen), &[0, 1, 2]);
}

#[test]
fn stderr_to_stdout_through_one_pipe() {
    let tl = TestLoop::new();
    let lp = tl.lp();
    let seen = tl.block_on(async move {
        let options = SubprocessOptions::default()
            .stdin(Stdio::Null)
            .stderr(Stdio::Stdout);
        let (t, seen) = exec(&lp, CHILD, &["out-err"], options).await.unwrap();
        assert!(t.get_pipe_transport(0).is_none());
        assert!(
            t.get_pipe_transport(2).is_none(),
            "stderr has no pipe of its own"
        );
        t.wait().await;
        until_lost(&lp, &seen).await;
        seen
    });
    assert_eq!(seen.borrow().out, b"out\nerr\n");
    assert_end_order(&events(&seen), &[1]);
}

/// `dev:ino` of one of our descriptors, as the child's `stat` prints it.
fn file_id(fd: i32) -> String {
    // SAFETY (test): plain data the kernel fills.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY (test): a valid out-pointer.
    if unsafe { libc::fstat(fd, &mut st) } < 0 {
        return "closed".into();
    }
    format!("{}:{}", st.st_dev, st.st_ino)
}

#[test]
fn inherit_and_null_stdio() {
    let tl = TestLoop::new();
    let lp = tl.lp();
    let err = tl.block_on(async move {
        let options = SubprocessOptions::default()
            .stdin(Stdio::Inherit)
            .stdout(Stdio::Null)
            .stderr(Stdio::Pipe);
        let (t, seen) = exec(&lp, CHILD, &["stat"], options).await.unwrap();
        t.wait().await;
        until_lost(&lp, &seen).await;
        let err = String::from_utf8(seen.borrow().err.clone()).unwrap();
        err
    });
    let ids: Vec<&str> = err.split(' ').collect();
    assert_eq!(ids[0], file_id(0), "stdin is inherited");
    let null = std::fs::File::open("/dev/null").unwrap();
    assert_eq!(
        ids[1],
        file_id(std::os::fd::AsRawFd::as_raw_fd(&null)),
        "stdout is /dev/null"
    );
}

#[test]
fn broken_stdin_pipe_is_reported_not_fatal() {
    let tl = TestLoop::new();
    let lp = tl.lp();
    let seen = tl.block_on(async move {
        let options = SubprocessOptions::default()
            .stdout(Stdio::Null)
            .stderr(Stdio::Null);
        let (t, seen) = exec(&lp, CHILD, &["exit", "0"], options).await.unwrap();
        assert_eq!(t.wait().await, 0);
        // The reader is gone: far more than a pipe holds.
        stdin_of(&t).write(&vec![7u8; 1 << 20]).unwrap();
        until_lost(&lp, &seen).await;
        seen
    });
    let log = events(&seen);
    assert!(
        log.contains(&"pipe_lost 0 BrokenPipe".to_string()),
        "{log:?}"
    );
    assert_end_order(&log, &[0]);
}

#[test]
fn close_with_pipes_kills_and_ends() {
    let tl = TestLoop::new();
    let lp = tl.lp();
    let seen = tl.block_on(async move {
        let (t, seen) = exec(&lp, CHILD, &["cat"], Default::default())
            .await
            .unwrap();
        stdin_of(&t).write(b"never read to the end").unwrap();
        t.close();
        assert!(t.get_pipe_transport(1).unwrap().is_closing());
        assert_eq!(t.wait().await, -libc::SIGKILL);
        until_lost(&lp, &seen).await;
        seen
    });
    assert_end_order(&events(&seen), &[0, 1, 2]);
}

#[test]
fn child_gets_default_sigpipe() {
    // Write pipes make the loop ignore SIGPIPE; children must not inherit
    // that (a `yes | head` pipeline would never end). `cat` shows what it
    // inherited (a Rust child would ignore SIGPIPE itself). Both spawn
    // paths: fork (close_fds) and posix_spawn.
    let tl = TestLoop::new();
    for close_fds in [true, false] {
        let lp = tl.lp();
        let status = tl.block_on(async move {
            let options = SubprocessOptions::default().close_fds(close_fds);
            // Make sure SIGPIPE is ignored here first.
            let (t, seen) = exec(&lp, CHILD, &["cat"], Default::default())
                .await
                .unwrap();
            stdin_of(&t).close();
            t.wait().await;
            until_lost(&lp, &seen).await;
            let (t, seen) = exec(&lp, "cat", &["/proc/self/status"], options)
                .await
                .unwrap();
            t.wait().await;
            until_lost(&lp, &seen).await;
            let out = String::from_utf8(seen.borrow().out.clone()).unwrap();
            out
        });
        let ignored = status
            .lines()
            .find_map(|l| l.strip_prefix("SigIgn:"))
            .map(|m| u64::from_str_radix(m.trim(), 16).unwrap())
            .unwrap();
        assert_eq!(
            ignored & (1 << (libc::SIGPIPE - 1)),
            0,
            "close_fds={close_fds}"
        );
    }
}

/// A protocol that writes to stdin from `connection_made` and closes the
/// transport from `pipe_data_received`: re-entrant calls work.
struct Reentrant(ProcSeenRef, Option<SubprocessTransport>);

impl BaseProtocol for Reentrant {
    type Transport = SubprocessTransport;
    fn connection_made(&mut self, t: SubprocessTransport) {
        stdin_of(&t).write(b"ping").unwrap();
        stdin_of(&t).write_eof();
        self.1 = Some(t);
    }
    fn connection_lost(&mut self, _: Option<io::Error>) {
        self.0.borrow_mut().lost = true;
        self.1 = None;
    }
}

impl SubprocessProtocol for Reentrant {
    fn pipe_data_received(&mut self, _fd: i32, data: &[u8]) {
        self.0.borrow_mut().out.extend_from_slice(data);
        if let Some(t) = &self.1 {
            t.close();
        }
    }
}

#[test]
fn protocol_may_call_back_into_the_transport() {
    let tl = TestLoop::new();
    let lp = tl.lp();
    tl.block_on(async move {
        let seen = ProcSeenRef::default();
        let s = seen.clone();
        let (t, _) = lp
            .subprocess_exec(
                move || Reentrant(s, None),
                CHILD,
                ["cat"],
                Default::default(),
            )
            .await
            .unwrap();
        t.wait().await;
        until_lost(&lp, &seen).await;
        assert_eq!(seen.borrow().out, b"ping");
    });
}

#[test]
fn wait_returns_at_exit_while_a_grandchild_holds_the_pipe() {
    // asyncio 3.7's wait(): the return code as soon as the child exits;
    // connection_lost waits for the pipes, which a background grandchild
    // keeps open here (for a second).
    let tl = TestLoop::new();
    let lp = tl.lp();
    tl.block_on(async move {
        let (proto, seen) = ringloop_uring_tests::subproc::ProcRecorder::new();
        let options = SubprocessOptions::default()
            .stdin(Stdio::Null)
            .stderr(Stdio::Null);
        let cmd = format!("'{CHILD}' sleep 1 & exit 0");
        let started = std::time::Instant::now();
        let (t, _) = lp
            .subprocess_shell(move || proto, cmd, options)
            .await
            .unwrap();
        assert_eq!(t.wait().await, 0);
        assert!(started.elapsed() < std::time::Duration::from_millis(800));
        lp.sleep(std::time::Duration::from_millis(50))
            .unwrap()
            .await;
        assert_eq!(
            seen.borrow().log,
            vec!["made", "exited"],
            "stdout is still open"
        );
        // Closing the transport closes the pipe: the end comes now.
        t.close();
        until_lost(&lp, &seen).await;
        assert!(started.elapsed() < std::time::Duration::from_millis(800));
        assert_end_order(&events(&seen), &[1]);
    });
}

/// A protocol that only proves it was dropped.
struct Dropped(
    #[allow(dead_code)] ringloop_uring_tests::DropSentinel,
    Option<SubprocessTransport>,
);

impl BaseProtocol for Dropped {
    type Transport = SubprocessTransport;
    fn connection_made(&mut self, t: SubprocessTransport) {
        // Holds the transport: a cycle that closing the loop must break.
        self.1 = Some(t);
    }
}

impl SubprocessProtocol for Dropped {}

#[test]
fn closing_the_loop_releases_transport_and_protocol() {
    // A running child with open pipes, and an exited child whose pipe a
    // grandchild keeps open: in both cases closing the loop frees the
    // protocol (no reference cycle survives) and calls nothing more.
    for cmd in [
        format!("'{CHILD}' cat"),
        format!("'{CHILD}' sleep 1 & exit 0"),
    ] {
        let tl = TestLoop::new();
        let lp = tl.lp();
        let flag = ringloop_uring_tests::DropFlag::new();
        let sentinel = flag.sentinel();
        let exited = cmd.ends_with("exit 0");
        let t = tl.block_on(async move {
            let (t, _) = lp
                .subprocess_shell(move || Dropped(sentinel, None), cmd, Default::default())
                .await
                .unwrap();
            if exited {
                t.wait().await;
            }
            t
        });
        assert_eq!(flag.drops(), 0);
        tl.lp().close().unwrap();
        assert_eq!(flag.drops(), 1, "protocol leaked (exited={exited})");
        drop(t);
    }
}
