//! A recording protocol for transport tests: logs every callback in
//! order and can echo, keep the connection open on EOF, or pause writes.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;

use ringloop::{BaseProtocol, Protocol, Transport};

/// What a [`Recorder`] saw, shared with the test.
#[derive(Default)]
pub struct Seen {
    /// Callbacks in order: `made`, `data` (consecutive ones merged),
    /// `eof`, `pause`, `resume`, `lost None` / `lost <kind>`.
    pub log: Vec<String>,
    /// Every byte delivered, in order.
    pub bytes: Vec<u8>,
    /// The error `connection_lost` got, if any.
    pub lost_error: Option<io::Error>,
    /// The transport, once made.
    pub transport: Option<Transport>,
}

/// Shared view of a [`Recorder`]'s observations.
pub type SeenRef = Rc<RefCell<Seen>>;

/// The recording protocol.
pub struct Recorder {
    /// Observations.
    pub seen: SeenRef,
    /// Echo every byte received.
    pub echo: bool,
    /// `eof_received` returns this.
    pub keep_open_on_eof: bool,
    /// Drop the transport handle on `connection_lost` (breaks the cycle).
    transport: Option<Transport>,
}

impl Recorder {
    /// A recorder and its shared observations.
    pub fn new(echo: bool) -> (Recorder, SeenRef) {
        let seen = SeenRef::default();
        (
            Recorder {
                seen: seen.clone(),
                echo,
                keep_open_on_eof: false,
                transport: None,
            },
            seen,
        )
    }

    /// A factory for servers: each connection's observations are pushed
    /// onto the returned list.
    pub fn factory(echo: bool) -> (impl Fn() -> Recorder, Rc<RefCell<Vec<SeenRef>>>) {
        let all: Rc<RefCell<Vec<SeenRef>>> = Rc::default();
        let a = all.clone();
        (
            move || {
                let (r, s) = Recorder::new(echo);
                a.borrow_mut().push(s);
                r
            },
            all,
        )
    }
}

impl Seen {
    /// True once `connection_lost` ran.
    pub fn lost(&self) -> bool {
        self.log.last().is_some_and(|l| l.starts_with("lost"))
    }
}

impl BaseProtocol for Recorder {
    type Transport = Transport;
    fn connection_made(&mut self, t: Transport) {
        let mut s = self.seen.borrow_mut();
        s.log.push("made".into());
        s.transport = Some(t.clone());
        self.transport = Some(t);
    }
    fn connection_lost(&mut self, e: Option<io::Error>) {
        let mut s = self.seen.borrow_mut();
        s.log.push(match &e {
            None => "lost None".into(),
            Some(e) => format!("lost {:?}", e.kind()),
        });
        s.lost_error = e;
        s.transport = None;
        self.transport = None;
    }
    fn pause_writing(&mut self) {
        self.seen.borrow_mut().log.push("pause".into());
    }
    fn resume_writing(&mut self) {
        self.seen.borrow_mut().log.push("resume".into());
    }
}

impl Protocol for Recorder {
    fn data_received(&mut self, data: &[u8]) {
        {
            let mut s = self.seen.borrow_mut();
            if s.log.last().map(String::as_str) != Some("data") {
                s.log.push("data".into());
            }
            s.bytes.extend_from_slice(data);
        }
        if self.echo {
            if let Some(t) = &self.transport {
                t.write(data).expect("echo write");
            }
        }
    }
    fn eof_received(&mut self) -> bool {
        self.seen.borrow_mut().log.push("eof".into());
        self.keep_open_on_eof
    }
}

/// Waits (polling every millisecond on the loop) until `cond` holds.
pub async fn wait_until(lp: &ringloop::EventLoop, mut cond: impl FnMut() -> bool) {
    while !cond() {
        lp.sleep(std::time::Duration::from_millis(1))
            .expect("loop open")
            .await;
    }
}

/// Connects a `Recorder` (echoing or not) to a plain std listener on
/// 127.0.0.1; returns the transport, what it sees, and the peer's
/// blocking socket (10 s read timeout).
pub fn connect_to_std(
    tl: &crate::TestLoop,
    echo: bool,
) -> (Transport, SeenRef, std::net::TcpStream) {
    let (t, seen, peer, _protocol) = connect_to_std_keeping_protocol(tl, echo);
    (t, seen, peer)
}

/// [`connect_to_std`], also returning the protocol as the loop holds it.
pub fn connect_to_std_keeping_protocol(
    tl: &crate::TestLoop,
    echo: bool,
) -> (
    Transport,
    SeenRef,
    std::net::TcpStream,
    Rc<RefCell<Recorder>>,
) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("local_addr").port();
    let (proto, seen) = Recorder::new(echo);
    let (t, protocol) = tl
        .block_on(tl.lp().create_connection(
            move || proto,
            Some("127.0.0.1"),
            Some(port),
            Default::default(),
        ))
        .expect("create_connection");
    let (peer, _) = listener.accept().expect("accept");
    peer.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    (t, seen, peer, protocol)
}
