//! The high-level API (`create_subprocess_exec/shell`, `Process`) on both
//! backends: communicate without deadlock, streaming reads and writes,
//! flow control, signals, broken pipes.

use std::io;
use std::time::Duration;

use ringloop::process::{self, Stdio, SubprocessOptions};
use ringloop::streams::{StreamError, DEFAULT_LIMIT};
use ringloop_uring_tests::{pattern, test_child, TestLoop};

const CHILD: &str = test_child!();

fn piped() -> SubprocessOptions {
    SubprocessOptions::default()
        .stdin(Stdio::Pipe)
        .stdout(Stdio::Pipe)
        .stderr(Stdio::Pipe)
}

#[test]
fn communicate_four_mib_each_way() {
    const N: usize = 4 << 20;
    let tl = TestLoop::new();
    let lp = tl.lp();
    tl.block_on(async move {
        let p = process::create_subprocess_exec(
            &lp,
            CHILD,
            ["big", "4194304", "21", "22", "23"],
            DEFAULT_LIMIT,
            piped(),
        )
        .await
        .unwrap();
        let (out, err) = p.communicate(Some(&pattern(N, 21))).await.unwrap();
        assert_eq!(
            p.returncode(),
            Some(0),
            "the child saw different stdin bytes"
        );
        assert!(out.unwrap() == pattern(N, 22), "stdout differs");
        assert!(err.unwrap() == pattern(N, 23), "stderr differs");
    });
}

#[test]
fn communicate_without_pipes_and_input_errors() {
    let tl = TestLoop::new();
    let lp = tl.lp();
    tl.block_on(async move {
        let options = SubprocessOptions::default()
            .stdin(Stdio::Null)
            .stdout(Stdio::Null)
            .stderr(Stdio::Null);
        let p = process::create_subprocess_exec(&lp, CHILD, ["exit", "3"], DEFAULT_LIMIT, options)
            .await
            .unwrap();
        assert!(p.stdin.is_none() && p.stdout.is_none() && p.stderr.is_none());
        let e = p.communicate(Some(b"x")).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(p.communicate(None).await.unwrap(), (None, None));
        assert_eq!(p.returncode(), Some(3));
        assert_eq!(p.wait().await, 3);
    });
}

#[test]
fn communicate_closes_stdin_even_without_input() {
    // `cat` only ends at EOF: asyncio's communicate(None) would hang.
    let tl = TestLoop::new();
    let lp = tl.lp();
    tl.block_on(async move {
        let p = process::create_subprocess_exec(&lp, CHILD, ["cat"], DEFAULT_LIMIT, piped())
            .await
            .unwrap();
        let (out, err) = p.communicate(None).await.unwrap();
        assert_eq!(out.as_deref(), Some(&b""[..]));
        assert_eq!(err.as_deref(), Some(&b""[..]));
        assert_eq!(p.returncode(), Some(0));
    });
}

#[test]
fn communicate_with_input_after_stdin_was_closed_returns_the_output() {
    // asyncio drops the input (the transport is closing) and forgives the
    // drain's ConnectionResetError: what the child wrote comes back.
    let tl = TestLoop::new();
    let lp = tl.lp();
    tl.block_on(async move {
        let p = process::create_subprocess_exec(&lp, CHILD, ["cat"], DEFAULT_LIMIT, piped())
            .await
            .unwrap();
        let stdin = p.stdin.clone().unwrap();
        stdin.write(b"hi").unwrap();
        stdin.close();
        let (out, _) = p.communicate(Some(b"dropped")).await.unwrap();
        assert_eq!(out.as_deref(), Some(&b"hi"[..]));
        assert_eq!(p.returncode(), Some(0));
    });
}

#[test]
fn interactive_lines_through_cat() {
    let tl = TestLoop::new();
    let lp = tl.lp();
    tl.block_on(async move {
        let options = SubprocessOptions::default()
            .stdin(Stdio::Pipe)
            .stdout(Stdio::Pipe);
        let p =
            process::create_subprocess_exec(&lp, "cat", Vec::<&str>::new(), DEFAULT_LIMIT, options)
                .await
                .unwrap();
        assert!(p.stderr.is_none(), "stderr is inherited by default");
        let stdin = p.stdin.clone().unwrap();
        let stdout = p.stdout.clone().unwrap();
        for i in 0..20 {
            let line = format!("line {i}\n");
            stdin.write(line.as_bytes()).unwrap();
            stdin.drain().await.unwrap();
            assert_eq!(&stdout.readline().await.unwrap()[..], line.as_bytes());
        }
        stdin.write_eof();
        stdin.wait_closed().await.unwrap();
        assert_eq!(&stdout.read(-1).await.unwrap()[..], b"");
        assert!(stdout.at_eof());
        assert_eq!(p.wait().await, 0);
    });
}

