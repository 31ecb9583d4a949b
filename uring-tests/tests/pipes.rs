//! Pipe transports (`connect_read_pipe`, `connect_write_pipe`): ordering,
//! EOF, flow control, broken pipes, ptys, close/abort, invalid
//! descriptors and descriptor leaks, on both backends.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::thread;
use std::time::Duration;

use ringloop::{ExtraInfo, ReadPipeTransport, WritePipeTransport};
use ringloop_uring_tests::pipes::{open_pty, os_pipe, PipeSeenRef, ReadRecorder, WriteRecorder};
use ringloop_uring_tests::proto::wait_until;
use ringloop_uring_tests::{fd_lock, fd_snapshot, pattern, TestLoop};

fn run_until(tl: &TestLoop, cond: impl FnMut() -> bool + 'static) {
    let lp = tl.lp();
    tl.block_on(async move { wait_until(&lp, cond).await });
}

fn connect_read(tl: &TestLoop, fd: OwnedFd) -> (ReadPipeTransport, PipeSeenRef) {
    let (proto, seen) = ReadRecorder::new();
    let (t, _p) = tl
        .block_on(tl.lp().connect_read_pipe(move || proto, fd))
        .expect("connect_read_pipe");
    (t, seen)
}

fn connect_write(tl: &TestLoop, fd: OwnedFd) -> (WritePipeTransport, PipeSeenRef) {
    let (proto, seen) = WriteRecorder::new();
    let (t, _p) = tl
        .block_on(tl.lp().connect_write_pipe(move || proto, fd))
        .expect("connect_write_pipe");
    (t, seen)
}

fn log(seen: &PipeSeenRef) -> Vec<String> {
    seen.borrow().log.clone()
}

/// Lets the loop run for `d` (to prove something does *not* happen).
fn idle(tl: &TestLoop, d: Duration) {
    let lp = tl.lp();
    tl.block_on(async move { lp.sleep(d).unwrap().await });
}

#[test]
fn read_pipe_delivers_in_order_then_eof_then_lost_once() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    let (r, w) = os_pipe();
    let (t, seen) = connect_read(&tl, r);
    // connect_read_pipe resolved: connection_made has run already.
    assert_eq!(log(&seen), ["made"]);
    assert!(t.is_reading());
    let payload = pattern(300_000, 7);
    let expected = payload.clone();
    let writer = thread::spawn(move || {
        let mut f = File::from(w);
        for chunk in payload.chunks(10_000) {
            f.write_all(chunk).unwrap();
        }
        // Dropping `f` closes the write end: EOF.
    });
    let s = seen.clone();
    run_until(&tl, move || s.borrow().lost());
    writer.join().unwrap();
    idle(&tl, Duration::from_millis(20));
    let s = seen.borrow();
    assert_eq!(s.bytes.len(), expected.len());
    assert!(s.bytes == expected, "bytes out of order or corrupted");
    assert_eq!(s.log, ["made", "data", "eof", "lost None"]);
    assert_eq!(s.lost_calls, 1);
    assert!(t.is_closing() && t.is_closed());
    assert!(t.fileno().is_none());
}

#[test]
fn read_pipe_pause_and_resume() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    let (r, w) = os_pipe();
    let (t, seen) = connect_read(&tl, r);
    let mut w = File::from(w);
    w.write_all(b"one").unwrap();
    let s = seen.clone();
    run_until(&tl, move || s.borrow().bytes.len() == 3);
    t.pause_reading();
    assert!(!t.is_reading());
    t.pause_reading(); // twice is harmless
    w.write_all(b"two").unwrap();
    idle(&tl, Duration::from_millis(50));
    assert_eq!(seen.borrow().bytes, b"one", "data delivered while paused");
    t.resume_reading();
    assert!(t.is_reading());
    let s = seen.clone();
    run_until(&tl, move || s.borrow().bytes.len() == 6);
    assert_eq!(seen.borrow().bytes, b"onetwo");
    // Paused from inside data_received: nothing more until resumed.
    seen.borrow_mut().pause_on_data = true;
    w.write_all(b"three").unwrap();
    let s = seen.clone();
    run_until(&tl, move || s.borrow().bytes.len() == 11);
    assert!(!t.is_reading());
    w.write_all(b"four").unwrap();
    idle(&tl, Duration::from_millis(50));
    assert_eq!(seen.borrow().bytes, b"onetwothree");
    seen.borrow_mut().pause_on_data = false;
    drop(w);
    t.resume_reading();
    let s = seen.clone();
    run_until(&tl, move || s.borrow().lost());
    assert_eq!(seen.borrow().bytes, b"onetwothreefour");
    assert_eq!(log(&seen), ["made", "data", "eof", "lost None"]);
    // Closed: pause/resume do nothing.
    t.resume_reading();
    assert!(!t.is_reading());
}

