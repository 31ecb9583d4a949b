//! The automatic fallback, for real: a child process in which
//! `io_uring_setup` fails with EPERM, as container seccomp profiles make
//! it fail, gets an epoll loop that names the reason, and that loop passes
//! a smoke test (I/O, timers, a watched descriptor). Forcing io_uring
//! there is a clear error naming the cause.
//!
//! No harness: `main` is the parent, which re-runs this binary as the
//! child with `RINGLOOP_SECCOMP_CHILD=1`.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

use ringloop::{Backend, EventLoop};

const CHILD: &str = "RINGLOOP_SECCOMP_CHILD";

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

/// Makes `io_uring_setup` and `epoll_pwait2` fail with EPERM in this
/// process, for good.
fn forbid_io_uring() {
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const RET_ERRNO: u32 = 0x0005_0000;
    const RET_ALLOW: u32 = 0x7fff_0000;
    let f = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    // Also refuses epoll_pwait2 with EPERM, as profiles older than that
    // syscall do: the epoll backend must fall back to epoll_wait.
    let mut prog = [
        f(LD_W_ABS, 0, 0, 4), // seccomp_data.arch
        f(JEQ_K, 0, 3, AUDIT_ARCH),
        f(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        f(JEQ_K, 2, 0, libc::SYS_io_uring_setup as u32),
        f(JEQ_K, 1, 0, libc::SYS_epoll_pwait2 as u32),
        f(RET_K, 0, 0, RET_ALLOW),
        f(RET_K, 0, 0, RET_ERRNO | libc::EPERM as u32),
    ];
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY (test): prctl with integer arguments, then with a pointer to
    // a valid filter program that outlives the call.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &fprog as *const libc::sock_fprog
            ),
            0,
            "seccomp: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn child() {
    forbid_io_uring();
    // Forced io_uring: a clear error naming the cause, no silent switch.
    let err = EventLoop::builder()
        .backend(Backend::Uring)
        .build()
        .expect_err("io_uring must be refused under this filter");
    assert!(err.to_string().contains("EPERM"), "{err}");

    // Automatic: epoll, with the reason.
    let lp = EventLoop::new().expect("the automatic choice falls back");
    assert_eq!(lp.backend(), Backend::Epoll);
    assert!(
        lp.backend_reason().contains("EPERM"),
        "{}",
        lp.backend_reason()
    );

    // Smoke test on the fallback loop.
    let (a, b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    let l = lp.clone();
    let echoed = lp
        .run_until_complete(async move {
            l.sleep(Duration::from_millis(5)).unwrap().await;
            l.sock_sendall(&a, &b"through epoll"[..]).await.unwrap();
            l.sock_recv(&b, 64).await.unwrap()
        })
        .unwrap();
    assert_eq!(&echoed[..], b"through epoll");
    let (r, mut w) = UnixStream::pair().unwrap();
    w.write_all(b"x").unwrap();
    let l = lp.clone();
    let rfd = std::os::fd::AsRawFd::as_raw_fd(&r);
    lp.add_reader(&rfd, move || {
        l.remove_reader(&rfd);
        l.stop();
    })
    .unwrap();
    let watchdog = lp.clone();
    lp.call_later(Duration::from_secs(10), move || watchdog.stop())
        .unwrap();
    lp.run_forever().unwrap();
    assert!(!lp.remove_reader(&rfd), "the reader ran and removed itself");
    lp.close().unwrap();
    println!("seccomp child: fallback ok ({})", lp.backend_reason());
}

fn main() {
    if std::env::var_os(CHILD).is_some() {
        child();
        return;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let out = Command::new(exe)
        .env(CHILD, "1")
        .env_remove("RINGLOOP_BACKEND")
        .output()
        .expect("spawn the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !stdout.contains("fallback ok") {
        eprintln!(
            "child failed: {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            out.status
        );
        println!("fallback_seccomp: 0 passed, 1 failed");
        std::process::exit(1);
    }
    print!("{stdout}");
    println!("fallback_seccomp: 1 passed, 0 failed");
}
