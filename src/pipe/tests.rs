//! The crate-internal hooks subprocess transports use: `start` with a
//! `dyn` protocol, the on-lost hook, `scheduled_callbacks_ran`.

use std::cell::RefCell;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::rc::Rc;

use super::fd::PipeFd;
use super::{
    scheduled_callbacks_ran, LostHook, ReadPipeProtocol, ReadPipeTransport, WritePipeProtocol,
    WritePipeTransport,
};
use crate::protocol::BaseProtocol;
use crate::EventLoop;

type Log = Rc<RefCell<Vec<String>>>;

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors on success.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: two fresh descriptors nothing else owns.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// An adapter like a subprocess transport's: tags what it hears.
struct Tagged {
    tag: &'static str,
    log: Log,
}

impl Tagged {
    fn push(&self, what: String) {
        self.log.borrow_mut().push(format!("{} {what}", self.tag));
    }
}

impl BaseProtocol for Tagged {
    type Transport = ReadPipeTransport;
    fn connection_made(&mut self, _t: ReadPipeTransport) {
        self.push("made".into());
    }
    fn connection_lost(&mut self, e: Option<io::Error>) {
        self.push(format!("lost {:?}", e.map(|e| e.kind())));
    }
}

impl ReadPipeProtocol for Tagged {
    fn data_received(&mut self, data: &[u8]) {
        self.push(format!("data {}", String::from_utf8_lossy(data)));
    }
}

struct TaggedWriter(Tagged);

impl BaseProtocol for TaggedWriter {
    type Transport = WritePipeTransport;
    fn connection_made(&mut self, _t: WritePipeTransport) {
        self.0.push("made".into());
    }
    fn connection_lost(&mut self, e: Option<io::Error>) {
        self.0.push(format!("lost {:?}", e.map(|e| e.kind())));
    }
}

impl WritePipeProtocol for TaggedWriter {}

fn hook(log: &Log, tag: &'static str) -> LostHook {
    let log = log.clone();
    Box::new(move |e| {
        log.borrow_mut()
            .push(format!("{tag} hook {:?}", e.map(|e| e.kind())))
    })
}

fn run_until(lp: &EventLoop, mut cond: impl FnMut() -> bool) {
    for _ in 0..100_000 {
        if cond() {
            return;
        }
        lp.run_once().unwrap();
    }
    panic!("condition not reached");
}

#[test]
fn start_with_dyn_protocols_and_lost_hooks() {
    let lp = EventLoop::new().unwrap();
    let log: Log = Rc::default();
    let (r, w) = pipe();
    let reader: Rc<RefCell<dyn ReadPipeProtocol>> = Rc::new(RefCell::new(Tagged {
        tag: "r",
        log: log.clone(),
    }));
    let writer: Rc<RefCell<dyn WritePipeProtocol>> = Rc::new(RefCell::new(TaggedWriter(Tagged {
        tag: "w",
        log: log.clone(),
    })));
    let rt = ReadPipeTransport::start(
        &lp,
        PipeFd::new(r).unwrap(),
        reader,
        "Tagged",
        Some(hook(&log, "r")),
    )
    .unwrap();
    let wt = WritePipeTransport::start(
        &lp,
        PipeFd::new(w).unwrap(),
        writer,
        "TaggedWriter",
        Some(hook(&log, "w")),
    )
    .unwrap();
    let l2 = lp.clone();
    lp.run_until_complete(async move { scheduled_callbacks_ran(&l2).await })
        .unwrap()
        .unwrap();
    assert_eq!(*log.borrow(), ["r made", "w made"]);
    wt.write(b"hi").unwrap();
    wt.close();
    run_until(&lp, || rt.is_closed() && wt.is_closed());
    assert_eq!(
        *log.borrow(),
        [
            "r made",
            "w made",
            "w lost None",
            "w hook None",
            "r data hi",
            "r lost None",
            "r hook None"
        ]
    );
    lp.close().unwrap();
}

#[test]
fn the_hook_gets_a_copy_of_the_error() {
    let lp = EventLoop::new().unwrap();
    let log: Log = Rc::default();
    let (r, w) = pipe();
    let writer: Rc<RefCell<dyn WritePipeProtocol>> = Rc::new(RefCell::new(TaggedWriter(Tagged {
        tag: "w",
        log: log.clone(),
    })));
    let wt = WritePipeTransport::start(
        &lp,
        PipeFd::new(w).unwrap(),
        writer,
        "TaggedWriter",
        Some(hook(&log, "w")),
    )
    .unwrap();
    drop(r);
    run_until(&lp, || wt.is_closed());
    assert_eq!(
        *log.borrow(),
        [
            "w made",
            "w lost Some(BrokenPipe)",
            "w hook Some(BrokenPipe)"
        ]
    );
    lp.close().unwrap();
}