#[test]
fn read_pipe_close_is_lost_none_without_eof() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    let (r, w) = os_pipe();
    let (t, seen) = connect_read(&tl, r);
    t.close();
    assert!(t.is_closing() && !t.is_reading());
    t.close();
    let s = seen.clone();
    run_until(&tl, move || s.borrow().lost());
    idle(&tl, Duration::from_millis(10));
    assert_eq!(log(&seen), ["made", "lost None"]);
    // The read end is closed: writing now fails with EPIPE.
    let err = File::from(w).write_all(b"x").unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
}

#[test]
fn write_pipe_delivers_4mib_with_flow_control() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    let (r, w) = os_pipe();
    let (t, seen) = connect_write(&tl, w);
    assert_eq!(t.get_write_buffer_limits(), (16 * 1024, 64 * 1024));
    const TOTAL: usize = 4 << 20;
    let payload = pattern(TOTAL, 11);
    let expected = payload.clone();
    let reader = thread::spawn(move || {
        // Slow start: the buffer must fill up and pause the protocol.
        thread::sleep(Duration::from_millis(100));
        let mut got = Vec::with_capacity(TOTAL);
        File::from(r).read_to_end(&mut got).unwrap();
        got
    });
    // Producer: writes 32 KiB chunks while not paused.
    let t2 = t.clone();
    let s2 = seen.clone();
    let lp = tl.lp();
    let sent = Rc::new(Cell::new(0usize));
    let sent2 = sent.clone();
    tl.block_on(async move {
        let mut off = 0;
        while off < TOTAL {
            let paused = s2
                .borrow()
                .log
                .iter()
                .rev()
                .find(|e| *e == "pause" || *e == "resume")
                .is_some_and(|e| e == "pause");
            if paused {
                lp.sleep(Duration::from_millis(1)).unwrap().await;
                continue;
            }
            let end = (off + 32 * 1024).min(TOTAL);
            t2.write(&payload[off..end]).unwrap();
            off = end;
            sent2.set(off);
            assert!(t2.get_write_buffer_size() <= 64 * 1024 + 32 * 1024);
        }
        t2.close();
    });
    assert_eq!(sent.get(), TOTAL);
    let s = seen.clone();
    run_until(&tl, move || s.borrow().lost());
    let got = reader.join().unwrap();
    assert_eq!(got.len(), TOTAL);
    assert!(got == expected, "bytes corrupted");
    let l = log(&seen);
    assert_eq!(l.first().map(String::as_str), Some("made"));
    assert_eq!(l.last().map(String::as_str), Some("lost None"));
    let pauses = l.iter().filter(|e| *e == "pause").count();
    let resumes = l.iter().filter(|e| *e == "resume").count();
    assert!(pauses >= 1, "never paused: {l:?}");
    assert!(resumes >= 1, "never resumed: {l:?}");
    assert!(pauses - resumes <= 1);
    assert_eq!(t.get_write_buffer_size(), 0);
}

#[test]
fn write_pipe_write_eof_flushes_then_closes() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    let (r, w) = os_pipe();
    let (t, seen) = connect_write(&tl, w);
    assert!(t.can_write_eof());
    t.writelines([&b"hello "[..], &b"pipe "[..], &b"world"[..]])
        .unwrap();
    t.write_eof();
    assert!(t.is_closing());
    t.write_eof(); // twice is harmless
    let err = t.write(b"late").unwrap_err();
    assert!(matches!(err, ringloop::Error::InvalidState(_)), "{err:?}");
    let s = seen.clone();
    run_until(&tl, move || s.borrow().lost());
    let mut got = String::new();
    File::from(r).read_to_string(&mut got).unwrap();
    assert_eq!(got, "hello pipe world");
    assert_eq!(log(&seen), ["made", "lost None"]);
    assert!(t.is_closed());
}

