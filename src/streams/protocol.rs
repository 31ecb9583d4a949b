//! [`StreamReaderProtocol`]: the protocol that feeds a
//! [`StreamReader`] and carries the flow control `drain` waits on
//! (asyncio's `StreamReaderProtocol` and `FlowControlMixin`).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::{poll_fn, Future};
use std::io;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use super::error::copy_io_error;
use super::reader::{ReaderInner, StreamReader};
use super::writer::{connection_lost_error, ConnGuard, StreamWriter};
use crate::protocol::{BaseProtocol, Protocol};
use crate::task::LocalBoxFuture;
use crate::transport::Transport;

/// A `client_connected_cb`, type-erased and shared by a server's
/// protocols.
pub(crate) type ClientConnectedCb = Rc<dyn Fn(StreamReader, StreamWriter) -> LocalBoxFuture>;

/// Adds `waker` to `wakers` unless it is there already.
fn register(wakers: &RefCell<Vec<Waker>>, waker: &Waker) {
    let mut w = wakers.borrow_mut();
    if !w.iter().any(|x| x.will_wake(waker)) {
        w.push(waker.clone());
    }
}

fn wake_all(wakers: &RefCell<Vec<Waker>>) {
    let woken = std::mem::take(&mut *wakers.borrow_mut());
    for w in woken {
        w.wake();
    }
}

/// asyncio's `FlowControlMixin` state plus the `_closed` future, shared
/// between the protocol and its writers (never borrowed across a
/// protocol callback).
pub(crate) struct FlowState {
    /// `pause_writing` ran and `resume_writing` has not yet.
    paused: Cell<bool>,
    /// `connection_lost` ran.
    connection_lost: Cell<bool>,
    /// Bumped each time waiting drains are released (resume or loss).
    epoch: Cell<u64>,
    /// The epoch at which `connection_lost` released waiting drains.
    lost_epoch: Cell<Option<u64>>,
    /// The error `connection_lost` got.
    lost_error: RefCell<Option<io::Error>>,
    drain_waiters: RefCell<Vec<Waker>>,
    closed_waiters: RefCell<Vec<Waker>>,
}

impl FlowState {
    pub(crate) fn new() -> Rc<FlowState> {
        Rc::new(FlowState {
            paused: Cell::new(false),
            connection_lost: Cell::new(false),
            epoch: Cell::new(0),
            lost_epoch: Cell::new(None),
            lost_error: RefCell::new(None),
            drain_waiters: RefCell::new(Vec::new()),
            closed_waiters: RefCell::new(Vec::new()),
        })
    }

    pub(crate) fn pause_writing(&self) {
        debug_assert!(!self.paused.get(), "pause_writing twice");
        self.paused.set(true);
    }

    pub(crate) fn resume_writing(&self) {
        debug_assert!(self.paused.get(), "resume_writing while not paused");
        self.paused.set(false);
        self.epoch.set(self.epoch.get() + 1);
        wake_all(&self.drain_waiters);
    }

    pub(crate) fn connection_lost(&self, error: Option<&io::Error>) {
        self.connection_lost.set(true);
        *self.lost_error.borrow_mut() = error.map(copy_io_error);
        if self.paused.get() {
            // Wake the paused writers: with the error, or normally.
            let e = self.epoch.get() + 1;
            self.epoch.set(e);
            self.lost_epoch.set(Some(e));
            wake_all(&self.drain_waiters);
        }
        wake_all(&self.closed_waiters);
    }

    /// asyncio's `_drain_helper`.
    pub(crate) fn drain_helper(self: &Rc<Self>) -> impl Future<Output = io::Result<()>> + 'static {
        let me = self.clone();
        // The epoch when this drain began waiting.
        let mut began: Option<u64> = None;
        poll_fn(move |cx| {
            let start = match began {
                Some(s) => s,
                None => {
                    if me.connection_lost.get() {
                        return Poll::Ready(Err(connection_lost_error()));
                    }
                    if !me.paused.get() {
                        return Poll::Ready(Ok(()));
                    }
                    *began.insert(me.epoch.get())
                }
            };
            if me.epoch.get() != start {
                // The first release after we began decides, as the
                // first `set_result`/`set_exception` on asyncio's waiter.
                if me.lost_epoch.get() == Some(start + 1) {
                    if let Some(e) = me.lost_error.borrow().as_ref() {
                        return Poll::Ready(Err(copy_io_error(e)));
                    }
                }
                return Poll::Ready(Ok(()));
            }
            register(&me.drain_waiters, cx.waker());
            Poll::Pending
        })
    }

    /// Ready once `connection_lost` ran, with its error.
    pub(crate) fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<Option<io::Error>> {
        if self.connection_lost.get() {
            return Poll::Ready(self.lost_error.borrow().as_ref().map(copy_io_error));
        }
        register(&self.closed_waiters, cx.waker());
        Poll::Pending
    }
}

