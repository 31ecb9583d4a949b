//! A creator (`create_connection`, `create_datagram_endpoint`,
//! `connect_read_pipe`, `connect_write_pipe`) whose future is dropped
//! after it made the transport but before it handed it over closes that
//! transport, as asyncio's `except: transport.close(); raise`: the
//! protocol hears `connection_lost`, the peer sees the end, nothing
//! stays open.

use std::cell::RefCell;
use std::io::Read;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::time::Duration;

use ringloop::net::{Address, DatagramOptions};
use ringloop::{
    BaseProtocol, DatagramProtocol, DatagramTransport, Error, Protocol, ReadPipeProtocol,
    ReadPipeTransport, TaskHandle, Transport, WritePipeProtocol, WritePipeTransport,
};
use ringloop_uring_tests::pipes::os_pipe;
use ringloop_uring_tests::TestLoop;

type Slot = Rc<RefCell<Option<TaskHandle>>>;
type Log = Rc<RefCell<Vec<&'static str>>>;

/// Cancels the task that is creating it, from `connection_made`: the
/// creator is then dropped at its wait for that very callback.
struct CancelOnMade<T> {
    task: Slot,
    log: Log,
    _transport: Option<T>,
}

impl<T> CancelOnMade<T> {
    fn new(task: &Slot, log: &Log) -> Self {
        CancelOnMade {
            task: task.clone(),
            log: log.clone(),
            _transport: None,
        }
    }

    fn made(&mut self) {
        self.log.borrow_mut().push("made");
        let task = self.task.borrow().clone();
        assert!(task.expect("the creating task").cancel());
    }

    fn lost(&mut self, error: Option<std::io::Error>) {
        assert!(error.is_none(), "{error:?}");
        self.log.borrow_mut().push("lost");
        self._transport = None;
    }
}

macro_rules! cancel_on_made {
    ($transport:ty) => {
        impl BaseProtocol for CancelOnMade<$transport> {
            type Transport = $transport;
            fn connection_made(&mut self, transport: $transport) {
                self._transport = Some(transport);
                self.made();
            }
            fn connection_lost(&mut self, error: Option<std::io::Error>) {
                self.lost(error);
            }
        }
    };
}
cancel_on_made!(Transport);
cancel_on_made!(DatagramTransport);
cancel_on_made!(ReadPipeTransport);
cancel_on_made!(WritePipeTransport);
impl Protocol for CancelOnMade<Transport> {
    fn data_received(&mut self, _: &[u8]) {}
}
impl DatagramProtocol for CancelOnMade<DatagramTransport> {
    fn datagram_received(&mut self, _: &[u8], _: socket2::SockAddr) {}
}
impl ReadPipeProtocol for CancelOnMade<ReadPipeTransport> {
    fn data_received(&mut self, _: &[u8]) {}
}
impl WritePipeProtocol for CancelOnMade<WritePipeTransport> {}

/// Runs `creator` as a task the protocol cancels; checks that it ended
/// cancelled and that the protocol heard `made` then `lost`.
fn run_cancelled<T: 'static>(
    lp: &TestLoop,
    creator: impl FnOnce(&Slot, &Log) -> std::pin::Pin<Box<dyn std::future::Future<Output = T>>>,
) {
    let (slot, log) = (Slot::default(), Log::default());
    let task = lp.create_task(creator(&slot, &log)).unwrap();
    *slot.borrow_mut() = Some(task.handle());
    assert!(matches!(lp.block_on(task), Err(Error::Cancelled)));
    for _ in 0..3 {
        lp.stop();
        lp.run_forever().unwrap();
    }
    assert_eq!(*log.borrow(), ["made", "lost"]);
}

/// `POLL*` events on `fd` now, asking for `events`.
fn poll_now(fd: &OwnedFd, events: i16) -> i16 {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no wait.
    let rc = unsafe { libc::poll(&mut p, 1, 0) };
    assert!(rc >= 0);
    p.revents
}

#[test]
fn a_cancelled_create_connection_closes_its_connection() {
    let lp = TestLoop::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let l = lp.lp();
    run_cancelled(&lp, move |slot, log| {
        let (slot, log) = (slot.clone(), log.clone());
        Box::pin(async move {
            let made = l.create_connection(
                move || CancelOnMade::<Transport>::new(&slot, &log),
                Some("127.0.0.1"),
                Some(port),
                Default::default(),
            );
            made.await.map(|_| ())
        })
    });
    let (mut peer, _) = listener.accept().unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(peer.read(&mut [0; 16]).unwrap(), 0, "the peer sees EOF");
}

#[test]
fn a_cancelled_create_datagram_endpoint_closes_its_socket() {
    let lp = TestLoop::new();
    let l = lp.lp();
    let local = Rc::new(RefCell::new(None));
    let loc = local.clone();
    run_cancelled(&lp, move |slot, log| {
        let (slot, log) = (slot.clone(), log.clone());
        Box::pin(async move {
            let made = l.create_datagram_endpoint(
                move || CancelOnMade::<DatagramTransport>::new(&slot, &log),
                Some(Address::Inet("127.0.0.1:0".parse().unwrap())),
                None,
                DatagramOptions::default(),
            );
            made.await.map(|(t, _)| *loc.borrow_mut() = t.sockname())
        })
    });
    assert!(local.borrow().is_none(), "never handed over");
}

#[test]
fn a_cancelled_connect_write_pipe_closes_the_pipe() {
    let lp = TestLoop::new();
    let (r, w) = os_pipe();
    let l = lp.lp();
    run_cancelled(&lp, move |slot, log| {
        let (slot, log) = (slot.clone(), log.clone());
        Box::pin(async move {
            let made = l.connect_write_pipe(
                move || CancelOnMade::<WritePipeTransport>::new(&slot, &log),
                w,
            );
            made.await.map(|_| ())
        })
    });
    assert_ne!(
        poll_now(&r, libc::POLLIN) & libc::POLLHUP,
        0,
        "the write end is closed"
    );
}

#[test]
fn a_cancelled_connect_read_pipe_closes_the_pipe() {
    let lp = TestLoop::new();
    let (r, w) = os_pipe();
    let l = lp.lp();
    run_cancelled(&lp, move |slot, log| {
        let (slot, log) = (slot.clone(), log.clone());
        Box::pin(async move {
            let made = l.connect_read_pipe(
                move || CancelOnMade::<ReadPipeTransport>::new(&slot, &log),
                r,
            );
            made.await.map(|_| ())
        })
    });
    assert_ne!(
        poll_now(&w, libc::POLLOUT) & libc::POLLERR,
        0,
        "the read end is closed"
    );
}