#[test]
fn write_pipe_close_flushes_a_large_buffer() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    let (r, w) = os_pipe();
    let (t, seen) = connect_write(&tl, w);
    let payload = pattern(1 << 20, 3);
    let expected = payload.clone();
    t.write_bytes(bytes::Bytes::from(payload)).unwrap();
    t.close();
    assert!(t.is_closing());
    let reader = thread::spawn(move || {
        let mut got = Vec::new();
        File::from(r).read_to_end(&mut got).unwrap();
        got
    });
    let s = seen.clone();
    run_until(&tl, move || s.borrow().lost());
    assert!(reader.join().unwrap() == expected);
    let l = log(&seen);
    assert_eq!(l.first().map(String::as_str), Some("made"));
    assert_eq!(l.last().map(String::as_str), Some("lost None"));
    assert_eq!(seen.borrow().lost_calls, 1);
}

#[test]
fn write_pipe_abort_drops_the_buffer() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    let (r, w) = os_pipe();
    let (t, seen) = connect_write(&tl, w);
    // More than the pipe holds: some stays buffered.
    t.write(&pattern(1 << 20, 5)).unwrap();
    idle(&tl, Duration::from_millis(20));
    assert!(t.get_write_buffer_size() > 0);
    t.abort();
    assert!(t.is_closing());
    assert_eq!(t.get_write_buffer_size(), 0);
    let s = seen.clone();
    run_until(&tl, move || s.borrow().lost());
    let mut got = Vec::new();
    File::from(r).read_to_end(&mut got).unwrap();
    assert!(got.len() < 1 << 20, "abort must drop buffered data");
    let l = log(&seen);
    assert_eq!(l.last().map(String::as_str), Some("lost None"));
    assert_eq!(seen.borrow().lost_calls, 1);
    // Writes after the loss are dropped, not errors.
    for _ in 0..7 {
        t.write(b"dropped").unwrap();
    }
    t.abort();
    t.close();
    idle(&tl, Duration::from_millis(10));
    assert_eq!(seen.borrow().lost_calls, 1);
}

#[test]
fn write_pipe_notices_reader_gone_while_idle() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    let (r, w) = os_pipe();
    let (t, seen) = connect_write(&tl, w);
    t.write(b"some").unwrap();
    idle(&tl, Duration::from_millis(20));
    assert_eq!(t.get_write_buffer_size(), 0);
    drop(r);
    let s = seen.clone();
    run_until(&tl, move || s.borrow().lost());
    assert_eq!(log(&seen), ["made", "lost BrokenPipe"]);
    assert_eq!(
        seen.borrow().lost_error.as_ref().unwrap().raw_os_error(),
        Some(libc::EPIPE)
    );
    assert!(t.is_closing() && t.is_closed());
    // Later writes are dropped silently (a warning from the fifth on).
    for _ in 0..6 {
        t.write(b"x").unwrap();
    }
}

#[test]
fn write_pipe_broken_pipe_while_writing() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    let (r, w) = os_pipe();
    let (t, seen) = connect_write(&tl, w);
    // Fill the pipe and more, then let the reader go.
    t.write(&pattern(1 << 20, 9)).unwrap();
    idle(&tl, Duration::from_millis(20));
    assert!(t.get_write_buffer_size() > 0);
    drop(r);
    let s = seen.clone();
    run_until(&tl, move || s.borrow().lost());
    let l = log(&seen);
    assert_eq!(
        l.last().map(String::as_str),
        Some("lost BrokenPipe"),
        "{l:?}"
    );
    assert_eq!(seen.borrow().lost_calls, 1);
    assert_eq!(t.get_write_buffer_size(), 0);
}