/// The protocol behind a [`StreamReader`]/[`StreamWriter`] pair
/// (asyncio's `StreamReaderProtocol`, with `FlowControlMixin`).
///
/// It feeds received bytes and EOF to the reader, turns
/// `connection_lost` into EOF (or the reader's exception), and records
/// `pause_writing`/`resume_writing` for [`StreamWriter::drain`]. On EOF
/// from the peer it keeps the transport open for writing (half close):
/// closing is the writer's job.
///
/// With a `client_connected_cb`, `connection_made` makes a writer and
/// calls the callback with the pair; the future it returns runs as a
/// task (asyncio turns a coroutine callback into a task).
///
/// Most code uses [`open_connection`](super::open_connection) and
/// [`start_server`](super::start_server) instead. Directly:
///
/// ```
/// use ringloop::streams::{StreamReader, StreamReaderProtocol, StreamWriter};
/// use std::io::Write;
///
/// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
/// let port = listener.local_addr()?.port();
/// let lp = ringloop::EventLoop::new()?;
/// let reader = StreamReader::new();
/// let protocol = StreamReaderProtocol::new(reader.clone());
/// let (transport, protocol) = lp.run_until_complete(lp.create_connection(
///     move || protocol,
///     Some("127.0.0.1"),
///     Some(port),
///     Default::default(),
/// ))??;
/// let writer = StreamWriter::new(transport, &protocol.borrow(), Some(reader.clone()));
/// let (mut peer, _) = listener.accept()?;
/// peer.write_all(b"hi\n")?;
/// let line = lp.run_until_complete(async move { reader.readline().await })??;
/// assert_eq!(&line[..], b"hi\n");
/// writer.close();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct StreamReaderProtocol {
    reader: Option<Rc<ReaderInner>>,
    /// The connection, between `connection_made` and `connection_lost`:
    /// asked for received data as `Bytes` (no copy into the reader).
    transport: Option<Transport>,
    flow: Rc<FlowState>,
    client_connected_cb: Option<ClientConnectedCb>,
}

impl StreamReaderProtocol {
    /// A protocol feeding `reader` (`StreamReaderProtocol(reader)`).
    pub fn new(reader: StreamReader) -> StreamReaderProtocol {
        StreamReaderProtocol {
            reader: Some(reader.inner),
            transport: None,
            flow: FlowState::new(),
            client_connected_cb: None,
        }
    }

    /// A protocol feeding `reader` that calls `cb(reader, writer)` in
    /// `connection_made` and runs the returned future as a task
    /// (`StreamReaderProtocol(reader, client_connected_cb)`). The pair
    /// handed to `cb` closes the connection when the last clone of both
    /// is dropped.
    pub fn with_client_connected_cb<F, Fut>(reader: StreamReader, cb: F) -> StreamReaderProtocol
    where
        F: Fn(StreamReader, StreamWriter) -> Fut + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        Self::with_shared_cb(reader, erase_cb(cb))
    }

    pub(crate) fn with_shared_cb(reader: StreamReader, cb: ClientConnectedCb) -> Self {
        StreamReaderProtocol {
            reader: Some(reader.inner),
            transport: None,
            flow: FlowState::new(),
            client_connected_cb: Some(cb),
        }
    }

    pub(crate) fn flow(&self) -> Rc<FlowState> {
        self.flow.clone()
    }
}

/// Boxes a callback's futures so that one type serves every callback.
pub(crate) fn erase_cb<F, Fut>(cb: F) -> ClientConnectedCb
where
    F: Fn(StreamReader, StreamWriter) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    Rc::new(move |r, w| Box::pin(cb(r, w)) as LocalBoxFuture)
}

impl BaseProtocol for StreamReaderProtocol {
    type Transport = Transport;

    fn connection_made(&mut self, transport: Transport) {
        let Some(inner) = self.reader.clone() else {
            return;
        };
        if inner.set_transport(transport.clone()).is_err() {
            tracing::warn!(target: "ringloop", "StreamReader reused: its transport was already set");
        }
        transport.inner.set_share_received();
        self.transport = Some(transport.clone());
        let Some(cb) = self.client_connected_cb.clone() else {
            return;
        };
        let guard = ConnGuard::new(transport.clone());
        let reader = StreamReader {
            inner,
            _guard: Some(guard.clone()),
        };
        let writer =
            StreamWriter::with_guard(transport.clone(), self.flow.clone(), reader.clone(), guard);
        let fut = cb(reader, writer);
        if let Some(lp) = transport.get_loop() {
            // The task runs on its own: like asyncio, nobody awaits it.
            let _ = lp.create_task(fut);
        }
    }

    fn connection_lost(&mut self, error: Option<io::Error>) {
        self.transport = None;
        if let Some(reader) = self.reader.take() {
            match &error {
                None => reader.feed_eof(),
                Some(e) => reader.set_exception(copy_io_error(e)),
            }
        }
        self.flow.connection_lost(error.as_ref());
    }

    fn pause_writing(&mut self) {
        self.flow.pause_writing();
    }

    fn resume_writing(&mut self) {
        self.flow.resume_writing();
    }
}

impl Protocol for StreamReaderProtocol {
    fn data_received(&mut self, data: &[u8]) {
        if let Some(reader) = &self.reader {
            match self
                .transport
                .as_ref()
                .and_then(|t| t.inner.shared_received(data))
            {
                Some(bytes) => reader.feed_bytes(bytes),
                None => reader.feed_data(data),
            }
        }
    }

    fn eof_received(&mut self) -> bool {
        if let Some(reader) = &self.reader {
            reader.feed_eof();
        }
        // Keep the transport open: the writer may still write (asyncio
        // returns False only over SSL).
        true
    }
}

impl fmt::Debug for StreamReaderProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamReaderProtocol")
            .field("paused", &self.flow.paused.get())
            .field("connection_lost", &self.flow.connection_lost.get())
            .field("client_connected_cb", &self.client_connected_cb.is_some())
            .finish()
    }
}
