//! Subprocess checks that look at the whole process (its children, its
//! descriptor table), so they run alone: no harness, `main` runs each
//! scenario in turn on the backend `RINGLOOP_BACKEND` selects.
//!
//! - no zombie is left, and a child the loop did not start is not reaped;
//! - a failed spawn leaks no descriptor;
//! - `close_fds` keeps an inheritable descriptor from the child;
//! - closing the loop kills a running child, which is then reaped;
//! - a `subprocess_exec` future dropped midway kills and reaps its child;
//!   a protocol that already heard `connection_made` still gets the rest,
//!   `connection_lost` last;
//! - without pidfds (seccomp makes `pidfd_open` fail with ENOSYS, as on
//!   kernels before 5.3) children are still watched, reaped and
//!   signalled (re-runs this binary as a child with
//!   `RINGLOOP_NO_PIDFD_CHILD=1`).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::time::{Duration, Instant};

use ringloop::process::{Stdio, SubprocessOptions};
use ringloop_uring_tests::subproc::{exec, until_lost};
use ringloop_uring_tests::{fd_snapshot, test_child, TestLoop};

const CHILD: &str = test_child!();
const NO_PIDFD: &str = "RINGLOOP_NO_PIDFD_CHILD";

fn quiet() -> SubprocessOptions {
    SubprocessOptions::default()
        .stdin(Stdio::Null)
        .stdout(Stdio::Null)
        .stderr(Stdio::Null)
}

