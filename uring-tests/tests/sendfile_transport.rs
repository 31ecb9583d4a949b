//! `loop.sendfile` over stream transports: zero copy and the buffered
//! fallback, order with writes before and after, the file position, and
//! the rules around writes, close and abort while it runs; both backends.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::rc::Rc;
use std::thread::JoinHandle;
use std::time::Duration;

use ringloop::{Error, SendfileNotAvailable};
use ringloop_uring_tests::proto::{connect_to_std, wait_until, Recorder, SeenRef};
use ringloop_uring_tests::{fd_lock, fd_snapshot, pattern, TestLoop};

/// A regular file holding `data`, removed when dropped.
struct TempFile {
    path: std::path::PathBuf,
    file: File,
}

impl TempFile {
    fn new(tag: &str, data: &[u8]) -> TempFile {
        let path = std::env::temp_dir().join(format!(
            "ringloop-sendfile-{tag}-{}-{}",
            std::process::id(),
            ringloop_uring_tests::backend_name()
        ));
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        file.write_all(data).unwrap();
        file.rewind().unwrap();
        TempFile { path, file }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Reads the peer to EOF on a thread (after an optional delay, reading in
/// small steps when `slow`).
fn read_all(mut peer: std::net::TcpStream, delay: Duration, slow: bool) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        let mut out = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match peer.read(&mut buf) {
                Ok(0) => return out,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) => panic!("peer read failed after {} bytes: {e}", out.len()),
            }
            if slow {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    })
}

/// Closes `t` and runs the loop until its protocol heard
/// `connection_lost`, so that the peer sees EOF.
fn close_and_finish(tl: &TestLoop, t: &ringloop::Transport, seen: &SeenRef) {
    t.close();
    let (s, lp) = (seen.clone(), tl.lp());
    tl.block_on(async move { wait_until(&lp, move || s.borrow().lost()).await });
}

/// A pipe whose read end is the "file" and whose write end a thread fills
/// with `data`, then closes.
fn pipe_file(data: Vec<u8>) -> (File, JoinHandle<()>) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a writable array of two ints.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 succeeded; both descriptors are new and ours.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let writer = std::thread::spawn(move || {
        let mut w = File::from(w);
        // The reader may stop early (a sendfile that refuses a pipe).
        let _ = w.write_all(&data);
    });
    (File::from(r), writer)
}

#[test]
fn zero_copy_keeps_order_and_leaves_the_position_after_the_data() {
    let _serial = fd_lock();
    let tl = TestLoop::new();
    let lp = tl.lp();
    let (t, seen, peer) = connect_to_std(&tl, false);
    let data = pattern(3 << 20, 11);
    let tf = TempFile::new("order", &data);
    let reader = read_all(peer, Duration::ZERO, false);
    t.write(b"HEAD").unwrap();
    let file = tf.file.try_clone().unwrap();
    let tt = t.clone();
    let sent = tl.block_on(async move {
        let n = lp.sendfile(&tt, &file, 0, None, false).await;
        let pos = (&file).stream_position().unwrap();
        (n, pos)
    });
    assert_eq!(sent.0.unwrap(), data.len());
    assert_eq!(sent.1, data.len() as u64, "file position after sendfile");
    t.write(b"TAIL").unwrap();
    close_and_finish(&tl, &t, &seen);
    let got = reader.join().unwrap();
    assert_eq!(got.len(), data.len() + 8);
    assert_eq!(&got[..4], b"HEAD");
    assert!(got[4..4 + data.len()] == data[..], "file bytes differ");
    assert_eq!(&got[4 + data.len()..], b"TAIL");
}

