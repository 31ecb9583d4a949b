//! `connect_read_pipe` and `connect_write_pipe`: wrap a descriptor in a
//! pipe transport and wait until the protocol knows its transport.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::rc::Rc;

use super::fd::PipeFd;
use super::{ReadPipeProtocol, ReadPipeTransport, WritePipeProtocol, WritePipeTransport};
use crate::error::Error;
use crate::event_loop::EventLoop;
use crate::transport::unclaimed::Unclaimed;

/// Resolves once every callback scheduled before it has run: awaited
/// right after a transport's `start`, it returns when `connection_made`
/// has run (asyncio's `waiter`, set by a callback queued after
/// `connection_made`). Crate-internal hook for subprocess transports.
pub(crate) async fn scheduled_callbacks_ran(lp: &EventLoop) -> io::Result<()> {
    let waiter = lp.create_future::<()>();
    let w = waiter.clone();
    lp.call_soon(move || {
        let _ = w.set_result(());
    })?;
    waiter.await.map_err(io::Error::other)
}

fn upgrade(lp: &std::rc::Weak<crate::event_loop::LoopInner>) -> io::Result<EventLoop> {
    lp.upgrade()
        .map(EventLoop::from_inner)
        .ok_or_else(|| io::Error::other(Error::LoopClosed))
}

impl EventLoop {
    /// Wraps the reading end of a pipe in a transport and attaches a
    /// protocol made by `factory` (`loop.connect_read_pipe`).
    ///
    /// `pipe` may be a pipe or FIFO, a socket, or a character device (a
    /// tty or pty); it is switched to non-blocking mode (and back when
    /// the transport closes it). A regular file or a directory is an
    /// `InvalidInput` error, and the descriptor is closed: on every error
    /// the pipe is closed, never leaked. When the future resolves, the
    /// protocol's `connection_made` has run and reading has started.
    ///
    /// # Example
    ///
    /// ```
    /// use std::cell::RefCell;
    /// use std::io::Write;
    /// use std::rc::Rc;
    /// use ringloop::{BaseProtocol, ReadPipeProtocol, ReadPipeTransport};
    ///
    /// #[derive(Default)]
    /// struct Collect {
    ///     got: Vec<u8>,
    ///     done: bool,
    /// }
    /// impl BaseProtocol for Collect {
    ///     type Transport = ReadPipeTransport;
    ///     fn connection_lost(&mut self, _err: Option<std::io::Error>) {
    ///         self.done = true;
    ///     }
    /// }
    /// impl ReadPipeProtocol for Collect {
    ///     fn data_received(&mut self, data: &[u8]) {
    ///         self.got.extend_from_slice(data);
    ///     }
    /// }
    ///
    /// // Any pipe works; a socket pair keeps the example short.
    /// let (reader, mut writer) = std::os::unix::net::UnixStream::pair()?;
    /// writer.write_all(b"hello")?;
    /// drop(writer);
    /// let lp = ringloop::EventLoop::new()?;
    /// let (_transport, protocol) =
    ///     lp.run_until_complete(lp.connect_read_pipe(Collect::default, reader.into()))??;
    /// let p = protocol.clone();
    /// lp.run_until_complete(async move {
    ///     while !p.borrow().done {
    ///         ringloop::get_running_loop()?.sleep(std::time::Duration::from_millis(1))?.await;
    ///     }
    ///     Ok::<_, ringloop::Error>(())
    /// })??;
    /// assert_eq!(protocol.borrow().got, b"hello");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connect_read_pipe<P, F>(
        &self,
        factory: F,
        pipe: OwnedFd,
    ) -> impl Future<Output = io::Result<(ReadPipeTransport, Rc<RefCell<P>>)>> + 'static
    where
        P: ReadPipeProtocol,
        F: FnOnce() -> P + 'static,
    {
        let lp = self.downgrade();
        async move {
            let lp = upgrade(&lp)?;
            let pipe = PipeFd::new(pipe)?;
            let protocol = Rc::new(RefCell::new(factory()));
            let transport = ReadPipeTransport::start(
                &lp,
                pipe,
                protocol.clone(),
                std::any::type_name::<P>(),
                None,
            )?;
            // Closed on an error, or if this future is dropped first.
            let transport = Unclaimed::new(transport, ReadPipeTransport::close);
            scheduled_callbacks_ran(&lp).await?;
            Ok((transport.claim(), protocol))
        }
    }

    /// Wraps the writing end of a pipe in a transport and attaches a
    /// protocol made by `factory` (`loop.connect_write_pipe`).
    ///
    /// Accepted descriptors and errors are those of
    /// [`connect_read_pipe`](Self::connect_read_pipe). SIGPIPE is ignored
    /// process-wide from here on if its disposition was the default (a
    /// vanished reader must be an `EPIPE` error, not the death of the
    /// process). When the future resolves, the protocol's
    /// `connection_made` has run.
    ///
    /// # Example
    ///
    /// ```
    /// use std::io::Read;
    /// use ringloop::{BaseProtocol, WritePipeProtocol, WritePipeTransport};
    ///
    /// struct Quiet;
    /// impl BaseProtocol for Quiet {
    ///     type Transport = WritePipeTransport;
    /// }
    /// impl WritePipeProtocol for Quiet {}
    ///
    /// let (mut reader, writer) = std::os::unix::net::UnixStream::pair()?;
    /// let lp = ringloop::EventLoop::new()?;
    /// let (transport, _protocol) =
    ///     lp.run_until_complete(lp.connect_write_pipe(|| Quiet, writer.into()))??;
    /// transport.write(b"hello")?;
    /// transport.close(); // flushes, then closes the pipe
    /// while !transport.is_closed() {
    ///     lp.run_once()?;
    /// }
    /// let mut got = String::new();
    /// reader.read_to_string(&mut got)?;
    /// assert_eq!(got, "hello");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connect_write_pipe<P, F>(
        &self,
        factory: F,
        pipe: OwnedFd,
    ) -> impl Future<Output = io::Result<(WritePipeTransport, Rc<RefCell<P>>)>> + 'static
    where
        P: WritePipeProtocol,
        F: FnOnce() -> P + 'static,
    {
        let lp = self.downgrade();
        async move {
            let lp = upgrade(&lp)?;
            let pipe = PipeFd::new(pipe)?;
            let protocol = Rc::new(RefCell::new(factory()));
            let transport = WritePipeTransport::start(
                &lp,
                pipe,
                protocol.clone(),
                std::any::type_name::<P>(),
                None,
            )?;
            // Closed (what `connection_made` wrote is still sent) on an
            // error, or if this future is dropped first.
            let transport = Unclaimed::new(transport, WritePipeTransport::close);
            scheduled_callbacks_ran(&lp).await?;
            Ok((transport.claim(), protocol))
        }
    }
}