/// `waitid(P_ALL, WNOHANG | WNOWAIT)`: `Err(ECHILD)` when this process
/// has no child at all (running or zombie). Reaps nothing.
fn any_child_left() -> io::Result<libc::pid_t> {
    // SAFETY (test): plain data the kernel fills.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY (test): a valid out-pointer; WNOWAIT leaves any child as it
    // is.
    let rc = unsafe {
        libc::waitid(
            libc::P_ALL,
            0,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        // SAFETY (test): filled by waitid (0 when a child runs).
        Ok(unsafe { info.si_pid() })
    }
}

/// Runs the loop until this process has no child left (bounded).
fn until_no_child(tl: &TestLoop) {
    let lp = tl.lp();
    tl.block_on(async move {
        ringloop_uring_tests::proto::wait_until(&lp, || {
            any_child_left().err().and_then(|e| e.raw_os_error()) == Some(libc::ECHILD)
        })
        .await
    });
}

fn run_children(tl: &TestLoop, n: u32) {
    let lp = tl.lp();
    tl.block_on(async move {
        let mut started = Vec::new();
        for i in 0..n {
            let code: &'static str = Box::leak((i % 5).to_string().into_boxed_str());
            started.push(exec(&lp, CHILD, &["exit", code], quiet()).await.unwrap());
        }
        for (i, (t, seen)) in started.into_iter().enumerate() {
            assert_eq!(t.wait().await, (i % 5) as i32);
            until_lost(&lp, &seen).await;
        }
    });
}

fn no_zombies_and_foreign_children_untouched() {
    // A child the loop did not start, still running while the loop reaps.
    let mut foreign = Command::new(CHILD).args(["exit", "4"]).spawn().unwrap();
    let tl = TestLoop::new();
    run_children(&tl, 100);
    drop(tl);
    // The loop reaped none of it: it is still ours to wait for.
    let status = foreign.wait().unwrap();
    assert_eq!(status.code(), Some(4));
    // And nothing else is left, not even a zombie.
    let left = any_child_left();
    assert_eq!(
        left.as_ref().map_err(io::Error::raw_os_error).err(),
        Some(Some(libc::ECHILD)),
        "{left:?}"
    );
}

fn failed_spawns_leak_no_descriptor() {
    let tl = TestLoop::new();
    let before = fd_snapshot();
    for _ in 0..20 {
        let lp = tl.lp();
        let e = tl
            .block_on(async move {
                // Pipes everywhere: they must all be closed again.
                exec(
                    &lp,
                    "/nonexistent/ringloop-missing",
                    &[],
                    Default::default(),
                )
                .await
            })
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        let lp = tl.lp();
        let e = tl
            .block_on(async move { exec(&lp, "", &[], Default::default()).await })
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
    before.assert_nothing_new("descriptors leaked by failed spawns");
    // And a normal run leaks none either, pipes included: they are all
    // closed when connection_lost runs.
    run_children(&tl, 3);
    before.assert_nothing_new("descriptors leaked by a run");
    let lp = tl.lp();
    let at_lost = before.clone();
    let open_at_lost = tl.block_on(async move {
        let (t, seen) = exec(&lp, CHILD, &["cat"], Default::default())
            .await
            .unwrap();
        let stdin = t.get_pipe_transport(0).unwrap();
        stdin.as_write().unwrap().write(b"some bytes").unwrap();
        stdin.close();
        assert_eq!(t.wait().await, 0);
        until_lost(&lp, &seen).await;
        assert_eq!(seen.borrow().out, b"some bytes");
        at_lost.new_since()
    });
    assert!(
        open_at_lost.is_empty(),
        "pipes still open at connection_lost: {open_at_lost:?}"
    );
}

/// A pipe without close-on-exec, as a C library or `libc::pipe` makes.
fn inheritable_pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: room for the two descriptors pipe writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: pipe just returned them; we own them.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn fds_seen_by_child(tl: &TestLoop, options: SubprocessOptions) -> Vec<i32> {
    let path = std::env::temp_dir().join(format!("ringloop-fds-{}", std::process::id()));
    let f = std::fs::File::create(&path).unwrap();
    let lp = tl.lp();
    let code = tl.block_on(async move {
        let (t, seen) = exec(&lp, CHILD, &["fds"], options.stdout(Stdio::Fd(f.into())))
            .await
            .unwrap();
        let code = t.wait().await;
        until_lost(&lp, &seen).await;
        code
    });
    assert_eq!(code, 0);
    let text = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    text.split(' ').map(|s| s.parse().unwrap()).collect()
}

fn close_fds_hides_inheritable_descriptors() {
    let tl = TestLoop::new();
    let (r, w) = inheritable_pipe();
    let (r, w) = (r.as_raw_fd(), w.as_raw_fd());
    let hidden = fds_seen_by_child(&tl, quiet());
    assert_eq!(hidden, vec![0, 1, 2], "close_fds (the default) leaks");
    let shown = fds_seen_by_child(&tl, quiet().close_fds(false));
    assert!(
        shown.contains(&r) && shown.contains(&w),
        "close_fds(false) must inherit {r} and {w}: {shown:?}"
    );
    // Exactly the descriptors without close-on-exec: the loop's own
    // (ring, eventfd, pidfds, pipes) never reach a child.
    assert_eq!(shown, inheritable_fds());
}

/// This process's descriptors that lack close-on-exec.
fn inheritable_fds() -> Vec<i32> {
    let mut fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| {
            // SAFETY: F_GETFD only reads the flags (-1 for read_dir's own,
            // already closed, descriptor).
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            flags >= 0 && flags & libc::FD_CLOEXEC == 0
        })
        .collect();
    fds.sort();
    fds
}

fn cancelled_spawn_kills_and_reaps() {
    let tl = TestLoop::new();
    let lp = tl.lp();
    let task = lp
        .create_task(async move {
            let l = ringloop::get_running_loop().unwrap();
            exec(&l, CHILD, &["sleep", "60"], quiet()).await
        })
        .unwrap();
    // One iteration: the task spawns the child, then waits for
    // connection_made; cancel it there.
    lp.run_once().unwrap();
    assert!(
        any_child_left().is_ok(),
        "the child should have been spawned"
    );
    assert!(task.cancel());
    until_no_child(&tl);
}

fn cancelled_after_connection_made_still_ends_properly() {
    let tl = TestLoop::new();
    let lp = tl.lp();
    let (proto, seen) = ringloop_uring_tests::subproc::ProcRecorder::new();
    let task = lp
        .create_task(async move {
            let l = ringloop::get_running_loop().unwrap();
            l.subprocess_exec(move || proto, CHILD, ["cat"], Default::default())
                .await
                .map(|_| ())
        })
        .unwrap();
    let mut iterations = 0;
    while seen.borrow().log.is_empty() {
        lp.run_once().unwrap();
        iterations += 1;
        assert!(iterations < 100, "connection_made never ran");
    }
    // connection_made ran; subprocess_exec has not returned yet.
    assert!(task.cancel(), "the spawn future already finished");
    until_no_child(&tl);
    let s = seen.clone();
    let l = tl.lp();
    tl.block_on(async move {
        ringloop_uring_tests::proto::wait_until(&l, move || s.borrow().lost).await
    });
    let log = seen.borrow().log.clone();
    assert_eq!(log.first().map(String::as_str), Some("made"), "{log:?}");
    assert_eq!(log.last().map(String::as_str), Some("lost"), "{log:?}");
    assert!(log.contains(&"exited".to_string()), "{log:?}");
}

fn pid_gone(pid: u32) -> bool {
    // A zombie still has /proc/<pid>; a reaped child does not (a reused
    // pid within the test's second is not a concern here).
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn loop_close_kills_running_child() {
    let tl = TestLoop::new();
    let lp = tl.lp();
    let pid = tl.block_on(async move {
        let (t, _) = exec(&lp, CHILD, &["sleep", "60"], quiet()).await.unwrap();
        t.get_pid()
    });
    drop(tl);
    // Killed at close; reaped then or at a later spawn.
    let start = Instant::now();
    while !pid_gone(pid) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "child {pid} left behind"
        );
        std::thread::sleep(Duration::from_millis(10));
        let tl = TestLoop::new();
        run_children(&tl, 1);
    }
}

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