#[test]
fn offset_and_count_select_a_slice() {
    let _serial = fd_lock();
    let tl = TestLoop::new();
    let lp = tl.lp();
    let (t, seen, peer) = connect_to_std(&tl, false);
    let data = pattern(100_000, 3);
    let tf = TempFile::new("slice", &data);
    let reader = read_all(peer, Duration::ZERO, false);
    let file = tf.file.try_clone().unwrap();
    let tt = t.clone();
    let (n, pos) = tl.block_on(async move {
        let n = lp
            .sendfile(&tt, &file, 1000, Some(5000), true)
            .await
            .unwrap();
        (n, (&file).stream_position().unwrap())
    });
    assert_eq!((n, pos), (5000, 6000));
    close_and_finish(&tl, &t, &seen);
    assert!(reader.join().unwrap() == data[1000..6000]);
}

#[test]
fn bad_arguments_and_closing_transports_are_errors() {
    let _serial = fd_lock();
    let tl = TestLoop::new();
    let lp = tl.lp();
    let (t, _seen, _peer) = connect_to_std(&tl, false);
    let tf = TempFile::new("args", b"abc");
    let file = tf.file.try_clone().unwrap();
    let (l, tt) = (lp.clone(), t.clone());
    let zero = tl.block_on(async move { l.sendfile(&tt, &file, 0, Some(0), true).await });
    assert_eq!(zero.unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
    t.close();
    let file = tf.file.try_clone().unwrap();
    let tt = t.clone();
    let closing = tl.block_on(async move { lp.sendfile(&tt, &file, 0, None, true).await });
    assert_eq!(
        closing.unwrap_err().kind(),
        std::io::ErrorKind::NotConnected
    );
}

#[test]
fn a_pipe_without_fallback_is_not_available_and_the_transport_still_works() {
    let _serial = fd_lock();
    let tl = TestLoop::new();
    let lp = tl.lp();
    let (t, seen, peer) = connect_to_std(&tl, false);
    let (file, writer) = pipe_file(b"never sent".to_vec());
    let reader = read_all(peer, Duration::ZERO, false);
    let tt = t.clone();
    let err = tl
        .block_on(async move { lp.sendfile(&tt, &file, 0, None, false).await })
        .unwrap_err();
    assert!(SendfileNotAvailable::is(&err), "{err:?}");
    t.write(b"still open").unwrap();
    close_and_finish(&tl, &t, &seen);
    writer.join().unwrap();
    assert_eq!(reader.join().unwrap(), b"still open");
}

#[test]
fn fallback_paces_itself_on_the_low_water_mark_without_pausing_the_protocol() {
    let _serial = fd_lock();
    let tl = TestLoop::new();
    let lp = tl.lp();
    let (t, seen, peer) = connect_to_std(&tl, false);
    // More than the socket buffers hold, read slowly after a pause: the
    // fallback must wait for the transport's buffer to drain.
    let data = pattern(12 << 20, 5);
    let (file, writer) = pipe_file(data.clone());
    let reader = read_all(peer, Duration::from_millis(50), true);
    let peak = Rc::new(std::cell::Cell::new(0usize));
    let (tt, pk) = (t.clone(), peak.clone());
    let n = tl.block_on(async move {
        let sampler = {
            let (tt, pk, l) = (tt.clone(), pk.clone(), lp.clone());
            lp.create_task(async move {
                loop {
                    pk.set(pk.get().max(tt.get_write_buffer_size()));
                    l.sleep(Duration::from_millis(1)).unwrap().await;
                }
            })
            .unwrap()
        };
        let n = lp.sendfile(&tt, &file, 0, None, true).await.unwrap();
        sampler.cancel();
        n
    });
    assert_eq!(n, data.len());
    close_and_finish(&tl, &t, &seen);
    writer.join().unwrap();
    assert!(reader.join().unwrap() == data, "bytes differ");
    let (_, low) = t.get_write_buffer_limits();
    assert!(
        peak.get() <= low + 256 * 1024,
        "buffer peaked at {} bytes",
        peak.get()
    );
    assert!(peak.get() > 0, "the fallback never used the buffer");
    assert!(
        !seen.borrow().log.iter().any(|e| e == "pause"),
        "the protocol heard flow control from sendfile: {:?}",
        seen.borrow().log
    );
}

#[test]
fn write_during_sendfile_is_an_error_and_close_lets_it_finish() {
    let _serial = fd_lock();
    let tl = TestLoop::new();
    let lp = tl.lp();
    let (t, seen, peer) = connect_to_std(&tl, false);
    // Big enough to fill the socket buffers while the peer sleeps.
    let data = pattern(16 << 20, 9);
    let tf = TempFile::new("close", &data);
    let reader = read_all(peer, Duration::from_millis(300), false);
    let file = tf.file.try_clone().unwrap();
    let tt = t.clone();
    let s = seen.clone();
    let sent = tl.block_on(async move {
        let l = lp.clone();
        let t2 = tt.clone();
        let job = lp
            .create_task(async move { l.sendfile(&t2, &file, 0, None, true).await })
            .unwrap();
        lp.sleep(Duration::from_millis(50)).unwrap().await;
        assert!(!job.done(), "sendfile finished before the peer read");
        match tt.write(b"x") {
            Err(Error::InvalidState(_)) => {}
            other => panic!("write during sendfile: {other:?}"),
        }
        tt.close();
        assert!(tt.is_closing());
        let n = job.await;
        // The close completes after the file went out.
        wait_until(&lp, move || s.borrow().lost()).await;
        n
    });
    assert_eq!(sent.unwrap().unwrap(), data.len());
    let got = reader.join().unwrap();
    assert!(got == data, "got {} of {} bytes", got.len(), data.len());
    assert_eq!(seen.borrow().log, vec!["made", "lost None"]);
}

#[test]
fn abort_during_sendfile_ends_it_with_an_error_and_leaks_nothing() {
    let _serial = fd_lock();
    let before = fd_snapshot();
    {
        let tl = TestLoop::new();
        let lp = tl.lp();
        let (t, seen, peer) = connect_to_std(&tl, false);
        let data = pattern(16 << 20, 2);
        let tf = TempFile::new("abort", &data);
        let file = tf.file.try_clone().unwrap();
        let tt = t.clone();
        let s = seen.clone();
        let result = tl.block_on(async move {
            let l = lp.clone();
            let t2 = tt.clone();
            let job = lp
                .create_task(async move { l.sendfile(&t2, &file, 0, None, true).await })
                .unwrap();
            lp.sleep(Duration::from_millis(50)).unwrap().await;
            tt.abort();
            let r = job.await;
            wait_until(&lp, move || s.borrow().lost()).await;
            r
        });
        assert!(
            matches!(result, Ok(Err(_))),
            "sendfile survived abort: {result:?}"
        );
        assert_eq!(seen.borrow().log, vec!["made", "lost None"]);
        drop(peer);
    }
    before.assert_nothing_new("a descriptor leaked");
}

#[test]
fn unix_transports_send_files_too() {
    let _serial = fd_lock();
    let tl = TestLoop::new();
    let lp = tl.lp();
    let dir = std::env::temp_dir().join(format!(
        "ringloop-sendfile-unix-{}-{}",
        std::process::id(),
        ringloop_uring_tests::backend_name()
    ));
    let _ = std::fs::remove_file(&dir);
    let listener = std::os::unix::net::UnixListener::bind(&dir).unwrap();
    let (proto, seen) = Recorder::new(false);
    let (t, _p) = tl
        .block_on(lp.create_unix_connection(move || proto, Some(&dir), None))
        .unwrap();
    let (mut peer, _) = listener.accept().unwrap();
    std::fs::remove_file(&dir).unwrap();
    let data = pattern(1 << 20, 4);
    let tf = TempFile::new("unix", &data);
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        peer.read_to_end(&mut out).unwrap();
        out
    });
    let file = tf.file.try_clone().unwrap();
    let tt = t.clone();
    let n = tl
        .block_on(async move { lp.sendfile(&tt, &file, 0, None, true).await })
        .unwrap();
    assert_eq!(n, data.len());
    close_and_finish(&tl, &t, &seen);
    assert!(reader.join().unwrap() == data);
}