#[test]
fn regular_files_and_directories_are_invalid_input() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    let dir = std::env::temp_dir().join(format!("ringloop-pipes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file_path = dir.join("regular");
    std::fs::write(&file_path, b"not a pipe").unwrap();
    let before = fd_snapshot();
    for _ in 0..3 {
        let f: OwnedFd = File::open(&file_path).unwrap().into();
        let e = tl
            .block_on(tl.lp().connect_read_pipe(|| ReadRecorder::new().0, f))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        let f: OwnedFd = File::options().write(true).open(&file_path).unwrap().into();
        let e = tl
            .block_on(tl.lp().connect_write_pipe(|| WriteRecorder::new().0, f))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        let d: OwnedFd = File::open(&dir).unwrap().into();
        let e = tl
            .block_on(tl.lp().connect_read_pipe(|| ReadRecorder::new().0, d))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
    }
    before.assert_nothing_new("a refused descriptor leaked");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn factory_is_not_called_for_an_invalid_descriptor() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    let f: OwnedFd = File::open("/proc/self/status").unwrap().into();
    let called = Rc::new(Cell::new(false));
    let c = called.clone();
    let r = tl.block_on(tl.lp().connect_read_pipe(
        move || {
            c.set(true);
            ReadRecorder::new().0
        },
        f,
    ));
    assert!(r.is_err());
    assert!(!called.get());
}

#[test]
fn pty_master_as_read_pipe_reads_then_eof_on_hangup() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    let (master, slave) = open_pty();
    let (t, seen) = connect_read(&tl, master);
    let mut slave = File::from(slave);
    slave.write_all(b"from the slave side").unwrap();
    let s = seen.clone();
    run_until(&tl, move || s.borrow().bytes.len() == 19);
    assert_eq!(seen.borrow().bytes, b"from the slave side");
    // Hang-up: the master reads EIO, which is the pty's end of file.
    drop(slave);
    let s = seen.clone();
    run_until(&tl, move || s.borrow().lost());
    assert_eq!(log(&seen), ["made", "data", "eof", "lost None"]);
    assert!(t.is_closed());
}

#[test]
fn pty_master_as_write_pipe() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    let (master, slave) = open_pty();
    let (t, seen) = connect_write(&tl, master);
    let payload = pattern(200_000, 13);
    let expected = payload.clone();
    // Kept open until the end: the last slave close is a hang-up, which
    // a write pipe reports as a broken pipe.
    let slave_keep = slave.try_clone().unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d = done.clone();
    let reader = thread::spawn(move || {
        let mut slave = File::from(slave);
        let mut got = vec![0; expected.len()];
        let r = slave.read_exact(&mut got);
        d.store(true, std::sync::atomic::Ordering::SeqCst);
        r.map(|()| got == expected)
    });
    t.write(&payload).unwrap();
    // A pty discards unread input when the master closes: close only
    // once the slave side has read everything.
    run_until(&tl, move || done.load(std::sync::atomic::Ordering::SeqCst));
    t.close();
    let s = seen.clone();
    run_until(&tl, move || s.borrow().lost());
    assert!(reader.join().unwrap().unwrap(), "pty bytes corrupted");
    drop(slave_keep);
    let l = log(&seen);
    assert_eq!(l.first().map(String::as_str), Some("made"));
    assert_eq!(l.last().map(String::as_str), Some("lost None"));
}

#[test]
fn socket_and_extra_info() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    let (a_raw, b_raw) = (a.as_raw_fd(), b.as_raw_fd());
    let (rt, rseen) = connect_read(&tl, a.into());
    let (wt, wseen) = connect_write(&tl, b.into());
    assert!(matches!(rt.get_extra_info("pipe"), Some(ExtraInfo::Pipe(fd)) if fd == a_raw));
    assert!(matches!(wt.get_extra_info("pipe"), Some(ExtraInfo::Pipe(fd)) if fd == b_raw));
    assert!(rt.get_extra_info("peername").is_none());
    assert_eq!(wt.fileno(), Some(b_raw));
    assert!(rt.get_loop().unwrap() == tl.lp());
    assert!(wt.get_loop().unwrap() == tl.lp());
    wt.write(b"over a socket").unwrap();
    wt.close();
    let s = rseen.clone();
    run_until(&tl, move || s.borrow().lost());
    assert_eq!(rseen.borrow().bytes, b"over a socket");
    assert_eq!(log(&rseen), ["made", "data", "eof", "lost None"]);
    assert_eq!(log(&wseen), ["made", "lost None"]);
    assert!(rt.get_extra_info("pipe").is_none());
    assert!(wt.get_extra_info("pipe").is_none());
}

#[test]
fn write_buffer_limits_follow_asyncio() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    let (r, w) = os_pipe();
    let (t, seen) = connect_write(&tl, w);
    t.set_write_buffer_limits(None, Some(100)).unwrap();
    assert_eq!(t.get_write_buffer_limits(), (100, 400));
    t.set_write_buffer_limits(Some(1000), None).unwrap();
    assert_eq!(t.get_write_buffer_limits(), (250, 1000));
    assert!(t.set_write_buffer_limits(Some(10), Some(11)).is_err());
    // high = 0: any buffered byte pauses, an empty buffer resumes.
    t.set_write_buffer_limits(Some(0), None).unwrap();
    t.write(b"x").unwrap();
    assert_eq!(log(&seen), ["made", "pause"]);
    let s = seen.clone();
    run_until(&tl, move || s.borrow().log.len() == 3);
    assert_eq!(log(&seen), ["made", "pause", "resume"]);
    drop(r);
    t.abort();
}

