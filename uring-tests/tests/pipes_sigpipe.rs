//! A write pipe whose reader is gone must not kill the process with
//! SIGPIPE, even when SIGPIPE is at its default disposition (Rust's
//! runtime ignores it before `main`; a C host or `-Zon-broken-pipe`
//! build does not). A binary of its own: it changes the process-wide
//! disposition.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

use ringloop::{BaseProtocol, WritePipeProtocol, WritePipeTransport};
use ringloop_uring_tests::pipes::os_pipe;
use ringloop_uring_tests::proto::wait_until;
use ringloop_uring_tests::{pattern, TestLoop};

fn disposition() -> libc::sighandler_t {
    // SAFETY: a null new action only reads the current one into `old`.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    assert_eq!(
        unsafe { libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) },
        0
    );
    old.sa_sigaction
}

fn set_disposition(h: libc::sighandler_t) {
    // SAFETY: installs SIG_DFL, SIG_IGN or `on_sigpipe` (which only
    // touches an atomic).
    unsafe { libc::signal(libc::SIGPIPE, h) };
}

static CAUGHT: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_sigpipe(_: libc::c_int) {
    CAUGHT.fetch_add(1, Ordering::SeqCst);
}

/// Writes 1 MiB from `connection_made`, so the pump's first run
/// writes; records how the transport ended.
struct WriteAtOnce {
    lost: Rc<RefCell<Option<String>>>,
}

impl BaseProtocol for WriteAtOnce {
    type Transport = WritePipeTransport;
    fn connection_made(&mut self, t: WritePipeTransport) {
        t.write(&pattern(1 << 20, 2)).unwrap();
    }
    fn connection_lost(&mut self, e: Option<io::Error>) {
        *self.lost.borrow_mut() = Some(format!("{:?}", e.map(|e| e.kind())));
    }
}

impl WritePipeProtocol for WriteAtOnce {}

/// Writes into a pipe whose reader is already gone (so the first thing
/// the transport does is a `writev` that fails with `EPIPE` and raises
/// SIGPIPE); returns how it ended.
fn write_to_vanished_reader(tl: &TestLoop) -> String {
    let (r, w) = os_pipe();
    drop(r);
    let lost: Rc<RefCell<Option<String>>> = Rc::default();
    let l = lost.clone();
    tl.block_on(
        tl.lp()
            .connect_write_pipe(move || WriteAtOnce { lost: l }, w),
    )
    .expect("connect_write_pipe");
    let lp = tl.lp();
    let l = lost.clone();
    tl.block_on(async move { wait_until(&lp, move || l.borrow().is_some()).await });
    let how = lost.borrow().clone().unwrap();
    how
}

#[test]
fn broken_pipe_with_default_sigpipe_does_not_kill_the_process() {
    set_disposition(libc::SIG_DFL);
    let tl = TestLoop::new();
    let how = write_to_vanished_reader(&tl);
    // Still alive: the write failed with EPIPE instead.
    assert_eq!(how, "Some(BrokenPipe)");
    assert_eq!(disposition(), libc::SIG_IGN, "SIGPIPE must now be ignored");

    // A handler the program installed is left alone (and runs).
    set_disposition(on_sigpipe as *const () as libc::sighandler_t);
    let how = write_to_vanished_reader(&tl);
    assert_eq!(how, "Some(BrokenPipe)");
    assert_eq!(
        disposition(),
        on_sigpipe as *const () as libc::sighandler_t,
        "the program's own SIGPIPE handler was replaced"
    );
    // The first write met the closed pipe: the handler ran.
    assert!(
        CAUGHT.load(Ordering::SeqCst) >= 1,
        "no write reached the pipe"
    );
    set_disposition(libc::SIG_IGN);
}
