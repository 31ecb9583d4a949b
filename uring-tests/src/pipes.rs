//! Helpers for pipe transport tests: OS pipes and ptys, and recording
//! protocols for both directions.

use std::cell::RefCell;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::rc::Rc;

use ringloop::{
    BaseProtocol, ReadPipeProtocol, ReadPipeTransport, WritePipeProtocol, WritePipeTransport,
};

/// A new pipe `(read end, write end)`, close-on-exec, blocking.
pub fn os_pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors on success.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", io::Error::last_os_error());
    // SAFETY: two fresh descriptors nothing else owns.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// A new pty `(master, slave)` with the slave in raw mode (no echo, no
/// line editing, bytes pass unchanged).
pub fn open_pty() -> (OwnedFd, OwnedFd) {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty fills two descriptors; the name, termios and
    // winsize pointers may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", io::Error::last_os_error());
    // SAFETY: two fresh descriptors nothing else owns.
    let (m, s) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    for fd in [master, slave] {
        // SAFETY: FD_CLOEXEC on our own descriptors.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    // SAFETY: termios is plain data, filled by tcgetattr.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `slave` is an open tty; `t` is valid for both calls.
    unsafe {
        assert_eq!(libc::tcgetattr(slave, &mut t), 0);
        libc::cfmakeraw(&mut t);
        assert_eq!(libc::tcsetattr(slave, libc::TCSANOW, &t), 0);
    }
    (m, s)
}

/// What a recording pipe protocol saw, shared with the test.
#[derive(Default, Debug)]
pub struct PipeSeen {
    /// Callbacks in order: `made`, `data` (consecutive ones merged),
    /// `eof`, `pause`, `resume`, `lost None` / `lost <kind>`.
    pub log: Vec<String>,
    /// Every byte delivered, in order.
    pub bytes: Vec<u8>,
    /// The error `connection_lost` got, if any.
    pub lost_error: Option<io::Error>,
    /// How many times `connection_lost` ran.
    pub lost_calls: u32,
    /// Panic in `data_received` (to test the exception path).
    pub panic_on_data: bool,
    /// `pause_reading()` from inside `data_received`.
    pub pause_on_data: bool,
}

impl PipeSeen {
    /// True once `connection_lost` ran.
    pub fn lost(&self) -> bool {
        self.lost_calls > 0
    }

    fn push(&mut self, what: &str) {
        self.log.push(what.to_string());
    }

    fn record_lost(&mut self, e: Option<io::Error>) {
        self.lost_calls += 1;
        self.log.push(match &e {
            None => "lost None".into(),
            Some(e) => format!("lost {:?}", e.kind()),
        });
        self.lost_error = e;
    }
}

/// Shared view of a recorder's observations.
pub type PipeSeenRef = Rc<RefCell<PipeSeen>>;

/// A recording read pipe protocol.
#[derive(Debug)]
pub struct ReadRecorder {
    /// Observations.
    pub seen: PipeSeenRef,
    transport: Option<ReadPipeTransport>,
}

impl ReadRecorder {
    /// A recorder and its shared observations.
    pub fn new() -> (ReadRecorder, PipeSeenRef) {
        let seen = PipeSeenRef::default();
        (
            ReadRecorder {
                seen: seen.clone(),
                transport: None,
            },
            seen,
        )
    }
}

impl BaseProtocol for ReadRecorder {
    type Transport = ReadPipeTransport;
    fn connection_made(&mut self, t: ReadPipeTransport) {
        self.seen.borrow_mut().push("made");
        self.transport = Some(t);
    }
    fn connection_lost(&mut self, e: Option<io::Error>) {
        self.seen.borrow_mut().record_lost(e);
        self.transport = None;
    }
}

impl ReadPipeProtocol for ReadRecorder {
    fn data_received(&mut self, data: &[u8]) {
        let (panic, pause) = {
            let mut s = self.seen.borrow_mut();
            if s.log.last().map(String::as_str) != Some("data") {
                s.push("data");
            }
            s.bytes.extend_from_slice(data);
            (s.panic_on_data, s.pause_on_data)
        };
        if pause {
            if let Some(t) = &self.transport {
                t.pause_reading();
            }
        }
        if panic {
            panic!("data_received failed on purpose");
        }
    }
    fn eof_received(&mut self) -> bool {
        self.seen.borrow_mut().push("eof");
        // Ignored by read pipes: they close anyway.
        true
    }
}

/// A recording write pipe protocol.
#[derive(Debug)]
pub struct WriteRecorder {
    /// Observations.
    pub seen: PipeSeenRef,
}

impl WriteRecorder {
    /// A recorder and its shared observations.
    pub fn new() -> (WriteRecorder, PipeSeenRef) {
        let seen = PipeSeenRef::default();
        (WriteRecorder { seen: seen.clone() }, seen)
    }
}

impl BaseProtocol for WriteRecorder {
    type Transport = WritePipeTransport;
    fn connection_made(&mut self, _t: WritePipeTransport) {
        self.seen.borrow_mut().push("made");
    }
    fn connection_lost(&mut self, e: Option<io::Error>) {
        self.seen.borrow_mut().record_lost(e);
    }
    fn pause_writing(&mut self) {
        self.seen.borrow_mut().push("pause");
    }
    fn resume_writing(&mut self) {
        self.seen.borrow_mut().push("resume");
    }
}

impl WritePipeProtocol for WriteRecorder {}
