//! A recording subprocess protocol and helpers for the subprocess tests.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;

use ringloop::process::SubprocessOptions;
use ringloop::{BaseProtocol, EventLoop, SubprocessProtocol, SubprocessTransport};

/// The helper child program (`src/bin/ringloop-test-child.rs`); only
/// integration tests of this package can name it.
#[macro_export]
macro_rules! test_child {
    () => {
        env!("CARGO_BIN_EXE_ringloop-test-child")
    };
}

/// What a [`ProcRecorder`] saw, shared with the test.
#[derive(Default, Debug)]
pub struct ProcSeen {
    /// Callbacks in order: `made`, `data 1` / `data 2` (consecutive ones
    /// merged), `pipe_lost 0 None` / `pipe_lost 0 <kind>`, `exited`,
    /// `pause`, `resume`, `lost`.
    pub log: Vec<String>,
    /// Every byte of the child's stdout, in order.
    pub out: Vec<u8>,
    /// Every byte of the child's stderr, in order.
    pub err: Vec<u8>,
    /// `get_returncode()` as seen inside `process_exited`.
    pub code_at_exit: Option<i32>,
    /// `connection_lost` ran.
    pub lost: bool,
}

/// Shared view of a [`ProcRecorder`]'s observations.
pub type ProcSeenRef = Rc<RefCell<ProcSeen>>;

/// The recording protocol.
#[derive(Debug)]
pub struct ProcRecorder {
    /// Observations.
    pub seen: ProcSeenRef,
    transport: Option<SubprocessTransport>,
}

impl ProcRecorder {
    /// A recorder and its shared observations.
    pub fn new() -> (ProcRecorder, ProcSeenRef) {
        let seen = ProcSeenRef::default();
        (
            ProcRecorder {
                seen: seen.clone(),
                transport: None,
            },
            seen,
        )
    }
}

impl BaseProtocol for ProcRecorder {
    type Transport = SubprocessTransport;
    fn connection_made(&mut self, t: SubprocessTransport) {
        self.seen.borrow_mut().log.push("made".into());
        self.transport = Some(t);
    }
    fn connection_lost(&mut self, e: Option<io::Error>) {
        let mut s = self.seen.borrow_mut();
        s.log.push(match e {
            None => "lost".into(),
            Some(e) => format!("lost {:?}", e.kind()),
        });
        s.lost = true;
        self.transport = None;
    }
    fn pause_writing(&mut self) {
        self.seen.borrow_mut().log.push("pause".into());
    }
    fn resume_writing(&mut self) {
        self.seen.borrow_mut().log.push("resume".into());
    }
}

impl SubprocessProtocol for ProcRecorder {
    fn pipe_data_received(&mut self, fd: i32, data: &[u8]) {
        let mut s = self.seen.borrow_mut();
        let entry = format!("data {fd}");
        if s.log.last() != Some(&entry) {
            s.log.push(entry);
        }
        match fd {
            1 => s.out.extend_from_slice(data),
            _ => s.err.extend_from_slice(data),
        }
    }
    fn pipe_connection_lost(&mut self, fd: i32, e: Option<io::Error>) {
        let entry = match e {
            None => format!("pipe_lost {fd} None"),
            Some(e) => format!("pipe_lost {fd} {:?}", e.kind()),
        };
        self.seen.borrow_mut().log.push(entry);
    }
    fn process_exited(&mut self) {
        let code = self.transport.as_ref().and_then(|t| t.get_returncode());
        let mut s = self.seen.borrow_mut();
        s.log.push("exited".into());
        s.code_at_exit = code;
    }
}

/// Runs `program args` with a [`ProcRecorder`]; returns the transport and
/// the observations once `subprocess_exec` resolved.
pub async fn exec(
    lp: &EventLoop,
    program: &str,
    args: &[&str],
    options: SubprocessOptions,
) -> io::Result<(SubprocessTransport, ProcSeenRef)> {
    let (proto, seen) = ProcRecorder::new();
    let (t, _) = lp
        .subprocess_exec(move || proto, program, args.to_vec(), options)
        .await?;
    Ok((t, seen))
}

/// Waits until the recorder's `connection_lost` ran.
pub async fn until_lost(lp: &EventLoop, seen: &ProcSeenRef) {
    let s = seen.clone();
    crate::proto::wait_until(lp, move || s.borrow().lost).await
}