#[test]
fn shell_with_inherited_defaults() {
    let tl = TestLoop::new();
    let lp = tl.lp();
    tl.block_on(async move {
        let options = SubprocessOptions::default().stdout(Stdio::Pipe);
        let p = process::create_subprocess_shell(&lp, "echo hi; exit 4", DEFAULT_LIMIT, options)
            .await
            .unwrap();
        assert!(p.stdin.is_none());
        let (out, err) = p.communicate(None).await.unwrap();
        assert_eq!(out.as_deref(), Some(&b"hi\n"[..]));
        assert_eq!(err, None);
        assert_eq!(p.returncode(), Some(4));
    });
}

#[test]
fn kill_terminate_send_signal_through_process() {
    let tl = TestLoop::new();
    let lp = tl.lp();
    tl.block_on(async move {
        for (signum, how) in [(libc::SIGKILL, 0), (libc::SIGTERM, 1), (libc::SIGINT, 2)] {
            let p = process::create_subprocess_exec(
                &lp,
                CHILD,
                ["sleep", "60"],
                DEFAULT_LIMIT,
                SubprocessOptions::default(),
            )
            .await
            .unwrap();
            assert!(p.pid() > 0);
            assert_eq!(p.returncode(), None);
            match how {
                0 => p.kill().unwrap(),
                1 => p.terminate().unwrap(),
                _ => p.send_signal(signum).unwrap(),
            }
            assert_eq!(p.wait().await, -signum);
            assert_eq!(p.returncode(), Some(-signum));
            assert_eq!(p.kill().unwrap_err().raw_os_error(), Some(libc::ESRCH));
        }
    });
}

#[test]
fn child_that_stops_reading_is_not_an_error_for_communicate() {
    let tl = TestLoop::new();
    let lp = tl.lp();
    tl.block_on(async move {
        let p = process::create_subprocess_exec(&lp, CHILD, ["exit", "0"], DEFAULT_LIMIT, piped())
            .await
            .unwrap();
        let (out, _) = p.communicate(Some(&vec![1u8; 1 << 20])).await.unwrap();
        assert_eq!(out.as_deref(), Some(&b""[..]));
        assert_eq!(p.returncode(), Some(0));

        // Directly: drain fails (with the broken pipe, or with asyncio's
        // "Connection lost" when the pipe was gone before it began), and
        // wait_closed gives the pipe's error.
        let p = process::create_subprocess_exec(&lp, CHILD, ["exit", "0"], DEFAULT_LIMIT, piped())
            .await
            .unwrap();
        p.wait().await;
        let stdin = p.stdin.clone().unwrap();
        stdin.write(&vec![1u8; 1 << 20]).unwrap();
        let e = stdin.drain().await.unwrap_err();
        assert!(
            matches!(&e, StreamError::Io(e) if matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            )),
            "{e:?}"
        );
        let e = stdin.wait_closed().await.unwrap_err();
        assert!(
            matches!(&e, StreamError::Io(e) if e.kind() == io::ErrorKind::BrokenPipe),
            "{e:?}"
        );
    });
}

#[test]
fn slow_reader_pauses_the_pipe() {
    const N: usize = 4 << 20;
    let tl = TestLoop::new();
    let lp = tl.lp();
    tl.block_on(async move {
        let options = SubprocessOptions::default()
            .stdin(Stdio::Null)
            .stdout(Stdio::Pipe)
            .stderr(Stdio::Null);
        // The child writes 4 MiB to stdout (and 4 MiB to /dev/null).
        let p = process::create_subprocess_exec(
            &lp,
            CHILD,
            ["big", "4194304", "0", "31", "32"],
            DEFAULT_LIMIT,
            options,
        )
        .await
        .unwrap();
        let stdout = p.stdout.clone().unwrap();
        lp.sleep(Duration::from_millis(200)).unwrap().await;
        // Reading paused above 2 * limit: the rest waits in the pipe and
        // the child.
        assert!(
            stdout.buffer_len() < 1 << 20,
            "{} buffered",
            stdout.buffer_len()
        );
        assert_eq!(p.returncode(), None, "the child cannot finish yet");
        let all = stdout.read(-1).await.unwrap();
        assert!(
            all == pattern(N, 31),
            "stdout differs ({} bytes)",
            all.len()
        );
        // Its stdin was /dev/null, not the expected pattern: exit 3.
        assert_eq!(p.wait().await, 3);
    });
}
