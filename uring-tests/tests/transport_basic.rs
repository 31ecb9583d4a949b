//! Stream transports and servers: asyncio's ordering and lifecycle rules.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use ringloop::net::ServerOptions;
use ringloop::{BaseProtocol, Protocol, Transport};
use ringloop_uring_tests::{pattern, TestLoop};

/// Records every callback in order; echoes when asked.
struct Recorder {
    log: Rc<RefCell<Vec<String>>>,
    transport: Option<Transport>,
    echo: bool,
    keep_open_on_eof: bool,
    received: Rc<RefCell<Vec<u8>>>,
}

impl Recorder {
    fn new(log: &Rc<RefCell<Vec<String>>>, received: &Rc<RefCell<Vec<u8>>>, echo: bool) -> Self {
        Recorder {
            log: log.clone(),
            transport: None,
            echo,
            keep_open_on_eof: false,
            received: received.clone(),
        }
    }
}

impl BaseProtocol for Recorder {
    type Transport = Transport;
    fn connection_made(&mut self, t: Transport) {
        self.log.borrow_mut().push("made".into());
        self.transport = Some(t);
    }
    fn connection_lost(&mut self, e: Option<io::Error>) {
        self.log.borrow_mut().push(format!(
            "lost {}",
            e.map_or("None".into(), |e| e.kind().to_string())
        ));
        self.transport = None;
    }
}

impl Protocol for Recorder {
    fn data_received(&mut self, data: &[u8]) {
        if self.log.borrow().last().map(String::as_str) != Some("data") {
            self.log.borrow_mut().push("data".into());
        }
        self.received.borrow_mut().extend_from_slice(data);
        if self.echo {
            self.transport.as_ref().unwrap().write(data).unwrap();
        }
    }
    fn eof_received(&mut self) -> bool {
        self.log.borrow_mut().push("eof".into());
        self.keep_open_on_eof
    }
}

#[test]
fn echo_roundtrip_and_ordering() {
    let tl = TestLoop::new();
    let lp = tl.lp();
    let slog: Rc<RefCell<Vec<String>>> = Rc::default();
    let srecv: Rc<RefCell<Vec<u8>>> = Rc::default();
    let clog: Rc<RefCell<Vec<String>>> = Rc::default();
    let crecv: Rc<RefCell<Vec<u8>>> = Rc::default();
    let (sl, sr) = (slog.clone(), srecv.clone());
    let server = tl
        .block_on(lp.create_server(
            move || Recorder::new(&sl, &sr, true),
            &["127.0.0.1"],
            Some(0),
            ServerOptions::default(),
        ))
        .unwrap();
    let port = server.addresses()[0].as_socket().unwrap().port();
    let (cl, cr) = (clog.clone(), crecv.clone());
    let payload = pattern(300_000, 7);
    let expect = payload.clone();
    let l = lp.clone();
    tl.block_on(async move {
        let (t, _p) = l
            .create_connection(
                move || Recorder::new(&cl, &cr, false),
                Some("127.0.0.1"),
                Some(port),
                Default::default(),
            )
            .await
            .unwrap();
        // connection_made ran before create_connection returned.
        t.write(&payload).unwrap();
        while crecv.borrow().len() < expect.len() {
            l.sleep(Duration::from_millis(2)).unwrap().await;
        }
        assert_eq!(*crecv.borrow(), expect);
        t.close();
        t.close();
        while !t.is_closed() {
            l.sleep(Duration::from_millis(2)).unwrap().await;
        }
    });
    assert_eq!(*clog.borrow(), vec!["made", "data", "lost None"]);
    // The server saw EOF, which closes by default.
    let l = lp.clone();
    let sl2 = slog.clone();
    tl.block_on(async move {
        while sl2.borrow().len() < 4 {
            l.sleep(Duration::from_millis(2)).unwrap().await;
        }
    });
    assert_eq!(*slog.borrow(), vec!["made", "data", "eof", "lost None"]);
    assert_eq!(srecv.borrow().len(), 300_000);
    server.close();
    tl.block_on(server.wait_closed());
}