#[test]
fn protocol_panic_is_reported_and_closes() {
    let _g = fd_lock();
    let mut tl = TestLoop::new();
    let errors = tl.expect_errors();
    let (r, w) = os_pipe();
    let (t, seen) = connect_read(&tl, r);
    seen.borrow_mut().panic_on_data = true;
    File::from(w).write_all(b"boom").unwrap();
    let s = seen.clone();
    run_until(&tl, move || s.borrow().lost());
    assert!(t.is_closed());
    let errs = errors.borrow();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("data_received"), "{}", errs[0]);
    assert_eq!(seen.borrow().lost_calls, 1);
    // The loop survives.
    let lp = tl.lp();
    assert!(tl.block_on(async move { lp.time() > 0.0 }));
}

#[test]
fn many_open_close_cycles_leak_no_descriptors() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    // Warm-up: the loop's own lazily created descriptors.
    let (r, w) = os_pipe();
    let (rt, _) = connect_read(&tl, r);
    let (wt, _) = connect_write(&tl, w);
    wt.close();
    let t = rt.clone();
    run_until(&tl, move || t.is_closed());
    let before = fd_snapshot();
    for i in 0..300 {
        let (r, w) = os_pipe();
        let (rt, rseen) = connect_read(&tl, r);
        let (wt, wseen) = connect_write(&tl, w);
        wt.write(b"ping").unwrap();
        match i % 3 {
            0 => wt.close(),
            1 => {
                rt.close();
            }
            _ => {
                wt.abort();
                rt.close();
            }
        }
        let (a, b) = (rseen.clone(), wseen.clone());
        run_until(&tl, move || a.borrow().lost() && b.borrow().lost());
    }
    before.assert_nothing_new("descriptors leaked over 300 cycles");
    assert_eq!(tl.in_flight_ops(), 0, "operations left in flight");
}

#[test]
fn loop_close_releases_open_pipes() {
    let _g = fd_lock();
    let before = fd_snapshot();
    let (r, w) = os_pipe();
    let (r2, w2) = os_pipe();
    {
        let tl = TestLoop::new();
        let (_rt, _) = connect_read(&tl, r);
        let (wt, _) = connect_write(&tl, w2);
        wt.write(&pattern(1 << 20, 1)).unwrap();
        idle(&tl, Duration::from_millis(10));
        // Dropped with both transports open and a write pending: closing
        // the loop releases their descriptors.
    }
    // Our ends see the transports' ends closed.
    let mut buf = Vec::new();
    File::from(r2).read_to_end(&mut buf).unwrap();
    assert!(buf.len() < 1 << 20);
    let e = File::from(w).write_all(b"x").unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
    before.assert_nothing_new("descriptors left open");
}

#[test]
fn read_error_is_reported_and_ends_the_transport() {
    let _g = fd_lock();
    let mut tl = TestLoop::new();
    let errors = tl.expect_errors();
    let (r, w) = os_pipe();
    // The write end cannot be read: every read fails with EBADF.
    let (t, seen) = connect_read(&tl, w);
    let s = seen.clone();
    run_until(&tl, move || s.borrow().lost());
    assert_eq!(log(&seen), ["made", "lost Uncategorized"]);
    assert_eq!(
        seen.borrow().lost_error.as_ref().unwrap().raw_os_error(),
        Some(libc::EBADF)
    );
    let errs = errors.borrow();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("Fatal read error on pipe transport"),
        "{}",
        errs[0]
    );
    assert!(t.is_closed());
    drop(r);
}