/// Makes `pidfd_open` and `pidfd_send_signal` fail with ENOSYS here.
fn forbid_pidfds() {
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    const RET_ERRNO: u32 = 0x0005_0000;
    const RET_ALLOW: u32 = 0x7fff_0000;
    let f = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let mut prog = [
        f(LD_W_ABS, 0, 0, 4),
        f(JEQ_K, 0, 3, AUDIT_ARCH),
        f(LD_W_ABS, 0, 0, 0),
        f(JEQ_K, 2, 0, libc::SYS_pidfd_open as u32),
        f(JEQ_K, 1, 0, libc::SYS_pidfd_send_signal as u32),
        f(RET_K, 0, 0, RET_ALLOW),
        f(RET_K, 0, 0, RET_ERRNO | libc::ENOSYS as u32),
    ];
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY (test): prctl with integers, then with a valid filter.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &fprog as *const libc::sock_fprog
            ),
            0
        );
    }
}

fn no_pidfd_child() {
    forbid_pidfds();
    // SAFETY: a syscall with integer arguments.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
    assert!(rc < 0, "the filter must refuse pidfd_open");
    let tl = TestLoop::new();
    run_children(&tl, 10);
    let lp = tl.lp();
    tl.block_on(async move {
        let (t, seen) = exec(&lp, CHILD, &["sleep", "60"], quiet()).await.unwrap();
        t.terminate().unwrap();
        assert_eq!(t.wait().await, -libc::SIGTERM);
        until_lost(&lp, &seen).await;
        let e = t.kill().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ESRCH));
    });
    drop(tl);
    assert!(any_child_left().is_err(), "a child was left");
    println!("no-pidfd child: ok");
}

fn without_pidfds() {
    let out = Command::new(std::env::current_exe().unwrap())
        .env(NO_PIDFD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("no-pidfd child: ok"),
        "child failed: {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn main() {
    if std::env::var_os(NO_PIDFD).is_some() {
        no_pidfd_child();
        return;
    }
    let scenarios: [(&str, fn()); 7] = [
        (
            "no_zombies_and_foreign_children_untouched",
            no_zombies_and_foreign_children_untouched,
        ),
        (
            "failed_spawns_leak_no_descriptor",
            failed_spawns_leak_no_descriptor,
        ),
        (
            "close_fds_hides_inheritable_descriptors",
            close_fds_hides_inheritable_descriptors,
        ),
        (
            "loop_close_kills_running_child",
            loop_close_kills_running_child,
        ),
        (
            "cancelled_spawn_kills_and_reaps",
            cancelled_spawn_kills_and_reaps,
        ),
        (
            "cancelled_after_connection_made_still_ends_properly",
            cancelled_after_connection_made_still_ends_properly,
        ),
        ("without_pidfds", without_pidfds),
    ];
    let mut failed = 0;
    for (name, f) in scenarios {
        match std::panic::catch_unwind(f) {
            Ok(()) => println!("test {name} ... ok"),
            Err(_) => {
                println!("test {name} ... FAILED");
                failed += 1;
            }
        }
    }
    // The summary line `.ci/test` counts ("NAME: N passed, N failed").
    println!("backend: {}", ringloop_uring_tests::backend_name());
    println!(
        "subprocess_global: {} passed, {failed} failed",
        scenarios.len() - failed
    );
    if failed > 0 {
        std::process::exit(1);
    }
}