#[test]
fn blocking_mode_is_restored_at_close() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    let nonblocking = |fd: i32| {
        // SAFETY: F_GETFL only reads the status flags.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        assert!(flags >= 0);
        flags & libc::O_NONBLOCK != 0
    };
    let (r, w) = os_pipe();
    // A second descriptor for the same open file description, as a dup
    // of stdin shares the terminal's.
    let other = r.try_clone().unwrap();
    assert!(!nonblocking(other.as_raw_fd()));
    let (t, seen) = connect_read(&tl, r);
    assert!(
        nonblocking(other.as_raw_fd()),
        "the transport runs non-blocking"
    );
    t.close();
    let s = seen.clone();
    run_until(&tl, move || s.borrow().lost());
    assert!(
        !nonblocking(other.as_raw_fd()),
        "blocking mode not restored"
    );
    // A descriptor that was non-blocking already stays so.
    let (r2, _w2) = os_pipe();
    // SAFETY: sets O_NONBLOCK on our own descriptor.
    unsafe { libc::fcntl(r2.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    let other2 = r2.try_clone().unwrap();
    let (t2, seen2) = connect_read(&tl, r2);
    t2.close();
    let s = seen2.clone();
    run_until(&tl, move || s.borrow().lost());
    assert!(nonblocking(other2.as_raw_fd()));
    drop(w);
}

#[test]
fn write_protocol_panic_is_reported_and_closes() {
    use ringloop::{BaseProtocol, WritePipeProtocol};
    struct PanicOnPause(Rc<Cell<Option<String>>>);
    impl BaseProtocol for PanicOnPause {
        type Transport = WritePipeTransport;
        fn pause_writing(&mut self) {
            panic!("pause_writing failed on purpose");
        }
        fn connection_lost(&mut self, e: Option<io::Error>) {
            self.0.set(Some(format!("{:?}", e.map(|e| e.kind()))));
        }
    }
    impl WritePipeProtocol for PanicOnPause {}

    let _g = fd_lock();
    let mut tl = TestLoop::new();
    let errors = tl.expect_errors();
    let (r, w) = os_pipe();
    let lost = Rc::new(Cell::new(None));
    let l = lost.clone();
    let (t, _p) = tl
        .block_on(tl.lp().connect_write_pipe(move || PanicOnPause(l), w))
        .unwrap();
    t.write(&pattern(1 << 20, 4)).unwrap();
    let l = lost.clone();
    run_until(&tl, move || {
        let v = l.take();
        let done = v.is_some();
        l.set(v);
        done
    });
    assert_eq!(lost.take().as_deref(), Some("Some(Other)"));
    let errs = errors.borrow();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("pause_writing"), "{}", errs[0]);
    assert!(t.is_closed());
    drop(r);
}

#[test]
fn close_while_paused_or_reading_releases_everything() {
    let _g = fd_lock();
    let tl = TestLoop::new();
    let before = fd_snapshot();
    for i in 0..100 {
        let (r, w) = os_pipe();
        let mut w = File::from(w);
        let (t, seen) = connect_read(&tl, r);
        w.write_all(b"pending").unwrap();
        if i % 2 == 0 {
            t.pause_reading();
        }
        idle(&tl, Duration::from_millis(1));
        t.close();
        let s = seen.clone();
        run_until(&tl, move || s.borrow().lost());
        assert_eq!(seen.borrow().lost_calls, 1);
    }
    before.assert_nothing_new("descriptors left open");
    assert_eq!(tl.in_flight_ops(), 0);
}

/// The events of `fd` after waiting at most one second.
fn poll_events(fd: i32, mask: i16) -> i16 {
    let mut pfd = libc::pollfd {
        fd,
        events: mask,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, 1000) };
    assert!(n >= 0);
    pfd.revents
}

#[test]
fn a_closed_transport_has_really_closed_its_end() {
    // Once connection_lost has run, the other end sees the close at once,
    // even if the loop is not run again (on io_uring a cancelled operation
    // must not keep the file open until the next wait).
    let _g = fd_lock();
    let tl = TestLoop::new();
    let (r, w) = os_pipe();
    let (t, seen) = connect_write(&tl, w);
    t.write(b"bye").unwrap();
    t.close();
    // Not one iteration more than needed.
    while !t.is_closed() {
        tl.run_once().unwrap();
    }
    assert!(seen.borrow().lost());
    let ev = poll_events(r.as_raw_fd(), libc::POLLIN);
    assert!(ev & libc::POLLHUP != 0, "reader sees no hang-up: {ev:#x}");
    let mut got = String::new();
    File::from(r).read_to_string(&mut got).unwrap();
    assert_eq!(got, "bye");

    let (r, w) = os_pipe();
    let (t, seen) = connect_read(&tl, r);
    t.close();
    while !t.is_closed() {
        tl.run_once().unwrap();
    }
    assert!(seen.borrow().lost());
    let ev = poll_events(w.as_raw_fd(), libc::POLLOUT);
    assert!(ev & libc::POLLERR != 0, "writer sees a reader: {ev:#x}");
}
